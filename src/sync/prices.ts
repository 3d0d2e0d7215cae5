/**
 * The data of central's change feed as the gateway keeps it: prices and slot assignments, their
 * validation (docs/central-api.yaml `Change`), and what is published retained on `price/<gtin>`.
 *
 * The version rule (a change is applied only if its `version` is greater than the stored one for
 * its GTIN, or its (shelf, slot); an older or equal one is acknowledged `stale`) is applied by the
 * change feed (feed.ts) through each type's applier (price-applier.ts, slot-applier.ts); the
 * tables are the sync repository's (repository.ts).
 */
import { isValidGtin } from '../util/gtin';

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
  /**
   * The change's fields the core does not interpret (e.g. `labels`), frozen; absent when it has
   * none. Handed to Locations.assign and on to `assignmentChanged.attributes`.
   */
  attributes?: Readonly<Record<string, unknown>>;
}

/**
 * The fields of a slot assignment the core reads or the contract defines for every change
 * (docs/central-api.yaml SlotAssignment, plus the transports' `cursor`): everything else is an
 * attribute for the features. `store_id` and `published_at` are the contract's own, not a
 * feature's, so they stay out too.
 */
const SLOT_CORE_FIELDS: ReadonlySet<string> = new Set(['change_id', 'type', 'store_id', 'shelf', 'slot', 'gtin', 'unit_weight_g', 'version', 'published_at', 'cursor']);

/** The fields of a slot change outside SLOT_CORE_FIELDS, frozen, or undefined when there are none. */
export function slotAttributes(o: Record<string, unknown>): Readonly<Record<string, unknown>> | undefined {
  let out: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(o)) {
    if (SLOT_CORE_FIELDS.has(k) || v === undefined) continue;
    (out ??= {})[k] = v;
  }
  return out && Object.freeze(out);
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

export type Validated<T> = { ok: true; change: T } | { ok: false; detail: string };

/** The fields every change has (change_id, version), checked before its type's own. */
export function validateEnvelope(raw: unknown): Validated<{ o: Record<string, unknown>; changeId: string; version: number }> {
  if (typeof raw !== 'object' || raw === null) return { ok: false, detail: 'change is not an object' };
  const o = raw as Record<string, unknown>;
  const changeId = changeIdOf(o);
  if (changeId === null) return { ok: false, detail: 'change_id is missing or invalid' };
  if (!isVersion(o.version)) return { ok: false, detail: 'version must be a positive integer' };
  return { ok: true, change: { o, changeId, version: o.version } };
}

/** A `price` change (after validateEnvelope). Unknown fields are ignored (contract: compatibility). */
export function validatePrice(o: Record<string, unknown>, changeId: string, version: number): Validated<PriceChangeIn> {
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
  return { ok: true, change: { changeId, gtin: o.gtin, price: o.price, currency: o.currency, promotion, version } };
}

/** A slot assignment (the wire `type: 'slot'` or the contract's `slot_assignment`), after validateEnvelope. */
export function validateSlotAssignment(o: Record<string, unknown>, changeId: string, version: number): Validated<SlotChangeIn> {
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
  const attributes = slotAttributes(o);
  return { ok: true, change: { changeId, shelf: o.shelf, slot, gtin: gtin as string | null, unitWeightG: w as number | null, version, ...(attributes ? { attributes } : {}) } };
}

/** `unknown change type "<t>"` (the type as JSON): what an unknown type is acknowledged `invalid` with (docs/central-api.yaml). */
export function unknownTypeDetail(type: unknown): string {
  return `unknown change type ${JSON.stringify(type)}`;
}

/**
 * Validates one change of the two built-in types. Returns the change, or a reason (acknowledged
 * `invalid`). The feed itself dispatches by type to its registered appliers (appliers.ts).
 */
export function validateChange(raw: unknown): { ok: true; change: ValidChange } | { ok: false; detail: string } {
  const env = validateEnvelope(raw);
  if (!env.ok) return env;
  const { o, changeId, version } = env.change;
  if (o.type === 'price') {
    const v = validatePrice(o, changeId, version);
    return v.ok ? { ok: true, change: { type: 'price', c: v.change } } : v;
  }
  if (o.type === 'slot' || o.type === 'slot_assignment') {
    const v = validateSlotAssignment(o, changeId, version);
    return v.ok ? { ok: true, change: { type: 'slot', c: v.change } } : v;
  }
  return { ok: false, detail: unknownTypeDetail(o.type) };
}
