/**
 * Load-cell register maps, driven only by a ModbusDefinition (device models are data).
 * decodeLoadCell turns the register blocks read on one poll into grams and flags (gateway side);
 * encodeLoadCell is its inverse for the simulators. No register address or scaling lives here.
 *
 * Value types (Modbus App. Protocol V1.1b3 §4.2: registers are 16-bit, sent big-endian; 32-bit
 * values span two consecutive registers, order set by the device):
 *   uint16 / int16            one register
 *   uint32be / int32be        high word at `register`, low word at `register + 1` ("ABCD")
 *   uint32le / int32le        low word at `register`, high word at `register + 1` (word-swapped,
 *                             "CDAB", as "little-endian" means in most transmitter manuals)
 *
 * Scaling: value = raw / 10^decimals * factor, in `unit` (g or kg); decimals fixed or taken from
 * the status register through `statusMask` (e.g. bits 2-0 -> 0x07, the generic load-cell transmitter's register map). A sign bit
 * in the status register, when defined, makes the value negative (the transmitter then sends the
 * magnitude; a value already negative in two's complement stays negative).
 */
import { ErrorCode, ShelfgateError } from '../errors';
import type { ModbusDefinition, ModbusField, RegisterType } from '../devices/types';

export interface LoadCellReading {
  /** Weight in grams (NaN never: a missing register throws). */
  grams: number;
  unstable: boolean;
  overload: boolean;
  /** Signed raw count of the weight field (sign bit applied), before decimals and factor. */
  raw: number;
}

export interface LoadCellState {
  grams: number;
  unstable: boolean;
  overload: boolean;
}

/** Registers a field of this type occupies. */
export function registerWidth(type: RegisterType): 1 | 2 {
  return type === 'uint16' || type === 'int16' ? 1 : 2;
}

function unitToGrams(def: ModbusDefinition): number {
  return def.scaling.unit === 'kg' ? 1000 : 1;
}

/** Bit position of the lowest set bit of a non-zero mask. */
function maskShift(mask: number): number {
  let s = 0;
  while (((mask >>> s) & 1) === 0 && s < 32) s++;
  return s;
}

function bit(value: number, index: number | undefined): boolean {
  return index !== undefined && ((value >>> index) & 1) === 1;
}

function readField(name: string, f: ModbusField, reg: (r: number) => number): number {
  switch (f.type) {
    case 'uint16':
      return reg(f.register);
    case 'int16': {
      const v = reg(f.register);
      return v >= 0x8000 ? v - 0x10000 : v;
    }
    case 'uint32be':
    case 'int32be':
    case 'uint32le':
    case 'int32le': {
      const a = reg(f.register);
      const b = reg(f.register + 1);
      const [hi, lo] = f.type.endsWith('be') ? [a, b] : [b, a];
      const u = hi * 0x10000 + lo;
      return f.type.startsWith('int') && u >= 0x80000000 ? u - 0x100000000 : u;
    }
    default:
      throw new ShelfgateError(ErrorCode.DEVICE_DEFINITION_INVALID, `field ${name}: unknown type ${String((f as ModbusField).type)}`);
  }
}

function writeField(name: string, f: ModbusField, value: number, out: Map<number, number>): void {
  const ranges: Record<RegisterType, [number, number]> = {
    uint16: [0, 0xffff],
    int16: [-0x8000, 0x7fff],
    uint32be: [0, 0xffffffff],
    uint32le: [0, 0xffffffff],
    int32be: [-0x80000000, 0x7fffffff],
    int32le: [-0x80000000, 0x7fffffff],
  };
  const [min, max] = ranges[f.type];
  if (!Number.isInteger(value) || value < min || value > max)
    throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `field ${name}: ${value} does not fit ${f.type}`);
  if (registerWidth(f.type) === 1) {
    out.set(f.register, value & 0xffff);
    return;
  }
  const u = value < 0 ? value + 0x100000000 : value;
  const hi = Math.floor(u / 0x10000);
  const lo = u % 0x10000;
  const be = f.type.endsWith('be');
  out.set(f.register, be ? hi : lo);
  out.set(f.register + 1, be ? lo : hi);
}

