/** logd's version, from package.json. */
import { readFileSync } from 'node:fs';
import { rootPath } from './paths';

export const VERSION: string = (JSON.parse(readFileSync(rootPath('package.json'), 'utf8')) as { version: string }).version;
