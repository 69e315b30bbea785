-- Lines the browser forwards over signaling (source = 'client') are the least trusted: a client
-- may copy the event_id of a line the relay or the sideband is about to store, with other words.
-- So each event_id is stored once per trust class, not once per session: a client copy can
-- never take the place of the trusted line (nor the trusted line be skipped as its duplicate),
-- and readers hide a client line whose event_id a trusted line also has
-- (storage/transcripts/readers.py). The forged copy stays in the table, as evidence.
ALTER TABLE transcript_entries
    ADD COLUMN trusted boolean NOT NULL GENERATED ALWAYS AS (source <> 'client') STORED;
ALTER TABLE transcript_entries DROP CONSTRAINT transcript_entries_session_id_event_id_key;
ALTER TABLE transcript_entries
    ADD CONSTRAINT transcript_entries_event_once UNIQUE (session_id, event_id, trusted);
