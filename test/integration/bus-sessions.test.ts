/**
 * LocalBus persistent sessions in-process, where a test needs the bus's clock or its counters:
 * session expiry (injected `now`, at the owner's next CONNECT and by the sweep), the per-user cap
 * on stored sessions under a reconnect storm, the exact drop count of a full session queue, and
 * that a filter negated by a limit is not stored in the session. Real sockets on 127.0.0.1:0,
 * mqtt.js clients speaking MQTT 3.1.1. The whole-daemon refusals: test/e2e/bus-sessions.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { LocalBus } from '../../src/bus/broker';
import * as topics from '../../src/bus/topics';
import type { MqttConfig } from '../../src/config/schema';
import { fastHash, localMqttConfig, startLocalBus, usersWithHash } from '../helpers/bus';
import { waitFor } from '../helpers/wait';

const STORE = 's1';
const P = topics.storePrefix(STORE);
const PW = 'pw-123';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function startBus(over: Partial<MqttConfig>, extra: { now?: () => number; sessionSweepMs?: number } = {}): Promise<LocalBus> {
  const users = usersWithHash(await fastHash(PW), { tech: 'technician', svc: 'service', dev: 'device' });
  const bus = await startLocalBus(localMqttConfig(users, over), STORE, { features: true, ...extra });
  cleanups.push(() => bus.stop());
  return bus;
}

interface Conn {
  client: MqttClient;
  payloads: string[];
  sessionPresent: boolean;
}

function connect(bus: LocalBus, username: string, opts: IClientOptions = {}): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect({ host: '127.0.0.1', port: bus.address().port, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 10_000, username, password: PW, ...opts });
    const payloads: string[] = [];
    client.on('message', (_t, p) => payloads.push(p.toString()));
    cleanups.push(() => void client.end(true));
    client.once('connect', (connack) => resolve({ client, payloads, sessionPresent: connack.sessionPresent }));
    client.once('error', reject);
    client.once('close', () => reject(new Error('closed before CONNACK')));
  });
}

/** A persistent session of `tech` under `clientId`, subscribed to P/ext/dev/<topic>, left offline. */
async function storedSession(bus: LocalBus, clientId: string, topic: string): Promise<void> {
  const before = bus.stats().sessions.sessionsOffline + bus.stats().sessions.sessionsEvicted;
  const c = await connect(bus, 'tech', { clientId, clean: false });
  await c.client.subscribeAsync(`${P}ext/dev/${topic}`, { qos: 1 });
  await c.client.endAsync();
  await waitFor(() => bus.stats().sessions.sessionsOffline + bus.stats().sessions.sessionsEvicted > before, 10_000, `session ${clientId} stored`);
}

