-- Takes the logs of a whole time range out of the statistics rollups, before
-- the partition holding them (every level) is dropped in the same
-- transaction: partition bounds are whole hours, so the range's hourly
-- buckets count exactly the partition's rows. Returns the rows taken out.
-- $1 range start (NULL: from the first bucket), $2 range end (exclusive)
WITH hl AS (
  DELETE FROM logd_hourly_by_level WHERE ($1::timestamptz IS NULL OR bucket >= $1) AND bucket < $2::timestamptz
  RETURNING bucket, log_level, n
), hd AS (
  DELETE FROM logd_hourly_by_device WHERE ($1::timestamptz IS NULL OR bucket >= $1) AND bucket < $2::timestamptz
  RETURNING bucket, device_id, n
), dl AS (
  UPDATE logd_daily_by_level d SET n = d.n - s.n
  FROM (SELECT date_trunc('day', bucket, 'UTC') AS day, log_level, sum(n) AS n FROM hl GROUP BY 1, 2) s
  WHERE d.day = s.day AND d.log_level = s.log_level
), dd AS (
  UPDATE logd_daily_by_device d SET n = d.n - s.n
  FROM (SELECT date_trunc('day', bucket, 'UTC') AS day, device_id, sum(n) AS n FROM hd GROUP BY 1, 2) s
  WHERE d.day = s.day AND d.device_id = s.device_id
), cl AS (
  UPDATE logd_counts_by_level c SET n = c.n - s.n
  FROM (SELECT log_level, sum(n) AS n FROM hl GROUP BY 1) s
  WHERE c.log_level = s.log_level
), cd AS (
  UPDATE logd_counts_by_device c SET n = c.n - s.n
  FROM (SELECT device_id, sum(n) AS n FROM hd GROUP BY 1) s
  WHERE c.device_id = s.device_id
)
SELECT coalesce(sum(n), 0)::text AS rows FROM hl
