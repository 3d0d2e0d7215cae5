/**
 * One OpenEPaperLink access point as a LabelRadio: HTTP requests (`/jsonupload`, `/led_flash`,
 * `/get_db`) and the WebSocket `/ws`, read and written with the codec (src/drivers/oepl.ts).
 * docs/oepl.md ("Driver") lists the AP facts this relies on.
 *
 * Design choices, and why:
 *
 * - HTTP: Node's http module, at most `maxConcurrentRequests` (2) at once; further requests wait in
 *   a bounded queue (256) and beyond that fail at once with SG_AP_BUSY. Every request has a
 *   timeout; stop() destroys those in flight. One socket per request by default (`keepAlive`
 *   false): the OpenEPaperLink firmware's web server (ESPAsyncWebServer) sends `Connection: close`
 *   with every answer and closes the connection, so pooling gains nothing there. With `keepAlive`
 *   an http.Agent keeps at most `maxConcurrentRequests` sockets per AP (idle ones closed after
 *   KEEP_ALIVE_IDLE_MS). A server may close an idle kept-alive socket just as a request goes out on
 *   it: a request that fails with ECONNRESET or EPIPE on a reused socket is sent once more on a
 *   fresh connection, but only a GET or an upload (`/jsonupload` again with the same content is
 *   harmless: an AP that stored it already keeps one copy, and one the label shows already is
 *   acknowledged by reconciliation, rule 3 below); `/tag_cmd` and `/led_flash` are not repeated.
 * - Acknowledgements come from two sources, one ack per send:
 *   1. the AP's `<MAC> reports xfer complete` line on the WebSocket;
 *   2. reconciliation: before each upload the driver remembers the tag record's `updatecount` and
 *      `hash` as last seen (fetching `/get_db?mac=` first if it never saw the label). A later
 *      record of that label (WebSocket push, `/get_db` walk or per-MAC poll) with `pending == 0`
 *      and a higher `updatecount` (or, without `updatecount`, another `hash`) proves the label
 *      received the newest content stored for it: nothing is queued any more and a transfer
 *      completed after the upload. That is an ack without the (possibly lost) log line;
 *   3. identical content: the first per-MAC poll after the upload's 200 shows nothing pending and
 *      no transfer since the baseline: the AP did not store the content because the label shows it
 *      already (a resend after a lost ack or a gateway crash), so it is acknowledged.
 *   Per-MAC state exists only for outstanding sends (stored, not yet acked, failed or lost), is
 *   capped (`maxLabels`) and expires after `outstandingMaxMs` (30 min: the AP itself gives up
 *   after about 20). A new send for a MAC with one outstanding replaces it (the scheduler sends one
 *   content per label at a time, so that happens only after it gave up on the older one).
 * - Polling: every `pollIntervalMs` (30 s) and right after each (re)connect, the oldest
 *   outstanding sends (at most 32 a round) that are older than one check-in of their label are
 *   looked up with `/get_db?mac=`, so acks are learnt even when every WebSocket frame is lost.
 *   No poll runs, and no poll answer counts, between a WebSocket drop and the end of the next walk
 *   (an AP that restarted has lost its queue, and "nothing pending" from it would confirm content
 *   by the identical-content rule that never reached the label).
 * - Restart/down rule: when the WebSocket drops, the driver reconnects with back-off. If the
 *   socket broke (reset, timed out, no pong to a ping: an AP that lost power and came back resets
 *   the old connection), or if, between the drop and the end of the next successful `/get_db`
 *   walk, a connection attempt failed (refused, reset, timed out; an HTTP request that failed so in
 *   the 2 s before the drop counts too) or the AP answered 409 (it is booting; a probe `POST /jsonupload` without
 *   fields is answered 409 while booting and 400 once running), the AP restarted or lost power:
 *   its queue, which lives in memory, is gone. After the walk has reconciled (acks first, so a
 *   label that got its content before the restart is confirmed), `lost` is emitted and every
 *   outstanding send is forgotten. While the probe still gets 409, `lost` carries `until` = now +
 *   `busyRetryMs` and is repeated every `busyRetryMs` until the AP runs (so the scheduler waits
 *   instead of spending attempts on 409s). A drop in order (close frame or FIN) after which the
 *   AP answers at once: reconcile only, no `lost`. At start an AP that could not be reached is
 *   treated alike (its queue may be gone; resending costs less than a label waiting forever).
 * - `heard.at`: gateway clock at receipt, never an AP timestamp (the AP's clock may be off, and the
 *   simulator's fast mode runs it 1000 times faster). A pushed or polled record counts as a
 *   check-in only when its `lastseen` moved on from the last record the driver saw (a push also
 *   follows an upload or a transfer, which is not a check-in). In a `/get_db` walk a record counts
 *   when its `lastseen` is within one check-in interval (+2 s for rounding to seconds) of the
 *   newest `lastseen` of the walk (both on the AP's clock); an older record belongs to a label that
 *   missed its check-in, and reporting it as heard now would route content to a label that is gone.
 * - Status: online once a walk after a WebSocket connect succeeded; offline when a connection
 *   attempt fails or the walk fails. A WebSocket that held for 10 s and drops is retried once at
 *   once before the AP is reported offline; one that keeps dropping waits its back-off. A ping every `pingIntervalMs` detects a socket that died silently.
 */
import http from 'node:http';
import WebSocket from 'ws';
import {
  buildGetDb,
  buildGetDbForMac,
  buildJsonUpload,
  buildLedFlash,
  buildTagCmd,
  isTagCommand,
  nextGetDbPos,
  TAG_COMMANDS,
  parseCommandResponse,
  parseGetDbPage,
  parseWsMessage,
  type OeplRequest,
  type OeplTag,
} from '../../drivers/oepl';
import { ErrorCode, isShelfgateError, ShelfgateError } from '../../errors';
import { LogLimiter, type Logger } from '../../log';
import { Backoff } from '../../util/backoff';
import { RadioError, type LabelHealth, type LabelRadio, type RadioErrorCode, type RadioEvent, type RadioStatus } from './radio';

