-- Call quality: each leg's network every few seconds (browser and upstream: round-trip time,
-- jitter, loss, bitrate, from RTCP and the WebRTC stack's statistics), and each turn's response
-- latency (the candidate's end of speech to the interviewer's first audio packet at the
-- gateway, relay mode). Rows are only added. Row-level security, ENABLED and FORCED.
CREATE TABLE call_quality (
    tenant_id         uuid NOT NULL,
    interview_id      uuid NOT NULL,
    at                timestamptz NOT NULL DEFAULT now(),
    leg               text NOT NULL CHECK (leg IN ('browser', 'upstream')),
    rtt_ms            real CHECK (rtt_ms >= 0),
    jitter_ms         real CHECK (jitter_ms >= 0),
    loss              real CHECK (loss >= 0 AND loss <= 1),
    bitrate_in_kbps   real CHECK (bitrate_in_kbps >= 0),
    bitrate_out_kbps  real CHECK (bitrate_out_kbps >= 0),
    FOREIGN KEY (tenant_id, interview_id)
        REFERENCES interview_sessions (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX call_quality_interview ON call_quality (tenant_id, interview_id, at);

CREATE TABLE turn_latency (
    tenant_id     uuid NOT NULL,
    interview_id  uuid NOT NULL,
    at            timestamptz NOT NULL DEFAULT now(),
    latency_ms    real NOT NULL CHECK (latency_ms >= 0),
    FOREIGN KEY (tenant_id, interview_id)
        REFERENCES interview_sessions (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX turn_latency_interview ON turn_latency (tenant_id, interview_id, at);

ALTER TABLE call_quality ENABLE ROW LEVEL SECURITY;
ALTER TABLE call_quality FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON call_quality
    USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id());
ALTER TABLE turn_latency ENABLE ROW LEVEL SECURITY;
ALTER TABLE turn_latency FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON turn_latency
    USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id());

GRANT SELECT, INSERT ON call_quality, turn_latency TO interview_gateway_app;
