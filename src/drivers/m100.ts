/**
 * The serial protocol of the MagicRF M100 / QM100 UHF RFID module family (sold as R200,
 * JRD-4035, YRM100, YPD-R200...) as a pure codec: commands in, bytes out; bytes in, checked and
 * typed messages out, with a streaming decoder that resynchronises on garbage and counts every
 * frame it drops by reason. Both sides: the gateway (host) and the simulator (module). No I/O, no
 * timers. Reference: the MagicRF M100 user manual / module datasheet (frame format, command
 * codes, error codes); docs/m100.md restates the facts this file relies on.
 *
 * Frame: `header | type | cmd | len_hi len_lo | params[len] | checksum | trailer`, checksum =
 * low byte of the sum of type, cmd, both length bytes and every parameter byte. Header and
 * trailer are BB/7E on most boards and AA/DD on some (YPD-R200 and similar): a setting, not a
 * constant.
 *
 * Design choices:
 * - A tag notification is only a tag when the module's frame checksum AND the tag's own Gen2
 *   CRC-16 over PC+EPC check, and the EPC length in the PC word matches the frame length: a line
 *   error must never become a phantom tag.
 * - On any bad candidate frame the decoder drops only its header byte and scans on from the next
 *   byte: a real frame that starts inside a false one (garbage holding a header byte) is still
 *   found. Bytes skipped while looking for a header count as noise, and so does a header byte
 *   not followed by a frame type (00, 01, 02): that is garbage, not a damaged frame.
 * - The length field is trusted only up to `maxParamBytes` (default 255): beyond that the
 *   candidate is "oversized" and dropped at once instead of waiting for bytes that never come.
 *   While a candidate waits for its remaining bytes, a complete good frame found inside it
 *   proves it false (counted "truncated"): garbage that ends in something frame-like does not
 *   hold back the next real frame.
 * - The decoder never throws on input; `push()` returns the messages of one chunk, `decode()`
 *   hands them to callbacks without building an array.
 */
import { ErrorCode, ShelfgateError } from '../errors';

/** Header and trailer bytes of a frame. */
export interface M100Framing {
  header: number;
  trailer: number;
}

/** The usual framing (MagicRF M100 manual). */
export const M100_FRAMING_BB7E: Readonly<M100Framing> = Object.freeze({ header: 0xbb, trailer: 0x7e });
/** The framing of YPD-R200 and similar boards: everything else is the same. */
export const M100_FRAMING_AADD: Readonly<M100Framing> = Object.freeze({ header: 0xaa, trailer: 0xdd });

/** Frame type byte. */
export const M100Type = {
  /** Host to module. */
  COMMAND: 0x00,
  /** Module's answer to a command. */
  RESPONSE: 0x01,
  /** Module's unsolicited report (a tag seen during inventory). */
  NOTIFICATION: 0x02,
} as const;
export type M100Type = (typeof M100Type)[keyof typeof M100Type];

/** Command bytes this codec knows. */
export const M100Cmd = {
  /** Module information; param 0x00 hardware version, 0x01 software version, 0x02 manufacturer. */
  GET_INFO: 0x03,
  /** One inventory round; tag notifications (or the "no tag" error) follow. */
  SINGLE_INVENTORY: 0x22,
  /** Repeated inventory: params 0x22 + count (u16); notifications only, no response frame. */
  MULTI_POLL: 0x27,
  /** Ends multi-poll; answered with one status byte (0x00 = done). */
  STOP_MULTI_POLL: 0x28,
  /** Set transmit power, u16 in 0.01 dBm; answered with one status byte. */
  SET_TX_POWER: 0xb6,
  /** Get transmit power; answered with the u16 in 0.01 dBm. */
  GET_TX_POWER: 0xb7,
  /** Error response: one error code byte. */
  ERROR: 0xff,
} as const;
export type M100Cmd = (typeof M100Cmd)[keyof typeof M100Cmd];

const KNOWN_CMDS: ReadonlySet<number> = new Set(Object.values(M100Cmd));

/** GET_INFO parameter values. */
export const M100Info = { HARDWARE: 0x00, SOFTWARE: 0x01, MANUFACTURER: 0x02 } as const;

