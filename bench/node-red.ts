/**
 * Ingest against Node-RED on the same simulated scales: N MT-SICS scales (simulators/mtsics-sim.ts,
 * each served over TCP as ser2net would serve its RS-232 line) are polled with SI, one request
 * outstanding per scale, by
 *   - shelfgate: the real gateway (buildGateway: poll loops, codec, shelf model, SQLite outbox with
 *     synchronous=FULL by default, retained MQTT on its embedded bus), in its own process;
 *   - Node-RED 4.1.8: one function node holding the N sockets (Node's `net` through
 *     functionGlobalContext), parsing each answer and sending it to an `mqtt out` node that
 *     publishes QoS 1 to Mosquitto (no durability), in its own process.
 * The simulated scales live in a third process for the whole run, so both see the same scales.
 * Rounds alternate the order; each round is a fresh process, a warm-up, then a timed window.
 * Reported per side: readings/s, CPU ms per 1,000 readings (utime + stime from /proc/<pid>/stat:
 * the gateway process; Node-RED alone and Node-RED + Mosquitto), peak RSS, and the ratios.
 *
 * Node-RED is NOT a dependency of shelfgate: the first run installs node-red@4.1.8 with npm into
 * its own directory (default bench/.node-red, gitignored; --node-red-dir elsewhere) and writes the
 * flow and settings for each round into a temporary user directory.
 *
 *   npm run build && node dist/bench/node-red.js [--scales 64] [--seconds 20] [--rounds 3]
 *     [--warmup 3]        seconds before the timed window
 *     [--only sg|nr]      run one side only (profiling)
 *     [--sync full|normal] shelfgate's storage.synchronous (default full)
 *     [--prof DIR]        V8 .cpuprofile of the shelfgate process into DIR
 *     [--node-red-dir D]  where node-red@4.1.8 is (or gets) installed
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import { validateConfig } from '../src/config/load';
import { loadDefinitions } from '../src/devices/definitions';
import type { MtSicsDefinition } from '../src/devices/types';
import { buildGateway } from '../src/core/gateway';
import { BUILTIN_FEATURES } from '../src/features';
import { shelvesOf } from '../src/features/shelves';
import { silentLogger } from '../src/log';
import { repoRoot } from '../src/util/paths';
import { MtSicsSimulator } from '../simulators/mtsics-sim';
import { LoadCellPhysics, mulberry32 } from '../simulators/physics';
import { serveTcp } from '../simulators/serve';
import { freePort, startMosquitto } from '../test/helpers/mosquitto';
import { fmt, machine, processCpuMs, processRssMb, startShoppers, stopProcess } from './harness';

const NODE_RED_VERSION = '4.1.8';
const SCALE_MODEL = 'mettler-toledo-mt-sics';

/** What a running side reports: readings so far, and the pids whose CPU counts against it. */
interface Side {
  readonly label: string;
  readonly pid: number;
  /** Other processes in its pipeline (Node-RED's Mosquitto), reported separately. */
  readonly helperPid?: number;
  /** Readings so far; `detail`: what happened since the previous call (shelfgate: events, event-loop delay). */
  readings(): Promise<{ count: number; detail?: string }>;
  /** Node-RED: PUBLISH packets Mosquitto has received so far (QoS 1 messages that reached the broker). */
  delivered?(): Promise<number>;
  stop(): Promise<void>;
}

interface RoundResult {
  rate: number;
  cpuPer1k: number;
  helperCpuPer1k?: number;
  simCpuPer1k: number;
  peakRssMb: number;
  /** Node-RED: readings counted by the flow that Mosquitto had not received at the end of the window. */
  undelivered?: number;
  detail?: string;
}

// ------------------------------------------------------------------ child: the simulated scales

/** N MT-SICS scales, one TCP server each; shoppers pick and restock so the gateway has events to store. */
async function simServer(scales: number): Promise<void> {
  const def = loadDefinitions().get(SCALE_MODEL) as MtSicsDefinition;
  const rng = mulberry32(7);
  const physics: LoadCellPhysics[] = [];
  const ports: number[] = [];
  for (let i = 0; i < scales; i++) {
    const p = new LoadCellPhysics({ unitWeightG: 250, items: 40, noiseSigmaG: 0.3, settleMs: 50, rng: mulberry32(1000 + i) });
    physics.push(p);
    const served = await serveTcp(new MtSicsSimulator({ definition: def, physics: p }), '127.0.0.1', 0);
    ports.push(served.port);
  }
  startShoppers(physics, rng, 30); // 30 shopper actions per scale per minute, as bench/ingest.ts
  process.stdout.write(`ports ${JSON.stringify(ports)}\n`);
  process.once('SIGTERM', () => process.exit(0));
}

