/**
 * Issue #10's benchmark: four LLRP readers and four serial modules through the whole gateway.
 *
 *   npm run build && node dist/bench/rfid.js [--steps 10000,15000,20000,25000,30000] [--step-s 4] [--settle-round-ms 500]
 *   (BENCH_DAEMON_NODE_ARGS='--max-old-space-size=96': Node flags for the daemon alone)
 *
 * Parts: the real daemon (`node dist/src/cli.js run --config`, as the e2e tests start it); in this
 * process the reference central (plain HTTP), a Modbus scale (the config needs a weight bus), 4
 * LlrpReaderSimulator (immediate trigger, one antenna, one zone each) and 4 R200Simulator over TCP
 * (one zone each), all sharing one TagPopulation of 20,000 tags: 4,800 in each LLRP zone and 200 in
 * each serial zone, plus 400 tags out of every field for the latency phase.
 *
 * Why 200 tags per serial zone: one module's UART (115200 baud, 24-byte notifications) carries
 * about 480 reads a second. With 2,500 tags a tag would be read every 5 s, never 3 times in the
 * 2 s arrival window. The serial modules' rounds are paced to fit the link (roundMs 450: 190 reads
 * of 24 B per 450 ms, about 10.1 kB/s of the 11.5 kB/s), so no tag is starved by the link budget.
 *
 * Zones use the defaults (arrive_after 3, window_ms 2000, depart_after_ms 10000, tick_ms 250)
 * except read_cycle_ms 100 instead of 250: with rounds shorter than the read cycle, part of the
 * reads would be read-cycle duplicates, dropped early on the smoother's cheap path, and the rate
 * would flatter the gateway; at 100 ms every read of the throughput steps is a full sighting. The gateway asks an immediate-trigger LLRP reader for one RO_ACCESS_REPORT
 * per tag (N = 1), so every read is its own LLRP message here: the gateway's worst case.
 *
 * Phases, on one daemon:
 * 1. settle: LLRP rounds every 500 ms (`--settle-round-ms`; about 9,100 reads/s per reader), until all 20,000 tags are
 *    present (`rfid.zones`, technician). RSS: the daemon's VmRSS then.
 * 2. latency: one out-of-field tag moved into each zone every 100 ms (400 in all); latency = from
 *    the move (this process's clock) to its arrival message on `rfid/zone/+/event` (same clock).
 *    The floor by design: the tag is read first at the next round (0..round later) and arrives at its
 *    3rd sighting, i.e. 2 rounds after the first read: at least 2 x round, about 2.5 x round median.
 * 3. throughput: the LLRP readers are restarted on their ports at a higher rate per step (the
 *    simulator's round period is fixed while a ROSpec runs); the gateway reconnects within ~100 ms
 *    (its zones are held meanwhile). After 1.5 s warm-up, `--step-s` seconds are measured: reads
 *    sent by the simulators (their counters) and reads decoded by the gateway (`rfid.readers`:
 *    LLRP `reads`, serial `frames`), the daemon's CPU (/proc) and this process's CPU. The daemon
 *    keeps up when it decoded at least 97 % of what was sent and its CPU is under 95 % of a core.
 * 4. quiet: LLRP rounds of 2 s (about 9,000 reads/s in all) for 12 s, then the daemon's RSS again:
 *    how much of the RSS is the tags and how much the read rate (heap headroom under load).
 *
 * The simulators run in this process: its CPU is printed (near one core, the bench sets the pace).
 * This is a shared 2-core VM: the load average is printed per step.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import { BusClient } from '../src/bus/request-client';
import { loadDefinitions } from '../src/devices/definitions';
import type { ModbusDefinition } from '../src/devices/types';
import { silentLogger } from '../src/log';
import { CentralSimulator } from '../simulators/central';
import { ModbusLoadCellBusSimulator } from '../simulators/modbus-loadcell-sim';
import { LoadCellPhysics, mulberry32 } from '../simulators/physics';
import { LlrpReaderSimulator } from '../simulators/rfid/llrp-sim';
import { TagPopulation, type SimTag } from '../simulators/rfid/population';
import { R200Simulator } from '../simulators/rfid/r200-sim';
import { serveTcp } from '../simulators/serve';
import { waitFor } from '../test/helpers/wait';
import { fastHash, usersWithHash } from '../test/helpers/users';
import { daemonRuntimeLine, fmt, machine, processCpuMs, processRssMb, startBenchDaemon } from './harness';

const STORE = 'rfb';
const PW = 'bench-rfid';
const LLRP_READERS = 4;
const SERIAL = 4;
const LLRP_TAGS = 4800; // per LLRP zone
const SERIAL_TAGS = 200; // per serial zone
const SPARE = 400; // out of every field, moved in for the latency phase
const MISS = 0.05;
const SERIAL_ROUND_MS = 450;
const QUIET_ROUND_MS = 2000;
/** Below every round period of the steps (>= 150 ms): every read is a full sighting, none a read-cycle duplicate (the cheap path). */
const READ_CYCLE_MS = 100;

