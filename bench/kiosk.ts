/**
 * Issue #11's benchmark: kiosk lookup latency at a fixed rate over HTTP and over MQTT while the
 * gateway ingests the demo's shelves.
 *
 *   npm run build && node dist/bench/kiosk.js [--rate 1000] [--seconds 10]
 *
 * Parts: the real daemon (`node dist/src/cli.js run --config`, with the unit's node flags, as
 * bench/harness.ts starts it); in this process the reference central (plain HTTP, a price for each
 * of the 32 products), two Modbus load-cell buses of 16 slots each served over TCP (the demo's two
 * gondolas, polled every 250 ms) with simulated shoppers (startShoppers: 2 actions per slot per
 * minute), so the gateway commits and publishes stock while it answers.
 *
 * Load: open loop, `--rate` lookups a second sent in 5 ms ticks regardless of answers, for
 * `--seconds` after a 2 s warm-up; 90 % of codes are the 32 products (as EAN-13, GTIN-14 or with
 * white space), 10 % an EAN-8 sold nowhere (a not-found answer). Latency = from the send to the
 * parsed answer in this process (its own event loop included: an upper bound on the gateway's).
 * - HTTP: `GET /api/v1/lookup/<code>` with Basic auth (a kiosk user; the bus's cached verifier after
 *   the first request) over at most 32 keep-alive connections (node:http Agent).
 * - MQTT: 8 kiosk connections taking turns (the bus answers at most 16 requests in flight per
 *   connection, SG_BUSY beyond), `request/product.lookup` at QoS 0 with a transaction id, answers
 *   on `response/kiosk/product.lookup`.
 * The daemon's CPU over each phase is read from /proc. Goal: p99 under 10 ms.
 */
import { randomUUID } from 'node:crypto';
import { Agent as HttpAgent, get as httpGet } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import { hashPassword } from '../src/bus/auth';
import * as topics from '../src/bus/topics';
import { loadDefinitions } from '../src/devices/definitions';
import type { ModbusDefinition } from '../src/devices/types';
import { silentLogger } from '../src/log';
import { gs1CheckDigit } from '../src/util/gtin';
import { CentralSimulator } from '../simulators/central';
import { ModbusLoadCellBusSimulator } from '../simulators/modbus-loadcell-sim';
import { LoadCellPhysics, mulberry32 } from '../simulators/physics';
import { serveTcp } from '../simulators/serve';
import { waitFor } from '../test/helpers/wait';
import { daemonRuntimeLine, fmt, machine, processCpuMs, startBenchDaemon, startShoppers } from './harness';

const STORE = 'kbench';
const PW = 'bench-kiosk';
const MQTT_CLIENTS = 8;
/** Error answers and failed requests by transport and code, for the report. */
const errorCodes = new Map<string, number>();
const note = (what: string): void => void errorCodes.set(what, (errorCodes.get(what) ?? 0) + 1);