// ------------------------------------------------------------------ child: shelfgate

/** The real gateway on the scales; answers `readings` on stdin with its reading count. */
async function shelfgateChild(ports: number[], synchronous: string): Promise<void> {
  const defs = loadDefinitions();
  const dir = mkdtempSync(join(tmpdir(), 'sg-bench-nr-'));
  const raw = {
    store_id: 'bench',
    data_dir: dir,
    mqtt: { host: '127.0.0.1', port: 0 },
    storage: { synchronous },
    buses: ports.map((port, i) => ({ id: `scale${i}`, path: `tcp://127.0.0.1:${port}`, model: SCALE_MODEL, poll_interval_ms: 0, timeout_ms: 500 })),
    shelves: Array.from({ length: Math.ceil(ports.length / 8) }, (_, s) => ({
      id: `shelf${s}`,
      slots: ports.slice(s * 8, s * 8 + 8).map((_, j) => ({ id: `s${j + 1}`, sensor: { bus: `scale${s * 8 + j}` }, gtin: '04006381333931', unit_weight_g: 250 })),
    })),
  };
  const { config, issues } = validateConfig(raw, defs, BUILTIN_FEATURES);
  if (!config) throw new Error(JSON.stringify(issues));
  const gw = buildGateway(config, { log: silentLogger(), definitions: defs, features: BUILTIN_FEATURES });
  await gw.start();
  const shelves = shelvesOf(gw);
  const readings = (): number => gw.sources.reduce((n, s) => n + s.stats.readings, 0);
  // event-loop delay since the previous request: SQLite commits (fsync with FULL) run on this thread
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  let events0 = 0;
  createInterface({ input: process.stdin }).on('line', (line) => {
    if (line !== 'readings') return;
    const events = shelves.stats.events;
    const ms = (ns: number): string => (ns / 1e6).toFixed(1);
    process.stdout.write(
      `readings ${readings()} failures ${shelves.stats.persistFailures} detail ${events - events0} stock events durable; event-loop delay p99 ${ms(delay.percentile(99))} ms, max ${ms(delay.max)} ms\n`,
    );
    events0 = events;
    delay.reset();
  });
  process.stdout.write('ready\n');
  process.once('SIGTERM', () =>
    void gw.stop().then(() => {
      rmSync(dir, { recursive: true, force: true });
      process.exit(0);
    }),
  );
}

function lines(p: ChildProcess): (re: RegExp) => Promise<RegExpExecArray> {
  const waiting: Array<{ re: RegExp; resolve: (m: RegExpExecArray) => void }> = [];
  createInterface({ input: p.stdout! }).on('line', (line) => {
    for (let i = 0; i < waiting.length; i++) {
      const m = waiting[i]!.re.exec(line);
      if (m) {
        waiting.splice(i, 1)[0]!.resolve(m);
        return;
      }
    }
  });
  return (re) =>
    new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no line matching ${re} from pid ${p.pid} within 30 s`)), 30_000);
      waiting.push({ re, resolve: (m) => (clearTimeout(t), resolve(m)) });
    });
}

async function startShelfgate(ports: number[], synchronous: string, profDir?: string): Promise<Side> {
  const nodeArgs = profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [];
  const p = spawn(process.execPath, [...nodeArgs, __filename, '--shelfgate-child', '--ports', JSON.stringify(ports), '--sync', synchronous], { stdio: ['pipe', 'pipe', 'inherit'] });
  const next = lines(p);
  await next(/^ready$/);
  return {
    label: 'shelfgate',
    pid: p.pid!,
    async readings() {
      const m = next(/^readings (\d+) failures (\d+) detail (.*)$/);
      p.stdin!.write('readings\n');
      const r = await m;
      if (Number(r[2]) > 0) throw new Error(`shelfgate: ${r[2]} persist failures`);
      return { count: Number(r[1]), detail: r[3] };
    },
    stop: () => stopProcess(p),
  };
}

// ------------------------------------------------------------------ Node-RED

/** Installs node-red@4.1.8 into `dir` (its own package.json; never shelfgate's) unless it is there. */
function ensureNodeRed(dir: string): string {
  const red = join(dir, 'node_modules', 'node-red', 'red.js');
  const pkg = join(dir, 'node_modules', 'node-red', 'package.json');
  if (existsSync(red) && (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version === NODE_RED_VERSION) return red;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify({ name: 'shelfgate-bench-node-red', private: true }, null, 2)}\n`);
  console.log(`installing node-red@${NODE_RED_VERSION} into ${dir} ...`);
  // optional bcrypt (native) is not needed: Node-RED falls back to bcryptjs
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--omit=optional', '--ignore-scripts', `node-red@${NODE_RED_VERSION}`], { cwd: dir, stdio: 'inherit' });
  return red;
}

