/**
 * A Mettler Toledo MT-SICS scale as a behaviour over the same definition and codec the gateway
 * uses: lines are framed by src/drivers/lines.ts, parsed and formatted by
 * src/drivers/mtsics.ts; the weight comes from a LoadCellPhysics. After the METTLER TOLEDO MT-SICS
 * Reference Manual:
 *
 *   S   stable weight: waits up to `stableTimeoutMs` for a settled reading, else `S I`; `S +` overload
 *   SI  immediate weight: `S S <v> <u>` stable, `S D <v> <u>` dynamic; `S +` overload
 *   SIR SI repeated: the same lines, the first at once, then one every `streamIntervalMs`, until the
 *       next command (any command ends it, and is then answered as usual)
 *   Z   zero: `Z A` (waits for stable like S), `Z I` not stable in time, `Z +` overload
 *   T   tare: `T S <tare> <u>`, `T I`, `T +`
 *   I4  serial number: `I4 A "<serial>"`
 *   @   reset: ends SIR, answers with the serial number like I4
 *   anything else (or arguments to these): `ES`
 *
 * Commands are answered strictly in order, one at a time, like the real instrument. A line with a
 * control byte in it is line noise (the framer drops it) and gets no answer.
 * Fault injection: `silent` (sends nothing, streamed lines included), `silentAfter` (sends N lines,
 * then nothing), `garbage` (probability, per line sent, of a burst of random bytes and CR LF after
 * it), `slowMs` (delays every command's answer).
 */
import type { MtSicsDefinition } from '../src/devices/types';
import { LineFramer } from '../src/drivers/lines';
import { formatSicsResponse, parseSicsCommand, type SicsResponse } from '../src/drivers/mtsics';
import type { SerialSettings } from '../src/transport/types';
import type { DeviceSimulator, SimIo } from './io';
import { mulberry32, randomInt, type LoadCellPhysics, type Rng } from './physics';
import { TimerSet } from './timers';

export interface MtSicsFaults {
  /** Answer nothing at all. */
  silent?: boolean;
  /** Answer this many commands, then nothing. */
  silentAfter?: number;
  /** Probability (0-1) per answer of a burst of 1-16 random bytes plus CR LF right after it. */
  garbage?: number;
  /** Extra delay before every answer, ms. */
  slowMs?: number;
}

export interface MtSicsSimulatorOptions {
  definition: MtSicsDefinition;
  physics: LoadCellPhysics;
  /** Reported by I4. Default "1234567". */
  serialNumber?: string;
  /** Unit of the weight answers. Default g. */
  unit?: 'g' | 'kg';
  /** Decimals of the weight answers. Default 2 (g) or 5 (kg). */
  decimals?: number;
  /** How long S, Z and T wait for a stable reading before answering `<id> I`, ms. Default 400. */
  stableTimeoutMs?: number;
  /** Time between two lines of the continuous output after SIR, ms. Default 100 (10 weights a second). */
  streamIntervalMs?: number;
  /** Time source; must be the one the physics uses. Default Date.now. */
  clock?: () => number;
  /** Randomness for faults. Default mulberry32(2). */
  rng?: Rng;
  faults?: MtSicsFaults;
}

export interface MtSicsStats {
  commands: number;
  /** The last command line received (trimmed), or null. */
  lastCommand: string | null;
  answered: number;
  /** Lines held back by the silent faults (answers and streamed lines). */
  suppressed: number;
  /** Lines sent by the continuous output (SIR), included in `answered`. */
  streamed: number;
  /** Bytes the line framer dropped as noise. */
  droppedBytes: number;
}

const POLL_MS = 10;

export class MtSicsSimulator implements DeviceSimulator {
  readonly kind = 'mt-sics';
  readonly serial: SerialSettings;
  readonly physics: LoadCellPhysics;
  faults: MtSicsFaults;
  private readonly def: MtSicsDefinition;
  private readonly serialNumber: string;
  private readonly unit: 'g' | 'kg';
  private readonly decimals: number;
  private readonly stableTimeoutMs: number;
  private readonly streamIntervalMs: number;
  private readonly clock: () => number;
  private readonly rng: Rng;

