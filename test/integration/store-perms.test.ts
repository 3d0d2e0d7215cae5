/**
 * The store's files are the shelfgate user's alone whatever the umask: the database (and its -wal
 * and -shm) 0600, a directory it creates 0700. Runs under umask 022 (the usual shell umask, which
 * gave 0644/0755 before), in this forked test process only.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, silentLogger, type Logger } from '../../src/log';
import { openDatabase } from '../../src/store/db';

const mode = (p: string) => statSync(p).mode & 0o777;

/** A logger that keeps its lines, to assert on the warnings. */
function recordingLogger(): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger('debug', { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { log, lines };
}

let oldUmask: number;
let dir: string;
beforeAll(() => {
  oldUmask = process.umask(0o022);
});
afterAll(() => {
  process.umask(oldUmask);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('store file modes (umask 022)', () => {
  it('creates the directory 0700 and the database, -wal and -shm 0600', () => {
    dir = mkdtempSync(join(tmpdir(), 'sg-perms-'));
    const path = join(dir, 'state', 'sub', 'shelfgate.db');
    const { log } = recordingLogger();
    const db = openDatabase(path, { synchronous: 'full', log });
    db.exec('CREATE TABLE IF NOT EXISTS t (x)'); // a write: the -wal file exists now
    db.prepare('INSERT INTO t VALUES (1)').run();
    expect(mode(join(dir, 'state', 'sub'))).toBe(0o700);
    expect(mode(path)).toBe(0o600);
    expect(mode(`${path}-wal`)).toBe(0o600);
    expect(mode(`${path}-shm`)).toBe(0o600);
    db.close();
  });

  it('tightens an existing database and -wal left 0644 to 0600 and says so; only warns about an open directory', () => {
    dir = mkdtempSync(join(tmpdir(), 'sg-perms-'));
    const state = join(dir, 'state');
    mkdirSync(state, { mode: 0o755 });
    chmodSync(state, 0o755);
    const path = join(state, 'shelfgate.db');
    openDatabase(path, { synchronous: 'full', log: silentLogger() }).close(); // made by this version...
    chmodSync(path, 0o644); // ...then opened up (by hand, a copy, an older version)
    writeFileSync(`${path}-wal`, '');
    chmodSync(`${path}-wal`, 0o644);
    const { log, lines } = recordingLogger();
    const db = openDatabase(path, { synchronous: 'full', log });
    expect(mode(path)).toBe(0o600);
    expect(mode(`${path}-wal`)).toBe(0o600);
    expect(mode(state)).toBe(0o755); // the operator's directory is left as it is...
    expect(lines.find((l) => l.dir === state)?.msg).toMatch(/data directory is accessible by group or others/); // ...with a warning
    expect(lines.filter((l) => typeof l.file === 'string' && /changed to 0600/.test(String(l.msg))).map((l) => l.file)).toEqual([path, `${path}-wal`]);
    db.close();
  });
});
