/**
 * The local bus against Mosquitto (Debian package), both with password authentication and an ACL,
 * driven by the SAME client harness in the same run. shelfgate's side is the real daemon
 * (`node dist/src/cli.js run --config <tmp>/shelfgate.yaml`, a simulated Modbus shelf bus served by
 * this process), so its bus runs with the configuration defaults the daemon applies: scrypt users,
 * role ACL, packet guard and every bound of the `mqtt:` block (connection caps, queue and in-flight
 * bounds, ...). Compare ratios, not absolute numbers: this is a shared 2-core VM and the clients run
 * on the same cores as the brokers.
 *
 *   npm run build && node dist/bench/mqtt-bus.js [--sections throughput,idle,gateway]
 *
 * throughput  QoS 1 from P publishers (64 in flight each) to one QoS 1 subscriber, messages
 *             delivered per second end to end. Per round and broker, a fresh broker process:
 *             `cold` = the first --messages messages after start, then --warmup untimed, then
 *             `steady` = --messages more. Also the CPU ms per 1000 messages of the client harness
 *             (this process) and of the broker process (steadier than msg/s on a shared VM).
 *               [--messages 20000] [--warmup 20000] [--publishers 4] [--rounds 3]
 * idle        memory per idle authenticated connection and connect cost: --connections K raw TCP
 *             clients (a CONNECT made with mqtt-packet, keepalive 60 s, CONNACK read, then only
 *             PINGREQ every 30 s) of 32 known users, from 32 loopback source addresses (so no
 *             more than 32 per user and per address: the default per-user and per-address caps
 *             hold), opened 8 at a time. Connect cost = wall time for the K connects (and the
 *             broker's CPU time for them). Memory = broker VmRSS after the connects minus before,
 *             / K; for shelfgate also the V8 heap and external memory, read after a forced full
 *             GC in the broker process (--expose-gc and bench/broker-hook.ts, over IPC).
 *               [--connections 1000] [--idle-rounds 2]
 * gateway     the whole gateway (a 16-slot simulated shelf bus with shoppers) with K idle
 *             connections, then the bus loaded (P QoS 1 publishers -> 1 subscriber) for
 *             --load-seconds: its RSS (goal < 150 MB), sampled every 250 ms.
 *               [--load-seconds 10] [--load-rate 5000]  total QoS 1 msg/s, paced (0: flat out, with
 *               both brokers' queues sized alike, SAME_BOUNDS_AS_MOSQUITTO)
 *
 *   [--only sg|mq]    one broker only (profiling runs)
 *   [--env K=V]       (repeatable) set in the daemon's environment, after the `Environment=` lines
 *                     of systemd/shelfgate.service, which the daemon always gets, as under systemd
 *   [--prof DIR]      V8 .cpuprofile of shelfgate's daemon process into DIR (written at its exit)
 *   [--heap-snapshot DIR]  idle: a V8 heap snapshot of shelfgate's daemon before and after the
 *                     connects (compare them in Chrome DevTools, Memory, "Comparison")
 *   [--gateway batch|chained]  instead of all this: the gateway's own publishes (LocalBus.publish,
 *                     in process) to one QoS 1 subscriber of the store's `#` (see driveGateway)
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import { parseArgs } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { generate } from 'mqtt-packet';
import { stringify } from 'yaml';
import { LocalBus } from '../src/bus/broker';
import { hashPassword } from '../src/bus/auth';
import { silentLogger } from '../src/log';
import { configSchema } from '../src/config/schema';
import { loadDefinitions } from '../src/devices/definitions';
import type { ModbusDefinition } from '../src/devices/types';
import { ModbusLoadCellBusSimulator } from '../simulators/modbus-loadcell-sim';
import { streamIo } from '../simulators/io';
import { LoadCellPhysics, mulberry32 } from '../simulators/physics';
import { fmt, machine, processCpuMs, processRssMb, startShoppers, stopProcess } from './harness';
import { startMosquitto } from '../test/helpers/mosquitto';

const STORE = 'bench';
const PASSWORD = 'bench-password';

async function connect(port: number, username: string): Promise<MqttClient> {
  const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, username, password: PASSWORD, reconnectPeriod: 0, clientId: `${username}-${process.pid}` });
  await new Promise<void>((res, rej) => {
    c.once('connect', () => res());
    c.once('error', rej);
  });
  return c;
}

interface RunResult {
  /** messages delivered per second */
  rate: number;
  /** CPU ms per 1000 messages used by the client harness (this process) and by the broker process */
  clientCpu: number;
  brokerCpu: number;
}

/** P publishers, each with up to `window` QoS1 messages in flight, one QoS1 subscriber; returns msgs/s delivered. */
interface LoadClients {
  sub: MqttClient;
  pubs: MqttClient[];
}

