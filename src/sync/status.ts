/**
 * The sync service's status: whether central is reachable, the last success and the last error,
 * published retained on `sync/status` every `intervalMs` (5 s) and soon (coalesced, 250 ms) after
 * any change of state. State changes are logged, rate limited, so a flapping link cannot flood the
 * journal. What the status says about the outbox, the buffer and the feed is read from the other
 * parts through `snapshot`.
 */
import * as topics from '../bus/topics';
import type { PublishOptions } from '../bus/broker';
import type { SyncConfig } from '../config/schema';
import { LogLimiter, type Logger } from '../log';
import { failureOf } from './failure';
import type { Backoff } from '../util/backoff';
import type { SyncRepository } from './repository';
import type { SyncTransport } from './types';

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
  /** This database's epoch ("" = the legacy epoch of contract 1.0). */
  epoch: string;
  /** Central's last contiguous_seq for that epoch (null before its first answer). */
  central_contiguous_seq: number | null;
  /** How often central's contiguous_seq went down (central lost stored events; see the error log). */
  central_contiguous_seq_decreased: number;
  ts: string;
}

/** Counters every part of the sync service adds to (one object, shared). */
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

export function newSyncStats(): SyncStats {
  return { uploaded: 0, duplicates: 0, parked: 0, batches: 0, batchFailures: 0, pagesApplied: 0, pricesApplied: 0, slotsApplied: 0, acksSent: 0 };
}

/** Which exchange with central succeeded or failed. */
export type Exchange = 'upload' | 'changes' | 'ack';

/** What every part that talks to central (feed, acks) is handed: its transport, its tables, its retry policy and where to report. */
export interface ExchangeOptions {
  transport: SyncTransport;
  repo: SyncRepository;
  backoff: { initial_ms: number; max_ms: number };
  /** The delay after a failure (backoff, Retry-After, fatal). */
  delayFor: (e: unknown, b: Backoff) => number;
  counters: SyncStats;
  log: Logger;
  succeeded: (what: Exchange) => void;
  failed: (e: unknown, what: Exchange) => void;
}

/** What the status reports that the reporter does not own itself. */
export type StatusSnapshot = Omit<SyncStatus, 'transport' | 'connected' | 'last_success' | 'last_error' | 'ts'>;

export interface SyncStatusOptions {
  storeId: string;
  transport: SyncConfig['transport'];
  bus: { publish(topic: string, payload: string | Buffer, opts?: PublishOptions): Promise<void> };
  log: Logger;
  /** The rest of the status, read from the other parts (may throw while the store closes). */
  snapshot: () => StatusSnapshot;
  /** Retained status period; default 5000 ms. */
  intervalMs?: number;
  /** Backlog size for the "central reachable" log line. */
  backlog?: () => number;
}

export class SyncStatusReporter {
  private readonly limiter: LogLimiter;
  private running = false;
  private timer: NodeJS.Timeout | null = null;
  private soon: NodeJS.Timeout | null = null;
  private connected = false;
  private lastSuccess: number | null = null;
  /** The unresolved error of each exchange: a success of that exchange resolves it. */
  private readonly errors = new Map<Exchange, NonNullable<SyncStatus['last_error']>>();
  private lastReconnectLog = 0;
  private lastKey = '';
  private lastLog = 0;
  private suppressedLogs = 0;

  constructor(private readonly o: SyncStatusOptions) {
    this.limiter = new LogLimiter(o.log);
  }

  /** Starts the periodic publication and publishes once. */
  async start(): Promise<void> {
    this.running = true;
    this.timer = setInterval(() => void this.publish(), this.o.intervalMs ?? 5000);
    this.timer.unref();
    await this.publish();
  }

  /** Stops the timers; the caller publishes the final status (publish()) if it wants one. */
  stop(): void {
    this.running = false;
    if (this.timer) clearInterval(this.timer);
    if (this.soon) clearTimeout(this.soon);
    this.timer = null;
    this.soon = null;
    this.connected = false;
  }

  /** The most recent error not resolved since, or null. */
  private get lastError(): SyncStatus['last_error'] {
    let last: SyncStatus['last_error'] = null;
    for (const e of this.errors.values()) if (last === null || e.at >= last.at) last = e;
    return last;
  }

  /**
   * An exchange with central succeeded: central is reachable, and that exchange's error is
   * resolved (the status stops reporting it). Another exchange's error stays until it succeeds:
   * the feed answering says nothing about uploads.
   */
  succeeded(what: Exchange): void {
    this.lastSuccess = Date.now();
    if (this.errors.delete(what)) this.changed();
    if (!this.connected) {
      this.connected = true;
      if (Date.now() - this.lastReconnectLog > 60_000) {
        this.lastReconnectLog = Date.now();
        this.o.log.info({ backlog: this.o.backlog?.() ?? null }, 'central reachable: syncing');
      }
      this.changed();
    }
  }

