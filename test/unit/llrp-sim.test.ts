/**
 * The LLRP reader simulator's server side, driven by hand-written client frames (LLRP 1.0.1
 * layouts, the same bytes test/unit/llrp.test.ts checks field by field) over a raw socket on
 * 127.0.0.1:0. Its answers are read here by hand (header, LLRPStatus code, TLV types), not with
 * our codec, so a codec bug cannot hide on both sides.
 */
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { LlrpReaderSimulator } from '../../simulators/rfid/llrp-sim';
import { TagPopulation } from '../../simulators/rfid/population';
import { waitFor } from '../helpers/wait';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

const GET_READER_CAPABILITIES_1 = hex('04 01 0000000B 00000001 00');
// ResetToFactoryDefault, ROReportSpec (trigger 2, N 1, antenna/RSSI/first/last/count), KeepaliveSpec periodic 10 s
const SET_READER_CONFIG_6 = hex('04 03 00000021 00000006 80 00ED 000D 02 0001 00EE 0006 1780 00DC 0009 01 00002710');
// ROSpec 7, Null start, no stop, AISpec antennas 1 and 2, C1G2 inventory, report after each tag
const ADD_ROSPEC_8 = hex(`04 14 0000004D 00000008
  00B1 0043 00000007 00 00
    00B2 0012 00B3 0005 00 00B6 0009 00 00000000
    00B7 001A 0002 0001 0002 00B8 0009 00 00000000 00BA 0007 0001 01
    00ED 000D 01 0001 00EE 0006 1780`);
const ENABLE_ROSPEC_3_7 = hex('04 18 0000000E 00000003 00000007');
const START_ROSPEC_4_7 = hex('04 16 0000000E 00000004 00000007');
const STOP_ROSPEC_11_7 = hex('04 17 0000000E 0000000B 00000007');
const CLOSE_CONNECTION_5 = hex('04 0E 0000000A 00000005');

interface Msg {
  type: number;
  version: number;
  id: number;
  body: Buffer;
}

/** A raw client: cuts the stream by the length field. */
class RawClient {
  readonly msgs: Msg[] = [];
  closed = false;
  private buf = Buffer.alloc(0);
  constructor(readonly sock: Socket) {
    sock.on('data', (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c]);
      while (this.buf.length >= 10 && this.buf.length >= this.buf.readUInt32BE(2)) {
        const len = this.buf.readUInt32BE(2);
        const f = this.buf.subarray(0, len);
        this.buf = this.buf.subarray(len);
        this.msgs.push({ type: f.readUInt16BE(0) & 0x3ff, version: (f.readUInt16BE(0) >> 10) & 7, id: f.readUInt32BE(6), body: f.subarray(10) });
      }
    });
    sock.on('error', () => undefined);
    sock.on('close', () => (this.closed = true));
  }
  /** The next message of `type` (after those already taken). */
  async next(type: number, what: string): Promise<Msg> {
    const m = await waitFor(() => this.msgs.find((x) => x.type === type), 5_000, what);
    this.msgs.splice(this.msgs.indexOf(m), 1);
    return m;
  }
}

