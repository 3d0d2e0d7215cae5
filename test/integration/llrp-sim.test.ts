/**
 * LlrpSource (and its LlrpReader session) against the LLRP reader simulator over real TCP on
 * 127.0.0.1:0: the full setup, reads only for the tags the configured antennas see, keepalives
 * answered, a reboot mid-inventory (offline, online, reads resume, no phantom tag), a refused
 * ROSpec reported and retried, a second client refused while the first stays served, a vendor
 * Custom parameter skipped and counted, garbage bytes ending in a reconnect; and the CLI.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { DeviceAvailability, Source } from '../../src/core/sources/types';
import type { LlrpFault, LlrpZoneConfig } from '../../src/features/rfid/llrp-reader';
import { LlrpSource, type LlrpRead } from '../../src/features/rfid/llrp-source';
import type { TagRead } from '../../src/features/rfid/m100-source';
import { silentLogger } from '../../src/log';
import { runSimCli } from '../../simulators/cli';
import { LlrpReaderSimulator, type LlrpSimOptions } from '../../simulators/rfid/llrp-sim';
import { TagPopulation } from '../../simulators/rfid/population';
import { waitFor } from '../helpers/wait';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function rig(o: { sim?: Partial<LlrpSimOptions>; zones?: LlrpZoneConfig[]; keepaliveMs?: number } = {}) {
  // 4 zones, one per antenna; 40 tags: 10 per zone
  const population = new TagPopulation({ tags: 40, gtins: 4, zones: 4, seed: 11, missProbability: 0.1 });
  const sim = new LlrpReaderSimulator({ population, antennas: 4, roundMs: 20, readsPerSecond: 2000, ...o.sim });
  await sim.start();
  cleanups.push(() => sim.stop());
  const src = new LlrpSource({
    name: 'llrp-dock',
    reader: 'dock-1',
    address: `127.0.0.1:${sim.port}`,
    zones: o.zones ?? [{ rospecId: 1, antennas: [1, 2], trigger: { type: 'immediate' } }],
    log: silentLogger(),
    keepaliveMs: o.keepaliveMs ?? 300,
    responseTimeoutMs: 3_000,
    backoff: { initialMs: 50, maxMs: 300 },
  });
  const reads: LlrpRead[] = [];
  const avail: DeviceAvailability[] = [];
  const faults: LlrpFault[] = [];
  src.on('reading', (r) => reads.push(r));
  src.on('availability', (a) => avail.push(a));
  src.session.on('fault', (f) => faults.push(f));
  cleanups.push(() => src.stop());
  // tags the configured antennas (1, 2) see: zones 0 and 1
  const seen = new Set([...population.inZone(0), ...population.inZone(1)].map((t) => t.epcHex));
  return { population, sim, src, reads, avail, faults, seen };
}

const distinct = (reads: TagRead[]): Set<string> => new Set(reads.map((r) => r.epcHex));

describe('LlrpSource with the LLRP reader simulator', () => {
  it('sets the reader up, streams reads of the configured antennas only, and answers keepalives', async () => {
    const { sim, src, reads, avail, seen } = await rig();
    const asTagSource: Source<TagRead> = src; // the feature consumes it like the M100 source
    expect(asTagSource.devices).toEqual(['dock-1']);
    await src.start();
    await waitFor(() => src.isOnline('dock-1'), 10_000, 'online');
    expect(avail[0]).toMatchObject({ sensor: 'dock-1', online: true });
    expect(sim.roSpecs()).toEqual([{ id: 1, state: 'active', antennas: [1, 2] }]);
    await waitFor(() => distinct(reads).size === seen.size, 10_000, 'every tag of zones 0 and 1 read');
    expect([...distinct(reads)].every((e) => seen.has(e))).toBe(true);
    expect(new Set(reads.map((r) => r.antenna))).toEqual(new Set([1, 2]));
    const r = reads[0]!;
    expect(r).toMatchObject({ sensor: 'dock-1', reader: 'dock-1', rospecId: 1, seenCount: 1 });
    expect(r.epcHex).toMatch(/^30[0-9A-F]{22}$/);
    expect(r.rssi).toBeLessThan(-20);
    expect(r.rssi).toBeGreaterThan(-90);
    expect(Math.abs(r.firstSeen - Date.now())).toBeLessThan(60_000);
    await waitFor(() => sim.stats.keepaliveAcks >= 2, 10_000, 'two KEEPALIVE_ACKs');
    expect(sim.unackedKeepalives).toBeLessThanOrEqual(1);
    expect(src.stats).toMatchObject({ readings: reads.length, invalidFrames: 0, deviceErrors: 0 });
  });

  it('a reboot mid-inventory: offline, online again, the ROSpec set up again, reads resume with no phantom tag', async () => {
    const { sim, src, reads, avail, seen } = await rig();
    await src.start();
    await waitFor(() => reads.length > 20, 10_000, 'reads');
    sim.reboot(400);
    await waitFor(() => avail.some((a) => !a.online), 10_000, 'offline');
    expect(avail.find((a) => !a.online)!.reason).toMatch(/closed/);
    await waitFor(() => src.isOnline('dock-1'), 15_000, 'online again');
    expect(sim.stats.reboots).toBe(1);
    expect(sim.roSpecs()).toEqual([{ id: 1, state: 'active', antennas: [1, 2] }]);
    const n = reads.length;
    await waitFor(() => reads.length > n + 20, 10_000, 'reads after the reboot');
    expect([...distinct(reads)].every((e) => seen.has(e))).toBe(true);
    expect(avail.map((a) => a.online)).toEqual([true, false, true]);
  });

  it('a refused ADD_ROSPEC is reported with its status and retried; it counts as a device error', async () => {
    const { sim, src, reads, avail, faults } = await rig({ sim: { faults: { refuseAddRoSpec: 1 } } });
    await src.start();
    await waitFor(() => src.isOnline('dock-1') && reads.length > 0, 15_000, 'online with reads after the retry');
    expect(faults[0]).toMatchObject({ code: 'status', request: 'ADD_ROSPEC', status: { code: 100, description: 'ROSpec refused (simulated fault)' } });
    expect(avail[0]).toMatchObject({ online: false, reason: expect.stringMatching(/ADD_ROSPEC refused/) });
    expect(avail[1]).toMatchObject({ online: true });
    expect(sim.stats.rejectedRoSpecs).toBe(1);
    expect(src.stats.deviceErrors).toBe(1);
  });

  it('a ROSpec naming an antenna the reader lacks is refused with a field error, every retry', async () => {
    const { sim, src, faults } = await rig({ zones: [{ rospecId: 5, antennas: [9], trigger: { type: 'immediate' } }] });
    await src.start();
    await waitFor(() => faults.filter((f) => f.code === 'status').length >= 2, 15_000, 'two refusals');
    expect(faults[0]!.status).toMatchObject({ code: 100, description: 'antenna 9 does not exist (this reader has 1..4)', parameterError: { parameterType: 183 } });
    expect(src.isOnline('dock-1')).toBe(false);
    expect(sim.roSpecs()).toEqual([]);
  });

  it('a second client is refused (ConnectionAttemptEvent status 2) while the first stays served', async () => {
    const { sim, src, reads } = await rig();
    await src.start();
    await waitFor(() => src.isOnline('dock-1') && reads.length > 0, 10_000, 'first client streaming');
    const intruder: Socket = connect(sim.port, '127.0.0.1');
    cleanups.push(() => void intruder.destroy());
    let got = Buffer.alloc(0);
    let ended = false;
    intruder.on('data', (c: Buffer) => (got = Buffer.concat([got, c])));
    intruder.on('error', () => undefined);
    intruder.on('close', () => (ended = true));
    await waitFor(() => ended, 10_000, 'the second client closed by the reader');
    // READER_EVENT_NOTIFICATION (type 63, version 1) whose ConnectionAttemptEvent (TLV 256, 6 bytes) says 2
    expect(got.readUInt16BE(0)).toBe(0x043f);
    expect(got.readUInt32BE(2)).toBe(got.length);
    expect(got.subarray(-6).equals(Buffer.from('010000060002', 'hex'))).toBe(true);
    expect(sim.stats.refusedConnections).toBe(1);
    const n = reads.length;
    await waitFor(() => reads.length > n + 20, 10_000, 'the first client still served');
    expect(src.isOnline('dock-1')).toBe(true);
  });

  it('a silent reader (no keepalives, no reports) goes offline and is back when it answers again', async () => {
    const { sim, src, avail, reads } = await rig({ keepaliveMs: 200 });
    await src.start();
    await waitFor(() => src.isOnline('dock-1'), 10_000, 'online');
    sim.faults.silent = true;
    await waitFor(() => avail.some((a) => !a.online), 10_000, 'offline');
    expect(avail.find((a) => !a.online)!.reason).toMatch(/no message from the reader/);
    sim.faults.silent = false;
    await waitFor(() => src.isOnline('dock-1'), 15_000, 'online again');
    const n = reads.length;
    await waitFor(() => reads.length > n + 10, 10_000, 'reads again');
    expect(src.stats.timeouts).toBeGreaterThanOrEqual(1);
  });

  it('a vendor Custom parameter in reports is skipped and counted; garbage bytes end the connection, which is set up again', async () => {
    const { sim, src, reads, seen } = await rig({ sim: { faults: { customParam: true } } });
    await src.start();
    await waitFor(() => reads.length > 20, 10_000, 'reads with Custom parameters');
    expect(src.session.stats.decode.customParams).toBeGreaterThan(20);
    const sessions = src.session.stats.sessions;
    // a header whose length field says 2 GiB: the client cannot resynchronise and reconnects
    sim.injectGarbage(Buffer.from('043d7fffffff00000009', 'hex'));
    await waitFor(() => src.session.stats.sessions > sessions, 15_000, 'a new session');
    expect(src.stats.invalidFrames).toBeGreaterThanOrEqual(1);
    const n = reads.length;
    await waitFor(() => reads.length > n + 10, 10_000, 'reads again');
    expect([...distinct(reads)].every((e) => seen.has(e))).toBe(true);
  });

  it('a periodic zone gets aggregated reports (seen count > 1) at the end of each run', async () => {
    const { src, reads } = await rig({ zones: [{ rospecId: 3, antennas: [3], trigger: { type: 'periodic', periodMs: 400, durationMs: 200 } }] });
    await src.start();
    await waitFor(() => reads.some((r) => r.seenCount > 1), 10_000, 'an aggregated read');
    expect(reads.every((r) => r.antenna === 3 && r.rospecId === 3)).toBe(true);
    const r = reads.find((x) => x.seenCount > 1)!;
    expect(r.lastSeen).toBeGreaterThan(r.firstSeen);
  });

  it('stop() closes the connection and frees the reader for the next client', async () => {
    const { sim, src } = await rig();
    await src.start();
    await waitFor(() => src.isOnline('dock-1'), 10_000, 'online');
    await src.stop();
    await waitFor(() => !sim.connected, 10_000, 'the reader sees the client gone');
    expect(src.isOnline('dock-1')).toBe(false);
    expect(src.session.listenerCount('read')).toBe(0);
  });
});

describe('shelfgate sim llrp', () => {
  it('prints where it listens first, serves a client, and exits 0 when stopped', async () => {
    let out = '';
    const ac = new AbortController();
    const run = runSimCli(['llrp', '--listen', '127.0.0.1:0', '--tags', '30', '--gtins', '3', '--antennas', '2', '--seed', '4', '--reads-per-s', '500'], {
      stdout: { write: (s: string) => (out += s) },
      stderr: { write: () => undefined },
      signal: ac.signal,
    });
    cleanups.push(async () => {
      ac.abort();
      await run;
    });
    await waitFor(() => out.includes('\n'), 10_000, 'the first line');
    const m = /^llrp: 30 tags of 3 GTINs, 2 antennas on tcp:\/\/127\.0\.0\.1:(\d+) /.exec(out);
    expect(m).not.toBeNull();
    const src = new LlrpSource({ name: 'cli', address: `127.0.0.1:${m![1]}`, zones: [{ rospecId: 1, antennas: [0], trigger: { type: 'immediate' } }], log: silentLogger(), backoff: { initialMs: 50, maxMs: 200 } });
    const reads: TagRead[] = [];
    src.on('reading', (r) => reads.push(r));
    cleanups.push(() => src.stop());
    await src.start();
    await waitFor(() => reads.length > 10, 10_000, 'reads from the CLI simulator');
    expect(out).toContain('llrp: client connected');
    await src.stop();
    ac.abort();
    expect(await run).toBe(0);
  });

  it('--replay sends the frames of the file while a ROSpec is active; --script moves tags and says so', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'shelfgate-llrp-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    // the LLRP 1.0.1 example report (EPC-96 3074257BF7194E4000001A85 on antenna 2), and a comment line
    writeFileSync(join(dir, 'replay.hex'), '# one RO_ACCESS_REPORT\n043D0000002C00000007 00F00022 8D3074257BF7194E4000001A85 810002 86CC 82000644F6D5D0924088 0003\n');
    writeFileSync(join(dir, 'moves.txt'), '50 move 3 from 0 to out\n');
    let out = '';
    const ac = new AbortController();
    const run = runSimCli(['llrp', '--listen', '127.0.0.1:0', '--replay', join(dir, 'replay.hex'), '--script', join(dir, 'moves.txt'), '--round-ms', '20'], {
      stdout: { write: (s: string) => (out += s) },
      signal: ac.signal,
    });
    cleanups.push(async () => {
      ac.abort();
      await run;
    });
    const m = await waitFor(() => /on tcp:\/\/127\.0\.0\.1:(\d+) /.exec(out), 10_000, 'the listen line');
    await waitFor(() => out.includes('moved 3 tag(s) from 0 to out'), 10_000, 'the scripted move');
    const src = new LlrpSource({ name: 'replay', address: `127.0.0.1:${m[1]}`, zones: [{ rospecId: 1, antennas: [1], trigger: { type: 'immediate' } }], log: silentLogger() });
    const reads: LlrpRead[] = [];
    src.on('reading', (r) => reads.push(r));
    cleanups.push(() => src.stop());
    await src.start();
    await waitFor(() => reads.length >= 3, 10_000, 'replayed reads');
    expect(new Set(reads.map((r) => `${r.epcHex} ${r.antenna} ${r.rssi} ${r.seenCount}`))).toEqual(new Set(['3074257BF7194E4000001A85 2 -52 3']));
  });

  it('usage errors exit 64, a missing script exits 66', async () => {
    let err = '';
    const io = { stdout: { write: () => undefined }, stderr: { write: (s: string) => (err += s) } };
    expect(await runSimCli(['llrp'], io)).toBe(64);
    expect(err).toContain('--listen HOST:PORT is required');
    expect(await runSimCli(['llrp', '--listen', 'nope'], io)).toBe(64);
    expect(await runSimCli(['llrp', '--listen', '127.0.0.1:0', '--miss', '2'], io)).toBe(64);
    expect(await runSimCli(['llrp', '--listen', '127.0.0.1:0', '--bogus'], io)).toBe(64);
    expect(await runSimCli(['llrp', '--listen', '127.0.0.1:0', '--script', '/nonexistent/llrp-script'], io)).toBe(66);
    let help = '';
    expect(await runSimCli(['llrp', '--help'], { stdout: { write: (s: string) => (help += s) } })).toBe(0);
    expect(help).toContain('--fault-refuse-rospec N');
  });
});
