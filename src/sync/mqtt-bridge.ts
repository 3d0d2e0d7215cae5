/**
 * The MQTT bridge: a SyncTransport that talks to central through a central broker cluster (EMQX,
 * HiveMQ, AWS IoT Core, Mosquitto) instead of HTTPS. Same payloads as docs/central-api.yaml; the
 * wire convention is in docs/central-mqtt.md. In short (P = topic_prefix, S = store_id):
 *
 * | topic                                | who publishes | payload                                          |
 * |--------------------------------------|---------------|--------------------------------------------------|
 * | P/stores/S/events/<batchId>          | gateway, QoS1 | EventBatch `{events, gaps?}` (= POST events:batch) |
 * | P/stores/S/events-result/<batchId>   | central, QoS1 | EventBatchResult, or a Problem (+ `batch_id`)   |
 * | P/stores/S/changes                   | central, QoS1 | one Change + its `cursor`; or a sync marker      |
 * | P/stores/S/changes-sync              | gateway, QoS1 | `{cursor, sync_id}`: replay after cursor, then marker |
 * | P/stores/S/changes-ack               | gateway, QoS1 | AckRequest `{acks}` (= POST changes:ack)         |
 *
 * Session: mqtt.js, MQTT 5, `clean: false` + Session Expiry Interval (7 days): a persistent
 * session, so QoS1 changes published while the store is offline wait on the broker. The client id
 * is `client_id` (default `shelfgate-<store_id>`). TLS verification is always on (`ca_file`, or the
 * system CAs; mTLS with `cert_file`/`key_file`); `username` + `password_file`.
 *
 * Upload: the batch is published QoS1 (MQTT 5: `responseTopic`, `correlationData` = batchId,
 * `contentType`), and upload() resolves when the result for that batchId arrives on
 * events-result/<batchId> (subscribed with events-result/+; the topic level is what counts, so an
 * MQTT 3.1.1 broker works too). It rejects SYNC_RETRYABLE when not connected, on a disconnect, or
 * after `resultTimeoutMs`; central dedups by event_id, so a retry is safe. A Problem answer maps
 * like its HTTP status (429/5xx retryable, others fatal).
 *
 * Downstream: the broker's PUBACK happens before the sync service has applied and committed a change,
 * so a persistent session alone can lose changes (a crash after PUBACK, a broker restart without
 * persistence, a session queue overflow). Therefore, on every (re)connect the gateway publishes
 * changes-sync `{cursor, sync_id}` with the cursor the sync service last asked from (its committed
 * one); central replays every change after it and then publishes the marker
 * `{type: "sync_done", sync_id, next_cursor}` on the same changes topic (one topic, so it is ordered
 * after the replay). Duplicates are harmless: the sync service applies a version rule.
 *
 * Cursors are opaque, so the bridge keeps received changes in a log and advances the cursor it
 * hands out (`nextCursor`) only to cursors it knows are complete ("marks"): a sync marker's
 * `next_cursor` (everything up to central's head at replay time has been received), and, after a
 * marker on the same connection, each live change's own `cursor` (live changes arrive in feed order).
 * Until the marker arrives after a (re)connect, received changes are handed out but `nextCursor`
 * stays where it was, so a crash can never commit a cursor past a change that was never received.
 * fetchChanges(cursor) drops log entries at or before `cursor` when it is one of these marks (or the
 * nextCursor last returned); for any other cursor (first call, a rewind) it hands out everything it
 * has and asks central for a replay from that cursor.
 *
 * Errors: not connected / disconnected / timeout -> SYNC_RETRYABLE; CONNACK 0x86/0x87/0x8A/0x8C/0x85
 * (v3.1.1: 2, 4, 5), a refused subscription or publish (0x87), a TLS certificate verification
 * failure -> SYNC_FATAL (kept until the next successful connect; reconnects continue at
 * `fatalReconnectPeriodMs`). mqtt.js reconnects itself every `reconnectPeriodMs` (capped); an
 * 'error' listener is always installed.
 *
 * stop() ends the client with a normal DISCONNECT (the session stays on the broker for the expiry
 * interval), rejects pending uploads and acks with STOPPED, and ends fetchChanges waits.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type IClientPublishOptions, type MqttClient } from 'mqtt';
import { ErrorCode, ShelfgateError } from '../errors';
import { LogLimiter, type Logger } from '../log';
import type { SyncConfig } from '../config/schema';
import { TLS_VERIFY_CODES, fromWire } from './https';
import type { Change, ChangeAck, SeqGap, SyncTransport, UploadEvent, UploadResult } from './types';

export type MqttSyncConfig = NonNullable<SyncConfig['mqtt']>;

export interface MqttBridgeOptions {
  storeId: string;
  config: MqttSyncConfig;
  log: Logger;
  /** How long upload() waits for central's result after the PUBACK; default 30 s. */
  resultTimeoutMs?: number;
  /** mqtt.js reconnect period; default 5 s, clamped to 100 ms .. 60 s. */
  reconnectPeriodMs?: number;
  /** Reconnect period while refused for good (bad credentials, TLS); default 60 s, clamped to 1 s .. 1 h. */
  fatalReconnectPeriodMs?: number;
  /** MQTT 5 Session Expiry Interval; default 7 days. */
  sessionExpiryS?: number;
  /** CONNECT/CONNACK timeout; default 10 s. */
  connectTimeoutMs?: number;
  keepaliveS?: number;
  /** Resend changes-sync when no marker arrived within this; default 30 s. */
  syncRetryMs?: number;
  /** Bound on changes held in memory; default 10 000 (overflow drops the oldest and asks for a replay). */
  maxLoggedChanges?: number;
  /** Changes handed out per fetchChanges; default 500 (the HTTP page limit). */
  pageLimit?: number;
  /** 5 (default) or 4 (MQTT 3.1.1: no properties, the topic convention alone). */
  protocolVersion?: 4 | 5;
}

