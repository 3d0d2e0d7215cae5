/**
 * Pick-to-light across a restart, on a real SQLite file: an open order (with a line half picked)
 * is stored; a new Store and a new PickService on the same file restore it, re-publish its report,
 * flash its labels again at once, and complete it on a later weighed pick: the `pick_report` is in
 * the outbox and the order's row is gone, committed together.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { CommandRegistry, type Caller } from '../../src/core/commands';
import { EventBus } from '../../src/core/events';
import { composeMigrations } from '../../src/core/gateway';
import type { Location, StockRow } from '../../src/core/locations';
import { LED_PATTERN_OFF } from '../../src/drivers/oepl';
import { BUILTIN_FEATURES } from '../../src/features';
import { PICK_COMMANDS, PickService, pickPattern, storeOutbox, type PickReport } from '../../src/features/labels/pick';
import { silentLogger } from '../../src/log';
import { gs1CheckDigit } from '../../src/util/gtin';
import { Store } from '../../src/store/store';

const MILK = '04006381333931';
const SOAP = '00012345678905';
const LOCATIONS: Location[] = [
  { id: 'A/1', shelfId: 'A', slotId: '1', gtin: MILK, unitWeightG: 1030 },
  { id: 'C/1', shelfId: 'C', slotId: '1', gtin: SOAP, unitWeightG: null },
];
const LABELS: Record<string, string[]> = { 'A/1': ['AA01'], 'C/1': ['CC01'] };
const oms: Caller = { username: 'oms', role: 'service', via: 'mqtt' };

let dir: string;
const running: Array<{ svc: PickService; store: Store }> = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sg-pick-int-'));
});
afterEach(async () => {
  for (const r of running.splice(0)) {
    await r.svc.stop();
    await r.store.stop();
  }
  rmSync(dir, { recursive: true, force: true });
});

/** One gateway life: a Store on the file, the service, its commands; `stock` is the committed stock the locations module would load. */
async function boot(stock: StockRow[]) {
  const log = silentLogger();
  const store = new Store({ path: join(dir, 'sg.db'), synchronous: 'full', flushIntervalMs: 5, storeId: 'st1', log, migrations: composeMigrations(BUILTIN_FEATURES) });
  const events = new EventBus(log);
  const flashes: Array<{ mac: string; pattern: string }> = [];
  const published: Array<{ topic: string; body: string }> = [];
  const svc = new PickService({
    storeId: 'st1',
    store,
    events,
    locations: { list: () => LOCATIONS.map((l) => ({ ...l })), get: (id) => LOCATIONS.find((l) => l.id === id), loadStock: () => stock },
    bus: { publish: async (topic, payload) => void published.push({ topic, body: String(payload) }) },
    labelsAt: (id) => LABELS[id] ?? [],
    flash: async (mac, pattern) => void flashes.push({ mac, pattern }),
    outbox: storeOutbox(store),
    log,
  });
  await store.start();
  await svc.start();
  const life = { svc, store };
  running.push(life);
  const registry = new CommandRegistry();
  registry.declare('labels', PICK_COMMANDS);
  for (const h of svc.commandHandlers()) registry.bind('labels', h);
  let seq = 0;
  return {
    svc,
    store,
    flashes,
    published,
    run: async (cmd: string, payload: unknown) => {
      const r = (await registry.execute(cmd, payload, oms)) as PickReport;
      await svc.settled();
      return r;
    },
    pickFromShelf: async (locationId: string, count: number) => {
      events.emit('stockCommitted', { locationId, gtin: MILK, count, condition: 'ok', observedBy: 'weight', seq: ++seq, eventId: `ev${seq}`, ts: Date.now() });
      await svc.settled();
    },
    rows: () => store.transaction((db) => db.prepare('SELECT order_id, lines FROM pick_orders').all() as Array<{ order_id: string; lines: string }>),
    shutdown: async () => {
      await svc.stop();
      await store.stop();
      running.splice(running.indexOf(life), 1);
    },
  };
}

const stockRow = (count: number): StockRow => ({ locationId: 'A/1', count, condition: 'ok', observedBy: 'weight', detail: {}, updatedAt: Date.now() });

