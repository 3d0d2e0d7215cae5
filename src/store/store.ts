/**
 * The durable store: outbox of stock events, current slot state and calibration overrides, device
 * registry, and small meta values, in one SQLite file (db.ts opens it, migrations.ts shapes it).
 *
 * One writer. Every queued write (appendEvent, saveSlotState, saveCalibration, setDeviceState)
 * goes through one queue, committed as one transaction per batch: at most `flushIntervalMs` after
 * the batch's first write, or at once when it holds MAX_BATCH_OPS operations. Each write's promise
 * resolves only AFTER the transaction holding it committed, so whatever the daemon publishes after
 * awaiting it is already on disk (to the degree below). Slot states and device states are
 * coalesced per key within a batch: only the last one reaches SQLite.
 * The few synchronous writes (ackOutbox, setMeta) run on the same connection and the same thread,
 * each as its own transaction between batches, so there is still exactly one writer and never a
 * "database is locked".
 *
 * Durability (journal_mode=WAL, `storage.synchronous`):
 * - FULL (default): the WAL is fsynced at every commit. A batch whose promises resolved survives
 *   kill -9, a kernel panic and a power cut.
 * - NORMAL: the WAL is fsynced only at checkpoints. A committed batch survives the process being
 *   killed (kill -9, OOM killer, crash: the data is in the OS page cache), but a power cut or
 *   kernel panic may lose the most recent commits. The database is never corrupted either way;
 *   it rolls back to an earlier consistent commit.
 * Neither protects against an SD card that lies about flushing its write cache.
 *
 * A batch that fails (SQLITE_FULL when the disk is full, SQLITE_IOERR) is rolled back as a whole,
 * every promise in it is rejected with a StoreWriteError naming the SQLite code, and the writer
 * carries on with the next batch: nothing is dropped silently and the daemon does not crash.
 * Input errors (a payload that cannot be serialised) reject only that call, before it is queued.
 */
import { randomUUID } from 'node:crypto';
import type { Database, Statement } from 'better-sqlite3';
import { ErrorCode, ShelfgateError } from '../errors';
import type { Service } from '../lifecycle';
import { LogLimiter, type Logger } from '../log';
import { openDatabase, type Synchronous } from './db';

/** A batch is committed at once when it holds this many operations. */
export const MAX_BATCH_OPS = 1000;

export interface StoreOptions {
  path: string;
  synchronous: Synchronous;
  flushIntervalMs: number;
  storeId: string;
  log: Logger;
}

export interface AppendEventInput {
  /** Who the event is about (a slot key `shelf/slot` or a sensor id `bus-a/3`); per-device order is seq order. */
  deviceId: string;
  kind: string;
  /** Lower first when draining; default 0. */
  priority?: number;
  /** Stored as JSON. */
  payload: object;
  /** Stable unique id the central service dedups on; default crypto.randomUUID(). Appending an id that is already in the outbox returns the existing seq and stores nothing. */
  eventId?: string;
  /** ms epoch; default Date.now(). */
  createdAt?: number;
}

export interface AppendedEvent {
  seq: number;
  eventId: string;
}

export interface SlotStateInput {
  shelfId: string;
  slotId: string;
  count: number | null;
  weightG: number | null;
  condition: string;
  /** ms epoch */
  updatedAt: number;
}

/** Calibration overrides: undefined leaves a field as stored, null clears it (back to the config file value). */
export interface CalibrationInput {
  gtin?: string | null;
  unitWeightG?: number | null;
  tareG?: number | null;
  toleranceG?: number | null;
}

export interface DeviceStateInput {
  id: string;
  kind: string;
  model: string;
  path: string;
  online: boolean;
  reason?: string;
  /** ms epoch of the change */
  ts: number;
}

export interface SlotRow {
  shelfId: string;
  slotId: string;
  /** Calibration overrides; null = use the config file. */
  gtin: string | null;
  unitWeightG: number | null;
  tareG: number | null;
  toleranceG: number | null;
  /** Calibration changes so far (0 = never calibrated over MQTT/CLI). */
  calibVersion: number;
  /** Last persisted state; null before the first state was saved. */
  count: number | null;
  weightG: number | null;
  condition: string | null;
  updatedAt: number | null;
}