describe('LocalBus persistent sessions', () => {
  it('deletes a session offline for session_expiry_s when its owner comes back; before that it resumes', async () => {
    let t = 1_000_000;
    // the sweep never runs here: this is the check at CONNECT
    const bus = await startBus({ session_expiry_s: 60 }, { now: () => t, sessionSweepMs: 3_600_000 });
    const dev = await connect(bus, 'dev', { clientId: 'dev-pub' });
    const other = await connect(bus, 'svc', { clientId: 'svc-other' });
    await other.client.subscribeAsync(`${P}ext/dev/a`, { qos: 1 });

    await storedSession(bus, 'tech-a', 'a');
    await dev.client.publishAsync(`${P}ext/dev/a`, 'queued-a', { qos: 1 });
    t += 59_000;
    // not yet expired: resumes with the queued message
    const early = await connect(bus, 'tech', { clientId: 'tech-a', clean: false });
    expect(early.sessionPresent).toBe(true);
    await waitFor(() => early.payloads.includes('queued-a'), 10_000, 'the queued message');
    await early.client.endAsync();
    await waitFor(() => bus.stats().sessions.sessionsOffline === 1, 10_000, 'tech-a offline again');
    await dev.client.publishAsync(`${P}ext/dev/a`, 'queued-a2', { qos: 1 });
    t += 60_000;
    expect(bus.stats().sessions.sessionsExpired).toBe(0);
    const late = await connect(bus, 'tech', { clientId: 'tech-a', clean: false });
    expect(late.sessionPresent).toBe(false);
    expect(bus.stats().sessions.sessionsExpired).toBe(1);

    // the other subscriber carries on; the expired session's queue is gone
    await dev.client.publishAsync(`${P}ext/dev/a`, 'live', { qos: 1 });
    await waitFor(() => other.payloads.includes('live'), 10_000, 'the other client receiving');
    expect(late.payloads).toEqual([]);
  });

  it('the sweep deletes a session nobody comes back for, with its subscriptions and queue', async () => {
    let t = 1_000_000;
    const bus = await startBus({ session_expiry_s: 60 }, { now: () => t, sessionSweepMs: 20 });
    const dev = await connect(bus, 'dev', { clientId: 'dev-pub' });
    const other = await connect(bus, 'svc', { clientId: 'svc-other' });
    await other.client.subscribeAsync(`${P}ext/dev/b`, { qos: 1 });
    await storedSession(bus, 'tech-b', 'b');
    await dev.client.publishAsync(`${P}ext/dev/b`, 'queued-b', { qos: 1 });
    expect(bus.stats().sessions.sessions).toBe(3); // dev-pub, svc-other, tech-b (stored)
    t += 60_000;
    await waitFor(() => bus.stats().sessions.sessionsExpired === 1, 10_000, 'the sweep deleting tech-b');
    expect(bus.stats().sessions.sessions).toBe(2);
    expect(bus.stats().sessions.sessionsOffline).toBe(0);
    const b = await connect(bus, 'tech', { clientId: 'tech-b', clean: false });
    expect(b.sessionPresent).toBe(false);
    await dev.client.publishAsync(`${P}ext/dev/b`, 'live', { qos: 1 });
    await waitFor(() => other.payloads.includes('live'), 10_000, 'the other client receiving');
    expect(b.payloads).toEqual([]);
  });

  it('keeps at most max_connections_per_user stored sessions per user: a storm of new ids evicts only that user\'s oldest', async () => {
    const bus = await startBus({ max_connections_per_user: 4, max_session_queue: 10 });
    const dev = await connect(bus, 'dev', { clientId: 'dev-pub' });
    // svc's session, stored first (the oldest of all)
    const svc = await connect(bus, 'svc', { clientId: 'svc-kept', clean: false });
    await svc.client.subscribeAsync(`${P}ext/dev/svc`, { qos: 1 });
    await svc.client.endAsync();
    await waitFor(() => bus.stats().sessions.sessionsOffline === 1, 10_000, 'svc-kept stored');

    const STORM = 12;
    for (let i = 0; i < STORM; i++) await storedSession(bus, `storm-${i}`, `storm/${i}`);
    const s = bus.stats().sessions;
    expect(s.sessionsEvicted).toBe(STORM - 4);
    expect(s.sessionsOffline).toBe(4 + 1);

    // svc's session is intact: it gets what was queued while it was away
    await dev.client.publishAsync(`${P}ext/dev/svc`, 'for-svc', { qos: 1 });
    const back = await connect(bus, 'svc', { clientId: 'svc-kept', clean: false });
    expect(back.sessionPresent).toBe(true);
    await waitFor(() => back.payloads.includes('for-svc'), 10_000, 'svc-kept resuming');
    // the newest storm sessions are still there, the oldest are gone
    const newest = await connect(bus, 'tech', { clientId: `storm-${STORM - 1}`, clean: false });
    expect(newest.sessionPresent).toBe(true);
    const oldest = await connect(bus, 'tech', { clientId: 'storm-0', clean: false });
    expect(oldest.sessionPresent).toBe(false);
  });

  it('counts every message dropped from a full session queue', async () => {
    const bus = await startBus({ max_session_queue: 3 });
    const dev = await connect(bus, 'dev', { clientId: 'dev-pub' });
    await storedSession(bus, 'tech-q', 'q');
    for (let i = 1; i <= 10; i++) await dev.client.publishAsync(`${P}ext/dev/q`, `m${i}`, { qos: 1 });
    expect(bus.stats().sessions.sessionQueueDropped).toBe(7);
    const c = await connect(bus, 'tech', { clientId: 'tech-q', clean: false });
    await waitFor(() => c.payloads.length === 3, 10_000, 'the 3 queued messages');
    expect(c.payloads).toEqual(['m8', 'm9', 'm10']);
  });

  it('does not store a filter negated by a limit in the session (aedes stores the whole SUBSCRIBE)', async () => {
    const bus = await startBus({ max_subscriptions: 1 });
    const dev = await connect(bus, 'dev', { clientId: 'dev-pub' });
    const c = await connect(bus, 'tech', { clientId: 'tech-limited', clean: false });
    const granted = await c.client.subscribeAsync([`${P}ext/dev/ok`, `${P}ext/dev/over`], { qos: 1 }).catch((e: { packet?: { granted?: number[] } }) => {
      if (!e.packet?.granted) throw e;
      return e.packet.granted.map((qos) => ({ qos }));
    });
    expect(granted.map((g) => g.qos)).toEqual([1, 0x80]);
    expect(bus.stats().sessions.subscriptionLimitRefused).toBe(1);
    await c.client.endAsync();
    await waitFor(() => bus.stats().sessions.sessionsOffline === 1, 10_000, 'tech-limited stored');
    await dev.client.publishAsync(`${P}ext/dev/over`, 'never', { qos: 1 });
    await dev.client.publishAsync(`${P}ext/dev/ok`, 'queued', { qos: 1 });
    const back = await connect(bus, 'tech', { clientId: 'tech-limited', clean: false });
    await waitFor(() => back.payloads.includes('queued'), 10_000, 'the message on the granted filter');
    // published before 'queued': had it been stored, it would have arrived first
    expect(back.payloads).toEqual(['queued']);
  });
});
