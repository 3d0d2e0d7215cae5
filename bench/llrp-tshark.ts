/**
 * Cross-check of the LLRP encoder (src/drivers/llrp.ts) against an independent decoder: Wireshark's
 * LLRP dissector. Every message the client sends, and the reader-side messages a simulator needs,
 * is encoded, written into a pcap as TCP segments on port 5084, dissected by `tshark -T json`, and
 * the dissector's field values are compared with what was encoded. A malformed-packet or expert
 * error from the dissector fails the check too.
 *
 * Run: npm run build && node dist/bench/llrp-tshark.js   (needs Debian's `tshark`; exit 0 = all match)
 * The result is recorded in docs/llrp.md. Not a vitest test on purpose: tests may not depend on a
 * tool that may be absent, and may not be skipped.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  encodeAddRoSpec,
  encodeCloseConnection,
  encodeCustomParam,
  encodeErrorMessage,
  encodeGeneralDeviceCapabilities,
  encodeGetReaderCapabilities,
  encodeKeepalive,
  encodeKeepaliveAck,
  encodeReaderEventNotification,
  encodeResponse,
  encodeRoAccessReport,
  encodeRoSpecOp,
  encodeSetReaderConfig,
  MsgType,
  ReaderEventType,
} from '../src/drivers/llrp';

interface Case {
  name: string;
  fromReader: boolean;
  frame: Buffer;
  /** field -> every value that must appear among the dissector's values for it */
  expect: Record<string, string[]>;
}

