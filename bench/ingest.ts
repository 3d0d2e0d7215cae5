/**
 * End-to-end ingest: simulated Modbus load-cell buses -> poll loops and codecs -> shelf model ->
 * SQLite batch commit (outbox + slot state, synchronous=FULL by default) -> MQTT publish.
 * Reports readings/s, stock events/s, p50/p99 latency from "answer frame received" to "stock
 * published" (only readings that change stock are published), peak RSS, and the gateway's CPU
 * time per 1000 readings (steadier than readings/s on a shared machine).
 *
 * The simulated buses run in a child process, one TCP server per bus (as ser2net would serve a
 * real RS-485 line), answering after t3.5 of a 115200-baud line; the gateway runs in this process,
 * so RSS and CPU are its own. On a 2-core VM the simulator process competes for the same cores.
 *
 *   npm run build && node dist/bench/ingest.js [--buses 48] [--addresses 16] [--seconds 20] [--sync full|normal]
 */
import { parseArgs } from 'node:util';
import { validateConfig } from '../src/config/load';
import { loadDefinitions } from '../src/devices/definitions';
import type { ModbusDefinition } from '../src/devices/types';
import { buildGateway } from '../src/core/gateway';
import { BUILTIN_FEATURES } from '../src/features';
import { shelvesOf } from '../src/features/shelves';
import { silentLogger } from '../src/log';
import { ModbusLoadCellBusSimulator } from '../simulators/modbus-loadcell-sim';
import { LoadCellPhysics, mulberry32 } from '../simulators/physics';
import { streamIo } from '../simulators/io';
import { createServer } from 'node:net';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fmt, machine, rssMb, startShoppers } from './harness';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      buses: { type: 'string', default: '48' },
      addresses: { type: 'string', default: '16' },
      seconds: { type: 'string', default: '20' },
      sync: { type: 'string', default: 'full' },
      'picks-per-slot-per-min': { type: 'string', default: '30' },
      'sim-server': { type: 'boolean', default: false },
    },
  });
  const buses = Number(values.buses);
  const perBus = Number(values.addresses);
  const seconds = Number(values.seconds);
  const picksPerMin = Number(values['picks-per-slot-per-min']);
  const defs = loadDefinitions();
  const def = defs.get('generic-modbus-loadcell') as ModbusDefinition;
  if (values['sim-server']) return simServer(def, buses, perBus, picksPerMin);

  // The simulated buses run in a child process and are reached over TCP (like ser2net or an
  // Ethernet RS-485 gateway), so this process's CPU and RSS are the gateway's alone.
  const child = spawn(process.execPath, [__filename, '--sim-server', '--buses', String(buses), '--addresses', String(perBus), '--picks-per-slot-per-min', String(picksPerMin)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const ports = await new Promise<number[]>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^ports (.*)$/m.exec(out);
      if (m) resolve(JSON.parse(m[1]!) as number[]);
    });
    child.once('exit', (code) => reject(new Error(`simulator process exited ${code}`)));
  });
  const dir = mkdtempSync(join(tmpdir(), 'sg-bench-ingest-'));
  const slotsTotal = buses * perBus;
  const raw = {
    store_id: 'bench',
    data_dir: dir,
    mqtt: { port: 0 },
    storage: { synchronous: values.sync },
    stability: { window: 3, max_spread_g: 3 },
    buses: ports.map((port, b) => ({ id: `bus${b}`, path: `tcp://127.0.0.1:${port}`, model: def.id, poll_interval_ms: 0, timeout_ms: 200, serial: { baud_rate: 115200 } })),
    shelves: Array.from({ length: buses }, (_, b) => ({
      id: `shelf${b}`,
      slots: Array.from({ length: perBus }, (_, a) => ({ id: `s${a + 1}`, sensor: { bus: `bus${b}`, address: a + 1 }, gtin: '04006381333931', unit_weight_g: 250 })),
    })),
  };
  const { config, issues } = validateConfig(raw, defs, BUILTIN_FEATURES);
  if (!config) throw new Error(JSON.stringify(issues));
  const gw = buildGateway(config, { log: silentLogger(), definitions: defs, features: BUILTIN_FEATURES });
  await gw.start();
  const shelves = shelvesOf(gw);

  const readings = () => gw.sources.reduce((n, s) => n + s.stats.readings, 0);
  console.log(`machine: ${machine()}`);
  console.log(`${buses} buses x ${perBus} transmitters over TCP (${slotsTotal} slots, model ${def.id}: 2 register reads per reading), synchronous=${values.sync}, ${picksPerMin} shopper actions per slot per minute`);
  await new Promise((r) => setTimeout(r, 3_000)); // warm-up: initial counts, JIT
  shelves.latency.reset();
  const r0 = readings();
  const e0 = shelves.stats.events;
  const b0 = gw.store.stats().batches;
  const t0 = Date.now();
  const cpu0 = process.cpuUsage();
  let peakRss = rssMb();
  let lastRss = peakRss;
  for (let s = 0; s < seconds; s++) {
    await new Promise((r) => setTimeout(r, 1_000));
    const rss = rssMb();
    lastRss = rss;
    peakRss = Math.max(peakRss, rss);
  }
  const secs = (Date.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const nReadings = readings() - r0;
  const nEvents = shelves.stats.events - e0;
  const lat = shelves.latency.summary();
  const st = gw.store.stats();
  const bus = gw.bus.stats();
  await gw.stop();
  child.kill('SIGTERM');
  const Database = (await import('better-sqlite3')).default;
  const db = new Database(join(dir, 'shelfgate.db'), { readonly: true });
  const rows = (db.prepare('SELECT COUNT(*) AS n FROM outbox').get() as { n: number }).n;
  db.close();
  console.log(`readings: ${fmt(nReadings / secs)} /s (${fmt(nReadings)} in ${fmt(secs, 1)} s)`);
  console.log(`stock events: ${fmt(nEvents / secs)} /s, published after commit`);
  console.log(`latency frame received -> stock published: p50 ${fmt(lat.p50, 1)} ms, p99 ${fmt(lat.p99, 1)} ms, max ${fmt(lat.max, 1)} ms (${fmt(lat.count)} samples)`);
  console.log(`SQLite: ${fmt(st.batches - b0)} batch commits in the window, max batch ${fmt(st.maxBatchMs, 1)} ms; ${fmt(rows)} outbox rows durable after stop (errors: ${shelves.stats.persistFailures} persist, ${shelves.stats.publishFailures} publish)`);
  console.log(`RSS of the gateway process: peak ${fmt(peakRss)} MB, last ${fmt(lastRss)} MB`);
  console.log(`local bus: ${fmt(bus.gatewayPublishes)} gateway publishes since start, ${fmt(bus.publishesWaited)} waited for an earlier one to reach the subscribers (at most ${fmt(bus.publishesWaitingMax)} at once)`);
  console.log(`CPU of the gateway process: ${fmt((cpu.user + cpu.system) / 1000 / (nReadings / 1000), 2)} ms per 1000 readings (${fmt((cpu.user + cpu.system) / 1e4 / secs)} % of one core)`);
}

