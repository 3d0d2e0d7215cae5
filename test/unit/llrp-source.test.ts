/**
 * LlrpSource against a scripted fake reader on 127.0.0.1:0, written by hand here (it answers every
 * request with a success response built from bytes, and sends the LLRP 1.0.1 example frames): the
 * mapping of reads, availability and stats, and the address rules. Never our codec on the reader side.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { DeviceAvailability } from '../../src/core/sources/types';
import { LlrpSource, llrpOpener, type LlrpRead } from '../../src/features/rfid/llrp-source';
import { silentLogger } from '../../src/log';
import { waitFor } from '../helpers/wait';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
// LLRP 1.0.1 examples: a report (EPC-96 3074257BF7194E4000001A85, antenna 2, -52 dBm, first seen
// 1764676800123456 us, seen 3 times) and a successful ConnectionAttemptEvent
const RO_ACCESS_REPORT_7 = hex(`04 3D 00 00 00 2C 00 00 00 07 00 F0 00 22 8D 30 74 25 7B F7 19 4E 40 00 00 1A 85 81 00 02 86 CC
  82 00 06 44 F6 D5 D0 92 40 88 00 03`);
const CONNECTION_OK = hex('04 3F 00 00 00 20 00 00 00 00 00 F6 00 16 00 80 00 0C 00 06 44 F6 D5 CE B0 00 01 00 00 06 00 00');
const RESPONSE_TYPE: Record<number, number> = { 1: 11, 3: 13, 14: 4, 20: 30, 21: 31, 22: 32, 24: 34 };

function success(type: number, id: number): Buffer {
  const b = hex('0400 00000012 00000000 011F 0008 0000 0000');
  b.writeUInt16BE((1 << 10) | type, 0);
  b.writeUInt32BE(id, 6);
  return b;
}

let server: Server | null = null;
let src: LlrpSource | null = null;
const sockets: Socket[] = [];
afterEach(async () => {
  await src?.stop();
  for (const s of sockets.splice(0)) s.destroy();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = null;
  src = null;
});

async function fakeReader(): Promise<number> {
  server = createServer((sock) => {
    sockets.push(sock);
    sock.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    sock.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      while (buf.length >= 10 && buf.length >= buf.readUInt32BE(2)) {
        const f = buf.subarray(0, buf.readUInt32BE(2));
        buf = buf.subarray(f.length);
        const rt = RESPONSE_TYPE[f.readUInt16BE(0) & 0x3ff];
        if (rt !== undefined) sock.write(success(rt, f.readUInt32BE(6)));
      }
    });
    sock.write(CONNECTION_OK);
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

describe('LlrpSource', () => {
  it('maps reads (upper-case EPC, LLRP extras), availability and stats from the session', async () => {
    const port = await fakeReader();
    src = new LlrpSource({ name: 'dock', reader: 'dock-1', address: `tcp://127.0.0.1:${port}`, zones: [{ rospecId: 7, antennas: [1, 2], trigger: { type: 'immediate' } }], log: silentLogger(), backoff: { initialMs: 20, maxMs: 100 } });
    const reads: LlrpRead[] = [];
    const avail: DeviceAvailability[] = [];
    src.on('reading', (r) => reads.push(r));
    src.on('availability', (a) => avail.push(a));
    expect(src.isOnline('dock-1')).toBe(false);
    await src.start();
    await waitFor(() => src!.isOnline('dock-1'), 10_000, 'online');
    expect(avail).toEqual([{ sensor: 'dock-1', online: true, ts: expect.any(Number) }]);
    sockets[0]!.write(hex('08 3E 0000000A 00000001')); // a version-2 KEEPALIVE: dropped and counted
    sockets[0]!.write(RO_ACCESS_REPORT_7);
    await waitFor(() => reads.length === 1, 10_000, 'a read');
    expect(reads[0]).toMatchObject({
      sensor: 'dock-1', reader: 'dock-1', antenna: 2, epcHex: '3074257BF7194E4000001A85', rssi: -52,
      firstSeen: 1764676800123, lastSeen: 1764676800123, seenCount: 3,
    });
    expect(reads[0]!.rxMono).toBeGreaterThan(0);
    expect(src.stats).toMatchObject({ readings: 1, invalidFrames: 1, deviceErrors: 0, noiseBytes: 0 });
    // the reader is pulled in the middle of a report: offline with the reason, the cut bytes counted
    sockets[0]!.write(RO_ACCESS_REPORT_7.subarray(0, 20), () => sockets[0]!.destroy());
    await waitFor(() => avail.length >= 2, 10_000, 'offline');
    expect(avail[1]).toMatchObject({ sensor: 'dock-1', online: false, reason: expect.stringMatching(/connection closed/) });
    await waitFor(() => avail.length >= 3, 10_000, 'online again');
    expect(src.stats.noiseBytes).toBe(20);
    expect(reads).toHaveLength(1);
    await src.stop();
    expect(src.session.listenerCount('read')).toBe(0);
    expect(src.session.listenerCount('fault')).toBe(0);
  });

  it('a reader never reached is reported offline once, at its first fault', async () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5084'), { code: 'ECONNREFUSED' });
    src = new LlrpSource({ name: 'gone', opener: () => Promise.reject(refused), zones: [{ rospecId: 1, antennas: [0], trigger: { type: 'immediate' } }], log: silentLogger(), backoff: { initialMs: 10, maxMs: 20 } });
    const avail: DeviceAvailability[] = [];
    src.on('availability', (a) => avail.push(a));
    await src.start();
    await waitFor(() => src!.faults.open_failed >= 3, 10_000, 'three failed connects');
    expect(avail).toEqual([{ sensor: 'gone', online: false, reason: expect.stringMatching(/cannot connect: connect ECONNREFUSED/), ts: expect.any(Number) }]);
  });

  it('addresses: host, host:port, [v6]:port, tcp://; anything else is SG_TRANSPORT_PATH_INVALID; none at all is SG_CONFIG_INVALID', () => {
    for (const a of ['10.0.0.5', 'reader-1.local:5084', '[::1]:5084', 'tcp://10.0.0.5:5084']) expect(typeof llrpOpener(a)).toBe('function');
    for (const a of ['10.0.0.5:99999', 'tcp://x', 'a b:1']) expect(() => llrpOpener(a)).toThrow(expect.objectContaining({ code: 'SG_TRANSPORT_PATH_INVALID' }));
    expect(() => new LlrpSource({ name: 'x', zones: [], log: silentLogger() })).toThrow(expect.objectContaining({ code: 'SG_CONFIG_INVALID' }));
  });
});