export interface DeviceRow {
  id: string;
  kind: string | null;
  model: string | null;
  path: string | null;
  online: boolean;
  reason: string | null;
  /** ms epoch of the last report while online; null if never seen online. */
  lastSeen: number | null;
  /** ms epoch of the last availability change. */
  updatedAt: number | null;
}

export interface OutboxRow {
  seq: number;
  eventId: string;
  storeId: string;
  deviceId: string;
  kind: string;
  priority: number;
  /** The payload as stored: JSON text (upload it as is, or JSON.parse it). */
  payload: string;
  bytes: number;
  createdAt: number;
}

export interface OutboxStats {
  /** Events waiting (committed, not yet acknowledged). */
  count: number;
  /** Sum of their payload bytes. */
  bytes: number;
  /** created_at of the oldest waiting event (lowest seq), null if none. */
  oldestCreatedAt: number | null;
  /** Highest seq ever assigned (0 if none), even if that event was acknowledged and deleted. */
  lastSeq: number;
}

export interface StoreStats {
  /** Batches committed. */
  batches: number;
  /** Operations (write calls) committed. */
  ops: number;
  /** Rows SQLite actually wrote for them (lower than ops when writes were coalesced). */
  rowsWritten: number;
  lastBatchMs: number;
  maxBatchMs: number;
  failedBatches: number;
  /** Operations rejected because their batch failed. */
  failedOps: number;
  /** Operations queued, not yet committed. */
  pendingOps: number;
}

/** An outbox row removed by removeFromOutbox (no payload). */
export interface RemovedOutboxRow {
  seq: number;
  eventId: string;
  deviceId: string;
  kind: string;
  priority: number;
  bytes: number;
}

/** The last batch that failed to commit (see StoreWriteError). */
export interface LastWriteError {
  code: string;
  /** ms epoch */
  at: number;
  /** failedBatches when it happened (a counter the caller can compare). */
  failedBatches: number;
}

/** A batch could not be committed; `sqliteCode` is SQLite's (SQLITE_FULL, SQLITE_IOERR_WRITE, ...). */
export class StoreWriteError extends Error {
  readonly sqliteCode: string;
  readonly batchOps: number;
  constructor(message: string, sqliteCode: string, batchOps: number, cause: unknown) {
    super(message, { cause });
    this.name = 'StoreWriteError';
    this.sqliteCode = sqliteCode;
    this.batchOps = batchOps;
  }
}

interface Waiter<T> {
  resolve: (v: T) => void;
  reject: (e: Error) => void;
}

interface EventOp {
  eventId: string;
  deviceId: string;
  kind: string;
  priority: number;
  payload: string;
  bytes: number;
  createdAt: number;
  waiter: Waiter<AppendedEvent>;
}

interface SlotStateOp {
  s: SlotStateInput;
  waiters: Array<Waiter<void>>;
}

interface CalibrationOp {
  shelfId: string;
  slotId: string;
  c: CalibrationInput;
  waiter: Waiter<void>;
}

interface DeviceOp {
  d: DeviceStateInput;
  /** Latest ts among the coalesced writes that reported the device online. */
  lastSeen: number | null;
  waiters: Array<Waiter<void>>;
}

interface BatchResult {
  rows: number;
  /** Events actually inserted (not already present) and their payload bytes. */
  inserted: number;
  insertedBytes: number;
  /** seq of each event of the batch, in order. */
  seqs: number[];
  maxSeq: number;
}

class Batch {
  ops = 0;
  readonly events: EventOp[] = [];
  readonly slotStates = new Map<string, SlotStateOp>();
  readonly calibrations: CalibrationOp[] = [];
  readonly devices = new Map<string, DeviceOp>();
}

interface Statements {
  insertEvent: Statement;
  eventSeqById: Statement;
  upsertSlotState: Statement;
  upsertCalibration: Statement;
  upsertDevice: Statement;
  selectSlots: Statement;
  selectDevices: Statement;
  peekOutbox: Statement;
  oldestOutbox: Statement;
  deleteEvent: Statement;
  deleteEventBySeq: Statement;
  getMeta: Statement;
  setMeta: Statement;
}

