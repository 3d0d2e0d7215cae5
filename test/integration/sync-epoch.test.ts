/**
 * Contract 1.1 on the gateway side, against the reference central over HTTP:
 * - a replaced gateway (new, empty database: seq starts at 1 again) is a new epoch, so its events
 *   are accepted instead of every one being rejected `seq_conflict` and parked;
 * - gaps with no event left to carry them go alone (`events: []`), so central's contiguous_seq does
 *   not wait for the next event.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { syncSchema, type SyncConfig } from '../../src/config/schema';
import { EventBus } from '../../src/core/events';
import { silentLogger } from '../../src/log';
import { Store } from '../../src/store/store';
import { HttpsTransport } from '../../src/sync/https';
import { SyncRepository } from '../../src/sync/repository';
import { SyncService } from '../../src/sync/service';
import { CentralSimulator } from '../../simulators/central';
import { builtinKinds } from '../helpers/features';
import { tmp, useCleanups, waitFor } from '../helpers/daemon';

const STORE = 'st-epoch';
const log = silentLogger();
const cleanups = useCleanups();
const bus = { publish: async () => {} };
const locations = {
  assign: async (): Promise<never> => {
    throw new Error('no slot assignments in these tests');
  },
};

async function gateway(central: CentralSimulator, extra: Record<string, unknown> = {}) {
  const store = new Store({ path: join(tmp('sg-epoch-'), 'shelfgate.db'), synchronous: 'normal', flushIntervalMs: 5, storeId: STORE, log });
  await store.start();
  cleanups.push(() => store.stop());
  const config: SyncConfig = syncSchema.parse({ transport: 'https', https: { url: central.url }, backoff: { initial_ms: 20, max_ms: 200 }, long_poll_s: 1, ...extra });
  const sync = new SyncService({ storeId: STORE, config, store, bus, events: new EventBus(log), kinds: builtinKinds(), locations, transport: new HttpsTransport({ config: config.https!, storeId: STORE, log }), log, idlePollMs: 50 });
  return { store, sync };
}

const pick = (store: Store, i: number) => store.appendEvent({ deviceId: 'sh1/a', kind: 'pick', priority: 0, payload: { shelf_id: 'sh1', slot_id: 'a', count: 100 - i, delta: -1 } });

describe('sync: contract 1.1 on the gateway side', () => {
  it('a replaced gateway (empty database, seq from 1 again) is a new epoch: nothing rejected, nothing parked', async () => {
    const central = new CentralSimulator({ log });
    await central.start();
    cleanups.push(() => central.stop());

    const old = await gateway(central);
    for (let i = 0; i < 5; i++) await pick(old.store, i);
    await old.sync.start();
    await waitFor(() => old.store.outboxStats().count === 0, 10_000, 'the first gateway drained');
    await old.sync.stop();

    // the SD card is replaced: a new database, the same store
    const fresh = await gateway(central);
    expect(fresh.store.epoch()).not.toBe(old.store.epoch());
    for (let i = 0; i < 3; i++) await pick(fresh.store, 10 + i);
    await fresh.sync.start();
    cleanups.push(() => fresh.sync.stop());
    await waitFor(() => fresh.store.outboxStats().count === 0, 10_000, 'the replacement drained');

    const st = central.stats().stores[STORE]!;
    expect(st.rejected).toBe(0);
    expect(st.events).toBe(8);
    expect(st.epochs.map((e) => e.epoch)).toEqual([old.store.epoch(), fresh.store.epoch()]);
    expect(new SyncRepository(fresh.store).parkedCount()).toBe(0);
    expect(fresh.sync.status()).toMatchObject({ parked: 0 });
  });

  it('gaps with no event left to carry them are sent alone: central\'s contiguous_seq reaches the last seq', async () => {
    const central = new CentralSimulator({ log });
    await central.start();
    cleanups.push(() => central.stop());
    // conditions are held back (not uploaded) and later dropped by the buffer policy: then no event
    // is left to carry their gap
    const gw = await gateway(central, { upload_conditions: false });
    await gw.sync.start();
    cleanups.push(() => gw.sync.stop());
    for (let i = 0; i < 3; i++) await pick(gw.store, i);
    await waitFor(() => central.stats().stores[STORE]?.contiguous_seq === 3, 10_000, 'the picks at central');
    for (let i = 0; i < 2; i++) await gw.store.appendEvent({ deviceId: 'sh1/a', kind: 'condition', priority: 2, payload: { condition: 'unstable' } });
    const repo = new SyncRepository(gw.store);
    repo.removeForBuffer([4, 5], 'dropped_buffer_full', 'sync.dropped.', () => [[4, 5]]);
    expect(gw.store.outboxStats()).toMatchObject({ count: 0, lastSeq: 5 });
    await waitFor(() => central.stats().stores[STORE]?.contiguous_seq === 5, 10_000, "central's contiguous_seq at 5 without another event");
    expect(repo.pendingGaps(10)).toEqual([]);
  });
});