export interface OeplRadioOptions {
  /** The access point's id from the config. */
  id: string;
  /** `http://host:port` of the AP. */
  url: string;
  log: Logger;
  /** Gateway clock, ms epoch (default Date.now). */
  clock?: () => number;
  /** Per HTTP request and WebSocket handshake (default 10 s). */
  requestTimeoutMs?: number;
  /** HTTP requests at once (default 2). */
  maxConcurrentRequests?: number;
  /** Requests waiting for a slot (default 256); beyond: SG_AP_BUSY at once. */
  maxQueuedRequests?: number;
  /** WebSocket reconnect back-off (default 1 s .. 60 s). */
  reconnect?: { initialMs: number; maxMs: number };
  /** Reconciliation polls of outstanding sends (default 30 s). */
  pollIntervalMs?: number;
  /** Poll a send only once it is this old (default: the label's check-in interval, 40 s if unknown). */
  pollAfterMs?: number;
  /** Per-MAC polls per round (default 32). */
  maxPollsPerRound?: number;
  /** Pages of one `/get_db` walk (default 64). */
  maxGetDbPages?: number;
  /** Labels the driver keeps a record of (default 4096; an ESP32 AP holds a few hundred). */
  maxLabels?: number;
  /** An outstanding send is forgotten after this long (default 30 min). */
  outstandingMaxMs?: number;
  /** `retryAfterMs` of SG_AP_BUSY, and `lost.until` after a 409 (default 5 s). */
  busyRetryMs?: number;
  /** WebSocket ping interval (default 15 s); no pong by the next ping: the socket is dropped. */
  pingIntervalMs?: number;
  /** Reuse HTTP connections (default false: the OEPL firmware closes every connection). */
  keepAlive?: boolean;
}

/** A kept-alive socket idle this long is closed by the driver (before a server's own idle close, typically 5 s and more). */
export const KEEP_ALIVE_IDLE_MS = 4000;

export interface OeplRadioStats {
  /** HTTP requests sent. */
  requests: number;
  /** Failed requests (and uploads/flashes) by code. */
  failures: Record<RadioErrorCode, number>;
  wsFrames: number;
  wsUnparseable: number;
  acksFromWs: number;
  acksFromReconcile: number;
  /** WebSocket connections after the first. */
  reconnects: number;
  /** Tag records that could not be read (get_db pages and pushes). */
  invalidRecords: number;
  /** `lost` events emitted. */
  lost: number;
  /** Requests sent again on a fresh connection after a kept-alive socket was reset under them. */
  keepAliveRetries: number;
}

/** What the driver remembers of a label (the newest record it saw). */
interface Known {
  lastSeen: number;
  updateCount: number | null;
  hash: string;
  checkInMs: number | null;
}

/** A send stored at the AP (or being stored) whose delivery is not known yet. */
interface Outstanding {
  /** The record's updatecount/hash before the upload; null: unknown (only the WebSocket ack counts). */
  baseline: { updateCount: number | null; hash: string } | null;
  /** When the upload was answered 200; null while the request is in flight. */
  storedAt: number | null;
  startedAt: number;
  /** A per-MAC poll issued after the 200 has answered (the identical-content rule looks at the first). */
  polled: boolean;
}

type HttpAnswer = { status: number; body: string };

const MAX_BODY = 1024 * 1024;
/** Socket errors that mean the connection broke rather than closed in order. */
const BROKEN_SOCKET = new Set(['ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED']);
/** An HTTP connection failure this recent (gateway ms) when the WebSocket drops counts as seen during the drop. */
const RECENT_FAILURE_MS = 2000;
/** A WebSocket that held this long (real ms) is retried at once when it drops. */
const STABLE_MS = 10_000;
const DEFAULT_CHECKIN_MS = 40_000;

function truncate(s: string, n = 120): string {
  const clean = s.replace(/[^\x20-\x7e]/g, '?');
  return JSON.stringify(clean.length > n ? `${clean.slice(0, n)}...` : clean);
}

function emptyFailures(): Record<RadioErrorCode, number> {
  return { SG_AP_BUSY: 0, SG_AP_UNREACHABLE: 0, SG_AP_UNKNOWN_LABEL: 0, SG_AP_BAD_ANSWER: 0, SG_AP_REQUEST_INVALID: 0 };
}

/** The check-in interval a record states, in ms (AP clock difference); null when not stated. */
export function checkInMsOf(tag: OeplTag): number | null {
  if (tag.lastSeen <= 0 || tag.nextCheckin <= tag.lastSeen) return null;
  return (tag.nextCheckin - tag.lastSeen) * 1000;
}

/**
 * The reconciliation rule (see the top of the file): does `tag` prove that the label received the
 * newest content stored for it after the upload whose `baseline` was remembered?
 */
export function deliveredSince(baseline: { updateCount: number | null; hash: string }, tag: OeplTag): boolean {
  if (tag.pending !== 0) return false;
  if (tag.updateCount !== null && baseline.updateCount !== null) return tag.updateCount > baseline.updateCount;
  return tag.hash.toUpperCase() !== baseline.hash.toUpperCase();
}

/** What the reconciler reports; the radio emits these events and counts where acks came from. */
export interface ReconcileResult {
  events: RadioEvent[];
  /** Acks among `events` that reconciliation found (not the WebSocket log line). */
  reconciledAcks: number;
}

