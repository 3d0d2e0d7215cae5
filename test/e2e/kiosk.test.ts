/**
 * Kiosk lookups, whole daemon: the real `shelfgate run` process with its HTTP server on 127.0.0.1
 * port 0, the reference central over HTTP on loopback, a simulated Modbus weight shelf over TCP, a
 * simulated serial barcode scanner over TCP bound to the kiosk, and Debian's chromium (headless,
 * driven by playwright-core) on the price-checker page.
 *
 * Proves: a lookup over MQTT and over HTTP answers the price central published and the stock the
 * shelf weighed; lookups still answer after central went away (and the gateway noticed); the page
 * shows product, price, promotion and location after an entry, a clear message for an unknown
 * code, and a new price from central while the product is shown; a scan on the scanner is answered
 * on the kiosk's topic and page.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BusClient } from '../../src/bus/request-client';
import { loadDefinitions } from '../../src/devices/definitions';
import type { ModbusDefinition } from '../../src/devices/types';
import type { LookupAnswer } from '../../src/features/kiosk/lookup';
import { silentLogger } from '../../src/log';
import { CentralSimulator } from '../../simulators/central';
import { ModbusLoadCellBusSimulator } from '../../simulators/modbus-loadcell-sim';
import { LoadCellPhysics, mulberry32 } from '../../simulators/physics';
import { serveTcp } from '../../simulators/serve';
import { ScannerSimulator } from '../../simulators/scanner-sim';
import { connectClient, startDaemon, tmp, useCleanups, waitFor, type RunningDaemon } from '../helpers/daemon';
import { fastHash, usersWithHash } from '../helpers/users';
import { useChromium } from '../helpers/browser';

const STORE = 'ksk';
const PW = 'pw-kiosk';
/** EAN-13 4006381333931 and 5901234123457 as GTIN-14; 96385074 (EAN-8) is sold nowhere here. */
const A = '04006381333931';
const B = '05901234123457';
const UNKNOWN_EAN8 = '96385074';
const PROMO = { was_price: 299, valid_from: new Date(Date.now() - 86_400_000).toISOString(), valid_to: new Date(Date.now() + 7 * 86_400_000).toISOString() };

const cleanups = useCleanups();

interface Rig {
  central: CentralSimulator;
  /** A serial barcode scanner (simulated, over TCP) bound to kiosk k1 as scanner `sc1`. */
  scanner: ScannerSimulator;
  daemon: RunningDaemon;
  http: string;
  kiosk: BusClient;
}

