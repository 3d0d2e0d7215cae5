/**
 * M100Source against the R200 simulator over real transports: a TCP serial server (ser2net-like)
 * and a socat pseudo-terminal pair opened with serialport's real binding. Reads arrive, a garbage
 * burst (with a frame whose tag CRC is wrong) is counted and dropped without a phantom tag, a
 * module that stops answering goes offline and comes back, and a dropped connection is
 * reconnected by the ReconnectingLink.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { DeviceAvailability } from '../../src/core/sources/types';
import { M100_SERIAL, M100Source, type TagRead } from '../../src/features/rfid/m100-source';
import { silentLogger } from '../../src/log';
import { openerFor } from '../../src/transport/opener';
import { ReconnectingLink } from '../../src/transport/reconnecting';
import { TagPopulation } from '../../simulators/rfid/population';
import { R200Simulator } from '../../simulators/rfid/r200-sim';
import { runSimCli } from '../../simulators/cli';
import { servePty, serveTcp, type Serving } from '../../simulators/serve';
import { waitFor } from '../helpers/wait';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function rig(serve: (sim: R200Simulator) => Promise<Serving>) {
  const population = new TagPopulation({ tags: 40, gtins: 4, zones: 2, seed: 5, missProbability: 0.1 });
  const sim = new R200Simulator({ population, zone: 0, roundMs: 20 });
  const serving = await serve(sim);
  cleanups.push(() => serving.close());
  const link = new ReconnectingLink({ name: 'm100', opener: openerFor(serving.url, { ...M100_SERIAL }), backoff: { initialMs: 50, maxMs: 300 }, log: silentLogger() });
  const src = new M100Source({ name: 'm100', reader: 'r1', link, log: silentLogger(), txPowerDbm: 22, probeMs: 200, rearmMs: 600, silenceMs: 1000, pollCount: 100 });
  const reads: TagRead[] = [];
  const avail: DeviceAvailability[] = [];
  src.on('reading', (r) => reads.push(r));
  src.on('availability', (a) => avail.push(a));
  await src.start();
  await link.start();
  cleanups.push(async () => {
    await src.stop();
    await link.stop();
  });
  const known = new Set(population.tags.map((t) => t.epcHex));
  const zone0 = new Set(population.inZone(0).map((t) => t.epcHex));
  return { sim, serving, link, src, reads, avail, known, zone0 };
}

/** Reads so far that are not tags of zone 0 (a phantom, or a tag the antenna cannot see). */
const strangers = (reads: TagRead[], zone0: Set<string>): TagRead[] => reads.filter((r) => !zone0.has(r.epcHex));

