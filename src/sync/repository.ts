/**
 * Every SQL statement of the sync service, in one place: its own tables (prices, slot_versions,
 * parked, pending_acks, sync_gaps; migration v2), its meta keys (the feed cursor, the buffer
 * policy's counters) and the outbox queries the Store's API does not cover (held conditions, the
 * buffer policy's candidate scans).
 *
 * Statements are prepared once per connection (Store.onOpen), not per call. Reads of one
 * statement run as they are (SQLite reads committed data); anything that writes, or must see one
 * consistent state across statements, runs inside Store.transaction (the one writer). Outbox rows
 * are only ever deleted through Store.removeFromOutbox / ackOutbox, which keep the Store's
 * in-memory counters right; the callbacks below that write beside such a deletion run inside its
 * transaction.
 */
import type { Database, Statement } from 'better-sqlite3';
import { ErrorCode, ShelfgateError } from '../errors';
import type { RemovedOutboxRow, Store } from '../store/store';
import type { Promotion, StoredPrice } from './prices';
import type { ChangeAck } from './types';

/** Meta key of the change-feed cursor. */
export const CURSOR_META_KEY = 'sync.changes.cursor';

/** Why seqs were removed from the outbox and declared to central. */
export type GapReason = 'compacted' | 'dropped_buffer_full' | 'parked';

export interface PendingGap {
  id: number;
  from_seq: number;
  to_seq: number;
  reason: string;
}

/** A slot version as applied (the version rule per shelf and slot). */
export interface StoredSlotVersion {
  version: number;
  changeId: string | null;
  appliedAt: number | null;
}

/** What a page of the change feed commits beside the appliers' writes. */
export interface PageAcks {
  acks: ChangeAck[];
  /** Persisted with the page; undefined leaves the stored cursor unchanged, null clears it. */
  cursor?: string | null;
}

export interface ParkedEvent {
  eventId: string;
  seq: number;
  deviceId: string;
  kind: string;
  priority: number;
  payload: string;
  createdAt: number;
  error: { code: string; message?: string };
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
  getMeta: Statement;
  setMeta: Statement;
  deleteMeta: Statement;
  bumpMeta: Statement;
  counterMeta: Statement;
  insertParked: Statement;
  countParked: Statement;
  insertGap: Statement;
  pendingGaps: Statement;
  deleteGap: Statement;
  countAtPriority: Statement;
  minSeqAtPriority: Statement;
  minSeqOddPriority: Statement;
  newestInKinds: Statement;
  scanKinds: Statement;
  scanDroppable: Statement;
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

export class SyncRepository {
  private db: Database | null = null;
  private st: Stmts | null = null;

  constructor(private readonly store: Store) {
    store.onOpen((db) => {
      this.st = prepare(db);
      this.db = db;
    });
  }

  private stmts(): Stmts {
    if (!this.st || !this.db?.open) throw new ShelfgateError(ErrorCode.STOPPED, 'store is not open');
    return this.st;
  }

  /** Runs `fn` as one transaction of the Store's writer (nested calls join the outer one). */
  private tx<T>(fn: (st: Stmts) => T): T {
    const st = this.stmts();
    return this.store.transaction(() => fn(st));
  }

  // ---- prices and slot versions (the version rule) ----

  price(gtin: string): StoredPrice | null {
    const r = this.stmts().getPrice.get(gtin) as RawPrice | undefined;
    return r ? toPrice(r) : null;
  }

  prices(): StoredPrice[] {
    return (this.stmts().allPrices.all() as RawPrice[]).map(toPrice);
  }

  /** Writes a price unless an equal or newer version is stored (checked here, inside the caller's transaction). Returns whether it was written. */
  putPriceIfNewer(p: StoredPrice): boolean {
    const st = this.stmts();
    const cur = st.getPrice.get(p.gtin) as RawPrice | undefined;
    if (cur && cur.version >= p.version) return false;
    st.upsertPrice.run(p.gtin, p.price, p.currency, p.promotion === null ? null : JSON.stringify(p.promotion), p.version, p.changeId, p.appliedAt);
    return true;
  }

  slotVersion(shelf: string, slot: string): number {
    return this.slot(shelf, slot)?.version ?? 0;
  }

  slot(shelf: string, slot: string): StoredSlotVersion | null {
    const r = this.stmts().getSlotVersion.get(shelf, slot) as { version: number; change_id: string | null; applied_at: number | null } | undefined;
    return r ? { version: r.version, changeId: r.change_id, appliedAt: r.applied_at } : null;
  }