/** Module error codes (the byte in an ERROR response). */
export const M100Error = {
  /** The inventory found no tag: normal with an empty field, not a fault. */
  NO_TAG: 0x15,
  READ_FAIL: 0x09,
  WRITE_FAIL: 0x10,
  KILL_FAIL: 0x12,
  LOCK_FAIL: 0x13,
  ACCESS_PASSWORD: 0x16,
} as const;

/** Frame overhead: header, type, cmd, 2 length bytes, checksum, trailer. */
export const M100_OVERHEAD = 7;
/** Tag notification overhead inside params: RSSI, PC (2), tag CRC (2). */
const TAG_OVERHEAD = 5;

/** One frame: type, command and parameters (the framing bytes, length and checksum are implied). */
export interface M100Frame {
  type: number;
  cmd: number;
  params: Buffer;
}

/** A tag as reported in a notification (cmd 0x22 or 0x27). */
export interface M100TagReport {
  /** The notification's command byte (0x22 single inventory or 0x27 multi-poll; readers differ). */
  cmd: number;
  /** Signed dBm. */
  rssi: number;
  /** Protocol-control word; bits 15-11 are the EPC length in 16-bit words. */
  pc: number;
  /** The EPC, upper-case hex, 2 digits per byte. */
  epcHex: string;
  /** The tag's CRC-16 as received (already verified). */
  crc: number;
}

export type M100Message =
  | { kind: 'tag'; frame: M100Frame; tag: M100TagReport }
  | { kind: 'error'; frame: M100Frame; code: number; description: string; noTag: boolean }
  /** Any other response (info, power, status): parse its params with the parse* helpers. */
  | { kind: 'response'; frame: M100Frame }
  /** A host-to-module command (what a simulator receives). */
  | { kind: 'command'; frame: M100Frame };

/** Why the decoder dropped a candidate frame. */
export type M100BadReason = 'checksum' | 'tagCrc' | 'truncated' | 'oversized' | 'unknownCommand' | 'malformed';

export interface M100DecoderStats {
  /** Good frames handed out. */
  frames: number;
  /** Bytes skipped while looking for a header. */
  noiseBytes: number;
  /** Dropped candidate frames, by reason. */
  bad: Record<M100BadReason, number>;
}

export interface M100DecodeHandler {
  message(m: M100Message): void;
  bad?(reason: M100BadReason, detail: string): void;
  noise?(bytes: number): void;
}

// ---------------------------------------------------------------------------------------------
// Checksums

/** The frame checksum: low byte of the sum of buf[start..end). */
export function m100Checksum(buf: Buffer, start = 0, end = buf.length): number {
  let s = 0;
  for (let i = start; i < end; i++) s += buf[i]!;
  return s & 0xff;
}

const CRC_TABLE = (() => {
  const t = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 8;
    for (let b = 0; b < 8; b++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
    t[i] = c;
  }
  return t;
})();

/**
 * CRC-16/GENIBUS, the EPC Gen2 tag CRC-16: polynomial 0x1021, initial 0xFFFF, not reflected,
 * result inverted. Check value for ASCII "123456789": 0xD64E.
 */
export function crc16Gen2(buf: Buffer, start = 0, end = buf.length): number {
  let c = 0xffff;
  for (let i = start; i < end; i++) c = ((c << 8) & 0xffff) ^ CRC_TABLE[((c >> 8) ^ buf[i]!) & 0xff]!;
  return c ^ 0xffff;
}

// ---------------------------------------------------------------------------------------------
// Encoding

function checkFraming(f: M100Framing): void {
  for (const b of [f.header, f.trailer])
    if (!Number.isInteger(b) || b < 0 || b > 0xff) throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `M100: framing byte must be 0-255, got ${b}`);
  if (f.header === f.trailer) throw new ShelfgateError(ErrorCode.REQUEST_INVALID, 'M100: header and trailer must differ');
}

