/**
 * Opens shelfgate's SQLite file with the settings the Store relies on (see store.ts for what the
 * durability settings guarantee).
 *
 * - journal_mode=WAL: readers never block the writer, commits are appends to the -wal file.
 * - synchronous set explicitly from config (FULL or NORMAL): WAL on a fresh better-sqlite3
 *   connection would leave it at FULL, and we want the configured level, stated, not implied.
 * - busy_timeout: a second process (the CLI reading status) holding a lock briefly makes us wait
 *   instead of failing with SQLITE_BUSY (the "database is locked" loop of ThingsBoard #1446).
 * - foreign_keys=ON, wal_autocheckpoint (pages), journal_size_limit so the -wal file is truncated
 *   back after checkpoints instead of staying at its high-water mark on a small SD card.
 * - `PRAGMA quick_check` at start, not `integrity_check`: quick_check verifies every page, b-tree
 *   structure and record format but skips checking that indexes match their tables, which makes
 *   it O(N) instead of O(N log N); a full integrity_check of a few hundred MB on an SD card takes
 *   minutes and would hold up the daemon's start (and systemd's start timeout). Run
 *   `sqlite3 FILE 'PRAGMA integrity_check'` by hand when in doubt.
 * - A damaged file, or one that is not a database at all, is refused with STORAGE_INTEGRITY and
 *   left untouched. It is never silently recreated: that would throw away the events not yet sent
 *   (ThingsBoard #2124). The operator moves the file aside (or restores a backup) and restarts.
 */
