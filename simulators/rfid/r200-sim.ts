/**
 * A MagicRF M100 / QM100 serial UHF module (R200, JRD-4035, YRM100) over the codec the gateway
 * uses (src/drivers/m100.ts), after the MagicRF M100 user manual:
 *
 *   0x03 GET_INFO          00 hardware "M100 26dBm V1.0", 01 software, 02 manufacturer
 *   0xB6 SET_TX_POWER      stores the power, answers status 00
 *   0xB7 GET_TX_POWER      the power in 0.01 dBm
 *   0x22 SINGLE_INVENTORY  one round: a notification per tag that answers, or error 0x15 (no tag)
 *   0x27 MULTI_POLL        `count` rounds, one every `roundMs`; notifications only, no response;
 *                          a round with no tag sends nothing; ends by itself after `count` rounds
 *   0x28 STOP_MULTI_POLL   ends multi-poll, answers status 00
 *   anything else          ignored (counted)
 *
 * Commands are answered also during multi-poll. The tags come from a TagPopulation: the module's
 * antenna observes one zone. Output is paced at what the UART carries (`baud` / 10 bytes a
 * second, a token bucket): reads beyond it in a round are lost, as on a real module whose link is
 * full (about 480 notifications a second at 115200 baud). Replay mode sends the bytes of a capture
 * (hex lines) during multi-poll instead of the population, paced the same way, looping.
 *
 * Fault injection: `silent` (sends nothing at all), `garbage` (probability per round of a burst of
 * random bytes), injectNoise() (a given burst now), `corruptCrc` (probability per notification of a
 * wrong tag CRC).
 */
import { M100_SERIAL } from '../../src/features/rfid/m100-source';
import {
  encodeM100Frame,
  encodeTagNotification,
  encodeErrorResponse,
  m100Checksum,
  M100_FRAMING_BB7E,
  M100Cmd,
  M100Decoder,
  M100Error,
  M100Info,
  M100Type,
  type M100Frame,
  type M100Framing,
} from '../../src/drivers/m100';
import type { SerialSettings } from '../../src/transport/types';
import type { DeviceSimulator, SimIo } from '../io';
import { mulberry32, randomInt, type Rng } from '../physics';
import { TimerSet } from '../timers';
import { uartBytesPerSecond, type TagPopulation } from './population';

export interface R200Faults {
  silent?: boolean;
  /** Probability per multi-poll round of a burst of 1-32 random bytes. */
  garbage?: number;
  /** Probability per notification of a wrong tag CRC. */
  corruptCrc?: number;
}

export interface R200SimulatorOptions {
  population: TagPopulation;
  /** Zone the antenna observes. Default 0. */
  zone?: number;
  framing?: M100Framing;
  /** Line settings; default 115200 8N1. The baud rate also paces the output. */
  serial?: SerialSettings;
  /** Time between two multi-poll rounds, ms. Default 20. */
  roundMs?: number;
  /** Command byte of multi-poll notifications: 0x22 (most modules) or 0x27. Default 0x22. */
  notifyCmd?: number;
  /** Hardware version string. Default "M100 26dBm V1.0". */
  hardwareVersion?: string;
  /** Frames to replay during multi-poll instead of the population (raw bytes, in order, looped). */
  replay?: Buffer[];
  rng?: Rng;
  faults?: R200Faults;
}

export interface R200Stats {
  commands: number;
  ignored: number;
  rounds: number;
  notifications: number;
  /** Reads that did not fit the link in their round. */
  overLinkRate: number;
  /** Frames held back by the silent fault. */
  suppressed: number;
  garbageBursts: number;
}

/** Parses a capture file: one frame (or any bytes) per line as hex, spaces allowed, `#` comments. */
export function parseHexLines(text: string): Buffer[] {
  const out: Buffer[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').replace(/\s+/g, '');
    if (!line) return;
    if (!/^([0-9a-fA-F]{2})+$/.test(line)) throw new RangeError(`capture line ${i + 1} is not hex bytes: ${JSON.stringify(raw)}`);
    out.push(Buffer.from(line, 'hex'));
  });
  return out;
}

export class R200Simulator implements DeviceSimulator {
  readonly kind = 'r200';
  readonly serial: SerialSettings;
  readonly population: TagPopulation;
  faults: R200Faults;
  zone: number;
  txPowerCentiDbm = 2600;
  private readonly framing: M100Framing;
  private readonly roundMs: number;
  private readonly notifyCmd: number;
  private readonly hw: string;
  private readonly replay: Buffer[] | null;
  private replayAt = 0;
  private readonly rng: Rng;
  private readonly bytesPerMs: number;
  private io: SimIo | null = null;
  private unsubscribe: (() => void) | null = null;
  private decoder: M100Decoder;
  private generation = 0;
  private readonly timers = new TimerSet();
  private pollTimer: NodeJS.Timeout | null = null;
  private pollLeft = 0;
  /** Token bucket of link bytes. */
  private budget = 0;
  private budgetAt = 0;
  private counters: R200Stats = { commands: 0, ignored: 0, rounds: 0, notifications: 0, overLinkRate: 0, suppressed: 0, garbageBursts: 0 };

  constructor(o: R200SimulatorOptions) {
    this.population = o.population;
    this.zone = o.zone ?? 0;
    this.framing = o.framing ?? M100_FRAMING_BB7E;
    this.serial = o.serial ?? { ...M100_SERIAL };
    this.roundMs = o.roundMs ?? 20;
    if (!(this.roundMs > 0)) throw new RangeError(`roundMs must be > 0, got ${this.roundMs}`);
    this.notifyCmd = o.notifyCmd ?? M100Cmd.SINGLE_INVENTORY;
    this.hw = o.hardwareVersion ?? 'M100 26dBm V1.0';
    this.replay = o.replay && o.replay.length > 0 ? o.replay : null;
    this.rng = o.rng ?? mulberry32(3);
    this.faults = { ...o.faults };
    this.bytesPerMs = uartBytesPerSecond(this.serial.baudRate) / 1000;
    this.decoder = new M100Decoder({ framing: this.framing });
  }

