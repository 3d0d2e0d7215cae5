/**
 * The upload pipeline: the store's outbox to central (field.md: data lost around disconnects,
 * backlog never drains, slow drain, ordering).
 *
 * - Draining is a loop of its own: it starts as soon as central is reachable and runs whether or
 *   not new events arrive (an append wakes it early; an idle poll catches everything else).
 * - Events leave the outbox ONLY when central answered `accepted` or `duplicate` for them.
 *   `rejected` events are moved to the `parked` table with central's error in one transaction
 *   (counted, reported in status, never resent, never silently lost).
 * - Pipelining without breaking per-device order: the outbox is read in seq order and every event
 *   goes to one of `pipeline` lanes chosen by a hash of its device_id. Each lane has at most one
 *   batch in flight and retries it (same content, same batch id) until it gets an answer, before
 *   sending its next batch. So a device's events reach central in seq order even with lost
 *   responses and retries, while up to `pipeline` batches (of different devices) are in flight.
 * - Batch id: `<store>-<firstSeq>-<lastSeq>-<hash of the event ids>`: stable across retries of the
 *   same content, and never reused for another set of events (which central would refuse with 422).
 * - Retryable failures (network, timeout, 5xx, 429): one shared capped exponential backoff with
 *   jitter (util/backoff.ts, capped at sync.backoff.max_ms, itself at most 1 h, far below 2^31 ms),
 *   or Retry-After when central sends one. Fatal ones (401/403, TLS, contract): logged (rate
 *   limited) and retried at the maximum backoff. 413: the batch is split.
 * - Conditions (priority 2) with `upload_conditions: false`: they are NOT uploaded and NOT deleted:
 *   they stay in the outbox (counted in backlog bytes, reported as `held_conditions`) until the
 *   buffer policy drops them as low-priority events (declared as `dropped_buffer_full` gaps then).
 *   Consequence: central's contiguous_seq waits at the oldest held condition until it is dropped.
 * - Seq gaps recorded by the buffer policy ride along with the next batch and are forgotten once a
 *   batch carrying them got a 200.
 */
import { createHash } from 'node:crypto';
import type { SyncConfig } from '../config/schema';
import { Priority } from '../core/event-kinds';
import { LogLimiter, type Logger } from '../log';
import type { OutboxRow, Store } from '../store/store';
import { Backoff, sleep } from '../util/backoff';
import { failureOf } from './failure';
import type { SyncRepository } from './repository';
import { retryAfterDelay } from './retry';
import type { Exchange, SyncStats } from './status';
import type { SeqGap, SyncTransport, UploadEvent, UploadResult } from './types';
import { Wakeup } from './wakeup';

/** Priority of condition events (not uploaded with `upload_conditions: false`). */
export const CONDITION_PRIORITY = Priority.CONDITION;

export interface UploadPipelineOptions {
  storeId: string;
  config: SyncConfig;
  store: Store;
  repo: SyncRepository;
  transport: SyncTransport;
  counters: SyncStats;
  log: Logger;
  /** Idle poll of the outbox when nothing woke the uploader; default 1000 ms. */
  idlePollMs?: number;
  succeeded: (what: Exchange) => void;
  failed: (e: unknown, what: Exchange) => void;
  /** Something the status reports changed (parked events). */
  changed: () => void;
}

interface Batch {
  id: string;
  rows: OutboxRow[];
  events: UploadEvent[];
  gaps: { id: number; gap: SeqGap }[];
  salt: number;
}

type PauseReason = 'backoff' | 'retry-after' | 'fatal';

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** The lane of a device's events (of `lanes`). */
export function laneOf(deviceId: string, lanes: number): number {
  return lanes <= 1 ? 0 : fnv1a(deviceId) % lanes;
}