/** LLRPStatus code of a response body (the first TLV, type 287). */
function statusCode(body: Buffer): number {
  expect(body.readUInt16BE(0) & 0x3ff).toBe(287);
  return body.readUInt16BE(4);
}
function statusText(body: Buffer): string {
  const n = body.readUInt16BE(6);
  return body.toString('utf8', 8, 8 + n);
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function rig(): Promise<{ sim: LlrpReaderSimulator; client: RawClient; population: TagPopulation }> {
  const population = new TagPopulation({ tags: 20, gtins: 2, zones: 4, seed: 3, missProbability: 0 });
  const sim = new LlrpReaderSimulator({ population, antennas: 4, roundMs: 20 });
  await sim.start();
  cleanups.push(() => sim.stop());
  const sock = connect(sim.port, '127.0.0.1');
  cleanups.push(() => void sock.destroy());
  return { sim, client: new RawClient(sock), population };
}

describe('LLRP reader simulator, server side', () => {
  it('greets, answers the setup, validates ROSpecs, streams reports for its antennas, and closes on CLOSE_CONNECTION', async () => {
    const { sim, client, population } = await rig();
    const hello = await client.next(63, 'READER_EVENT_NOTIFICATION');
    expect(hello.version).toBe(1);
    expect(hello.body.subarray(-6).equals(hex('0100 0006 0000'))).toBe(true); // ConnectionAttemptEvent: Success

    client.sock.write(GET_READER_CAPABILITIES_1);
    const caps = await client.next(11, 'GET_READER_CAPABILITIES_RESPONSE');
    expect(caps.id).toBe(1);
    expect(statusCode(caps.body)).toBe(0);
    const gdc = caps.body.subarray(8); // after LLRPStatus (8 bytes with an empty description)
    expect(gdc.readUInt16BE(0)).toBe(137);
    expect(gdc.readUInt16BE(4)).toBe(4); // max antennas
    expect(gdc.readUInt16BE(6) & 0x4000).toBe(0x4000); // has a UTC clock

    client.sock.write(SET_READER_CONFIG_6);
    expect(statusCode((await client.next(13, 'SET_READER_CONFIG_RESPONSE')).body)).toBe(0);
    client.sock.write(ADD_ROSPEC_8);
    const added = await client.next(30, 'ADD_ROSPEC_RESPONSE');
    expect([added.id, statusCode(added.body)]).toEqual([8, 0]);
    client.sock.write(ADD_ROSPEC_8); // the same id again
    const dup = await client.next(30, 'the second ADD_ROSPEC_RESPONSE');
    expect(statusCode(dup.body)).toBe(100);
    expect(statusText(dup.body)).toBe('ROSpecID 7 already exists');
    client.sock.write(START_ROSPEC_4_7); // still disabled
    expect(statusCode((await client.next(32, 'START_ROSPEC_RESPONSE (refused)')).body)).toBe(101);
    client.sock.write(ENABLE_ROSPEC_3_7);
    expect(statusCode((await client.next(34, 'ENABLE_ROSPEC_RESPONSE')).body)).toBe(0);
    client.sock.write(START_ROSPEC_4_7);
    expect(statusCode((await client.next(32, 'START_ROSPEC_RESPONSE')).body)).toBe(0);
    expect(sim.roSpecs()).toEqual([{ id: 7, state: 'active', antennas: [1, 2] }]);

    // reports: TagReportData (240) starting with the EPC-96 TV (0x8D); antennas 1-2 see zones 0-1
    const inView = new Set([...population.inZone(0), ...population.inZone(1)].map((t) => t.epcHex));
    const epcs = new Set<string>();
    await waitFor(() => {
      for (let m = client.msgs.find((x) => x.type === 61); m; m = client.msgs.find((x) => x.type === 61)) {
        client.msgs.splice(client.msgs.indexOf(m), 1);
        expect(m.body.readUInt16BE(0)).toBe(240);
        expect(m.body[4]).toBe(0x8d);
        epcs.add(m.body.toString('hex', 5, 17).toUpperCase());
      }
      return epcs.size === inView.size;
    }, 5_000, 'a report for every tag in view');
    expect([...epcs].every((e) => inView.has(e))).toBe(true);

    client.sock.write(STOP_ROSPEC_11_7);
    expect(statusCode((await client.next(33, 'STOP_ROSPEC_RESPONSE')).body)).toBe(0);
    client.sock.write(CLOSE_CONNECTION_5);
    const bye = await client.next(4, 'CLOSE_CONNECTION_RESPONSE');
    expect([bye.id, statusCode(bye.body)]).toEqual([5, 0]);
    await waitFor(() => client.closed, 5_000, 'the reader closing the connection');
  });

  it('a malformed ADD_ROSPEC gets M_ParameterError; another version and an unknown type get ERROR_MESSAGE', async () => {
    const { sim, client } = await rig();
    await client.next(63, 'READER_EVENT_NOTIFICATION');
    // the ROSpec TLV says 0x43 bytes but the message holds 6 of its body
    client.sock.write(hex('04 14 00000014 00000021 00B1 0043 00000007 00 00'));
    const bad = await client.next(30, 'ADD_ROSPEC_RESPONSE');
    expect([bad.id, statusCode(bad.body)]).toEqual([0x21, 100]);
    // ADD_ROSPEC without an AISpec
    client.sock.write(hex('04 14 00000026 00000022 00B1 001C 00000009 00 00 00B2 0012 00B3 0005 00 00B6 0009 00 00000000'));
    const noAi = await client.next(30, 'ADD_ROSPEC_RESPONSE without AISpec');
    expect(statusCode(noAi.body)).toBe(103); // M_MissingParameter
    client.sock.write(hex('08 01 0000000B 00000009 00')); // version 2 (LLRP 1.1)
    const v2 = await client.next(100, 'ERROR_MESSAGE for version 2');
    expect([v2.id, statusCode(v2.body)]).toEqual([9, 110]);
    client.sock.write(hex('04 4D 0000000A 0000000A')); // type 77
    const unk = await client.next(100, 'ERROR_MESSAGE for type 77');
    expect([unk.id, statusCode(unk.body)]).toEqual([10, 109]);
    expect(sim.roSpecs()).toEqual([]);
    expect(sim.stats.rejectedRoSpecs).toBe(1);
  });

  it('sends KEEPALIVEs at the configured period and counts the KEEPALIVE_ACKs', async () => {
    const { sim, client } = await rig();
    await client.next(63, 'READER_EVENT_NOTIFICATION');
    client.sock.write(hex('04 03 00000014 00000002 00 00DC 0009 01 00000064')); // KeepaliveSpec periodic 100 ms
    await client.next(13, 'SET_READER_CONFIG_RESPONSE');
    const ka = await client.next(62, 'KEEPALIVE');
    const ack = Buffer.from('0448 0000000A 00000000'.replace(/\s+/g, ''), 'hex');
    ack.writeUInt32BE(ka.id, 6);
    client.sock.write(ack);
    await waitFor(() => sim.stats.keepaliveAcks === 1, 5_000, 'the ack counted');
    await client.next(62, 'a second KEEPALIVE');
    await waitFor(() => sim.unackedKeepalives >= 1, 5_000, 'an unacknowledged keepalive');
  });
});
