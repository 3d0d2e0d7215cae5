/**
 * The outbox byte bound and its policy (src/sync/buffer.ts) on a real SQLite file: compaction of
 * superseded stock levels, then dropping the oldest low-priority events, exact counters, gaps
 * declared to central, a full disk (SQLITE_FULL), and ingest that never stops.
 */
import { describe, expect, it } from 'vitest';
import { EventBus } from '../../src/core/events';
import { builtinKinds } from '../helpers/features';
import { join } from 'node:path';
import { syncSchema, type SyncConfig } from '../../src/config/schema';
import { silentLogger } from '../../src/log';
import { Store, StoreWriteError } from '../../src/store/store';
import { OutboxBuffer } from '../../src/sync/buffer';
import { HttpsTransport } from '../../src/sync/https';
import { SyncService } from '../../src/sync/service';
import { CentralSimulator } from '../../simulators/central';
import { waitFor, useCleanups, tmp as tmpDir } from '../helpers/daemon';

const STORE = 'st1';
const MiB = 1024 * 1024;
const log = silentLogger();
const cleanups = useCleanups();

const tmp = (): string => tmpDir('sg-buf-');

async function openStore(dir: string): Promise<Store> {
  const s = new Store({ path: join(dir, 'shelfgate.db'), synchronous: 'normal', flushIntervalMs: 5, storeId: STORE, log });
  await s.start();
  cleanups.push(() => s.stop());
  return s;
}

function cfg(extra: Record<string, unknown> = {}): SyncConfig {
  return syncSchema.parse({ transport: 'none', buffer_max_bytes: MiB, backoff: { initial_ms: 20, max_ms: 200 }, long_poll_s: 1, ...extra });
}

const bus = { publish: async () => {} };
const locations = {
  assign: async (): Promise<never> => {
    throw new Error('no slot assignments in these tests');
  },
};
const events = new EventBus(silentLogger());
const pad = 'x'.repeat(400);

interface Appended {
  seq: number;
  eventId: string;
  deviceId: string;
  kind: string;
}

/** Appends interleaved stock events (8 slots) and anomalies/conditions, in commits of 100. */
async function fill(store: Store, rounds: number, from = 0): Promise<Appended[]> {
  const out: Appended[] = [];
  for (let r = from; r < from + rounds; r++) {
    const ps: Promise<Appended>[] = [];
    for (let k = 0; k < 100; k++) {
      const i = r * 100 + k;
      const d = `sh1/${i % 8}`;
      const kind = i % 5 === 0 ? 'condition' : i % 5 <= 2 ? 'anomaly' : (['pick', 'put', 'count'] as const)[i % 3]!;
      const priority = kind === 'condition' ? 2 : kind === 'anomaly' ? 1 : 0;
      ps.push(store.appendEvent({ deviceId: d, kind, priority, payload: { count: i, pad } }).then((a) => ({ ...a, deviceId: d, kind })));
    }
    out.push(...(await Promise.all(ps)));
  }
  return out;
}

function remaining(store: Store): Map<string, { seq: number; kind: string; deviceId: string }> {
  const rows = store.peekOutbox(0, 1_000_000);
  return new Map(rows.map((r) => [r.eventId, { seq: r.seq, kind: r.kind, deviceId: r.deviceId }]));
}

function gapsOf(store: Store): { from_seq: number; to_seq: number; reason: string }[] {
  return store.transaction((db) => db.prepare('SELECT from_seq, to_seq, reason FROM sync_gaps ORDER BY from_seq').all()) as { from_seq: number; to_seq: number; reason: string }[];
}

