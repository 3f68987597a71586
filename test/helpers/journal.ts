/** Journal export format bodies (https://systemd.io/JOURNAL_EXPORT_FORMATS/) for tests of POST /upload. */
import http from 'node:http';

/** Entries `from`..`to` of one journal (__SEQNUM_ID `seqnumId`), as systemd-journal-upload would send them. */
export function exportBody(seqnumId: string, from: number, to: number, host: string, at = Date.now()): Buffer {
  let text = '';
  for (let i = from; i <= to; i++) {
    text += `__CURSOR=s=${seqnumId};i=${i.toString(16)};b=0;m=0;t=0;x=0\n__REALTIME_TIMESTAMP=${(at + i) * 1000}\n`
      + `__SEQNUM=${i}\n__SEQNUM_ID=${seqnumId}\n_HOSTNAME=${host}\nPRIORITY=6\nSYSLOG_IDENTIFIER=app\nMESSAGE=entry ${i}\n\n`;
  }
  return Buffer.from(text);
}

/** POSTs `chunks` to /upload with chunked transfer encoding, as journal-upload does. */
export function upload(port: number, chunks: Buffer[], contentType = 'application/vnd.fdo.journal'): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/upload', method: 'POST', headers: { 'content-type': contentType, 'transfer-encoding': 'chunked' } }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    for (const c of chunks) req.write(c);
    req.end();
  });
}
