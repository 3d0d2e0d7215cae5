import { describe, expect, it } from 'vitest';
import { decodeLoadCell, encodeLoadCell } from '../../src/drivers/loadcell';
import { encodeReadResponse, RtuResponseFramer } from '../../src/drivers/modbus';
import { loadDefinitions } from '../../src/devices/definitions';
import type { ModbusDefinition } from '../../src/devices/types';
import { isShelfgateError, ErrorCode } from '../../src/errors';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const defs = loadDefinitions();
const generic = defs.get('generic-modbus-loadcell') as ModbusDefinition;
const kg = defs.get('generic-modbus-loadcell-kg') as ModbusDefinition;

/** Status register 0x08 of the generic load-cell transmitter's register map: bits 2-0 decimals, bit 3 sign, bit 5 unstable, bit 6 overflow. */
const status = (decimals: number, { sign = false, unstable = false, overload = false } = {}) =>
  decimals | (sign ? 0x08 : 0) | (unstable ? 0x20 : 0) | (overload ? 0x40 : 0);

function frameRegisters(bytes: string, count: number): number[] {
  const f = new RtuResponseFramer();
  f.expect(1, 3, count);
  const r = f.push(hex(bytes));
  if (!r || r.type !== 'registers') throw new Error(`no registers: ${JSON.stringify(r)}`);
  return r.registers;
}

describe('decodeLoadCell, generic-modbus-loadcell (reference frames of a generic Modbus RTU load-cell transmitter)', () => {
  it('decodes the reference answers: gross = 132, net = -15889', () => {
    const gross = frameRegisters('01 03 04 00 00 00 84 FA 50', 2);
    const net = frameRegisters('01 03 04 FF FF C1 EF EA 0B', 2);
    const blocks = [
      { address: 0x08, registers: [status(0)] },
      { address: 0x50, registers: [...gross, ...net] },
    ];
    expect(decodeLoadCell(generic, blocks)).toEqual({ grams: -15889, unstable: false, overload: false, raw: -15889 });
    // the same map with the weight field pointed at gross proves the field extraction by address
    const grossDef: ModbusDefinition = { ...generic, fields: { ...generic.fields, weight: { register: 0x50, type: 'int32be' } } };
    expect(decodeLoadCell(grossDef, blocks).grams).toBe(132);
  });

  it('takes decimals from the status mask and applies the sign, unstable and overload bits', () => {
    const regs = (s: number, hi: number, lo: number) => [
      { address: 0x08, registers: [s] },
      { address: 0x50, registers: [0, 0, hi, lo] },
    ];
    expect(decodeLoadCell(generic, regs(status(2), 0x0000, 0x3039))).toEqual({ grams: 123.45, unstable: false, overload: false, raw: 12345 });
    expect(decodeLoadCell(generic, regs(status(3, { unstable: true }), 0x0001, 0xe240))).toEqual({ grams: 123.456, unstable: true, overload: false, raw: 123456 });
    // sign bit with a magnitude, and sign bit with two's complement: both negative
    expect(decodeLoadCell(generic, regs(status(1, { sign: true }), 0x0000, 0x0064)).grams).toBe(-10);
    expect(decodeLoadCell(generic, regs(status(0, { sign: true }), 0xffff, 0xc1ef)).grams).toBe(-15889);
    expect(decodeLoadCell(generic, regs(status(0, { overload: true }), 0x7fff, 0xffff))).toMatchObject({ overload: true, raw: 0x7fffffff });
  });

  it('throws FRAME_INVALID when a needed register was not read', () => {
    try {
      decodeLoadCell(generic, [{ address: 0x50, registers: [0, 0, 0, 1] }]);
      throw new Error('no throw');
    } catch (e) {
      expect(isShelfgateError(e, ErrorCode.FRAME_INVALID)).toBe(true);
    }
  });
});

