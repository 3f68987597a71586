-- Which of these stream entries are already committed.
-- $1 bigint[] entry ms parts, $2 bigint[] entry seq parts (same order)
SELECT i.entry_ms, i.entry_seq
FROM logd_ingested i
JOIN unnest($1::bigint[], $2::bigint[]) AS q(ms, seq) ON i.entry_ms = q.ms AND i.entry_seq = q.seq
