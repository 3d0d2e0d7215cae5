import { describe, expect, it } from 'vitest';
import { ErrorCode, isShelfgateError } from '../../src/errors';
import {
  crc16Gen2,
  describeM100Error,
  encodeErrorResponse,
  encodeM100Frame,
  encodeTagNotification,
  getTxPowerCommand,
  hardwareVersionCommand,
  interpretM100Frame,
  M100_FRAMING_AADD,
  M100Decoder,
  multiPollCommand,
  parseInfoResponse,
  parseM100Frame,
  parseStatusResponse,
  parseTxPowerResponse,
  setTxPowerCommand,
  singleInventoryCommand,
  stopMultiPollCommand,
  type M100Message,
} from '../../src/drivers/m100';

/** Hex with spaces, as the MagicRF M100 manual and captures print frames. */
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// Real module frames (captures from M100/R200 boards), byte for byte.
const TAG_1 = 'BB 02 22 00 11 C9 34 00 30 75 1F EB 70 5C 59 04 E3 D5 0D 70 3A 76 EF 7E';
const TAG_2 = 'BB 02 22 00 11 DC 30 00 E2 80 68 94 00 00 50 24 58 95 B5 EB D5 F9 6E 7E';
const TAG_AA = 'AA 02 22 00 11 C7 30 00 E2 80 68 90 00 00 50 0E 88 C6 A4 A7 11 9B 29 DD';
const NO_TAG = 'BB 01 FF 00 01 15 16 7E';
const HW_REPLY = 'BB 01 03 00 10 00 4D 31 30 30 20 32 36 64 42 6D 20 56 31 2E 30 92 7E';
const STOP_REPLY = 'BB 01 28 00 01 00 2A 7E';
const POWER_REPLY = 'BB 01 B6 00 01 00 B8 7E';

function tags(ms: M100Message[]): string[] {
  return ms.flatMap((m) => (m.kind === 'tag' ? [m.tag.epcHex] : []));
}

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return isShelfgateError(e) ? e.code : 'not a ShelfgateError';
  }
  return undefined;
}

describe('M100 checksums', () => {
  it('CRC-16/GENIBUS has its catalogue check value', () => {
    expect(crc16Gen2(Buffer.from('123456789'))).toBe(0xd64e);
  });

  it('the tag CRC of the real frames is the Gen2 CRC over PC+EPC', () => {
    expect(crc16Gen2(hex('34 00 30 75 1F EB 70 5C 59 04 E3 D5 0D 70'))).toBe(0x3a76);
    expect(crc16Gen2(hex('30 00 E2 80 68 94 00 00 50 24 58 95 B5 EB'))).toBe(0xd5f9);
    expect(crc16Gen2(hex('30 00 E2 80 68 90 00 00 50 0E 88 C6 A4 A7'))).toBe(0x119b);
  });
});

describe('M100 commands match the manual byte for byte', () => {
  it.each([
    ['single inventory', singleInventoryCommand(), 'BB 00 22 00 00 22 7E'],
    ['multi-poll 10000', multiPollCommand(10000), 'BB 00 27 00 03 22 27 10 83 7E'],
    ['multi-poll 65535', multiPollCommand(65535), 'BB 00 27 00 03 22 FF FF 4A 7E'],
    ['stop multi-poll', stopMultiPollCommand(), 'BB 00 28 00 00 28 7E'],
    ['hardware version', hardwareVersionCommand(), 'BB 00 03 00 01 00 04 7E'],
    ['set power 20 dBm', setTxPowerCommand(20), 'BB 00 B6 00 02 07 D0 8F 7E'],
    ['get power', getTxPowerCommand(), 'BB 00 B7 00 00 B7 7E'],
  ])('%s', (_name, got, want) => {
    expect(got.equals(hex(want))).toBe(true);
  });

  it('AA/DD framing changes only header and trailer', () => {
    expect(multiPollCommand(10000, M100_FRAMING_AADD).equals(hex('AA 00 27 00 03 22 27 10 83 DD'))).toBe(true);
  });

  it('rejects out-of-range arguments with a code', () => {
    expect(code(() => multiPollCommand(0))).toBe(ErrorCode.REQUEST_INVALID);
    expect(code(() => multiPollCommand(65536))).toBe(ErrorCode.REQUEST_INVALID);
    expect(code(() => setTxPowerCommand(-1))).toBe(ErrorCode.REQUEST_INVALID);
    expect(code(() => setTxPowerCommand(Number.NaN))).toBe(ErrorCode.REQUEST_INVALID);
    expect(code(() => new M100Decoder({ framing: { header: 0xbb, trailer: 0xbb } }))).toBe(ErrorCode.REQUEST_INVALID);
  });

  it('module-side encoders reproduce the real frames', () => {
    expect(encodeTagNotification({ rssi: -55, epc: hex('30751FEB705C5904E3D50D70'), pc: 0x3400 }).equals(hex(TAG_1))).toBe(true);
    expect(encodeTagNotification({ rssi: -57, epc: hex('E2806890000050 0E88C6A4A7'), pc: 0x3000 }, M100_FRAMING_AADD).equals(hex(TAG_AA))).toBe(true);
    expect(encodeErrorResponse(0x15).equals(hex(NO_TAG))).toBe(true);
  });
});

