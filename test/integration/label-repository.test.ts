/**
 * The labels repository on a real SQLite file: the delivery state the scheduler keeps survives the
 * store being closed and opened again, so that nothing confirmed is resent and nothing unconfirmed
 * is forgotten (a transfer in flight still awaits its ack, pending and future content is still due).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { composeMigrations } from '../../src/core/gateway';
import { BUILTIN_FEATURES } from '../../src/features';
import { contentInput, priceTimeline, renderLabel } from '../../src/features/labels/content';
import { loadLabelTypes } from '../../src/features/labels/label-types';
import { LABELS_SCHEMA_VERSION, LabelRepository, persistChanges, type LabelBinding } from '../../src/features/labels/repository';
import { DeliveryScheduler, type LabelRecord } from '../../src/features/labels/scheduler';
import { silentLogger } from '../../src/log';
import { Store, StoreWriteError } from '../../src/store/store';

const T0 = Date.parse('2026-03-02T12:00:00Z');
const CHECK_IN = 40_000;
const GTIN = '04006381333931';
const type = loadLabelTypes().get('oepl-m2-2.9-bwr')!;

let dir: string;
const open: Store[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sg-labels-'));
});
afterEach(async () => {
  for (const s of open.splice(0)) await s.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function openStore(): Promise<{ store: Store; repo: LabelRepository }> {
  const store = new Store({
    path: join(dir, 'sg.db'),
    synchronous: 'full',
    flushIntervalMs: 5,
    storeId: 'st1',
    log: silentLogger(),
    migrations: composeMigrations(BUILTIN_FEATURES),
  });
  open.push(store);
  const repo = new LabelRepository(store, () => T0);
  await store.start();
  return { store, repo };
}

async function closeStore(store: Store): Promise<void> {
  await store.stop();
  open.splice(open.indexOf(store), 1);
}

/** The contents of a price for one label from `now` on: the display now plus the promotion's boundaries. */
function contents(price: number, promotion: { was_price: number; valid_from?: string; valid_to?: string } | null, now: number) {
  return priceTimeline({ price, currency: 'EUR', promotion }, now).map((e) =>
    contentInput(renderLabel({ product: { gtin: GTIN, name: 'Vollmilch 3,5%', netContent: { amount: 1, unit: 'l' } }, display: e.display, locale: 'de-DE' }, type), e.effectiveAt),
  );
}

