/**
 * The sync service: the store's outbox to central (upstream) and central's change feed into the
 * store (downstream), over any SyncTransport (HTTPS or the MQTT bridge), with the buffer policy and
 * a retained status on the local bus. A small facade that wires parts with one job each:
 *
 * | part                 | file             | job                                                        |
 * |----------------------|------------------|------------------------------------------------------------|
 * | SyncRepository       | repository.ts    | every SQL statement of the sync tables and outbox queries  |
 * | UploadPipeline       | upload.ts        | outbox -> central: lanes by device, order, batches, in flight |
 * | OutboxBuffer         | buffer.ts        | the byte bound: compact, drop, declare gaps                |
 * | ChangeFeed           | feed.ts          | central's feed -> appliers, version rule, one commit per page |
 * | PriceApplier, SlotAssignmentApplier | price-applier.ts, slot-applier.ts | one change type each (appliers.ts) |
 * | AckSender            | acks.ts          | pending acks -> central                                    |
 * | SyncStatusReporter   | status.ts        | retained `sync/status`, last success / error               |
 *
 * start() starts the buffer policy, republishes stored prices, starts the transport and the loops
 * (one per upload lane, the feed, the acks) and the status; stop() ends them in reverse and leaves
 * no timer or listener behind.
 */
import { setMaxListeners } from 'node:events';
import type { PublishOptions } from '../bus/broker';
import type { SyncConfig } from '../config/schema';
import { ErrorCode, ShelfgateError } from '../errors';
import type { Service } from '../lifecycle';
import type { Logger } from '../log';
import type { Store } from '../store/store';
import type { EventBus } from '../core/events';
import type { Locations } from '../core/locations';
import type { EventKinds } from '../core/event-kinds';
import { Histogram } from '../core/metrics';
import { sleep, type Backoff } from '../util/backoff';
import { AckSender } from './acks';
import { ChangeAppliers, type ChangeApplier, type VersionedChange } from './appliers';
import { OutboxBuffer, type BufferStats } from './buffer';
import { ChangeFeed } from './feed';
import { HttpsTransport } from './https';
import { PriceApplier } from './price-applier';
import { SyncRepository } from './repository';
import { retryDelay } from './retry';
import { SlotAssignmentApplier } from './slot-applier';
import { SyncStatusReporter, newSyncStats, type Exchange, type StatusSnapshot, type SyncStats, type SyncStatus } from './status';
import type { SyncTransport } from './types';
import { CONDITION_PRIORITY, UploadPipeline } from './upload';

export { CONDITION_PRIORITY } from './upload';
export type { SyncStats, SyncStatus } from './status';

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
  /** Appliers of further change types (a feature's), beside prices and slot assignments. */
  appliers?: readonly ChangeApplier<VersionedChange>[];
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

const EMPTY: ReadonlySet<number> = new Set();

export class SyncService implements Service {
  readonly name = 'sync';
  private readonly log: Logger;
  private readonly repo: SyncRepository;
  private readonly buffer: OutboxBuffer;
  private readonly appliers = new ChangeAppliers();
  private readonly counters = newSyncStats();
  /** Seconds from an event's creation to central taking it (accepted or duplicate), per event (for metrics). */
  readonly latency = new Histogram();
  private readonly statusReporter: SyncStatusReporter;
  private readonly upload: UploadPipeline | null = null;
  private readonly feed: ChangeFeed | null = null;
  private readonly acks: AckSender | null = null;
  private running = false;
  private ac = new AbortController();
  private loops: Promise<void>[] = [];
  private unsubscribeAppend: (() => void) | null = null;

