/**
 * Product master data from central, for the labels: the `product` change type of central's feed
 * (docs/central-api.yaml ProductChange) names a GTIN's product and, where known, its net content
 * (the base of the unit price per kg or l that a shelf label must show). Owned by the labels
 * feature: the core names no product type, the feature registers `ProductApplier` through
 * `FeatureParts.appliers`.
 *
 * - `ProductApplier` validates a change (GTIN-8/12/13/14 with its check digit, normalised to 14
 *   digits; name 1-200 characters; net content amount > 0 in g, kg, ml, cl or l, or null), keeps
 *   the version rule per GTIN (the feed decides stale/applied with `current()`; `apply()` checks it
 *   again in SQL) and, after the page committed, updates the in-memory catalogue and emits
 *   `productChanged` on the event bus.
 * - `ProductCatalog` is the table read once at start and kept in memory (a label render looks a
 *   product up synchronously); it mirrors the table, one entry per GTIN central named (the same
 *   bound as the stored prices).
 *
 * Design choice: writes do NOT go through `Store.defineWrite` (batched, asynchronous) like the rest
 * of the feature's tables. A change's row must commit in ONE transaction with the page's acks and
 * feed cursor (src/sync/feed.ts), or a crash could acknowledge a product that was never stored.
 * `apply()` runs synchronously inside that transaction (Store.transaction, the one writer; a call
 * outside one opens its own), with statements prepared once per connection (Store.onOpen).
 *
 * Schema version 11 (`LABELS_PRODUCTS_MIGRATION`): the table `label_products`.
 */
import type { Statement } from 'better-sqlite3';
import type { EventBus } from '../../core/events';
import { ErrorCode, ShelfgateError } from '../../errors';
import type { Service } from '../../lifecycle';
import type { Logger } from '../../log';
import type { Migration } from '../../store/migrations';
import type { Store } from '../../store/store';
import type { ChangeApplier } from '../../sync/appliers';
import type { Validated } from '../../sync/prices';
import type { SyncRepository } from '../../sync/repository';
import { isValidGtin, toGtin14 } from '../../util/gtin';
import type { LabelProduct, NetContent, NetUnit } from './content';

export const LABELS_PRODUCTS_SCHEMA_VERSION = 11;

export const LABELS_PRODUCTS_MIGRATION: Migration = {
  version: LABELS_PRODUCTS_SCHEMA_VERSION,
  description: 'labels: product names and net contents from central (change type product)',
  up: `
    CREATE TABLE label_products (
      gtin        TEXT PRIMARY KEY,            -- GTIN-14
      name        TEXT NOT NULL,
      net_amount  REAL CHECK (net_amount IS NULL OR net_amount > 0),
      net_unit    TEXT CHECK (net_unit IS NULL OR net_unit IN ('g', 'kg', 'ml', 'cl', 'l')),
      version     INTEGER NOT NULL,            -- the version rule, per GTIN
      change_id   TEXT NOT NULL,
      applied_at  INTEGER NOT NULL,            -- ms epoch
      CHECK ((net_amount IS NULL) = (net_unit IS NULL))
    ) WITHOUT ROWID;
  `,
};

/** The wire type this applier owns. */
export const PRODUCT_CHANGE_TYPE = 'product';

export const PRODUCT_NAME_MAX = 200;
const NET_UNITS: readonly NetUnit[] = ['g', 'kg', 'ml', 'cl', 'l'];

/** A `product` change as validated. */
export interface ProductChangeIn {
  changeId: string;
  /** GTIN-14. */
  gtin: string;
  name: string;
  netContent: NetContent | null;
  version: number;
}

/** A product as stored and announced (`productChanged`). */
export interface ProductInfo {
  /** GTIN-14. */
  gtin: string;
  name: string;
  /** null: unknown, no unit price on the label. */
  netContent: NetContent | null;
  version: number;
  changeId: string;
  /** ms epoch of the page that applied it. */
  appliedAt: number;
}

