/**
 * Content-Encoding on the ingest routes (src/http/body.ts): gzip, deflate
 * (zlib or raw) and zstd bodies are decoded as they arrive, in one chunk or
 * many; the body limit applies to the decompressed bytes, so a bomb is
 * refused with 413 once it has inflated past it, and the worker keeps its
 * memory; a broken body is 400, an unknown coding 415.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { deflateRawSync, deflateSync, gzipSync } from 'node:zlib';
import t from 'tap';
import { rawRequest } from './helpers/fuzz';
import { childPids, request, startStack, waitRows } from './helpers/logd';

const LIMIT = 16 * 1024 * 1024;

const zstd = (input: Buffer, level = 3): Buffer => execFileSync('zstd', [`-${level}`, '-c', '-q'], { input, maxBuffer: 1 << 30 });

const batch = (device: string, n: number, pad = ''): Buffer =>
  Buffer.from(JSON.stringify({ logs: Array.from({ length: n }, (_, i) => ({ device_id: device, log_level: 'INFO', message: `m${i}${pad}` })) }));

/** POSTs `body` in pieces of `piece` bytes, each written on its own (so the server reads it in several chunks). */
function post(port: number, body: Buffer, encoding: string, piece = body.length): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1', port, path: '/api/logs/batch', method: 'POST',
      headers: { 'content-type': 'application/json', 'content-encoding': encoding, 'content-length': body.length },
    }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined }));
    });
    req.on('error', reject);
    const write = (at: number): void => {
      if (at >= body.length) return void req.end();
      req.write(body.subarray(at, at + piece), () => setImmediate(() => write(at + piece)));
    };
    write(0);
  });
}

/**
 * Declares all of `body` (Content-Length, or chunked when `length` is false) but sends only its first `send`
 * bytes, then waits for the answer. A refusal mid-body closes the connection: had the client sent more than the
 * server read, the close would reset the connection and could discard the answer before the client reads it.
 */
async function postPart(port: number, body: Buffer, encoding: string, send: number, length = true): Promise<{ status?: number; body: any }> {
  const part = body.subarray(0, send);
  const framing = length ? `Content-Length: ${body.length}` : 'Transfer-Encoding: chunked';
  const head = `POST /api/logs/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Encoding: ${encoding}\r\n${framing}\r\n\r\n`;
  const sent = length ? part : Buffer.concat([Buffer.from(`${part.length.toString(16)}\r\n`), part, Buffer.from('\r\n')]);
  const r = await rawRequest(port, Buffer.concat([Buffer.from(head), sent]), 10_000);
  return { status: r.response?.status, body: r.response?.body.length ? JSON.parse(r.response.body.toString()) : undefined };
}

/** Resident memory of a process, in bytes. */
const rss = (pid: number): number => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;

