/**
 * Draining a backlog after an outage: N events are put in the outbox first (central unreachable),
 * then the sync service uploads them to the reference central — over HTTPS, or over the MQTT
 * bridge through a real Mosquitto — and we measure events/s and the gateway's RSS over time.
 * Central (and Mosquitto) run in other processes, so RSS is the gateway's own.
 * Also measures, while online, shelf event -> central acknowledgement latency (p50/p99).
 *
 *   npm run build && node dist/bench/drain.js [--events 1000000] [--transport https|mqtt|both]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { configSchema } from '../src/config/schema';
import { EventKinds } from '../src/core/event-kinds';
import { shelvesFeature } from '../src/features/shelves';
import { silentLogger } from '../src/log';
import { Store } from '../src/store/store';
import { SyncService, createSyncTransport } from '../src/sync/service';
import { CentralSimulator, CentralMqttAdapter } from '../simulators/central';
import { makeTestCa, makeLeafCert, startMosquitto, type Mosquitto } from '../test/helpers/mosquitto';
import { LatencyRecorder } from '../src/util/latency';
import { fmt, machine, rssMb, stopProcess } from './harness';

const STORE = 'bench-store';
const TOKEN = 'bench-token';

/** Child process: the reference central (its own SQLite file), over HTTPS and optionally MQTT. */
async function centralChild(args: { cert: string; key: string; mqttUrl?: string; dir: string }): Promise<void> {
  const central = new CentralSimulator({ port: 0, token: TOKEN, dbPath: join(args.dir, `central-${process.pid}.db`), tls: { cert: readFileSync(args.cert), key: readFileSync(args.key) }, log: silentLogger() });
  await central.start();
  let adapter: CentralMqttAdapter | undefined;
  if (args.mqttUrl) {
    adapter = new CentralMqttAdapter({ central, url: args.mqttUrl, username: 'central', password: 'central-pw', log: silentLogger(), storeIds: [STORE] });
    await adapter.start();
  }
  process.stdout.write(`central ${central.url}\n`);
  process.stdin.on('data', (d: Buffer) => {
    if (d.toString().includes('count')) process.stdout.write(`count ${central.stats().stores[STORE]?.events ?? 0}\n`);
  });
  process.once('SIGTERM', () => void Promise.resolve(adapter?.stop()).then(() => central.stop()).then(() => process.exit(0)));
}

