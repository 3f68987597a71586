-- Forgets a shard's entries older than its stream's first entry: trimmed
-- away, they can never be delivered again.
-- $1 smallint queue shard, $2 bigint first entry ms, $3 bigint first entry seq
DELETE FROM logd_ingested WHERE shard = $1 AND (entry_ms, entry_seq) < ($2, $3)
