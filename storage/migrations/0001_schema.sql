-- The four tables of interview-gateway and the one trigger function that keeps updated_at true.
-- Every row carries its tenant; composite foreign keys (tenant_id, session_id) make it impossible
-- to hang a row of one tenant under another tenant's session.

CREATE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- Attaches set_updated_at() to every table in this schema that has an updated_at column and no
-- such trigger yet; each migration that adds a table calls it, so no table can be forgotten.
CREATE FUNCTION attach_updated_at_triggers() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t regclass;
BEGIN
    FOR t IN
        SELECT c.oid::regclass
        FROM pg_class c
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'updated_at' AND NOT a.attisdropped
        WHERE c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace
          AND NOT EXISTS (
              SELECT FROM pg_trigger g
              WHERE g.tgrelid = c.oid AND g.tgname = 'set_updated_at')
    LOOP
        EXECUTE format(
            'CREATE TRIGGER set_updated_at BEFORE UPDATE ON %s '
            'FOR EACH ROW EXECUTE FUNCTION set_updated_at()', t);
    END LOOP;
END
$$;

CREATE TABLE tenants (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (name <> ''),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE interview_sessions (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    status              text NOT NULL DEFAULT 'created'
                        CHECK (status IN ('created', 'waiting', 'connecting', 'active', 'ended', 'failed')),
    -- 'auto' lets the gateway choose; actual_mode is what it chose.
    requested_mode      text NOT NULL CHECK (requested_mode IN ('auto', 'relay', 'proxy')),
    actual_mode         text CHECK (actual_mode IN ('relay', 'proxy')),
    upstream_kind       text,
    upstream_call_id    text,
    connection_state    text CHECK (connection_state IN
                        ('new', 'connecting', 'connected', 'disconnected', 'failed', 'closed')),
    ice_state           text CHECK (ice_state IN
                        ('new', 'checking', 'connected', 'completed', 'failed', 'disconnected', 'closed')),
    -- a summary of the selected ICE candidate pair (types, protocols, addresses) as reported
    selected_pair       jsonb,
    connected_at        timestamptz,
    ended_at            timestamptz,
    end_reason          text,
    candidate_ref       text,
    metadata            jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    -- a session is terminal exactly when it has an end time and a reason
    CHECK ((status IN ('ended', 'failed')) = (ended_at IS NOT NULL AND end_reason IS NOT NULL))
);
CREATE INDEX interview_sessions_tenant_created ON interview_sessions (tenant_id, created_at DESC);

CREATE TABLE transcript_entries (
    tenant_id       uuid NOT NULL,
    session_id      uuid NOT NULL,
    -- reading order within the session: the order the gateway received the events in, dense
    -- (a duplicate never consumes a number)
    seq             bigint NOT NULL CHECK (seq > 0),
    event_id        text NOT NULL,
    item_id         text,
    role            text NOT NULL CHECK (role IN ('candidate', 'interviewer')),
    text            text NOT NULL,
    source          text NOT NULL CHECK (source IN ('relay', 'sideband', 'client')),
    event_type      text NOT NULL,
    received_at     timestamptz NOT NULL,
    audio_start_ms  integer CHECK (audio_start_ms >= 0),
    audio_end_ms    integer CHECK (audio_end_ms >= 0),
    raw             jsonb,
    PRIMARY KEY (session_id, seq),
    UNIQUE (session_id, event_id),
    FOREIGN KEY (tenant_id, session_id)
        REFERENCES interview_sessions (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE video_segments (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       uuid NOT NULL,
    session_id      uuid NOT NULL,
    participant     text NOT NULL CHECK (participant IN ('candidate', 'interviewer')),
    kind            text NOT NULL CHECK (kind IN ('audio', 'video')),
    sequence        integer NOT NULL CHECK (sequence >= 0),
    storage_uri     text,
    codec           text,
    started_at      timestamptz,
    duration_ms     integer CHECK (duration_ms >= 0),
    bytes           bigint CHECK (bytes >= 0),
    status          text NOT NULL DEFAULT 'recording'
                    CHECK (status IN ('recording', 'stored', 'uploaded', 'failed')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (session_id, participant, kind, sequence),
    FOREIGN KEY (tenant_id, session_id)
        REFERENCES interview_sessions (tenant_id, id) ON DELETE CASCADE
);

SELECT attach_updated_at_triggers();
