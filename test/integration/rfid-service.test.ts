/**
 * RfidService with real SQLite, the real core modules and smoother, fed by in-memory sources the
 * test drives read by read (real timers, short settings). Proves: arrivals and departures go to
 * the outbox before the bus; zone counts per GTIN go to the outbox (previous_count from SQLite),
 * the count of the location's GTIN is the location's stock (stockCommitted), other GTINs are not;
 * EPCs without a GTIN are counted on the bus only; every payload validates against the contract's
 * schema (ajv 2020-12, docs/events); a restart reports no unchanged count and drops what is gone;
 * raw reads are rate-limited and counted; stop() removes every listener.
 */
import { EventEmitter } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import { afterEach, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load';
import { EventBus, type StockCommitted } from '../../src/core/events';
import { composeMigrations } from '../../src/core/gateway';
import { Locations } from '../../src/core/locations';
import type { Source } from '../../src/core/sources/types';
import { loadDefinitions } from '../../src/devices/definitions';
import { BUILTIN_FEATURES } from '../../src/features';
import { rfidSlice } from '../../src/features/rfid/config';
import type { TagRead } from '../../src/features/rfid/m100-source';
import { ZoneCountRepository, ZonePresenceRepository } from '../../src/features/rfid/repository';
import { RfidService } from '../../src/features/rfid/service';
import { silentLogger } from '../../src/log';
import { Store } from '../../src/store/store';
import { encodeSgtin96, sgtinGtin14 } from '../../simulators/rfid/sgtin';
import { ROOT, tmp, waitFor } from '../helpers/daemon';

const log = silentLogger();
const CP = '0614141';
const ITEM_A = '000001';
const ITEM_B = '000002';
const GTIN_A = sgtinGtin14(CP, ITEM_A);
const GTIN_B = sgtinGtin14(CP, ITEM_B);
const epc = (item: string, serial: number): string => encodeSgtin96({ filter: 1, companyPrefix: CP, itemReference: item, serial }).toString('hex').toUpperCase();
/** A GID-96 EPC (header 0x35): not an SGTIN, so no GTIN. */
const RAW_EPC = '350000000000000000000ABC';

const eventsDir = join(ROOT, 'docs', 'events');
const ajv = new Ajv2020({ strict: true, strictRequired: false, allErrors: true });
addFormats(ajv);
for (const f of readdirSync(eventsDir).filter((f) => f.endsWith('.schema.json'))) ajv.addSchema(JSON.parse(readFileSync(join(eventsDir, f), 'utf8')));
function expectValid(kind: string, payload: unknown): void {
  const v = ajv.getSchema(`https://shelfgate.dev/schemas/central/v1/events/${kind}.schema.json`)!;
  expect(v(payload) ? [] : v.errors, `${kind} ${JSON.stringify(payload)}`).toEqual([]);
}

class FakeReader extends EventEmitter {
  readonly stats = { polls: 0, readings: 0, timeouts: 0, crcErrors: 0, deviceErrors: 0, invalidFrames: 0, noiseBytes: 0, lateAnswers: 0 };
  constructor(
    readonly name: string,
    readonly devices: string[] = [name],
  ) {
    super();
  }
  isOnline(): boolean {
    return true;
  }
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  read(epcHex: string, rssi = -50): void {
    this.emit('reading', { sensor: this.name, reader: this.name, antenna: 1, epcHex, rssi, ts: Date.now(), rxMono: performance.now() } satisfies TagRead);
  }
}

interface Rig {
  store: Store;
  locations: Locations;
  svc: RfidService;
  r1: FakeReader;
  r2: FakeReader;
  published: Array<{ topic: string; payload: string; retain: boolean }>;
  stock: StockCommitted[];
  outbox(kind?: string): Array<{ deviceId: string; kind: string; payload: Record<string, unknown> }>;
  retained(suffix: string): Record<string, unknown> | null | undefined;
}

const stops: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const s of stops.splice(0).reverse()) await s();
});

