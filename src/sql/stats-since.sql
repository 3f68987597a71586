-- GET /api/stats?since=: counts per level and the top 10 devices over
-- created_at >= $1, exact to the microsecond. One statement, one snapshot:
-- rollups and rows agree.
--
-- With s = $1, h the UTC hour boundary nearest to s and d the UTC day
-- boundary nearest to h, the window [s, end) is [s, h) + [h, d) + [d, end),
-- where a part whose end comes before its start is subtracted (h < s:
-- the logs of [h, s) are taken away from those of [h, end)):
-- - [s, h): rows of `logs` through logs_created_idx, at most half an hour;
-- - [h, d): the hourly rollups, at most twelve hours;
-- - [d, end): the daily rollups of the days from d on or, when fewer days
--   lie before d, the all-time rollups minus the days before d (the
--   all-time counts are the sum of the daily ones: every change is applied
--   to both in one transaction).
-- Each part reads its smaller side because rows per device are the cost:
-- a device has one rollup row per hour and per day. The choice between the
-- two sides of d is made inside the statement (`way`, one-time filters):
-- the two daily reads it does not take never run.
--
-- s, h and d are immutable expressions of $1 (computed on UTC timestamps
-- without time zone), folded to constants when the statement is planned, so
-- the planner prunes `logs` to the partition(s) of [s, h) before it looks
-- at any other partition.
-- $1 timestamptz window start
WITH w AS NOT MATERIALIZED (
  SELECT s, h, date_trunc('day', (h AT TIME ZONE 'UTC') + interval '12 hours') AT TIME ZONE 'UTC' AS d
  FROM (SELECT s, date_trunc('hour', (s AT TIME ZONE 'UTC') + interval '30 minutes') AT TIME ZONE 'UTC' AS h
        FROM (SELECT $1::timestamptz AS s) a) b
), partial AS MATERIALIZED (
  SELECT device_id, log_level, sum(CASE WHEN w.h > w.s THEN 1 ELSE -1 END) AS n
  FROM logs, w
  WHERE created_at >= least(w.s, w.h) AND created_at < greatest(w.s, w.h)
  GROUP BY 1, 2
), way AS MATERIALIZED (
  -- forward: read the days from d on; else the all-time counts minus the days before d
  SELECT coalesce((SELECT max(day) FROM logd_daily_by_level) - w.d <= w.d - (SELECT min(day) FROM logd_daily_by_level), true) AS forward
  FROM w
), levels AS (
  SELECT log_level, CASE WHEN w.d > w.h THEN n ELSE -n END AS n
  FROM logd_hourly_by_level, w WHERE bucket >= least(w.h, w.d) AND bucket < greatest(w.h, w.d)
  UNION ALL
  SELECT log_level, n FROM logd_daily_by_level, w WHERE (SELECT forward FROM way) AND day >= w.d
  UNION ALL
  SELECT log_level, n FROM logd_counts_by_level WHERE NOT (SELECT forward FROM way)
  UNION ALL
  SELECT log_level, -n FROM logd_daily_by_level, w WHERE NOT (SELECT forward FROM way) AND day < w.d
  UNION ALL
  SELECT log_level, n FROM partial
), devices AS (
  SELECT device_id, CASE WHEN w.d > w.h THEN n ELSE -n END AS n
  FROM logd_hourly_by_device, w WHERE bucket >= least(w.h, w.d) AND bucket < greatest(w.h, w.d)
  UNION ALL
  SELECT device_id, n FROM logd_daily_by_device, w WHERE (SELECT forward FROM way) AND day >= w.d
  UNION ALL
  SELECT device_id, n FROM logd_counts_by_device WHERE NOT (SELECT forward FROM way)
  UNION ALL
  SELECT device_id, -n FROM logd_daily_by_device, w WHERE NOT (SELECT forward FROM way) AND day < w.d
  UNION ALL
  SELECT device_id, n FROM partial
)
-- sum 0: a level or device with no log in the window (read as the all-time count minus its days)
SELECT 'level' AS kind, log_level AS key, sum(n)::text AS n FROM levels GROUP BY 2 HAVING sum(n) <> 0
UNION ALL
(SELECT 'device', device_id, sum(n)::text FROM devices GROUP BY 2 HAVING sum(n) <> 0 ORDER BY sum(n) DESC, device_id LIMIT 10)
