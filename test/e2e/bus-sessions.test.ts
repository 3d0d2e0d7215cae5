/**
 * The whole daemon's bus: client ids belong to their user (no squatting, taking, hijacking or
 * wiping of another user's id or stored session), an empty client id with clean session 0 is
 * refused, a persistent session's queue is bounded, and subscriptions per client and filter
 * length are limited. Every refusal and bound is checked together with a bystander client that
 * keeps receiving. Session expiry (which needs a clock) is tested in-process:
 * test/integration/bus-sessions.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { loadDefinitions } from '../../src/devices/definitions';
import type { MtSicsDefinition } from '../../src/devices/types';
import { MtSicsSimulator } from '../../simulators/mtsics-sim';
import { LoadCellPhysics, mulberry32 } from '../../simulators/physics';
import { serveTcp, type TcpServing } from '../../simulators/serve';
import { startDaemon, tmp, useCleanups, waitFor, type RunningDaemon } from '../helpers/daemon';
import { fastHash, usersWithHash } from '../helpers/users';

const PW = 'e2e-password';
const STORE = 'e2e-sess';
const P = `shelfgate/v1/${STORE}/`;
const QUEUE = 5;
const MAX_SUBS = 3;
const MAX_FILTER = 64;

interface Conn {
  client: MqttClient;
  messages: Array<{ topic: string; payload: string }>;
  sessionPresent: boolean;
}

describe('shelfgate run: client ids, persistent sessions and subscription limits', () => {
  const dir = tmp('sg-e2e-sess-');
  const cleanups = useCleanups();
  const physics = new LoadCellPhysics({ unitWeightG: 500, items: 3, noiseSigmaG: 0.05, settleMs: 80, rng: mulberry32(31) });
  const scale = new MtSicsSimulator({ definition: loadDefinitions().get('mettler-toledo-mt-sics') as MtSicsDefinition, physics });
  let tcp: TcpServing;
  let daemon: RunningDaemon;
  let port: number;
  let publisher: Conn;
  let bystander: Conn;
  let seq = 0;

  /** Connects (MQTT 3.1.1, no reconnect); rejects with the CONNACK code, or 'CLOSED'. */
  function connect(username: string, opts: IClientOptions = {}): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const client = mqtt.connect({ host: '127.0.0.1', port, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 10_000, username, password: PW, ...opts });
      const messages: Conn['messages'] = [];
      client.on('message', (topic, payload) => messages.push({ topic, payload: payload.toString() }));
      const done = (err: unknown, sessionPresent = false): void => {
        client.removeAllListeners('connect');
        client.removeAllListeners('error');
        client.removeAllListeners('close');
        if (err) {
          client.end(true);
          reject(err);
        } else {
          cleanups.push(() => void client.end(true));
          resolve({ client, messages, sessionPresent });
        }
      };
      client.once('connect', (connack) => done(null, connack.sessionPresent));
      client.once('error', (e) => done(e));
      client.once('close', () => done(Object.assign(new Error('closed before CONNACK'), { code: 'CLOSED' })));
    });
  }

  function connackCode(username: string, opts: IClientOptions): Promise<number | string> {
    return connect(username, opts).then(
      (c) => {
        c.client.end(true);
        throw new Error(`${username} was accepted with client id ${String(opts.clientId)}`);
      },
      (e: { code: number | string }) => e.code,
    );
  }

  async function subscribe(c: Conn, filter: string): Promise<number> {
    const granted = await c.client.subscribeAsync(filter, { qos: 1 }).catch((err: { packet?: { granted?: number[] } }) => {
      // mqtt.js reports a SUBACK 0x80 as an error carrying the packet
      const code = err.packet?.granted?.[0];
      if (code === undefined) throw err;
      return [{ topic: filter, qos: code }];
    });
    return granted[0]!.qos;
  }

  /** A QoS 1 publish by the device user, acknowledged by the broker (so queued by then). */
  async function publish(topic: string, payload: string): Promise<void> {
    await publisher.client.publishAsync(`${P}ext/dev/${topic}`, payload, { qos: 1 });
  }

  /** Proves the bus still delivers to a client that has nothing to do with the refusal. */
  async function bystanderStillReceives(): Promise<void> {
    const body = `alive-${++seq}`;
    await publish('alive', body);
    await waitFor(() => bystander.messages.some((m) => m.payload === body), 10_000, `bystander receiving ${body}`);
  }

  /** A persistent session of `tech` under `clientId`, subscribed to ext/dev/<topic>, then offline. */
  async function storedSession(clientId: string, topic: string): Promise<void> {
    const owner = await connect('tech', { clientId, clean: false });
    expect(await subscribe(owner, `${P}ext/dev/${topic}`)).toBe(1);
    await owner.client.endAsync();
    await daemon.waitLog((l) => l.msg === 'persistent session offline: kept' && l.client_id === clientId);
  }

  beforeAll(async () => {
    tcp = await serveTcp(scale, '127.0.0.1', 0);
    const hash = await fastHash(PW);
    daemon = await startDaemon(
      {
        store_id: STORE,
        data_dir: join(dir, 'state'),
        log: { level: 'debug' },
        mqtt: {
          port: 0,
          users: usersWithHash(hash, { tech: 'technician', svc: 'service', dev: 'device', kiosk: 'kiosk' }),
          max_session_queue: QUEUE,
          max_subscriptions: MAX_SUBS,
          max_filter_length: MAX_FILTER,
        },
        storage: { flush_interval_ms: 10 },
        buses: [{ id: 'scale', path: tcp.url, model: 'mettler-toledo-mt-sics', poll_interval_ms: 100, reconnect: { initial_ms: 100, max_ms: 1000 } }],
        shelves: [{ id: 'deli', slots: [{ id: 'counter', sensor: { bus: 'scale' }, unit_weight_g: 500 }] }],
      },
      dir,
    );
    port = daemon.mqttPort;
    // long-lived clients, not registered for per-test cleanup
    const c1 = mqtt.connect({ host: '127.0.0.1', port, protocolVersion: 4, reconnectPeriod: 0, username: 'dev', password: PW, clientId: 'dev-publisher' });
    const c2 = mqtt.connect({ host: '127.0.0.1', port, protocolVersion: 4, reconnectPeriod: 0, username: 'svc', password: PW, clientId: 'svc-bystander' });
    await Promise.all([new Promise((r) => c1.once('connect', r)), new Promise((r) => c2.once('connect', r))]);
    publisher = { client: c1, messages: [], sessionPresent: false };
    bystander = { client: c2, messages: [], sessionPresent: false };
    c2.on('message', (topic, payload) => bystander.messages.push({ topic, payload: payload.toString() }));
    await c2.subscribeAsync(`${P}ext/dev/alive`, { qos: 1 });
  }, 30_000);

  afterAll(async () => {
    await publisher?.client.endAsync(true);
    await bystander?.client.endAsync(true);
    await daemon?.stop();
    await tcp?.close();
  });

  it('refuses a client id named after another user (squatting) even before that user ever connected', async () => {
    // svc tries to sit on the id tech's kiosk will use: refused, so tech is never blocked
    expect(await connackCode('svc', { clientId: 'tech-terminal-1' })).toBe(2);
    expect(await connackCode('svc', { clientId: 'tech' })).toBe(2);
    const owner = await connect('tech', { clientId: 'tech-terminal-1' });
    expect(owner.client.connected).toBe(true);
    await daemon.waitLog((l) => l.msg === 'client id belongs to another user: refused' && l.username === 'svc');
    await bystanderStillReceives();
  });

  it("refuses a client id connected as another user (take over) and leaves the holder connected", async () => {
    const holder = await connect('tech', { clientId: 'shared-terminal' });
    expect(await connackCode('svc', { clientId: 'shared-terminal' })).toBe(2);
    expect(await connackCode('svc', { clientId: 'shared-terminal', clean: false })).toBe(2);
    expect(holder.client.connected).toBe(true);
    await bystanderStillReceives();
  });

  it("refuses clean=0 with another user's stored session (hijack); the owner resumes it with the messages queued meanwhile", async () => {
    await storedSession('pos-7', 'pos7');
    await publish('pos7', 'while-offline');
    expect(await connackCode('svc', { clientId: 'pos-7', clean: false })).toBe(2);
    await bystanderStillReceives();
    const owner = await connect('tech', { clientId: 'pos-7', clean: false });
    expect(owner.sessionPresent).toBe(true);
    await waitFor(() => owner.messages.some((m) => m.payload === 'while-offline'), 10_000, 'the queued message');
    // and the session goes on: new messages still reach the owner
    await publish('pos7', 'after');
    await waitFor(() => owner.messages.some((m) => m.payload === 'after'), 10_000, 'a live message');
  });

  it("refuses clean=1 with another user's stored session (wipe); the session survives", async () => {
    await storedSession('pos-8', 'pos8');
    await publish('pos8', 'keep-me');
    expect(await connackCode('svc', { clientId: 'pos-8', clean: true })).toBe(2);
    await bystanderStillReceives();
    const owner = await connect('tech', { clientId: 'pos-8', clean: false });
    expect(owner.sessionPresent).toBe(true);
    await waitFor(() => owner.messages.some((m) => m.payload === 'keep-me'), 10_000, 'the queued message');
  });

  it('refuses an empty client id with clean session 0 with CONNACK 2 [MQTT-3.1.3-8]; clean session 1 still gets one', async () => {
    // by hand: mqtt-packet and mqtt.js refuse to build this CONNECT
    const str = (x: string): Buffer => Buffer.concat([Buffer.from([0, Buffer.byteLength(x)]), Buffer.from(x)]);
    const body = Buffer.concat([str('MQTT'), Buffer.from([4, 0xc0 /* username, password, clean session 0 */, 0, 30]), str(''), str('tech'), str(PW)]);
    const packet = Buffer.concat([Buffer.from([0x10, body.length]), body]);
    const reply = await new Promise<{ data: Buffer; closed: boolean }>((resolve, reject) => {
      const s = tcpConnect(port, '127.0.0.1', () => s.write(packet));
      let data = Buffer.alloc(0);
      const timer = setTimeout(() => (s.destroy(), reject(new Error(`no close within 10 s; got ${data.toString('hex')}`))), 10_000);
      s.on('data', (d: Buffer) => (data = Buffer.concat([data, d])));
      s.on('error', () => undefined);
      s.on('close', () => (clearTimeout(timer), resolve({ data, closed: true })));
    });
    expect([...reply.data]).toEqual([0x20, 0x02, 0x00, 0x02]);
    expect(reply.closed).toBe(true);
    await daemon.waitLog((l) => l.msg === 'empty client id with clean session 0: refused');
    const anon = await connect('tech', { clientId: '', clean: true });
    expect(anon.client.connected).toBe(true);
    await bystanderStillReceives();
  });

  it(`keeps at most max_session_queue (${QUEUE}) messages for an offline session: the newest, the oldest dropped and logged`, async () => {
    await storedSession('tech-queue', 'q');
    const N = QUEUE + 7;
    for (let i = 1; i <= N; i++) await publish('q', `m${i}`);
    await daemon.waitLog((l) => l.msg === 'persistent session queue full: oldest messages dropped' && l.client_id === 'tech-queue');
    await bystanderStillReceives();
    const owner = await connect('tech', { clientId: 'tech-queue', clean: false });
    expect(owner.sessionPresent).toBe(true);
    // a live message after the queue: once it is here, everything queued has been delivered
    await waitFor(() => owner.messages.length >= QUEUE, 10_000, 'the queued messages');
    await publish('q', 'live');
    await waitFor(() => owner.messages.some((m) => m.payload === 'live'), 10_000, 'the live message');
    const expected = Array.from({ length: QUEUE }, (_, i) => `m${N - QUEUE + 1 + i}`);
    expect(owner.messages.map((m) => m.payload)).toEqual([...expected, 'live']);
  });

  it(`negates a subscription beyond max_subscriptions (${MAX_SUBS}) with SUBACK 0x80; the first ones keep delivering`, async () => {
    const c = await connect('tech', { clientId: 'tech-subs' });
    for (let i = 1; i <= MAX_SUBS; i++) expect(await subscribe(c, `${P}ext/dev/s${i}`)).toBe(1);
    expect(await subscribe(c, `${P}ext/dev/s-over`)).toBe(0x80);
    // re-subscribing to a held filter is not a new subscription
    expect(await subscribe(c, `${P}ext/dev/s1`)).toBe(1);
    await daemon.waitLog((l) => l.msg === 'subscription over max_subscriptions: negated' && l.username === 'tech');
    await publish('s-over', 'not-for-you');
    for (let i = 1; i <= MAX_SUBS; i++) await publish(`s${i}`, `sub-${i}`);
    await waitFor(() => c.messages.length >= MAX_SUBS, 10_000, 'messages on the granted filters');
    expect(c.messages.map((m) => m.payload)).toEqual(['sub-1', 'sub-2', 'sub-3']);
    // an unsubscribe frees a slot
    await c.client.unsubscribeAsync(`${P}ext/dev/s3`);
    expect(await subscribe(c, `${P}ext/dev/s-over`)).toBe(1);
    await bystanderStillReceives();
  });

  it(`negates a filter longer than max_filter_length (${MAX_FILTER} bytes) with SUBACK 0x80; earlier subscriptions keep delivering`, async () => {
    const c = await connect('tech', { clientId: 'tech-filter' });
    expect(await subscribe(c, `${P}ext/dev/short`)).toBe(1);
    const long = `${P}ext/dev/${'x'.repeat(MAX_FILTER)}`;
    expect(Buffer.byteLength(long)).toBeGreaterThan(MAX_FILTER);
    expect(await subscribe(c, long)).toBe(0x80);
    // exactly at the limit is fine
    const atLimit = `${P}ext/dev/${'y'.repeat(MAX_FILTER - `${P}ext/dev/`.length)}`;
    expect(Buffer.byteLength(atLimit)).toBe(MAX_FILTER);
    expect(await subscribe(c, atLimit)).toBe(1);
    await daemon.waitLog((l) => l.msg === 'subscription over max_filter_length: negated' && l.username === 'tech');
    await publish('short', 'still-here');
    await waitFor(() => c.messages.some((m) => m.payload === 'still-here'), 10_000, 'a message on the earlier subscription');
    await bystanderStillReceives();
  });
});
