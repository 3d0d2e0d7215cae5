import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** The installation root: the nearest folder above this file holding package.json (works from src/ under vitest and from dist/src/). */
export function repoRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${__dirname}: shelfgate is not installed as a package`);
    dir = up;
  }
}

/** shelfgate's version from package.json. */
export function packageVersion(): string {
  return (JSON.parse(readFileSync(join(repoRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}
