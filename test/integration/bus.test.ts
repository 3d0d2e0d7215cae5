/**
 * LocalBus over real sockets: 127.0.0.1, port 0, real mqtt.js clients speaking MQTT 3.1.1
 * (protocolVersion 4). Every wait is bounded.
 */
import { connect as tcpConnect } from 'node:net';
import { z } from 'zod';
import { CommandRegistry, declareCommand, handle } from '../../src/core/commands';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { generate } from 'mqtt-packet';
import { LocalBus, MAX_REQUESTS_IN_FLIGHT, MqttLengthScanner } from '../../src/bus/broker';
import { fastHash, localMqttConfig, startLocalBus, usersWithHash } from '../helpers/bus';
import * as topics from '../../src/bus/topics';
import type { MqttConfig } from '../../src/config/schema';
import { ErrorCode, ShelfgateError } from '../../src/errors';
import { silentLogger } from '../../src/log';
import { subackCode as subscribe } from '../helpers/suback';
import { waitFor } from '../helpers/wait';

const STORE = 's1';
const P = topics.storePrefix(STORE);
const PW = 'pw-123';

async function users(): Promise<MqttConfig['users']> {
  return usersWithHash(await fastHash(PW), { kiosk1: 'kiosk', svc: 'service', tech: 'technician', adm: 'admin', dev1: 'device' });
}

function mqttConfig(u: MqttConfig['users'], over: Partial<MqttConfig> = {}): MqttConfig {
  // through the schema, so every bound has its production default unless the test sets it
  return localMqttConfig(u, { max_auth_failures: 5, lockout_s: 60, max_connections: 50, max_packet_bytes: 4096, ...over });
}

function startBus(cfg: MqttConfig, extra: { connectTimeoutMs?: number; commands?: CommandRegistry } = {}): Promise<LocalBus> {
  // the topic areas of the built-in features (shelf/#): what the daemon's bus declares
  return startLocalBus(cfg, STORE, { features: true, ...extra });
}

const clients: MqttClient[] = [];

/** Connects with mqtt.js (MQTT 3.1.1, no reconnect); rejects with the CONNACK code or on close, within 5 s. */
function connect(bus: LocalBus, username?: string, password?: string, opts: IClientOptions = {}): Promise<MqttClient> {
  const { port } = bus.address();
  return new Promise((resolve, reject) => {
    const c = mqtt.connect({
      host: '127.0.0.1',
      port,
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 5_000,
      username,
      password,
      ...opts,
    });
    clients.push(c);
    const timer = setTimeout(() => done(new Error('connect timed out')), 5_000);
    function done(err?: Error): void {
      clearTimeout(timer);
      c.removeListener('connect', onConnect);
      c.removeListener('error', onError);
      c.removeListener('close', onClose);
      if (err) {
        c.end(true);
        reject(err);
      } else resolve(c);
    }
    const onConnect = (): void => done();
    const onError = (e: Error): void => done(e);
    const onClose = (): void => done(Object.assign(new Error('closed before CONNACK'), { code: 'CLOSED' }));
    c.once('connect', onConnect);
    c.once('error', onError);
    c.once('close', onClose);
  });
}

async function connectError(bus: LocalBus, username?: string, password?: string): Promise<number | string> {
  try {
    await connect(bus, username, password);
  } catch (e) {
    return (e as { code: number | string }).code;
  }
  throw new Error('connection was accepted');
}

