-- Where a recording was published as one video (GATEWAY_RECORDING_STORAGE=apivideo): the
-- provider's video id and its player URL, the same on every segment row of the interview.

ALTER TABLE video_segments ADD COLUMN video_id text, ADD COLUMN video_url text;