/**
 * The acknowledgement bookkeeping of one AP, free of I/O so it can be tested with hand-written
 * records: what the driver knows of each label, the outstanding sends with their baselines, and
 * the rule that turns records and WebSocket lines into `heard`, `ack` and `transferFailed` (see
 * the top of the file).
 */
export class OeplReconciler {
  readonly counters = { expired: 0, labelsOverCap: 0, identical: 0 };
  private readonly known = new Map<string, Known>();
  private readonly outstanding = new Map<string, Outstanding>();
  /** MACs acked by reconciliation whose WebSocket ack may still come (value: when; bounded). */
  private readonly reconciled = new Map<string, number>();

  constructor(private readonly o: { maxLabels: number; outstandingMaxMs: number } = { maxLabels: 4096, outstandingMaxMs: 30 * 60_000 }) {}

  /** Labels with a known record. */
  get labels(): number {
    return this.known.size;
  }

  /** Sends waiting for their acknowledgement. */
  get outstandingCount(): number {
    return this.outstanding.size;
  }

  knows(mac: string): boolean {
    return this.known.has(mac);
  }

  /** Before the upload: remembers the label's record as the baseline. Returns the send's token. */
  beginSend(mac: string, at: number): object {
    const k = this.known.get(mac);
    const entry: Outstanding = { baseline: k ? { updateCount: k.updateCount, hash: k.hash } : null, storedAt: null, startedAt: at, polled: false };
    if (!this.outstanding.has(mac) && this.outstanding.size >= this.o.maxLabels) {
      // Bounded: the oldest outstanding send gives way (the scheduler resends on its own timeout).
      const oldest = this.outstanding.keys().next().value as string;
      this.outstanding.delete(oldest);
      this.counters.expired++;
    }
    this.outstanding.delete(mac);
    this.outstanding.set(mac, entry);
    this.reconciled.delete(mac);
    return entry;
  }

  /** The upload was answered 200. Nothing to do if an ack consumed the send meanwhile. */
  stored(mac: string, token: object, at: number): void {
    const e = this.outstanding.get(mac);
    if (e === token) e.storedAt = at;
  }

  /** The upload failed: nothing is outstanding for it. */
  abandon(mac: string, token: object): void {
    if (this.outstanding.get(mac) === token) this.outstanding.delete(mac);
  }

  /**
   * One record from a push (`push`), a per-MAC lookup (`poll`) or a walk (`walk-fresh`: seen within
   * one check-in of the walk's newest record; `walk-stale`: older).
   */
  record(tag: OeplTag, source: 'push' | 'poll' | 'walk-fresh' | 'walk-stale', at: number): ReconcileResult {
    const events: RadioEvent[] = [];
    const prev = this.known.get(tag.mac);
    const checkInMs = checkInMsOf(tag);
    if (prev || this.known.size < this.o.maxLabels) {
      this.known.set(tag.mac, { lastSeen: tag.lastSeen, updateCount: tag.updateCount, hash: tag.hash, checkInMs });
    } else this.counters.labelsOverCap++;
    const heard = source === 'walk-fresh' || ((source === 'push' || source === 'poll') && tag.lastSeen > 0 && tag.lastSeen > (prev?.lastSeen ?? 0));
    if (heard) {
      const health: LabelHealth = {
        batteryMv: tag.batteryMv,
        rssi: tag.rssi,
        lqi: tag.lqi,
        temperature: tag.temperature,
        hwType: tag.hwType,
        nextCheckInAt: checkInMs !== null ? at + checkInMs : null,
        checkInMs,
      };
      events.push({ type: 'heard', mac: tag.mac, at, health });
    }
    const e = this.outstanding.get(tag.mac);
    // Identical content: the first poll after the 200 finds nothing queued and no transfer since
    // the baseline. The AP stores content only if it differs from what the label shows, and an
    // upload it stored is pending until a transfer or its 20-minute timeout (far beyond the poll
    // after one check-in); so the label already shows this content (a resend after a lost ack or
    // a gateway crash). Without this rule such a resend would never be acknowledged.
    const firstPoll = source === 'poll' && e !== undefined && e.storedAt !== null && !e.polled;
    if (firstPoll) e.polled = true;
    const identical = firstPoll && e.baseline !== null && tag.pending === 0 && tag.updateCount === e.baseline.updateCount && tag.hash.toUpperCase() === e.baseline.hash.toUpperCase();
    if (e && e.baseline !== null && (identical || deliveredSince(e.baseline, tag))) {
      this.outstanding.delete(tag.mac);
      this.reconciled.set(tag.mac, at);
      this.pruneReconciled(at);
      if (identical) this.counters.identical++;
      events.push({ type: 'ack', mac: tag.mac, at });
      return { events, reconciledAcks: 1 };
    }
    return { events, reconciledAcks: 0 };
  }

  /** All records of one `/get_db` walk, received at `at` (heard rule: see the top of the file). */
  walk(tags: OeplTag[], at: number): ReconcileResult {
    let newest = 0;
    for (const t of tags) newest = Math.max(newest, t.lastSeen);
    const out: ReconcileResult = { events: [], reconciledAcks: 0 };
    for (const tag of tags) {
      const checkIn = checkInMsOf(tag) ?? DEFAULT_CHECKIN_MS;
      const fresh = tag.lastSeen > 0 && (newest - tag.lastSeen) * 1000 <= checkIn + 2000;
      const r = this.record(tag, fresh ? 'walk-fresh' : 'walk-stale', at);
      out.events.push(...r.events);
      out.reconciledAcks += r.reconciledAcks;
    }
    return out;
  }

  /**
   * The WebSocket's `xfer complete` for `mac`. Null when reconciliation has already acked the send
   * it belongs to (one ack per send). Otherwise an ack, also without an outstanding send: it is a
   * fact, and after a gateway restart the scheduler may wait for a send this driver never saw.
   */
  wsAck(mac: string, at: number): RadioEvent | null {
    const wasReconciled = this.reconciled.delete(mac);
    if (wasReconciled && !this.outstanding.has(mac)) return null;
    this.outstanding.delete(mac);
    return { type: 'ack', mac, at };
  }

