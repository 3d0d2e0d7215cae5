/**
 * The client side of one LLRP 1.0.1 fixed reader: connect, set the reader up, stream tag reads,
 * answer keepalives, reconnect with back-off. The codec is src/drivers/llrp.ts; the TCP link is
 * injected (an Opener: tcp://host:5084 in production, a test's socket in tests).
 *
 * One session, in order (EPCglobal LLRP 1.0.1):
 *   1. open the link; wait for READER_EVENT_NOTIFICATION with a ConnectionAttemptEvent. Anything
 *      but Success (e.g. another client is connected) closes the link and backs off.
 *   2. GET_READER_CAPABILITIES;
 *   3. SET_READER_CONFIG: ResetToFactoryDefault, KeepaliveSpec (periodic), ReaderEventNotificationSpec
 *      (antenna, reader exception, ROSpec and buffer events on) and a default ROReportSpec;
 *   4. DELETE_ROSPEC 0 (all);
 *   5. per zone: ADD_ROSPEC, ENABLE_ROSPEC, and START_ROSPEC for an immediate zone.
 *   6. streaming: RO_ACCESS_REPORT -> 'read' per tag; KEEPALIVE -> KEEPALIVE_ACK with its id.
 * Any non-success LLRPStatus, an ERROR_MESSAGE during setup, a response timeout, or a framing
 * desync is reported as a 'fault' (code + description) and ends the session: close, back off,
 * start again from 1 (a refused ROSpec is retried after the back-off, not in a tight loop).
 *
 * Design choices:
 * - An "immediate" zone is sent with a Null start trigger and started by START_ROSPEC: with the
 *   Immediate trigger the ROSpec is already active once enabled, and START_ROSPEC on an active
 *   ROSpec is an error on some readers. A periodic zone uses the Periodic trigger with a duration
 *   stop trigger and gets no START_ROSPEC (its trigger starts it).
 * - Liveness: the reader is offline when nothing arrives for `keepaliveMs * missedKeepalives`.
 *   Any complete message counts as a sign of life (a reader busy sending reports is alive).
 * - The session's own reconnect loop (not ReconnectingLink): the protocol decides when to drop the
 *   link (refused connection, refused ROSpec, silent reader), which a plain link supervisor cannot.
 * - Partial bytes left when the link drops are discarded and counted: a report cut mid-message
 *   never becomes a tag.
 * - Read timestamps: firstSeen/lastSeen are Unix ms from the reader's UTC timestamps; a reader that
 *   sends none (or only uptime) gets the gateway's receive time.
 */
import { EventEmitter } from 'node:events';
import { ErrorCode, ShelfgateError } from '../../errors';
import type { Service } from '../../lifecycle';
import { LogLimiter, type Logger } from '../../log';
import type { Link, Opener } from '../../transport/types';
import { Backoff, sleep } from '../../util/backoff';
import {
  ConnectionAttemptStatus,
  decodeMessage,
  encodeAddRoSpec,
  encodeCloseConnection,
  encodeGetReaderCapabilities,
  encodeKeepaliveAck,
  encodeRoSpecOp,
  encodeSetReaderConfig,
  LlrpFramer,
  messageTypeName,
  MsgType,
  newDecodeStats,
  ReaderEventType,
  RESPONSE_OF,
  type LlrpCapabilities,
  type LlrpDecodeStats,
  type LlrpFramerStats,
  type LlrpMessage,
  type LlrpReaderEvent,
  type LlrpStatus,
  type RoReportConfig,
  type RoSpecConfig,
} from '../../drivers/llrp';

export interface LlrpZoneConfig {
  /** ROSpecID on the reader (1..2^32-1; unique per reader). */
  rospecId: number;
  /** Antenna ids of this zone; [0] = all antennas. */
  antennas: number[];
  trigger: { type: 'immediate' } | { type: 'periodic'; periodMs: number; durationMs: number; offsetMs?: number };
  /** Report after this many tags (0 = only at the end of each inventory round). Default 1 for immediate, 0 for periodic. */
  reportEveryNTags?: number;
}

