/** Door-side encoding: timestamps PostgreSQL parses unambiguously, COPY text escaping. */
import t from 'tap';
import { copyField, copyRow } from '../src/queue/frame';
import { nanosInstant, normalizeTimestamp } from '../src/model/time';

t.test('normalizeTimestamp', async (t) => {
  const good: [string | number, string][] = [
    ['2024-02-29T12:00:00Z', '2024-02-29T12:00:00Z'],
    ['2024-02-29 12:00:00', '2024-02-29T12:00:00Z'],
    ['2024-02-29T12:00', '2024-02-29T12:00:00Z'],
    ['2024-02-29T12:00:00.123456+05:30', '2024-02-29T12:00:00.123456+05:30'],
    ['2024-02-29t12:00:00z', '2024-02-29T12:00:00Z'],
    ['2024-12-31T23:59:59-0800', '2024-12-31T23:59:59-0800'],
    [0, '1970-01-01T00:00:00.000Z'],
    [1700000000123, '2023-11-14T22:13:20.123Z'],
  ];
  for (const [input, want] of good) t.equal(normalizeTimestamp(input), want, String(input));
  const bad = ['2023-02-29T00:00:00Z', '2024-13-01T00:00:00Z', '2024-04-31T00:00:00Z', '2024-01-01T24:00:00Z',
    '2024-01-01T00:60:00Z', '2024-01-01T00:00:60Z', '2024-01-01', 'yesterday', '2024-01-01T00:00:00+16:00', '0000-01-01T00:00:00Z',
    '2024-01-01T00:00:00.1234567Z'];
  for (const input of bad) t.equal(normalizeTimestamp(input), undefined, input);
});

t.test('nanosInstant: to the microsecond, seconds apart and back', async (t) => {
  const cases: [bigint, string, number][] = [
    [1_764_583_200_123_456_789n, '2025-12-01T10:00:00.123456Z', 1_764_583_200_123],
    [1_764_583_200_999_999_999n, '2025-12-01T10:00:00.999999Z', 1_764_583_200_999],
    [1_764_583_201_000_000_001n, '2025-12-01T10:00:01.000000Z', 1_764_583_201_000],
    [1_764_583_200_000_001_000n, '2025-12-01T10:00:00.000001Z', 1_764_583_200_000],
    [0n, '1970-01-01T00:00:00.000000Z', 0],
    [253_402_300_799_999_999_999n, '9999-12-31T23:59:59.999999Z', 253_402_300_799_999],
  ];
  for (const [ns, iso, ms] of cases) t.same(nanosInstant(ns), { iso, ms, hour: Math.floor(ms / 3_600_000) }, String(ns));
  t.equal(nanosInstant(-1n), undefined, 'before 1970');
  t.equal(nanosInstant(253_402_300_800_000_000_000n), undefined, 'year 10000');
});

t.test('COPY text escaping', async (t) => {
  t.equal(copyField('plain 漢字 😀'), 'plain 漢字 😀', 'nothing to escape: same string');
  t.equal(copyField('a\tb\nc\rd\\e'), 'a\\tb\\nc\\rd\\\\e');
  t.equal(copyField('\\N'), '\\\\N', 'a literal \\N is not NULL');
  t.equal(copyField('\\.'), '\\\\.', 'a literal \\. is not end-of-data');
  t.equal(copyRow('d\t1', 'INFO', 'm\n', '{"k":"v\\n"}', '2024-01-01T00:00:00Z'), 'd\\t1\tINFO\tm\\n\t{"k":"v\\\\n"}\t2024-01-01T00:00:00Z\n');
});
