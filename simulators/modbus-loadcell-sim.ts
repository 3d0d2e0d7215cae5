/**
 * One RS-485 bus of Modbus RTU load-cell transmitters (Modbus over Serial Line V1.02): many slave addresses on
 * one line, each with its own LoadCellPhysics. A behaviour over the same definition and codecs the
 * gateway uses: requests are framed by RtuRequestFramer, register images come from
 * encodeLoadCell with the definition's register map, answers from encodeReadResponse /
 * encodeException (src/drivers/modbus.ts, src/drivers/loadcell.ts).
 *
 * Behaviour of a real slave (MODBUS over Serial Line V1.02 §2.4.1; App. Protocol V1.1b3 §6, §7):
 * - a request for an address not on the bus gets no answer (another slave's, or nobody's);
 * - a request with a wrong CRC gets no answer (the framer discards it);
 * - fn 03/04 reading registers outside the definition's read blocks: exception 02 (illegal data
 *   address); a function no block uses: exception 01 (illegal function);
 * - fn 06 to the tare register (option `tareRegister`, or a field named `tare` in the
 *   definition) tares that slave and echoes the request; to any other register: exception 02;
 *   with no tare register at all: exception 01. Broadcast (address 0) writes are applied silently.
 * - the answer leaves after t3.5 + `turnaroundMs` (default 2 ms).
 * Fault injection, bus-wide (`faults`) or per address (`setFaults`): `silent`, `corruptCrc`
 * (probability of a flipped CRC byte), `garbage` (probability of 1-8 random bytes after an
 * answer), `dropAfter` (answer N requests, then nothing).
 */
import type { ModbusDefinition } from '../src/devices/types';
import { encodeLoadCell, registerWidth } from '../src/drivers/loadcell';
import { encodeException, encodeReadResponse, encodeWriteSingleRegister, RtuRequestFramer, t35Ms, type RtuRequest } from '../src/drivers/modbus';
import type { SerialSettings } from '../src/transport/types';
import type { DeviceSimulator, SimIo } from './io';
import { mulberry32, randomInt, type LoadCellPhysics, type Rng } from './physics';
import { TimerSet } from './timers';

export interface ModbusSlaveFaults {
  /** Never answer. */
  silent?: boolean;
  /** Probability (0-1) that an answer goes out with a corrupted CRC. */
  corruptCrc?: number;
  /** Probability (0-1) per answer of 1-8 random bytes on the line right after it. */
  garbage?: number;
  /** Answer this many requests, then nothing (a transmitter that hangs). */
  dropAfter?: number;
}

export interface ModbusLoadCellBusOptions {
  definition: ModbusDefinition;
  /** Slaves at the start: address (1-247) -> physics. More with addSlave(). */
  slaves?: Map<number, LoadCellPhysics> | Record<number, LoadCellPhysics>;
  /** For t3.5; default the definition's baud rate. */
  baudRate?: number;
  /** Slave turnaround after t3.5, ms. Default 2. */
  turnaroundMs?: number;
  /** Decimals shown when the definition reads them from the status register. Default 0. */
  decimals?: number;
  /** Register that a fn 06 write tares. Default: the definition's field named `tare`, if any. */
  tareRegister?: number;
  /** Bus-wide faults (per-address ones from setFaults() override them). */
  faults?: ModbusSlaveFaults;
  /** Time source; must be the one the physics uses. Default Date.now. */
  clock?: () => number;
  /** Randomness for faults. Default mulberry32(3). */
  rng?: Rng;
}

export interface ModbusBusStats {
  /** Well-formed requests seen on the bus (any address). */
  requests: number;
  answered: number;
  exceptions: number;
  /** Requests for addresses not on this bus. */
  notForUs: number;
  /** Requests left unanswered by a fault. */
  suppressed: number;
  /** Requests discarded for a wrong CRC (framer). */
  crcErrors: number;
  /** Bytes the framer skipped as garbage. */
  droppedBytes: number;
}

interface Slave {
  physics: LoadCellPhysics;
  overrides: Map<number, number>;
  faults: ModbusSlaveFaults;
  requests: number;
}

