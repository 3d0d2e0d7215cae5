/**
 * The durable store against real SQLite files in temporary directories.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import Database from 'better-sqlite3';
import ts from 'typescript';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCode, isShelfgateError } from '../../src/errors';
import { silentLogger } from '../../src/log';
import { openDatabase } from '../../src/store/db';
import { APPLICATION_ID } from '../../src/store/migrations';
import { copyFileSync } from 'node:fs';
import { MAX_BATCH_OPS, Store, StoreWriteError, type StoreOptions } from '../../src/store/store';
import { composeMigrations } from '../../src/core/gateway';
import { EventBus } from '../../src/core/events';
import { Locations } from '../../src/core/locations';
import { BUILTIN_FEATURES } from '../../src/features';
import { CalibrationRepository } from '../../src/features/shelves/repository';
import { waitFor } from '../helpers/wait';

let dir: string;
let dbPath: string;
const open: Store[] = [];
/** The schema version of the core plus the built-in features. */
/** The highest schema version of the built-in features (versions may have gaps: a feature reserves its own range). */
const LATEST = Math.max(...composeMigrations(BUILTIN_FEATURES).map((m) => m.version));

function makeStore(over: Partial<StoreOptions> = {}): Store {
  const s = new Store({ path: dbPath, synchronous: 'full', flushIntervalMs: 10, storeId: 'store-1', log: silentLogger(), migrations: composeMigrations(BUILTIN_FEATURES), ...over });
  open.push(s);
  return s;
}

async function started(over: Partial<StoreOptions> = {}): Promise<Store> {
  const s = makeStore(over);
  await s.start();
  return s;
}

/** The modules that own the location, stock and weight-calibration tables, on store `s` (before or after start). */
function modules(s: Store, slots: string[] = ['a', 'b']) {
  const locations = new Locations({ shelves: [{ id: 'sh', slots: slots.map((id) => ({ id })) }], store: s, events: new EventBus(silentLogger()), log: silentLogger() });
  const calibration = new CalibrationRepository(s);
  const stock = (slotId: string, count: number | null, weightG: number | null, condition: string, updatedAt: number) =>
    locations.saveStock({ locationId: `sh/${slotId}`, count, condition, observedBy: 'weight', detail: { weight_g: weightG }, updatedAt });
  return { locations, calibration, stock };
}

function reader(): Database.Database {
  return new Database(dbPath, { readonly: true });
}

async function expectCode(p: Promise<unknown>, code: string): Promise<Error> {
  const e = await p.then(
    () => {
      throw new Error(`expected ${code}, it succeeded`);
    },
    (err: unknown) => err as Error,
  );
  expect(isShelfgateError(e) ? e.code : e).toBe(code);
  return e;
}

const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sg-store-'));
  dbPath = join(dir, 'state', 'shelfgate.db');
});

