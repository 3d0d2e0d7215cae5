/**
 * The whole daemon with its LAN listeners: mqtts (`mqtt.tls`) and MQTT over secure WebSockets
 * (`mqtt.wss`), with a private CA made by openssl. Real mqtt.js clients on each listener and on the
 * plain loopback one talk to the same broker; a scale simulator behind TCP gives real stock
 * messages. Each refusal is checked together with a client that carries on.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { generate } from 'mqtt-packet';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { BusClient } from '../../src/bus/request-client';
import * as topics from '../../src/bus/topics';
import { loadDefinitions } from '../../src/devices/definitions';
import type { MtSicsDefinition } from '../../src/devices/types';
import { MtSicsSimulator } from '../../simulators/mtsics-sim';
import { LoadCellPhysics, mulberry32 } from '../../simulators/physics';
import { serveTcp, type TcpServing } from '../../simulators/serve';
import { startDaemon, tmp, waitFor, type RunningDaemon } from '../helpers/daemon';
import { makeLeafCert, makeTestCa, type TestCa } from '../helpers/mosquitto';
import { subackCode } from '../helpers/suback';
import { fastHash } from '../helpers/users';

const PW = 'e2e-password';
const STORE = 'e2e-lan';
const MAX_PACKET = 16 * 1024;
const stockTopic = topics.storePrefix(STORE) + 'shelf/deli/slot/counter/stock';
const statusTopic = topics.gatewayStatus(STORE);

/** `p`, or a failure naming `what` after `ms`. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_r, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

interface Kiosk {
  client: MqttClient;
  messages: Array<{ topic: string; payload: string; retain: boolean }>;
}

describe('shelfgate run with mqtts and wss listeners (private CA)', () => {
  const dir = tmp('sg-e2e-lan-');
  const physics = new LoadCellPhysics({ unitWeightG: 500, items: 3, noiseSigmaG: 0.05, settleMs: 80, rng: mulberry32(31) });
  const scale = new MtSicsSimulator({ definition: loadDefinitions().get('mettler-toledo-mt-sics') as MtSicsDefinition, physics });
  let tcp: TcpServing;
  let daemon: RunningDaemon;
  let caPem: Buffer;
  let certs: { kiosk: TestCa; stranger: TestCa; rogue: TestCa; rogueCa: TestCa };
  const open: MqttClient[] = [];

  beforeAll(async () => {
    const ca = makeTestCa(dir, 'store-ca');
    const server = makeLeafCert(dir, ca, 'gateway');
    caPem = readFileSync(ca.certFile);
    // another CA that issues a certificate with the very CN a user is mapped to
    const rogueDir = join(dir, 'rogue');
    mkdirSync(rogueDir);
    const rogueCa = makeTestCa(rogueDir, 'rogue-ca');
    certs = {
      kiosk: makeLeafCert(dir, ca, 'kiosk-cert', { client: true }),
      stranger: makeLeafCert(dir, ca, 'stranger', { client: true }),
      rogue: makeLeafCert(rogueDir, rogueCa, 'kiosk-cert', { client: true }),
      rogueCa,
    };
    tcp = await serveTcp(scale, '127.0.0.1', 0);
    const hash = await fastHash(PW);
    const files = { cert_file: server.certFile, key_file: server.keyFile, client_ca_file: ca.certFile };
    daemon = await startDaemon(
      {
        store_id: STORE,
        data_dir: join(dir, 'state'),
        log: { level: 'info' },
        mqtt: {
          host: '127.0.0.1',
          port: 0,
          tls: { host: '127.0.0.1', port: 0, ...files },
          wss: { host: '127.0.0.1', port: 0, path: '/mqtt', ...files },
          max_packet_bytes: MAX_PACKET,
          users: [
            { username: 'kiosk', role: 'kiosk', password_hash: hash },
            // logs in with its client certificate only
            { username: 'kiosk2', role: 'kiosk', cert_cn: 'kiosk-cert' },
            { username: 'tech', role: 'technician', password_hash: hash },
          ],
        },
        storage: { flush_interval_ms: 10 },
        stability: { window: 3, max_spread_g: 3 },
        buses: [{ id: 'scale', path: tcp.url, model: 'mettler-toledo-mt-sics', poll_interval_ms: 50, reconnect: { initial_ms: 100, max_ms: 1000 } }],
        shelves: [{ id: 'deli', slots: [{ id: 'counter', sensor: { bus: 'scale' }, unit_weight_g: 500 }] }],
      },
      dir,
    );
  });

  afterAll(async () => {
    await daemon?.stop();
    await tcp?.close();
  });

  afterEach(async () => {
    await Promise.all(open.splice(0).map((c) => new Promise<void>((r) => c.end(true, {}, () => r()))));
  });

  const mqttsUrl = (): string => `mqtts://127.0.0.1:${daemon.mqttsPort}`;
  const wssUrl = (): string => `wss://127.0.0.1:${daemon.wssPort}/mqtt`;

  /** Connects with mqtt.js (3.1.1, no reconnect); rejects with the CONNACK code or the TLS/socket error. */
  function connect(url: string, opts: IClientOptions = {}): Promise<Kiosk> {
    return new Promise((resolve, reject) => {
      const client = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 10_000, ...opts });
      open.push(client);
      const messages: Kiosk['messages'] = [];
      client.on('message', (topic, payload, packet) => messages.push({ topic, payload: payload.toString(), retain: packet.retain }));
      client.once('connect', () => resolve({ client, messages }));
      client.once('error', reject);
      client.once('close', () => reject(new Error('closed before CONNACK')));
    });
  }

  async function refusal(url: string, opts: IClientOptions = {}): Promise<{ code?: string | number; message: string }> {
    try {
      await connect(url, opts);
    } catch (e) {
      return e as { code?: string | number; message: string };
    }
    throw new Error(`${url} accepted the connection`);
  }


  /** A WebSocket client on the wss listener offering "mqtt", open, recording the messages it gets. */
  async function rawWs(): Promise<WebSocket & { frames: Buffer[]; closed: Promise<number> }> {
    const ws = Object.assign(new WebSocket(wssUrl(), ['mqtt'], { ca: caPem }), { frames: [] as Buffer[] });
    ws.on('message', (d: Buffer) => ws.frames.push(d));
    ws.on('error', () => undefined);
    const closed = new Promise<number>((r) => ws.once('close', (code: number) => r(code)));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('close', () => reject(new Error('closed before open')));
    });
    return Object.assign(ws, { closed });
  }

  const count = (k: Kiosk): number | null | undefined => {
    const m = k.messages.filter((x) => x.topic === stockTopic).at(-1);
    return m ? (JSON.parse(m.payload) as { count: number | null }).count : undefined;
  };

  /** Sends stock.get as `username` on k's connection and waits for the answer with that transaction. */
  async function ask(k: Kiosk, username: string, transaction: string): Promise<void> {
    const answer = topics.response(STORE, username, 'stock.get');
    expect(await subackCode(k.client, answer)).toBe(1); // not 0x80: the connection is this user's
    await k.client.publishAsync(topics.request(STORE, 'stock.get'), JSON.stringify({ transaction }), { qos: 1 });
    await waitFor(() => k.messages.some((m) => m.topic === answer && (JSON.parse(m.payload) as { transaction?: string }).transaction === transaction), 10_000, `the answer to ${transaction}`);
  }

  it('reports every listener in the ready line; kiosks on mqtts and wss get the retained status, stock, their answers, and what a technician on plain loopback changes', async () => {
    const ready = daemon.logs.find((l) => l.msg === 'gateway ready')!;
    expect(ready.mqtt).toEqual({ host: '127.0.0.1', port: daemon.mqttPort });
    expect(ready.listeners).toEqual([
      { kind: 'mqtt', host: '127.0.0.1', port: daemon.mqttPort },
      { kind: 'mqtts', host: '127.0.0.1', port: daemon.mqttsPort },
      { kind: 'wss', host: '127.0.0.1', port: daemon.wssPort },
    ]);
    const overTls = await connect(mqttsUrl(), { username: 'kiosk', password: PW, ca: caPem });
    const overWss = await connect(wssUrl(), { username: 'kiosk', password: PW, ca: caPem });
    for (const k of [overTls, overWss]) {
      await k.client.subscribeAsync([statusTopic, stockTopic], { qos: 1 });
      await waitFor(() => k.messages.some((m) => m.topic === statusTopic && m.retain && m.payload.includes('"online"')), 10_000, 'the retained gateway status');
      await waitFor(() => count(k) === 3, 15_000, 'the stock of the deli counter');
      await ask(k, 'kiosk', `t-${k === overTls ? 'tls' : 'wss'}`);
    }
    // a technician on the plain loopback listener halves the unit weight: both kiosks see twice the count
    const tech = await BusClient.connect({ url: `mqtt://127.0.0.1:${daemon.mqttPort}`, username: 'tech', password: PW, store: STORE });
    try {
      expect(await tech.request('calibrate.set_unit_weight', { shelf: 'deli', slot: 'counter', grams: 250 })).toMatchObject({ count: 6 });
      await waitFor(() => count(overTls) === 6 && count(overWss) === 6, 10_000, 'the new count on mqtts and wss');
      expect(await tech.request('calibrate.set_unit_weight', { shelf: 'deli', slot: 'counter', grams: 500 })).toMatchObject({ count: 3 });
    } finally {
      await tech.close();
    }
    // and the scale: a pick reaches both
    physics.pick(1);
    await waitFor(() => count(overTls) === 2 && count(overWss) === 2, 15_000, 'the count after a pick on mqtts and wss');
    physics.put(1);
    await waitFor(() => count(overTls) === 3 && count(overWss) === 3, 15_000, 'the count after the put');
  });

  it('a client that does not trust the store CA fails on mqtts and on wss; connected kiosks carry on', async () => {
    const kiosk = await connect(wssUrl(), { username: 'kiosk', password: PW, ca: caPem });
    const tlsErr = await refusal(mqttsUrl(), { username: 'kiosk', password: PW });
    // the chain the gateway sends ends in the store CA, which this client does not have
    expect(tlsErr.code).toBe('SELF_SIGNED_CERT_IN_CHAIN');
    const wssErr = await refusal(wssUrl(), { username: 'kiosk', password: PW });
    expect(wssErr.code).toBe('SELF_SIGNED_CERT_IN_CHAIN');
    // the gateway saw the handshakes fail
    await daemon.waitLog((l) => l.msg === 'TLS handshake failed: connection closed' && l.listener === 'mqtts', 10_000);
    await daemon.waitLog((l) => l.msg === 'TLS handshake failed: connection closed' && l.listener === 'wss', 10_000);
    // the kiosk already connected still works, and a trusting client still connects
    await ask(kiosk, 'kiosk', 'after-untrusted');
    const again = await connect(mqttsUrl(), { username: 'kiosk', password: PW, ca: caPem });
    await ask(again, 'kiosk', 'after-untrusted-new');
  });

  it('a client certificate whose CN is a user\'s cert_cn logs in as that user without a password, on mqtts and on wss', async () => {
    const cert = { ca: caPem, cert: readFileSync(certs.kiosk.certFile), key: readFileSync(certs.kiosk.keyFile) };
    for (const url of [mqttsUrl(), wssUrl()]) {
      const byCert = await connect(url, cert);
      // kiosk2 may subscribe only to its own responses: granted, and the answer arrives there
      await ask(byCert, 'kiosk2', `cert-${url.slice(0, 4)}`);
      expect(await subackCode(byCert.client, topics.response(STORE, 'kiosk', 'stock.get'))).toBe(0x80); // it is not the user `kiosk`
      // naming the same user is fine; naming another one is refused, even with that one's password
      const named = await connect(url, { ...cert, username: 'kiosk2' });
      await ask(named, 'kiosk2', `cert-named-${url.slice(0, 4)}`);
      expect((await refusal(url, { ...cert, username: 'kiosk', password: PW })).code).toBe(4);
      // the certificate login still works after that refusal (no lockout for it)
      await ask(byCert, 'kiosk2', `cert-after-${url.slice(0, 4)}`);
    }
    await daemon.waitLog((l) => l.msg === 'username differs from the client certificate user: refused' && l.cert_user === 'kiosk2', 10_000);
  });

  it('a certificate whose CN names no user, or from another CA, logs nobody in; a password on the same listener still works', async () => {
    const stranger = { ca: caPem, cert: readFileSync(certs.stranger.certFile), key: readFileSync(certs.stranger.keyFile) };
    const rogue = { ca: caPem, cert: readFileSync(certs.rogue.certFile), key: readFileSync(certs.rogue.keyFile) };
    const bystander = await connect(mqttsUrl(), { username: 'kiosk', password: PW, ca: caPem });
    for (const url of [mqttsUrl(), wssUrl()]) {
      // no username and no usable certificate: anonymous, CONNACK 5
      expect((await refusal(url, stranger)).code).toBe(5);
      expect((await refusal(url, rogue)).code).toBe(5);
      // the rogue certificate does not make the password of kiosk2's name unnecessary (kiosk2 has none)
      expect((await refusal(url, { ...rogue, username: 'kiosk2', password: 'x' })).code).toBe(4);
      // with such a certificate, the password login works as usual
      const withPw = await connect(url, { ...stranger, username: 'kiosk', password: PW });
      await ask(withPw, 'kiosk', `pw-beside-cert-${url.slice(0, 4)}`);
    }
    await daemon.waitLog((l) => l.msg === 'client certificate CN matches no user: password login only' && l.cert_cn === 'stranger', 10_000);
    await ask(bystander, 'kiosk', 'bystander');
  });

  it('an oversized packet over wss or mqtts closes that connection only; split across WebSocket messages too', async () => {
    const victim = await connect(wssUrl(), { username: 'kiosk', password: PW, ca: caPem });
    const other = await connect(wssUrl(), { username: 'kiosk', password: PW, ca: caPem });
    const plain = await connect(`mqtt://127.0.0.1:${daemon.mqttPort}`, { username: 'kiosk', password: PW });
    const closed = new Promise<void>((r) => victim.client.once('close', () => r()));
    victim.client.publish(topics.request(STORE, 'stock.get'), Buffer.alloc(MAX_PACKET * 2, 0x61), { qos: 0 });
    await within(closed, 10_000, 'the oversized publisher to be disconnected');
    await daemon.waitLog((l) => l.msg === 'MQTT packet larger than max_packet_bytes: connection closed', 10_000);
    await ask(other, 'kiosk', 'after-oversize');
    await ask(plain, 'kiosk', 'after-oversize-plain');
    // the same guard on a TLS socket
    const tlsVictim = await connect(mqttsUrl(), { username: 'kiosk', password: PW, ca: caPem });
    const tlsClosed = new Promise<void>((r) => tlsVictim.client.once('close', () => r()));
    tlsVictim.client.publish(topics.request(STORE, 'stock.get'), Buffer.alloc(MAX_PACKET * 2, 0x61), { qos: 0 });
    await within(tlsClosed, 10_000, 'the oversized mqtts publisher to be disconnected');
    await ask(other, 'kiosk', 'after-oversize-tls');

    // a raw WebSocket client: CONNECT, then a PUBLISH whose header claims 1 MB, sent one byte per WebSocket message
    const ws = await rawWs();
    expect(ws.protocol).toBe('mqtt');
    ws.send(generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'raw-ws', keepalive: 30, username: 'kiosk', password: Buffer.from(PW) }));
    await waitFor(() => ws.frames.length > 0, 10_000, 'the CONNACK');
    expect([...ws.frames[0]!.subarray(0, 4)]).toEqual([0x20, 0x02, 0x00, 0x00]);
    for (const b of [0x30, 0x80, 0x80, 0x40]) ws.send(Buffer.from([b])); // remaining length 1,048,576
    await within(ws.closed, 10_000, 'the split oversized packet to close the WebSocket');
    await ask(other, 'kiosk', 'after-split-oversize');
  });

  it('the wss listener upgrades only its path, only for the mqtt subprotocol, and takes binary frames only', async () => {
    const base = `https://127.0.0.1:${daemon.wssPort}`;
    const status = (path: string): Promise<number> =>
      new Promise((resolve, reject) => {
        const req = httpsRequest(`${base}${path}`, { ca: caPem }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end();
      });
    expect(await status('/')).toBe(404);
    expect(await status('/mqtt')).toBe(426);
    const upgrade = (path: string, protocols: string[]): Promise<number | 'open'> =>
      new Promise((resolve) => {
        const ws = new WebSocket(`wss://127.0.0.1:${daemon.wssPort}${path}`, protocols, { ca: caPem });
        ws.once('open', () => {
          ws.terminate();
          resolve('open');
        });
        ws.once('unexpected-response', (_req, res) => {
          resolve(res.statusCode ?? 0);
          ws.terminate();
        });
        ws.on('error', () => undefined);
      });
    expect(await upgrade('/other', ['mqtt'])).toBe(404);
    expect(await upgrade('/mqtt', [])).toBe(400);
    expect(await upgrade('/mqtt', ['chat'])).toBe(400);
    expect(await upgrade('/mqtt?token=1', ['mqttv3.1'])).toBe('open');
    // a text frame closes the connection [MQTT-6.0.0-1], even one holding a valid packet: here a
    // request the kiosk may send, which would be answered if it were taken; a kiosk on wss carries on
    const kiosk = await connect(wssUrl(), { username: 'kiosk', password: PW, ca: caPem });
    const ws = await rawWs();
    ws.send(generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'raw-text', keepalive: 30, username: 'kiosk', password: Buffer.from(PW) }));
    await waitFor(() => ws.frames.length > 0, 10_000, 'the CONNACK');
    expect([...ws.frames[0]!.subarray(0, 4)]).toEqual([0x20, 0x02, 0x00, 0x00]);
    const answer = topics.response(STORE, 'kiosk', 'stock.get');
    ws.send(generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: answer, qos: 0 }] }));
    await waitFor(() => ws.frames.length > 1, 10_000, 'the SUBACK');
    const request = generate({ cmd: 'publish', topic: topics.request(STORE, 'stock.get'), payload: JSON.stringify({ transaction: 'text' }), qos: 0, retain: false, dup: false });
    expect(request.every((b) => b < 0x80)).toBe(true); // ASCII: the same bytes as a text frame
    ws.send(request.toString('latin1'));
    await within(ws.closed, 10_000, 'the text frame to close the WebSocket');
    expect(ws.frames).toHaveLength(2); // no answer came
    await ask(kiosk, 'kiosk', 'after-text-frame');
  });
});
