/**
 * One barcode scanner as a Source: a link (serial, TCP serial server, mock, or an input event
 * device) -> a line decoder (ScanFramer for serial scanners, KeyboardWedgeDecoder for HID ones)
 * -> AIM prefix -> decodeScan -> a `ScanRead` reading, or a misread counted by reason.
 *
 * Design choices:
 * - Not a StreamingSource: that one calls a device offline after a silence, and a scanner is
 *   silent until someone scans. A scanner is online while its link is open (the serial device or
 *   input device is there, the TCP serial server answers) and offline when the link drops (an
 *   unplugged USB scanner ends its link at once: ENODEV / EIO); the ReconnectingLink reopens it.
 *   A serial scanner powered off behind a link that stays up (an RS-232 cable) cannot be told from
 *   an idle one: no scanner protocol has a keep-alive.
 * - Misreads never become readings: they are counted by reason in `misreads` (a fixed set of keys,
 *   not keyed by outside input), their bytes in stats.noiseBytes, and logged rate-limited with the
 *   reason. stats.invalidFrames is the total of misreads.
 * - An AIM identifier is recognised whether or not `aimPrefix` is set; `aimPrefix` makes it
 *   required (a read without one is then a misread, `aim_missing`).
 * - A code that is fine but carries no GTIN is counted in `notGtin` and dropped, unless the
 *   scanner is configured `non_gtin: emit`.
 */
import { EventEmitter } from 'node:events';
import { decodeScan, splitAim, type MisreadReason } from '../../drivers/barcode';
import type { DeviceAvailability, Source, SourceReading, SourceStats } from '../../core/sources/types';
import { LogLimiter, type Logger } from '../../log';

/** A valid read of one scanner. */
export interface ScanRead extends SourceReading {
  /** The scanner id (same as `sensor`). */
  scanner: string;
  /** What the scanner sent, without terminator and AIM prefix. */
  raw: string;
  /** The AIM symbology identifier (`]E0`...), or null. */
  symbology: string | null;
  gtin: string | null;
  batch?: string;
  expiry?: string;
  serial?: string;
}

/** Every reason a read can be refused (framing, keyboard, AIM, code). */
export type ScannerMisreadReason = MisreadReason | 'unmapped' | 'dropped';

export const MISREAD_REASONS: readonly ScannerMisreadReason[] = [
  'control',
  'overlong',
  'unmapped',
  'dropped',
  'aim_missing',
  'bad_check',
  'bad_length',
  'bad_chars',
  'gs1_syntax',
  'gs1_truncated',
  'gs1_bad_value',
  'gs1_conflict',
];

/** A line decoder: ScanFramer (bytes) or KeyboardWedgeDecoder (input events), adapted. */
export interface ScanLineDecoder {
  push(chunk: Buffer): Array<{ ok: true; line: string } | { ok: false; reason: ScannerMisreadReason; bytes?: number; detail?: string }>;
  reset(): void;
}

/** What the source needs of a ReconnectingLink. */
export interface ScannerLink {
  readonly online: boolean;
  on(event: 'data', l: (chunk: Buffer) => void): unknown;
  on(event: 'online', l: () => void): unknown;
  on(event: 'offline', l: (reason: string) => void): unknown;
  off(event: 'data', l: (chunk: Buffer) => void): unknown;
  off(event: 'online', l: () => void): unknown;
  off(event: 'offline', l: (reason: string) => void): unknown;
}

export interface ScannerSourceOptions {
  scanner: string;
  link: ScannerLink;
  decoder: ScanLineDecoder;
  /** The scanner sends AIM symbology identifiers: a read without one is a misread. */
  aimPrefix: boolean;
  /** Emit codes without a GTIN (gtin null) instead of counting and dropping them. */
  emitNonGtin: boolean;
  log: Logger;
}

export interface ScannerCounters {
  /** Misreads by reason. */
  misreads: Record<ScannerMisreadReason, number>;
  /** Fine codes without a GTIN, dropped (non_gtin: ignore). */
  notGtin: number;
  /** ms epoch of the last valid read, or null. */
  lastReadAt: number | null;
}

