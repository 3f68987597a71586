-- Records a batch's stream entry IDs; returns those not recorded before
-- (the ones whose logs must be loaded now).
-- $1 bigint[] entry ms parts, $2 bigint[] entry seq parts (same order)
INSERT INTO logd_ingested (entry_ms, entry_seq)
SELECT * FROM unnest($1::bigint[], $2::bigint[])
ON CONFLICT DO NOTHING
RETURNING entry_ms, entry_seq
