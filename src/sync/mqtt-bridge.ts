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
 * MQTT 3.1.1 broker works too). It rejects retryable (`not_connected`, `disconnected`,
 * `result_timeout`) when not connected, on a disconnect, or after `resultTimeoutMs`; central dedups
 * by event_id, so a retry is safe. A Problem answer is central's own status and code, read with the
 * same table as HTTPS (src/sync/wire.ts `failureForStatus`).
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
 * A changes message the bridge cannot take (over MAX_ANSWER_BYTES, not JSON, not a change or a
 * marker) is not skipped: the cursor must not move past it. The next fetchChanges rejects
 * (`answer_too_large` retryable, `contract` fatal), no mark is made until a replay comes through
 * clean, and the replay is asked for again at the sync service's pace. The change log is bounded
 * by count and by bytes (overflow drops the oldest and asks for a replay). mqtt.js holds one
 * message while it parses it; what the bridge keeps is bounded. (MQTT 5 Maximum Packet Size is not
 * sent: a broker discards a larger message without a word, and the cursor could move past it.)
 *
 * Errors are SyncTransportError (src/sync/failure.ts), in the bridge's own terms: not connected,
 * disconnected, no result -> retryable; CONNACK 0x85/0x86/0x87/0x8A/0x8C (v3.1.1: 2, 4, 5) ->
 * fatal `client_id_rejected`/`bad_credentials`/`not_authorized`/`banned`/`bad_auth_method`; a
 * refused subscription (`subscription_refused`) or publish (0x87 `not_authorized`, 0x90
 * `topic_name_invalid`), a TLS certificate verification failure (its code) -> fatal, kept until the
 * next successful connect (reconnects continue at `fatalReconnectPeriodMs`). No HTTP status is made
 * up: only a Problem from central carries one. mqtt.js reconnects itself every `reconnectPeriodMs`
 * (capped); an 'error' listener is always installed.
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
import { SyncTransportError } from './failure';
import type { Change, ChangeAck, SeqGap, SyncDoneMarker, SyncTransport, UploadEvent, UploadResults } from './types';
import {
  MAX_ANSWER_BYTES,
  TLS_VERIFY_CODES,
  ackBodies,
  answerTooLarge,
  contractViolation,
  failureForStatus,
  isBatchResult,
  parseChange,
  parseProblem,
  parseSyncMarker,
  parseUploadResults,
  uploadBody,
  type Problem,
  type TransportFailure,
} from './wire';

export type { SyncDoneMarker } from './types';

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
  /** Bound on the bytes of the changes held (their messages' size); default MAX_LOGGED_CHANGE_BYTES. */
  maxLoggedBytes?: number;
  /** The largest message read from central; default MAX_ANSWER_BYTES (1 MiB). */
  maxMessageBytes?: number;
  /** Changes handed out per fetchChanges; default 500 (the HTTP page limit). */
  pageLimit?: number;
  /** 5 (default) or 4 (MQTT 3.1.1: no properties, the topic convention alone). */
  protocolVersion?: 4 | 5;
}

export const DEFAULT_TOPIC_PREFIX = 'shelfgate/central/v1';

/**
 * Bytes of received changes held until the sync service fetches them. A change is ~300 bytes, so
 * 8 MiB holds the 10 000 the count bound allows many times over; it only matters if central sends
 * large ones, which would otherwise each keep up to MAX_ANSWER_BYTES in memory.
 */
export const MAX_LOGGED_CHANGE_BYTES = 8 * 1024 * 1024;

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

// CONNACK reason codes that need an operator, by name. v5: 0x85 client id, 0x86 bad user/password,
// 0x87 not authorized, 0x8A banned, 0x8C bad auth method, 0x9C use another server and 0x9D server
// moved (a redirect: never followed, the contract makes it a configuration error, as an HTTP 3xx).
// v3.1.1 return codes: 2 identifier
// rejected, 4 bad user/password, 5 not authorized (only with protocolVersion 4).
const FATAL_CONNACK_V5: ReadonlyMap<number, string> = new Map([
  [0x85, 'client_id_rejected'],
  [0x86, 'bad_credentials'],
  [0x87, 'not_authorized'],
  [0x8a, 'banned'],
  [0x8c, 'bad_auth_method'],
  [0x9c, 'redirect'],
  [0x9d, 'redirect'],
]);
const FATAL_CONNACK_V3: ReadonlyMap<number, string> = new Map([
  [2, 'client_id_rejected'],
  [4, 'bad_credentials'],
  [5, 'not_authorized'],
]);