export class ModbusLoadCellBusSimulator implements DeviceSimulator {
  readonly kind = 'modbus-loadcell';
  readonly serial: SerialSettings;
  /** Bus-wide faults; per-address ones override. */
  faults: ModbusSlaveFaults;
  private readonly def: ModbusDefinition;
  private readonly delayMs: number;
  private readonly decimals: number;
  private readonly tareRegister: number | undefined;
  private readonly clock: () => number;
  private readonly rng: Rng;
  private readonly slaves = new Map<number, Slave>();
  /** Readable registers per function, from the definition's read blocks. */
  private readonly readable = new Map<number, Set<number>>();

  private unsubscribe: (() => void) | null = null;
  private io: SimIo | null = null;
  private framer = new RtuRequestFramer();
  private readonly timers = new TimerSet();
  private counters = { requests: 0, answered: 0, exceptions: 0, notForUs: 0, suppressed: 0 };

  constructor(opts: ModbusLoadCellBusOptions) {
    this.def = opts.definition;
    const baud = opts.baudRate ?? opts.definition.serial.baudRate;
    this.serial = { ...opts.definition.serial, baudRate: baud };
    this.delayMs = t35Ms(baud) + (opts.turnaroundMs ?? 2);
    this.decimals = opts.decimals ?? 0;
    this.tareRegister = opts.tareRegister ?? opts.definition.fields['tare']?.register;
    this.clock = opts.clock ?? Date.now;
    this.rng = opts.rng ?? mulberry32(3);
    this.faults = { ...opts.faults };
    for (const block of this.def.reads) {
      let set = this.readable.get(block.function);
      if (!set) this.readable.set(block.function, (set = new Set()));
      for (let r = block.address; r < block.address + block.count; r++) set.add(r);
    }
    const initial = opts.slaves instanceof Map ? [...opts.slaves] : Object.entries(opts.slaves ?? {}).map(([a, p]) => [Number(a), p] as const);
    for (const [address, physics] of initial) this.addSlave(address, physics);
  }

  /** The definition id these transmitters implement. */
  get model(): string {
    return this.def.id;
  }

  /** Addresses on the bus, ascending. */
  get addresses(): number[] {
    return [...this.slaves.keys()].sort((a, b) => a - b);
  }

  get stats(): ModbusBusStats {
    return { ...this.counters, crcErrors: this.framer.crcErrors, droppedBytes: this.framer.dropped };
  }

  addSlave(address: number, physics: LoadCellPhysics): void {
    if (!Number.isInteger(address) || address < 1 || address > 247) throw new RangeError(`slave address must be 1-247, got ${address}`);
    if (this.slaves.has(address)) throw new RangeError(`slave address ${address} is already on the bus`);
    this.slaves.set(address, { physics, overrides: new Map(), faults: {}, requests: 0 });
  }

  removeSlave(address: number): void {
    this.slaves.delete(address);
  }

  /** The physics of a slave (undefined if the address is not on the bus). */
  slave(address: number): LoadCellPhysics | undefined {
    return this.slaves.get(address)?.physics;
  }

  /**
   * Pins raw register values (uint16) of one slave, overriding what the physics would show, until
   * clearRegisters(). Pinned registers are readable even outside the definition's blocks.
   */
  setRegisters(address: number, values: Map<number, number> | Record<number, number>): void {
    const s = this.mustSlave(address);
    const entries = values instanceof Map ? [...values] : Object.entries(values).map(([r, v]) => [Number(r), v] as const);
    for (const [r, v] of entries) {
      if (!Number.isInteger(r) || r < 0 || r > 0xffff) throw new RangeError(`register must be 0-65535, got ${r}`);
      if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new RangeError(`register value must be 0-65535, got ${v}`);
      s.overrides.set(r, v);
    }
  }

  clearRegisters(address: number): void {
    this.mustSlave(address).overrides.clear();
  }

  /** Sets the faults of one address (merged over the bus-wide ones); `{}` clears them. */
  setFaults(address: number, faults: ModbusSlaveFaults): void {
    const s = this.mustSlave(address);
    s.faults = { ...faults };
    s.requests = 0;
  }

