-- Integrity events: what a candidate's client tried that the gateway refused or undid (a client
-- event outside the allowlist, a session.update the gateway did not make). One row per
-- interview and kind: the first time, the last time and how often, so a flood cannot grow the
-- table. Row-level security, ENABLED and FORCED, as on every table.
CREATE TABLE integrity_events (
    tenant_id     uuid NOT NULL,
    interview_id  uuid NOT NULL,
    kind          text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_.]{0,99}$'),
    detail        text NOT NULL DEFAULT '' CHECK (length(detail) <= 500),
    first_at      timestamptz NOT NULL DEFAULT now(),
    last_at       timestamptz NOT NULL DEFAULT now(),
    count         integer NOT NULL DEFAULT 1 CHECK (count > 0),
    PRIMARY KEY (tenant_id, interview_id, kind),
    FOREIGN KEY (tenant_id, interview_id)
        REFERENCES interview_sessions (tenant_id, id) ON DELETE CASCADE
);

ALTER TABLE integrity_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE integrity_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON integrity_events
    USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id());

GRANT SELECT, INSERT, UPDATE ON integrity_events TO interview_gateway_app;
