-- Observers' audit: who watched a live interview, as what, from when to when. One row per join
-- and one per leave (with why it ended), never updated. Row-level security, ENABLED and FORCED,
-- as on every table. (0008 is another branch's migration; the runner applies any gap in order.)
CREATE TABLE observer_audit (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL,
    interview_id  uuid NOT NULL,
    observer_id   uuid NOT NULL,
    subject       text CHECK (length(subject) <= 200),
    role          text NOT NULL CHECK (role IN ('interviewer', 'observer')),
    event         text NOT NULL CHECK (event IN ('join', 'leave')),
    reason        text CHECK (reason ~ '^[a-z][a-z0-9_]{0,63}$'),
    at            timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, interview_id)
        REFERENCES interview_sessions (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX observer_audit_interview ON observer_audit (tenant_id, interview_id, at);

ALTER TABLE observer_audit ENABLE ROW LEVEL SECURITY;
ALTER TABLE observer_audit FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON observer_audit
    USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id());

GRANT SELECT, INSERT ON observer_audit TO interview_gateway_app;
