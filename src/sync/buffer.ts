/**
 * The byte bound on the outbox (`sync.buffer_max_bytes`, counted on payload bytes, as
 * Store.outboxStats().bytes) and the explicit policy when it is exceeded (field.md: unbounded disk
 * growth, full-buffer behaviour):
 *
 * Which kinds may be compacted or dropped is not known here: each feature declares its event kinds
 * with their policy (core/event-kinds.ts), and this reads the declarations.
 *
 * 1. Compact: kinds of one compaction group supersede each other per device (a stock event -
 *    pick, put, count - carries the slot's absolute `count`, so an older one is superseded by the
 *    newer one). Superseded events are deleted, oldest first, until the outbox is back under the
 *    low-water mark (90 % of the bound). The newest event of every group and device is never touched.
 * 2. Drop: if still over, the oldest events of droppable kinds (anomalies, conditions and other
 *    low-value telemetry; an undeclared kind when its priority is >= 1) are deleted, oldest first,
 *    down to the low-water mark. Kinds declared not droppable are never dropped.
 * 3. If still over (only the newest stock level per device and priority-0 events are left) the
 *    outbox stays over the bound: ingest is never blocked; status reports `over_limit`.
 *
 * Every deletion is counted by kind in meta (`sync.compacted.<kind>`, `sync.dropped.<kind>`) in the
 * same transaction as the deletion, and the deleted seqs are recorded as ranges in `sync_gaps`
 * (reason `compacted` or `dropped_buffer_full`) so uploads declare them to central as SeqGaps and
 * central's contiguous_seq keeps advancing.
 *
 * The check is cheap (in-memory outbox counters): it runs on a timer and after every committed
 * batch that appended events (Store.onOutboxAppend, coalesced to one run per tick). A failed
 * store batch with SQLITE_FULL (disk full) triggers a forced run: every superseded stock event is
 * compacted and the oldest 10 % (by bytes, at least 64 KiB) of the low-priority events dropped,
 * whatever the byte bound says; then it is reported. Nothing here throws into the caller: a policy
 * run that fails (the deletion itself may fail on a full disk) is logged and retried next tick.
 */
import type { Database } from 'better-sqlite3';
import type { Service } from '../lifecycle';
import { LogLimiter, type Logger } from '../log';
import type { RemovedOutboxRow, Store } from '../store/store';
import type { EventKinds } from '../core/event-kinds';

const CHUNK = 2000;

export type GapReason = 'compacted' | 'dropped_buffer_full';

export interface BufferStats {
  max_bytes: number;
  /** Events deleted as superseded stock levels, total and by kind. */
  compacted: number;
  compacted_by_kind: Record<string, number>;
  /** Low-priority events dropped, total and by kind. */
  dropped: number;
  dropped_by_kind: Record<string, number>;
  /** The outbox is over the bound even after the policy ran (only newest stock levels left). */
  over_limit: boolean;
  /** ms epoch of the last SQLITE_FULL seen, or null. */
  disk_full_at: number | null;
  policy_runs: number;
}

export interface BufferRunResult {
  compacted: number;
  dropped: number;
  bytesFreed: number;
}

export interface OutboxBufferOptions {
  store: Store;
  maxBytes: number;
  /** The declared event kinds: which compact together, which may be dropped. */
  kinds: EventKinds;
  log: Logger;
  /** Timer check interval; default 1000 ms. */
  intervalMs?: number;
  /** Called after a policy run that deleted something (so status can be published). */
  onChange?: () => void;
}

/** Consecutive seqs into ranges: [3,4,5,9] -> [[3,5],[9,9]]. Input need not be sorted. */
export function seqRanges(seqs: readonly number[]): Array<[number, number]> {
  const s = [...seqs].sort((a, b) => a - b);
  const out: Array<[number, number]> = [];
  for (const q of s) {
    const last = out[out.length - 1];
    if (last && q === last[1] + 1) last[1] = q;
    else if (!last || q > last[1]) out.push([q, q]);
  }
  return out;
}

export class OutboxBuffer implements Service {
  readonly name = 'sync-buffer';
  private timer: NodeJS.Timeout | null = null;
  private unsubscribe: (() => void) | null = null;
  private scheduled = false;
  private busy = false;
  private running = false;
  private readonly limiter: LogLimiter;
  private seenFailedBatches = 0;
  private readonly counters = { compacted: new Map<string, number>(), dropped: new Map<string, number>() };
  private overLimit = false;
  private diskFullAt: number | null = null;
  private runs = 0;

  constructor(private readonly o: OutboxBufferOptions) {
    this.limiter = new LogLimiter(o.log);
  }

