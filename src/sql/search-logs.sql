-- GET /api/logs: search, newest first, keyset-paginated on (created_at, id).
-- A NULL parameter disables its filter. Run as an unnamed statement, it is
-- planned with the actual values, so the disabled filters fold away and the
-- planner picks the index of the filters given. No index serves level, q
-- or data: they filter the rows along the scan, so such a search may read
-- the whole table (src/read/db.ts runs it in the scans pool).
-- $1 device_id, $2 text[] levels, $3 since (inclusive), $4 until (exclusive),
-- $5 LIKE pattern on message (case-insensitive), $6 jsonb contained in
-- log_data, $7 + $8 cursor (created_at, id) of the last row already seen,
-- $9 limit
-- (created_iso, not created_at: ORDER BY would sort by that text, not the index)
SELECT id, device_id, log_level, message, log_data::text AS log_data,
  to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_iso
FROM logs
WHERE ($1::text IS NULL OR device_id = $1)
  AND ($2::text[] IS NULL OR log_level = ANY ($2))
  AND ($3::timestamptz IS NULL OR created_at >= $3)
  AND ($4::timestamptz IS NULL OR created_at < $4)
  AND ($5::text IS NULL OR message ILIKE $5)
  AND ($6::jsonb IS NULL OR log_data @> $6)
  AND ($7::timestamptz IS NULL OR (created_at, id) < ($7, $8::bigint))
ORDER BY created_at DESC, id DESC
LIMIT $9