interface RawSlotRow {
  shelf_id: string;
  slot_id: string;
  gtin: string | null;
  unit_weight_g: number | null;
  tare_g: number | null;
  tolerance_g: number | null;
  count: number | null;
  weight_g: number | null;
  condition: string | null;
  updated_at: number | null;
  calib_version: number | null;
}

interface RawDeviceRow {
  id: string;
  kind: string | null;
  model: string | null;
  path: string | null;
  online: number | null;
  reason: string | null;
  last_seen: number | null;
  updated_at: number | null;
}

interface RawOutboxRow {
  seq: number;
  event_id: string;
  store_id: string;
  device_id: string;
  kind: string;
  priority: number;
  payload: string;
  bytes: number;
  created_at: number;
}

export class Store implements Service {
  readonly name = 'store';
  private db: Database | null = null;
  private st: Statements | null = null;
  private commitBatch: ((b: Batch) => BatchResult) | null = null;
  private batch = new Batch();
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private outboxCount = 0;
  private outboxBytes = 0;
  private lastSeq = 0;
  private readonly limiter: LogLimiter;
  private readonly counters = { batches: 0, ops: 0, rowsWritten: 0, lastBatchMs: 0, maxBatchMs: 0, failedBatches: 0, failedOps: 0 };
  private readonly appendListeners = new Set<() => void>();
  private lastFailure: LastWriteError | null = null;

  constructor(private readonly o: StoreOptions) {
    this.limiter = new LogLimiter(o.log);
  }

  async start(): Promise<void> {
    if (this.db) return;
    this.stopped = false;
    const db = openDatabase(this.o.path, { synchronous: this.o.synchronous, log: this.o.log });
    try {
      this.st = prepare(db);
      this.commitBatch = db.transaction((b: Batch) => this.writeBatch(b));
      const agg = db.prepare('SELECT count(*) AS n, coalesce(sum(bytes), 0) AS bytes FROM outbox').get() as { n: number; bytes: number };
      const sq = db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").get() as { seq: number } | undefined;
      this.outboxCount = agg.n;
      this.outboxBytes = agg.bytes;
      this.lastSeq = sq?.seq ?? 0;
    } catch (e) {
      db.close();
      throw e;
    }
    this.db = db;
    this.o.log.info({ outbox: this.outboxCount, outbox_bytes: this.outboxBytes, last_seq: this.lastSeq }, 'store ready');
  }

  /** Commits what is queued, checkpoints the WAL into the main file, closes. Never throws. */
  async stop(): Promise<void> {
    this.stopped = true;
    const db = this.db;
    if (!db) return;
    this.flush();
    try {
      db.pragma('wal_checkpoint(TRUNCATE)');
    } catch (e) {
      this.o.log.warn({ err: (e as Error).message }, 'WAL checkpoint at stop failed (the WAL is replayed at next start)');
    }
    try {
      db.close();
    } catch (e) {
      this.o.log.error({ err: (e as Error).message }, 'closing the database failed');
    }
    this.db = null;
    this.st = null;
    this.commitBatch = null;
    this.o.log.info({ ...this.counters }, 'store closed');
  }

  // ---- queued writes: each promise resolves after its batch committed ----

  appendEvent(e: AppendEventInput): Promise<AppendedEvent> {
    const refused = this.refuseWrite();
    if (refused) return Promise.reject(refused);
    let payload: string;
    try {
      payload = JSON.stringify(e.payload);
      if (typeof payload !== 'string') throw new TypeError('payload is not a JSON object');
    } catch (err) {
      return Promise.reject(new ShelfgateError(ErrorCode.REQUEST_INVALID, `event payload for ${e.deviceId} cannot be stored: ${(err as Error).message}`));
    }
    return new Promise<AppendedEvent>((resolve, reject) => {
      this.batch.events.push({
        eventId: e.eventId ?? randomUUID(),
        deviceId: e.deviceId,
        kind: e.kind,
        priority: e.priority ?? 0,
        payload,
        bytes: Buffer.byteLength(payload, 'utf8'),
        createdAt: e.createdAt ?? Date.now(),
        waiter: { resolve, reject },
      });
      this.queued();
    });
  }

