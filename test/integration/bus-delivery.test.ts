/**
 * LocalBus in process: the delivery bounds of src/bus/delivery.ts and their BusStats counters
 * (the whole-daemon behaviour is in test/e2e/bus-slow-consumer.test.ts).
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Socket } from 'node:net';
import { once } from 'node:events';
import mqtt, { type MqttClient } from 'mqtt';
import { LocalBus } from '../../src/bus/broker';
import * as topics from '../../src/bus/topics';
import type { MqttConfig } from '../../src/config/schema';
import { fastHash, localMqttConfig, startLocalBus, usersWithHash } from '../helpers/bus';
import { RawMqttClient } from '../helpers/raw-mqtt';
import { waitFor } from '../helpers/wait';

const STORE = 'd1';
const P = topics.storePrefix(STORE);
const PW = 'pw-delivery';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanups.length > 0) {
    try {
      await cleanups.pop()!();
    } catch {
      // keep cleaning
    }
  }
});

async function startBus(over: Partial<MqttConfig>): Promise<LocalBus> {
  const users = usersWithHash(await fastHash(PW), { adm: 'admin', svc: 'service', dev1: 'device' });
  const bus = await startLocalBus(localMqttConfig(users, over), STORE);
  cleanups.push(() => bus.stop());
  return bus;
}

async function client(bus: LocalBus, username: string): Promise<MqttClient> {
  const c = mqtt.connect(`mqtt://127.0.0.1:${bus.address().port}`, { protocolVersion: 4, username, password: PW, reconnectPeriod: 0 });
  cleanups.push(() => c.endAsync(true));
  await new Promise<void>((resolve, reject) => {
    c.once('connect', () => resolve());
    c.once('error', reject);
  });
  return c;
}

/** A subscriber on a raw socket that reads its SUBACK and then nothing. */
async function stalledSubscriber(bus: LocalBus, filter: string, qos: 0 | 1): Promise<{ socket: Socket; closed: () => boolean }> {
  const raw = await RawMqttClient.connect(bus.address().port, { username: 'adm', password: PW, clientId: `stalled-${qos}` });
  cleanups.push(() => raw.close());
  await raw.subscribe(filter, qos, 5_000);
  raw.stopReading();
  return { socket: raw.socket, closed: () => raw.closed };
}

describe('bus delivery bounds (in process)', () => {
  it('QoS 0 over the bound is dropped and counted; the sweep disconnects a client that stays over once the traffic has stopped', async () => {
    // the message bound decides here: once the socket buffer is past its high-water mark, every
    // delivery counts until a drain, and the one admitted at the bound leaves the client over it
    const bus = await startBus({ max_queued_messages: 100, max_queued_bytes: 4 * 1024 * 1024, slow_consumer_timeout_s: 1 });
    const watcher = await client(bus, 'svc');
    await watcher.subscribeAsync(`${P}ext/dev1/n`, { qos: 1 });
    let seen = 0;
    watcher.on('message', () => seen++);
    const slow = await stalledSubscriber(bus, '#', 0);
    const dev = await client(bus, 'dev1');
    const big = Buffer.alloc(4 * 1024, 1);
    // until its socket buffers are full and it stays over the bound: rounds of 20 messages and a
    // QoS 1 round trip (the broker has handled the 20 before it) until all 20 of a round are
    // dropped (what one socket read brings can cross the bound for a moment: drops alone do not say)
    for (let round = 0; round < 2000; round++) {
      const before = bus.stats().slowConsumerDrops;
      for (let i = 0; i < 20; i++) await dev.publishAsync(`${P}ext/dev1/big`, big, { qos: 0 });
      await dev.publishAsync(`${P}ext/dev1/sync`, 'x', { qos: 1 });
      if (bus.stats().slowConsumerDrops - before >= 20) break;
    }
    expect(bus.stats().slowConsumerDrops).toBeGreaterThan(0);
    expect(bus.stats(), JSON.stringify(bus.stats())).toMatchObject({ slowConsumerDisconnects: 0 });
    // no more traffic: only the sweep can notice it stays over
    await waitFor(() => bus.stats().slowConsumerDisconnects === 1, 10_000, 'the stalled subscriber disconnected by the sweep');
    slow.socket.resume(); // reads what is left, then the close
    await waitFor(() => slow.closed(), 10_000, 'the stalled subscriber closed');
    // the others carry on
    for (let i = 0; i < 20; i++) await dev.publishAsync(`${P}ext/dev1/n`, String(i), { qos: 1 });
    await waitFor(() => seen === 20, 10_000, '20 messages at the watcher');
  });

  it('QoS 1 to a client that neither reads nor acknowledges: held back past max_inflight, disconnected past twice the bound', async () => {
    const bus = await startBus({ max_inflight: 4, max_queued_messages: 50, slow_consumer_timeout_s: 600 });
    const watcher = await client(bus, 'svc');
    await watcher.subscribeAsync(`${P}ext/dev1/#`, { qos: 1 });
    let seen = 0;
    watcher.on('message', () => seen++);
    const slow = await stalledSubscriber(bus, `${P}ext/dev1/#`, 1);
    const dev = await client(bus, 'dev1');
    for (let i = 0; i < 200; i++) await dev.publishAsync(`${P}ext/dev1/q1`, String(i), { qos: 1 });
    await waitFor(() => seen === 200, 10_000, '200 messages at the watcher');
    await waitFor(() => bus.stats().slowConsumerDisconnects === 1, 10_000, 'the stalled QoS 1 subscriber disconnected at the hard cap');
    slow.socket.resume();
    await waitFor(() => slow.closed(), 10_000, 'the stalled QoS 1 subscriber closed');
    const s = bus.stats();
    expect(s.inflightHeld).toBeGreaterThan(100);
    expect(s.slowConsumerDisconnects).toBe(1);
    expect(s.slowConsumerDrops).toBe(0);
  });

  it('a client over max_inbound_qos2 unreleased QoS 2 messages is disconnected and counted', async () => {
    const bus = await startBus({ max_inbound_qos2: 4 });
    const raw = await RawMqttClient.open(bus.address().port);
    cleanups.push(() => raw.close());
    const closed = once(raw.socket, 'close');
    raw.sendConnect({ username: 'dev1', password: PW, clientId: 'q2' });
    for (let id = 1; id <= 5; id++) raw.send({ cmd: 'publish', topic: `${P}ext/dev1/q2`, payload: Buffer.from('x'), qos: 2, messageId: id, retain: false, dup: false });
    await closed;
    expect(bus.stats().inboundQos2Disconnects).toBe(1);
    expect(bus.stats().malformed).toBe(0);
  });
});