  get lowWaterBytes(): number {
    return Math.floor(this.o.maxBytes * 0.9);
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    this.loadCounters();
    this.seenFailedBatches = this.o.store.stats().failedBatches;
    this.unsubscribe = this.o.store.onOutboxAppend(() => this.schedule());
    this.timer = setInterval(() => void this.tick(), this.o.intervalMs ?? 1000);
    this.timer.unref();
    void this.tick();
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.unsubscribe?.();
    this.unsubscribe = null;
  }

  stats(): BufferStats {
    const sum = (m: Map<string, number>): number => [...m.values()].reduce((a, b) => a + b, 0);
    return {
      max_bytes: this.o.maxBytes,
      compacted: sum(this.counters.compacted),
      compacted_by_kind: Object.fromEntries(this.counters.compacted),
      dropped: sum(this.counters.dropped),
      dropped_by_kind: Object.fromEntries(this.counters.dropped),
      over_limit: this.overLimit,
      disk_full_at: this.diskFullAt,
      policy_runs: this.runs,
    };
  }

  /** Coalesces checks after appends into one per event-loop turn. */
  private schedule(): void {
    if (this.scheduled || !this.running) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.tick();
    });
  }

  /** One check; never throws. Runs never overlap: a check during a run is skipped (the timer comes back). */
  async tick(): Promise<BufferRunResult | null> {
    if (!this.running || this.busy) return null;
    this.busy = true;
    try {
      const failure = this.o.store.lastWriteError();
      const failed = this.o.store.stats().failedBatches;
      let force = false;
      if (failed !== this.seenFailedBatches) {
        this.seenFailedBatches = failed;
        if (failure?.code === 'SQLITE_FULL') {
          force = true;
          this.diskFullAt = failure.at;
        }
      }
      return await this.enforce(force);
    } catch (e) {
      this.limiter.error('buffer-policy', { err: (e as Error)?.message, code: (e as { code?: string })?.code }, 'outbox buffer policy failed; retrying');
      return null;
    } finally {
      this.busy = false;
    }
  }

  /**
   * Applies the policy now (synchronously). `force`: disk full: compact everything superseded and
   * drop some low-priority events even under the bound. Throws if a deletion fails.
   * Works in chunks of CHUNK rows, one short transaction each, yielding to the event loop between
   * them: compacting a million-event backlog must not stall ingest, the bus or the watchdog.
   */
  async enforce(force = false): Promise<BufferRunResult> {
    const store = this.o.store;
    const res: BufferRunResult = { compacted: 0, dropped: 0, bytesFreed: 0 };
    const bytes = store.outboxStats().bytes;
    if (!force && bytes <= this.o.maxBytes) {
      this.overLimit = false;
      return res;
    }
    this.runs++;
    // 1. compact superseded events per compaction group, oldest first
    const compactTarget = force ? -1 : this.lowWaterBytes;
    for (const [group, kinds] of this.o.kinds.compactionGroups()) {
      const kindsJson = JSON.stringify(kinds);
      // The newest event of the group per device, computed once (one scan): events that arrive
      // during the run only have higher seqs, so "older than the newest seen" stays true.
      const newest = new Map<string, number>(
        store.transaction(
          (db) =>
            db
              .prepare('SELECT device_id, max(seq) AS newest FROM outbox WHERE kind IN (SELECT value FROM json_each(?)) GROUP BY device_id')
              .all(kindsJson) as { device_id: string; newest: number }[],
        ).map((r) => [r.device_id, r.newest]),
      );
      if (newest.size === 0) continue;
      await this.removeWhile('compacted', compactTarget, res, (db, after) => {
        const rows = db
          .prepare(`SELECT seq, bytes, device_id FROM outbox WHERE kind IN (SELECT value FROM json_each(?)) AND seq > ? ORDER BY seq LIMIT ${CHUNK}`)
          .all(kindsJson, after) as { seq: number; bytes: number; device_id: string }[];
        return { lastSeq: rows.at(-1)?.seq ?? null, rows: rows.filter((r) => r.seq < (newest.get(r.device_id) ?? 0)) };
      });
      this.o.log.debug({ group }, 'compaction group done');
    }
    // 2. drop the oldest events of droppable kinds (and undeclared kinds of priority >= 1)
    const bytesNow = store.outboxStats().bytes;
    const dropTarget = force ? Math.max(0, bytesNow - Math.max(64 * 1024, Math.floor(bytesNow * 0.1))) : this.lowWaterBytes;
    if (bytesNow > dropTarget) {
      const droppable = JSON.stringify(this.o.kinds.droppableKinds());
      const declared = JSON.stringify(this.o.kinds.list().map((k) => k.kind));
      await this.removeWhile('dropped_buffer_full', Math.min(dropTarget, this.lowWaterBytes), res, (db, after) => {
        const rows = db
          .prepare(
            `SELECT seq, bytes FROM outbox
             WHERE (kind IN (SELECT value FROM json_each(?)) OR (priority >= 1 AND kind NOT IN (SELECT value FROM json_each(?))))
               AND seq > ? ORDER BY seq LIMIT ${CHUNK}`,
          )
          .all(droppable, declared, after) as { seq: number; bytes: number }[];
        return { lastSeq: rows.at(-1)?.seq ?? null, rows };
      });
    }
    const after = store.outboxStats().bytes;
    this.overLimit = after > this.o.maxBytes;
    if (res.compacted + res.dropped > 0) {
      this.o.log.warn(
        { compacted: res.compacted, dropped: res.dropped, bytes_freed: res.bytesFreed, outbox_bytes: after, max_bytes: this.o.maxBytes, forced: force },
        'outbox over its byte bound: compacted stock levels / dropped low-priority events',
      );
      try {
        this.o.onChange?.();
      } catch {
        // status is best effort
      }
    }
    if (this.overLimit) {
      this.limiter.warn('over-limit', { outbox_bytes: after, max_bytes: this.o.maxBytes }, 'outbox still over its byte bound: only the newest stock levels are left; nothing more is dropped');
    }
    return res;
  }

  /**
   * Deletes candidates (chunk by chunk, in seq order) until the outbox bytes are <= target. Each
   * chunk is one transaction: the deletion, the counters and the gap ranges together.
   */
  private async removeWhile(
    reason: GapReason,
    target: number,
    res: BufferRunResult,
    candidates: (db: Database, afterSeq: number) => { lastSeq: number | null; rows: { seq: number; bytes: number }[] },
  ): Promise<void> {
    const store = this.o.store;
    let after = 0;
    while (this.running && store.outboxStats().bytes > target) {
      const { lastSeq, rows } = store.transaction((db) => candidates(db, after));
      if (lastSeq === null) return; // scanned to the end
      after = lastSeq;
      const pick: number[] = [];
      let excess = store.outboxStats().bytes - target;
      for (const r of rows) {
        if (excess <= 0) break;
        pick.push(r.seq);
        excess -= r.bytes;
      }
      if (pick.length > 0) {
        const counters = reason === 'compacted' ? this.counters.compacted : this.counters.dropped;
        const removed = store.removeFromOutbox(pick, (db, rm) => this.record(db, reason, rm));
        for (const r of removed) {
          counters.set(r.kind, (counters.get(r.kind) ?? 0) + 1);
          res.bytesFreed += r.bytes;
          if (reason === 'compacted') res.compacted++;
          else res.dropped++;
        }
      }
      await new Promise<void>((r) => setImmediate(r)); // let ingest, the bus and the uploader run
    }
  }

  /** Inside the deletion's transaction: counters by kind in meta, and the gap ranges. */
  private record(db: Database, reason: GapReason, removed: RemovedOutboxRow[]): void {
    const prefix = reason === 'compacted' ? 'sync.compacted.' : 'sync.dropped.';
    const byKind = new Map<string, number>();
    for (const r of removed) byKind.set(r.kind, (byKind.get(r.kind) ?? 0) + 1);
    const bump = db.prepare(
      `INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + CAST(excluded.value AS INTEGER) AS TEXT)`,
    );
    for (const [kind, n] of byKind) bump.run(prefix + kind, String(n));
    const gap = db.prepare('INSERT INTO sync_gaps (from_seq, to_seq, reason) VALUES (?, ?, ?)');
    for (const [from, to] of seqRanges(removed.map((r) => r.seq))) gap.run(from, to, reason);
  }

  private loadCounters(): void {
    const rows = this.o.store.transaction(
      (db) => db.prepare("SELECT key, value FROM meta WHERE key LIKE 'sync.compacted.%' OR key LIKE 'sync.dropped.%'").all() as { key: string; value: string }[],
    );
    this.counters.compacted.clear();
    this.counters.dropped.clear();
    for (const r of rows) {
      const n = Number(r.value) || 0;
      if (r.key.startsWith('sync.compacted.')) this.counters.compacted.set(r.key.slice('sync.compacted.'.length), n);
      else this.counters.dropped.set(r.key.slice('sync.dropped.'.length), n);
    }
  }
}

/** Pending gaps to declare, oldest first (at most `limit`). */
export function pendingGaps(store: Store, limit: number): { id: number; from_seq: number; to_seq: number; reason: string }[] {
  return store.transaction(
    (db) => db.prepare('SELECT id, from_seq, to_seq, reason FROM sync_gaps ORDER BY id LIMIT ?').all(limit) as { id: number; from_seq: number; to_seq: number; reason: string }[],
  );
}

/** Forgets gaps central received (a 200 to the batch that carried them). */
export function clearGaps(store: Store, ids: readonly number[]): void {
  if (ids.length === 0) return;
  store.transaction((db) => {
    const del = db.prepare('DELETE FROM sync_gaps WHERE id = ?');
    for (const id of ids) del.run(id);
  });
}