export class UploadPipeline {
  private readonly limiter: LogLimiter;
  private readonly lanes: number;
  private readonly wakeup = new Wakeup();
  private signal: AbortSignal = AbortSignal.abort();
  private queues: OutboxRow[][] = [];
  private current: (Batch | null)[] = [];
  private laneLimit: number[] = [];
  private readSeq = 0;
  private exhausted = false;
  private readonly gapsInFlight = new Set<number>();
  private readonly backoff: Backoff;
  private pausedUntil = 0;
  private pauseReason: PauseReason = 'backoff';
  private parked = 0;

  constructor(private readonly o: UploadPipelineOptions) {
    this.limiter = new LogLimiter(o.log);
    this.lanes = Math.max(1, o.config.pipeline);
    this.backoff = new Backoff({ initialMs: o.config.backoff.initial_ms, maxMs: o.config.backoff.max_ms });
  }

  get pipeline(): number {
    return this.lanes;
  }

  /** Events parked so far (all time: counted from the table at start). */
  get parkedTotal(): number {
    return this.parked;
  }

  /** Resets the lanes and counts what is parked; call before run(). */
  prepare(): void {
    this.queues = Array.from({ length: this.lanes }, () => []);
    this.current = Array.from({ length: this.lanes }, () => null);
    this.laneLimit = Array.from({ length: this.lanes }, () => this.o.config.batch_max_events);
    this.readSeq = 0;
    this.exhausted = false;
    this.gapsInFlight.clear();
    this.parked = this.o.repo.parkedCount();
  }

  /** Starts one loop per lane; they end when `signal` aborts. */
  run(signal: AbortSignal): Promise<void>[] {
    this.signal = signal;
    return Array.from({ length: this.lanes }, (_, i) => this.laneLoop(i));
  }

  /** New events were committed (or a lane finished a batch): read again. */
  appended(): void {
    this.exhausted = false;
    this.wake();
  }

  wake(): void {
    this.wakeup.wake();
  }

  /** Central answered some request: a plain backoff starts from the beginning again. */
  answered(): void {
    if (this.pauseReason !== 'fatal' || Date.now() >= this.pausedUntil) this.backoff.reset();
  }

  /** Central answered something (e.g. the change feed): end a plain backoff pause early. */
  reachable(): void {
    if (this.pausedUntil > Date.now() && this.pauseReason === 'backoff') {
      this.pausedUntil = 0;
      this.backoff.reset();
      this.wake();
    }
  }

  private get running(): boolean {
    return !this.signal.aborted;
  }

  /** Reads the outbox (seq order) into the lane queues; bounded by the queue sizes. */
  private fill(): void {
    const max = this.o.config.batch_max_events;
    const cap = max * 2;
    const skipConditions = !this.o.config.upload_conditions;
    while (!this.exhausted && this.queues.some((q) => q.length < max) && this.queues.every((q) => q.length < cap)) {
      const rows = this.o.store.peekOutbox(this.readSeq, 1000);
      if (rows.length === 0) {
        this.exhausted = true;
        break;
      }
      this.readSeq = rows[rows.length - 1]!.seq;
      for (const r of rows) {
        if (skipConditions && r.priority === CONDITION_PRIORITY) continue;
        this.queues[laneOf(r.deviceId, this.lanes)]!.push(r);
      }
    }
  }

  /** Lowest seq of an event that would be uploaded, or null. */
  private firstUploadableSeq(): number | null {
    if (this.o.config.upload_conditions) {
      const r = this.o.store.peekOutbox(0, 1)[0];
      return r ? r.seq : null;
    }
    return this.o.repo.minSeqExcludingPriority(CONDITION_PRIORITY);
  }

  /**
   * When everything read was handled and nothing is in flight: events left behind the read
   * position (an answer that lacked some results, a failed local delete) are read again.
   */
  private maybeRescan(): boolean {
    if (!this.exhausted || this.queues.some((q) => q.length > 0) || this.current.some((b) => b !== null)) return false;
    const first = this.firstUploadableSeq();
    if (first !== null && first <= this.readSeq) {
      this.readSeq = first - 1;
      this.exhausted = false;
      return true;
    }
    return false;
  }

