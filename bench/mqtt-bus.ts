/**
 * Local bus throughput: shelfgate's broker (aedes + scrypt auth + role ACL + packet guard) against
 * Mosquitto (Debian package) with a password file and an ACL file, driven by the SAME client
 * harness in the same run. QoS 1 publishes from P publishers to one QoS 1 subscriber; the figure is
 * messages delivered per second, end to end. Compare the ratio, not the absolute numbers: this is a
 * shared 2-core VM and the clients run on the same cores.
 *
 *   npm run build && node dist/bench/mqtt-bus.js [--messages 20000] [--publishers 4] [--rounds 3]
 *     [--warmup N]      N untimed messages through each broker before its timed run (default 0)
 *     [--only sg|mq]    run one broker only
 *     [--prof DIR]      write a V8 .cpuprofile of shelfgate's broker process into DIR
 *     [--gateway batch|chained]  instead: the gateway's own publishes (LocalBus.publish, in
 *                       process) to one QoS 1 subscriber of the store's `#` (see driveGateway)
 *
 * Each round also prints the CPU time per 1000 messages of the client harness (this process) and
 * of the broker process: on a shared VM these are steadier than msg/s, and they show which side is
 * the bottleneck (the client harness costs about the same with either broker).
 */
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { LocalBus } from '../src/bus/broker';
import { hashPassword } from '../src/bus/auth';
import { silentLogger } from '../src/log';
import { configSchema } from '../src/config/schema';
import { fmt, machine, processCpuMs, stopProcess } from './harness';
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
async function drive(port: number, brokerPid: number | undefined, messages: number, publishers: number, window = 64): Promise<RunResult> {
  const sub = await connect(port, 'sub');
  const pubs = await Promise.all(Array.from({ length: publishers }, (_, i) => connect(port, `dev${i}`)));
  await sub.subscribeAsync(`shelfgate/v1/${STORE}/ext/#`, { qos: 1 });
  const total = messages;
  let received = 0;
  const done = new Promise<void>((resolve) =>
    sub.on('message', () => {
      if (++received === total) resolve();
    }),
  );
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
  await Promise.all([sub, ...pubs].map((c) => c.endAsync()));
  return { rate: total / secs, clientCpu: ((cpu.user + cpu.system) / 1000 / total) * 1000, brokerCpu: (brokerCpuMs / total) * 1000 };
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

/**
 * shelfgate's broker runs in its own process, as in production (the daemon), so that neither broker
 * shares a thread with the client harness: `--serve` starts just the LocalBus and prints its port.
 */
async function serveShelfgate(publishers: number): Promise<void> {
  const hash = await hashPassword(PASSWORD);
  const users = [{ username: 'sub', role: 'service', password_hash: hash }, ...Array.from({ length: publishers }, (_, i) => ({ username: `dev${i}`, role: 'device', password_hash: hash }))];
  const mqttCfg = configSchema.shape.mqtt.parse({ host: '127.0.0.1', port: 0, users });
  const bus = new LocalBus({ config: mqttCfg, storeId: STORE, log: silentLogger() });
  await bus.start();
  process.stdout.write(`port ${bus.address().port}\n`);
  process.once('SIGTERM', () => void bus.stop().then(() => process.exit(0)));
}

async function startShelfgate(publishers: number, profDir?: string): Promise<{ port: number; pid: number | undefined; stop: () => Promise<void> }> {
  // --prof <dir>: V8 CPU profile of the broker process (one .cpuprofile per run, written at exit)
  const nodeArgs = profDir ? ['--cpu-prof', '--cpu-prof-interval=200', `--cpu-prof-dir=${profDir}`] : [];
  const p = spawn(process.execPath, [...nodeArgs, __filename, '--serve', '--publishers', String(publishers)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    p.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /port (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    p.once('exit', (code) => reject(new Error(`broker process exited ${code}`)));
  });
  return { port, pid: p.pid, stop: () => stopProcess(p) };
}

/** Mosquitto with a password file and the ACL equivalent to shelfgate's roles for these topics. */
async function startMosquittoBroker(publishers: number): Promise<{ port: number; pid: number | undefined; stop: () => Promise<void> }> {
  const users: Record<string, string> = { sub: PASSWORD };
  let acl = `user sub\ntopic read shelfgate/v1/${STORE}/#\n`;
  for (let i = 0; i < publishers; i++) {
    users[`dev${i}`] = PASSWORD;
    acl += `user dev${i}\ntopic write shelfgate/v1/${STORE}/ext/dev${i}/#\n`;
  }
  const m = await startMosquitto({ users, acl, persistence: false, extraConfig: 'max_inflight_messages 64\nmax_queued_messages 100000' });
  return { port: m.port, pid: m.pid, stop: () => m.dispose() };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { serve: { type: 'boolean', default: false }, messages: { type: 'string', default: '20000' }, publishers: { type: 'string', default: '4' }, rounds: { type: 'string', default: '3' }, prof: { type: 'string' }, only: { type: 'string' }, warmup: { type: 'string', default: '0' }, gateway: { type: 'string' } } });
  const messages = Number(values.messages);
  const publishers = Number(values.publishers);
  const rounds = Number(values.rounds);
  // --warmup N: N untimed messages through each broker right before its timed run (same for both;
  // takes JIT warm-up of the client and of shelfgate's broker process out of the figure). Default 0.
  const warmup = Number(values.warmup);
  if (values.serve) return serveShelfgate(publishers);
  console.log(`machine: ${machine()}`);
  if (values.gateway !== undefined) {
    const pattern = values.gateway;
    if (pattern !== 'batch' && pattern !== 'chained') throw new Error('--gateway takes batch or chained');
    console.log(`gateway publishes in process (${pattern}, 64 slots x live event + retained stock, QoS 1) -> 1 QoS 1 subscriber of #, ${messages} messages per round`);
    for (let r = 0; r < rounds; r++) {
      if (warmup > 0) await driveGateway(pattern, warmup);
      const g = await driveGateway(pattern, messages);
      console.log(`round ${r + 1}: ${fmt(g.rate)} msg/s delivered, ${fmt(g.delivered * 100, 1)} % of those published (CPU ms per 1000 msgs, gateway + subscriber: ${fmt(g.clientCpu, 1)})`);
    }
    return;
  }
  console.log(
    `QoS1, ${publishers} publishers -> 1 subscriber, ${messages} messages per round${warmup > 0 ? ` after ${warmup} untimed` : ''}, auth + ACL on both brokers`,
  );
  const results: { sg: number[]; mq: number[] } = { sg: [], mq: [] };
  for (let r = 0; r < rounds; r++) {
    // alternate the order so neither broker always runs on a warmer machine
    for (const which of r % 2 === 0 ? (['sg', 'mq'] as const) : (['mq', 'sg'] as const)) {
      if (values.only && values.only !== which) continue; // --only sg|mq: profiling runs
      const b = which === 'sg' ? await startShelfgate(publishers, values.prof) : await startMosquittoBroker(publishers);
      if (warmup > 0) await drive(b.port, b.pid, warmup, publishers);
      const { rate, clientCpu, brokerCpu } = await drive(b.port, b.pid, messages, publishers);
      await b.stop();
      results[which].push(rate);
      console.log(
        `round ${r + 1} ${which === 'sg' ? 'shelfgate' : 'mosquitto'}: ${fmt(rate)} msg/s  (CPU ms per 1000 msgs: client ${fmt(clientCpu, 1)}, broker ${fmt(brokerCpu, 1)})`,
      );
    }
  }
  const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
  if (values.only) return;
  const sg = median(results.sg);
  const mq = median(results.mq);
  console.log(`median: shelfgate ${fmt(sg)} msg/s, mosquitto ${fmt(mq)} msg/s, ratio ${fmt(sg / mq, 2)}x`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