function startCentral(dir: string, cert: string, key: string, mqttUrl?: string): Promise<{ url: string; proc: ChildProcess; count(): Promise<number> }> {
  const prof = process.env.SG_BENCH_PROF_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.SG_BENCH_PROF_DIR}`] : [];
  const proc = spawn(process.execPath, [...prof, __filename, '--central-child', '--dir', dir, '--cert', cert, '--key', key, ...(mqttUrl ? ['--mqtt-url', mqttUrl] : [])], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  const waiters: Array<(n: number) => void> = [];
  proc.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    let m: RegExpExecArray | null;
    while ((m = /count (\d+)\n/.exec(out))) {
      out = out.slice(m.index + m[0].length);
      waiters.shift()?.(Number(m[1]));
    }
  });
  return new Promise((resolve, reject) => {
    const t = setInterval(() => {
      const m = /central (\S+)\n/.exec(out);
      if (m) {
        clearInterval(t);
        out = out.slice(m.index + m[0].length);
        resolve({ url: m[1]!, proc, count: () => new Promise<number>((r) => (waiters.push(r), proc.stdin!.write('count\n'))) });
      }
    }, 20);
    proc.once('exit', (code) => (clearInterval(t), reject(new Error(`central exited ${code}`))));
  });
}

async function fillOutbox(store: Store, n: number): Promise<void> {
  const pending: Promise<unknown>[] = [];
  for (let i = 0; i < n; i++) {
    const shelf = `g${(i % 48) + 1}-shelf${(i % 4) + 1}`;
    const slot = `slot${(i % 16) + 1}`;
    pending.push(
      store.appendEvent({
        deviceId: `${shelf}/${slot}`,
        kind: i % 3 === 0 ? 'put' : 'pick',
        payload: { store_id: STORE, shelf_id: shelf, slot_id: slot, gtin: '05901234123457', kind: i % 3 === 0 ? 'put' : 'pick', delta: i % 3 === 0 ? 1 : -1, count: 20 + (i % 7), previous_count: 20, weight_g: 8204.1 },
      }),
    );
    if (pending.length >= 20_000) await Promise.all(pending.splice(0));
  }
  await Promise.all(pending);
}

async function run(transport: 'https' | 'mqtt', events: number, dir: string, pki: { ca: string; cert: string; key: string }, mosq?: Mosquitto): Promise<void> {
  const central = await startCentral(dir, pki.cert, pki.key, transport === 'mqtt' ? mosq!.url : undefined);
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, TOKEN);
  const sync = configSchema.shape.sync.parse({
    transport,
    https: transport === 'https' ? { url: central.url, token_file: tokenFile, ca_file: pki.ca } : undefined,
    mqtt: transport === 'mqtt' ? { url: mosq!.url, username: 'store', password_file: join(dir, 'store-pw') } : undefined,
    long_poll_s: 5,
    // the whole backlog is kept: this measures draining, not the buffer-full policy
    buffer_max_bytes: 4 * 1024 ** 3,
    pipeline: Number(process.env.SG_BENCH_PIPELINE ?? 4),
  });
  if (transport === 'mqtt') writeFileSync(join(dir, 'store-pw'), 'store-pw');
  const store = new Store({ path: join(dir, `gw-${transport}.db`), synchronous: (process.env.SG_BENCH_SYNC as 'full' | 'normal' | undefined) ?? 'full', flushIntervalMs: 20, storeId: STORE, log: silentLogger() });
  await store.start();
  const t0 = performance.now();
  await fillOutbox(store, events);
  console.log(`[${transport}] outbox filled with ${fmt(events)} events in ${fmt((performance.now() - t0) / 1000, 1)} s (${fmt(store.outboxStats().bytes / 2 ** 20, 1)} MB of payload)`);
  const bus = { publish: async () => undefined }; // status and prices go nowhere: only the drain is measured
  const kinds = new EventKinds();
  kinds.register(shelvesFeature.name, shelvesFeature.eventKinds);
  const locations = { assign: async () => { throw new Error('the drain benchmark sends no slot assignments'); } };
  const eventBus = { emit: () => undefined };
  const svc = new SyncService({ storeId: STORE, config: sync, store, bus, events: eventBus, kinds, locations, transport: createSyncTransport(sync, STORE, silentLogger()), log: silentLogger() });
  const start = performance.now();
  await svc.start();
  const samples: string[] = [];
  let peak = rssMb();
  let last = events;
  let lastSample = start;
  for (;;) {
    await new Promise((r) => setTimeout(r, 100));
    const left = store.outboxStats().count;
    const now = performance.now();
    if (now - lastSample >= 2_000 || left === 0) {
      const rss = rssMb();
      peak = Math.max(peak, rss);
      samples.push(`${fmt((now - start) / 1000, 0)}s:${fmt(rss)}MB/${fmt(((last - left) * 1000) / (now - lastSample))}ev/s`);
      last = left;
      lastSample = now;
    }
    if (left === 0) break;
    if (now - start > 600_000) throw new Error(`drain did not finish in 10 min (${left} left)`);
  }
  const secs = (performance.now() - start) / 1000;
  const atCentral = await central.count();
  console.log(`[${transport}] drained ${fmt(events)} events in ${fmt(secs, 1)} s = ${fmt(events / secs)} events/s; central holds ${fmt(atCentral)} (exactly once: ${atCentral === events})`);
  console.log(`[${transport}] gateway RSS peak ${fmt(peak)} MB; over time (t:rss/rate): ${samples.join(' ')}`);

  // Online latency: one event appended -> acknowledged by central (deleted from the outbox).
  const lat = new LatencyRecorder();
  for (let i = 0; i < 300; i++) {
    const t = performance.now();
    const { eventId } = await store.appendEvent({ deviceId: 'g1-shelf1/slot1', kind: 'pick', payload: { store_id: STORE, shelf_id: 'g1-shelf1', slot_id: 'slot1', kind: 'pick', delta: -1, count: 5 } });
    for (;;) {
      const page = store.peekOutbox(0, 10);
      if (!page.some((r) => r.eventId === eventId)) break;
      await new Promise((r) => setImmediate(r));
    }
    lat.record(performance.now() - t);
    await new Promise((r) => setTimeout(r, 20));
  }
  const s = lat.summary();
  console.log(`[${transport}] event committed -> central ack, online, one at a time: p50 ${fmt(s.p50, 1)} ms, p99 ${fmt(s.p99, 1)} ms (${s.count} events)`);
  await svc.stop();
  await store.stop();
  await stopProcess(central.proc);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      events: { type: 'string', default: '1000000' },
      transport: { type: 'string', default: 'both' },
      'central-child': { type: 'boolean', default: false },
      dir: { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
      'mqtt-url': { type: 'string' },
    },
  });
  if (values['central-child']) return centralChild({ cert: values.cert!, key: values.key!, mqttUrl: values['mqtt-url'], dir: values.dir! });
  const events = Number(values.events);
  const dir = mkdtempSync(join(tmpdir(), 'sg-bench-drain-'));
  const ca = makeTestCa(dir, 'ca');
  const server = makeLeafCert(dir, ca, 'server');
  const pki = { ca: ca.certFile, cert: server.certFile, key: server.keyFile };
  console.log(`machine: ${machine()}`);
  const which = values.transport === 'both' ? (['https', 'mqtt'] as const) : [values.transport as 'https' | 'mqtt'];
  for (const t of which) {
    let mosq: Mosquitto | undefined;
    if (t === 'mqtt') mosq = await startMosquitto({ users: { store: 'store-pw', central: 'central-pw' }, persistence: false });
    try {
      await run(t, events, dir, pki, mosq);
    } finally {
      await mosq?.stop();
    }
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
