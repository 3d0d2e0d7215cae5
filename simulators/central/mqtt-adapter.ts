/**
 * The reference central's MQTT side: the "central cluster consumer" of docs/central-mqtt.md. It
 * connects to the central broker as its own user, subscribes (QoS1)
 *   P/stores/+/events/+        batches  -> CentralSimulator.ingestBatch -> P/stores/S/events-result/<batchId>
 *   P/stores/+/changes-sync    {cursor, sync_id} -> replay of CentralSimulator.feedAfter on P/stores/S/changes,
 *                              then the marker {type: 'sync_done', sync_id, next_cursor}
 *   P/stores/+/changes-ack     {acks} -> CentralSimulator.ingestAcks
 * and publishes every change the simulator appends (publishPrice, assignSlot, CSV, random prices)
 * live on P/stores/S/changes, with its `cursor`, to the store it targets or, for an all-store price,
 * to every store it knows (the `storeIds` option plus every store that has sent anything); a store
 * it does not know yet gets it from the replay it asks for when it connects.
 *
 * Batch processing, dedup, per-device order checks, the feed and acks are the simulator's own code
 * (no copy). Its fault injection applies: dropConnection/timeout -> the batch is ignored (no result:
 * the gateway times out and retries), 429/503 -> a Problem result, lostResponse -> stored but no
 * result, slowMs -> a delay, duplicateRate -> a change published twice, reorder -> a shuffled replay.
 *
 * Lifecycle: start() connects and subscribes (bounded by connectTimeoutMs) and hooks
 * the simulator; stop() unhooks, ends the client (persistent session kept) and never throws.
 */
import mqtt, { type IClientOptions, type IClientPublishOptions, type MqttClient } from 'mqtt';
import { ErrorCode, ShelfgateError } from '../../src/errors';
import type { Service } from '../../src/lifecycle';
import type { Logger } from '../../src/log';
import { decodeTopicLevel, encodeTopicLevel, type SyncDoneMarker } from '../../src/sync/mqtt-bridge';
import type { CentralSimulator } from './simulator';
import type { FeedChange } from './types';
import { LIMITS, STORE_ID_RE } from './types';
import { TimerSet } from '../timers';

export interface CentralMqttAdapterOptions {
  central: CentralSimulator;
  /** mqtt(s)://host:port of the central broker. */
  url: string;
  username?: string;
  password?: string;
  /** Default shelfgate/central/v1. */
  topicPrefix?: string;
  log: Logger;
  /** Default `shelfgate-central-sim` (persistent session, clean: false). */
  clientId?: string;
  /** Subscribe through `$share/<group>/...` (a central cluster of several consumers). */
  shareGroup?: string;
  /** Stores that receive all-store price changes live even before they sent anything. */
  storeIds?: string[];
  /** PEM contents for mqtts://. */
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
  protocolVersion?: 4 | 5;
  /** Bound on start(); default 10 s. */
  connectTimeoutMs?: number;
}

export class CentralMqttAdapter implements Service {
  readonly name = 'central-sim-mqtt';
  private readonly log: Logger;
  private readonly prefix: string;
  private client: MqttClient | null = null;
  private unhook: (() => void) | null = null;
  private readonly stores = new Set<string>();
  private readonly timers = new TimerSet();
  private running = false;
  /** Messages handled, by kind (for tests and the log). */
  readonly counts = { batches: 0, results: 0, ignored: 0, syncs: 0, acks: 0, live: 0 };

  constructor(private readonly opts: CentralMqttAdapterOptions) {
    this.log = opts.log.child({ module: 'central-sim-mqtt' });
    this.prefix = opts.topicPrefix ?? 'shelfgate/central/v1';
    for (const s of opts.storeIds ?? []) this.stores.add(s);
  }

