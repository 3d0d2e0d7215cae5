/**
 * The upload pipeline: the store's outbox to central (a known failure of other gateways: data lost around disconnects,
 * backlog never drains, slow drain, ordering).
 *
 * - Draining is a loop of its own: it starts as soon as central is reachable and runs whether or
 *   not new events arrive (an append wakes it early; an idle poll catches everything else).
 * - Events leave the outbox ONLY when central answered `accepted` or `duplicate` for them.
 *   `rejected` events are moved to the `parked` table with central's error in one transaction
 *   (counted, reported in status, never resent, never silently lost).
 * - Pipelining without breaking per-device order: the outbox is read in seq order and every event
 *   goes to one of `pipeline` lanes chosen by a hash of its device_id. Each lane has at most one
 *   batch in flight and retries it until it gets an answer, before sending its next batch; what
 *   goes back (a split, events without a result) goes to the front of the lane. So a device's
 *   events reach central in seq order even with lost responses and retries, while up to
 *   `pipeline` batches (of different devices) are in flight.
 * - Batch id: `<store>-<firstSeq>-<lastSeq>-<hash of the event ids>`: stable across retries of the
 *   same content, and never reused for another set of events (which central would refuse with 422).
 * - Failures, read through failureOf (failure.ts):
 *   - of central as a whole (network, timeout, 5xx, 429; credentials, TLS, contract): every lane
 *     waits, on one capped exponential backoff with jitter (util/backoff.ts, at most 1 h) that
 *     grows on every failure, Retry-After being a minimum; fatal ones wait the maximum backoff.
 *   - of one batch (an answer without some results, 422, a refused request): only its lane backs
 *     off, on its own backoff; a lane in back-off never holds up the others (the shared reader
 *     passes its rows by; the lane reads them itself later).
 *   - 413: the batch is split; 400/415: the request is changed, never resent unchanged (see
 *     refused()); no gap is ever deleted without a 2xx.
 * - The lanes' rows (queued or in flight) are `heldSeqs()`: the buffer policy never removes them.
 * - Conditions (priority 2) with `upload_conditions: false`: they are NOT uploaded and NOT deleted:
 *   they stay in the outbox (counted in backlog bytes, reported as `held_conditions`) until the
 *   buffer policy drops them as low-priority events (declared as `dropped_buffer_full` gaps then).
 *   Consequence: central's contiguous_seq waits at the oldest held condition until it is dropped.
 * - Seq gaps recorded by the buffer policy (and parked seqs) ride along with the next batch and
 *   are forgotten once a batch carrying them got a 200.
 */
import { createHash } from 'node:crypto';
import type { SyncConfig } from '../config/schema';
import { Priority } from '../core/event-kinds';
import { LogLimiter, type Logger } from '../log';
import type { OutboxRow, Store } from '../store/store';
import { Backoff, MAX_BACKOFF_MS, sleep } from '../util/backoff';
import { failureOf } from './failure';
import type { SyncRepository } from './repository';
import { retryAfterDelay } from './retry';
import type { Exchange, SyncStats } from './status';
import type { SeqGap, SyncTransport, UploadEvent, UploadResult, UploadResults } from './types';
import { Wakeup } from './wakeup';
import type { Histogram } from '../core/metrics';

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
  failed: (e: unknown, what: Exchange, opts?: { reachable?: boolean }) => void;
  /** Something the status reports changed (parked events). */
  changed: () => void;
  /** Sync latency: seconds from an event's creation to central's acceptance (or duplicate), per event. */
  latency?: Histogram;
}

interface Batch {
  id: string;
  rows: OutboxRow[];
  events: UploadEvent[];
  gaps: { id: number; gap: SeqGap }[];
  salt: number;
}