/**
 * Decodes one poll's register blocks (`address` = first register of each block, as read) with the
 * definition's field map and scaling. Throws FRAME_INVALID when a needed register was not read.
 */
export function decodeLoadCell(def: ModbusDefinition, blocks: { address: number; registers: number[] }[]): LoadCellReading {
  const reg = (r: number): number => {
    for (const b of blocks) {
      if (r >= b.address && r < b.address + b.registers.length) return b.registers[r - b.address]!;
    }
    throw new ShelfgateError(ErrorCode.FRAME_INVALID, `${def.id}: register ${r} (0x${r.toString(16)}) was not in the blocks read`);
  };
  const status = def.fields.status ? readField('status', def.fields.status, reg) : undefined;
  let raw = readField('weight', def.fields.weight, reg);
  if (status !== undefined && bit(status, def.statusBits.sign)) raw = -Math.abs(raw);

  let decimals: number;
  const d = def.scaling.decimals;
  if (typeof d === 'number') decimals = d;
  else {
    if (status === undefined) throw new ShelfgateError(ErrorCode.DEVICE_DEFINITION_INVALID, `${def.id}: decimals come from a status field that is not defined`);
    decimals = (status & d.statusMask) >>> maskShift(d.statusMask);
  }
  // Multiply first, divide last, then round away binary noise: 15889 / 10^3 must not become 15.889000000000001.
  const grams = Math.round(((raw * def.scaling.factor * unitToGrams(def)) / 10 ** decimals) * 1e6) / 1e6;
  return {
    grams: Object.is(grams, -0) ? 0 : grams,
    unstable: status !== undefined && bit(status, def.statusBits.unstable),
    overload: status !== undefined && bit(status, def.statusBits.overload),
    raw,
  };
}

/**
 * Simulator side, the inverse of decodeLoadCell: the register values (uint16) a transmitter of this
 * definition shows for a weight. Decimals are the definition's fixed ones, or when read from the
 * status register `opts.decimals` (default 0). Registers the definition does not name are absent
 * (a simulator answers 0 for them). Throws REQUEST_INVALID if the value does not fit the field.
 */
export function encodeLoadCell(def: ModbusDefinition, state: LoadCellState, opts: { decimals?: number } = {}): Map<number, number> {
  const out = new Map<number, number>();
  const d = def.scaling.decimals;
  const decimals = typeof d === 'number' ? d : (opts.decimals ?? 0);
  if (!Number.isInteger(decimals) || decimals < 0) throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `decimals must be a non-negative integer, got ${decimals}`);
  if (!Number.isFinite(state.grams)) throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `grams must be finite, got ${state.grams}`);
  let raw = Math.round((state.grams * 10 ** decimals) / (def.scaling.factor * unitToGrams(def)));
  if (Object.is(raw, -0)) raw = 0;

  let status = 0;
  const signBit = def.statusBits.sign;
  if (def.fields.status && signBit !== undefined && raw < 0) {
    status |= 1 << signBit;
    // Unsigned weight fields carry the magnitude; signed ones keep two's complement (both decode alike).
    if (def.fields.weight.type.startsWith('uint')) raw = -raw;
  }
  writeField('weight', def.fields.weight, raw, out);

  if (def.fields.status) {
    if (typeof d !== 'number') {
      const shift = maskShift(d.statusMask);
      if (decimals << shift !== ((decimals << shift) & d.statusMask))
        throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `decimals ${decimals} do not fit status mask 0x${d.statusMask.toString(16)}`);
      status |= decimals << shift;
    }
    if (state.unstable && def.statusBits.unstable !== undefined) status |= 1 << def.statusBits.unstable;
    if (state.overload && def.statusBits.overload !== undefined) status |= 1 << def.statusBits.overload;
    writeField('status', def.fields.status, status >>> 0, out);
  }
  return out;
}
