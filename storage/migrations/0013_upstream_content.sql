-- The upstream's own recording of a session (GPT-Live's GET /live/sessions/{id}/content),
-- downloaded after the interview into the same storage: a track of its own, participant
-- 'upstream', kind 'content', one row per upstream session (sequence: its place in the
-- interview), codec: the content type the upstream served it as.

ALTER TABLE video_segments DROP CONSTRAINT video_segments_participant_check;
ALTER TABLE video_segments ADD CONSTRAINT video_segments_participant_check
    CHECK (participant IN ('candidate', 'interviewer', 'upstream'));
ALTER TABLE video_segments DROP CONSTRAINT video_segments_kind_check;
ALTER TABLE video_segments ADD CONSTRAINT video_segments_kind_check
    CHECK (kind IN ('audio', 'video', 'content'));
