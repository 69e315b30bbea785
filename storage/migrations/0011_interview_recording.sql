-- Whether an interview asked to be recorded: 'audio', 'off', or NULL for the deployment's
-- choice (GATEWAY_RECORDING). Set once at creation, with the interview's other options.

ALTER TABLE interview_sessions ADD COLUMN recording text CHECK (recording IN ('off', 'audio'));