/** One lane: the events of the devices that hash to it, in seq order, one batch in flight at a time. */
interface Lane {
  readonly index: number;
  /** Read from the outbox, not yet in a batch (seq order; at most 2 x batch_max_events). */
  queue: OutboxRow[];
  /** The batch in flight (or to be retried). */
  batch: Batch | null;
  /** Events per batch (lowered by a 413). */
  limit: number;
  /**
   * null: the lane takes its rows from the shared reader. A seq: the lane's queue was full when
   * the shared reader passed, so the lane reads its own rows after this seq until it catches up
   * (a lane in back-off must not hold up the others).
   */
  behind: number | null;
  /** This lane's own back-off (failures of its batches, not of central as a whole). */
  pausedUntil: number;
  readonly backoff: Backoff;
  /**
   * Central refused a batch of this lane as a request (400, 415): batches of at most `size`
   * events until the lane is past `upTo`, halving on each refusal, to isolate the offending
   * event. `okBefore`: uploads that had succeeded (any lane) when the refusals began.
   */
  refused: { upTo: number; size: number; okBefore: number } | null;
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

/** A 200 without a result for some events: for those events, a failure like any other. */
export class IncompleteAnswerError extends Error {
  readonly code = 'incomplete_answer';
  constructor(
    readonly batchId: string,
    readonly missing: number,
  ) {
    super(`central answered batch ${batchId} without a result for ${missing} event(s): they are sent again after a back-off`);
    this.name = 'IncompleteAnswerError';
  }
}

export class UploadPipeline {
  private readonly limiter: LogLimiter;
  private readonly laneCount: number;
  private readonly wakeup = new Wakeup();
  private signal: AbortSignal = AbortSignal.abort();
  private lanes: Lane[] = [];
  private readSeq = 0;
  private exhausted = false;
  private readonly gapsInFlight = new Set<number>();
  /** Central as a whole (network, 5xx, 429, credentials): every lane waits. */
  private readonly backoff: Backoff;
  private pausedUntil = 0;
  private pauseReason: PauseReason = 'backoff';
  private parked = 0;
  /** 2xx answers to uploads so far (any lane): proof that central takes our requests. */
  private uploadsOk = 0;
  /** Gaps ride along again from then on, after a batch carrying them was refused (400/415). */
  private gapsHeldUntil = 0;
  /** The database's epoch (read when the pipeline runs: the store is open by then). */
  private epoch = '';
  /** The highest `contiguous_seq` central answered for our epoch (contract 1.1: informational). */
  private contiguous: number | null = null;
  private contiguousDecreased = 0;
  private readonly gapBackoff: Backoff;

  constructor(private readonly o: UploadPipelineOptions) {
    this.limiter = new LogLimiter(o.log);
    this.laneCount = Math.max(1, o.config.pipeline);
    this.backoff = new Backoff(this.backoffOptions());
    this.gapBackoff = new Backoff(this.backoffOptions());
  }

  private backoffOptions(): { initialMs: number; maxMs: number } {
    return { initialMs: this.o.config.backoff.initial_ms, maxMs: this.o.config.backoff.max_ms };
  }

  get pipeline(): number {
    return this.laneCount;
  }

  /** Events parked so far (all time: counted from the table at start). */
  /** Central's contiguous_seq for our epoch, and how often it went down (central lost data). */
  get centralProgress(): { epoch: string; contiguousSeq: number | null; decreased: number } {
    return { epoch: this.epoch, contiguousSeq: this.contiguous, decreased: this.contiguousDecreased };
  }

  get parkedTotal(): number {
    return this.parked;
  }

  /** Resets the lanes and counts what is parked; call before run(). */
  prepare(): void {
    this.lanes = Array.from({ length: this.laneCount }, (_, index) => ({
      index,
      queue: [],
      batch: null,
      limit: this.o.config.batch_max_events,
      behind: null,
      pausedUntil: 0,
      backoff: new Backoff(this.backoffOptions()),
      refused: null,
    }));
    this.gapsHeldUntil = 0;
    this.gapBackoff.reset();
    this.readSeq = 0;
    this.exhausted = false;
    this.gapsInFlight.clear();
    this.parked = this.o.repo.parkedCount();
  }

  /** Starts one loop per lane; they end when `signal` aborts. */
  run(signal: AbortSignal): Promise<void>[] {
    this.signal = signal;
    this.epoch = this.o.store.epoch();
    return this.lanes.map((lane) => this.laneLoop(lane));
  }

  /** New events were committed (or a lane finished a batch): read again. */
  appended(): void {
    this.exhausted = false;
    this.wake();
  }

  wake(): void {
    this.wakeup.wake();
  }