/** A refused CONNACK as a failure; null when the code is worth retrying at the normal pace (server busy, unavailable...). */
export function connackFailure(code: number, protocolVersion: 4 | 5): TransportFailure | null {
  const name = (protocolVersion === 5 ? FATAL_CONNACK_V5 : FATAL_CONNACK_V3).get(code);
  return name !== undefined ? { kind: 'fatal', code: name } : null;
}

/** A failed QoS1 publish: refused by the broker (0x87, 0x90) is fatal, anything else retryable. */
export function publishFailure(reasonCode: unknown): TransportFailure {
  if (reasonCode === 0x87) return { kind: 'fatal', code: 'not_authorized' };
  if (reasonCode === 0x90) return { kind: 'fatal', code: 'topic_name_invalid' };
  return { kind: 'retryable', code: 'publish_failed' };
}

/** A connection error: a TLS certificate that does not verify is fatal with its code; null for any other (mqtt.js reconnects). */
export function connectionErrorFailure(e: Error): TransportFailure | null {
  const code = (e as { code?: unknown }).code;
  return typeof code === 'string' && TLS_VERIFY_CODES.has(code) ? { kind: 'fatal', code } : null;
}

/** A Problem central answered a batch with: central's status, read like an HTTP answer (retry_after_s for Retry-After). */
export function problemFailure(problem: Problem): TransportFailure {
  return failureForStatus(problem.status, problem, { ...(problem.retry_after_s !== undefined ? { retryAfterMs: problem.retry_after_s * 1000 } : {}) });
}

interface PendingUpload {
  events: UploadEvent[];
  resolve: (r: UploadResults) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout | null;
}

interface LogEntry {
  pos: number;
  change: Change;
  /** Its message's size (the byte bound). */
  bytes: number;
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
  private readonly maxLoggedBytes: number;
  private readonly maxMessageBytes: number;
  private readonly pageLimit: number;
  private readonly protocolVersion: 4 | 5;

  private client: MqttClient | null = null;
  private running = false;
  /** Connected and subscribed: uploads may go out. */
  private ready = false;
  private fatal: SyncTransportError | null = null;
  private lastSessionPresent = false;
  private readonly uploads = new Map<string, PendingUpload[]>();
  private readonly inflight = new Set<(e: Error) => void>();
  private readyWaiters = new Set<() => void>();

  // ---- change feed state
  private changeLog: LogEntry[] = [];
  private loggedBytes = 0;
  /** A changes message that could not be taken: reported by the next fetchChanges (see the module doc). */
  private feedFault: SyncTransportError | null = null;
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
    this.maxLoggedBytes = opts.maxLoggedBytes ?? MAX_LOGGED_CHANGE_BYTES;
    this.maxMessageBytes = opts.maxMessageBytes ?? MAX_ANSWER_BYTES;
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
          this.setFatal(
            new SyncTransportError(
              { kind: 'fatal', code: 'subscription_refused' },
              `sync-mqtt: the broker refused the subscriptions (${err?.message ?? refused.map((g) => `${g.topic}: 0x${g.qos.toString(16)}`).join(', ')})`,
            ),
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
    this.failUploads(new SyncTransportError({ kind: 'retryable', code: 'disconnected' }, 'sync-mqtt: disconnected before the result arrived'));
    this.failInflight(new SyncTransportError({ kind: 'retryable', code: 'disconnected' }, 'sync-mqtt: disconnected before the broker acknowledged'));
    for (const w of [...this.feedWaiters]) w();
  }

  private onError(client: MqttClient, e: Error): void {
    if (client !== this.client) {
      this.log.debug({ err: e.message }, 'sync-mqtt: error while closing');
      return;
    }
    const code = (e as { code?: unknown }).code;
    const refused = /^Connection refused/.test(e.message) && typeof code === 'number' ? connackFailure(code, this.protocolVersion) : null;
    if (refused) {
      // Runs inside mqtt.js's CONNACK handler, before it schedules the reconnect: slow it down.
      client.options.reconnectPeriod = this.fatalReconnectPeriodMs;
      this.setFatal(new SyncTransportError(refused, `sync-mqtt: the broker refused the connection (${refused.code}): ${e.message}`, { cause: e }));
      return;
    }
    const tls = connectionErrorFailure(e);
    if (tls) {
      client.options.reconnectPeriod = this.fatalReconnectPeriodMs;
      this.setFatal(new SyncTransportError(tls, `sync-mqtt: the broker's TLS certificate failed verification: ${e.message}`, { cause: e }));
      return;
    }
    this.limiter.warn(`err:${String(code ?? e.message)}`, { err: e.message, code }, 'sync-mqtt: connection error');
  }

