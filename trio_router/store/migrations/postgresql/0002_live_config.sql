-- The config applied last through POST /api/config on any node: the file's text as written,
-- with its $VARs unresolved (each node resolves its own environment). One row; `version` grows
-- by one per config, and a NOTIFY on channel trio_router_config tells the nodes at once.
CREATE TABLE live_config (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL,
    body TEXT NOT NULL,
    origin TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
