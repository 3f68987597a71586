/** Files shipped beside the code (schema.sql, Lua scripts), found from the source or the build. */
import { existsSync } from 'node:fs';
import path from 'node:path';

// src/paths.ts runs from <root>/src or, once built, from <root>/dist/src.
const ROOT = existsSync(path.join(__dirname, '..', 'package.json'))
  ? path.resolve(__dirname, '..')
  : path.resolve(__dirname, '..', '..');

export const rootPath = (...parts: string[]): string => path.join(ROOT, ...parts);