async function connectLoad(port: number, publishers: number): Promise<LoadClients> {
  const sub = await connect(port, 'sub');
  const pubs = await Promise.all(Array.from({ length: publishers }, (_, i) => connect(port, `dev${i}`)));
  await sub.subscribeAsync(`shelfgate/v1/${STORE}/ext/#`, { qos: 1 });
  return { sub, pubs };
}

/** `clients`: already connected (and left connected); else connected for this run and ended after it. */
async function drive(port: number, brokerPid: number | undefined, messages: number, publishers: number, window = 64, clients?: LoadClients): Promise<RunResult> {
  const { sub, pubs } = clients ?? (await connectLoad(port, publishers));
  const total = messages;
  let received = 0;
  let onMessage = (): void => {};
  const done = new Promise<void>((resolve) => {
    onMessage = () => {
      if (++received === total) resolve();
    };
    sub.on('message', onMessage);
  });
  const payload = JSON.stringify({ shelf_id: 'g1-s1', slot_id: 's1', count: 12, weight_g: 3000.4, ts: new Date().toISOString() });
  const cpu0 = process.cpuUsage();
  const bcpu0 = processCpuMs(brokerPid);
  const t0 = process.hrtime.bigint();
  await Promise.all(
    pubs.map(async (c, i) => {
      const n = Math.floor(total / publishers) + (i < total % publishers ? 1 : 0);
      const topic = `shelfgate/v1/${STORE}/ext/dev${i}/stock`;
      let sent = 0;
      const workers = Array.from({ length: window }, async () => {
        while (sent < n) {
          sent++;
          await c.publishAsync(topic, payload, { qos: 1 });
        }
      });
      await Promise.all(workers);
    }),
  );
  const timeout = setTimeout(() => {
    throw new Error(`only ${received}/${total} delivered within 120 s`);
  }, 120_000);
  await done;
  clearTimeout(timeout);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const brokerCpuMs = processCpuMs(brokerPid) - bcpu0;
  sub.removeListener('message', onMessage);
  if (!clients) await Promise.all([sub, ...pubs].map((c) => c.endAsync()));
  return { rate: total / secs, clientCpu: ((cpu.user + cpu.system) / 1000 / total) * 1000, brokerCpu: (brokerCpuMs / total) * 1000 };
}

/**
 * A steady QoS 1 load at `rate` messages/s in all (split over the publishers, sent every 10 ms, at
 * most 256 unacknowledged per publisher) for `seconds`; resolves once the subscriber got all that
 * was sent (bounded: 60 s). Unlike drive() it does not outrun the subscriber, so the broker's
 * queues stay small: the memory of a busy bus, not of a subscriber falling behind.
 */
async function drivePaced(load: LoadClients, rate: number, seconds: number): Promise<{ sent: number; received: number; rate: number }> {
  const payload = JSON.stringify({ shelf_id: 'g1-s1', slot_id: 's1', count: 12, weight_g: 3000.4, ts: new Date().toISOString() });
  let received = 0;
  const onMessage = (): void => {
    received++;
  };
  load.sub.on('message', onMessage);
  const perTick = rate / 100 / load.pubs.length;
  const inflight = load.pubs.map(() => 0);
  const credit = load.pubs.map(() => 0);
  let sent = 0;
  const t0 = Date.now();
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      if (Date.now() - t0 >= seconds * 1000) {
        clearInterval(timer);
        return resolve();
      }
      load.pubs.forEach((c, i) => {
        credit[i]! += perTick;
        while (credit[i]! >= 1 && inflight[i]! < 256) {
          credit[i]! -= 1;
          inflight[i]!++;
          sent++;
          c.publish(`shelfgate/v1/${STORE}/ext/dev${i}/stock`, payload, { qos: 1 }, () => inflight[i]!--);
        }
      });
    }, 10);
  });
  const until = Date.now() + 60_000;
  while (received < sent && Date.now() < until) await sleep(50);
  load.sub.removeListener('message', onMessage);
  return { sent, received, rate: received / ((Date.now() - t0) / 1000) };
}

/**
 * --gateway: the gateway's own publishes for `window` slots, each a live event and a retained
 * stock (QoS 1). `batch`: as a SQLite batch commit releases them, all made in one tick, the next
 * batch once all are delivered (LocalBus.publish resolves then): the worst case for the ordering
 * of publish-order.ts (every publish waits for the one before). `chained`: each slot awaits its
 * event, then its stock, as the shelf service's chain does, so publishes rarely coincide. One
 * QoS 1 subscriber of `shelfgate/v1/<store>/#`, in this process too, so the CPU figure is the
 * gateway's and the subscriber's together. `delivered` is the share of the publishes that
 * reached the subscriber (aedes 1.2 on its own lost retained ones: docs/aedes-ordering.md).
 */
