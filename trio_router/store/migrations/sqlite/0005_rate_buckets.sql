-- rpm and tpm windows as one row per key and second (store/windows.py) instead of one row per
-- request: a busy key's window stays at most 61 rows. The rows of the last minute carry over,
-- each into the bucket of the second it was made in.
CREATE TABLE rate_buckets (
    key_id TEXT NOT NULL,
    second INTEGER NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    tokens INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, second)
) WITHOUT ROWID;

INSERT INTO rate_buckets (key_id, second, requests, tokens)
SELECT key_id, CAST(at AS INTEGER), SUM(requests), SUM(tokens)
FROM rate_events GROUP BY key_id, CAST(at AS INTEGER);

DROP TABLE rate_events;