/**
 * The poller, as a Node-RED user would write it in a function node: one socket per scale, `SI`
 * sent again as soon as the previous answer is in (one outstanding request per scale), the weight
 * parsed from `S S|D <value> <unit>`, one message per reading to the mqtt out node.
 */
const POLL_FUNCTION = String.raw`
const net = global.get('net');
const ports = JSON.parse(env.get('SG_SCALE_PORTS'));
const stats = { readings: 0, errors: 0 };
global.set('stats', stats);
const sockets = [];
ports.forEach((port, i) => {
  const topic = 'scales/scale' + i + '/weight';
  let buf = '';
  const connect = () => {
    const s = net.createConnection({ host: '127.0.0.1', port, noDelay: true });
    s.setEncoding('latin1');
    s.on('connect', () => s.write('SI\r\n'));
    s.on('data', (chunk) => {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        const m = /^S ([SD])\s+(-?\d+(?:\.\d+)?)\s+(\S+)$/.exec(line);
        if (m) {
          stats.readings++;
          const grams = m[3] === 'kg' ? Number(m[2]) * 1000 : Number(m[2]);
          node.send({ topic, payload: { weight_g: grams, stable: m[1] === 'S', ts: Date.now() } });
        } else stats.errors++;
        s.write('SI\r\n');
      }
    });
    s.on('error', () => stats.errors++);
    s.on('close', () => { if (!context.get('stopping')) setTimeout(connect, 1000); });
    sockets[i] = s;
  };
  connect();
});
context.set('sockets', sockets);
return null;
`;

const STOP_FUNCTION = String.raw`
context.set('stopping', true);
for (const s of context.get('sockets') || []) s.destroy();
`;

/** Flow nodes need a position (x, y): the runtime takes a tab's nodes without one for config nodes. */
function nodeRedFlow(mqttPort: number): unknown[] {
  let y = 0;
  const at = <T extends object>(n: T): T & { x: number; y: number } => ({ ...n, x: 200, y: (y += 60) });
  return [
    { id: 'tab', type: 'tab', label: 'scales' },
    at({ id: 'start', type: 'inject', z: 'tab', name: 'start', props: [], repeat: '', once: true, onceDelay: 0.1, wires: [['poll']] }),
    at({ id: 'poll', type: 'function', z: 'tab', name: 'poll scales', func: POLL_FUNCTION, finalize: STOP_FUNCTION, initialize: '', outputs: 1, libs: [], wires: [['out']] }),
    at({ id: 'out', type: 'mqtt out', z: 'tab', name: 'weights', topic: '', qos: '1', retain: 'false', broker: 'broker', wires: [] }),
    { id: 'broker', type: 'mqtt-broker', name: 'mosquitto', broker: '127.0.0.1', port: String(mqttPort), clientid: '', autoConnect: true, usetls: false, protocolVersion: '4', keepalive: '60', cleansession: true },
    at({ id: 'statsIn', type: 'http in', z: 'tab', name: '', url: '/stats', method: 'get', wires: [['statsFn']] }),
    at({ id: 'statsFn', type: 'function', z: 'tab', name: 'stats', func: "msg.payload = global.get('stats') || { readings: 0 }; return msg;", outputs: 1, libs: [], wires: [['statsOut']] }),
    at({ id: 'statsOut', type: 'http response', z: 'tab', name: '', statusCode: '', headers: {}, wires: [] }),
  ];
}

