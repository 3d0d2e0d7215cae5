import { describe, expect, it } from 'vitest';
import { isShelfgateError, ErrorCode } from '../../src/errors';
import {
  crc16,
  encodeException,
  encodeReadRequest,
  encodeReadResponse,
  encodeWriteSingleRegister,
  RtuRequestFramer,
  RtuResponseFramer,
  t35Ms,
  type RtuResult,
} from '../../src/drivers/modbus';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const toHex = (b: Buffer) => b.toString('hex').toUpperCase().replace(/(..)(?!$)/g, '$1 ');

// the generic load-cell transmitter's register map, byte-exact
const REQ_GROSS = '01 03 00 50 00 02 C4 1A';
const RES_GROSS = '01 03 04 00 00 00 84 FA 50'; // gross = 132
const REQ_NET = '01 03 00 52 00 02 65 DA';
const RES_NET = '01 03 04 FF FF C1 EF EA 0B'; // net = -15889
const REQ_TEN = '01 03 00 00 00 0A C5 CD';

function feed(f: RtuResponseFramer, bytes: Buffer, oneByteAtATime = false): RtuResult[] {
  const out: RtuResult[] = [];
  if (!oneByteAtATime) {
    const r = f.push(bytes);
    if (r) out.push(r);
    return out;
  }
  for (const b of bytes) {
    const r = f.push(Buffer.from([b]));
    if (r) out.push(r);
  }
  return out;
}

describe('CRC-16/MODBUS', () => {
  it('has check value 0x4B37 for "123456789"', () => {
    expect(crc16(Buffer.from('123456789', 'ascii'))).toBe(0x4b37);
  });
  it('matches the reference frames (low byte first on the wire)', () => {
    expect(crc16(hex('01 03 00 50 00 02'))).toBe(0x1ac4);
    expect(crc16(hex('01 03 00 00 00 0A'))).toBe(0xcdc5);
    expect(crc16(hex('01 03 04 FF FF C1 EF'))).toBe(0x0bea);
  });
});

describe('t3.5 (Serial Line V1.02 §2.5.1.1)', () => {
  it('is 35000/baud ms up to 19200 and 1.75 ms above', () => {
    expect(t35Ms(9600)).toBeCloseTo(3.6458, 4);
    expect(t35Ms(19200)).toBeCloseTo(1.8229, 4);
    expect(t35Ms(38400)).toBe(1.75);
    expect(t35Ms(115200)).toBe(1.75);
    expect(() => t35Ms(0)).toThrow();
  });
});

describe('client encoding', () => {
  it('encodes the reference read requests byte-exact', () => {
    expect(toHex(encodeReadRequest(1, 3, 0x50, 2))).toBe(REQ_GROSS);
    expect(toHex(encodeReadRequest(1, 3, 0x52, 2))).toBe(REQ_NET);
    expect(toHex(encodeReadRequest(1, 3, 0x00, 10))).toBe(REQ_TEN);
  });
  it('validates its arguments', () => {
    for (const bad of [() => encodeReadRequest(0, 3, 0, 1), () => encodeReadRequest(248, 3, 0, 1), () => encodeReadRequest(1, 3, 0, 0), () => encodeReadRequest(1, 3, 0, 126), () => encodeReadRequest(1, 3, 0xffff, 2), () => encodeReadRequest(1, 5 as 3, 0, 1)]) {
      expect(bad).toThrow();
      try {
        bad();
      } catch (e) {
        expect(isShelfgateError(e, ErrorCode.REQUEST_INVALID)).toBe(true);
      }
    }
  });
});