describe('M100 frame parser', () => {
  it('decodes the real tag notifications field by field', () => {
    const m1 = interpretM100Frame(parseM100Frame(hex(TAG_1)));
    expect(m1.kind).toBe('tag');
    if (m1.kind !== 'tag') return;
    expect(m1.tag).toEqual({ cmd: 0x22, rssi: -55, pc: 0x3400, epcHex: '30751FEB705C5904E3D50D70', crc: 0x3a76 });
    const m2 = interpretM100Frame(parseM100Frame(hex(TAG_2)));
    expect(m2.kind === 'tag' && m2.tag).toEqual({ cmd: 0x22, rssi: -36, pc: 0x3000, epcHex: 'E2806894000050245895B5EB', crc: 0xd5f9 });
    const m3 = interpretM100Frame(parseM100Frame(hex(TAG_AA), M100_FRAMING_AADD));
    expect(m3.kind === 'tag' && m3.tag).toEqual({ cmd: 0x22, rssi: -57, pc: 0x3000, epcHex: 'E2806890000050 0E88C6A4A7'.replace(' ', ''), crc: 0x119b });
  });

  it('decodes responses', () => {
    const hw = parseM100Frame(hex(HW_REPLY));
    expect(hw.cmd).toBe(0x03);
    expect(parseInfoResponse(hw.params)).toEqual({ info: 0, text: 'M100 26dBm V1.0' });
    expect(parseStatusResponse(parseM100Frame(hex(STOP_REPLY)).params)).toBe(true);
    expect(parseStatusResponse(parseM100Frame(hex(POWER_REPLY)).params)).toBe(true);
    expect(parseTxPowerResponse(parseM100Frame(hex('BB 01 B7 00 02 07 D0 91 7E')).params)).toBe(20);
  });

  it('decodes error frames; no tag is flagged as normal', () => {
    const m = interpretM100Frame(parseM100Frame(hex(NO_TAG)));
    expect(m).toMatchObject({ kind: 'error', code: 0x15, noTag: true, description: 'no tag found' });
    // 01+FF+00+01+09 = 0x10A
    expect(interpretM100Frame(parseM100Frame(hex('BB 01 FF 00 01 09 0A 7E')))).toMatchObject({ kind: 'error', code: 0x09, noTag: false, description: 'read failed' });
    expect(describeM100Error(0x10)).toBe('write failed');
    expect(describeM100Error(0x16)).toBe('wrong access password');
    expect(describeM100Error(0x13)).toBe('lock failed');
    expect(describeM100Error(0x12)).toBe('kill failed');
    expect(describeM100Error(0xa3)).toBe('tag error on read: memory overrun');
    expect(describeM100Error(0xb4)).toBe('tag error on write: memory locked');
    expect(describeM100Error(0x42)).toBe('error 0x42');
  });

  it('rejects a bad checksum, a bad tag CRC, a wrong length and an unknown command with codes', () => {
    expect(code(() => parseM100Frame(hex(TAG_1.replace('EF 7E', 'EE 7E'))))).toBe(ErrorCode.FRAME_CRC);
    // EPC byte changed and the frame checksum fixed up: only the tag CRC can tell (0x30 -> 0x31, sum +1)
    expect(code(() => interpretM100Frame(parseM100Frame(hex('BB 02 22 00 11 C9 34 00 31 75 1F EB 70 5C 59 04 E3 D5 0D 70 3A 76 F0 7E'))))).toBe(ErrorCode.FRAME_CRC);
    expect(code(() => parseM100Frame(hex('BB 01 FF 00 02 15 16 7E')))).toBe(ErrorCode.FRAME_INVALID);
    expect(code(() => parseM100Frame(hex(TAG_AA)))).toBe(ErrorCode.FRAME_INVALID); // wrong framing
    expect(code(() => interpretM100Frame(parseM100Frame(hex('BB 01 42 00 00 43 7E'))))).toBe(ErrorCode.FRAME_INVALID);
  });
});

