/**
 * The gateway's HTTP server and the kiosk lookup, in process: the real gateway (store on a real
 * SQLite file, the bus on a real socket, the HTTP server on 127.0.0.1 port 0) with the built-in
 * features. Prices and stock arrive as the core's events (central and the shelves are the e2e
 * test's); what is checked here is the server: authentication with the bus's users and lockout,
 * permissions per route and per command, JSON errors, limits, TLS, and the kiosk's scan hook.
 */
import { execFileSync } from 'node:child_process';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { BusClient } from '../../src/bus/request-client';
import { validateConfig } from '../../src/config/load';
import { buildGateway, type Gateway } from '../../src/core/gateway';
import { loadDefinitions } from '../../src/devices/definitions';
import { BUILTIN_FEATURES } from '../../src/features';
import type { KioskShow } from '../../src/features/kiosk/service';
import type { LookupAnswer } from '../../src/features/kiosk/lookup';
import { silentLogger } from '../../src/log';
import { connectClient, tmp, waitFor } from '../helpers/daemon';
import { fastHash, usersWithHash } from '../helpers/users';

const defs = loadDefinitions();
const PW = 'pw-http';
const STORE = 'hs1';
const GTIN = '04006381333931'; // EAN-13 4006381333931
/** A bus nothing answers on (port 9, discard: refused on loopback): the shelves feature needs one; stock here comes as events. */
const BUSES = [{ id: 'b', path: 'tcp://127.0.0.1:9', model: 'generic-modbus-loadcell', reconnect: { initial_ms: 1000, max_ms: 5000 } }];

let gw: Gateway | undefined;
afterEach(async () => {
  await gw?.stop();
  gw = undefined;
});

async function start(extra: Record<string, unknown> = {}, http: Record<string, unknown> = {}): Promise<{ gw: Gateway; url: string }> {
  const dir = tmp('sg-http-');
  const hash = await fastHash(PW);
  const raw = {
    store_id: STORE,
    data_dir: dir,
    mqtt: { port: 0, users: usersWithHash(hash, { kiosk: 'kiosk', tech: 'technician', shop: 'service', dev: 'device' }), max_auth_failures: 3 },
    http: { port: 0, ...http },
    storage: { flush_interval_ms: 5 },
    buses: BUSES,
    kiosks: [{ id: 'k1', name: 'Entrance' }],
    // the config names the product as EAN-13 (13 digits): lookups key GTIN-14 and must still find it
    shelves: [{ id: 'g1', slots: [{ id: 's1', gtin: '4006381333931', unit_weight_g: 250 }, { id: 's2' }] }],
    ...extra,
  };
  const { config, issues } = validateConfig(raw, defs, BUILTIN_FEATURES);
  expect(issues).toEqual([]);
  const g = buildGateway(config!, { log: silentLogger(), definitions: defs, features: BUILTIN_FEATURES });
  gw = g;
  await g.start();
  return { gw: g, url: g.http.url()! };
}

const auth = (user: string, pw = PW): Record<string, string> => ({ authorization: `Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}` });

async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: any; headers: Headers }> {
  const r = await fetch(url, { headers });
  const text = await r.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON (a page)
  }
  return { status: r.status, body, headers: r.headers };
}

function price(g: Gateway, amount: number, version: number): void {
  g.events.emit('priceApplied', { gtin: GTIN, price: amount, currency: 'EUR', promotion: version > 1 ? { was_price: 299 } : null, version, changeId: `c${version}`, appliedAt: Date.now() });
}