async function driveGateway(pattern: 'batch' | 'chained', messages: number, window = 64): Promise<RunResult & { delivered: number }> {
  const hash = await hashPassword(PASSWORD);
  const mqttCfg = configSchema.shape.mqtt.parse({ host: '127.0.0.1', port: 0, users: [{ username: 'sub', role: 'admin', password_hash: hash }] });
  const bus = new LocalBus({ config: mqttCfg, storeId: STORE, log: silentLogger() });
  await bus.start();
  const sub = await connect(bus.address().port, 'sub');
  await sub.subscribeAsync(`shelfgate/v1/${STORE}/#`, { qos: 1 });
  const endTopic = `shelfgate/v1/${STORE}/bench/end`;
  let delivered = 0;
  const end = new Promise<void>((resolve) =>
    sub.on('message', (topic, _payload, packet) => {
      if (topic === endTopic) resolve();
      else if (!packet.retain) delivered++; // not the retained status sent on SUBSCRIBE
    }),
  );
  const payload = JSON.stringify({ shelf_id: 'g1', slot_id: 's1', count: 12, weight_g: 3000.4, ts: new Date().toISOString() });
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const slots = Array.from({ length: window }, (_, w) => `shelfgate/v1/${STORE}/shelf/g${w}/slot/s1/`);
  let sent = 0;
  if (pattern === 'batch') {
    while (sent < messages) {
      const batch: Promise<void>[] = [];
      for (const base of slots) batch.push(bus.publish(`${base}event`, payload, { qos: 1 }), bus.publish(`${base}stock`, payload, { retain: true, qos: 1 }));
      sent += batch.length;
      await Promise.all(batch);
    }
  } else {
    await Promise.all(
      slots.map(async (base) => {
        while (sent < messages) {
          sent += 2;
          await bus.publish(`${base}event`, payload, { qos: 1 });
          await bus.publish(`${base}stock`, payload, { retain: true, qos: 1 });
        }
      }),
    );
  }
  // last, after every other publish completed: nothing overtakes it, and it arrives after all that was delivered
  await bus.publish(endTopic, 'end', { qos: 1 });
  const timeout = setTimeout(() => {
    throw new Error('end marker not delivered within 60 s');
  }, 60_000);
  await end;
  clearTimeout(timeout);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  await sub.endAsync();
  await bus.stop();
  return { rate: delivered / secs, clientCpu: ((cpu.user + cpu.system) / 1000 / sent) * 1000, brokerCpu: 0, delivered: delivered / sent };
}

// ---- brokers ----

/** Memory of a broker process: VmRSS always; V8 figures (after a forced full GC) for shelfgate. */
interface BrokerMem {
  rssMb: number;
  heapUsedMb?: number;
  heapTotalMb?: number;
  externalMb?: number;
  arrayBuffersMb?: number;
}

interface Broker {
  name: 'shelfgate' | 'mosquitto';
  port: number;
  pid: number | undefined;
  mem(): Promise<BrokerMem>;
  /** shelfgate only: V8 figures now, without a GC (sampling under load). */
  stats?(): Promise<BrokerMem>;
  /** shelfgate only: writes a V8 heap snapshot of the broker process, returns its path. */
  heapSnapshot?(file: string): Promise<string>;
  stop(): Promise<void>;
}

/** Who logs in: `sub` (service) reads, `dev<i>` (device) publish, `kiosk<i>` (kiosk) hold idle connections. */
interface Users {
  publishers: number;
  kiosks: number;
}

function userNames(u: Users): Array<{ username: string; role: 'service' | 'device' | 'kiosk' }> {
  return [
    { username: 'sub', role: 'service' },
    ...Array.from({ length: u.publishers }, (_, i) => ({ username: `dev${i}`, role: 'device' as const })),
    ...Array.from({ length: u.kiosks }, (_, i) => ({ username: `kiosk${i}`, role: 'kiosk' as const })),
  ];
}