/** Resolves with the first message on `topic` satisfying `pred`, or rejects after `ms`. */
function nextMessage(c: MqttClient, topic: string, ms = 5_000, pred: (p: Buffer) => boolean = () => true): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const onMsg = (t: string, payload: Buffer): void => {
      if (t === topic && pred(payload)) {
        cleanup();
        resolve(payload);
      }
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no message on ${topic} within ${ms} ms`));
    }, ms);
    const cleanup = (): void => {
      clearTimeout(timer);
      c.removeListener('message', onMsg);
    };
    c.on('message', onMsg);
  });
}

function waitClose(c: MqttClient, ms = 5_000): Promise<void> {
  if (c.disconnected || !c.connected) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('client was not closed')), ms);
    c.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Sends raw bytes; resolves with what came back and whether the server closed the socket within `ms`. */
function raw(port: number, bytes: Buffer | null, ms = 3_000): Promise<{ data: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const s = tcpConnect({ host: '127.0.0.1', port }, () => {
      if (bytes) s.write(bytes);
    });
    const finish = (closed: boolean): void => {
      clearTimeout(timer);
      s.removeAllListeners();
      s.on('error', () => {});
      s.destroy();
      resolve({ data: Buffer.concat(chunks), closed });
    };
    const timer = setTimeout(() => finish(false), ms);
    s.on('data', (d) => chunks.push(d));
    s.on('error', () => {});
    s.on('close', () => finish(true));
  });
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => new Promise<void>((r) => c.end(true, {}, () => r()))));
});

describe('LocalBus (real sockets)', () => {
  let bus: LocalBus;
  let userList: MqttConfig['users'];

  beforeAll(async () => {
    userList = await users();
    // Commands declared here, as a feature would: the bus runs them and its ACL reads their permissions.
    const commands = new CommandRegistry();
    const echo = declareCommand({ name: 'stock.get', permission: 'read', description: 'echo', payload: z.object({ shelf: z.string() }).partial().passthrough() });
    const tare = declareCommand({ name: 'calibrate.tare', permission: 'calibrate', description: 'always fails', payload: z.object({}) });
    const crash = declareCommand({ name: 'diag.crash', permission: 'operate', description: 'throws a plain Error', payload: z.object({}) });
    commands.declare('test', [echo, tare, crash]);
    commands.bind('test', handle(echo, async (payload, { username, role }) => ({ echo: payload, username, role })));
    commands.bind(
      'test',
      handle(tare, async () => {
        throw new ShelfgateError(ErrorCode.NOT_FOUND, 'no slot A/9');
      }),
    );
    commands.bind(
      'test',
      handle(crash, async () => {
        throw new Error('secret internals');
      }),
    );
    bus = await startBus(mqttConfig(userList), { connectTimeoutMs: 500, commands });
  });

  afterAll(async () => {
    await bus.stop();
  });

  it('listens on 127.0.0.1 with an OS-chosen port', () => {
    const a = bus.address();
    expect(a.host).toBe('127.0.0.1');
    expect(a.port).toBeGreaterThan(0);
  });

  it('refuses anonymous clients (CONNACK 5) and wrong passwords (CONNACK 4)', async () => {
    expect(await connectError(bus)).toBe(5);
    expect(await connectError(bus, 'kiosk1', 'wrong')).toBe(4);
    expect(await connectError(bus, 'nobody', PW)).toBe(4);
    expect(await connectError(bus, 'kiosk1')).toBe(4);
    expect(bus.stats().authFailures).toBeGreaterThanOrEqual(3);
    expect(bus.stats().anonymousRefused).toBe(1);
  });

  it('retained gateway status is online', async () => {
    const c = await connect(bus, 'kiosk1', PW);
    const msg = nextMessage(c, topics.gatewayStatus(STORE));
    expect(await subscribe(c, topics.gatewayStatus(STORE))).toBe(1);
    const status = JSON.parse((await msg).toString()) as topics.GatewayStatus;
    expect(status.state).toBe('online');
    expect(status.version).toBe('test');
    expect(Date.parse(status.started_at)).not.toBeNaN();
  });

  it('kiosk receives gateway stock publishes (retained and live)', async () => {
    const t = topics.slotTopics(STORE, 'A', '1');
    await bus.publish(t.stock, JSON.stringify({ count: 7 }), { retain: true, qos: 1 });
    const c = await connect(bus, 'kiosk1', PW);
    const retained = nextMessage(c, t.stock);
    expect(await subscribe(c, `${P}shelf/+/slot/+/stock`)).toBe(1);
    expect(JSON.parse((await retained).toString())).toEqual({ count: 7 });
    const live = nextMessage(c, t.stock);
    await bus.publish(t.stock, JSON.stringify({ count: 6 }), { retain: true, qos: 1 });
    expect(JSON.parse((await live).toString())).toEqual({ count: 6 });
  });

  it('kiosk cannot publish stock: its connection is closed and no subscriber sees the spoof', async () => {
    const t = topics.slotTopics(STORE, 'A', '2');
    const watcher = await connect(bus, 'svc', PW);
    const seen: string[] = [];
    watcher.on('message', (topic, p) => topic === t.stock && seen.push(p.toString()));
    expect(await subscribe(watcher, `${P}shelf/#`)).toBe(1);

    const denied = bus.stats().deniedPublishes;
    const kiosk = await connect(bus, 'kiosk1', PW);
    const closed = waitClose(kiosk);
    kiosk.publish(t.stock, JSON.stringify({ count: 999 }), { qos: 0, retain: true });
    await closed;
    expect(bus.stats().deniedPublishes).toBe(denied + 1);

    // a marker from the gateway after the spoof: the watcher sees the marker and nothing before it
    const marker = nextMessage(watcher, t.stock);
    await bus.publish(t.stock, JSON.stringify({ count: 3 }), { retain: true, qos: 1 });
    await marker;
    expect(seen).toEqual([JSON.stringify({ count: 3 })]);

    // and the retained value was not overwritten by the spoof
    const late = await connect(bus, 'kiosk1', PW);
    const r = nextMessage(late, t.stock);
    await subscribe(late, t.stock);
    expect(JSON.parse((await r).toString())).toEqual({ count: 3 });
  });

  it('denied subscriptions are negated (SUBACK 0x80)', async () => {
    const kiosk = await connect(bus, 'kiosk1', PW);
    expect(await subscribe(kiosk, '#')).toBe(128);
    expect(await subscribe(kiosk, '$SYS/#')).toBe(128);
    expect(await subscribe(kiosk, `${P}response/+/#`)).toBe(128);
    const svc = await connect(bus, 'svc', PW);
    expect(await subscribe(svc, `${P}#`)).toBe(128);
    expect(await subscribe(svc, `${P}response/kiosk1/#`)).toBe(128);
    expect(bus.stats().deniedSubscribes).toBeGreaterThanOrEqual(5);
  });

  it('request/response round trip with the transaction id, answered to the requester only', async () => {
    const spy = await connect(bus, 'kiosk1', PW);
    const spied: string[] = [];
    spy.on('message', (topic) => spied.push(topic));
    expect(await subscribe(spy, '#')).toBe(128);
    expect(await subscribe(spy, 'shelfgate/#')).toBe(128);
    expect(await subscribe(spy, topics.responseFilter(STORE, 'kiosk1'))).toBe(1);

    const svc = await connect(bus, 'svc', PW);
    const respTopic = topics.response(STORE, 'svc', 'stock.get');
    expect(await subscribe(svc, topics.responseFilter(STORE, 'svc'))).toBe(1);
    const answer = nextMessage(svc, respTopic);
    svc.publish(topics.request(STORE, 'stock.get'), JSON.stringify({ transaction: 'tx-1', shelf: 'A' }), { qos: 1 });
    const body = JSON.parse((await answer).toString()) as topics.BusResponse;
    expect(body).toEqual({
      transaction: 'tx-1',
      ok: true,
      data: { echo: { shelf: 'A' }, username: 'svc', role: 'service' },
    });

    // the kiosk's own request: it gets its own answer, and had seen nothing of svc's
    const own = nextMessage(spy, topics.response(STORE, 'kiosk1', 'stock.get'));
    spy.publish(topics.request(STORE, 'stock.get'), JSON.stringify({ transaction: 'k-1' }), { qos: 1 });
    expect((JSON.parse((await own).toString()) as topics.BusResponse).transaction).toBe('k-1');
    expect(spied).toEqual([topics.response(STORE, 'kiosk1', 'stock.get')]);
  });

  it('request errors: unknown command, bad JSON, missing transaction, handler errors', async () => {
    const tech = await connect(bus, 'tech', PW);
    await subscribe(tech, topics.responseFilter(STORE, 'tech'));
    const ask = async (command: string, payload: string): Promise<topics.BusResponse> => {
      const r = nextMessage(tech, topics.response(STORE, 'tech', command));
      tech.publish(topics.request(STORE, command), payload, { qos: 1 });
      return JSON.parse((await r).toString()) as topics.BusResponse;
    };
    expect(await ask('no.such', JSON.stringify({ transaction: 't1' }))).toEqual({
      transaction: 't1',
      ok: false,
      error: { code: ErrorCode.NOT_FOUND, message: 'unknown command: no.such' },
    });
    const bad = await ask('stock.get', '{not json');
    expect(bad).toMatchObject({ transaction: null, ok: false, error: { code: ErrorCode.REQUEST_INVALID } });
    expect(await ask('stock.get', JSON.stringify({ shelf: 'A' }))).toMatchObject({ ok: false, error: { code: ErrorCode.REQUEST_INVALID } });
    expect(await ask('stock.get', '[1]')).toMatchObject({ ok: false, error: { code: ErrorCode.REQUEST_INVALID } });
    expect(await ask('calibrate.tare', JSON.stringify({ transaction: 't2' }))).toEqual({
      transaction: 't2',
      ok: false,
      error: { code: ErrorCode.NOT_FOUND, message: 'no slot A/9' },
    });
    const crash = await ask('diag.crash', JSON.stringify({ transaction: 't3' }));
    expect(crash).toMatchObject({ transaction: 't3', ok: false, error: { code: 'SG_INTERNAL', message: 'internal error' } });
    expect(JSON.stringify(crash)).not.toContain('secret');
  });

  it('a kiosk may not send calibration requests; a service user neither', async () => {
    for (const user of ['kiosk1', 'svc']) {
      const c = await connect(bus, user, PW);
      const closed = waitClose(c);
      c.publish(topics.request(STORE, 'calibrate.tare'), JSON.stringify({ transaction: 'x' }));
      await closed;
    }
  });

  it('device publishes only under its ext subtree', async () => {
    const adm = await connect(bus, 'adm', PW);
    await subscribe(adm, `${P}ext/#`);
    const got = nextMessage(adm, `${P}ext/dev1/temp`);
    const dev = await connect(bus, 'dev1', PW);
    dev.publish(`${P}ext/dev1/temp`, '21.5', { qos: 1 });
    expect((await got).toString()).toBe('21.5');
    const closed = waitClose(dev);
    dev.publish(`${P}ext/other/temp`, '1');
    await closed;
  });

  it('ACL decisions are cached per connection: one user\'s allowed topic stays denied to another', async () => {
    const adm = await connect(bus, 'adm', PW);
    expect(await subscribe(adm, `${P}ext/#`)).toBe(1);
    const topic = `${P}ext/dev1/cached`;
    // dev1 is allowed (and its connection now remembers that)
    const dev = await connect(bus, 'dev1', PW);
    for (let i = 0; i < 3; i++) {
      const got = nextMessage(adm, topic, 5_000, (p) => p.toString() === `d${i}`);
      dev.publish(topic, `d${i}`, { qos: 1 });
      await got;
    }
    // the same topic from a kiosk, and from a service user, is still refused (connection closed)
    for (const user of ['kiosk1', 'svc']) {
      const denied = bus.stats().deniedPublishes;
      const other = await connect(bus, user, PW);
      const closed = waitClose(other);
      other.publish(topic, 'spoof', { qos: 1 });
      await closed;
      expect(bus.stats().deniedPublishes).toBe(denied + 1);
    }
    // and dev1 is still allowed there, but not elsewhere
    const again = nextMessage(adm, topic, 5_000, (p) => p.toString() === 'after');
    dev.publish(topic, 'after', { qos: 1 });
    await again;
    const closed = waitClose(dev);
    dev.publish(`${P}ext/kiosk1/cached`, 'x', { qos: 1 });
    await closed;
  });

  it('delivers a burst of QoS 1 messages complete and in order (coalesced writes)', async () => {
    const adm = await connect(bus, 'adm', PW);
    expect(await subscribe(adm, `${P}ext/dev1/burst`)).toBe(1);
    const n = 2000;
    const seen: number[] = [];
    const all = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${seen.length}/${n} delivered`)), 10_000);
      adm.on('message', (t, p) => {
        if (t !== `${P}ext/dev1/burst`) return;
        seen.push(Number(p.toString()));
        if (seen.length === n) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    const dev = await connect(bus, 'dev1', PW);
    await Promise.all(Array.from({ length: n }, (_, i) => dev.publishAsync(`${P}ext/dev1/burst`, String(i), { qos: 1 })));
    await all;
    expect(seen).toEqual(Array.from({ length: n }, (_, i) => i));
  });

  it('malformed bytes close that socket only; the broker keeps serving', async () => {
    const { port } = bus.address();
    const before = bus.stats().malformed;
    // remaining length of 5 bytes [MQTT 2.2.3]
    expect((await raw(port, Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x7f]))).closed).toBe(true);
    // reserved packet type 0
    expect((await raw(port, Buffer.from([0x00, 0x00]))).closed).toBe(true);
    // PUBLISH before CONNECT [MQTT-3.1.0-1]
    expect((await raw(port, generate({ cmd: 'publish', topic: 'a', payload: 'x', qos: 0, retain: false, dup: false }))).closed).toBe(true);
    // garbage CONNECT: bad protocol name
    expect((await raw(port, Buffer.from([0x10, 0x06, 0x00, 0x04, 0x58, 0x58, 0x58, 0x58]))).closed).toBe(true);
    expect(bus.stats().malformed).toBeGreaterThanOrEqual(before + 3);
    const ok = await connect(bus, 'svc', PW);
    expect(ok.connected).toBe(true);
  });

  it('an oversized packet closes the connection before it is buffered', async () => {
    const before = bus.stats().oversized;
    const adm = await connect(bus, 'adm', PW);
    await subscribe(adm, `${P}ext/#`);
    const seen: string[] = [];
    adm.on('message', (t) => seen.push(t));
    const dev = await connect(bus, 'dev1', PW);
    const closed = waitClose(dev);
    dev.publish(`${P}ext/dev1/big`, Buffer.alloc(8192, 0x61));
    await closed;
    expect(bus.stats().oversized).toBe(before + 1);
    // a CONNECT announcing 1 MiB is refused on its header alone
    const { port } = bus.address();
    expect((await raw(port, Buffer.from([0x10, 0x80, 0x80, 0x40]))).closed).toBe(true);
    expect(bus.stats().oversized).toBe(before + 2);
    // a packet just under the limit still passes
    const dev2 = await connect(bus, 'dev1', PW);
    const small = nextMessage(adm, `${P}ext/dev1/ok`);
    dev2.publish(`${P}ext/dev1/ok`, Buffer.alloc(3000, 0x62), { qos: 1 });
    expect((await small).length).toBe(3000);
    expect(seen).not.toContain(`${P}ext/dev1/big`);
  });

  it('refuses an MQTT 5 CONNECT cleanly with CONNACK 1 (unacceptable protocol version)', async () => {
    const { port } = bus.address();
    const before = bus.stats().protocolRefused;
    const connect5 = generate(
      { cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'v5', clean: true, keepalive: 0, username: 'svc', password: Buffer.from(PW) },
      { protocolVersion: 5 },
    );
    const r = await raw(port, connect5);
    expect(r.closed).toBe(true);
    expect([...r.data]).toEqual([0x20, 0x02, 0x00, 0x01]);
    expect(bus.stats().protocolRefused).toBe(before + 1);
    // and the mqtt.js client with protocolVersion 5 gets an error, not a hang
    await expect(connect(bus, 'svc', PW, { protocolVersion: 5 })).rejects.toBeDefined();
  });

  it('closes sockets that never send CONNECT (connectTimeout)', async () => {
    const before = bus.stats().connectTimeouts;
    const r = await raw(bus.address().port, null, 4_000);
    expect(r.closed).toBe(true);
    expect(bus.stats().connectTimeouts).toBe(before + 1);
  });

  it('a user cannot take over another user\'s client id', async () => {
    const svc = await connect(bus, 'svc', PW, { clientId: 'shared-id' });
    const err = await connect(bus, 'kiosk1', PW, { clientId: 'shared-id' }).then(
      () => null,
      (e: { code: number }) => e.code,
    );
    expect(err).toBe(2);
    expect(svc.connected).toBe(true);
  });

  it('in-process publish validates its topic and counts', async () => {
    await expect(bus.publish('a/+', 'x')).rejects.toMatchObject({ code: ErrorCode.REQUEST_INVALID });
    await expect(bus.publish('$SYS/x', 'x')).rejects.toMatchObject({ code: ErrorCode.REQUEST_INVALID });
    const s = bus.stats();
    expect(s.gatewayPublishes).toBeGreaterThan(0);
    expect(s.messagesIn).toBeGreaterThan(0);
    expect(s.messagesOut).toBeGreaterThan(0);
  });
});

