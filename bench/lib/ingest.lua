--[[
  wrk script of the ingest benchmark (bench/ingest.ts runs it; see bench/README.md).

  Every log carries a unique message "<run>:<thread>:<seq>:<j> ...", so the
  bench can count lost and duplicated logs in PostgreSQL. Every request
  carries X-Request-ID "<thread>.<seq>.<scheduled µs>", which logd (and nginx,
  which passes upstream headers through) echoes: response() uses it to know
  which request each answer belongs to, whatever connection it came on.

  Per thread it keeps: `sent` (requests written, seq 0..sent-1), `ok` (2xx),
  `bad` (seqs answered with a non-2xx status), `pending` (seqs written and not
  answered when wrk stopped: their fate is unknown to the client).

  response() keeps a histogram of the latency of 2xx answers (from the
  request's write, or from its slot at a constant rate), the first
  BENCH_WARMUP_MS left out.

  BENCH_RATE > 0 turns wrk into an open-loop, constant-rate generator (the
  wrk2 model): delay() hands each freed connection the next slot of a fixed
  schedule (1/rate apart, across all threads), and latency is measured from
  the slot, not from the actual write, so a server that falls behind is
  charged for the requests it delayed (no coordinated omission). LuaJIT's FFI
  gives the microsecond clock wrk's Lua lacks.

  Environment:
    BENCH_PATH     /api/log or /api/logs/batch
    BENCH_PER      logs per request (1 with /api/log)
    BENCH_RUN      run tag (first field of every message)
    BENCH_RATE     requests/s over all threads; 0 = closed loop (as fast as answers come)
    BENCH_THREADS  wrk's -t (to share the schedule)
    BENCH_WARMUP_MS  slots before this much time are left out of the latency histogram
    BENCH_OUT      file done() writes its JSON report to
]]

local ffi = require("ffi")
pcall(ffi.cdef, [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]])
local tsbuf = ffi.new("bench_timespec[1]")
local CLOCK_MONOTONIC = 1
local function now_us()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, tsbuf)
  return tonumber(tsbuf[0].tv_sec) * 1000000 + math.floor(tonumber(tsbuf[0].tv_nsec) / 1000)
end

local PATH = os.getenv("BENCH_PATH") or "/api/logs/batch"
local PER = tonumber(os.getenv("BENCH_PER") or "100")
local RUN = os.getenv("BENCH_RUN") or "r0"
local RATE = tonumber(os.getenv("BENCH_RATE") or "0")
local THREADS = tonumber(os.getenv("BENCH_THREADS") or "1")
local WARMUP_US = tonumber(os.getenv("BENCH_WARMUP_MS") or "1000") * 1000
local OUT = os.getenv("BENCH_OUT")
local DEVICES = 100

-- Level mix per 100 logs (bench/lib/gen.ts makes the same rows for the COPY ceiling).
local LEVELS = {}
for i = 1, 100 do
  local l
  if i <= 70 then l = "INFO" elseif i <= 85 then l = "DEBUG" elseif i <= 95 then l = "WARNING" elseif i <= 99 then l = "ERROR" else l = "CRITICAL" end
  LEVELS[i] = l
end
local FILLER = "GET /api/v1/items?page=3 answered 200 in 12 ms for user alice"
local ENTRY = '{"device_id":"dev-%03d","log_level":"%s","message":"%s:%d:%d:%d %s","log_data":{"seq":%d,"region":"eu-west-1","latency_ms":%d,"path":"/api/v1/items"}}'

---------------------------------------------------------------------------
-- main state: one setup() per thread, then done() once

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

---------------------------------------------------------------------------
-- thread state

sent, ok, unknown_bad = 0, 0, 0
pending, bad, statuses, hist = {}, {}, {}, {}
local t_start, interval, next_slot
local slots, shead, stail = {}, 1, 0
local headers = { ["Content-Type"] = "application/json" }
local parts = {}

function init(args)
  t_start = now_us()
  if RATE > 0 then
    -- Thread i takes every THREADS-th slot of one global schedule.
    interval = 1000000 * THREADS / RATE
    next_slot = t_start + (tid - 1) * 1000000 / RATE
  end
end