  /** The register image a slave shows now (reads the physics once). */
  registers(address: number, nowMs: number = this.clock()): Map<number, number> {
    const s = this.mustSlave(address);
    const r = s.physics.read(nowMs);
    const state = { grams: r.grams, unstable: !r.stable, overload: r.overload };
    const image = encodeLoadCell(this.def, state, { decimals: this.decimals });
    // A `gross` field, when the map has one, shows the gross weight with the weight field's encoding.
    const gross = this.def.fields['gross'];
    if (gross) {
      const grossDef: ModbusDefinition = { ...this.def, fields: { ...this.def.fields, weight: gross } };
      const g = encodeLoadCell(grossDef, { ...state, grams: r.gross }, { decimals: this.decimals });
      for (let k = 0; k < registerWidth(gross.type); k++) image.set(gross.register + k, g.get(gross.register + k)!);
    }
    for (const [reg, v] of s.overrides) image.set(reg, v);
    return image;
  }

  attach(io: SimIo): () => void {
    this.detach();
    this.io = io;
    const off = io.onData((chunk) => {
      for (const req of this.framer.push(chunk)) this.handle(req);
    });
    this.unsubscribe = off;
    return () => {
      if (this.unsubscribe === off) this.detach();
    };
  }

  detach(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.io = null;
    this.timers.clear();
    this.framer.reset();
  }

  private mustSlave(address: number): Slave {
    const s = this.slaves.get(address);
    if (!s) throw new RangeError(`no slave at address ${address}`);
    return s;
  }

  private handle(req: RtuRequest): void {
    this.counters.requests++;
    if (req.address === 0) {
      // Broadcast (only writes reach here; reads are never broadcast): apply, never answer.
      if (req.fn === 6 && req.register === this.tareRegister) for (const s of this.slaves.values()) s.physics.tare(this.clock());
      return;
    }
    const s = this.slaves.get(req.address);
    if (!s) {
      this.counters.notForUs++;
      return;
    }
    s.requests++;
    const f = { ...this.faults, ...s.faults };
    if (f.silent || (f.dropAfter !== undefined && s.requests > f.dropAfter)) {
      this.counters.suppressed++;
      return;
    }
    const answer = req.fn === 6 ? this.write(req.address, s, req.register, req.value) : this.read(req.address, req.fn, req.start, req.count);
    if (f.corruptCrc && this.rng() < f.corruptCrc) answer[answer.length - 1 - randomInt(this.rng, 0, 1)]! ^= 1 << randomInt(this.rng, 0, 7);
    let junk: Buffer | null = null;
    if (f.garbage && this.rng() < f.garbage) {
      junk = Buffer.alloc(randomInt(this.rng, 1, 8));
      for (let i = 0; i < junk.length; i++) junk[i] = randomInt(this.rng, 0, 255);
    }
    const io = this.io;
    this.timers.after(this.delayMs, () => {
      if (this.io !== io || !io) return;
      this.counters.answered++;
      io.write(answer);
      if (junk) io.write(junk);
    });
  }

  /** Read Holding/Input Registers (App. Protocol §6.3, §6.4). */
  private read(address: number, fn: 3 | 4, start: number, count: number): Buffer {
    const readable = this.readable.get(fn);
    const slave = this.slaves.get(address)!;
    if (!readable && slave.overrides.size === 0) return this.exception(address, fn, 1);
    for (let r = start; r < start + count; r++) {
      if (!readable?.has(r) && !slave.overrides.has(r)) return this.exception(address, fn, 2);
    }
    let image: Map<number, number>;
    try {
      image = this.registers(address);
    } catch {
      // The weight does not fit the register map: the transmitter cannot answer (§7 code 04, device failure).
      return this.exception(address, fn, 4);
    }
    const regs: number[] = [];
    for (let r = start; r < start + count; r++) regs.push(image.get(r) ?? 0);
    return encodeReadResponse(address, fn, regs);
  }

  /** Write Single Register (App. Protocol §6.6): the tare register only. */
  private write(address: number, slave: Slave, register: number, value: number): Buffer {
    if (this.tareRegister === undefined) return this.exception(address, 6, 1);
    if (register !== this.tareRegister) return this.exception(address, 6, 2);
    slave.physics.tare(this.clock());
    return encodeWriteSingleRegister(address, register, value);
  }

  private exception(address: number, fn: number, code: number): Buffer {
    this.counters.exceptions++;
    return encodeException(address, fn, code);
  }
}
