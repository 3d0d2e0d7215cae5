/**
 * The shelves feature's own table: how each weighed slot is read (tare, tolerance), apart from what
 * the slot holds (core/locations.ts). Its SQL lives only here.
 */
import type { Statement } from 'better-sqlite3';
import type { Migration } from '../../store/migrations';
import type { Store } from '../../store/store';

/** Feature migrations share the core's one `user_version` order (src/features/index.ts composes them). */
export const SHELVES_MIGRATIONS: readonly Migration[] = [
  {
    version: 4,
    description: 'shelves: weight calibration per location (tare, tolerance); the old slots table retired',
    up: `
      CREATE TABLE weight_calibration (
        location_id   TEXT PRIMARY KEY,    -- 'shelf/slot' (core locations)
        tare_g        REAL,                -- NULL = the config file's value
        tolerance_g   REAL,
        calib_version INTEGER NOT NULL DEFAULT 0
      );
      INSERT INTO weight_calibration (location_id, tare_g, tolerance_g, calib_version)
        SELECT shelf_id || '/' || slot_id, tare_g, tolerance_g, coalesce(calib_version, 0)
        FROM slots WHERE tare_g IS NOT NULL OR tolerance_g IS NOT NULL OR coalesce(calib_version, 0) > 0;
      -- Migration 3 moved assignments and stock to locations/stock; this moved calibration.
      DROP TABLE slots;
    `,
  },
];

export interface CalibrationRow {
  locationId: string;
  tareG: number | null;
  toleranceG: number | null;
  calibVersion: number;
}

/** undefined: unchanged; null: back to the config file's value. */
export interface CalibrationChange {
  tareG?: number | null;
  toleranceG?: number | null;
}

export class CalibrationRepository {
  private select: Statement | null = null;
  /** Queues a change (committed with the writer's next batch); increments calib_version. */
  readonly save: (c: CalibrationChange & { locationId: string }) => Promise<void>;

  constructor(store: Store) {
    store.onOpen((db) => {
      this.select = db.prepare('SELECT location_id, tare_g, tolerance_g, calib_version FROM weight_calibration');
    });
    this.save = store.defineWrite({
      name: 'shelves.saveCalibration',
      prepare: (db) => {
        const upsert = db.prepare(
          `INSERT INTO weight_calibration (location_id, tare_g, tolerance_g, calib_version) VALUES (@id, @tare_g, @tolerance_g, 1)
           ON CONFLICT (location_id) DO UPDATE SET
             tare_g      = CASE WHEN @set_tare THEN excluded.tare_g ELSE tare_g END,
             tolerance_g = CASE WHEN @set_tolerance THEN excluded.tolerance_g ELSE tolerance_g END,
             calib_version = calib_version + 1`,
        );
        return (c) => {
          upsert.run({
            id: c.locationId,
            tare_g: c.tareG ?? null,
            tolerance_g: c.toleranceG ?? null,
            set_tare: c.tareG === undefined ? 0 : 1,
            set_tolerance: c.toleranceG === undefined ? 0 : 1,
          });
        };
      },
    });
  }

  load(): Map<string, CalibrationRow> {
    const rows = this.select!.all() as Array<{ location_id: string; tare_g: number | null; tolerance_g: number | null; calib_version: number }>;
    return new Map(rows.map((r) => [r.location_id, { locationId: r.location_id, tareG: r.tare_g, toleranceG: r.tolerance_g, calibVersion: r.calib_version }]));
  }
}
