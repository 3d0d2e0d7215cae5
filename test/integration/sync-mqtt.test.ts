/**
 * The MQTT bridge (src/sync/mqtt-bridge.ts) against a REAL mosquitto on a loopback port, with the
 * reference central consuming through simulators/central/mqtt-adapter.ts. The gateway and the central
 * consumer are different broker users; an ACL keeps the store user on its own store's topics. The
 * bridge is used directly (no daemon). Every wait is bounded.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import mqtt, { type MqttClient } from 'mqtt';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, isShelfgateError } from '../../src/errors';
import { silentLogger } from '../../src/log';
import { failureOf } from '../../src/sync/failure';
import { MqttBridge, type MqttBridgeOptions, type MqttSyncConfig } from '../../src/sync/mqtt-bridge';
import type { Change, UploadEvent } from '../../src/sync/types';
import { CentralSimulator, decodeCursor } from '../../simulators/central/simulator';
import { CentralMqttAdapter } from '../../simulators/central/mqtt-adapter';
import { connectClient } from '../helpers/daemon';
import { centralBrokerAcl, makeLeafCert, makeTestCa, startMosquitto, type Mosquitto } from '../helpers/mosquitto';
import { waitFor } from '../helpers/wait';

const STORE = 'store-0042';
/** A store whose broker sessions only the tests that inject what central never sends use (QoS1 queues them for every session of the store). */
const ISOLATED = 'store-0099';
const OTHER = 'store-0043';
const PREFIX = 'shelfgate/central/v1';
const log = silentLogger();

const ACL = centralBrokerAcl(PREFIX, [STORE, ISOLATED]);

/** The pause before a retry, as the sync service's backoff makes one: part of the scenario, not a wait. */
const retryPause = (): Promise<void> => new Promise((r) => setTimeout(r, 100));

let seq = 0;
function events(n: number, device = 'g1-s1/1'): UploadEvent[] {
  return Array.from({ length: n }, () => ({
    event_id: randomUUID(),
    seq: ++seq,
    device_id: device,
    kind: 'pick',
    priority: 0,
    created_at: new Date().toISOString(),
    payload: { units: 1 },
  }));
}

/** Fetches like the sync service: follows nextCursor until `done(seen)` and the cursor reached `head`. */
async function drain(bridge: MqttBridge, cursor: string | null, done: (seen: Change[]) => boolean, head: () => string | null, timeoutMs = 10_000): Promise<{ seen: Change[]; cursor: string | null }> {
  const seen: Change[] = [];
  const deadline = Date.now() + timeoutMs;
  const ac = new AbortController();
  while (!(done(seen) && cursor === head())) {
    if (Date.now() > deadline) throw new Error(`drain timed out; seen ${seen.map((c) => c.change_id).join(', ')}; cursor ${cursor} head ${head()}`);
    try {
      const r = await bridge.fetchChanges(cursor, 1, ac.signal);
      seen.push(...r.changes);
      cursor = r.nextCursor;
    } catch (e) {
      if (!isShelfgateError(e, ErrorCode.SYNC_RETRYABLE)) throw e;
      await retryPause();
    }
  }
  return { seen, cursor };
}

/** Uploads like the sync service: retries SYNC_RETRYABLE until the deadline. */
async function uploadWithRetry(bridge: MqttBridge, batchId: string, evs: UploadEvent[], retries: { n: number }, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await bridge.upload(batchId, evs);
    } catch (e) {
      if (!isShelfgateError(e, ErrorCode.SYNC_RETRYABLE) || Date.now() > deadline) throw e;
      retries.n++;
      await retryPause();
    }
  }
}


/** Uploads one event until the bridge answers SYNC_FATAL (bounded: 5 s); returns that error. */
function firstFatalUpload(b: MqttBridge, what: string): Promise<Error> {
  return waitFor(
    async () => {
      try {
        await b.upload(randomUUID(), events(1));
        return undefined;
      } catch (e) {
        return isShelfgateError(e, ErrorCode.SYNC_FATAL) ? e : undefined;
      }
    },
    5_000,
    what,
    50,
  );
}

