/** Frame summaries (the counts the rollups are built from): hours of every accepted timestamp form, merging, fallbacks. */
import t from 'tap';
import { validateBody } from '../src/http/validate';
import type { Accepted } from '../src/model/entry';
import { epochHour, normalizeTimestamp } from '../src/model/time';
import { countParams } from '../src/persist/summary';
import { frameSummary, parseSummary, summarizeRows, type Tally } from '../src/queue/frame';

const H = 3_600_000;
const h8 = Date.UTC(2026, 0, 1, 8) / H;
const h10 = Date.UTC(2026, 0, 1, 10) / H;

t.test('epochHour: the UTC hour of what the door writes', async (t) => {
  const cases: [string, number][] = [
    ['2024-02-29T12:59:59.999999Z', Date.UTC(2024, 1, 29, 12) / H],
    ['2024-02-29T00:30:00+05:30', Date.UTC(2024, 1, 28, 19) / H],
    ['2024-02-29T00:30:00+0530', Date.UTC(2024, 1, 28, 19) / H],
    ['2024-02-29T00:30:00+05', Date.UTC(2024, 1, 28, 19) / H],
    ['2024-12-31T23:15:00-02', Date.UTC(2025, 0, 1, 1) / H],
    ['2024-12-31T23:45:00-00:30', Date.UTC(2025, 0, 1, 0) / H],
    ['1969-12-31T23:59:59Z', -1],
    ['0001-01-01T00:00:00Z', Date.parse('0001-01-01T00:00:00Z') / H],
    ['9999-12-31T23:59:59.999Z', Math.floor(Date.parse('9999-12-31T23:59:59.999Z') / H)],
    ['2024-02-29 12:00:00Z', Date.UTC(2024, 1, 29, 12) / H],
  ];
  for (const [iso, hour] of cases) t.equal(epochHour(iso), hour, iso);
  for (const input of ['2024-02-29 12:00', '1700000000123', '2024-02-29T12:00:00.5-0230', '2024-02-29T12:00:00+05:45']) {
    const norm = normalizeTimestamp(/^\d+$/.test(input) ? Number(input) : input)!;
    t.equal(epochHour(norm), Math.floor(Date.parse(norm.replace(/([+-]\d\d)(\d\d)$/, '$1:$2')) / H), `normalized ${input} = ${norm}`);
  }
  for (const bad of ['2024-02-29T12:00:00', '2024-02-29 12:00:00 UTC', 'yesterday']) t.ok(Number.isNaN(epochHour(bad)), `${bad}: NaN`);
});

t.test('the door keeps the hour of each accepted timestamp, as epochHour reads the text it writes', async (t) => {
  const forms: (string | number)[] = ['2024-02-29T00:30:00+05:30', '2024-02-29T00:30:00+0530', '2024-02-29T00:30:00+05', '2024-12-31T23:45:00-00:30',
    '2024-12-31T23:15:00-02', '2024-02-29 12:00', '2024-02-29T12:59:59.999999z', '1969-12-31T23:59:59Z', 1700000000123, 0];
  for (const timestamp of forms) {
    const v = validateBody('single', { device_id: 'd', log_level: 'INFO', message: 'm', timestamp }, false, { refuses: () => undefined });
    const entry = v.ok ? v.entries[0] : undefined;
    t.ok(entry?.time !== undefined && entry.hour === epochHour(entry.time), `${timestamp}: hour ${entry?.hour} of ${entry?.time}`);
  }
});

t.test('frameSummary counts per device, level and hour', async (t) => {
  const e = (device_id: string, log_level: string, time?: string): Accepted => ({ device_id, log_level, message: 'm', data: '{}', time, hour: time === undefined ? undefined : epochHour(time) });
  const now = Date.UTC(2026, 0, 1, 10, 30);
  t.same(JSON.parse(frameSummary([e('d', 'INFO')], now)), [['d', 'INFO', now / H - 0.5, 1]]);
  const entries = [
    e('a', 'INFO'), e('a', 'INFO'), e('b', 'INFO'), e('a', 'INFO'), e('a', 'ERROR'),
    e('a', 'INFO', '2026-01-01T08:00:00Z'), e('a', 'INFO', '2026-01-01T08:59:59.999999Z'), e('b', 'INFO', '2026-01-01T09:00:00+01:00'),
  ];
  const s = JSON.parse(frameSummary(entries, now)) as Tally[];
  const key = (x: Tally): string => x.slice(0, 3).join('|');
  t.same(s.map((x) => [key(x), x[3]]).sort(), [
    [`a|ERROR|${h10}`, 1], [`a|INFO|${h8}`, 2], [`a|INFO|${h10}`, 3], [`b|INFO|${h8}`, 1], [`b|INFO|${h10}`, 1],
  ].sort());
  t.same(parseSummary(JSON.stringify(s), entries.length), s, 'parses back');
});

t.test('a summary logd did not write is refused: the rows are summarized instead', async (t) => {
  for (const s of [undefined, 'nope', '{}', '[["d","INFO",1,0]]', '[["d","INFO",1.5,1]]', '[["d","INFO",null,1]]', '[["d","INFO",1,2]]', '[["d",3,1,1]]']) {
    t.equal(parseSummary(s, 1), undefined, String(s));
  }
  const rows = 'd\\tx\tINFO\tm\t{}\t2026-01-01T10:00:00Z\n'
    + 'd\\tx\tINFO\tm\t{}\t2026-01-01T10:59:00+00:30\n'
    + 'e\\101\tWARNING\tm\t{}\t2026-01-01 11:00:00 UTC\n';
  t.same(summarizeRows(rows), [['d\tx', 'INFO', h10, 2], ['eA', 'WARNING', '2026-01-01 11:00:00 UTC', 1]],
    'COPY escapes decoded; a time this cannot read goes to PostgreSQL as text');
  t.same(countParams([['a', 'INFO', h10, 2], ['a', 'INFO', h10, 3], ['b', 'INFO', '2026-01-01 11:00:00 UTC', 1]]),
    [['a', 'b'], ['INFO', 'INFO'], ['2026-01-01T10:00:00.000Z', '2026-01-01 11:00:00 UTC'], [5, 1]], 'merged, hours as ISO text');
});
