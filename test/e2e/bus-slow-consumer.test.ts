/**
 * The whole daemon's bus under clients that do not keep up (src/bus/delivery.ts): a subscriber
 * that stops reading, a publisher of QoS 2 messages that never releases them (PUBREL), a QoS 1
 * subscriber that never acknowledges. Each test asserts the bound AND that the other clients
 * carry on; memory is read from the daemon's /proc/<pid>/status.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { loadDefinitions } from '../../src/devices/definitions';
import type { MtSicsDefinition } from '../../src/devices/types';
import { MtSicsSimulator } from '../../simulators/mtsics-sim';
import { LoadCellPhysics, mulberry32 } from '../../simulators/physics';
import { serveTcp, type TcpServing } from '../../simulators/serve';
import { connectClient, startDaemon, tmp, waitFor, type RunningDaemon } from '../helpers/daemon';
import { RawMqttClient } from '../helpers/raw-mqtt';
import { fastHash, usersWithHash } from '../helpers/users';

const PW = 'slow-consumer-pw';
const STORE = 'slow';
const P = `shelfgate/v1/${STORE}`;
const MAX_INFLIGHT = 8;
const MAX_INBOUND_QOS2 = 16;

/** Resident memory of a process, in MiB. */
function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Samples a process's RSS every 50 ms until stopped; returns the highest seen. */
function sampleRss(pid: number): { stop: () => number } {
  let max = rssMiB(pid);
  const t = setInterval(() => (max = Math.max(max, rssMiB(pid))), 50);
  return {
    stop: () => {
      clearInterval(t);
      return Math.max(max, rssMiB(pid));
    },
  };
}

