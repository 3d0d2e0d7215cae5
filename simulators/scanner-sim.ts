/**
 * A serial barcode scanner (RS-232 or USB-CDC): sends one read per scan, as
 * `[AIM identifier] code terminator`, like a real scanner set to that suffix (docs/scanners.md).
 * It ignores what it receives (real scanners take configuration commands; the gateway sends none).
 *
 * Codes come from a list (cycled) or are random: a valid EAN-13 (random digits with the right GS1
 * check digit), or from the list picked at random; with probability 1 - validRatio the check digit
 * is made wrong (a misread the gateway must count and not look up). A list entry may carry GS as
 * `{GS}` or `\x1d` (GS1 element strings in FNC1 form) or use the bracket form `(01)...`.
 *
 * Fault injection: `garbage` (probability per scan of a line of random bytes, control bytes
 * included, in place of the code), injectGarbage() (given bytes now).
 *
 * ScanTicker scans every `intervalMs`; serveDemoScanner() is the one-call helper for the demo: a
 * TCP-served scanner that scans now and then.
 */
import type { ScanTerminator } from '../src/drivers/barcode';
import type { SerialSettings } from '../src/transport/types';
import type { DeviceSimulator, SimIo } from './io';
import { mulberry32, randomInt, type Rng } from './physics';
import { serveTcp, type TcpServing } from './serve';
import { TimerSet } from './timers';

const TERMINATORS: Record<ScanTerminator, Buffer> = {
  cr: Buffer.from([0x0d]),
  crlf: Buffer.from([0x0d, 0x0a]),
  lf: Buffer.from([0x0a]),
  etx: Buffer.from([0x03]),
};

/** GS1 check digit of `data` (the digits before the check digit). */
export function checkDigit(data: string): number {
  let sum = 0;
  for (let i = data.length - 1, w = 3; i >= 0; i--, w = 4 - w) sum += (data.charCodeAt(i) - 48) * w;
  return (10 - (sum % 10)) % 10;
}

/** `{GS}` and `\x1d` in a list entry -> the GS byte. */
export function unescapeCode(s: string): string {
  return s.replace(/\{GS\}|\\x1d/gi, '\x1d');
}

/** The AIM identifier a scanner would put in front of `code` (ISO/IEC 15424). */
export function aimFor(code: string): string {
  if (/^\d{8}$/.test(code)) return ']E4';
  if (/^\d{12,13}$/.test(code)) return ']E0';
  if (/^\d{15}$|^\d{18}$/.test(code)) return ']E3';
  if (code.startsWith('(') || code.includes('\x1d') || /^01\d{14}/.test(code)) return ']C1';
  if (/^\d{14}$/.test(code)) return ']I1'; // ITF-14 with check digit
  return ']C0';
}

/** The same code with its (last) check digit made wrong. */
export function corrupt(code: string): string {
  const m = /^(.*?)(\d)$/.exec(code);
  if (!m) return `${code}0`;
  return `${m[1]}${(Number(m[2]) + 1) % 10}`;
}

export function randomEan13(rng: Rng): string {
  let d = String(randomInt(rng, 1, 9));
  for (let i = 0; i < 11; i++) d += String(randomInt(rng, 0, 9));
  return d + String(checkDigit(d));
}

export interface ScannerSimOptions {
  terminator?: ScanTerminator;
  /** Send AIM symbology identifiers. Default false. */
  aim?: boolean;
  /** Codes to scan: cycled in order, or picked at random with `random`. */
  codes?: readonly string[];
  /** Pick codes at random (from `codes`, or random EAN-13s when there are none). */
  random?: boolean;
  /** Share of random scans that are valid, 0-1. Default 0.8. */
  validRatio?: number;
  serial?: SerialSettings;
  rng?: Rng;
  faults?: { garbage?: number };
}

export interface ScannerSimStats {
  scans: number;
  /** Scans sent with a wrong check digit on purpose. */
  invalid: number;
  garbage: number;
  /** Scans made while no gateway was attached (lost, as on a real line). */
  unattached: number;
  /** Bytes received from the gateway (ignored). */
  ignoredBytes: number;
}

export class ScannerSimulator implements DeviceSimulator {
  readonly kind = 'scanner';
  readonly serial: SerialSettings;
  readonly stats: ScannerSimStats = { scans: 0, invalid: 0, garbage: 0, unattached: 0, ignoredBytes: 0 };
  readonly faults: { garbage: number };
  private io: SimIo | null = null;
  private unsubscribe: (() => void) | null = null;
  private readonly rng: Rng;
  private readonly codes: string[];
  private nextIndex = 0;

  constructor(private readonly o: ScannerSimOptions = {}) {
    this.serial = o.serial ?? { baudRate: 9600, dataBits: 8, parity: 'none', stopBits: 1 };
    this.rng = o.rng ?? mulberry32(1);
    this.codes = (o.codes ?? []).map(unescapeCode);
    this.faults = { garbage: o.faults?.garbage ?? 0 };
    const ratio = o.validRatio ?? 0.8;
    if (!(ratio >= 0 && ratio <= 1)) throw new RangeError(`validRatio must be 0-1, got ${ratio}`);
    if (!o.random && this.codes.length === 0) throw new RangeError('give codes to scan, or random');
  }