export interface LlrpReaderOptions {
  /** Reader name in reads, logs and events. */
  name: string;
  opener: Opener;
  zones: LlrpZoneConfig[];
  log: Logger;
  /** KeepaliveSpec period asked of the reader. Default 10 000 ms. */
  keepaliveMs?: number;
  /** Offline after this many keepalive periods without a message. Default 3. */
  missedKeepalives?: number;
  /** Wait for the ConnectionAttemptEvent and for each response this long. Default 10 000 ms. */
  responseTimeoutMs?: number;
  backoff?: { initialMs: number; maxMs: number };
  maxMessageBytes?: number;
  /** Clock for reads without reader timestamps (tests). */
  now?: () => number;
  random?: () => number;
}

/** One tag read as the rest of the gateway sees it. */
export interface LlrpTagRead {
  reader: string;
  antenna: number;
  epcHex: string;
  /** Peak RSSI in dBm (NaN if the reader did not send it). */
  rssi: number;
  /** Unix ms. */
  firstSeen: number;
  lastSeen: number;
  seenCount: number;
  /** When the gateway received the report (Unix ms). */
  ts: number;
  rospecId?: number;
}

export type LlrpFaultCode =
  | 'connection_refused'
  | 'status'
  | 'error_message'
  | 'timeout'
  | 'desync'
  | 'invalid_message'
  | 'open_failed'
  | 'closed';

/** A problem the reader reported or the session met; `status` is the reader's LLRPStatus when it sent one. */
export interface LlrpFault {
  reader: string;
  code: LlrpFaultCode;
  message: string;
  /** The request that was refused or timed out, e.g. 'ADD_ROSPEC'. */
  request?: string;
  status?: LlrpStatus;
  /** ConnectionAttemptEvent status when code is connection_refused. */
  connectionStatus?: number;
}

export interface LlrpReaderStats {
  connects: number;
  sessions: number;
  openFailures: number;
  refusedConnections: number;
  setupFailures: number;
  keepalives: number;
  keepaliveTimeouts: number;
  reports: number;
  reads: number;
  errorMessages: number;
  unexpectedMessages: number;
  invalidMessages: number;
  /** Bytes of a partial message dropped when the link closed. */
  truncatedBytes: number;
  decode: LlrpDecodeStats;
  framing: LlrpFramerStats;
}

export interface LlrpReader {
  on(event: 'online', listener: (info: { capabilities?: LlrpCapabilities }) => void): this;
  on(event: 'offline', listener: (reason: string) => void): this;
  on(event: 'read', listener: (read: LlrpTagRead) => void): this;
  on(event: 'fault', listener: (fault: LlrpFault) => void): this;
  on(event: 'reader_event', listener: (event: LlrpReaderEvent) => void): this;
  /** Each setup request sent (name), for tracing and tests. */
  on(event: 'request', listener: (name: string) => void): this;
}

class SessionEnd extends Error {
  constructor(readonly fault: Omit<LlrpFault, 'reader'>) {
    super(fault.message);
  }
}

/** stop() waits at most this long for the reader to confirm CLOSE_CONNECTION. */
const CLOSE_WAIT_MS = 1_000;

const REPORT_CONTENT = { antennaId: true, peakRssi: true, firstSeen: true, lastSeen: true, seenCount: true, rospecId: true } as const;

export class LlrpReader extends EventEmitter implements Service {
  readonly name: string;
  readonly stats: LlrpReaderStats;
  private readonly opts: Required<Omit<LlrpReaderOptions, 'random' | 'maxMessageBytes'>> & Pick<LlrpReaderOptions, 'random' | 'maxMessageBytes'>;
  private readonly limiter: LogLimiter;
  private readonly backoff: Backoff;
  private abort: AbortController | null = null;
  private loop: Promise<void> | null = null;
  private link: Link | null = null;
  private nextId = 1;
  private online = false;
  /** Ends the current session (set while one runs). */
  private endSession: ((err: SessionEnd | null) => void) | null = null;
  /** Resolves stop()'s wait for CLOSE_CONNECTION_RESPONSE. */
  private closeAck: (() => void) | null = null;

