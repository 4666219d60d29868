-- The operator's view: each change of an agent's or a workload's badge, written in
-- the same transaction as the record write that changed it (the body is a
-- VerdictChange as JSON); pulses accepted and refused per agent and minute, added
-- to by every replica; and a refusal's explanation (JSON) kept with its alert.
ALTER TABLE alerts ADD COLUMN explain TEXT;
CREATE TABLE verdict_changes (
    id BIGSERIAL PRIMARY KEY,
    agent_id TEXT NOT NULL,
    at_ns BIGINT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX verdict_changes_agent ON verdict_changes (agent_id, at_ns);
CREATE INDEX verdict_changes_at ON verdict_changes (at_ns);
CREATE TABLE pulse_counts (
    agent_id TEXT NOT NULL,
    minute BIGINT NOT NULL,
    accepted BIGINT NOT NULL,
    refused BIGINT NOT NULL,
    PRIMARY KEY (agent_id, minute)
);
CREATE INDEX pulse_counts_minute ON pulse_counts (minute);