describe('RtuResponseFramer', () => {
  it('decodes the reference answers', () => {
    const f = new RtuResponseFramer();
    f.expect(1, 3, 2);
    expect(f.push(hex(RES_GROSS))).toEqual({ type: 'registers', address: 1, fn: 3, registers: [0x0000, 0x0084] });
    f.expect(1, 3, 2);
    expect(f.push(hex(RES_NET))).toEqual({ type: 'registers', address: 1, fn: 3, registers: [0xffff, 0xc1ef] });
    expect(f.dropped).toBe(0);
    expect(f.crcErrors).toBe(0);
  });

  it('assembles a frame split one byte at a time', () => {
    const f = new RtuResponseFramer();
    f.expect(1, 3, 2);
    const out = feed(f, hex(RES_NET), true);
    expect(out).toEqual([{ type: 'registers', address: 1, fn: 3, registers: [0xffff, 0xc1ef] }]);
  });

  it('skips random garbage before a valid frame and counts it', () => {
    // deterministic pseudo-random garbage (LCG), both in one chunk and byte by byte
    let seed = 12345;
    const garbage = Buffer.alloc(200);
    for (let i = 0; i < garbage.length; i++) garbage[i] = (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
    for (const oneByte of [false, true]) {
      const f = new RtuResponseFramer();
      f.expect(1, 3, 2);
      const out = feed(f, Buffer.concat([garbage, hex(RES_GROSS)]), oneByte);
      expect(out).toEqual([{ type: 'registers', address: 1, fn: 3, registers: [0, 132] }]);
      expect(f.dropped).toBe(garbage.length);
      expect(f.crcErrors).toBe(0);
    }
  });

  it('skips the local echo of its own request (half-duplex adapters)', () => {
    const f = new RtuResponseFramer();
    f.expect(1, 3, 2);
    expect(f.push(Buffer.concat([hex(REQ_GROSS), hex(RES_GROSS)]))).toEqual({ type: 'registers', address: 1, fn: 3, registers: [0, 132] });
    expect(f.dropped).toBe(8);
  });

  it('reports a wrong CRC once and counts it', () => {
    const f = new RtuResponseFramer();
    f.expect(1, 3, 2);
    expect(f.push(hex('01 03 04 00 00 00 84 FA 51'))).toEqual({ type: 'crc-error' });
    expect(f.crcErrors).toBe(1);
    // no request outstanding any more: later bytes are unsolicited
    expect(f.push(hex(RES_GROSS))).toBeNull();
    f.expect(1, 3, 2);
    expect(f.push(hex(RES_GROSS))).toMatchObject({ type: 'registers', registers: [0, 132] });
  });

  it('finds a good frame after a truncated one, in one chunk and byte by byte', () => {
    for (const truncated of ['01 03 04 00 00', '01 03 04 FF FF C1 EF EA', '01 03']) {
      for (const oneByte of [false, true]) {
        const f = new RtuResponseFramer();
        f.expect(1, 3, 2);
        const out = feed(f, Buffer.concat([hex(truncated), hex(RES_GROSS)]), oneByte);
        expect(out, `${truncated} oneByte=${oneByte}`).toEqual([{ type: 'registers', address: 1, fn: 3, registers: [0, 132] }]);
        expect(f.crcErrors).toBe(0);
        expect(f.dropped).toBe(hex(truncated).length);
      }
    }
  });

  it('decodes exception responses (fn | 0x80)', () => {
    const f = new RtuResponseFramer();
    f.expect(1, 3, 2);
    // 01 83 02 + CRC: illegal data address
    expect(toHex(encodeException(1, 3, 2))).toBe('01 83 02 C0 F1');
    expect(f.push(hex('01 83 02 C0 F1'))).toEqual({ type: 'exception', address: 1, fn: 3, code: 2 });
    f.expect(1, 4, 2);
    expect(feed(f, hex('00 FF 01 84 04 42 C3'), true)).toEqual([{ type: 'exception', address: 1, fn: 4, code: 4 }]);
    expect(f.dropped).toBe(2);
  });

  it('ignores answers from another address or function', () => {
    const f = new RtuResponseFramer();
    f.expect(2, 3, 2);
    expect(f.push(hex(RES_GROSS))).toBeNull();
    expect(f.dropped).toBe(9);
    const other = encodeReadResponse(2, 3, [0x1234, 0x5678]);
    expect(f.push(other)).toEqual({ type: 'registers', address: 2, fn: 3, registers: [0x1234, 0x5678] });
  });

  it('drops bytes with no request outstanding and stale bytes at expect()', () => {
    const f = new RtuResponseFramer();
    expect(f.push(hex(RES_GROSS))).toBeNull();
    expect(f.dropped).toBe(9);
    f.expect(1, 3, 2);
    f.push(hex('01 03 04 00')); // partial answer, then a timeout and a new request
    f.expect(1, 3, 2);
    expect(f.dropped).toBe(13);
    expect(f.push(hex(RES_NET))).toMatchObject({ registers: [0xffff, 0xc1ef] });
  });

  it('never buffers more than 512 bytes; finds a frame at the end of an oversized chunk', () => {
    const f = new RtuResponseFramer();
    f.expect(1, 3, 125); // the largest answer: 255 bytes
    const buf = () => (f as unknown as { buf: Buffer }).buf.length;
    for (let i = 0; i < 100; i++) {
      expect(f.push(Buffer.alloc(64, 0x01))).toBeNull();
      expect(buf()).toBeLessThanOrEqual(512);
    }
    const good = encodeReadResponse(1, 3, Array.from({ length: 125 }, (_, i) => i));
    const r = f.push(Buffer.concat([Buffer.alloc(5000, 0xee), good]));
    expect(r).toMatchObject({ type: 'registers', registers: Array.from({ length: 125 }, (_, i) => i) });
    expect(f.dropped).toBe(6400 + 5000);
  });

  it('treats a complete but corrupted maximum-size answer as a CRC error', () => {
    const f = new RtuResponseFramer();
    f.expect(1, 3, 125);
    const bad = encodeReadResponse(1, 3, Array.from({ length: 125 }, (_, i) => i));
    bad[100] ^= 0x10;
    expect(feed(f, bad, true)).toEqual([{ type: 'crc-error' }]);
    expect(f.crcErrors).toBe(1);
  });
});

describe('server side (simulators)', () => {
  it('frames the reference requests and answers them byte-exact', () => {
    const f = new RtuRequestFramer();
    expect(f.push(Buffer.concat([hex(REQ_GROSS), hex(REQ_NET), hex(REQ_TEN)]))).toEqual([
      { address: 1, fn: 3, start: 0x50, count: 2 },
      { address: 1, fn: 3, start: 0x52, count: 2 },
      { address: 1, fn: 3, start: 0x00, count: 10 },
    ]);
    expect(toHex(encodeReadResponse(1, 3, [0x0000, 0x0084]))).toBe(RES_GROSS);
    expect(toHex(encodeReadResponse(1, 3, [0xffff, 0xc1ef]))).toBe(RES_NET);
  });

  it('frames write single register (0x06) and its echo encoding', () => {
    const req = encodeWriteSingleRegister(1, 0x0001, 0x0003);
    expect(toHex(req)).toBe('01 06 00 01 00 03 98 0B'); // App. Protocol §6.6 example values
    expect(new RtuRequestFramer().push(req)).toEqual([{ address: 1, fn: 6, register: 1, value: 3 }]);
  });

  it('assembles requests one byte at a time, after garbage', () => {
    const f = new RtuRequestFramer();
    const out = [];
    for (const b of Buffer.concat([hex('FF FE 00 99 10'), hex(REQ_NET)])) out.push(...f.push(Buffer.from([b])));
    expect(out).toEqual([{ address: 1, fn: 3, start: 0x52, count: 2 }]);
    expect(f.dropped).toBe(5);
  });

  it('discards a request with a wrong CRC and counts it, then frames the next', () => {
    const f = new RtuRequestFramer();
    expect(f.push(hex('01 03 00 50 00 02 C4 1B'))).toEqual([]);
    expect(f.push(hex(REQ_GROSS))).toEqual([{ address: 1, fn: 3, start: 0x50, count: 2 }]);
    expect(f.crcErrors).toBe(1);
  });

  it('finds a good request after a truncated one', () => {
    for (const oneByte of [false, true]) {
      const f = new RtuRequestFramer();
      const bytes = Buffer.concat([hex('01 03 00 52 00 02 65'), hex(REQ_GROSS)]);
      const out = [];
      if (oneByte) for (const b of bytes) out.push(...f.push(Buffer.from([b])));
      else out.push(...f.push(bytes));
      expect(out).toEqual([{ address: 1, fn: 3, start: 0x50, count: 2 }]);
      expect(f.dropped).toBe(7);
    }
  });

  it('never buffers more than 512 bytes', () => {
    const f = new RtuRequestFramer();
    expect(f.push(Buffer.alloc(10_000, 0x01))).toEqual([]);
    expect((f as unknown as { buf: Buffer }).buf.length).toBeLessThanOrEqual(512);
    expect(f.push(hex(REQ_TEN))).toEqual([{ address: 1, fn: 3, start: 0, count: 10 }]);
  });

  it('encodes exceptions byte-exact', () => {
    expect(toHex(encodeException(1, 3, 2))).toBe('01 83 02 C0 F1');
    expect(toHex(encodeException(1, 4, 4))).toBe('01 84 04 42 C3');
  });
});