afterEach(async () => {
  for (const s of open.splice(0)) await s.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('opening and migrations', () => {
  it('creates the directory (0700) and the current schema', async () => {
    const s = await started();
    expect(statSync(dirname(dbPath)).mode & 0o777).toBe(0o700);
    const db = s.connection!;
    const tables = (db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name").all() as { name: string }[]).map((r) => r.name);
    expect(tables).toEqual(expect.arrayContaining(['devices', 'meta', 'outbox', 'locations', 'stock', 'weight_calibration', 'sqlite_sequence']));
    expect(tables).not.toContain('slots'); // retired by the shelves feature's migration 4
    const indexes = (db.prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'outbox' AND sql IS NOT NULL").all() as { name: string }[]).map((r) => r.name);
    expect(indexes.sort()).toEqual(['outbox_device_seq', 'outbox_priority_seq']);
    const cols = (t: string) => (db.prepare(`PRAGMA table_info(${t})`).all() as { name: string }[]).map((c) => c.name);
    expect(cols('devices')).toEqual(['id', 'kind', 'model', 'path', 'online', 'reason', 'last_seen', 'updated_at']);
    expect(cols('locations')).toEqual(['id', 'shelf_id', 'slot_id', 'gtin', 'unit_weight_g', 'cleared', 'assigned_by', 'updated_at', 'attributes']);
    expect(cols('stock')).toEqual(['location_id', 'count', 'condition', 'observed_by', 'detail', 'updated_at']);
    expect(cols('weight_calibration')).toEqual(['location_id', 'tare_g', 'tolerance_g', 'calib_version']);
    expect(cols('outbox')).toEqual(['seq', 'event_id', 'store_id', 'device_id', 'kind', 'priority', 'payload', 'bytes', 'created_at']);
    expect(cols('meta')).toEqual(['key', 'value']);
    expect(db.pragma('user_version', { simple: true })).toBe(LATEST);
    expect(db.pragma('application_id', { simple: true })).toBe(APPLICATION_ID);
    expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
    // reopening an up-to-date database migrates nothing and keeps the data
    s.setMeta('k', 'v');
    await s.stop();
    const again = await started();
    expect(again.getMeta('k')).toBe('v');
  });

  it('carries a database written by the landed version (schema 2, slots table) forward: assignments, stock, calibration, outbox, sync state', async () => {
    mkdirSync(dirname(dbPath), { recursive: true });
    copyFileSync(join(__dirname, '../fixtures/landed-v2.db'), dbPath);
    const s = makeStore();
    const shelves = [{ id: 'sh1', slots: [{ id: 'a', gtin: '4006381333931' }, { id: 'b' }, { id: 'c' }] }];
    const locations = new Locations({ shelves, store: s, events: new EventBus(silentLogger()), log: silentLogger() });
    const calibration = new CalibrationRepository(s);
    await s.start();
    await locations.start();
    expect(s.connection!.pragma('user_version', { simple: true })).toBe(LATEST);
    // a learned unit weight keeps the config's gtin; central's assignment keeps both of its values
    expect(locations.list()).toEqual([
      { id: 'sh1/a', shelfId: 'sh1', slotId: 'a', gtin: '4006381333931', unitWeightG: 250.5, attributes: null },
      { id: 'sh1/b', shelfId: 'sh1', slotId: 'b', gtin: '05901234123457', unitWeightG: 100, attributes: null },
      { id: 'sh1/c', shelfId: 'sh1', slotId: 'c', gtin: null, unitWeightG: null, attributes: null },
    ]);
    expect(locations.loadStock()).toEqual([
      { locationId: 'sh1/a', count: 7, condition: 'ok', observedBy: 'weight', detail: { weight_g: 1750.4 }, updatedAt: 1700000000000 },
      { locationId: 'sh1/b', count: 3, condition: 'mismatch', observedBy: 'weight', detail: { weight_g: 301.2 }, updatedAt: 1700000001000 },
    ]);
    expect([...calibration.load().values()]).toEqual([
      { locationId: 'sh1/a', tareG: 12, toleranceG: null, calibVersion: 1 },
      { locationId: 'sh1/b', tareG: null, toleranceG: null, calibVersion: 1 },
      { locationId: 'sh1/c', tareG: null, toleranceG: 4, calibVersion: 1 },
    ]);
    expect(s.outboxStats()).toMatchObject({ count: 3, lastSeq: 3 });
    expect(s.peekOutbox(0, 10).map((r) => r.eventId)).toEqual(['ev-0', 'ev-1', 'ev-2']);
    expect(await s.appendEvent({ deviceId: 'sh1/a', kind: 'pick', payload: {} })).toMatchObject({ seq: 4 });
    expect(s.loadDevices()).toMatchObject([{ id: 'bus1.1', online: true }]);
    expect(s.getMeta('central.cursor')).toBe('djE6NDM');
    const db = s.connection!;
    expect(db.prepare('SELECT gtin, price, version FROM prices').all()).toEqual([{ gtin: '05901234123457', price: 249, version: 7 }]);
    expect(db.prepare('SELECT shelf_id, slot_id, version FROM slot_versions').all()).toEqual([{ shelf_id: 'sh1', slot_id: 'b', version: 2 }]);
  });

  it('the migration ledger: a feature added later gets its lower-numbered migration; an unknown applied version is refused', async () => {
    // first a gateway of the core alone: versions 1, 2, 3, 5, 6 (the shelves feature's 4 is not there)
    let s = await started({ migrations: composeMigrations([]) });
    expect(s.connection!.pragma('user_version', { simple: true })).toBe(6);
    expect(s.connection!.prepare("SELECT count(*) AS n FROM sqlite_schema WHERE name = 'weight_calibration'").get()).toEqual({ n: 0 });
    await s.stop();
    // then with the shelves feature: its migration 4 runs although user_version is already 5
    s = await started();
    const db = s.connection!;
    expect(db.prepare("SELECT count(*) AS n FROM sqlite_schema WHERE name = 'weight_calibration'").get()).toEqual({ n: 1 });
    expect((db.prepare('SELECT version FROM schema_migrations ORDER BY version').all() as Array<{ version: number }>).map((r) => r.version)).toEqual(composeMigrations(BUILTIN_FEATURES).map((m) => m.version));
    await s.stop();
    // a database holding a migration this build does not know (another feature's) is refused, untouched
    const raw = new Database(dbPath);
    raw.prepare("INSERT INTO schema_migrations (version, description, applied_at) VALUES (100, 'doors: counts', 1)").run();
    raw.close();
    const before = sha(dbPath);
    const e = await expectCode(makeStore().start(), ErrorCode.STORAGE_MIGRATION);
    expect(e.message).toMatch(/schema version 100 .*another feature/);
    expect(sha(dbPath)).toBe(before);
  });

  it("gives a new database a random epoch (UUID v4) and keeps the legacy epoch \"\" for one that synced before epochs existed", async () => {
    const s = await started();
    expect(s.epoch()).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const first = s.epoch();
    await s.stop();
    const again = await started();
    expect(again.epoch()).toBe(first); // never changes
    await again.stop();
    // the landed version's database had sent seqs 1..3: it stays in the legacy epoch
    rmSync(dirname(dbPath), { recursive: true, force: true });
    mkdirSync(dirname(dbPath), { recursive: true });
    copyFileSync(join(__dirname, '../fixtures/landed-v2.db'), dbPath);
    const landed = await started();
    expect(landed.epoch()).toBe('');
  });

  it('a first start killed between creating the ledger and migration 1 leaves a file that still opens', async () => {
    mkdirSync(dirname(dbPath), { recursive: true });
    const raw = new Database(dbPath);
    raw.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at INTEGER NOT NULL)');
    raw.close();
    const s = await started();
    expect(s.connection!.pragma('user_version', { simple: true })).toBe(LATEST);
  });

  it('two assignments of one location in the same batch window both stay (each builds on the one before)', async () => {
    const s = makeStore({ flushIntervalMs: 50 });
    const { locations } = modules(s);
    await s.start();
    await locations.start();
    await Promise.all([locations.assign('sh', 'a', { gtin: '4006381333931' }, 'central'), locations.assign('sh', 'a', { unitWeightG: 123 }, 'tech')]);
    expect(locations.get('sh/a')).toMatchObject({ gtin: '4006381333931', unitWeightG: 123 });
    await s.stop();
    const again = makeStore();
    const m = modules(again);
    await again.start();
    await m.locations.start();
    expect(m.locations.get('sh/a')).toMatchObject({ gtin: '4006381333931', unitWeightG: 123 });
  });

  it.each([
    ['full', 2],
    ['normal', 1],
  ] as const)('sets journal_mode=wal and synchronous=%s (%i) on the connection', async (synchronous, level) => {
    const s = await started({ synchronous });
    expect(s.connection!.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(s.connection!.pragma('synchronous', { simple: true })).toBe(level);
    expect(s.connection!.pragma('busy_timeout', { simple: true })).toBe(5000);
    expect(s.connection!.pragma('wal_autocheckpoint', { simple: true })).toBe(1000);
  });

  it('refuses a database written by a newer shelfgate (user_version higher than known), leaving it untouched', async () => {
    const s = await started();
    await s.appendEvent({ deviceId: 'd', kind: 'count', payload: { n: 1 } });
    await s.stop();
    const raw = new Database(dbPath);
    raw.pragma(`user_version = ${LATEST + 1}`);
    raw.close();
    const before = sha(dbPath);
    const e = await expectCode(makeStore().start(), ErrorCode.STORAGE_MIGRATION);
    expect(e.message).toMatch(/newer shelfgate/);
    expect(sha(dbPath)).toBe(before);
    const check = reader();
    expect(check.pragma('user_version', { simple: true })).toBe(LATEST + 1);
    expect((check.prepare('SELECT count(*) AS n FROM outbox').get() as { n: number }).n).toBe(1);
    check.close();
  });

  it("refuses another program's SQLite file instead of adding tables to it", async () => {
    mkdirSync(dirname(dbPath), { recursive: true });
    const raw = new Database(dbPath);
    raw.exec('CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)');
    raw.close();
    await expectCode(makeStore().start(), ErrorCode.STORAGE_MIGRATION);
  });

  it('a file that is not a database gives STORAGE_INTEGRITY, not a crash, and is not recreated', async () => {
    mkdirSync(dirname(dbPath), { recursive: true });
    writeFileSync(dbPath, randomBytes(16 * 1024));
    const before = sha(dbPath);
    const e = await expectCode(makeStore().start(), ErrorCode.STORAGE_INTEGRITY);
    expect(e.message).toContain(dbPath);
    expect(e.message).toMatch(/not a database|damaged/);
    expect(sha(dbPath)).toBe(before);
    // also straight through openDatabase
    expect(() => openDatabase(dbPath, { synchronous: 'full', log: silentLogger() })).toThrow(/left untouched/);
  });

  it('a database with damaged pages gives STORAGE_INTEGRITY from quick_check, left as found', async () => {
    const s = await started();
    const writes: Promise<unknown>[] = [];
    for (let i = 0; i < 3000; i++) writes.push(s.appendEvent({ deviceId: `d/${i % 7}`, kind: 'count', payload: { i, pad: 'x'.repeat(100) } }));
    await Promise.all(writes);
    await s.stop();
    expect(existsSync(`${dbPath}-wal`) ? statSync(`${dbPath}-wal`).size : 0).toBe(0);
    const buf = readFileSync(dbPath);
    const page = buf.readUInt16BE(16) || 65536;
    const pages = buf.length / page;
    expect(pages).toBeGreaterThan(20);
    // scribble over the b-tree headers of a few pages in the middle
    for (const p of [Math.floor(pages / 2), Math.floor(pages / 2) + 1, pages - 2]) buf.fill(0xa5, p * page, p * page + 64);
    writeFileSync(dbPath, buf);
    const before = sha(dbPath);
    const e = await expectCode(makeStore().start(), ErrorCode.STORAGE_INTEGRITY);
    expect((e as { details?: { problems?: string[] } }).details?.problems?.length).toBeGreaterThan(0);
    expect(sha(dbPath)).toBe(before);
  });
});

describe('outbox', () => {
  it('seq increases across restarts and is never reused after ack/delete', async () => {
    let s = await started();
    const a = await Promise.all([1, 2, 3].map((n) => s.appendEvent({ deviceId: 'shelf-1/a', kind: 'count', payload: { n } })));
    expect(a.map((r) => r.seq)).toEqual([1, 2, 3]);
    expect(new Set(a.map((r) => r.eventId)).size).toBe(3);
    expect(s.ackOutbox(a.map((r) => r.eventId))).toBe(3);
    expect(s.outboxStats()).toEqual({ count: 0, bytes: 0, oldestCreatedAt: null, lastSeq: 3 });
    await s.stop();

    s = await started();
    expect(s.outboxStats().lastSeq).toBe(3);
    const b = await s.appendEvent({ deviceId: 'shelf-1/a', kind: 'count', payload: { n: 4 }, createdAt: 1234 });
    expect(b.seq).toBe(4);
    expect(s.outboxStats()).toMatchObject({ count: 1, oldestCreatedAt: 1234, lastSeq: 4 });
    // deleting the highest row then restarting must not hand its seq out again
    expect(s.ackOutbox([b.eventId, 'unknown-id'])).toBe(1);
    await s.stop();
    s = await started();
    expect((await s.appendEvent({ deviceId: 'x', kind: 'count', payload: {} })).seq).toBe(5);
  });

  it('stores the payload as JSON with its size, the store id and the given event id; a repeated event id is idempotent', async () => {
    const s = await started();
    const payload = { gtin: '4006381333931', count: 12, note: 'Größe' };
    const r = await s.appendEvent({ deviceId: 'shelf-1/a', kind: 'count', priority: 2, payload, eventId: 'ev-1', createdAt: 1000 });
    expect(r).toEqual({ seq: 1, eventId: 'ev-1' });
    const again = await s.appendEvent({ deviceId: 'shelf-1/a', kind: 'count', payload: { other: true }, eventId: 'ev-1' });
    expect(again).toEqual({ seq: 1, eventId: 'ev-1' });
    const rows = s.peekOutbox(0, 10);
    expect(rows).toEqual([
      { seq: 1, eventId: 'ev-1', storeId: 'store-1', deviceId: 'shelf-1/a', kind: 'count', priority: 2, payload: JSON.stringify(payload), bytes: Buffer.byteLength(JSON.stringify(payload)), createdAt: 1000 },
    ]);
    expect(s.outboxStats()).toMatchObject({ count: 1, bytes: rows[0]!.bytes });
  });

  it('peekOutbox pages in seq order; in-memory stats match the table', async () => {
    const s = await started();
    await Promise.all(Array.from({ length: 25 }, (_, i) => s.appendEvent({ deviceId: `d/${i % 3}`, kind: 'count', payload: { i }, createdAt: 100 + i })));
    const p1 = s.peekOutbox(0, 10);
    const p2 = s.peekOutbox(p1.at(-1)!.seq, 10);
    const p3 = s.peekOutbox(p2.at(-1)!.seq, 10);
    expect([...p1, ...p2, ...p3].map((r) => r.seq)).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
    s.ackOutbox(p1.map((r) => r.eventId));
    const agg = s.connection!.prepare('SELECT count(*) AS count, sum(bytes) AS bytes, min(created_at) AS oldest FROM outbox').get() as { count: number; bytes: number; oldest: number };
    expect(s.outboxStats()).toEqual({ count: agg.count, bytes: agg.bytes, oldestCreatedAt: 110, lastSeq: 25 });
  });

  it('rejects a payload that cannot be serialised, alone, without failing the batch', async () => {
    const s = await started();
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    const good = s.appendEvent({ deviceId: 'd', kind: 'count', payload: { ok: 1 } });
    await expectCode(s.appendEvent({ deviceId: 'd', kind: 'count', payload: circular }), ErrorCode.REQUEST_INVALID);
    expect((await good).seq).toBe(1);
  });
});

describe('batched writer', () => {
  it('resolves a write only after its batch committed (seen by a second connection)', async () => {
    const s = await started({ flushIntervalMs: 150 });
    const { stock } = modules(s);
    const r = reader();
    const count = () => (r.prepare('SELECT count(*) AS n FROM outbox').get() as { n: number }).n;
    let resolvedAt = 0;
    let resolvedMs = 0;
    const t0 = Date.now();
    const p = s.appendEvent({ deviceId: 'd', kind: 'count', payload: { n: 1 } }).then((v) => {
      resolvedAt = count(); // read by another connection at the moment of resolution
      resolvedMs = Date.now() - t0;
      return v;
    });
    const slot = stock('a', 3, 30, 'ok', 1);
    expect(count()).toBe(0); // still queued: not yet committed, not yet resolved
    expect(s.stats().pendingOps).toBe(2);
    await p;
    await slot;
    expect(resolvedAt).toBe(1);
    expect(resolvedMs).toBeGreaterThanOrEqual(100); // it stayed queued for (most of) the 150 ms flush interval
    expect(r.prepare('SELECT count FROM stock').get()).toEqual({ count: 3 });
    r.close();
  });

  it(`commits at once when a batch reaches ${MAX_BATCH_OPS} operations`, async () => {
    const s = await started({ flushIntervalMs: 5000 });
    const t0 = Date.now();
    const ps = Array.from({ length: 2 * MAX_BATCH_OPS + 1 }, (_, i) => s.appendEvent({ deviceId: 'd', kind: 'count', payload: { i } }));
    expect(s.stats()).toMatchObject({ batches: 2, ops: 2 * MAX_BATCH_OPS, pendingOps: 1 });
    await Promise.all(ps.slice(0, 2 * MAX_BATCH_OPS));
    expect(Date.now() - t0).toBeLessThan(4000);
    await s.stop(); // the last one is flushed by stop
    await expect(ps.at(-1)).resolves.toMatchObject({ seq: 2 * MAX_BATCH_OPS + 1 });
  });

  it('coalesces stock and device states within a batch: fewer rows written than operations', async () => {
    const s = await started({ flushIntervalMs: 50 });
    const { stock, locations } = modules(s);
    const ps: Promise<void>[] = [];
    for (let i = 1; i <= 100; i++) ps.push(stock('a', i, i * 10, 'ok', i));
    ps.push(stock('b', 7, null, 'unstable', 5));
    ps.push(s.setDeviceState({ id: 'bus-a/3', kind: 'weight', model: 'm', path: '/dev/x', online: true, ts: 10 }));
    ps.push(s.setDeviceState({ id: 'bus-a/3', kind: 'weight', model: 'm', path: '/dev/x', online: false, reason: 'timeout', ts: 20 }));
    await Promise.all(ps);
    expect(s.stats()).toMatchObject({ batches: 1, ops: 103, rowsWritten: 3 });
    expect(locations.loadStock().map((r) => [r.locationId, r.count, r.detail.weight_g, r.condition, r.updatedAt])).toEqual([
      ['sh/a', 100, 1000, 'ok', 100],
      ['sh/b', 7, null, 'unstable', 5],
    ]);
    expect(s.loadDevices()).toEqual([{ id: 'bus-a/3', kind: 'weight', model: 'm', path: '/dev/x', online: false, reason: 'timeout', lastSeen: 10, updatedAt: 20 }]);
  });

  it('together(): the size bound never splits the writes made inside it (an event and its state commit together)', async () => {
    const s = await started({ flushIntervalMs: 5000 });
    const filler = Array.from({ length: MAX_BATCH_OPS - 1 }, (_, i) => s.appendEvent({ deviceId: 'd', kind: 'count', payload: { i } }));
    let pair: Promise<unknown>[] = [];
    s.together(() => {
      pair = [s.appendEvent({ deviceId: 'd', kind: 'count', payload: { last: true } }), s.setDeviceState({ id: 'x', kind: 'k', model: 'm', path: 'p', online: true, ts: 1 })];
    });
    // one batch of MAX_BATCH_OPS + 1: the pair was not split at the bound
    expect(s.stats()).toMatchObject({ batches: 1, ops: MAX_BATCH_OPS + 1, pendingOps: 0 });
    await Promise.all([...filler, ...pair]);
  });

  it('a failed batch (disk full) rejects its writes with the SQLite code and the writer carries on', async () => {
    const s = await started({ flushIntervalMs: 5 });
    const { stock, locations } = modules(s);
    await s.appendEvent({ deviceId: 'd', kind: 'count', payload: { first: true } });
    const db = s.connection!;
    const pages = db.pragma('page_count', { simple: true }) as number;
    db.pragma(`max_page_count = ${pages + 2}`); // simulate a full disk
    const big = 'x'.repeat(4000);
    const batch = [
      ...Array.from({ length: 50 }, (_, i) => s.appendEvent({ deviceId: 'd', kind: 'count', payload: { i, big } })),
      stock('a', 1, 1, 'ok', 1),
    ];
    const results = await Promise.allSettled(batch);
    expect(results.every((r) => r.status === 'rejected')).toBe(true);
    const err = (results[0] as PromiseRejectedResult).reason as StoreWriteError;
    expect(err).toBeInstanceOf(StoreWriteError);
    expect(err.sqliteCode).toBe('SQLITE_FULL');
    expect(err.message).toMatch(/none of them was saved/);
    expect(s.stats()).toMatchObject({ failedBatches: 1, failedOps: 51 });
    expect(s.outboxStats()).toMatchObject({ count: 1, lastSeq: 1 });
    expect(locations.loadStock()).toEqual([]);

    db.pragma('max_page_count = 1073741823'); // space freed
    const after = await s.appendEvent({ deviceId: 'd', kind: 'count', payload: { after: true } });
    expect(after.seq).toBeGreaterThan(1);
    expect(s.outboxStats().count).toBe(2);
    expect(s.peekOutbox(0, 10).map((r) => JSON.parse(r.payload))).toEqual([{ first: true }, { after: true }]);
  });

  it('stop() commits queued writes; writes before start and after stop are refused with STOPPED', async () => {
    const s = makeStore({ flushIntervalMs: 5000 });
    const { calibration, locations } = modules(s);
    await expectCode(s.appendEvent({ deviceId: 'd', kind: 'k', payload: {} }), ErrorCode.STOPPED);
    await s.start();
    const p = s.appendEvent({ deviceId: 'd', kind: 'k', payload: { queued: true } });
    const q = calibration.save({ locationId: 'sh/a', tareG: 12.5 });
    await s.stop();
    await expect(p).resolves.toMatchObject({ seq: 1 });
    await expect(q).resolves.toBeUndefined();
    await expectCode(s.setDeviceState({ id: 'x', kind: 'k', model: 'm', path: 'p', online: true, ts: 1 }), ErrorCode.STOPPED);
    expect(() => s.loadDevices()).toThrow(/not open/);
    await expectCode(locations.saveStock({ locationId: 'sh/a', count: 1, condition: 'ok', observedBy: 'weight', detail: {}, updatedAt: 1 }), ErrorCode.STOPPED);
    await s.stop(); // idempotent
    expect(existsSync(`${dbPath}-wal`) ? statSync(`${dbPath}-wal`).size : 0).toBe(0); // checkpointed (TRUNCATE)
    const r = reader();
    expect(r.prepare('SELECT tare_g, calib_version FROM weight_calibration').get()).toEqual({ tare_g: 12.5, calib_version: 1 });
    r.close();
  });
});

describe('state survives close and reopen', () => {
  it('stock, assignments, calibration overrides, devices and meta', async () => {
    let s = makeStore();
    let m = modules(s);
    await s.start();
    await m.locations.start();
    await m.stock('a', 4, 401.5, 'ok', 111);
    await m.locations.assign('sh', 'a', { unitWeightG: 100.25 }, 'tech');
    await m.calibration.save({ locationId: 'sh/a', tareG: 1.5 });
    await m.locations.assign('sh', 'a', { gtin: '4006381333931' }, 'central');
    await m.calibration.save({ locationId: 'sh/b', toleranceG: 5 }); // a slot calibrated before any state
    await s.setDeviceState({ id: 'bus-a/3', kind: 'weight', model: 'generic-modbus-loadcell', path: '/dev/ttyUSB0', online: true, ts: 50 });
    s.setMeta('central.cursor', 'abc');
    await s.stop();

    s = makeStore();
    m = modules(s);
    await s.start();
    await m.locations.start();
    expect(m.locations.list()).toEqual([
      { id: 'sh/a', shelfId: 'sh', slotId: 'a', gtin: '4006381333931', unitWeightG: 100.25, attributes: null },
      { id: 'sh/b', shelfId: 'sh', slotId: 'b', gtin: null, unitWeightG: null, attributes: null },
    ]);
    expect([...m.calibration.load().values()]).toEqual([
      { locationId: 'sh/a', tareG: 1.5, toleranceG: null, calibVersion: 1 },
      { locationId: 'sh/b', tareG: null, toleranceG: 5, calibVersion: 1 },
    ]);
    expect(m.locations.loadStock()).toEqual([{ locationId: 'sh/a', count: 4, condition: 'ok', observedBy: 'weight', detail: { weight_g: 401.5 }, updatedAt: 111 }]);
    expect(s.loadDevices()).toEqual([{ id: 'bus-a/3', kind: 'weight', model: 'generic-modbus-loadcell', path: '/dev/ttyUSB0', online: true, reason: null, lastSeen: 50, updatedAt: 50 }]);
    expect(s.getMeta('central.cursor')).toBe('abc');
    expect(s.getMeta('missing')).toBeNull();

    // a later state keeps the calibration; null clears an override (back to the config value)
    await m.stock('a', 3, 301, 'ok', 222);
    await m.calibration.save({ locationId: 'sh/a', tareG: null });
    await s.setDeviceState({ id: 'bus-a/3', kind: 'weight', model: 'generic-modbus-loadcell', path: '/dev/ttyUSB0', online: false, reason: 'unplugged', ts: 60 });
    await s.stop();
    s = makeStore();
    m = modules(s);
    await s.start();
    await m.locations.start();
    expect(m.locations.get('sh/a')).toMatchObject({ unitWeightG: 100.25 });
    expect(m.calibration.load().get('sh/a')).toMatchObject({ tareG: null, calibVersion: 2 });
    expect(m.locations.loadStock()[0]).toMatchObject({ count: 3, updatedAt: 222 });
    expect(s.loadDevices()[0]).toMatchObject({ online: false, reason: 'unplugged', lastSeen: 50, updatedAt: 60 });
  });

  it('a slot central cleared (gtin null) holds nothing, also after a restart, whatever the config file says', async () => {
    const shelves = [{ id: 'sh', slots: [{ id: 'a', gtin: '4006381333931', unit_weight_g: 250 }] }];
    let s = makeStore();
    let locations = new Locations({ shelves, store: s, events: new EventBus(silentLogger()), log: silentLogger() });
    await s.start();
    await locations.start();
    expect(locations.get('sh/a')).toMatchObject({ gtin: '4006381333931', unitWeightG: 250 });
    await locations.assign('sh', 'a', { gtin: null, unitWeightG: null }, 'central');
    expect(locations.get('sh/a')).toMatchObject({ gtin: null, unitWeightG: null });
    await s.stop();
    s = makeStore();
    locations = new Locations({ shelves, store: s, events: new EventBus(silentLogger()), log: silentLogger() });
    await s.start();
    await locations.start();
    expect(locations.get('sh/a')).toMatchObject({ gtin: null, unitWeightG: null });
  });

  it("central's uninterpreted assignment fields are committed with the slot; an assignment without any keeps them", async () => {
    const shelves = [{ id: 'sh', slots: [{ id: 'a' }] }];
    let s = makeStore();
    let locations = new Locations({ shelves, store: s, events: new EventBus(silentLogger()), log: silentLogger() });
    await s.start();
    await locations.start();
    await locations.assign('sh', 'a', { gtin: '4006381333931', unitWeightG: 250 }, 'central', { labels: ['0000021F4A3B2C01'] });
    await locations.assign('sh', 'a', { unitWeightG: 251 }, 'tech');
    await s.stop();
    s = makeStore();
    locations = new Locations({ shelves, store: s, events: new EventBus(silentLogger()), log: silentLogger() });
    await s.start();
    await locations.start();
    expect(locations.get('sh/a')).toMatchObject({ gtin: '4006381333931', unitWeightG: 251, attributes: { labels: ['0000021F4A3B2C01'] } });
    await s.stop();
  });
});

/**
 * Transpiles src/store/store.ts and the modules it imports (TypeScript's transpileModule: per-file,
 * no type check, so other engineers' unfinished files cannot break this) into `outDir`, so a child
 * process runs the real Store code with plain node. Returns the path of the compiled store.js.
 */
function compileStoreForChild(outDir: string): string {
  const root = resolve(__dirname, '../..');
  const seen = new Set<string>();
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    const src = readFileSync(file, 'utf8');
    const js = ts.transpileModule(src, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true }, fileName: file }).outputText;
    const out = join(outDir, relative(root, file)).replace(/\.ts$/, '.js');
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, js);
    for (const m of src.matchAll(/from '(\.{1,2}\/[^']+)'/g)) visit(resolve(dirname(file), `${m[1]}.ts`));
  };
  visit(join(root, 'src/store/store.ts'));
  return join(outDir, 'src/store/store.js');
}

