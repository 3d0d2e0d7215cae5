/**
 * The sync service: the store's outbox to central (upstream) and central's change feed into the
 * store (downstream), over any SyncTransport (HTTPS or the MQTT bridge), with the buffer policy
 * (buffer.ts) and a retained status on the local bus.
 *
 * Upstream (field.md: data lost around disconnects, backlog never drains, slow drain, ordering)
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
 *
 * Downstream
 * - A loop long-polls fetchChanges(cursor, long_poll_s). Each page is validated and applied with
 *   the version rule (prices.ts); slot assignments call shelves.assignSlot; invalid changes (bad
 *   GTIN, unknown slot) are acknowledged `invalid`. The applied prices, slot versions, the acks of
 *   the page and the next cursor are committed in ONE transaction: the cursor is never ahead of
 *   what is applied, and acks survive a crash (pending_acks). A page that fails (e.g. a store
 *   error) is not committed and is fetched again.
 * - Applied prices are published retained on `price/<gtin>` only after the commit, and never with
 *   a version lower than or equal to one already published by this process; at start every stored
 *   price is republished retained (last known state).
 * - Acks are sent in batches of at most 1000 by their own loop, retried with backoff until central
 *   answers, then removed from pending_acks.
 * - A cursor central no longer knows (410 cursor_expired, 400 invalid_cursor) is dropped and the feed
 *   read again from the start: the version rule makes that safe.
 *
 * Status: retained `sync/status` every `statusIntervalMs` (5 s) and soon after any change of
 * state; state changes are logged (rate limited).
 */
import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import * as topics from '../bus/topics';
import type { PublishOptions } from '../bus/broker';
import type { SyncConfig } from '../config/schema';
import { ErrorCode, ShelfgateError, isShelfgateError } from '../errors';
import type { Service } from '../lifecycle';
import { LogLimiter, type Logger } from '../log';
import type { OutboxRow, Store } from '../store/store';
import type { EventBus } from '../core/events';
import type { Locations } from '../core/locations';
import { Priority, type EventKinds } from '../core/event-kinds';
import { Backoff, MAX_BACKOFF_MS, sleep } from '../util/backoff';
import { OutboxBuffer, clearGaps, pendingGaps, type BufferStats } from './buffer';
import { HttpsTransport } from './https';
import { PriceBook, changeIdOf, priceMessage, validateChange, type SlotChangeIn, type StoredPrice } from './prices';
import type { ChangeAck, SeqGap, SyncTransport, UploadEvent, UploadResult } from './types';

/** Priority of condition events (not uploaded with `upload_conditions: false`). */
export const CONDITION_PRIORITY = Priority.CONDITION;

export interface SyncServiceOptions {
  storeId: string;
  config: SyncConfig;
  store: Store;
  bus: { publish(topic: string, payload: string | Buffer, opts?: PublishOptions): Promise<void> };
  /** Declared outbox event kinds (the buffer policy reads them). */
  kinds: EventKinds;
  /** Slot assignments from central change what a location holds. */
  locations: Pick<Locations, 'assign'>;
  /** In-process consumers (shelf labels, kiosk lookups) get applied prices here. */
  events: Pick<EventBus, 'emit'>;
  /** null (transport `none`): only the buffer policy and the status run. The service starts and stops it. */
  transport: SyncTransport | null;
  log: Logger;
  /** Retained status period; default 5000 ms. */
  statusIntervalMs?: number;
  /** Idle poll of the outbox when nothing woke the uploader; default 1000 ms. */
  idlePollMs?: number;
  /** Buffer policy timer; default 1000 ms. */
  bufferCheckMs?: number;
}

export interface SyncStatus {
  transport: SyncConfig['transport'];
  connected: boolean;
  backlog_count: number;
  backlog_bytes: number;
  oldest_event_age_s: number | null;
  /** RFC 3339 of the last successful exchange with central, or null. */
  last_success: string | null;
  last_error: { code: string; message: string; at: string } | null;
  dropped: number;
  compacted: number;
  parked: number;
  cursor: string | null;
  dropped_by_kind: Record<string, number>;
  compacted_by_kind: Record<string, number>;
  over_limit: boolean;
  disk_full_at: string | null;
  held_conditions: number;
  pending_acks: number;
  uploaded: number;
  duplicates: number;
  ts: string;
}

