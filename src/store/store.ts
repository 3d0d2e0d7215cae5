/**
 * The durable store: the one writer of shelfgate's SQLite file (db.ts opens it, migrations.ts
 * shapes it). It owns the outbox, the device registry and small meta values; every other table is
 * owned by the module that declares it (core/locations.ts, a feature's repository), which
 * registers its batched writes here with `defineWrite` and keeps its SQL to itself.
 *
 * One writer. Every queued write goes through one queue, committed as one transaction per batch:
 * at most `flushIntervalMs` after the batch's first write, or at once when it holds MAX_BATCH_OPS
 * operations. Each write's promise resolves only AFTER the transaction holding it committed, so
 * whatever the daemon publishes after awaiting it is already on disk (to the degree below). A
 * write operation may coalesce by key within a batch (a slot's state, a device's availability):
 * only the last one reaches SQLite.
 * The few synchronous writes (ackOutbox, setMeta, `transaction`) run on the same connection and
 * the same thread, each as its own transaction between batches, so there is still exactly one
 * writer and never a "database is locked".
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
import type { Migration } from './migrations';

/** A batch is committed at once when it holds this many operations. */
export const MAX_BATCH_OPS = 1000;

export interface StoreOptions {
  path: string;
  synchronous: Synchronous;
  flushIntervalMs: number;
  storeId: string;
  log: Logger;
  /** Schema migrations of the core and every feature, in one version order (default: the core's). */
  migrations?: readonly Migration[];
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

/**
 * A batched write a module registers with the Store (`defineWrite`). The module owns its table
 * and its SQL; the Store owns when and how it is committed (one writer, batches, durability).
 */
export interface WriteOperation<I, R = void> {
  /** For errors and the log, e.g. `locations.saveStock`. */
  readonly name: string;
  /**
   * Called when the database opens: prepares statements once and returns the function that writes
   * one input inside the batch transaction (its return value resolves the caller's promise).
   */
  prepare(db: Database): (input: I) => R;
  /**
   * Inputs with the same key within one batch are coalesced: only one row is written, from
   * `merge` of the inputs in order (default: the last), and every caller gets that result.
   */
  coalesce?: { key(input: I): string; merge?(previous: I, next: I): I };
  /** Runs after the batch committed, once per written input (not for inputs coalesced away). */
  committed?(input: I, result: R): void;
}

interface Entry {
  op: RegisteredOp;
  input: unknown;
  waiters: Array<Waiter<unknown>>;
  result?: unknown;
}

interface RegisteredOp {
  def: WriteOperation<unknown, unknown>;
  write: ((input: unknown) => unknown) | null;
}

class Batch {
  ops = 0;
  readonly entries: Entry[] = [];
  readonly coalesced = new Map<RegisteredOp, Map<string, Entry>>();
}

interface Statements {
  selectDevices: Statement;
  peekOutbox: Statement;
  oldestOutbox: Statement;
  deleteEvent: Statement;
  deleteEventBySeq: Statement;
  getMeta: Statement;
  setMeta: Statement;
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

/** An outbox row before it has a seq (the store id is the Store's own). */
type EventInput = Omit<OutboxRow, 'seq' | 'storeId'>;

interface DeviceInput {
  d: DeviceStateInput;
  /** Latest ts among the coalesced writes that reported the device online. */
  lastSeen: number | null;
}

export class Store implements Service {
  readonly name = 'store';
  private db: Database | null = null;
  private st: Statements | null = null;
  private commitBatch: ((b: Batch) => number) | null = null;
  private batch = new Batch();
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private outboxCount = 0;
  private outboxBytes = 0;
  private lastSeq = 0;
  private readonly limiter: LogLimiter;
  private readonly counters = { batches: 0, ops: 0, rowsWritten: 0, lastBatchMs: 0, maxBatchMs: 0, failedBatches: 0, failedOps: 0 };
  private readonly appendListeners = new Set<() => void>();
  /** Events appended (committed, not duplicates) since start, by kind: kinds are declared by features, so the map stays small. */
  private readonly appendedKinds = new Map<string, number>();
  private readonly openListeners: Array<(db: Database) => void> = [];
  private readonly ops: RegisteredOp[] = [];
  private appendedInBatch = 0;
  /** > 0 while `together` runs: the size bound waits for its end. */
  private holdFlush = 0;
  private lastFailure: LastWriteError | null = null;
  private readonly appendOp: (e: EventInput) => Promise<AppendedEvent>;
  private readonly deviceOp: (d: DeviceInput) => Promise<void>;

