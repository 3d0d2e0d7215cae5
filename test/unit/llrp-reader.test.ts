/**
 * The LLRP client session against a scripted fake reader on a real TCP socket (127.0.0.1, port 0).
 * The fake reader is written by hand here: it cuts frames by their length field, reads the type
 * and id from the header, and answers with hand-built bytes or the standard's example frames. It
 * never uses our codec, so a codec bug cannot hide on both sides.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { LlrpReader, type LlrpFault, type LlrpReaderOptions, type LlrpTagRead } from '../../src/features/rfid/llrp-reader';
import { silentLogger } from '../../src/log';
import { tcpOpener } from '../../src/transport/tcp';
import { waitFor, waitForEvent } from '../helpers/wait';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
// LLRP 1.0.1 examples: a report (EPC-96, antenna 2, -52 dBm, first seen, count 3), a successful
// connection event, a keepalive with id 16
const RO_ACCESS_REPORT_7 = hex(`04 3D 00 00 00 2C 00 00 00 07 00 F0 00 22 8D 30 74 25 7B F7 19 4E 40 00 00 1A 85 81 00 02 86 CC
  82 00 06 44 F6 D5 D0 92 40 88 00 03`);
const CONNECTION_OK = hex('04 3F 00 00 00 20 00 00 00 00 00 F6 00 16 00 80 00 0C 00 06 44 F6 D5 CE B0 00 01 00 00 06 00 00');
const KEEPALIVE_16 = hex('04 3E 00 00 00 0A 00 00 00 10');

/** The same event with another ConnectionAttemptEvent status (the last byte). */
function connectionEvent(status: number): Buffer {
  const b = Buffer.from(CONNECTION_OK);
  b.writeUInt16BE(status, b.length - 2);
  return b;
}

/** A response: header (version 1), LLRPStatus TLV (type 287) with code and description. */
function response(type: number, id: number, code = 0, description = ''): Buffer {
  const d = Buffer.from(description, 'utf8');
  const statusLen = 4 + 2 + 2 + d.length;
  const b = Buffer.alloc(10 + statusLen);
  b.writeUInt16BE((1 << 10) | type, 0);
  b.writeUInt32BE(b.length, 2);
  b.writeUInt32BE(id, 6);
  b.writeUInt16BE(287, 10);
  b.writeUInt16BE(statusLen, 12);
  b.writeUInt16BE(code, 14);
  b.writeUInt16BE(d.length, 16);
  d.copy(b, 18);
  return b;
}

const RESPONSE_TYPE: Record<number, number> = { 1: 11, 3: 13, 14: 4, 20: 30, 21: 31, 22: 32, 24: 34 };

interface Received {
  conn: number;
  type: number;
  id: number;
  frame: Buffer;
}

interface ConnScript {
  connectionStatus?: number;
  refuse?: { type: number; code: number; description: string };
}

class FakeReader {
  server!: Server;
  port = 0;
  readonly received: Received[] = [];
  readonly sockets: Socket[] = [];
  closed = 0;
  constructor(private readonly script: (conn: number) => ConnScript = () => ({})) {}

  async start(): Promise<void> {
    this.server = createServer((sock) => this.serve(sock));
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  /** The socket of connection n (0-based). */
  conn(n: number): Socket {
    return this.sockets[n];
  }

  types(conn: number): number[] {
    return this.received.filter((r) => r.conn === conn && r.type !== 72).map((r) => r.type);
  }

  private serve(sock: Socket): void {
    const n = this.sockets.length;
    this.sockets.push(sock);
    const s = this.script(n);
    let buf = Buffer.alloc(0);
    sock.on('error', () => undefined);
    sock.on('close', () => this.closed++);
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 10 && buf.length >= buf.readUInt32BE(2)) {
        const len = buf.readUInt32BE(2);
        const frame = buf.subarray(0, len);
        buf = buf.subarray(len);
        const type = frame.readUInt16BE(0) & 0x3ff;
        const id = frame.readUInt32BE(6);
        this.received.push({ conn: n, type, id, frame });
        const rt = RESPONSE_TYPE[type];
        if (rt === undefined) continue;
        if (s.refuse && s.refuse.type === type) sock.write(response(rt, id, s.refuse.code, s.refuse.description));
        else sock.write(response(rt, id));
      }
    });
    sock.write(s.connectionStatus === undefined ? CONNECTION_OK : connectionEvent(s.connectionStatus));
  }
}

let fake: FakeReader | null = null;
let reader: LlrpReader | null = null;
afterEach(async () => {
  await reader?.stop();
  await fake?.stop();
  reader = null;
  fake = null;
});

