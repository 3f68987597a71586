-- The partitions of `logs` and their leaves: a partition's leaves are its
-- list partitions by log_level (none for a plain partition). Range bounds
-- as epoch ms (NULL for MINVALUE), list bounds as PostgreSQL writes them
-- ("FOR VALUES IN ('DEBUG', 'INFO')", "DEFAULT").
WITH RECURSIVE tree AS (
  SELECT i.inhrelid AS oid, i.inhparent AS parent, 1 AS depth FROM pg_inherits i WHERE i.inhparent = 'logs'::regclass
  UNION ALL
  SELECT i.inhrelid, i.inhparent, t.depth + 1 FROM pg_inherits i JOIN tree t ON i.inhparent = t.oid
)
SELECT c.relname AS name, p.relname AS parent, t.depth, c.relkind = 'p' AS partitioned,
  pg_get_expr(c.relpartbound, c.oid) AS bound,
  (extract(epoch FROM (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \(''([^'']*)''\)'))[1]::timestamptz) * 1000)::float8 AS from_ms,
  (extract(epoch FROM (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']*)''\)'))[1]::timestamptz) * 1000)::float8 AS to_ms,
  CASE WHEN c.relkind = 'p' THEN 0 ELSE pg_total_relation_size(c.oid) END::float8 AS bytes
FROM tree t JOIN pg_class c ON c.oid = t.oid JOIN pg_class p ON p.oid = t.parent
ORDER BY t.depth, c.relname
