-- The counts of every row of one leaf partition of `logs` (whose escaped
-- name stands for {leaf}; src/storage/maintenance.ts substitutes it), per
-- device, level and hour, negated, in the form add-counts.sql takes: what
-- dropping the leaf takes out of the rollups. NULL arrays: an empty leaf.
SELECT coalesce(sum(n), 0)::text AS rows,
  array_agg(device_id) AS devices, array_agg(log_level) AS levels, array_agg(bucket) AS buckets, array_agg(-n) AS counts
FROM (
  SELECT device_id, log_level, date_trunc('hour', created_at, 'UTC')::text AS bucket, count(*) AS n FROM {leaf} GROUP BY 1, 2, 3
) c