  /** Like putPriceIfNewer, for a slot assignment's version. */
  putSlotVersionIfNewer(s: { shelf: string; slot: string; version: number; changeId: string; appliedAt: number }): boolean {
    const st = this.stmts();
    const cur = st.getSlotVersion.get(s.shelf, s.slot) as { version: number } | undefined;
    if (cur && cur.version >= s.version) return false;
    st.upsertSlotVersion.run(s.shelf, s.slot, s.version, s.changeId, s.appliedAt);
    return true;
  }

  // ---- the change feed: cursor and acknowledgements ----

  cursor(): string | null {
    const r = this.stmts().getMeta.get(CURSOR_META_KEY) as { value: string | null } | undefined;
    const c = r?.value ?? null;
    return c === null || c === '' ? null : c;
  }

  /**
   * Commits what a page decided in one transaction: `write` (the appliers' writes), the pending
   * acks and the cursor (undefined leaves it, null clears it). The cursor is never ahead of what
   * is applied, and an ack is never lost by a crash.
   */
  commitPage<T>(p: PageAcks, write: () => T): T {
    return this.tx((st) => {
      const out = write();
      for (const a of p.acks) st.upsertAck.run(a.change_id, a.status, a.applied_at, a.detail ?? null);
      if (p.cursor !== undefined) {
        if (p.cursor === null) st.deleteMeta.run(CURSOR_META_KEY);
        else st.setMeta.run(CURSOR_META_KEY, p.cursor);
      }
      return out;
    });
  }

  setCursor(cursor: string | null): void {
    this.commitPage({ acks: [], cursor }, () => undefined);
  }

  pendingAcks(limit: number): ChangeAck[] {
    return (this.stmts().pendingAcks.all(limit) as { change_id: string; status: ChangeAck['status']; applied_at: string; detail: string | null }[]).map((r) => ({
      change_id: r.change_id,
      status: r.status,
      applied_at: r.applied_at,
      ...(r.detail !== null ? { detail: r.detail } : {}),
    }));
  }

  pendingAckCount(): number {
    return (this.stmts().countAcks.get() as { n: number }).n;
  }

  /** Removes acks central confirmed, unless a newer ack of the same change replaced them meanwhile. */
  clearAcks(acks: readonly ChangeAck[]): void {
    this.tx((st) => {
      for (const a of acks) st.deleteAck.run(a.change_id, a.status, a.applied_at);
    });
  }

  // ---- parked events and declared gaps ----

  parkedCount(): number {
    return (this.stmts().countParked.get() as { n: number }).n;
  }

  /**
   * Moves events to `parked` in one transaction with their deletion from the outbox; with
   * `declareGap` each parked seq is also recorded as a `parked` gap (central never saw it).
   * Returns the rows removed (a row already gone is not parked again).
   */
  park(events: readonly ParkedEvent[], declareGap: boolean, now = Date.now()): RemovedOutboxRow[] {
    const st = this.stmts();
    return this.store.removeFromOutbox(
      events.map((e) => e.seq),
      (_db, removed) => {
        const gone = new Set(removed.map((r) => r.seq));
        for (const e of events) {
          if (!gone.has(e.seq)) continue;
          st.insertParked.run(e.eventId, e.seq, e.deviceId, e.kind, e.priority, e.payload, e.createdAt, JSON.stringify(e.error), now);
          if (declareGap) st.insertGap.run(e.seq, e.seq, 'parked');
        }
      },
    );
  }

  /** Pending gaps to declare, oldest first. */
  pendingGaps(limit: number): PendingGap[] {
    return this.stmts().pendingGaps.all(limit) as PendingGap[];
  }

  /** Forgets gaps central received (only after a 2xx to a request that carried them). */
  clearGaps(ids: readonly number[]): void {
    if (ids.length === 0) return;
    this.tx((st) => {
      for (const id of ids) st.deleteGap.run(id);
    });
  }

  // ---- the outbox, beyond the Store's API ----

  countAtPriority(priority: number): number {
    return (this.stmts().countAtPriority.get(priority) as { n: number }).n;
  }

  /** Lowest seq in the outbox whose priority is not `excluded` (one indexed lookup per priority), or null. */
  minSeqExcludingPriority(excluded: number): number | null {
    return this.tx((st) => {
      let best: number | null = null;
      for (let p = 0; p <= 9; p++) {
        if (p === excluded) continue;
        const m = (st.minSeqAtPriority.get(p) as { m: number | null }).m;
        if (m !== null && (best === null || m < best)) best = m;
      }
      const other = (st.minSeqOddPriority.get() as { m: number | null }).m;
      if (other !== null && (best === null || other < best)) best = other;
      return best;
    });
  }

