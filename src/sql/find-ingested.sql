-- Which of these stream entries are already committed.
-- $1 smallint[] queue shards, $2 bigint[] entry ms parts, $3 bigint[] entry seq parts (same order)
SELECT i.shard, i.entry_ms, i.entry_seq
FROM logd_ingested i
JOIN unnest($1::smallint[], $2::bigint[], $3::bigint[]) AS q(shard, ms, seq)
  ON i.shard = q.shard AND i.entry_ms = q.ms AND i.entry_seq = q.seq