// Acknowledgements go to a regular file with writeSync: a write(2) to a file is in the page cache
// when it returns, so it survives SIGKILL exactly like SQLite's commit does (a pipe would block).
const CHILD = `
const fs = require('node:fs');
const pino = require('pino');
const { Store } = require(process.argv[2]);
const ack = fs.openSync(process.argv[4], 'a');
const store = new Store({ path: process.argv[3], synchronous: 'full', flushIntervalMs: 5, storeId: 'store-1', log: pino({ level: 'silent' }) });
// a registered, coalescing write operation of a module other than the store (as a feature's state)
const saveState = store.defineWrite({
  name: 'test.state',
  prepare: (db) => {
    const st = db.prepare("INSERT INTO meta (key, value) VALUES ('test.state', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value");
    return (c) => { st.run(String(c)); };
  },
  coalesce: { key: () => 'state' },
});
let n = 0;
function pump() {
  // keep the writer busy: many writes in flight, so the kill lands in the middle of batches
  for (let k = 0; k < 200; k++) {
    const i = ++n;
    store.appendEvent({ deviceId: 'shelf/' + (i % 5), kind: 'count', payload: { i }, eventId: 'ev-' + i })
      .then((r) => fs.writeSync(ack, 'E ' + r.seq + ' ' + r.eventId + '\\n'));
  }
  const c = n;
  saveState(c).then(() => fs.writeSync(ack, 'S ' + c + '\\n'));
  setImmediate(pump);
}
store.start().then(pump);
`;

