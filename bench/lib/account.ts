/**
 * Lost and duplicated logs: every log's message starts with
 * "<run>:<thread>:<seq>:<j>", so PostgreSQL's rows are compared with what the
 * load generator was told (2xx per request, by X-Request-ID), or with what
 * the bench preloaded into the stream.
 */
import type pg from 'pg';
import type { WrkResult } from './wrk';

export interface Accounting {
  /** requests answered 2xx, and their logs */
  okRequests: number;
  ackedLogs: number;
  /** requests answered with another status */
  refusedRequests: number;
  /** requests written but unanswered when the generator stopped (their fate is unknown to the client) */
  unansweredRequests: number;
  /** rows of the run in PostgreSQL, and distinct messages among them */
  rows: number;
  distinct: number;
  /** acknowledged logs that are not in PostgreSQL: the set of (request, j) of 2xx requests minus the set stored (must be 0) */
  lost: number;
  /** rows beyond the first of a message (must be 0) */
  duplicated: number;
  /** logs of refused requests found in PostgreSQL (must be 0) */
  refusedButStored: number;
  /** logs of unanswered requests found in PostgreSQL (allowed: accepted while the client hung up) */
  unansweredStored: number;
  /** rows whose log the generator never sent (must be 0) */
  unknownRows: number;
  /** 2xx answers the generator counted that are not the requests it filed as acknowledged (must be 0) */
  unmatchedAnswers: number;
  /** statuses of refused requests */
  statuses: Record<string, number>;
  /** epoch ms: first created_at (receive time of the first log), last indexed_at */
  firstCreatedMs: number;
  lastIndexedMs: number;
}

/** The run's rows grouped by request: rows, distinct messages, distinct j in [0, per). */
interface Stored {
  tid: number;
  seq: number;
  rows: number;
  distinct: number;
  logs: number;
}

async function stored(pool: pg.Pool, run: string, per: number): Promise<Stored[]> {
  const { rows } = await pool.query<{ tid: number; seq: string; n: number; d: number; k: number }>(
    `SELECT tid, seq, count(*)::int AS n, count(DISTINCT message)::int AS d,
            count(DISTINCT j) FILTER (WHERE j >= 0 AND j < $2)::int AS k
       FROM (SELECT message, split_part(message, ':', 2)::int AS tid, split_part(message, ':', 3)::bigint AS seq,
                    CASE WHEN split_part(split_part(message, ':', 4), ' ', 1) ~ '^[0-9]{1,9}$'
                         THEN split_part(split_part(message, ':', 4), ' ', 1)::int END AS j
               FROM logs WHERE message LIKE $1) m
      GROUP BY tid, seq`, [`${run}:%`, per]);
  return rows.map((g) => ({ tid: g.tid, seq: Number(g.seq), rows: g.n, distinct: g.d, logs: g.k }));
}

const key = (tid: number, seq: number): string => `${tid}:${seq}`;

export async function account(pool: pg.Pool, run: string, per: number, w: WrkResult): Promise<Accounting> {
  const groups = await stored(pool, run, per);
  const [times] = (await pool.query<{ first: string | null; last: string | null }>(
    `SELECT (extract(epoch FROM min(created_at)) * 1000)::text AS first, (extract(epoch FROM max(indexed_at)) * 1000)::text AS last
       FROM logs WHERE message LIKE $1`, [`${run}:%`])).rows;
  const threads = new Map(w.threads.map((t) => [t.tid, { sent: t.sent, bad: new Set(t.bad), pending: new Set(t.pending) }]));
  const ackedFound = new Map<string, number>();
  let rows = 0, distinct = 0, refusedButStored = 0, unansweredStored = 0, unknownRows = 0;
  for (const g of groups) {
    rows += g.rows;
    distinct += g.distinct;
    const t = threads.get(g.tid);
    if (!t || g.seq < 0 || g.seq >= t.sent) unknownRows += g.rows;
    else if (t.bad.has(g.seq)) refusedButStored += g.distinct;
    else if (t.pending.has(g.seq)) unansweredStored += g.distinct;
    else {
      ackedFound.set(key(g.tid, g.seq), g.logs);
      unknownRows += g.distinct - g.logs;
    }
  }
  // acknowledged = every request written and answered 2xx: seqs [0, sent) minus those answered otherwise or not at all
  let okRequests = 0, refusedRequests = 0, unansweredRequests = 0, unmatchedAnswers = 0, lost = 0;
  const statuses: Record<string, number> = {};
  for (const t of w.threads) {
    const { bad, pending } = threads.get(t.tid)!;
    let acked = 0;
    for (let seq = 0; seq < t.sent; seq++) {
      if (bad.has(seq) || pending.has(seq)) continue;
      acked++;
      lost += per - (ackedFound.get(key(t.tid, seq)) ?? 0);
    }
    okRequests += acked;
    unmatchedAnswers += Math.abs(t.ok - acked);
    refusedRequests += t.bad.length + t.unknown_bad;
    unansweredRequests += t.pending.length;
    for (const [s, n] of Object.entries(t.statuses)) statuses[s] = (statuses[s] ?? 0) + n;
  }
  return {
    okRequests, ackedLogs: okRequests * per, refusedRequests, unansweredRequests,
    rows, distinct, lost,
    duplicated: rows - distinct,
    refusedButStored, unansweredStored, unknownRows, unmatchedAnswers, statuses,
    firstCreatedMs: Number(times.first ?? NaN),
    lastIndexedMs: Number(times.last ?? NaN),
  };
}

export interface PreloadAccounting {
  /** logs preloaded: frames × per, all to be stored once */
  logs: number;
  rows: number;
  distinct: number;
  /** preloaded logs missing from PostgreSQL (set difference, must be 0) */
  lost: number;
  /** rows beyond the first of a message (must be 0) */
  duplicated: number;
  /** rows of the run that the bench never preloaded (must be 0) */
  unknownRows: number;
}

/** The same accounting for frames preloaded by bench/lib/drain.ts: thread 1, seqs [0, frames), j in [0, per). */
export async function accountPreloaded(pool: pg.Pool, run: string, frames: number, per: number): Promise<PreloadAccounting> {
  const found = new Map<number, number>();
  let rows = 0, distinct = 0, unknownRows = 0;
  for (const g of await stored(pool, run, per)) {
    rows += g.rows;
    distinct += g.distinct;
    if (g.tid !== 1 || g.seq < 0 || g.seq >= frames) unknownRows += g.rows;
    else {
      found.set(g.seq, g.logs);
      unknownRows += g.distinct - g.logs;
    }
  }
  let lost = 0;
  for (let seq = 0; seq < frames; seq++) lost += per - (found.get(seq) ?? 0);
  return { logs: frames * per, rows, distinct, lost, duplicated: rows - distinct, unknownRows };
}
