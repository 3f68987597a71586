-- logd's schema. Applied at every start and by `logd migrate`: every
-- statement is idempotent. Columns of `logs` are the reference's contract.

CREATE TABLE IF NOT EXISTS logs (
  id BIGSERIAL,
  device_id VARCHAR(50) NOT NULL,
  log_level VARCHAR(20) NOT NULL,
  message TEXT,
  log_data JSONB,
  created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),   -- event time: the client's timestamp, else the receive time (UTC)
  indexed_at TIMESTAMPTZ DEFAULT NOW()             -- time the row was written
) PARTITION BY RANGE (created_at);

-- Partitions: src/storage/partitions.ts creates them (storage.partition_hours
-- wide, list-partitioned by level when retention.by_level is set) and
-- src/storage/maintenance.ts drops them when they expire. A database made
-- before partitioning keeps its rows in the partition logs_legacy
-- (src/storage/upgrade.ts).
--
-- Index set, chosen by measurement (BENCHMARKS.md, "Index sets"): every
-- index slows COPY, so only what the read path needs, per partition. Both
-- btrees end in (created_at, id), the read order and the keyset of the
-- cursor:
-- - device queries and searches by device: logs_device_created_idx;
-- - searches across devices (level, time, text, data filters applied along
--   the newest-first scan) and the partial hour of /api/stats?since=:
--   logs_created_idx. BRIN(created_at) cannot give that order.
-- No primary key: ids come from one sequence, and a unique index on a
-- partitioned table must include created_at, so it would only cost COPY.
-- No GIN on log_data or message here: measured, on the table COPY writes
-- into they cost it more than the searches they speed up are worth. A
-- partition whose range has ended gets them in the background instead
-- (src/storage/search-indexes.ts): trigram on message, jsonb_path_ops on
-- log_data.
CREATE INDEX IF NOT EXISTS logs_device_created_idx ON logs (device_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS logs_created_idx ON logs (created_at DESC, id DESC);

-- pg_trgm (a trusted extension: the database owner may create it) for the
-- trigram indexes; without it, closed partitions get only the log_data one.
DO $$
BEGIN
  CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION WHEN insufficient_privilege OR undefined_file THEN
  RAISE NOTICE 'pg_trgm unavailable (%): no trigram search indexes', SQLERRM;
END $$;

-- What maintenance dropped: read by `logd storage`, `logd status`, /metrics
-- and /health (a disk-budget drop of logs still inside their retention).
CREATE TABLE IF NOT EXISTS logd_partition_drops (
  id BIGSERIAL PRIMARY KEY,
  dropped_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  partition TEXT NOT NULL,
  range_from TIMESTAMPTZ,           -- NULL: from the oldest log (logs_legacy)
  range_to TIMESTAMPTZ NOT NULL,
  levels TEXT,                      -- NULL: every level
  rows BIGINT NOT NULL,
  bytes BIGINT NOT NULL,
  reason TEXT NOT NULL CHECK (reason IN ('retention', 'budget')),
  retention_days INTEGER NOT NULL   -- the retention of the partition when it was dropped
);

-- Stream entries whose logs are committed, written in the same transaction
-- as their COPY: a redelivered entry found here is acknowledged, not loaded
-- again (exactly once). An entry is its queue shard (queue.shards; each
-- shard is a stream with IDs of its own) and its ID. Rows below their
-- shard's first entry can never be redelivered and are pruned.
CREATE TABLE IF NOT EXISTS logd_ingested (
  shard SMALLINT NOT NULL DEFAULT 0,
  entry_ms BIGINT NOT NULL,
  entry_seq BIGINT NOT NULL,
  persisted_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  PRIMARY KEY (shard, entry_ms, entry_seq)
);
-- A ledger made before shards: its entries are of shard 0. Checked first,
-- so that a node starting beside running persisters takes no lock on it.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'logd_ingested'::regclass AND attname = 'shard' AND NOT attisdropped) THEN
    ALTER TABLE logd_ingested ADD COLUMN shard SMALLINT NOT NULL DEFAULT 0,
      DROP CONSTRAINT logd_ingested_pkey, ADD PRIMARY KEY (shard, entry_ms, entry_seq);
  END IF;