  attach(io: SimIo): () => void {
    this.detach();
    this.io = io;
    const off = io.onData((chunk) => (this.stats.ignoredBytes += chunk.length));
    this.unsubscribe = off;
    return () => {
      if (this.io === io) this.detach();
    };
  }

  detach(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.io = null;
  }

  /** How many codes the list holds. */
  get codeCount(): number {
    return this.codes.length;
  }

  /** Sends one read of `code` now (with the AIM identifier and terminator configured). */
  scan(code: string): void {
    this.stats.scans++;
    const aim = this.o.aim ? aimFor(code) : '';
    this.write(Buffer.concat([Buffer.from(aim + code, 'latin1'), TERMINATORS[this.o.terminator ?? 'cr']]));
  }

  /** Sends `bytes` as they are. */
  injectGarbage(bytes: Buffer): void {
    this.write(bytes);
  }

  /**
   * The next scan by the options (list order or random, valid or not, garbage by the fault);
   * returns what was sent, for the CLI's log line.
   */
  scanNext(): { code: string; valid: boolean; garbage: boolean } {
    if (this.faults.garbage > 0 && this.rng() < this.faults.garbage) {
      const n = randomInt(this.rng, 4, 24);
      const bytes = Buffer.alloc(n);
      for (let i = 0; i < n; i++) bytes[i] = randomInt(this.rng, 0, 31) === 0 ? 0x00 : randomInt(this.rng, 0x00, 0xff);
      bytes[0] = 0x01; // at least one control byte: never a valid code by chance
      for (let i = 0; i < n; i++) if (bytes[i] === 0x0d || bytes[i] === 0x0a || bytes[i] === 0x03) bytes[i] = 0x07;
      this.stats.garbage++;
      this.write(Buffer.concat([bytes, TERMINATORS[this.o.terminator ?? 'cr']]));
      return { code: bytes.toString('hex'), valid: false, garbage: true };
    }
    let code: string;
    let valid = true;
    if (this.o.random) {
      code = this.codes.length > 0 ? this.codes[randomInt(this.rng, 0, this.codes.length - 1)]! : randomEan13(this.rng);
      if (this.rng() >= (this.o.validRatio ?? 0.8)) {
        code = corrupt(code);
        valid = false;
        this.stats.invalid++;
      }
    } else {
      code = this.codes[this.nextIndex]!;
      this.nextIndex = (this.nextIndex + 1) % this.codes.length;
    }
    this.scan(code);
    return { code, valid, garbage: false };
  }

  private write(b: Buffer): void {
    if (!this.io) {
      this.stats.unattached++;
      return;
    }
    this.io.write(b);
  }
}

/** Scans every `intervalMs` until stopped (or `count` scans). */
export class ScanTicker {
  private readonly timers = new TimerSet();
  private done = 0;

  constructor(
    private readonly sim: ScannerSimulator,
    private readonly intervalMs: number,
    private readonly onScan: (s: { code: string; valid: boolean; garbage: boolean }) => void = () => undefined,
    private readonly count: number = Infinity,
  ) {
    if (!(intervalMs > 0)) throw new RangeError(`intervalMs must be > 0, got ${intervalMs}`);
  }

  start(): void {
    this.timers.clear();
    this.timers.after(this.intervalMs, this.tick);
  }

  stop(): void {
    this.timers.clear();
  }

  private readonly tick = (): void => {
    this.onScan(this.sim.scanNext());
    if (++this.done < this.count) this.timers.after(this.intervalMs, this.tick);
  };
}

export interface DemoScanner {
  /** `tcp://127.0.0.1:<port>`: the scanner's `port` in the gateway config. */
  url: string;
  sim: ScannerSimulator;
  close(): Promise<void>;
}

/**
 * For the demo: a serial scanner served over TCP (a ser2net-like serial server on 127.0.0.1, port
 * picked by the OS) that scans one of `codes` every `intervalMs` (in order; with `validRatio` < 1,
 * picked at random and now and then with a wrong check digit). Configure it as
 * `scanners: [{ id, kind: serial, port: <url>, kiosk: <kiosk id> }]`.
 */
export async function serveDemoScanner(o: { codes: readonly string[]; intervalMs?: number; validRatio?: number; seed?: number; host?: string }): Promise<DemoScanner> {
  const random = o.validRatio !== undefined && o.validRatio < 1;
  const sim = new ScannerSimulator({ codes: o.codes, random, validRatio: o.validRatio ?? 1, rng: mulberry32(o.seed ?? 1) });
  const serving: TcpServing = await serveTcp(sim, o.host ?? '127.0.0.1', 0);
  const ticker = new ScanTicker(sim, o.intervalMs ?? 7000);
  ticker.start();
  return {
    url: serving.url,
    sim,
    async close() {
      ticker.stop();
      await serving.close();
    },
  };
}