t.test('compressed request bodies', async (t) => {
  const { pg, logd } = await startStack(t, { workers: 1, env: { LOGD_SERVER_BODY_LIMIT_BATCH: String(LIMIT) } });
  const [worker] = childPids(logd.proc.pid!, 'logd: http');

  await t.test('each coding, in one chunk and in many', async (t) => {
    const codings: [string, string, (b: Buffer) => Buffer][] = [
      ['gzip', 'gz', gzipSync], ['x-gzip', 'xgz', gzipSync], ['deflate', 'zlib', deflateSync], ['deflate', 'raw', deflateRawSync],
      ['zstd', 'zstd', (b) => zstd(b)], ['identity', 'id', (b) => b], ['GZIP', 'upper', gzipSync],
    ];
    for (const [coding, name, encode] of codings) {
      const one = await post(logd.port, encode(batch(`c-${name}-1`, 10)), coding);
      t.equal(one.status, 200, `${name} in one chunk: ${JSON.stringify(one.body)}`);
      // 1000 logs padded with text that does not compress away: the body arrives in several reads
      const pad = 'x'.repeat(100);
      const many = await post(logd.port, encode(batch(`c-${name}-n`, 1000, pad)), coding, 4096);
      t.equal(many.status, 200, `${name} in 4 KiB pieces: ${JSON.stringify(many.body)}`);
      t.equal(many.body.count, 1000);
    }
    for (const [, name] of codings) {
      t.equal((await waitRows(pg, 10, 'device_id = $1', [`c-${name}-1`])).length, 10, `${name}: 10 rows`);
      const rows = await waitRows(pg, 1000, 'device_id = $1', [`c-${name}-n`]);
      t.equal(rows.length, 1000, `${name}: 1000 rows`);
      t.equal(rows[999].message, `m999${'x'.repeat(100)}`);
    }
  });

  await t.test('a gzip bomb (10 MB inflating to 10 GB) is 413 before it is inflated, and the worker keeps its memory', async (t) => {
    // 500 gzip members of 20 MB of zeros each: a gzip stream may hold several members (RFC 1952 §2.2), all inflated
    const member = gzipSync(Buffer.alloc(20_000_000), { level: 9 });
    const bomb = Buffer.concat(Array.from({ length: 500 }, () => member));
    t.ok(bomb.length > 9_000_000 && bomb.length < 11_000_000, `${bomb.length} bytes`);
    const before = rss(worker);
    // one member arrives in one read and is inflated at once, up to the limit; the whole bomb declared and its first
    // members sent go through the stream
    for (const r of [await post(logd.port, member, 'gzip'), await postPart(logd.port, bomb, 'gzip', 4 * member.length)]) {
      t.equal(r.status, 413);
      t.equal(r.body.code, 'LOGD_BODY_TOO_LARGE');
      t.match(r.body.detail, /gzip body inflated exceeds the limit of 16777216 bytes/);
    }
    t.ok(rss(worker) < before + 64 * 1024 * 1024, `worker RSS ${rss(worker)} after ${before} before`);
    t.equal((await request(`${logd.url}/health`)).status, 200, 'still serving');
  });

  await t.test('a zstd bomb is 413 as it inflates; a frame declaring a window past the limit is 413 before it is read', async (t) => {
    const bomb = zstd(Buffer.alloc(200_000_000), 1);
    t.ok(bomb.length < 100_000, `${bomb.length} bytes inflate to 200 MB`);
    const r = await postPart(logd.port, bomb, 'zstd', bomb.length >> 1);
    t.equal(r.status, 413);
    t.match(r.body.detail, /zstd body inflated exceeds the limit/);
    // magic, frame header descriptor 0xe0 (8-byte content size, single segment), content size 2^40
    const header = Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0xe0]), Buffer.from([0, 0, 0, 0, 0, 1, 0, 0]), Buffer.alloc(16)]);
    const w = await post(logd.port, header, 'zstd');
    t.equal(w.status, 413);
    t.match(w.body.detail, /zstd frame's window of 1099511627776 bytes exceeds the limit of 16777216 bytes/);
  });

  await t.test('zstd bodies of several frames: each is decoded, and each frame\'s window is checked before it is read', async (t) => {
    const body = batch('c-frames', 200, 'z'.repeat(50));
    const half = body.length >> 1;
    // a skippable frame (RFC 8878 §3.1.2: magic 0x184D2A5?, 4-byte length, data), then the body in two frames
    const skippable = Buffer.concat([Buffer.from([0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0]), Buffer.from('abc')]);
    const frames = Buffer.concat([skippable, zstd(body.subarray(0, half)), zstd(body.subarray(half))]);
    for (const piece of [frames.length, 3]) {
      const r = await post(logd.port, frames, 'zstd', piece);
      t.equal(r.status, 200, `in pieces of ${piece} bytes: ${JSON.stringify(r.body)}`);
    }
    t.equal((await waitRows(pg, 400, 'device_id = $1', ['c-frames'])).length, 400, 'both posts, every log');
    // a first frame within the limits, then one declaring a content size of 1.5 GiB (single segment: its window)
    const size = Buffer.alloc(8);
    size.writeBigUInt64LE(1_610_612_736n);
    const huge = Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0xe0]), size, Buffer.from([0x80, 0, 0]), Buffer.alloc(16)]);
    for (const piece of [Infinity, 5]) {
      const second = Buffer.concat([zstd(batch('c-frames-2', 3)), huge]);
      const r = await post(logd.port, second, 'zstd', Math.min(piece, second.length));
      t.equal(r.status, 413, `the second frame, in pieces of ${piece} bytes`);
      t.match(r.body.detail, /zstd frame's window of 1610612736 bytes exceeds the limit of 16777216 bytes/);
    }
  });

  await t.test('broken bodies are 400, unknown codings 415, and the compressed size is bounded too', async (t) => {
    const good = gzipSync(batch('c-bad', 3));
    const truncated = await post(logd.port, good.subarray(0, good.length - 10), 'gzip');
    t.equal(truncated.status, 400);
    t.equal(truncated.body.code, 'LOGD_INVALID_ENCODING');
    t.match(truncated.body.detail, /not valid gzip/);
    const garbage = await post(logd.port, Buffer.from('not zstd at all, not at all'), 'zstd');
    t.equal(garbage.status, 400);
    t.equal(garbage.body.code, 'LOGD_INVALID_ENCODING');
    for (const coding of ['br', 'gzip, zstd', 'compress']) {
      const r = await post(logd.port, good, coding);
      t.equal(r.status, 415, coding);
      t.equal(r.body.code, 'LOGD_UNSUPPORTED_ENCODING');
    }
    const incompressible = gzipSync(Buffer.from(Array.from({ length: LIMIT + 1000 }, (_, i) => (i * 7919) % 251)), { level: 0 });
    const declared = await postPart(logd.port, incompressible, 'gzip', 0);
    t.equal(declared.status, 413, 'a declared length past the limit: refused before the body');
    t.match(declared.body?.detail, /request body of \d+ bytes exceeds the limit/);
    const chunked = await postPart(logd.port, incompressible, 'gzip', LIMIT + 1, false);
    t.equal(chunked.status, 413, 'compressed bytes past the limit, chunked: refused once they pass it');
    t.match(chunked.body?.detail, /^request body exceeds the limit/);
    t.equal((await pg.query("SELECT count(*)::int AS n FROM logs WHERE device_id = 'c-bad'"))[0].n, 0, 'nothing stored');
  });
});
