-- GET /api/stats?since=: counts per level and the top 10 devices over
-- created_at >= $1, exact: whole hourly buckets from the rollups, plus the
-- partial hour at the start of the window (from $1 up to the next full hour)
-- counted in `logs` through the created_at index. One statement, one
-- snapshot: rollups and rows agree.
-- $1 timestamptz window start
WITH partial AS MATERIALIZED (
  SELECT device_id, log_level, count(*) AS n FROM logs
  WHERE created_at >= $1::timestamptz
    AND created_at < date_trunc('hour', $1::timestamptz - interval '1 microsecond', 'UTC') + interval '1 hour'
  GROUP BY 1, 2
), levels AS (
  SELECT log_level, n FROM logd_hourly_by_level
  WHERE bucket >= date_trunc('hour', $1::timestamptz - interval '1 microsecond', 'UTC') + interval '1 hour'
  UNION ALL
  SELECT log_level, n FROM partial
), devices AS (
  SELECT device_id, n FROM logd_hourly_by_device
  WHERE bucket >= date_trunc('hour', $1::timestamptz - interval '1 microsecond', 'UTC') + interval '1 hour'
  UNION ALL
  SELECT device_id, n FROM partial
)
SELECT 'level' AS kind, log_level AS key, sum(n)::text AS n FROM levels GROUP BY 2
UNION ALL
(SELECT 'device', device_id, sum(n)::text FROM devices GROUP BY 2 ORDER BY sum(n) DESC, device_id LIMIT 10)