  /** Upserts a slot's state; within one batch only the last state per slot is written. */
  saveSlotState(s: SlotStateInput): Promise<void> {
    const refused = this.refuseWrite();
    if (refused) return Promise.reject(refused);
    return new Promise<void>((resolve, reject) => {
      const key = `${s.shelfId}\u0000${s.slotId}`;
      const op = this.batch.slotStates.get(key);
      if (op) {
        op.s = { ...s };
        op.waiters.push({ resolve, reject });
      } else {
        this.batch.slotStates.set(key, { s: { ...s }, waiters: [{ resolve, reject }] });
      }
      this.queued();
    });
  }

  /** Sets calibration overrides (undefined: unchanged, null: back to config) and increments calib_version. */
  saveCalibration(shelfId: string, slotId: string, c: CalibrationInput): Promise<void> {
    const refused = this.refuseWrite();
    if (refused) return Promise.reject(refused);
    return new Promise<void>((resolve, reject) => {
      this.batch.calibrations.push({ shelfId, slotId, c: { ...c }, waiter: { resolve, reject } });
      this.queued();
    });
  }

  /** Upserts a device's availability; within one batch only the last state per device is written. */
  setDeviceState(d: DeviceStateInput): Promise<void> {
    const refused = this.refuseWrite();
    if (refused) return Promise.reject(refused);
    return new Promise<void>((resolve, reject) => {
      const op = this.batch.devices.get(d.id);
      const seen = d.online ? d.ts : null;
      if (op) {
        op.d = { ...d };
        if (seen !== null) op.lastSeen = Math.max(op.lastSeen ?? seen, seen);
        op.waiters.push({ resolve, reject });
      } else {
        this.batch.devices.set(d.id, { d: { ...d }, lastSeen: seen, waiters: [{ resolve, reject }] });
      }
      this.queued();
    });
  }

  // ---- synchronous reads (committed data only) and small synchronous writes ----

  loadSlots(): SlotRow[] {
    return (this.stmts().selectSlots.all() as RawSlotRow[]).map((r) => ({
      shelfId: r.shelf_id,
      slotId: r.slot_id,
      gtin: r.gtin,
      unitWeightG: r.unit_weight_g,
      tareG: r.tare_g,
      toleranceG: r.tolerance_g,
      calibVersion: r.calib_version ?? 0,
      count: r.count,
      weightG: r.weight_g,
      condition: r.condition,
      updatedAt: r.updated_at,
    }));
  }

  loadDevices(): DeviceRow[] {
    return (this.stmts().selectDevices.all() as RawDeviceRow[]).map((r) => ({
      id: r.id,
      kind: r.kind,
      model: r.model,
      path: r.path,
      online: r.online === 1,
      reason: r.reason,
      lastSeen: r.last_seen,
      updatedAt: r.updated_at,
    }));
  }

  /** Cheap: counts are kept in memory (initialised at start), the oldest row is an index lookup. */
  outboxStats(): OutboxStats {
    const oldest = this.stmts().oldestOutbox.get() as { created_at: number } | undefined;
    return { count: this.outboxCount, bytes: this.outboxBytes, oldestCreatedAt: oldest?.created_at ?? null, lastSeq: this.lastSeq };
  }

  /** Up to `limit` committed events with seq > afterSeq, in seq order. */
  peekOutbox(afterSeq: number, limit: number): OutboxRow[] {
    return (this.stmts().peekOutbox.all(afterSeq, limit) as RawOutboxRow[]).map((r) => ({
      seq: r.seq,
      eventId: r.event_id,
      storeId: r.store_id,
      deviceId: r.device_id,
      kind: r.kind,
      priority: r.priority,
      payload: r.payload,
      bytes: r.bytes,
      createdAt: r.created_at,
    }));
  }

