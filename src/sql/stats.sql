-- GET /api/stats from the all-time rollups (never from `logs`): counts per
-- level, and the 10 devices with the most logs (logd_counts_by_device_n_idx;
-- d.n, not n: that is the text output column).
SELECT 'level' AS kind, log_level AS key, n::text AS n FROM logd_counts_by_level
UNION ALL
(SELECT 'device', device_id, n::text FROM logd_counts_by_device d ORDER BY d.n DESC, d.device_id LIMIT 10)
