-- GET /api/logs: search, newest first, keyset-paginated on (created_at, id).
-- A NULL parameter disables its filter. Run as an unnamed statement, it is
-- planned with the actual values, so the disabled filters fold away and the
-- planner picks the index of the filters given, and prunes the partitions
-- outside since, until and the cursor. On a closed partition with its search
-- indexes (src/storage/search-indexes.ts), q and data are found through them;
-- elsewhere they, and level, filter the rows along the scan, newest first
-- (src/read/db.ts runs such a search in the scans pool). The partitions are
-- read newest first and the reading stops once the page is full.
-- $1 device_id, $2 text[] levels, $3 since (inclusive), $4 until (exclusive),
-- $5 LIKE pattern of q's first term on message (case-insensitive; each
-- further term adds "AND message ILIKE $10", $11, ... after it,
-- src/read/logs.ts), $6 jsonb contained in log_data, $7 + $8 cursor
-- (created_at, id) of the last row already seen, $9 limit
-- (created_iso, not created_at: ORDER BY would sort by that text, not the index)
SELECT id, device_id, log_level, message, log_data::text AS log_data,
  to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_iso
FROM logs
WHERE ($1::text IS NULL OR device_id = $1)
  AND ($2::text[] IS NULL OR log_level = ANY ($2))
  AND ($3::timestamptz IS NULL OR created_at >= $3)
  AND ($4::timestamptz IS NULL OR created_at < $4)
  AND ($5::text IS NULL OR message ILIKE $5) /*more terms*/
  AND ($6::jsonb IS NULL OR log_data @> $6)
  AND ($7::timestamptz IS NULL OR (created_at, id) < ($7, $8::bigint))
  -- the same bound as a plain comparison, which partition pruning understands
  AND ($7::timestamptz IS NULL OR created_at <= $7)
ORDER BY created_at DESC, id DESC
LIMIT $9