  /**
   * Central answered something else (e.g. the change feed): a plain backoff pause (network,
   * 5xx without Retry-After) ends early. The backoff itself only starts again from the beginning
   * when an upload succeeds: the feed answering says nothing about whether uploads are welcome.
   */
  reachable(): void {
    if (this.pausedUntil > Date.now() && this.pauseReason === 'backoff') {
      this.pausedUntil = 0;
      this.wake();
    }
  }

  /**
   * Seqs of the events the lanes hold: read into a queue or in a batch in flight (or to be
   * retried). The buffer policy must not remove them: central would get the event and a gap
   * saying it will never come.
   */
  heldSeqs(): Set<number> {
    const held = new Set<number>();
    for (const lane of this.lanes) {
      for (const r of lane.queue) held.add(r.seq);
      if (lane.batch) for (const r of lane.batch.rows) held.add(r.seq);
    }
    return held;
  }

  private get running(): boolean {
    return !this.signal.aborted;
  }

  /**
   * Reads the outbox (seq order) into the lane queues, bounded by the queue sizes (about two
   * batches a lane; reading stops while a lane that is sending has a full queue, as it consumes
   * soon). A lane in back-off does not stop the others: once its queue is full the shared reader
   * passes its rows by, and the lane reads them itself when it sends again (catchUp).
   */
  private fill(): void {
    const max = this.o.config.batch_max_events;
    const cap = max * 2;
    const now = Date.now();
    for (const lane of this.lanes) if (lane.behind !== null && lane.queue.length < max) this.catchUp(lane, cap);
    const skipConditions = !this.o.config.upload_conditions;
    const reading = (l: Lane): boolean => l.behind === null;
    const backingOff = (l: Lane): boolean => l.pausedUntil > now;
    while (
      !this.exhausted &&
      this.lanes.some((l) => reading(l) && l.queue.length < max) &&
      this.lanes.every((l) => !reading(l) || backingOff(l) || l.queue.length < cap)
    ) {
      const rows = this.o.store.peekOutbox(this.readSeq, 1000);
      if (rows.length === 0) {
        this.exhausted = true;
        break;
      }
      this.readSeq = rows[rows.length - 1]!.seq;
      for (const r of rows) {
        if (skipConditions && r.priority === CONDITION_PRIORITY) continue;
        const lane = this.lanes[laneOf(r.deviceId, this.laneCount)]!;
        if (!reading(lane)) continue;
        if (lane.queue.length >= cap && backingOff(lane)) lane.behind = r.seq - 1;
        else lane.queue.push(r);
      }
    }
  }