local function entry(seq, j)
  local k = seq * PER + j
  return string.format(ENTRY, k % DEVICES, LEVELS[k % 100 + 1], RUN, tid, seq, j, FILLER, k, k % 997)
end

local function body(seq)
  if PATH == "/api/log" then return entry(seq, 0) end
  for j = 0, PER - 1 do parts[j + 1] = entry(seq, j) end
  return '{"logs":[' .. table.concat(parts, ",", 1, PER) .. ']}'
end

function request()
  local seq = sent
  sent = sent + 1
  local sched
  if RATE > 0 then
    if shead <= stail then
      sched = slots[shead]
      slots[shead] = nil
      shead = shead + 1
    else
      -- a connection's first request (no delay() before it)
      sched = next_slot
      next_slot = next_slot + interval
    end
  else
    sched = now_us()
  end
  pending[seq] = true
  headers["X-Request-ID"] = string.format("%d.%d.%d", tid, seq, sched)
  return wrk.format("POST", PATH, headers, body(seq))
end

if RATE > 0 then
  function delay()
    local slot = next_slot
    next_slot = next_slot + interval
    stail = stail + 1
    slots[stail] = slot
    local d = (slot - now_us()) / 1000
    if d <= 0 then return 0 end
    return math.ceil(d)
  end
end

-- Histogram of latencies (2xx): 50 µs buckets below 50 ms, then 1 ms buckets up to 60 s.
local function record(us)
  if us < 0 then us = 0 end
  local idx
  if us < 50000 then idx = math.floor(us / 50) else idx = 1000 + math.floor((us - 50000) / 1000) end
  if idx > 60950 then idx = 60950 end
  hist[idx] = (hist[idx] or 0) + 1
end

function response(status, hdrs, _)
  local now = now_us()
  local rid = hdrs["x-request-id"] or hdrs["X-Request-ID"] or hdrs["X-Request-Id"]
  local seq, sched
  if rid then
    local s, sch = rid:match("^%d+%.(%d+)%.(%d+)$")
    if s then
      seq = tonumber(s)
      sched = tonumber(sch)
    end
  end
  if seq == nil then
    unknown_bad = unknown_bad + 1
    statuses[status] = (statuses[status] or 0) + 1
    return
  end
  pending[seq] = nil
  if status >= 200 and status < 300 then
    ok = ok + 1
  else
    bad[#bad + 1] = seq
    statuses[status] = (statuses[status] or 0) + 1
  end
  -- latency of accepted requests only (a fast 503 must not flatter the percentiles); closed loop: from the write
  if status >= 200 and status < 300 and sched >= t_start + WARMUP_US then record(now - sched) end
end

---------------------------------------------------------------------------
-- report (main state)

local function jlist(t)
  local out = {}
  for i = 1, #t do out[i] = string.format("%d", t[i]) end
  return "[" .. table.concat(out, ",") .. "]"
end

local function jmap(t)
  local out = {}
  for k, v in pairs(t) do out[#out + 1] = string.format('"%d":%d', k, v) end
  return "{" .. table.concat(out, ",") .. "}"
end

function done(summary, latency, requests)
  local merged = {}
  local th = {}
  for _, t in ipairs(threads) do
    local p = {}
    for seq, _ in pairs(t:get("pending")) do p[#p + 1] = seq end
    table.sort(p)
    for k, v in pairs(t:get("hist")) do merged[k] = (merged[k] or 0) + v end
    th[#th + 1] = string.format('{"tid":%d,"sent":%d,"ok":%d,"unknown_bad":%d,"bad":%s,"pending":%s,"statuses":%s}',
      t:get("tid"), t:get("sent"), t:get("ok"), t:get("unknown_bad"), jlist(t:get("bad")), jlist(p), jmap(t:get("statuses")))
  end
  local e = summary.errors
  local json = string.format(
    '{"duration_us":%d,"requests":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"p50":%d,"p90":%d,"p95":%d,"p99":%d,"max":%d,"mean":%.1f},"threads":[%s],"hist":%s}\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99), latency.max, latency.mean,
    table.concat(th, ","), jmap(merged))
  if OUT then
    local f = assert(io.open(OUT, "w"))
    f:write(json)
    f:close()
  else
    io.write(json)
  end
end