/** Builds the bytes of one frame. */
export function encodeM100Frame(frame: M100Frame, framing: M100Framing = M100_FRAMING_BB7E): Buffer {
  checkFraming(framing);
  const { type, cmd, params } = frame;
  if (!Number.isInteger(type) || type < 0 || type > 0xff || !Number.isInteger(cmd) || cmd < 0 || cmd > 0xff)
    throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `M100: type and cmd must be bytes, got ${type}, ${cmd}`);
  if (params.length > 0xffff) throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `M100: ${params.length} parameter bytes do not fit the length field`);
  const out = Buffer.alloc(params.length + M100_OVERHEAD);
  out[0] = framing.header;
  out[1] = type;
  out[2] = cmd;
  out.writeUInt16BE(params.length, 3);
  params.copy(out, 5);
  out[5 + params.length] = m100Checksum(out, 1, 5 + params.length);
  out[6 + params.length] = framing.trailer;
  return out;
}

const command = (cmd: number, params: number[], framing?: M100Framing): Buffer =>
  encodeM100Frame({ type: M100Type.COMMAND, cmd, params: Buffer.from(params) }, framing);

/** GET_INFO 0x00: the hardware version (answered with 0x00 + ASCII, e.g. "M100 26dBm V1.0"). */
export function hardwareVersionCommand(framing?: M100Framing): Buffer {
  return command(M100Cmd.GET_INFO, [M100Info.HARDWARE], framing);
}

export function getTxPowerCommand(framing?: M100Framing): Buffer {
  return command(M100Cmd.GET_TX_POWER, [], framing);
}

/** Transmit power in dBm, sent in 0.01 dBm steps (20 dBm -> 0x07D0). */
export function setTxPowerCommand(dBm: number, framing?: M100Framing): Buffer {
  const v = Math.round(dBm * 100);
  if (!Number.isFinite(dBm) || v < 0 || v > 0xffff) throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `M100: transmit power ${dBm} dBm is out of range`);
  return command(M100Cmd.SET_TX_POWER, [v >> 8, v & 0xff], framing);
}

export function singleInventoryCommand(framing?: M100Framing): Buffer {
  return command(M100Cmd.SINGLE_INVENTORY, [], framing);
}

/** Multi-poll: `count` inventory rounds (1-65535), then the module stops by itself. */
export function multiPollCommand(count: number, framing?: M100Framing): Buffer {
  if (!Number.isInteger(count) || count < 1 || count > 0xffff) throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `M100: multi-poll count must be 1-65535, got ${count}`);
  return command(M100Cmd.MULTI_POLL, [0x22, count >> 8, count & 0xff], framing);
}

export function stopMultiPollCommand(framing?: M100Framing): Buffer {
  return command(M100Cmd.STOP_MULTI_POLL, [], framing);
}

/** Module side: a tag notification (params RSSI, PC, EPC, CRC). The CRC is computed unless given. */
export function encodeTagNotification(
  t: { rssi: number; epc: Buffer; pc?: number; crc?: number; cmd?: number },
  framing?: M100Framing,
): Buffer {
  if (t.epc.length % 2 !== 0 || t.epc.length > 62) throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `M100: EPC must be 0-62 bytes, whole words; got ${t.epc.length}`);
  const pc = t.pc ?? (t.epc.length / 2) << 11;
  const params = Buffer.alloc(t.epc.length + TAG_OVERHEAD);
  params.writeInt8(Math.max(-128, Math.min(127, Math.round(t.rssi))), 0);
  params.writeUInt16BE(pc, 1);
  t.epc.copy(params, 3);
  params.writeUInt16BE(t.crc ?? crc16Gen2(params, 1, 3 + t.epc.length), 3 + t.epc.length);
  return encodeM100Frame({ type: M100Type.NOTIFICATION, cmd: t.cmd ?? M100Cmd.SINGLE_INVENTORY, params }, framing);
}

/** Module side: an error response carrying `code`. */
export function encodeErrorResponse(code: number, framing?: M100Framing): Buffer {
  return encodeM100Frame({ type: M100Type.RESPONSE, cmd: M100Cmd.ERROR, params: Buffer.from([code & 0xff]) }, framing);
}

// ---------------------------------------------------------------------------------------------
// Parsing

