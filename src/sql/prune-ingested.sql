-- Forgets entries older than the stream's first entry: trimmed away, they
-- can never be delivered again.
-- $1 bigint first entry ms, $2 bigint first entry seq
DELETE FROM logd_ingested WHERE (entry_ms, entry_seq) < ($1, $2)