END $$;

-- Statistics rollups (GET /api/stats never scans `logs`). The
-- persister adds each batch's counts in the same transaction as its COPY, for
-- the frames it actually loads, so they are exact for committed data and
-- counted exactly once. All-time counts answer /api/stats; hourly buckets of
-- created_at (UTC) answer ?since= windows. Per level and per device apart:
-- a (device, level) grain would make the hourly table up to 5x larger.
CREATE TABLE IF NOT EXISTS logd_counts_by_level (
  log_level VARCHAR(20) PRIMARY KEY,
  n BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS logd_counts_by_device (
  device_id VARCHAR(50) PRIMARY KEY,
  n BIGINT NOT NULL
);
-- recent_devices: the top 10 by count, read from the front of this index.
CREATE INDEX IF NOT EXISTS logd_counts_by_device_n_idx ON logd_counts_by_device (n DESC, device_id);
CREATE TABLE IF NOT EXISTS logd_hourly_by_level (
  bucket TIMESTAMPTZ NOT NULL,
  log_level VARCHAR(20) NOT NULL,
  n BIGINT NOT NULL,
  PRIMARY KEY (bucket, log_level)
);
CREATE TABLE IF NOT EXISTS logd_hourly_by_device (
  bucket TIMESTAMPTZ NOT NULL,
  device_id VARCHAR(50) NOT NULL,
  n BIGINT NOT NULL,
  PRIMARY KEY (bucket, device_id)
);
-- One device's hours (GET /api/histogram?device_id=) without reading every device's.
CREATE INDEX IF NOT EXISTS logd_hourly_by_device_device_idx ON logd_hourly_by_device (device_id, bucket);
-- Daily buckets (UTC days) of the same counts: ?since= windows of days and
-- weeks read one row per day and level or device, not one per hour.
CREATE TABLE IF NOT EXISTS logd_daily_by_level (
  day TIMESTAMPTZ NOT NULL,
  log_level VARCHAR(20) NOT NULL,
  n BIGINT NOT NULL,
  PRIMARY KEY (day, log_level)
);
CREATE TABLE IF NOT EXISTS logd_daily_by_device (
  day TIMESTAMPTZ NOT NULL,
  device_id VARCHAR(50) NOT NULL,
  n BIGINT NOT NULL,
  PRIMARY KEY (day, device_id)
);

-- Once per database: rollups for the logs stored before they existed (the
-- daily ones from the hourly ones, which count the same rows). Under the
-- migration lock, before any persister of this version runs.
CREATE TABLE IF NOT EXISTS logd_migrations (
  name TEXT PRIMARY KEY,
  applied_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
DO $$
BEGIN
  INSERT INTO logd_migrations (name) VALUES ('rollups-backfill') ON CONFLICT DO NOTHING;
  IF FOUND THEN
    INSERT INTO logd_counts_by_level SELECT log_level, count(*) FROM logs GROUP BY 1;
    INSERT INTO logd_counts_by_device SELECT device_id, count(*) FROM logs GROUP BY 1;
    INSERT INTO logd_hourly_by_level
      SELECT date_trunc('hour', created_at, 'UTC'), log_level, count(*) FROM logs WHERE created_at IS NOT NULL GROUP BY 1, 2;
    INSERT INTO logd_hourly_by_device
      SELECT date_trunc('hour', created_at, 'UTC'), device_id, count(*) FROM logs WHERE created_at IS NOT NULL GROUP BY 1, 2;
  END IF;
END $$;
DO $$
BEGIN
  INSERT INTO logd_migrations (name) VALUES ('daily-rollups') ON CONFLICT DO NOTHING;
  IF FOUND THEN
    INSERT INTO logd_daily_by_level
      SELECT date_trunc('day', bucket, 'UTC'), log_level, sum(n) FROM logd_hourly_by_level GROUP BY 1, 2;
    INSERT INTO logd_daily_by_device
      SELECT date_trunc('day', bucket, 'UTC'), device_id, sum(n) FROM logd_hourly_by_device GROUP BY 1, 2;
  END IF;
END $$;