/** What an error code means (unknown codes are named by number). */
export function describeM100Error(code: number): string {
  switch (code) {
    case M100Error.NO_TAG:
      return 'no tag found';
    case M100Error.READ_FAIL:
      return 'read failed';
    case M100Error.WRITE_FAIL:
      return 'write failed';
    case M100Error.KILL_FAIL:
      return 'kill failed';
    case M100Error.LOCK_FAIL:
      return 'lock failed';
    case M100Error.ACCESS_PASSWORD:
      return 'wrong access password';
  }
  const hi = code & 0xf0;
  if (hi === 0xa0) return `tag error on read: ${gen2TagError(code & 0x0f)}`;
  if (hi === 0xb0) return `tag error on write: ${gen2TagError(code & 0x0f)}`;
  return `error 0x${hex2(code)}`;
}

/** EPC Gen2 tag error codes (the low nibble of A0/B0 codes). */
function gen2TagError(c: number): string {
  switch (c) {
    case 0x00:
      return 'other error';
    case 0x03:
      return 'memory overrun';
    case 0x04:
      return 'memory locked';
    case 0x0b:
      return 'insufficient power';
    case 0x0f:
      return 'non-specific error';
    default:
      return `code 0x${hex2(c)}`;
  }
}

const hex2 = (n: number): string => n.toString(16).toUpperCase().padStart(2, '0');

/**
 * Checks a tag notification's params: PC says how many EPC words follow, the frame length must
 * agree, and the tag CRC-16 over PC+EPC must check. Returns the report, or the reason it is bad.
 */
export function checkTagParams(cmd: number, p: Buffer): M100TagReport | { bad: 'malformed' | 'tagCrc'; detail: string } {
  if (p.length < TAG_OVERHEAD) return { bad: 'malformed', detail: `tag notification with ${p.length} parameter bytes` };
  const pc = p.readUInt16BE(1);
  const epcLen = (pc >> 11) * 2;
  if (epcLen !== p.length - TAG_OVERHEAD) return { bad: 'malformed', detail: `PC 0x${pc.toString(16)} says ${epcLen} EPC bytes, frame has ${p.length - TAG_OVERHEAD}` };
  const crc = p.readUInt16BE(3 + epcLen);
  const want = crc16Gen2(p, 1, 3 + epcLen);
  if (crc !== want) return { bad: 'tagCrc', detail: `tag CRC 0x${crc.toString(16)} != 0x${want.toString(16)}` };
  return { cmd, rssi: p.readInt8(0), pc, epcHex: p.toString('hex', 3, 3 + epcLen).toUpperCase(), crc };
}

/** Parses exactly one complete frame (framing, length, checksum). Throws FRAME_INVALID or FRAME_CRC. */
export function parseM100Frame(buf: Buffer, framing: M100Framing = M100_FRAMING_BB7E): M100Frame {
  if (buf.length < M100_OVERHEAD) throw new ShelfgateError(ErrorCode.FRAME_INVALID, `M100: ${buf.length} bytes is shorter than a frame`);
  if (buf[0] !== framing.header) throw new ShelfgateError(ErrorCode.FRAME_INVALID, `M100: header 0x${hex2(buf[0]!)}, expected 0x${hex2(framing.header)}`);
  const len = buf.readUInt16BE(3);
  if (buf.length !== len + M100_OVERHEAD) throw new ShelfgateError(ErrorCode.FRAME_INVALID, `M100: length field ${len} does not match ${buf.length} frame bytes`);
  if (buf[buf.length - 1] !== framing.trailer) throw new ShelfgateError(ErrorCode.FRAME_INVALID, `M100: trailer 0x${hex2(buf[buf.length - 1]!)}, expected 0x${hex2(framing.trailer)}`);
  const sum = m100Checksum(buf, 1, 5 + len);
  if (sum !== buf[5 + len]) throw new ShelfgateError(ErrorCode.FRAME_CRC, `M100: checksum 0x${hex2(buf[5 + len]!)}, computed 0x${hex2(sum)}`);
  return { type: buf[1]!, cmd: buf[2]!, params: Buffer.from(buf.subarray(5, 5 + len)) };
}

/**
 * Classifies a checked frame. Throws FRAME_INVALID for an unknown type or command, a malformed
 * tag notification; FRAME_CRC for a wrong tag CRC.
 */
