/**
 * Prices and slot assignments from central's change feed, over the Store's SQLite file (tables of
 * migration v2), and the version rule of docs/central-api.yaml:
 *
 * - a price change is applied only if its `version` is greater than the stored version for its
 *   GTIN; an older or equal one is acknowledged `stale`. Slot assignments: the same rule per
 *   (shelf, slot). So a change delivered twice, or after a newer one, is harmless.
 * - one page of the feed is committed in ONE transaction: the applied prices, the slot versions,
 *   the pending acknowledgements of every change of the page, and the feed cursor. The cursor never
 *   gets ahead of what is applied, and an acknowledgement is never lost by a crash.
 *
 * Writes go through Store.transaction (one synchronous transaction on the writer connection).
 */
import type { Database, Statement } from 'better-sqlite3';
import type { Store } from '../store/store';
import { isValidGtin } from '../util/gtin';
import type { ChangeAck } from './types';

/** Meta key of the change-feed cursor. */
export const CURSOR_META_KEY = 'sync.changes.cursor';

export interface Promotion {
  was_price: number;
  valid_from?: string;
  valid_to?: string;
}

export interface StoredPrice {
  gtin: string;
  /** minor units */
  price: number;
  currency: string;
  promotion: Promotion | null;
  version: number;
  changeId: string;
  /** ms epoch */
  appliedAt: number;
}

/** What is published retained on `price/<gtin>`. */
export interface PriceMessage {
  gtin: string;
  price: number;
  currency: string;
  promotion: Promotion | null;
  version: number;
  /** RFC 3339 */
  applied_at: string;
}

export function priceMessage(p: StoredPrice): PriceMessage {
  return { gtin: p.gtin, price: p.price, currency: p.currency, promotion: p.promotion, version: p.version, applied_at: new Date(p.appliedAt).toISOString() };
}

/** A price change as validated. */
export interface PriceChangeIn {
  changeId: string;
  gtin: string;
  price: number;
  currency: string;
  promotion: Promotion | null;
  version: number;
}

/** A slot assignment as validated (the wire `type: 'slot'` or the contract's `slot_assignment`). */
export interface SlotChangeIn {
  changeId: string;
  shelf: string;
  slot: string;
  gtin: string | null;
  unitWeightG: number | null;
  version: number;
}

export type ValidChange = { type: 'price'; c: PriceChangeIn } | { type: 'slot'; c: SlotChangeIn };

/** `null` when the change has no usable change_id (nothing to acknowledge). */
export function changeIdOf(raw: unknown): string | null {
  const id = (raw as { change_id?: unknown } | null)?.change_id;
  return typeof id === 'string' && id.length >= 1 && id.length <= 128 ? id : null;
}

const CURRENCY_RE = /^[A-Z]{3}$/;
const SHELF_RE = /^[A-Za-z0-9._-]{1,64}$/;

function isVersion(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 1;
}

/**
 * Validates one change from the feed. Returns the change, or a reason (acknowledged `invalid`).
 * Unknown fields are ignored (contract: compatibility).
 */