/** The simulated shelf bus the daemon polls: one Modbus load-cell bus over TCP, served by this process. */
async function serveShelfBus(slots: number, shoppers: boolean): Promise<{ port: number; close: () => Promise<void> }> {
  const def = loadDefinitions().get('generic-modbus-loadcell') as ModbusDefinition;
  const physics: LoadCellPhysics[] = [];
  const slaves = new Map<number, LoadCellPhysics>();
  for (let a = 1; a <= slots; a++) {
    const p = new LoadCellPhysics({ unitWeightG: 250, items: 40, noiseSigmaG: 0.3, settleMs: 50, rng: mulberry32(a) });
    slaves.set(a, p);
    physics.push(p);
  }
  const sim = new ModbusLoadCellBusSimulator({ definition: def, slaves, baudRate: 115200, turnaroundMs: 0 });
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    sim.attach(streamIo(socket));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const timer = shoppers ? startShoppers(physics, mulberry32(42), 30) : undefined;
  return {
    port: (server.address() as { port: number }).port,
    close: async () => {
      if (timer) clearInterval(timer);
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/**
 * The environment systemd gives the daemon: the `Environment=` lines of systemd/shelfgate.service
 * (so a malloc or Node setting made there is measured here too), then --env K=V from the command line.
 */
function daemonEnv(extra: readonly string[]): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NOTIFY_SOCKET: '' };
  const set = (kv: string): void => {
    const i = kv.indexOf('=');
    if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
  };
  const unit = readFileSync(resolvePath(__dirname, '../../systemd/shelfgate.service'), 'utf8');
  for (const m of unit.matchAll(/^Environment=(.*)$/gm)) {
    // `Environment=A=1 "B=two words"`: space-separated assignments, each optionally double-quoted
    for (const w of m[1]!.match(/"[^"]*"|\S+/g) ?? []) set(w.replace(/^"|"$/g, ''));
  }
  for (const kv of extra) set(kv);
  return env;
}

interface DaemonOptions {
  /** Extra K=V for the daemon's environment (--env). */
  env: readonly string[];
  users: Users;
  /** Keys of the `mqtt:` block beside port and users; everything else is the daemon's default. */
  mqtt?: Record<string, unknown>;
  /** Slots on the simulated shelf bus, polled every 200 ms (the default), with shoppers when `shoppers`. */
  slots: number;
  shoppers: boolean;
  profDir?: string;
}

/**
 * shelfgate: the real daemon, as systemd runs it (`shelfgate run --config`), plus --expose-gc and
 * the bench's IPC hook (broker-hook.ts) to read its memory after a forced GC.
 */
async function startShelfgate(o: DaemonOptions): Promise<Broker> {
  const dir = mkdtempSync(join(tmpdir(), 'sg-bench-bus-'));
  const shelf = await serveShelfBus(o.slots, o.shoppers);
  const users = await Promise.all(userNames(o.users).map(async (u) => ({ ...u, password_hash: await hashPassword(PASSWORD) })));
  const config = {
    store_id: STORE,
    data_dir: join(dir, 'state'),
    log: { level: 'info' },
    mqtt: { port: 0, ...o.mqtt, users },
    buses: [{ id: 'sim', path: `tcp://127.0.0.1:${shelf.port}`, model: 'generic-modbus-loadcell', timeout_ms: 200 }],
    shelves: [{ id: 'g1', slots: Array.from({ length: o.slots }, (_, a) => ({ id: `s${a + 1}`, sensor: { bus: 'sim', address: a + 1 }, gtin: '04006381333931', unit_weight_g: 250 })) }],
  };
  const file = join(dir, 'shelfgate.yaml');
  writeFileSync(file, stringify(config), { mode: 0o600 });
  const cli = resolvePath(__dirname, '../src/cli.js');
  const hook = resolvePath(__dirname, 'broker-hook.js');
  const prof = o.profDir ? ['--cpu-prof', '--cpu-prof-interval=200', `--cpu-prof-dir=${o.profDir}`] : [];
  const p = spawn(process.execPath, ['--expose-gc', ...prof, '-r', hook, cli, 'run', '--config', file], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    env: daemonEnv(o.env),
  });
  let stderr = '';
  p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`daemon not ready within 60 s: ${buf.slice(-2000)} ${stderr}`)), 60_000);
    p.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (!line.includes('"gateway ready"')) continue;
        clearTimeout(timer);
        resolve((JSON.parse(line) as { mqtt: { port: number } }).mqtt.port);
      }
    });
    p.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`daemon exited ${code}: ${buf.slice(-2000)} ${stderr}`));
    });
  });
  let nextId = 0;
  const ask = <T>(msg: Record<string, unknown>): Promise<T> =>
    new Promise((resolve, reject) => {
      const id = ++nextId;
      const timer = setTimeout(() => reject(new Error(`broker hook did not answer ${String(msg.cmd)} in 120 s`)), 120_000);
      const onMessage = (m: { id: number } & T): void => {
        if (m.id !== id) return;
        clearTimeout(timer);
        p.removeListener('message', onMessage);
        resolve(m);
      };
      p.on('message', onMessage);
      p.send({ ...msg, id });
    });
  return {
    name: 'shelfgate',
    port,
    pid: p.pid,
    async mem() {
      const r = await ask<{ mem: NodeJS.MemoryUsage; gc: boolean }>({ cmd: 'mem' });
      if (!r.gc) throw new Error('the broker process has no global gc (--expose-gc)');
      const mb = (n: number) => n / 2 ** 20;
      // VmRSS from /proc like Mosquitto's (same source for both), read right after the GC
      return { rssMb: processRssMb(p.pid), heapUsedMb: mb(r.mem.heapUsed), heapTotalMb: mb(r.mem.heapTotal), externalMb: mb(r.mem.external), arrayBuffersMb: mb(r.mem.arrayBuffers) };
    },
    async stats() {
      const r = await ask<{ mem: NodeJS.MemoryUsage }>({ cmd: 'stats' });
      const mb = (n: number) => n / 2 ** 20;
      return { rssMb: mb(r.mem.rss), heapUsedMb: mb(r.mem.heapUsed), heapTotalMb: mb(r.mem.heapTotal), externalMb: mb(r.mem.external), arrayBuffersMb: mb(r.mem.arrayBuffers) };
    },
    async heapSnapshot(f: string) {
      return (await ask<{ file: string }>({ cmd: 'snapshot', file: f })).file;
    },
    async stop() {
      await stopProcess(p);
      await shelf.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The per-client delivery bounds both brokers run with in the throughput and gateway sections.
 * Publishers are not slowed down by their subscribers (src/bus/delivery.ts, as in Mosquitto), so a
 * subscriber that acknowledges 64 at a time falls behind four publishers and its queue grows; with
 * the defaults (1,000 messages) shelfgate would rightly disconnect it as a slow consumer, and
 * Mosquitto would drop. Both get the same queue instead: 64 in flight, 100,000 queued (Mosquitto has
 * no byte bound by default; shelfgate's is set far above what the run queues).
 */
const SAME_BOUNDS_AS_MOSQUITTO = { max_inflight: 64, max_queued_messages: 100_000, max_queued_bytes: 256 * 1024 * 1024 };

/** Mosquitto with a password file and the ACL equivalent to shelfgate's roles for these topics. */
async function startMosquittoBroker(u: Users): Promise<Broker> {
  const users: Record<string, string> = {};
  let acl = '';
  for (const { username, role } of userNames(u)) {
    users[username] = PASSWORD;
    if (role === 'service') acl += `user ${username}\ntopic read shelfgate/v1/${STORE}/#\n`;
    else if (role === 'device') acl += `user ${username}\ntopic write shelfgate/v1/${STORE}/ext/${username}/#\n`;
    else acl += `user ${username}\ntopic read shelfgate/v1/${STORE}/gateway/status\ntopic read shelfgate/v1/${STORE}/price/#\n`;
  }
  const m = await startMosquitto({ users, acl, persistence: false, extraConfig: 'max_inflight_messages 64\nmax_queued_messages 100000' });
  return {
    name: 'mosquitto',
    port: m.port,
    pid: m.pid,
    mem: async () => ({ rssMb: processRssMb(m.pid) }),
    stop: () => m.dispose(),
  };
}

// ---- idle connections ----

const PINGREQ = Buffer.from([0xc0, 0x00]);

/**
 * One authenticated idle connection, as cheap as possible on the client side: a raw socket sends a
 * CONNECT (mqtt-packet), waits for CONNACK 0, then only discards what it reads (PINGRESP).
 */
function rawConnect(port: number, username: string, clientId: string, localAddress: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ host: '127.0.0.1', port, localAddress });
    s.setNoDelay(true);
    let got = Buffer.alloc(0);
    let settled = false;
    const fail = (e: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      reject(e);
    };
    const timer = setTimeout(() => fail(new Error(`no CONNACK for ${clientId} within 60 s`)), 60_000);
    const onData = (d: Buffer): void => {
      got = Buffer.concat([got, d]);
      if (got.length < 4) return;
      s.removeListener('data', onData);
      if (got[0] !== 0x20 || got[3] !== 0) return fail(new Error(`CONNACK ${got[3]} for ${clientId}`));
      settled = true;
      clearTimeout(timer);
      s.on('data', () => {});
      resolve(s);
    };
    s.on('data', onData);
    s.on('error', (e) => fail(e));
    s.once('close', () => fail(new Error(`connection ${clientId} closed before CONNACK`)));
    s.write(generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 60, username, password: Buffer.from(PASSWORD) }));
  });
}

