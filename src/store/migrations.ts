/**
 * Schema migrations of the core and every feature, in one version order.
 *
 * - Each migration has a version number unique across the core and all features (a feature takes
 *   the next free number when it adds one). Versions are applied in increasing order.
 * - The table `schema_migrations` records which versions a database has; `PRAGMA user_version`
 *   is the highest of them. A gateway built from a subset of the features has gaps in its list,
 *   and a feature added later gets its (lower-numbered) migrations applied then: the ledger, not
 *   the highest number, decides what is missing. Databases from before the ledger (schema 1-2)
 *   had every version up to their user_version.
 * - Each migration runs in its own transaction together with its ledger row and the
 *   `user_version` bump, so a crash leaves the database before it or after it, never in between.
 * - A database that holds a version this build does not know (a higher user_version, or a ledger
 *   row of an unknown migration) was written by a newer shelfgate or one with another feature:
 *   it is refused (STORAGE_MIGRATION), never "downgraded" or recreated.
 * - `PRAGMA application_id` marks the file as shelfgate's, so a storage path that points at some
 *   other program's SQLite file is refused instead of getting our tables added to it.
 * - Never edit a migration that has shipped: add a new one.
 */
import { randomUUID } from 'node:crypto';
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
  {
    version: 5,
    description: "the database's epoch (docs/central-api.yaml, Epochs)",
    // A random UUID made with the database and never changed: central keeps seqs per (store, epoch),
    // so a replaced gateway starting at seq 1 again is a new seq space, not 49 of 49 seq_conflicts.
    // A database that already sent seqs under contract 1.0 keeps the legacy epoch "": a new epoch
    // would start a seq space whose first seqs were sent under the old one.
    up: (db) => {
      const sent = db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").get() as { seq: number } | undefined;
      db.prepare("INSERT INTO meta (key, value) VALUES ('store.epoch', ?) ON CONFLICT (key) DO NOTHING").run(sent && sent.seq > 0 ? '' : randomUUID());
    },
  },
  {
    version: 6,
    description: "locations: the fields of central's last slot assignment the core does not interpret (e.g. label MACs)",
    // Kept with the location, committed with it, so a feature reading them (the labels feature binds
    // the slot's labels) can rebuild what central asked for after a crash: the slot's version is
    // already stored and central will not send the assignment again.
    up: `ALTER TABLE locations ADD COLUMN attributes TEXT;`,
  },
];

export interface MigrationResult {
  from: number;
  to: number;
}

/**
 * Brings `db` to the newest schema version. Throws STORAGE_MIGRATION if the file was written by a
 * newer shelfgate, belongs to another program, or a migration fails (that migration is rolled back).
 */
export function migrate(db: Database, log: Logger, migrations: readonly Migration[] = MIGRATIONS): MigrationResult {
  const known = [...migrations].sort((x, y) => x.version - y.version);
  known.forEach((m, i) => {
    if (!Number.isInteger(m.version) || m.version < 1) throw new Error(`migration version ${m.version} (${m.description}) is not a positive integer`);
    if (i > 0 && known[i - 1]!.version === m.version) throw new Error(`two migrations have version ${m.version}: ${known[i - 1]!.description} / ${m.description}`);
  });
  const latest = known.at(-1)?.version ?? 0;
  const from = db.pragma('user_version', { simple: true }) as number;
  const appId = db.pragma('application_id', { simple: true }) as number;

  if (appId !== 0 && appId !== APPLICATION_ID) {
    throw new ShelfgateError(
      ErrorCode.STORAGE_MIGRATION,
      `${db.name} is not a shelfgate database (application_id ${appId}); check storage.path`,
      { path: db.name, applicationId: appId },
    );
  }
  const newer = (found: number | string): ShelfgateError =>
    new ShelfgateError(
      ErrorCode.STORAGE_MIGRATION,
      `${db.name} has schema version ${found} but this shelfgate knows only ${known.map((m) => m.version).join(', ') || 'none'}: it was written by a newer shelfgate ` +
        '(or one with another feature). Install that version again (or restore a backup); refusing to open it to avoid losing data',
      { path: db.name, found, known: latest },
    );
  if (from > latest) throw newer(from);
  if (from === 0) {
    // The ledger is created in its own transaction before migration 1: a first start killed (or a
    // migration 1 that failed) in between leaves only that table, and the file is still ours, empty.
    const tables = db.prepare("SELECT count(*) AS n FROM sqlite_schema WHERE type = 'table' AND name <> 'schema_migrations'").get() as { n: number };
    if (tables.n > 0) {
      throw new ShelfgateError(
        ErrorCode.STORAGE_MIGRATION,
        `${db.name} already holds ${tables.n} tables but no shelfgate schema version; it is not a shelfgate database. Check storage.path`,
        { path: db.name, tables: tables.n },
      );
    }
  }

  // The ledger: created (and, for a database from before it, filled with 1..user_version) in one transaction.
  db.transaction(() => {
    const has = db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'").get();
    if (has) return;
    db.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at INTEGER NOT NULL)');
    const ins = db.prepare('INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)');
    for (let v = 1; v <= from; v++) ins.run(v, known.find((m) => m.version === v)?.description ?? 'before the migration ledger', Date.now());
  })();
  const applied = new Set((db.prepare('SELECT version FROM schema_migrations').all() as Array<{ version: number }>).map((r) => r.version));
  const unknown = [...applied].filter((v) => !known.some((m) => m.version === v));
  if (unknown.length > 0) throw newer(unknown.join(', '));

  const record = db.prepare('INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)');
  let to = from;
  for (const m of known) {
    if (applied.has(m.version)) continue;
    const t0 = Date.now();
    try {
      db.transaction(() => {
        if (typeof m.up === 'string') db.exec(m.up);
        else m.up(db);
        record.run(m.version, m.description, Date.now());
        db.pragma(`application_id = ${APPLICATION_ID}`);
        if (m.version > to) db.pragma(`user_version = ${m.version}`);
      })();
    } catch (e) {
      throw new ShelfgateError(
        ErrorCode.STORAGE_MIGRATION,
        `migration of ${db.name} to schema version ${m.version} (${m.description}) failed and was rolled back: ${(e as Error).message}`,
        { path: db.name, version: m.version },
        { cause: e },
      );
    }
    to = Math.max(to, m.version);
    log.info({ version: m.version, description: m.description, ms: Date.now() - t0 }, 'database schema migrated');
  }
  return { from, to };
}
