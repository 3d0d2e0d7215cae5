/**
 * LocalBus's mqtts and wss listeners in process (listeners.ts): start and stop leave no handle
 * behind, a bad certificate file fails start() naming its key, a port taken fails start() without
 * leaving the other listeners open. What a client sees end to end is in test/e2e/bus-listeners.test.ts.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { connect as tcpConnect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { request as httpsRequest } from 'node:https';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/bus/auth';
import { LocalBus } from '../../src/bus/broker';
import * as topics from '../../src/bus/topics';
import { coreConfigShape, type MqttConfig } from '../../src/config/schema';
import { ErrorCode } from '../../src/errors';
import { silentLogger } from '../../src/log';
import { tmp } from '../helpers/daemon';
import { makeLeafCert, makeTestCa, type TestCa } from '../helpers/mosquitto';
import { waitFor } from '../helpers/wait';

const STORE = 's1';
const PW = 'pw-123';
const tcpHandles = (): number => process.getActiveResourcesInfo().filter((r) => r === 'TCPServerWrap' || r === 'TCPSocketWrap').length;

let dir: string;
let ca: TestCa;
let server: TestCa;
let clientCert: TestCa;
let users: MqttConfig['users'];

beforeAll(async () => {
  dir = tmp('sg-listen-');
  ca = makeTestCa(dir, 'ca');
  server = makeLeafCert(dir, ca, 'server');
  clientCert = makeLeafCert(dir, ca, 'kiosk-cn', { client: true });
  users = [
    { username: 'kiosk1', password_hash: await hashPassword(PW, { N: 1024 }), role: 'kiosk' },
    { username: 'kiosk2', role: 'kiosk', cert_cn: 'kiosk-cn' },
  ];
});

function config(over: Record<string, unknown> = {}): MqttConfig {
  const files = { cert_file: server.certFile, key_file: server.keyFile, client_ca_file: ca.certFile };
  return coreConfigShape.mqtt.parse({
    host: '127.0.0.1',
    port: 0,
    users,
    tls: { host: '127.0.0.1', port: 0, ...files },
    wss: { host: '127.0.0.1', port: 0, path: '/mqtt', ...files },
    ...over,
  });
}

const buses: LocalBus[] = [];
const clients: MqttClient[] = [];
const sockets: Socket[] = [];
const servers: Server[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => new Promise<void>((r) => c.end(true, {}, () => r()))));
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(buses.splice(0).map((b) => b.stop()));
  await Promise.all(servers.splice(0).map((s) => new Promise<void>((r) => s.close(() => r()))));
});

function bus(cfg: MqttConfig): LocalBus {
  const b = new LocalBus({ config: cfg, storeId: STORE, log: silentLogger(), version: 'test', connectTimeoutMs: 5_000 });
  buses.push(b);
  return b;
}

function portOf(b: LocalBus, kind: 'mqtt' | 'mqtts' | 'wss'): number {
  const l = b.listeners().find((x) => x.kind === kind);
  if (!l) throw new Error(`no ${kind} listener`);
  return l.port;
}

function connect(url: string, opts: IClientOptions = {}): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(url, { protocolVersion: 4, username: 'kiosk1', password: PW, reconnectPeriod: 0, connectTimeout: 10_000, ca: readFileSync(ca.certFile), ...opts });
    clients.push(c);
    c.once('connect', () => resolve(c));
    c.once('error', reject);
    c.once('close', () => reject(new Error('closed before CONNACK')));
  });
}

describe('LocalBus mqtts and wss listeners', () => {
  it('listeners() reports the three; stop() closes them and every socket, also one in the TLS handshake and one never upgraded', async () => {
    const baseline = tcpHandles();
    const b = bus(config());
    await b.start();
    const kinds = b.listeners().map((l) => l.kind);
    expect(kinds).toEqual(['mqtt', 'mqtts', 'wss']);
    expect(b.listeners()[0]).toEqual({ kind: 'mqtt', ...b.address() });
    const mqttsPort = portOf(b, 'mqtts');
    const wssPort = portOf(b, 'wss');
    const overTls = await connect(`mqtts://127.0.0.1:${mqttsPort}`);
    const overWss = await connect(`wss://127.0.0.1:${wssPort}/mqtt`);
    const offline = [overTls, overWss].map(
      (c) =>
        new Promise<string>((resolve) => {
          c.on('message', (_t, p) => {
            if (p.toString().includes('"offline"')) resolve(p.toString());
          });
        }),
    );
    await overTls.subscribeAsync(topics.gatewayStatus(STORE), { qos: 1 });
    await overWss.subscribeAsync(topics.gatewayStatus(STORE), { qos: 1 });
    // a TCP socket that never starts TLS, and a TLS socket that never sends its HTTP upgrade
    const accepted = b.stats().connectionsTotal;
    const bare = tcpConnect({ host: '127.0.0.1', port: mqttsPort });
    bare.on('error', () => {});
    sockets.push(bare);
    const noUpgrade = tlsConnect({ host: '127.0.0.1', port: wssPort, ca: readFileSync(ca.certFile) });
    noUpgrade.on('error', () => {});
    sockets.push(noUpgrade);
    await new Promise<void>((r) => noUpgrade.once('secureConnect', () => r()));
    await new Promise<void>((r) => (bare.connecting ? bare.once('connect', () => r()) : r()));
    const bareClosed = new Promise<void>((r) => bare.once('close', () => r()));
    const noUpgradeClosed = new Promise<void>((r) => noUpgrade.once('close', () => r()));
    expect(b.stats().connectionsTotal).toBe(accepted); // neither reached the broker

    await b.stop();
    for (const o of await Promise.all(offline)) expect(JSON.parse(o)).toMatchObject({ state: 'offline' });
    await Promise.all([bareClosed, noUpgradeClosed]);
    expect(() => b.listeners()).toThrow();
    clients.splice(0).forEach((c) => c.end(true));
    sockets.splice(0).forEach((s) => s.destroy());
    await waitFor(() => tcpHandles() <= baseline, 5_000, 'every socket and server handle released');
  });

  it('counts each refusal of the secure listeners in stats(); a client on them carries on', async () => {
    const b = bus(config({ max_packet_bytes: 4096 }));
    await b.start();
    const mqtts = `mqtts://127.0.0.1:${portOf(b, 'mqtts')}`;
    const wss = `wss://127.0.0.1:${portOf(b, 'wss')}/mqtt`;
    const steady = await connect(wss);
    await steady.subscribeAsync(topics.gatewayStatus(STORE), { qos: 1 });
    const before = b.stats();
    // a client that does not trust the CA
    await expect(connect(mqtts, { ca: undefined })).rejects.toMatchObject({ code: 'SELF_SIGNED_CERT_IN_CHAIN' });
    await waitFor(() => b.stats().tlsHandshakeFailures === before.tlsHandshakeFailures + 1, 5_000, 'the failed handshake counted');
    // an HTTP request to another path
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpsRequest(`https://127.0.0.1:${portOf(b, 'wss')}/index.html`, { ca: readFileSync(ca.certFile) }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(404);
    expect(b.stats().wsRefused).toBe(before.wsRefused + 1);
    // a client certificate of kiosk2 that claims to be kiosk1
    const cert = { cert: readFileSync(clientCert.certFile), key: readFileSync(clientCert.keyFile) };
    await expect(connect(mqtts, { ...cert, username: 'kiosk1' })).rejects.toMatchObject({ code: 4 });
    expect(b.stats().certLoginsRefused).toBe(before.certLoginsRefused + 1);
    expect(b.stats().authFailures).toBe(before.authFailures); // no password was checked
    // an oversized packet over wss
    const victim = await connect(wss);
    const closed = new Promise<void>((r) => victim.once('close', () => r()));
    victim.publish(topics.request(STORE, 'stock.get'), Buffer.alloc(8192), { qos: 0 });
    await closed;
    expect(b.stats().oversized).toBe(before.oversized + 1);
    // the steady client still gets what the gateway publishes
    const next = new Promise<void>((r) => steady.on('message', (_t, p) => p.toString().includes('"stopping"') && r()));
    await b.publishStatus('stopping');
    await next;
  });

  it('a missing, unreadable or wrong certificate file fails start() with the key in the error; nothing stays open', async () => {
    const baseline = tcpHandles();
    const missing = join(dir, 'nope.pem');
    const notPem = join(dir, 'not-a-cert.pem');
    writeFileSync(notPem, 'hello\n');
    const cases: Array<[Record<string, unknown>, string, string]> = [
      [{ tls: { host: '127.0.0.1', port: 0, cert_file: missing, key_file: server.keyFile } }, 'mqtt.tls.cert_file', ErrorCode.CONFIG_UNREADABLE],
      [{ wss: { host: '127.0.0.1', port: 0, cert_file: server.certFile, key_file: missing } }, 'mqtt.wss.key_file', ErrorCode.CONFIG_UNREADABLE],
      [{ tls: { host: '127.0.0.1', port: 0, cert_file: server.certFile, key_file: server.keyFile, client_ca_file: missing } }, 'mqtt.tls.client_ca_file', ErrorCode.CONFIG_UNREADABLE],
      [{ wss: { host: '127.0.0.1', port: 0, cert_file: notPem, key_file: server.keyFile } }, 'mqtt.wss.cert_file', ErrorCode.CONFIG_INVALID],
      // the CA's key does not belong to the server certificate
      [{ tls: { host: '127.0.0.1', port: 0, cert_file: server.certFile, key_file: ca.keyFile } }, 'mqtt.tls.cert_file', ErrorCode.CONFIG_INVALID],
    ];
    for (const [over, key, code] of cases) {
      const b = bus(config({ tls: undefined, wss: undefined, ...over }));
      const err = await b.start().then(
        () => null,
        (e: unknown) => e as { code: string; message: string },
      );
      expect(err, key).not.toBeNull();
      expect(err!.code).toBe(code);
      expect(err!.message.startsWith(key)).toBe(true);
      expect(() => b.address()).toThrow();
    }
    await waitFor(() => tcpHandles() <= baseline, 5_000, 'nothing left listening');
    // the same bus object starts once the files are right
    const ok = bus(config());
    await ok.start();
    expect(ok.listeners()).toHaveLength(3);
  });

  it('a taken wss port fails start() and closes the plain and mqtts listeners it had opened', async () => {
    const taken = createServer();
    servers.push(taken);
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
    const port = (taken.address() as { port: number }).port;
    const baseline = tcpHandles();
    const cfg = config();
    const b = bus(coreConfigShape.mqtt.parse({ ...cfg, wss: { ...cfg.wss, port } }));
    await expect(b.start()).rejects.toMatchObject({ code: 'EADDRINUSE' });
    expect(() => b.address()).toThrow();
    await waitFor(() => tcpHandles() <= baseline, 5_000, 'the plain and mqtts listeners closed');
    await b.start().catch(() => undefined); // still taken: fails the same way, leaves nothing either
    await waitFor(() => tcpHandles() <= baseline, 5_000, 'nothing left after the second try');
  });
});