async function rig(): Promise<Rig> {
  const dir = tmp('sg-kiosk-e2e-');
  const central = new CentralSimulator({ host: '127.0.0.1', port: 0, token: 'tok', storeIds: [STORE], log: silentLogger(), seed: 5 });
  await central.start();
  cleanups.push(() => central.stop());
  writeFileSync(join(dir, 'token'), 'tok\n', { mode: 0o600 });
  const defs = loadDefinitions();
  const physics = [new LoadCellPhysics({ unitWeightG: 250, items: 10, noiseSigmaG: 0.1, settleMs: 30, rng: mulberry32(1) }), new LoadCellPhysics({ unitWeightG: 100, items: 4, noiseSigmaG: 0.1, settleMs: 30, rng: mulberry32(2) })];
  const sim = new ModbusLoadCellBusSimulator({ definition: defs.get('generic-modbus-loadcell') as ModbusDefinition, slaves: new Map(physics.map((p, a) => [a + 1, p])), turnaroundMs: 0 });
  const tcp = await serveTcp(sim, '127.0.0.1', 0);
  cleanups.push(() => tcp.close());
  const scanner = new ScannerSimulator({ codes: ['4006381333931'] });
  const scannerTcp = await serveTcp(scanner, '127.0.0.1', 0);
  cleanups.push(() => scannerTcp.close());
  const hash = await fastHash(PW);
  const config = {
    store_id: STORE,
    data_dir: join(dir, 'state'),
    mqtt: { port: 0, users: usersWithHash(hash, { kiosk: 'kiosk', tech: 'technician' }) },
    http: { port: 0 },
    storage: { flush_interval_ms: 10 },
    stability: { window: 3, max_spread_g: 3 },
    sync: { transport: 'https', https: { url: central.url, token_file: join(dir, 'token'), request_timeout_ms: 2000 }, long_poll_s: 1, backoff: { initial_ms: 50, max_ms: 500 } },
    buses: [{ id: 'bus', path: tcp.url, model: 'generic-modbus-loadcell', poll_interval_ms: 30, timeout_ms: 200 }],
    shelves: [
      {
        id: 'g1',
        slots: [
          { id: 's1', sensor: { bus: 'bus', address: 1 }, gtin: A, unit_weight_g: 250 },
          { id: 's2', sensor: { bus: 'bus', address: 2 }, gtin: B, unit_weight_g: 100 },
        ],
      },
    ],
    kiosks: [{ id: 'k1', name: 'Entrance price checker' }],
    scanners: [{ id: 'sc1', kind: 'serial', port: scannerTcp.url, kiosk: 'k1' }],
  };
  const daemon = await startDaemon(config, dir);
  cleanups.push(async () => void (await daemon.stop('SIGKILL')));
  expect(daemon.httpUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  const kiosk = await BusClient.connect({ url: `mqtt://127.0.0.1:${daemon.mqttPort}`, username: 'kiosk', password: PW, store: STORE });
  cleanups.push(() => kiosk.close());
  return { central, scanner, daemon, http: daemon.httpUrl!, kiosk };
}

const basic = { authorization: `Basic ${Buffer.from(`kiosk:${PW}`).toString('base64')}` };

async function httpLookup(r: Rig, code: string): Promise<LookupAnswer> {
  const res = await fetch(`${r.http}/api/v1/lookup/${code}`, { headers: basic });
  expect(res.status).toBe(200);
  return (await res.json()) as LookupAnswer;
}

describe('kiosk lookups (whole daemon)', () => {
  it('answers over MQTT and HTTP with the price central published and the stock the shelf weighed, and keeps answering with central down', { timeout: 90_000 }, async () => {
    const r = await rig();
    r.central.publishProduct({ gtin: A, name: 'STABILO point 88 fineliner' });
    r.central.publishPrice({ gtin: A, price: 249, currency: 'EUR', promotion: PROMO });
    await waitFor(async () => (await httpLookup(r, '4006381333931')).price?.version === 1 && (await httpLookup(r, '4006381333931')).stock.on_shelf === 10, 30_000, 'price v1 and 10 on the shelf');

    const overHttp = await httpLookup(r, '4006381333931');
    expect(overHttp).toMatchObject({
      found: true,
      code: '4006381333931',
      gtin: A,
      price: { amount: 249, currency: 'EUR', version: 1, promotion: { was_price: 299 } },
      stock: { on_shelf: 10, locations: [{ location: 'g1/s1', shelf: 'g1', slot: 's1', count: 10, observed_by: 'weight' }] },
    });
    // the product's name comes from central's product data when the labels feature stored it (labels are off here)
    const overMqtt = await r.kiosk.request<LookupAnswer>('product.lookup', { code: '4006381333931' });
    expect(overMqtt).toEqual(overHttp);
    expect(await r.kiosk.request<LookupAnswer>('product.lookup', { code: UNKNOWN_EAN8 })).toMatchObject({ found: false, gtin: '00000096385074', message: 'unknown product' });

    // central goes away: the gateway notices (sync status, which a kiosk may read) ...
    const watch = await connectClient(r.daemon.mqttPort, 'kiosk', PW);
    cleanups.push(async () => void (await watch.client.endAsync()));
    await watch.client.subscribeAsync(`shelfgate/v1/${STORE}/sync/status`, { qos: 1 });
    const status = () => watch.messages.filter((m) => m.topic.endsWith('/sync/status')).map((m) => JSON.parse(m.payload) as { connected: boolean; last_error: { code: string } | null });
    await waitFor(() => status().at(-1)?.connected === true, 15_000, 'sync status: connected');
    await r.central.stop();
    await waitFor(() => status().at(-1)?.connected === false && status().at(-1)?.last_error !== null, 30_000, 'sync status: central unreachable');
    // ... and lookups still answer, over both transports, from SQLite and memory
    const offline = await httpLookup(r, '4006381333931');
    expect(offline).toMatchObject({ found: true, price: { amount: 249, version: 1 }, stock: { on_shelf: 10 } });
    expect(await r.kiosk.request<LookupAnswer>('product.lookup', { code: '5901234123457' })).toMatchObject({ found: true, gtin: B, price: null, stock: { on_shelf: 4 } });
  });
});

describe('price-checker page in chromium (whole daemon)', () => {
  const browser = useChromium();

  it('shows product, price, promotion and shelf after an entry, a message for an unknown code, and a new price live', { timeout: 90_000 }, async () => {
    const r = await rig();
    r.central.publishPrice({ gtin: A, price: 249, currency: 'EUR', promotion: PROMO });
    await waitFor(async () => (await httpLookup(r, A)).price?.version === 1 && (await httpLookup(r, A)).stock.on_shelf === 10, 30_000, 'price v1 and 10 on the shelf');

    const context = await browser().newContext({ viewport: { width: 800, height: 480 }, httpCredentials: { username: 'kiosk', password: PW }, locale: 'en-US' });
    cleanups.push(() => context.close());
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    const res = await page.goto(`${r.http}/kiosk/k1`);
    expect(res?.status()).toBe(200);
    await page.locator('#conn[data-state="live"]').waitFor();
    await expect(page.locator('#kiosk-name').textContent()).resolves.toBe('Entrance price checker');
    await page.locator('#idle').waitFor({ state: 'visible' });

    // a shopper types the code of the pen (no scanner on this kiosk)
    await page.fill('#code', '4006381333931');
    await page.click('button[type="submit"]');
    await page.locator('#product').waitFor({ state: 'visible' });
    expect(await page.locator('#price').textContent()).toBe('€2.49');
    expect(await page.locator('#was').textContent()).toBe('€2.99');
    expect(await page.locator('#promo').isVisible()).toBe(true);
    expect(await page.locator('#where').textContent()).toBe('shelf g1, slot s1 — 10 on the shelf');
    // it fits the 800x480 screen: the price and the entry box are inside the viewport
    for (const sel of ['#price', '#code', '#where']) {
      const box = (await page.locator(sel).boundingBox())!;
      expect(box.y + box.height, sel).toBeLessThanOrEqual(480);
      expect(box.x + box.width, sel).toBeLessThanOrEqual(800);
    }

    // central changes the price while it is shown: the page follows without a new entry
    r.central.publishPrice({ gtin: A, price: 199, currency: 'EUR' });
    await page.locator('#price[data-version="2"]').waitFor();
    expect(await page.locator('#price').textContent()).toBe('€1.99');
    expect(await page.locator('#promo').isVisible()).toBe(false);

    // an unknown product, then a code with a wrong check digit
    await page.fill('#code', UNKNOWN_EAN8);
    await page.click('button[type="submit"]');
    await page.locator('#unknown').waitFor({ state: 'visible' });
    expect(await page.locator('#unknown .big').textContent()).toBe('Product not found');
    await page.fill('#code', '4006381333932');
    await page.click('button[type="submit"]');
    await page.locator('#invalid').waitFor({ state: 'visible' });
    expect(await page.locator('#invalid .big').textContent()).toBe('Not a valid barcode');

    // without credentials the page is refused (headless chromium has no prompt to show: the navigation fails)
    const anon = await browser().newContext();
    cleanups.push(() => anon.close());
    await expect((await anon.newPage()).goto(`${r.http}/kiosk/k1`)).rejects.toThrow(/ERR_INVALID_AUTH_CREDENTIALS/);
    expect((await anon.request.get(`${r.http}/kiosk/k1`)).status()).toBe(401);
  });

  it('a scan on the simulated scanner bound to the kiosk is answered on the kiosk topic and shown on its page', { timeout: 90_000 }, async () => {
    const r = await rig();
    r.central.publishPrice({ gtin: A, price: 349, currency: 'EUR' });
    await waitFor(async () => (await httpLookup(r, A)).price?.version === 1 && (await httpLookup(r, A)).stock.on_shelf === 10, 30_000, 'price v1 and 10 on the shelf');
    const watch = await connectClient(r.daemon.mqttPort, 'kiosk', PW);
    cleanups.push(async () => void (await watch.client.endAsync()));
    await watch.client.subscribeAsync([`shelfgate/v1/${STORE}/kiosk/k1/lookup`, `shelfgate/v1/${STORE}/device/sc1/availability`], { qos: 1 });
    await waitFor(() => watch.messages.some((m) => m.topic.endsWith('/device/sc1/availability') && (JSON.parse(m.payload) as { state: string }).state === 'online'), 15_000, 'scanner sc1 online');

    const context = await browser().newContext({ viewport: { width: 800, height: 480 }, httpCredentials: { username: 'kiosk', password: PW }, locale: 'en-US' });
    cleanups.push(() => context.close());
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    await page.goto(`${r.http}/kiosk/k1`);
    await page.locator('#conn[data-state="live"]').waitFor();

    r.scanner.scan('4006381333931');
    await page.locator('#product').waitFor({ state: 'visible' });
    expect(await page.locator('#price').textContent()).toBe('€3.49');
    expect(await page.locator('#where').textContent()).toBe('shelf g1, slot s1 — 10 on the shelf');
    await waitFor(() => watch.messages.some((m) => m.topic.endsWith('/kiosk/k1/lookup')), 10_000, 'the answer on the kiosk topic');
    const shown = JSON.parse(watch.messages.find((m) => m.topic.endsWith('/kiosk/k1/lookup'))!.payload) as { reason: string; scanner: string; answer: LookupAnswer };
    expect(shown).toMatchObject({ reason: 'scan', scanner: 'sc1', answer: { found: true, gtin: A, price: { amount: 349 }, stock: { on_shelf: 10 } } });
  });
});