export interface SyncStats {
  uploaded: number;
  duplicates: number;
  parked: number;
  batches: number;
  batchFailures: number;
  pagesApplied: number;
  pricesApplied: number;
  slotsApplied: number;
  acksSent: number;
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

function errCode(e: unknown): string {
  const d = (e as ShelfgateError)?.details as { code?: unknown } | undefined;
  if (d && typeof d.code === 'string') return d.code;
  return (e as { code?: string })?.code ?? 'error';
}

function retryAfterOf(e: unknown): number | undefined {
  const d = (e as ShelfgateError)?.details as { retryAfterMs?: unknown } | undefined;
  return typeof d?.retryAfterMs === 'number' && d.retryAfterMs >= 0 ? d.retryAfterMs : undefined;
}

/**
 * The transport for `config.transport`: HttpsTransport for `https`, the MQTT bridge
 * (./mqtt-bridge, loaded only then) for `mqtt`, null for `none`.
 */
export function createSyncTransport(config: SyncConfig, storeId: string, log: Logger): SyncTransport | null {
  switch (config.transport) {
    case 'https':
      if (!config.https) throw new ShelfgateError(ErrorCode.CONFIG_INVALID, 'sync.https is required when sync.transport is https');
      return new HttpsTransport({ config: config.https, storeId, log: log.child({ module: 'sync-https' }) });
    case 'mqtt': {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const { createMqttBridge } = require('./mqtt-bridge') as typeof import('./mqtt-bridge');
      return createMqttBridge(storeId, config, log.child({ module: 'sync-mqtt' }));
    }
    default:
      return null;
  }
}

export class SyncService implements Service {
  readonly name = 'sync';
  private readonly log: Logger;
  private readonly limiter: LogLimiter;
  private readonly buffer: OutboxBuffer;
  private readonly book: PriceBook;
  private running = false;
  private ac = new AbortController();
  private loops: Promise<void>[] = [];
  private statusTimer: NodeJS.Timeout | null = null;
  private statusSoon: NodeJS.Timeout | null = null;
  private unsubscribeAppend: (() => void) | null = null;

  // upstream
  private readonly lanes: number;
  private queues: OutboxRow[][] = [];
  private current: (Batch | null)[] = [];
  private laneLimit: number[] = [];
  private readSeq = 0;
  private exhausted = false;
  private readonly gapsInFlight = new Set<number>();
  private readonly upBackoff: Backoff;
  private pausedUntil = 0;
  private pauseReason: PauseReason = 'backoff';
  private readonly wakers = new Set<() => void>();

  // downstream
  private readonly downBackoff: Backoff;
  private readonly ackBackoff: Backoff;
  private readonly published = new Map<string, number>();
  private readonly ackWakers = new Set<() => void>();

  // status
  private connected = false;
  private lastSuccess: number | null = null;
  private lastError: SyncStatus['last_error'] = null;
  private lastReconnectLog = 0;
  private lastStatusKey = '';
  private lastStatusLog = 0;
  private suppressedStatusLogs = 0;
  private parkedTotal = 0;
  private readonly counters: SyncStats = { uploaded: 0, duplicates: 0, parked: 0, batches: 0, batchFailures: 0, pagesApplied: 0, pricesApplied: 0, slotsApplied: 0, acksSent: 0 };