describe('LocalBus lockout', () => {
  it('locks an (address, username) pair out after max_auth_failures failures, even with the right password; another username carries on', async () => {
    const bus = await startBus(mqttConfig(await users(), { max_auth_failures: 3, lockout_s: 60 }));
    try {
      for (let i = 0; i < 3; i++) expect(await connectError(bus, 'svc', 'wrong')).toBe(4);
      expect(bus.stats().lockouts).toBe(1);
      // locked: refused without a password check (CONNACK 5)
      const checks = bus.stats().passwordChecks;
      expect(await connectError(bus, 'svc', PW)).toBe(5);
      expect(bus.stats().lockedOutRefusals).toBeGreaterThanOrEqual(1);
      expect(bus.stats().authFailures).toBe(3);
      expect(bus.stats().passwordChecks).toBe(checks);
      // the same address, another username: not locked
      const c = await connect(bus, 'kiosk1', PW);
      c.end(true);
    } finally {
      await bus.stop();
    }
  });
});

describe('LocalBus password checks', () => {
  it('a reconnect of a known client skips scrypt (verifierHits), a wrong password and an unknown user still pay one', async () => {
    const bus = await startBus(mqttConfig(await users()));
    try {
      (await connect(bus, 'svc', PW)).end(true);
      expect(bus.stats()).toMatchObject({ passwordChecks: 1, verifierHits: 0 });
      const again = await connect(bus, 'svc', PW);
      expect(bus.stats()).toMatchObject({ passwordChecks: 1, verifierHits: 1 });
      expect(await connectError(bus, 'svc', 'wrong')).toBe(4);
      expect(await connectError(bus, 'nobody', PW)).toBe(4);
      expect(bus.stats()).toMatchObject({ passwordChecks: 3, verifierHits: 1, authFailures: 2 });
      expect(await subscribe(again, topics.gatewayStatus(STORE))).toBe(1);
      again.end(true);
    } finally {
      await bus.stop();
    }
  });
});

