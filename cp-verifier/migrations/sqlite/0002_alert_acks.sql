-- Operators acknowledge alerts: an acknowledged alert stays in the history but no
-- longer counts as open. All three columns are NULL until then.
ALTER TABLE alerts ADD COLUMN acked_at_ns BIGINT;
ALTER TABLE alerts ADD COLUMN acked_by TEXT;
ALTER TABLE alerts ADD COLUMN ack_note TEXT;
CREATE INDEX alerts_open ON alerts (severity, at_ns) WHERE acked_at_ns IS NULL;
