/**
 * Modbus RTU as a pure codec: requests in, bytes out; bytes in, typed results
 * out, with framers that resynchronise on garbage and count what they dropped. Both sides: the
 * gateway (client/master) and the load-cell simulators (server/slave). No I/O, no timers: the
 * caller owns the link, the timeout and the t3.5 silence (see t35Ms).
 *
 * References: MODBUS Application Protocol Specification V1.1b3 (PDUs: §6.3 Read Holding Registers
 * 0x03, §6.4 Read Input Registers 0x04, §6.6 Write Single Register 0x06, §7 exception responses);
 * MODBUS over Serial Line Specification and Implementation Guide V1.02 (RTU framing §2.5.1, CRC
 * §2.5.1.2 and §6.2.2). The tests pin reference frames byte for byte.
 */
import { crc16modbus } from 'crc';
import { ErrorCode, ShelfgateError } from '../errors';

/** Largest buffer a framer keeps; an RTU ADU is at most 256 bytes (Serial Line V1.02 §2.5.1). */
const MAX_BUFFER = 512;

/**
 * CRC-16/MODBUS: polynomial 0xA001 (0x8005 reflected), init 0xFFFF (Serial Line V1.02 §6.2.2).
 * Sent low byte first. Check value for ASCII "123456789" is 0x4B37.
 */
export function crc16(buf: Buffer): number {
  return crc16modbus(buf);
}

/** Appends the CRC, low byte first (Serial Line V1.02 §2.5.1.2: "the low-order byte is appended first"). */
function withCrc(body: number[]): Buffer {
  const out = Buffer.alloc(body.length + 2);
  for (let i = 0; i < body.length; i++) out[i] = body[i]!;
  out.writeUInt16LE(crc16(out.subarray(0, body.length)), body.length);
  return out;
}

/** True when buf[at .. at+len) ends with the right CRC (low byte first). */
function crcOk(buf: Buffer, at: number, len: number): boolean {
  return crc16(buf.subarray(at, at + len - 2)) === buf.readUInt16LE(at + len - 2);
}

function check(cond: boolean, what: string): void {
  if (!cond) throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `Modbus: ${what}`);
}

const isU16 = (v: number): boolean => Number.isInteger(v) && v >= 0 && v <= 0xffff;

/**
 * Inter-frame silence t3.5 in ms (Serial Line V1.02 §2.5.1.1): 3.5 character times of 11 bits,
 * i.e. 35000/baud ms, and a fixed 1.75 ms above 19200 baud.
 */
export function t35Ms(baud: number): number {
  check(Number.isFinite(baud) && baud > 0, `baud rate must be positive, got ${baud}`);
  return baud > 19200 ? 1.75 : 35000 / baud;
}

// ---------------------------------------------------------------------------------------------
// Client side (gateway)

/**
 * Read Holding Registers (0x03, App. Protocol §6.3) or Read Input Registers (0x04, §6.4):
 * `addr fn start_hi start_lo count_hi count_lo crc_lo crc_hi`. Address 1-247 (a read cannot be
 * broadcast, Serial Line §2.2), count 1-125.
 */
export function encodeReadRequest(address: number, fn: 3 | 4, start: number, count: number): Buffer {
  check(Number.isInteger(address) && address >= 1 && address <= 247, `read address must be 1-247, got ${address}`);
  check(fn === 3 || fn === 4, `read function must be 3 or 4, got ${fn}`);
  check(isU16(start), `start register must be 0-65535, got ${start}`);
  check(Number.isInteger(count) && count >= 1 && count <= 125 && start + count <= 0x10000, `register count must be 1-125 within the address space, got ${count}`);
  return withCrc([address, fn, start >> 8, start & 0xff, count >> 8, count & 0xff]);
}

/**
 * Write Single Register (0x06, App. Protocol §6.6). The normal response is an echo of the request,
 * so the simulators use this to answer too. Address 0 is broadcast (no answer).
 */
export function encodeWriteSingleRegister(address: number, register: number, value: number): Buffer {
  check(Number.isInteger(address) && address >= 0 && address <= 247, `address must be 0-247, got ${address}`);
  check(isU16(register), `register must be 0-65535, got ${register}`);
  check(isU16(value), `value must be 0-65535, got ${value}`);
  return withCrc([address, 6, register >> 8, register & 0xff, value >> 8, value & 0xff]);
}

export type RtuResult =
  | { type: 'registers'; address: number; fn: number; registers: number[] }
  | { type: 'exception'; address: number; fn: number; code: number }
  | { type: 'crc-error' };

/** 'no': cannot start a frame here; 'partial': might, more bytes needed; 'complete': frame of `len` bytes present (CRC unchecked). */
type Candidate = { kind: 'no' } | { kind: 'partial' } | { kind: 'complete'; len: number };
// Shared, so the byte-by-byte resynchronisation scan allocates nothing.
const NO: Candidate = { kind: 'no' };
const PARTIAL: Candidate = { kind: 'partial' };