/** Child process: the simulated store. One TCP server per bus, shoppers picking and restocking. */
async function simServer(def: ModbusDefinition, buses: number, perBus: number, picksPerMin: number): Promise<void> {
  const rng = mulberry32(42);
  const physics: LoadCellPhysics[] = [];
  const ports: number[] = [];
  for (let b = 0; b < buses; b++) {
    const slaves = new Map<number, LoadCellPhysics>();
    for (let a = 1; a <= perBus; a++) {
      const p = new LoadCellPhysics({ unitWeightG: 250, items: 40, noiseSigmaG: 0.3, settleMs: 50, rng: mulberry32(b * 1000 + a) });
      slaves.set(a, p);
      physics.push(p);
    }
    // Turnaround 0 on a 115200-baud line: the slave answers after t3.5 (1.75 ms).
    const sim = new ModbusLoadCellBusSimulator({ definition: def, slaves, baudRate: 115200, turnaroundMs: 0 });
    const server = createServer((socket) => {
      socket.setNoDelay(true);
      sim.attach(streamIo(socket));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    ports.push((server.address() as { port: number }).port);
  }
  startShoppers(physics, rng, picksPerMin);
  process.stdout.write(`ports ${JSON.stringify(ports)}\n`);
  process.once('SIGTERM', () => process.exit(0));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
