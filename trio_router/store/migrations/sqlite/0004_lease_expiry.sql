-- Every admit of a key with a `concurrent` limit removes the expired leases first
-- (`DELETE FROM leases WHERE expires_at < ?`, sqlite.py): without this index that is a scan of
-- every open request of every key.
CREATE INDEX leases_expires ON leases (expires_at);
