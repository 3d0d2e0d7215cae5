/**
 * The retained replay a new subscriber gets: shelfgate's LocalBus (its retained store and the
 * replay views of src/bus/sessions.ts, which read each value when it is handed to the client)
 * against a bare aedes with its own in-memory persistence (the baseline: the same broker without
 * shelfgate's wrapper), in the same process and run, alternating. Per round: a fresh client
 * subscribes to `<prefix>labels/#` with QoS 1 over 20,000 retained topics; the time from SUBSCRIBE
 * to the last retained message received. Compare the ratio, not the times (shared 2-core VM).
 *
 *   npm run build && node dist/bench/retained-replay.js [--topics 20000] [--rounds 7]
 */
import { createServer, type AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import { hashPassword } from '../src/bus/auth';
import { LocalBus } from '../src/bus/broker';
import * as topics from '../src/bus/topics';
import { coreConfigShape } from '../src/config/schema';
import { silentLogger } from '../src/log';
import { fmt, machine } from './harness';

const { values } = parseArgs({ options: { topics: { type: 'string', default: '20000' }, rounds: { type: 'string', default: '7' } } });
const N = Number(values.topics);
const ROUNDS = Number(values.rounds);
const STORE = 'bench';
const P = topics.storePrefix(STORE);
const PW = 'pw-bench';

async function replayMs(port: number, auth: { username: string; password: string } | null): Promise<number> {
  const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0, ...auth });
  await new Promise<void>((res, rej) => {
    c.once('connect', () => res());
    c.once('error', rej);
  });
  let got = 0;
  const t0 = performance.now();
  const done = new Promise<number>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`only ${got} of ${N} retained messages within 60 s`)), 60_000);
    c.on('message', () => {
      if (++got === N) {
        clearTimeout(timer);
        res(performance.now() - t0);
      }
    });
  });
  c.subscribe(`${P}labels/#`, { qos: 1 });
  const ms = await done;
  await c.endAsync(true);
  return ms;
}

async function main(): Promise<void> {
  const hash = await hashPassword(PW, { N: 1024 });
  const bus = new LocalBus({
    config: coreConfigShape.mqtt.parse({ host: '127.0.0.1', port: 0, users: [{ username: 'adm', password_hash: hash, role: 'admin' }] }),
    storeId: STORE,
    log: silentLogger(),
  });
  await bus.start();
  const bare = await Aedes.createBroker();
  const server = createServer(bare.handle);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const barePort = (server.address() as AddressInfo).port;
  for (let i = 0; i < N; i++) {
    const topic = `${P}labels/label/${i.toString(16).padStart(16, '0')}`;
    const payload = `{"mac":"${i}","matches":true,"price":${i}}`;
    await bus.publish(topic, payload, { retain: true, qos: 1 });
    await new Promise<void>((r) => bare.publish({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, retain: true, dup: false }, () => r()));
  }
  const sg: number[] = [];
  const base: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    sg.push(await replayMs(bus.address().port, { username: 'adm', password: PW }));
    base.push(await replayMs(barePort, null));
  }
  const med = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
  console.log(`machine: ${machine()}`);
  console.log(`retained replay of ${N} topics to a new QoS 1 subscriber, ${ROUNDS} rounds each, alternating`);
  console.log(`shelfgate LocalBus: median ${fmt(med(sg))} ms (${sg.map((x) => fmt(x)).join(', ')})`);
  console.log(`bare aedes:         median ${fmt(med(base))} ms (${base.map((x) => fmt(x)).join(', ')})`);
  console.log(`ratio shelfgate / bare aedes: ${fmt(med(sg) / med(base), 2)}`);
  await bus.stop();
  await new Promise<void>((r) => server.close(() => r()));
  await new Promise<void>((r) => bare.close(() => r()));
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
