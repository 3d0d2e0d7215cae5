/**
 * Pick-to-light (src/features/labels/pick.ts) with fakes for what it is given: locations, label
 * bindings, the radio's flash (calls recorded), the bus (publishes recorded); stock events are
 * emitted by hand on a real EventBus. The Store is a real one on a temporary file (the service's
 * table and the outbox are part of what is checked).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CommandRegistry, type Caller } from '../../src/core/commands';
import { EventBus, type StockCommitted } from '../../src/core/events';
import type { Location } from '../../src/core/locations';
import { composeMigrations } from '../../src/core/gateway';
import { buildLedPattern, LED_PATTERN_OFF } from '../../src/drivers/oepl';
import { BUILTIN_FEATURES } from '../../src/features';
import { PICK_COMMANDS, PICK_EVENT_KINDS, PICK_TOPICS, PickService, pickPattern, storeOutbox, type PickReport } from '../../src/features/labels/pick';
import { silentLogger } from '../../src/log';
import { Store } from '../../src/store/store';

const MILK = '04006381333931';
const BREAD = '4006381333986'; // GTIN-13: normalised to 04006381333986
const BREAD14 = '04006381333986';
const SOAP = '00012345678905'; // held by a location nobody weighs
const GHOST = '96385074'; // no location holds it
const T0 = Date.parse('2026-03-02T12:00:00Z');

const service: Caller = { username: 'oms', role: 'service', via: 'mqtt' };
const kiosk: Caller = { username: 'kiosk1', role: 'kiosk', via: 'mqtt' };

let dir: string;
const cleanup: Array<() => Promise<void>> = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sg-pick-'));
});
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
  rmSync(dir, { recursive: true, force: true });
});

function loc(id: string, gtin: string | null, unitWeightG: number | null): Location {
  const [shelfId, slotId] = id.split('/') as [string, string];
  return { id, shelfId, slotId, gtin, unitWeightG };
}

interface Rig {
  svc: PickService;
  store: Store;
  events: EventBus;
  registry: CommandRegistry;
  flashes: Array<{ mac: string; pattern: string }>;
  published: Array<{ topic: string; body: string; retain: boolean }>;
  clock: { t: number };
  run(cmd: string, payload: unknown, caller?: Caller): Promise<PickReport>;
  stock(locationId: string, gtin: string | null, count: number | null, ts?: number): void;
}

const LOCATIONS: Location[] = [
  loc('A/1', MILK, 1030), // weighed
  loc('A/2', MILK, 1030), // weighed, second facing of milk
  loc('B/1', BREAD, 500), // weighed (GTIN-13 in the config)
  loc('C/1', SOAP, null), // not weighed
  loc('D/1', '00000000000017', 250), // weighed, but no label
];
const LABELS: Record<string, string[]> = { 'A/1': ['AA01'], 'A/2': ['AA02', 'AA03'], 'B/1': ['BB01'], 'C/1': ['CC01'] };

async function rig(o: { locations?: Location[]; labels?: Record<string, string[]>; options?: ConstructorParameters<typeof PickService>[0]['options']; flashFails?: (mac: string) => boolean; seedStock?: boolean } = {}): Promise<Rig> {
  const log = silentLogger();
  const store = new Store({ path: join(dir, 'sg.db'), synchronous: 'full', flushIntervalMs: 2, storeId: 'st1', log, migrations: composeMigrations(BUILTIN_FEATURES) });
  const events = new EventBus(log);
  const flashes: Rig['flashes'] = [];
  const published: Rig['published'] = [];
  const clock = { t: T0 };
  const svc = new PickService({
    storeId: 'st1',
    store,
    events,
    locations: {
      list: () => (o.locations ?? LOCATIONS).map((l) => ({ ...l })),
      get: (id) => (o.locations ?? LOCATIONS).find((l) => l.id === id),
      ...(o.seedStock ? { loadStock: () => [{ locationId: 'A/1', count: 10, condition: 'ok', observedBy: 'weight', detail: {}, updatedAt: T0 }] } : {}),
    },
    bus: {
      publish: async (topic, payload, opts) => {
        published.push({ topic, body: String(payload), retain: opts?.retain ?? false });
      },
    },
    labelsAt: (id) => (o.labels ?? LABELS)[id] ?? [],
    flash: async (mac, pattern) => {
      flashes.push({ mac, pattern });
      if (o.flashFails?.(mac)) throw new Error('AP unreachable');
    },
    outbox: storeOutbox(store),
    clock: () => clock.t,
    log,
    options: o.options,
  });
  await store.start();
  await svc.start();
  cleanup.push(async () => {
    await svc.stop();
    await store.stop();
  });
  const registry = new CommandRegistry();
  registry.declare('labels', PICK_COMMANDS);
  for (const h of svc.commandHandlers()) registry.bind('labels', h);
  let seq = 0;
  return {
    svc,
    store,
    events,
    registry,
    flashes,
    published,
    clock,
    run: async (cmd, payload, caller = service) => {
      const r = (await registry.execute(cmd, payload, caller)) as PickReport;
      await svc.settled();
      return r;
    },
    stock: (locationId, gtin, count, ts) => {
      const e: StockCommitted = { locationId, gtin, count, condition: 'ok', observedBy: 'weight', seq: ++seq, eventId: `e${seq}`, ts: ts ?? clock.t };
      events.emit('stockCommitted', e);
    },
  };
}

const red = pickPattern(['red'], 15);
const green = pickPattern(['green'], 15);

function lastPatternOf(r: Rig, mac: string): string | undefined {
  return r.flashes.filter((f) => f.mac === mac).at(-1)?.pattern;
}

function outboxReports(store: Store): Array<Record<string, unknown>> {
  return store
    .peekOutbox(0, 100)
    .filter((e) => e.kind === 'pick_report')
    .map((e) => JSON.parse(e.payload) as Record<string, unknown>);
}

describe('pick-to-light', () => {
  it('declares its outbox kind, topic area and commands with their permissions', () => {
    expect(PICK_EVENT_KINDS.map((k) => [k.kind, k.droppable])).toEqual([['pick_report', false]]);
    expect(PICK_TOPICS.map((t) => t.filter)).toEqual(['orders/#']);
    expect(Object.fromEntries(PICK_COMMANDS.map((c) => [c.name, c.permission]))).toEqual({
      'order.pick': 'operate',
      'order.cancel': 'operate',
      'order.done': 'operate',
      'order.confirm': 'operate',
      'order.get': 'read',
    });
  });

  it('pickPattern: one colour fills the three groups; several colours take a group each, oldest first', () => {
    expect(red).toBe(buildLedPattern({ flashDuration: 8, groups: [0, 1, 2].map(() => ({ colour: 0xe0, flashes: 3, speed: 2, delayAfter: 5 })), repeats: 15 }));
    expect(red).toBe('81E02305E02305E023050F00');
    expect(pickPattern(['green', 'blue'], 1)).toBe('811C23050323051C23050100');
    expect(pickPattern([], 1)).toBe(LED_PATTERN_OFF);
  });

  it('flashes every label of every location holding a line, and stops each label when its line is picked by weight', async () => {
    const r = await rig();
    r.stock('A/1', MILK, 10);
    r.stock('A/2', MILK, 4);
    r.stock('B/1', BREAD, 6);
    const rep = await r.run('order.pick', { order_id: 'o-1', lines: [{ gtin: MILK, qty: 2 }, { gtin: BREAD, qty: 1 }] });
    expect(rep.state).toBe('open');
    expect(rep.colour).toBe('red');
    expect(rep.lines.map((l) => [l.gtin, l.qty, l.picked, l.state, l.locations])).toEqual([
      [MILK, 2, 0, 'open', ['A/1', 'A/2']],
      [BREAD14, 1, 0, 'open', ['B/1']],
    ]);
    expect(new Set(r.flashes.map((f) => f.mac))).toEqual(new Set(['AA01', 'AA02', 'AA03', 'BB01']));
    expect(r.flashes.every((f) => f.pattern === red)).toBe(true);

    // one milk taken from A/1 and one from A/2 (the slot count goes down)
    r.clock.t = T0 + 60_000;
    r.stock('A/1', MILK, 9, T0 + 60_000);
    await r.svc.settled();
    r.stock('A/2', MILK, 3, T0 + 61_000);
    await r.svc.settled();
    let got = (await r.run('order.get', { order_id: 'o-1' })) as PickReport;
    expect(got.lines[0]).toMatchObject({ picked: 2, by_weight: 2, state: 'picked' });
    expect(got.first_pick_at).toBe(new Date(T0 + 60_000).toISOString());
    expect(got.last_pick_at).toBe(new Date(T0 + 61_000).toISOString());
    for (const mac of ['AA01', 'AA02', 'AA03']) expect(lastPatternOf(r, mac)).toBe(LED_PATTERN_OFF);
    expect(lastPatternOf(r, 'BB01')).toBe(red);
    expect(outboxReports(r.store)).toEqual([]);

    // the bread: the order is complete, ends by itself, report in the outbox and retained
    r.stock('B/1', BREAD, 5, T0 + 62_000);
    await r.svc.settled();
    got = (await r.run('order.get', { order_id: 'o-1' })) as PickReport;
    expect(got.state).toBe('picked');
    expect(got.ended_at).not.toBeNull();
    expect(lastPatternOf(r, 'BB01')).toBe(LED_PATTERN_OFF);
    const reports = outboxReports(r.store);
    expect(reports).toHaveLength(1);
    expect(reports[0]).toMatchObject({ order_id: 'o-1', state: 'picked', colour: 'red' });
    const retained = r.published.filter((p) => p.topic === 'shelfgate/v1/st1/orders/o-1');
    expect(retained.every((p) => p.retain)).toBe(true);
    expect(JSON.parse(retained.at(-1)!.body)).toMatchObject({ state: 'picked', lines: [{ picked: 2 }, { picked: 1 }] });
    expect(r.svc.activeReports()).toEqual([]);
  });

  it('order.done: lines not picked are short; the report carries qty, picked, short and the times', async () => {
    const r = await rig();
    r.stock('A/1', MILK, 10);
    await r.run('order.pick', { order_id: 'o-2', lines: [{ gtin: MILK, qty: 3 }, { gtin: BREAD, qty: 2 }] });
    r.clock.t = T0 + 5_000;
    r.stock('A/1', MILK, 9);
    await r.svc.settled();
    r.clock.t = T0 + 9_000;
    const rep = await r.run('order.done', { order_id: 'o-2' });
    expect(rep).toMatchObject({
      order_id: 'o-2',
      state: 'short',
      created_at: new Date(T0).toISOString(),
      first_pick_at: new Date(T0 + 5_000).toISOString(),
      last_pick_at: new Date(T0 + 5_000).toISOString(),
      ended_at: new Date(T0 + 9_000).toISOString(),
      lines: [
        { gtin: MILK, qty: 3, picked: 1, short: 2, state: 'short' },
        { gtin: BREAD14, qty: 2, picked: 0, short: 2, state: 'short' },
      ],
    });
    expect(outboxReports(r.store)).toEqual([expect.objectContaining({ order_id: 'o-2', state: 'short' })]);
    for (const mac of ['AA01', 'AA02', 'AA03', 'BB01']) expect(lastPatternOf(r, mac)).toBe(LED_PATTERN_OFF);
    // ended: confirm and done are refused with a clear error, get still answers
    await expect(r.run('order.done', { order_id: 'o-2' })).rejects.toMatchObject({ code: 'SG_REQUEST_INVALID', message: expect.stringMatching(/already ended/) });
    expect((await r.run('order.get', { order_id: 'o-2' })).state).toBe('short');
  });

  it('several orders for one GTIN: the oldest order is served first, the rest goes to the next', async () => {
    const r = await rig();
    r.stock('A/1', MILK, 10);
    await r.run('order.pick', { order_id: 'old', lines: [{ gtin: MILK, qty: 2 }] });
    r.clock.t = T0 + 1;
    await r.run('order.pick', { order_id: 'new', lines: [{ gtin: MILK, qty: 2 }] });
    // a label wanted by both flashes both colours, oldest first
    expect(lastPatternOf(r, 'AA01')).toBe(pickPattern(['red', 'green'], 15));

    r.stock('A/1', MILK, 7); // three taken
    await r.svc.settled();
    expect((await r.run('order.get', { order_id: 'old' })).state).toBe('picked');
    expect((await r.run('order.get', { order_id: 'new' })).lines[0]).toMatchObject({ picked: 1, state: 'open' });
    expect(lastPatternOf(r, 'AA01')).toBe(green);

    r.stock('A/1', MILK, 3); // four more: one for the order, three are a shopper's
    await r.svc.settled();
    expect((await r.run('order.get', { order_id: 'new' })).state).toBe('picked');
    expect(r.svc.stats.picksByWeight).toBe(4);
    expect(r.svc.stats.unattributedItems).toBe(3);
  });

  it('a put-back (count up) does not un-pick; a count without a baseline or of another product counts nothing', async () => {
    const r = await rig();
    await r.run('order.pick', { order_id: 'p', lines: [{ gtin: MILK, qty: 3 }] });
    r.stock('A/1', MILK, 10); // first count seen: the baseline, not a pick
    await r.svc.settled();
    expect((await r.run('order.get', { order_id: 'p' })).lines[0]!.picked).toBe(0);
    r.stock('A/1', MILK, 8);
    await r.svc.settled();
    r.stock('A/1', MILK, 9); // one put back
    await r.svc.settled();
    let line = (await r.run('order.get', { order_id: 'p' })).lines[0]!;
    expect(line).toMatchObject({ picked: 2, state: 'open' });
    r.stock('A/1', MILK, null); // offline: keeps the last count
    r.stock('A/1', MILK, 8);
    await r.svc.settled();
    line = (await r.run('order.get', { order_id: 'p' })).lines[0]!;
    expect(line.picked).toBe(3);
    // a non-weight observer never confirms a pick
    await r.run('order.pick', { order_id: 'q', lines: [{ gtin: MILK, qty: 1 }] });
    r.events.emit('stockCommitted', { locationId: 'A/1', gtin: MILK, count: 2, condition: 'ok', observedBy: 'rfid', seq: 99, eventId: 'x', ts: T0 });
    r.stock('A/1', BREAD, 1); // the slot now holds bread: no milk was picked
    await r.svc.settled();
    expect((await r.run('order.get', { order_id: 'q' })).lines[0]!.picked).toBe(0);
  });

  it('the first pick after a start counts when the committed stock seeds the baseline', async () => {
    const r = await rig({ seedStock: true });
    await r.run('order.pick', { order_id: 's', lines: [{ gtin: MILK, qty: 1 }] });
    r.stock('A/1', MILK, 9);
    await r.svc.settled();
    expect((await r.run('order.get', { order_id: 's' })).state).toBe('picked');
  });

  it('colours: distinct among active orders, least recently used first; when all are taken one is reused and the report says so', async () => {
    const r = await rig();
    const colours: string[] = [];
    for (let i = 0; i < 6; i++) {
      const rep = await r.run('order.pick', { order_id: `c${i}`, lines: [{ gtin: MILK, qty: 1 }] });
      expect(rep.colour_reused).toBe(false);
      colours.push(rep.colour);
    }
    expect(colours).toEqual(['red', 'green', 'blue', 'yellow', 'magenta', 'cyan']);
    const seventh = await r.run('order.pick', { order_id: 'c6', lines: [{ gtin: MILK, qty: 1 }] });
    expect(seventh).toMatchObject({ colour: 'red', colour_reused: true });
    expect(r.svc.stats.colourReuses).toBe(1);
    // blue is freed; the next order takes it (the only free one)
    await r.run('order.cancel', { order_id: 'c2' });
    expect((await r.run('order.pick', { order_id: 'c7', lines: [{ gtin: MILK, qty: 1 }] })).colour).toBe('blue');
    // free two: the one assigned longer ago comes first
    await r.run('order.cancel', { order_id: 'c4' }); // magenta (assigned 5th)
    await r.run('order.cancel', { order_id: 'c1' }); // green (assigned 2nd)
    expect((await r.run('order.pick', { order_id: 'c8', lines: [{ gtin: MILK, qty: 1 }] })).colour).toBe('green');
    // a requested colour is honoured, and flagged when another active order has it
    expect(await r.run('order.pick', { order_id: 'c9', lines: [{ gtin: MILK, qty: 1 }], colour: 'cyan' })).toMatchObject({ colour: 'cyan', colour_reused: true });
  });

  it('a line no location holds, or whose locations have no label, is reported as unlocated, not an error', async () => {
    const r = await rig();
    const rep = await r.run('order.pick', {
      order_id: 'u',
      lines: [
        { gtin: GHOST, qty: 1 },
        { gtin: '00000000000017', qty: 1 },
        { gtin: MILK, qty: 1 },
      ],
    });
    // lines are kept in GTIN order
    expect(rep.unlocated).toEqual(['00000000000017', '00000096385074']);
    expect(rep.lines.map((l) => l.unlocated)).toEqual(['no-label', 'no-location', null]);
    expect(new Set(r.flashes.map((f) => f.mac))).toEqual(new Set(['AA01', 'AA02', 'AA03']));
    // the picker found the unlocated item elsewhere and confirms it by hand
    const c = await r.run('order.confirm', { order_id: 'u', gtin: GHOST, qty: 1 });
    expect(c.lines[1]).toMatchObject({ gtin: '00000096385074', picked: 1, by_hand: 1, state: 'picked' });
  });

  it('order.confirm: counts for a slot that is not weighed, is refused where only the shelf can confirm', async () => {
    const r = await rig();
    await r.run('order.pick', { order_id: 'h', lines: [{ gtin: SOAP, qty: 2 }, { gtin: MILK, qty: 1 }] });
    expect(lastPatternOf(r, 'CC01')).toBe(red);
    await expect(r.run('order.confirm', { order_id: 'h', gtin: MILK, qty: 1 })).rejects.toMatchObject({ code: 'SG_REQUEST_INVALID', message: expect.stringMatching(/weighed/) });
    await expect(r.run('order.confirm', { order_id: 'h', gtin: BREAD, qty: 1 })).rejects.toMatchObject({ code: 'SG_NOT_FOUND' });
    await expect(r.run('order.confirm', { order_id: 'nope', gtin: SOAP, qty: 1 })).rejects.toMatchObject({ code: 'SG_NOT_FOUND' });
    const rep = await r.run('order.confirm', { order_id: 'h', gtin: SOAP, qty: 5 }); // capped at what is open
    expect(rep.lines[0]).toMatchObject({ picked: 2, by_hand: 2, state: 'picked' });
    expect(lastPatternOf(r, 'CC01')).toBe(LED_PATTERN_OFF);
  });

  it('validates the payload: GTINs (normalised to GTIN-14), quantities, ids; merges repeated GTINs', async () => {
    const r = await rig();
    await expect(r.run('order.pick', { order_id: 'v', lines: [{ gtin: '4006381333932', qty: 1 }] })).rejects.toMatchObject({ code: 'SG_REQUEST_INVALID', message: expect.stringMatching(/lines\[0\]\.gtin|GS1/) });
    await expect(r.run('order.pick', { order_id: 'v', lines: [{ gtin: MILK, qty: 0 }] })).rejects.toMatchObject({ code: 'SG_REQUEST_INVALID' });
    await expect(r.run('order.pick', { order_id: 'v', lines: [{ gtin: MILK, qty: 1.5 }] })).rejects.toMatchObject({ code: 'SG_REQUEST_INVALID' });
    await expect(r.run('order.pick', { order_id: 'v', lines: [] })).rejects.toMatchObject({ code: 'SG_REQUEST_INVALID' });
    await expect(r.run('order.pick', { order_id: 'a/b', lines: [{ gtin: MILK, qty: 1 }] })).rejects.toMatchObject({ code: 'SG_REQUEST_INVALID' });
    await expect(r.run('order.pick', { order_id: 'v', lines: [{ gtin: MILK, qty: 1 }], colour: 'white' })).rejects.toMatchObject({ code: 'SG_REQUEST_INVALID' });
    const rep = await r.run('order.pick', { order_id: 'v', lines: [{ gtin: BREAD, qty: 1 }, { gtin: '4006381333931', qty: 1 }, { gtin: BREAD14, qty: 2 }] });
    expect(rep.lines.map((l) => [l.gtin, l.qty])).toEqual([
      [MILK, 1],
      [BREAD14, 3],
    ]);
  });

  it('order.pick is idempotent for the same order id and lines; another body for an active id is refused', async () => {
    const r = await rig();
    const a = await r.run('order.pick', { order_id: 'i', lines: [{ gtin: MILK, qty: 2 }] });
    const flashesAfterFirst = r.flashes.length;
    const b = await r.run('order.pick', { order_id: 'i', lines: [{ gtin: '4006381333931', qty: 2 }] });
    expect(b).toEqual(a);
    expect(r.flashes.length).toBe(flashesAfterFirst);
    await expect(r.run('order.pick', { order_id: 'i', lines: [{ gtin: MILK, qty: 3 }] })).rejects.toMatchObject({ code: 'SG_REQUEST_INVALID', message: expect.stringMatching(/active with other lines/) });
    await r.run('order.cancel', { order_id: 'i' });
    // a replay after it ended answers its final report, another body is refused
    expect((await r.run('order.pick', { order_id: 'i', lines: [{ gtin: MILK, qty: 2 }] })).state).toBe('cancelled');
    await expect(r.run('order.pick', { order_id: 'i', lines: [{ gtin: MILK, qty: 1 }] })).rejects.toMatchObject({ code: 'SG_REQUEST_INVALID', message: expect.stringMatching(/has ended/) });
    expect(outboxReports(r.store)).toHaveLength(1);
  });

  it('bounds: active orders and lines per order; ended orders kept answerable are bounded and their retained topic cleared', async () => {
    const r = await rig({ options: { maxOrders: 2, maxLines: 2, recentEnded: 1 } });
    await r.run('order.pick', { order_id: 'b1', lines: [{ gtin: MILK, qty: 1 }] });
    await r.run('order.pick', { order_id: 'b2', lines: [{ gtin: MILK, qty: 1 }] });
    await expect(r.run('order.pick', { order_id: 'b3', lines: [{ gtin: MILK, qty: 1 }] })).rejects.toMatchObject({ code: 'SG_BUSY' });
    await r.run('order.cancel', { order_id: 'b1' });
    await expect(r.run('order.pick', { order_id: 'b3', lines: [{ gtin: MILK, qty: 1 }, { gtin: BREAD, qty: 1 }, { gtin: SOAP, qty: 1 }] })).rejects.toMatchObject({
      code: 'SG_REQUEST_INVALID',
      message: expect.stringMatching(/at most 2/),
    });
    const schemaMax = Array.from({ length: 101 }, () => ({ gtin: MILK, qty: 1 }));
    await expect(r.run('order.pick', { order_id: 'b3', lines: schemaMax })).rejects.toMatchObject({ code: 'SG_REQUEST_INVALID', message: expect.stringMatching(/at most 100 lines/) });
    await r.run('order.cancel', { order_id: 'b2' }); // b1 drops out of the answerable list
    await expect(r.run('order.get', { order_id: 'b1' })).rejects.toMatchObject({ code: 'SG_NOT_FOUND' });
    expect((await r.run('order.get', { order_id: 'b2' })).state).toBe('cancelled');
    expect(r.published.filter((p) => p.topic === 'shelfgate/v1/st1/orders/b1').at(-1)).toEqual({ topic: 'shelfgate/v1/st1/orders/b1', body: '', retain: true });
  });

  it('the kiosk role is refused every order command but order.get', async () => {
    const r = await rig();
    for (const [cmd, payload] of [
      ['order.pick', { order_id: 'k', lines: [{ gtin: MILK, qty: 1 }] }],
      ['order.cancel', { order_id: 'k' }],
      ['order.done', { order_id: 'k' }],
      ['order.confirm', { order_id: 'k', gtin: SOAP, qty: 1 }],
    ] as const)
      await expect(r.registry.execute(cmd, payload, kiosk), cmd).rejects.toMatchObject({ code: 'SG_BUS_NOT_AUTHORIZED' });
    expect(r.flashes).toEqual([]);
    await r.run('order.pick', { order_id: 'k', lines: [{ gtin: MILK, qty: 1 }] });
    expect(((await r.registry.execute('order.get', { order_id: 'k' }, kiosk)) as PickReport).order_id).toBe('k');
  });

  it('re-flashes every open line on the interval; a failed flash is counted and sent again', async () => {
    const failing = new Set(['AA02']);
    const r = await rig({ flashFails: (mac) => failing.has(mac) });
    await r.run('order.pick', { order_id: 'f', lines: [{ gtin: MILK, qty: 1 }] });
    expect(r.svc.stats.flashFailures).toBe(1);
    failing.clear();
    r.flashes.length = 0;
    r.svc.reflash();
    await r.svc.settled();
    expect(r.flashes.map((f) => f.mac).sort()).toEqual(['AA01', 'AA02', 'AA03']);
    expect(r.svc.stats.flashes).toBe(5);
  });

  it('follows a slot assignment and label bindings that change while an order is open', async () => {
    const locations = LOCATIONS.map((l) => ({ ...l }));
    const labels: Record<string, string[]> = { 'A/1': ['AA01'], 'B/1': ['BB01'] };
    const r = await rig({ locations, labels });
    await r.run('order.pick', { order_id: 'm', lines: [{ gtin: MILK, qty: 1 }] });
    expect(r.flashes.map((f) => f.mac)).toEqual(['AA01']);
    // central moves milk from A/1 to B/1
    locations[0]!.gtin = null;
    locations[2]!.gtin = MILK;
    r.events.emit('assignmentChanged', { locationId: 'B/1', shelfId: 'B', slotId: '1', gtin: MILK, unitWeightG: 1030, by: 'central' });
    await r.svc.settled();
    expect(r.flashes.slice(1)).toEqual([
      { mac: 'BB01', pattern: red },
      { mac: 'AA01', pattern: LED_PATTERN_OFF },
    ]);
    // a technician binds a second label to B/1
    labels['B/1'] = ['BB01', 'BB02'];
    r.svc.bindingsChanged();
    await r.svc.settled();
    expect(r.flashes.slice(3)).toEqual([{ mac: 'BB02', pattern: red }]);
  });

  it('stop() removes its listener and timer and never throws', async () => {
    const r = await rig();
    await r.run('order.pick', { order_id: 's', lines: [{ gtin: MILK, qty: 1 }] });
    expect(r.events.listenerCount('stockCommitted')).toBe(1);
    expect(r.events.listenerCount('assignmentChanged')).toBe(1);
    await r.svc.stop();
    expect(r.events.listenerCount()).toBe(0);
    await expect(r.svc.stop()).resolves.toBeUndefined();
    await expect(r.run('order.pick', { order_id: 't', lines: [{ gtin: MILK, qty: 1 }] })).rejects.toMatchObject({ code: 'SG_STOPPED' });
  });
});