export function validateChange(raw: unknown): { ok: true; change: ValidChange } | { ok: false; detail: string } {
  if (typeof raw !== 'object' || raw === null) return { ok: false, detail: 'change is not an object' };
  const o = raw as Record<string, unknown>;
  const changeId = changeIdOf(o);
  if (changeId === null) return { ok: false, detail: 'change_id is missing or invalid' };
  if (!isVersion(o.version)) return { ok: false, detail: 'version must be a positive integer' };
  if (o.type === 'price') {
    if (typeof o.gtin !== 'string' || !/^\d{14}$/.test(o.gtin) || !isValidGtin(o.gtin)) return { ok: false, detail: `gtin ${JSON.stringify(o.gtin)} is not a GTIN-14 with a valid check digit` };
    if (typeof o.price !== 'number' || !Number.isSafeInteger(o.price) || o.price < 0) return { ok: false, detail: 'price must be a non-negative integer (minor units)' };
    if (typeof o.currency !== 'string' || !CURRENCY_RE.test(o.currency)) return { ok: false, detail: 'currency must be an ISO 4217 code' };
    let promotion: Promotion | null = null;
    if (o.promotion !== null && o.promotion !== undefined) {
      const p = o.promotion as Record<string, unknown>;
      if (typeof p !== 'object' || typeof p.was_price !== 'number' || !Number.isSafeInteger(p.was_price) || p.was_price < 0)
        return { ok: false, detail: 'promotion.was_price must be a non-negative integer' };
      for (const k of ['valid_from', 'valid_to'] as const) {
        if (p[k] !== undefined && (typeof p[k] !== 'string' || Number.isNaN(Date.parse(p[k] as string)))) return { ok: false, detail: `promotion.${k} must be RFC 3339` };
      }
      promotion = { was_price: p.was_price, ...(p.valid_from !== undefined ? { valid_from: p.valid_from as string } : {}), ...(p.valid_to !== undefined ? { valid_to: p.valid_to as string } : {}) };
    }
    return { ok: true, change: { type: 'price', c: { changeId, gtin: o.gtin, price: o.price, currency: o.currency, promotion, version: o.version } } };
  }
  if (o.type === 'slot' || o.type === 'slot_assignment') {
    if (typeof o.shelf !== 'string' || !SHELF_RE.test(o.shelf)) return { ok: false, detail: 'shelf is invalid' };
    const slot = typeof o.slot === 'number' && Number.isSafeInteger(o.slot) && o.slot >= 1 ? String(o.slot) : typeof o.slot === 'string' && o.slot.length > 0 ? o.slot : null;
    if (slot === null) return { ok: false, detail: 'slot is invalid' };
    const gtin = o.gtin ?? null;
    const w = o.unit_weight_g ?? null;
    if (gtin !== null) {
      if (typeof gtin !== 'string' || !/^\d{14}$/.test(gtin) || !isValidGtin(gtin)) return { ok: false, detail: `gtin ${JSON.stringify(gtin)} is not a GTIN-14 with a valid check digit` };
      if (typeof w !== 'number' || !Number.isFinite(w) || !(w > 0)) return { ok: false, detail: 'unit_weight_g must be a positive number when gtin is set' };
    } else if (w !== null) {
      return { ok: false, detail: 'unit_weight_g must be null when gtin is null' };
    }
    return { ok: true, change: { type: 'slot', c: { changeId, shelf: o.shelf, slot, gtin: gtin as string | null, unitWeightG: w as number | null, version: o.version } } };
  }
  return { ok: false, detail: `unknown change type ${JSON.stringify(o.type)}` };
}

/** The outcome of one page, committed by PriceBook.commitPage. */
export interface PageOutcome {
  prices: StoredPrice[];
  slots: { shelf: string; slot: string; version: number; changeId: string; appliedAt: number }[];
  acks: ChangeAck[];
  /** Persisted with the page; undefined leaves the stored cursor unchanged, null clears it. */
  cursor?: string | null;
}

interface Stmts {
  getPrice: Statement;
  allPrices: Statement;
  upsertPrice: Statement;
  getSlotVersion: Statement;
  upsertSlotVersion: Statement;
  upsertAck: Statement;
  pendingAcks: Statement;
  deleteAck: Statement;
  countAcks: Statement;
  setMeta: Statement;
  deleteMeta: Statement;
}

interface RawPrice {
  gtin: string;
  price: number;
  currency: string;
  promotion: string | null;
  version: number;
  change_id: string;
  applied_at: number;
}

function toPrice(r: RawPrice): StoredPrice {
  return {
    gtin: r.gtin,
    price: r.price,
    currency: r.currency,
    promotion: r.promotion === null ? null : (JSON.parse(r.promotion) as Promotion),
    version: r.version,
    changeId: r.change_id,
    appliedAt: r.applied_at,
  };
}

/** Storage of prices, slot versions, pending acks and the feed cursor. */
export class PriceBook {
  private cache: { db: Database; st: Stmts } | null = null;

  constructor(private readonly store: Store) {}

  private run<T>(fn: (st: Stmts) => T): T {
    return this.store.transaction((db) => {
      if (this.cache?.db !== db) this.cache = { db, st: prepare(db) };
      return fn(this.cache.st);
    });
  }

  price(gtin: string): StoredPrice | null {
    return this.run((st) => {
      const r = st.getPrice.get(gtin) as RawPrice | undefined;
      return r ? toPrice(r) : null;
    });
  }

  prices(): StoredPrice[] {
    return this.run((st) => (st.allPrices.all() as RawPrice[]).map(toPrice));
  }

  slotVersion(shelf: string, slot: string): number {
    return this.run((st) => (st.getSlotVersion.get(shelf, slot) as { version: number } | undefined)?.version ?? 0);
  }