  /** The newest seq per device among events of `kinds`. */
  newestSeqPerDevice(kinds: readonly string[]): Map<string, number> {
    const rows = this.tx((st) => st.newestInKinds.all(JSON.stringify(kinds)) as { device_id: string; newest: number }[]);
    return new Map(rows.map((r) => [r.device_id, r.newest]));
  }

  /** Up to `limit` events of `kinds` after `afterSeq`, in seq order. */
  scanKinds(kinds: readonly string[], afterSeq: number, limit: number): { seq: number; bytes: number; device_id: string }[] {
    return this.stmts().scanKinds.all(JSON.stringify(kinds), afterSeq, limit) as { seq: number; bytes: number; device_id: string }[];
  }

  /** Up to `limit` events after `afterSeq` that are of a `droppable` kind, or of an undeclared kind with priority >= 1. */
  scanDroppable(droppable: readonly string[], declared: readonly string[], afterSeq: number, limit: number): { seq: number; bytes: number; device_id: string }[] {
    return this.stmts().scanDroppable.all(JSON.stringify(droppable), JSON.stringify(declared), afterSeq, limit) as { seq: number; bytes: number; device_id: string }[];
  }

  /**
   * Deletes outbox rows for the buffer policy and, in the same transaction, counts them by kind
   * in meta (`<prefix><kind>`) and records their seqs as gap ranges.
   */
  removeForBuffer(seqs: readonly number[], reason: GapReason, counterPrefix: string, ranges: (seqs: number[]) => Array<[number, number]>): RemovedOutboxRow[] {
    const st = this.stmts();
    return this.store.removeFromOutbox(seqs, (_db, removed) => {
      const byKind = new Map<string, number>();
      for (const r of removed) byKind.set(r.kind, (byKind.get(r.kind) ?? 0) + 1);
      for (const [kind, n] of byKind) st.bumpMeta.run(counterPrefix + kind, String(n));
      for (const [from, to] of ranges(removed.map((r) => r.seq))) st.insertGap.run(from, to, reason);
    });
  }

  /** The buffer policy's persisted counters: meta keys starting with one of `prefixes`. */
  counters(prefixes: readonly string[]): { key: string; value: string }[] {
    const st = this.stmts();
    return prefixes.flatMap((p) => st.counterMeta.all(`${p}%`) as { key: string; value: string }[]);
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
    getSlotVersion: db.prepare('SELECT version, change_id, applied_at FROM slot_versions WHERE shelf_id = ? AND slot_id = ?'),
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
    getMeta: db.prepare('SELECT value FROM meta WHERE key = ?'),
    setMeta: db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
    deleteMeta: db.prepare('DELETE FROM meta WHERE key = ?'),
    bumpMeta: db.prepare(
      `INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + CAST(excluded.value AS INTEGER) AS TEXT)`,
    ),
    counterMeta: db.prepare('SELECT key, value FROM meta WHERE key LIKE ?'),
    insertParked: db.prepare(
      `INSERT INTO parked (event_id, seq, device_id, kind, priority, payload, created_at, error, parked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (event_id) DO UPDATE SET error = excluded.error, parked_at = excluded.parked_at`,
    ),
    countParked: db.prepare('SELECT count(*) AS n FROM parked'),
    insertGap: db.prepare('INSERT INTO sync_gaps (from_seq, to_seq, reason) VALUES (?, ?, ?)'),
    pendingGaps: db.prepare('SELECT id, from_seq, to_seq, reason FROM sync_gaps ORDER BY id LIMIT ?'),
    deleteGap: db.prepare('DELETE FROM sync_gaps WHERE id = ?'),
    countAtPriority: db.prepare('SELECT count(*) AS n FROM outbox WHERE priority = ?'),
    minSeqAtPriority: db.prepare('SELECT min(seq) AS m FROM outbox WHERE priority = ?'),
    minSeqOddPriority: db.prepare('SELECT min(seq) AS m FROM outbox WHERE priority < 0 OR priority > 9 OR priority IS NULL'),
    newestInKinds: db.prepare('SELECT device_id, max(seq) AS newest FROM outbox WHERE kind IN (SELECT value FROM json_each(?)) GROUP BY device_id'),
    scanKinds: db.prepare('SELECT seq, bytes, device_id FROM outbox WHERE kind IN (SELECT value FROM json_each(?)) AND seq > ? ORDER BY seq LIMIT ?'),
    scanDroppable: db.prepare(
      `SELECT seq, bytes, device_id FROM outbox
       WHERE (kind IN (SELECT value FROM json_each(?)) OR (priority >= 1 AND kind NOT IN (SELECT value FROM json_each(?))))
         AND seq > ? ORDER BY seq LIMIT ?`,
    ),
  };
}