declare module '../../core/events' {
  interface GatewayEvents {
    /** A product change from central passed the version rule and is committed (labels/products.ts). */
    productChanged: [ProductInfo];
  }
}

/** Checks the fields of a `product` change (change_id and version checked already by the feed). Unknown fields are ignored. */
export function validateProduct(o: Record<string, unknown>, changeId: string, version: number): Validated<ProductChangeIn> {
  if (typeof o.gtin !== 'string' || !isValidGtin(o.gtin)) return { ok: false, detail: `gtin ${JSON.stringify(o.gtin)?.slice(0, 40)} is not a GTIN-8/12/13/14 with a valid check digit` };
  if (typeof o.name !== 'string') return { ok: false, detail: 'name must be a string' };
  const chars = [...o.name].length;
  if (chars < 1 || chars > PRODUCT_NAME_MAX || o.name.trim() === '') return { ok: false, detail: `name must be 1-${PRODUCT_NAME_MAX} characters, not blank (got ${chars})` };
  if (/\p{Cc}/u.test(o.name)) return { ok: false, detail: 'name must not contain control characters' };
  let netContent: NetContent | null = null;
  const n = o.net_content;
  if (n !== undefined && n !== null) {
    if (typeof n !== 'object' || Array.isArray(n)) return { ok: false, detail: 'net_content must be an object {amount, unit} or null' };
    const { amount, unit } = n as Record<string, unknown>;
    if (typeof amount !== 'number' || !Number.isFinite(amount) || !(amount > 0)) return { ok: false, detail: 'net_content.amount must be a number > 0' };
    if (typeof unit !== 'string' || !(NET_UNITS as readonly string[]).includes(unit)) return { ok: false, detail: `net_content.unit must be one of ${NET_UNITS.join(', ')}` };
    netContent = { amount, unit: unit as NetUnit };
  }
  return { ok: true, change: { changeId, gtin: toGtin14(o.gtin), name: o.name, netContent, version } };
}

interface RawProduct {
  gtin: string;
  name: string;
  net_amount: number | null;
  net_unit: string | null;
  version: number;
  change_id: string;
  applied_at: number;
}

function toInfo(r: RawProduct): ProductInfo {
  return {
    gtin: r.gtin,
    name: r.name,
    netContent: r.net_amount !== null && r.net_unit !== null ? { amount: r.net_amount, unit: r.net_unit as NetUnit } : null,
    version: r.version,
    changeId: r.change_id,
    appliedAt: r.applied_at,
  };
}

interface Stmts {
  get: Statement;
  all: Statement;
  upsert: Statement;
}

/** The SQL of `label_products`, prepared once per connection. */
class ProductTable {
  private st: Stmts | null = null;

  constructor(private readonly store: Store) {
    store.onOpen((db) => {
      this.st = {
        get: db.prepare('SELECT * FROM label_products WHERE gtin = ?'),
        all: db.prepare('SELECT * FROM label_products ORDER BY gtin'),
        upsert: db.prepare(
          `INSERT INTO label_products (gtin, name, net_amount, net_unit, version, change_id, applied_at) VALUES (?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (gtin) DO UPDATE SET name = excluded.name, net_amount = excluded.net_amount, net_unit = excluded.net_unit,
             version = excluded.version, change_id = excluded.change_id, applied_at = excluded.applied_at
           WHERE excluded.version > label_products.version`,
        ),
      };
    });
  }

  private stmts(): Stmts {
    if (!this.st) throw new ShelfgateError(ErrorCode.STOPPED, 'store is not open');
    return this.st;
  }

  get(gtin: string): ProductInfo | null {
    const r = this.stmts().get.get(gtin) as RawProduct | undefined;
    return r ? toInfo(r) : null;
  }

  all(): ProductInfo[] {
    return (this.stmts().all.all() as RawProduct[]).map(toInfo);
  }

