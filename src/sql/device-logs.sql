-- GET /api/logs/{device_id}: a device's newest logs (logs_device_created_idx).
-- $1 device_id, $2 limit
-- (created_iso, not created_at: ORDER BY would sort by that text, not the index)
SELECT id, device_id, log_level, message, log_data::text AS log_data,
  to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_iso
FROM logs
WHERE device_id = $1
ORDER BY created_at DESC, id DESC
LIMIT $2
