/**
 * The sync service over the HTTPS transport against the reference central (CentralSimulator) on
 * 127.0.0.1 (port 0), with a real Store on a SQLite file, a real local bus and MQTT subscribers.
 * Bounded waits everywhere; every run uses its own tmp dir and ports, so two runs can share a host.
 */
import { describe, expect, it } from 'vitest';
import { EventBus } from '../../src/core/events';
import { builtinKinds } from '../helpers/features';
import { execFileSync } from 'node:child_process';
import { writeFileSync, readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { hashPassword } from '../../src/bus/auth';
import { LocalBus } from '../../src/bus/broker';
import { configSchema, syncSchema, type SyncConfig } from '../../src/config/schema';
import { ErrorCode, ShelfgateError, isShelfgateError } from '../../src/errors';
import { silentLogger } from '../../src/log';
import { Store } from '../../src/store/store';
import { failureOf } from '../../src/sync/failure';
import { HttpsTransport, type HttpsTransportOptions } from '../../src/sync/https';
import { MAX_ANSWER_BYTES } from '../../src/sync/wire';
import { SyncService } from '../../src/sync/service';
import { CentralSimulator, type CentralTlsOptions, type FaultsPatch } from '../../simulators/central';
import { connectClient, waitFor, useCleanups, tmp as tmpDir } from '../helpers/daemon';

const STORE = 'st1';
const GTIN = '04006381333931';
const GTIN2 = '05901234123457';
const PASSWORD = 'pw-for-tests';
const log = silentLogger();

const cleanups = useCleanups();

const tmp = (): string => tmpDir('sg-sync-');

function syncConfig(url: string, extra: Record<string, unknown> = {}, https: Record<string, unknown> = {}): SyncConfig {
  return syncSchema.parse({
    transport: 'https',
    https: { url, request_timeout_ms: 2000, ...https },
    batch_max_events: 50,
    pipeline: 4,
    backoff: { initial_ms: 20, max_ms: 300 },
    long_poll_s: 1,
    ...extra,
  });
}

async function startCentral(opts: { port?: number; dbPath?: string; faults?: FaultsPatch; tls?: CentralTlsOptions } = {}): Promise<CentralSimulator> {
  const c = new CentralSimulator({ log, port: opts.port ?? 0, dbPath: opts.dbPath, faults: opts.faults, tls: opts.tls, seed: 7 });
  await c.start();
  cleanups.push(() => c.stop());
  return c;
}

/** A free port: listen on 0, read it, close. */
async function freePort(): Promise<number> {
  const c = new CentralSimulator({ log });
  await c.start();
  const p = c.port;
  await c.stop();
  return p;
}

interface Gw {
  dir: string;
  store: Store;
  bus: LocalBus;
  sync: SyncService;
  assigned: Array<{ shelf: string; slot: string; gtin: string | null; unitWeightG: number | null }>;
  stop(): Promise<void>;
}

async function gateway(cfg: SyncConfig, dir = tmp(), opts: { withKiosk?: boolean; beforeSync?: (bus: LocalBus) => Promise<void> } = {}): Promise<Gw> {
  const store = new Store({ path: join(dir, 'shelfgate.db'), synchronous: 'normal', flushIntervalMs: 5, storeId: STORE, log });
  await store.start();
  const users = opts.withKiosk ? [{ username: 'kiosk', role: 'kiosk', password_hash: await hashPassword(PASSWORD) }] : [];
  const mqtt = configSchema.shape.mqtt.parse({ port: 0, users });
  const bus = new LocalBus({ config: mqtt, storeId: STORE, log });
  await bus.start();
  await opts.beforeSync?.(bus);
  const assigned: Gw['assigned'] = [];
  const locations = {
    async assign(shelf: string, slot: string, a: { gtin?: string | null; unitWeightG?: number | null }) {
      if (shelf !== 'sh1' || !['1', '2'].includes(slot)) throw new ShelfgateError(ErrorCode.NOT_FOUND, `no slot ${shelf}/${slot}`);
      assigned.push({ shelf, slot, gtin: a.gtin ?? null, unitWeightG: a.unitWeightG ?? null });
      return { id: `${shelf}/${slot}`, shelfId: shelf, slotId: slot, gtin: a.gtin ?? null, unitWeightG: a.unitWeightG ?? null };
    },
  };
  const transport = new HttpsTransport({ config: cfg.https!, storeId: STORE, log });
  const sync = new SyncService({ storeId: STORE, config: cfg, store, bus, events: new EventBus(log), kinds: builtinKinds(), locations, transport, log, statusIntervalMs: 200, idlePollMs: 100, bufferCheckMs: 200 });
  await sync.start();
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await sync.stop();
    await bus.stop();
    await store.stop();
  };
  cleanups.push(stop);
  return { dir, store, bus, sync, assigned, stop };
}