export function interpretM100Frame(frame: M100Frame): M100Message {
  const r = classify(frame);
  if ('bad' in r) throw new ShelfgateError(r.bad === 'tagCrc' ? ErrorCode.FRAME_CRC : ErrorCode.FRAME_INVALID, `M100: ${r.detail}`);
  return r;
}

function classify(frame: M100Frame): M100Message | { bad: M100BadReason; detail: string } {
  const { type, cmd, params } = frame;
  if (!KNOWN_CMDS.has(cmd)) return { bad: 'unknownCommand', detail: `unknown command 0x${hex2(cmd)} (type 0x${hex2(type)})` };
  if (type === M100Type.NOTIFICATION) {
    if (cmd !== M100Cmd.SINGLE_INVENTORY && cmd !== M100Cmd.MULTI_POLL) return { bad: 'unknownCommand', detail: `notification with command 0x${hex2(cmd)}` };
    const t = checkTagParams(cmd, params);
    return 'bad' in t ? t : { kind: 'tag', frame, tag: t };
  }
  if (type === M100Type.RESPONSE) {
    if (cmd === M100Cmd.ERROR) {
      if (params.length < 1) return { bad: 'malformed', detail: 'error response without a code' };
      const code = params[0]!;
      return { kind: 'error', frame, code, description: describeM100Error(code), noTag: code === M100Error.NO_TAG };
    }
    return { kind: 'response', frame };
  }
  if (type === M100Type.COMMAND) return { kind: 'command', frame };
  return { bad: 'unknownCommand', detail: `unknown frame type 0x${hex2(type)}` };
}

/** GET_INFO response params: the info type byte, then ASCII. */
export function parseInfoResponse(params: Buffer): { info: number; text: string } {
  if (params.length < 1) throw new ShelfgateError(ErrorCode.FRAME_INVALID, 'M100: empty info response');
  return { info: params[0]!, text: params.toString('latin1', 1).replace(/\0+$/, '') };
}

/** GET_TX_POWER response params: u16 in 0.01 dBm. Returns dBm. */
export function parseTxPowerResponse(params: Buffer): number {
  if (params.length !== 2) throw new ShelfgateError(ErrorCode.FRAME_INVALID, `M100: power response with ${params.length} bytes, expected 2`);
  return params.readUInt16BE(0) / 100;
}

/** One-byte status responses (SET_TX_POWER, STOP_MULTI_POLL): true for 0x00 (done). */
export function parseStatusResponse(params: Buffer): boolean {
  if (params.length !== 1) throw new ShelfgateError(ErrorCode.FRAME_INVALID, `M100: status response with ${params.length} bytes, expected 1`);
  return params[0] === 0x00;
}

// ---------------------------------------------------------------------------------------------
// Streaming decoder

export interface M100DecoderOptions {
  framing?: M100Framing;
  /** Largest length field believed; longer candidates are "oversized". Default 255. */
  maxParamBytes?: number;
}

const noop = (): void => undefined;

/**
 * Feeds on a byte stream split anywhere; hands out checked messages; drops and counts the rest.
 * Never throws on input; keeps at most one candidate frame (maxParamBytes + 7 bytes) between chunks.
 */
export class M100Decoder {
  readonly stats: M100DecoderStats = {
    frames: 0,
    noiseBytes: 0,
    bad: { checksum: 0, tagCrc: 0, truncated: 0, oversized: 0, unknownCommand: 0, malformed: 0 },
  };
  private readonly header: number;
  private readonly trailer: number;
  private readonly maxParamBytes: number;
  /** Bytes kept from the previous chunk: always empty or starting with a header byte. */
  private pending: Buffer = Buffer.alloc(0);
  private collected: M100Message[] = [];
  private readonly collector: M100DecodeHandler = { message: (m) => this.collected.push(m) };

