/**
 * SyncService against a scripted transport (exact feeds and failures), with a real Store on a tmp
 * SQLite file and a bus that records every publish.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { EventBus } from '../../src/core/events';
import { builtinKinds } from '../helpers/features';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { syncSchema, type SyncConfig } from '../../src/config/schema';
import { ErrorCode, ShelfgateError } from '../../src/errors';
import { createLogger, silentLogger } from '../../src/log';
import { Store } from '../../src/store/store';
import { SyncRepository } from '../../src/sync/repository';
import { OutboxBuffer, seqRanges } from '../../src/sync/buffer';
import { parseRetryAfter } from '../../src/sync/https';
import { validateChange } from '../../src/sync/prices';
import { SyncService, createSyncTransport, type SyncServiceOptions, type SyncStatus } from '../../src/sync/service';
import type { ChangeApplier } from '../../src/sync/appliers';
import { laneOf } from '../../src/sync/upload';
import type { Change, ChangeAck, SeqGap, SyncTransport, UploadEvent, UploadResult } from '../../src/sync/types';
import { waitFor } from '../helpers/wait';

const STORE = 'st1';
const GTIN = '04006381333931';
const log = silentLogger();
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

class ScriptedTransport implements SyncTransport {
  readonly name = 'scripted';
  pages: Array<{ changes: unknown[]; nextCursor: string | null }> = [];
  cursors: Array<string | null> = [];
  uploads: Array<{ id: string; events: UploadEvent[]; gaps?: SeqGap[]; at: number }> = [];
  acks: ChangeAck[] = [];
  uploadImpl: (id: string, events: UploadEvent[], gaps?: SeqGap[]) => Promise<UploadResult[]> = async (_id, events) => events.map((e) => ({ event_id: e.event_id, seq: e.seq, status: 'accepted' }));
  ackImpl: (acks: ChangeAck[]) => Promise<void> = async (a) => {
    this.acks.push(...a);
  };
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  async upload(id: string, events: UploadEvent[], gaps?: SeqGap[]): Promise<UploadResult[]> {
    this.uploads.push({ id, events, gaps, at: Date.now() });
    return this.uploadImpl(id, events, gaps);
  }
  async fetchChanges(cursor: string | null, _w: number, signal: AbortSignal): Promise<{ changes: Change[]; nextCursor: string | null }> {
    this.cursors.push(cursor);
    const p = this.pages.shift();
    if (p) return p as { changes: Change[]; nextCursor: string | null };
    // An idle long poll (the scenario, not a wait for the test): no change for 30 ms, cut short by stop().
    await new Promise((r) => {
      const t = setTimeout(r, 30);
      signal.addEventListener('abort', () => (clearTimeout(t), r(undefined)), { once: true });
    });
    return { changes: [], nextCursor: cursor };
  }
  async ack(acks: ChangeAck[]): Promise<void> {
    return this.ackImpl(acks);
  }
}

function cfg(extra: Record<string, unknown> = {}): SyncConfig {
  return syncSchema.parse({ transport: 'https', https: { url: 'https://central.invalid' }, batch_max_events: 10, pipeline: 2, backoff: { initial_ms: 10, max_ms: 100 }, long_poll_s: 1, ...extra });
}

async function setup(t: ScriptedTransport, config = cfg(), dir = mkdtempSync(join(tmpdir(), 'sg-syncu-')), extra: Partial<SyncServiceOptions> = {}, opened?: (s: Store) => void) {
  const store = new Store({ path: join(dir, 'shelfgate.db'), synchronous: 'normal', flushIntervalMs: 5, storeId: STORE, log });
  await store.start();
  opened?.(store);
  const published: Array<{ topic: string; payload: Record<string, unknown>; retain: boolean }> = [];
  const bus = {
    publish: async (topic: string, payload: string | Buffer, o?: { retain?: boolean }) => {
      published.push({ topic, payload: JSON.parse(String(payload)) as Record<string, unknown>, retain: o?.retain === true });
    },
  };
  const assigned: string[] = [];
  const locations = {
    assign: async (shelf: string, slot: string) => {
      if (shelf !== 'sh1') throw new ShelfgateError(ErrorCode.NOT_FOUND, 'no such slot');
      assigned.push(`${shelf}/${slot}`);
      return { id: `${shelf}/${slot}`, shelfId: shelf, slotId: slot, gtin: null, unitWeightG: null };
    },
  };
  const sync = new SyncService({ storeId: STORE, config, store, bus, events: new EventBus(log), kinds: builtinKinds(), locations, transport: t, log, idlePollMs: 20, statusIntervalMs: 50, ...extra });
  await sync.start();
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await sync.stop();
    await store.stop();
  };
  cleanups.push(stop);
  return { store, sync, published, assigned, stop, dir };
}

const price = (v: number, gtin = GTIN) => ({ change_id: `price/${gtin}/v${v}`, type: 'price', gtin, price: 100 + v, currency: 'EUR', promotion: null, version: v, store_id: null, published_at: '2025-03-01T06:00:00Z' });

describe('SyncService downstream (scripted feed)', () => {
  it('versions 3,1,2,3 in separate pages: stored and published stay at 3, never lower; 1 and 2 acked stale', async () => {
    const t = new ScriptedTransport();
    t.pages = [3, 1, 2, 3].map((v, i) => ({ changes: [price(v)], nextCursor: `c${i + 1}` }));
    const g = await setup(t);
    await waitFor(() => t.acks.length >= 4, 5000, 'acks');
    const pub = g.published.filter((p) => p.topic === `shelfgate/v1/${STORE}/price/${GTIN}`);
    expect(pub.map((p) => p.payload.version)).toEqual([3]);
    expect(pub[0]!.retain).toBe(true);
    expect(g.sync.prices.price(GTIN)).toMatchObject({ version: 3, price: 103 });
    const status = new Map(t.acks.map((a) => [a.change_id, a.status]));
    expect(status.get(`price/${GTIN}/v1`)).toBe('stale');
    expect(status.get(`price/${GTIN}/v2`)).toBe('stale');
    expect(status.get(`price/${GTIN}/v3`)).toBe('applied');
    expect(g.sync.prices.cursor()).toBe('c4');
  });

  it('acks invalid changes (bad check digit, unknown slot, bad currency) and still applies the valid ones', async () => {
    const t = new ScriptedTransport();
    t.pages = [
      {
        changes: [
          price(1, '04006381333932'),
          { ...price(1), currency: 'eur' },
          { change_id: 'slot/st1/nope/1/v1', type: 'slot', store_id: STORE, shelf: 'nope', slot: 1, gtin: GTIN, unit_weight_g: 10, version: 1 },
          { change_id: 'slot/st1/sh1/2/v1', type: 'slot', store_id: STORE, shelf: 'sh1', slot: 2, gtin: GTIN, unit_weight_g: 10, version: 1 },
          price(2),
        ],
        nextCursor: 'c1',
      },
    ];
    const g = await setup(t);
    await waitFor(() => t.acks.length >= 5, 5000, 'acks');
    const byId = new Map(t.acks.map((a) => [a.change_id, a]));
    expect(byId.get('price/04006381333932/v1')).toMatchObject({ status: 'invalid', detail: expect.stringMatching(/check digit/) });
    expect(byId.get(`price/${GTIN}/v1`)).toMatchObject({ status: 'invalid' });
    expect(byId.get('slot/st1/nope/1/v1')).toMatchObject({ status: 'invalid', detail: expect.stringMatching(/unknown slot/) });
    expect(byId.get('slot/st1/sh1/2/v1')?.status).toBe('applied');
    expect(byId.get(`price/${GTIN}/v2`)?.status).toBe('applied');
    expect(g.assigned).toEqual(['sh1/2']);
  });

  it('a change type no applier knows is acked invalid ("unknown change type <t>") and does not block the feed', async () => {
    const t = new ScriptedTransport();
    t.pages = [
      { changes: [{ change_id: 'planogram/1/v1', type: 'planogram', version: 1 }, price(1)], nextCursor: 'c1' },
      { changes: [price(2)], nextCursor: 'c2' },
    ];
    const g = await setup(t);
    await waitFor(() => t.acks.length >= 3, 5000, 'acks');
    const byId = new Map(t.acks.map((a) => [a.change_id, a]));
    expect(byId.get('planogram/1/v1')).toMatchObject({ status: 'invalid', detail: 'unknown change type "planogram"' });
    expect(byId.get(`price/${GTIN}/v2`)?.status).toBe('applied');
    expect(g.sync.prices.cursor()).toBe('c2');
  });

  it('a feature registers an applier for its own change type: same version rule, same page commit and acks', async () => {
    interface Template {
      changeId: string;
      version: number;
      name: string;
      body: string;
    }
    const stored = new Map<string, Template>();
    const committed: string[] = [];
    const templates: ChangeApplier<Template> = {
      type: 'label_template',
      validate: (o, changeId, version) => (typeof o.name === 'string' && typeof o.body === 'string' ? { ok: true, change: { changeId, version, name: o.name, body: o.body } } : { ok: false, detail: 'name and body are required' }),
      key: (c) => c.name,
      current: (c) => stored.get(c.name) ?? null,
      apply: (_tx, cs) => cs.filter((c) => (stored.get(c.name)?.version ?? 0) < c.version && stored.set(c.name, c)),
      committed: async (cs) => void committed.push(...cs.map((c) => c.changeId)),
    };
    const tpl = (v: number, body = `b${v}`) => ({ change_id: `tpl/shelf/v${v}`, type: 'label_template', version: v, name: 'shelf', body });
    const t = new ScriptedTransport();
    t.pages = [
      { changes: [tpl(2), tpl(1)], nextCursor: 'c1' },
      { changes: [tpl(2), { ...tpl(3), body: 7 }], nextCursor: 'c2' },
    ];
    const g = await setup(t, cfg(), undefined, { appliers: [templates] });
    await waitFor(() => g.sync.prices.cursor() === 'c2' && g.sync.status().pending_acks === 0 && t.acks.length >= 3, 5000, 'both pages committed, acks sent');
    const byId = new Map(t.acks.map((a) => [a.change_id, a]));
    expect(byId.get('tpl/shelf/v2')?.status).toBe('applied'); // also when delivered again in the second page
    expect(byId.get('tpl/shelf/v1')?.status).toBe('stale');
    expect(byId.get('tpl/shelf/v3')).toMatchObject({ status: 'invalid', detail: 'name and body are required' });
    expect(stored.get('shelf')).toMatchObject({ version: 2, body: 'b2' });
    expect(committed).toEqual(['tpl/shelf/v2']);
  });

  it('acks survive a crash: stored in SQLite until central confirms them', async () => {
    const t = new ScriptedTransport();
    t.ackImpl = async () => {
      throw new ShelfgateError(ErrorCode.SYNC_RETRYABLE, 'down');
    };
    t.pages = [{ changes: [price(1), price(2)], nextCursor: 'c1' }];
    const g = await setup(t);
    await waitFor(() => g.sync.prices.cursor() === 'c1', 5000, 'page committed');
    await g.stop();
    const t2 = new ScriptedTransport();
    const g2 = await setup(t2, cfg(), g.dir);
    await waitFor(() => t2.acks.length === 2, 5000, 'acks sent after restart');
    expect(t2.acks.map((a) => a.status).sort()).toEqual(['applied', 'stale']);
    expect(t2.cursors[0]).toBe('c1'); // resumed from the stored cursor
    await waitFor(() => g2.sync.status().pending_acks === 0, 2000, 'pending acks cleared');
    // last known prices are republished retained at start
    expect(g2.published.find((p) => p.topic.endsWith(`/price/${GTIN}`))).toMatchObject({ retain: true, payload: { version: 2 } });
  });

  it('a cursor central no longer knows is dropped and the feed read from the start', async () => {
    const t = new ScriptedTransport();
    let first = true;
    const orig = t.fetchChanges.bind(t);
    t.fetchChanges = async (c, w, s) => {
      if (first && c === 'old') {
        first = false;
        throw new ShelfgateError(ErrorCode.SYNC_FATAL, 'gone', { status: 410, code: 'cursor_expired' });
      }
      return orig(c, w, s);
    };
    const dir = mkdtempSync(join(tmpdir(), 'sg-syncu-'));
    const s0 = new Store({ path: join(dir, 'shelfgate.db'), synchronous: 'normal', flushIntervalMs: 5, storeId: STORE, log });
    await s0.start();
    s0.setMeta('sync.changes.cursor', 'old');
    await s0.stop();
    await setup(t, cfg(), dir);
    await waitFor(() => t.cursors.includes(null), 3000, 'refetch without cursor');
  });
});

describe("SyncService upstream (scripted central)", () => {
  it("reports central's contiguous_seq and its epoch; a decrease (central lost data) is logged with the contract's code, nothing is resent", async () => {
    const t = new ScriptedTransport();
    const script = [3, 6, 2]; // the third answer comes from a central that lost data
    let i = 0;
    t.uploadImpl = async (_id, ev) => Object.assign(ev.map((e) => ({ event_id: e.event_id, seq: e.seq, status: 'accepted' as const })), { contiguousSeq: script[Math.min(i++, script.length - 1)] });
    const out: string[] = [];
    const capture = createLogger('info', { write: (line: string) => void out.push(line) });
    const g = await setup(t, cfg({ pipeline: 1, batch_max_events: 3 }), undefined, { log: capture });
    for (let k = 0; k < 3; k++) {
      await Promise.all(Array.from({ length: 3 }, (_, j) => g.store.appendEvent({ deviceId: 'd1', kind: 'pick', payload: { count: k * 3 + j } })));
      await waitFor(() => g.store.outboxStats().count === 0 && t.uploads.length === k + 1, 5000, `batch ${k + 1} acknowledged`);
    }
    const st = g.sync.status();
    expect(st).toMatchObject({ epoch: g.store.epoch(), central_contiguous_seq: 6, central_contiguous_seq_decreased: 1 });
    const err = out.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.code === 'central_contiguous_seq_decreased');
    expect(err).toMatchObject({ level: 50, epoch: g.store.epoch(), previous: 6, now: 2 });
    expect(t.uploads).toHaveLength(3); // informational: nothing resent because of it
  });
});

describe('SyncService upstream (scripted central)', () => {
  it('honours Retry-After, then uploads in per-device seq order', async () => {
    const t = new ScriptedTransport();
    let n = 0;
    const base = t.uploadImpl;
    t.uploadImpl = async (id, ev) => {
      if (n++ === 0) throw new ShelfgateError(ErrorCode.SYNC_RETRYABLE, 'busy', { status: 429, code: 'rate_limited', retryAfterMs: 300 });
      return base(id, ev);
    };
    const g = await setup(t, cfg({ pipeline: 1 }));
    await Promise.all(Array.from({ length: 25 }, (_, i) => g.store.appendEvent({ deviceId: `d${i % 3}`, kind: 'pick', payload: { count: i } })));
    await waitFor(() => g.store.outboxStats().count === 0, 5000, 'drained');
    expect(t.uploads[1]!.at - t.uploads[0]!.at).toBeGreaterThanOrEqual(280);
    expect(t.uploads[1]!.id).toBe(t.uploads[0]!.id); // same batch, same id
    const seen = new Map<string, number>();
    for (const u of t.uploads.slice(1)) for (const e of u.events) {
      expect(e.seq).toBeGreaterThan(seen.get(e.device_id) ?? 0);
      seen.set(e.device_id, e.seq);
      expect(typeof e.created_at).toBe('string');
      expect(e.payload).toMatchObject({ count: expect.any(Number) });
    }
  });

  it('repeated 429 with Retry-After: 0: the backoff still grows (Retry-After is a minimum, not the delay)', async () => {
    const t = new ScriptedTransport();
    let n = 0;
    const base = t.uploadImpl;
    t.uploadImpl = async (id, ev, gaps) => {
      if (n++ < 5) throw new ShelfgateError(ErrorCode.SYNC_RETRYABLE, 'events:batch answered 429 rate_limited', { status: 429, code: 'rate_limited', retryAfterMs: 0 });
      return base(id, ev, gaps);
    };
    // the change feed answers every 30 ms meanwhile: central is reachable, only uploads are limited
    const g = await setup(t, cfg({ pipeline: 1, backoff: { initial_ms: 50, max_ms: 5000 } }));
    await g.store.appendEvent({ deviceId: 'd', kind: 'pick', payload: { count: 1 } });
    await waitFor(() => g.store.outboxStats().count === 0, 8000, 'drained');
    const at = t.uploads.map((u) => u.at);
    expect(at).toHaveLength(6);
    const waits = at.slice(1).map((x, k) => x - at[k]!);
    // 50 ms growing x2 with +-20 % jitter: >= 40, 80, 160, 320, 640 ms
    expect(waits[0]).toBeGreaterThanOrEqual(40);
    expect(waits[3]).toBeGreaterThanOrEqual(320);
    expect(waits[4]).toBeGreaterThanOrEqual(640);
  });

  it('Retry-After larger than the backoff is honoured as it is', async () => {
    const t = new ScriptedTransport();
    let n = 0;
    const base = t.uploadImpl;
    t.uploadImpl = async (id, ev, gaps) => {
      if (n++ < 2) throw new ShelfgateError(ErrorCode.SYNC_RETRYABLE, 'busy', { status: 503, code: 'unavailable', retryAfterMs: 400 });
      return base(id, ev, gaps);
    };
    const g = await setup(t, cfg({ pipeline: 1, backoff: { initial_ms: 10, max_ms: 5000 } }));
    await g.store.appendEvent({ deviceId: 'd', kind: 'pick', payload: { count: 1 } });
    await waitFor(() => g.store.outboxStats().count === 0, 5000, 'drained');
    const at = t.uploads.map((u) => u.at);
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(390);
    expect(at[2]! - at[1]!).toBeGreaterThanOrEqual(390);
  });

  it('413: splits the batch; one event too large on its own is parked and declared as a gap', async () => {
    const t = new ScriptedTransport();
    const base = t.uploadImpl;
    t.uploadImpl = async (id, ev) => {
      if (ev.length > 4 || ev.some((e) => (e.payload as { huge?: boolean }).huge)) throw new ShelfgateError(ErrorCode.SYNC_FATAL, 'too large', { status: 413, code: 'payload_too_large', maxEvents: 4 });
      return base(id, ev);
    };
    const g = await setup(t, cfg({ pipeline: 1 }));
    for (let i = 0; i < 10; i++) await g.store.appendEvent({ deviceId: 'd', kind: 'pick', payload: { count: i, ...(i === 5 ? { huge: true } : {}) } });
    await waitFor(() => g.store.outboxStats().count === 0, 5000, 'drained');
    await waitFor(() => g.sync.status().parked === 1, 2000, 'parked');
    const delivered = t.uploads.filter((u) => u.events.length <= 4 && !u.events.some((e) => (e.payload as { huge?: boolean }).huge));
    expect(delivered.flatMap((u) => u.events.map((e) => e.seq)).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 7, 8, 9, 10]);
    const gapsSent = t.uploads.flatMap((u) => u.gaps ?? []);
    // the gap for seq 6 rides along with a later batch once one is sent
    await g.store.appendEvent({ deviceId: 'd', kind: 'pick', payload: { count: 11 } });
    await waitFor(() => t.uploads.flatMap((u) => u.gaps ?? []).length > gapsSent.length || gapsSent.length > 0, 3000, 'gap declared');
    expect(t.uploads.flatMap((u) => u.gaps ?? [])).toContainEqual({ from_seq: 6, to_seq: 6, reason: 'parked' });
  });

  it('a 200 that leaves out some results: the missing events are retried with a growing backoff, not at once', async () => {
    const t = new ScriptedTransport();
    let omitted = 0;
    t.uploadImpl = async (_id, ev) =>
      ev
        .filter((e) => !(e.seq === 3 && omitted < 4 && ++omitted > 0))
        .map((e) => ({ event_id: e.event_id, seq: e.seq, status: 'accepted' as const }));
    const g = await setup(t, cfg({ pipeline: 1, backoff: { initial_ms: 50, max_ms: 5000 } }));
    for (let i = 0; i < 5; i++) await g.store.appendEvent({ deviceId: 'd', kind: 'pick', payload: { count: i } });
    await waitFor(() => g.store.outboxStats().count === 0, 8000, 'drained');
    const tries = t.uploads.filter((u) => u.events.some((e) => e.seq === 3)).map((u) => u.at);
    expect(tries).toHaveLength(5); // four incomplete answers, then the one that carries its result
    const waits = tries.slice(1).map((at, k) => at - tries[k]!);
    // backoff of 50 ms growing x2 with +-20 % jitter: >= 40, 80, 160, 320 ms
    expect(waits[0]).toBeGreaterThanOrEqual(40);
    expect(waits[3]).toBeGreaterThanOrEqual(320);
    expect(waits[3]!).toBeGreaterThan(waits[0]! * 2);
    // the events central did answer for were not sent again
    expect(t.uploads.flatMap((u) => u.events.map((e) => e.seq)).filter((s) => s !== 3).sort()).toEqual([1, 2, 4, 5]);
    expect(g.sync.stats().batchFailures).toBe(4);
  });

  it('a lane in back-off does not hold up the other lanes; its events follow in order once central answers them', async () => {
    const t = new ScriptedTransport();
    const slow = 'dev-a';
    const fast = ['dev-b', 'dev-c', 'dev-d', 'dev-e'].find((d) => laneOf(d, 2) !== laneOf(slow, 2))!;
    let answerSlow = false;
    const acceptedSlow: number[] = [];
    t.uploadImpl = async (_id, ev) =>
      ev
        .filter((e) => e.device_id !== slow || answerSlow)
        .map((e) => {
          if (e.device_id === slow) acceptedSlow.push(e.seq);
          return { event_id: e.event_id, seq: e.seq, status: 'accepted' as const };
        });
    const g = await setup(t, cfg({ pipeline: 2, batch_max_events: 5, backoff: { initial_ms: 100, max_ms: 5000 } }));
    const slowSeqs: number[] = [];
    for (let i = 0; i < 30; i++) slowSeqs.push((await g.store.appendEvent({ deviceId: slow, kind: 'pick', payload: { count: i } })).seq);
    for (let i = 0; i < 50; i++) await g.store.appendEvent({ deviceId: fast, kind: 'pick', payload: { count: i } });
    // the slow lane's queue is full and it is backing off; every event of the other lane still arrives
    await waitFor(() => g.store.outboxStats().count === 30, 5000, 'the other lane drained');
    expect(t.uploads.some((u) => u.events.some((e) => e.device_id === slow))).toBe(true);
    answerSlow = true;
    await waitFor(() => g.store.outboxStats().count === 0, 10_000, 'the slow lane drained');
    expect(acceptedSlow).toEqual(slowSeqs);
  });

  it('the buffer policy never removes events a lane holds (queued or in flight): central never gets an event and a gap for it', async () => {
    const t = new ScriptedTransport();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const base = t.uploadImpl;
    t.uploadImpl = async (id, ev) => {
      await gate;
      return base(id, ev);
    };
    const g = await setup(t, cfg({ pipeline: 1, batch_max_events: 10, buffer_max_bytes: 1024 * 1024 }));
    await Promise.all(Array.from({ length: 30 }, (_, i) => g.store.appendEvent({ deviceId: 'd', kind: 'anomaly', priority: 1, payload: { i } }))); // one commit
    await waitFor(() => t.uploads.length === 1, 3000, 'first batch in flight');
    expect(t.uploads[0]!.events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]); // 11-20 wait in the lane's queue (2 batches)
    // over the byte bound with more low-priority events: the policy drops the oldest droppable ones
    const pad = 'x'.repeat(4000);
    await Promise.all(Array.from({ length: 300 }, (_, i) => g.store.appendEvent({ deviceId: 'e', kind: 'anomaly', priority: 1, payload: { i, pad } })));
    await waitFor(() => g.sync.bufferPolicy.stats().dropped > 0, 5000, 'policy dropped');
    release();
    await waitFor(() => g.store.outboxStats().count === 0 && g.sync.prices.pendingGaps(10).length === 0, 10_000, 'drained, gaps declared');
    const sent = new Set(t.uploads.flatMap((u) => u.events.map((e) => e.seq)));
    const gaps = new Set<number>();
    for (const gap of t.uploads.flatMap((u) => u.gaps ?? [])) for (let q = gap.from_seq; q <= gap.to_seq; q++) gaps.add(q);
    expect([...sent].filter((q) => gaps.has(q))).toEqual([]);
    for (let q = 1; q <= 20; q++) expect(sent.has(q)).toBe(true); // held: never dropped
    expect(sent.size + gaps.size).toBe(g.store.outboxStats().lastSeq);
  });

  it('400 on a batch: halved down to the event central refuses, which is parked with the problem code and declared a gap; the rest arrives; no lane stalls', async () => {
    const t = new ScriptedTransport();
    const refusedIds: string[] = [];
    const base = t.uploadImpl;
    t.uploadImpl = async (id, ev, gaps) => {
      if (ev.some((e) => (e.payload as { bad?: boolean }).bad)) {
        refusedIds.push(id);
        throw new ShelfgateError(ErrorCode.SYNC_FATAL, 'events:batch answered 400 invalid_request: events.3.payload: too deep', { status: 400, code: 'invalid_request' });
      }
      return base(id, ev, gaps);
    };
    const g = await setup(t, cfg({ pipeline: 2, batch_max_events: 10 }));
    const a = 'dev-a';
    const b = ['dev-b', 'dev-c', 'dev-d', 'dev-e'].find((d) => laneOf(d, 2) !== laneOf(a, 2))!;
    // one commit: lane a's queue is full, the rest of a's events and all of b's wait behind it
    const appended = await Promise.all([
      ...Array.from({ length: 30 }, (_, i) => g.store.appendEvent({ deviceId: a, kind: 'pick', payload: { count: i, ...(i === 5 ? { bad: true } : {}) } })),
      ...Array.from({ length: 40 }, (_, i) => g.store.appendEvent({ deviceId: b, kind: 'pick', payload: { count: i } })),
    ]);
    const badSeq = appended[5]!.seq;
    await waitFor(() => g.store.outboxStats().count === 0, 5000, 'drained');
    await waitFor(() => g.sync.status().parked === 1, 2000, 'parked');
    expect(new Set(refusedIds).size).toBe(refusedIds.length); // a refused request is never sent again unchanged
    expect(refusedIds.length).toBeLessThanOrEqual(4); // 10 -> 5 -> 2 -> 1
    const delivered = t.uploads.filter((u) => !refusedIds.includes(u.id)).flatMap((u) => u.events.map((e) => e.seq));
    expect(delivered.sort((x, y) => x - y)).toEqual(appended.map((e) => e.seq).filter((q) => q !== badSeq));
    const parked = g.store.transaction((db) => db.prepare('SELECT seq, error FROM parked').all()) as { seq: number; error: string }[];
    expect(parked).toHaveLength(1);
    expect(parked[0]!.seq).toBe(badSeq);
    expect(JSON.parse(parked[0]!.error)).toMatchObject({ code: 'invalid_request', message: expect.stringMatching(/400/) });
    // the parked seq is declared to central with the next batch
    await g.store.appendEvent({ deviceId: a, kind: 'pick', payload: { count: 99 } });
    await waitFor(() => t.uploads.some((u) => u.gaps?.some((x) => x.from_seq === badSeq && x.to_seq === badSeq && x.reason === 'parked')), 3000, 'gap declared');
  });

  it('400 on a batch that carries gaps: the gaps are kept until a 2xx carried them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sg-syncu-'));
    // a gap from an earlier life: seq 1 dropped by the buffer policy
    const s0 = new Store({ path: join(dir, 'shelfgate.db'), synchronous: 'normal', flushIntervalMs: 5, storeId: STORE, log });
    await s0.start();
    const b0 = new OutboxBuffer({ store: s0, maxBytes: 1024 * 1024, kinds: builtinKinds(), log });
    await s0.appendEvent({ deviceId: 'd', kind: 'anomaly', priority: 1, payload: { pad: 'x'.repeat(1200 * 1024) } });
    await b0.start();
    await waitFor(() => b0.stats().dropped === 1, 3000, 'dropped');
    await b0.stop();
    await s0.stop();
    const t = new ScriptedTransport();
    let refusals = 0;
    const pendingAtRefusal: number[] = [];
    const base = t.uploadImpl;
    let g: Awaited<ReturnType<typeof setup>> | undefined;
    // the gap can go out alone at once, before setup() has returned: read the gaps through the store
    let opened: Store | undefined;
    const store = (): Store => g?.store ?? opened!;
    t.uploadImpl = async (id, ev, gaps) => {
      if ((gaps ?? []).length > 0 && refusals < 2) {
        refusals++;
        pendingAtRefusal.push(new SyncRepository(store()).pendingGaps(10).length);
        throw new ShelfgateError(ErrorCode.SYNC_FATAL, 'events:batch answered 400 invalid_request: gaps.0: bad', { status: 400, code: 'invalid_request' });
      }
      return base(id, ev, gaps);
    };
    g = await setup(t, cfg({ pipeline: 1 }), dir, {}, (s) => (opened = s));
    // gaps ride along with events: keep central busy with one event at a time until the gap went through
    for (let i = 0; i < 50 && !(refusals === 2 && g.sync.prices.pendingGaps(10).length === 0); i++) {
      await g.store.appendEvent({ deviceId: 'd', kind: 'pick', payload: { count: i } });
      await waitFor(() => g!.store.outboxStats().count === 0, 5000, 'event delivered');
    }
    expect(refusals).toBe(2);
    expect(pendingAtRefusal).toEqual([1, 1]); // still kept after the first 400
    expect(g.sync.prices.pendingGaps(10)).toEqual([]);
    expect(g.sync.status().parked).toBe(0);
    const carried = t.uploads.filter((u) => (u.gaps ?? []).length > 0);
    expect(carried.length).toBe(3); // twice refused, then taken
    expect(carried.at(-1)!.gaps).toEqual([{ from_seq: 1, to_seq: 1, reason: 'dropped_buffer_full' }]);
    // the first refusal was the gap alone (contract 1.1: gaps go alone when no event carries them);
    // a refused batch that also carried events: its events went at once without the gaps
    expect(carried[0]!.events).toEqual([]);
    for (const refused of carried.slice(0, 2).filter((c) => c.events.length > 0))
      expect(t.uploads[t.uploads.indexOf(refused) + 1]).toMatchObject({ events: refused.events, gaps: [] });
  });

  it('415 on every request: nothing is parked or lost; the lane backs off until central takes requests again', async () => {
    const t = new ScriptedTransport();
    let refuse = true;
    const base = t.uploadImpl;
    t.uploadImpl = async (id, ev, gaps) => {
      if (refuse) throw new ShelfgateError(ErrorCode.SYNC_FATAL, 'events:batch answered 415 unsupported_media_type', { status: 415, code: 'unsupported_media_type' });
      return base(id, ev, gaps);
    };
    const g = await setup(t, cfg({ pipeline: 1, backoff: { initial_ms: 10, max_ms: 300 } }));
    await Promise.all(Array.from({ length: 8 }, (_, i) => g.store.appendEvent({ deviceId: 'd', kind: 'pick', payload: { count: i } })));
    await waitFor(() => t.uploads.length >= 6, 5000, 'refused requests');
    expect(g.sync.status()).toMatchObject({ parked: 0, backlog_count: 8 });
    const singles = t.uploads.filter((u) => u.events.length === 1);
    expect(singles.length).toBeGreaterThanOrEqual(2);
    expect(singles[1]!.at - singles[0]!.at).toBeGreaterThanOrEqual(240); // the maximum backoff (300 ms -20 % jitter)
    refuse = false;
    await waitFor(() => g.store.outboxStats().count === 0, 5000, 'drained once central takes requests');
    expect(g.sync.status().parked).toBe(0);
  });

  it('retained sync/status: last_error while uploads fail (the feed answering does not clear it), cleared by the next successful upload', async () => {
    const t = new ScriptedTransport();
    let down = true;
    const base = t.uploadImpl;
    t.uploadImpl = async (id, ev, gaps) => {
      if (down) throw new ShelfgateError(ErrorCode.SYNC_RETRYABLE, 'events:batch answered 503 unavailable', { status: 503, code: 'unavailable' });
      return base(id, ev, gaps);
    };
    const g = await setup(t, cfg({ pipeline: 1, backoff: { initial_ms: 10, max_ms: 100 } }));
    const statuses = () => g.published.filter((p) => p.topic === `shelfgate/v1/${STORE}/sync/status` && p.retain).map((p) => p.payload as unknown as SyncStatus);
    await g.store.appendEvent({ deviceId: 'd', kind: 'pick', payload: { count: 1 } });
    await waitFor(() => statuses().some((st) => st.last_error?.code === 'unavailable'), 3000, 'error reported');
    const from = statuses().findIndex((st) => st.last_error?.code === 'unavailable');
    await waitFor(() => statuses().length >= from + 4 && t.cursors.length >= 3, 3000, 'more statuses while the feed answers');
    for (const st of statuses().slice(from)) expect(st.last_error).toMatchObject({ code: 'unavailable' });
    down = false;
    await waitFor(() => g.store.outboxStats().count === 0, 3000, 'drained');
    const st = await waitFor(() => statuses().slice(from).find((x) => x.last_error === null), 3000, 'error cleared in the retained status');
    expect(st).toMatchObject({ connected: true, last_error: null });
    expect(st.last_success).not.toBeNull();
  });

  it('upload_conditions: false keeps conditions out of uploads and in the outbox (held, reported)', async () => {
    const t = new ScriptedTransport();
    const g = await setup(t, cfg({ upload_conditions: false }));
    await g.store.appendEvent({ deviceId: 'd', kind: 'condition', priority: 2, payload: { condition: 'unstable' } });
    await g.store.appendEvent({ deviceId: 'd', kind: 'pick', payload: { count: 1 } });
    await waitFor(() => t.uploads.length > 0 && g.store.outboxStats().count === 1, 3000, 'stock uploaded');
    // a pick appended after both is uploaded too: the uploader has gone past the held condition
    await g.store.appendEvent({ deviceId: 'd', kind: 'pick', payload: { count: 2 } });
    await waitFor(() => t.uploads.some((u) => u.events.some((e) => e.seq === 3)) && g.store.outboxStats().count === 1, 3000, 'the later pick uploaded');
    expect(t.uploads.flatMap((u) => u.events.map((e) => e.kind))).toEqual(['pick', 'pick']);
    expect(g.sync.status()).toMatchObject({ held_conditions: 1, backlog_count: 1 });
  });

  it('transport none: createSyncTransport returns null; https: an HttpsTransport', () => {
    expect(createSyncTransport(syncSchema.parse({}), STORE, log)).toBeNull();
    expect(createSyncTransport(cfg(), STORE, log)?.name).toBe('sync-https');
  });
});

describe('sync helpers', () => {
  it('seqRanges merges consecutive seqs', () => {
    expect(seqRanges([9, 3, 4, 5, 11, 12, 4])).toEqual([
      [3, 5],
      [9, 9],
      [11, 12],
    ]);
    expect(seqRanges([])).toEqual([]);
  });

  it('parseRetryAfter: seconds or an HTTP date, capped', () => {
    expect(parseRetryAfter('2')).toBe(2000);
    expect(parseRetryAfter(undefined)).toBeUndefined();
    expect(parseRetryAfter('junk')).toBeUndefined();
    expect(parseRetryAfter(new Date(Date.now() + 5000).toUTCString())).toBeGreaterThan(3000);
    expect(parseRetryAfter('99999999')).toBe(86_400_000);
  });

  it('validateChange: the wire slot type and the contract type, null gtin clears', () => {
    expect(validateChange({ change_id: 'x', type: 'slot', shelf: 'sh1', slot: 3, gtin: null, unit_weight_g: null, version: 1 })).toMatchObject({ ok: true, change: { type: 'slot', c: { slot: '3', gtin: null } } });
    expect(validateChange({ change_id: 'x', type: 'slot_assignment', shelf: 'sh1', slot: '3', gtin: GTIN, unit_weight_g: 5, version: 2 })).toMatchObject({ ok: true });
    expect(validateChange({ change_id: 'x', type: 'slot', shelf: 'sh1', slot: 3, gtin: GTIN, unit_weight_g: null, version: 1 })).toMatchObject({ ok: false });
    expect(validateChange({ change_id: 'x', type: 'price', gtin: GTIN, price: 1.5, currency: 'EUR', version: 1 })).toMatchObject({ ok: false });
    expect(validateChange({ change_id: 'x', type: 'price', gtin: GTIN, price: 1, currency: 'EUR', version: 0 })).toMatchObject({ ok: false });
    expect(validateChange({ change_id: 'x', type: 'weird', version: 1 })).toMatchObject({ ok: false, detail: expect.stringMatching(/unknown change type/) });
  });
});
