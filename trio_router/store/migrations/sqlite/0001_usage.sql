-- Usage per session and provider: the schema usage.sqlite3 had before migrations existed, so a
-- file of that time passes this step unchanged and keeps every row.
CREATE TABLE IF NOT EXISTS usage (
    session TEXT NOT NULL,
    provider TEXT NOT NULL,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens INTEGER NOT NULL DEFAULT 0,
    requests INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (session, provider)
);