describe('label repository (SQLite)', () => {
  it('migration 10 adds the labels tables beside the core and shelves schema', async () => {
    expect(LABELS_SCHEMA_VERSION).toBe(10);
    const versions = composeMigrations(BUILTIN_FEATURES).map((m) => m.version);
    expect(versions.filter((v) => v === LABELS_SCHEMA_VERSION)).toHaveLength(1);
    const { store } = await openStore();
    await closeStore(store);
    const db = new Database(join(dir, 'sg.db'), { readonly: true });
    try {
      expect(db.pragma('user_version', { simple: true })).toBe(Math.max(...versions));
      const tables = (db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE 'label%' ORDER BY name").all() as Array<{ name: string }>).map((r) => r.name);
      expect(tables).toEqual(['label_content', 'label_products', 'labels']);
    } finally {
      db.close();
    }
  });

  it('after close and reopen nothing confirmed is resent and nothing unconfirmed is forgotten', async () => {
    const clock = { now: T0 };
    const bindings = new Map<string, LabelBinding>();
    const bind = (s: DeliveryScheduler, mac: string): void => {
      bindings.set(mac, { labelType: type.id, gtin: GTIN, locationId: null });
      s.setLabel(mac, { checkInMs: CHECK_IN });
      s.heard(mac, 'ap1', clock.now);
    };

    // ---- first run ----
    let { store, repo } = await openStore();
    let s = new DeliveryScheduler({ clock: () => clock.now });
    for (const mac of ['0000000000000001', '0000000000000002', '0000000000000003', '0000000000000004']) bind(s, mac);
    const [DONE, SENT, STORED, FUTURE] = ['0000000000000001', '0000000000000002', '0000000000000003', '0000000000000004'];
    // DONE: confirmed showing 2,49 €
    s.submit(DONE, contents(249, null, clock.now));
    // SENT: handed to the AP, no answer yet; STORED: the AP answered 200 (stored, not shown)
    s.submit(SENT, contents(199, null, clock.now));
    s.submit(STORED, contents(179, null, clock.now));
    // FUTURE: a promotion from tomorrow: the regular price now, the promotion price tomorrow
    const tomorrow = new Date(T0 + 86_400_000).toISOString();
    s.submit(FUTURE, contents(149, { was_price: 249, valid_from: tomorrow }, clock.now));
    const sent = s.next();
    expect(sent.map((d) => d.mac).sort()).toEqual([DONE, SENT, STORED, FUTURE]);
    clock.now += 2000;
    s.acknowledged(DONE);
    s.stored(STORED, sent.find((d) => d.mac === STORED)!.seq);
    s.acknowledged(FUTURE); // the regular price is shown; the promotion is still ahead
    const r = await persistChanges(s, (m) => bindings.get(m), repo);
    expect(r).toEqual({ saved: 4, removed: 0, unbound: [], failed: [] });
    const before = new Map<string, LabelRecord>([DONE, SENT, STORED, FUTURE].map((m) => [m, s.record(m)!]));
    expect([...before.values()].map((x) => x.state)).toEqual(['confirmed', 'sent', 'sent', 'confirmed']);
    await closeStore(store);

    // ---- restart ----
    ({ store, repo } = await openStore());
    const loaded = repo.load();
    expect([...loaded.keys()]).toEqual([DONE, SENT, STORED, FUTURE]);
    for (const [mac, rec] of before) {
      expect(loaded.get(mac)!.delivery, mac).toEqual(rec);
      expect(loaded.get(mac)!.binding).toEqual({ labelType: type.id, gtin: GTIN, locationId: null });
    }
    s = new DeliveryScheduler({ clock: () => clock.now });
    s.restore([...loaded.values()].map((l) => l.delivery));
    // the service re-renders every label's content at start: the same content, so DONE is not resent
    s.submit(DONE, contents(249, null, clock.now));
    expect(s.next()).toEqual([]);
    // the transfers in flight still await their acks, and an ack still confirms them
    expect(s.acknowledged(SENT)).toBe(true);
    expect(s.acknowledged(STORED)).toBe(true);
    expect(s.record(SENT)!.shown!.price).toBe(199);
    // the promotion goes out at its time, not before
    expect(s.nextWakeAt()).toBe(Date.parse(tomorrow));
    clock.now = Date.parse(tomorrow);
    expect(s.next().map((d) => [d.mac, d.seq])).toEqual([[FUTURE, before.get(FUTURE)!.plan[1]!.seq]]);
    await persistChanges(s, (m) => bindings.get(m), repo);
    await closeStore(store);

    // ---- and again: the confirmations of the second run are kept too ----
    ({ store, repo } = await openStore());
    const third = repo.load();
    expect(third.get(SENT)!.delivery).toMatchObject({ state: 'confirmed', shown: { price: 199 }, inflight: null });
    expect(third.get(FUTURE)!.delivery).toMatchObject({ state: 'sent', inflight: { content: { price: 149 } }, shown: { price: 249 } });
  });

  it('a transfer in flight whose content was superseded is kept with its own content row', async () => {
    const clock = { now: T0 };
    const { store, repo } = await openStore();
    const s = new DeliveryScheduler({ clock: () => clock.now });
    s.setLabel('00000000000000AA', { checkInMs: CHECK_IN });
    s.heard('00000000000000AA', 'ap1');
    s.submit('00000000000000AA', contents(100, null, clock.now));
    s.next();
    s.submit('00000000000000AA', contents(90, null, clock.now)); // waits for the transfer in flight
    await persistChanges(s, () => ({ labelType: type.id, gtin: null, locationId: 'sh1/a' }), repo);
    await closeStore(store);
    const again = await openStore();
    const d = again.repo.load().get('00000000000000AA')!.delivery;
    expect(d.inflight!.content.price).toBe(100);
    expect(d.plan.map((p) => p.price)).toEqual([90]);
    const s2 = new DeliveryScheduler({ clock: () => clock.now });
    s2.restore([d]);
    expect(s2.acknowledged('00000000000000AA')).toBe(true);
    expect(s2.record('00000000000000AA')!.shown!.price).toBe(100);
    expect(s2.next().map((x) => x.hash)).toEqual([d.plan[0]!.hash]);
  });

  it('a removed label goes with its content; within one batch the last write of a label wins', async () => {
    const clock = { now: T0 };
    const { store, repo } = await openStore();
    const s = new DeliveryScheduler({ clock: () => clock.now });
    for (const mac of ['00000000000000B1', '00000000000000B2']) {
      s.setLabel(mac, { checkInMs: CHECK_IN });
      s.submit(mac, contents(100, null, clock.now));
    }
    const binding: LabelBinding = { labelType: type.id, gtin: GTIN, locationId: null };
    const [b1, b2] = ['00000000000000B1', '00000000000000B2'].map((m) => ({ binding, delivery: s.record(m)! }));
    await Promise.all([repo.save(b1!), repo.save(b2!)]);
    // same batch: B1 saved, removed, saved again -> present; B2 saved then removed -> gone
    await Promise.all([repo.save(b1!), repo.remove(b1!.delivery.mac), repo.save(b1!), repo.save(b2!), repo.remove(b2!.delivery.mac)]);
    expect([...repo.load().keys()]).toEqual(['00000000000000B1']);
    const rows = store.connection!.prepare('SELECT mac, count(*) AS n FROM label_content GROUP BY mac').all();
    expect(rows).toEqual([{ mac: '00000000000000B1', n: 1 }]);
  });

  it('a label bound to both a product and a slot is refused by the table, and persistChanges marks it to be saved again', async () => {
    const clock = { now: T0 };
    const { repo } = await openStore();
    const s = new DeliveryScheduler({ clock: () => clock.now });
    s.setLabel('00000000000000C1', { checkInMs: CHECK_IN });
    s.submit('00000000000000C1', contents(100, null, clock.now));
    const r = await persistChanges(s, () => ({ labelType: type.id, gtin: GTIN, locationId: 'sh1/a' }), repo);
    expect(r.saved).toBe(0);
    expect(r.failed.map((f) => f.mac)).toEqual(['00000000000000C1']);
    expect(r.failed[0]!.error).toBeInstanceOf(StoreWriteError);
    expect(s.drainDirty()).toEqual(['00000000000000C1']);
    expect(repo.load().size).toBe(0);
  });
});