  private io: SimIo | null = null;
  private unsubscribe: (() => void) | null = null;
  private framer = new LineFramer();
  private queue: string[] = [];
  private busy = false;
  /** Bumped on every attach/detach so an answer in progress for an old link is abandoned. */
  private generation = 0;
  private readonly timers = new TimerSet();
  private counters = { commands: 0, lastCommand: null as string | null, answered: 0, suppressed: 0, streamed: 0 };
  /** The pending tick of the continuous output (SIR), if it runs. */
  private streamTimer: NodeJS.Timeout | null = null;

  constructor(opts: MtSicsSimulatorOptions) {
    this.def = opts.definition;
    this.serial = opts.definition.serial;
    this.physics = opts.physics;
    this.serialNumber = opts.serialNumber ?? '1234567';
    this.unit = opts.unit ?? 'g';
    this.decimals = opts.decimals ?? (this.unit === 'kg' ? 5 : 2);
    this.stableTimeoutMs = opts.stableTimeoutMs ?? 400;
    this.streamIntervalMs = opts.streamIntervalMs ?? 100;
    if (!(this.streamIntervalMs > 0)) throw new RangeError(`streamIntervalMs must be > 0, got ${this.streamIntervalMs}`);
    this.clock = opts.clock ?? Date.now;
    this.rng = opts.rng ?? mulberry32(2);
    this.faults = { ...opts.faults };
  }

  /** The definition id this scale implements. */
  get model(): string {
    return this.def.id;
  }

  get stats(): MtSicsStats {
    return { ...this.counters, droppedBytes: this.framer.dropped };
  }

  /** True while the continuous output started by SIR runs. */
  get streaming(): boolean {
    return this.streamTimer !== null;
  }

  attach(io: SimIo): () => void {
    this.detach();
    const gen = this.generation;
    this.io = io;
    this.unsubscribe = io.onData((chunk) => {
      if (gen !== this.generation) return;
      for (const line of this.framer.push(chunk)) this.queue.push(line);
      void this.pump(gen);
    });
    return () => {
      if (gen === this.generation) this.detach();
    };
  }

  detach(): void {
    this.generation++;
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.io = null;
    this.timers.clear();
    this.streamTimer = null;
    this.queue = [];
    this.busy = false;
    this.framer.reset();
  }

