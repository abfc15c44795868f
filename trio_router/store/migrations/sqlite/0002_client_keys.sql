-- Client keys, their usage, and the shared state their limits are enforced with.

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
    expires_at REAL,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    deleted_at REAL
);
CREATE INDEX client_keys_user ON client_keys (user_name);

-- Usage per key and provider; provider '' holds requests refused before routing (a limit, a
-- bad body). `user_name` is copied from the key when the row is made, so a user's view needs no join.
CREATE TABLE key_usage (
    key_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    user_name TEXT NOT NULL DEFAULT '',
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens INTEGER NOT NULL DEFAULT 0,
    requests INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    rate_limited INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, provider)
);
CREATE INDEX key_usage_user ON key_usage (user_name);

-- The last minute of each limited key: a row per admitted request (requests = 1) and a row per
-- finished request's tokens, so rpm and tpm are sliding windows and retry-after is exact.
CREATE TABLE rate_events (
    key_id TEXT NOT NULL,
    at REAL NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    tokens INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX rate_events_key_at ON rate_events (key_id, at);

-- Input + output tokens per key and UTC day: the day and month budgets.
CREATE TABLE key_tokens_daily (
    key_id TEXT NOT NULL,
    day TEXT NOT NULL,
    tokens INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, day)
);

-- Open requests that count against a key's `concurrent` or a provider's `max_concurrent`. A
-- worker renews its rows' expiry while it lives; a dead worker's rows expire on their own.
CREATE TABLE leases (
    id TEXT PRIMARY KEY,
    worker TEXT NOT NULL,
    key_id TEXT NOT NULL,
    provider TEXT,
    expires_at REAL NOT NULL
);
CREATE INDEX leases_key ON leases (key_id);
CREATE INDEX leases_provider ON leases (provider, key_id);
CREATE INDEX leases_worker ON leases (worker);

-- Requests waiting for a provider slot; the order the next free slot is given in.
CREATE TABLE slot_waiters (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    key_id TEXT NOT NULL,
    since REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX slot_waiters_provider ON slot_waiters (provider);
