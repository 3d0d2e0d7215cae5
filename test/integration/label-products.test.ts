/**
 * Product master data for the shelf labels (src/features/labels/products.ts) on a real SQLite file:
 * - through the change feed's page commit (the version rule: an older or equal version is
 *   acknowledged stale and never written; the same change again is `applied` once), the catalogue
 *   kept in memory, `productChanged` once per written change, and the table read back after the
 *   store is opened again;
 * - end to end from the reference central over HTTPS into a gateway hosting the applier as a
 *   feature: products named in the price CSV and the demo catalogue's products arrive with their
 *   names and net contents, and a slot assignment's `labels` arrive as `assignmentChanged.attributes`.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load';
import type { AssignmentChanged } from '../../src/core/events';
import { EventBus } from '../../src/core/events';
import { defineFeature } from '../../src/core/feature';
import { buildGateway, composeMigrations } from '../../src/core/gateway';
import { loadDefinitions } from '../../src/devices/definitions';
import { LABELS_PRODUCTS_MIGRATION, ProductApplier, ProductCatalog, type ProductInfo } from '../../src/features/labels/products';
import { silentLogger } from '../../src/log';
import { Store } from '../../src/store/store';
import { ChangeAppliers } from '../../src/sync/appliers';
import { ChangeFeed } from '../../src/sync/feed';
import { SyncRepository } from '../../src/sync/repository';
import { newSyncStats } from '../../src/sync/status';
import { CentralSimulator } from '../../simulators/central';
import { tmp, useCleanups, waitFor } from '../helpers/daemon';

const GTIN = '04006381333931';

/** The applier hosted by a feature defined here (the labels feature wires the same parts). */
function productsFeature(seen: { catalog?: ProductCatalog }) {
  return defineFeature({
    name: 'products',
    migrations: [LABELS_PRODUCTS_MIGRATION],
    build(ctx) {
      const catalog = new ProductCatalog(ctx.store);
      seen.catalog = catalog;
      return { services: [catalog], appliers: [new ProductApplier({ catalog, events: ctx.events, log: ctx.log })] };
    },
  });
}

describe('product changes on a real SQLite file', () => {
  const cleanups = useCleanups();

  async function open(dir: string) {
    const log = silentLogger();
    const store = new Store({ path: join(dir, 'sg.db'), synchronous: 'full', flushIntervalMs: 5, storeId: 'st1', log, migrations: [...composeMigrations([]), LABELS_PRODUCTS_MIGRATION] });
    const events = new EventBus(log);
    const catalog = new ProductCatalog(store);
    const applier = new ProductApplier({ catalog, events, log });
    const repo = new SyncRepository(store);
    const appliers = new ChangeAppliers();
    appliers.register(applier);
    const feed = new ChangeFeed({
      appliers,
      repo,
      transport: null as never, // applyPage only: nothing is fetched
      longPollS: 0,
      backoff: { initial_ms: 10, max_ms: 10 },
      delayFor: () => 10,
      counters: newSyncStats(),
      log,
      succeeded: () => undefined,
      failed: () => undefined,
      reachable: () => undefined,
      acksPending: () => undefined,
    });
    await store.start();
    await catalog.start();
    cleanups.push(() => store.stop());
    const emitted: ProductInfo[] = [];
    events.on(emitted, 'productChanged', (p) => emitted.push(p));
    const acks = () => Object.fromEntries(repo.pendingAcks(100).map((a) => [a.change_id, a.status]));
    return { store, catalog, applier, repo, feed, emitted, acks };
  }

  const product = (version: number, name: string, net: unknown = null, gtin = '4006381333931') => ({ change_id: `product/${gtin}/v${version}`, type: 'product', gtin, name, net_content: net, version });

  it('applies with the version rule, keeps the catalogue in memory, emits once per written change, and survives a reopen', async () => {
    const dir = tmp('sg-products-');
    let g = await open(dir);
    await g.feed.applyPage([product(2, 'Whole milk 3.5 %', { amount: 1, unit: 'l' })], 'c1', null);
    expect(g.acks()).toEqual({ 'product/4006381333931/v2': 'applied' });
    expect(g.catalog.get('4006381333931')).toEqual({ gtin: GTIN, name: 'Whole milk 3.5 %', netContent: { amount: 1, unit: 'l' } });
    expect(g.catalog.get(GTIN)).toEqual(g.catalog.get('4006381333931'));
    expect(g.emitted).toMatchObject([{ gtin: GTIN, name: 'Whole milk 3.5 %', netContent: { amount: 1, unit: 'l' }, version: 2, changeId: 'product/4006381333931/v2' }]);

    // older: stale, not written, not emitted; the same change again: applied, not written again
    await g.feed.applyPage([product(1, 'Milk (old)'), product(2, 'Whole milk 3.5 %', { amount: 1, unit: 'l' })], 'c2', 'c1');
    expect(g.acks()).toMatchObject({ 'product/4006381333931/v1': 'stale', 'product/4006381333931/v2': 'applied' });
    expect(g.emitted).toHaveLength(1);
    expect(g.catalog.get(GTIN)?.name).toBe('Whole milk 3.5 %');

    // two versions in one page: only the newer is written; an invalid one is acknowledged invalid
    await g.feed.applyPage([product(4, 'Whole milk 3.8 %', null), product(3, 'Whole milk 3.6 %'), product(5, '', null, '96385074')], 'c3', 'c2');
    expect(g.acks()).toMatchObject({ 'product/4006381333931/v3': 'stale', 'product/4006381333931/v4': 'applied', 'product/96385074/v5': 'invalid' });
    expect(g.emitted.map((p) => [p.version, p.name, p.netContent])).toEqual([
      [2, 'Whole milk 3.5 %', { amount: 1, unit: 'l' }],
      [4, 'Whole milk 3.8 %', null],
    ]);
    expect(g.applier.counters).toEqual({ applied: 2, invalid: 1 });
    expect(g.repo.cursor()).toBe('c3');

    // the table, read back after the store is opened again
    await g.store.stop();
    g = await open(dir);
    expect(g.catalog.size).toBe(1);
    expect(g.catalog.info(GTIN)).toMatchObject({ gtin: GTIN, name: 'Whole milk 3.8 %', netContent: null, version: 4, changeId: 'product/4006381333931/v4' });
    expect(g.catalog.get('4006381333932')).toBeUndefined(); // not a valid GTIN
    await g.feed.applyPage([product(4, 'Whole milk 3.8 %', null)], 'c4', 'c3');
    expect(g.acks()['product/4006381333931/v4']).toBe('applied');
    expect(g.emitted).toEqual([]);
  });
});

