/**
 * The technician page in Debian's chromium (headless, playwright-core) against the real daemon:
 * a kiosk user logs in and is refused; the technician logs in, sees a device go offline and come
 * back (a load cell made silent on the simulated Modbus bus, then answering again), tares a slot
 * and sees its count change; an action sent with the session cookie but without its CSRF token is
 * refused; logging out ends the session.
 */
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { loadDefinitions } from '../../src/devices/definitions';
import type { ModbusDefinition } from '../../src/devices/types';
import { ModbusLoadCellBusSimulator } from '../../simulators/modbus-loadcell-sim';
import { LoadCellPhysics, mulberry32 } from '../../simulators/physics';
import { serveTcp } from '../../simulators/serve';
import { startDaemon, tmp, useCleanups } from '../helpers/daemon';
import { fastHash, usersWithHash } from '../helpers/users';
import { useChromium } from '../helpers/browser';

const STORE = 'tpage';
const PW = 'pw-tech-page';
const cleanups = useCleanups();
const browser = useChromium();

async function login(page: Page, user: string): Promise<void> {
  await page.fill('#username', user);
  await page.fill('#password', PW);
  await page.click('#login button[type=submit]');
}

describe('technician page (chromium, whole daemon)', () => {
  it('kiosk refused; technician sees a device go offline and back, tares a slot and sees the count change; CSRF enforced; log out', async () => {
    const dir = tmp('sg-tpage-');
    const defs = loadDefinitions();
    // slot a: a 100 g tray the config does not know (tare 0) and no items: 2 "items" of 50 g until tared
    const a = new LoadCellPhysics({ unitWeightG: 50, items: 0, tareG: 100, noiseSigmaG: 0.1, settleMs: 50, rng: mulberry32(1) });
    const b = new LoadCellPhysics({ unitWeightG: 400, items: 6, noiseSigmaG: 0.2, settleMs: 50, rng: mulberry32(2) });
    const sim = new ModbusLoadCellBusSimulator({ definition: defs.get('generic-modbus-loadcell') as ModbusDefinition, slaves: new Map([[1, a], [2, b]]), turnaroundMs: 0 });
    const bus = await serveTcp(sim, '127.0.0.1', 0);
    cleanups.push(() => bus.close());
    const hash = await fastHash(PW);
    const daemon = await startDaemon(
      {
        store_id: STORE,
        data_dir: join(dir, 'state'),
        mqtt: { port: 0, users: usersWithHash(hash, { tech: 'technician', kiosk: 'kiosk' }) },
        http: { host: '127.0.0.1', port: 0 },
        technician: { refresh_ms: 500 },
        storage: { flush_interval_ms: 10 },
        stability: { window: 3, max_spread_g: 3 },
        buses: [{ id: 'busA', path: bus.url, model: 'generic-modbus-loadcell', poll_interval_ms: 50, timeout_ms: 150, offline_after_misses: 3 }],
        shelves: [{ id: 'shelf1', slots: [{ id: 'a', sensor: { bus: 'busA', address: 1 }, gtin: '04006381333931', unit_weight_g: 50 }, { id: 'b', sensor: { bus: 'busA', address: 2 }, gtin: '05012345678900', unit_weight_g: 400 }] }],
      },
      dir,
    );
    cleanups.push(async () => void (await daemon.stop('SIGKILL')));
    const ctx = await browser().newContext({ viewport: { width: 390, height: 844 } }); // a phone
    cleanups.push(() => ctx.close());
    const page = await ctx.newPage();
    page.setDefaultTimeout(20_000);
    await page.goto(`${daemon.httpUrl}/tech/`);

    // --- a kiosk user: the login works, the page refuses the role
    await page.waitForSelector('#login-panel:not([hidden])');
    await login(page, 'kiosk');
    await page.waitForSelector('#login-error:not([hidden])');
    expect(await page.textContent('#login-error')).toMatch(/calibrate permission.*kiosk/);
    expect(await page.isHidden('#app')).toBe(true);

    // --- the technician
    await login(page, 'tech');
    await page.waitForSelector('#app:not([hidden])').catch(async (e: Error) => {
      throw new Error(`${e.message}; login error: ${await page.textContent('#login-error')}; state: ${await page.evaluate("fetch('/tech/api/state', { headers: { 'x-shelfgate-page': 't' } }).then((r) => r.text())")}`);
    });
    expect(await page.textContent('#who')).toBe('tech (technician)');
    await page.waitForSelector('#live.on');
    await page.waitForSelector('tr[data-device="busA.1"][data-state="online"]');
    await page.waitForSelector('tr[data-device="busA.2"][data-state="online"]');
    // usable on a phone: nothing wider than the screen but the scrollable tables
    expect(await page.evaluate("document.documentElement.scrollWidth")).toBeLessThanOrEqual(390);

    // a device goes offline and comes back, live (no reload)
    sim.setFaults(2, { silent: true });
    await page.waitForSelector('tr[data-device="busA.2"][data-state="offline"]');
    expect(await page.textContent('tr[data-device="busA.2"] td:last-child')).not.toBe('-'); // its last error
    sim.setFaults(2, {});
    await page.waitForSelector('tr[data-device="busA.2"][data-state="online"]');

    // tare slot a: 100 g of tray read as 2 items of 50 g, then 0 once tared
    await page.waitForSelector('[data-slot="shelf1/a"] .count[data-count="2"]');
    const grams = Number(await page.getAttribute('[data-slot="shelf1/a"] .meta', 'data-weight'));
    expect(grams).toBeGreaterThan(98);
    expect(grams).toBeLessThan(102); // the live weight on the scale: the tray
    await page.click('button[aria-label="tare shelf1/a"]');
    await page.waitForSelector('#message:not([hidden])');
    expect(await page.textContent('#message')).toMatch(/^shelf1\/a: tare 100(\.\d+)? g, count now 0$/);
    await page.waitForSelector('[data-slot="shelf1/a"] .count[data-count="0"]');

    // learn slot b's unit weight from the 6 items on it: the form shows only after "Learn…"
    expect(await page.isVisible('[data-slot="shelf1/b"] form.learn')).toBe(false);
    await page.click('button[aria-label="learn the unit weight of shelf1/b"]');
    await page.fill('[data-slot="shelf1/b"] form.learn input', '6');
    await page.click('[data-slot="shelf1/b"] form.learn button[type=submit]');
    await page.waitForSelector('#message:has-text("shelf1/b: unit weight")');
    expect(await page.textContent('#message')).toMatch(/^shelf1\/b: unit weight 4\d\d(\.\d+)? g learned, count 6$/);

    // the session cookie alone is not enough for an action: the CSRF token is required
    const noCsrf = await page.evaluate(async () => {
      const r = await fetch('/api/v1/commands/calibrate.tare', { method: 'POST', headers: { 'content-type': 'application/json', 'x-shelfgate-page': 't' }, body: JSON.stringify({ shelf: 'shelf1', slot: 'b' }) });
      return { status: r.status, body: (await r.json()) as { error: { message: string } } };
    });
    expect(noCsrf.status).toBe(403);
    expect(noCsrf.body.error.message).toMatch(/x-shelfgate-csrf/);
    // the cookie is HttpOnly (no script reads it) and SameSite=Strict
    const cookies = await ctx.cookies();
    expect(cookies.find((c) => c.name === 'shelfgate_session')).toMatchObject({ httpOnly: true, sameSite: 'Strict' });
    expect(await page.evaluate<string>("document.cookie")).not.toContain('shelfgate_session');

    // log out: the session is gone for the server too
    await page.click('#logout');
    await page.waitForSelector('#login-panel:not([hidden])');
    const after = await page.evaluate(async () => (await fetch('/tech/api/state', { headers: { 'x-shelfgate-page': 't' } })).status);
    expect(after).toBe(401);
  });
});
