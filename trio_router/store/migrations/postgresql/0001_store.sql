-- The store every node shares (store/postgres.py): the tables of migrations/sqlite/0001..0003 in
-- PostgreSQL's types. Times are unix seconds (double precision), as the code and SQLite hold them.

-- Usage per session and provider. cost_usd sums the priced requests and stays NULL while none
-- was; unpriced_requests counts the others.
CREATE TABLE usage (
    session TEXT NOT NULL,
    provider TEXT NOT NULL,
    input_tokens BIGINT NOT NULL DEFAULT 0,
    output_tokens BIGINT NOT NULL DEFAULT 0,
    cache_read_tokens BIGINT NOT NULL DEFAULT 0,
    requests BIGINT NOT NULL DEFAULT 0,
    cost_usd DOUBLE PRECISION,
    unpriced_requests BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (session, provider)
);

-- A key's secret is never stored: only its SHA-256 (hex) and a short prefix for humans.
-- A deleted key keeps its row (deleted_at set) so that its usage still shows its name.
CREATE TABLE client_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    user_name TEXT NOT NULL DEFAULT '',
    prefix TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    limits TEXT NOT NULL DEFAULT '{}',
    routes TEXT,
    models TEXT,
    expires_at DOUBLE PRECISION,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    created_at DOUBLE PRECISION NOT NULL,
    deleted_at DOUBLE PRECISION
);
CREATE INDEX client_keys_user ON client_keys (user_name);

-- Usage per key and provider; provider '' holds requests refused before routing.
CREATE TABLE key_usage (
    key_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    user_name TEXT NOT NULL DEFAULT '',
    input_tokens BIGINT NOT NULL DEFAULT 0,
    output_tokens BIGINT NOT NULL DEFAULT 0,
    cache_read_tokens BIGINT NOT NULL DEFAULT 0,
    requests BIGINT NOT NULL DEFAULT 0,
    errors BIGINT NOT NULL DEFAULT 0,
    rate_limited BIGINT NOT NULL DEFAULT 0,
    cost_usd DOUBLE PRECISION,
    unpriced_requests BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, provider)
);
CREATE INDEX key_usage_user ON key_usage (user_name);

-- The last minute of each limited key: a row per admitted request (requests = 1) and a row per
-- finished request's tokens, so rpm and tpm are sliding windows and retry-after is exact.
CREATE TABLE rate_events (
    key_id TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    tokens BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX rate_events_key_at ON rate_events (key_id, at);

-- Input + output tokens and USD per key and UTC day ('YYYY-MM-DD'): the day and month budgets.
CREATE TABLE key_daily (
    key_id TEXT NOT NULL,
    day TEXT NOT NULL,
    tokens BIGINT NOT NULL DEFAULT 0,
    cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, day)
);

-- Open requests that count against a key's `concurrent` or a provider's `max_concurrent`.
CREATE TABLE leases (
    id TEXT PRIMARY KEY,
    worker TEXT NOT NULL,
    key_id TEXT NOT NULL,
    provider TEXT,
    expires_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX leases_key ON leases (key_id);
CREATE INDEX leases_provider ON leases (provider, key_id);

-- Requests waiting for a provider slot; the order the next free slot is given in.
CREATE TABLE slot_waiters (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    key_id TEXT NOT NULL,
    since DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX slot_waiters_provider ON slot_waiters (provider);

-- The dashboard's charts: usage per UTC hour, provider, model, key and user ('' = none).
CREATE TABLE usage_hourly (
    hour DOUBLE PRECISION NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    key_id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    requests BIGINT NOT NULL DEFAULT 0,
    errors BIGINT NOT NULL DEFAULT 0,
    input_tokens BIGINT NOT NULL DEFAULT 0,
    output_tokens BIGINT NOT NULL DEFAULT 0,
    cache_read_tokens BIGINT NOT NULL DEFAULT 0,
    cost_usd DOUBLE PRECISION,
    PRIMARY KEY (hour, provider, model, key_id, user_name)
);

-- The newest errored requests (the store keeps at least 1000; older ones are pruned).
CREATE TABLE request_errors (
    id BIGSERIAL PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    status INTEGER NOT NULL,
    provider TEXT,
    model TEXT NOT NULL,
    key_id TEXT,
    session TEXT NOT NULL,
    message TEXT NOT NULL
);