describe('M100Source with the R200 simulator', () => {
  it('over TCP: reads, garbage dropped without a phantom, silence, recovery, reconnect', async () => {
    const { sim, serving, link, src, reads, avail, zone0 } = await rig((s) => serveTcp(s, '127.0.0.1', 0));

    // every tag of the antenna's zone is read; multi-poll count 100 at 20 ms ends after 2 s, so
    // reads past 4 s prove the source re-armed it
    await waitFor(() => zone0.size === new Set(reads.map((r) => r.epcHex)).size && reads.length > 0, 10_000, 'every zone-0 tag read');
    expect(reads[0]).toMatchObject({ sensor: 'r1', reader: 'r1', antenna: 1 });
    expect(reads.every((r) => r.rssi < 0 && r.rssi > -100)).toBe(true);
    expect(sim.txPowerCentiDbm).toBe(2200);
    expect(src.hardwareVersion).toBe('M100 26dBm V1.0');
    await waitFor(() => sim.stats.rounds > 250, 15_000, 'more rounds than one multi-poll count');
    expect(src.m100Stats.rearms).toBeGreaterThan(0);

    // a garbage burst: random bytes, header bytes, and a well-framed notification whose tag CRC is
    // wrong (EPC 30751FEB..., not in the population); then a good "no tag" frame marks the end
    const before = { crc: src.decoderStats.bad.tagCrc, noise: src.stats.noiseBytes, noTag: src.m100Stats.noTag };
    sim.injectNoise(hex('00 FF BB 13 BB BB 01 7E 42 ' + 'BB 02 22 00 11 C9 34 00 30 75 1F EB 70 5C 59 04 E3 D5 0D 70 3A 77 F0 7E ' + '99 BB 88'));
    sim.injectNoise(hex('BB 01 FF 00 01 15 16 7E'));
    await waitFor(() => src.m100Stats.noTag > before.noTag, 5000, 'the frame after the burst');
    expect(src.decoderStats.bad.tagCrc).toBe(before.crc + 1);
    expect(src.stats.noiseBytes).toBeGreaterThan(before.noise);
    const n = reads.length;
    await waitFor(() => reads.length > n + 20, 5000, 'reads after the burst');
    expect(strangers(reads, zone0)).toEqual([]);

    // the module stops answering: offline; answers again: online, reads resume
    sim.faults.silent = true;
    await waitFor(() => !src.isOnline('r1'), 5000, 'offline while silent');
    expect(avail.at(-1)).toMatchObject({ online: false, reason: expect.stringMatching(/^silent/) });
    sim.faults.silent = false;
    const m = reads.length;
    await waitFor(() => src.isOnline('r1') && reads.length > m + 20, 10_000, 'back online with reads');

    // another client takes the TCP server (one client at a time): our link drops and reconnects
    const opens = link.stats.opens;
    const tcp = serving as unknown as { port: number };
    const intruder: Socket = connect(tcp.port, '127.0.0.1');
    intruder.on('error', () => undefined);
    cleanups.push(() => void intruder.destroy());
    await waitFor(() => avail.some((a) => !a.online && a.reason?.startsWith('link down')), 5000, 'link down');
    await waitFor(() => link.stats.opens > opens, 10_000, 'reconnected');
    const k = reads.length;
    await waitFor(() => src.isOnline('r1') && reads.length > k + 20, 10_000, 'reads after reconnecting');
    expect(strangers(reads, zone0)).toEqual([]);
  });

  it('over a socat pseudo-terminal: reads, and a garbage burst counted without a phantom tag', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'shelfgate-m100-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const { sim, src, reads, zone0 } = await rig((s) => servePty(s, join(dir, 'ttyR200')));
    await waitFor(() => reads.length > 50, 10_000, 'reads over the pty');
    const bad = src.stats.invalidFrames + src.stats.crcErrors;
    const noTag = src.m100Stats.noTag;
    sim.injectNoise(hex('BB 02 22 00 11 C9 34 00 30 75 1F EB 70 5C 59 04 E3 D5 0D 70 3A 76 00 7E 7E 7E BB 00'));
    sim.injectNoise(hex('BB 01 FF 00 01 15 16 7E'));
    await waitFor(() => src.m100Stats.noTag > noTag, 5000, 'the frame after the burst');
    expect(src.stats.invalidFrames + src.stats.crcErrors).toBeGreaterThan(bad);
    const n = reads.length;
    await waitFor(() => reads.length > n + 20, 5000, 'reads after the burst');
    expect(strangers(reads, zone0)).toEqual([]);
  });
});

describe('shelfgate sim r200', () => {
  it('serves on TCP port 0, says where, and answers the hardware-version command', async () => {
    let out = '';
    const ac = new AbortController();
    const run = runSimCli(['r200', '--tcp', '127.0.0.1:0', '--tags', '50', '--gtins', '5', '--zones', '2', '--seed', '3'], { stdout: { write: (s: string) => (out += s) }, stderr: { write: () => undefined }, signal: ac.signal });
    cleanups.push(async () => {
      ac.abort();
      await run;
    });
    const m = await waitFor(() => /on tcp:\/\/127\.0\.0\.1:(\d+)/.exec(out), 5000, 'the serving line');
    expect(out).toMatch(/^r200: 50 tags of 5 GTINs, 25 in zone 0, on tcp:/);
    const sock = connect(Number(m[1]), '127.0.0.1');
    cleanups.push(() => void sock.destroy());
    let got = Buffer.alloc(0);
    sock.on('data', (c: Buffer) => (got = Buffer.concat([got, c])));
    sock.on('error', () => undefined);
    sock.write(hex('BB 00 03 00 01 00 04 7E'));
    await waitFor(() => got.length >= 23, 5000, 'the answer');
    expect(got.equals(hex('BB 01 03 00 10 00 4D 31 30 30 20 32 36 64 42 6D 20 56 31 2E 30 92 7E'))).toBe(true);
    ac.abort();
    expect(await run).toBe(0);
  });

  it('usage errors exit 64', async () => {
    const err: string[] = [];
    const io = { stdout: { write: () => undefined }, stderr: { write: (s: string) => err.push(s) } };
    expect(await runSimCli(['r200'], io)).toBe(64);
    expect(await runSimCli(['r200', '--tcp', '127.0.0.1:0', '--framing', 'XX'], io)).toBe(64);
    expect(await runSimCli(['r200', '--tcp', '127.0.0.1:0', '--miss', '2'], io)).toBe(64);
    expect(err.join('')).toMatch(/--framing must be BB7E or AADD/);
  });
});