  /** change_id of the slot assignment applied last, or null. */
  slotChangeId(shelf: string, slot: string): string | null {
    return this.run((st) => (st.getSlotVersion.get(shelf, slot) as { change_id: string | null } | undefined)?.change_id ?? null);
  }

  cursor(): string | null {
    const c = this.store.getMeta(CURSOR_META_KEY);
    return c === null || c === '' ? null : c;
  }

  /**
   * Commits a page in one transaction: prices and slot versions (each only if still newer than
   * what is stored: the version rule is re-checked inside the transaction), the pending acks and
   * the cursor. Returns the prices actually written (the ones to publish).
   */
  commitPage(p: PageOutcome): StoredPrice[] {
    return this.run((st) => {
      const written: StoredPrice[] = [];
      for (const price of p.prices) {
        const cur = st.getPrice.get(price.gtin) as RawPrice | undefined;
        if (cur && cur.version >= price.version) continue;
        st.upsertPrice.run(price.gtin, price.price, price.currency, price.promotion === null ? null : JSON.stringify(price.promotion), price.version, price.changeId, price.appliedAt);
        written.push(price);
      }
      for (const s of p.slots) {
        const cur = st.getSlotVersion.get(s.shelf, s.slot) as { version: number } | undefined;
        if (cur && cur.version >= s.version) continue;
        st.upsertSlotVersion.run(s.shelf, s.slot, s.version, s.changeId, s.appliedAt);
      }
      for (const a of p.acks) st.upsertAck.run(a.change_id, a.status, a.applied_at, a.detail ?? null);
      if (p.cursor !== undefined) {
        if (p.cursor === null) st.deleteMeta.run(CURSOR_META_KEY);
        else st.setMeta.run(CURSOR_META_KEY, p.cursor);
      }
      return written;
    });
  }

  setCursor(cursor: string | null): void {
    this.commitPage({ prices: [], slots: [], acks: [], cursor });
  }

  pendingAcks(limit: number): ChangeAck[] {
    return this.run((st) =>
      (st.pendingAcks.all(limit) as { change_id: string; status: ChangeAck['status']; applied_at: string; detail: string | null }[]).map((r) => ({
        change_id: r.change_id,
        status: r.status,
        applied_at: r.applied_at,
        ...(r.detail !== null ? { detail: r.detail } : {}),
      })),
    );
  }

  pendingAckCount(): number {
    return this.run((st) => (st.countAcks.get() as { n: number }).n);
  }

  /** Removes acks central confirmed, unless a newer ack of the same change replaced them meanwhile. */
  clearAcks(acks: readonly ChangeAck[]): void {
    this.run((st) => {
      for (const a of acks) st.deleteAck.run(a.change_id, a.status, a.applied_at);
    });
  }
}

function prepare(db: Database): Stmts {
  return {
    getPrice: db.prepare('SELECT * FROM prices WHERE gtin = ?'),
    allPrices: db.prepare('SELECT * FROM prices ORDER BY gtin'),
    upsertPrice: db.prepare(
      `INSERT INTO prices (gtin, price, currency, promotion, version, change_id, applied_at) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (gtin) DO UPDATE SET price = excluded.price, currency = excluded.currency, promotion = excluded.promotion,
         version = excluded.version, change_id = excluded.change_id, applied_at = excluded.applied_at`,
    ),
    getSlotVersion: db.prepare('SELECT version, change_id FROM slot_versions WHERE shelf_id = ? AND slot_id = ?'),
    upsertSlotVersion: db.prepare(
      `INSERT INTO slot_versions (shelf_id, slot_id, version, change_id, applied_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (shelf_id, slot_id) DO UPDATE SET version = excluded.version, change_id = excluded.change_id, applied_at = excluded.applied_at`,
    ),
    upsertAck: db.prepare(
      `INSERT INTO pending_acks (change_id, status, applied_at, detail) VALUES (?, ?, ?, ?)
       ON CONFLICT (change_id) DO UPDATE SET status = excluded.status, applied_at = excluded.applied_at, detail = excluded.detail`,
    ),
    pendingAcks: db.prepare('SELECT * FROM pending_acks ORDER BY rowid LIMIT ?'),
    deleteAck: db.prepare('DELETE FROM pending_acks WHERE change_id = ? AND status = ? AND applied_at = ?'),
    countAcks: db.prepare('SELECT count(*) AS n FROM pending_acks'),
    setMeta: db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
    deleteMeta: db.prepare('DELETE FROM meta WHERE key = ?'),
  };
}
