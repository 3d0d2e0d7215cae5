/**
 * The labels service on a real SQLite file with a scripted radio (a LabelRadio whose sends are
 * recorded and whose events the test emits): applied prices become content for every bound label,
 * a label counts as confirmed only on the radio's ack, state survives a restart, an AP that is busy
 * does not cost the labels attempts, and the integrity report tells the truth at every step.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EventBus, type PriceApplied } from '../../src/core/events';
import { labelsSchema } from '../../src/features/labels/config';
import { loadLabelTypes } from '../../src/features/labels/label-types';
import { RadioError, type LabelHealth, type LabelRadio, type RadioEvent } from '../../src/features/labels/radio';
import { LABELS_MIGRATIONS, LabelRepository } from '../../src/features/labels/repository';
import { LabelsService } from '../../src/features/labels/service';
import { silentLogger } from '../../src/log';
import { MIGRATIONS } from '../../src/store/migrations';
import { Store } from '../../src/store/store';
import { waitFor } from '../helpers/wait';

const GTIN = '04006381333931';
const MAC_A = '0000021F4A3B2C01';
const MAC_B = '0000021F4A3B2C02';

class ScriptedRadio implements LabelRadio {
  readonly name: string;
  readonly sends: Array<{ mac: string; body: string }> = [];
  readonly flashes: Array<{ mac: string; pattern: string }> = [];
  failNext: RadioError | null = null;
  private readonly listeners = new Set<(e: RadioEvent) => void>();
  constructor(readonly id: string) {
    this.name = `radio:${id}`;
  }
  async start(): Promise<void> {}
  async stop(): Promise<void> {
    this.listeners.clear();
  }
  async send(mac: string, body: string): Promise<void> {
    if (this.failNext) {
      const e = this.failNext;
      this.failNext = null;
      throw e;
    }
    this.sends.push({ mac, body });
  }
  async flash(mac: string, pattern: string): Promise<void> {
    this.flashes.push({ mac, pattern });
  }
  subscribe(l: (e: RadioEvent) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
  emit(e: RadioEvent): void {
    for (const l of this.listeners) l(e);
  }
  listenerCount(): number {
    return this.listeners.size;
  }
  status() {
    return { id: this.id, online: true, lastError: null, labels: 0 };
  }
}

const health = (over: Partial<LabelHealth> = {}): LabelHealth => ({ batteryMv: 2900, rssi: -60, lqi: 100, temperature: 21, hwType: 0x01, nextCheckInAt: null, checkInMs: 1000, ...over });

let dir: string;
const cleanups: Array<() => Promise<void>> = [];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sg-labels-svc-'));
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  rmSync(dir, { recursive: true, force: true });
});

interface Rig {
  svc: LabelsService;
  radio: ScriptedRadio;
  events: EventBus;
  store: Store;
  published: Map<string, string>;
  stop(): Promise<void>;
}

async function rig(opts: { radio?: ScriptedRadio; publishIntervalMs?: number } = {}): Promise<Rig> {
  const store = new Store({ path: join(dir, 'sg.db'), synchronous: 'full', flushIntervalMs: 2, storeId: 'st1', log: silentLogger(), migrations: [...MIGRATIONS, ...LABELS_MIGRATIONS].sort((a, b) => a.version - b.version) });
  await store.start();
  const events = new EventBus(silentLogger());
  const radio = opts.radio ?? new ScriptedRadio('ap1');
  const published = new Map<string, string>();
  const svc = new LabelsService({
    storeId: 'st1',
    config: labelsSchema.parse({ locale: 'de-DE', access_points: [{ id: 'ap1', url: 'http://127.0.0.1:9' }], publish_interval_ms: opts.publishIntervalMs ?? 0 }),
    store,
    bus: { publish: async (topic: string, body: string | Buffer) => void published.set(topic, String(body)) },
    events,
    locations: { get: (id: string) => (id === 'g1/s1' ? { id, shelfId: 'g1', slotId: 's1', gtin: GTIN, unitWeightG: 500 } : undefined), list: () => [] },
    radios: [radio],
    types: loadLabelTypes(),
    products: { get: (g: string) => (g === GTIN ? { gtin: g, name: 'Vollmilch 3,5 %', netContent: { amount: 1, unit: 'l' as const } } : undefined) },
    repo: new LabelRepository(store),
    log: silentLogger(),
  });
  await svc.start();
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await svc.stop();
    await store.stop();
  };
  cleanups.push(stop);
  return { svc, radio, events, store, published, stop };
}

const price = (p: number, version: number, promotion: unknown = null): PriceApplied => ({ gtin: GTIN, price: p, currency: 'EUR', promotion, version, changeId: `c${version}`, appliedAt: Date.now() });

describe('labels service', () => {
  it('delivers a price to a bound label and confirms it only on the ack, never on the stored answer', async () => {
    const { svc, radio, events, published } = await rig();
    radio.emit({ type: 'heard', mac: MAC_A, at: Date.now(), health: health() });
    svc.bind({ mac: MAC_A, shelf: 'g1', slot: 's1' }, 'tech');
    events.emit('priceApplied', price(129, 1));
    await waitFor(() => radio.sends.length === 1, 5000, 'the content sent to the AP');
    expect(radio.sends[0]!.mac).toBe(MAC_A);
    expect(radio.sends[0]!.body).toContain('1,29');
    // stored at the AP: still not confirmed
    await waitFor(() => svc.stats.stored === 1, 5000, 'stored');
    expect(svc.integrity(MAC_A)!.state).toBe('sent');
    expect(svc.integrity(MAC_A)!.matches).toBe(false);
    radio.emit({ type: 'ack', mac: MAC_A, at: Date.now() });
    const i = svc.integrity(MAC_A)!;
    expect(i.state).toBe('confirmed');
    expect(i.matches).toBe(true);
    expect(i.shows).toMatchObject({ price: 129, currency: 'EUR' });
    expect(i.switch_delay_ms).toBeGreaterThanOrEqual(0);
    const topic = `shelfgate/v1/st1/labels/label/${MAC_A}`;
    await waitFor(() => published.get(topic)?.includes('"matches":true'), 5000, 'the retained per-label integrity');
    await waitFor(() => JSON.parse(published.get('shelfgate/v1/st1/labels/summary') ?? '{}').share === 1, 5000, 'the summary at share 1');
  });

  it('coalesces rapid price changes: only the newest goes out once the transfer in flight ends', async () => {
    const { svc, radio, events } = await rig();
    radio.emit({ type: 'heard', mac: MAC_A, at: Date.now(), health: health() });
    svc.bind({ mac: MAC_A, shelf: 'g1', slot: 's1' }, 'tech');
    events.emit('priceApplied', price(100, 1));
    await waitFor(() => radio.sends.length === 1, 5000, 'first send');
    for (let v = 2; v <= 6; v++) events.emit('priceApplied', price(100 + v, v));
    radio.emit({ type: 'ack', mac: MAC_A, at: Date.now() });
    await waitFor(() => radio.sends.length === 2, 5000, 'second send');
    expect(radio.sends[1]!.body).toContain('1,06');
    radio.emit({ type: 'ack', mac: MAC_A, at: Date.now() });
    expect(svc.integrity(MAC_A)!.shows!.price).toBe(106);
    expect(svc.scheduler.stats.coalesced).toBeGreaterThanOrEqual(4);
  });

  it('a busy AP (409) does not cost the label an attempt; the content goes again', async () => {
    const { svc, radio, events } = await rig();
    radio.emit({ type: 'heard', mac: MAC_A, at: Date.now(), health: health() });
    svc.bind({ mac: MAC_A, shelf: 'g1', slot: 's1' }, 'tech');
    radio.failNext = new RadioError('SG_AP_BUSY', 'come back later', 50);
    events.emit('priceApplied', price(129, 1));
    await waitFor(() => radio.sends.length === 1, 5000, 'the send after the busy answer');
    expect(svc.stats.sendFailures).toBe(1);
    expect(svc.integrity(MAC_A)!.attempts).toBe(0);
  });

  it('a price that does not fit the template is a reported problem, and the label keeps what it shows', async () => {
    const { svc, radio, events } = await rig();
    radio.emit({ type: 'heard', mac: MAC_A, at: Date.now(), health: health() });
    svc.bind({ mac: MAC_A, shelf: 'g1', slot: 's1' }, 'tech');
    events.emit('priceApplied', price(129, 1));
    await waitFor(() => radio.sends.length === 1, 5000, 'first send');
    radio.emit({ type: 'ack', mac: MAC_A, at: Date.now() });
    events.emit('priceApplied', price(99_999_999_999, 2));
    const i = svc.integrity(MAC_A)!;
    expect(i.problem).toMatch(/SG_LABEL_TEXT_TOO_LONG/);
    expect(i.shows!.price).toBe(129);
    expect(svc.report({ stale: true }).labels.map((l) => l.mac)).toEqual([MAC_A]);
  });

  it('after a restart nothing confirmed is resent and a transfer in flight goes out again without costing an attempt', async () => {
    const first = await rig();
    first.radio.emit({ type: 'heard', mac: MAC_A, at: Date.now(), health: health() });
    first.radio.emit({ type: 'heard', mac: MAC_B, at: Date.now(), health: health() });
    first.svc.bind({ mac: MAC_A, shelf: 'g1', slot: 's1' }, 'tech');
    first.svc.bind({ mac: MAC_B, gtin: GTIN }, 'tech');
    first.events.emit('priceApplied', price(129, 1));
    await waitFor(() => first.radio.sends.length === 2, 5000, 'both sent');
    first.radio.emit({ type: 'ack', mac: MAC_A, at: Date.now() });
    await first.stop();

    const second = await rig();
    second.events.emit('priceApplied', price(129, 1)); // sync republishes stored prices at start
    second.radio.emit({ type: 'heard', mac: MAC_A, at: Date.now(), health: health() });
    second.radio.emit({ type: 'heard', mac: MAC_B, at: Date.now(), health: health() });
    // B was in flight at the stop: it goes out again at once, without costing an attempt; A, confirmed, does not
    await waitFor(() => second.radio.sends.length === 1, 5000, 'the transfer in flight sent again');
    expect(second.radio.sends[0]!.mac).toBe(MAC_B);
    expect(second.svc.integrity(MAC_B)!.attempts).toBe(0);
    second.radio.emit({ type: 'ack', mac: MAC_B, at: Date.now() });
    await waitFor(() => second.svc.summary().share === 1, 5000, 'both confirmed');
    // proof the service ran a round after the ack: the summary was published with share 1
    await waitFor(() => JSON.parse(second.published.get('shelfgate/v1/st1/labels/summary') ?? '{}').share === 1, 5000, 'summary');
    expect(second.radio.sends.map((x) => x.mac)).toEqual([MAC_B]);
  });

  it('refuses bad bindings with clear errors and unbinding clears the retained state', async () => {
    const { svc, radio, published } = await rig();
    expect(() => svc.bind({ mac: 'nope', shelf: 'g1', slot: 's1' }, 't')).toThrow(/not a label MAC/);
    expect(() => svc.bind({ mac: MAC_A, shelf: 'g9', slot: 's1' }, 't')).toThrow(/unknown slot g9\/s1/);
    expect(() => svc.bind({ mac: MAC_A, gtin: GTIN, shelf: 'g1', slot: 's1' }, 't')).toThrow(/either a product/);
    expect(() => svc.bind({ mac: MAC_A, gtin: GTIN }, 't')).toThrow(/has not been heard/);
    radio.emit({ type: 'heard', mac: MAC_A, at: Date.now(), health: health({ hwType: 0x7f }) });
    expect(() => svc.bind({ mac: MAC_A, gtin: GTIN }, 't')).toThrow(/hwType 0x7f/);
    svc.bind({ mac: MAC_A, gtin: GTIN, type: 'oepl-m2-2.9-bwr' }, 't');
    const topic = `shelfgate/v1/st1/labels/label/${MAC_A}`;
    await waitFor(() => published.has(topic), 5000, 'published');
    expect(svc.unbind(MAC_A, 't')).toEqual({ mac: MAC_A, unbound: true });
    await waitFor(() => published.get(topic) === '', 5000, 'retained state cleared');
  });

  it('a summary change that falls inside the publish interval is published when the interval is up', async () => {
    const { svc, radio, events, published } = await rig({ publishIntervalMs: 300 });
    radio.emit({ type: 'heard', mac: MAC_A, at: Date.now(), health: health() });
    svc.bind({ mac: MAC_A, shelf: 'g1', slot: 's1' }, 'tech');
    events.emit('priceApplied', price(129, 1));
    await waitFor(() => radio.sends.length === 1, 5000, 'sent');
    // the ack lands right after a summary went out; no other event follows it
    radio.emit({ type: 'ack', mac: MAC_A, at: Date.now() });
    await waitFor(() => JSON.parse(published.get('shelfgate/v1/st1/labels/summary') ?? '{}').share === 1, 5000, 'the summary at share 1');
  });

  it('the published summary, kept label by label, equals a full pass over every label at each step', async () => {
    const { svc, radio, events, published } = await rig();
    const stable = (x: object): string => {
      const { ts: _ts, oldest_mismatch_age_s: _age, ...rest } = x as Record<string, unknown>;
      return JSON.stringify(rest);
    };
    const agrees = (): boolean => {
      const p = published.get('shelfgate/v1/st1/labels/summary');
      return p !== undefined && stable(JSON.parse(p) as object) === stable(svc.summary());
    };
    const step = (what: string): Promise<unknown> => waitFor(agrees, 5000, `the published summary equals the full pass: ${what}`);
    radio.emit({ type: 'heard', mac: MAC_A, at: Date.now(), health: health() });
    radio.emit({ type: 'heard', mac: MAC_B, at: Date.now(), health: health({ batteryMv: 2100 }) });
    svc.bind({ mac: MAC_A, shelf: 'g1', slot: 's1' }, 'tech');
    svc.bind({ mac: MAC_B, gtin: GTIN }, 'tech');
    await step('bound, no price (two problems, one low battery)');
    expect(svc.summary()).toMatchObject({ labels: 2, problems: 2, low_battery: 1, priced: 0 });
    events.emit('priceApplied', price(129, 1));
    await waitFor(() => radio.sends.length === 2, 5000, 'both sent');
    // one product, one label type: one content (rendered once for both)
    expect(radio.sends[0]!.body).toBe(radio.sends[1]!.body);
    await step('both sent');
    expect(svc.summary()).toMatchObject({ priced: 2, confirmed_current: 0, problems: 0, by_state: { sent: 2 } });
    expect(svc.summary().oldest_mismatch_since).not.toBeNull();
    radio.emit({ type: 'ack', mac: MAC_A, at: Date.now() });
    await step('one confirmed');
    expect(svc.summary()).toMatchObject({ confirmed_current: 1, share: 0.5 });
    radio.emit({ type: 'heard', mac: MAC_B, at: Date.now(), health: health({ batteryMv: 2900 }) });
    radio.emit({ type: 'ack', mac: MAC_B, at: Date.now() });
    await step('both confirmed, battery fine');
    expect(svc.summary()).toMatchObject({ confirmed_current: 2, share: 1, low_battery: 0, oldest_mismatch_since: null });
    svc.unbind(MAC_B, 'tech');
    await step('one unbound');
    expect(svc.summary()).toMatchObject({ labels: 1, priced: 1, by_state: { confirmed: 1 } });
  });

  it('stop() removes every listener it added', async () => {
    const r = await rig();
    expect(r.radio.listenerCount()).toBe(1);
    expect(r.events.listenerCount()).toBeGreaterThan(0);
    await r.stop();
    expect(r.radio.listenerCount()).toBe(0);
    expect(r.events.listenerCount()).toBe(0);
  });
});