  constructor(opts: LlrpReaderOptions) {
    super();
    for (const z of opts.zones) {
      if (!Number.isInteger(z.rospecId) || z.rospecId < 1 || z.rospecId > 0xffffffff) throw new ShelfgateError(ErrorCode.CONFIG_INVALID, `${opts.name}: ROSpecID ${z.rospecId} must be 1..4294967295`);
      if (z.antennas.length === 0) throw new ShelfgateError(ErrorCode.CONFIG_INVALID, `${opts.name}: zone ROSpec ${z.rospecId} has no antennas`);
    }
    this.name = opts.name;
    this.opts = {
      keepaliveMs: 10_000,
      missedKeepalives: 3,
      responseTimeoutMs: 10_000,
      backoff: { initialMs: 1_000, maxMs: 60_000 },
      now: Date.now,
      ...opts,
    };
    this.limiter = new LogLimiter(opts.log);
    this.backoff = new Backoff({ ...this.opts.backoff, random: opts.random });
    this.stats = {
      connects: 0, sessions: 0, openFailures: 0, refusedConnections: 0, setupFailures: 0, keepalives: 0, keepaliveTimeouts: 0,
      reports: 0, reads: 0, errorMessages: 0, unexpectedMessages: 0, invalidMessages: 0, truncatedBytes: 0,
      decode: newDecodeStats(),
      framing: { frames: 0, bytes: 0, rejects: { length_too_small: 0, length_too_large: 0 } },
    };
  }

  get isOnline(): boolean {
    return this.online;
  }

  async start(): Promise<void> {
    if (this.abort) return;
    const ac = new AbortController();
    this.abort = ac;
    this.backoff.reset();
    this.loop = this.supervise(ac.signal);
  }

  /** Says CLOSE_CONNECTION (best effort), closes the link, ends every timer and listener. Never throws. */
  async stop(): Promise<void> {
    const ac = this.abort;
    if (!ac) return;
    this.abort = null;
    const link = this.link;
    if (link && this.online) {
      // CLOSE_CONNECTION, then wait (bounded) for its response or the reader closing: a reader
      // told nothing keeps its session for a while and may refuse our next connection.
      const bound = new AbortController();
      const acked = new Promise<void>((resolve) => (this.closeAck = resolve));
      try {
        link.send(encodeCloseConnection(this.nextId++), () => this.closeAck?.());
      } catch {
        this.closeAck?.();
      }
      await Promise.race([acked, sleep(CLOSE_WAIT_MS, bound.signal)]);
      bound.abort();
      this.closeAck = null;
    }
    ac.abort();
    this.endSession?.(null);
    try {
      await this.loop;
    } catch (err) {
      this.opts.log.error({ err, reader: this.name }, 'LLRP reader loop failed while stopping');
    }
    this.loop = null;
  }

