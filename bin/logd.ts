#!/usr/bin/env node
/** logd's executable: parses nothing itself, hands over to src/cli. */
import { main } from '../src/cli/main';

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err) => {
    process.stderr.write(`logd: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);