  /** Writes the product unless an equal or newer version is stored; inside the caller's transaction, or its own. */
  putIfNewer(p: ProductInfo): boolean {
    const st = this.stmts();
    return this.store.transaction(() => st.upsert.run(p.gtin, p.name, p.netContent?.amount ?? null, p.netContent?.unit ?? null, p.version, p.changeId, p.appliedAt).changes === 1);
  }
}

/**
 * The products central named, read from `label_products` at start() and kept in memory; the
 * applier updates it after each committed page. A Service: register it after the store (a
 * feature's services start after the core's).
 */
export class ProductCatalog implements Service {
  readonly name = 'label-products';
  private readonly table: ProductTable;
  private readonly byGtin = new Map<string, ProductInfo>();

  constructor(store: Store) {
    this.table = new ProductTable(store);
  }

  async start(): Promise<void> {
    this.byGtin.clear();
    for (const p of this.table.all()) this.byGtin.set(p.gtin, p);
  }

  async stop(): Promise<void> {}

  /** The product of a GTIN-8/12/13/14 (any form of a valid one), as a label renders it; undefined when central named none. */
  get(gtin: string): LabelProduct | undefined {
    const p = this.info(gtin);
    return p && { gtin: p.gtin, name: p.name, netContent: p.netContent };
  }

  /** The stored product with its version (undefined when unknown or not a valid GTIN). */
  info(gtin: string): ProductInfo | undefined {
    if (!isValidGtin(gtin)) return undefined;
    return this.byGtin.get(gtin.padStart(14, '0'));
  }

  get size(): number {
    return this.byGtin.size;
  }

  /** A committed product (ProductApplier); an older version than the one held is ignored. */
  applied(p: ProductInfo): void {
    const cur = this.byGtin.get(p.gtin);
    if (!cur || cur.version < p.version) this.byGtin.set(p.gtin, p);
  }

  /** The stored row of a GTIN-14, read from the table (the version rule reads committed data, not the memory). */
  stored(gtin: string): ProductInfo | null {
    return this.table.get(gtin);
  }

  /** Writes a product unless an equal or newer version is stored (inside the caller's transaction, or its own). */
  writeIfNewer(p: ProductInfo): boolean {
    return this.table.putIfNewer(p);
  }
}

export interface ProductApplierOptions {
  catalog: ProductCatalog;
  events: Pick<EventBus, 'emit'>;
  log: Logger;
}

/** The `product` change type (see the top of this file). */
export class ProductApplier implements ChangeApplier<ProductChangeIn> {
  readonly type = PRODUCT_CHANGE_TYPE;
  /** Changes written (applied) and changes refused by validation (acknowledged `invalid` by the feed). */
  readonly counters = { applied: 0, invalid: 0 };
  constructor(private readonly o: ProductApplierOptions) {}

  validate(o: Record<string, unknown>, changeId: string, version: number): Validated<ProductChangeIn> {
    const v = validateProduct(o, changeId, version);
    if (!v.ok) this.counters.invalid++;
    return v;
  }

  key(c: ProductChangeIn): string {
    return c.gtin;
  }

  current(c: ProductChangeIn): { version: number; changeId: string; appliedAt: number } | null {
    const p = this.o.catalog.stored(c.gtin);
    return p ? { version: p.version, changeId: p.changeId, appliedAt: p.appliedAt } : null;
  }

  apply(_tx: SyncRepository, changes: ProductChangeIn[], appliedAt: number): ProductChangeIn[] {
    return changes.filter((c) => this.o.catalog.writeIfNewer(info(c, appliedAt)));
  }

  async committed(written: ProductChangeIn[], appliedAt: number): Promise<void> {
    this.counters.applied += written.length;
    for (const c of written) {
      const p = info(c, appliedAt);
      this.o.catalog.applied(p);
      this.o.events.emit('productChanged', p);
    }
    this.o.log.debug({ products: written.length, catalog: this.o.catalog.size }, 'products from central applied');
  }
}

function info(c: ProductChangeIn, appliedAt: number): ProductInfo {
  return { gtin: c.gtin, name: c.name, netContent: c.netContent, version: c.version, changeId: c.changeId, appliedAt };
}