async function setup(script?: (conn: number) => ConnScript, opts: Partial<LlrpReaderOptions> = {}): Promise<{ fake: FakeReader; reader: LlrpReader; reads: LlrpTagRead[]; faults: LlrpFault[] }> {
  fake = new FakeReader(script);
  await fake.start();
  reader = new LlrpReader({
    name: 'dock-1',
    opener: tcpOpener('127.0.0.1', fake.port),
    zones: [{ rospecId: 7, antennas: [1, 2], trigger: { type: 'immediate' } }],
    log: silentLogger(),
    keepaliveMs: 5_000,
    responseTimeoutMs: 5_000,
    backoff: { initialMs: 20, maxMs: 100 },
    ...opts,
  });
  const reads: LlrpTagRead[] = [];
  const faults: LlrpFault[] = [];
  reader.on('read', (r) => reads.push(r));
  reader.on('fault', (f) => faults.push(f));
  return { fake, reader, reads, faults };
}

describe('LlrpReader against a scripted reader', () => {
  it('runs the setup in order (capabilities, reset + keepalive + reports, delete all, add/enable/start per zone), then goes online', async () => {
    const { fake, reader } = await setup(undefined, {
      zones: [
        { rospecId: 7, antennas: [1, 2], trigger: { type: 'immediate' } },
        { rospecId: 8, antennas: [3], trigger: { type: 'periodic', periodMs: 5000, durationMs: 1000 } },
      ],
    });
    const online = waitForEvent(reader, 'online', 10_000);
    await reader.start();
    await online;
    expect(reader.isOnline).toBe(true);
    // GET_READER_CAPABILITIES, SET_READER_CONFIG, DELETE_ROSPEC, ADD/ENABLE/START (immediate), ADD/ENABLE (periodic)
    expect(fake.types(0)).toEqual([1, 3, 21, 20, 24, 22, 20, 24]);
    const rx = fake.received.filter((r) => r.conn === 0);
    expect(rx.map((r) => r.id)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(rx[1].frame[10]).toBe(0x80); // ResetToFactoryDefault
    expect(rx[1].frame.includes(hex('00DC 0009 01 00001388'))).toBe(true); // KeepaliveSpec: periodic, 5000 ms
    expect(rx[2].frame.readUInt32BE(10)).toBe(0); // DELETE_ROSPEC all
    expect(rx[3].frame.readUInt32BE(14)).toBe(7); // ROSpec 7
    expect(rx[3].frame.includes(hex('00B7 001A 0002 0001 0002'))).toBe(true); // AISpec on antennas 1 and 2
    expect(rx[6].frame.includes(hex('00B3 0011 02 00B4 000C 00000000 00001388'))).toBe(true); // periodic start, every 5 s
    expect(rx[7].frame.readUInt32BE(10)).toBe(8); // ENABLE_ROSPEC 8, and no START for the periodic zone
  });

  it('streams tag reads from RO_ACCESS_REPORT and answers KEEPALIVE with KEEPALIVE_ACK of the same id', async () => {
    const { fake, reader, reads } = await setup(undefined, { now: () => 1_764_676_900_000 });
    const online = waitForEvent(reader, 'online', 10_000);
    await reader.start();
    await online;
    fake.conn(0).write(KEEPALIVE_16);
    fake.conn(0).write(RO_ACCESS_REPORT_7);
    await waitFor(() => reads.length === 1, 10_000, 'a read');
    expect(reads[0]).toEqual({
      reader: 'dock-1', antenna: 2, epcHex: '3074257bf7194e4000001a85', rssi: -52,
      firstSeen: 1764676800123, lastSeen: 1764676800123, seenCount: 3, ts: 1_764_676_900_000,
    });
    const ack = await waitFor(() => fake.received.find((r) => r.type === 72), 10_000, 'KEEPALIVE_ACK');
    expect(ack.frame.equals(hex('04 48 00 00 00 0A 00 00 00 10'))).toBe(true);
    expect(reader.stats.keepalives).toBe(1);
  });

  it('an ERROR_MESSAGE while streaming is reported with its code and description; reader events are passed on', async () => {
    const { fake, reader, faults } = await setup();
    const events: unknown[] = [];
    reader.on('reader_event', (e) => events.push(e));
    const online = waitForEvent(reader, 'online', 10_000);
    await reader.start();
    await online;
    // ERROR_MESSAGE id 42: LLRPStatus 110 M_UnsupportedVersion "v2?"
    fake.conn(0).write(hex(`04 64 00000015 0000002A 011F 000B 006E 0003 ${Buffer.from('v2?').toString('hex')}`));
    // READER_EVENT_NOTIFICATION: timestamp, antenna 3 disconnected
    fake.conn(0).write(hex('04 3F 00000021 00000009 00F6 0017 0080 000C 0006 44F6 D5CE B000 00FF 0007 00 0003'));
    await waitFor(() => events.length === 1 && faults.length === 1, 10_000, 'the fault and the event');
    expect(faults[0]).toMatchObject({ code: 'error_message', status: { code: 110, description: 'v2?' } });
    expect(events).toEqual([{ type: 'antenna', connected: false, antennaId: 3 }]);
    expect(reader.isOnline).toBe(true); // an error about one message does not end a running session
  });

  it('a refused ADD_ROSPEC is reported with its status code and description, and the setup is retried after the back-off', async () => {
    const { fake, reader, faults } = await setup((n) => (n === 0 ? { refuse: { type: 20, code: 100, description: 'bad antenna' } } : {}));
    const online = waitForEvent(reader, 'online', 15_000);
    await reader.start();
    await online;
    expect(faults[0]).toMatchObject({ reader: 'dock-1', code: 'status', request: 'ADD_ROSPEC', status: { code: 100, description: 'bad antenna' } });
    expect(fake.types(0)).toEqual([1, 3, 21, 20]); // nothing after the refusal
    expect(fake.types(1)).toEqual([1, 3, 21, 20, 24, 22]);
    expect(reader.stats.setupFailures).toBe(1);
  });

  it('a reader that refuses the connection (ConnectionAttemptEvent status 2) is closed and retried', async () => {
    const { fake, reader, faults } = await setup((n) => (n === 0 ? { connectionStatus: 2 } : {}));
    const online = waitForEvent(reader, 'online', 15_000);
    await reader.start();
    await online;
    expect(faults[0]).toMatchObject({ code: 'connection_refused', connectionStatus: 2 });
    expect(fake.types(0)).toEqual([]);
    expect(reader.stats.refusedConnections).toBe(1);
  });

  it('a reader that stops sending keepalives goes offline after 3 periods and is reconnected', async () => {
    const { fake, reader, faults } = await setup(undefined, { keepaliveMs: 150, missedKeepalives: 3 });
    const online = waitForEvent(reader, 'online', 10_000);
    await reader.start();
    await online;
    let onlines = 1;
    reader.on('online', () => onlines++);
    const offline = waitForEvent(reader, 'offline', 10_000);
    const [reason] = (await offline) as [string];
    expect(reason).toMatch(/no message from the reader/);
    await waitFor(() => onlines >= 2, 10_000, 'online again');
    expect(fake.sockets.length).toBeGreaterThanOrEqual(2);
    expect(faults.some((f) => f.code === 'timeout')).toBe(true);
    expect(reader.stats.keepaliveTimeouts).toBeGreaterThanOrEqual(1);
  });

  it('a reader pulled in the middle of an RO_ACCESS_REPORT yields no phantom tag and is reconnected', async () => {
    const { fake, reader, reads } = await setup();
    const online = waitForEvent(reader, 'online', 10_000);
    await reader.start();
    await online;
    let onlines = 1;
    reader.on('online', () => onlines++);
    const offline = waitForEvent(reader, 'offline', 10_000);
    fake.conn(0).write(RO_ACCESS_REPORT_7.subarray(0, 30), () => fake!.conn(0).destroy());
    await offline;
    await waitFor(() => onlines >= 2, 10_000, 'online again');
    // the second connection delivers a whole report: once it is read, the cut one is proven gone
    fake.conn(1).write(RO_ACCESS_REPORT_7);
    await waitFor(() => reads.length >= 1, 10_000, 'the read from the second connection');
    expect(reads).toHaveLength(1);
    expect(reader.stats.reads).toBe(1);
    expect(reader.stats.truncatedBytes).toBe(30);
  });

  it('a length field that lies (2 GiB) drops the connection with a desync fault, without throwing, and reconnects', async () => {
    const { fake, reader, faults } = await setup();
    const online = waitForEvent(reader, 'online', 10_000);
    await reader.start();
    await online;
    const again = waitFor(() => fake.types(1).length === 6 && reader.isOnline, 10_000, 'second session online');
    fake.conn(0).write(hex('04 3D 7FFFFFFF 00000009 00F0'));
    await again;
    expect(faults.find((f) => f.code === 'desync')).toBeDefined();
    expect(reader.stats.framing.rejects.length_too_large).toBe(1);
  });

  it('a reader that cannot be reached is a counted open_failed fault, retried until stop()', async () => {
    // an injected opener that fails like a refused TCP connect (a closed real port could be reused by a concurrent test)
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5084'), { code: 'ECONNREFUSED' });
    const { faults } = await setup(undefined, { opener: () => Promise.reject(refused) });
    await reader!.start();
    await waitFor(() => reader!.stats.openFailures >= 2, 10_000, 'two failed connects');
    expect(faults[0]).toMatchObject({ code: 'open_failed' });
    expect(reader!.isOnline).toBe(false);
    await reader!.stop();
  });

  it('stop() sends CLOSE_CONNECTION, closes the socket and leaves no listener behind', async () => {
    const { fake, reader } = await setup();
    const online = waitForEvent(reader, 'online', 10_000);
    await reader.start();
    await online;
    const readListeners = reader.listenerCount('read');
    await reader.stop();
    await waitFor(() => fake.closed === 1, 10_000, 'the reader side to see the close');
    expect(fake.received.some((r) => r.type === 14)).toBe(true);
    expect(reader.isOnline).toBe(false);
    expect(reader.listenerCount('read')).toBe(readListeners); // the owner's listeners are the owner's
    await reader.stop(); // twice is harmless
  });
});
