/**
 * LocalBus in process: how the bus's parts (auth, sessions, admission, delivery) interact on
 * paths no single part's tests cover.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import mqtt, { MqttClient } from 'mqtt';
import type { Packet } from 'mqtt-packet';
import { LocalBus } from '../../src/bus/broker';
import { hashPassword } from '../../src/bus/auth';
import * as topics from '../../src/bus/topics';
import type { MqttConfig } from '../../src/config/schema';
import { createLogger, silentLogger, type Logger } from '../../src/log';
import { fastHash, localMqttConfig, startLocalBus, usersWithHash } from '../helpers/bus';
import { tmp } from '../helpers/daemon';
import { makeLeafCert, makeTestCa } from '../helpers/mosquitto';
import { RawMqttClient } from '../helpers/raw-mqtt';
import { waitFor } from '../helpers/wait';

const STORE = 'r1';
const P = topics.storePrefix(STORE);
const PW = 'pw-review';

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

async function startBus(over: Partial<MqttConfig>, slowHashFor?: string, log: Logger = silentLogger()): Promise<LocalBus> {
  const h = await fastHash(PW);
  // a slow hash (~64 MiB, hundreds of ms) for the user whose password check must outlive its socket
  const slow = slowHashFor ? await hashPassword(PW, { N: 65536 }) : h;
  const users = usersWithHash(h, { adm: 'admin', svc1: 'service', svc2: 'service' }).map((u) => (u.username === slowHashFor ? { ...u, password_hash: slow } : u));
  const bus = await startLocalBus(localMqttConfig(users, over), STORE, { log });
  cleanups.push(() => bus.stop());
  return bus;
}

async function client(bus: LocalBus, username: string, clientId?: string): Promise<MqttClient> {
  const c = mqtt.connect(`mqtt://127.0.0.1:${bus.address().port}`, { protocolVersion: 4, username, password: PW, reconnectPeriod: 0, ...(clientId ? { clientId } : {}) });
  cleanups.push(() => c.endAsync(true));
  await new Promise<void>((resolve, reject) => {
    c.once('connect', () => resolve());
    c.once('error', reject);
  });
  return c;
}

/** CONNACK return code of one raw CONNECT from `from` (a 127/8 address). */
async function connackCode(bus: LocalBus, username: string, password: string, from = '127.0.0.1'): Promise<number> {
  const raw = await RawMqttClient.open(bus.address().port, from);
  try {
    raw.sendConnect({ username, password, clientId: '' });
    return await raw.connack(10_000);
  } finally {
    raw.close();
  }
}