  /** Answers queued commands one at a time. */
  private async pump(gen: number): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      while (gen === this.generation && this.queue.length > 0) {
        const line = this.queue.shift()!;
        this.counters.commands++;
        this.counters.lastCommand = line.trim();
        this.stopStream(); // any command ends SIR's repetition
        const answer = await this.answer(line, gen);
        if (gen !== this.generation) return;
        const f = this.faults;
        if (f.slowMs && f.slowMs > 0 && !this.muted()) {
          await this.timers.delay(f.slowMs);
          if (gen !== this.generation) return;
        }
        this.send(answer);
        if (line.trim() === 'SIR') this.streamTimer = this.timers.after(this.streamIntervalMs, () => this.streamTick(gen));
      }
    } finally {
      if (gen === this.generation) this.busy = false;
    }
  }

  /** One line of the continuous output, then the next tick. */
  private streamTick(gen: number): void {
    this.streamTimer = null;
    if (gen !== this.generation) return;
    this.counters.streamed++;
    this.send(this.immediateWeight());
    this.streamTimer = this.timers.after(this.streamIntervalMs, () => this.streamTick(gen));
  }

  private stopStream(): void {
    if (this.streamTimer) this.timers.cancel(this.streamTimer);
    this.streamTimer = null;
  }

  /** True while the silent faults hold every line back. */
  private muted(): boolean {
    const f = this.faults;
    return f.silent === true || (f.silentAfter !== undefined && this.counters.answered >= f.silentAfter);
  }

  /** Sends one line (an answer or a streamed weight), subject to the silent and garbage faults. */
  private send(r: SicsResponse): void {
    if (this.muted()) {
      this.counters.suppressed++;
      return;
    }
    this.counters.answered++;
    this.io?.write(Buffer.from(`${formatSicsResponse(r)}\r\n`, 'latin1'));
    const g = this.faults.garbage;
    if (g && this.rng() < g) {
      const junk = Buffer.alloc(randomInt(this.rng, 1, 16));
      for (let i = 0; i < junk.length; i++) junk[i] = randomInt(this.rng, 0, 255);
      this.io?.write(Buffer.concat([junk, Buffer.from('\r\n')]));
    }
  }

  /** The SI answer: `S S|D <v> <u>`, or `S +` on overload. */
  private immediateWeight(): SicsResponse {
    if (this.overloaded()) return { kind: 'status', cmd: 'S', status: '+' };
    const r = this.physics.read(this.clock());
    return this.weightOf('SI', r.grams, r.stable);
  }

  /** One handler per command. */
  private async answer(line: string, gen: number): Promise<SicsResponse> {
    // @ (reset) is the one command whose id is not a letter: ends SIR (done by the pump), answers like I4.
    if (line.trim() === '@') return { kind: 'info', cmd: 'I4', value: this.serialNumber };
    let cmd: string;
    let args: string[];
    try {
      ({ cmd, args } = parseSicsCommand(line));
    } catch {
      return { kind: 'error', code: 'ES' };
    }
    if (args.length > 0 && cmd !== 'I4') return { kind: 'error', code: 'ES' };
    switch (cmd) {
      case 'S': {
        if (this.overloaded()) return { kind: 'status', cmd: 'S', status: '+' };
        if (!(await this.waitStable(gen))) return { kind: 'status', cmd: 'S', status: 'I' };
        return this.weight('S', true);
      }
      case 'SI':
      case 'SIR': // the first line at once; the pump starts the repetition
        return this.immediateWeight();
      case 'Z': {
        if (this.overloaded()) return { kind: 'status', cmd: 'Z', status: '+' };
        if (!(await this.waitStable(gen))) return { kind: 'status', cmd: 'Z', status: 'I' };
        this.physics.tare(this.clock());
        return { kind: 'status', cmd: 'Z', status: 'A' };
      }
      case 'T': {
        if (this.overloaded()) return { kind: 'status', cmd: 'T', status: '+' };
        if (!(await this.waitStable(gen))) return { kind: 'status', cmd: 'T', status: 'I' };
        const tare = this.physics.tare(this.clock());
        return this.weightOf('T', tare, true);
      }
      case 'I4':
        if (args.length > 0) return { kind: 'error', code: 'ES' };
        return { kind: 'info', cmd: 'I4', value: this.serialNumber };
      default:
        return { kind: 'error', code: 'ES' };
    }
  }

  private overloaded(): boolean {
    return this.physics.read(this.clock()).overload;
  }

  private weight(cmd: 'S' | 'SI', stable: boolean): SicsResponse {
    return this.weightOf(cmd, this.physics.read(this.clock()).grams, stable);
  }

  private weightOf(cmd: 'S' | 'SI' | 'T', grams: number, stable: boolean): SicsResponse {
    const inUnit = this.unit === 'kg' ? grams / 1000 : grams;
    let value = Number(inUnit.toFixed(this.decimals));
    if (Object.is(value, -0)) value = 0;
    return { kind: 'weight', cmd, stable, value, unit: this.unit, decimals: this.decimals };
  }

  /** True once the physics is stable, false after stableTimeoutMs. */
  private async waitStable(gen: number): Promise<boolean> {
    const start = Date.now();
    for (;;) {
      if (this.physics.isStable(this.clock())) return true;
      if (Date.now() - start >= this.stableTimeoutMs) return false;
      await this.timers.delay(POLL_MS);
      if (gen !== this.generation) return false;
    }
  }

}