async function rig(dir: string, rfid: Record<string, unknown> = {}): Promise<Rig> {
  const raw = {
    store_id: 'st1',
    data_dir: dir,
    buses: [{ id: 'bus1', path: 'mock://unused', model: 'generic-modbus-loadcell' }],
    shelves: [
      { id: 'g1', slots: [{ id: 'a', gtin: GTIN_A }] },
      { id: 'back', slots: [{ id: 'room' }] },
    ],
    rfid: {
      readers: [
        { id: 'r1', kind: 'm100', path: 'mock://r1', probe_ms: 50 },
        { id: 'r2', kind: 'm100', path: 'mock://r2', probe_ms: 50 },
      ],
      zones: [
        { id: 'floor', location: 'g1/a', antennas: [{ reader: 'r1' }], arrive_after: 2, window_ms: 1000, read_cycle_ms: 0, depart_after_ms: 400 },
        { id: 'backroom', location: 'back/room', antennas: [{ reader: 'r2' }], arrive_after: 2, window_ms: 1000, read_cycle_ms: 0, depart_after_ms: 400 },
      ],
      tick_ms: 20,
      ...rfid,
    },
  };
  const { config, issues } = validateConfig(raw, loadDefinitions(), BUILTIN_FEATURES);
  expect(issues).toEqual([]);
  const store = new Store({ path: join(dir, 'sg.db'), synchronous: 'full', flushIntervalMs: 5, storeId: 'st1', log, migrations: composeMigrations(BUILTIN_FEATURES) });
  const events = new EventBus(log);
  const locations = new Locations({ shelves: config!.shelves, store, events, log });
  const r1 = new FakeReader('r1');
  const r2 = new FakeReader('r2');
  const published: Rig['published'] = [];
  const bus = {
    publish: async (topic: string, payload: string | Buffer, o?: { retain?: boolean }) => {
      published.push({ topic, payload: payload.toString(), retain: !!o?.retain });
    },
  };
  const stock: StockCommitted[] = [];
  events.on(stock, 'stockCommitted', (s) => stock.push(s));
  const svc = new RfidService({
    storeId: 'st1',
    config: rfidSlice(config!)!,
    store,
    bus,
    events,
    locations,
    repo: new ZoneCountRepository(store),
    presence: new ZonePresenceRepository(store),
    sources: [r1, r2] as unknown as Array<Source<TagRead>>,
    log,
  });
  await store.start();
  await locations.start();
  await svc.start();
  const stopAll = async () => {
    await svc.stop();
    await store.stop();
  };
  stops.push(stopAll);
  return {
    store,
    locations,
    svc,
    r1,
    r2,
    published,
    stock,
    outbox: (kind) =>
      store
        .peekOutbox(0, 10_000)
        .filter((r) => kind === undefined || r.kind === kind)
        .map((r) => ({ deviceId: r.deviceId, kind: r.kind, payload: JSON.parse(r.payload) as Record<string, unknown> })),
    retained: (suffix) => {
      const hit = published.filter((p) => p.retain && p.topic.endsWith(suffix)).at(-1);
      return hit === undefined ? undefined : hit.payload === '' ? null : (JSON.parse(hit.payload) as Record<string, unknown>);
    },
  };
}

