/**
 * The console's query helpers (console/src/query.ts): a query survives its
 * URL, and created_at moved by a microsecond carries into the second, as the
 * copied curl command's `until` needs.
 */
import t from 'tap';
import { DEFAULT_LIMIT, fromUrl, shiftMicros, toUrl, type Query } from '../console/src/query';

t.test('shiftMicros', async (t) => {
  t.equal(shiftMicros('2026-12-03T12:01:02.661000Z', 1), '2026-12-03T12:01:02.661001Z');
  t.equal(shiftMicros('2026-12-03T23:59:59.999999Z', 1), '2026-12-04T00:00:00.000000Z', 'carries into the next day');
  t.equal(shiftMicros('2026-12-03T12:01:02.597Z', 1), '2026-12-03T12:01:02.597001Z', 'milliseconds (the live tail\'s created_at)');
  t.equal(shiftMicros('2026-12-03T12:01:02Z', 1), '2026-12-03T12:01:02.000001Z', 'no fraction');
  t.equal(shiftMicros('1970-01-01T00:00:00.000000Z', -1), '1969-12-31T23:59:59.999999Z', 'backwards across the epoch');
});

t.test('a query survives its URL', async (t) => {
  const queries: Query[] = [
    { device: 'db-7', levels: ['ERROR', 'CRITICAL'], range: '', since: '2026-12-03T10:00:00.000Z', until: '2026-12-03T11:30:00.000Z', q: '"disk full" sda', data: '{"disk":"/dev/sda"}', limit: 25, view: 'search' },
    { device: '', levels: [], range: '7d', since: '', until: '', q: '', data: '', limit: DEFAULT_LIMIT, view: 'live' },
    { device: 'a&b=c', levels: ['DEBUG'], range: '15m', since: '', until: '', q: 'x+y %', data: '', limit: DEFAULT_LIMIT, view: 'search' },
  ];
  for (const q of queries) t.same(fromUrl(toUrl(q)), q, toUrl(q));
  t.same(fromUrl('?level=ERROR&level=DEBUG,NOPE'), { ...fromUrl(''), levels: ['DEBUG', 'ERROR'] }, 'levels repeated or comma-separated, in order, unknown ones dropped');
  t.equal(fromUrl('').range, '24h', 'the last 24 hours by default');
  t.equal(fromUrl('?range=2y').range, '24h', 'an unknown range is the default');
  t.equal(fromUrl('?limit=-3').limit, DEFAULT_LIMIT);
});
