-- One worker per interview (gateway/fleet): which worker a front claimed for which interview.
-- The primary key on the interview means one worker per interview, the unique worker id one
-- interview per worker, however many fronts claim at the same time: the first INSERT wins and
-- the others route to its worker. Only ids and the worker's address live here (the interview's
-- own row stays under its tenant's policy), like session_claims: a process-level table.
CREATE TABLE worker_claims (
    interview_id  uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL,
    -- the front (a row in gateways) that provisions the worker
    front_id      uuid NOT NULL,
    backend       text NOT NULL CHECK (backend IN ('local', 'fly')),
    -- the backend's id for the worker, once it has one; then unique
    worker_id     text UNIQUE CHECK (length(worker_id) <= 200),
    -- where the front routes the interview's signaling (local: the worker's base URL)
    address       text NOT NULL DEFAULT '' CHECK (length(address) <= 500),
    state         text NOT NULL DEFAULT 'claiming' CHECK (state IN ('claiming', 'ready')),
    claimed_at    timestamptz NOT NULL DEFAULT now()
);

-- Which kind of process a gateway row is: a worker's lost interviews end as worker_lost, any
-- other gateway's as gateway_lost (the one liveness mechanism, one reason per kind).
ALTER TABLE gateways ADD COLUMN kind text NOT NULL DEFAULT 'gateway'
    CHECK (kind IN ('gateway', 'worker'));

GRANT SELECT, INSERT, UPDATE, DELETE ON worker_claims TO interview_gateway_app;
