-- logd's schema. Applied at every start and by `logd migrate`: every
-- statement is idempotent. Columns of `logs` are the reference's contract.

CREATE TABLE IF NOT EXISTS logs (
  id BIGSERIAL PRIMARY KEY,
  device_id VARCHAR(50) NOT NULL,
  log_level VARCHAR(20) NOT NULL,
  message TEXT,
  log_data JSONB,
  created_at TIMESTAMPTZ DEFAULT NOW(),   -- event time: the client's timestamp, else the receive time (UTC)
  indexed_at TIMESTAMPTZ DEFAULT NOW()    -- time the row was written
);

-- Index set: every index slows COPY (SPEC §2: PK + the reference's four
-- indexes 50k rows/s; PK + btree(device_id, created_at) + BRIN(created_at)
-- 157k rows/s), so only what the read path needs.
CREATE INDEX IF NOT EXISTS logs_device_created_idx ON logs (device_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS logs_created_brin_idx ON logs USING BRIN (created_at);

-- Stream entries whose logs are committed, written in the same transaction
-- as their COPY: a redelivered entry found here is acknowledged, not loaded
-- again (exactly once, SPEC §3.3). Rows below the stream's first entry can
-- never be redelivered and are pruned.
CREATE TABLE IF NOT EXISTS logd_ingested (
  entry_ms BIGINT NOT NULL,
  entry_seq BIGINT NOT NULL,
  persisted_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  PRIMARY KEY (entry_ms, entry_seq)
);
