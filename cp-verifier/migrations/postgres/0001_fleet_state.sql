-- Fleet state shared by every cp-verifier replica (the PostgreSQL twin of the
-- embedded SQLite schema in src/store/sqlite.rs). Times are BIGINT: nanoseconds
-- since the Unix epoch (`*_ns`), or seconds for `cache.expires_at`.

CREATE TABLE agents (
    agent_id TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    last_seen_ns BIGINT NOT NULL,
    blinded BOOLEAN NOT NULL,
    sequence BIGINT NOT NULL,
    chain_head TEXT NOT NULL,
    record TEXT NOT NULL
);

CREATE TABLE challenges (
    nonce TEXT PRIMARY KEY,
    expires_at_ns BIGINT NOT NULL
);

-- The primary key is the replay guard: a nonce is consumed at most once, whichever
-- replica sees it.
CREATE TABLE pulse_nonces (
    agent_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    seen_at_ns BIGINT NOT NULL,
    PRIMARY KEY (agent_id, nonce)
);
CREATE INDEX pulse_nonces_seen ON pulse_nonces (seen_at_ns);

CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    at_ns BIGINT NOT NULL,
    agent_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    severity BIGINT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX alerts_agent ON alerts (agent_id, at_ns);
CREATE INDEX alerts_at ON alerts (at_ns);

CREATE TABLE cache (
    key TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL,
    json BYTEA NOT NULL
);

CREATE TABLE deleted_agents (
    agent_id TEXT PRIMARY KEY,
    key_fingerprint TEXT NOT NULL,
    at_ns BIGINT NOT NULL,
    reason TEXT NOT NULL
);

CREATE TABLE withdrawals (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    digest TEXT NOT NULL,
    reason TEXT NOT NULL,
    at_ns BIGINT NOT NULL,
    UNIQUE (kind, digest)
);

-- Severity 1-2 alerts not yet delivered to every webhook (at-least-once).
CREATE TABLE webhook_outbox (
    alert_id TEXT PRIMARY KEY,
    at_ns BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    next_at_ns BIGINT NOT NULL,
    delivered TEXT NOT NULL
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_at_ns);

-- The /healthz write probe (one row per replica would also do; one row is enough).
CREATE TABLE health (
    id BIGINT PRIMARY KEY,
    at_ns BIGINT NOT NULL
);
