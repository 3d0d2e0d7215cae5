/**
 * The LLRP codec against frames our encoder did not make: the LLRP 1.0.1 examples (decoded field by
 * field by Wireshark's LLRP dissector), captured reader traffic published by sllurp
 * (test/fixtures/llrp), and messages written here by hand from the standard's layouts.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  decodeMessage,
  encodeAddRoSpec,
  encodeCloseConnection,
  encodeCustomParam,
  encodeErrorMessage,
  encodeGetReaderCapabilities,
  encodeKeepalive,
  encodeKeepaliveAck,
  encodeReaderEventNotification,
  encodeResponse,
  encodeRoAccessReport,
  encodeRoSpecOp,
  encodeSetReaderConfig,
  LlrpFramer,
  MsgType,
  newDecodeStats,
  type LlrpMessage,
} from '../../src/drivers/llrp';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const fixture = (name: string): Buffer => hex(readFileSync(join(__dirname, '../fixtures/llrp', name), 'utf8'));

// LLRP 1.0.1 examples (see docs/llrp.md, "Test fixtures")
const RO_ACCESS_REPORT_7 = hex(`04 3D 00 00 00 2C 00 00 00 07 00 F0 00 22 8D 30 74 25 7B F7 19 4E 40 00 00 1A 85 81 00 02 86 CC
  82 00 06 44 F6 D5 D0 92 40 88 00 03`);
const READER_EVENT_0 = hex('04 3F 00 00 00 20 00 00 00 00 00 F6 00 16 00 80 00 0C 00 06 44 F6 D5 CE B0 00 01 00 00 06 00 00');
const KEEPALIVE_16 = hex('04 3E 00 00 00 0A 00 00 00 10');
const KEEPALIVE_ACK_16 = hex('04 48 00 00 00 0A 00 00 00 10');
// sllurp tests/test_all.py TestReaderEventNotification (captured, and sllurp's own encoding with timestamp 0)
const SLLURP_REN = hex('043f000000200ab288c900f600160080000c0004f8535baadaff010000060000');
const SLLURP_REN_TS0 = hex('043f000000200000000000f600160080000c0000000000000000010000060000');

function only<K extends LlrpMessage['kind']>(m: LlrpMessage, kind: K): Extract<LlrpMessage, { kind: K }> {
  expect(m.kind, JSON.stringify(m)).toBe(kind);
  return m as Extract<LlrpMessage, { kind: K }>;
}

describe('LLRP decoding: standard examples', () => {
  it('RO_ACCESS_REPORT with one TagReportData (EPC-96 TV, antenna, peak RSSI, first seen, seen count)', () => {
    const m = only(decodeMessage(RO_ACCESS_REPORT_7), 'ro_access_report');
    expect(m.id).toBe(7);
    expect(m.tags).toEqual([{ epcHex: '3074257bf7194e4000001a85', epcBits: 96, antennaId: 2, peakRssi: -52, firstSeenUtcUs: 1764676800123456, seenCount: 3 }]);
  });

  it('READER_EVENT_NOTIFICATION with a UTCTimestamp and a successful ConnectionAttemptEvent', () => {
    const m = only(decodeMessage(READER_EVENT_0), 'reader_event');
    expect(m).toEqual({ kind: 'reader_event', id: 0, timestampUs: 1764676800000000, events: [{ type: 'connection_attempt', status: 0 }] });
  });

  it('a refused connection: ConnectionAttemptEvent status 2 (a client-initiated connection already exists)', () => {
    const b = Buffer.from(READER_EVENT_0);
    b[b.length - 1] = 2;
    expect(only(decodeMessage(b), 'reader_event').events).toEqual([{ type: 'connection_attempt', status: 2 }]);
  });

  it('KEEPALIVE', () => {
    expect(decodeMessage(KEEPALIVE_16)).toEqual({ kind: 'keepalive', id: 16 });
  });
});

describe('LLRP decoding: sllurp test data (captured reader traffic)', () => {
  it('READER_EVENT_NOTIFICATION from a reader', () => {
    const m = only(decodeMessage(SLLURP_REN), 'reader_event');
    expect(m.id).toBe(0x0ab288c9);
    expect(m.timestampUs).toBe(1398936810740479); // 0x0004f8535baadaff
    expect(m.events).toEqual([{ type: 'connection_attempt', status: 0 }]);
  });

  it('45 RO_ACCESS_REPORTs in 1991 bytes, framed from 7-byte chunks: 44 EPC-96 tags and one 144-bit EPCData', () => {
    const stream = fixture('sllurp-ro-access-reports.hex');
    expect(stream.length).toBe(1991);
    const framer = new LlrpFramer();
    const stats = newDecodeStats();
    const msgs: LlrpMessage[] = [];
    for (let i = 0; i < stream.length; i += 7) {
      const { frames, desync } = framer.push(stream.subarray(i, i + 7));
      expect(desync).toBeUndefined();
      for (const f of frames) msgs.push(decodeMessage(f, stats));
    }
    expect(framer.pending).toBe(0);
    expect(msgs).toHaveLength(45);
    const reports = msgs.map((m) => only(m, 'ro_access_report'));
    expect(reports.map((r) => r.id)).toEqual(Array.from({ length: 45 }, (_, i) => 0x4095892f + i));
    const tags = reports.flatMap((r) => r.tags);
    expect(tags).toHaveLength(45);
    expect(tags[0]).toEqual({ epcHex: '3005fb63ac1f3841ec880467', epcBits: 96, antennaId: 1, peakRssi: -50, firstSeenUtcUs: 1385585041558537, seenCount: 1 });
    expect(tags[1]).toMatchObject({ epcHex: '300833b2ddd906c000000000', peakRssi: -58 });
    const long = tags.filter((t) => t.epcBits !== 96);
    expect(long).toEqual([{ epcHex: '1fb41f712ac9c37ab79d618173188324001a', epcBits: 144, antennaId: 1, peakRssi: -17, firstSeenUtcUs: 1385585041743703, seenCount: 1 }]);
    expect(new Set(tags.map((t) => t.epcHex)).size).toBe(3);
    expect(stats).toMatchObject({ messages: 45, malformed: 0, customParams: 0, unknownParams: 0, tagsWithoutEpc: 0 });
  });

  it('GET_READER_CONFIG_RESPONSE from an Impinj reader: status read, its 14 top-level vendor Custom parameters skipped and counted', () => {
    const frame = fixture('sllurp-get-reader-config-response.hex');
    expect(frame.length).toBe(843);
    const stats = newDecodeStats();
    const m = only(decodeMessage(frame, stats), 'response');
    expect(m).toMatchObject({ type: MsgType.GET_READER_CONFIG_RESPONSE, id: 3, status: { code: 0, description: '' } });
    expect(stats.customParams).toBe(14);
    expect(stats.malformed).toBe(0);
  });
});

describe('LLRP decoding: hand-written messages', () => {
  it('an ADD_ROSPEC_RESPONSE refusing the ROSpec: status code, description, ParameterError with its FieldError', () => {
    const m = only(
      decodeMessage(hex(`
        04 1E 00000029 00000005
        011F 001F 0064 0007 ${Buffer.from('bad ant').toString('hex')}
          0121 0010 00B7 0065
            0120 0008 0001 012D`)),
      'response',
    );
    expect(m).toEqual({
      kind: 'response', type: 30, id: 5,
      status: { code: 100, description: 'bad ant', parameterError: { parameterType: 183, errorCode: 101, fieldError: { fieldNum: 1, errorCode: 301 } } },
    });
  });

  it('ERROR_MESSAGE with M_UnsupportedVersion', () => {
    const m = only(decodeMessage(hex(`04 64 00000015 0000002A 011F 000B 006E 0003 ${Buffer.from('v2?').toString('hex')}`)), 'error_message');
    expect(m).toEqual({ kind: 'error_message', id: 42, status: { code: 110, description: 'v2?' } });
  });

  it('GET_READER_CAPABILITIES_RESPONSE: GeneralDeviceCapabilities (antennas, UTC clock, manufacturer, model, firmware)', () => {
    const m = only(
      decodeMessage(hex(`04 0B 00000028 00000001
        011F 0008 0000 0000
        0089 0016 0004 4000 0000651A 001E886A 0004 ${Buffer.from('5.12').toString('hex')}`)),
      'response',
    );
    expect(m.capabilities).toEqual({ maxAntennas: 4, canSetAntennaProperties: false, hasUtcClock: true, manufacturer: 25882, model: 2001002, firmware: '5.12' });
  });

  it('READER_EVENT_NOTIFICATION with an AntennaEvent (disconnected) and a ROSpecEvent', () => {
    const m = only(
      decodeMessage(hex(`04 3F 0000002E 00000009
        00F6 0024 0080 000C 0006 44F6 D5CE B000
          00FF 0007 00 0003
          00F9 000D 01 00000007 00000000`)),
      'reader_event',
    );
    expect(m.events).toEqual([
      { type: 'antenna', connected: false, antennaId: 3 },
      { type: 'rospec', eventType: 1, rospecId: 7, preemptingRospecId: 0 },
    ]);
  });

  it('a vendor Custom parameter and an unknown parameter inside a TagReportData are skipped by length and counted; the tag survives', () => {
    const stats = newDecodeStats();
    const m = only(
      decodeMessage(hex(`04 3D 00000034 00000001
        00F0 002A 8D 3074257BF7194E4000001A85
          03FF 000E 0000651A 00000001 BEEF
          03E7 0006 ABCD
          81 0002 86 CC`), stats),
      'ro_access_report',
    );
    expect(m.tags).toEqual([{ epcHex: '3074257bf7194e4000001a85', epcBits: 96, antennaId: 2, peakRssi: -52 }]);
    expect(stats).toMatchObject({ customParams: 1, unknownParams: 1, malformed: 0 });
  });

  it('an unknown TV type ends its parameter list (it has no length): what follows is dropped and counted', () => {
    const stats = newDecodeStats();
    const m = only(decodeMessage(hex('04 3D 00000021 00000001 00F0 0017 8D 3074257BF7194E4000001A85 FF 01 02 81 0002'), stats), 'ro_access_report');
    expect(m.tags).toEqual([{ epcHex: '3074257bf7194e4000001a85', epcBits: 96 }]);
    expect(stats.unknownTv).toBe(1);
  });

  it('a TagReportData without an EPC is dropped and counted, never a tag', () => {
    const stats = newDecodeStats();
    const m = only(decodeMessage(hex('04 3D 00000013 00000001 00F0 0009 81 0002 86 CC'), stats), 'ro_access_report');
    expect(m.tags).toEqual([]);
    expect(stats.tagsWithoutEpc).toBe(1);
  });

  it('a parameter whose length runs past its parent makes the whole report invalid: no phantom tag', () => {
    const bad = Buffer.from(RO_ACCESS_REPORT_7);
    bad.writeUInt16BE(0x0040, 12); // TagReportData claims 64 bytes, 34 are there
    const stats = newDecodeStats();
    const m = only(decodeMessage(bad, stats), 'invalid');
    expect(m).toMatchObject({ reason: 'malformed', type: 61, id: 7 });
    expect(stats.malformed).toBe(1);
  });

  it('a TLV length below its own header (4) is malformed', () => {
    const bad = Buffer.from(RO_ACCESS_REPORT_7);
    bad.writeUInt16BE(0x0002, 12);
    expect(decodeMessage(bad)).toMatchObject({ kind: 'invalid', reason: 'malformed' });
  });

  it('a truncated TV value is malformed', () => {
    expect(decodeMessage(hex('04 3D 00000013 00000001 00F0 0009 8D 3074257B F7'))).toMatchObject({ kind: 'invalid', reason: 'malformed' });
  });

  it('version 2 (LLRP 1.1) is counted as unsupported, not decoded', () => {
    const v2 = Buffer.from(KEEPALIVE_16);
    v2[0] = 0x08; // version bits 010
    const stats = newDecodeStats();
    expect(decodeMessage(v2, stats)).toMatchObject({ kind: 'invalid', reason: 'unsupported_version' });
    expect(stats.unsupportedVersion).toBe(1);
  });

  it('an unknown message type is counted, and a frame shorter than its length field is invalid', () => {
    const stats = newDecodeStats();
    expect(decodeMessage(hex('04 4D 0000000A 00000001'), stats)).toEqual({ kind: 'unknown', type: 77, id: 1 });
    expect(stats.unknownMessages).toBe(1);
    expect(decodeMessage(hex('04 3E 0000000B 00000001'))).toMatchObject({ kind: 'invalid', reason: 'malformed' });
    expect(decodeMessage(hex('04 3E'))).toMatchObject({ kind: 'invalid', reason: 'malformed' });
  });
});

describe('LLRP framing', () => {
  it('one chunk with several messages and the start of another; the rest arrives later', () => {
    const framer = new LlrpFramer();
    const all = Buffer.concat([KEEPALIVE_16, READER_EVENT_0, RO_ACCESS_REPORT_7]);
    const a = framer.push(all.subarray(0, 50));
    expect(a.frames.map((f) => f.length)).toEqual([10, 32]);
    expect(framer.pending).toBe(8);
    const b = framer.push(all.subarray(50));
    expect(b.frames).toHaveLength(1);
    expect(b.frames[0].equals(RO_ACCESS_REPORT_7)).toBe(true);
  });

  it('a length field smaller than the header is rejected, counted, and the buffer dropped, without throwing', () => {
    const framer = new LlrpFramer();
    const r = framer.push(Buffer.concat([KEEPALIVE_16, hex('04 3E 00000004 00000001')]));
    expect(r.frames).toHaveLength(1);
    expect(r.desync).toEqual({ reason: 'length_too_small', length: 4 });
    expect(framer.stats.rejects).toEqual({ length_too_small: 1, length_too_large: 0 });
    expect(framer.pending).toBe(0);
  });

  it('a length field over the maximum (1 MiB by default) is rejected before any of it is buffered', () => {
    const framer = new LlrpFramer();
    const r = framer.push(hex('04 3D 7FFFFFFF 00000001 00F0'));
    expect(r.desync).toEqual({ reason: 'length_too_large', length: 0x7fffffff });
    expect(framer.stats.rejects.length_too_large).toBe(1);
    const small = new LlrpFramer({ maxMessageBytes: 40 });
    expect(small.push(RO_ACCESS_REPORT_7).desync?.reason).toBe('length_too_large');
  });

  it('reset() drops a partial message and says how much', () => {
    const framer = new LlrpFramer();
    framer.push(RO_ACCESS_REPORT_7.subarray(0, 20));
    expect(framer.reset()).toBe(20);
    expect(framer.pending).toBe(0);
  });
});

describe('LLRP encoding against the fixtures', () => {
  it('reader side: RO_ACCESS_REPORT, READER_EVENT_NOTIFICATION and KEEPALIVE are byte-exact', () => {
    expect(encodeRoAccessReport(7, [{ epcHex: '3074257bf7194e4000001a85', epcBits: 96, antennaId: 2, peakRssi: -52, firstSeenUtcUs: 1764676800123456, seenCount: 3 }]).equals(RO_ACCESS_REPORT_7)).toBe(true);
    expect(encodeReaderEventNotification(0, 1764676800000000, [{ type: 'connection_attempt', status: 0 }]).equals(READER_EVENT_0)).toBe(true);
    expect(encodeReaderEventNotification(0, 0, [{ type: 'connection_attempt', status: 0 }]).equals(SLLURP_REN_TS0)).toBe(true);
    expect(encodeKeepalive(16).equals(KEEPALIVE_16)).toBe(true);
  });

  it('reader side: the 144-bit EPCData report from sllurp re-encodes to the captured bytes', () => {
    const stream = fixture('sllurp-ro-access-reports.hex');
    const framer = new LlrpFramer();
    const frames = framer.push(stream).frames;
    for (const f of frames) {
      const m = only(decodeMessage(f), 'ro_access_report');
      expect(encodeRoAccessReport(m.id, m.tags).equals(f)).toBe(true);
    }
  });

  it('reader side: a response with LLRPStatus and an ERROR_MESSAGE match hand-written bytes', () => {
    expect(encodeResponse(MsgType.ADD_ROSPEC_RESPONSE, 5, { code: 100, description: 'bad ant', parameterError: { parameterType: 183, errorCode: 101, fieldError: { fieldNum: 1, errorCode: 301 } } })
      .equals(hex(`04 1E 00000029 00000005 011F 001F 0064 0007 ${Buffer.from('bad ant').toString('hex')} 0121 0010 00B7 0065 0120 0008 0001 012D`))).toBe(true);
    expect(encodeResponse(MsgType.START_ROSPEC_RESPONSE, 9).equals(hex('04 20 00000012 00000009 011F 0008 0000 0000'))).toBe(true);
    expect(encodeErrorMessage(42, { code: 110, description: 'v2?' }).equals(hex(`04 64 00000015 0000002A 011F 000B 006E 0003 ${Buffer.from('v2?').toString('hex')}`))).toBe(true);
  });

  it('client side: KEEPALIVE_ACK echoes the id; the one-field requests match hand-written bytes', () => {
    expect(encodeKeepaliveAck(16).equals(KEEPALIVE_ACK_16)).toBe(true);
    expect(encodeGetReaderCapabilities(1).equals(hex('04 01 0000000B 00000001 00'))).toBe(true);
    expect(encodeRoSpecOp(MsgType.DELETE_ROSPEC, 2, 0).equals(hex('04 15 0000000E 00000002 00000000'))).toBe(true);
    expect(encodeRoSpecOp(MsgType.ENABLE_ROSPEC, 3, 7).equals(hex('04 18 0000000E 00000003 00000007'))).toBe(true);
    expect(encodeRoSpecOp(MsgType.START_ROSPEC, 4, 7).equals(hex('04 16 0000000E 00000004 00000007'))).toBe(true);
    expect(encodeCloseConnection(5).equals(hex('04 0E 0000000A 00000005'))).toBe(true);
  });

  it('client side: SET_READER_CONFIG carries the TagReportContentSelector flags sllurp expects (antenna, RSSI, first/last seen, count = 0x1780)', () => {
    const m = encodeSetReaderConfig(6, { resetToFactoryDefault: true, keepaliveMs: 10_000, report: { trigger: 2, n: 1, content: { antennaId: true, peakRssi: true, firstSeen: true, lastSeen: true, seenCount: true } } });
    // header, ResetToFactoryDefault bit, ROReportSpec(trigger 2, N 1, selector), KeepaliveSpec(periodic, 10 000 ms)
    expect(m.equals(hex('04 03 00000021 00000006 80 00ED 000D 02 0001 00EE 0006 1780 00DC 0009 01 00002710'))).toBe(true);
  });

  it('client side: ADD_ROSPEC for an immediate zone on antennas 1 and 2 (assembled here parameter by parameter)', () => {
    const expected = hex(`04 14 0000004D 00000008
      00B1 0043 00000007 00 00
        00B2 0012
          00B3 0005 00
          00B6 0009 00 00000000
        00B7 001A 0002 0001 0002
          00B8 0009 00 00000000
          00BA 0007 0001 01
        00ED 000D 01 0001 00EE 0006 1780`);
    const m = encodeAddRoSpec(8, { rospecId: 7, start: { type: 'null' }, durationMs: 0, antennas: [1, 2], report: { trigger: 1, n: 1, content: { antennaId: true, peakRssi: true, firstSeen: true, lastSeen: true, seenCount: true } } });
    expect(m.toString('hex')).toBe(expected.toString('hex'));
    const back = only(decodeMessage(expected), 'request');
    expect(back.request).toMatchObject({ name: 'ADD_ROSPEC', rospec: { rospecId: 7, antennas: [1, 2], start: { type: 'null' }, durationMs: 0, inventoryParameterSpecId: 1 } });
  });

  it('client side: a periodic ADD_ROSPEC (PeriodicTriggerValue offset/period, duration stop triggers)', () => {
    const expected = hex(`04 14 0000004A 00000009
      00B1 0040 00000008 00 00
        00B2 001E
          00B3 0011 02 00B4 000C 00000000 00001388
          00B6 0009 01 000003E8
        00B7 0018 0001 0003
          00B8 0009 01 000003E8
          00BA 0007 0001 01`);
    const m = encodeAddRoSpec(9, { rospecId: 8, start: { type: 'periodic', offsetMs: 0, periodMs: 5000 }, durationMs: 1000, antennas: [3] });
    expect(m.toString('hex')).toBe(expected.toString('hex'));
  });

  it('a Custom parameter is type 1023 with vendor id and subtype (sllurp: Impinj 25882, subtype 21, payload 2000)', () => {
    expect(encodeCustomParam(25882, 21, hex('000007D0')).equals(hex('03FF 0010 0000651A 00000015 000007D0'))).toBe(true);
  });
});