  private setFatal(err: SyncTransportError): void {
    if (this.fatal?.message !== err.message) this.log.error({ err: err.message, failure: err.failure }, 'sync-mqtt: refused; needs an operator (retrying slowly)');
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
    return new SyncTransportError({ kind: 'retryable', code: 'not_connected' }, 'sync-mqtt: not connected to the central broker');
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
          const failure = publishFailure((err as { code?: unknown }).code);
          fail(
            new SyncTransportError(
              failure,
              failure.kind === 'fatal' ? `sync-mqtt: the broker refused a publish to ${topic} (${failure.code}): ${err.message}` : `sync-mqtt: publish to ${topic} failed: ${err.message}`,
              { cause: err },
            ),
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

  upload(batchId: string, events: UploadEvent[], gaps?: SeqGap[], epoch?: string): Promise<UploadResults> {
    if (!this.ready) return Promise.reject(this.unavailable());
    return new Promise<UploadResults>((resolve, reject) => {
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
      this.publish(this.topics.events(batchId), uploadBody(events, gaps, epoch), { responseTopic: this.topics.eventsResult(batchId), correlationData: Buffer.from(batchId) }).then(
        () => {
          // Still waiting (the result may already have arrived and settled p): start the result timer.
          if (!this.uploads.get(batchId)?.includes(p)) return;
          p.timer = setTimeout(() => {
            drop();
            reject(new SyncTransportError({ kind: 'retryable', code: 'result_timeout' }, `sync-mqtt: no result for batch ${batchId} within ${this.resultTimeoutMs} ms`));
          }, this.resultTimeoutMs);
        },
        (e: Error) => {
          drop();
          reject(e);
        },
      );
    });
  }

  /** Settles every upload waiting for `batchId` with central's answer (`body`), or with `err` when the message could not be read. */
  private onResult(batchId: string, body: unknown, err?: Error): void {
    const waiting = this.uploads.get(batchId);
    if (!waiting) {
      this.log.debug({ batchId }, 'sync-mqtt: result for a batch nobody waits for (a retry already settled it)');
      return;
    }
    this.uploads.delete(batchId);
    const what = `the result for batch ${batchId}`;
    let outcome: { ok: true; results: UploadResults } | { ok: false; err: Error };
    try {
      if (err) throw err;
      if (isBatchResult(body)) {
        outcome = { ok: true, results: parseUploadResults(body, waiting[0]!.events, what) };
      } else {
        const problem = parseProblem(body);
        if (!problem) throw contractViolation(what, 'neither an EventBatchResult (results) nor a Problem (status)');
        const failure = problemFailure(problem);
        const detail = problem.detail !== undefined ? `: ${problem.detail.slice(0, 300)}` : '';
        throw new SyncTransportError(failure, `sync-mqtt: central answered batch ${batchId} with ${problem.status} ${failure.code}${detail}`);
      }
    } catch (e) {
      outcome = { ok: false, err: e as Error };
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
    this.throwFeedFault();

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
          if (collect() || !this.running || !this.ready || this.feedFault) done();
        };
        const t = setTimeout(done, waitS * 1000);
        signal.addEventListener('abort', done, { once: true });
        this.feedWaiters.add(wake);
      });
      if (this.fatal) throw this.fatal;
      this.throwFeedFault();
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
    for (const body of ackBodies(acks)) await this.publish(this.topics.changesAck, body);
  }

  /** Reports a changes message that could not be taken, once; the next fetch asks for a replay again. */
  private throwFeedFault(): void {
    const f = this.feedFault;
    if (!f) return;
    this.feedFault = null;
    throw f;
  }

  /**
   * A changes message could not be taken: no mark may vouch for a position past it. Live changes
   * stop making marks, and no marker of a replay asked for so far is believed (the replay lost it
   * too); fetchChanges reports `err` and then asks for a replay again.
   */
  private faultFeed(err: SyncTransportError): void {
    this.limiter.warn(`feed-fault:${err.failure.code}`, { err: err.message }, 'sync-mqtt: a changes message could not be taken; the cursor stays before it');
    this.feedFault = err;
    this.synced = false;
    this.knownSyncIds.clear();
    this.clearSync();
    this.wakeFeed();
  }

