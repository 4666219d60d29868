-- The embedded SQLite store's schema, version 1: the statements releases before
-- versioned migrations ran at every start. They stay `IF NOT EXISTS`, so a database
-- created by such a release (the tables, but no `_sqlx_migrations`) is adopted as
-- version 1 without a change. Never edit this file once released: its checksum is
-- recorded in `_sqlx_migrations` and checked at every start. Add 0002_... instead.
-- Times are BIGINT nanoseconds since the Unix epoch (`*_ns`), or seconds for
-- `cache.expires_at`.

CREATE TABLE IF NOT EXISTS agents (
    agent_id TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    last_seen_ns BIGINT NOT NULL,
    blinded INTEGER NOT NULL,
    sequence BIGINT NOT NULL,
    chain_head TEXT NOT NULL,
    record TEXT NOT NULL);

CREATE TABLE IF NOT EXISTS challenges (
    nonce TEXT PRIMARY KEY,
    expires_at_ns BIGINT NOT NULL);

CREATE TABLE IF NOT EXISTS pulse_nonces (
    agent_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    seen_at_ns BIGINT NOT NULL,
    PRIMARY KEY (agent_id, nonce));
CREATE INDEX IF NOT EXISTS pulse_nonces_seen ON pulse_nonces (seen_at_ns);

CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    at_ns BIGINT NOT NULL,
    agent_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    severity INTEGER NOT NULL,
    detail TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS alerts_agent ON alerts (agent_id, at_ns);
CREATE INDEX IF NOT EXISTS alerts_at ON alerts (at_ns);

CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL,
    json BLOB NOT NULL);

CREATE TABLE IF NOT EXISTS deleted_agents (
    agent_id TEXT PRIMARY KEY,
    key_fingerprint TEXT NOT NULL,
    at_ns BIGINT NOT NULL,
    reason TEXT NOT NULL);

CREATE TABLE IF NOT EXISTS withdrawals (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    digest TEXT NOT NULL,
    reason TEXT NOT NULL,
    at_ns BIGINT NOT NULL,
    UNIQUE (kind, digest));

-- Severity 1-2 alerts not yet delivered to every webhook (at-least-once).
CREATE TABLE IF NOT EXISTS webhook_outbox (
    alert_id TEXT PRIMARY KEY,
    at_ns BIGINT NOT NULL,
    attempts INTEGER NOT NULL,
    next_at_ns BIGINT NOT NULL,
    delivered TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS webhook_outbox_due ON webhook_outbox (next_at_ns);

-- The /healthz write probe.
CREATE TABLE IF NOT EXISTS health (
    id INTEGER PRIMARY KEY,
    at_ns BIGINT NOT NULL);
