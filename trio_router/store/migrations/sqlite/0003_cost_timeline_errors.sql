-- Cost in USD beside the token counts, an hourly rollup for the dashboard's timeline, and the
-- recent errors. Rows of earlier versions are kept: their requests were never priced, so they
-- count as unpriced (their cost stays NULL, never a made-up 0).
ALTER TABLE usage ADD COLUMN cost_usd REAL;
ALTER TABLE usage ADD COLUMN unpriced_requests INTEGER NOT NULL DEFAULT 0;
UPDATE usage SET unpriced_requests = requests;

ALTER TABLE key_usage ADD COLUMN cost_usd REAL;
ALTER TABLE key_usage ADD COLUMN unpriced_requests INTEGER NOT NULL DEFAULT 0;
UPDATE key_usage SET unpriced_requests = requests WHERE provider != '';

-- The USD budgets: the priced requests' cost per key and UTC day.
ALTER TABLE key_tokens_daily ADD COLUMN cost_usd REAL NOT NULL DEFAULT 0;

-- Usage per UTC hour and (provider, model, key, user); '' where a request had none.
CREATE TABLE usage_hourly (
    hour INTEGER NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    key_id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL,
    PRIMARY KEY (hour, provider, model, key_id, user_name)
);

-- The newest errored requests (the store keeps at least 1000; older ones are deleted).
CREATE TABLE request_errors (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    status INTEGER NOT NULL,
    provider TEXT,
    model TEXT NOT NULL,
    key_id TEXT,
    session TEXT NOT NULL,
    message TEXT NOT NULL
);