  /** A lane that fell behind reads its own rows, up to the shared read position. */
  private catchUp(lane: Lane, cap: number): void {
    const skipConditions = !this.o.config.upload_conditions;
    let after = lane.behind!;
    while (lane.queue.length < cap) {
      const rows = this.o.store.peekOutbox(after, 1000);
      if (rows.length === 0) {
        lane.behind = null;
        return;
      }
      for (const r of rows) {
        if (r.seq > this.readSeq) {
          lane.behind = null; // the shared reader brings the rest
          return;
        }
        if ((skipConditions && r.priority === CONDITION_PRIORITY) || laneOf(r.deviceId, this.laneCount) !== lane.index) {
          after = r.seq;
          continue;
        }
        if (lane.queue.length >= cap) {
          lane.behind = after;
          return;
        }
        lane.queue.push(r);
        after = r.seq;
      }
    }
    lane.behind = after;
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
   * position (a failed local delete) are read again.
   */
  private maybeRescan(): boolean {
    if (!this.exhausted || this.lanes.some((l) => l.queue.length > 0 || l.batch !== null || l.behind !== null)) return false;
    const first = this.firstUploadableSeq();
    if (first !== null && first <= this.readSeq) {
      this.readSeq = first - 1;
      this.exhausted = false;
      return true;
    }
    return false;
  }

  /** The next batch of a lane: at most its limit, and while isolating a refused event, at most the isolation size. */
  private nextBatch(lane: Lane): Batch {
    let n = lane.limit;
    if (lane.refused && lane.queue[0]!.seq > lane.refused.upTo) lane.refused = null; // past the refused range
    if (lane.refused) n = Math.min(n, lane.refused.size);
    return this.makeBatch(lane.queue.splice(0, n));
  }

  /** A batch of pending gaps alone, when no lane has events to carry them; null if there are none to send now. */
  private gapsOnlyBatch(): Batch | null {
    if (this.lanes.some((l) => l.queue.length > 0 || l.batch !== null)) return null;
    const b = this.makeBatch([]);
    if (b.gaps.length > 0) return b;
    this.releaseGaps(b);
    return null;
  }

  private makeBatch(rows: OutboxRow[], salt = 0, withGaps = Date.now() >= this.gapsHeldUntil): Batch {
    const gaps: Batch['gaps'] = [];
    if (withGaps) for (const g of this.o.repo.pendingGaps(1000 + this.gapsInFlight.size)) {
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
    // The Idempotency-Key covers everything the body carries (contract 1.1): the epoch, the events
    // and the gaps. Hashing the event ids alone made a restart that sent the same events with other
    // gaps reuse a key for another body (422 idempotency_key_reused, then a long pause).
    const digest = createHash('sha256')
      .update(`${this.epoch}|${rows.map((r) => r.eventId).join(',')}|${gaps.map((g) => `${g.gap.from_seq}-${g.gap.to_seq}:${g.gap.reason}`).join(',')}`)
      .digest('hex')
      .slice(0, 16);
    const range = rows.length > 0 ? `${rows[0]!.seq}-${rows[rows.length - 1]!.seq}` : `gaps-${gaps[0]?.gap.from_seq ?? 0}`;
    const id = `${this.o.storeId}-${range}-${digest}${salt > 0 ? `-r${salt}` : ''}`;
    return { id, rows, events, gaps, salt };
  }

  private releaseGaps(b: Batch): void {
    for (const g of b.gaps) this.gapsInFlight.delete(g.id);
  }

  /** Waits while central as a whole or this lane is backing off. */
  private async waitWhilePaused(lane: Lane): Promise<void> {
    for (;;) {
      const until = Math.max(this.pausedUntil, lane.pausedUntil);
      if (!this.running || Date.now() >= until) return;
      await this.wakeup.wait(until - Date.now(), this.signal);
    }
  }

  /** This lane backs off (its batch failed for a reason of its own); the other lanes go on. */
  private pauseLane(lane: Lane, delay = lane.backoff.next()): void {
    lane.pausedUntil = Math.max(lane.pausedUntil, Date.now() + delay);
  }

  /**
   * Central as a whole failed (network, timeout, 5xx, 429, credentials): every lane waits.
   * Retry-After is a minimum, not the delay: the backoff grows whatever central says, so a
   * repeated "Retry-After: 0" cannot make a tight loop. Lanes failing together for one outage
   * step the backoff once.
   */
  private pause(e: unknown): void {
    const now = Date.now();
    const f = failureOf(e);
    let delay: number;
    let reason: PauseReason;
    if (f.kind !== 'retryable') {
      delay = Math.min(this.o.config.backoff.max_ms, MAX_BACKOFF_MS);
      reason = 'fatal';
    } else {
      const ra = f.retryAfterMs;
      if (now < this.pausedUntil && (ra === undefined || now + ra <= this.pausedUntil)) return; // another lane already backed off for this
      delay = retryAfterDelay(ra, this.backoff);
      reason = ra !== undefined ? 'retry-after' : 'backoff';
    }
    if (now + delay > this.pausedUntil) {
      this.pausedUntil = now + delay;
      this.pauseReason = reason;
    }
  }

  private async laneLoop(lane: Lane): Promise<void> {
    const transport = this.o.transport;
    while (this.running) {
      try {
        await this.waitWhilePaused(lane);
        if (!this.running) break;
        let batch = lane.batch;
        if (!batch) {
          this.fill();
          if (lane.queue.length === 0) {
            if (this.maybeRescan()) continue; // every queue is empty: the next fill() reads
            // Gaps with no event left to carry them go alone (contract 1.1: events [] with gaps),
            // so central's contiguous_seq does not wait for the next event.
            const gapsOnly = this.gapsOnlyBatch();
            if (!gapsOnly) {
              // nothing for this lane now (outbox read): wait
              await this.wakeup.wait(this.o.idlePollMs ?? 1000, this.signal);
              this.exhausted = false;
              continue;
            }
            batch = gapsOnly;
          } else {
            batch = this.nextBatch(lane);
          }
          lane.batch = batch;
        }
        let results: UploadResults;
        const sentAfter = this.contiguous;
        try {
          results = await transport.upload(
            batch.id,
            batch.events,
            batch.gaps.map((g) => g.gap),
            this.epoch,
          );
        } catch (e) {
          if (!this.running) break;
          this.o.counters.batchFailures++;
          this.o.failed(e, 'upload');
          this.onUploadError(lane, batch, e);
          continue;
        }
        this.o.succeeded('upload');
        this.uploadsOk++;
        this.noteContiguous(sentAfter, results.contiguousSeq);
        this.backoff.reset();
        lane.batch = null;
        this.applyResults(lane, batch, results);
        this.wake();
      } catch (e) {
        // a local failure (store): never let the loop die
        if (!this.running) break;
        this.limiter.error(`upload-local:${failureOf(e).code}`, { err: (e as Error)?.message }, 'upload loop error');
        await sleep(this.o.config.backoff.initial_ms, this.signal);
      }
    }
  }

  private onUploadError(lane: Lane, batch: Batch, e: unknown): void {
    const f = failureOf(e);
    if (f.kind === 'too_large') {
      if (batch.rows.length === 0) {
        this.refused(lane, batch, e); // gaps alone: kept and held back, as any refused batch of gaps
        return;
      }
      if (batch.rows.length > 1) {
        const keep = Math.max(1, Math.min(f.maxEvents ?? Math.floor(batch.rows.length / 2), Math.floor(batch.rows.length / 2)));
        lane.limit = Math.max(1, Math.min(lane.limit, keep));
        this.releaseGaps(batch);
        lane.queue.unshift(...batch.rows.slice(keep));
        lane.batch = this.makeBatch(batch.rows.slice(0, keep));
        this.o.log.warn({ events: batch.rows.length, now: keep }, 'central refused the batch as too large: split');
        return;
      }
      // one event central will never take: park it locally and declare its seq as a gap
      this.releaseGaps(batch);
      lane.batch = null;
      this.park(batch.rows, new Map([[batch.rows[0]!.eventId, { code: 'payload_too_large', message: (e as Error).message }]]), true);
      return;
    }
    if (f.kind === 'invalid_request' && f.code === 'idempotency_key_reused') {
      // our batch id met another set of events at central: the same events under a fresh id
      this.releaseGaps(batch);
      lane.batch = this.makeBatch(batch.rows, batch.salt + 1);
      this.pauseLane(lane);
      return;
    }
    if (f.kind === 'invalid_request') {
      this.refused(lane, batch, e);
      return;
    }
    this.pause(e);
  }

  /**
   * Central refused the batch as a request (400, 415): it will never succeed as sent
   * (docs/central-api.yaml, errors). What central refuses is found by changing the request:
   * 1. gaps are never deleted without a 2xx: they are kept, held back for a growing while, and
   *    the events are sent without them;
   * 2. a batch of several events is halved, then halved again, down to the event central refuses;
   * 3. that one event is parked with central's problem code and its seq declared as a gap, but
   *    only once another upload has succeeded since the refusals began: if central refuses every
   *    request (a proxy refusing the media type, say) nothing is parked, the lane keeps its events
   *    and retries at the maximum back-off (like a credentials problem: it needs an operator).
   * The lane never resends a refused request at once, and its back-off never holds up the others.
   */
  private refused(lane: Lane, batch: Batch, e: unknown): void {
    const f = failureOf(e);
    const rows = batch.rows;
    if (rows.length === 0) {
      // a batch of gaps alone: keep them (never deleted without a 2xx), hold them back a growing while
      this.releaseGaps(batch);
      this.gapsHeldUntil = Date.now() + this.gapBackoff.next();
      lane.batch = null;
      this.limiter.error('refused-gaps', { err: (e as Error).message, code: f.code, gaps: batch.gaps.length }, 'central refused a batch of gaps: they are kept and sent again later');
      return;
    }
    const last = rows[rows.length - 1]!.seq;
    const r = (lane.refused ??= { upTo: last, size: rows.length, okBefore: this.uploadsOk });
    r.upTo = Math.max(r.upTo, last);
    this.releaseGaps(batch);
    if (batch.gaps.length > 0) {
      this.gapsHeldUntil = Date.now() + this.gapBackoff.next();
      lane.batch = this.makeBatch(rows, batch.salt + 1, false);
      this.limiter.error('refused-gaps', { err: (e as Error).message, code: f.code, gaps: batch.gaps.length }, 'central refused a batch that carried gaps: the events go without them; the gaps are kept and sent again later');
      return;
    }
    if (rows.length > 1) {
      const keep = Math.floor(rows.length / 2);
      r.size = Math.min(r.size, keep);
      lane.queue.unshift(...rows.slice(keep));
      lane.batch = this.makeBatch(rows.slice(0, keep), batch.salt);
      this.limiter.warn(`refused:${f.code}`, { err: (e as Error).message, code: f.code, events: rows.length, now: keep }, 'central refused a batch as a request: halving it to find the event it refuses');
      return;
    }
    if (this.uploadsOk > r.okBefore) {
      lane.batch = null;
      lane.refused = null; // found: the lane goes on with full batches (another refusal isolates again)
      this.park(rows, new Map([[rows[0]!.eventId, { code: f.code, message: (e as Error).message.slice(0, 500) }]]), true);
      return;
    }
    this.limiter.error(`refused-all:${f.code}`, { err: (e as Error).message, code: f.code, seq: rows[0]!.seq }, 'central refuses every request of this kind: nothing is parked; retrying at the maximum backoff (needs an operator)');
    this.pauseLane(lane, Math.min(this.o.config.backoff.max_ms, MAX_BACKOFF_MS));
  }

  /**
   * Acts on central's answer: accepted and duplicate events leave the outbox, rejected ones are
   * parked, the gaps it carried are forgotten. An event without a result is a failure like any
   * other: it goes back to the front of its lane (before any later event of its device) and the
   * lane backs off; resending it at once would be a retry storm against a central that keeps
   * answering incompletely.
   */
  /**
   * contiguous_seq never steers what is deleted (only per-event results do). An answer to a request
   * sent after central had said V that says less than V means central lost stored data: logged with
   * the contract's code so operators know which seqs central must recover (docs/central-api.yaml).
   */
  private noteContiguous(sentAfter: number | null, now: number | undefined): void {
    if (now === undefined) return;
    if (sentAfter !== null && now < sentAfter) {
      this.contiguousDecreased++;
      this.o.log.error({ code: 'central_contiguous_seq_decreased', epoch: this.epoch, previous: sentAfter, now }, "central's contiguous_seq went down: central lost stored events");
    }
    if (this.contiguous === null || now > this.contiguous) this.contiguous = now;
  }

  private applyResults(lane: Lane, batch: Batch, results: UploadResult[]): void {
    const counters = this.o.counters;
    counters.batches++;
    const byId = new Map<string, UploadResult>();
    for (const r of results) byId.set(r.event_id, r);
    const done: string[] = [];
    const rejected = new Map<string, { code: string; message?: string }>();
    const rejectedRows: OutboxRow[] = [];
    const missing: OutboxRow[] = [];
    const latency = this.o.latency;
    const now = Date.now();
    for (const row of batch.rows) {
      const r = byId.get(row.eventId);
      if (r?.status === 'accepted') {
        counters.uploaded++;
        done.push(row.eventId);
        latency?.observe((now - row.createdAt) / 1000);
      } else if (r?.status === 'duplicate') {
        counters.duplicates++;
        done.push(row.eventId);
        latency?.observe((now - row.createdAt) / 1000);
      } else if (r?.status === 'rejected') {
        rejected.set(row.eventId, r.error ?? { code: 'rejected' });
        rejectedRows.push(row);
      } else {
        missing.push(row);
      }
    }
    if (batch.gaps.length > 0) {
      // central took the gaps: clear them first, and release them from in-flight whatever happens
      // below, so a failing local delete cannot leave them stuck until the next restart
      try {
        this.o.repo.clearGaps(batch.gaps.map((g) => g.id));
        this.gapBackoff.reset();
      } finally {
        this.releaseGaps(batch);
      }
    }
    if (done.length > 0) this.o.store.ackOutbox(done);
    if (rejectedRows.length > 0) this.park(rejectedRows, rejected, false);
    if (missing.length > 0) {
      lane.queue.unshift(...missing);
      counters.batchFailures++;
      this.o.failed(new IncompleteAnswerError(batch.id, missing.length), 'upload', { reachable: true });
      this.pauseLane(lane);
    } else {
      lane.backoff.reset();
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