describe('LocalBus limits and lifecycle', () => {
  it('refuses logins beyond max_connections with CONNACK 3, keeping reserved slots for admin and technician', async () => {
    const bus = await startBus(mqttConfig(await users(), { max_connections: 3, reserved_connections: 1 }));
    try {
      const a = await connect(bus, 'svc', PW);
      const b = await connect(bus, 'kiosk1', PW);
      expect(await connectError(bus, 'svc', PW)).toBe(3); // only the reserved slot is left
      const adm = await connect(bus, 'adm', PW);
      expect(await connectError(bus, 'tech', PW)).toBe(3); // all taken
      expect(bus.stats().connectionsRefusedGlobal).toBe(2);
      a.end(true);
      await waitFor(() => bus.stats().connections === 2, 5_000, 'the closed connection to free its slot');
      (await connect(bus, 'tech', PW)).end(true);
      b.end(true);
      adm.end(true);
    } finally {
      await bus.stop();
    }
  });

  it('refuses usernames that would inject into topics', async () => {
    const u = await users();
    // the schema refuses it too; the bus checks again for a config that did not come through it
    const bus = new LocalBus({ config: { ...mqttConfig(u), users: [...u, { ...u[0]!, username: 'evil/+' }] }, storeId: STORE, log: silentLogger() });
    await expect(bus.start()).rejects.toMatchObject({ code: ErrorCode.CONFIG_INVALID });
    await bus.stop();
  });

  it('stop() publishes offline, closes every client, the server and all handles', async () => {
    const resources = (): string[] => process.getActiveResourcesInfo().filter((r) => r === 'TCPServerWrap' || r === 'TCPSocketWrap');
    const baseline = resources().length;
    const bus = await startBus(mqttConfig(await users()));
    const { port } = bus.address();
    const c = await connect(bus, 'kiosk1', PW);
    await subscribe(c, topics.gatewayStatus(STORE));
    const offline = nextMessage(c, topics.gatewayStatus(STORE), 5_000, (p) => p.toString().includes('"offline"'));
    const closed = waitClose(c);
    const accepted = bus.stats().connectionsTotal;
    const idle = raw(port, null, 5_000); // a socket that never sent CONNECT
    await waitFor(() => bus.stats().connectionsTotal === accepted + 1, 5_000, 'the idle socket to be accepted');
    await bus.stop();
    expect(JSON.parse((await offline).toString())).toMatchObject({ state: 'offline', version: 'test' });
    await closed;
    expect((await idle).closed).toBe(true);
    expect(() => bus.address()).toThrow();
    await expect(bus.publish('x', 'y')).rejects.toMatchObject({ code: ErrorCode.STOPPED });
    await bus.stop(); // idempotent
    // nothing listens any more
    expect((await raw(port, null, 1_000)).closed).toBe(true);
    clients.splice(0).forEach((x) => x.end(true));
    await waitFor(() => resources().length <= baseline, 5_000, 'every socket and server handle released');
  });

  it('can be started again after stop (retained state republished by the caller)', async () => {
    const bus = await startBus(mqttConfig(await users()));
    await bus.stop();
    await bus.start();
    const c = await connect(bus, 'kiosk1', PW);
    const m = nextMessage(c, topics.gatewayStatus(STORE), 5_000, (p) => p.toString().includes('"online"'));
    await subscribe(c, topics.gatewayStatus(STORE));
    await m;
    await bus.stop();
  });
});