  /**
   * Deletes events the central service acknowledged (one transaction, durable when it returns).
   * Unknown ids are ignored. Returns how many were deleted. Their seqs are never reused.
   */
  ackOutbox(eventIds: readonly string[]): number {
    const st = this.stmts();
    const db = this.db!;
    let n = 0;
    let bytes = 0;
    db.transaction(() => {
      for (const id of eventIds) {
        const r = st.deleteEvent.get(id) as { bytes: number } | undefined;
        if (r) {
          n++;
          bytes += r.bytes;
        }
      }
    })();
    this.outboxCount -= n;
    this.outboxBytes -= bytes;
    return n;
  }

  getMeta(key: string): string | null {
    const r = this.stmts().getMeta.get(key) as { value: string | null } | undefined;
    return r?.value ?? null;
  }

  /** Durable when it returns (its own transaction). */
  setMeta(key: string, value: string): void {
    this.stmts().setMeta.run(key, value);
  }

  stats(): StoreStats {
    return { ...this.counters, pendingOps: this.batch.ops };
  }

  // ---- for the sync service (src/sync): its own tables and the buffer policy ----

  /**
   * Runs `fn` as one synchronous transaction on the writer connection (like ackOutbox: between
   * queued batches, on the same thread, durable when it returns; rolled back if `fn` throws).
   * For the sync tables (prices, slot_versions, parked, pending_acks, sync_gaps) and meta, and for
   * reads. Never delete or insert outbox rows through it: use removeFromOutbox, which keeps the
   * in-memory outbox counters right.
   */
  transaction<T>(fn: (db: Database) => T): T {
    this.stmts();
    const db = this.db!;
    return db.transaction(() => fn(db))();
  }

  /**
   * Deletes outbox rows by seq and runs `also(db, removed)` in the SAME transaction (e.g. to park
   * them or to record drop counters and gaps), so either both happen or neither. Unknown seqs are
   * ignored. Returns the rows removed, in the order given. Throws (nothing changed) if the
   * transaction fails, e.g. SQLITE_FULL.
   */
  removeFromOutbox(seqs: readonly number[], also?: (db: Database, removed: RemovedOutboxRow[]) => void): RemovedOutboxRow[] {
    const del = this.stmts().deleteEventBySeq;
    const db = this.db!;
    const removed = db.transaction(() => {
      const out: RemovedOutboxRow[] = [];
      for (const seq of seqs) {
        const r = del.get(seq) as { seq: number; event_id: string; device_id: string; kind: string; priority: number; bytes: number } | undefined;
        if (r) out.push({ seq: r.seq, eventId: r.event_id, deviceId: r.device_id, kind: r.kind, priority: r.priority, bytes: r.bytes });
      }
      also?.(db, out);
      return out;
    })();
    let bytes = 0;
    for (const r of removed) bytes += r.bytes;
    this.outboxCount -= removed.length;
    this.outboxBytes -= bytes;
    return removed;
  }

  /** Calls `fn` after every committed batch that appended outbox events. Returns an unsubscribe function. */
  onOutboxAppend(fn: () => void): () => void {
    this.appendListeners.add(fn);
    return () => this.appendListeners.delete(fn);
  }

  /** The last batch that could not be committed (SQLITE_FULL, ...), or null. */
  lastWriteError(): LastWriteError | null {
    return this.lastFailure;
  }

  /**
   * The open connection, for diagnostics and fault-injection tests only (e.g. `PRAGMA max_page_count`
   * to simulate a full disk). Never write through it: the Store is the one writer.
   * @internal
   */
  get connection(): Database | null {
    return this.db;
  }

  // ---- the writer ----

  private refuseWrite(): ShelfgateError | null {
    if (this.db && !this.stopped) return null;
    return new ShelfgateError(ErrorCode.STOPPED, this.stopped ? 'store is stopped: write refused' : 'store is not started: write refused');
  }

  private stmts(): Statements {
    if (!this.st) throw new ShelfgateError(ErrorCode.STOPPED, 'store is not open');
    return this.st;
  }