import { accessSync, chmodSync, closeSync, constants as fsConstants, existsSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { ErrorCode, ShelfgateError } from '../errors';
import type { Logger } from '../log';
import { migrate, type Migration } from './migrations';

export type Synchronous = 'full' | 'normal';

export interface OpenOptions {
  synchronous: Synchronous;
  log: Logger;
  /** How long to wait for a lock held by another connection. Default 5000 ms. */
  busyTimeoutMs?: number;
  /** WAL pages before an automatic checkpoint (SQLite's default is 1000, about 4 MB). */
  walAutocheckpointPages?: number;
  /** Default: the core's migrations (src/store/migrations.ts). */
  migrations?: readonly Migration[];
}

/** `PRAGMA synchronous` values as SQLite reports them. */
export const SYNCHRONOUS_LEVEL: Readonly<Record<Synchronous, number>> = { normal: 1, full: 2 };

/** SQLite result codes that mean the file itself is damaged or not a database. */
const CORRUPTION_CODES = new Set(['SQLITE_NOTADB', 'SQLITE_CORRUPT', 'SQLITE_CORRUPT_INDEX', 'SQLITE_CORRUPT_SEQUENCE', 'SQLITE_CORRUPT_VTAB']);

const QUICK_CHECK_MAX_ERRORS = 20;

export function isCorruptionError(e: unknown): boolean {
  return e instanceof Database.SqliteError && (CORRUPTION_CODES.has(e.code) || e.code.startsWith('SQLITE_CORRUPT'));
}

function integrityError(path: string, problems: string[], cause?: unknown): ShelfgateError {
  return new ShelfgateError(
    ErrorCode.STORAGE_INTEGRITY,
    `database ${path} is damaged or is not a shelfgate database (${problems.slice(0, 3).join('; ')}). ` +
      'It was left untouched: move it aside or restore a backup, then start again',
    { path, problems },
    cause === undefined ? undefined : { cause },
  );
}

/** Owner-only modes of the store: the events and the stock of the store are nobody else's business. */
export const DB_FILE_MODE = 0o600;
export const DB_DIR_MODE = 0o700;

/**
 * The database file is 0600 and a directory we create is 0700, whatever the umask (outside systemd
 * the usual 022 would make them 0644 and 0755). The file is created here, before SQLite opens it
 * (SQLite would create it 0644 & ~umask; an empty file is an empty database to SQLite), and an
 * existing file that is group/other accessible is chmod'ed back to 0600: it is ours alone. An
 * existing directory is only warned about, not changed: it may be shared or set up by the operator
 * (systemd's StateDirectoryMode=0700 makes /var/lib/shelfgate 0700 itself).
 */
function protectFiles(path: string, log: Logger): void {
  const dir = dirname(path);
  if (!existsSync(dir)) {
    mkdirSync(dir, { recursive: true, mode: DB_DIR_MODE });
    chmodSync(dir, DB_DIR_MODE);
  } else {
    const mode = statSync(dir).mode & 0o777;
    if (mode & 0o077) log.warn({ dir, mode: mode.toString(8).padStart(4, '0') }, 'the data directory is accessible by group or others: chmod 700 it (the database file itself is kept 0600)');
  }
  if (!existsSync(path)) {
    try {
      closeSync(openSync(path, fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY, DB_FILE_MODE));
      chmodSync(path, DB_FILE_MODE); // exactly 0600, even under a umask that took the owner's bits
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
  tightenFile(path, log);
}

/** chmod 0600 an existing file of the store if group or others have any access; a missing file is fine. */
function tightenFile(file: string, log: Logger): void {
  let mode: number;
  try {
    mode = statSync(file).mode & 0o777;
  } catch {
    return;
  }
  if ((mode & 0o077) === 0) return;
  chmodSync(file, DB_FILE_MODE);
  log.warn({ file, was: mode.toString(8).padStart(4, '0') }, 'database file was accessible by group or others: changed to 0600');
}

/**
 * Opens (creating if absent) the database at `path`, checks it and migrates it to the current
 * schema. Throws ShelfgateError STORAGE_INTEGRITY (damaged / not a database) or STORAGE_MIGRATION
 * (newer or foreign schema); a directory that cannot be created or written throws the fs error
 * (EACCES, EROFS, ...) unchanged so the daemon can map it to an exit code.
 */
export function openDatabase(path: string, opts: OpenOptions): Database.Database {
  const { log } = opts;
  const dir = dirname(path);
  protectFiles(path, log);
  // WAL needs to create <path>-wal and <path>-shm beside the file: fail early with EACCES/EROFS.
  accessSync(dir, fsConstants.R_OK | fsConstants.W_OK);

  let db: Database.Database;
  try {
    db = new Database(path);
    // SQLite creates -wal and -shm with the database file's mode (0600 now); ones left by an
    // older version may be wider.
    for (const f of [`${path}-wal`, `${path}-shm`]) tightenFile(f, log);
  } catch (e) {
    if (isCorruptionError(e)) throw integrityError(path, [(e as Error).message], e);
    throw e;
  }
  try {
    db.pragma(`busy_timeout = ${opts.busyTimeoutMs ?? 5000}`);
    // Check before anything writes to the file (switching to WAL rewrites the header), so a
    // damaged file is left exactly as found. A garbage file fails here with SQLITE_NOTADB.
    const t0 = Date.now();
    const rows = db.pragma(`quick_check(${QUICK_CHECK_MAX_ERRORS})`) as Array<{ quick_check: string }>;
    const problems = rows.map((r) => r.quick_check).filter((p) => p !== 'ok');
    if (problems.length > 0) throw integrityError(path, problems);
    log.debug({ path, ms: Date.now() - t0 }, 'database quick_check ok');

    const mode = db.pragma('journal_mode = WAL', { simple: true }) as string;
    if (mode !== 'wal') log.warn({ path, journal_mode: mode }, 'could not switch the database to WAL; using the rollback journal');
    db.pragma(`synchronous = ${opts.synchronous.toUpperCase()}`);
    db.pragma('foreign_keys = ON');
    db.pragma(`wal_autocheckpoint = ${opts.walAutocheckpointPages ?? 1000}`);
    db.pragma(`journal_size_limit = ${64 * 1024 * 1024}`);

    const { from, to } = migrate(db, log, opts.migrations);
    log.info({ path, synchronous: opts.synchronous, journal_mode: mode, schema: to, migrated_from: from === to ? undefined : from }, 'database open');
    return db;
  } catch (e) {
    try {
      db.close();
    } catch {
      // already unusable; the original error is the one to report
    }
    if (isCorruptionError(e)) throw integrityError(path, [(e as Error).message], e);
    throw e;
  }
}
