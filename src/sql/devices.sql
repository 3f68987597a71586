-- GET /api/devices: known devices whose id starts with a prefix, in order.
-- logd_counts_by_device holds one row per device with stored logs (a purge
-- or a dropped partition that takes its last log deletes the row), so its
-- primary key index lists the distinct devices directly: no scan of `logs`,
-- nor a skip scan over the hourly rollup's many rows per device.
-- The index is read from the prefix up to its successor ($3: the prefix
-- with its last character incremented, which bounds every id starting with
-- it in byte order: collations C and C.UTF-8); starts_with() keeps the
-- answer exact under any collation, where a linguistic one may order a few
-- such ids outside the range. Neither treats % or _ specially.
-- $1 prefix ('' for every device), $2 limit, $3 the prefix's successor (NULL: no upper bound)
SELECT device_id FROM logd_counts_by_device
WHERE device_id >= $1 AND ($3::text IS NULL OR device_id < $3) AND starts_with(device_id, $1)
ORDER BY device_id
LIMIT $2