  private queued(): void {
    const b = this.batch;
    b.ops++;
    if (b.ops >= MAX_BATCH_OPS) {
      this.flush();
    } else if (b.ops === 1) {
      // Not unref'd: a queued write keeps the process alive until it is committed.
      this.timer = setTimeout(() => this.flush(), this.o.flushIntervalMs);
    }
  }

  /** Commits the current batch (synchronously) and settles its promises. Never throws. */
  private flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const b = this.batch;
    if (b.ops === 0) return;
    this.batch = new Batch();
    const db = this.db;
    const t0 = performance.now();
    let result: BatchResult;
    try {
      if (!db || !this.commitBatch) throw new ShelfgateError(ErrorCode.STOPPED, 'store is not open');
      result = this.commitBatch(b);
    } catch (e) {
      this.failBatch(b, e);
      return;
    }
    const ms = performance.now() - t0;
    const c = this.counters;
    c.batches++;
    c.ops += b.ops;
    c.rowsWritten += result.rows;
    c.lastBatchMs = ms;
    if (ms > c.maxBatchMs) c.maxBatchMs = ms;
    this.outboxCount += result.inserted;
    this.outboxBytes += result.insertedBytes;
    if (result.maxSeq > this.lastSeq) this.lastSeq = result.maxSeq;
    for (let i = 0; i < b.events.length; i++) {
      const ev = b.events[i]!;
      ev.waiter.resolve({ seq: result.seqs[i]!, eventId: ev.eventId });
    }
    for (const op of b.slotStates.values()) for (const w of op.waiters) w.resolve();
    for (const op of b.calibrations) op.waiter.resolve();
    for (const op of b.devices.values()) for (const w of op.waiters) w.resolve();
    if (result.inserted > 0) {
      for (const fn of this.appendListeners) {
        try {
          fn();
        } catch (e) {
          this.limiter.error('append-listener', { err: (e as Error)?.message }, 'outbox append listener failed');
        }
      }
    }
  }

  /** Runs inside the batch transaction. */
  private writeBatch(b: Batch): BatchResult {
    const st = this.st!;
    const storeId = this.o.storeId;
    let rows = 0;
    let insertedBytes = 0;
    let maxSeq = 0;
    let inserted = 0;
    const seqs: number[] = new Array<number>(b.events.length);
    for (let i = 0; i < b.events.length; i++) {
      const ev = b.events[i]!;
      const r = st.insertEvent.run(ev.eventId, storeId, ev.deviceId, ev.kind, ev.priority, ev.payload, ev.bytes, ev.createdAt);
      if (r.changes === 1) {
        rows++;
        const seq = Number(r.lastInsertRowid);
        seqs[i] = seq;
        if (seq > maxSeq) maxSeq = seq;
        inserted++;
        insertedBytes += ev.bytes;
      } else {
        // Same event id already in the outbox (a retried append): idempotent, report its seq.
        seqs[i] = (st.eventSeqById.get(ev.eventId) as { seq: number }).seq;
      }
    }
    for (const { s } of b.slotStates.values()) {
      st.upsertSlotState.run(s.shelfId, s.slotId, s.count, s.weightG, s.condition, s.updatedAt);
      rows++;
    }
    for (const { shelfId, slotId, c } of b.calibrations) {
      st.upsertCalibration.run({
        shelf_id: shelfId,
        slot_id: slotId,
        gtin: c.gtin ?? null,
        unit_weight_g: c.unitWeightG ?? null,
        tare_g: c.tareG ?? null,
        tolerance_g: c.toleranceG ?? null,
        set_gtin: c.gtin === undefined ? 0 : 1,
        set_unit_weight_g: c.unitWeightG === undefined ? 0 : 1,
        set_tare_g: c.tareG === undefined ? 0 : 1,
        set_tolerance_g: c.toleranceG === undefined ? 0 : 1,
      });
      rows++;
    }
    for (const { d, lastSeen } of b.devices.values()) {
      st.upsertDevice.run(d.id, d.kind, d.model, d.path, d.online ? 1 : 0, d.reason ?? null, lastSeen, d.ts);
      rows++;
    }
    return { rows, inserted, insertedBytes, seqs, maxSeq };
  }

  private failBatch(b: Batch, e: unknown): void {
    const db = this.db;
    if (db?.inTransaction) {
      try {
        db.exec('ROLLBACK');
      } catch {
        // nothing more to undo
      }
    }
    const code = (e as { code?: unknown })?.code;
    const sqliteCode = typeof code === 'string' ? code : 'UNKNOWN';
    const err =
      e instanceof ShelfgateError
        ? e
        : new StoreWriteError(`could not commit ${b.ops} store writes (${sqliteCode}): ${(e as Error)?.message ?? String(e)}; none of them was saved`, sqliteCode, b.ops, e);
    this.counters.failedBatches++;
    this.counters.failedOps += b.ops;
    this.lastFailure = { code: sqliteCode, at: Date.now(), failedBatches: this.counters.failedBatches };
    this.limiter.error(`batch:${sqliteCode}`, { err: err.message, code: sqliteCode, ops: b.ops }, 'store batch failed: its writes were rejected');
    for (const ev of b.events) ev.waiter.reject(err);
    for (const op of b.slotStates.values()) for (const w of op.waiters) w.reject(err);
    for (const op of b.calibrations) op.waiter.reject(err);
    for (const op of b.devices.values()) for (const w of op.waiters) w.reject(err);
  }
}