  constructor(private readonly o: SyncServiceOptions) {
    this.log = o.log.child({ module: 'sync' });
    this.limiter = new LogLimiter(this.log);
    this.lanes = Math.max(1, o.config.pipeline);
    this.buffer = new OutboxBuffer({
      store: o.store,
      maxBytes: o.config.buffer_max_bytes,
      kinds: o.kinds,
      log: this.log,
      intervalMs: o.bufferCheckMs,
      onChange: () => this.statusChanged(),
    });
    this.book = new PriceBook(o.store);
    const b = { initialMs: o.config.backoff.initial_ms, maxMs: o.config.backoff.max_ms };
    this.upBackoff = new Backoff(b);
    this.downBackoff = new Backoff(b);
    this.ackBackoff = new Backoff(b);
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.ac = new AbortController();
    setMaxListeners(64, this.ac.signal);
    this.queues = Array.from({ length: this.lanes }, () => []);
    this.current = Array.from({ length: this.lanes }, () => null);
    this.laneLimit = Array.from({ length: this.lanes }, () => this.o.config.batch_max_events);
    this.readSeq = 0;
    this.exhausted = false;
    this.parkedTotal = this.o.store.transaction((db) => (db.prepare('SELECT count(*) AS n FROM parked').get() as { n: number }).n);
    await this.buffer.start();
    this.running = true;
    await this.republishPrices();
    if (this.o.transport) {
      try {
        await this.o.transport.start();
      } catch (e) {
        this.running = false;
        await this.buffer.stop();
        throw e;
      }
      this.unsubscribeAppend = this.o.store.onOutboxAppend(() => {
        this.exhausted = false;
        this.wake();
      });
      for (let i = 0; i < this.lanes; i++) this.loops.push(this.laneLoop(i));
      this.loops.push(this.changesLoop(), this.ackLoop());
    }
    this.statusTimer = setInterval(() => void this.publishStatus(), this.o.statusIntervalMs ?? 5000);
    this.statusTimer.unref();
    await this.publishStatus();
    this.log.info({ transport: this.o.config.transport, pipeline: this.lanes, batch_max_events: this.o.config.batch_max_events, buffer_max_bytes: this.o.config.buffer_max_bytes }, 'sync started');
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.ac.abort();
    this.wake();
    if (this.statusTimer) clearInterval(this.statusTimer);
    if (this.statusSoon) clearTimeout(this.statusSoon);
    this.statusTimer = null;
    this.statusSoon = null;
    this.unsubscribeAppend?.();
    this.unsubscribeAppend = null;
    try {
      await this.o.transport?.stop();
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'stopping the sync transport failed');
    }
    await Promise.allSettled(this.loops);
    this.loops = [];
    await this.buffer.stop();
    this.connected = false;
    try {
      await Promise.race([this.publishStatus(), sleep(1000)]);
    } catch {
      // best effort
    }
    this.log.info({ ...this.counters }, 'sync stopped');
  }

  stats(): SyncStats & { buffer: BufferStats } {
    return { ...this.counters, buffer: this.buffer.stats() };
  }

  /** The policy, for tests and diagnostics. */
  get bufferPolicy(): OutboxBuffer {
    return this.buffer;
  }

  get prices(): PriceBook {
    return this.book;
  }

  // ================================================================ upstream

  private wake(): void {
    for (const w of [...this.wakers]) w();
  }