  constructor(opts: M100DecoderOptions = {}) {
    const f = opts.framing ?? M100_FRAMING_BB7E;
    checkFraming(f);
    this.header = f.header;
    this.trailer = f.trailer;
    this.maxParamBytes = opts.maxParamBytes ?? 255;
    if (!Number.isInteger(this.maxParamBytes) || this.maxParamBytes < 1 || this.maxParamBytes > 0xffff)
      throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `M100: maxParamBytes must be 1-65535, got ${this.maxParamBytes}`);
  }

  /** Decodes one chunk and returns its messages. */
  push(chunk: Buffer): M100Message[] {
    this.collected = [];
    this.decode(chunk, this.collector);
    return this.collected;
  }

  /** Decodes one chunk, handing messages, drops and noise to `h` as they are found. */
  decode(chunk: Buffer, h: M100DecodeHandler): void {
    const buf = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const bad = h.bad ?? noop;
    const noise = h.noise ?? noop;
    let i = 0;
    const n = buf.length;
    while (i < n) {
      if (buf[i] !== this.header) {
        let j = i + 1;
        while (j < n && buf[j] !== this.header) j++;
        this.stats.noiseBytes += j - i;
        noise(j - i);
        i = j;
        continue;
      }
      if (n - i < 2) break;
      if (buf[i + 1]! > M100Type.NOTIFICATION) {
        // No frame type follows: this header byte is line noise, not the start of a frame.
        this.stats.noiseBytes++;
        noise(1);
        i++;
        continue;
      }
      if (n - i < 5) break; // need the length field
      const len = (buf[i + 3]! << 8) | buf[i + 4]!;
      if (len > this.maxParamBytes) {
        this.drop(bad, 'oversized', `length field ${len} > ${this.maxParamBytes}`);
        i++;
        continue;
      }
      const total = len + M100_OVERHEAD;
      if (n - i < total) {
        // Wait for the rest, unless a complete good frame already starts inside this candidate:
        // then the candidate was a header byte in garbage (or a frame cut short) and waiting for
        // its length would hold back the real frame.
        if (!this.goodFrameWithin(buf, i + 1, n)) break;
        this.drop(bad, 'truncated', `a frame starts inside the ${len}-byte frame announced before it`);
        i++;
        continue;
      }
      if (buf[i + total - 1] !== this.trailer) {
        this.drop(bad, 'truncated', `no trailer where length ${len} puts it`);
        i++;
        continue;
      }
      const sum = m100Checksum(buf, i + 1, i + 5 + len);
      if (sum !== buf[i + 5 + len]) {
        this.drop(bad, 'checksum', `checksum 0x${hex2(buf[i + 5 + len]!)}, computed 0x${hex2(sum)}`);
        i++;
        continue;
      }
      const frame: M100Frame = { type: buf[i + 1]!, cmd: buf[i + 2]!, params: Buffer.from(buf.subarray(i + 5, i + 5 + len)) };
      const r = classify(frame);
      if ('bad' in r) {
        // A checked frame that is still wrong: the whole frame is consumed (its bytes were sent as one frame).
        this.drop(bad, r.bad, r.detail);
      } else {
        this.stats.frames++;
        h.message(r);
      }
      i += total;
    }
    this.pending = i >= n ? Buffer.alloc(0) : Buffer.from(buf.subarray(i));
  }

  /** Forgets a partial frame (link up/down); a partial frame in hand counts as truncated. */
  reset(): void {
    if (this.pending.length > 0) this.stats.bad.truncated++;
    this.pending = Buffer.alloc(0);
  }

  /** Sum of all dropped frames. */
  get badFrames(): number {
    const b = this.stats.bad;
    return b.checksum + b.tagCrc + b.truncated + b.oversized + b.unknownCommand + b.malformed;
  }

  /** True when a complete frame with a right trailer and checksum starts at some k in [from, n). */
  private goodFrameWithin(buf: Buffer, from: number, n: number): boolean {
    for (let k = from; k + M100_OVERHEAD <= n; k++) {
      if (buf[k] !== this.header || buf[k + 1]! > M100Type.NOTIFICATION) continue;
      const len = (buf[k + 3]! << 8) | buf[k + 4]!;
      if (len > this.maxParamBytes || k + len + M100_OVERHEAD > n) continue;
      if (buf[k + len + M100_OVERHEAD - 1] === this.trailer && m100Checksum(buf, k + 1, k + 5 + len) === buf[k + 5 + len]) return true;
    }
    return false;
  }

  private drop(bad: (reason: M100BadReason, detail: string) => void, reason: M100BadReason, detail: string): void {
    this.stats.bad[reason]++;
    bad(reason, detail);
  }
}