const stage = (what: string): void => void process.stderr.write(`  [${new Date().toISOString().slice(11, 19)}] ${what}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const cpuNow = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] ?? NaN;
};


type ReaderRow = { reader_id: string; online: boolean; readings: number };

/** Per-reader LLRP round period for a target reads/s per reader (every in-field tag answers 1 - MISS of the rounds). */
const roundFor = (perReader: number): number => Math.max(10, Math.round((LLRP_TAGS * (1 - MISS) * 1000) / perReader));

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { steps: { type: 'string', default: '10000,15000,20000,25000,30000' }, 'step-s': { type: 'string', default: '4' }, 'settle-round-ms': { type: 'string', default: '500' } } });
  const steps = values.steps!.split(',').filter((x) => x !== '').map(Number);
  const SETTLE_ROUND_MS = Number(values['settle-round-ms']);
  const stepS = Number(values['step-s']);
  console.log(`machine: ${machine()}`);
  console.log(`date: ${new Date().toISOString()}; load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log(daemonRuntimeLine());
  console.log(`command: node dist/bench/rfid.js --steps ${steps.join(',')} --step-s ${stepS} --settle-round-ms ${SETTLE_ROUND_MS}`);

  const dir = mkdtempSync(join(tmpdir(), 'sg-bench-rfid-'));
  const stops: Array<() => Promise<unknown> | void> = [() => rmSync(dir, { recursive: true, force: true })];
  try {
    const zones = LLRP_READERS + SERIAL;
    const total = LLRP_READERS * LLRP_TAGS + SERIAL * SERIAL_TAGS;
    // round-robin over 8 zones at creation; re-placed here: 4,800 per LLRP zone, 200 per serial zone, 400 out
    const population = new TagPopulation({ tags: total + SPARE, gtins: 500, zones, seed: 21, missProbability: MISS, rssiSigmaDb: 1 });
    population.tags.forEach((t, i) => {
      if (i < LLRP_READERS * LLRP_TAGS) t.zone = i % LLRP_READERS;
      else if (i < total) t.zone = LLRP_READERS + ((i - LLRP_READERS * LLRP_TAGS) % SERIAL);
      else t.zone = null;
    });
    const spare: SimTag[] = population.tags.slice(total);

    const central = new CentralSimulator({ host: '127.0.0.1', port: 0, token: 'tok', storeIds: [STORE], log: silentLogger(), seed: 5 });
    await central.start();
    stops.push(() => central.stop());
    writeFileSync(join(dir, 'token'), 'tok\n', { mode: 0o600 });

    const llrp: LlrpReaderSimulator[] = [];
    const newLlrp = async (i: number, roundMs: number, port = 0): Promise<LlrpReaderSimulator> => {
      const s = new LlrpReaderSimulator({ population, port, antennas: 1, antennaZones: [i], roundMs, readsPerSecond: 10_000_000, rng: mulberry32(30 + i) });
      await s.start();
      return s;
    };
    for (let i = 0; i < LLRP_READERS; i++) llrp.push(await newLlrp(i, SETTLE_ROUND_MS));
    stops.push(() => Promise.all(llrp.map((s) => s.stop())));
    const serial: R200Simulator[] = [];
    const serialUrls: string[] = [];
    for (let i = 0; i < SERIAL; i++) {
      const s = new R200Simulator({ population, zone: LLRP_READERS + i, roundMs: SERIAL_ROUND_MS, rng: mulberry32(40 + i) });
      const tcp = await serveTcp(s, '127.0.0.1', 0);
      stops.push(() => tcp.close());
      serial.push(s);
      serialUrls.push(tcp.url);
    }
    const defs = loadDefinitions();
    const physics = new LoadCellPhysics({ unitWeightG: 250, items: 0, noiseSigmaG: 0.1, settleMs: 30, rng: mulberry32(1) });
    const modbus = await serveTcp(new ModbusLoadCellBusSimulator({ definition: defs.get('generic-modbus-loadcell') as ModbusDefinition, slaves: new Map([[1, physics]]), turnaroundMs: 0 }), '127.0.0.1', 0);
    stops.push(() => modbus.close());

    const hash = await fastHash(PW);
    const zoneIds = [...Array.from({ length: LLRP_READERS }, (_, i) => `llrp${i + 1}`), ...Array.from({ length: SERIAL }, (_, i) => `serial${i + 1}`)];
    const reconnect = { initial_ms: 50, max_ms: 500 };
    const config = {
      store_id: STORE,
      data_dir: join(dir, 'state'),
      log: { level: 'info' },
      mqtt: { port: 0, users: usersWithHash(hash, { tech: 'technician', kiosk: 'kiosk' }) },
      sync: { transport: 'https', https: { url: central.url, token_file: join(dir, 'token'), request_timeout_ms: 10_000 }, long_poll_s: 5, backoff: { initial_ms: 50, max_ms: 500 } },
      buses: [{ id: 'bus', path: modbus.url, model: 'generic-modbus-loadcell', poll_interval_ms: 1000, timeout_ms: 500 }],
      shelves: [
        { id: 'g1', slots: [{ id: 's1', sensor: { bus: 'bus', address: 1 }, gtin: population.gtins[0], unit_weight_g: 250 }] },
        { id: 'rf', slots: zoneIds.map((z) => ({ id: z })) },
      ],
      rfid: {
        readers: [
          ...llrp.map((s, i) => ({ id: `llrp${i + 1}`, kind: 'llrp', address: `127.0.0.1:${s.port}`, antenna_ports: 1, keepalive_ms: 2000, reconnect })),
          ...serialUrls.map((url, i) => ({ id: `serial${i + 1}`, kind: 'm100', path: url, reconnect })),
        ],
        zones: zoneIds.map((z) => ({ id: z, location: `rf/${z}`, antennas: [{ reader: z, antenna: 1 }], read_cycle_ms: READ_CYCLE_MS })),
      },
    };
    stage(`${fmt(total)} tags in 8 zones (+${SPARE} out); starting the daemon`);
    const daemon = await startBenchDaemon(config, dir);
    stops.push(() => daemon.stop());
    const pid = daemon.proc.pid;
    const rssReady = processRssMb(pid); // at `gateway ready`: readers connecting, no tag yet
    const tech = await BusClient.connect({ url: `mqtt://127.0.0.1:${daemon.mqttPort}`, username: 'tech', password: PW, store: STORE });
    stops.push(() => tech.close());
    const present = async (): Promise<number> => ((await tech.request('rfid.zones', { tags: false }, 30_000)) as Array<{ tags_present: number }>).reduce((s, z) => s + z.tags_present, 0);
    const readers = async (): Promise<ReaderRow[]> => (await tech.request('rfid.readers', {}, 30_000)) as ReaderRow[];

    // ---------------------------------------------------------------- 1. settle, RSS
    const t0 = performance.now();
    const loadSamples: number[] = [];
    const loadTimer = setInterval(() => loadSamples.push(loadavg()[0]!), 5000);
    stops.push(() => clearInterval(loadTimer));
    let maxRss = 0;
    const rssTimer = setInterval(() => (maxRss = Math.max(maxRss, processRssMb(pid))), 250);
    stops.push(() => clearInterval(rssTimer));
    await waitFor(async () => (await present()) >= total, 180_000, `all ${total} tags present`, 500);
    const settleS = (performance.now() - t0) / 1000;
    await sleep(3000); // arrivals' outbox and bus work done
    const rssSettled = processRssMb(pid);
    stage(`settled in ${fmt(settleS, 1)} s, RSS ${fmt(rssSettled, 1)} MB`);

    // ---------------------------------------------------------------- 2. latency
    const watch = mqtt.connect(`mqtt://127.0.0.1:${daemon.mqttPort}`, { protocolVersion: 4, username: 'kiosk', password: PW, reconnectPeriod: 0 });
    await new Promise<void>((res, rej) => {
      watch.once('connect', () => res());
      watch.once('error', rej);
    });
    stops.push(() => watch.endAsync());
    const movedAt = new Map<string, { at: number; serial: boolean }>();
    const lat = { llrp: [] as number[], serial: [] as number[] };
    watch.on('message', (_t, payload) => {
      if (payload.length === 0) return;
      const e = JSON.parse(payload.toString()) as { kind: string; epc: string };
      const m = movedAt.get(e.epc);
      if (e.kind !== 'arrival' || !m) return;
      movedAt.delete(e.epc);
      (m.serial ? lat.serial : lat.llrp).push(performance.now() - m.at);
    });
    await watch.subscribeAsync(`shelfgate/v1/${STORE}/rfid/zone/+/event`, { qos: 1 });
    for (let k = 0; k < spare.length; k++) {
      const z = k % zones;
      const t = spare[k]!;
      movedAt.set(t.epcHex, { at: performance.now(), serial: z >= LLRP_READERS });
      t.zone = z;
      if (z === zones - 1) await sleep(100);
    }
    await waitFor(() => movedAt.size === 0, 60_000, 'every moved tag arrived', 50);
    const rssAll = processRssMb(pid);
    stage(`latency done; RSS ${fmt(rssAll, 1)} MB`);

    // ---------------------------------------------------------------- 3. throughput
    interface StepRow { target: number; roundMs: number; sent: number; decoded: number; cpu: number; bench: number; wall: number; load: number }
    const rows: StepRow[] = [];
    const decodedNow = async (): Promise<number> => (await readers()).reduce((s, r) => s + r.readings, 0);
    const sentNow = (): number => llrp.reduce((s, x) => s + x.stats.tagReports, 0) + serial.reduce((s, x) => s + x.stats.notifications, 0);
    for (const target of steps) {
      const roundMs = roundFor(target);
      for (let i = 0; i < llrp.length; i++) {
        const port = llrp[i]!.port;
        await llrp[i]!.stop();
        llrp[i] = await newLlrp(i, roundMs, port);
      }
      // the gateway reconnected and reads again
      await waitFor(async () => (await readers()).every((r) => r.online) && llrp.every((s) => s.stats.tagReports > 0), 30_000, 'readers reconnected', 100);
      await sleep(1500);
      const s0 = sentNow();
      const d0 = await decodedNow();
      const c0 = processCpuMs(pid);
      const b0 = cpuNow();
      const w0 = performance.now();
      await sleep(stepS * 1000);
      const s1 = sentNow();
      const c1 = processCpuMs(pid);
      const b1 = cpuNow();
      const w1 = performance.now();
      const d1 = await decodedNow(); // after the sends counted: a lagging gateway is not flattered
      const row: StepRow = { target, roundMs, sent: s1 - s0, decoded: d1 - d0, cpu: c1 - c0, bench: b1 - b0, wall: (w1 - w0) / 1000, load: loadavg()[0]! };
      rows.push(row);
      stage(`step ${target}/reader: sent ${fmt(row.sent / row.wall)}/s decoded ${fmt(row.decoded / row.wall)}/s daemon CPU ${fmt(row.cpu / row.wall / 10)} % bench ${fmt(row.bench / row.wall / 10)} %`);
      if (row.decoded < row.sent * 0.97 && rows.length > 1 && rows.at(-2)!.decoded < rows.at(-2)!.sent * 0.97) break; // two steps behind: saturated
    }
    const finalPresent = await present();
    // 4. RSS at a quiet read rate: LLRP rounds of 2 s (about 2,300 reads/s per reader), 12 s on
    for (let i = 0; i < llrp.length; i++) {
      const port = llrp[i]!.port;
      await llrp[i]!.stop();
      llrp[i] = await newLlrp(i, QUIET_ROUND_MS, port);
    }
    await sleep(12_000);
    const rssQuiet = processRssMb(pid);
    const quietPresent = await present();
    const keeps = (r: StepRow): boolean => r.decoded >= r.sent * 0.97 && r.cpu / (r.wall * 1000) < 0.95;

    // ---------------------------------------------------------------- report
    console.log(`\nsettle: ${fmt(total)} tags present after ${fmt(settleS, 1)} s (LLRP rounds ${SETTLE_ROUND_MS} ms, serial ${SERIAL_ROUND_MS} ms)`);
    console.log(`RSS of the daemon: ${fmt(rssReady, 1)} MB at "gateway ready" (no tag yet); ${fmt(rssSettled, 1)} MB with ${fmt(total)} tags present; ${fmt(rssAll, 1)} MB with ${fmt(total + SPARE)}; peak over the run ${fmt(maxRss, 1)} MB (sampled every 250 ms); ${fmt(rssQuiet, 1)} MB after 12 s at LLRP rounds of ${QUIET_ROUND_MS} ms (${fmt(quietPresent)} tags present)`);
    const l = (xs: number[], floor: number): string => `${xs.length} tags, floor ${fmt(floor)} ms (2 rounds), median ${fmt(quantile(xs, 0.5))} ms, p99 ${fmt(quantile(xs, 0.99))} ms, max ${fmt(Math.max(...xs))} ms`;
    console.log(`arrival latency, move -> arrival on the bus: LLRP zones (round ${SETTLE_ROUND_MS} ms): ${l(lat.llrp, 2 * SETTLE_ROUND_MS)}`);
    console.log(`arrival latency, move -> arrival on the bus: serial zones (round ${SERIAL_ROUND_MS} ms): ${l(lat.serial, 2 * SERIAL_ROUND_MS)}`);
    console.log(`\nthroughput (${stepS} s per step after 1.5 s warm-up; sent = simulators' reads incl. ~1,700/s from the serial modules; decoded = the gateway's reader counters)`);
    console.log('| LLRP reads/s per reader (target) | LLRP round ms | sent reads/s | decoded reads/s | decoded/sent | daemon CPU % of a core | daemon CPU ms per 1,000 reads | bench process CPU % | load avg (1 min) | keeps up |');
    console.log('|---|---|---|---|---|---|---|---|---|---|');
    for (const r of rows)
      console.log(
        `| ${fmt(r.target)} | ${r.roundMs} | ${fmt(r.sent / r.wall)} | ${fmt(r.decoded / r.wall)} | ${fmt((r.decoded / r.sent) * 100, 1)} % | ${fmt(r.cpu / r.wall / 10)} | ${fmt((r.cpu / r.decoded) * 1000, 1)} | ${fmt(r.bench / r.wall / 10)} | ${fmt(r.load, 2)} | ${keeps(r) ? 'yes' : 'no'} |`,
      );
    if (rows.length === 0) console.log('| (no steps) |');
    const best = rows.filter(keeps).sort((a, b) => b.decoded / b.wall - a.decoded / a.wall)[0];
    console.log(`\nhighest rate kept up: ${best ? `${fmt(best.decoded / best.wall)} reads/s` : 'none'}; tags present at the end ${fmt(finalPresent)}; load average during the run (1 min, every 5 s) ${fmt(Math.min(...loadSamples), 2)}-${fmt(Math.max(...loadSamples), 2)}`);
    console.log(`goal 50,000 reads/s: ${best && best.decoded / best.wall >= 50_000 ? 'met' : 'NOT met'}; goal RSS under 150 MB with 20,000 tags: ${rssSettled < 150 ? 'met' : 'NOT met'} (peak ${maxRss < 150 ? 'under' : 'over'} 150 MB)`);
  } finally {
    for (const s of stops.reverse()) await Promise.resolve(s()).catch(() => undefined);
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
