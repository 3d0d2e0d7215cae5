/**
 * The whole daemon's bus admission: connection caps (per address, per user, sockets still logging
 * in, global with slots reserved for admin and technician), the CONNECT timeout, lockout per
 * (address, username) with growing back-off, concurrent logins, and the cached verifier.
 *
 * Every test client runs on this machine. The daemon sees a client as the address it connects from:
 * 127.0.0.1 by default, or another 127/8 address given as the socket's localAddress (Linux routes
 * all of 127/8 to lo), which is how a test shows that "another address carries on".
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect as tcpConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { MqttClient } from 'mqtt';
import { hashPassword } from '../../src/bus/auth';
import { loadDefinitions } from '../../src/devices/definitions';
import type { MtSicsDefinition } from '../../src/devices/types';
import { MtSicsSimulator } from '../../simulators/mtsics-sim';
import { LoadCellPhysics, mulberry32 } from '../../simulators/physics';
import { serveTcp, type TcpServing } from '../../simulators/serve';
import { startDaemon, tmp, useCleanups, waitFor, type RunningDaemon } from '../helpers/daemon';

const PW = 'e2e-admission-pw';
const STORE = 'e2e-adm';
const statusTopic = `shelfgate/v1/${STORE}/gateway/status`;

const cleanups = useCleanups();

describe('bus admission (whole daemon)', () => {
  let tcp: TcpServing;
  let fastHash: string;
  let fullHash: string;

  beforeAll(async () => {
    const scale = new MtSicsSimulator({
      definition: loadDefinitions().get('mettler-toledo-mt-sics') as MtSicsDefinition,
      physics: new LoadCellPhysics({ unitWeightG: 500, items: 3, noiseSigmaG: 0.05, settleMs: 80, rng: mulberry32(5) }),
    });
    tcp = await serveTcp(scale, '127.0.0.1', 0);
    // N=1024 keeps most tests fast; fullHash has the production cost (N=16384) where the cost matters
    [fastHash, fullHash] = await Promise.all([hashPassword(PW, { N: 1024 }), hashPassword(PW)]);
  });

  afterAll(async () => {
    await tcp?.close();
  });

  const users = () => [
    ...['k1', 'k2', 'k3', 'k4', 'k5'].map((username) => ({ username, role: 'kiosk', password_hash: fastHash })),
    { username: 'slow', role: 'kiosk', password_hash: fullHash },
    { username: 'tech', role: 'technician', password_hash: fastHash },
    { username: 'adm', role: 'admin', password_hash: fastHash },
  ];

  async function daemon(mqtt: Record<string, unknown>, level = 'info'): Promise<RunningDaemon> {
    const dir = tmp('sg-e2e-adm-');
    const d = await startDaemon(
      {
        store_id: STORE,
        data_dir: join(dir, 'state'),
        log: { level },
        mqtt: { port: 0, users: users(), ...mqtt },
        storage: { flush_interval_ms: 10 },
        buses: [{ id: 'scale', path: tcp.url, model: 'mettler-toledo-mt-sics', poll_interval_ms: 200, reconnect: { initial_ms: 100, max_ms: 1000 } }],
        shelves: [{ id: 'deli', slots: [{ id: 'counter', sensor: { bus: 'scale' }, unit_weight_g: 500 }] }],
      },
      dir,
    );
    cleanups.push(async () => {
      await d.stop();
    });
    return d;
  }

  /**
   * An MQTT 3.1.1 client from `localAddress`. Resolves once connected; rejects with the CONNACK
   * return code (number), or 'CLOSED' if the socket closed before any CONNACK.
   */
  function mq(d: RunningDaemon, username: string, password = PW, opts: { from?: string; clientId?: string } = {}): Promise<MqttClient> {
    const c = new MqttClient(() => tcpConnect({ host: '127.0.0.1', port: d.mqttPort, localAddress: opts.from ?? '127.0.0.1' }), {
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 15_000,
      username,
      password,
      clientId: opts.clientId ?? `${username}-${Math.random().toString(36).slice(2)}`,
    });
    cleanups.push(() => {
      c.end(true);
    });
    return new Promise((resolve, reject) => {
      const onError = (e: Error & { code?: number | string }): void => {
        // a socket destroyed before it read our CONNECT may reset instead of closing
        done(typeof e.code === 'number' ? e.code : e.code === 'ECONNRESET' || e.code === 'EPIPE' ? 'CLOSED' : e);
      };
      const onClose = (): void => done('CLOSED');
      const onConnect = (): void => done();
      function done(err?: unknown): void {
        c.removeListener('connect', onConnect);
        c.removeListener('error', onError);
        c.removeListener('close', onClose);
        if (err === undefined) resolve(c);
        else reject(err);
      }
      c.once('connect', onConnect);
      c.once('error', onError);
      c.once('close', onClose);
    });
  }

  const refusal = (p: Promise<MqttClient>): Promise<unknown> =>
    p.then(
      () => {
        throw new Error('connection was accepted');
      },
      (code: unknown) => code,
    );

  /** A socket that never sends CONNECT. `closed` turns true when the daemon closes it. */
  function halfOpen(d: RunningDaemon, from = '127.0.0.1'): Promise<{ socket: Socket; closed: () => boolean }> {
    return new Promise((resolve, reject) => {
      const socket = tcpConnect({ host: '127.0.0.1', port: d.mqttPort, localAddress: from });
      let closed = false;
      socket.on('close', () => (closed = true));
      socket.on('error', () => {});
      socket.once('connect', () => resolve({ socket, closed: () => closed }));
      socket.once('error', reject);
      cleanups.push(() => {
        socket.destroy();
      });
    });
  }

  /** The client still works: a SUBSCRIBE brings back the retained gateway status. */
  async function works(c: MqttClient): Promise<void> {
    const got = new Promise<void>((resolve) => {
      const on = (topic: string): void => {
        if (topic !== statusTopic) return;
        c.removeListener('message', on);
        resolve();
      };
      c.on('message', on);
    });
    await c.unsubscribeAsync(statusTopic);
    await c.subscribeAsync(statusTopic, { qos: 1 });
    await Promise.race([got, new Promise((_, rej) => setTimeout(() => rej(new Error('no retained status within 10 s')), 10_000))]);
  }

  const logged = (d: RunningDaemon, msg: string, extra: (l: Record<string, unknown>) => boolean = () => true) =>
    d.waitLog((l) => typeof l.msg === 'string' && l.msg.includes(msg) && extra(l), 15_000);

  it('per address: sockets beyond max_connections_per_address from one address are refused at accept; another address carries on', async () => {
    const d = await daemon({ max_connections_per_address: 4, max_unauthenticated: 64 });
    const first = [];
    for (const u of ['k1', 'k2', 'k3', 'k4']) first.push(await mq(d, u));
    expect(await refusal(mq(d, 'k5'))).toBe('CLOSED');
    expect(await refusal(mq(d, 'adm'))).toBe('CLOSED'); // a per-address cap: whoever it is
    await logged(d, 'from this address: connection refused', (l) => l.address === '127.0.0.1');
    // another address carries on, and so do the connections already open
    const other = await mq(d, 'k5', PW, { from: '127.0.0.2' });
    await works(other);
    await works(first[0]!);
    // a closed connection frees its address's slot
    first[0]!.end(true);
    const again = await waitFor(() => mq(d, 'k1').catch(() => null), 15_000, 'a slot of 127.0.0.1 to be free again');
    await works(again);
  });

  it('unauthenticated: 200 half-open sockets from one address fill only its share; the admin and a kiosk still log in', async () => {
    // one address may hold a quarter of max_unauthenticated (2 of 8) sockets that have not logged in
    const d = await daemon({ max_unauthenticated: 8, max_connections_per_address: 250, connect_timeout_s: 120 });
    const flood: Array<{ socket: Socket; closed: () => boolean }> = [];
    for (let i = 0; i < 200; i++) flood.push(await halfOpen(d));
    await waitFor(() => flood.filter((s) => s.closed()).length === 198, 15_000, '198 of the 200 half-open sockets to be refused');
    await logged(d, 'from this address: connection refused', (l) => l.address === '127.0.0.1');
    const adm = await mq(d, 'adm', PW, { from: '127.0.0.2' });
    const kiosk = await mq(d, 'k1', PW, { from: '127.0.0.3' });
    await works(adm);
    await works(kiosk);
    // the two accepted half-open sockets are still open (the logins above went through after them)
    expect(flood.filter((s) => s.closed())).toHaveLength(198);

    // the global unauthenticated cap: 2 + 2 + 2 + 2 half-open sockets from four addresses fill it
    for (const from of ['127.0.0.4', '127.0.0.5', '127.0.0.6']) for (let i = 0; i < 2; i++) await halfOpen(d, from);
    const refused = await halfOpen(d, '127.0.0.7');
    await waitFor(() => refused.closed(), 15_000, 'a ninth half-open socket to be refused');
    await logged(d, 'max_unauthenticated reached');
    // clients logged in before carry on
    await works(adm);
    await works(kiosk);
  });

  it('per user: one kiosk user beyond max_connections_per_user gets CONNACK 3; other kiosks and the admin still connect', async () => {
    const d = await daemon({ max_connections_per_user: 3 });
    const k1 = [await mq(d, 'k1'), await mq(d, 'k1'), await mq(d, 'k1')];
    expect(await refusal(mq(d, 'k1'))).toBe(3);
    expect(await refusal(mq(d, 'k1', PW, { from: '127.0.0.2' }))).toBe(3); // per user, whatever the address
    await logged(d, 'max_connections_per_user reached', (l) => l.username === 'k1');
    await works(await mq(d, 'k2'));
    await works(await mq(d, 'adm'));
    await works(k1[0]!);
    // a reconnect with the same client id takes over its old connection instead of being refused by it
    const id = 'k1-fixed';
    k1[2]!.end(true);
    const fixed = await waitFor(() => mq(d, 'k1', PW, { clientId: id }).catch(() => null), 15_000, 'a k1 slot');
    const takeover = await mq(d, 'k1', PW, { clientId: id });
    await works(takeover);
    await waitFor(() => !fixed.connected, 15_000, 'the old connection of the client id to be closed');
  });

  it('global: at max_connections minus reserved_connections only admin and technician connect, up to max_connections', async () => {
    const d = await daemon({ max_connections: 5, reserved_connections: 2 });
    const kiosks = [await mq(d, 'k1'), await mq(d, 'k2'), await mq(d, 'k3')];
    expect(await refusal(mq(d, 'k4'))).toBe(3);
    await logged(d, 'only the connections reserved for admin and technician are left');
    const tech = await mq(d, 'tech');
    const adm = await mq(d, 'adm');
    expect(await refusal(mq(d, 'adm'))).toBe(3);
    await logged(d, 'max_connections reached: connection refused');
    for (const c of [...kiosks, tech, adm]) await works(c);
  });

  it('CONNECT timeout (connect_timeout_s, from accept): a silent socket and a half-sent CONNECT are closed; a logged-in client carries on', async () => {
    const d = await daemon({ connect_timeout_s: 1 });
    const adm = await mq(d, 'adm');
    const silent = await halfOpen(d);
    const partial = await halfOpen(d);
    partial.socket.write(Buffer.from([0x10, 0x20, 0x00, 0x04])); // the start of a CONNECT, never finished
    // aedes's own default would wait 30 s, the old fixed timeout 10 s: 1 s is this config's
    await waitFor(() => silent.closed() && partial.closed(), 8_000, 'both sockets closed by the CONNECT timeout');
    await logged(d, 'no completed CONNECT and login in time');
    await works(adm);
  });

  it('lockout per (address, username) with growing back-off: another username from the same address still logs in', async () => {
    const d = await daemon({ max_auth_failures: 2, lockout_s: 1, lockout_max_s: 4 });
    const lockoutLine = (nth: number) => logged(d, 'username locked out from this address', (l) => l.username === 'k1' && l.nth === nth);
    expect(await refusal(mq(d, 'k1', 'wrong'))).toBe(4);
    expect(await refusal(mq(d, 'k1', 'wrong'))).toBe(4);
    expect(await lockoutLine(1)).toMatchObject({ address: '127.0.0.1', lockout_s: 1 });
    // locked: even the right password is refused (CONNACK 5) without a check
    expect(await refusal(mq(d, 'k1'))).toBe(5);
    // kiosks behind one address (NAT) are not locked out together, and k1 from elsewhere is not locked
    await works(await mq(d, 'k2'));
    await works(await mq(d, 'k1', PW, { from: '127.0.0.2' }));
    // after the lockout, two more failures lock the pair again, twice as long; then four times
    for (const [nth, seconds] of [[2, 2], [3, 4]] as const) {
      await waitFor(async () => (await refusal(mq(d, 'k1', 'wrong'))) === 4, 15_000, 'the lockout to end (a wrong password counted again)', 100);
      expect(await refusal(mq(d, 'k1', 'wrong'))).toBe(4);
      expect(await lockoutLine(nth)).toMatchObject({ lockout_s: seconds });
    }
    // once it ends, the right password logs in (and resets the back-off)
    const k1 = await waitFor(() => mq(d, 'k1').catch(() => null), 15_000, 'the third lockout to end', 200);
    await works(k1);
  });

  it('many concurrent correct logins all succeed (none counted as a failure or refused as busy)', async () => {
    const d = await daemon({ max_unauthenticated: 200, max_connections_per_address: 100, max_connections_per_user: 100, max_auth_failures: 3 });
    // full-cost scrypt hashes, all at once: far more checks in flight than max_auth_failures and than run at once
    const all = await Promise.allSettled(Array.from({ length: 40 }, (_, i) => mq(d, i % 2 ? 'slow' : 'k1')));
    const failed = all.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason as unknown);
    expect(failed).toEqual([]);
    await works((all[0] as PromiseFulfilledResult<MqttClient>).value);
    expect(d.logs.filter((l) => typeof l.msg === 'string' && /locked out|bad username|too many logins/.test(l.msg))).toEqual([]);
  });

  it('a reconnect of a known client skips scrypt (cached verifier); a wrong password still pays it', async () => {
    const d = await daemon({}, 'debug');
    const logins = () => d.logs.filter((l) => l.msg === 'client logged in' && l.username === 'slow').map((l) => l.password_check);
    const first = await mq(d, 'slow');
    await waitFor(() => logins().length === 1, 10_000, 'the first login line');
    first.end(true);
    const second = await mq(d, 'slow');
    await works(second);
    expect(await refusal(mq(d, 'slow', 'not-the-password'))).toBe(4);
    const third = await mq(d, 'slow', PW, { from: '127.0.0.2' });
    await works(third);
    await waitFor(() => logins().length === 3, 10_000, 'three login lines');
    expect(logins()).toEqual(['scrypt', 'cached', 'cached']);
  });
});