describe('RfidService', () => {
  it('arrivals, counts per GTIN as outbox events and location stock, departures; all payloads per the contract', async () => {
    const r = await rig(tmp('sg-rfid-svc-'));
    await waitFor(() => !r.svc.settling, 5000, 'settled');
    // floor (location g1/a holds GTIN_A): two A tags, one B tag, one raw EPC
    const floor = [epc(ITEM_A, 1), epc(ITEM_A, 2), epc(ITEM_B, 3), RAW_EPC];
    for (let i = 0; i < 2; i++) for (const e of floor) r.r1.read(e);
    // the back room: one A tag
    r.r2.read(epc(ITEM_A, 9));
    r.r2.read(epc(ITEM_A, 9));
    await waitFor(() => r.retained('/rfid/zone/floor/count/none')?.count === 1 && r.retained(`/rfid/zone/backroom/count/${GTIN_A}`)?.count === 1, 5000, 'counts on the bus');
    expect(r.retained(`/rfid/zone/floor/count/${GTIN_A}`)).toMatchObject({ zone_id: 'floor', location_id: 'g1/a', gtin: GTIN_A, count: 2 });
    expect(r.retained(`/rfid/zone/floor/count/${GTIN_B}`)).toMatchObject({ gtin: GTIN_B, count: 1 });

    const arrivals = r.outbox('arrival');
    expect(arrivals.map((a) => a.payload.epc).sort()).toEqual([...floor, epc(ITEM_A, 9)].sort());
    expect(arrivals.every((a) => a.deviceId === `rfid/${a.payload.zone_id as string}`)).toBe(true);
    const rawArrival = arrivals.find((a) => a.payload.epc === RAW_EPC)!.payload;
    expect(rawArrival).toMatchObject({ gtin: null, serial: null, reader_id: 'r1', antenna: 1, rssi_dbm: -50 });
    expect(arrivals.find((a) => a.payload.epc === epc(ITEM_A, 1))!.payload).toMatchObject({ gtin: GTIN_A, serial: '1' });
    for (const a of arrivals) expectValid('arrival', a.payload);

    // zone counts: per GTIN, none for the raw EPC; previous_count null the first time
    const counts = r.outbox('zone_count');
    expect(counts.map((c) => [c.deviceId, c.payload.gtin, c.payload.count, c.payload.previous_count]).sort()).toEqual(
      [
        ['rfid/backroom', GTIN_A, 1, null],
        ['rfid/floor', GTIN_A, 2, null],
        ['rfid/floor', GTIN_B, 1, null],
      ].sort(),
    );
    for (const c of counts) expectValid('zone_count', c.payload);
    // the location's stock is the count of its GTIN (g1/a holds A); the back room holds no GTIN
    await waitFor(() => r.stock.length === 1, 5000, 'stockCommitted');
    expect(r.stock[0]).toMatchObject({ locationId: 'g1/a', gtin: GTIN_A, count: 2, observedBy: 'rfid' });
    // arrival events on the bus after their commit, with seq
    const busArrivals = r.published.filter((p) => p.topic === 'shelfgate/v1/st1/rfid/zone/floor/event').map((p) => JSON.parse(p.payload) as Record<string, unknown>);
    expect(busArrivals).toHaveLength(4);
    expect(busArrivals.every((a) => typeof a.seq === 'number' && a.kind === 'arrival')).toBe(true);

    // the A tags leave the floor: two departures, count 2 -> 0, the stock follows, retained cleared
    const departed = r.outbox('departure').length;
    const until = Date.now() + 5000;
    while (r.outbox('departure').length < departed + 4 && Date.now() < until) {
      // every floor tag goes unseen; the back-room tag is still read, so it stays
      r.r2.read(epc(ITEM_A, 9));
      await new Promise((res) => setTimeout(res, 50));
    }
    const deps = r.outbox('departure');
    expect(deps.map((d) => d.payload.epc).sort()).toEqual([...floor].sort());
    for (const d of deps) {
      expectValid('departure', d.payload);
      expect(d.payload).toMatchObject({ zone_id: 'floor', reason: 'unseen', reader_id: 'r1' });
    }
    await waitFor(() => r.retained(`/rfid/zone/floor/count/${GTIN_A}`) === null, 5000, 'A count cleared on the bus');
    // the two A tags may depart in one tick or in two: each count's previous_count is the one before
    const floorA = r.outbox('zone_count').filter((c) => c.deviceId === 'rfid/floor' && c.payload.gtin === GTIN_A).map((c) => [c.payload.previous_count, c.payload.count]);
    expect(floorA.at(-1)![1]).toBe(0);
    floorA.forEach(([prev], i) => expect(prev).toBe(i === 0 ? null : floorA[i - 1]![1]));
    await waitFor(() => r.stock.at(-1)?.count === 0, 5000, 'stock 0');
    expect(r.outbox('zone_count').some((c) => c.deviceId === 'rfid/backroom' && c.payload.count === 0)).toBe(false);
    expect(r.svc.zonesReport({ zone: 'backroom' })).toEqual([
      expect.objectContaining({ zone_id: 'backroom', location_id: 'back/room', tags_present: 1, counts: [{ gtin: GTIN_A, count: 1 }], tags: [expect.objectContaining({ epc: epc(ITEM_A, 9), gtin: GTIN_A, reader_id: 'r2' })] }),
    ]);
    expect(r.svc.metrics()).toMatchObject({ rfid_arrivals_total: 5, rfid_departures_total: 4, rfid_raw_epcs_total: 1, rfid_persist_failures_total: 0 });

    // stop removes every listener and timer
    await r.svc.stop();
    expect(r.r1.listenerCount('reading') + r.r2.listenerCount('reading')).toBe(0);
  });

  it('after a restart: a tag still there is no new arrival, one gone departs, an unchanged count is not reported again and a GTIN no longer seen drops to 0', async () => {
    const dir = tmp('sg-rfid-restart-');
    const a = await rig(dir);
    await waitFor(() => !a.svc.settling, 5000, 'settled');
    for (let i = 0; i < 2; i++) for (const e of [epc(ITEM_A, 1), epc(ITEM_B, 2)]) a.r1.read(e);
    await waitFor(() => a.outbox('zone_count').length === 2, 5000, 'two counts');
    const before = a.outbox().length;
    for (const s of stops.splice(0).reverse()) await s();

    const b = await rig(dir);
    expect(b.svc.settling).toBe(true);
    // both tags are present again at once, restored from SQLite (no arrival)
    expect(b.svc.zonesReport({ zone: 'floor', tags: false })[0]).toMatchObject({ tags_present: 2 });
    // only the A tag is still there; B left while the gateway was down
    const keepReading = setInterval(() => b.r1.read(epc(ITEM_A, 1)), 30);
    stops.push(async () => clearInterval(keepReading));
    await waitFor(() => !b.svc.settling, 10_000, 'settled after restart');
    await waitFor(() => b.outbox('zone_count').length === 3, 5000, 'the B count dropping to 0');
    const after = b.outbox('zone_count').slice(2);
    expect(after.map((c) => [c.payload.gtin, c.payload.count, c.payload.previous_count])).toEqual([[GTIN_B, 0, 1]]);
    // B departed (unseen for depart_after_ms after the restart); A, read all along, did not arrive again
    expect(b.outbox('departure').map((x) => x.payload.epc)).toEqual([epc(ITEM_B, 2)]);
    expect(b.outbox('arrival').filter((x) => x.payload.epc === epc(ITEM_A, 1))).toHaveLength(1);
    expect(b.outbox().length - before).toBe(2); // B's departure and its count
    expect(b.svc.zonesReport({ zone: 'floor', tags: false })[0]).toMatchObject({ tags_present: 1 });
  });

  it('a zone whose reader is offline keeps its tags (no departures) and gives them time to be read again when it is back', async () => {
    const r = await rig(tmp('sg-rfid-blind-'));
    await waitFor(() => !r.svc.settling, 5000, 'settled');
    const tag = epc(ITEM_A, 7);
    r.r2.read(tag);
    r.r2.read(tag);
    await waitFor(() => r.outbox('arrival').length === 1, 5000, 'arrival');
    r.r2.emit('availability', { sensor: 'r2', online: false, reason: 'silent', ts: Date.now() });
    // the floor tag below arrives and departs (400 ms unseen) while the back room stays blind
    r.r1.read(epc(ITEM_B, 8));
    r.r1.read(epc(ITEM_B, 8));
    await waitFor(() => r.outbox('departure').some((d) => d.payload.epc === epc(ITEM_B, 8)), 5000, 'the floor tag departed');
    expect(r.outbox('departure').some((d) => d.payload.epc === tag)).toBe(false);
    expect(r.svc.zonesReport({ zone: 'backroom', tags: false })[0]).toMatchObject({ tags_present: 1 });
    r.r2.emit('availability', { sensor: 'r2', online: true, ts: Date.now() });
    // back, and the tag really gone: it departs depart_after_ms later
    await waitFor(() => r.outbox('departure').some((d) => d.payload.epc === tag), 5000, 'departure after the reader came back');
  });

  it('when the location is assigned another GTIN, its stock becomes the zone count of that GTIN', async () => {
    const r = await rig(tmp('sg-rfid-assign-'));
    await waitFor(() => !r.svc.settling, 5000, 'settled');
    for (let i = 0; i < 2; i++) for (const e of [epc(ITEM_B, 1), epc(ITEM_B, 2), epc(ITEM_A, 3)]) r.r1.read(e);
    await waitFor(() => r.stock.length === 1, 5000, 'stock of A');
    expect(r.stock[0]).toMatchObject({ locationId: 'g1/a', gtin: GTIN_A, count: 1 });
    const counts = r.outbox('zone_count').length;
    await r.locations.assign('g1', 'a', { gtin: GTIN_B }, 'test');
    await waitFor(() => r.stock.length === 2, 5000, 'stock of B');
    expect(r.stock[1]).toMatchObject({ locationId: 'g1/a', gtin: GTIN_B, count: 2, observedBy: 'rfid' });
    // carried by a zone_count of B (its count unchanged: previous_count = count)
    expect(r.outbox('zone_count').slice(counts).map((c) => [c.payload.gtin, c.payload.count, c.payload.previous_count])).toEqual([[GTIN_B, 2, 2]]);
  });

  it('raw reads: published up to max_per_s, the rest dropped and counted', async () => {
    const r = await rig(tmp('sg-rfid-raw-'), { raw_reads: { enabled: true, max_per_s: 5 } });
    for (let i = 0; i < 20; i++) r.r1.read(epc(ITEM_A, 1));
    await waitFor(() => r.published.filter((p) => p.topic === 'shelfgate/v1/st1/rfid/reader/r1/read').length === 5, 5000, 'five raw reads');
    expect(r.svc.stats).toMatchObject({ rawReadsPublished: 5, rawReadsDropped: 15, reads: 20 });
    expect(JSON.parse(r.published.find((p) => p.topic.endsWith('/read'))!.payload)).toMatchObject({ reader_id: 'r1', antenna: 1, zone_id: 'floor', epc: epc(ITEM_A, 1), gtin: GTIN_A, rssi_dbm: -50 });
  });
});