  private makeBatch(rows: OutboxRow[], salt = 0): Batch {
    const gaps: Batch['gaps'] = [];
    for (const g of this.o.repo.pendingGaps(1000 + this.gapsInFlight.size)) {
      if (gaps.length >= 1000) break;
      if (this.gapsInFlight.has(g.id)) continue;
      this.gapsInFlight.add(g.id);
      gaps.push({ id: g.id, gap: { from_seq: g.from_seq, to_seq: g.to_seq, reason: g.reason } });
    }
    const events: UploadEvent[] = rows.map((r) => {
      let payload: Record<string, unknown>;
      try {
        const p = JSON.parse(r.payload) as unknown;
        payload = typeof p === 'object' && p !== null && !Array.isArray(p) ? (p as Record<string, unknown>) : { value: p };
      } catch {
        payload = { unparsable: r.payload };
      }
      return { event_id: r.eventId, seq: r.seq, device_id: r.deviceId, kind: r.kind, priority: r.priority, created_at: new Date(r.createdAt).toISOString(), payload };
    });
    const digest = createHash('sha256')
      .update(rows.map((r) => r.eventId).join(','))
      .digest('hex')
      .slice(0, 16);
    const id = `${this.o.storeId}-${rows[0]!.seq}-${rows[rows.length - 1]!.seq}-${digest}${salt > 0 ? `-r${salt}` : ''}`;
    return { id, rows, events, gaps, salt };
  }

  private releaseGaps(b: Batch): void {
    for (const g of b.gaps) this.gapsInFlight.delete(g.id);
  }

  private async waitWhilePaused(): Promise<void> {
    while (this.running && Date.now() < this.pausedUntil) await this.wakeup.wait(this.pausedUntil - Date.now(), this.signal);
  }

  private pause(e: unknown): void {
    const now = Date.now();
    const f = failureOf(e);
    let delay: number;
    let reason: PauseReason;
    if (f.kind === 'retryable' && f.retryAfterMs !== undefined) {
      delay = retryAfterDelay(f.retryAfterMs, this.o.config.backoff);
      reason = 'retry-after';
    } else if (f.kind !== 'retryable') {
      delay = Math.min(this.o.config.backoff.max_ms, 3_600_000);
      reason = 'fatal';
    } else {
      if (now < this.pausedUntil) return; // another lane already backed off for this outage
      delay = this.backoff.next();
      reason = 'backoff';
    }
    if (now + delay > this.pausedUntil) {
      this.pausedUntil = now + delay;
      this.pauseReason = reason;
    }
  }

  private async laneLoop(i: number): Promise<void> {
    const transport = this.o.transport;
    while (this.running) {
      try {
        await this.waitWhilePaused();
        if (!this.running) break;
        let batch = this.current[i];
        if (!batch) {
          this.fill();
          const q = this.queues[i]!;
          if (q.length === 0) {
            if (this.maybeRescan()) continue; // every queue is empty: the next fill() reads
            // nothing for this lane now (outbox read, or another lane's queue is full): wait
            await this.wakeup.wait(this.o.idlePollMs ?? 1000, this.signal);
            this.exhausted = false;
            continue;
          }
          batch = this.makeBatch(q.splice(0, this.laneLimit[i]!));
          this.current[i] = batch;
        }
        let results: UploadResult[];
        try {
          results = await transport.upload(
            batch.id,
            batch.events,
            batch.gaps.map((g) => g.gap),
          );
        } catch (e) {
          if (!this.running) break;
          this.o.counters.batchFailures++;
          this.o.failed(e, 'upload');
          this.onUploadError(i, batch, e);
          continue;
        }
        this.o.succeeded('upload');
        this.current[i] = null;
        this.applyResults(batch, results);
        this.wake();
      } catch (e) {
        // a local failure (store): never let the loop die
        if (!this.running) break;
        this.limiter.error(`upload-local:${failureOf(e).code}`, { err: (e as Error)?.message }, 'upload loop error');
        await sleep(this.o.config.backoff.initial_ms, this.signal);
      }
    }
  }