describe('HTTP server', () => {
  it('is off without an `http` key, and reports its bound port and URL when on', async () => {
    const dir = tmp('sg-http-off-');
    const { config } = validateConfig({ store_id: 'x', data_dir: dir, mqtt: { port: 0 }, buses: BUSES, shelves: [{ id: 'a', slots: [{ id: '1' }] }] }, defs, BUILTIN_FEATURES);
    const g = buildGateway(config!, { log: silentLogger(), definitions: defs, features: BUILTIN_FEATURES });
    gw = g;
    await g.start();
    expect(g.http.enabled).toBe(false);
    expect(g.http.url()).toBeNull();
    await g.stop();
    gw = undefined;

    const { url } = await start();
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(Number(new URL(url).port)).toBeGreaterThan(0);
  });

  it('asks for credentials (401 + WWW-Authenticate), refuses a wrong password (401), and locks the pair out with the bus lockout (429)', async () => {
    const { url, gw: g } = await start();
    const none = await get(`${url}/api/v1/lookup/${GTIN}`);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Basic realm="shelfgate"/);
    expect(none.body).toEqual({ ok: false, error: { code: 'SG_BUS_AUTH_FAILED', message: expect.any(String) } });

    const wrong = await get(`${url}/api/v1/lookup/${GTIN}`, auth('kiosk', 'nope'));
    expect(wrong.status).toBe(401);
    expect(wrong.body.error.code).toBe('SG_BUS_AUTH_FAILED');
    const ghost = await get(`${url}/api/v1/lookup/${GTIN}`, auth('ghost'));
    expect(ghost.status).toBe(401);

    // max_auth_failures 3: two more wrong passwords lock kiosk out from this address, over HTTP and MQTT alike
    for (let i = 0; i < 2; i++) expect((await get(`${url}/api/v1/lookup/${GTIN}`, auth('kiosk', 'nope'))).status).toBe(401);
    const locked = await get(`${url}/api/v1/lookup/${GTIN}`, auth('kiosk'));
    expect(locked.status).toBe(429);
    expect(locked.body.error.code).toBe('SG_BUS_AUTH_FAILED');
    await expect(connectClient(g.bus.address().port, 'kiosk', PW)).rejects.toThrow();
    expect(g.bus.stats().lockouts).toBe(1);
    // another user from the same address is not locked out
    expect((await get(`${url}/api/v1/lookup/${GTIN}`, auth('tech'))).status).toBe(200);
  });

  it('answers JSON errors: 404 for an unknown route, 400 for a bad code, 413 for a body over the limit, 403 for a role without the permission', async () => {
    const { url } = await start({}, { body_limit_bytes: 1024 });
    const nf = await get(`${url}/nothing/here`, auth('kiosk'));
    expect(nf.status).toBe(404);
    expect(nf.body.error.code).toBe('SG_NOT_FOUND');

    const bad = await get(`${url}/api/v1/lookup/4006381333932`, auth('kiosk'));
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('SG_REQUEST_INVALID');

    const big = await fetch(`${url}/api/v1/commands/product.lookup`, { method: 'POST', headers: { ...auth('kiosk'), 'content-type': 'application/json' }, body: JSON.stringify({ code: 'x'.repeat(5000) }) });
    expect(big.status).toBe(413);
    expect(((await big.json()) as any).error.code).toBe('SG_REQUEST_INVALID');

    // a device user has no `read`: every kiosk route is 403 for it
    const dev = await get(`${url}/api/v1/lookup/${GTIN}`, auth('dev'));
    expect(dev.status).toBe(403);
    expect(dev.body.error.code).toBe('SG_BUS_NOT_AUTHORIZED');
  });

  it('runs commands over HTTP with the caller role: a kiosk may look up, not calibrate or operate (403)', async () => {
    const { url } = await start();
    const post = (user: string, name: string, body: unknown) =>
      fetch(`${url}/api/v1/commands/${name}`, { method: 'POST', headers: { ...auth(user), 'content-type': 'application/json' }, body: JSON.stringify(body) }).then(async (r) => ({ status: r.status, body: (await r.json()) as any }));
    const ok = await post('kiosk', 'product.lookup', { code: '4006381333931' });
    expect(ok.status).toBe(200);
    expect(ok.body.data).toMatchObject({ gtin: GTIN, found: true });
    for (const [name, body] of [
      ['calibrate.tare', { shelf: 'g1', slot: 's1' }],
      ['label.bind', { mac: '0000000000000001', shelf: 'g1', slot: 's1', type: 'x' }],
      ['label.push', {}],
      ['gpio.set', { name: 'lamp', value: 1 }],
      ['no.such', {}],
    ] as const) {
      const r = await post('kiosk', name, body);
      expect(r.status, name).toBe(403);
      expect(r.body.error.code).toBe('SG_BUS_NOT_AUTHORIZED');
    }
    // a technician passes the permission check and meets the command's own validation
    const tech = await post('tech', 'calibrate.tare', {});
    expect(tech.status).toBe(400);
    expect(tech.body.error.code).toBe('SG_REQUEST_INVALID');
  });

  it('stop() closes the server', async () => {
    const { url, gw: g } = await start();
    expect((await get(`${url}/api/v1/lookup/${GTIN}`, auth('kiosk'))).status).toBe(200);
    await g.stop();
    gw = undefined;
    await expect(fetch(`${url}/api/v1/lookup/${GTIN}`, { headers: auth('kiosk') })).rejects.toThrow();
  });
});

