/**
 * The product index a kiosk lookup reads: everything in memory, so one lookup is a few map reads
 * (no SQL, no await) and answers with central unreachable.
 *
 * - prices: per GTIN-14, the last price central published that passed the version rule. Filled at
 *   start from the `prices` table (the sync repository's; read-only here) and kept current by the
 *   core's `priceApplied` event (emitted after each commit, and for every stored price when sync
 *   starts). Bounded by the prices central named (the table's size).
 * - names: per GTIN-14, the product name central sent (the `product` change type the labels feature
 *   stores in `label_products`): read at start if that table exists, then `productChanged`.
 *   Optional: without the labels feature an answer has `name: null`.
 * - locations: which configured locations hold which GTIN (core Locations, kept current by
 *   `assignmentChanged`), and each location's last committed stock (the `stock` table through
 *   Locations.loadStock at start, then `stockCommitted` from weight shelves and RFID zones alike).
 *   Bounded by the configured locations.
 *
 * Design choice: reading two tables the kiosk feature does not own (read-only, once, at start)
 * instead of waiting for events: the answers are right from the first request after a restart,
 * even before central's feed or sync has started. Both reads are guarded: a missing table is an
 * empty index, never a failed start.
 */
import type { Database, Statement } from 'better-sqlite3';
import type { AssignmentChanged, PriceApplied, StockCommitted } from '../../core/events';
import type { Locations } from '../../core/locations';
import type { Store } from '../../store/store';
import { normalizeGtin } from '../../util/gtin';

export interface Promotion {
  was_price: number;
  valid_from?: string;
  valid_to?: string;
}

export interface LookupPrice {
  /** Minor units (cents). */
  amount: number;
  currency: string;
  promotion: Promotion | null;
  /** The price's version in central's feed (the same one the shelf label shows). */
  version: number;
  /** RFC 3339: when the gateway applied it. */
  applied_at: string;
}

export interface LookupLocation {
  /** `shelf/slot`. */
  location: string;
  /** The shelf (gondola) id of the config, e.g. `g1`. */
  shelf: string;
  slot: string;
  /** Last committed count; null when never counted or uncountable. */
  count: number | null;
  condition: string | null;
  /** `weight` (a weight shelf) or `rfid` (an RFID zone). */
  observed_by: string | null;
  /** RFC 3339 of the observation; null when never counted. */
  updated_at: string | null;
}

export interface LookupAnswer {
  /** False: the gateway knows neither a price nor a location for this GTIN (not an error). */
  found: boolean;
  /** What was asked (trimmed). */
  code: string;
  /** GTIN-14, or null when the code carries no GTIN (a scan of something else). */
  gtin: string | null;
  name: string | null;
  price: LookupPrice | null;
  stock: {
    /** Sum of the counted locations holding the product; null when none has a count. */
    on_shelf: number | null;
    locations: LookupLocation[];
  };
  /** For people: `unknown product`, or why there is no price. */
  message?: string;
}

interface StockState {
  count: number | null;
  condition: string | null;
  observedBy: string;
  updatedAt: number;
}

interface PriceRow {
  gtin: string;
  price: number;
  currency: string;
  promotion: string | null;
  version: number;
  applied_at: number;
}

export class ProductIndex {
  private readonly prices = new Map<string, LookupPrice>();
  private readonly names = new Map<string, string>();
  /** location id -> GTIN it holds. */
  private readonly holds = new Map<string, string>();
  /** GTIN -> location ids holding it. */
  private readonly byGtin = new Map<string, Set<string>>();
  private readonly places = new Map<string, { shelf: string; slot: string }>();
  private readonly stock = new Map<string, StockState>();
  private db: Database | null = null;

  constructor(
    store: Store,
    private readonly locations: Locations,
  ) {
    // the statements are prepared and run in load() (start): nothing runs while the store opens
    store.onOpen((db: Database) => {
      this.db = db;
    });
  }

  /** Reads the stored state (after the store and Locations started). */
  load(): void {
    this.prices.clear();
    this.names.clear();
    this.holds.clear();
    this.byGtin.clear();
    this.places.clear();
    this.stock.clear();
    const db = this.db;
    const prices = db && prepareIfTable(db, 'prices', 'SELECT gtin, price, currency, promotion, version, applied_at FROM prices');
    const names = db && prepareIfTable(db, 'label_products', 'SELECT gtin, name FROM label_products');
    for (const r of (prices?.all() ?? []) as PriceRow[]) {
      this.prices.set(r.gtin, { amount: r.price, currency: r.currency, promotion: parsePromotion(r.promotion), version: r.version, applied_at: new Date(r.applied_at).toISOString() });
    }
    for (const r of (names?.all() ?? []) as Array<{ gtin: string; name: string }>) this.names.set(r.gtin, r.name);
    for (const l of this.locations.list()) {
      this.places.set(l.id, { shelf: l.shelfId, slot: l.slotId });
      this.setHolds(l.id, l.gtin);
    }
    for (const s of this.locations.loadStock()) {
      if (this.places.has(s.locationId)) this.stock.set(s.locationId, { count: s.count, condition: s.condition, observedBy: s.observedBy, updatedAt: s.updatedAt });
    }
  }