describe('MqttLengthScanner', () => {
  it('follows packets across chunk boundaries', () => {
    const s = new MqttLengthScanner(200);
    const pkt = Buffer.concat([Buffer.from([0x30, 150, 1]), Buffer.alloc(150)]); // 153 bytes
    const two = Buffer.concat([pkt, pkt]);
    for (let i = 0; i < two.length; i += 7) expect(s.feed(two.subarray(i, i + 7))).toBeNull();
    expect(s.feed(Buffer.from([0xc0, 0x00]))).toBeNull(); // PINGREQ
    expect(s.feed(Buffer.from([0x30, 0xc9]))).toBeNull(); // length continues
    expect(s.feed(Buffer.from([0x01]))).toBe('oversize'); // 201 + 3 > 200
    expect(new MqttLengthScanner(200).feed(Buffer.from([0x30, 0x80, 0x80, 0x80, 0x80]))).toBe('malformed');
  });
});

describe('LocalBus requests in progress per connection', () => {
  it(`answers ${ErrorCode.BUSY} past MAX_REQUESTS_IN_FLIGHT requests on one connection; another connection carries on`, async () => {
    const commands = new CommandRegistry();
    const slow = declareCommand({ name: 'stock.get', permission: 'read', description: 'waits for the test', payload: z.object({}).passthrough() });
    commands.declare('test', [slow]);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let started = 0;
    commands.bind(
      'test',
      handle(slow, async () => {
        started++;
        await gate;
        return { done: true };
      }),
    );
    const b = await startBus(mqttConfig(await users()), { commands });
    try {
      const c = await connect(b, 'kiosk1', PW);
      const other = await connect(b, 'svc', PW);
      type Answer = { transaction: string; ok: boolean; error?: { code: string } };
      const answers: Answer[] = [];
      const otherAnswers: Answer[] = [];
      c.on('message', (_t, p) => answers.push(JSON.parse(p.toString()) as Answer));
      other.on('message', (_t, p) => otherAnswers.push(JSON.parse(p.toString()) as Answer));
      expect(await subscribe(c, topics.response(STORE, 'kiosk1', 'stock.get'))).toBe(1);
      expect(await subscribe(other, topics.response(STORE, 'svc', 'stock.get'))).toBe(1);

      const n = MAX_REQUESTS_IN_FLIGHT + 4;
      for (let i = 0; i < n; i++) c.publish(`${P}request/stock.get`, JSON.stringify({ transaction: `t${i}` }), { qos: 1 });
      await waitFor(() => answers.length === 4, 10_000, 'the four requests over the bound answered');
      expect(answers.map((a) => [a.transaction, a.ok, a.error?.code])).toEqual([16, 17, 18, 19].map((i) => [`t${i}`, false, ErrorCode.BUSY]));
      expect(started).toBe(MAX_REQUESTS_IN_FLIGHT);

      // the bound is per connection: another client's request still starts while those wait
      other.publish(`${P}request/stock.get`, JSON.stringify({ transaction: 'o1' }), { qos: 1 });
      await waitFor(() => started === MAX_REQUESTS_IN_FLIGHT + 1, 10_000, "the other connection's request started");

      release();
      await waitFor(() => answers.length === n && otherAnswers.length === 1, 10_000, 'every request answered');
      expect(answers.filter((a) => a.ok)).toHaveLength(MAX_REQUESTS_IN_FLIGHT);
      expect(otherAnswers[0]).toMatchObject({ transaction: 'o1', ok: true });
      // once they are done, the first connection is served again
      c.publish(`${P}request/stock.get`, JSON.stringify({ transaction: 'again' }), { qos: 1 });
      await waitFor(() => answers.length === n + 1, 10_000, 'a later request answered');
      expect(answers[n]).toMatchObject({ transaction: 'again', ok: true });
      await Promise.all([c.endAsync(), other.endAsync()]);
    } finally {
      await b.stop();
    }
  });
});