/** The receive buffer and drop/CRC counters both framers share. Never buffers more than 512 bytes. */
abstract class RtuFramerBase {
  protected buf: Buffer = Buffer.alloc(0);
  protected droppedBytes = 0;
  protected crcErrorCount = 0;

  /** Bytes skipped as garbage, stale or unsolicited. */
  get dropped(): number {
    return this.droppedBytes;
  }

  /** Frames rejected for a wrong CRC. */
  get crcErrors(): number {
    return this.crcErrorCount;
  }

  /** Appends a received chunk (without copying when nothing is buffered), dropping the oldest bytes beyond MAX_BUFFER. */
  protected append(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    if (this.buf.length > MAX_BUFFER) this.skip(this.buf.length - MAX_BUFFER);
  }

  protected dropBuffered(): void {
    this.droppedBytes += this.buf.length;
    this.buf = Buffer.alloc(0);
  }

  protected skip(n: number): void {
    if (n <= 0) return;
    this.droppedBytes += n;
    this.buf = this.buf.subarray(n);
  }
}

/**
 * Frames the answer to the one outstanding read request (requests on one bus are strictly one at
 * a time, Serial Line V1.02 §2.1). Call `expect()` just before sending a request, then `push()`
 * every received chunk until it returns a result.
 *
 * Resynchronisation: bytes that cannot start the expected answer
 * (`addr fn 2*count ...` or the exception `addr fn|0x80 code`) are skipped and counted in
 * `dropped` (this also skips the local echo of our own request on half-duplex adapters). A
 * complete candidate whose CRC fails is garbage if another candidate starts inside it (a truncated
 * frame followed by a good one); otherwise it is a corrupted answer: `{ type: 'crc-error' }` is
 * returned once and `crcErrors` counts it. Never buffers more than 512 bytes.
 */
export class RtuResponseFramer extends RtuFramerBase {
  private exp: { address: number; fn: 3 | 4; count: number } | null = null;

  /** Sets the expectation for the next answer; bytes still buffered from before are stale and dropped. */
  expect(address: number, fn: 3 | 4, count: number): void {
    check(Number.isInteger(address) && address >= 1 && address <= 247, `address must be 1-247, got ${address}`);
    check(fn === 3 || fn === 4, `function must be 3 or 4, got ${fn}`);
    check(Number.isInteger(count) && count >= 1 && count <= 125, `count must be 1-125, got ${count}`);
    this.dropBuffered();
    this.exp = { address, fn, count };
  }

  /** Forgets the expectation and any buffered bytes (counted as dropped), e.g. after a timeout or reconnect. */
  reset(): void {
    this.dropBuffered();
    this.exp = null;
  }

  /** Feeds received bytes; returns the answer once complete, else null. Bytes with no request outstanding are dropped. */
  push(chunk: Buffer): RtuResult | null {
    if (!this.exp) {
      this.droppedBytes += chunk.length;
      return null;
    }
    this.append(chunk);
    const exp = this.exp;
    for (;;) {
      // Skip to the first position that could start the expected answer.
      let i = 0;
      while (i < this.buf.length && this.candidate(i).kind === 'no') i++;
      this.skip(i);
      const c = this.candidate(0);
      if (c.kind !== 'complete') {
        // Empty, or waiting for more bytes: keep the buffer independent of the caller's chunk.
        this.buf = Buffer.from(this.buf);
        return null;
      }
      if (crcOk(this.buf, 0, c.len)) {
        const b = this.buf;
        const result: RtuResult =
          b[1] === exp.fn
            ? { type: 'registers', address: b[0]!, fn: b[1], registers: Array.from({ length: exp.count }, (_, k) => b.readUInt16BE(3 + 2 * k)) }
            : { type: 'exception', address: b[0]!, fn: exp.fn, code: b[2]! };
        this.buf = this.buf.subarray(c.len);
        this.finish();
        return result;
      }
      // Bad CRC: garbage, or a truncated frame, if an answer could start inside it; wait if that one is still partial.
      let waiting = false;
      let next = -1;
      for (let j = 1; j < c.len && next < 0; j++) {
        const cj = this.candidate(j);
        if (cj.kind === 'partial') waiting = true;
        else if (cj.kind === 'complete' && crcOk(this.buf, j, cj.len)) next = j;
      }
      if (next > 0) {
        this.skip(next);
        continue;
      }
      if (waiting) {
        this.buf = Buffer.from(this.buf);
        return null;
      }
      this.crcErrorCount++;
      this.skip(c.len);
      this.finish();
      return { type: 'crc-error' };
    }
  }