export const DEFAULT_TOPIC_PREFIX = 'shelfgate/central/v1';

/** The topics of one store (docs/central-mqtt.md). */
export function storeTopics(prefix: string, storeId: string) {
  const base = `${prefix}/stores/${storeId}`;
  return {
    events: (batchId: string) => `${base}/events/${encodeTopicLevel(batchId)}`,
    eventsResult: (batchId: string) => `${base}/events-result/${encodeTopicLevel(batchId)}`,
    eventsResultFilter: `${base}/events-result/+`,
    changes: `${base}/changes`,
    changesSync: `${base}/changes-sync`,
    changesAck: `${base}/changes-ack`,
  };
}

/** A topic level must not contain `/`, `+`, `#` (or NUL): percent-encode them (UUIDs pass unchanged). */
export function encodeTopicLevel(s: string): string {
  return encodeURIComponent(s);
}

export function decodeTopicLevel(s: string): string | null {
  try {
    return decodeURIComponent(s);
  } catch {
    return null;
  }
}

/** The sync marker central publishes on the changes topic after a replay. */
export interface SyncDoneMarker {
  type: 'sync_done';
  sync_id: string;
  next_cursor?: string;
  /** The replay could not be served (invalid_cursor 400, cursor_expired 410): the gateway resyncs from null. */
  error?: { status: number; code: string; detail?: string };
}

// CONNACK reason codes that need an operator. v5: 0x85 client id, 0x86 bad user/password, 0x87 not
// authorized, 0x8A banned, 0x8C bad auth method. v3.1.1 return codes: 2 identifier rejected, 4 bad
// user/password, 5 not authorized (only with protocolVersion 4).
const FATAL_CONNACK_V5 = new Set([0x85, 0x86, 0x87, 0x8a, 0x8c]);
const FATAL_CONNACK_V3 = new Set([2, 4, 5]);

interface PendingUpload {
  events: UploadEvent[];
  resolve: (r: UploadResult[]) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout | null;
}

interface LogEntry {
  pos: number;
  change: Change;
}

const clamp = (v: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, v));

export class MqttBridge implements SyncTransport {
  readonly name = 'sync-mqtt';
  private readonly log: Logger;
  private readonly limiter: LogLimiter;
  private readonly topics: ReturnType<typeof storeTopics>;
  private readonly clientId: string;
  private readonly resultTimeoutMs: number;
  private readonly reconnectPeriodMs: number;
  private readonly fatalReconnectPeriodMs: number;
  private readonly syncRetryMs: number;
  private readonly maxLogged: number;
  private readonly pageLimit: number;
  private readonly protocolVersion: 4 | 5;