  private prune(pos: number): void {
    if (this.changeLog.length > 0 && this.changeLog[0]!.pos <= pos) {
      const keep = this.changeLog.findIndex((e) => e.pos > pos);
      this.dropLogged(keep < 0 ? this.changeLog.length : keep);
    }
    for (const [c, p] of this.marks) if (p < pos) this.marks.delete(c);
  }

  /** Drops the `n` oldest entries of the change log. */
  private dropLogged(n: number): void {
    for (const e of this.changeLog.splice(0, n)) this.loggedBytes -= e.bytes;
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

  private onChangeMessage(body: unknown, bytes: number): void {
    const what = 'a changes message';
    if (typeof body === 'object' && body !== null && (body as { type?: unknown }).type === 'sync_done') {
      let m: SyncDoneMarker;
      try {
        m = parseSyncMarker(body, what);
      } catch (e) {
        this.faultFeed(e as SyncTransportError);
        return;
      }
      if (!this.knownSyncIds.has(m.sync_id)) return; // another connection's (or a stale) marker
      if (m.error) {
        this.log.warn({ error: m.error }, 'sync-mqtt: central could not replay from the cursor; resynchronising from the beginning');
        this.marks.clear();
        this.serviceCursor = null;
        this.lastNext = null;
        if (this.ready) this.requestSync(null);
        return;
      }
      if (this.currentSync?.id === m.sync_id) this.clearSync();
      if (m.next_cursor !== undefined) this.setMark(m.next_cursor, this.nextPos - 1);
      this.synced = true;
      this.wakeFeed();
      return;
    }
    let change: Change;
    try {
      change = parseChange(body, what);
    } catch (e) {
      this.faultFeed(e as SyncTransportError);
      return;
    }
    const pos = this.nextPos++;
    this.changeLog.push({ pos, change, bytes });
    this.loggedBytes += bytes;
    if (this.synced && typeof change.cursor === 'string') this.setMark(change.cursor, pos);
    if (this.overBound()) this.overflow();
    this.wakeFeed();
  }

  private overBound(): boolean {
    return this.changeLog.length > this.maxLogged || this.loggedBytes > this.maxLoggedBytes;
  }

  /**
   * The log is over its bounds: the oldest changes go, so no mark may vouch for them. Marks are
   * forgotten, no marker of a replay asked for so far is believed (a replay still arriving lost
   * them too), and a new replay is asked for from the service's cursor.
   */
  private overflow(): void {
    let dropped = 0;
    while (this.changeLog.length > 1 && this.overBound()) {
      this.dropLogged(1);
      dropped++;
    }
    this.limiter.warn('overflow', { dropped, max: this.maxLogged, maxBytes: this.maxLoggedBytes }, 'sync-mqtt: too many undelivered changes; dropped the oldest and asking central for a replay');
    this.marks.clear();
    this.synced = false;
    this.lastNext = null;
    this.knownSyncIds.clear();
    if (this.ready && this.serviceCursor !== undefined) this.requestSync(this.serviceCursor);
    else this.clearSync();
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
    const resultPrefix = this.topics.eventsResultFilter.slice(0, -1);
    const isResult = topic.startsWith(resultPrefix);
    if (topic !== this.topics.changes && !isResult) {
      this.log.debug({ topic }, 'sync-mqtt: message on an unexpected topic; ignored');
      return;
    }
    const batchId = isResult ? (decodeTopicLevel(topic.slice(resultPrefix.length)) ?? correlationData?.toString('utf8')) : undefined;
    const what = isResult ? `the result for batch ${batchId}` : 'a changes message';
    let body: unknown;
    let err: SyncTransportError | undefined;
    if (payload.length > this.maxMessageBytes) {
      err = answerTooLarge(what, payload.length, this.maxMessageBytes);
    } else {
      try {
        body = JSON.parse(payload.toString('utf8'));
      } catch {
        err = contractViolation(what, 'not JSON');
      }
    }
    if (!isResult) {
      if (err) this.faultFeed(err);
      else this.onChangeMessage(body, payload.length);
      return;
    }
    if (batchId) this.onResult(batchId, body, err);
  }
}

/** The bridge for a config: `sync.mqtt` must be set (the schema guarantees it when transport is mqtt). */
export function createMqttBridge(storeId: string, sync: SyncConfig, log: Logger, extra: Omit<MqttBridgeOptions, 'storeId' | 'config' | 'log'> = {}): MqttBridge {
  if (!sync.mqtt) throw new ShelfgateError(ErrorCode.CONFIG_INVALID, 'sync.mqtt is required when sync.transport is mqtt');
  return new MqttBridge({ storeId, config: sync.mqtt, log, ...extra });
}
