-- Records a batch's stream entries; returns those not recorded before
-- (the ones whose logs must be loaded now).
-- $1 smallint[] queue shards, $2 bigint[] entry ms parts, $3 bigint[] entry seq parts (same order)
INSERT INTO logd_ingested (shard, entry_ms, entry_seq)
SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bigint[])
ON CONFLICT DO NOTHING
RETURNING shard, entry_ms, entry_seq