  private client: MqttClient | null = null;
  private running = false;
  /** Connected and subscribed: uploads may go out. */
  private ready = false;
  private fatal: ShelfgateError | null = null;
  private lastSessionPresent = false;
  private readonly uploads = new Map<string, PendingUpload[]>();
  private readonly inflight = new Set<(e: Error) => void>();
  private readyWaiters = new Set<() => void>();

  // ---- change feed state
  private changeLog: LogEntry[] = [];
  private nextPos = 1;
  /** cursor -> log position up to which every change at or before that cursor has been received. */
  private marks = new Map<string, number>();
  /** After this connection's sync marker: live changes establish marks. */
  private synced = false;
  private currentSync: { id: string; cursor: string | null; timer: NodeJS.Timeout | null } | null = null;
  private knownSyncIds = new Set<string>();
  /** The cursor the sync service last asked from (undefined: it has not asked yet). */
  private serviceCursor: string | null | undefined = undefined;
  private lastNext: { cursor: string | null; deliveredPos: number } | null = null;
  private readonly feedWaiters = new Set<() => void>();

  constructor(private readonly opts: MqttBridgeOptions) {
    this.log = opts.log.child({ module: 'sync-mqtt' });
    this.limiter = new LogLimiter(this.log);
    this.topics = storeTopics(opts.config.topic_prefix ?? DEFAULT_TOPIC_PREFIX, opts.storeId);
    this.clientId = opts.config.client_id ?? `shelfgate-${opts.storeId}`;
    this.resultTimeoutMs = opts.resultTimeoutMs ?? 30_000;
    this.reconnectPeriodMs = clamp(opts.reconnectPeriodMs ?? 5_000, 100, 60_000);
    this.fatalReconnectPeriodMs = clamp(opts.fatalReconnectPeriodMs ?? 60_000, 1_000, 3_600_000);
    this.syncRetryMs = opts.syncRetryMs ?? 30_000;
    this.maxLogged = opts.maxLoggedChanges ?? 10_000;
    this.pageLimit = opts.pageLimit ?? 500;
    this.protocolVersion = opts.protocolVersion ?? 5;
  }

  // ---------------------------------------------------------------- lifecycle

