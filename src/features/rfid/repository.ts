/**
 * The RFID feature's own table: the last committed count per (zone, GTIN). It gives zone_count
 * its `previous_count` (null only for the first count of a GTIN in a zone since the database was
 * created, as the contract says) and lets a restarted gateway compare what it counts again with
 * what it reported before, instead of reporting every zone as emptied and refilled. One row per
 * (zone, GTIN) ever counted there; a row is kept at count 0. Its SQL lives only here.
 */
import type { Statement } from 'better-sqlite3';
import type { Migration } from '../../store/migrations';
import type { Store } from '../../store/store';

export const RFID_SCHEMA_VERSION = 13;

/** Tags present per zone, so a restart does not report every tag as a new arrival (ZonePresenceRepository). */
export const RFID_PRESENCE_SCHEMA_VERSION = 14;

export const RFID_MIGRATIONS: readonly Migration[] = [
  {
    version: RFID_SCHEMA_VERSION,
    description: 'rfid: last committed tag count per zone and GTIN',
    up: `
      CREATE TABLE rfid_zone_counts (
        zone_id    TEXT NOT NULL,
        gtin       TEXT NOT NULL,
        count      INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (zone_id, gtin)
      ) WITHOUT ROWID;
    `,
  },
  {
    version: RFID_PRESENCE_SCHEMA_VERSION,
    description: 'rfid: tags present per zone (restored at start: no repeated arrivals)',
    up: `
      CREATE TABLE rfid_presence (
        epc     TEXT PRIMARY KEY,
        zone_id TEXT NOT NULL,
        gtin    TEXT,
        serial  TEXT,
        since   INTEGER NOT NULL
      ) WITHOUT ROWID;
    `,
  },
];

export interface ZoneCountRow {
  zoneId: string;
  gtin: string;
  count: number;
  updatedAt: number;
}

export class ZoneCountRepository {
  private selectAll: Statement | null = null;
  private selectOne: Statement | null = null;
  /** Queues a count (committed with the writer's next batch, coalesced per zone and GTIN). */
  readonly save: (r: ZoneCountRow) => Promise<void>;

  constructor(store: Store) {
    store.onOpen((db) => {
      this.selectAll = db.prepare('SELECT zone_id, gtin, count, updated_at FROM rfid_zone_counts');
      this.selectOne = db.prepare('SELECT count FROM rfid_zone_counts WHERE zone_id = ? AND gtin = ?');
    });
    this.save = store.defineWrite<ZoneCountRow>({
      name: 'rfid.saveZoneCount',
      prepare: (db) => {
        const upsert = db.prepare(
          `INSERT INTO rfid_zone_counts (zone_id, gtin, count, updated_at) VALUES (?, ?, ?, ?)
           ON CONFLICT (zone_id, gtin) DO UPDATE SET count = excluded.count, updated_at = excluded.updated_at`,
        );
        return (r) => {
          upsert.run(r.zoneId, r.gtin, r.count, r.updatedAt);
        };
      },
      coalesce: { key: (r) => `${r.zoneId}\u0000${r.gtin}` },
    });
  }

  /** Every committed count (rows at 0 included). */
  load(): ZoneCountRow[] {
    return (this.selectAll!.all() as Array<{ zone_id: string; gtin: string; count: number; updated_at: number }>).map((r) => ({ zoneId: r.zone_id, gtin: r.gtin, count: r.count, updatedAt: r.updated_at }));
  }

  /** The committed count of one GTIN in one zone, or null if it was never counted there. */
  get(zoneId: string, gtin: string): number | null {
    const r = this.selectOne!.get(zoneId, gtin) as { count: number } | undefined;
    return r ? r.count : null;
  }
}

export interface PresenceRow {
  epc: string;
  /** The zone the tag is present in; null: it departed (the row is deleted). */
  zoneId: string | null;
  gtin: string | null;
  serial: string | null;
  since: number;
}

/**
 * Which zone each present tag is in, committed with the arrival or departure event that changed
 * it (both are queued in the same writer turn, so one batch holds both). At start the RFID service
 * restores these tags as present: a tag still there when the readers read again is no new
 * arrival, and one that left while the gateway was down departs after the zone's departure time.
 * One row per present tag (bounded by rfid.max_tags); a departure deletes it.
 */
export class ZonePresenceRepository {
  private selectAll: Statement | null = null;
  readonly save: (r: PresenceRow) => Promise<void>;

  constructor(store: Store) {
    store.onOpen((db) => {
      this.selectAll = db.prepare('SELECT epc, zone_id, gtin, serial, since FROM rfid_presence');
    });
    this.save = store.defineWrite<PresenceRow>({
      name: 'rfid.savePresence',
      prepare: (db) => {
        const upsert = db.prepare(
          `INSERT INTO rfid_presence (epc, zone_id, gtin, serial, since) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (epc) DO UPDATE SET zone_id = excluded.zone_id, gtin = excluded.gtin, serial = excluded.serial, since = excluded.since`,
        );
        const del = db.prepare('DELETE FROM rfid_presence WHERE epc = ?');
        return (r) => {
          if (r.zoneId === null) del.run(r.epc);
          else upsert.run(r.epc, r.zoneId, r.gtin, r.serial, r.since);
        };
      },
      // the newest state of a tag wins within a batch (an arrival after a departure, a hand-over)
      coalesce: { key: (r) => r.epc },
    });
  }

  /** Every present tag (a stored row always has its zone). */
  load(): Array<PresenceRow & { zoneId: string }> {
    return (this.selectAll!.all() as Array<{ epc: string; zone_id: string; gtin: string | null; serial: string | null; since: number }>).map((r) => ({ epc: r.epc, zoneId: r.zone_id, gtin: r.gtin, serial: r.serial, since: r.since }));
  }
}
