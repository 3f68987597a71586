-- Adds a batch's counts to the statistics rollups, in the transaction of its
-- COPY (and, negated, takes away the counts of deleted rows). Rows are upserted in key order, so concurrent persisters lock them in
-- the same order (no deadlocks); the all-time rows are hot, hence this runs
-- last, right before COMMIT.
-- $1 text[] device_id, $2 text[] log_level, $3 timestamptz[] a time in the
-- hour, $4 bigint[] logs (same order; keys may repeat: they are summed here)
WITH batch AS (
  SELECT date_trunc('hour', at, 'UTC') AS bucket, device_id, log_level, sum(n)::bigint AS n
  FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bigint[]) AS u(device_id, log_level, at, n)
  GROUP BY 1, 2, 3
), hourly_device AS (
  INSERT INTO logd_hourly_by_device AS c (bucket, device_id, n)
  SELECT bucket, device_id, sum(n) FROM batch GROUP BY 1, 2 ORDER BY 1, 2
  ON CONFLICT (bucket, device_id) DO UPDATE SET n = c.n + EXCLUDED.n
), hourly_level AS (
  INSERT INTO logd_hourly_by_level AS c (bucket, log_level, n)
  SELECT bucket, log_level, sum(n) FROM batch GROUP BY 1, 2 ORDER BY 1, 2
  ON CONFLICT (bucket, log_level) DO UPDATE SET n = c.n + EXCLUDED.n
), daily_device AS (
  INSERT INTO logd_daily_by_device AS c (day, device_id, n)
  SELECT date_trunc('day', bucket, 'UTC'), device_id, sum(n) FROM batch GROUP BY 1, 2 ORDER BY 1, 2
  ON CONFLICT (day, device_id) DO UPDATE SET n = c.n + EXCLUDED.n
), daily_level AS (
  INSERT INTO logd_daily_by_level AS c (day, log_level, n)
  SELECT date_trunc('day', bucket, 'UTC'), log_level, sum(n) FROM batch GROUP BY 1, 2 ORDER BY 1, 2
  ON CONFLICT (day, log_level) DO UPDATE SET n = c.n + EXCLUDED.n
), device AS (
  INSERT INTO logd_counts_by_device AS c (device_id, n)
  SELECT device_id, sum(n) FROM batch GROUP BY 1 ORDER BY 1
  ON CONFLICT (device_id) DO UPDATE SET n = c.n + EXCLUDED.n
)
INSERT INTO logd_counts_by_level AS c (log_level, n)
SELECT log_level, sum(n) FROM batch GROUP BY 1 ORDER BY 1
ON CONFLICT (log_level) DO UPDATE SET n = c.n + EXCLUDED.n