  get stats(): R200Stats {
    return { ...this.counters };
  }

  /** True while multi-poll runs. */
  get polling(): boolean {
    return this.pollTimer !== null;
  }

  attach(io: SimIo): () => void {
    this.detach();
    const gen = this.generation;
    this.io = io;
    this.unsubscribe = io.onData((chunk) => {
      if (gen !== this.generation) return;
      for (const m of this.decoder.push(chunk)) if (m.kind === 'command') this.answer(m.frame);
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
    this.pollTimer = null;
    this.decoder = new M100Decoder({ framing: this.framing });
  }

  /** Writes `bytes` to the line now (a noise burst), unless silent. */
  injectNoise(bytes: Buffer): void {
    this.send(bytes);
  }

  private answer(f: M100Frame): void {
    this.counters.commands++;
    const respond = (cmd: number, params: number[] | Buffer): void =>
      this.send(encodeM100Frame({ type: M100Type.RESPONSE, cmd, params: Buffer.isBuffer(params) ? params : Buffer.from(params) }, this.framing));
    switch (f.cmd) {
      case M100Cmd.GET_INFO: {
        const info = f.params[0] ?? M100Info.HARDWARE;
        const text = info === M100Info.HARDWARE ? this.hw : info === M100Info.SOFTWARE ? 'V2.3.5' : 'MagicRF';
        respond(M100Cmd.GET_INFO, Buffer.concat([Buffer.from([info]), Buffer.from(text, 'latin1')]));
        return;
      }
      case M100Cmd.SET_TX_POWER:
        if (f.params.length !== 2) return respond(M100Cmd.SET_TX_POWER, [0x01]);
        this.txPowerCentiDbm = f.params.readUInt16BE(0);
        return respond(M100Cmd.SET_TX_POWER, [0x00]);
      case M100Cmd.GET_TX_POWER:
        return respond(M100Cmd.GET_TX_POWER, [this.txPowerCentiDbm >> 8, this.txPowerCentiDbm & 0xff]);
      case M100Cmd.SINGLE_INVENTORY:
        if (this.round(M100Cmd.SINGLE_INVENTORY) === 0) this.send(encodeErrorResponse(M100Error.NO_TAG, this.framing));
        return;
      case M100Cmd.MULTI_POLL: {
        const count = f.params.length === 3 ? f.params.readUInt16BE(1) : 0;
        if (count === 0) return;
        this.pollLeft = count;
        if (!this.pollTimer) this.schedulePoll(this.generation);
        return;
      }
      case M100Cmd.STOP_MULTI_POLL:
        if (this.pollTimer) this.timers.cancel(this.pollTimer);
        this.pollTimer = null;
        this.pollLeft = 0;
        return respond(M100Cmd.STOP_MULTI_POLL, [0x00]);
      default:
        this.counters.ignored++;
    }
  }

  private schedulePoll(gen: number): void {
    this.pollTimer = this.timers.after(this.roundMs, () => {
      this.pollTimer = null;
      if (gen !== this.generation || this.pollLeft <= 0) return;
      this.pollLeft--;
      this.round(this.notifyCmd);
      const g = this.faults.garbage;
      if (g && this.rng() < g) {
        const junk = Buffer.alloc(randomInt(this.rng, 1, 32));
        for (let i = 0; i < junk.length; i++) junk[i] = randomInt(this.rng, 0, 255);
        this.counters.garbageBursts++;
        this.send(junk);
      }
      if (this.pollLeft > 0) this.schedulePoll(gen);
    });
  }

  /** Link bytes available now (token bucket refilled at the UART rate, at most one second's worth). */
  private takeBudget(bytes: number): boolean {
    const now = performance.now();
    this.budget = Math.min(this.bytesPerMs * 1000, this.budget + (now - this.budgetAt) * this.bytesPerMs);
    this.budgetAt = now;
    if (this.budget < bytes) return false;
    this.budget -= bytes;
    return true;
  }

  /** One inventory round: returns how many notifications went out. */
  private round(cmd: number): number {
    this.counters.rounds++;
    if (this.replay) {
      let sent = 0;
      for (;;) {
        const f = this.replay[this.replayAt]!;
        if (!this.takeBudget(f.length)) break;
        this.replayAt = (this.replayAt + 1) % this.replay.length;
        this.send(f);
        if (++sent >= this.replay.length) break;
      }
      return sent;
    }
    let sent = 0;
    for (const s of this.population.round(this.zone)) {
      const corrupt = this.faults.corruptCrc !== undefined && this.rng() < this.faults.corruptCrc;
      const frame = encodeTagNotification({ rssi: s.rssi, epc: s.tag.epc, cmd }, this.framing);
      if (corrupt) {
        // flip the tag CRC and fix up the frame checksum: only the tag CRC check can catch it
        const at = frame.length - 4;
        frame.writeUInt16BE(frame.readUInt16BE(at) ^ 0xffff, at);
        frame[frame.length - 2] = m100Checksum(frame, 1, frame.length - 2);
      }
      if (!this.takeBudget(frame.length)) {
        this.counters.overLinkRate++;
        continue;
      }
      this.counters.notifications++;
      this.send(frame);
      sent++;
    }
    return sent;
  }

  private send(buf: Buffer): void {
    if (this.faults.silent) {
      this.counters.suppressed++;
      return;
    }
    this.io?.write(buf);
  }
}