  constructor(private readonly o: SyncServiceOptions) {
    const log = (this.log = o.log.child({ module: 'sync' }));
    const config = o.config;
    this.repo = new SyncRepository(o.store);
    this.statusReporter = new SyncStatusReporter({
      storeId: o.storeId,
      transport: config.transport,
      bus: o.bus,
      log,
      snapshot: () => this.snapshot(),
      intervalMs: o.statusIntervalMs,
      backlog: () => o.store.outboxStats().count,
    });
    this.buffer = new OutboxBuffer({
      store: o.store,
      repo: this.repo,
      maxBytes: config.buffer_max_bytes,
      kinds: o.kinds,
      log,
      intervalMs: o.bufferCheckMs,
      onChange: () => this.statusReporter.changed(),
      held: () => this.upload?.heldSeqs() ?? EMPTY,
    });
    this.appliers.register(new PriceApplier({ storeId: o.storeId, repo: this.repo, bus: o.bus, events: o.events, log }));
    this.appliers.register(new SlotAssignmentApplier(this.repo, o.locations));
    for (const a of o.appliers ?? []) this.appliers.register(a);
    const transport = o.transport;
    if (!transport) return;
    const succeeded = (what: Exchange): void => this.statusReporter.succeeded(what);
    const failed = (e: unknown, what: Exchange, opts?: { reachable?: boolean }): void => this.statusReporter.failed(e, what, opts);
    const delayFor = (e: unknown, b: Backoff): number => retryDelay(e, b, config.backoff);
    this.upload = new UploadPipeline({
      storeId: o.storeId,
      config,
      store: o.store,
      repo: this.repo,
      transport,
      counters: this.counters,
      log,
      idlePollMs: o.idlePollMs,
      succeeded,
      failed,
      changed: () => this.statusReporter.changed(),
      latency: this.latency,
    });
    this.acks = new AckSender({ transport, repo: this.repo, backoff: config.backoff, delayFor, counters: this.counters, log, succeeded, failed });
    this.feed = new ChangeFeed({
      transport,
      repo: this.repo,
      appliers: this.appliers,
      longPollS: config.long_poll_s,
      backoff: config.backoff,
      delayFor,
      counters: this.counters,
      log,
      succeeded,
      failed,
      reachable: () => this.upload?.reachable(),
      acksPending: () => this.acks?.wake(),
    });
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.ac = new AbortController();
    setMaxListeners(64, this.ac.signal);
    this.upload?.prepare();
    await this.buffer.start();
    this.running = true;
    for (const a of this.appliers.list()) await a.start?.();
    const transport = this.o.transport;
    if (transport && this.upload && this.feed && this.acks) {
      try {
        await transport.start();
      } catch (e) {
        this.running = false;
        await this.buffer.stop();
        throw e;
      }
      const upload = this.upload;
      this.unsubscribeAppend = this.o.store.onOutboxAppend(() => upload.appended());
      const signal = this.ac.signal;
      this.loops.push(...upload.run(signal), this.feed.run(signal), this.acks.run(signal));
    }
    await this.statusReporter.start();
    this.log.info(
      { transport: this.o.config.transport, pipeline: this.upload?.pipeline ?? 0, batch_max_events: this.o.config.batch_max_events, buffer_max_bytes: this.o.config.buffer_max_bytes },
      'sync started',
    );
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.ac.abort();
    this.upload?.wake();
    this.statusReporter.stop();
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
    try {
      await Promise.race([this.statusReporter.publish(), sleep(1000)]);
    } catch {
      // best effort
    }
    this.log.info({ ...this.counters }, 'sync stopped');
  }

  stats(): SyncStats & { buffer: BufferStats } {
    return { ...this.counters, buffer: this.buffer.stats() };
  }

  status(): SyncStatus {
    return this.statusReporter.status();
  }

  /** The policy, for tests and diagnostics. */
  get bufferPolicy(): OutboxBuffer {
    return this.buffer;
  }

  /** Stored prices, slot versions and the feed cursor (the sync repository). */
  get prices(): SyncRepository {
    return this.repo;
  }

  /** What the status says beside the connection: the outbox, the buffer, the feed. */
  private snapshot(): StatusSnapshot {
    const s = this.o.store.outboxStats();
    const b = this.buffer.stats();
    let oldest = s.oldestCreatedAt;
    let held = 0;
    let pendingAcks = 0;
    try {
      if (!this.o.config.upload_conditions) {
        held = this.repo.countAtPriority(CONDITION_PRIORITY);
        const first = this.repo.minSeqExcludingPriority(CONDITION_PRIORITY);
        oldest = first === null ? null : (this.o.store.peekOutbox(first - 1, 1)[0]?.createdAt ?? null);
      }
      pendingAcks = this.repo.pendingAckCount();
    } catch {
      // store closing: report what is in memory
    }
    let cursor: string | null = null;
    try {
      cursor = this.repo.cursor();
    } catch {
      // store closing
    }
    return {
      backlog_count: s.count,
      backlog_bytes: s.bytes,
      oldest_event_age_s: oldest === null ? null : Math.max(0, Math.round((Date.now() - oldest) / 1000)),
      dropped: b.dropped,
      compacted: b.compacted,
      parked: this.upload?.parkedTotal ?? this.parkedAtStart(),
      cursor,
      dropped_by_kind: b.dropped_by_kind,
      compacted_by_kind: b.compacted_by_kind,
      over_limit: b.over_limit,
      disk_full_at: b.disk_full_at === null ? null : new Date(b.disk_full_at).toISOString(),
      held_conditions: held,
      pending_acks: pendingAcks,
      uploaded: this.counters.uploaded,
      duplicates: this.counters.duplicates,
      ...this.centralProgress(),
    };
  }

  private centralProgress(): Pick<SyncStatus, 'epoch' | 'central_contiguous_seq' | 'central_contiguous_seq_decreased'> {
    const p = this.upload?.centralProgress;
    let epoch = p?.epoch ?? '';
    if (!p) {
      try {
        epoch = this.o.store.epoch();
      } catch {
        // store closing
      }
    }
    return { epoch, central_contiguous_seq: p?.contiguousSeq ?? null, central_contiguous_seq_decreased: p?.decreased ?? 0 };
  }

  private parkedAtStart(): number {
    try {
      return this.repo.parkedCount();
    } catch {
      return 0;
    }
  }
}
