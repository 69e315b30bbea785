-- The transcript writer's per-session counter: the last seq handed out in each session.
-- Reading max(seq) under row-level security made the planner scan every row of the session
-- (its estimate of the tenant filter is one row, so a bitmap scan and a sort looked cheaper than
-- the primary key read backwards): a cost that grew with the transcript. One counter row per
-- session is read and bumped once per batch, whatever the transcript's length; its row lock also
-- serialises two writers numbering the same session, so they queue instead of colliding.

CREATE TABLE transcript_counters (
    tenant_id   uuid NOT NULL,
    session_id  uuid PRIMARY KEY,
    last_seq    bigint NOT NULL CHECK (last_seq >= 0),
    FOREIGN KEY (tenant_id, session_id)
        REFERENCES interview_sessions (tenant_id, id) ON DELETE CASCADE
);

ALTER TABLE transcript_counters ENABLE ROW LEVEL SECURITY;
ALTER TABLE transcript_counters FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON transcript_counters
    USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id());

-- Existing transcripts continue where they stopped. A migrator that owns the tables without
-- being superuser would see no rows through the forced policies: lift them for this one
-- statement (the transaction makes it invisible to anyone else).
ALTER TABLE transcript_entries NO FORCE ROW LEVEL SECURITY;
ALTER TABLE transcript_counters NO FORCE ROW LEVEL SECURITY;
INSERT INTO transcript_counters (tenant_id, session_id, last_seq)
SELECT tenant_id, session_id, max(seq) FROM transcript_entries GROUP BY tenant_id, session_id;
ALTER TABLE transcript_entries FORCE ROW LEVEL SECURITY;
ALTER TABLE transcript_counters FORCE ROW LEVEL SECURITY;

GRANT SELECT, INSERT, UPDATE ON transcript_counters TO interview_gateway_app;
