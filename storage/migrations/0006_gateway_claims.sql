-- Which gateway process serves which live interview, so that interviews of a process that died
-- (a crash, a SIGKILL, a lost VM) are finalized by whoever runs next, and never those of a
-- process that is alive. Each process has an id and a heartbeat; a claim whose gateway's
-- heartbeat has lapsed belongs to nobody. Only ids live here (the interview's own row stays
-- under its tenant's policy): the gateway acts for every tenant anyway, and the reconciler
-- finalizes each row inside that row's tenant transaction.
CREATE TABLE gateways (
    id            uuid PRIMARY KEY,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    label         text NOT NULL DEFAULT '' CHECK (length(label) <= 200)
);

CREATE TABLE session_claims (
    interview_id  uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL,
    gateway_id    uuid NOT NULL,
    claimed_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX session_claims_gateway ON session_claims (gateway_id);

GRANT SELECT, INSERT, UPDATE, DELETE ON gateways, session_claims TO interview_gateway_app;