function prepare(db: Database): Statements {
  return {
    insertEvent: db.prepare(
      `INSERT INTO outbox (event_id, store_id, device_id, kind, priority, payload, bytes, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING`,
    ),
    eventSeqById: db.prepare('SELECT seq FROM outbox WHERE event_id = ?'),
    upsertSlotState: db.prepare(
      `INSERT INTO slots (shelf_id, slot_id, count, weight_g, condition, updated_at, calib_version) VALUES (?, ?, ?, ?, ?, ?, 0)
       ON CONFLICT (shelf_id, slot_id) DO UPDATE SET
         count = excluded.count, weight_g = excluded.weight_g, condition = excluded.condition, updated_at = excluded.updated_at`,
    ),
    upsertCalibration: db.prepare(
      `INSERT INTO slots (shelf_id, slot_id, gtin, unit_weight_g, tare_g, tolerance_g, calib_version)
       VALUES (@shelf_id, @slot_id, @gtin, @unit_weight_g, @tare_g, @tolerance_g, 1)
       ON CONFLICT (shelf_id, slot_id) DO UPDATE SET
         gtin          = CASE WHEN @set_gtin THEN excluded.gtin ELSE gtin END,
         unit_weight_g = CASE WHEN @set_unit_weight_g THEN excluded.unit_weight_g ELSE unit_weight_g END,
         tare_g        = CASE WHEN @set_tare_g THEN excluded.tare_g ELSE tare_g END,
         tolerance_g   = CASE WHEN @set_tolerance_g THEN excluded.tolerance_g ELSE tolerance_g END,
         calib_version = coalesce(calib_version, 0) + 1`,
    ),
    upsertDevice: db.prepare(
      `INSERT INTO devices (id, kind, model, path, online, reason, last_seen, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET
         kind = excluded.kind, model = excluded.model, path = excluded.path, online = excluded.online,
         reason = excluded.reason, last_seen = coalesce(excluded.last_seen, last_seen), updated_at = excluded.updated_at`,
    ),
    selectSlots: db.prepare('SELECT * FROM slots ORDER BY shelf_id, slot_id'),
    selectDevices: db.prepare('SELECT * FROM devices ORDER BY id'),
    peekOutbox: db.prepare('SELECT * FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?'),
    oldestOutbox: db.prepare('SELECT created_at FROM outbox ORDER BY seq LIMIT 1'),
    deleteEvent: db.prepare('DELETE FROM outbox WHERE event_id = ? RETURNING bytes'),
    deleteEventBySeq: db.prepare('DELETE FROM outbox WHERE seq = ? RETURNING seq, event_id, device_id, kind, priority, bytes'),
    getMeta: db.prepare('SELECT value FROM meta WHERE key = ?'),
    setMeta: db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
  };
}