const { values: args } = parseArgs({ options: { rate: { type: 'string', default: '1000' }, seconds: { type: 'string', default: '10' } } });
const RATE = Number(args.rate);
const SECONDS = Number(args.seconds);
const stage = (what: string): void => void process.stderr.write(`  [${new Date().toISOString().slice(11, 19)}] ${what}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function gtin13(i: number): string {
  const data = `590123412${String(100 + i).padStart(3, '0')}`;
  return `${data}${gs1CheckDigit(data)}`;
}

interface PhaseResult {
  sent: number;
  answered: number;
  errors: number;
  notFound: number;
  lat: number[];
  cpuMs: number;
  wallMs: number;
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Sends `ask(code)` RATE times a second for warm-up + SECONDS; only the measured window's answers count. */
async function phase(pid: number | undefined, codes: string[], ask: (code: string) => Promise<{ found: boolean } | null>): Promise<PhaseResult> {
  const r: PhaseResult = { sent: 0, answered: 0, errors: 0, notFound: 0, lat: [], cpuMs: 0, wallMs: 0 };
  // open loop on the clock: each tick sends what is due since the start (a late timer catches up)
  const start = performance.now();
  let due = 0;
  let i = 0;
  let measuring = false;
  const pending = new Set<Promise<void>>();
  const tick = (): void => {
    const target = Math.floor(((performance.now() - start) * RATE) / 1000);
    for (; due < target; due++) {
      const code = codes[i++ % codes.length]!;
      const counted = measuring;
      if (counted) r.sent++;
      const t0 = performance.now();
      const p = ask(code).then(
        (a) => {
          if (!counted) return;
          if (!a) return void r.errors++;
          r.answered++;
          if (!a.found) r.notFound++;
          r.lat.push(performance.now() - t0);
        },
        () => {
          if (counted) r.errors++;
        },
      );
      pending.add(p);
      void p.finally(() => pending.delete(p));
    }
  };
  const timer = setInterval(tick, 5);
  await sleep(2000);
  measuring = true;
  const cpu0 = processCpuMs(pid);
  const t0 = performance.now();
  await sleep(SECONDS * 1000);
  measuring = false;
  r.wallMs = performance.now() - t0;
  r.cpuMs = processCpuMs(pid) - cpu0;
  clearInterval(timer);
  await Promise.race([Promise.allSettled([...pending]), sleep(10_000)]);
  r.lat.sort((a, b) => a - b);
  return r;
}

function report(name: string, r: PhaseResult): string {
  const l = r.lat;
  return `| ${name} | ${fmt(r.sent / (r.wallMs / 1000))} | ${fmt(r.answered / (r.wallMs / 1000))} | ${fmt(pct(l, 50), 2)} | ${fmt(pct(l, 90), 2)} | ${fmt(pct(l, 99), 2)} | ${fmt(l[l.length - 1] ?? NaN, 1)} | ${r.errors} | ${fmt((100 * r.notFound) / Math.max(1, r.answered), 1)} % | ${fmt((100 * r.cpuMs) / r.wallMs)} % |`;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'sg-kiosk-bench-'));
  const stops: Array<() => Promise<void> | void> = [];
  try {
    const defs = loadDefinitions();
    const loadcell = defs.get('generic-modbus-loadcell') as ModbusDefinition;
    const rng = mulberry32(11);
    const central = new CentralSimulator({ host: '127.0.0.1', port: 0, token: 'tok', storeIds: [STORE], log: silentLogger(), seed: 11 });
    await central.start();
    stops.push(() => central.stop());
    writeFileSync(join(dir, 'token'), 'tok\n', { mode: 0o600 });
    const physics: LoadCellPhysics[] = [];
    const buses: object[] = [];
    const shelves: Array<{ id: string; slots: object[] }> = [];
    for (let g = 1; g <= 2; g++) {
      const slaves = new Map<number, LoadCellPhysics>();
      const slots: object[] = [];
      for (let a = 1; a <= 16; a++) {
        const p = new LoadCellPhysics({ unitWeightG: 300 + a * 20, items: 12, tareG: 150, noiseSigmaG: 0.4, settleMs: 500, rng: mulberry32(Math.floor(rng() * 2 ** 31)) });
        slaves.set(a, p);
        physics.push(p);
        slots.push({ id: `slot${a}`, sensor: { bus: `gondola${g}`, address: a }, gtin: gtin13((g - 1) * 16 + a - 1), unit_weight_g: 300 + a * 20, tare_g: 150 });
      }
      const serving = await serveTcp(new ModbusLoadCellBusSimulator({ definition: loadcell, slaves, turnaroundMs: 2 }), '127.0.0.1', 0);
      stops.push(() => serving.close());
      buses.push({ id: `gondola${g}`, path: serving.url, model: loadcell.id, poll_interval_ms: 250 });
      shelves.push({ id: `g${g}`, slots });
    }
    for (let i = 0; i < 32; i++) central.publishPrice({ gtin: gtin13(i), price: 99 + i * 10, currency: 'EUR' });
    const config = {
      store_id: STORE,
      data_dir: join(dir, 'state'),
      log: { level: 'info' }, // the harness waits for the info line `gateway ready`
      // a production-strength hash: the first request of a connection pays scrypt, then the cached verifier answers
      mqtt: { port: 0, users: [{ username: 'kiosk', role: 'kiosk', password_hash: await hashPassword(PW) }] },
      http: { port: 0, max_connections: 256 },
      kiosks: [{ id: 'k1' }],
      sync: { transport: 'https', https: { url: central.url, token_file: join(dir, 'token') }, long_poll_s: 5 },
      buses,
      shelves,
    };
    stage('starting the daemon');
    const daemon = await startBenchDaemon(config, dir);
    stops.push(() => daemon.stop());
    const pid = daemon.proc.pid;
    const http = (daemon.ready.http as { url: string }).url;
    const auth = { authorization: `Basic ${Buffer.from(`kiosk:${PW}`).toString('base64')}` };
    // a bounded keep-alive pool (32 sockets, as 32 kiosks would hold): an unbounded one opens a socket per
    // request waiting after a stall (likely meeting the server's max_connections: BENCHMARKS 9)
    const agent = new HttpAgent({ keepAlive: true, maxSockets: 32 });
    stops.push(() => agent.destroy());
    const httpAsk = (code: string): Promise<{ found: boolean } | null> =>
      new Promise((resolve, reject) => {
        const req = httpGet(`${http}/api/v1/lookup/${encodeURIComponent(code)}`, { agent, headers: auth }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const body = JSON.parse(Buffer.concat(chunks).toString()) as { found?: boolean; error?: { code: string } };
            if (res.statusCode !== 200) note(`HTTP ${res.statusCode} ${body.error?.code ?? ''}`);
            resolve(res.statusCode === 200 ? { found: body.found === true } : null);
          });
        });
        req.on('error', (e: NodeJS.ErrnoException) => {
          note(`HTTP ${e.code ?? e.message}`);
          reject(e);
        });
      });
    let last = '';
    await waitFor(async () => {
      for (let i = 0; i < 32; i++) {
        const r = await fetch(`${http}/api/v1/lookup/${gtin13(i)}`, { headers: auth });
        const a = (await r.json()) as { price: unknown; stock: { on_shelf: number | null } };
        if (!a.price || a.stock.on_shelf === null) {
          last = JSON.stringify(a);
          return false;
        }
      }
      return true;
    }, 60_000, 'all 32 products priced and counted').catch((e: Error) => {
      throw new Error(`${e.message}; last answer: ${last}`);
    });
    const shoppers = startShoppers(physics, rng, 2);
    stops.push(() => clearInterval(shoppers));

    const codes: string[] = [];
    for (let i = 0; i < 36; i++) codes.push(gtin13(i % 32), `0${gtin13((i * 7) % 32)}`, ` ${gtin13((i * 5) % 32)} `);
    for (let i = 0; i < 12; i++) codes.push('96385074');

    stage(`HTTP: ${RATE}/s for ${SECONDS} s`);
    const h = await phase(pid, codes, httpAsk);

    stage(`MQTT: ${RATE}/s for ${SECONDS} s`);
    // MQTT_CLIENTS kiosks share the rate (the bus answers at most 16 requests in flight per connection)
    const waiting = new Map<string, (a: { found: boolean } | null) => void>();
    const clients: mqtt.MqttClient[] = [];
    for (let c = 0; c < MQTT_CLIENTS; c++) {
      const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${daemon.mqttPort}`, { protocolVersion: 4, username: 'kiosk', password: PW, reconnectPeriod: 0, clean: true, clientId: `kbench-${c}` });
      stops.push(() => client.endAsync());
      client.on('message', (_t, payload) => {
        const m = JSON.parse(payload.toString()) as { transaction: string; ok: boolean; data?: { found: boolean }; error?: { code: string } };
        const w = waiting.get(m.transaction);
        if (!w) return;
        waiting.delete(m.transaction);
        if (!m.ok) errorCodes.set(`MQTT ${m.error?.code ?? '?'}`, (errorCodes.get(`MQTT ${m.error?.code ?? '?'}`) ?? 0) + 1);
        w(m.ok && m.data ? { found: m.data.found } : null);
      });
      await client.subscribeAsync(topics.response(STORE, 'kiosk', 'product.lookup'), { qos: 0 });
      clients.push(client);
    }
    const reqTopic = topics.request(STORE, 'product.lookup');
    let rr = 0;
    const mqttAsk = (code: string): Promise<{ found: boolean } | null> =>
      new Promise((resolve, reject) => {
        const transaction = randomUUID();
        const t = setTimeout(() => {
          waiting.delete(transaction);
          reject(new Error('timeout'));
        }, 5_000);
        waiting.set(transaction, (a) => {
          clearTimeout(t);
          resolve(a);
        });
        clients[rr++ % clients.length]!.publish(reqTopic, JSON.stringify({ transaction, code }), { qos: 0 });
      });
    const m = await phase(pid, codes, mqttAsk);

    const out = [
      `machine: ${machine()}; load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`,
      daemonRuntimeLine(),
      `rate ${RATE}/s for ${SECONDS} s per transport; 32 weighed slots polled every 250 ms with shoppers; 10 % of codes unknown`,
      '',
      '| transport | sent/s | answered/s | p50 ms | p90 ms | p99 ms | max ms | errors | not found | daemon CPU |',
      '|---|---|---|---|---|---|---|---|---|---|',
      report('HTTP', h),
      report(`MQTT (${MQTT_CLIENTS} clients)`, m),
      ...(errorCodes.size ? ['', `errors (warm-up included): ${[...errorCodes].map(([c, n]) => `${c}: ${n}`).join(', ')}`] : []),
    ];
    process.stdout.write(`${out.join('\n')}\n`);
  } finally {
    for (const s of stops.reverse()) {
      try {
        await s();
      } catch {
        // keep stopping
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