describe('outbox buffer policy', () => {
  it('holds a 1 MiB bound: compacts stock levels, then drops the oldest low-priority events, counts every drop exactly; ingest continues', async () => {
    const dir = tmp();
    const store = await openStore(dir);
    const sync = new SyncService({ storeId: STORE, config: cfg(), store, bus, events, kinds: builtinKinds(), locations, transport: null, log, bufferCheckMs: 50, statusIntervalMs: 100 });
    await sync.start();
    cleanups.push(() => sync.stop());

    const appended = await fill(store, 40); // 4000 events, ~1.7 MiB of payload, 60 % of it low-priority
    await waitFor(() => store.outboxStats().bytes <= MiB, 5000, 'outbox back under the bound');
    const left = remaining(store);
    expect(store.outboxStats().bytes).toBeLessThanOrEqual(MiB);

    // the newest stock level of every slot is still there
    for (let d = 0; d < 8; d++) {
      const newest = appended.filter((a) => a.deviceId === `sh1/${d}` && builtinKinds().policyOf(a.kind)?.compaction === 'stock-level').at(-1)!;
      expect(left.has(newest.eventId)).toBe(true);
    }
    // counters are exact, by kind
    const gone = appended.filter((a) => !left.has(a.eventId));
    const byKind = (kinds: string[]) => {
      const m: Record<string, number> = {};
      for (const a of gone) if (kinds.includes(a.kind)) m[a.kind] = (m[a.kind] ?? 0) + 1;
      return m;
    };
    const st = sync.status();
    expect(st.compacted_by_kind).toEqual(byKind(['pick', 'put', 'count']));
    expect(st.dropped_by_kind).toEqual(byKind(['anomaly', 'condition']));
    expect(st.compacted).toBeGreaterThan(0);
    expect(st.dropped).toBeGreaterThan(0);
    expect(st.compacted + st.dropped).toBe(gone.length);
    expect(st.backlog_count).toBe(left.size);
    // no stock event was "dropped"; the gaps cover exactly the deleted seqs
    const gapSeqs = new Set<number>();
    for (const g of gapsOf(store)) for (let s = g.from_seq; s <= g.to_seq; s++) gapSeqs.add(s);
    expect([...gapSeqs].sort((a, b) => a - b)).toEqual(gone.map((a) => a.seq).sort((a, b) => a - b));

    // ingest continues, and the bound still holds
    const more = await fill(store, 10, 40);
    expect(more).toHaveLength(1000);
    await waitFor(() => store.outboxStats().bytes <= MiB, 5000, 'still under the bound');

    // counters are persisted (meta): a restart reports the same numbers
    const before = sync.status();
    await sync.stop();
    const b2 = new OutboxBuffer({ store, maxBytes: MiB, kinds: builtinKinds(), log });
    await b2.start();
    cleanups.push(() => b2.stop());
    expect(b2.stats()).toMatchObject({ compacted: before.compacted, dropped: before.dropped, compacted_by_kind: before.compacted_by_kind, dropped_by_kind: before.dropped_by_kind });
  });

  it('declares dropped and compacted seqs as gaps, so central\'s contiguous_seq reaches the last seq', async () => {
    const dir = tmp();
    const store = await openStore(dir);
    const buffer = new OutboxBuffer({ store, maxBytes: MiB, kinds: builtinKinds(), log });
    await buffer.start();
    cleanups.push(() => buffer.stop());
    await fill(store, 40);
    await waitFor(() => store.outboxStats().bytes <= MiB, 5000, 'under the bound');
    await buffer.stop();
    const left = remaining(store);
    const lastSeq = store.outboxStats().lastSeq;

    const central = new CentralSimulator({ log });
    await central.start();
    cleanups.push(() => central.stop());
    const config = cfg({ transport: 'https', https: { url: central.url }, batch_max_events: 100 });
    const sync = new SyncService({ storeId: STORE, config, store, bus, events, kinds: builtinKinds(), locations, transport: new HttpsTransport({ config: config.https!, storeId: STORE, log }), log, idlePollMs: 50 });
    await sync.start();
    cleanups.push(() => sync.stop());
    await waitFor(() => store.outboxStats().count === 0, 15_000, 'drained');
    await waitFor(() => gapsOf(store).length === 0, 5000, 'gaps sent');
    const got = central.receivedEvents(STORE);
    expect(got).toHaveLength(left.size);
    expect(new Set(got.map((e) => e.event_id))).toEqual(new Set(left.keys()));
    expect(central.stats().stores[STORE]).toMatchObject({ contiguous_seq: lastSeq, out_of_order_devices: [] });
  });

  it('a full disk (SQLITE_FULL): the policy compacts at once and reports it; ingest resumes; nothing crashes', async () => {
    const dir = tmp();
    const store = await openStore(dir);
    const sync = new SyncService({ storeId: STORE, config: cfg({ buffer_max_bytes: 100 * MiB }), store, bus, events, kinds: builtinKinds(), locations, transport: null, log, bufferCheckMs: 50 });
    await sync.start();
    cleanups.push(() => sync.stop());
    // many superseded stock levels
    for (let r = 0; r < 10; r++) {
      await Promise.all(Array.from({ length: 100 }, (_, k) => store.appendEvent({ deviceId: `sh1/${k % 4}`, kind: 'pick', payload: { count: r * 100 + k, pad } })));
    }
    expect(store.outboxStats().count).toBe(1000);
    const db = store.connection!;
    db.pragma(`max_page_count = ${(db.pragma('page_count', { simple: true }) as number) + 2}`);
    const big = 'y'.repeat(3000);
    const failed = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => store.appendEvent({ deviceId: 'sh1/9', kind: 'count', payload: { count: i, big } })));
    expect(failed.every((r) => r.status === 'rejected')).toBe(true);
    expect((failed[0] as PromiseRejectedResult).reason).toBeInstanceOf(StoreWriteError);
    await waitFor(() => sync.status().disk_full_at !== null && sync.status().compacted > 0, 5000, 'forced compaction reported');
    expect(sync.status().compacted).toBe(996); // all but the newest level of each of the 4 slots
    expect(store.outboxStats().count).toBe(4);
    // the space freed is used again
    const ok = await store.appendEvent({ deviceId: 'sh1/9', kind: 'count', payload: { count: 1, big } });
    expect(ok.seq).toBeGreaterThan(1000);
  });
});