  /**
   * An exchange with central failed: logged (rate limited) and reported. `reachable`: central did
   * answer (e.g. incompletely), so the link stays reported as connected.
   */
  failed(e: unknown, what: Exchange, opts: { reachable?: boolean } = {}): void {
    const f = failureOf(e);
    const message = (e as Error)?.message ?? String(e);
    // a refused request (400, 413, 415, 422) is an answer: central is reachable
    const reachable = opts.reachable ?? (f.kind === 'invalid_request' || f.kind === 'too_large');
    const changed = (this.connected && !reachable) || this.lastError?.code !== f.code;
    if (!reachable) this.connected = false;
    this.errors.set(what, { code: f.code, message: message.slice(0, 500), at: new Date().toISOString() });
    const key = `${f.kind}:${what}:${f.code}`;
    if (f.kind === 'fatal' || (f.kind === 'invalid_request' && what !== 'upload')) this.limiter.error(key, { err: message, code: f.code }, `central refused the ${what} request: needs an operator (retrying at the maximum backoff)`);
    else if (f.kind === 'invalid_request' || f.kind === 'too_large') this.limiter.warn(key, { err: message, code: f.code }, `central refused the ${what} request as sent: changing it`);
    else if (reachable) this.limiter.warn(key, { err: message, code: f.code }, `central's answer to the ${what} request was incomplete: retrying with backoff`);
    else this.limiter.warn(key, { err: message, code: f.code }, `central not reachable for ${what}: retrying with backoff`);
    if (changed) this.changed();
  }

  /** Publishes status soon (coalesced to at most one per 250 ms). */
  changed(): void {
    if (!this.running || this.soon) return;
    this.soon = setTimeout(() => {
      this.soon = null;
      void this.publish();
    }, 250);
    this.soon.unref();
  }

  status(): SyncStatus {
    const s = this.o.snapshot();
    return {
      transport: this.o.transport,
      connected: this.connected,
      backlog_count: s.backlog_count,
      backlog_bytes: s.backlog_bytes,
      oldest_event_age_s: s.oldest_event_age_s,
      last_success: this.lastSuccess === null ? null : new Date(this.lastSuccess).toISOString(),
      last_error: this.lastError,
      dropped: s.dropped,
      compacted: s.compacted,
      parked: s.parked,
      cursor: s.cursor,
      dropped_by_kind: s.dropped_by_kind,
      compacted_by_kind: s.compacted_by_kind,
      over_limit: s.over_limit,
      disk_full_at: s.disk_full_at,
      held_conditions: s.held_conditions,
      pending_acks: s.pending_acks,
      uploaded: s.uploaded,
      duplicates: s.duplicates,
      epoch: s.epoch,
      central_contiguous_seq: s.central_contiguous_seq,
      central_contiguous_seq_decreased: s.central_contiguous_seq_decreased,
      ts: new Date().toISOString(),
    };
  }

  async publish(): Promise<void> {
    let st: SyncStatus;
    try {
      st = this.status();
    } catch (e) {
      this.limiter.warn('status', { err: (e as Error).message }, 'sync status unavailable');
      return;
    }
    const key = JSON.stringify([st.connected, st.last_error?.code ?? null, st.dropped, st.compacted, st.parked, st.over_limit]);
    if (key !== this.lastKey) {
      // rate limited: a flapping link must not flood the journal
      if (this.lastKey !== '') {
        const now = Date.now();
        if (now - this.lastLog >= 10_000) {
          this.o.log.info(
            { connected: st.connected, last_error: st.last_error?.code ?? null, dropped: st.dropped, compacted: st.compacted, parked: st.parked, over_limit: st.over_limit, backlog: st.backlog_count, ...(this.suppressedLogs > 0 ? { repeated: this.suppressedLogs } : {}) },
            'sync status changed',
          );
          this.lastLog = now;
          this.suppressedLogs = 0;
        } else {
          this.suppressedLogs++;
        }
      }
      this.lastKey = key;
    }
    try {
      await this.o.bus.publish(topics.syncStatus(this.o.storeId), JSON.stringify(st), { retain: true, qos: 1 });
    } catch (e) {
      this.limiter.warn('status-publish', { err: (e as Error).message }, 'sync status could not be published');
    }
  }
}