  private onUploadError(i: number, batch: Batch, e: unknown): void {
    const f = failureOf(e);
    if (f.kind === 'too_large') {
      if (batch.rows.length > 1) {
        const keep = Math.max(1, Math.min(f.maxEvents ?? Math.floor(batch.rows.length / 2), Math.floor(batch.rows.length / 2)));
        this.laneLimit[i] = Math.max(1, Math.min(this.laneLimit[i]!, keep));
        this.releaseGaps(batch);
        this.queues[i]!.unshift(...batch.rows.slice(keep));
        this.current[i] = this.makeBatch(batch.rows.slice(0, keep));
        this.o.log.warn({ events: batch.rows.length, now: keep }, 'central refused the batch as too large: split');
        return;
      }
      // one event central will never take: park it locally and declare its seq as a gap
      this.releaseGaps(batch);
      this.current[i] = null;
      this.park(batch.rows, new Map([[batch.rows[0]!.eventId, { code: 'payload_too_large', message: (e as Error).message }]]), true);
      return;
    }
    if (f.kind === 'invalid_request' && f.code === 'idempotency_key_reused') {
      this.releaseGaps(batch);
      this.current[i] = this.makeBatch(batch.rows, batch.salt + 1);
      this.pause(e);
      return;
    }
    if (f.kind === 'invalid_request' && f.status === 400 && batch.gaps.length > 0) {
      // the envelope was refused: the gaps are the only part that is not events; forget them
      this.o.log.error({ err: (e as Error).message, gaps: batch.gaps.length }, 'central refused a batch with gaps: sending it without them');
      this.o.repo.clearGaps(batch.gaps.map((g) => g.id));
      this.releaseGaps(batch);
      batch.gaps = [];
    }
    this.pause(e);
  }

  private applyResults(batch: Batch, results: UploadResult[]): void {
    const counters = this.o.counters;
    counters.batches++;
    const byId = new Map<string, UploadResult>();
    for (const r of results) byId.set(r.event_id, r);
    const done: string[] = [];
    const rejected = new Map<string, { code: string; message?: string }>();
    const rejectedRows: OutboxRow[] = [];
    for (const row of batch.rows) {
      const r = byId.get(row.eventId);
      if (!r) continue;
      if (r.status === 'accepted') {
        counters.uploaded++;
        done.push(row.eventId);
      } else if (r.status === 'duplicate') {
        counters.duplicates++;
        done.push(row.eventId);
      } else if (r.status === 'rejected') {
        rejected.set(row.eventId, r.error ?? { code: 'rejected' });
        rejectedRows.push(row);
      }
    }
    if (done.length > 0) this.o.store.ackOutbox(done);
    if (batch.gaps.length > 0) {
      this.o.repo.clearGaps(batch.gaps.map((g) => g.id));
      this.releaseGaps(batch);
    }
    if (rejectedRows.length > 0) this.park(rejectedRows, rejected, false);
    if (done.length + rejectedRows.length < batch.rows.length) {
      this.limiter.warn('missing-results', { batch: batch.id, events: batch.rows.length, results: results.length }, 'central answered without a result for some events: they stay in the outbox');
    }
  }

  /** Moves events to `parked` (one transaction with their deletion from the outbox). */
  private park(rows: OutboxRow[], errors: Map<string, { code: string; message?: string }>, declareGap: boolean): void {
    const removed = this.o.repo.park(
      rows.map((r) => ({ eventId: r.eventId, seq: r.seq, deviceId: r.deviceId, kind: r.kind, priority: r.priority, payload: r.payload, createdAt: r.createdAt, error: errors.get(r.eventId) ?? { code: 'rejected' } })),
      declareGap,
    );
    this.parked += removed.length;
    this.o.counters.parked += removed.length;
    for (const r of rows) {
      const err = errors.get(r.eventId);
      this.limiter.warn(`parked:${err?.code ?? 'rejected'}`, { event_id: r.eventId, seq: r.seq, device_id: r.deviceId, kind: r.kind, error: err }, 'event rejected by central: parked (kept, not resent)');
    }
    this.o.changed();
  }
}
