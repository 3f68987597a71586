-- Deletes the rollup rows that subtractions (drops, purges) brought to 0,
-- among the buckets of a time range.
-- $1 range start (NULL: from the first bucket), $2 range end (exclusive)
WITH hl AS (
  DELETE FROM logd_hourly_by_level WHERE n <= 0 AND ($1::timestamptz IS NULL OR bucket >= $1) AND bucket < $2::timestamptz
), hd AS (
  DELETE FROM logd_hourly_by_device WHERE n <= 0 AND ($1::timestamptz IS NULL OR bucket >= $1) AND bucket < $2::timestamptz
), dl AS (
  DELETE FROM logd_daily_by_level WHERE n <= 0 AND ($1::timestamptz IS NULL OR day >= date_trunc('day', $1, 'UTC')) AND day < $2::timestamptz
), dd AS (
  DELETE FROM logd_daily_by_device WHERE n <= 0 AND ($1::timestamptz IS NULL OR day >= date_trunc('day', $1, 'UTC')) AND day < $2::timestamptz
), cl AS (
  DELETE FROM logd_counts_by_level WHERE n <= 0
)
DELETE FROM logd_counts_by_device WHERE n <= 0
