/**
 * Locations apart from sensing. A location (today a shelf slot, `shelf/slot`) holds its product
 * assignment: which GTIN, and how much one item weighs. Weight channels (the shelves feature) and,
 * next, RFID zones observe locations and report the same kind of stock observation; neither owns
 * the assignment.
 *
 * This module owns the `locations` and `stock` tables (migration 3) and their SQL. Assignments come
 * from the config file (defaults), from central (slot assignments through the version rule), or
 * from a technician (a learned unit weight); stored values win over the config file. Every change
 * is committed first, then announced as `assignmentChanged` on the event bus.
 */
import type { Database, Statement } from 'better-sqlite3';
import type { ShelfConfig } from '../config/schema';
import { ErrorCode, ShelfgateError } from '../errors';
import type { Service } from '../lifecycle';
import type { Logger } from '../log';
import type { Store } from '../store/store';
import type { EventBus } from './events';

export interface Location {
  id: string;
  shelfId: string;
  slotId: string;
  gtin: string | null;
  unitWeightG: number | null;
  /** The fields of the last assignment that carried any that the core does not interpret (central's slot assignment), committed with it; null/absent: none. */
  attributes?: Readonly<Record<string, unknown>> | null;
}

/** A committed stock observation (the row of `stock`). */
export interface StockRow {
  locationId: string;
  count: number | null;
  condition: string | null;
  observedBy: string;
  /** The observer's own fields (the shelves feature keeps `weight_g` here). */
  detail: Record<string, unknown>;
  updatedAt: number;
}

export interface AssignmentInput {
  /** undefined: unchanged; null: the slot is cleared (holds no product). */
  gtin?: string | null;
  /** undefined: unchanged; null: back to the config file's value. */
  unitWeightG?: number | null;
}

export function locationId(shelfId: string, slotId: string): string {
  return `${shelfId}/${slotId}`;
}

/** The stored overrides of one location (NULL = the config file's value). */
interface Overrides {
  gtin: string | null;
  unitWeightG: number | null;
  cleared: boolean;
  attributes: Readonly<Record<string, unknown>> | null;
}

export interface LocationsOptions {
  shelves: readonly ShelfConfig[];
  store: Store;
  events: EventBus;
  log: Logger;
}

export class Locations implements Service {
  readonly name = 'locations';
  private readonly byId = new Map<string, Location>();
  /** Config-file defaults per location. */
  private readonly defaults = new Map<string, { gtin: string | null; unitWeightG: number | null }>();
  private readonly overrides = new Map<string, Overrides>();
  /** Per location, the tail of its chain of assignments (they apply one after another). */
  private readonly tails = new Map<string, Promise<unknown>>();
  private reads: { locations: Statement; stock: Statement } | null = null;
  private readonly writeAssignment: (a: Overrides & { id: string; shelfId: string; slotId: string; by: string; ts: number }) => Promise<void>;
  /** Queues a stock row (coalesced per location within a batch). */
  readonly saveStock: (row: StockRow) => Promise<void>;

  constructor(private readonly o: LocationsOptions) {
    o.store.onOpen((db: Database) => {
      this.reads = {
        locations: db.prepare('SELECT id, gtin, unit_weight_g, cleared, attributes FROM locations'),
        stock: db.prepare('SELECT location_id, count, condition, observed_by, detail, updated_at FROM stock'),
      };
    });
    this.writeAssignment = o.store.defineWrite({
      name: 'locations.assign',
      prepare: (db) => {
        const upsert = db.prepare(
          `INSERT INTO locations (id, shelf_id, slot_id, gtin, unit_weight_g, cleared, assigned_by, updated_at, attributes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET gtin = excluded.gtin, unit_weight_g = excluded.unit_weight_g, cleared = excluded.cleared,
             assigned_by = excluded.assigned_by, updated_at = excluded.updated_at, attributes = excluded.attributes`,
        );
        return (a) => {
          upsert.run(a.id, a.shelfId, a.slotId, a.gtin, a.unitWeightG, a.cleared ? 1 : 0, a.by, a.ts, a.attributes ? JSON.stringify(a.attributes) : null);
        };
      },
    });
    this.saveStock = o.store.defineWrite<StockRow>({
      name: 'locations.saveStock',
      prepare: (db) => {
        const upsert = db.prepare(
          `INSERT INTO stock (location_id, count, condition, observed_by, detail, updated_at) VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT (location_id) DO UPDATE SET count = excluded.count, condition = excluded.condition,
             observed_by = excluded.observed_by, detail = excluded.detail, updated_at = excluded.updated_at`,
        );
        return (r) => {
          upsert.run(r.locationId, r.count, r.condition, r.observedBy, JSON.stringify(r.detail), r.updatedAt);
        };
      },
      coalesce: { key: (r) => r.locationId },
    });
  }