describe('bus: slow consumers, in-flight caps (whole daemon)', () => {
  const dir = tmp('sg-e2e-slow-');
  const physics = new LoadCellPhysics({ unitWeightG: 500, items: 3, noiseSigmaG: 0.05, settleMs: 80, rng: mulberry32(5) });
  const scale = new MtSicsSimulator({ definition: loadDefinitions().get('mettler-toledo-mt-sics') as MtSicsDefinition, physics });
  let tcp: TcpServing;
  let daemon: RunningDaemon;
  const clients: MqttClient[] = [];
  const raws: RawMqttClient[] = [];

  beforeAll(async () => {
    tcp = await serveTcp(scale, '127.0.0.1', 0);
    const hash = await fastHash(PW);
    daemon = await startDaemon(
      {
        store_id: STORE,
        data_dir: join(dir, 'state'),
        log: { level: 'info' },
        mqtt: {
          port: 0,
          users: usersWithHash(hash, { slow: 'admin', watcher: 'service', dev1: 'device', flood: 'device', q2: 'device', noack: 'service' }),
          slow_consumer_timeout_s: 4,
          max_inflight: MAX_INFLIGHT,
          max_inbound_qos2: MAX_INBOUND_QOS2,
        },
        storage: { flush_interval_ms: 10 },
        buses: [{ id: 'scale', path: tcp.url, model: 'mettler-toledo-mt-sics', poll_interval_ms: 200, reconnect: { initial_ms: 100, max_ms: 1000 } }],
        shelves: [{ id: 'deli', slots: [{ id: 'counter', sensor: { bus: 'scale' }, unit_weight_g: 500 }] }],
      },
      dir,
    );
  });

  afterAll(async () => {
    for (const r of raws) r.close();
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => {})));
    await daemon?.stop();
    await tcp?.close();
  });

  /** A raw MQTT connection (the test decides what it reads and answers), logged in: CONNACK 0. */
  async function rawClient(username: string, clientId: string): Promise<RawMqttClient> {
    const c = await RawMqttClient.connect(daemon.mqttPort, { username, password: PW, clientId });
    raws.push(c);
    expect(await c.connack()).toBe(0);
    return c;
  }

  async function client(username: string): Promise<{ client: MqttClient; messages: Array<{ topic: string; payload: string }> }> {
    const c = await connectClient(daemon.mqttPort, username, PW);
    clients.push(c.client);
    return c;
  }

  /** dev1 publishes `n` QoS 1 messages back to back; resolves with the messages per second the watcher got. */
  async function steadyRate(dev1: MqttClient, watcher: Array<{ topic: string; payload: string }>, n: number, tag: string): Promise<number> {
    const topic = `${P}/ext/dev1/stock`;
    const seen = () => watcher.filter((m) => m.topic === topic && m.payload.startsWith(`${tag}:`)).length;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) await dev1.publishAsync(topic, `${tag}:${i}`, { qos: 1 });
    await waitFor(() => seen() === n, 20_000, `${n} ${tag} messages at the watcher`);
    return n / (Number(process.hrtime.bigint() - t0) / 1e9);
  }

  /** `flood` pushes `mib` MiB of 64 KiB QoS 0 messages to a topic only `#` subscribers get. */
  async function flood(c: MqttClient, mib: number): Promise<void> {
    const payload = Buffer.alloc(64 * 1024, 0x61);
    for (let i = 0; i < mib * 16; i++) await c.publishAsync(`${P}/ext/flood/big`, payload, { qos: 0 });
    // a QoS 1 round trip: every QoS 0 publish before it has been read by the broker
    await c.publishAsync(`${P}/ext/flood/end`, 'end', { qos: 1 });
  }

  it('a subscriber of # that stops reading: others get their messages at full rate, QoS 0 to it is dropped, it is disconnected, RSS stays bounded', async () => {
    const pid = daemon.proc.pid!;
    const { client: w, messages: watched } = await client('watcher');
    await w.subscribeAsync(`${P}/ext/dev1/#`, { qos: 1 });
    const { client: dev1 } = await client('dev1');
    const { client: fl } = await client('flood');

    // baseline: the same traffic without the slow subscriber
    const rssBefore = rssMiB(pid);
    const baseFlood = flood(fl, 64);
    const baseRate = await steadyRate(dev1, watched, 300, 'base');
    await baseFlood;

    // a subscriber of # that reads its CONNACK and SUBACK, then nothing
    const slow = await rawClient('slow', 'slow-1');
    expect(await slow.subscribe('#', 0)).toEqual([0]);
    slow.socket.pause();

    const rss = sampleRss(pid);
    const flooding = flood(fl, 64);
    // its socket buffers are full and aedes's drain wait would hold every delivery from here on
    const drop = await daemon.waitLog((l) => l.msg === 'slow consumer: QoS 0 messages to it dropped while its delivery queue is over the bound', 20_000);
    expect(drop).toMatchObject({ client_id: 'slow-1', username: 'slow' });
    const slowRate = await steadyRate(dev1, watched, 300, 'slow');
    // it was still connected (and over its bound) for the whole measurement
    expect(daemon.logs.filter((l) => l.msg === "slow consumer disconnected")).toEqual([]);
    await flooding;
    const gone = await daemon.waitLog((l) => l.msg === 'slow consumer disconnected', 20_000);
    expect(gone).toMatchObject({ client_id: 'slow-1', username: 'slow' });
    expect(gone.slow_consumer_drops as number).toBeGreaterThan(0);
    slow.socket.resume();
    await waitFor(() => slow.closed, 10_000, 'the slow subscriber closed');
    const rssMax = rss.stop();

    // and the others still carry on after it is gone
    const afterRate = await steadyRate(dev1, watched, 100, 'after');
    console.log(
      `slow consumer: watcher ${baseRate.toFixed(0)} msg/s without, ${slowRate.toFixed(0)} msg/s with the stalled # subscriber (ratio ${(slowRate / baseRate).toFixed(2)}), ` +
        `${afterRate.toFixed(0)} msg/s after; daemon RSS ${rssBefore.toFixed(0)} MiB before, max ${rssMax.toFixed(0)} MiB while 64 MiB were pushed`,
    );
    expect(slowRate / baseRate).toBeGreaterThan(0.3);
    expect(rssMax - rssBefore).toBeLessThan(120);
  });

  it("the gateway's own stock messages reach a normal subscriber as fast while a # subscriber stalls", async () => {
    const stockTopic = `${P}/shelf/deli/slot/counter/stock`;
    const { client: w, messages: watched } = await client('watcher');
    await w.subscribeAsync(stockTopic, { qos: 1 });
    const { client: fl } = await client('flood');
    const counts = () => watched.filter((m) => m.topic === stockTopic).map((m) => (JSON.parse(m.payload) as { count: number }).count);
    // the retained stock first: the scale's current count
    await waitFor(() => counts().length > 0, 20_000, 'the retained stock');

    /** Sets the scale to `items`, waits for the stock message with that count; returns the ms it took. */
    async function change(items: number): Promise<number> {
      const before = counts().length;
      const t0 = Date.now();
      physics.setItems(items);
      await waitFor(() => counts().slice(before).includes(items), 20_000, `stock count ${items} at the watcher`);
      return Date.now() - t0;
    }
    const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;

    const base: number[] = [];
    for (const n of [2, 3, 2, 3]) base.push(await change(n));

    const slow = await rawClient('slow', 'slow-stock');
    expect(await slow.subscribe('#', 0)).toEqual([0]);
    slow.socket.pause();
    const logsBefore = daemon.logs.length;
    const flooding = flood(fl, 64);
    await daemon.waitLog((l) => l.msg === 'slow consumer: QoS 0 messages to it dropped while its delivery queue is over the bound' && l.client_id === 'slow-stock', 20_000);

    const stalled: number[] = [];
    const gotDuringStall = counts().length;
    stalled.push(await change(2));
    const afterFirst = daemon.logs.length;
    for (const n of [3, 2, 3]) stalled.push(await change(n));
    // at least the first change was measured while the slow subscriber was still connected (and over its bound)
    const disconnectedAt = daemon.logs.findIndex((l, i) => i >= logsBefore && l.msg === 'slow consumer disconnected' && l.client_id === 'slow-stock');
    expect(disconnectedAt === -1 || disconnectedAt >= afterFirst).toBe(true);
    // every stock change reached the watcher, in order, none lost
    expect(counts().slice(gotDuringStall)).toEqual([2, 3, 2, 3]);
    await flooding;
    console.log(`stock latency at a normal subscriber: median ${median(base)} ms without, ${median(stalled)} ms with a stalled # subscriber`);
    // as fast: the shelf's settle and poll times dominate both; generous bound for a shared 2-core VM
    expect(median(stalled)).toBeLessThan(Math.max(3 * median(base), 2_000));
    slow.close();
  });

  it('QoS 2 publishes never released (no PUBREL): the client is disconnected past max_inbound_qos2, others carry on, RSS stays bounded', async () => {
    const pid = daemon.proc.pid!;
    const { client: w, messages: watched } = await client('watcher');
    await w.subscribeAsync(`${P}/ext/dev1/#`, { qos: 1 });
    const { client: dev1 } = await client('dev1');
    const rssBefore = rssMiB(pid);
    const rss = sampleRss(pid);
    const payload = Buffer.alloc(200 * 1024, 0x62);
    const rounds = 10;
    for (let round = 0; round < rounds; round++) {
      const q2 = await rawClient('q2', `q2-${round}`);
      // 200 fresh QoS 2 messages (40 MB), PUBREC read and never answered with PUBREL
      let sent = 0;
      for (let id = 1; id <= 200 && !q2.closed; id++, sent++) {
        if (!q2.send({ cmd: 'publish', topic: `${P}/ext/q2/x`, payload, qos: 2, messageId: id, retain: false, dup: false })) {
          await new Promise((resolve) => {
            q2.socket.once('drain', resolve);
            q2.socket.once('close', resolve);
          });
        }
      }
      await waitFor(() => q2.closed, 20_000, `QoS 2 publisher ${round} disconnected`);
      // the broker took at most MAX_INBOUND_QOS2 of them (PUBRECs still in its buffer when it
      // closed the connection are lost), and closed the connection at the next one
      const pubrecs = q2.packets.filter((p) => p.cmd === 'pubrec').length;
      expect(pubrecs).toBeLessThanOrEqual(MAX_INBOUND_QOS2);
      // others carry on
      await steadyRate(dev1, watched, 20, `q2-${round}`);
    }
    const rssMax = rss.stop();
    const refused = daemon.logs.filter((l) => l.msg === 'client holds more QoS 2 messages without PUBREL than max_inbound_qos2: disconnected');
    expect(refused.length).toBeGreaterThanOrEqual(1);
    expect(refused[0]).toMatchObject({ username: 'q2', max_inbound_qos2: MAX_INBOUND_QOS2 });
    console.log(`QoS 2 without PUBREL: ${rounds} connections each tried 200 x 200 KiB; daemon RSS ${rssBefore.toFixed(0)} MiB before, max ${rssMax.toFixed(0)} MiB`);
    expect(rssMax - rssBefore).toBeLessThan(100);
  });

  it(`outbound in flight: a QoS 1 subscriber that does not acknowledge gets max_inflight (${MAX_INFLIGHT}) messages, one more per PUBACK; others get all`, async () => {
    const { client: w, messages: watched } = await client('watcher');
    await w.subscribeAsync(`${P}/ext/dev1/#`, { qos: 1 });
    const { client: dev1 } = await client('dev1');
    const noack = await rawClient('noack', 'noack-1');
    expect(await noack.subscribe(`${P}/ext/dev1/#`, 1)).toEqual([1]);
    // 100 messages: the watcher gets every one, so every delivery to noack has been decided too
    await steadyRate(dev1, watched, 100, 'inflight');
    await waitFor(() => noack.publishes().length >= MAX_INFLIGHT, 10_000, 'the first deliveries');
    // one more QoS 1 round trip through the broker after the watcher's last message
    await steadyRate(dev1, watched, 1, 'inflight-end');
    expect(noack.publishes().length).toBe(MAX_INFLIGHT);
    expect(noack.closed).toBe(false);
    // each PUBACK lets exactly one more through, in order
    const first = noack.publishes();
    for (const p of first.slice(0, 3)) noack.send({ cmd: 'puback', messageId: p.messageId! });
    await waitFor(() => noack.publishes().length >= MAX_INFLIGHT + 3, 10_000, 'three more after three PUBACKs');
    await steadyRate(dev1, watched, 1, 'inflight-end2');
    const got = noack.publishes().map((p) => p.payload.toString());
    expect(got.length).toBe(MAX_INFLIGHT + 3);
    expect(got).toEqual(Array.from({ length: MAX_INFLIGHT + 3 }, (_, i) => `inflight:${i}`));
  });
});