async function appendEvents(store: Store, n: number, devices: number, from = 0): Promise<void> {
  const ps: Promise<unknown>[] = [];
  for (let i = from; i < from + n; i++) {
    const d = i % devices;
    ps.push(store.appendEvent({ deviceId: `sh1/${d}`, kind: i % 3 === 0 ? 'put' : 'pick', priority: 0, payload: { count: i, i, shelf_id: 'sh1', slot_id: String(d) } }));
  }
  await Promise.all(ps);
}

/** Every event exactly once, and per device in seq order of first storage (central's out-of-order report empty). */
function expectExactlyOnceInOrder(central: CentralSimulator, expected: number): void {
  const got = central.receivedEvents(STORE, { orderBy: 'arrival' });
  expect(got.length).toBe(expected);
  expect(new Set(got.map((e) => e.event_id)).size).toBe(expected);
  const lastByDevice = new Map<string, number>();
  for (const e of got) {
    expect(e.seq).toBeGreaterThan(lastByDevice.get(e.device_id) ?? 0);
    lastByDevice.set(e.device_id, e.seq);
  }
  expect(central.stats().stores[STORE]!.out_of_order_devices).toEqual([]);
}

describe('sync over HTTPS: upstream', () => {
  it('events appended while central is down arrive once it is up, exactly once, per-device in order; the outbox empties', async () => {
    const port = await freePort();
    const gw = await gateway(syncConfig(`http://127.0.0.1:${port}`));
    await appendEvents(gw.store, 600, 7);
    await waitFor(() => gw.sync.status().last_error !== null, 5000, 'a connection error while central is down');
    expect(gw.sync.status().connected).toBe(false);
    expect(gw.store.outboxStats().count).toBe(600);

    const central = await startCentral({ port, dbPath: join(gw.dir, 'central.db') });
    await waitFor(() => gw.store.outboxStats().count === 0, 15_000, 'outbox drained');
    expectExactlyOnceInOrder(central, 600);
    expect(gw.sync.status()).toMatchObject({ connected: true, backlog_count: 0, backlog_bytes: 0, parked: 0 });
    // central saw everything up to the last seq
    expect(central.stats().stores[STORE]!.contiguous_seq).toBe(600);
  });

  it('faults (503, dropped connections, lost responses, slow answers, timeouts): everything arrives exactly once', async () => {
    const central = await startCentral({
      faults: { status5xxRate: 0.3, dropConnectionRate: 0.2, lostResponseRate: 0.2, slowMs: 30, timeoutRate: 0.05, retryAfterS: 0 },
    });
    const gw = await gateway(syncConfig(central.url, {}, { request_timeout_ms: 500 }));
    for (let k = 0; k < 5; k++) {
      const requests = central.stats().requests.total;
      await appendEvents(gw.store, 200, 9, k * 200);
      // the next chunk lands while uploads (and their faults) are under way
      await waitFor(() => central.stats().requests.total > requests, 10_000, `uploads after chunk ${k}`);
    }
    await waitFor(() => gw.store.outboxStats().count === 0, 25_000, 'outbox drained under faults');
    expectExactlyOnceInOrder(central, 1000);
    const st = central.stats();
    expect(st.requests.faults_injected.lost_response).toBeGreaterThan(0);
    expect(st.requests.faults_injected.status5xx).toBeGreaterThan(0);
    expect(st.stores[STORE]!.duplicates).toBeGreaterThan(0); // lost responses were retried and deduplicated
    expect(gw.sync.stats().uploaded + gw.sync.stats().duplicates).toBeGreaterThanOrEqual(1000);
  }, 40_000);

  it('a compressed long outage: central goes away under load, comes back; everything arrives, nothing twice', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'central.db');
    let central = await startCentral({ dbPath });
    const port = central.port;
    const gw = await gateway(syncConfig(central.url, { backoff: { initial_ms: 20, max_ms: 400 } }), dir);
    await appendEvents(gw.store, 100, 5);
    await waitFor(() => gw.store.outboxStats().count === 0, 10_000, 'first events uploaded');
    await central.stop();
    for (let k = 1; k <= 10; k++) {
      const failures = gw.sync.stats().batchFailures;
      await appendEvents(gw.store, 100, 5, k * 100);
      // the next chunk lands after another failed attempt: the gateway keeps trying while central is away
      await waitFor(() => gw.sync.stats().batchFailures > failures, 10_000, `a failed upload after chunk ${k}`);
    }
    expect(gw.store.outboxStats().count).toBe(1000);
    expect(gw.sync.status().connected).toBe(false);
    central = await startCentral({ port, dbPath });
    await waitFor(() => gw.store.outboxStats().count === 0, 15_000, 'outbox drained after the outage');
    expectExactlyOnceInOrder(central, 1100);
    expect(central.stats().stores[STORE]!.contiguous_seq).toBe(1100);
  }, 40_000);

  it('central refuses a batch as too large (413, max_events): the batch is split, everything arrives exactly once', async () => {
    const central = new CentralSimulator({ log, limits: { maxBatchEvents: 7 } });
    await central.start();
    cleanups.push(() => central.stop());
    const gw = await gateway(syncConfig(central.url));
    await appendEvents(gw.store, 120, 2);
    await waitFor(() => gw.store.outboxStats().count === 0, 10_000, 'outbox drained in smaller batches');
    expectExactlyOnceInOrder(central, 120);
    expect(gw.sync.status().parked).toBe(0);
  });

  it('a rejected event is parked with its error, never resent, and reported', async () => {
    const central = await startCentral();
    const gw = await gateway(syncConfig(central.url));
    await gw.store.appendEvent({ deviceId: 'sh1/1', kind: 'pick', payload: { count: 1 } });
    await gw.store.appendEvent({ deviceId: 'sh1/1', kind: 'teleport', payload: { count: 2 } }); // unknown kind
    await gw.store.appendEvent({ deviceId: 'sh1/1', kind: 'put', payload: { count: 3 } });
    await waitFor(() => gw.store.outboxStats().count === 0, 10_000, 'outbox empty');
    await waitFor(() => gw.sync.status().parked === 1, 5000, 'parked reported');
    const parked = gw.store.transaction((db) => db.prepare('SELECT seq, kind, error FROM parked').all()) as { seq: number; kind: string; error: string }[];
    expect(parked).toHaveLength(1);
    expect(parked[0]).toMatchObject({ seq: 2, kind: 'teleport' });
    expect(JSON.parse(parked[0]!.error)).toMatchObject({ code: 'unknown_kind' });
    expect(central.receivedEvents(STORE).map((e) => e.seq)).toEqual([1, 3]);
    const batches = central.stats().stores[STORE]!.batches;
    // a later event is uploaded: the uploader has moved past the parked one
    await gw.store.appendEvent({ deviceId: 'sh1/1', kind: 'pick', payload: { count: 4 } });
    await waitFor(() => central.receivedEvents(STORE).some((e) => e.seq === 4), 10_000, 'the later event');
    expect(central.receivedEvents(STORE).map((e) => e.seq)).toEqual([1, 3, 4]);
    expect(central.stats().stores[STORE]!.batches).toBe(batches + 1); // the later event's; the parked one not resent
  });
});