  async start(): Promise<void> {
    if (this.running) return;
    const v = this.opts.protocolVersion ?? 5;
    const options: IClientOptions = {
      protocolVersion: v,
      clientId: this.opts.clientId ?? 'shelfgate-central-sim',
      clean: false,
      reconnectPeriod: 500,
      connectTimeout: this.opts.connectTimeoutMs ?? 10_000,
      resubscribe: true,
      rejectUnauthorized: true,
      ...(this.opts.username !== undefined ? { username: this.opts.username } : {}),
      ...(this.opts.password !== undefined ? { password: this.opts.password } : {}),
      ...(this.opts.ca !== undefined ? { ca: this.opts.ca } : {}),
      ...(this.opts.cert !== undefined ? { cert: this.opts.cert } : {}),
      ...(this.opts.key !== undefined ? { key: this.opts.key } : {}),
      ...(v === 5 ? { properties: { sessionExpiryInterval: 24 * 3600 } } : {}),
    };
    const client = mqtt.connect(this.opts.url, options);
    this.client = client;
    client.on('error', (e) => this.log.warn({ err: e.message }, 'central-sim-mqtt: connection error'));
    client.on('message', (topic, payload, packet) => {
      this.onMessage(topic, payload, packet.properties?.correlationData).catch((e: unknown) =>
        this.log.error({ err: e, topic }, 'central-sim-mqtt: handler failed'),
      );
    });
    const share = this.opts.shareGroup ? `$share/${this.opts.shareGroup}/` : '';
    const filters = ['events/+', 'changes-sync', 'changes-ack'].map((t) => `${share}${this.prefix}/stores/+/${t}`);
    const timeoutMs = this.opts.connectTimeoutMs ?? 10_000;
    try {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new ShelfgateError(ErrorCode.SYNC_RETRYABLE, `central-sim-mqtt: no connection to ${this.opts.url} within ${timeoutMs} ms`)), timeoutMs);
        client.once('connect', () => {
          client.subscribe(filters, { qos: 1 }, (err, granted) => {
            clearTimeout(t);
            const bad = (granted ?? []).filter((g) => (g.qos & 0x80) !== 0);
            if (err || bad.length > 0) reject(new ShelfgateError(ErrorCode.SYNC_FATAL, `central-sim-mqtt: subscription refused: ${err?.message ?? bad.map((g) => g.topic).join(', ')}`));
            else resolve();
          });
        });
      });
    } catch (e) {
      client.end(true);
      this.client = null;
      throw e;
    }
    this.unhook = this.opts.central.onChange((change, cursor) => this.onLiveChange(change, cursor));
    this.running = true;
    this.log.info({ url: this.opts.url, filters }, 'central-sim-mqtt: consuming');
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.unhook?.();
    this.unhook = null;
    this.timers.clear();
    const client = this.client;
    this.client = null;
    if (client) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          client.end(true);
          resolve();
        }, 2_000);
        client.end(!client.connected, {}, () => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Stores that receive live all-store changes. */
  knownStores(): string[] {
    return [...this.stores];
  }

  private publish(topic: string, body: unknown, props?: IClientPublishOptions['properties']): void {
    const c = this.client;
    if (!c) return;
    const opts: IClientPublishOptions = { qos: 1, ...((this.opts.protocolVersion ?? 5) === 5 ? { properties: { contentType: 'application/json', ...props } } : {}) };
    c.publish(topic, JSON.stringify(body), opts, (err) => {
      if (err) this.log.warn({ err: err.message, topic }, 'central-sim-mqtt: publish failed');
    });
  }

  private changesTopic(storeId: string): string {
    return `${this.prefix}/stores/${storeId}/changes`;
  }

  private onLiveChange(change: FeedChange, cursor: string): void {
    if (!this.client) return;
    const targets = change.store_id === null ? [...this.stores] : [change.store_id];
    const twice = this.opts.central.drawDuplicateChange();
    for (const s of targets) {
      this.publish(this.changesTopic(s), { ...change, cursor });
      if (twice) this.publish(this.changesTopic(s), { ...change, cursor });
      this.counts.live++;
    }
  }

  private async onMessage(topic: string, payload: Buffer, correlationData: Buffer | undefined): Promise<void> {
    const head = `${this.prefix}/stores/`;
    if (!topic.startsWith(head)) return;
    const levels = topic.slice(head.length).split('/');
    const storeId = levels[0] ?? '';
    if (!STORE_ID_RE.test(storeId)) return;
    this.stores.add(storeId);
    let body: unknown;
    try {
      body = JSON.parse(payload.toString('utf8'));
    } catch {
      body = undefined;
    }
    if (levels[1] === 'events' && levels.length === 3) {
      const batchId = decodeTopicLevel(levels[2] ?? '') ?? '';
      await this.onBatch(storeId, batchId, body, payload, correlationData);
    } else if (levels[1] === 'changes-sync' && levels.length === 2) {
      this.onSync(storeId, body);
    } else if (levels[1] === 'changes-ack' && levels.length === 2) {
      this.opts.central.countRequest('mqtt:changes-ack');
      this.counts.acks++;
      const out = this.opts.central.ingestAcks(storeId, body);
      if (!out.ok) this.log.warn({ storeId, detail: out.detail }, 'central-sim-mqtt: invalid acks ignored');
    }
  }

  /** `raw`: the payload bytes, the batch's fingerprint (as the decompressed body over HTTP). */
  private async onBatch(storeId: string, batchId: string, body: unknown, raw: Buffer, correlationData: Buffer | undefined): Promise<void> {
    const central = this.opts.central;
    central.countRequest('mqtt:events');
    this.counts.batches++;
    const f = central.drawRequestFaults();
    if (f.drop || f.timeout) {
      this.counts.ignored++;
      this.log.debug({ storeId, batchId }, 'central-sim-mqtt: batch ignored (injected fault)');
      return;
    }
    if (f.slowMs > 0) {
      await this.timers.delay(f.slowMs);
      if (!this.running) return;
    }
    const resultTopic = `${this.prefix}/stores/${storeId}/events-result/${encodeTopicLevel(batchId)}`;
    const props = correlationData ? { correlationData } : undefined;
    if (f.status !== null) {
      this.publish(resultTopic, { batch_id: batchId, ...problemBody(f.status, f.status === 429 ? 'rate_limited' : 'unavailable', 'injected fault'), retry_after_s: f.retryAfterS }, props);
      return;
    }
    const out = body === undefined ? { ok: false as const, status: 400, code: 'invalid_request', detail: 'the batch is not JSON' } : central.ingestBatch(storeId, batchId, body, raw);
    if (f.lose) {
      this.counts.ignored++;
      return;
    }
    this.counts.results++;
    if (out.ok) this.publish(resultTopic, out.response, props);
    else this.publish(resultTopic, { batch_id: batchId, ...problemBody(out.status, out.code, out.detail), ...('ext' in out ? out.ext : {}) }, props);
  }

  private onSync(storeId: string, body: unknown): void {
    const central = this.opts.central;
    central.countRequest('mqtt:changes-sync');
    this.counts.syncs++;
    const o = (typeof body === 'object' && body !== null ? body : {}) as { cursor?: unknown; sync_id?: unknown };
    const syncId = typeof o.sync_id === 'string' ? o.sync_id : '';
    const cursor = typeof o.cursor === 'string' ? o.cursor : null;
    const topic = this.changesTopic(storeId);
    const feed = central.feedAfter(storeId, cursor);
    if (!feed.ok) {
      const marker: SyncDoneMarker = { type: 'sync_done', sync_id: syncId, error: { status: feed.status, code: feed.code, detail: feed.detail } };
      this.publish(topic, marker);
      return;
    }
    // One synchronous run: no live change can be published between the replay and its marker.
    for (const { change, cursor: c } of feed.changes) this.publish(topic, { ...change, cursor: c });
    const marker: SyncDoneMarker = { type: 'sync_done', sync_id: syncId, next_cursor: feed.next_cursor };
    this.publish(topic, marker);
    this.log.debug({ storeId, from: cursor, replayed: feed.changes.length }, 'central-sim-mqtt: replayed');
  }
}

function problemBody(status: number, code: string, detail: string): Record<string, unknown> {
  const d = detail.length > LIMITS.maxProblemDetail ? `${detail.slice(0, LIMITS.maxProblemDetail - 1)}…` : detail;
  return { type: `https://shelfgate.dev/problems/${code.replace(/_/g, '-')}`, title: code.replace(/_/g, ' '), status, code, detail: d };
}
