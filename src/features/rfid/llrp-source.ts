/**
 * One LLRP 1.0.1 fixed reader as a `Source` (src/core/sources/types.ts): the same `reading` and
 * `availability` events the M100 serial source gives, so the RFID feature consumes both alike. The
 * session itself (connect, setup, keepalives, reconnect) is LlrpReader (llrp-reader.ts); this is a
 * thin adapter around one of them.
 *
 * Design choices:
 * - Readings are `LlrpRead`: the M100 `TagRead` fields plus what LLRP adds (first/last seen, seen
 *   count, ROSpec id). It extends TagRead, so code written for `Source<TagRead>` takes an
 *   LlrpSource unchanged, and TagRead itself is not touched.
 * - The EPC is upper-case hex, as the M100 source gives it (LlrpReader gives lower case): one
 *   tag has one key whatever reader saw it.
 * - Availability follows the session: `online` when the setup finished, `offline` with the
 *   session's reason when it ended. A reader that never came online is reported offline at its
 *   first fault (like a polled device that never answered), with that fault's message.
 * - Stats are computed from the session's counters when read (no second set of counters to keep
 *   in step): readings = reads; invalidFrames = messages dropped by the codec or the framer;
 *   noiseBytes = bytes of messages cut off by a disconnect; timeouts = response and keepalive
 *   timeouts; deviceErrors = faults the reader itself reported (refused connection, non-success
 *   LLRPStatus, ERROR_MESSAGE); lateAnswers = messages that came when nothing expected them.
 * - `address` is `host:port` or `tcp://host:port` (port 5084 when left out: the LLRP port); an
 *   injected `opener` replaces it (tests).
 */
import { EventEmitter } from 'node:events';
import type { DeviceAvailability, Source, SourceStats } from '../../core/sources/types';
import { ErrorCode, ShelfgateError } from '../../errors';
import { LogLimiter, type Logger } from '../../log';
import { openerFor } from '../../transport/opener';
import { tlsOpener, type TlsOpenerOptions } from '../../transport/tls';
import { llrpEndpoint } from './config';
import type { Opener } from '../../transport/types';
import { LlrpReader, type LlrpFault, type LlrpFaultCode, type LlrpReaderOptions, type LlrpReaderStats, type LlrpTagRead, type LlrpZoneConfig } from './llrp-reader';
import type { TagRead } from './m100-source';

/** A tag read from an LLRP reader: TagRead plus the reader's own aggregation. */
export interface LlrpRead extends TagRead {
  /** Unix ms of the first and last sighting the reader aggregated into this report. */
  firstSeen: number;
  lastSeen: number;
  /** Sightings the reader aggregated (1 when it did not say). */
  seenCount: number;
  rospecId?: number;
}

export interface LlrpSourceOptions {
  /** Source name (logs). */
  name: string;
  /** Reader id: the device key of its reads and availability; topic-safe. Default `name`. */
  reader?: string;
  /** `host:port`, `host` or `tcp://host:port`. Required unless `opener` is given. */
  address?: string;
  /** LLRP over TLS to `address` (src/transport/tls.ts). */
  tls?: TlsOpenerOptions;
  /** Replaces `address` (tests, or another transport). */
  opener?: Opener;
  zones: LlrpZoneConfig[];
  log: Logger;
  keepaliveMs?: number;
  missedKeepalives?: number;
  responseTimeoutMs?: number;
  backoff?: { initialMs: number; maxMs: number };
  maxMessageBytes?: number;
}

const NO_SERIAL = { baudRate: 115200, dataBits: 8, parity: 'none', stopBits: 1 } as const;

/**
 * `host`, `host:port`, `[v6]:port` or `tcp://...` -> an Opener (over TLS when `tls` is given, port
 * 5085 by default then); SG_TRANSPORT_PATH_INVALID when it is none of those.
 */