describe('MQTT bridge with mosquitto (password file, ACL, persistence)', () => {
  let dir: string;
  let mosq: Mosquitto;
  let central: CentralSimulator;
  let adapter: CentralMqttAdapter;
  const bridges: MqttBridge[] = [];
  const head = (): string | null => {
    const h = central.stats().changes.head;
    return Buffer.from(`v1:${h}`).toString('base64url');
  };

  function bridge(over: Partial<MqttSyncConfig> = {}, extra: Partial<MqttBridgeOptions> = {}): MqttBridge {
    const b = new MqttBridge({
      storeId: STORE,
      config: { url: mosq.url, username: STORE, password_file: join(dir, 'store.pw'), topic_prefix: PREFIX, ...over },
      log,
      resultTimeoutMs: 3_000,
      reconnectPeriodMs: 200,
      fatalReconnectPeriodMs: 1_000,
      connectTimeoutMs: 3_000,
      syncRetryMs: 3_000,
      ...extra,
    });
    bridges.push(b);
    return b;
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sg-syncmqtt-'));
    writeFileSync(join(dir, 'store.pw'), 'store-secret\n');
    writeFileSync(join(dir, 'isolated.pw'), 'isolated-secret\n');
    writeFileSync(join(dir, 'wrong.pw'), 'not-the-password\n');
    mosq = await startMosquitto({ users: { central: 'central-secret', [STORE]: 'store-secret', [ISOLATED]: 'isolated-secret' }, acl: ACL });
    central = new CentralSimulator({ log });
    await central.start();
    adapter = new CentralMqttAdapter({ central, url: mosq.url, username: 'central', password: 'central-secret', topicPrefix: PREFIX, log, storeIds: [STORE, ISOLATED] });
    await adapter.start();
  });

  afterEach(async () => {
    central.resetFaults();
    await Promise.all(bridges.splice(0).map((b) => b.stop()));
  });

  afterAll(async () => {
    await adapter?.stop();
    await central?.stop();
    await mosq?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('uploads batches (pipelined); every result arrives; central stored every event exactly once', async () => {
    const b = bridge();
    await b.start();
    expect(await b.waitReady(5_000)).toBe(true);
    const batches = Array.from({ length: 5 }, (_, i) => ({ id: randomUUID(), evs: events(20, `dev-${i}`) }));
    const results = await Promise.all(batches.map((x) => b.upload(x.id, x.evs)));
    results.forEach((r, i) => {
      expect(r).toHaveLength(20);
      expect(r.every((x) => x.status === 'accepted')).toBe(true);
      expect(new Set(r.map((x) => x.event_id))).toEqual(new Set(batches[i]!.evs.map((e) => e.event_id)));
    });
    const stored = central.receivedEvents(STORE);
    const ids = new Set(batches.flatMap((x) => x.evs.map((e) => e.event_id)));
    const mine = stored.filter((e) => ids.has(e.event_id));
    expect(mine).toHaveLength(100);
    expect(new Set(mine.map((e) => e.event_id)).size).toBe(100);
    expect(central.stats().stores[STORE]!.out_of_order_devices).toEqual([]);
  });

  it('a repeated batch id gets the stored response (also two at once); events are stored once', async () => {
    const b = bridge();
    await b.start();
    await b.waitReady(5_000);
    const id = randomUUID();
    const evs = events(10);
    expect((await b.upload(id, evs)).every((r) => r.status === 'accepted')).toBe(true);
    // the same batch id and payload within 24 h: the stored response (docs/central-api.yaml, Idempotency-Key)
    const again = await b.upload(id, evs);
    expect(again).toHaveLength(10);
    expect(again.every((r) => r.status === 'accepted')).toBe(true);
    const [x, y] = await Promise.all([b.upload(id, evs), b.upload(id, evs)]);
    expect(x!.every((r) => r.status === 'accepted') && y!.every((r) => r.status === 'accepted')).toBe(true);
    // the events themselves, under a new batch id: deduplicated by event_id
    expect((await b.upload(randomUUID(), evs)).every((r) => r.status === 'duplicate')).toBe(true);
    expect(central.receivedEvents(STORE).filter((e) => evs.some((v) => v.event_id === e.event_id))).toHaveLength(10);
  });

  it('an ignored batch (injected fault) times out retryable; the retry succeeds', async () => {
    const b = bridge({}, { resultTimeoutMs: 800 });
    await b.start();
    await b.waitReady(5_000);
    central.setFaults({ dropConnectionRate: 1 });
    const id = randomUUID();
    const evs = events(3);
    await expect(b.upload(id, evs)).rejects.toMatchObject({ code: ErrorCode.SYNC_RETRYABLE });
    central.setFaults({ dropConnectionRate: 0, status5xxRate: 1, retryAfterS: 2 });
    // central's Problem, in the failure's terms: its own status and code, retry_after_s as retryAfterMs
    await expect(b.upload(id, evs)).rejects.toMatchObject({ code: ErrorCode.SYNC_RETRYABLE, failure: { kind: 'retryable', code: 'unavailable', status: 503, retryAfterMs: 2000 } });
    central.setFaults({ status5xxRate: 0, lostResponseRate: 1 });
    await expect(b.upload(id, evs)).rejects.toMatchObject({ code: ErrorCode.SYNC_RETRYABLE });
    central.resetFaults();
    expect((await b.upload(id, evs)).map((r) => r.status)).toEqual(['accepted', 'accepted', 'accepted']); // the lost response's, stored with the key
    expect(central.receivedEvents(STORE).filter((e) => evs.some((v) => v.event_id === e.event_id))).toHaveLength(3);
  });

  /** A client as central's user, to publish what the reference central never would. */
  async function centralClient(): Promise<MqttClient> {
    const c = await mqtt.connectAsync(mosq.url, { username: 'central', password: 'central-secret', reconnectPeriod: 0, clientId: `test-central-${randomUUID().slice(0, 8)}` });
    rawClients.push(c);
    return c;
  }
  const rawClients: MqttClient[] = [];
  afterEach(async () => {
    await Promise.all(rawClients.splice(0).map((c) => c.endAsync()));
  });
  const MiB = 1024 * 1024;
  const isolated = (clientId: string, extra: Partial<MqttBridgeOptions> = {}): MqttBridge =>
    bridge({ username: ISOLATED, password_file: join(dir, 'isolated.pw'), client_id: clientId }, { storeId: ISOLATED, ...extra });

  it('a result over 1 MiB rejects its upload retryable answer_too_large', async () => {
    const b = isolated(`shelfgate-${ISOLATED}-big-result`);
    await b.start();
    await b.waitReady(5_000);
    central.setFaults({ lostResponseRate: 1 }); // the reference central stores the batch and stays silent; this one answers
    const raw = await centralClient();
    await raw.subscribeAsync(`${PREFIX}/stores/${ISOLATED}/events/+`, { qos: 1 });
    raw.on('message', (topic, payload) => {
      const batchId = topic.split('/').at(-1)!;
      const { events: evs } = JSON.parse(payload.toString('utf8')) as { events: UploadEvent[] };
      const results = evs.map((e, index) => ({ index, event_id: e.event_id, seq: e.seq, status: 'accepted' }));
      void raw.publishAsync(`${PREFIX}/stores/${ISOLATED}/events-result/${batchId}`, JSON.stringify({ batch_id: batchId, results, pad: 'x'.repeat(1.5 * MiB) }), { qos: 1 });
    });
    const err = await b.upload(randomUUID(), events(2)).catch((e: unknown) => e);
    expect(isShelfgateError(err, ErrorCode.SYNC_RETRYABLE)).toBe(true);
    expect(failureOf(err)).toEqual({ kind: 'retryable', code: 'answer_too_large' });
  });

  it('a changes message the bridge cannot take (over 1 MiB, no change_id) is not skipped: fetchChanges reports it; a clean replay goes on to the head', async () => {
    const b = isolated(`shelfgate-${ISOLATED}-bad-changes`);
    await b.start();
    await b.waitReady(5_000);
    const ac = new AbortController();
    let { cursor } = await drain(b, null, () => true, head);
    const raw = await centralClient();
    const changes = `${PREFIX}/stores/${ISOLATED}/changes`;
    const price = { change_id: 'price/04006381333931/v999', type: 'price', gtin: '04006381333931', price: 1, currency: 'EUR', promotion: null, version: 999, cursor: 'not-a-real-cursor' };
    await raw.publishAsync(changes, JSON.stringify({ ...price, pad: 'x'.repeat(1.5 * MiB) }), { qos: 1 });
    const tooLarge = await b.fetchChanges(cursor, 5, ac.signal).catch((e: unknown) => e);
    expect(failureOf(tooLarge)).toEqual({ kind: 'retryable', code: 'answer_too_large' });
    const { change_id: _, ...withoutId } = price;
    await raw.publishAsync(changes, JSON.stringify(withoutId), { qos: 1 });
    const malformed = await b.fetchChanges(cursor, 5, ac.signal).catch((e: unknown) => e);
    expect(isShelfgateError(malformed, ErrorCode.SYNC_FATAL)).toBe(true);
    expect(failureOf(malformed)).toEqual({ kind: 'fatal', code: 'contract' });
    expect((malformed as Error).message).toMatch(/change_id: is required/);
    // central replays from the cursor the service holds (neither message is in its feed): the feed goes on
    const next = central.publishPrice({ gtin: '4006381333931', price: 777, currency: 'EUR' });
    ({ cursor } = await drain(b, cursor, (seen) => seen.some((c) => c.change_id === next.change_id), head));
    expect(cursor).toBe(head());
  });

  it('the changes held are bounded in bytes too: past the bound the oldest go and a replay is asked for', async () => {
    const bounded = isolated(`shelfgate-${ISOLATED}-byte-bound`, { maxLoggedBytes: 8 * 1024 });
    await bounded.start();
    await bounded.waitReady(5_000);
    const { cursor } = await drain(bounded, null, () => true, head);
    expect((await bounded.fetchChanges(cursor, 0, new AbortController().signal)).changes).toEqual([]); // as the service does: it asks from its cursor
    const raw = await centralClient();
    const syncs: string[] = [];
    await raw.subscribeAsync(`${PREFIX}/stores/${ISOLATED}/changes-sync`, { qos: 1 });
    raw.on('message', (_t, payload) => syncs.push(payload.toString('utf8')));
    // three changes of 3 KiB each while nobody fetches: the third does not fit in 8 KiB
    const big = (v: number) => ({ change_id: `price/04006381333931/v${1000 + v}`, type: 'price', gtin: '04006381333931', price: v, currency: 'EUR', promotion: null, version: 1000 + v, pad: 'x'.repeat(3 * 1024) });
    for (const v of [1, 2, 3]) await raw.publishAsync(`${PREFIX}/stores/${ISOLATED}/changes`, JSON.stringify(big(v)), { qos: 1 });
    await waitFor(() => syncs.length > 0, 5_000, 'a replay asked for');
    expect(JSON.parse(syncs[0]!)).toMatchObject({ cursor });
    // what the bridge holds (asked from the beginning, it hands out everything it has): the oldest went
    const held = await bounded.fetchChanges(null, 0, new AbortController().signal);
    expect(held.changes.map((c) => c.change_id)).toEqual([big(2).change_id, big(3).change_id]);
  });

  it('changes: replay from null, live changes, cursor reaches the feed head, acks are recorded', async () => {
    const first = central.publishPrice({ gtin: '4006381333931', price: 199, currency: 'EUR' });
    const b = bridge();
    await b.start();
    await b.waitReady(5_000);
    let r = await drain(b, null, (seen) => seen.some((c) => c.change_id === first.change_id), head);
    const p = central.publishPrice({ gtin: '4006381333931', price: 249, currency: 'EUR' });
    const s = central.assignSlot({ storeId: STORE, shelf: 'g1-s2', slot: 3, gtin: '4006381333931', unitWeightG: 251.5 });
    r = await drain(b, r.cursor, (seen) => [p.change_id, s.change_id].every((id) => seen.some((c) => c.change_id === id)), head);
    expect(r.seen.every((c) => typeof c.cursor === 'string')).toBe(true);
    // the same Change shape as the HTTPS transport hands out (src/sync/types.ts)
    expect(r.seen.find((c) => c.change_id === s.change_id)).toMatchObject({ type: 'slot_assignment', shelf: 'g1-s2', slot: '3', unit_weight_g: 251.5 });
    expect(r.cursor).toBe(head());
    await b.ack([
      { change_id: p.change_id, status: 'applied', applied_at: new Date().toISOString() },
      { change_id: s.change_id, status: 'applied', applied_at: new Date().toISOString() },
    ]);
    await waitFor(() => central.acks(STORE).filter((a) => a.change_id === p.change_id || a.change_id === s.change_id).length === 2, 10_000, 'acks recorded');
  });

  it('product changes and a slot change with labels come over the adapter as they come over HTTPS', async () => {
    const b = bridge();
    await b.start();
    await b.waitReady(5_000);
    const { cursor } = await drain(b, null, () => true, head);
    const product = central.publishProduct({ gtin: '4006381333931', name: 'Whole milk 3.5 %', netContent: { amount: 1, unit: 'l' }, storeId: STORE });
    const slot = central.assignSlot({ storeId: STORE, shelf: 'g1-s2', slot: 4, gtin: '4006381333931', unitWeightG: 1040, labels: ['0000021EC9AB1234'] });
    const r = await drain(b, cursor, (seen) => [product.change_id, slot.change_id].every((id) => seen.some((c) => c.change_id === id)), head);
    // a type the transport does not type itself is handed on with every field (the labels feature's applier reads them)
    expect(r.seen.find((c) => c.change_id === product.change_id)).toMatchObject({ type: 'product', gtin: '04006381333931', name: 'Whole milk 3.5 %', net_content: { amount: 1, unit: 'l' }, version: product.version });
    expect(r.seen.find((c) => c.change_id === slot.change_id)).toMatchObject({ type: 'slot_assignment', slot: '4', labels: ['0000021EC9AB1234'] });
  });

  it('the cursor handed out advances only to complete positions and reaches the store feed head', async () => {
    const b = bridge();
    await b.start();
    await b.waitReady(5_000);
    const ac = new AbortController();
    let cursor: string | null = null;
    const seen = new Set<string>();
    const storeHead = (): number => {
      const all = central.changes();
      let pos = 0;
      all.forEach((c, i) => {
        if (c.store_id === null || c.store_id === STORE) pos = i + 1;
      });
      return pos;
    };
    const deadline = Date.now() + 10_000;
    const notOurs = central.assignSlot({ storeId: OTHER, shelf: 'g9', slot: 1, gtin: '96385074', unitWeightG: 10 });
    central.publishPrice({ gtin: '96385074', price: 100, currency: 'EUR' });
    for (;;) {
      const r = await b.fetchChanges(cursor, 1, ac.signal);
      for (const c of r.changes) seen.add(c.change_id);
      if (r.nextCursor !== null && r.nextCursor !== cursor) {
        // every change of this store up to the cursor handed out has been seen
        const pos = decodeCursor(r.nextCursor)!;
        const upTo = central.changes().slice(0, pos).filter((c) => c.store_id === null || c.store_id === STORE);
        for (const c of upTo) expect(seen.has(c.change_id), `${c.change_id} before cursor ${pos}`).toBe(true);
      }
      cursor = r.nextCursor;
      if (cursor !== null && decodeCursor(cursor)! >= storeHead()) break;
      if (Date.now() > deadline) throw new Error('cursor never reached the head');
    }
    expect(seen.has(notOurs.change_id)).toBe(false);
  });

  it('changes published while the gateway was away arrive after it reconnects (persistent session and changes-sync)', async () => {
    const clientId = `shelfgate-${STORE}-offline-${randomUUID().slice(0, 8)}`;
    const a = bridge({ client_id: clientId });
    await a.start();
    await a.waitReady(5_000);
    const { cursor } = await drain(a, null, () => true, head);
    await a.stop();

    // an observer on the broker: once it has the changes, mosquitto has queued them for the session too
    const observer = await connectClient(mosq.port, 'central', 'central-secret');
    await observer.client.subscribeAsync(`${PREFIX}/stores/${STORE}/changes`, { qos: 1 });
    const published = [1, 2, 3].map((i) => central.publishPrice({ gtin: '4006381333931', price: 300 + i, currency: 'EUR' }));
    const routed = (id: string): boolean => observer.messages.some((m) => (JSON.parse(m.payload) as { change_id?: string }).change_id === id);
    await waitFor(() => published.every((p) => routed(p.change_id)), 10_000, 'the changes on the broker');
    await observer.client.endAsync();

    const b = bridge({ client_id: clientId });
    await b.start();
    await b.waitReady(5_000);
    expect(b.sessionPresent).toBe(true);
    const r = await drain(b, cursor, (seen) => published.every((p) => seen.some((c) => c.change_id === p.change_id)), head);
    expect(r.cursor).toBe(head());

    // A fresh client id (no session at all) gets them through the changes-sync replay alone.
    const c = bridge({ client_id: `${clientId}-fresh` });
    await c.start();
    await c.waitReady(5_000);
    expect(c.sessionPresent).toBe(false);
    await drain(c, cursor, (seen) => published.every((p) => seen.some((x) => x.change_id === p.change_id)), head);
  });

  it('wrong password -> SYNC_FATAL (uploads and the feed)', async () => {
    const b = bridge({ password_file: join(dir, 'wrong.pw'), client_id: 'shelfgate-wrong-pw' });
    await b.start();
    expect(await b.waitReady(1_000)).toBe(false);
    const err = await firstFatalUpload(b, 'a fatal upload error');
    // 0x86 bad user name or password; mosquitto 2.0 answers 0x87 not authorized; no HTTP status made up
    expect(['bad_credentials', 'not_authorized']).toContain(failureOf(err).code);
    expect(failureOf(err)).toEqual({ kind: 'fatal', code: failureOf(err).code });
    await expect(b.fetchChanges(null, 0, new AbortController().signal)).rejects.toMatchObject({ code: ErrorCode.SYNC_FATAL });
  });

  it('the ACL keeps a store user on its own store: acting for another store -> SYNC_FATAL', async () => {
    const b = new MqttBridge({
      storeId: OTHER,
      config: { url: mosq.url, username: STORE, password_file: join(dir, 'store.pw'), topic_prefix: PREFIX, client_id: 'shelfgate-acl-test' },
      log,
      reconnectPeriodMs: 200,
    });
    bridges.push(b);
    await b.start();
    const err = await firstFatalUpload(b, 'a fatal error');
    // mosquitto grants the subscription (and delivers nothing) but refuses the publish with PUBACK 0x87
    expect(err.message).toMatch(/refused/);
    expect(failureOf(err)).toEqual({ kind: 'fatal', code: 'not_authorized' });
  });

  it('mosquitto killed (SIGKILL) and restarted mid-stream: uploads reject retryable while down, then succeed; nothing lost or doubled', async () => {
    const b = bridge({ client_id: `shelfgate-${STORE}-restart` });
    await b.start();
    await b.waitReady(5_000);
    let { cursor } = await drain(b, null, () => true, head);
    const batches = Array.from({ length: 10 }, () => ({ id: randomUUID(), evs: events(10, 'restart-dev') }));
    const retries = { n: 0 };
    let downRejections = 0;
    const done: string[][] = [];
    const beforeChange = central.publishPrice({ gtin: '4006381333931', price: 400, currency: 'EUR' });
    let duringChange: Change | null = null;
    let restarted: Promise<void> | undefined;
    for (let i = 0; i < batches.length; i++) {
      const x = batches[i]!;
      if (i === 4) {
        // The session must be on disk before SIGKILL. mosquitto autosaves (every 1-2 s) in its main
        // loop and logs each save as it starts: a second save logged from now on means one made
        // after the session was set up has been written.
        const saves = (): number => mosq.log().split('Saving in-memory database').length - 1;
        const before = saves();
        await waitFor(() => saves() >= before + 2, 10_000, 'two mosquitto autosaves');
        await mosq.kill();
        await waitFor(() => !b.connected, 5_000, 'the bridge to notice');
        await expect(b.upload(x.id, x.evs)).rejects.toMatchObject({ code: ErrorCode.SYNC_RETRYABLE });
        downRejections++;
        duringChange = central.publishPrice({ gtin: '4006381333931', price: 401, currency: 'EUR' }) as unknown as Change;
        // the broker comes back once an upload has been refused while it was down
        const refused = retries.n;
        restarted = waitFor(() => retries.n > refused, 10_000, 'an upload retry while the broker is down').then(() => mosq.restart());
      }
      const r = await uploadWithRetry(b, x.id, x.evs, retries);
      expect(r.every((e) => e.status === 'accepted' || e.status === 'duplicate')).toBe(true);
      done.push(r.map((e) => e.event_id));
    }
    await restarted;
    expect(downRejections).toBe(1);
    expect(b.sessionPresent).toBe(true); // the persistent session survived the broker restart
    expect(retries.n).toBeGreaterThan(0);
    const ids = batches.flatMap((x) => x.evs.map((e) => e.event_id));
    const idSet = new Set(ids);
    const stored = central.receivedEvents(STORE, { orderBy: 'seq' }).filter((e) => idSet.has(e.event_id));
    expect(stored).toHaveLength(100);
    expect(new Set(stored.map((e) => e.event_id)).size).toBe(100);
    expect(central.stats().stores[STORE]!.out_of_order_devices).toEqual([]);
    // the changes published before and during the outage arrive after it
    ({ cursor } = await drain(b, cursor, (seen) => [beforeChange.change_id, duringChange!.change_id].every((id) => seen.some((c) => c.change_id === id)), head, 15_000));
    expect(cursor).toBe(head());
  });
});

describe('MQTT bridge over TLS (test CA made with openssl)', () => {
  let dir: string;
  let mosq: Mosquitto;
  let mtls: Mosquitto;
  let central: CentralSimulator;
  let adapter: CentralMqttAdapter;
  const bridges: MqttBridge[] = [];
  let files: { ca: string; otherCa: string; clientCert: string; clientKey: string };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sg-syncmqtt-tls-'));
    const ca = makeTestCa(dir, 'test-ca');
    const other = makeTestCa(dir, 'other-ca');
    const server = makeLeafCert(dir, ca, 'broker');
    const client = makeLeafCert(dir, ca, STORE, { client: true });
    files = { ca: ca.certFile, otherCa: other.certFile, clientCert: client.certFile, clientKey: client.keyFile };
    mosq = await startMosquitto({ tls: { caFile: ca.certFile, certFile: server.certFile, keyFile: server.keyFile } });
    mtls = await startMosquitto({ tls: { caFile: ca.certFile, certFile: server.certFile, keyFile: server.keyFile, requireCertificate: true } });
    central = new CentralSimulator({ log });
    await central.start();
    adapter = new CentralMqttAdapter({ central, url: mosq.url, topicPrefix: PREFIX, log, clientId: 'central-tls-test' });
    await adapter.start();
  }, 60_000);

  afterEach(async () => {
    await Promise.all(bridges.splice(0).map((b) => b.stop()));
  });

  afterAll(async () => {
    await adapter?.stop();
    await central?.stop();
    await mosq?.dispose();
    await mtls?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function bridge(url: string, over: Partial<MqttSyncConfig>): MqttBridge {
    const b = new MqttBridge({ storeId: STORE, config: { url, topic_prefix: PREFIX, ...over }, log, reconnectPeriodMs: 200, fatalReconnectPeriodMs: 1_000, connectTimeoutMs: 3_000, resultTimeoutMs: 3_000 });
    bridges.push(b);
    return b;
  }

  it('with the right CA the gateway connects and uploads', async () => {
    const b = bridge(mosq.tlsUrl!, { ca_file: files.ca });
    await b.start();
    expect(await b.waitReady(5_000)).toBe(true);
    const r = await b.upload(randomUUID(), events(2));
    expect(r.map((x) => x.status)).toEqual(['accepted', 'accepted']);
  });

  it('with another CA the broker is refused: SYNC_FATAL', async () => {
    const b = bridge(mosq.tlsUrl!, { ca_file: files.otherCa, client_id: 'shelfgate-other-ca' });
    await b.start();
    expect(await b.waitReady(1_500)).toBe(false);
    await expect(b.upload(randomUUID(), events(1))).rejects.toMatchObject({ code: ErrorCode.SYNC_FATAL, failure: { kind: 'fatal', code: expect.any(String) } });
  });

  it('mutual TLS: with the client certificate it connects; without one the broker refuses', async () => {
    const ok = bridge(mtls.tlsUrl!, { ca_file: files.ca, cert_file: files.clientCert, key_file: files.clientKey, client_id: 'shelfgate-mtls-ok' });
    await ok.start();
    expect(await ok.waitReady(5_000)).toBe(true);
    const no = bridge(mtls.tlsUrl!, { ca_file: files.ca, client_id: 'shelfgate-mtls-none' });
    await no.start();
    expect(await no.waitReady(1_500)).toBe(false);
    await expect(no.upload(randomUUID(), events(1))).rejects.toMatchObject({ code: expect.stringMatching(/SYNC_(RETRYABLE|FATAL)/) });
  });
});