it('an open order survives a restart: flashing resumes and a later weighed pick completes it', async () => {
  const first = await boot([stockRow(10)]);
  const started = await first.run('order.pick', { order_id: 'web-4711', lines: [{ gtin: MILK, qty: 3 }, { gtin: SOAP, qty: 1 }] });
  expect(started.colour).toBe('red');
  await first.pickFromShelf('A/1', 9); // one of three milk
  await first.run('order.confirm', { order_id: 'web-4711', gtin: SOAP, qty: 1 }); // soap by hand
  expect(first.rows().map((r) => r.order_id)).toEqual(['web-4711']);
  await first.shutdown();

  // the shelf's committed count is 9 now (what the locations module would load)
  const second = await boot([stockRow(9)]);
  // restored: its report is on the bus again, and the milk label flashes again without any command
  const restored = JSON.parse(second.published.find((p) => p.topic === 'shelfgate/v1/st1/orders/web-4711')!.body) as PickReport;
  expect(restored).toMatchObject({ state: 'open', colour: 'red', lines: [{ gtin: SOAP, picked: 1, state: 'picked' }, { gtin: MILK, qty: 3, picked: 1, state: 'open' }] });
  await second.svc.settled();
  expect(second.flashes).toEqual([{ mac: 'AA01', pattern: pickPattern(['red'], 15) }]);
  // a new order does not get the restored order's colour
  expect((await second.run('order.pick', { order_id: 'web-4712', lines: [{ gtin: SOAP, qty: 1 }] })).colour).toBe('green');
  await second.run('order.cancel', { order_id: 'web-4712' });

  // the first pick after the restart counts (baseline 9 from the committed stock): two more milk
  await second.pickFromShelf('A/1', 7);
  const done = await second.run('order.get', { order_id: 'web-4711' });
  expect(done).toMatchObject({ state: 'picked', lines: [{ picked: 1 }, { gtin: MILK, picked: 3, by_weight: 3 }] });
  expect(second.flashes.at(-1)).toEqual({ mac: 'AA01', pattern: LED_PATTERN_OFF });
  expect(second.rows()).toEqual([]);
  const reports = second.store
    .peekOutbox(0, 100)
    .filter((e) => e.kind === 'pick_report')
    .map((e) => ({ device: e.deviceId, body: JSON.parse(e.payload) as PickReport }));
  expect(reports.map((r) => [r.device, r.body.order_id, r.body.state])).toEqual([
    ['orders/web-4712', 'web-4712', 'cancelled'],
    ['orders/web-4711', 'web-4711', 'picked'],
  ]);
  expect(reports[1]!.body).toMatchObject({ kind: 'pick_report', created_at: started.created_at });
  await second.shutdown();

  // and a third life has nothing left to flash
  const third = await boot([stockRow(7)]);
  await third.svc.settled();
  expect(third.flashes).toEqual([]);
  expect(third.svc.activeReports()).toEqual([]);
});

it('ending an order writes its report and removes its row in one batch: on a full disk neither happens and the order stays active', async () => {
  const gw = await boot([stockRow(10)]);
  // a big order: its report needs new database pages
  const lines = Array.from({ length: 80 }, (_, i) => {
    const data = `4000000${String(i).padStart(5, '0')}`;
    return { gtin: `${data}${gs1CheckDigit(data)}`, qty: 1 };
  });
  await gw.run('order.pick', { order_id: 'big', lines: [...lines, { gtin: MILK, qty: 1 }] });
  const db = gw.store.connection!;
  db.pragma(`max_page_count = ${db.pragma('page_count', { simple: true }) as number}`); // the disk is full
  await expect(gw.run('order.cancel', { order_id: 'big' })).rejects.toMatchObject({ code: 'SG_STORAGE_WRITE_FAILED', message: expect.stringMatching(/still active/) });
  expect(gw.svc.stats.persistFailures).toBe(1);
  expect(gw.store.peekOutbox(0, 10).filter((e) => e.kind === 'pick_report')).toEqual([]);
  expect(gw.rows().map((r) => r.order_id)).toEqual(['big']);
  expect((await gw.run('order.get', { order_id: 'big' })).state).toBe('open');
  expect(gw.flashes.at(-1)).toEqual({ mac: 'AA01', pattern: pickPattern(['red'], 15) }); // flashing again

  db.pragma('max_page_count = 1073741823'); // space freed: the picker cancels again
  expect((await gw.run('order.cancel', { order_id: 'big' })).state).toBe('cancelled');
  expect(gw.rows()).toEqual([]);
  expect(gw.store.peekOutbox(0, 10).filter((e) => e.kind === 'pick_report')).toHaveLength(1);
});
