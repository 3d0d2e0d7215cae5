/**
 * Schema migrations, tracked with `PRAGMA user_version`.
 *
 * - Migrations are an ordered list, versions 1..N without gaps; each one runs in its own
 *   transaction together with the `user_version` bump, so a crash leaves the database at the
 *   previous version or the next one, never in between.
 * - A database whose user_version is higher than the newest migration known here was written by a
 *   newer shelfgate: it is refused (STORAGE_MIGRATION), never "downgraded" or recreated.
 * - `PRAGMA application_id` marks the file as shelfgate's, so a storage path that points at some
 *   other program's SQLite file is refused instead of getting our tables added to it.
 * - Never edit a migration that has shipped: add a new one.
 */
import type { Database } from 'better-sqlite3';
import { ErrorCode, ShelfgateError } from '../errors';
import type { Logger } from '../log';

export interface Migration {
  readonly version: number;
  readonly description: string;
  readonly up: string | ((db: Database) => void);
}

/** 'SGTE' as a 32-bit big-endian integer: identifies a shelfgate database file (`PRAGMA application_id`). */
export const APPLICATION_ID = 0x53475445;

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'devices, slots, outbox, meta',
    up: `
      -- Device registry: one row per sensor (id like 'bus-a/3'), last known availability.
      CREATE TABLE devices (
        id         TEXT PRIMARY KEY,
        kind       TEXT,
        model      TEXT,
        path       TEXT,
        online     INTEGER,
        reason     TEXT,
        last_seen  INTEGER,          -- ms epoch of the last report while online
        updated_at INTEGER           -- ms epoch of the last availability change
      );

      -- Current shelf state, plus calibration overrides set over MQTT/CLI (NULL = use the config file).
      CREATE TABLE slots (
        shelf_id      TEXT NOT NULL,
        slot_id       TEXT NOT NULL,
        gtin          TEXT,
        unit_weight_g REAL,
        tare_g        REAL,
        tolerance_g   REAL,
        count         INTEGER,
        weight_g      REAL,
        condition     TEXT,
        updated_at    INTEGER,
        calib_version INTEGER,
        PRIMARY KEY (shelf_id, slot_id)
      );

      -- Append-only stock events waiting for the central service. seq is the per-store sequence:
      -- AUTOINCREMENT so it stays monotonic and is never reused after acknowledged rows are deleted.
      CREATE TABLE outbox (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id   TEXT NOT NULL UNIQUE,
        store_id   TEXT,
        device_id  TEXT,
        kind       TEXT,
        priority   INTEGER,
        payload    TEXT,             -- JSON
        bytes      INTEGER,          -- UTF-8 size of payload
        created_at INTEGER           -- ms epoch
      );
      CREATE INDEX outbox_priority_seq ON outbox (priority, seq);
      CREATE INDEX outbox_device_seq ON outbox (device_id, seq);

      -- Cursors and counters (central-sync cursor, drop counters).
      CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT
      );
    `,
  },
  {
    version: 2,
    description: 'central sync: prices, slot versions, parked events, pending acks, declared seq gaps',
    up: `
      -- Prices from central's change feed (src/sync/prices.ts): the newest version applied per GTIN.
      CREATE TABLE prices (
        gtin       TEXT PRIMARY KEY,    -- GTIN-14 as in the feed
        price      INTEGER NOT NULL,    -- minor units
        currency   TEXT NOT NULL,
        promotion  TEXT,                -- JSON or NULL
        version    INTEGER NOT NULL,
        change_id  TEXT NOT NULL,
        applied_at INTEGER NOT NULL     -- ms epoch
      );

      -- Newest slot-assignment version applied per (shelf, slot) (the version rule).
      CREATE TABLE slot_versions (
        shelf_id   TEXT NOT NULL,
        slot_id    TEXT NOT NULL,
        version    INTEGER NOT NULL,
        change_id  TEXT,
        applied_at INTEGER,             -- ms epoch
        PRIMARY KEY (shelf_id, slot_id)
      );

      -- Events central rejected for good: kept aside for inspection, never resent.
      CREATE TABLE parked (
        event_id   TEXT PRIMARY KEY,
        seq        INTEGER NOT NULL,
        device_id  TEXT,
        kind       TEXT,
        priority   INTEGER,
        payload    TEXT,
        created_at INTEGER,             -- ms epoch
        error      TEXT NOT NULL,       -- JSON {code, message}
        parked_at  INTEGER NOT NULL     -- ms epoch
      );

      -- Acknowledgements of processed changes not yet confirmed by central (survive a crash).
      CREATE TABLE pending_acks (
        change_id  TEXT PRIMARY KEY,
        status     TEXT NOT NULL,       -- applied | stale | invalid
        applied_at TEXT NOT NULL,       -- RFC 3339
        detail     TEXT
      );

      -- Seq ranges removed from the outbox by the buffer policy, to declare to central as gaps.
      CREATE TABLE sync_gaps (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        from_seq INTEGER NOT NULL,
        to_seq   INTEGER NOT NULL,
        reason   TEXT NOT NULL          -- compacted | dropped_buffer_full
      );
    `,
  },
  {
    version: 3,
    description: 'locations apart from sensing: product assignments and committed stock per location',
    up: `
      -- A location (today a shelf slot, id 'shelf/slot') and the product it holds: overrides of the
      -- config file (NULL = the config file's value), or cleared = 1 when central emptied the slot.
      -- Weight channels and RFID zones observe locations; they do not own them.
      CREATE TABLE locations (
        id            TEXT PRIMARY KEY,
        shelf_id      TEXT NOT NULL,
        slot_id       TEXT NOT NULL,
        gtin          TEXT,
        unit_weight_g REAL,
        cleared       INTEGER NOT NULL DEFAULT 0,
        assigned_by   TEXT,             -- 'central', 'calibration', or a username
        updated_at    INTEGER           -- ms epoch
      );

      -- The last committed stock observation per location, whoever observed it.
      CREATE TABLE stock (
        location_id TEXT PRIMARY KEY,
        count       INTEGER,
        condition   TEXT,
        observed_by TEXT NOT NULL,      -- the feature: 'weight', 'rfid', ...
        detail      TEXT,               -- JSON, the observer's own fields (weight_g, ...)
        updated_at  INTEGER NOT NULL    -- ms epoch
      );

      INSERT INTO locations (id, shelf_id, slot_id, gtin, unit_weight_g, assigned_by, updated_at)
        SELECT shelf_id || '/' || slot_id, shelf_id, slot_id, gtin, unit_weight_g, 'calibration', updated_at
        FROM slots WHERE gtin IS NOT NULL OR unit_weight_g IS NOT NULL;
      INSERT INTO stock (location_id, count, condition, observed_by, detail, updated_at)
        SELECT shelf_id || '/' || slot_id, count, condition, 'weight', json_object('weight_g', weight_g), updated_at
        FROM slots WHERE updated_at IS NOT NULL;
    `,
  },
];

