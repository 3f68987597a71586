/**
 * Lost and duplicated logs: every log's message starts with
 * "<run>:<thread>:<seq>:<j>", so PostgreSQL's rows are compared with what the
 * load generator was told (2xx per request, by X-Request-ID).
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
  /** acknowledged logs that are not in PostgreSQL (must be 0) */
  lost: number;
  /** rows beyond the first of a message (must be 0) */
  duplicated: number;
  /** logs of refused requests found in PostgreSQL (must be 0) */
  refusedButStored: number;
  /** logs of unanswered requests found in PostgreSQL (allowed: accepted while the client hung up) */
  unansweredStored: number;
  /** rows whose request the generator never wrote (must be 0) */
  unknownRows: number;
  /** statuses of refused requests */
  statuses: Record<string, number>;
  /** epoch ms: first created_at (receive time of the first log), last indexed_at */
  firstCreatedMs: number;
  lastIndexedMs: number;
}

export async function account(pool: pg.Pool, run: string, per: number, w: WrkResult): Promise<Accounting> {
  const like = `${run}:%`;
  const groups = (await pool.query<{ tid: number; seq: string; n: number; d: number }>(
    `SELECT split_part(message, ':', 2)::int AS tid, split_part(message, ':', 3)::bigint AS seq,
            count(*)::int AS n, count(DISTINCT message)::int AS d
       FROM logs WHERE message LIKE $1 GROUP BY 1, 2`, [like])).rows;
  const [times] = (await pool.query<{ first: string | null; last: string | null }>(
    `SELECT (extract(epoch FROM min(created_at)) * 1000)::text AS first, (extract(epoch FROM max(indexed_at)) * 1000)::text AS last
       FROM logs WHERE message LIKE $1`, [like])).rows;
  const threads = new Map(w.threads.map((t) => [t.tid, { sent: t.sent, bad: new Set(t.bad), pending: new Set(t.pending) }]));
  let rows = 0, distinct = 0, foundAcked = 0, refusedButStored = 0, unansweredStored = 0, unknownRows = 0;
  for (const g of groups) {
    rows += g.n;
    distinct += g.d;
    const t = threads.get(g.tid);
    const seq = Number(g.seq);
    if (!t || seq >= t.sent) unknownRows += g.n;
    else if (t.bad.has(seq)) refusedButStored += g.d;
    else if (t.pending.has(seq)) unansweredStored += g.d;
    else foundAcked += g.d;
  }
  let okRequests = 0, refusedRequests = 0, unansweredRequests = 0, answeredOk = 0;
  const statuses: Record<string, number> = {};
  for (const t of w.threads) {
    okRequests += t.sent - t.bad.length - t.pending.length;
    answeredOk += t.ok;
    refusedRequests += t.bad.length + t.unknown_bad;
    unansweredRequests += t.pending.length;
    for (const [s, n] of Object.entries(t.statuses)) statuses[s] = (statuses[s] ?? 0) + n;
  }
  if (answeredOk !== okRequests) {
    // only when answers came without a usable X-Request-ID (their requests then stay "unanswered")
    okRequests = Math.min(okRequests, answeredOk);
  }
  const ackedLogs = okRequests * per;
  return {
    okRequests, ackedLogs, refusedRequests, unansweredRequests,
    rows, distinct,
    lost: Math.max(0, ackedLogs - foundAcked),
    duplicated: rows - distinct,
    refusedButStored, unansweredStored, unknownRows, statuses,
    firstCreatedMs: Number(times.first ?? NaN),
    lastIndexedMs: Number(times.last ?? NaN),
  };
}