const content = { antennaId: true, peakRssi: true, firstSeen: true, lastSeen: true, seenCount: true };
const cases: Case[] = [
  { name: 'GET_READER_CAPABILITIES', fromReader: false, frame: encodeGetReaderCapabilities(1), expect: { 'llrp.type': ['1'], 'llrp.id': ['1'], 'llrp.version': ['1'] } },
  {
    name: 'SET_READER_CONFIG',
    fromReader: false,
    frame: encodeSetReaderConfig(2, { resetToFactoryDefault: true, keepaliveMs: 10_000, events: [{ type: ReaderEventType.AntennaEvent, enabled: true }], report: { trigger: 1, n: 1, content } }),
    expect: {
      'llrp.type': ['3'], 'llrp.id': ['2'], 'llrp.param.keepalive_trig_type': ['1'], 'llrp.param.time_iterval': ['10000'],
      'llrp.param.ro_report_trig': ['1'], 'llrp.param.enable_antenna_id': ['1'], 'llrp.param.enable_peak_rssi': ['1'],
      'llrp.param.enable_first_seen': ['1'], 'llrp.param.enable_last_seen': ['1'], 'llrp.param.enable_seen_count': ['1'],
      'llrp.param.enable_rospec_id': ['0'], 'llrp.param.event_type': ['8'], 'llrp.tlv_type': ['244', '245', '237', '238', '220'],
    },
  },
  { name: 'DELETE_ROSPEC', fromReader: false, frame: encodeRoSpecOp(MsgType.DELETE_ROSPEC, 3, 0), expect: { 'llrp.type': ['21'], 'llrp.rospec': ['0'] } },
  {
    name: 'ADD_ROSPEC null start',
    fromReader: false,
    frame: encodeAddRoSpec(4, { rospecId: 7, start: { type: 'null' }, durationMs: 0, antennas: [1, 2], report: { trigger: 1, n: 1, content } }),
    expect: {
      'llrp.type': ['20'], 'llrp.param.rospec_id': ['7'], 'llrp.param.rospec_start_trig_type': ['0'], 'llrp.param.rospec_stop_trig_type': ['0'],
      'llrp.param.antenna_count': ['2'], 'llrp.param.antenna': ['1', '2'], 'llrp.param.protocol_id': ['1'], 'llrp.param.aispec_stop_trig_type': ['0'],
      'llrp.tlv_type': ['177', '178', '179', '182', '183', '184', '186', '237', '238'],
    },
  },
  {
    name: 'ADD_ROSPEC periodic',
    fromReader: false,
    frame: encodeAddRoSpec(5, { rospecId: 8, start: { type: 'periodic', offsetMs: 0, periodMs: 5000 }, durationMs: 1000, antennas: [3] }),
    expect: {
      'llrp.param.rospec_start_trig_type': ['2'], 'llrp.param.offset': ['0'], 'llrp.param.period': ['5000'],
      'llrp.param.rospec_stop_trig_type': ['1'], 'llrp.param.duration_trig': ['1000'], 'llrp.param.antenna': ['3'],
    },
  },
  { name: 'ENABLE_ROSPEC', fromReader: false, frame: encodeRoSpecOp(MsgType.ENABLE_ROSPEC, 6, 7), expect: { 'llrp.type': ['24'], 'llrp.rospec': ['7'] } },
  { name: 'START_ROSPEC', fromReader: false, frame: encodeRoSpecOp(MsgType.START_ROSPEC, 7, 7), expect: { 'llrp.type': ['22'], 'llrp.rospec': ['7'] } },
  { name: 'KEEPALIVE_ACK', fromReader: false, frame: encodeKeepaliveAck(16), expect: { 'llrp.type': ['72'], 'llrp.id': ['16'] } },
  { name: 'CLOSE_CONNECTION', fromReader: false, frame: encodeCloseConnection(9), expect: { 'llrp.type': ['14'] } },
  {
    name: 'READER_EVENT_NOTIFICATION',
    fromReader: true,
    frame: encodeReaderEventNotification(0, 1764676800000000, [{ type: 'connection_attempt', status: 0 }, { type: 'antenna', connected: false, antennaId: 3 }]),
    expect: { 'llrp.type': ['63'], 'llrp.param.conn_status': ['0'], 'llrp.param.antenna_event_type': ['0'], 'llrp.antenna_id': ['3'], 'llrp.tlv_type': ['246', '128', '256', '255'] },
  },
  {
    name: 'GET_READER_CAPABILITIES_RESPONSE',
    fromReader: true,
    frame: encodeResponse(MsgType.GET_READER_CAPABILITIES_RESPONSE, 1, { code: 0, description: '' }, encodeGeneralDeviceCapabilities({ maxAntennas: 4, canSetAntennaProperties: false, hasUtcClock: true, manufacturer: 25882, model: 2001002, firmware: '5.12.0' })),
    expect: { 'llrp.type': ['11'], 'llrp.param.status_code': ['0'], 'llrp.param.device_manufacturer': ['25882'], 'llrp.param.model': ['2001002'], 'llrp.param.firmware_version': ['5.12.0'] },
  },
  {
    name: 'ADD_ROSPEC_RESPONSE refused',
    fromReader: true,
    frame: encodeResponse(MsgType.ADD_ROSPEC_RESPONSE, 4, { code: 100, description: 'bad antenna', parameterError: { parameterType: 183, errorCode: 101, fieldError: { fieldNum: 1, errorCode: 301 } } }),
    expect: { 'llrp.type': ['30'], 'llrp.param.status_code': ['100'], 'llrp.param.error_code': ['101', '301'], 'llrp.param.field_num': ['1'], 'llrp.param.error_desc': ['bad antenna'], 'llrp.tlv_type': ['287', '289', '288'] },
  },
  {
    name: 'RO_ACCESS_REPORT',
    fromReader: true,
    frame: encodeRoAccessReport(7, [
      { epcHex: '3074257bf7194e4000001a85', epcBits: 96, antennaId: 2, peakRssi: -52, firstSeenUtcUs: 1764676800123456, lastSeenUtcUs: 1764676800223456, seenCount: 3 },
      { epcHex: '3074257bf7194e4000001a8600000000abcd', epcBits: 144, antennaId: 1, peakRssi: -70 },
    ]),
    expect: {
      'llrp.type': ['61'], 'llrp.param.epc': ['3074257bf7194e4000001a85', '3074257bf7194e4000001a8600000000abcd'], 'llrp.antenna_id': ['2', '1'],
      'llrp.param.peak_rssi': ['204', '186'] /* the dissector shows the s8 as its unsigned byte: 204 = -52, 186 = -70 */, 'llrp.param.length_bits': ['144'], 'llrp.tv_type': ['13', '1', '6', '2', '4', '8'],
    },
  },
  { name: 'KEEPALIVE', fromReader: true, frame: encodeKeepalive(16), expect: { 'llrp.type': ['62'], 'llrp.id': ['16'] } },
  { name: 'ERROR_MESSAGE', fromReader: true, frame: encodeErrorMessage(0, { code: 109, description: 'unsupported' }), expect: { 'llrp.type': ['100'], 'llrp.param.status_code': ['109'] } },
  {
    name: 'RO_ACCESS_REPORT with Custom',
    fromReader: true,
    frame: Buffer.concat([encodeRoAccessReport(8, []), encodeCustomParam(25882, 21, Buffer.from([0, 0, 7, 0xd0]))]),
    expect: { 'llrp.param.vendor_id': ['25882'] },
  },
];
// the Custom case appends a parameter after encoding: fix its length field
{
  const c = cases[cases.length - 1];
  c.frame.writeUInt32BE(c.frame.length, 2);
}