describe('sync over HTTPS: downstream', () => {
  it('prices delivered out of order and twice: the newest version wins, subscribers never see an older one, stale ones are acked stale', async () => {
    const central = await startCentral({ faults: { duplicateRate: 0.5, reorder: true } });
    for (let v = 1; v <= 5; v++) central.publishPrice({ gtin: GTIN, price: 100 + v, currency: 'EUR', version: v });
    central.publishPrice({ gtin: GTIN2, price: 50, currency: 'EUR' });
    let messages: Array<{ topic: string; payload: string; retain: boolean }> = [];
    const gw = await gateway(syncConfig(central.url), tmp(), {
      withKiosk: true,
      beforeSync: async (bus) => {
        const c = await connectClient(bus.address().port, 'kiosk', PASSWORD);
        cleanups.push(() => c.client.endAsync());
        await c.client.subscribeAsync(`shelfgate/v1/${STORE}/price/#`, { qos: 1 });
        await c.client.subscribeAsync(`shelfgate/v1/${STORE}/sync/status`, { qos: 1 });
        messages = c.messages;
      },
    });
    const versions = (gtin: string) => messages.filter((m) => m.topic === `shelfgate/v1/${STORE}/price/${gtin}`).map((m) => (JSON.parse(m.payload) as { version: number }).version);
    await waitFor(() => versions(GTIN).includes(5) && versions(GTIN2).length > 0, 10_000, 'newest price published');
    // more versions, one page at a time, plus duplicates from the fault
    for (let v = 6; v <= 8; v++) {
      central.publishPrice({ gtin: GTIN, price: 100 + v, currency: 'EUR', version: v });
      await waitFor(() => versions(GTIN).includes(v), 10_000, `version ${v} published`);
    }
    await waitFor(() => versions(GTIN).includes(8), 10_000, 'version 8 published');
    const seen = versions(GTIN);
    for (let i = 1; i < seen.length; i++) expect(seen[i]).toBeGreaterThan(seen[i - 1]!);
    expect(gw.sync.prices.price(GTIN)).toMatchObject({ version: 8, price: 108, currency: 'EUR' });
    const msg = JSON.parse(messages.filter((m) => m.topic.endsWith(`/price/${GTIN}`)).at(-1)!.payload) as Record<string, unknown>;
    expect(msg).toMatchObject({ gtin: GTIN, price: 108, currency: 'EUR', promotion: null, version: 8 });
    expect(typeof msg.applied_at).toBe('string');
    // acks: v5 and v8 applied; v1..v4 (same page as v5) stale
    await waitFor(() => central.acks(STORE).length >= 9, 10_000, 'acks recorded');
    const acks = new Map(central.acks(STORE).map((a) => [a.change_id, a.status]));
    for (let v = 1; v <= 4; v++) expect(acks.get(`price/${GTIN}/v${v}`)).toBe('stale');
    expect(acks.get(`price/${GTIN}/v5`)).toBe('applied');
    expect(acks.get(`price/${GTIN}/v8`)).toBe('applied');
    expect(acks.get(`price/${GTIN2}/v1`)).toBe('applied');
    expect(central.stats().requests.faults_injected.feed_duplicates + central.stats().requests.faults_injected.feed_reordered_pages).toBeGreaterThan(0);
    // sync/status is readable by a kiosk
    await waitFor(() => messages.some((m) => m.topic.endsWith('/sync/status') && (JSON.parse(m.payload) as { connected: boolean }).connected), 5000, 'status');
    const status = JSON.parse(messages.filter((m) => m.topic.endsWith('/sync/status')).at(-1)!.payload) as Record<string, unknown>;
    for (const k of ['transport', 'connected', 'backlog_count', 'backlog_bytes', 'oldest_event_age_s', 'last_success', 'last_error', 'dropped', 'compacted', 'parked', 'cursor']) {
      expect(status).toHaveProperty(k);
    }
  });

  it('slot assignments go through the version rule; an unknown slot is acked invalid', async () => {
    const central = await startCentral();
    central.assignSlot({ storeId: STORE, shelf: 'sh1', slot: 1, gtin: GTIN, unitWeightG: 250 });
    central.assignSlot({ storeId: STORE, shelf: 'sh1', slot: 1, gtin: GTIN2, unitWeightG: 120 });
    central.assignSlot({ storeId: STORE, shelf: 'sh1', slot: 9, gtin: GTIN, unitWeightG: 250 });
    central.assignSlot({ storeId: 'other', shelf: 'sh1', slot: 2, gtin: GTIN, unitWeightG: 250 });
    const gw = await gateway(syncConfig(central.url));
    await waitFor(() => central.acks(STORE).length === 3, 10_000, 'slot acks');
    expect(gw.assigned).toEqual([{ shelf: 'sh1', slot: '1', gtin: GTIN2, unitWeightG: 120 }]);
    const acks = new Map(central.acks(STORE).map((a) => [a.change_id, a]));
    expect(acks.get(`slot/${STORE}/sh1/1/v1`)?.status).toBe('stale');
    expect(acks.get(`slot/${STORE}/sh1/1/v2`)?.status).toBe('applied');
    expect(acks.get(`slot/${STORE}/sh1/9/v1`)).toMatchObject({ status: 'invalid', detail: expect.stringMatching(/unknown slot/) });
    expect(gw.sync.prices.slotVersion('sh1', '1')).toBe(2);
  });

  it('a restart resumes from the stored cursor: nothing applied twice, nothing missed', async () => {
    const central = await startCentral();
    central.publishPrice({ gtin: GTIN, price: 100, currency: 'EUR' });
    central.publishPrice({ gtin: GTIN2, price: 200, currency: 'EUR' });
    const dir = tmp();
    const cfg = syncConfig(central.url);
    let gw = await gateway(cfg, dir);
    await waitFor(() => central.acks(STORE).length === 2, 10_000, 'first acks');
    await waitFor(() => gw.sync.status().pending_acks === 0, 5000, 'acks confirmed');
    const cursor = gw.sync.prices.cursor();
    expect(cursor).not.toBeNull();
    await gw.stop();

    central.publishPrice({ gtin: GTIN, price: 110, currency: 'EUR' });
    central.publishPrice({ gtin: GTIN2, price: 220, currency: 'EUR', promotion: { was_price: 250, valid_from: '2025-03-03T00:00:00+01:00', valid_to: '2025-03-10T00:00:00+01:00' } });
    gw = await gateway(cfg, dir);
    await waitFor(() => central.acks(STORE).length === 4, 10_000, 'acks of the new changes');
    expect(gw.sync.stats().pricesApplied).toBe(2); // only the new ones
    expect(central.acks(STORE).every((a) => a.times === 1)).toBe(true); // nothing re-delivered and re-acked
    expect(gw.sync.prices.price(GTIN)).toMatchObject({ version: 2, price: 110 });
    expect(gw.sync.prices.price(GTIN2)).toMatchObject({ version: 2, price: 220, promotion: { was_price: 250 } });
    expect(gw.sync.prices.cursor()).not.toBe(cursor);
  });
});

