-- rpm and tpm windows as one row per key and second (store/windows.py) instead of one row per
-- request: a busy key's window stays at most 61 rows. The rows of the last minute carry over,
-- each into the bucket of the second it was made in.
CREATE TABLE rate_buckets (
    key_id TEXT NOT NULL,
    second BIGINT NOT NULL,
    requests BIGINT NOT NULL DEFAULT 0,
    tokens BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, second)
);

INSERT INTO rate_buckets (key_id, second, requests, tokens)
SELECT key_id, floor(at)::BIGINT, SUM(requests), SUM(tokens)
FROM rate_events GROUP BY key_id, floor(at)::BIGINT;

DROP TABLE rate_events;