function pcap(frames: { data: Buffer; fromReader: boolean }[]): Buffer {
  const g = Buffer.alloc(24);
  g.writeUInt32LE(0xa1b2c3d4, 0);
  g.writeUInt16LE(2, 4);
  g.writeUInt16LE(4, 6);
  g.writeUInt32LE(262144, 16);
  g.writeUInt32LE(1, 20); // Ethernet
  const parts = [g];
  const seq = { client: 1000, reader: 5000 };
  frames.forEach((f, i) => {
    const tcp = Buffer.alloc(20);
    tcp.writeUInt16BE(f.fromReader ? 5084 : 40000, 0);
    tcp.writeUInt16BE(f.fromReader ? 40000 : 5084, 2);
    tcp.writeUInt32BE(f.fromReader ? seq.reader : seq.client, 4);
    tcp.writeUInt32BE(f.fromReader ? seq.client : seq.reader, 8);
    tcp[12] = 5 << 4;
    tcp[13] = 0x18; // PSH ACK
    tcp.writeUInt16BE(65535, 14);
    if (f.fromReader) seq.reader += f.data.length;
    else seq.client += f.data.length;
    const ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip.writeUInt16BE(20 + 20 + f.data.length, 2);
    ip[8] = 64;
    ip[9] = 6;
    Buffer.from(f.fromReader ? [10, 0, 0, 2] : [10, 0, 0, 1]).copy(ip, 12);
    Buffer.from(f.fromReader ? [10, 0, 0, 1] : [10, 0, 0, 2]).copy(ip, 16);
    const eth = Buffer.concat([Buffer.from('020000000002020000000001', 'hex'), Buffer.from([0x08, 0x00])]);
    const pkt = Buffer.concat([eth, ip, tcp, f.data]);
    const h = Buffer.alloc(16);
    h.writeUInt32LE(1764676800 + i, 0);
    h.writeUInt32LE(pkt.length, 8);
    h.writeUInt32LE(pkt.length, 12);
    parts.push(h, pkt);
  });
  return Buffer.concat(parts);
}

/** Every key/value under the packet's llrp layer (and expert/malformed markers anywhere). */
function collect(node: unknown, out: Map<string, string[]>): void {
  if (Array.isArray(node)) {
    for (const n of node) collect(n, out);
    return;
  }
  if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      const strings = typeof v === 'string' ? [v] : Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
      if (strings.length > 0 && (k.startsWith('llrp.') || k.startsWith('_ws.'))) {
        const list = out.get(k) ?? [];
        for (const x of strings) list.push(x.toLowerCase().replace(/:/g, ''));
        out.set(k, list);
      }
      if (k.startsWith('_ws.malformed') || k.startsWith('_ws.expert')) out.set(k, [...(out.get(k) ?? []), JSON.stringify(v)]);
      collect(v, out);
    }
  }
}

function main(): number {
  const dir = mkdtempSync(join(tmpdir(), 'llrp-tshark-'));
  try {
    const file = join(dir, 'llrp.pcap');
    writeFileSync(file, pcap(cases.map((c) => ({ data: c.frame, fromReader: c.fromReader }))));
    const json = execFileSync('tshark', ['-r', file, '-d', 'tcp.port==5084,llrp', '-T', 'json', '--no-duplicate-keys'], { encoding: 'utf8', maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'ignore'] });
    const packets = JSON.parse(json) as { _source: { layers: Record<string, unknown> } }[];
    if (packets.length !== cases.length) {
      console.log(`FAIL: ${packets.length} packets dissected, ${cases.length} written`);
      return 1;
    }
    let failures = 0;
    cases.forEach((c, i) => {
      const layers = packets[i]._source.layers;
      const fields = new Map<string, string[]>();
      collect(layers.llrp, fields);
      const problems: string[] = [];
      if (!layers.llrp) problems.push('no llrp layer');
      for (const [k, v] of fields) if (k.startsWith('_ws.malformed') || k.startsWith('_ws.expert')) problems.push(`${k}: ${v.join(' ')}`);
      for (const [field, want] of Object.entries(c.expect)) {
        const got = fields.get(field) ?? [];
        for (const w of want) if (!got.includes(w.toLowerCase())) problems.push(`${field}: want ${w}, dissector has [${got.join(', ')}]`);
      }
      const lenField = fields.get('llrp.length') ?? [];
      if (!lenField.includes(String(c.frame.length))) problems.push(`llrp.length: want ${c.frame.length}, got [${lenField.join(', ')}]`);
      if (problems.length > 0) failures++;
      console.log(`${problems.length === 0 ? 'ok  ' : 'FAIL'} ${c.name} (${c.frame.length} bytes)${problems.map((p) => `\n     ${p}`).join('')}`);
    });
    const version = execFileSync('tshark', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n')[0];
    console.log(`${version}: ${cases.length - failures}/${cases.length} messages match`);
    return failures === 0 ? 0 : 1;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

process.exitCode = main();