describe('M100 streaming decoder', () => {
  const all = `${TAG_1} ${NO_TAG} ${TAG_2} ${HW_REPLY}`;

  it('decodes several frames in one chunk', () => {
    const d = new M100Decoder();
    const ms = d.push(hex(all));
    expect(ms.map((m) => m.kind)).toEqual(['tag', 'error', 'tag', 'response']);
    expect(tags(ms)).toEqual(['30751FEB705C5904E3D50D70', 'E2806894000050245895B5EB']);
    expect(d.stats.frames).toBe(4);
    expect(d.badFrames).toBe(0);
    expect(d.stats.noiseBytes).toBe(0);
  });

  it('gives the same result whatever the chunking, down to one byte at a time', () => {
    const bytes = hex(all);
    for (const size of [1, 2, 3, 5, 7, 13]) {
      const d = new M100Decoder();
      const ms: M100Message[] = [];
      for (let i = 0; i < bytes.length; i += size) ms.push(...d.push(bytes.subarray(i, i + size)));
      expect(tags(ms), `chunk ${size}`).toEqual(['30751FEB705C5904E3D50D70', 'E2806894000050245895B5EB']);
      expect(ms.length).toBe(4);
      expect(d.badFrames).toBe(0);
    }
  });

  it('accepts notifications with command byte 0x27', () => {
    // cmd 22 -> 27: checksum +5 (EF -> F4)
    const ms = new M100Decoder().push(hex('BB 02 27 00 11 C9 34 00 30 75 1F EB 70 5C 59 04 E3 D5 0D 70 3A 76 F4 7E'));
    expect(ms).toHaveLength(1);
    expect(ms[0]!.kind === 'tag' && ms[0]!.tag.cmd).toBe(0x27);
  });

  it('drops and counts a wrong frame checksum, and recovers for the next frame', () => {
    const d = new M100Decoder();
    const ms = d.push(hex(`${TAG_1.replace('EF 7E', '00 7E')} ${TAG_2}`));
    expect(tags(ms)).toEqual(['E2806894000050245895B5EB']);
    expect(d.stats.bad.checksum).toBe(1);
    expect(d.badFrames).toBe(1);
  });

  it('drops and counts a wrong tag CRC even when the frame checksum is right', () => {
    const d = new M100Decoder();
    // CRC 3A76 -> 3A77, checksum EF -> F0
    const ms = d.push(hex(`BB 02 22 00 11 C9 34 00 30 75 1F EB 70 5C 59 04 E3 D5 0D 70 3A 77 F0 7E ${TAG_2}`));
    expect(tags(ms)).toEqual(['E2806894000050245895B5EB']);
    expect(d.stats.bad.tagCrc).toBe(1);
    expect(d.badFrames).toBe(1);
  });

  it('drops a frame whose PC word disagrees with its length', () => {
    const d = new M100Decoder();
    // PC 3400 -> 3800 (7 words, frame has 6), checksum EF -> F3
    const ms = d.push(hex('BB 02 22 00 11 C9 38 00 30 75 1F EB 70 5C 59 04 E3 D5 0D 70 3A 76 F3 7E'));
    expect(ms).toEqual([]);
    expect(d.stats.bad.malformed).toBe(1);
  });

  it('counts a truncated frame (the next frame starts where its end should be)', () => {
    const d = new M100Decoder();
    const cut = TAG_1.split(' ').slice(0, 12).join(' ');
    const ms = d.push(hex(`${cut} ${TAG_2} ${NO_TAG}`));
    expect(tags(ms)).toEqual(['E2806894000050245895B5EB']);
    expect(ms.map((m) => m.kind)).toEqual(['tag', 'error']);
    expect(d.stats.bad.truncated).toBe(1);
    expect(d.stats.bad.checksum + d.stats.bad.tagCrc).toBe(0);
  });

  it('counts an oversized length at once instead of waiting for it', () => {
    const d = new M100Decoder({ maxParamBytes: 64 });
    const ms = d.push(hex(`BB 01 03 01 00 ${TAG_2}`));
    expect(tags(ms)).toEqual(['E2806894000050245895B5EB']);
    expect(d.stats.bad.oversized).toBe(1);
  });

  it('counts a well-formed frame with an unknown command', () => {
    const d = new M100Decoder();
    const ms = d.push(hex(`BB 01 42 00 00 43 7E ${NO_TAG}`));
    expect(ms.map((m) => m.kind)).toEqual(['error']);
    expect(d.stats.bad.unknownCommand).toBe(1);
  });

  it('skips garbage between frames, header bytes in it included, without a phantom tag', () => {
    const d = new M100Decoder();
    const garbage = '00 FF BB 7E 13 BB 02 11 BB BB 02 22 00 11 C9 7E 55';
    const ms = d.push(hex(`${garbage} ${TAG_1} ${garbage} ${TAG_2} ${garbage}`));
    const rest = d.push(hex(NO_TAG));
    expect(tags(ms)).toEqual(['30751FEB705C5904E3D50D70', 'E2806894000050245895B5EB']);
    expect(rest.map((m) => m.kind)).toEqual(['error']);
    expect(d.stats.frames).toBe(3);
    expect(d.stats.noiseBytes).toBeGreaterThan(0);
  });

  it('never throws and never yields a phantom tag on random bytes', () => {
    let seed = 12345;
    const rnd = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) & 0xff;
    const d = new M100Decoder();
    let n = 0;
    for (let k = 0; k < 2000; k++) {
      const chunk = Buffer.alloc(1 + (rnd() % 64));
      for (let i = 0; i < chunk.length; i++) chunk[i] = k % 3 === 0 && i % 5 === 0 ? 0xbb : rnd();
      n += tags(d.push(chunk)).length;
    }
    expect(n).toBe(0);
    // and it still decodes real frames afterwards (the pending candidate is at most maxParamBytes + 7)
    const after = d.push(Buffer.concat([hex(NO_TAG), Buffer.alloc(300, 0), hex(TAG_1)]));
    expect(tags(after)).toContain('30751FEB705C5904E3D50D70');
  });

  it('decodes AA/DD framing and treats BB/7E frames as noise there', () => {
    const d = new M100Decoder({ framing: M100_FRAMING_AADD });
    const bytes = hex(`${TAG_1} ${TAG_AA} 11 22 ${TAG_AA}`);
    const ms: M100Message[] = [];
    for (let i = 0; i < bytes.length; i += 4) ms.push(...d.push(bytes.subarray(i, i + 4)));
    expect(tags(ms)).toEqual(['E28068900000500E88C6A4A7', 'E28068900000500E88C6A4A7']);
    expect(ms[0]!.kind === 'tag' && ms[0]!.tag.rssi).toBe(-57);
  });

  it('reset() forgets a partial frame and counts it as truncated', () => {
    const d = new M100Decoder();
    expect(d.push(hex(TAG_1).subarray(0, 10))).toEqual([]);
    d.reset();
    expect(d.stats.bad.truncated).toBe(1);
    expect(tags(d.push(hex(TAG_2)))).toEqual(['E2806894000050245895B5EB']);
  });

  it('hands host commands to the module side', () => {
    const ms = new M100Decoder().push(hex('BB 00 27 00 03 22 27 10 83 7E BB 00 28 00 00 28 7E'));
    expect(ms.map((m) => m.kind)).toEqual(['command', 'command']);
    expect(ms[0]!.frame.params.equals(hex('22 27 10'))).toBe(true);
  });

  it('encodeM100Frame builds what parseM100Frame takes back, for any params', () => {
    const f = { type: 1, cmd: 0x03, params: Buffer.from('\x00M100 26dBm V1.0', 'latin1') };
    expect(encodeM100Frame(f).equals(hex(HW_REPLY))).toBe(true);
  });
});
