/**
 * What the bus shows of a slot is exactly what was committed with an event, in commit order
 * (defect: the retained stock and alert used to be built from the tracker's live state after the
 * event's publish was awaited, so a newer reading in between reached the bus before its commit).
 *
 * Real SQLite, the real ShelfService and core modules; the source is an in-memory emitter so the
 * test decides exactly when the next reading arrives: inside the publish of the previous event,
 * after that event's batch committed and before its retained stock went out.
 */
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EventBus } from '../../src/core/events';
import { Locations } from '../../src/core/locations';
import { composeMigrations } from '../../src/core/gateway';
import type { Source } from '../../src/core/sources/types';
import { BUILTIN_FEATURES } from '../../src/features';
import { shelvesSlice } from '../../src/features/shelves/config';
import { CalibrationRepository } from '../../src/features/shelves/repository';
import { ShelfService } from '../../src/features/shelves/service';
import type { WeightReading } from '../../src/features/shelves/types';
import { validateConfig } from '../../src/config/load';
import { loadDefinitions } from '../../src/devices/definitions';
import { silentLogger } from '../../src/log';
import { Store } from '../../src/store/store';
import { tmp, waitFor } from '../helpers/daemon';

const UNIT = 250;
const log = silentLogger();

class FakeSource extends EventEmitter {
  readonly name = 'fake';
  readonly devices = ['bus1.1'];
  readonly stats = { polls: 0, readings: 0, timeouts: 0, crcErrors: 0, deviceErrors: 0, invalidFrames: 0, noiseBytes: 0, lateAnswers: 0 };
  isOnline(): boolean {
    return true;
  }
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  /** `window` identical readings: one settled weight of `items` items. */
  settle(items: number): void {
    for (let i = 0; i < 3; i++) this.emit('reading', { sensor: 'bus1.1', grams: items * UNIT, deviceStable: null, overload: false, underload: false, ts: Date.now(), rxMono: 0 } satisfies WeightReading);
  }
}

describe('shelves: publish exactly what was committed', () => {
  const stops: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const s of stops.splice(0).reverse()) await s();
  });

  it('a reading that arrives between a commit and its retained stock never reaches the bus before its own commit', async () => {
    const dir = tmp();
    const raw = {
      store_id: 'st1',
      data_dir: dir,
      stability: { window: 3, max_spread_g: 3 },
      buses: [{ id: 'bus1', path: 'mock://unused', model: 'generic-modbus-loadcell' }],
      shelves: [{ id: 'sh1', slots: [{ id: 'a', sensor: { bus: 'bus1', address: 1 }, gtin: '04006381333931', unit_weight_g: UNIT }] }],
    };
    const { config, issues } = validateConfig(raw, loadDefinitions(), BUILTIN_FEATURES);
    expect(issues).toEqual([]);
    // a slow batch (50 ms): the next reading's event is certainly in a later batch than the one just committed
    const store = new Store({ path: join(dir, 'sg.db'), synchronous: 'full', flushIntervalMs: 50, storeId: 'st1', log, migrations: composeMigrations(BUILTIN_FEATURES) });
    const events = new EventBus(log);
    const locations = new Locations({ shelves: config!.shelves, store, events, log });
    const source = new FakeSource();
    const published: Array<{ topic: string; body: Record<string, unknown>; committedCounts: Array<number | null> }> = [];
    let injected = false;
    const bus = {
      publish: async (topic: string, payload: string | Buffer) => {
        const body = JSON.parse(payload.toString()) as Record<string, unknown>;
        // what SQLite holds at the moment of the publish: the counts of the committed events of slot a
        const committedCounts = store.peekOutbox(0, 1000).map((r) => (JSON.parse(r.payload) as { count: number | null }).count);
        published.push({ topic, body, committedCounts });
        if (!injected && topic.endsWith('/event') && body.kind === 'pick') {
          injected = true;
          source.settle(4); // another pick, right now: between the first pick's commit and its retained stock
        }
      },
    };
    const shelves = new ShelfService({
      storeId: 'st1',
      config: shelvesSlice(config!),
      store,
      bus,
      events,
      locations,
      calibration: new CalibrationRepository(store),
      sources: [source as unknown as Source<WeightReading>],
      log,
    });
    await store.start();
    stops.push(() => store.stop());
    await locations.start();
    await shelves.start();
    stops.push(() => shelves.stop());

    source.settle(10); // first count
    await waitFor(() => published.some((p) => p.topic.endsWith('/stock') && p.body.count === 10), 5_000, 'first count on the bus');
    source.settle(7); // pick 3; while its event is published, another pick to 4 arrives
    await waitFor(() => published.some((p) => p.topic.endsWith('/stock') && p.body.count === 4), 5_000, 'the second pick on the bus');

    const stock = published.filter((p) => p.topic.endsWith('/stock'));
    // in commit order, each exactly once
    expect(stock.map((p) => p.body.count)).toEqual([10, 7, 4]);
    // and never ahead of SQLite: every count shown was already committed when it was published
    for (const p of stock) expect(p.committedCounts).toContain(p.body.count);
    const picks = published.filter((p) => p.topic.endsWith('/event') && p.body.kind === 'pick').map((p) => p.body.count);
    expect(picks).toEqual([7, 4]);
  });
});