const IDLE_USERS = 32;
/** Connections per loopback source address (the default mqtt.max_connections_per_address is 32). */
const PER_ADDRESS = 32;

interface IdleSet {
  sockets: Socket[];
  /** Wall time of the K connects. */
  ms: number;
  /** Broker CPU time during them. */
  brokerCpuMs: number;
  close(): void;
}

/**
 * Opens k idle authenticated connections, `concurrency` at a time: connection i logs in as user
 * kiosk<(i / 32) % 32> from source address 127.0.1.<1 + i % 32>, so the connects in flight at once
 * come from different addresses (as kiosks do), and no user or address holds more than 32 of k <= 1024.
 */
async function openIdle(b: Broker, k: number, concurrency = 8, tag = 'idle'): Promise<IdleSet> {
  const sockets: Socket[] = new Array<Socket>(k);
  let next = 0;
  const cpu0 = processCpuMs(b.pid);
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < k) {
        const i = next++;
        sockets[i] = await rawConnect(b.port, `kiosk${Math.floor(i / PER_ADDRESS) % IDLE_USERS}`, `${tag}-${i}`, `127.0.1.${1 + (i % PER_ADDRESS)}`);
      }
    }),
  );
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const brokerCpuMs = processCpuMs(b.pid) - cpu0;
  // keepalive 60 s: a PINGREQ every 30 s keeps them alive however long the measurement takes
  const ping = setInterval(() => {
    for (const s of sockets) if (!s.destroyed) s.write(PINGREQ);
  }, 30_000);
  return {
    sockets,
    ms,
    brokerCpuMs,
    close() {
      clearInterval(ping);
      for (const s of sockets) s.destroy();
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface IdleResult {
  connectMs: number;
  connectCpuMs: number;
  start: BrokerMem;
  before: BrokerMem;
  after: BrokerMem;
}

/** Connections of the warm-up wave (every one of the 32 users logs in twice), closed before the baseline. */
const WARMUP_CONNECTIONS = 64;

/**
 * start -> a warm-up wave of 64 connects, closed -> `before` -> k connects -> `after`. The warm-up
 * takes the one-off costs (lazily built caches, JIT code, the malloc arenas the password checks
 * grow, a verifier cache) out of the per-connection figure; they are reported on their own.
 */
async function measureIdle(b: Broker, k: number, snapshotDir?: string): Promise<IdleResult> {
  await sleep(1_000);
  const start = await b.mem();
  const warm = await openIdle(b, WARMUP_CONNECTIONS, 8, 'warmup');
  warm.close();
  await sleep(1_000);
  const before = await b.mem();
  if (snapshotDir && b.heapSnapshot) console.log(`  heap snapshot: ${await b.heapSnapshot(join(snapshotDir, `idle-0-${Date.now()}.heapsnapshot`))}`);
  const idle = await openIdle(b, k);
  await sleep(2_000); // let the broker finish whatever follows a CONNACK
  const after = await b.mem();
  if (snapshotDir && b.heapSnapshot) console.log(`  heap snapshot: ${await b.heapSnapshot(join(snapshotDir, `idle-${k}-${Date.now()}.heapsnapshot`))}`);
  idle.close();
  return { connectMs: idle.ms, connectCpuMs: idle.brokerCpuMs, start, before, after };
}

function perConnKb(before: number | undefined, after: number | undefined, k: number): string {
  if (before === undefined || after === undefined) return '-';
  return fmt(((after - before) * 1024) / k, 1);
}

// ---- sections ----

interface Args {
  messages: number;
  warmup: number;
  publishers: number;
  rounds: number;
  connections: number;
  idleRounds: number;
  loadSeconds: number;
  /** Gateway section: total msg/s of the paced load; 0 = flat out (drive()). */
  loadRate: number;
  only?: string;
  prof?: string;
  heapSnapshot?: string;
  env: string[];
}

const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
const range = (a: number[], digits = 0) => (a.length === 0 ? '-' : `${fmt(Math.min(...a), digits)}-${fmt(Math.max(...a), digits)}`);

async function throughput(a: Args): Promise<void> {
  console.log(
    `\n== throughput: QoS 1, ${a.publishers} publishers -> 1 subscriber; cold = first ${fmt(a.messages)} messages after start, steady = ${fmt(a.messages)} after ${fmt(a.warmup)} more untimed; auth + ACL on both; shelfgate = the daemon with its default bounds but the queue sized as Mosquitto's (SAME_BOUNDS_AS_MOSQUITTO)`,
  );
  const res = { sg: { cold: [] as number[], steady: [] as number[] }, mq: { cold: [] as number[], steady: [] as number[] } };
  const users: Users = { publishers: a.publishers, kiosks: 0 };
  for (let r = 0; r < a.rounds; r++) {
    // alternate the order so neither broker always runs on a warmer machine
    for (const which of r % 2 === 0 ? (['sg', 'mq'] as const) : (['mq', 'sg'] as const)) {
      if (a.only && a.only !== which) continue;
      const b = which === 'sg' ? await startShelfgate({ users, mqtt: SAME_BOUNDS_AS_MOSQUITTO, slots: 1, shoppers: false, profDir: a.prof, env: a.env }) : await startMosquittoBroker(users);
      try {
        const cold = await drive(b.port, b.pid, a.messages, a.publishers);
        if (a.warmup > 0) await drive(b.port, b.pid, a.warmup, a.publishers);
        const steady = await drive(b.port, b.pid, a.messages, a.publishers);
        res[which].cold.push(cold.rate);
        res[which].steady.push(steady.rate);
        const line = (x: RunResult) => `${fmt(x.rate)} msg/s (CPU ms/1000 msgs: client ${fmt(x.clientCpu, 1)}, broker ${fmt(x.brokerCpu, 1)})`;
        console.log(`round ${r + 1} ${b.name}: cold ${line(cold)}; steady ${line(steady)}`);
      } finally {
        await b.stop();
      }
    }
  }
  if (a.only) return;
  for (const phase of ['cold', 'steady'] as const) {
    const sg = res.sg[phase];
    const mq = res.mq[phase];
    const ratios = sg.map((x, i) => x / mq[i]!);
    console.log(
      `${phase}: shelfgate median ${fmt(median(sg))} msg/s (${range(sg)}), mosquitto median ${fmt(median(mq))} msg/s (${range(mq)}), ratio of medians ${fmt(median(sg) / median(mq), 2)}x, per round ${ratios.map((x) => fmt(x, 2)).join(' ')}`,
    );
  }
}

async function idleSection(a: Args): Promise<void> {
  const k = a.connections;
  console.log(
    `\n== idle: ${fmt(k)} idle authenticated connections (${IDLE_USERS} kiosk users, ${PER_ADDRESS} per source address, 8 connects at a time, keepalive 60 s); shelfgate: mqtt.max_connections ${k + 64}, other bounds default`,
  );
  const users: Users = { publishers: 0, kiosks: IDLE_USERS };
  for (let r = 0; r < a.idleRounds; r++) {
    for (const which of r % 2 === 0 ? (['sg', 'mq'] as const) : (['mq', 'sg'] as const)) {
      if (a.only && a.only !== which) continue;
      const b = which === 'sg' ? await startShelfgate({ users, mqtt: { max_connections: k + 64 }, slots: 1, shoppers: false, profDir: a.prof, env: a.env }) : await startMosquittoBroker(users);
      try {
        const m = await measureIdle(b, k, a.heapSnapshot);
        const v8 =
          m.before.heapUsedMb === undefined
            ? ''
            : `; after a forced GC, per connection: V8 heap used ${perConnKb(m.before.heapUsedMb, m.after.heapUsedMb, k)} KiB (heap total ${perConnKb(m.before.heapTotalMb, m.after.heapTotalMb, k)}), external ${perConnKb(m.before.externalMb, m.after.externalMb, k)} KiB`;
        console.log(
          `round ${r + 1} ${b.name}: ${fmt(k)} connects in ${fmt(m.connectMs / 1000, 2)} s (broker CPU ${fmt(m.connectCpuMs / 1000, 2)} s); RSS ${fmt(m.start.rssMb, 1)} MB at start, ${fmt(m.before.rssMb, 1)} after ${WARMUP_CONNECTIONS} warm-up connects, ${fmt(m.after.rssMb, 1)} with ${fmt(k)} idle: ${perConnKb(m.before.rssMb, m.after.rssMb, k)} KiB per connection (${perConnKb(m.start.rssMb, m.after.rssMb, k)} counting the warm-up)${v8}`,
        );
      } finally {
        await b.stop();
      }
    }
  }
}

async function gatewaySection(a: Args): Promise<void> {
  const k = a.connections;
  console.log(
    `\n== gateway: the daemon with a 16-slot simulated shelf bus (shoppers, 200 ms polls), ${fmt(k)} idle connections, then ${a.publishers} QoS 1 publishers -> 1 subscriber for ${a.loadSeconds} s, ${a.loadRate > 0 ? `paced at ${fmt(a.loadRate)} msg/s; shelfgate: mqtt.max_connections ${k + 64}, other bounds default` : `flat out; shelfgate: mqtt.max_connections ${k + 64}, queue bounds as Mosquitto's, others default`}`,
  );
  const b = await startShelfgate({ users: { publishers: a.publishers, kiosks: IDLE_USERS }, mqtt: { ...(a.loadRate > 0 ? {} : SAME_BOUNDS_AS_MOSQUITTO), max_connections: k + 64 }, slots: 16, shoppers: true, profDir: a.prof, env: a.env });
  try {
    await sleep(2_000);
    const rss0 = processRssMb(b.pid);
    const idle = await openIdle(b, k);
    // the load's clients connect now (their logins are not part of the load) and stay, as a store system's would
    const load = await connectLoad(b.port, a.publishers);
    await sleep(2_000);
    const rssIdle = processRssMb(b.pid);
    // under load, every 250 ms: RSS, and the V8 heap and external memory of the same moment (no GC)
    let peak: BrokerMem = { rssMb: rssIdle };
    let sampling = false;
    const sampler = setInterval(() => {
      if (sampling || !b.stats) return;
      sampling = true;
      void b
        .stats()
        .then((m) => {
          if (m.rssMb > peak.rssMb) peak = m;
        })
        .finally(() => (sampling = false));
    }, 250);
    const until = Date.now() + a.loadSeconds * 1000;
    let delivered = 0;
    const rates: number[] = [];
    if (a.loadRate > 0) {
      const r = await drivePaced(load, a.loadRate, a.loadSeconds);
      if (r.received < r.sent) throw new Error(`paced load: only ${r.received}/${r.sent} delivered`);
      delivered = r.received;
      rates.push(r.rate);
    } else {
      while (Date.now() < until) {
        const r = await drive(b.port, b.pid, 20_000, a.publishers, 64, load);
        delivered += 20_000;
        rates.push(r.rate);
      }
    }
    clearInterval(sampler);
    await Promise.all([load.sub, ...load.pubs].map((c) => c.endAsync()));
    const rssLoaded = processRssMb(b.pid);
    const gc = await b.mem();
    idle.close();
    console.log(
      `gateway RSS: ${fmt(rss0, 1)} MB at start, ${fmt(rssIdle, 1)} MB with ${fmt(k)} idle connections, peak ${fmt(peak.rssMb, 1)} MB under load (then V8 heap total ${fmt(peak.heapTotalMb ?? 0, 1)} MB, used ${fmt(peak.heapUsedMb ?? 0, 1)}, external ${fmt(peak.externalMb ?? 0, 1)}) (${fmt(delivered)} messages, ${range(rates)} msg/s), ${fmt(rssLoaded, 1)} MB after; after a forced GC ${fmt(gc.rssMb, 1)} MB (V8 heap ${fmt(gc.heapUsedMb ?? 0, 1)} MB)`,
    );
  } finally {
    await b.stop();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      sections: { type: 'string', default: 'throughput,idle,gateway' },
      messages: { type: 'string', default: '20000' },
      warmup: { type: 'string', default: '20000' },
      publishers: { type: 'string', default: '4' },
      rounds: { type: 'string', default: '3' },
      connections: { type: 'string', default: '1000' },
      'idle-rounds': { type: 'string', default: '2' },
      'load-seconds': { type: 'string', default: '10' },
      'load-rate': { type: 'string', default: '5000' },
      prof: { type: 'string' },
      'heap-snapshot': { type: 'string' },
      only: { type: 'string' },
      gateway: { type: 'string' },
      env: { type: 'string', multiple: true, default: [] },
    },
  });
  const a: Args = {
    messages: Number(values.messages),
    warmup: Number(values.warmup),
    publishers: Number(values.publishers),
    rounds: Number(values.rounds),
    connections: Number(values.connections),
    idleRounds: Number(values['idle-rounds']),
    loadSeconds: Number(values['load-seconds']),
    loadRate: Number(values['load-rate']),
    only: values.only,
    prof: values.prof,
    heapSnapshot: values['heap-snapshot'],
    env: values.env,
  };
  console.log(`machine: ${machine()}`);
  const env = daemonEnv(a.env);
  const shown = Object.keys(env).filter((k) => /^(MALLOC_|NODE_|UV_)/.test(k));
  console.log(`shelfgate daemon environment (systemd/shelfgate.service, --env): ${shown.map((k) => `${k}=${env[k]}`).join(' ') || '-'}`);
  if (values.gateway !== undefined) {
    const pattern = values.gateway;
    if (pattern !== 'batch' && pattern !== 'chained') throw new Error('--gateway takes batch or chained');
    console.log(`gateway publishes in process (${pattern}, 64 slots x live event + retained stock, QoS 1) -> 1 QoS 1 subscriber of #, ${a.messages} messages per round`);
    for (let r = 0; r < a.rounds; r++) {
      if (a.warmup > 0) await driveGateway(pattern, a.warmup);
      const g = await driveGateway(pattern, a.messages);
      console.log(`round ${r + 1}: ${fmt(g.rate)} msg/s delivered, ${fmt(g.delivered * 100, 1)} % of those published (CPU ms per 1000 msgs, gateway + subscriber: ${fmt(g.clientCpu, 1)})`);
    }
    return;
  }
  const sections = new Set(values.sections.split(','));
  for (const s of sections) if (!['throughput', 'idle', 'gateway'].includes(s)) throw new Error(`unknown section ${s}`);
  if (sections.has('throughput')) await throughput(a);
  if (sections.has('idle')) await idleSection(a);
  if (sections.has('gateway') && a.only !== 'mq') await gatewaySection(a);
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