describe('kill -9', () => {
  it('every write whose promise resolved is in the file after the writing process was SIGKILLed', async () => {
    const storeJs = compileStoreForChild(join(dir, 'build'));
    const script = join(dir, 'child.js');
    const ackFile = join(dir, 'acks.txt');
    writeFileSync(script, CHILD);
    writeFileSync(ackFile, '');
    const child = spawn(process.execPath, [script, storeJs, dbPath, ackFile], {
      env: { ...process.env, NODE_PATH: resolve(__dirname, '../../node_modules') },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<NodeJS.Signals | null>((res) => child.on('exit', (_code, sig) => res(sig)));
    // let it run until some 20k events are acknowledged, then kill it mid-stream
    await waitFor(
      () => {
        if (child.exitCode !== null) throw new Error(`child stopped early: ${stderr}`);
        return statSync(ackFile).size >= 20_000 * 16;
      },
      20_000,
      '20k acknowledged events',
    );
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');

    const acked = new Map<string, number>();
    let maxSlot = 0;
    const lines = readFileSync(ackFile, 'utf8').split('\n');
    lines.pop(); // an unterminated last line is not an acknowledgement
    for (const l of lines) {
      const [t, a, b] = l.split(' ');
      if (t === 'E') acked.set(b!, Number(a));
      else if (t === 'S') maxSlot = Math.max(maxSlot, Number(a));
    }
    expect(acked.size).toBeGreaterThan(10_000); // enough batches went by

    const s = await started();
    const rows = s.peekOutbox(0, 10_000_000);
    const bySeq = new Map(rows.map((r) => [r.eventId, r.seq]));
    let missing = 0;
    for (const [id, seq] of acked) if (bySeq.get(id) !== seq) missing++;
    expect(missing).toBe(0);
    expect(rows.length).toBeGreaterThanOrEqual(acked.size);
    // seqs are 1..N without holes: nothing half-written
    expect(rows.every((r, i) => r.seq === i + 1)).toBe(true);
    expect(Number(s.getMeta('test.state'))).toBeGreaterThanOrEqual(maxSlot);
    // and the next seq continues after the highest one written before the crash
    const next = await s.appendEvent({ deviceId: 'x', kind: 'count', payload: {} });
    expect(next.seq).toBe(rows.length + 1);
    console.log(`kill -9: ${acked.size} events acknowledged by the child, ${rows.length} in the file after SIGKILL, none missing`);
  });
});

describe('throughput', () => {
  it.each(['full', 'normal'] as const)('100k appendEvent calls complete (synchronous=%s)', async (synchronous) => {
    const s = await started({ synchronous, flushIntervalMs: 20 });
    const N = 100_000;
    const payload = { store_id: 'store-1', shelf_id: 'shelf-1', slot_id: 'a', gtin: '4006381333931', kind: 'count', count: 12, delta: -1, weight_g: 1203.4 };
    const t0 = performance.now();
    const ps: Promise<unknown>[] = new Array(N);
    for (let i = 0; i < N; i++) ps[i] = s.appendEvent({ deviceId: `shelf-1/${i % 24}`, kind: 'count', payload: { ...payload, count: i } });
    await Promise.all(ps);
    const ms = performance.now() - t0;
    const st = s.stats();
    expect(s.outboxStats()).toMatchObject({ count: N, lastSeq: N });
    console.log(
      `store throughput (synchronous=${synchronous}): ${N} appendEvent in ${ms.toFixed(0)} ms = ${Math.round((N / ms) * 1000)} events/s; ` +
        `${st.batches} batches, max batch ${st.maxBatchMs.toFixed(1)} ms, outbox ${(s.outboxStats().bytes / 1e6).toFixed(1)} MB payload`,
    );
  });
});