  /** The WebSocket's `xfer timeout` for `mac`: the AP dropped what it had queued. */
  wsTimeout(mac: string): RadioEvent {
    this.outstanding.delete(mac);
    this.reconciled.delete(mac);
    return { type: 'transferFailed', mac, reason: 'xfer timeout: the AP gave up on the label' };
  }

  /** The AP lost its queue: nothing is outstanding any more. */
  lost(): void {
    this.outstanding.clear();
    this.reconciled.clear();
  }

  /**
   * Outstanding sends to look up per MAC now, oldest first, at most `max`: stored at least
   * `pollAfterMs` ago (null: one check-in of the label). Forgets those older than outstandingMaxMs.
   */
  due(now: number, pollAfterMs: number | null, max: number): string[] {
    const due: Array<[string, number]> = [];
    for (const [mac, e] of this.outstanding) {
      if (now - e.startedAt > this.o.outstandingMaxMs) {
        this.outstanding.delete(mac);
        this.counters.expired++;
        continue;
      }
      if (e.storedAt === null) continue;
      const after = pollAfterMs ?? this.known.get(mac)?.checkInMs ?? DEFAULT_CHECKIN_MS;
      if (now - e.storedAt >= after) due.push([mac, e.storedAt]);
    }
    due.sort((a, b) => a[1] - b[1]);
    return due.slice(0, max).map(([mac]) => mac);
  }

  /** Whether `mac` still has an outstanding send. */
  isOutstanding(mac: string): boolean {
    return this.outstanding.has(mac);
  }

  private pruneReconciled(now: number): void {
    // The WebSocket ack, if it comes at all, follows within moments; a bounded memory of it is enough.
    for (const [mac, t] of this.reconciled) {
      if (this.reconciled.size <= 1024 && now - t < 10 * 60_000) break;
      this.reconciled.delete(mac);
    }
  }
}

export class OeplRadio implements LabelRadio {
  readonly id: string;
  readonly name: string;
  readonly stats: OeplRadioStats = {
    requests: 0,
    failures: emptyFailures(),
    wsFrames: 0,
    wsUnparseable: 0,
    acksFromWs: 0,
    acksFromReconcile: 0,
    reconnects: 0,
    invalidRecords: 0,
    lost: 0,
    keepAliveRetries: 0,
  };

  private readonly log: Logger;
  private readonly limiter: LogLimiter;
  private readonly clock: () => number;
  private readonly baseUrl: URL;
  private readonly o: {
    requestTimeoutMs: number;
    maxConcurrentRequests: number;
    maxQueuedRequests: number;
    pollIntervalMs: number;
    pollAfterMs: number | null;
    maxPollsPerRound: number;
    maxGetDbPages: number;
    maxLabels: number;
    outstandingMaxMs: number;
    busyRetryMs: number;
    pingIntervalMs: number;
    reconnect: { initialMs: number; maxMs: number };
  };

  private readonly listeners = new Set<(e: RadioEvent) => void>();
  private readonly acks: OeplReconciler;

  // HTTP
  private active = 0;
  private readonly waiting: Array<{ go: () => void; fail: (e: Error) => void }> = [];
  private readonly inflight = new Set<{ req: http.ClientRequest; fail: (e: Error) => void }>();
  /** Kept-alive sockets (keepAlive only); created at start, destroyed at stop. */
  private agent: http.Agent | null = null;
  /** One socket per request, closed after the answer (`agent: false` would build an Agent per request). */
  private readonly closingAgent = new http.Agent({ keepAlive: false });
  private readonly keepAlive: boolean;

  // WebSocket and lifecycle
  private running = false;
  private ws: WebSocket | null = null;
  /** Bumped for every socket; work started for an older one stops. */
  private generation = 0;
  private connectedOnce = false;
  private backoff: Backoff | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private pingTimer: NodeJS.Timeout | null = null;
  private bootTimer: NodeJS.Timeout | null = null;
  private polling = false;
  private online: boolean | null = null;
  private lastError: string | null = null;
  /** Since the WebSocket dropped (or since start) and until the next walk succeeded. */
  private phase = { unreachable: false, saw409: false, reason: null as string | null };
  /** True between a WebSocket drop and the end of the next successful walk. */
  private inPhase = true;
  /** The next failed connect after a drop is the first one: retry it at once. */
  private retryAtOnce = false;
  /** The walk after the current socket's connect succeeded. */
  private synced = false;
  /** When an HTTP request last failed to connect or broke (gateway clock), and why. */
  private lastNetworkFailure: { at: number; reason: string } | null = null;

  constructor(options: OeplRadioOptions) {
    this.id = options.id;
    this.name = `oepl-radio:${options.id}`;
    this.log = options.log.child({ module: 'oepl-radio', ap: options.id });
    this.clock = options.clock ?? Date.now;
    this.limiter = new LogLimiter(this.log, 60_000, this.clock);
    this.baseUrl = new URL(options.url);
    if (this.baseUrl.protocol !== 'http:') throw new RadioError('SG_AP_REQUEST_INVALID', `OEPL AP ${options.id}: url must be http://host:port, got ${options.url}`);
    this.o = {
      requestTimeoutMs: options.requestTimeoutMs ?? 10_000,
      maxConcurrentRequests: Math.max(1, options.maxConcurrentRequests ?? 2),
      maxQueuedRequests: Math.max(0, options.maxQueuedRequests ?? 256),
      pollIntervalMs: options.pollIntervalMs ?? 30_000,
      pollAfterMs: options.pollAfterMs ?? null,
      maxPollsPerRound: options.maxPollsPerRound ?? 32,
      maxGetDbPages: options.maxGetDbPages ?? 64,
      maxLabels: options.maxLabels ?? 4096,
      outstandingMaxMs: options.outstandingMaxMs ?? 30 * 60_000,
      busyRetryMs: options.busyRetryMs ?? 5000,
      pingIntervalMs: options.pingIntervalMs ?? 15_000,
      reconnect: options.reconnect ?? { initialMs: 1000, maxMs: 60_000 },
    };
    this.keepAlive = options.keepAlive ?? false;
    this.acks = new OeplReconciler({ maxLabels: this.o.maxLabels, outstandingMaxMs: this.o.outstandingMaxMs });
  }

