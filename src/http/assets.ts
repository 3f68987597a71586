/**
 * Files `npm run build` writes under dist/assets/<dir> (scripts/build-assets.js),
 * each with a gzip twin `<name>.gz` made at build time: served from memory,
 * the twin when the client's Accept-Encoding takes gzip. A directory's
 * files are named in its manifest.json (the build's list; a name the
 * manifest lacks is 404), read on first use (a worker started before a
 * rebuild keeps serving the files it has read; restart it after one).
 */
import { readFileSync } from 'node:fs';
import type { HttpRequest } from 'uWebSockets.js';
import { rootPath } from '../paths';
import { fail, send, type Exchange } from './respond';

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

/** Accept-Encoding names gzip and does not refuse it with q=0 (RFC 9110 §12.5.3). */
function takesGzip(header: string): boolean {
  for (const part of header.split(',')) {
    const [coding, ...params] = part.split(';').map((s) => s.trim().toLowerCase());
    if (coding !== 'gzip') continue;
    const q = params.find((p) => p.startsWith('q='));
    return q === undefined || Number(q.slice(2)) > 0;
  }
  return false;
}

interface Asset {
  type: string;
  plain: Buffer;
  gzip: Buffer;
}

export class AssetDir {
  private manifest: Record<string, string> | undefined;
  private readonly files = new Map<string, Asset>();

  /**
   * @param dir the directory under dist/assets
   * @param cacheControl what the answers' Cache-Control says
   */
  constructor(private readonly dir: string, private readonly cacheControl: string) {}

  /** The build's names: a logical name (`app.js`) to the file written (`app-3F2K5QXA.js`). */
  names(): Record<string, string> {
    this.manifest ??= JSON.parse(readFileSync(rootPath('dist', 'assets', this.dir, 'manifest.json'), 'utf8')) as Record<string, string>;
    return this.manifest;
  }

  /** A file's content, or undefined when the build wrote no file of that name. */
  private file(name: string): Asset | undefined {
    let f = this.files.get(name);
    if (f) return f;
    if (!Object.values(this.names()).includes(name)) return undefined;
    const path = rootPath('dist', 'assets', this.dir, name);
    f = { type: TYPES[name.slice(name.lastIndexOf('.'))] ?? 'application/octet-stream', plain: readFileSync(path), gzip: readFileSync(`${path}.gz`) };
    this.files.set(name, f);
    return f;
  }

  /** Answers GET <prefix>/:file (the route's one parameter) with the file, or 404. */
  serve(x: Exchange, req: HttpRequest): void {
    const name = req.getParameter(0) ?? '';
    const f = this.file(name);
    if (!f) return fail(x, 'LOGD_NOT_FOUND', `no asset ${name.slice(0, 100)}`);
    const gzip = takesGzip(req.getHeader('accept-encoding'));
    send(x, 200, f.type, gzip ? f.gzip : f.plain, {
      'cache-control': this.cacheControl,
      vary: 'accept-encoding',
      ...(gzip ? { 'content-encoding': 'gzip' } : {}),
    });
  }
}
