/**
 * Pick-to-light through the real OEPL access point simulator over HTTP: the service's patterns
 * pass the AP's `/led_flash` and reach the labels at their check-in; a weighed pick stops the
 * label (the all-zero pattern reaches it too). The radio here is the thinnest possible one
 * (buildLedFlash + fetch + parseCommandResponse); the labels service's own radio replaces it when
 * the lead wires the service in.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { CommandRegistry } from '../../src/core/commands';
import { EventBus } from '../../src/core/events';
import { composeMigrations } from '../../src/core/gateway';
import type { Location } from '../../src/core/locations';
import { buildLedFlash, LED_PATTERN_OFF, parseCommandResponse } from '../../src/drivers/oepl';
import { BUILTIN_FEATURES } from '../../src/features';
import { PICK_COMMANDS, PickService, pickPattern, storeOutbox, type PickReport } from '../../src/features/labels/pick';
import { silentLogger } from '../../src/log';
import { Store } from '../../src/store/store';
import { OeplApSimulator } from '../../simulators/oepl-ap/simulator';
import { waitFor } from '../helpers/wait';

const MILK = '04006381333931';
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f();
});

it('an order flashes its labels through the AP simulator and a weighed pick stops them', async () => {
  const sim = new OeplApSimulator({ labels: 3, timeScale: 1000, checkinMs: 40_000 });
  await sim.start();
  cleanups.push(() => sim.stop());
  const [m1, m2, other] = sim.macs as [string, string, string];
  const dir = mkdtempSync(join(tmpdir(), 'sg-pick-sim-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const log = silentLogger();
  const store = new Store({ path: join(dir, 'sg.db'), synchronous: 'full', flushIntervalMs: 5, storeId: 'st1', log, migrations: composeMigrations(BUILTIN_FEATURES) });
  const events = new EventBus(log);
  const locations: Location[] = [{ id: 'A/1', shelfId: 'A', slotId: '1', gtin: MILK, unitWeightG: 1030 }];
  const svc = new PickService({
    storeId: 'st1',
    store,
    events,
    locations: { list: () => locations.map((l) => ({ ...l })), get: (id) => locations.find((l) => l.id === id) },
    bus: { publish: async () => undefined },
    labelsAt: (id) => (id === 'A/1' ? [m1, m2] : []),
    flash: async (mac, pattern) => {
      const req = buildLedFlash(mac, pattern);
      const res = await fetch(sim.url + req.path, { method: req.method, headers: req.headers });
      const r = parseCommandResponse(res.status, await res.text());
      if (r.kind !== 'ok') throw new Error(`led_flash: ${r.kind}`);
    },
    outbox: storeOutbox(store),
    log,
  });
  await store.start();
  await svc.start();
  cleanups.push(async () => {
    await svc.stop();
    await store.stop();
  });
  const registry = new CommandRegistry();
  registry.declare('labels', PICK_COMMANDS);
  for (const h of svc.commandHandlers()) registry.bind('labels', h);
  const service = { username: 'oms', role: 'service', via: 'mqtt' } as const;

  events.emit('stockCommitted', { locationId: 'A/1', gtin: MILK, count: 10, condition: 'ok', observedBy: 'weight', seq: 1, eventId: 'e1', ts: Date.now() });
  const orderAt = sim.now();
  await registry.execute('order.pick', { order_id: 'web-1', lines: [{ gtin: MILK, qty: 1 }] }, service);
  await svc.settled();
  expect(svc.stats).toMatchObject({ flashes: 2, flashFailures: 0 });
  const on = `led_flash:${pickPattern(['red'], 15)}`;
  const hasCmd = (mac: string, cmd: string) => sim.label(mac)!.commands.some((c) => c.cmd === cmd);
  // delivered at each label's next check-in (fast mode: 40 s virtual is 40 ms)
  await waitFor(() => hasCmd(m1, on) && hasCmd(m2, on), 10_000, 'the pattern at both labels');

  events.emit('stockCommitted', { locationId: 'A/1', gtin: MILK, count: 9, condition: 'ok', observedBy: 'weight', seq: 2, eventId: 'e2', ts: Date.now() });
  await svc.settled();
  const off = `led_flash:${LED_PATTERN_OFF}`;
  await waitFor(() => hasCmd(m1, off) && hasCmd(m2, off), 10_000, 'the stop pattern at both labels');
  expect(((await registry.execute('order.get', { order_id: 'web-1' }, service)) as PickReport).state).toBe('picked');
  expect(svc.stats).toMatchObject({ flashes: 4, flashFailures: 0 });
  // a label of no wanted slot got nothing, though it checked in since the order (a full interval passed)
  expect(sim.label(other)!.lastSeen).toBeGreaterThan(orderAt);
  expect(sim.label(other)!.commands).toEqual([]);
});
