-- Tenancy: API keys (stored hashed), single-use invitations (their jti, recorded on first use),
-- and the per-interview options the admin API accepts. Row-level security, ENABLED and FORCED,
-- on both new tables, exactly as on the others.

-- A key is shown once, when created; only its SHA-256 is kept. The secret part is 256 random
-- bits, so a fast hash is enough: nobody can guess their way to a preimage.
CREATE TABLE api_keys (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        text NOT NULL DEFAULT '',
    key_hash    bytea NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    UNIQUE (tenant_id, id)
);

-- One row per single-use invitation that has admitted its candidate.
CREATE TABLE invitation_uses (
    tenant_id     uuid NOT NULL,
    jti           text NOT NULL CHECK (jti <> '' AND length(jti) <= 200),
    interview_id  uuid NOT NULL,
    used_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, jti),
    FOREIGN KEY (tenant_id, interview_id)
        REFERENCES interview_sessions (tenant_id, id) ON DELETE CASCADE
);

ALTER TABLE interview_sessions
    ADD COLUMN expires_at timestamptz,
    ADD COLUMN max_duration_s integer CHECK (max_duration_s > 0),
    -- Realtime session settings for this interview (instructions, voice), merged over the
    -- gateway's own
    ADD COLUMN upstream_session jsonb NOT NULL DEFAULT '{}'::jsonb
        CHECK (jsonb_typeof(upstream_session) = 'object');

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys
    USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id());

ALTER TABLE invitation_uses ENABLE ROW LEVEL SECURITY;
ALTER TABLE invitation_uses FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON invitation_uses
    USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id());

GRANT SELECT, INSERT, UPDATE, DELETE ON api_keys, invitation_uses TO interview_gateway_app;
