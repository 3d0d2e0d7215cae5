/**
 * EPC decoding and zone smoothing without I/O: a tag population (default 20,000 tags of 60 GTINs
 * across 4 zones of 4 antennas each, one in ten tags also seen weakly by a neighbouring zone, ±4 dB
 * RSSI noise) read at 50,000 reads/s of virtual time, ticked every 250 ms. Reports the wall-clock
 * rate of (a) decodeEpc alone, (b) smoothing alone, (c) decode + smoothing per read, and the heap
 * the smoother holds per tracked tag (needs --expose-gc for a clean number).
 *
 *   npm run build && node --expose-gc dist/bench/rfid-smoothing.js [--tags 20000] [--reads 2000000]
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { decodeEpc, epcGtin } from '../src/drivers/epc';
import { RfidSmoother, type SmoothingEvent } from '../src/features/rfid/smoothing';
import { machine } from './harness';

/** SGTIN-96, partition 5 (7-digit company prefix), for the bench's population only. */
function sgtin96Hex(filter: number, company: number, item: number, serial: number): string {
  const v = (0x30n << 88n) | (BigInt(filter) << 85n) | (5n << 82n) | (BigInt(company) << 58n) | (BigInt(item) << 38n) | BigInt(serial);
  return v.toString(16).toUpperCase().padStart(24, '0');
}

function heapMb(): number {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) {
    g();
    g();
  }
  return process.memoryUsage().heapUsed / 2 ** 20;
}

function main(): void {
  const { values } = parseArgs({ options: { tags: { type: 'string', default: '20000' }, reads: { type: 'string', default: '2000000' } } });
  const nTags = Number(values.tags);
  const nReads = Number(values.reads);
  const RATE = 50_000; // reads per second of virtual time

  const zones = [0, 1, 2, 3].map((z) => ({
    id: ['backroom', 'g1/s1', 'g1/s2', 'fitting-1'][z]!,
    antennas: [1, 2, 3, 4].map((a) => ({ reader: `llrp-${z}`, antenna: a })),
    arriveAfter: 3,
    windowMs: 2000,
    departAfterMs: 10_000,
    readCycleMs: 250,
  }));
  let seed = 1;
  const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);

  const epcs: string[] = [];
  const bytes: Buffer[] = [];
  const zoneOf: number[] = [];
  const rssiOf: number[] = [];
  for (let i = 0; i < nTags; i++) {
    const hex = sgtin96Hex(1, 614141 + (i % 3), 100000 + (i % 60), 1_000_000 + i);
    epcs.push(hex);
    bytes.push(Buffer.from(hex, 'hex'));
    zoneOf.push(i % 4);
    rssiOf.push(-45 - Math.floor(rnd() * 25));
  }
  // the reads: each picks a tag at random; one in ten tags is seen by the next zone too, 15 dB weaker
  const readTag = new Uint32Array(nReads);
  const readZone = new Uint8Array(nReads);
  const readAnt = new Uint8Array(nReads);
  const readRssi = new Int8Array(nReads);
  for (let i = 0; i < nReads; i++) {
    const t = Math.floor(rnd() * nTags);
    const neighbour = t % 10 === 0 && rnd() < 0.5;
    readTag[i] = t;
    readZone[i] = neighbour ? (zoneOf[t]! + 1) % 4 : zoneOf[t]!;
    readAnt[i] = 1 + Math.floor(rnd() * 4);
    readRssi[i] = Math.round(rssiOf[t]! - (neighbour ? 15 : 0) + (rnd() * 8 - 4));
  }
  const readers = zones.map((z) => z.antennas[0]!.reader);

  console.log(`machine: ${machine()}`);
  console.log(`population: ${nTags} tags, 60 GTINs, 4 zones; ${nReads} reads at ${RATE}/s virtual (${nReads / RATE} s)`);

  // (a) decode alone
  {
    const t0 = performance.now();
    let gtins = 0;
    for (let i = 0; i < nReads; i++) if (epcGtin(decodeEpc(bytes[readTag[i]!]!)) !== null) gtins++;
    const ms = performance.now() - t0;
    console.log(`decodeEpc (bytes in):         ${Math.round(nReads / (ms / 1000)).toLocaleString('en')} reads/s (${gtins === nReads ? 'all SGTIN' : `${gtins} SGTIN`})`);
  }

  const run = (label: string, decode: boolean) => {
    const heap0 = heapMb();
    let events = 0;
    const counts = { arrival: 0, departure: 0, count: 0 };
    const s = new RfidSmoother({ zones }, (e: SmoothingEvent) => {
      events++;
      counts[e.type]++;
    });
    const t0 = performance.now();
    let nextTick = 250;
    for (let i = 0; i < nReads; i++) {
      const at = (i * 1000) / RATE;
      if (at >= nextTick) {
        s.tick(at);
        nextTick += 250;
      }
      const t = readTag[i]!;
      let epc: string;
      let gtin: string | null;
      if (decode) {
        const d = decodeEpc(bytes[t]!);
        epc = d.hex;
        gtin = epcGtin(d);
      } else {
        epc = epcs[t]!;
        gtin = null;
      }
      s.read({ epc, gtin, reader: readers[readZone[i]!]!, antenna: readAnt[i]!, rssi: readRssi[i]!, at });
    }
    const ms = performance.now() - t0;
    const heap1 = heapMb();
    const present = zones.reduce((n, z) => n + [...s.zoneCounts(z.id).values()].reduce((a, b) => a + b, 0), 0);
    console.log(
      `${label} ${Math.round(nReads / (ms / 1000)).toLocaleString('en')} reads/s; ${s.trackedTags} tags tracked, ${present} present; ` +
        `${counts.arrival} arrivals, ${counts.departure} departures (${s.counters.handovers} hand-overs), ${counts.count} count events; ` +
        `heap ${(heap1 - heap0).toFixed(1)} MB = ${Math.round(((heap1 - heap0) * 2 ** 20) / s.trackedTags)} B per tag${(globalThis as { gc?: unknown }).gc ? '' : ' (no --expose-gc: rough)'}`,
    );
    return s;
  };
  run('smoothing only (hex in):     ', false);
  const keep = run('decode + smoothing (bytes in):', true);
  if (keep.trackedTags < 0) console.log('unreachable'); // keep the last smoother alive until its heap was measured
}

main();