describe('HTTP server: TLS', () => {
  it('refuses plain HTTP on a LAN address unless allowed, and serves HTTPS with http.tls', async () => {
    const base = { store_id: 'x', data_dir: '/tmp/x', mqtt: { port: 0 }, buses: BUSES, shelves: [{ id: 'a', slots: [{ id: '1' }] }] };
    const refused = validateConfig({ ...base, http: { host: '0.0.0.0', port: 0 } }, defs, BUILTIN_FEATURES);
    expect(refused.issues).toEqual([{ path: 'http.host', message: expect.stringMatching(/plain HTTP on non-loopback address 0\.0\.0\.0 .*http\.tls.*allow_plain_on_lan/) }]);
    expect(validateConfig({ ...base, http: { host: '0.0.0.0', port: 0, allow_plain_on_lan: true } }, defs, BUILTIN_FEATURES).issues).toEqual([]);
    const missing = validateConfig({ ...base, http: { host: '0.0.0.0', port: 0, tls: { cert_file: '/nonexistent.pem', key_file: '/nonexistent.key' } } }, defs, BUILTIN_FEATURES);
    expect(missing.issues.map((i) => i.path)).toEqual(['http.tls.cert_file', 'http.tls.key_file']);

    const dir = tmp('sg-http-tls-');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.pem', '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { cwd: dir, stdio: 'pipe' });
    const { url } = await start({}, { tls: { cert_file: join(dir, 'server.pem'), key_file: join(dir, 'server.key') } });
    expect(url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpsRequest(`${url}/api/v1/lookup/${GTIN}`, { headers: auth('kiosk'), ca: execFileSync('cat', [join(dir, 'server.pem')]) }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(200);
    // plain HTTP to the HTTPS port gets no answer
    await expect(fetch(`${url.replace('https:', 'http:')}/api/v1/lookup/${GTIN}`, { headers: auth('kiosk') }).then((r) => r.status)).rejects.toThrow();
  });
});

describe('kiosk lookup in process', () => {
  it('answers price, promotion, version, stock and location; unknown products are not found, not errors', async () => {
    const { url, gw: g } = await start();
    let r = await get(`${url}/api/v1/lookup/4006381333931`, auth('kiosk'));
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ found: true, gtin: GTIN, price: null, stock: { on_shelf: null, locations: [{ location: 'g1/s1', shelf: 'g1', slot: 's1', count: null }] } });

    price(g, 249, 1);
    price(g, 199, 2);
    g.events.emit('stockCommitted', { locationId: 'g1/s1', gtin: GTIN, count: 7, condition: 'ok', observedBy: 'weight', seq: 1, eventId: 'e1', ts: Date.now() });
    r = await get(`${url}/api/v1/lookup/${GTIN}`, auth('kiosk'));
    expect(r.body).toMatchObject({ found: true, code: GTIN, gtin: GTIN, price: { amount: 199, currency: 'EUR', version: 2, promotion: { was_price: 299 } }, stock: { on_shelf: 7, locations: [{ count: 7, observed_by: 'weight', condition: 'ok' }] } });
    // an older version arriving late does not win
    price(g, 999, 1);
    expect((await get(`${url}/api/v1/lookup/${GTIN}`, auth('kiosk'))).body.price.amount).toBe(199);

    const unknown = await get(`${url}/api/v1/lookup/96385074`, auth('kiosk'));
    expect(unknown.status).toBe(200);
    expect(unknown.body).toMatchObject({ found: false, code: '96385074', gtin: '00000096385074', message: 'unknown product' });

    // over MQTT, the bus's request/response convention, as the kiosk role
    const kiosk = await BusClient.connect({ url: `mqtt://127.0.0.1:${g.bus.address().port}`, username: 'kiosk', password: PW, store: STORE });
    try {
      const a = await kiosk.request<LookupAnswer>('product.lookup', { code: ' 4006381333931 ' });
      expect(a).toMatchObject({ found: true, gtin: GTIN, price: { amount: 199, version: 2 }, stock: { on_shelf: 7 } });
      await expect(kiosk.request('product.lookup', { code: '123' })).rejects.toThrow(/SG_REQUEST_INVALID/);
    } finally {
      await kiosk.close();
    }
  });

  it('a kiosk user over MQTT is refused calibrate and operate commands, and cannot publish a price', async () => {
    const { gw: g } = await start();
    for (const [cmd, body] of [
      ['calibrate.tare', { shelf: 'g1', slot: 's1' }],
      ['label.push', {}],
      ['label.bind', { mac: '0000000000000001', shelf: 'g1', slot: 's1' }],
      ['gpio.set', { name: 'lamp', value: 1 }],
    ] as const) {
      const kiosk = await BusClient.connect({ url: `mqtt://127.0.0.1:${g.bus.address().port}`, username: 'kiosk', password: PW, store: STORE });
      try {
        await expect(kiosk.request(cmd, body), cmd).rejects.toThrow(/not allowed|SG_BUS_NOT_AUTHORIZED/);
      } finally {
        await kiosk.close();
      }
    }
    expect(g.bus.stats().deniedPublishes).toBeGreaterThanOrEqual(4);
    // prices come only from central: a kiosk publishing one is refused (the connection is closed, MQTT-3.3.5-2)
    const raw = await mqtt.connectAsync(`mqtt://127.0.0.1:${g.bus.address().port}`, { protocolVersion: 4, username: 'kiosk', password: PW, reconnectPeriod: 0 });
    const closed = new Promise<void>((resolve) => raw.once('close', () => resolve()));
    raw.publish(`shelfgate/v1/${STORE}/price/${GTIN}`, JSON.stringify({ price: 1, currency: 'EUR', version: 999 }), { qos: 1 }, () => undefined);
    await closed;
    await raw.endAsync(true);
    expect(g.bus.stats().deniedPublishes).toBeGreaterThanOrEqual(5);
  });

  it('a scan bound to a kiosk is answered on the kiosk topic (not retained) and on its page; a new price of the shown product follows', async () => {
    const { url, gw: g } = await start();
    price(g, 249, 1);
    const { client, messages } = await connectClient(g.bus.address().port, 'kiosk', PW);
    try {
      await client.subscribeAsync(`shelfgate/v1/${STORE}/kiosk/k1/lookup`, { qos: 1 });
      // the page's event stream
      const ac = new AbortController();
      const res = await fetch(`${url}/kiosk/k1/events`, { headers: auth('kiosk'), signal: ac.signal });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
      const events: Array<{ event: string; data: any }> = [];
      void (async () => {
        const dec = new TextDecoder();
        let buf = '';
        try {
          for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
            buf += dec.decode(chunk, { stream: true });
            let i: number;
            while ((i = buf.indexOf('\n\n')) >= 0) {
              const block = buf.slice(0, i);
              buf = buf.slice(i + 2);
              const ev = /^event: (.*)$/m.exec(block)?.[1];
              const data = /^data: (.*)$/m.exec(block)?.[1];
              if (ev && data) events.push({ event: ev, data: JSON.parse(data) });
            }
          }
        } catch {
          // aborted
        }
      })();
      await waitFor(() => events.some((e) => e.event === 'hello'), 5_000, 'hello event');
      expect(events[0]!.data).toMatchObject({ kiosk: 'k1', name: 'Entrance' });

      g.events.emit('barcodeScanned', { scannerId: 'sc1', kioskId: 'k1', raw: '4006381333931', symbology: ']E0', gtin: GTIN, ts: Date.now() });
      await waitFor(() => messages.length === 1 && events.some((e) => e.event === 'lookup'), 5_000, 'answer on topic and page');
      const shown = JSON.parse(messages[0]!.payload) as KioskShow;
      expect(messages[0]!.retain).toBe(false);
      expect(shown).toMatchObject({ kiosk: 'k1', reason: 'scan', scanner: 'sc1', answer: { found: true, gtin: GTIN, price: { amount: 249, version: 1 } } });
      expect(events.find((e) => e.event === 'lookup')!.data).toEqual(shown);

      // a new price while shown: both get it
      price(g, 229, 2);
      await waitFor(() => messages.length === 2 && events.filter((e) => e.event === 'lookup').length === 2, 5_000, 'price update');
      expect(JSON.parse(messages[1]!.payload)).toMatchObject({ reason: 'price', answer: { price: { amount: 229, version: 2 } } });

      // an unknown product, an unbound scanner (not shown), a kiosk nobody configured (not shown)
      g.events.emit('barcodeScanned', { scannerId: 'sc2', kioskId: null, raw: '96385074', symbology: ']E4', gtin: '00000096385074', ts: Date.now() });
      g.events.emit('barcodeScanned', { scannerId: 'sc3', kioskId: 'nope', raw: '96385074', symbology: ']E4', gtin: '00000096385074', ts: Date.now() });
      g.events.emit('barcodeScanned', { scannerId: 'sc1', kioskId: 'k1', raw: '96385074', symbology: ']E4', gtin: '00000096385074', ts: Date.now() });
      await waitFor(() => messages.length === 3, 5_000, 'not-found answer');
      expect(JSON.parse(messages[2]!.payload)).toMatchObject({ answer: { found: false, gtin: '00000096385074', message: 'unknown product' } });
      const m = g.features.get('kiosk')!.collectMetrics!();
      expect(m.kiosk_scans_total).toEqual([
        { labels: { result: 'shown' }, value: 2 },
        { labels: { result: 'unbound' }, value: 1 },
        { labels: { result: 'unknown_kiosk' }, value: 1 },
      ]);
      expect(m).toMatchObject({ kiosk_shows_total: 3, kiosk_price_refreshes_total: 1, kiosk_pages: 1 });
      ac.abort();
    } finally {
      await client.endAsync();
    }
  });
});