  constructor(private readonly o: StoreOptions) {
    this.limiter = new LogLimiter(o.log);
    const storeId = o.storeId;
    this.appendOp = this.defineWrite<EventInput, AppendedEvent>({
      name: 'outbox.append',
      prepare: (db) => {
        const insert = db.prepare(
          `INSERT INTO outbox (event_id, store_id, device_id, kind, priority, payload, bytes, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING`,
        );
        const seqById = db.prepare('SELECT seq FROM outbox WHERE event_id = ?');
        return (ev) => {
          const r = insert.run(ev.eventId, storeId, ev.deviceId, ev.kind, ev.priority, ev.payload, ev.bytes, ev.createdAt);
          // Same event id already in the outbox (a retried append): idempotent, report its seq.
          if (r.changes !== 1) return { seq: (seqById.get(ev.eventId) as { seq: number }).seq, eventId: ev.eventId, inserted: false } as AppendedEvent;
          return { seq: Number(r.lastInsertRowid), eventId: ev.eventId, inserted: true } as AppendedEvent;
        };
      },
      committed: (ev, r) => {
        const res = r as AppendedEvent & { inserted?: boolean };
        if (res.inserted) {
          this.outboxCount++;
          this.outboxBytes += ev.bytes;
          this.appendedInBatch++;
          this.appendedKinds.set(ev.kind, (this.appendedKinds.get(ev.kind) ?? 0) + 1);
          if (res.seq > this.lastSeq) this.lastSeq = res.seq;
        }
        delete res.inserted;
      },
    });
    this.deviceOp = this.defineWrite<DeviceInput, void>({
      name: 'devices.setState',
      prepare: (db) => {
        const upsert = db.prepare(
          `INSERT INTO devices (id, kind, model, path, online, reason, last_seen, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET
             kind = excluded.kind, model = excluded.model, path = excluded.path, online = excluded.online,
             reason = excluded.reason, last_seen = coalesce(excluded.last_seen, last_seen), updated_at = excluded.updated_at`,
        );
        return ({ d, lastSeen }) => {
          upsert.run(d.id, d.kind, d.model, d.path, d.online ? 1 : 0, d.reason ?? null, lastSeen, d.ts);
        };
      },
      coalesce: {
        key: (i) => i.d.id,
        merge: (prev, next) => ({ d: next.d, lastSeen: prev.lastSeen === null ? next.lastSeen : next.lastSeen === null ? prev.lastSeen : Math.max(prev.lastSeen, next.lastSeen) }),
      },
    });
  }

  /**
   * Registers a batched write (see WriteOperation). Call it before start(), typically from a
   * module's constructor; the returned function queues one input and resolves after its batch
   * committed.
   */
  defineWrite<I, R = void>(def: WriteOperation<I, R>): (input: I) => Promise<R> {
    const op: RegisteredOp = { def: def as WriteOperation<unknown, unknown>, write: null };
    if (this.db) op.write = op.def.prepare(this.db);
    this.ops.push(op);
    return (input: I) => this.enqueue(op, input) as Promise<R>;
  }

  /**
   * Runs `fn` with the open connection each time the database opens (at start, before anything is
   * written): the place for a module to prepare its statements once. Nothing may be executed here;
   * statements that write run only through defineWrite or inside `transaction` / `removeFromOutbox`,
   * so the Store stays the one writer.
   */
  onOpen(fn: (db: Database) => void): void {
    this.openListeners.push(fn);
    if (this.db) fn(this.db);
  }