describe('decodeLoadCell, generic-modbus-loadcell-kg (fixed decimals, another layout)', () => {
  it('reads gross kg x 1000 from input registers 0x00-0x02', () => {
    expect(decodeLoadCell(kg, [{ address: 0, registers: [0x0000, 0x04d2, 0x0000] }])).toEqual({ grams: 1234, unstable: false, overload: false, raw: 1234 });
    expect(decodeLoadCell(kg, [{ address: 0, registers: [0xffff, 0xfff6, 0x0003] }])).toEqual({ grams: -10, unstable: true, overload: true, raw: -10 });
  });
});

describe('register types', () => {
  const base = { ...generic, reads: [{ function: 3 as const, address: 0, count: 4 }], fields: { weight: { register: 0, type: 'uint16' as const } }, scaling: { unit: 'g' as const, factor: 1, decimals: 0 }, statusBits: {} };
  const regs = [{ address: 0, registers: [0xfffe, 0x0001, 0x0002, 0x0003] }];
  it.each([
    ['uint16', 0xfffe],
    ['int16', -2],
    ['uint32be', 0xfffe0001],
    ['int32be', -131071],
    ['uint32le', 0x0001fffe],
    ['int32le', 0x0001fffe],
  ] as const)('%s', (type, raw) => {
    const def: ModbusDefinition = { ...base, fields: { weight: { register: 0, type } } };
    expect(decodeLoadCell(def, regs).raw).toBe(raw);
    // word-swapped negative
    if (type === 'int32le') expect(decodeLoadCell(def, [{ address: 0, registers: [0xc1ef, 0xffff] }]).raw).toBe(-15889);
  });
  it('applies factor after decimals', () => {
    const def: ModbusDefinition = { ...base, scaling: { unit: 'kg', factor: 0.5, decimals: 2 } };
    expect(decodeLoadCell(def, [{ address: 0, registers: [250] }]).grams).toBe(1250);
  });
});

describe('encodeLoadCell (simulator side)', () => {
  it('produces the reference net register values and status', () => {
    const m = encodeLoadCell(generic, { grams: -15889, unstable: false, overload: false });
    expect(m.get(0x52)).toBe(0xffff);
    expect(m.get(0x53)).toBe(0xc1ef);
    expect(m.get(0x08)).toBe(0x0008); // sign bit, 0 decimals
    // answered as a read of 0x52 count 2, that is the reference frame
    expect(encodeReadResponse(1, 3, [m.get(0x52)!, m.get(0x53)!]).toString('hex')).toBe('010304ffffc1efea0b');
  });

  it('sets decimals when asked and the status bits', () => {
    const m = encodeLoadCell(generic, { grams: 123.45, unstable: true, overload: true }, { decimals: 2 });
    expect([m.get(0x08), m.get(0x52), m.get(0x53)]).toEqual([0x62, 0x0000, 0x3039]);
  });

  it('round-trips through decodeLoadCell for both models', () => {
    for (const [def, grams, decimals] of [
      [generic, 132, 0],
      [generic, -7.5, 1],
      [generic, 2500.125, 3],
      [kg, 1234, undefined],
      [kg, -10, undefined],
      [kg, 0.4, undefined], // rounds to the 1 g resolution of kg x 1000
    ] as const) {
      for (const flags of [{ unstable: false, overload: false }, { unstable: true, overload: true }]) {
        const m = encodeLoadCell(def, { grams, ...flags }, decimals === undefined ? {} : { decimals });
        const blocks = def.reads.map((r) => ({ address: r.address, registers: Array.from({ length: r.count }, (_, i) => m.get(r.address + i) ?? 0) }));
        const d = decodeLoadCell(def, blocks);
        expect(d.grams).toBe(def === kg ? Math.round(grams) : grams);
        expect({ unstable: d.unstable, overload: d.overload }).toEqual(flags);
      }
    }
  });

  it('refuses values that do not fit', () => {
    expect(() => encodeLoadCell(kg, { grams: 3e9, unstable: false, overload: false })).toThrow();
    expect(() => encodeLoadCell(generic, { grams: 1, unstable: false, overload: false }, { decimals: 8 })).toThrow();
    expect(() => encodeLoadCell(generic, { grams: Number.NaN, unstable: false, overload: false })).toThrow();
  });
});