function nodeRedSettings(httpPort: number): string {
  return `module.exports = {
  uiHost: '127.0.0.1',
  uiPort: ${httpPort},
  flowFile: 'flows.json',
  credentialSecret: false,
  httpAdminRoot: false, // no editor, no admin API: the flow is fixed
  functionGlobalContext: { net: require('net') },
  functionExternalModules: false,
  logging: { console: { level: 'warn', metrics: false, audit: false } },
  diagnostics: { enabled: false, ui: false },
  runtimeState: { enabled: false, ui: false },
  telemetry: { enabled: false },
};
`;
}

function getJson(port: number, path: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, timeout: 5_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        try {
          resolve(JSON.parse(body));
        } catch (e) {
          reject(e);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** Mosquitto's own count of PUBLISH packets received ($SYS, refreshed every sys_interval = 1 s). */
async function publishesReceived(port: number): Promise<number> {
  const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0 });
  try {
    const got = new Promise<number>((resolve) => c.once('message', (_t, payload) => resolve(Number(payload.toString()))));
    await c.subscribeAsync('$SYS/broker/publish/messages/received');
    return await got;
  } finally {
    await c.endAsync();
  }
}

async function startNodeRed(red: string, ports: number[]): Promise<Side> {
  const mosquitto = await startMosquitto({ persistence: false, extraConfig: 'sys_interval 1' });
  const userDir = mkdtempSync(join(tmpdir(), 'sg-bench-node-red-'));
  const httpPort = await freePort();
  writeFileSync(join(userDir, 'flows.json'), JSON.stringify(nodeRedFlow(mosquitto.port), null, 2));
  writeFileSync(join(userDir, 'settings.js'), nodeRedSettings(httpPort));
  const p = spawn(process.execPath, [red, '--userDir', userDir, '--settings', join(userDir, 'settings.js')], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, SG_SCALE_PORTS: JSON.stringify(ports) },
  });
  const readings = async (): Promise<{ count: number }> => ({ count: ((await getJson(httpPort, '/stats')) as { readings: number }).readings });
  const stop = async (): Promise<void> => {
    await stopProcess(p);
    await mosquitto.dispose();
    rmSync(userDir, { recursive: true, force: true });
  };
  const until = Date.now() + 60_000;
  for (;;) {
    const n = (await readings().catch(() => ({ count: 0 }))).count;
    if (n > 0) break;
    if (p.exitCode !== null || Date.now() > until) {
      await stop();
      throw new Error(p.exitCode !== null ? `node-red exited ${p.exitCode}` : 'node-red did not start polling within 60 s');
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { label: 'node-red', pid: p.pid!, helperPid: mosquitto.pid, readings, delivered: () => publishesReceived(mosquitto.port), stop };
}

// ------------------------------------------------------------------ the comparison

async function measure(side: Side, simPid: number, warmupS: number, seconds: number): Promise<RoundResult> {
  await new Promise((r) => setTimeout(r, warmupS * 1000));
  const r0 = (await side.readings()).count;
  const c0 = processCpuMs(side.pid);
  const h0 = side.helperPid ? processCpuMs(side.helperPid) : 0;
  const s0 = processCpuMs(simPid);
  const t0 = performance.now();
  let peakRssMb = processRssMb(side.pid);
  for (let s = 0; s < seconds; s++) {
    await new Promise((r) => setTimeout(r, 1000));
    peakRssMb = Math.max(peakRssMb, processRssMb(side.pid));
  }
  const end = await side.readings();
  const total = end.count;
  const n = total - r0;
  const secs = (performance.now() - t0) / 1000;
  // $SYS lags up to 1 s: compare with the count the flow had one second before
  const undelivered = side.delivered ? Math.max(0, total - n / seconds - (await side.delivered())) : undefined;
  const per1k = (ms: number): number => (ms / n) * 1000;
  return {
    rate: n / secs,
    cpuPer1k: per1k(processCpuMs(side.pid) - c0),
    helperCpuPer1k: side.helperPid ? per1k(processCpuMs(side.helperPid) - h0) : undefined,
    simCpuPer1k: per1k(processCpuMs(simPid) - s0),
    peakRssMb,
    undelivered,
    detail: end.detail,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'sim-server': { type: 'boolean', default: false },
      'shelfgate-child': { type: 'boolean', default: false },
      ports: { type: 'string' },
      scales: { type: 'string', default: '64' },
      seconds: { type: 'string', default: '20' },
      warmup: { type: 'string', default: '3' },
      rounds: { type: 'string', default: '3' },
      only: { type: 'string' },
      prof: { type: 'string' },
      'node-red-dir': { type: 'string' },
      sync: { type: 'string', default: 'full' },
    },
  });
  const scales = Number(values.scales);
  if (values['sim-server']) return simServer(scales);
  if (values['shelfgate-child']) return shelfgateChild(JSON.parse(values.ports!) as number[], values.sync);
  const seconds = Number(values.seconds);
  const warmup = Number(values.warmup);
  const rounds = Number(values.rounds);
  const red = values.only === 'sg' ? '' : ensureNodeRed(resolve(values['node-red-dir'] ?? join(repoRoot(), 'bench', '.node-red')));

  const sim = spawn(process.execPath, [__filename, '--sim-server', '--scales', String(scales)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const ports = JSON.parse((await lines(sim)(/^ports (.*)$/))[1]!) as number[];
  console.log(`machine: ${machine()}`);
  console.log(`${scales} MT-SICS scales (${SCALE_MODEL}, SI) over TCP from one simulator process; one request outstanding per scale; ${warmup} s warm-up, ${seconds} s timed, ${rounds} rounds, order alternated`);
  console.log(`shelfgate: real gateway, SQLite synchronous=${values.sync.toUpperCase()}, embedded bus; node-red: function node -> mqtt out QoS 1 -> Mosquitto 2 (no persistence)`);
  const results: Record<'sg' | 'nr', RoundResult[]> = { sg: [], nr: [] };
  try {
    for (let r = 0; r < rounds; r++) {
      for (const which of r % 2 === 0 ? (['sg', 'nr'] as const) : (['nr', 'sg'] as const)) {
        if (values.only && values.only !== which) continue;
        const side = which === 'sg' ? await startShelfgate(ports, values.sync, values.prof) : await startNodeRed(red, ports);
        let res: RoundResult;
        try {
          res = await measure(side, sim.pid!, warmup, seconds);
        } finally {
          await side.stop();
        }
        results[which].push(res);
        const helper = res.helperCpuPer1k === undefined ? '' : ` (+ Mosquitto ${fmt(res.helperCpuPer1k, 1)})`;
        const lag = res.undelivered ? `; ${fmt(res.undelivered)} readings not yet at Mosquitto` : '';
        console.log(
          `round ${r + 1} ${side.label.padEnd(9)}: ${fmt(res.rate).padStart(7)} readings/s, CPU ${fmt(res.cpuPer1k, 1)} ms per 1,000 readings${helper}, peak RSS ${fmt(res.peakRssMb)} MB; simulator CPU ${fmt(res.simCpuPer1k, 1)} ms per 1,000${lag}${res.detail ? `; ${res.detail}` : ''}`,
        );
      }
    }
  } finally {
    await stopProcess(sim);
  }
  if (values.only) return;
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const m = (which: 'sg' | 'nr', f: (x: RoundResult) => number): number => median(results[which].map(f));
  const sgRate = m('sg', (x) => x.rate);
  const nrRate = m('nr', (x) => x.rate);
  const sgCpu = m('sg', (x) => x.cpuPer1k);
  const nrCpu = m('nr', (x) => x.cpuPer1k);
  const nrCpuAll = m('nr', (x) => x.cpuPer1k + (x.helperCpuPer1k ?? 0));
  const sgRss = m('sg', (x) => x.peakRssMb);
  const nrRss = m('nr', (x) => x.peakRssMb);
  console.log(`median readings/s: shelfgate ${fmt(sgRate)}, node-red ${fmt(nrRate)}: ${fmt(sgRate / nrRate, 2)}x`);
  console.log(
    `median CPU ms per 1,000 readings: shelfgate ${fmt(sgCpu, 1)}, node-red ${fmt(nrCpu, 1)} (${fmt(nrCpuAll, 1)} with Mosquitto): shelfgate uses ${fmt(sgCpu / nrCpu, 2)}x (${fmt(sgCpu / nrCpuAll, 2)}x)`,
  );
  console.log(`median peak RSS: shelfgate ${fmt(sgRss)} MB, node-red ${fmt(nrRss)} MB: ${fmt(sgRss / nrRss, 2)}x`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