  /** Reads the credential and TLS files and starts connecting; resolves without waiting for the broker (offline-first). */
  async start(): Promise<void> {
    if (this.running) return;
    const c = this.opts.config;
    const read = (path: string, what: string): Buffer => {
      try {
        return readFileSync(path);
      } catch (e) {
        throw new ShelfgateError(ErrorCode.CONFIG_UNREADABLE, `sync.mqtt.${what}: cannot read ${path}: ${(e as Error).message}`, undefined, { cause: e });
      }
    };
    const password = c.password_file !== undefined ? read(c.password_file, 'password_file').toString('utf8').replace(/\r?\n$/, '') : undefined;
    const options: IClientOptions = {
      protocolVersion: this.protocolVersion,
      clientId: this.clientId,
      clean: false,
      keepalive: this.opts.keepaliveS ?? 30,
      connectTimeout: this.opts.connectTimeoutMs ?? 10_000,
      reconnectPeriod: this.reconnectPeriodMs,
      reconnectOnConnackError: true,
      resubscribe: false, // subscribed explicitly on every connect
      rejectUnauthorized: true,
      ...(c.username !== undefined ? { username: c.username } : {}),
      ...(password !== undefined ? { password } : {}),
      ...(c.ca_file !== undefined ? { ca: read(c.ca_file, 'ca_file') } : {}),
      ...(c.cert_file !== undefined ? { cert: read(c.cert_file, 'cert_file') } : {}),
      ...(c.key_file !== undefined ? { key: read(c.key_file, 'key_file') } : {}),
      ...(this.protocolVersion === 5 ? { properties: { sessionExpiryInterval: this.opts.sessionExpiryS ?? 7 * 24 * 3600 } } : {}),
    };
    this.running = true;
    const client = mqtt.connect(c.url, options);
    this.client = client;
    client.on('connect', (connack) => this.onConnect(client, connack.sessionPresent === true));
    client.on('close', () => {
      if (client === this.client) this.onClose();
    });
    client.on('error', (e) => this.onError(client, e));
    client.on('message', (topic, payload, packet) => {
      if (client === this.client) this.onMessage(topic, payload, packet.properties?.correlationData);
    });
    this.log.info({ url: c.url, clientId: this.clientId, user: c.username, tls: c.url.startsWith('mqtts:'), mtls: c.cert_file !== undefined }, 'sync-mqtt: connecting');
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.ready = false;
    const stopped = (): ShelfgateError => new ShelfgateError(ErrorCode.STOPPED, 'sync-mqtt: stopped');
    this.failUploads(stopped());
    this.failInflight(stopped());
    this.clearSync();
    for (const w of [...this.feedWaiters]) w();
    for (const w of [...this.readyWaiters]) w();
    const client = this.client;
    this.client = null;
    if (client) {
      // Listeners stay (they ignore a client that is no longer this.client), so 'error' is never
      // unhandled while the socket winds down. A normal DISCONNECT keeps the session on the broker.
      await new Promise<void>((resolve) => {
        // end(false) sends DISCONNECT once in-flight packets are acknowledged; with the broker
        // unresponsive, destroy the socket after 2 s (the session survives either way).
        if (!client.connected) {
          client.end(true, {}, () => resolve());
          return;
        }
        const t = setTimeout(() => {
          client.stream?.destroy();
          resolve();
        }, 2_000);
        client.end(false, {}, () => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    this.log.info('sync-mqtt: stopped');
  }

  /** Whether the broker resumed a stored session on the last connect (MQTT 5 / 3.1.1 CONNACK flag). */
  get sessionPresent(): boolean {
    return this.lastSessionPresent;
  }

  /** Connected and subscribed. */
  get connected(): boolean {
    return this.ready;
  }

  /** Resolves when connected and subscribed; false after `timeoutMs` or stop(). */
  waitReady(timeoutMs: number): Promise<boolean> {
    if (this.ready) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(t);
        this.readyWaiters.delete(done);
        resolve(this.ready);
      };
      const t = setTimeout(done, timeoutMs);
      this.readyWaiters.add(done);
    });
  }

  // ---------------------------------------------------------------- connection events

  private onConnect(client: MqttClient, sessionPresent: boolean): void {
    if (client !== this.client) return;
    client.options.reconnectPeriod = this.reconnectPeriodMs;
    this.lastSessionPresent = sessionPresent;
    this.log.info({ sessionPresent }, 'sync-mqtt: connected');
    client.subscribe(
      { [this.topics.eventsResultFilter]: { qos: 1 }, [this.topics.changes]: { qos: 1 } },
      (err, granted) => {
        if (client !== this.client || !client.connected) return;
        const refused = (granted ?? []).filter((g) => (g.qos & 0x80) !== 0);
        if (err || refused.length > 0) {
          const code = (err as { code?: number } | undefined)?.code;
          this.setFatal(
            new ShelfgateError(ErrorCode.SYNC_FATAL, `sync-mqtt: the broker refused the subscriptions (${err?.message ?? refused.map((g) => `${g.topic}: 0x${g.qos.toString(16)}`).join(', ')})`, {
              reasonCode: code ?? refused[0]?.qos,
            }),
          );
          return;
        }
        this.fatal = null;
        this.ready = true;
        this.synced = false;
        for (const w of [...this.readyWaiters]) w();
        if (this.serviceCursor !== undefined) this.requestSync(this.serviceCursor);
      },
    );
  }

  private onClose(): void {
    const was = this.ready;
    this.ready = false;
    this.synced = false;
    this.clearSync();
    if (was) this.log.warn('sync-mqtt: disconnected');
    this.failUploads(new ShelfgateError(ErrorCode.SYNC_RETRYABLE, 'sync-mqtt: disconnected before the result arrived'));
    this.failInflight(new ShelfgateError(ErrorCode.SYNC_RETRYABLE, 'sync-mqtt: disconnected before the broker acknowledged'));
    for (const w of [...this.feedWaiters]) w();
  }

  private onError(client: MqttClient, e: Error): void {
    if (client !== this.client) {
      this.log.debug({ err: e.message }, 'sync-mqtt: error while closing');
      return;
    }
    const code = (e as { code?: unknown }).code;
    const refused = /^Connection refused/.test(e.message) && typeof code === 'number';
    if (refused && (this.protocolVersion === 5 ? FATAL_CONNACK_V5 : FATAL_CONNACK_V3).has(code)) {
      // Runs inside mqtt.js's CONNACK handler, before it schedules the reconnect: slow it down.
      client.options.reconnectPeriod = this.fatalReconnectPeriodMs;
      this.setFatal(new ShelfgateError(ErrorCode.SYNC_FATAL, `sync-mqtt: the broker refused the connection: ${e.message}`, { reasonCode: code }, { cause: e }));
      return;
    }
    if (typeof code === 'string' && TLS_VERIFY_CODES.has(code)) {
      client.options.reconnectPeriod = this.fatalReconnectPeriodMs;
      this.setFatal(new ShelfgateError(ErrorCode.SYNC_FATAL, `sync-mqtt: the broker's TLS certificate failed verification: ${e.message}`, { tlsCode: code }, { cause: e }));
      return;
    }
    this.limiter.warn(`err:${String(code ?? e.message)}`, { err: e.message, code }, 'sync-mqtt: connection error');
  }

  private setFatal(err: ShelfgateError): void {
    if (this.fatal?.message !== err.message) this.log.error({ err: err.message, details: err.details }, 'sync-mqtt: refused; needs an operator (retrying slowly)');
    this.fatal = err;
    this.ready = false;
    this.failUploads(err);
    this.failInflight(err);
  }

  /** Rejects every publish still waiting for its PUBACK. */
  private failInflight(err: Error): void {
    for (const r of [...this.inflight]) r(err);
    this.inflight.clear();
  }

  private failUploads(err: Error): void {
    for (const list of this.uploads.values())
      for (const p of list) {
        if (p.timer) clearTimeout(p.timer);
        p.reject(err);
      }
    this.uploads.clear();
  }

  private unavailable(): ShelfgateError {
    if (this.fatal) return this.fatal;
    if (!this.running) return new ShelfgateError(ErrorCode.STOPPED, 'sync-mqtt: not running');
    return new ShelfgateError(ErrorCode.SYNC_RETRYABLE, 'sync-mqtt: not connected to the central broker');
  }

  /** QoS1 publish; resolves on PUBACK. Rejects retryable on disconnect, fatal on a refusing PUBACK (0x87). */
  private publish(topic: string, body: unknown, props?: IClientPublishOptions['properties']): Promise<void> {
    const client = this.client;
    if (!client || !this.ready) return Promise.reject(this.unavailable());
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const fail = (e: Error): void => {
        if (settled) return;
        settled = true;
        this.inflight.delete(fail);
        reject(e);
      };
      this.inflight.add(fail);
      const opts: IClientPublishOptions = { qos: 1, ...(this.protocolVersion === 5 ? { properties: { contentType: 'application/json', ...props } } : {}) };
      client.publish(topic, JSON.stringify(body), opts, (err) => {
        if (settled) return;
        if (err) {
          const rc = (err as { code?: unknown }).code;
          fail(
            typeof rc === 'number' && (rc === 0x87 || rc === 0x90)
              ? new ShelfgateError(ErrorCode.SYNC_FATAL, `sync-mqtt: the broker refused a publish to ${topic}: ${err.message}`, { reasonCode: rc })
              : new ShelfgateError(ErrorCode.SYNC_RETRYABLE, `sync-mqtt: publish to ${topic} failed: ${err.message}`, { reasonCode: rc }, { cause: err }),
          );
          return;
        }
        settled = true;
        this.inflight.delete(fail);
        resolve();
      });
    });
  }

  // ---------------------------------------------------------------- upload

  upload(batchId: string, events: UploadEvent[], gaps?: SeqGap[]): Promise<UploadResult[]> {
    if (!this.ready) return Promise.reject(this.unavailable());
    return new Promise<UploadResult[]>((resolve, reject) => {
      const p: PendingUpload = { events, resolve, reject, timer: null };
      const list = this.uploads.get(batchId) ?? [];
      list.push(p);
      this.uploads.set(batchId, list);
      const drop = (): void => {
        if (p.timer) clearTimeout(p.timer);
        const l = this.uploads.get(batchId);
        if (!l) return;
        const i = l.indexOf(p);
        if (i >= 0) l.splice(i, 1);
        if (l.length === 0) this.uploads.delete(batchId);
      };
      const body = gaps && gaps.length > 0 ? { events, gaps } : { events };
      this.publish(this.topics.events(batchId), body, { responseTopic: this.topics.eventsResult(batchId), correlationData: Buffer.from(batchId) }).then(
        () => {
          // Still waiting (the result may already have arrived and settled p): start the result timer.
          if (!this.uploads.get(batchId)?.includes(p)) return;
          p.timer = setTimeout(() => {
            drop();
            reject(new ShelfgateError(ErrorCode.SYNC_RETRYABLE, `sync-mqtt: no result for batch ${batchId} within ${this.resultTimeoutMs} ms`));
          }, this.resultTimeoutMs);
        },
        (e: Error) => {
          drop();
          reject(e);
        },
      );
    });
  }

  private onResult(batchId: string, body: unknown): void {
    const waiting = this.uploads.get(batchId);
    if (!waiting) {
      this.log.debug({ batchId }, 'sync-mqtt: result for a batch nobody waits for (a retry already settled it)');
      return;
    }
    this.uploads.delete(batchId);
    const o = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
    let outcome: { ok: true; results: UploadResult[] } | { ok: false; err: ShelfgateError };
    if (Array.isArray(o['results'])) {
      outcome = mapResults(o['results'], waiting[0]!.events, batchId);
    } else if (typeof o['status'] === 'number') {
      const status = o['status'];
      const code = typeof o['code'] === 'string' ? o['code'] : 'unknown';
      const retryAfterS = typeof o['retry_after_s'] === 'number' ? o['retry_after_s'] : undefined;
      const details = {
        status,
        code,
        ...(retryAfterS !== undefined ? { retryAfterMs: retryAfterS * 1000 } : {}),
        ...(typeof o['max_events'] === 'number' ? { maxEvents: o['max_events'] } : {}),
      };
      const msg = `sync-mqtt: central answered batch ${batchId} with ${status} ${code}${typeof o['detail'] === 'string' ? `: ${o['detail']}` : ''}`;
      outcome = { ok: false, err: new ShelfgateError(status === 429 || status >= 500 ? ErrorCode.SYNC_RETRYABLE : ErrorCode.SYNC_FATAL, msg, details) };
    } else {
      outcome = { ok: false, err: new ShelfgateError(ErrorCode.SYNC_FATAL, `sync-mqtt: the result for batch ${batchId} is neither a batch result nor a problem`) };
    }
    for (const p of waiting) {
      if (p.timer) clearTimeout(p.timer);
      if (outcome.ok) p.resolve(outcome.results);
      else p.reject(outcome.err);
    }
  }

  // ---------------------------------------------------------------- change feed

  async fetchChanges(cursor: string | null, waitS: number, signal: AbortSignal): Promise<{ changes: Change[]; nextCursor: string | null }> {
    if (this.fatal) throw this.fatal;
    if (!this.running) throw this.unavailable();
    this.serviceCursor = cursor;

    // Where to continue from: after what was handed out for this cursor, else after its mark.
    const markPos = cursor !== null ? this.marks.get(cursor) : undefined;
    const base = markPos ?? -1;
    let from = 0;
    if (this.lastNext && this.lastNext.cursor === cursor) {
      from = this.lastNext.deliveredPos;
    } else if (markPos !== undefined) {
      from = markPos;
    } else {
      // Unknown cursor (the first call, or the service went back): hand out everything held and ask
      // central for a replay from it; marks relative to another cursor no longer mean anything.
      this.marks.clear();
      this.synced = false;
      if (this.ready && this.currentSync?.cursor !== cursor) this.requestSync(cursor);
    }
    if (markPos !== undefined) this.prune(markPos);
    if (this.ready && this.currentSync === null && !this.synced) this.requestSync(cursor);

    const collect = (): { changes: Change[]; nextCursor: string | null; lastPos: number } | null => {
      const out = this.changeLog.filter((e) => e.pos > from).slice(0, this.pageLimit);
      const lastPos = out.length > 0 ? out[out.length - 1]!.pos : from;
      let best: { cursor: string; pos: number } | null = null;
      for (const [c, pos] of this.marks) if (pos <= lastPos && pos > base && (!best || pos >= best.pos)) best = { cursor: c, pos };
      if (out.length === 0 && !best) return null;
      return { changes: out.map((e) => e.change), nextCursor: best ? best.cursor : cursor, lastPos };
    };

    let got = collect();
    if (!got && waitS > 0 && !signal.aborted) {
      if (!this.ready && !this.fatal) throw this.unavailable();
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(t);
          signal.removeEventListener('abort', done);
          this.feedWaiters.delete(wake);
          resolve();
        };
        const wake = (): void => {
          if (collect() || !this.running || !this.ready) done();
        };
        const t = setTimeout(done, waitS * 1000);
        signal.addEventListener('abort', done, { once: true });
        this.feedWaiters.add(wake);
      });
      if (this.fatal) throw this.fatal;
      got = collect();
    }
    if (!got) {
      if (!this.running && !signal.aborted) throw this.unavailable();
      return { changes: [], nextCursor: cursor };
    }
    this.lastNext = { cursor: got.nextCursor, deliveredPos: got.lastPos };
    return { changes: got.changes, nextCursor: got.nextCursor };
  }

  async ack(acks: ChangeAck[]): Promise<void> {
    if (acks.length === 0) return;
    for (let i = 0; i < acks.length; i += 1000) await this.publish(this.topics.changesAck, { acks: acks.slice(i, i + 1000) });
  }

  private prune(pos: number): void {
    if (this.changeLog.length > 0 && this.changeLog[0]!.pos <= pos) this.changeLog = this.changeLog.filter((e) => e.pos > pos);
    for (const [c, p] of this.marks) if (p < pos) this.marks.delete(c);
  }

  private requestSync(cursor: string | null): void {
    this.clearSync();
    const id = randomUUID();
    const timer = setTimeout(() => {
      if (this.currentSync?.id === id && this.ready) {
        this.log.warn({ cursor }, 'sync-mqtt: no changes-sync marker from central yet; asking again');
        this.requestSync(cursor);
      }
    }, this.syncRetryMs);
    timer.unref();
    this.currentSync = { id, cursor, timer };
    this.knownSyncIds.add(id);
    if (this.knownSyncIds.size > 100) this.knownSyncIds.delete(this.knownSyncIds.values().next().value as string);
    this.publish(this.topics.changesSync, { cursor, sync_id: id }).catch((e: Error) =>
      this.limiter.warn('sync-publish', { err: e.message }, 'sync-mqtt: could not ask central for a replay (asked again on reconnect)'),
    );
    this.log.debug({ cursor, syncId: id }, 'sync-mqtt: changes-sync sent');
  }

  private clearSync(): void {
    if (this.currentSync?.timer) clearTimeout(this.currentSync.timer);
    this.currentSync = null;
  }

  private onChangeMessage(body: unknown): void {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      this.limiter.warn('bad-change', {}, 'sync-mqtt: a changes message that is not a JSON object; ignored');
      return;
    }
    const o = body as Record<string, unknown>;
    if (o['type'] === 'sync_done') {
      const m = o as unknown as SyncDoneMarker;
      if (typeof m.sync_id !== 'string' || !this.knownSyncIds.has(m.sync_id)) return; // another connection's (or a stale) marker
      if (m.error) {
        this.log.warn({ error: m.error }, 'sync-mqtt: central could not replay from the cursor; resynchronising from the beginning');
        this.marks.clear();
        this.serviceCursor = null;
        this.lastNext = null;
        if (this.ready) this.requestSync(null);
        return;
      }
      if (this.currentSync?.id === m.sync_id) this.clearSync();
      if (typeof m.next_cursor === 'string') this.setMark(m.next_cursor, this.nextPos - 1);
      this.synced = true;
      this.wakeFeed();
      return;
    }
    if (typeof o['change_id'] !== 'string' || typeof o['type'] !== 'string') {
      this.limiter.warn('bad-change', {}, 'sync-mqtt: a change without change_id/type; ignored');
      return;
    }
    const change = fromWire(o);
    const pos = this.nextPos++;
    this.changeLog.push({ pos, change });
    if (this.synced && typeof change.cursor === 'string') this.setMark(change.cursor, pos);
    if (this.changeLog.length > this.maxLogged) {
      const dropped = this.changeLog.length - this.maxLogged;
      this.changeLog.splice(0, dropped);
      this.limiter.warn('overflow', { dropped, max: this.maxLogged }, 'sync-mqtt: too many undelivered changes; dropped the oldest and asking central for a replay');
      this.marks.clear();
      this.synced = false;
      this.lastNext = null;
      if (this.ready && this.serviceCursor !== undefined) this.requestSync(this.serviceCursor);
    }
    this.wakeFeed();
  }

  private setMark(cursor: string, pos: number): void {
    this.marks.delete(cursor); // keep Map order = position order
    this.marks.set(cursor, pos);
  }

  private wakeFeed(): void {
    for (const w of [...this.feedWaiters]) w();
  }

  // ---------------------------------------------------------------- incoming

  private onMessage(topic: string, payload: Buffer, correlationData: Buffer | undefined): void {
    let body: unknown;
    try {
      body = JSON.parse(payload.toString('utf8'));
    } catch {
      this.limiter.warn(`json:${topic}`, { topic }, 'sync-mqtt: a message that is not JSON; ignored');
      return;
    }
    if (topic === this.topics.changes) {
      this.onChangeMessage(body);
      return;
    }
    const resultPrefix = this.topics.eventsResultFilter.slice(0, -1);
    if (topic.startsWith(resultPrefix)) {
      const batchId = decodeTopicLevel(topic.slice(resultPrefix.length)) ?? correlationData?.toString('utf8');
      if (batchId) this.onResult(batchId, body);
      return;
    }
    this.log.debug({ topic }, 'sync-mqtt: message on an unexpected topic; ignored');
  }
}