/** The schema version this build writes. */
export const SCHEMA_VERSION = MIGRATIONS.length === 0 ? 0 : MIGRATIONS[MIGRATIONS.length - 1]!.version;

export interface MigrationResult {
  from: number;
  to: number;
}

/**
 * Brings `db` to the newest schema version. Throws STORAGE_MIGRATION if the file was written by a
 * newer shelfgate, belongs to another program, or a migration fails (that migration is rolled back).
 */
export function migrate(db: Database, log: Logger, migrations: readonly Migration[] = MIGRATIONS): MigrationResult {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`migration list is not 1..N in order: index ${i} has version ${m.version}`);
  });
  const latest = migrations.length;
  const from = db.pragma('user_version', { simple: true }) as number;
  const appId = db.pragma('application_id', { simple: true }) as number;

  if (appId !== 0 && appId !== APPLICATION_ID) {
    throw new ShelfgateError(
      ErrorCode.STORAGE_MIGRATION,
      `${db.name} is not a shelfgate database (application_id ${appId}); check storage.path`,
      { path: db.name, applicationId: appId },
    );
  }
  if (from > latest) {
    throw new ShelfgateError(
      ErrorCode.STORAGE_MIGRATION,
      `${db.name} has schema version ${from} but this shelfgate knows only up to ${latest}: it was written by a newer shelfgate. ` +
        'Install that version again (or restore a backup); refusing to open it to avoid losing data',
      { path: db.name, found: from, known: latest },
    );
  }
  if (from === 0) {
    const tables = db.prepare("SELECT count(*) AS n FROM sqlite_schema WHERE type = 'table'").get() as { n: number };
    if (tables.n > 0) {
      throw new ShelfgateError(
        ErrorCode.STORAGE_MIGRATION,
        `${db.name} already holds ${tables.n} tables but no shelfgate schema version; it is not a shelfgate database. Check storage.path`,
        { path: db.name, tables: tables.n },
      );
    }
  }

  for (const m of migrations) {
    if (m.version <= from) continue;
    const t0 = Date.now();
    try {
      db.transaction(() => {
        if (typeof m.up === 'string') db.exec(m.up);
        else m.up(db);
        db.pragma(`application_id = ${APPLICATION_ID}`);
        db.pragma(`user_version = ${m.version}`);
      })();
    } catch (e) {
      throw new ShelfgateError(
        ErrorCode.STORAGE_MIGRATION,
        `migration of ${db.name} to schema version ${m.version} (${m.description}) failed and was rolled back: ${(e as Error).message}`,
        { path: db.name, version: m.version },
        { cause: e },
      );
    }
    log.info({ version: m.version, description: m.description, ms: Date.now() - t0 }, 'database schema migrated');
  }
  return { from, to: Math.max(from, latest) };
}