  onPrice(p: PriceApplied): void {
    const cur = this.prices.get(p.gtin);
    if (cur && cur.version >= p.version) return;
    this.prices.set(p.gtin, { amount: p.price, currency: p.currency, promotion: asPromotion(p.promotion), version: p.version, applied_at: new Date(p.appliedAt).toISOString() });
  }

  onProduct(p: { gtin: string; name: string }): void {
    this.names.set(p.gtin, p.name);
  }

  onAssignment(a: AssignmentChanged): void {
    if (!this.places.has(a.locationId)) return;
    this.setHolds(a.locationId, a.gtin);
  }

  onStock(s: StockCommitted): void {
    if (!this.places.has(s.locationId)) return;
    this.stock.set(s.locationId, { count: s.count, condition: s.condition, observedBy: s.observedBy, updatedAt: s.ts });
  }

  /** The answer for a GTIN-14 (already validated). */
  lookup(gtin: string, code: string): LookupAnswer {
    const price = this.prices.get(gtin) ?? null;
    const ids = this.byGtin.get(gtin);
    const locations: LookupLocation[] = [];
    let onShelf: number | null = null;
    for (const id of ids ?? []) {
      const place = this.places.get(id)!;
      const st = this.stock.get(id);
      const count = st?.count ?? null;
      if (count !== null) onShelf = (onShelf ?? 0) + count;
      locations.push({ location: id, shelf: place.shelf, slot: place.slot, count, condition: st?.condition ?? null, observed_by: st?.observedBy ?? null, updated_at: st ? new Date(st.updatedAt).toISOString() : null });
    }
    const found = price !== null || locations.length > 0;
    const answer: LookupAnswer = { found, code, gtin, name: this.names.get(gtin) ?? null, price, stock: { on_shelf: onShelf, locations } };
    if (!found) answer.message = 'unknown product';
    else if (!price) answer.message = 'no price known for this product';
    return answer;
  }

  /** Sizes, for metrics. */
  sizes(): { prices: number; names: number; locations: number } {
    return { prices: this.prices.size, names: this.names.size, locations: this.places.size };
  }

  /** `gtin` as the location holds it: the config file may name it as GTIN-8/12/13 (central sends GTIN-14), the index keys GTIN-14. */
  private setHolds(id: string, held: string | null): void {
    const gtin = held === null ? null : (normalizeGtin(held) ?? held);
    const prev = this.holds.get(id);
    if (prev === gtin) return;
    if (prev !== undefined) {
      const set = this.byGtin.get(prev);
      set?.delete(id);
      if (set && set.size === 0) this.byGtin.delete(prev);
    }
    if (gtin === null) {
      this.holds.delete(id);
      return;
    }
    this.holds.set(id, gtin);
    let set = this.byGtin.get(gtin);
    if (!set) this.byGtin.set(gtin, (set = new Set()));
    set.add(id);
  }
}

/** A not-found answer for a code that carries no GTIN. */
export function noGtinAnswer(code: string): LookupAnswer {
  return { found: false, code, gtin: null, name: null, price: null, stock: { on_shelf: null, locations: [] }, message: 'this code names no product (no GTIN)' };
}

function prepareIfTable(db: Database, table: string, sql: string): Statement | null {
  const exists = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(table);
  return exists ? db.prepare(sql) : null;
}

function parsePromotion(json: string | null): Promotion | null {
  if (json === null) return null;
  try {
    return asPromotion(JSON.parse(json));
  } catch {
    return null;
  }
}

function asPromotion(v: unknown): Promotion | null {
  if (!v || typeof v !== 'object') return null;
  const p = v as Record<string, unknown>;
  if (typeof p.was_price !== 'number') return null;
  return { was_price: p.was_price, ...(typeof p.valid_from === 'string' ? { valid_from: p.valid_from } : {}), ...(typeof p.valid_to === 'string' ? { valid_to: p.valid_to } : {}) };
}
