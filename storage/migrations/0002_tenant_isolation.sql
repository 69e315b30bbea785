-- Row-level security on every tenant table, ENABLED and FORCED, keyed on the transaction-local
-- setting app.tenant_id; and the runtime role the gateway connects as. That role is neither
-- superuser nor BYPASSRLS: either would skip the policies and make them decorative.

CREATE FUNCTION current_tenant_id() RETURNS uuid
LANGUAGE sql STABLE AS $$
    -- unset (NULL) and reset-to-empty both mean "no tenant": such a transaction sees no rows
    SELECT nullif(current_setting('app.tenant_id', true), '')::uuid
$$;

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (id = current_tenant_id()) WITH CHECK (id = current_tenant_id());

ALTER TABLE interview_sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE interview_sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON interview_sessions
    USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id());

ALTER TABLE transcript_entries ENABLE ROW LEVEL SECURITY;
ALTER TABLE transcript_entries FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON transcript_entries
    USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id());

ALTER TABLE video_segments ENABLE ROW LEVEL SECURITY;
ALTER TABLE video_segments FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON video_segments
    USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id());

-- Roles are cluster-wide while migrations run per database: another database's migration may
-- be creating the same role right now, hence the guarded creation.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'interview_gateway_app') THEN
        BEGIN
            CREATE ROLE interview_gateway_app
                LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'interview_gateway_app'
               AND (rolsuper OR rolbypassrls)) THEN
        ALTER ROLE interview_gateway_app NOSUPERUSER NOBYPASSRLS;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO interview_gateway_app;
GRANT SELECT, INSERT, UPDATE, DELETE
    ON tenants, interview_sessions, transcript_entries, video_segments
    TO interview_gateway_app;