  async start(): Promise<void> {
    this.byId.clear();
    this.overrides.clear();
    for (const r of this.reads!.locations.all() as Array<{ id: string; gtin: string | null; unit_weight_g: number | null; cleared: number; attributes: string | null }>)
      this.overrides.set(r.id, { gtin: r.gtin, unitWeightG: r.unit_weight_g, cleared: r.cleared === 1, attributes: parseAttributes(r.attributes) });
    for (const shelf of this.o.shelves) {
      for (const slot of shelf.slots) {
        const id = locationId(shelf.id, slot.id);
        this.defaults.set(id, { gtin: slot.gtin ?? null, unitWeightG: slot.unit_weight_g ?? null });
        this.byId.set(id, { id, shelfId: shelf.id, slotId: slot.id, ...this.effective(id) });
      }
    }
  }

  /** Overrides win over the config file; a slot central cleared holds nothing. */
  private effective(id: string): { gtin: string | null; unitWeightG: number | null; attributes: Readonly<Record<string, unknown>> | null } {
    const def = this.defaults.get(id)!;
    const o = this.overrides.get(id);
    const attributes = o?.attributes ?? null;
    if (o?.cleared) return { gtin: null, unitWeightG: null, attributes };
    return { gtin: o?.gtin ?? def.gtin, unitWeightG: o?.unitWeightG ?? def.unitWeightG, attributes };
  }

  async stop(): Promise<void> {}

  get(id: string): Location | undefined {
    const l = this.byId.get(id);
    return l && { ...l };
  }

  list(): Location[] {
    return [...this.byId.values()].map((l) => ({ ...l }));
  }


  /** The last committed stock per location. */
  loadStock(): StockRow[] {
    return (this.reads!.stock.all() as Array<{ location_id: string; count: number | null; condition: string | null; observed_by: string; detail: string | null; updated_at: number }>).map(
      (r) => ({ locationId: r.location_id, count: r.count, condition: r.condition, observedBy: r.observed_by, detail: r.detail ? (JSON.parse(r.detail) as Record<string, unknown>) : {}, updatedAt: r.updated_at }),
    );
  }

  /**
   * Changes what a location holds; committed, then `assignmentChanged` is emitted (listeners, e.g.
   * the weight channel observing it, recount synchronously). Throws NOT_FOUND for an unknown
   * location and REQUEST_INVALID for an impossible unit weight. `attributes` (fields of the
   * assignment the core does not interpret) are committed with the location and ride on the
   * event; an assignment without any keeps the ones stored.
   */
  async assign(shelfId: string, slotId: string, a: AssignmentInput, by: string, attributes?: Readonly<Record<string, unknown>>): Promise<Location> {
    const id = locationId(shelfId, slotId);
    const loc = this.byId.get(id);
    if (!loc) throw new ShelfgateError(ErrorCode.NOT_FOUND, `no slot ${shelfId}/${slotId}`);
    if (a.unitWeightG !== undefined && a.unitWeightG !== null && !(Number.isFinite(a.unitWeightG) && a.unitWeightG > 0 && a.unitWeightG <= 1_000_000))
      throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `unit weight must be a number of grams > 0 and <= 1000000 (got ${String(a.unitWeightG)})`);
    // One change of a location at a time: each builds on the committed result of the one before
    // (central's new GTIN and a technician's unit weight in the same batch window must both stay).
    const before = this.tails.get(id) ?? Promise.resolve();
    const run = before.then(() => this.applyAssignment(id, shelfId, slotId, loc, a, by, attributes));
    const tail = run.catch(() => undefined);
    this.tails.set(id, tail);
    void tail.then(() => {
      if (this.tails.get(id) === tail) this.tails.delete(id);
    });
    return run;
  }

  private async applyAssignment(
    id: string,
    shelfId: string,
    slotId: string,
    loc: Location,
    a: AssignmentInput,
    by: string,
    attributes: Readonly<Record<string, unknown>> | undefined,
  ): Promise<Location> {
    const prev = this.overrides.get(id) ?? { gtin: null, unitWeightG: null, cleared: false, attributes: null };
    const keptAttributes = attributes ?? prev.attributes;
    // gtin null: central cleared the slot (docs/central-api.yaml SlotAssignment); undefined: unchanged.
    const next: Overrides =
      a.gtin === null
        ? { gtin: null, unitWeightG: null, cleared: true, attributes: keptAttributes }
        : {
            gtin: a.gtin === undefined ? prev.gtin : a.gtin,
            unitWeightG: a.unitWeightG === undefined ? prev.unitWeightG : a.unitWeightG,
            cleared: a.gtin === undefined ? prev.cleared : false,
            attributes: keptAttributes,
          };
    await this.writeAssignment({ id, shelfId, slotId, ...next, by, ts: Date.now() });
    this.overrides.set(id, next);
    const { gtin, unitWeightG } = this.effective(id);
    loc.gtin = gtin;
    loc.unitWeightG = unitWeightG;
    loc.attributes = keptAttributes;
    this.o.events.emit('assignmentChanged', { locationId: id, shelfId, slotId, gtin, unitWeightG, by, ...(attributes ? { attributes } : {}) });
    return { ...loc };
  }
}

function parseAttributes(json: string | null): Readonly<Record<string, unknown>> | null {
  if (json === null) return null;
  try {
    const v = JSON.parse(json) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? Object.freeze(v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