describe('product changes and slot labels from the reference central (HTTPS)', () => {
  const cleanups = useCleanups();

  it('products from the price CSV and the demo catalogue arrive named; a slot change with labels arrives as attributes.labels', async () => {
    const dir = tmp('sg-products-');
    const central = new CentralSimulator({ host: '127.0.0.1', port: 0, token: 'tok', log: silentLogger() });
    await central.start();
    cleanups.push(() => central.stop());
    writeFileSync(join(dir, 'token'), 'tok');
    const seen: { catalog?: ProductCatalog } = {};
    const feature = productsFeature(seen);
    const raw = {
      store_id: 'st-products',
      data_dir: dir,
      mqtt: { port: 0 },
      storage: { flush_interval_ms: 5 },
      sync: { transport: 'https', https: { url: central.url, token_file: join(dir, 'token') }, backoff: { initial_ms: 50, max_ms: 500 } },
      shelves: [{ id: 'dairy', slots: [{ id: '1' }, { id: '2' }] }],
    };
    const { config, issues } = validateConfig(raw, loadDefinitions(), [feature]);
    expect(issues).toEqual([]);
    const gw = buildGateway(config!, { log: silentLogger(), definitions: loadDefinitions(), features: [feature] });
    const products: ProductInfo[] = [];
    const assignments: AssignmentChanged[] = [];
    gw.events.on(products, 'productChanged', (p) => products.push(p));
    gw.events.on(assignments, 'assignmentChanged', (a) => assignments.push(a));
    await gw.start();
    cleanups.push(() => gw.stop());

    // the price CSV names two products; a row without a name names none
    const csv = join(dir, 'prices.csv');
    writeFileSync(csv, 'gtin,price,currency,name,net_content\n4006381333931,129,EUR,Whole milk 3.5 %,1 l\n96385074,99,EUR,,\n036000291452,349,EUR,"Free-range eggs, 10 pack",\n');
    expect(central.loadPricesCsv(csv)).toBe(3);
    await waitFor(() => products.length === 2, 10_000, 'two products from the CSV');
    expect(seen.catalog!.get(GTIN)).toEqual({ gtin: GTIN, name: 'Whole milk 3.5 %', netContent: { amount: 1, unit: 'l' } });
    expect(seen.catalog!.get('036000291452')).toEqual({ gtin: '00036000291452', name: 'Free-range eggs, 10 pack', netContent: null });
    expect(seen.catalog!.get('96385074')).toBeUndefined();
    // loading the same file again publishes no new product version (nothing changed)
    const before = central.stats().changes.product;
    central.loadPricesCsv(csv);
    expect(central.stats().changes.product).toBe(before);

    // a random price of the demo catalogue: its product comes first, once
    const rnd = central.publishRandomPrice();
    await waitFor(() => products.some((p) => p.gtin === rnd.gtin), 10_000, 'the demo product');
    const named = seen.catalog!.info(rnd.gtin)!;
    expect(named.name.length).toBeGreaterThan(0);
    expect(central.changes().filter((c) => c.type === 'product' && c.gtin === rnd.gtin)).toHaveLength(1);
    await waitFor(() => gw.sync.prices.price(rnd.gtin), 10_000, 'the random price applied');
    expect(central.acks('st-products').every((a) => a.status === 'applied')).toBe(true);

    // label bindings through the slot-assignment path: the core hands `labels` on without reading it
    const slot = central.assignSlot({ storeId: 'st-products', shelf: 'dairy', slot: 2, gtin: '4006381333931', unitWeightG: 1040, labels: ['0000021ec9ab1234', 'A1B2C3D4E5F6'] });
    const a = await waitFor(() => assignments.find((x) => x.locationId === 'dairy/2'), 10_000, 'assignmentChanged of dairy/2');
    expect(a).toEqual({
      locationId: 'dairy/2',
      shelfId: 'dairy',
      slotId: '2',
      gtin: GTIN,
      unitWeightG: 1040,
      by: 'central',
      attributes: { labels: ['0000021EC9AB1234', 'A1B2C3D4E5F6'] },
    });
    expect((await waitFor(() => central.acks('st-products').find((x) => x.change_id === slot.change_id), 10_000, 'slot ack')).status).toBe('applied');
    // without labels: no attributes
    central.assignSlot({ storeId: 'st-products', shelf: 'dairy', slot: 1, gtin: '036000291452', unitWeightG: 640 });
    const plain = await waitFor(() => assignments.find((x) => x.locationId === 'dairy/1'), 10_000, 'assignmentChanged of dairy/1');
    expect('attributes' in plain).toBe(false);
    gw.events.removeOwner(products);
    gw.events.removeOwner(assignments);
  });

  it('the simulator refuses a bad product or bad labels (REQUEST_INVALID), and POST /_sim/products publishes one', async () => {
    const central = new CentralSimulator({ host: '127.0.0.1', port: 0, log: silentLogger() });
    await central.start();
    cleanups.push(() => central.stop());
    expect(() => central.publishProduct({ gtin: '4006381333932', name: 'x' })).toThrow(/not a valid GTIN/);
    expect(() => central.publishProduct({ gtin: GTIN, name: '' })).toThrow(/name must be/);
    expect(() => central.publishProduct({ gtin: GTIN, name: 'Oil', netContent: { amount: 0, unit: 'l' } })).toThrow(/netContent/);
    expect(() => central.assignSlot({ storeId: 's1', shelf: 'a', slot: 1, gtin: null, unitWeightG: null, labels: ['XYZ'] })).toThrow(/labels must be/);
    const p1 = central.publishProduct({ gtin: GTIN, name: 'Olive oil', netContent: { amount: 750, unit: 'ml' } });
    expect(p1).toMatchObject({ change_id: `product/${GTIN}/v1`, type: 'product', gtin: GTIN, name: 'Olive oil', net_content: { amount: 750, unit: 'ml' }, version: 1, store_id: null });
    expect(() => central.publishProduct({ gtin: GTIN, name: 'Olive oil', version: 1 })).toThrow(/not newer/);
    const res = await fetch(`${central.url}/_sim/products`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ gtin: '4006381333931', name: 'Olive oil extra', net_content: '0,5 l' }) });
    expect(res.status).toBe(201);
    expect(((await res.json()) as { changes: unknown[] }).changes).toMatchObject([{ version: 2, net_content: { amount: 0.5, unit: 'l' } }]);
    const bad = await fetch(`${central.url}/_sim/products`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ gtin: '4006381333931', name: 'Oil', net_content: '1 gallon' }) });
    expect(bad.status).toBe(400);
    expect(central.stats().changes).toMatchObject({ product: 2, price: 0, slot: 0 });
  });
});
