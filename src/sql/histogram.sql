-- GET /api/histogram: logs per bucket of $3 seconds (aligned to the epoch,
-- so to UTC midnight for steps dividing a day) over [since, until), per
-- level, or in total for one device. The whole hours come from the hourly
-- rollups; the partial hours at either end are counted from `logs` through
-- the (created_at, id) index (at most an hour of logs each). One statement,
-- one snapshot: rollups and rows agree. The bounds are immutable expressions
-- of $1 and $2, folded to constants when the statement is planned with its
-- values, so the planner prunes `logs` to the partitions of the two ends.
-- $1 since, $2 until, $3 step in seconds, $4 device_id (NULL: every device, per level)
WITH b AS NOT MATERIALIZED (
  SELECT s, u,
    CASE WHEN h = s THEN h ELSE h + interval '1 hour' END AS hs,
    date_trunc('hour', u AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS hu
  FROM (SELECT $1::timestamptz AS s, $2::timestamptz AS u,
          date_trunc('hour', $1::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS h) a
), counts AS (
  SELECT bucket AS t, log_level AS level, n FROM logd_hourly_by_level, b
  WHERE $4::text IS NULL AND bucket >= b.hs AND bucket < b.hu
  UNION ALL
  SELECT bucket, NULL, n FROM logd_hourly_by_device, b
  WHERE device_id = $4 AND bucket >= b.hs AND bucket < b.hu
  UNION ALL
  SELECT created_at, CASE WHEN $4::text IS NULL THEN log_level END, 1 FROM logs, b
  WHERE ($4::text IS NULL OR device_id = $4) AND created_at >= b.s AND created_at < least(b.hs, b.u)
  UNION ALL
  SELECT created_at, CASE WHEN $4::text IS NULL THEN log_level END, 1 FROM logs, b
  WHERE ($4::text IS NULL OR device_id = $4) AND created_at >= greatest(b.hu, b.hs) AND created_at < b.u
)
SELECT (floor(extract(epoch FROM t) / $3) * $3)::bigint::text AS bucket, level, sum(n)::text AS n
FROM counts GROUP BY 1, 2
