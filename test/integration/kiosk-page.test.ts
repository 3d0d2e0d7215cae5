/**
 * The price-checker page in headless chromium (playwright-core, Debian's /usr/bin/chromium) on an
 * in-process gateway, driven by scans: the scanners feature's `barcodeScanned` event (the contract
 * of src/features/scanners/events.ts) emitted on the gateway's event bus, as a scanner bound to the
 * kiosk would. The whole-daemon test (test/e2e/kiosk.test.ts) covers typed codes and central.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load';
import { buildGateway, type Gateway } from '../../src/core/gateway';
import { loadDefinitions } from '../../src/devices/definitions';
import { BUILTIN_FEATURES } from '../../src/features';
import { silentLogger } from '../../src/log';
import { tmp } from '../helpers/daemon';
import { fastHash, usersWithHash } from '../helpers/users';
import { useChromium } from '../helpers/browser';

const PW = 'pw-page';
const GTIN = '00036000291452'; // UPC-A 036000291452

const browser = useChromium();
let gw: Gateway | undefined;
afterEach(async () => {
  await gw?.stop();
  gw = undefined;
});

describe('price-checker page, scans (chromium)', () => {
  it('a scan on a scanner bound to the kiosk appears on its page; an unknown product shows the not-found message; a scan for another kiosk does not', { timeout: 60_000 }, async () => {
    const defs = loadDefinitions();
    const hash = await fastHash(PW);
    const { config, issues } = validateConfig(
      {
        store_id: 'kp',
        data_dir: tmp('sg-kiosk-page-'),
        mqtt: { port: 0, users: usersWithHash(hash, { kiosk: 'kiosk' }) },
        http: { port: 0 },
        kiosks: [{ id: 'k1', name: 'Aisle 3' }, { id: 'k2' }],
        buses: [{ id: 'b', path: 'tcp://127.0.0.1:9', model: 'generic-modbus-loadcell', reconnect: { initial_ms: 1000, max_ms: 5000 } }],
        shelves: [{ id: 'aisle3', slots: [{ id: 'top', gtin: GTIN, unit_weight_g: 400 }] }],
      },
      defs,
      BUILTIN_FEATURES,
    );
    expect(issues).toEqual([]);
    gw = buildGateway(config!, { log: silentLogger(), definitions: defs, features: BUILTIN_FEATURES });
    await gw.start();
    const g = gw;
    g.events.emit('priceApplied', { gtin: GTIN, price: 1234, currency: 'USD', promotion: null, version: 4, changeId: 'c4', appliedAt: Date.now() });
    g.events.emit('stockCommitted', { locationId: 'aisle3/top', gtin: GTIN, count: 5, condition: 'ok', observedBy: 'rfid', seq: 1, eventId: 'e1', ts: Date.now() });

    const context = await browser().newContext({ viewport: { width: 800, height: 480 }, httpCredentials: { username: 'kiosk', password: PW }, locale: 'en-US' });
    try {
      const page = await context.newPage();
      page.setDefaultTimeout(15_000);
      await page.goto(`${g.http.url()}/kiosk/k1`);
      await page.locator('#conn[data-state="live"]').waitFor();
      expect(await page.locator('#kiosk-name').textContent()).toBe('Aisle 3');

      g.events.emit('barcodeScanned', { scannerId: 'sc1', kioskId: 'k1', raw: '036000291452', symbology: ']E0', gtin: GTIN, ts: Date.now() });
      await page.locator('#product').waitFor({ state: 'visible' });
      expect(await page.locator('#price').textContent()).toBe('$12.34');
      expect(await page.locator('#where').textContent()).toBe('shelf aisle3, slot top — 5 on the shelf');
      expect(await page.locator('#promo').isVisible()).toBe(false);

      // a scan for the other kiosk never reaches this page: the price change after it does (one ordered stream)
      // (browser code as a string: the tests compile without the DOM library)
      await page.evaluate(`(() => {
        const el = document.getElementById('unknown');
        window.unknownShown = false;
        new MutationObserver(() => { if (!el.hidden) window.unknownShown = true; }).observe(el, { attributes: true });
      })()`);
      g.events.emit('barcodeScanned', { scannerId: 'sc2', kioskId: 'k2', raw: '96385074', symbology: ']E4', gtin: '00000096385074', ts: Date.now() });
      g.events.emit('priceApplied', { gtin: GTIN, price: 1199, currency: 'USD', promotion: null, version: 5, changeId: 'c5', appliedAt: Date.now() });
      await page.locator('#price[data-version="5"]').waitFor();
      expect(await page.locator('#price').textContent()).toBe('$11.99');
      expect(await page.evaluate('window.unknownShown')).toBe(false);

      // an unknown product on this kiosk
      g.events.emit('barcodeScanned', { scannerId: 'sc1', kioskId: 'k1', raw: '73513537', symbology: ']E4', gtin: '00000073513537', ts: Date.now() });
      await page.locator('#unknown').waitFor({ state: 'visible' });
      expect(await page.locator('#unknown-detail').textContent()).toBe('Code 73513537 is not sold in this store.');
      const m = g.features.get('kiosk')!.collectMetrics!();
      expect(m).toMatchObject({ kiosk_shows_total: 4, kiosk_price_refreshes_total: 1, kiosk_pages: 1 });
      expect(m.kiosk_scans_total).toContainEqual({ labels: { result: 'shown' }, value: 3 });
      expect((m.kiosk_lookup_duration_seconds as { count: number }).count).toBe(3);
    } finally {
      await context.close();
    }
  });
});