describe('bus parts together', () => {
  it('a socket closed while its password check runs leaves no client id entry behind: another user may use that id afterwards', async () => {
    const bus = await startBus({}, 'svc1');
    const tracker = (bus as unknown as { tracker: { size: number } }).tracker;
    const raw = await RawMqttClient.open(bus.address().port);
    cleanups.push(() => raw.close());
    raw.sendConnect({ username: 'svc1', password: PW, clientId: 'shared-id' });
    // the scrypt of svc1's check has started; the client goes away while it runs
    await waitFor(() => bus.stats().passwordChecks >= 1, 10_000, 'password check started');
    raw.close();
    await waitFor(() => bus.stats().unauthenticated === 0, 10_000, 'socket close seen by the bus');
    // the check has ended (a successful check forgets its pair in the lockout tracker) and the login went on
    await waitFor(() => tracker.size === 0, 20_000, 'password check finished');
    const s = bus.stats();
    expect(s.sessions.sessions).toBe(0);
    expect(s.connectionsRefusedGlobal).toBe(0); // not a cap refusal: nobody hit max_connections
    // the id is free: another user takes it; the bus carries on for others
    const other = await client(bus, 'svc2', 'shared-id');
    expect(other.connected).toBe(true);
    expect(bus.stats().sessions.clientIdRefused).toBe(0);
  }, 60_000);

  it('a QoS 1 message delivered as QoS 0 (an exact subscription of lower QoS) does not take an in-flight slot for ever', async () => {
    const bus = await startBus({ max_inflight: 4 });
    const c = await client(bus, 'adm');
    await c.subscribeAsync({ [`${P}/t/#`]: { qos: 1 }, [`${P}/t/a`]: { qos: 0 } });
    const got: string[] = [];
    c.on('message', (topic, payload) => got.push(`${topic} ${payload.toString()}`));
    for (let i = 0; i < 10; i++) await bus.publish(`${P}/t/a`, `a${i}`, { qos: 1 });
    await bus.publish(`${P}/t/b`, 'b', { qos: 1 });
    await waitFor(() => got.includes(`${P}/t/b b`), 20_000, 'the QoS 1 message after ten downgraded ones');
    expect(got.filter((g) => g.startsWith(`${P}/t/a `))).toHaveLength(10);
  }, 60_000);

  it('sockets from one address that never finish the TLS handshake cannot fill the mqtts listener: a client from another address still connects', async () => {
    const dir = tmp('sg-review-');
    const ca = makeTestCa(dir, 'ca');
    const leaf = makeLeafCert(dir, ca, 'server');
    const bus = await startBus({
      max_connections: 20,
      max_connections_per_address: 4,
      tls: { host: '127.0.0.1', port: 0, cert_file: leaf.certFile, key_file: leaf.keyFile },
    });
    const mqttsPort = bus.listeners().find((l) => l.kind === 'mqtts')!.port;
    // 20 TCP sockets from 127.0.0.2 (Linux routes all of 127/8 to lo) that never start TLS
    const silent: Socket[] = [];
    for (let i = 0; i < 20; i++) {
      const s = netConnect({ host: '127.0.0.1', port: mqttsPort, localAddress: '127.0.0.2' });
      s.on('error', () => {});
      cleanups.push(() => s.destroy());
      silent.push(s);
    }
    await Promise.all(silent.map((s) => once(s, 'connect')));
    // the listener accepts in order: by the time it sees the client below it has seen all of these
    const c = mqtt.connect(`mqtts://127.0.0.1:${mqttsPort}`, { protocolVersion: 4, username: 'svc2', password: PW, reconnectPeriod: 0, connectTimeout: 10_000, ca: readFileSync(ca.certFile) });
    cleanups.push(() => c.endAsync(true));
    await new Promise<void>((resolve, reject) => {
      c.once('connect', () => resolve());
      c.once('error', reject);
      c.once('close', () => reject(new Error('mqtts client closed before CONNACK')));
    });
    expect(bus.stats().connectionsRefusedAddress).toBeGreaterThanOrEqual(16);
    // the silent address keeps at most its share
    await waitFor(() => silent.filter((s) => !s.destroyed && !s.closed).length <= 4, 10_000, 'sockets beyond the share closed');
  }, 60_000);

  it('QoS 2 to a persistent session: two PUBRECs in a row each release their own message (none stays queued to be sent again)', async () => {
    const bus = await startBus({});
    const queueOf = (id: string): unknown[] | undefined =>
      (bus as unknown as { sessions: { queues: Map<string, { items: unknown[] }> } }).sessions.queues.get(id)?.items;
    const raw = await RawMqttClient.connect(bus.address().port, { username: 'adm', password: PW, clientId: 'adm-q2', clean: false });
    cleanups.push(() => raw.close());
    const { packets } = raw;
    await raw.subscribe(`${P}/q/#`, 2);
    const pub = await client(bus, 'adm');
    await pub.publishAsync(`${P}/q/1`, 'one', { qos: 2 });
    await pub.publishAsync(`${P}/q/2`, 'two', { qos: 2 });
    const publishes = await waitFor(() => {
      const ps = packets.filter((p): p is Packet & { cmd: 'publish'; messageId: number } => p.cmd === 'publish');
      return ps.length >= 2 && ps;
    }, 10_000, 'both QoS 2 messages');
    const [id1, id2] = publishes.map((p) => p.messageId);
    raw.send({ cmd: 'pubrec', messageId: id1 } as Packet);
    raw.send({ cmd: 'pubrec', messageId: id2 } as Packet);
    await waitFor(() => packets.filter((p) => p.cmd === 'pubrel').length >= 2, 10_000, 'both PUBRELs');
    raw.send({ cmd: 'pubcomp', messageId: id1 } as Packet);
    raw.send({ cmd: 'pubcomp', messageId: id2 } as Packet);
    // both exchanges complete: nothing of them is left in the session to be sent again
    await waitFor(() => (queueOf('adm-q2')?.length ?? 0) === 0, 10_000, 'session queue empty after both PUBCOMPs');
    expect(bus.stats().connections).toBe(2); // the bus carries on for both clients
  }, 60_000);

  it('an address locked out for failed logins cannot flood the log (and the log limiter) by trying a new username each time; another address carries on', async () => {
    const lines: Array<{ msg: string }> = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as { msg: string });
        cb();
      },
    });
    const bus = await startBus({ max_auth_failures: 1 }, undefined, createLogger('info', sink));
    // four wrong passwords from 127.0.0.3 (four usernames): the address is locked out (4 x max_auth_failures)
    for (const u of ['adm', 'svc1', 'svc2', 'nobody']) expect(await connackCode(bus, u, 'wrong', '127.0.0.3')).toBe(4);
    expect(bus.stats().lockouts).toBeGreaterThanOrEqual(1);
    for (let i = 0; i < 50; i++) expect(await connackCode(bus, `guess-${i}`, 'x', '127.0.0.3')).toBe(5);
    expect(bus.stats().lockedOutRefusals).toBe(50);
    // another address logs in; by the time it has, every refusal above was handled (and logged, if at all)
    const c = new MqttClient(() => netConnect({ host: '127.0.0.1', port: bus.address().port, localAddress: '127.0.0.4' }), { protocolVersion: 4, username: 'svc2', password: PW, reconnectPeriod: 0 });
    cleanups.push(() => c.endAsync(true));
    await new Promise<void>((resolve, reject) => {
      c.once('connect', () => resolve());
      c.once('error', reject);
    });
    const lockedLines = lines.filter((l) => l.msg === 'login refused: locked out after failed logins');
    expect(lockedLines.length).toBeLessThanOrEqual(2);
  }, 60_000);
});