function mapResults(raw: unknown[], events: UploadEvent[], batchId: string): { ok: true; results: UploadResult[] } | { ok: false; err: ShelfgateError } {
  const out: UploadResult[] = [];
  for (const r of raw) {
    const o = (typeof r === 'object' && r !== null ? r : {}) as Record<string, unknown>;
    const idx = typeof o['index'] === 'number' ? o['index'] : -1;
    const ev = events[idx];
    const eventId = typeof o['event_id'] === 'string' ? o['event_id'] : ev?.event_id;
    const seq = typeof o['seq'] === 'number' ? o['seq'] : ev?.seq;
    const status = o['status'];
    if (eventId === undefined || seq === undefined || (status !== 'accepted' && status !== 'duplicate' && status !== 'rejected')) {
      return { ok: false, err: new ShelfgateError(ErrorCode.SYNC_FATAL, `sync-mqtt: malformed result in batch ${batchId}`, { result: r }) };
    }
    const e = o['error'] as { code?: unknown; detail?: unknown } | undefined;
    out.push({
      event_id: eventId,
      seq,
      status,
      ...(status === 'rejected'
        ? { error: { code: typeof e?.code === 'string' ? e.code : 'rejected', ...(typeof e?.detail === 'string' ? { message: e.detail } : {}) } }
        : {}),
    });
  }
  return { ok: true, results: out };
}

/** The bridge for a config: `sync.mqtt` must be set (the schema guarantees it when transport is mqtt). */
export function createMqttBridge(storeId: string, sync: SyncConfig, log: Logger, extra: Omit<MqttBridgeOptions, 'storeId' | 'config' | 'log'> = {}): MqttBridge {
  if (!sync.mqtt) throw new ShelfgateError(ErrorCode.CONFIG_INVALID, 'sync.mqtt is required when sync.transport is mqtt');
  return new MqttBridge({ storeId, config: sync.mqtt, log, ...extra });
}
