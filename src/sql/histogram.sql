-- GET /api/histogram: logs per bucket of $3 seconds (aligned to the epoch,
-- so to UTC midnight for steps dividing a day) over [s, u), per level, or
-- in total for one device. One statement, one snapshot: rollups and rows
-- agree.
--
-- As in stats-since.sql, each end is moved to its nearest UTC hour
-- boundary (hs for s, he for u), so that whole hours [hs, he) come from the
-- hourly rollups and at most half an hour of rows at each end is counted
-- from `logs` through the (created_at, id) index: added when the boundary
-- lies inside the range ([s, hs), [he, u)), subtracted when outside
-- ([hs, s), [u, he)). An hour and the rows at its edges fall in one bucket
-- (a step is whole hours), so each bucket's sum is exact. The boundaries are
-- immutable expressions of $1 and $2, folded to constants when the
-- statement is planned with its values: the planner prunes `logs` to the
-- partitions of the two ends.
-- $1 since, $2 until, $3 step in seconds, $4 device_id (NULL: every device, per level)
WITH b AS NOT MATERIALIZED (
  SELECT s, u,
    CASE WHEN s - h0 <= interval '30 minutes' THEN h0 ELSE h0 + interval '1 hour' END AS hs,
    CASE WHEN u - h1 < interval '30 minutes' THEN h1 ELSE h1 + interval '1 hour' END AS he
  FROM (SELECT $1::timestamptz AS s, $2::timestamptz AS u,
          date_trunc('hour', $1::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS h0,
          date_trunc('hour', $2::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS h1) a
), counts AS (
  SELECT bucket AS t, log_level AS level, n FROM logd_hourly_by_level, b
  WHERE $4::text IS NULL AND bucket >= b.hs AND bucket < b.he
  UNION ALL
  SELECT bucket, NULL, n FROM logd_hourly_by_device, b
  WHERE device_id = $4 AND bucket >= b.hs AND bucket < b.he
  UNION ALL
  SELECT created_at, CASE WHEN $4::text IS NULL THEN log_level END, CASE WHEN b.hs > b.s THEN 1 ELSE -1 END FROM logs, b
  WHERE ($4::text IS NULL OR device_id = $4) AND created_at >= least(b.s, b.hs) AND created_at < greatest(b.s, b.hs)
  UNION ALL
  SELECT created_at, CASE WHEN $4::text IS NULL THEN log_level END, CASE WHEN b.u > b.he THEN 1 ELSE -1 END FROM logs, b
  WHERE ($4::text IS NULL OR device_id = $4) AND created_at >= least(b.he, b.u) AND created_at < greatest(b.he, b.u)
)
SELECT extract(epoch FROM start)::bigint::text AS bucket, level, sum(n)::text AS n
FROM (SELECT date_bin($3 * interval '1 second', t, timestamptz 'epoch') AS start, level, n FROM counts) c
GROUP BY start, level
