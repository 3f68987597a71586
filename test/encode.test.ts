/** Door-side encoding: timestamps PostgreSQL parses unambiguously, COPY text escaping. */
import t from 'tap';
import { copyField, copyRow } from '../src/queue/frame';
import { normalizeTimestamp } from '../src/model/time';

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

t.test('COPY text escaping', async (t) => {
  t.equal(copyField('plain 漢字 😀'), 'plain 漢字 😀', 'nothing to escape: same string');
  t.equal(copyField('a\tb\nc\rd\\e'), 'a\\tb\\nc\\rd\\\\e');
  t.equal(copyField('\\N'), '\\\\N', 'a literal \\N is not NULL');
  t.equal(copyField('\\.'), '\\\\.', 'a literal \\. is not end-of-data');
  t.equal(copyRow('d\t1', 'INFO', 'm\n', '{"k":"v\\n"}', '2024-01-01T00:00:00Z'), 'd\\t1\tINFO\tm\\n\t{"k":"v\\\\n"}\t2024-01-01T00:00:00Z\n');
});
