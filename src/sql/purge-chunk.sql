-- One chunk of a purge: deletes at most $3 logs of device $1 created before
-- $2 from one leaf partition of `logs`, whose escaped name stands for
-- {leaf} (src/storage/purge.ts substitutes it). The rows are picked through
-- logs_device_created_idx and deleted by ctid (a TID scan). Returns the
-- rows deleted and their counts per level and hour in the form
-- add-counts.sql takes (n negated: the counts are taken out), with the
-- range of hours they fall in (NULL when none was deleted).
-- $1 device_id, $2 timestamptz bound (exclusive; 'infinity': every log),
-- $3 most rows
WITH gone AS (
  DELETE FROM {leaf}
  WHERE ctid = ANY (ARRAY(
    SELECT ctid FROM {leaf} WHERE device_id = $1::text AND created_at < $2::timestamptz LIMIT $3::int
  ))
  RETURNING log_level, created_at
), counts AS (
  SELECT log_level, date_trunc('hour', created_at, 'UTC') AS bucket, count(*) AS n FROM gone GROUP BY 1, 2
)
SELECT coalesce(sum(n), 0)::int AS rows,
  array_agg($1::text) AS devices, array_agg(log_level) AS levels, array_agg(bucket::text) AS buckets, array_agg(-n) AS counts,
  min(bucket)::text AS first, (max(bucket) + interval '1 hour')::text AS last
FROM counts