export function llrpOpener(address: string, tls?: TlsOpenerOptions): Opener {
  const a = address.trim();
  // tcp:// is the explicit form: it names its port
  if (a === '' || /\s/.test(a) || (a.startsWith('tcp://') && !/:\d+$/.test(a.slice(6)))) throw new ShelfgateError(ErrorCode.TRANSPORT_PATH_INVALID, `invalid LLRP reader address ${JSON.stringify(address)}: expected host, host:port or tcp://host:port`, { path: address });
  const endpoint = llrpEndpoint(address, tls !== undefined);
  if (!tls) return openerFor(endpoint, { ...NO_SERIAL });
  const m = /^tcp:\/\/(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(endpoint);
  if (!m) throw new ShelfgateError(ErrorCode.TRANSPORT_PATH_INVALID, `invalid LLRP reader address ${JSON.stringify(address)}: expected host, host:port or tcp://host:port`, { path: address });
  return tlsOpener(m[1] ?? m[2]!, Number(m[3]), tls);
}

export class LlrpSource extends EventEmitter implements Source<LlrpRead> {
  readonly name: string;
  readonly reader: string;
  readonly devices: readonly string[];
  /** The session: its 'fault' and 'reader_event' events, its counters. */
  readonly session: LlrpReader;
  private readonly faultCounts: Record<LlrpFaultCode, number> = {
    connection_refused: 0, status: 0, error_message: 0, timeout: 0, desync: 0, invalid_message: 0, open_failed: 0, closed: 0,
  };
  private readonly limiter: LogLimiter;
  private state: boolean | null = null;
  private running = false;

  private readonly onRead = (r: LlrpTagRead): void => {
    const read: LlrpRead = {
      sensor: this.reader,
      reader: this.reader,
      ts: r.ts,
      rxMono: performance.now(),
      antenna: r.antenna,
      epcHex: r.epcHex.toUpperCase(),
      rssi: r.rssi,
      firstSeen: r.firstSeen,
      lastSeen: r.lastSeen,
      seenCount: r.seenCount,
    };
    if (r.rospecId !== undefined) read.rospecId = r.rospecId;
    this.safeEmit('reading', read);
  };
  private readonly onOnline = (): void => this.report(true);
  private readonly onOffline = (reason: string): void => this.report(false, reason);
  private readonly onFault = (f: LlrpFault): void => {
    this.faultCounts[f.code]++;
    if (this.state === null) this.report(false, f.message);
  };

  constructor(o: LlrpSourceOptions) {
    super();
    if (!o.opener && !o.address) throw new ShelfgateError(ErrorCode.CONFIG_INVALID, `${o.name}: an LLRP reader needs an address (host:port)`);
    this.name = o.name;
    this.reader = o.reader ?? o.name;
    this.devices = [this.reader];
    this.limiter = new LogLimiter(o.log);
    const opts: LlrpReaderOptions = { name: this.reader, opener: o.opener ?? llrpOpener(o.address!, o.tls), zones: o.zones, log: o.log };
    if (o.keepaliveMs !== undefined) opts.keepaliveMs = o.keepaliveMs;
    if (o.missedKeepalives !== undefined) opts.missedKeepalives = o.missedKeepalives;
    if (o.responseTimeoutMs !== undefined) opts.responseTimeoutMs = o.responseTimeoutMs;
    if (o.backoff !== undefined) opts.backoff = o.backoff;
    if (o.maxMessageBytes !== undefined) opts.maxMessageBytes = o.maxMessageBytes;
    this.session = new LlrpReader(opts);
  }

  get stats(): SourceStats {
    const s: LlrpReaderStats = this.session.stats;
    const d = s.decode;
    const f = this.faultCounts;
    return {
      polls: 0,
      readings: s.reads,
      timeouts: f.timeout,
      crcErrors: 0,
      deviceErrors: f.connection_refused + f.status + f.error_message,
      invalidFrames: d.malformed + d.unsupportedVersion + d.unknownMessages + d.tagsWithoutEpc + s.framing.rejects.length_too_small + s.framing.rejects.length_too_large,
      noiseBytes: s.truncatedBytes,
      lateAnswers: s.unexpectedMessages,
    };
  }

  /** Faults so far by code (the session's 'fault' events). */
  get faults(): Readonly<Record<LlrpFaultCode, number>> {
    return { ...this.faultCounts };
  }

  isOnline(sensor: string): boolean {
    return sensor === this.reader && this.state === true;
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    this.session.on('read', this.onRead);
    this.session.on('online', this.onOnline);
    this.session.on('offline', this.onOffline);
    this.session.on('fault', this.onFault);
    await this.session.start();
  }

  /** Stops the session (CLOSE_CONNECTION, bounded) and removes this source's listeners from it. Never throws. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    try {
      await this.session.stop();
    } finally {
      this.session.off('read', this.onRead);
      this.session.off('online', this.onOnline);
      this.session.off('offline', this.onOffline);
      this.session.off('fault', this.onFault);
      this.state = null;
    }
  }

  private report(online: boolean, reason?: string): void {
    if (this.state === online) return;
    this.state = online;
    const a: DeviceAvailability = { sensor: this.reader, online, ts: Date.now() };
    if (reason !== undefined) a.reason = reason;
    this.safeEmit('availability', a);
  }

  private safeEmit(event: string, arg: unknown): void {
    try {
      this.emit(event, arg);
    } catch (err) {
      // a consumer's throw must not end the session's data handler
      this.limiter.error(`${this.name}:listener:${event}`, { err, reader: this.reader, event }, 'LLRP source listener threw');
    }
  }
}