  // ---------------------------------------------------------------- lifecycle

  /** Connects the WebSocket and returns at once; an AP that is down is retried with back-off. */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    this.backoff = new Backoff(this.o.reconnect);
    this.inPhase = true;
    this.phase = { unreachable: false, saw409: false, reason: null };
    if (this.keepAlive) {
      const n = this.o.maxConcurrentRequests;
      this.agent = new http.Agent({ keepAlive: true, maxSockets: n, maxFreeSockets: n, timeout: KEEP_ALIVE_IDLE_MS, scheduling: 'lifo' });
    }
    this.pollTimer = setInterval(() => void this.pollRound(), this.o.pollIntervalMs);
    this.pollTimer.unref?.();
    this.connect();
  }

  /** Closes the socket, timers and requests in flight (rejected with SG_AP_UNREACHABLE). Never throws. */
  async stop(): Promise<void> {
    if (!this.running) {
      this.listeners.clear();
      return;
    }
    this.running = false;
    this.generation++;
    for (const t of [this.reconnectTimer, this.pingTimer, this.bootTimer]) if (t) clearTimeout(t);
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.reconnectTimer = this.pingTimer = this.pollTimer = this.bootTimer = null;
    this.online = null;
    this.synced = false;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.removeAllListeners();
      ws.on('error', () => undefined);
      try {
        ws.terminate();
      } catch {
        // already closed
      }
    }
    const stopped = new RadioError('SG_AP_UNREACHABLE', `OEPL AP ${this.id}: radio stopped`);
    for (const w of this.waiting.splice(0)) w.fail(stopped);
    for (const f of [...this.inflight]) f.fail(stopped);
    this.inflight.clear();
    this.agent?.destroy();
    this.agent = null;
    this.acks.lost();
    this.listeners.clear();
  }

  subscribe(listener: (e: RadioEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  status(): RadioStatus {
    return { id: this.id, online: this.online === true, lastError: this.lastError, labels: this.acks.labels };
  }

  /**
   * Reconciliation counters: outstanding sends forgotten unanswered (expired), labels not recorded
   * because maxLabels was reached (labelsOverCap).
   */
  get reconcileStats(): { expired: number; labelsOverCap: number; identical: number } {
    return { ...this.acks.counters };
  }

  /** Sends still waiting for their acknowledgement (for tests and metrics). */
  get outstandingSends(): number {
    return this.acks.outstandingCount;
  }

  // ---------------------------------------------------------------- commands

  async send(mac: string, body: string): Promise<void> {
    const req = this.build(() => buildJsonUpload({ mac, json: body }));
    const key = new URLSearchParams(req.body).get('mac')!;
    if (!this.acks.knows(key) && this.online === true) await this.learn(key);
    const token = this.acks.beginSend(key, this.clock());
    try {
      await this.command(req, `upload for ${key}`);
    } catch (e) {
      this.acks.abandon(key, token);
      throw e;
    }
    this.acks.stored(key, token, this.clock());
  }

  async flash(mac: string, pattern: string): Promise<void> {
    const req = this.build(() => buildLedFlash(mac, pattern));
    // The firmware answers `400 parameters are missing` also for a MAC it does not know; the codec
    // has checked both parameters, so that answer can only mean an unknown label.
    await this.command(req, `led_flash for ${new URLSearchParams(req.path.split('?')[1]).get('mac')}`, /parameters are missing/i);
  }

  /** A label command through `/tag_cmd` (refresh, reboot, scan, ...): queued at the AP for the label's next check-in. */
  async tagCommand(mac: string, cmd: string): Promise<void> {
    const req = this.build(() => {
      if (!isTagCommand(cmd)) throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `unknown label command ${JSON.stringify(cmd)} (known: ${TAG_COMMANDS.join(', ')})`);
      return buildTagCmd(mac, cmd);
    });
    await this.command(req, `tag_cmd ${cmd}`, /mac not found/i);
  }

  /** A codec builder's refusal (bad MAC, bad pattern) as SG_AP_REQUEST_INVALID. */
  private build(fn: () => OeplRequest): OeplRequest {
    try {
      return fn();
    } catch (e) {
      if (isShelfgateError(e)) throw this.fail(new RadioError('SG_AP_REQUEST_INVALID', e.message));
      throw e;
    }
  }

  private async command(req: OeplRequest, what: string, unknownLabel?: RegExp): Promise<void> {
    const res = await this.http(req);
    let r = parseCommandResponse(res.status, res.body);
    if (r.kind === 'rejected' && r.status === 400 && unknownLabel?.test(r.text)) r = { kind: 'unknown-mac' };
    switch (r.kind) {
      case 'ok':
        return;
      case 'busy':
        if (this.inPhase) this.phase.saw409 = true;
        throw this.fail(new RadioError('SG_AP_BUSY', `OEPL AP ${this.id}: ${what} answered 409 (the AP is booting)`, this.o.busyRetryMs));
      case 'unknown-mac':
        throw this.fail(new RadioError('SG_AP_UNKNOWN_LABEL', `OEPL AP ${this.id}: ${what}: the AP does not know the label`));
      case 'rejected':
        throw this.fail(new RadioError('SG_AP_REQUEST_INVALID', `OEPL AP ${this.id}: ${what} rejected with ${r.status} ${truncate(r.text)}`));
      case 'unexpected':
        throw this.fail(new RadioError('SG_AP_BAD_ANSWER', `OEPL AP ${this.id}: ${what}: unexpected answer ${r.status} ${truncate(r.text)}`));
    }
  }

  private fail(e: RadioError): RadioError {
    this.stats.failures[e.code]++;
    if (e.code !== 'SG_AP_REQUEST_INVALID' && e.code !== 'SG_AP_UNKNOWN_LABEL') this.lastError = e.message;
    return e;
  }

  /** Fetches one label's record (for the baseline of a send); failures only mean no baseline. */
  private async learn(mac: string): Promise<void> {
    try {
      const page = this.readPage(await this.http(buildGetDbForMac(mac)));
      const at = this.clock();
      for (const tag of page.tags) this.report(this.acks.record(tag, 'poll', at));
    } catch (e) {
      this.limiter.warn(`${this.id}:learn`, { err: (e as Error).message }, 'OEPL: could not read a label record before an upload; its ack can only come from the WebSocket');
    }
  }

  // ---------------------------------------------------------------- HTTP

  private http(req: OeplRequest): Promise<HttpAnswer> {
    if (!this.running) return Promise.reject(this.fail(new RadioError('SG_AP_UNREACHABLE', `OEPL AP ${this.id}: radio stopped`)));
    if (this.active < this.o.maxConcurrentRequests) return this.run(req);
    if (this.waiting.length >= this.o.maxQueuedRequests) {
      return Promise.reject(this.fail(new RadioError('SG_AP_BUSY', `OEPL AP ${this.id}: ${this.waiting.length} requests already waiting`, this.o.busyRetryMs)));
    }
    return new Promise<HttpAnswer>((resolve, reject) => {
      this.waiting.push({ go: () => this.run(req).then(resolve, reject), fail: reject });
    });
  }

  private run(req: OeplRequest): Promise<HttpAnswer> {
    this.active++;
    this.stats.requests++;
    return this.raw(req).finally(() => {
      this.active--;
      const next = this.waiting.shift();
      if (next) next.go();
    });
  }

  private raw(r: OeplRequest, fresh = false): Promise<HttpAnswer> {
    return new Promise<HttpAnswer>((resolve, reject) => {
      let settled = false;
      const body = r.body !== undefined ? Buffer.from(r.body) : undefined;
      const agent = fresh ? null : this.agent;
      // (agent null: a socket of its own, closed after the answer)
      const req = http.request(
        {
          protocol: 'http:',
          hostname: this.baseUrl.hostname.replace(/^\[|\]$/g, ''),
          port: this.baseUrl.port || 80,
          method: r.method,
          path: r.path,
          agent: agent ?? this.closingAgent,
          headers: { ...r.headers, connection: agent ? 'keep-alive' : 'close', ...(body ? { 'content-length': String(body.length) } : {}) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > MAX_BODY) {
              finish(new RadioError('SG_AP_BAD_ANSWER', `OEPL AP ${this.id}: ${r.method} ${r.path.split('?')[0]} answered more than ${MAX_BODY} bytes`));
              req.destroy();
            } else chunks.push(c);
          });
          res.on('end', () => finish(null, { status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', (e) => finish(this.networkError(r, e)));
        },
      );
      const entry = { req, fail: (e: Error) => finish(e) };
      const finish = (err: Error | null, ans?: HttpAnswer): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.inflight.delete(entry);
        if (err) {
          req.destroy();
          reject(err instanceof RadioError ? this.fail(err) : err);
        } else resolve(ans!);
      };
      const timer = setTimeout(() => finish(this.networkError(r, Object.assign(new Error(`no answer within ${this.o.requestTimeoutMs} ms`), { code: 'ETIMEDOUT' }))), this.o.requestTimeoutMs);
      this.inflight.add(entry);
      req.on('error', (e) => {
        // A kept-alive socket the server closed as this request went out: once more on a fresh one.
        const code = (e as NodeJS.ErrnoException).code;
        if (!settled && agent && req.reusedSocket && (code === 'ECONNRESET' || code === 'EPIPE') && isRetryable(r) && this.running) {
          settled = true;
          clearTimeout(timer);
          this.inflight.delete(entry);
          this.stats.keepAliveRetries++;
          this.raw(r, true).then(resolve, reject);
          return;
        }
        finish(this.networkError(r, e));
      });
      req.end(body);
    });
  }

  private networkError(r: OeplRequest, e: Error): RadioError {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    if (this.inPhase) this.markUnreachable(`${code}`);
    this.lastNetworkFailure = { at: this.clock(), reason: `${r.method} ${r.path.split('?')[0]}: ${code}` };
    return new RadioError('SG_AP_UNREACHABLE', `OEPL AP ${this.id}: ${r.method} ${r.path.split('?')[0]}: ${code}: ${e.message}`);
  }

  private markUnreachable(reason: string): void {
    this.phase.unreachable = true;
    this.phase.reason ??= reason;
  }

  private readPage(res: HttpAnswer): ReturnType<typeof parseGetDbPage> {
    if (res.status !== 200) throw this.fail(new RadioError('SG_AP_BAD_ANSWER', `OEPL AP ${this.id}: get_db answered ${res.status} ${truncate(res.body)}`));
    try {
      const page = parseGetDbPage(res.body);
      this.countInvalid(page.invalid, 'get_db');
      return page;
    } catch (e) {
      throw this.fail(new RadioError('SG_AP_BAD_ANSWER', `OEPL AP ${this.id}: ${(e as Error).message}`));
    }
  }

  private countInvalid(invalid: { index: number; why: string }[], where: string): void {
    if (invalid.length === 0) return;
    this.stats.invalidRecords += invalid.length;
    this.limiter.warn(`${this.id}:invalid:${where}`, { where, count: invalid.length, first: invalid[0]!.why }, 'OEPL: tag records that could not be read were skipped');
  }

  // ---------------------------------------------------------------- WebSocket

  private connect(): void {
    if (!this.running) return;
    const gen = ++this.generation;
    const url = new URL('/ws', this.baseUrl);
    url.protocol = 'ws:';
    const ws = new WebSocket(url, { handshakeTimeout: this.o.requestTimeoutMs, maxPayload: 256 * 1024, perMessageDeflate: false });
    this.ws = ws;
    this.synced = false;
    let opened = false;
    let openedAt = 0;
    let alive = true;
    let error: string | null = null;
    /** Why the socket died when it was not closed in order: a reset or timeout, or no pong. */
    let broken: string | null = null;
    const onError = (e: Error): void => {
      const code = (e as NodeJS.ErrnoException).code;
      error = `${code ?? 'error'}: ${e.message}`;
      if (opened && code !== undefined && BROKEN_SOCKET.has(code)) broken ??= code;
    };
    ws.on('error', onError);
    // Once open, ws closes on a socket error without passing it on: listen on the socket itself.
    ws.on('upgrade', (res: http.IncomingMessage) => res.socket.on('error', onError));
    ws.on('open', () => {
      if (gen !== this.generation) return;
      opened = true;
      openedAt = Date.now();
      if (this.connectedOnce) this.stats.reconnects++;
      this.connectedOnce = true;
      this.pingTimer = setInterval(() => {
        if (gen !== this.generation) return;
        if (!alive) {
          this.log.warn('OEPL: WebSocket answered no ping, dropping it');
          broken ??= 'no answer to a ping';
          ws.terminate();
          return;
        }
        alive = false;
        try {
          ws.ping();
        } catch {
          ws.terminate();
        }
      }, this.o.pingIntervalMs);
      this.pingTimer.unref?.();
      void this.sync(gen);
    });
    ws.on('pong', () => {
      alive = true;
    });
    ws.on('message', (data: WebSocket.RawData, isBinary: boolean) => {
      if (gen !== this.generation) return;
      this.onFrame(isBinary ? null : data.toString());
    });
    ws.on('close', () => {
      ws.removeAllListeners();
      ws.on('error', () => undefined);
      if (gen !== this.generation || !this.running) return;
      this.ws = null;
      if (this.pingTimer) clearInterval(this.pingTimer);
      if (this.bootTimer) clearTimeout(this.bootTimer);
      this.pingTimer = this.bootTimer = null;
      if (opened && this.synced) {
        // A drop: was it a restart? The next connect and walk tell (see the rule at the top). A
        // socket that broke (reset, timeout, no pong) is evidence already: an AP that lost power
        // and came back answers the old connection with a reset.
        this.inPhase = true;
        this.phase = { unreachable: false, saw409: false, reason: null };
        if (broken !== null) this.markUnreachable(`WebSocket broke: ${broken}`);
        // An upload whose connection failed just before the drop was noticed saw the same outage
        // (the AP went down as it came in): evidence as good as a failed connect after the drop.
        const f = this.lastNetworkFailure;
        if (f && this.clock() - f.at <= RECENT_FAILURE_MS) this.markUnreachable(`${f.reason} just before the WebSocket closed`);
        // Once at once after a connection that held; a flapping one waits its back-off.
        this.retryAtOnce = Date.now() - openedAt >= STABLE_MS;
        this.log.info({ error, broken }, 'OEPL: WebSocket closed, reconnecting');
      } else if (!opened) {
        this.markUnreachable(error ?? 'connection failed');
        this.setOffline(`OEPL AP ${this.id}: cannot connect: ${error ?? 'connection closed'}`);
      } else {
        // Opened, but the walk failed (sync() reported it) or the socket dropped during it.
        this.setOffline(this.lastError ?? `OEPL AP ${this.id}: connection closed while reading the tag database`);
      }
      this.scheduleReconnect();
    });
  }

  private scheduleReconnect(): void {
    if (!this.running || this.reconnectTimer) return;
    const delay = this.retryAtOnce ? 0 : this.backoff!.next();
    this.retryAtOnce = false;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect();
    }, delay);
  }

  /** After every (re)connect: walk get_db (heard + reconcile), probe for 409, then online and maybe lost. */
  private async sync(gen: number): Promise<void> {
    let booting = false;
    try {
      const tags: OeplTag[] = [];
      let pos = 0;
      for (let page = 0; page < this.o.maxGetDbPages; page++) {
        const p = this.readPage(await this.http(buildGetDb(pos)));
        tags.push(...p.tags);
        let next: number | null;
        try {
          next = nextGetDbPos(pos, p);
        } catch (e) {
          // A `continu` that does not move forward (one-byte pos): the rest is reconciled per label.
          this.limiter.warn(`${this.id}:no-progress`, { err: (e as Error).message }, 'OEPL: get_db walk ended early');
          break;
        }
        if (next === null) break;
        pos = next;
        if (page === this.o.maxGetDbPages - 1) this.limiter.warn(`${this.id}:pages`, { pages: this.o.maxGetDbPages }, 'OEPL: get_db walk stopped at its page limit; the rest is reconciled per label');
      }
      if (gen !== this.generation) return;
      this.report(this.acks.walk(tags, this.clock()));
      booting = await this.probeBooting();
    } catch (e) {
      if (gen !== this.generation || !this.running) return;
      const msg = e instanceof Error ? e.message : String(e);
      this.limiter.warn(`${this.id}:sync`, { err: msg }, 'OEPL: reading the tag database after connecting failed; reconnecting');
      this.setOffline(msg);
      this.ws?.terminate();
      return;
    }
    if (gen !== this.generation || !this.running) return;
    this.synced = true;
    this.backoff!.reset();
    this.setOnline();
    const lostReason = this.phase.unreachable
      ? `unreachable (${this.phase.reason ?? 'connection failed'}): restarted or lost power`
      : booting || this.phase.saw409
        ? 'answered 409: booting after a restart'
        : null;
    this.inPhase = false;
    this.phase = { unreachable: false, saw409: false, reason: null };
    if (lostReason !== null) {
      this.acks.lost();
      this.emitLost(lostReason, booting);
    }
    if (booting) this.scheduleBootProbe(gen);
    void this.pollRound();
  }

  private emitLost(reason: string, booting: boolean): void {
    const until = booting ? this.clock() + this.o.busyRetryMs : undefined;
    this.stats.lost++;
    this.log.warn({ reason, until }, 'OEPL: the AP lost its queue');
    this.emit(until !== undefined ? { type: 'lost', reason, until } : { type: 'lost', reason });
  }

  /**
   * While the AP boots, asks again every busyRetryMs and extends the pause with another `lost`
   * (nothing was stored meanwhile, so nothing more is lost; the scheduler just keeps waiting
   * instead of spending attempts on 409s). Ends once the AP runs or the socket drops.
   */
  private scheduleBootProbe(gen: number): void {
    if (this.bootTimer) clearTimeout(this.bootTimer);
    this.bootTimer = setTimeout(() => {
      this.bootTimer = null;
      if (!this.running || gen !== this.generation) return;
      this.probeBooting().then(
        (booting) => {
          if (!booting || !this.running || gen !== this.generation) return;
          this.emitLost('answered 409: still booting', true);
          this.scheduleBootProbe(gen);
        },
        () => undefined, // unreachable: the WebSocket drop starts the reconnect and its own check
      );
    }, this.o.busyRetryMs);
  }

  /** `POST /jsonupload` without fields: 409 while the AP boots, 400 once it runs; nothing is stored. */
  private async probeBooting(): Promise<boolean> {
    const res = await this.http({ method: 'POST', path: '/jsonupload', body: '', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    return res.status === 409;
  }

  private setOnline(): void {
    if (this.online === true) return;
    this.online = true;
    this.lastError = null;
    this.log.info('OEPL: access point online');
    this.emit({ type: 'status', online: true, error: null });
  }

  private setOffline(error: string): void {
    this.lastError = error;
    if (this.online === false) return;
    this.online = false;
    this.limiter.warn(`${this.id}:offline`, { error }, 'OEPL: access point offline');
    this.emit({ type: 'status', online: false, error });
  }

  // ---------------------------------------------------------------- frames and records

  private onFrame(text: string | null): void {
    this.stats.wsFrames++;
    const ev = text === null ? ({ kind: 'unparseable', reason: 'not-json', message: 'binary frame' } as const) : parseWsMessage(text);
    switch (ev.kind) {
      case 'tags': {
        this.countInvalid(ev.invalid, 'ws');
        const at = this.clock();
        for (const tag of ev.tags) this.report(this.acks.record(tag, 'push', at));
        return;
      }
      case 'ack': {
        const ack = this.acks.wsAck(ev.mac, this.clock());
        if (ack) {
          this.stats.acksFromWs++;
          this.emit(ack);
        }
        return;
      }
      case 'timeout':
        this.emit(this.acks.wsTimeout(ev.mac));
        return;
      case 'unparseable':
        this.stats.wsUnparseable++;
        this.limiter.warn(`${this.id}:ws-unparseable`, { reason: ev.reason, err: ev.message }, 'OEPL: unreadable WebSocket frame skipped');
        return;
      default:
        return;
    }
  }

  private report(r: ReconcileResult): void {
    this.stats.acksFromReconcile += r.reconciledAcks;
    for (const e of r.events) this.emit(e);
  }

  // ---------------------------------------------------------------- polling

  /** Looks up the oldest outstanding sends (older than one check-in) per MAC. */
  private async pollRound(): Promise<void> {
    if (!this.running || this.polling || this.online !== true || this.inPhase) return;
    this.polling = true;
    const gen = this.generation;
    try {
      const due = this.acks.due(this.clock(), this.o.pollAfterMs, this.o.maxPollsPerRound);
      for (const mac of due) {
        if (!this.running || gen !== this.generation) return;
        if (!this.acks.isOutstanding(mac)) continue;
        try {
          const page = this.readPage(await this.http(buildGetDbForMac(mac)));
          // An answer from across a WebSocket drop may come from an AP that restarted and lost
          // its queue: "nothing pending" would then confirm content that never reached the label
          // (the identical-content rule). The walk after the reconnect reconciles instead.
          if (!this.running || gen !== this.generation || this.inPhase) return;
          const at = this.clock();
          for (const tag of page.tags) this.report(this.acks.record(tag, 'poll', at));
        } catch (e) {
          this.limiter.warn(`${this.id}:poll`, { err: (e as Error).message }, 'OEPL: polling a label record failed');
          return;
        }
      }
    } finally {
      this.polling = false;
    }
  }

  private emit(e: RadioEvent): void {
    for (const l of [...this.listeners]) {
      try {
        l(e);
      } catch (err) {
        this.limiter.error(`${this.id}:listener`, { err: (err as Error).message, event: e.type }, 'OEPL: a radio event listener threw');
      }
    }
  }
}

/** Requests that may be sent twice (see the header): `/get_db` reads, and uploads. */
function isRetryable(r: OeplRequest): boolean {
  const path = r.path.split('?')[0];
  return path === '/get_db' || path === '/jsonupload';
}