  async start(): Promise<void> {
    if (this.db) return;
    this.stopped = false;
    const db = openDatabase(this.o.path, { synchronous: this.o.synchronous, log: this.o.log, migrations: this.o.migrations });
    try {
      this.st = prepare(db);
      for (const op of this.ops) op.write = op.def.prepare(db);
      this.commitBatch = db.transaction((b: Batch) => this.writeBatch(b));
      const agg = db.prepare('SELECT count(*) AS n, coalesce(sum(bytes), 0) AS bytes FROM outbox').get() as { n: number; bytes: number };
      const sq = db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").get() as { seq: number } | undefined;
      this.outboxCount = agg.n;
      this.outboxBytes = agg.bytes;
      this.lastSeq = sq?.seq ?? 0;
      for (const fn of this.openListeners) fn(db);
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
    for (const op of this.ops) op.write = null;
    this.o.log.info({ ...this.counters }, 'store closed');
  }

  // ---- queued writes: each promise resolves after its batch committed ----

  appendEvent(e: AppendEventInput): Promise<AppendedEvent> {
    let payload: string;
    try {
      payload = JSON.stringify(e.payload);
      if (typeof payload !== 'string') throw new TypeError('payload is not a JSON object');
    } catch (err) {
      return Promise.reject(new ShelfgateError(ErrorCode.REQUEST_INVALID, `event payload for ${e.deviceId} cannot be stored: ${(err as Error).message}`));
    }
    return this.appendOp({
      eventId: e.eventId ?? randomUUID(),
      deviceId: e.deviceId,
      kind: e.kind,
      priority: e.priority ?? 0,
      payload,
      bytes: Buffer.byteLength(payload, 'utf8'),
      createdAt: e.createdAt ?? Date.now(),
    });
  }

  /** Upserts a device's availability; within one batch only the last state per device is written. */
  setDeviceState(d: DeviceStateInput): Promise<void> {
    return this.deviceOp({ d: { ...d }, lastSeen: d.online ? d.ts : null });
  }

  // ---- synchronous reads (committed data only) and small synchronous writes ----

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

  /** This database's epoch (migration 5): a UUID, or "" for a database that synced under contract 1.0. */
  epoch(): string {
    return this.getMeta('store.epoch') ?? '';
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

  /** True between a successful start() and stop(): the database is open. */
  get isOpen(): boolean {
    return this.db !== null;
  }

  /** Outbox events appended by this process (committed, not duplicates), by kind (for metrics). */
  appendedByKind(): ReadonlyMap<string, number> {
    return this.appendedKinds;
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

  private enqueue(op: RegisteredOp, input: unknown): Promise<unknown> {
    const refused = this.refuseWrite();
    if (refused) return Promise.reject(refused);
    return new Promise((resolve, reject) => {
      const b = this.batch;
      const waiter = { resolve, reject };
      const c = op.def.coalesce;
      if (c) {
        const key = c.key(input);
        let byKey = b.coalesced.get(op);
        if (!byKey) b.coalesced.set(op, (byKey = new Map()));
        const prev = byKey.get(key);
        if (prev) {
          prev.input = c.merge ? c.merge(prev.input, input) : input;
          prev.waiters.push(waiter);
          this.queued();
          return;
        }
        const entry: Entry = { op, input, waiters: [waiter] };
        byKey.set(key, entry);
        b.entries.push(entry);
      } else {
        b.entries.push({ op, input, waiters: [waiter] });
      }
      this.queued();
    });
  }

  /**
   * Queues the writes `fn` makes into one batch: the size bound (MAX_BATCH_OPS) never splits them,
   * so an event and the state it leads to commit together or fail together.
   */
  together<T>(fn: () => T): T {
    this.holdFlush++;
    try {
      return fn();
    } finally {
      this.holdFlush--;
      if (this.holdFlush === 0 && this.batch.ops >= MAX_BATCH_OPS) this.flush();
    }
  }

  private queued(): void {
    const b = this.batch;
    b.ops++;
    if (b.ops >= MAX_BATCH_OPS && this.holdFlush === 0) {
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
    let rows: number;
    try {
      if (!db || !this.commitBatch) throw new ShelfgateError(ErrorCode.STOPPED, 'store is not open');
      rows = this.commitBatch(b);
    } catch (e) {
      this.failBatch(b, e);
      return;
    }
    const ms = performance.now() - t0;
    const c = this.counters;
    c.batches++;
    c.ops += b.ops;
    c.rowsWritten += rows;
    c.lastBatchMs = ms;
    if (ms > c.maxBatchMs) c.maxBatchMs = ms;
    this.appendedInBatch = 0;
    const entries = b.entries;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      const committed = e.op.def.committed;
      if (committed) {
        try {
          committed(e.input, e.result);
        } catch (err) {
          this.limiter.error(`committed:${e.op.def.name}`, { op: e.op.def.name, err: (err as Error)?.message }, 'after-commit hook failed');
        }
      }
      const ws = e.waiters;
      for (let j = 0; j < ws.length; j++) ws[j]!.resolve(e.result);
    }
    if (this.appendedInBatch > 0) {
      for (const fn of this.appendListeners) {
        try {
          fn();
        } catch (e) {
          this.limiter.error('append-listener', { err: (e as Error)?.message }, 'outbox append listener failed');
        }
      }
    }
  }

  /** Runs inside the batch transaction; returns the rows written. */
  private writeBatch(b: Batch): number {
    const entries = b.entries;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      e.result = e.op.write!(e.input);
    }
    return entries.length;
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
    for (const entry of b.entries) for (const w of entry.waiters) w.reject(err);
  }
}

function prepare(db: Database): Statements {
  return {
    selectDevices: db.prepare('SELECT * FROM devices ORDER BY id'),
    peekOutbox: db.prepare('SELECT * FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?'),
    oldestOutbox: db.prepare('SELECT created_at FROM outbox ORDER BY seq LIMIT 1'),
    deleteEvent: db.prepare('DELETE FROM outbox WHERE event_id = ? RETURNING bytes'),
    deleteEventBySeq: db.prepare('DELETE FROM outbox WHERE seq = ? RETURNING seq, event_id, device_id, kind, priority, bytes'),
    getMeta: db.prepare('SELECT value FROM meta WHERE key = ?'),
    setMeta: db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
  };
}