/** The garbage collector (V8 exposes it on request; a test needs it to measure what is held, not what is garbage). */
v8.setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const EVENT = { event_id: '0b3f7c52-8a0e-4c2b-9d7e-5f1a2b3c4d5e', seq: 1, device_id: 'sh1/1', kind: 'pick', priority: 0, created_at: '2025-03-01T10:15:02.120Z', payload: { count: 1 } };

// ---------------------------------------------------------------- a tiny central the test writes

interface TinyCentral {
  url: string;
  server: http.Server | https.Server;
  /** Every connection accepted, in order, and those that have closed since. */
  connections: Socket[];
  closed: Set<Socket>;
}

/** A server on 127.0.0.1:0 (https with `tls`) answering with `handle`; it never closes an idle keep-alive connection itself. */
async function tinyCentral(handle: (req: http.IncomingMessage, res: http.ServerResponse) => void, tls?: { cert: Buffer; key: Buffer }): Promise<TinyCentral> {
  const server = tls ? https.createServer({ cert: tls.cert, key: tls.key }, handle) : http.createServer(handle);
  server.keepAliveTimeout = 0;
  const connections: Socket[] = [];
  const closed = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    connections.push(s);
    s.once('close', () => closed.add(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(async () => {
    const done = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of connections) s.destroy();
    await done;
  });
  const port = (server.address() as { port: number }).port;
  return { url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`, server, connections, closed };
}

/** Answers an events:batch with every event accepted (the body is read in full first). */
function acceptBatch(req: http.IncomingMessage, res: http.ServerResponse): void {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const { events } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { events: { event_id: string; seq: number }[] };
    const results = events.map((e, index) => ({ index, event_id: e.event_id, seq: e.seq, status: 'accepted' }));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ batch_id: req.headers['idempotency-key'], results, counts: { accepted: results.length, duplicate: 0, rejected: 0 }, contiguous_seq: 0 }));
  });
}

async function transport(url: string, https: Record<string, unknown> = {}, extra: Partial<HttpsTransportOptions> = {}): Promise<HttpsTransport> {
  const t = new HttpsTransport({ config: syncConfig(url, {}, https).https!, storeId: STORE, log, ...extra });
  await t.start();
  cleanups.push(() => t.stop());
  return t;
}

describe('sync over HTTPS: what the transport reads, and where it sends the token', () => {
  const MiB = 1024 * 1024;

  it('an answer of 20 MiB is refused while it streams, in 4 lanes at once: retryable answer_too_large, memory stays flat', async () => {
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    const total = 20 * MiB;
    let peak = 0;
    const sample = (): void => {
      peak = Math.max(peak, process.memoryUsage().arrayBuffers);
    };
    const sent: number[] = [];
    const c = await tinyCentral((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json' }); // chunked: no Content-Length to refuse early
      let n = 0;
      res.once('close', () => sent.push(n));
      const pump = (): void => {
        while (n < total && !res.destroyed) {
          sample();
          n += chunk.length;
          if (!res.write(chunk)) {
            res.once('drain', pump);
            return;
          }
        }
        if (n >= total) res.end();
      };
      pump();
    });
    const t = await transport(c.url, { request_timeout_ms: 20_000 });
    const sampler = setInterval(sample, 2);
    cleanups.push(() => clearInterval(sampler));
    for (let round = 0; round < 3; round++) {
      gc(); // what earlier rounds left is garbage: measure each round from what is really held
      const base = process.memoryUsage().arrayBuffers;
      peak = base;
      const errs = await Promise.all([0, 1, 2, 3].map((lane) => t.upload(`big-${round}-${lane}`, [EVENT]).catch((e: unknown) => e)));
      for (const e of errs) {
        expect(isShelfgateError(e, ErrorCode.SYNC_RETRYABLE)).toBe(true);
        expect(failureOf(e)).toEqual({ kind: 'retryable', code: 'answer_too_large' });
      }
      // 4 lanes x about 1 MiB read (plus what the socket had read); unbounded it was 4 x 16 MiB
      expect(peak - base).toBeLessThan(16 * MiB);
    }
    clearInterval(sampler);
    await waitFor(() => sent.length === 12, 5000, 'every answer cut off');
    expect(Math.max(...sent)).toBeLessThan(total);
  });

  it('an answer declaring more than 1 MiB (Content-Length) is refused before its body is read', async () => {
    let closed = false;
    const c = await tinyCentral((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(20 * MiB) });
      res.flushHeaders(); // and no body: only the gateway can end this exchange
      res.once('close', () => (closed = true));
    });
    const t = await transport(c.url, { request_timeout_ms: 5_000 });
    const err = await t.fetchChanges(null, 0, new AbortController().signal).catch((e: unknown) => e);
    expect(failureOf(err)).toEqual({ kind: 'retryable', code: 'answer_too_large' });
    expect((err as Error).message).toMatch(/Content-Length/);
    await waitFor(() => closed, 5000, 'the connection closed by the gateway');
    // an answer just under the bound is read as usual
    const ok = await tinyCentral((req, res) => {
      req.resume();
      const page = JSON.stringify({ changes: [], next_cursor: 'c1', pad: '' });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(page.replace('"pad":""', `"pad":"${'x'.repeat(MAX_ANSWER_BYTES - page.length - 1)}"`));
    });
    const t2 = await transport(ok.url);
    expect(await t2.fetchChanges(null, 0, new AbortController().signal)).toEqual({ changes: [], nextCursor: 'c1' });
  });

  it('a redirect is fatal `redirect` and never followed: the token goes nowhere else', async () => {
    const seen: Array<string | undefined> = [];
    const elsewhere = await tinyCentral((req, res) => {
      seen.push(req.headers.authorization);
      acceptBatch(req, res);
    });
    const c = await tinyCentral((req, res) => {
      req.resume();
      res.writeHead(req.method === 'GET' ? 301 : 307, { location: `${elsewhere.url}${req.url ?? '/'}` });
      res.end();
    });
    const dir = tmp();
    writeFileSync(join(dir, 'token'), 'sekrit-token\n');
    const t = await transport(c.url, { token_file: join(dir, 'token') });
    const err = await t.upload('r1', [EVENT]).catch((e: unknown) => e);
    expect(isShelfgateError(err, ErrorCode.SYNC_FATAL)).toBe(true);
    expect(failureOf(err)).toEqual({ kind: 'fatal', code: 'redirect', status: 307 });
    expect((err as Error).message).toMatch(/not followed/);
    const feedErr = await t.fetchChanges(null, 0, new AbortController().signal).catch((e: unknown) => e);
    expect(failureOf(feedErr)).toEqual({ kind: 'fatal', code: 'redirect', status: 301 });
    expect(seen).toEqual([]);
    expect(elsewhere.connections).toHaveLength(0);
  });

  it('a keep-alive connection in constant use is replaced once it reaches its age', async () => {
    const c = await tinyCentral(acceptBatch);
    const t = await transport(c.url, {}, { maxSocketAgeMs: 300 });
    let n = 0;
    const deadline = Date.now() + 10_000;
    while (c.connections.length < 2) {
      if (Date.now() > deadline) throw new Error(`still one connection after ${n} requests`);
      await t.upload(`busy-${n++}`, [EVENT]);
    }
    // the gateway closed the aged one (central never does: keepAliveTimeout 0)
    await waitFor(() => c.closed.has(c.connections[0]!), 5000, 'the first connection closed');
    expect(n).toBeGreaterThan(1); // it was reused before it aged
  });
});

// ---------------------------------------------------------------- TLS

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
}

/** A CA, a server cert for 127.0.0.1 signed by it, a client cert signed by it, and a rogue CA with its own server cert. */
function makePki(dir: string): Record<string, string> {
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  writeFileSync(join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
  for (const ca of ['ca', 'rogue']) {
    openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${ca}.key`, '-out', `${ca}.pem`, '-days', '2', '-subj', `/CN=test ${ca} CA`], dir);
  }
  const issue = (name: string, ca: string, ext: string, cn: string): void => {
    openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`], dir);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', ext], dir);
  };
  issue('server', 'ca', 'san.ext', '127.0.0.1');
  issue('rogue-server', 'rogue', 'san.ext', '127.0.0.1');
  issue('client', 'ca', 'client.ext', STORE);
  const f = (n: string) => join(dir, n);
  return { ca: f('ca.pem'), server: f('server.pem'), serverKey: f('server.key'), rogueServer: f('rogue-server.pem'), rogueKey: f('rogue-server.key'), client: f('client.pem'), clientKey: f('client.key') };
}

describe('sync over HTTPS: TLS', () => {
  const dir = tmp();
  const pki = makePki(dir);
  const pem = (p: string) => readFileSync(p);

  it('refuses a server certificate not signed by the configured CA: SYNC error, nothing deleted from the outbox', async () => {
    const central = await startCentral({ tls: { cert: pem(pki.rogueServer!), key: pem(pki.rogueKey!) } });
    const cfg = syncConfig(central.url.replace('http:', 'https:'), {}, { ca_file: pki.ca });
    const t = new HttpsTransport({ config: cfg.https!, storeId: STORE, log });
    await t.start();
    cleanups.push(() => t.stop());
    const err = await t.upload('b1', [EVENT]).catch((e: unknown) => e);
    expect(isShelfgateError(err, ErrorCode.SYNC_FATAL)).toBe(true);
    expect(failureOf(err)).toEqual({ kind: 'fatal', code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });

    const gw = await gateway(cfg);
    await appendEvents(gw.store, 10, 2);
    await waitFor(() => gw.sync.status().last_error?.code !== undefined, 5000, 'TLS error reported');
    const failures = gw.sync.stats().batchFailures;
    await waitFor(() => gw.sync.stats().batchFailures > failures, 5000, 'a retry, refused too');
    expect(gw.store.outboxStats().count).toBe(10);
    expect(gw.sync.status().connected).toBe(false);
    expect(central.stats().totals.events).toBe(0);
  });

  it('central moves to a certificate the gateway does not trust: once the verified keep-alive connection ages out, the next request fails TLS verification', async () => {
    const c = await tinyCentral(acceptBatch, { cert: pem(pki.server!), key: pem(pki.serverKey!) });
    const t = await transport(c.url, { ca_file: pki.ca }, { maxSocketAgeMs: 2000 });
    expect(await t.upload('k1', [EVENT])).toHaveLength(1);
    // central keeps its TLS session ticket keys across the change (as a load balancer does): a resumed
    // session would skip certificate verification
    const server = c.server as https.Server;
    const ticketKeys = server.getTicketKeys();
    server.setSecureContext({ cert: pem(pki.rogueServer!), key: pem(pki.rogueKey!) });
    server.setTicketKeys(ticketKeys);
    // within its age the connection verified under the old certificate is still used
    expect(await t.upload('k2', [EVENT])).toHaveLength(1);
    expect(c.connections).toHaveLength(1);
    // the gateway closes it at its age (central would keep it open: keepAliveTimeout 0)...
    await waitFor(() => c.closed.has(c.connections[0]!), 10_000, 'the aged connection closed');
    // ...so the next request opens a new one, verifies the certificate central shows now, and refuses it
    const err = await t.upload('k3', [EVENT]).catch((e: unknown) => e);
    expect(isShelfgateError(err, ErrorCode.SYNC_FATAL)).toBe(true);
    expect(failureOf(err)).toEqual({ kind: 'fatal', code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
    expect(c.connections).toHaveLength(2);
  });

  it('mutual TLS: works with the client certificate, refused without one', async () => {
    const central = await startCentral({ tls: { cert: pem(pki.server!), key: pem(pki.serverKey!), ca: pem(pki.ca!), requestClientCert: true } });
    const url = central.url;
    expect(url.startsWith('https://')).toBe(true);

    const bare = new HttpsTransport({ config: syncConfig(url, {}, { ca_file: pki.ca }).https!, storeId: STORE, log });
    await bare.start();
    cleanups.push(() => bare.stop());
    const err = await bare.upload('b1', [EVENT]).catch((e: unknown) => e);
    expect(isShelfgateError(err, ErrorCode.SYNC_FATAL) || isShelfgateError(err, ErrorCode.SYNC_RETRYABLE)).toBe(true);
    expect(central.stats().totals.events).toBe(0);

    const cfg = syncConfig(url, {}, { ca_file: pki.ca, cert_file: pki.client, key_file: pki.clientKey });
    const gw = await gateway(cfg);
    await appendEvents(gw.store, 120, 3);
    await waitFor(() => gw.store.outboxStats().count === 0, 10_000, 'drained over mTLS');
    expectExactlyOnceInOrder(central, 120);
  });

  it('refuses plain http to a non-loopback host and a missing token file, with clear errors', async () => {
    expect(() => new HttpsTransport({ config: syncConfig('http://central.example.com').https!, storeId: STORE, log })).toThrow(/https/);
    const t = new HttpsTransport({ config: syncConfig('https://127.0.0.1:1', {}, { token_file: join(dir, 'no-such-token') }).https!, storeId: STORE, log });
    await expect(t.start()).rejects.toMatchObject({ code: ErrorCode.CONFIG_UNREADABLE, message: expect.stringMatching(/token_file/) });
  });

  it('sends the bearer token from token_file; a wrong token is a fatal 401 with its code', async () => {
    const c = new CentralSimulator({ log, token: 'sekrit-token' });
    await c.start();
    cleanups.push(() => c.stop());
    writeFileSync(join(dir, 'good'), 'sekrit-token\n');
    writeFileSync(join(dir, 'bad'), 'wrong-token\n');
    const good = new HttpsTransport({ config: syncConfig(c.url, {}, { token_file: join(dir, 'good') }).https!, storeId: STORE, log });
    const bad = new HttpsTransport({ config: syncConfig(c.url, {}, { token_file: join(dir, 'bad') }).https!, storeId: STORE, log });
    await good.start();
    await bad.start();
    cleanups.push(() => good.stop(), () => bad.stop());
    expect(await good.upload('b1', [EVENT])).toEqual([{ event_id: EVENT.event_id, seq: 1, status: 'accepted' }]);
    const err = await bad.upload('b2', [{ ...EVENT, event_id: '7d1e2f30-4a5b-4c6d-8e9f-0a1b2c3d4e5f', seq: 2 }]).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.SYNC_FATAL });
    expect(failureOf(err)).toEqual({ kind: 'fatal', code: 'invalid_token', status: 401 });
    // a large batch is gzip-compressed and still accepted
    const many = Array.from({ length: 200 }, (_, i) => ({ ...EVENT, event_id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, seq: 10 + i, payload: { count: i, pad: 'x'.repeat(100) } }));
    const res = await good.upload('b3', many);
    expect(res.filter((r) => r.status === 'accepted')).toHaveLength(200);
  });
});