export class ScannerSource extends EventEmitter implements Source<ScanRead> {
  readonly name: string;
  readonly devices: readonly string[];
  readonly stats: SourceStats = { polls: 0, readings: 0, timeouts: 0, crcErrors: 0, deviceErrors: 0, invalidFrames: 0, noiseBytes: 0, lateAnswers: 0 };
  readonly counters: ScannerCounters = {
    misreads: Object.fromEntries(MISREAD_REASONS.map((r) => [r, 0])) as Record<ScannerMisreadReason, number>,
    notGtin: 0,
    lastReadAt: null,
  };
  private readonly limiter: LogLimiter;
  private running = false;
  private online: boolean | null = null;

  private readonly onData = (chunk: Buffer): void => {
    if (!this.running) return;
    const ts = Date.now();
    const rxMono = performance.now();
    let lines;
    try {
      lines = this.o.decoder.push(chunk);
    } catch (e) {
      this.o.decoder.reset();
      this.misread('control', chunk.length, `decoder failed: ${(e as Error).message}`);
      return;
    }
    for (const l of lines) {
      if (!l.ok) {
        this.misread(l.reason, l.bytes ?? 0, l.detail ?? l.reason);
        continue;
      }
      this.line(l.line, ts, rxMono);
    }
  };
  private readonly onOnline = (): void => {
    if (!this.running) return;
    this.o.decoder.reset();
    this.report(true);
  };
  private readonly onOffline = (reason: string): void => {
    if (!this.running) return;
    this.o.decoder.reset();
    this.report(false, reason);
  };

  constructor(private readonly o: ScannerSourceOptions) {
    super();
    this.name = `scanner:${o.scanner}`;
    this.devices = [o.scanner];
    this.limiter = new LogLimiter(o.log);
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    this.o.link.on('data', this.onData);
    this.o.link.on('online', this.onOnline);
    this.o.link.on('offline', this.onOffline);
    if (this.o.link.online) this.onOnline();
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.o.link.off('data', this.onData);
    this.o.link.off('online', this.onOnline);
    this.o.link.off('offline', this.onOffline);
    this.o.decoder.reset();
  }

  isOnline(device: string): boolean {
    return device === this.o.scanner && this.online === true;
  }

  /** Total misreads. */
  get misreadCount(): number {
    return this.stats.invalidFrames;
  }

  private line(line: string, ts: number, rxMono: number): void {
    const { symbology, data } = splitAim(line);
    if (this.o.aimPrefix && symbology === null) return this.misread('aim_missing', line.length, 'no AIM symbology identifier, and the scanner is configured to send one');
    const r = decodeScan(data, symbology);
    if (!r.ok) return this.misread(r.reason, line.length, r.detail);
    if (r.gtin === null && !this.o.emitNonGtin) {
      this.counters.notGtin++;
      return;
    }
    this.stats.readings++;
    this.counters.lastReadAt = ts;
    const read: ScanRead = {
      sensor: this.o.scanner,
      scanner: this.o.scanner,
      ts,
      rxMono,
      raw: data,
      symbology,
      gtin: r.gtin,
      ...(r.batch !== undefined ? { batch: r.batch } : {}),
      ...(r.expiry !== undefined ? { expiry: r.expiry } : {}),
      ...(r.serial !== undefined ? { serial: r.serial } : {}),
    };
    this.safeEmit('reading', read);
  }

  private misread(reason: ScannerMisreadReason, bytes: number, detail: string): void {
    this.stats.invalidFrames++;
    this.stats.noiseBytes += bytes;
    this.counters.misreads[reason]++;
    this.limiter.warn(`${this.name}:${reason}`, { scanner: this.o.scanner, reason, detail }, 'scanner misread: counted, not looked up');
  }

  private report(online: boolean, reason?: string): void {
    if (this.online === online) return;
    this.online = online;
    const a: DeviceAvailability = { sensor: this.o.scanner, online, ts: Date.now(), ...(reason !== undefined ? { reason: `link down: ${reason}` } : {}) };
    this.safeEmit('availability', a);
  }

  private safeEmit(event: 'reading' | 'availability', arg: unknown): void {
    try {
      this.emit(event, arg);
    } catch (err) {
      this.limiter.error(`${this.name}:${event}-listener`, { err: (err as Error)?.message, event }, 'source listener threw');
    }
  }
}