  private async supervise(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await this.connectOnce(signal);
      } catch (err) {
        // a bug in a session must not end the loop
        this.opts.log.error({ err, reader: this.name }, 'LLRP session failed unexpectedly');
      }
      if (signal.aborted) break;
      const delayMs = this.backoff.next();
      this.opts.log.debug({ reader: this.name, delayMs }, 'LLRP reconnect after backoff');
      await sleep(delayMs, signal);
    }
  }

  private fault(f: Omit<LlrpFault, 'reader'>): void {
    const fault: LlrpFault = { reader: this.name, ...f };
    this.limiter.warn(`${this.name}:${f.code}:${f.request ?? ''}:${f.status?.code ?? ''}`, { reader: this.name, code: f.code, request: f.request, status: f.status, connectionStatus: f.connectionStatus }, `LLRP reader: ${f.message}`);
    this.safeEmit('fault', fault);
  }

  private setOffline(reason: string): void {
    if (!this.online) return;
    this.online = false;
    // stopping on purpose is not a fault: info, so a clean shutdown prints no warning
    if (reason === 'stopped') this.opts.log.info({ reader: this.name, reason }, 'LLRP reader offline');
    else this.opts.log.warn({ reader: this.name, reason }, 'LLRP reader offline');
    this.safeEmit('offline', reason);
  }

  private safeEmit(event: string, ...args: unknown[]): void {
    try {
      this.emit(event, ...args);
    } catch (err) {
      this.opts.log.error({ err, event, reader: this.name }, 'LLRP reader listener threw');
    }
  }

  /** One connection: open, set up, stream until it ends. Resolves (never rejects on protocol errors). */
  private async connectOnce(signal: AbortSignal): Promise<void> {
    let link: Link;
    const opening = Promise.resolve().then(() => this.opts.opener());
    let onAbort = (): void => {};
    const aborted = new Promise<null>((resolve) => {
      onAbort = () => resolve(null);
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      const opened = await Promise.race([opening, aborted]);
      if (opened === null) {
        // stop() does not wait for a connect in flight; close the link if it still arrives
        opening.then((l) => l.close(), () => undefined).catch(() => undefined);
        return;
      }
      link = opened;
    } catch (err) {
      this.stats.openFailures++;
      this.fault({ code: 'open_failed', message: `cannot connect: ${(err as Error).message}` });
      return;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
    this.stats.connects++;
    this.link = link;
    const framer = new LlrpFramer({ maxMessageBytes: this.opts.maxMessageBytes });
    const framingBase = { ...this.stats.framing, rejects: { ...this.stats.framing.rejects } };
    const syncFraming = (): void => {
      this.stats.framing.frames = framingBase.frames + framer.stats.frames;
      this.stats.framing.bytes = framingBase.bytes + framer.stats.bytes;
      this.stats.framing.rejects.length_too_small = framingBase.rejects.length_too_small + framer.stats.rejects.length_too_small;
      this.stats.framing.rejects.length_too_large = framingBase.rejects.length_too_large + framer.stats.rejects.length_too_large;
    };

    // Inbox: messages are handled by whoever waits (setup) or by the streaming handler.
    let waiter: ((m: LlrpMessage) => boolean) | null = null;
    let watchdog: NodeJS.Timeout | null = null;
    let streaming = false;
    let ended = false;
    let endResolve!: (err: SessionEnd | null) => void;
    const endPromise = new Promise<SessionEnd | null>((r) => (endResolve = r));
    const end = (err: SessionEnd | null): void => {
      this.closeAck?.();
      if (ended) return;
      ended = true;
      endResolve(err);
    };
    this.endSession = end;

    const armWatchdog = (): void => {
      if (watchdog) clearTimeout(watchdog);
      const ms = this.opts.keepaliveMs * this.opts.missedKeepalives;
      watchdog = setTimeout(() => {
        this.stats.keepaliveTimeouts++;
        end(new SessionEnd({ code: 'timeout', message: `no message from the reader for ${ms} ms (keepalive every ${this.opts.keepaliveMs} ms)` }));
      }, ms);
    };

    const onMessage = (m: LlrpMessage): void => {
      if (m.kind === 'keepalive') {
        this.stats.keepalives++;
        link.send(encodeKeepaliveAck(m.id), () => undefined);
        return;
      }
      if (m.kind === 'invalid') {
        this.stats.invalidMessages++;
        this.limiter.warn(`${this.name}:invalid`, { reader: this.name, type: m.type, reason: m.reason, detail: m.detail }, 'LLRP message dropped');
        return;
      }
      if (waiter && waiter(m)) return;
      if (m.kind === 'response' && m.type === MsgType.CLOSE_CONNECTION_RESPONSE) {
        this.closeAck?.();
        return;
      }
      if (m.kind === 'ro_access_report') {
        this.stats.reports++;
        const ts = this.opts.now();
        for (const t of m.tags) {
          const first = t.firstSeenUtcUs !== undefined ? Math.floor(t.firstSeenUtcUs / 1000) : ts;
          const read: LlrpTagRead = {
            reader: this.name,
            antenna: t.antennaId ?? 0,
            epcHex: t.epcHex,
            rssi: t.peakRssi ?? Number.NaN,
            firstSeen: first,
            lastSeen: t.lastSeenUtcUs !== undefined ? Math.floor(t.lastSeenUtcUs / 1000) : first,
            seenCount: t.seenCount ?? 1,
            ts,
          };
          if (t.rospecId !== undefined) read.rospecId = t.rospecId;
          this.stats.reads++;
          this.safeEmit('read', read);
        }
        return;
      }
      if (m.kind === 'reader_event') {
        for (const e of m.events) this.safeEmit('reader_event', e);
        return;
      }
      if (m.kind === 'error_message') {
        this.stats.errorMessages++;
        this.fault({ code: 'error_message', message: `reader sent ERROR_MESSAGE ${m.status.code}: ${m.status.description}`, status: m.status });
        if (!streaming) end(new SessionEnd({ code: 'error_message', message: 'ERROR_MESSAGE during setup', status: m.status }));
        return;
      }
      this.stats.unexpectedMessages++;
      this.limiter.warn(`${this.name}:unexpected`, { reader: this.name, kind: m.kind, type: messageTypeName('type' in m ? m.type : -1) }, 'LLRP message not expected now; ignored');
    };

    const onData = (chunk: Buffer): void => {
      const { frames, desync } = framer.push(chunk);
      for (const f of frames) {
        if (ended) return;
        if (streaming) armWatchdog();
        onMessage(decodeMessage(f, this.stats.decode));
      }
      syncFraming();
      if (desync) end(new SessionEnd({ code: 'desync', message: `message length field ${desync.length} rejected (${desync.reason}); closing the connection` }));
    };
    const onClose = (err?: Error): void => end(new SessionEnd({ code: 'closed', message: `connection closed${err ? `: ${err.message}` : ''}` }));
    link.on('data', onData);
    link.on('close', onClose);

    const next = <T>(what: string, match: (m: LlrpMessage) => T | undefined): Promise<T> =>
      new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiter = null;
          reject(new SessionEnd({ code: 'timeout', message: `no ${what} within ${this.opts.responseTimeoutMs} ms`, request: what }));
        }, this.opts.responseTimeoutMs);
        waiter = (m) => {
          const v = match(m);
          if (v === undefined) return false;
          clearTimeout(timer);
          waiter = null;
          resolve(v);
          return true;
        };
        void endPromise.then((e) => {
          clearTimeout(timer);
          waiter = null;
          reject(e ?? new SessionEnd({ code: 'closed', message: 'stopped' }));
        });
      });

    const request = async (name: string, type: number, frame: Buffer, id: number): Promise<LlrpMessage & { kind: 'response' }> => {
      this.safeEmit('request', name);
      link.send(frame, () => undefined); // a failed write also closes the link: the session ends through 'close'
      const rsp = await next(name, (m) => (m.kind === 'response' && m.id === id && m.type === RESPONSE_OF[type] ? m : undefined));
      if (rsp.status.code !== 0) {
        throw new SessionEnd({ code: 'status', request: name, status: rsp.status, message: `${name} refused: status ${rsp.status.code} ${rsp.status.description}` });
      }
      return rsp;
    };

    let result: SessionEnd | null = null;
    try {
      // 1. ConnectionAttemptEvent
      const cae = await next('ConnectionAttemptEvent', (m) => {
        if (m.kind !== 'reader_event') return undefined;
        const e = m.events.find((x) => x.type === 'connection_attempt');
        return e && e.type === 'connection_attempt' ? e.status : undefined;
      });
      if (cae !== ConnectionAttemptStatus.Success) {
        this.stats.refusedConnections++;
        throw new SessionEnd({ code: 'connection_refused', connectionStatus: cae, message: `reader refused the connection (ConnectionAttemptEvent status ${cae})` });
      }
      // 2-5. setup
      let id = this.nextId++;
      const caps = await request('GET_READER_CAPABILITIES', MsgType.GET_READER_CAPABILITIES, encodeGetReaderCapabilities(id), id);
      const report: RoReportConfig = { trigger: 1, n: 1, content: REPORT_CONTENT };
      id = this.nextId++;
      await request('SET_READER_CONFIG', MsgType.SET_READER_CONFIG, encodeSetReaderConfig(id, {
        resetToFactoryDefault: true,
        keepaliveMs: this.opts.keepaliveMs,
        events: [
          { type: ReaderEventType.AntennaEvent, enabled: true },
          { type: ReaderEventType.ReaderExceptionEvent, enabled: true },
          { type: ReaderEventType.ROSpecEvent, enabled: true },
          { type: ReaderEventType.ReportBufferFillWarning, enabled: true },
        ],
        report,
      }), id);
      id = this.nextId++;
      await request('DELETE_ROSPEC', MsgType.DELETE_ROSPEC, encodeRoSpecOp(MsgType.DELETE_ROSPEC, id, 0), id);
      for (const z of this.opts.zones) {
        const spec: RoSpecConfig = {
          rospecId: z.rospecId,
          antennas: z.antennas,
          start: z.trigger.type === 'periodic' ? { type: 'periodic', offsetMs: z.trigger.offsetMs ?? 0, periodMs: z.trigger.periodMs } : { type: 'null' },
          durationMs: z.trigger.type === 'periodic' ? z.trigger.durationMs : 0,
          report: { trigger: 1, n: z.reportEveryNTags ?? (z.trigger.type === 'periodic' ? 0 : 1), content: REPORT_CONTENT },
        };
        id = this.nextId++;
        await request('ADD_ROSPEC', MsgType.ADD_ROSPEC, encodeAddRoSpec(id, spec), id);
        id = this.nextId++;
        await request('ENABLE_ROSPEC', MsgType.ENABLE_ROSPEC, encodeRoSpecOp(MsgType.ENABLE_ROSPEC, id, z.rospecId), id);
        if (z.trigger.type === 'immediate') {
          id = this.nextId++;
          await request('START_ROSPEC', MsgType.START_ROSPEC, encodeRoSpecOp(MsgType.START_ROSPEC, id, z.rospecId), id);
        }
      }
      // 6. streaming
      streaming = true;
      this.stats.sessions++;
      this.online = true;
      this.backoff.reset();
      this.opts.log.info({ reader: this.name, link: link.description, zones: this.opts.zones.length, capabilities: caps.capabilities }, 'LLRP reader online');
      this.safeEmit('online', { capabilities: caps.capabilities });
      armWatchdog();
      result = await endPromise;
    } catch (err) {
      if (!(err instanceof SessionEnd)) throw err;
      result = err;
      if (!streaming && !signal.aborted && err.fault.code !== 'connection_refused') this.stats.setupFailures++;
    } finally {
      end(null);
      if (watchdog) clearTimeout(watchdog);
      link.off('data', onData);
      link.off('close', onClose);
      const dropped = framer.reset();
      if (dropped > 0) {
        this.stats.truncatedBytes += dropped;
        this.limiter.warn(`${this.name}:truncated`, { reader: this.name, bytes: dropped }, 'LLRP message cut off by the connection closing; dropped');
      }
      syncFraming();
      this.link = null;
      this.endSession = null;
      const ac = new AbortController(); // bounds a wedged close() without leaving a timer behind
      await Promise.race([link.close().catch(() => undefined), sleep(2_000, ac.signal)]);
      ac.abort();
    }
    if (signal.aborted) {
      this.setOffline('stopped');
      return;
    }
    if (result) {
      this.fault(result.fault);
      this.setOffline(result.fault.message);
    }
  }
}