  /** Whether the expected answer (normal or exception) could start at buf[at]. */
  private candidate(at: number): Candidate {
    const exp = this.exp!;
    const b = this.buf;
    const avail = b.length - at;
    if (b[at] !== exp.address) return NO;
    if (avail < 2) return PARTIAL;
    const fn = b[at + 1]!;
    if (fn === (exp.fn | 0x80)) {
      // Exception response: addr, fn|0x80, exception code (App. Protocol §7), CRC.
      if (avail >= 3 && b[at + 2] === 0) return NO;
      return avail >= 5 ? { kind: 'complete', len: 5 } : PARTIAL;
    }
    if (fn !== exp.fn) return NO;
    // Read response: addr, fn, byte count (= 2 x quantity, §6.3), registers, CRC.
    if (avail >= 3 && b[at + 2] !== 2 * exp.count) return NO;
    const len = 5 + 2 * exp.count;
    return avail >= len ? { kind: 'complete', len } : PARTIAL;
  }

  /** One answer per request: anything after it is dropped, and later bytes are unsolicited until the next expect(). */
  private finish(): void {
    this.dropBuffered();
    this.exp = null;
  }
}

// ---------------------------------------------------------------------------------------------
// Server side (simulators)

export type RtuRequest =
  | { address: number; fn: 3 | 4; start: number; count: number }
  | { address: number; fn: 6; register: number; value: number };

/**
 * Frames requests arriving at a simulated slave: read registers (0x03/0x04) and write single
 * register (0x06), all 8 bytes (App. Protocol §6.3, §6.4, §6.6). Requests for every address are
 * returned (on a multi-drop bus each slave picks its own). Garbage is skipped and counted in
 * `dropped`; a complete request with a bad CRC (with no request starting inside it) is discarded
 * and counted in `crcErrors` (a real slave stays silent then, Serial Line V1.02 §2.4.1).
 * Never buffers more than 512 bytes.
 */
export class RtuRequestFramer extends RtuFramerBase {
  reset(): void {
    this.dropBuffered();
  }

  push(chunk: Buffer): RtuRequest[] {
    const out: RtuRequest[] = [];
    this.append(chunk);
    for (;;) {
      let i = 0;
      while (i < this.buf.length && this.candidate(i) === 'no') i++;
      this.skip(i);
      if (this.candidate(0) !== 'complete') break;
      const b = this.buf;
      if (crcOk(b, 0, 8)) {
        const fn = b[1]!;
        const address = b[0]!;
        if (fn === 6) out.push({ address, fn, register: b.readUInt16BE(2), value: b.readUInt16BE(4) });
        else out.push({ address, fn: fn as 3 | 4, start: b.readUInt16BE(2), count: b.readUInt16BE(4) });
        this.buf = b.subarray(8);
        continue;
      }
      let waiting = false;
      let next = -1;
      for (let j = 1; j < 8 && next < 0; j++) {
        const cj = this.candidate(j);
        if (cj === 'partial') waiting = true;
        else if (cj === 'complete' && crcOk(b, j, 8)) next = j;
      }
      if (next > 0) {
        this.skip(next);
        continue;
      }
      if (waiting) break;
      this.crcErrorCount++;
      this.skip(8);
    }
    // Keep the buffer independent of the caller's chunk.
    this.buf = Buffer.from(this.buf);
    return out;
  }

  private candidate(at: number): 'no' | 'partial' | 'complete' {
    const b = this.buf;
    const avail = b.length - at;
    if (avail < 1 || b[at]! > 247) return 'no';
    if (avail < 2) return 'partial';
    const fn = b[at + 1]!;
    if (fn === 3 || fn === 4) {
      // A read is never broadcast (Serial Line §2.2) and reads 1-125 registers (§6.3).
      if (b[at] === 0) return 'no';
      if (avail >= 6) {
        const count = b.readUInt16BE(at + 4);
        if (count < 1 || count > 125) return 'no';
      }
    } else if (fn !== 6) return 'no';
    return avail >= 8 ? 'complete' : 'partial';
  }
}

/** Read response (App. Protocol §6.3/§6.4): `addr fn byte_count registers... crc_lo crc_hi`. */
export function encodeReadResponse(address: number, fn: 3 | 4, registers: number[]): Buffer {
  check(Number.isInteger(address) && address >= 1 && address <= 247, `address must be 1-247, got ${address}`);
  check(fn === 3 || fn === 4, `function must be 3 or 4, got ${fn}`);
  check(registers.length >= 1 && registers.length <= 125, `1-125 registers, got ${registers.length}`);
  const body = [address, fn, registers.length * 2];
  for (const r of registers) {
    check(isU16(r), `register value must be 0-65535, got ${r}`);
    body.push(r >> 8, r & 0xff);
  }
  return withCrc(body);
}

/**
 * Exception response (App. Protocol §7): `addr fn|0x80 code crc_lo crc_hi`. Codes: 1 illegal
 * function, 2 illegal data address, 3 illegal data value, 4 server device failure, 6 busy.
 */
export function encodeException(address: number, fn: number, code: number): Buffer {
  check(Number.isInteger(address) && address >= 1 && address <= 247, `address must be 1-247, got ${address}`);
  check(Number.isInteger(fn) && fn >= 1 && fn <= 0x7f, `function must be 1-127, got ${fn}`);
  check(Number.isInteger(code) && code >= 1 && code <= 0xff, `exception code must be 1-255, got ${code}`);
  return withCrc([address, fn | 0x80, code]);
}
