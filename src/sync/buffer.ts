/**
 * The byte bound on the outbox (`sync.buffer_max_bytes`, counted on payload bytes, as
 * Store.outboxStats().bytes) and the explicit policy when it is exceeded (a known failure of other gateways: unbounded disk
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
 * Events the uploader holds (read into a lane or in a batch in flight, `held`) are never compacted
 * or dropped: central would get the event and a gap saying it will never come.
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
import type { Service } from '../lifecycle';
import { LogLimiter, type Logger } from '../log';
import type { Store } from '../store/store';
import type { EventKinds } from '../core/event-kinds';
import { SyncRepository } from './repository';

const CHUNK = 2000;

/** Meta keys of the counters by kind: `<prefix><kind>`. */
const COMPACTED_PREFIX = 'sync.compacted.';
const DROPPED_PREFIX = 'sync.dropped.';

export type BufferGapReason = 'compacted' | 'dropped_buffer_full';

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
  /** The sync repository on `store` (default: one of its own). */
  repo?: SyncRepository;
  maxBytes: number;
  /** The declared event kinds: which compact together, which may be dropped. */
  kinds: EventKinds;
  log: Logger;
  /** Timer check interval; default 1000 ms. */
  intervalMs?: number;
  /** Called after a policy run that deleted something (so status can be published). */
  onChange?: () => void;
  /**
   * Seqs the uploader holds (read into a lane or in flight): never compacted or dropped, or
   * central would receive the event and a gap saying it will never come.
   */
  held?: () => ReadonlySet<number>;
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
  private readonly repo: SyncRepository;

  constructor(private readonly o: OutboxBufferOptions) {
    this.limiter = new LogLimiter(o.log);
    this.repo = o.repo ?? new SyncRepository(o.store);
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
      // The newest event of the group per device, computed once (one scan): events that arrive
      // during the run only have higher seqs, so "older than the newest seen" stays true.
      const newest = this.repo.newestSeqPerDevice(kinds);
      if (newest.size === 0) continue;
      await this.removeWhile('compacted', compactTarget, res, (after) => {
        const rows = this.repo.scanKinds(kinds, after, CHUNK);
        return { lastSeq: rows.at(-1)?.seq ?? null, rows: rows.filter((r) => r.seq < (newest.get(r.device_id) ?? 0)) };
      });
      this.o.log.debug({ group }, 'compaction group done');
    }
    // 2. drop the oldest events of droppable kinds (and undeclared kinds of priority >= 1)
    const bytesNow = store.outboxStats().bytes;
    const dropTarget = force ? Math.max(0, bytesNow - Math.max(64 * 1024, Math.floor(bytesNow * 0.1))) : this.lowWaterBytes;
    if (bytesNow > dropTarget) {
      const droppable = this.o.kinds.droppableKinds();
      const declared = this.o.kinds.list().map((k) => k.kind);
      await this.removeWhile('dropped_buffer_full', Math.min(dropTarget, this.lowWaterBytes), res, (after) => {
        const rows = this.repo.scanDroppable(droppable, declared, after, CHUNK);
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
    reason: BufferGapReason,
    target: number,
    res: BufferRunResult,
    candidates: (afterSeq: number) => { lastSeq: number | null; rows: { seq: number; bytes: number }[] },
  ): Promise<void> {
    const store = this.o.store;
    let after = 0;
    while (this.running && store.outboxStats().bytes > target) {
      const { lastSeq, rows } = candidates(after);
      if (lastSeq === null) return; // scanned to the end
      after = lastSeq;
      const pick: number[] = [];
      let excess = store.outboxStats().bytes - target;
      const held = this.o.held?.(); // read in the same synchronous step as the deletion below
      for (const r of rows) {
        if (excess <= 0) break;
        if (held?.has(r.seq)) continue;
        pick.push(r.seq);
        excess -= r.bytes;
      }
      if (pick.length > 0) {
        const counters = reason === 'compacted' ? this.counters.compacted : this.counters.dropped;
        const removed = this.repo.removeForBuffer(pick, reason, reason === 'compacted' ? COMPACTED_PREFIX : DROPPED_PREFIX, seqRanges);
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

  private loadCounters(): void {
    const rows = this.repo.counters([COMPACTED_PREFIX, DROPPED_PREFIX]);
    this.counters.compacted.clear();
    this.counters.dropped.clear();
    for (const r of rows) {
      const n = Number(r.value) || 0;
      if (r.key.startsWith(COMPACTED_PREFIX)) this.counters.compacted.set(r.key.slice(COMPACTED_PREFIX.length), n);
      else this.counters.dropped.set(r.key.slice(DROPPED_PREFIX.length), n);
    }
  }
}