  /** Resolves after `ms`, on wake() (or the ack wake), or on stop; leaves no timer or listener behind. */
  private idle(ms: number, wakers = this.wakers): Promise<void> {
    return new Promise<void>((resolve) => {
      const signal = this.ac.signal;
      if (signal.aborted) return resolve();
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        wakers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, Math.min(ms, 2 ** 31 - 1)));
      signal.addEventListener('abort', done, { once: true });
      wakers.add(done);
    });
  }

  private laneOf(deviceId: string): number {
    return this.lanes === 1 ? 0 : fnv1a(deviceId) % this.lanes;
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
        this.queues[this.laneOf(r.deviceId)]!.push(r);
      }
    }
  }

  /** Lowest seq of an event that would be uploaded, or null. */
  private firstUploadableSeq(): number | null {
    if (this.o.config.upload_conditions) {
      const r = this.o.store.peekOutbox(0, 1)[0];
      return r ? r.seq : null;
    }
    return this.o.store.transaction((db) => {
      const st = db.prepare('SELECT min(seq) AS m FROM outbox WHERE priority = ?');
      let best: number | null = null;
      for (let p = 0; p <= 9; p++) {
        if (p === CONDITION_PRIORITY) continue;
        const m = (st.get(p) as { m: number | null }).m;
        if (m !== null && (best === null || m < best)) best = m;
      }
      const other = (db.prepare('SELECT min(seq) AS m FROM outbox WHERE priority < 0 OR priority > 9 OR priority IS NULL').get() as { m: number | null }).m;
      if (other !== null && (best === null || other < best)) best = other;
      return best;
    });
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
    for (const g of pendingGaps(this.o.store, 1000 + this.gapsInFlight.size)) {
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
    while (this.running && Date.now() < this.pausedUntil) await this.idle(this.pausedUntil - Date.now());
  }

  private pause(e: unknown): void {
    const now = Date.now();
    const fatal = isShelfgateError(e, ErrorCode.SYNC_FATAL);
    const ra = retryAfterOf(e);
    let delay: number;
    let reason: PauseReason;
    if (ra !== undefined) {
      delay = this.retryAfterDelay(ra);
      reason = 'retry-after';
    } else if (fatal) {
      delay = Math.min(this.o.config.backoff.max_ms, 3_600_000);
      reason = 'fatal';
    } else {
      if (now < this.pausedUntil) return; // another lane already backed off for this outage
      delay = this.upBackoff.next();
      reason = 'backoff';
    }
    if (now + delay > this.pausedUntil) {
      this.pausedUntil = now + delay;
      this.pauseReason = reason;
    }
  }

  /** Honours Retry-After, capped at MAX_BACKOFF_MS and never below the initial backoff (a "Retry-After: 0" must not become a tight loop). */
  private retryAfterDelay(ra: number): number {
    return Math.max(this.o.config.backoff.initial_ms, Math.min(ra, MAX_BACKOFF_MS));
  }

  /** Central answered something (e.g. the change feed): end a plain backoff pause early. */
  private reachable(): void {
    if (this.pausedUntil > Date.now() && this.pauseReason === 'backoff') {
      this.pausedUntil = 0;
      this.upBackoff.reset();
      this.wake();
    }
  }

  private async laneLoop(i: number): Promise<void> {
    const transport = this.o.transport!;
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
            await this.idle(this.o.idlePollMs ?? 1000);
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
          this.counters.batchFailures++;
          this.failed(e, 'upload');
          this.onUploadError(i, batch, e);
          continue;
        }
        this.succeeded();
        this.current[i] = null;
        this.applyResults(batch, results);
        this.wake();
      } catch (e) {
        // a local failure (store): never let the loop die
        if (!this.running) break;
        this.limiter.error(`upload-local:${errCode(e)}`, { err: (e as Error)?.message }, 'upload loop error');
        await sleep(this.o.config.backoff.initial_ms, this.ac.signal);
      }
    }
  }

  private onUploadError(i: number, batch: Batch, e: unknown): void {
    const d = (isShelfgateError(e) ? e.details : undefined) as { status?: number; code?: string; maxEvents?: number } | undefined;
    if (d?.status === 413) {
      if (batch.rows.length > 1) {
        const keep = Math.max(1, Math.min(d.maxEvents ?? Math.floor(batch.rows.length / 2), Math.floor(batch.rows.length / 2)));
        this.laneLimit[i] = Math.max(1, Math.min(this.laneLimit[i]!, keep));
        this.releaseGaps(batch);
        this.queues[i]!.unshift(...batch.rows.slice(keep));
        this.current[i] = this.makeBatch(batch.rows.slice(0, keep));
        this.log.warn({ events: batch.rows.length, now: keep }, 'central refused the batch as too large: split');
        return;
      }
      // one event central will never take: park it locally and declare its seq as a gap
      this.releaseGaps(batch);
      this.current[i] = null;
      this.park(batch.rows, new Map([[batch.rows[0]!.eventId, { code: 'payload_too_large', message: (e as Error).message }]]), true);
      return;
    }
    if (d?.status === 422 && d.code === 'idempotency_key_reused') {
      this.releaseGaps(batch);
      this.current[i] = this.makeBatch(batch.rows, batch.salt + 1);
      this.pause(e);
      return;
    }
    if (d?.status === 400 && batch.gaps.length > 0) {
      // the envelope was refused: the gaps are the only part that is not events; forget them
      this.log.error({ err: (e as Error).message, gaps: batch.gaps.length }, 'central refused a batch with gaps: sending it without them');
      clearGaps(
        this.o.store,
        batch.gaps.map((g) => g.id),
      );
      this.releaseGaps(batch);
      batch.gaps = [];
    }
    this.pause(e);
  }

  private applyResults(batch: Batch, results: UploadResult[]): void {
    this.counters.batches++;
    const byId = new Map<string, UploadResult>();
    for (const r of results) byId.set(r.event_id, r);
    const done: string[] = [];
    const rejected = new Map<string, { code: string; message?: string }>();
    const rejectedRows: OutboxRow[] = [];
    for (const row of batch.rows) {
      const r = byId.get(row.eventId);
      if (!r) continue;
      if (r.status === 'accepted') {
        this.counters.uploaded++;
        done.push(row.eventId);
      } else if (r.status === 'duplicate') {
        this.counters.duplicates++;
        done.push(row.eventId);
      } else if (r.status === 'rejected') {
        rejected.set(row.eventId, r.error ?? { code: 'rejected' });
        rejectedRows.push(row);
      }
    }
    if (done.length > 0) this.o.store.ackOutbox(done);
    if (batch.gaps.length > 0) {
      clearGaps(
        this.o.store,
        batch.gaps.map((g) => g.id),
      );
      this.releaseGaps(batch);
    }
    if (rejectedRows.length > 0) this.park(rejectedRows, rejected, false);
    if (done.length + rejectedRows.length < batch.rows.length) {
      this.limiter.warn('missing-results', { batch: batch.id, events: batch.rows.length, results: results.length }, 'central answered without a result for some events: they stay in the outbox');
    }
  }

  /** Moves events to `parked` (one transaction with their deletion from the outbox). */
  private park(rows: OutboxRow[], errors: Map<string, { code: string; message?: string }>, declareGap: boolean): void {
    const now = Date.now();
    const removed = this.o.store.removeFromOutbox(
      rows.map((r) => r.seq),
      (db) => {
        const ins = db.prepare(
          `INSERT INTO parked (event_id, seq, device_id, kind, priority, payload, created_at, error, parked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (event_id) DO UPDATE SET error = excluded.error, parked_at = excluded.parked_at`,
        );
        for (const r of rows) ins.run(r.eventId, r.seq, r.deviceId, r.kind, r.priority, r.payload, r.createdAt, JSON.stringify(errors.get(r.eventId) ?? { code: 'rejected' }), now);
        if (declareGap) {
          const gap = db.prepare("INSERT INTO sync_gaps (from_seq, to_seq, reason) VALUES (?, ?, 'parked')");
          for (const r of rows) gap.run(r.seq, r.seq);
        }
      },
    );
    this.parkedTotal += removed.length;
    this.counters.parked += removed.length;
    for (const r of rows) {
      const err = errors.get(r.eventId);
      this.limiter.warn(`parked:${err?.code ?? 'rejected'}`, { event_id: r.eventId, seq: r.seq, device_id: r.deviceId, kind: r.kind, error: err }, 'event rejected by central: parked (kept, not resent)');
    }
    this.statusChanged();
  }

  // ================================================================ downstream

  private async changesLoop(): Promise<void> {
    const transport = this.o.transport!;
    while (this.running) {
      let page: { changes: unknown[]; nextCursor: string | null };
      const cursor = this.book.cursor();
      try {
        page = await transport.fetchChanges(cursor, this.o.config.long_poll_s, this.ac.signal);
      } catch (e) {
        if (!this.running) break;
        const code = errCode(e);
        if (code === 'cursor_expired' || code === 'invalid_cursor') {
          this.log.warn({ cursor, code }, 'central does not know the feed cursor: reading the feed again from the start');
          this.book.setCursor(null);
          continue;
        }
        this.failed(e, 'changes');
        await sleep(this.delayFor(e, this.downBackoff), this.ac.signal);
        continue;
      }
      this.succeeded();
      this.downBackoff.reset();
      this.reachable();
      if (!this.running) break;
      try {
        await this.applyPage(page.changes, page.nextCursor, cursor);
      } catch (e) {
        if (!this.running) break;
        this.limiter.error(`apply:${errCode(e)}`, { err: (e as Error)?.message }, 'applying a page of changes failed: it will be fetched again');
        await sleep(this.downBackoff.next(), this.ac.signal);
      }
    }
  }

  private delayFor(e: unknown, b: Backoff): number {
    const ra = retryAfterOf(e);
    if (ra !== undefined) return this.retryAfterDelay(ra);
    if (isShelfgateError(e, ErrorCode.SYNC_FATAL)) return this.o.config.backoff.max_ms;
    return b.next();
  }

  /** Applies one page with the version rule; commits prices, slot versions, acks and cursor together. */
  async applyPage(changes: unknown[], nextCursor: string | null, prevCursor: string | null): Promise<void> {
    const nowMs = Date.now();
    const nowIso = new Date(nowMs).toISOString();
    const acks = new Map<string, ChangeAck>();
    const ack = (a: ChangeAck): void => {
      acks.set(a.change_id, a);
    };
    const valid: { raw: unknown; v: ReturnType<typeof validateChange> }[] = changes.map((raw) => ({ raw, v: validateChange(raw) }));
    // the newest version per GTIN / slot within this page: only it can be applied
    const newest = new Map<string, { version: number; changeId: string }>();
    const keyOf = (v: ReturnType<typeof validateChange>): string | null =>
      v.ok ? (v.change.type === 'price' ? `p\u0000${v.change.c.gtin}` : `s\u0000${v.change.c.shelf}\u0000${v.change.c.slot}`) : null;
    for (const { v } of valid) {
      const k = keyOf(v);
      if (!v.ok || k === null) continue;
      const cur = newest.get(k);
      if (!cur || v.change.c.version > cur.version) newest.set(k, { version: v.change.c.version, changeId: v.change.c.changeId });
    }
    const prices = new Map<string, StoredPrice>();
    const slots: { shelf: string; slot: string; version: number; changeId: string; appliedAt: number }[] = [];
    const handledSlots = new Set<string>();
    for (const { raw, v } of valid) {
      const id = changeIdOf(raw);
      if (id === null) {
        this.limiter.warn('change-without-id', { change: JSON.stringify(raw).slice(0, 300) }, 'change without a change_id ignored (cannot be acknowledged)');
        continue;
      }
      if (!v.ok) {
        ack({ change_id: id, status: 'invalid', applied_at: nowIso, detail: v.detail.slice(0, 500) });
        this.limiter.warn(`invalid-change`, { change_id: id, detail: v.detail }, 'invalid change from central acknowledged as invalid');
        continue;
      }
      const k = keyOf(v)!;
      const top = newest.get(k)!;
      if (v.change.type === 'price') {
        const c = v.change.c;
        const stored = this.book.price(c.gtin);
        if (stored && stored.changeId === c.changeId) {
          ack({ change_id: id, status: 'applied', applied_at: new Date(stored.appliedAt).toISOString() });
        } else if ((stored && stored.version >= c.version) || top.version > c.version || (top.version === c.version && top.changeId !== c.changeId)) {
          if (!(acks.get(id)?.status === 'applied')) ack({ change_id: id, status: 'stale', applied_at: nowIso });
        } else {
          prices.set(c.gtin, { gtin: c.gtin, price: c.price, currency: c.currency, promotion: c.promotion, version: c.version, changeId: c.changeId, appliedAt: nowMs });
          ack({ change_id: id, status: 'applied', applied_at: nowIso });
        }
      } else {
        const c = v.change.c;
        const storedVersion = this.book.slotVersion(c.shelf, c.slot);
        if (handledSlots.has(c.changeId)) continue;
        if (storedVersion >= c.version || top.version > c.version || (top.version === c.version && top.changeId !== c.changeId)) {
          ack({ change_id: id, status: storedVersion === c.version && this.book.slotChangeId(c.shelf, c.slot) === c.changeId ? 'applied' : 'stale', applied_at: nowIso });
          continue;
        }
        handledSlots.add(c.changeId);
        const outcome = await this.assign(c);
        if (outcome === 'applied') {
          slots.push({ shelf: c.shelf, slot: c.slot, version: c.version, changeId: c.changeId, appliedAt: nowMs });
          ack({ change_id: id, status: 'applied', applied_at: nowIso });
        } else {
          ack({ change_id: id, status: 'invalid', applied_at: nowIso, detail: outcome.detail.slice(0, 500) });
        }
      }
    }
    const written = this.book.commitPage({
      prices: [...prices.values()],
      slots,
      acks: [...acks.values()],
      ...(nextCursor !== null && nextCursor !== prevCursor ? { cursor: nextCursor } : {}),
    });
    this.counters.pagesApplied++;
    this.counters.pricesApplied += written.length;
    this.counters.slotsApplied += slots.length;
    for (const p of written) await this.publishPrice(p);
    if (acks.size > 0) for (const w of [...this.ackWakers]) w();
    if (written.length > 0 || slots.length > 0) {
      this.log.info({ changes: changes.length, prices: written.length, slots: slots.length, acks: acks.size }, 'changes from central applied');
    }
  }

  /** Assigns the location; an unknown slot or bad values are `invalid`; anything else throws (page retried). */
  private async assign(c: SlotChangeIn): Promise<'applied' | { detail: string }> {
    try {
      await this.o.locations.assign(c.shelf, c.slot, { gtin: c.gtin, unitWeightG: c.unitWeightG }, 'central');
      return 'applied';
    } catch (e) {
      if (isShelfgateError(e, ErrorCode.NOT_FOUND)) return { detail: `unknown slot ${c.shelf}/${c.slot}` };
      if (isShelfgateError(e, ErrorCode.REQUEST_INVALID)) return { detail: (e as Error).message };
      throw e;
    }
  }

  /**
   * Hands a committed price to in-process consumers (`priceApplied`) and publishes it retained for
   * clients outside, unless an equal or newer version went out already.
   */
  private async publishPrice(p: StoredPrice): Promise<void> {
    if ((this.published.get(p.gtin) ?? 0) >= p.version) return;
    this.published.set(p.gtin, p.version);
    this.o.events.emit('priceApplied', { gtin: p.gtin, price: p.price, currency: p.currency, promotion: p.promotion, version: p.version, changeId: p.changeId, appliedAt: p.appliedAt });
    let topic: string;
    try {
      topic = topics.price(this.o.storeId, p.gtin);
    } catch (e) {
      this.limiter.warn('price-topic', { gtin: p.gtin, err: (e as Error).message }, 'price cannot be published: invalid topic');
      return;
    }
    try {
      await this.o.bus.publish(topic, JSON.stringify(priceMessage(p)), { retain: true, qos: 1 });
    } catch (e) {
      this.limiter.warn('price-publish', { gtin: p.gtin, err: (e as Error).message }, 'price could not be published on the local bus');
    }
  }

  /** At start: every stored price, retained (last known state after a broker restart). */
  private async republishPrices(): Promise<void> {
    let n = 0;
    for (const p of this.book.prices()) {
      await this.publishPrice(p);
      n++;
    }
    if (n > 0) this.log.info({ prices: n }, 'stored prices republished');
  }

  private async ackLoop(): Promise<void> {
    const transport = this.o.transport!;
    while (this.running) {
      let acks: ChangeAck[];
      try {
        acks = this.book.pendingAcks(1000);
      } catch (e) {
        if (!this.running) break;
        this.limiter.error('ack-read', { err: (e as Error).message }, 'reading pending acks failed');
        await sleep(this.o.config.backoff.max_ms, this.ac.signal);
        continue;
      }
      if (acks.length === 0) {
        await this.idle(5000, this.ackWakers);
        continue;
      }
      try {
        await transport.ack(acks);
      } catch (e) {
        if (!this.running) break;
        this.failed(e, 'ack');
        await sleep(this.delayFor(e, this.ackBackoff), this.ac.signal);
        continue;
      }
      this.succeeded();
      this.ackBackoff.reset();
      this.counters.acksSent += acks.length;
      try {
        this.book.clearAcks(acks);
      } catch (e) {
        this.limiter.error('ack-clear', { err: (e as Error).message }, 'could not forget sent acks (they will be sent again)');
      }
    }
  }

  // ================================================================ status

  private succeeded(): void {
    this.lastSuccess = Date.now();
    if (this.pauseReason !== 'fatal' || Date.now() >= this.pausedUntil) this.upBackoff.reset();
    if (!this.connected) {
      this.connected = true;
      if (Date.now() - this.lastReconnectLog > 60_000) {
        this.lastReconnectLog = Date.now();
        this.log.info({ backlog: this.o.store.outboxStats().count }, 'central reachable: syncing');
      }
      this.statusChanged();
    }
  }

  private failed(e: unknown, what: string): void {
    const code = errCode(e);
    const message = (e as Error)?.message ?? String(e);
    const fatal = isShelfgateError(e, ErrorCode.SYNC_FATAL);
    const changed = this.connected || this.lastError?.code !== code;
    this.connected = false;
    this.lastError = { code, message: message.slice(0, 500), at: new Date().toISOString() };
    if (fatal) this.limiter.error(`fatal:${what}:${code}`, { err: message, code }, `central refused the ${what} request: needs an operator (retrying at the maximum backoff)`);
    else this.limiter.warn(`retry:${what}:${code}`, { err: message, code }, `central not reachable for ${what}: retrying with backoff`);
    if (changed) this.statusChanged();
  }

  /** Publishes status soon (coalesced to at most one per 250 ms). */
  private statusChanged(): void {
    if (!this.running || this.statusSoon) return;
    this.statusSoon = setTimeout(() => {
      this.statusSoon = null;
      void this.publishStatus();
    }, 250);
    this.statusSoon.unref();
  }

  status(): SyncStatus {
    const s = this.o.store.outboxStats();
    const b = this.buffer.stats();
    let oldest = s.oldestCreatedAt;
    let held = 0;
    let pendingAcks = 0;
    try {
      if (!this.o.config.upload_conditions) {
        held = this.o.store.transaction((db) => (db.prepare('SELECT count(*) AS n FROM outbox WHERE priority = ?').get(CONDITION_PRIORITY) as { n: number }).n);
        const first = this.firstUploadableSeq();
        oldest = first === null ? null : (this.o.store.peekOutbox(first - 1, 1)[0]?.createdAt ?? null);
      }
      pendingAcks = this.book.pendingAckCount();
    } catch {
      // store closing: report what is in memory
    }
    let cursor: string | null = null;
    try {
      cursor = this.book.cursor();
    } catch {
      // store closing
    }
    return {
      transport: this.o.config.transport,
      connected: this.connected,
      backlog_count: s.count,
      backlog_bytes: s.bytes,
      oldest_event_age_s: oldest === null ? null : Math.max(0, Math.round((Date.now() - oldest) / 1000)),
      last_success: this.lastSuccess === null ? null : new Date(this.lastSuccess).toISOString(),
      last_error: this.lastError,
      dropped: b.dropped,
      compacted: b.compacted,
      parked: this.parkedTotal,
      cursor,
      dropped_by_kind: b.dropped_by_kind,
      compacted_by_kind: b.compacted_by_kind,
      over_limit: b.over_limit,
      disk_full_at: b.disk_full_at === null ? null : new Date(b.disk_full_at).toISOString(),
      held_conditions: held,
      pending_acks: pendingAcks,
      uploaded: this.counters.uploaded,
      duplicates: this.counters.duplicates,
      ts: new Date().toISOString(),
    };
  }

  private async publishStatus(): Promise<void> {
    let st: SyncStatus;
    try {
      st = this.status();
    } catch (e) {
      this.limiter.warn('status', { err: (e as Error).message }, 'sync status unavailable');
      return;
    }
    const key = JSON.stringify([st.connected, st.last_error?.code ?? null, st.dropped, st.compacted, st.parked, st.over_limit]);
    if (key !== this.lastStatusKey) {
      // rate limited: a flapping link must not flood the journal
      if (this.lastStatusKey !== '') {
        const now = Date.now();
        if (now - this.lastStatusLog >= 10_000) {
          this.log.info(
            { connected: st.connected, last_error: st.last_error?.code ?? null, dropped: st.dropped, compacted: st.compacted, parked: st.parked, over_limit: st.over_limit, backlog: st.backlog_count, ...(this.suppressedStatusLogs > 0 ? { repeated: this.suppressedStatusLogs } : {}) },
            'sync status changed',
          );
          this.lastStatusLog = now;
          this.suppressedStatusLogs = 0;
        } else {
          this.suppressedStatusLogs++;
        }
      }
      this.lastStatusKey = key;
    }
    try {
      await this.o.bus.publish(topics.syncStatus(this.o.storeId), JSON.stringify(st), { retain: true, qos: 1 });
    } catch (e) {
      this.limiter.warn('status-publish', { err: (e as Error).message }, 'sync status could not be published');
    }
  }
}
