import { performance } from 'node:perf_hooks';
import type { EventEmitter } from 'node:events';
import type { ShelfConfig, StabilityConfig } from '../../config/schema';
import { ErrorCode, ShelfgateError } from '../../errors';
import type { Service } from '../../lifecycle';
import { LogLimiter, type Logger } from '../../log';
import { sensorKey, type SensorAvailability, type WeightReading } from './types';
import { SlotTracker, type SlotEvent } from './slot';
import { learnUnitWeight, tareFromWeight, validateUnitWeight } from './calibration';
import type { Store } from '../../store/store';
import type { LocalBus } from '../../bus/broker';
import * as topics from '../../bus/topics';
import { LatencyRecorder } from '../../util/latency';

/** Outbox priorities: 0 = stock-critical (never dropped), higher = lower-value telemetry. */
export const Priority = { STOCK: 0, ANOMALY: 1, CONDITION: 2 } as const;

export interface ShelfServiceOptions {
  storeId: string;
  shelves: readonly ShelfConfig[];
  stability: StabilityConfig;
  store: Store;
  bus: LocalBus;
  /** Weight sources (Modbus buses, scales): 'reading' and 'availability' events. */
  sources: readonly EventEmitter[];
  /** sensor key -> { model, path } for the device registry. */
  sensorInfo: ReadonlyMap<string, { kind: string; model: string; path: string }>;
  log: Logger;
}

interface SlotEntry {
  shelfId: string;
  slotId: string;
  key: string;
  tracker: SlotTracker;
  /** Built once per slot: every event publishes on them. */
  topics: topics.SlotTopics;
  /** The slot's last persist-then-publish chain: the next event publishes after it (event order per topic). */
  published: Promise<void>;
  /** Config values; calibration overrides from SQLite win over them. */
  params: { gtin?: string; unitWeightG?: number; tareG: number; toleranceG?: number; maxLoadG?: number };
}

/**
 * Smart shelves: turns settled weight into item counts per slot, and every change into a durable
 * event. The order is always: SQLite commit first, MQTT publish second — a count on the bus is a
 * count that survives a crash, and the outbox holds the event for central sync.
 */
export class ShelfService implements Service {
  readonly name = 'shelves';
  readonly latency = new LatencyRecorder();
  readonly stats = { readings: 0, unknownSensor: 0, events: 0, publishFailures: 0, persistFailures: 0 };
  private readonly bySensor = new Map<string, SlotEntry>();
  private readonly bySlot = new Map<string, SlotEntry>();
  private readonly limiter: LogLimiter;
  private tickTimer: NodeJS.Timeout | null = null;
  /** Persist-then-publish chains in flight: stop() lets them finish while the store and bus still run. */
  private readonly inflight = new Set<Promise<void>>();
  private readonly onReading = (r: WeightReading): void => this.handleReading(r);
  private readonly onAvailability = (a: SensorAvailability): void => this.handleAvailability(a);

  constructor(private readonly o: ShelfServiceOptions) {
    this.limiter = new LogLimiter(o.log);
  }

  async start(): Promise<void> {
    const { store, shelves, stability } = this.o;
    const saved = new Map(store.loadSlots().map((r) => [`${r.shelfId}/${r.slotId}`, r]));
    for (const shelf of shelves) {
      for (const slot of shelf.slots) {
        const key = `${shelf.id}/${slot.id}`;
        const row = saved.get(key);
        const params = {
          gtin: row?.gtin ?? slot.gtin,
          unitWeightG: row?.unitWeightG ?? slot.unit_weight_g,
          tareG: row?.tareG ?? slot.tare_g,
          toleranceG: row?.toleranceG ?? slot.tolerance_g,
          maxLoadG: slot.max_load_g,
        };
        const sensor = sensorKey(slot.sensor.bus, slot.sensor.address);
        const tracker = new SlotTracker({
          shelfId: shelf.id,
          slotId: slot.id,
          sensor,
          params,
          stability: { window: stability.window, maxSpreadG: stability.max_spread_g, unstableAlarmMs: stability.unstable_alarm_s * 1000 },
          initial: row ? { count: row.count, weightG: row.weightG } : undefined,
        });
        const entry: SlotEntry = { shelfId: shelf.id, slotId: slot.id, key, tracker, topics: topics.slotTopics(this.o.storeId, shelf.id, slot.id), published: Promise.resolve(), params };
        this.bySensor.set(sensor, entry);
        this.bySlot.set(key, entry);
      }
    }
    await this.republishRetained(saved);
    for (const s of this.o.sources) {
      s.on('reading', this.onReading);
      s.on('availability', this.onAvailability);
    }
    this.tickTimer = setInterval(() => this.tick(), 1_000);
    this.tickTimer.unref();
    this.registerRequests();
  }

  async stop(): Promise<void> {
    for (const s of this.o.sources) {
      s.off('reading', this.onReading);
      s.off('availability', this.onAvailability);
    }
    if (this.tickTimer) clearInterval(this.tickTimer);
    this.tickTimer = null;
    await Promise.allSettled([...this.inflight]);
  }

  /** Current stock of every slot (for `stock.get` and the CLI). */
  snapshot(): Array<ReturnType<ShelfService['stockMessage']>> {
    return [...this.bySlot.values()].map((e) => this.stockMessage(e, Date.now()));
  }

  private handleReading(r: WeightReading): void {
    this.stats.readings++;
    const entry = this.bySensor.get(r.sensor);
    if (!entry) {
      this.stats.unknownSensor++;
      return;
    }
    const events = entry.tracker.onReading(r);
    for (let i = 0; i < events.length; i++) this.record(entry, events[i]!, r.rxMono);
  }

  private handleAvailability(a: SensorAvailability): void {
    const info = this.o.sensorInfo.get(a.sensor);
    const state = { state: a.online ? 'online' : 'offline', reason: a.reason, since: new Date(a.ts).toISOString() };
    this.o.store
      .setDeviceState({ id: a.sensor, kind: info?.kind ?? 'weight', model: info?.model ?? '', path: info?.path ?? '', online: a.online, reason: a.reason, ts: a.ts })
      .then(() => this.publish(topics.deviceAvailability(this.o.storeId, a.sensor), state, true))
      .catch((e: Error) => this.persistFailed(a.sensor, e));
    const entry = this.bySensor.get(a.sensor);
    if (entry) for (const ev of entry.tracker.onAvailability(a.online, a.reason, a.ts)) this.record(entry, ev, performance.now());
  }

  private tick(): void {
    const now = Date.now();
    for (const entry of this.bySlot.values()) for (const ev of entry.tracker.tick(now)) this.record(entry, ev, performance.now());
  }

  /** Persist (outbox + slot state, one batch), then publish. */
  private record(entry: SlotEntry, ev: SlotEvent, rxMono: number): void {
    this.stats.events++;
    const { store, storeId } = this.o;
    const ts = ev.ts;
    const payload = { store_id: storeId, shelf_id: entry.shelfId, slot_id: entry.slotId, gtin: entry.params.gtin ?? null, ...eventFields(ev) };
    const writes: Promise<unknown>[] = [];
    // A recount (after calibration) is a stock level, not a sale: central sees it as a `count` with a reason.
    const outboxKind = ev.type === 'recount' ? 'count' : ev.type;
    const priority = ev.type === 'anomaly' ? Priority.ANOMALY : ev.type === 'condition' ? Priority.CONDITION : Priority.STOCK;
    writes.push(store.appendEvent({ deviceId: entry.key, kind: outboxKind, priority, payload, createdAt: ts }));
    writes.push(
      store.saveSlotState({ shelfId: entry.shelfId, slotId: entry.slotId, count: entry.tracker.count, weightG: entry.tracker.settledWeightG, condition: entry.tracker.condition, updatedAt: ts }),
    );
    const previous = entry.published;
    const chain = Promise.all(writes)
      .then(async ([appended]) => {
        const { seq, eventId } = appended as { seq: number; eventId: string };
        const t = entry.topics;
        // Two events of a slot in one batch: the earlier one's alert must not let the later one's stock go first.
        await previous;
        await this.publish(t.event, { ...payload, seq, event_id: eventId, ts: new Date(ts).toISOString() }, false);
        if (ev.type === 'condition' || ev.type === 'anomaly') await this.publish(t.alert, this.alertMessage(entry, ts), true);
        await this.publish(t.stock, this.stockMessage(entry, ts), true);
        this.latency.record(performance.now() - rxMono);
      })
      .catch((e: Error) => this.persistFailed(entry.key, e))
      .finally(() => this.inflight.delete(chain));
    entry.published = chain;
    this.inflight.add(chain);
  }

  /** `lastKnown`: at start, the condition saved before the restart (the tracker has not seen a reading yet). */
  private stockMessage(e: SlotEntry, ts: number, lastKnown?: string) {
    return {
      store_id: this.o.storeId,
      shelf_id: e.shelfId,
      slot_id: e.slotId,
      gtin: e.params.gtin ?? null,
      count: e.tracker.count,
      weight_g: e.tracker.settledWeightG === null ? null : Math.round(e.tracker.settledWeightG * 10) / 10,
      condition: lastKnown ?? e.tracker.condition,
      ts: new Date(ts).toISOString(),
      ...(lastKnown !== undefined ? { last_known: true } : {}),
    };
  }

  private alertMessage(e: SlotEntry, ts: number, lastKnown?: string) {
    return {
      store_id: this.o.storeId,
      shelf_id: e.shelfId,
      slot_id: e.slotId,
      condition: lastKnown ?? e.tracker.condition,
      ts: new Date(ts).toISOString(),
      ...(lastKnown !== undefined ? { last_known: true } : {}),
    };
  }

  private async republishRetained(saved: Map<string, { updatedAt: number | null; condition: string | null }>): Promise<void> {
    const { storeId, store } = this.o;
    for (const d of store.loadDevices())
      await this.publish(topics.deviceAvailability(storeId, d.id), { state: d.online ? 'online' : 'offline', reason: d.reason ?? undefined, since: new Date(d.updatedAt ?? Date.now()).toISOString(), last_known: true }, true);
    for (const e of this.bySlot.values()) {
      const row = saved.get(e.key);
      if (!row) continue;
      const t = e.topics;
      // The last known state, marked as such, until the first settled reading replaces it: a slot
      // that was in mismatch before the restart must not be announced `ok` on faith.
      const lastKnown = row.condition ?? e.tracker.condition;
      await this.publish(t.stock, this.stockMessage(e, row.updatedAt ?? Date.now(), lastKnown), true);
      await this.publish(t.alert, this.alertMessage(e, row.updatedAt ?? Date.now(), lastKnown), true);
    }
  }

  private publish(topic: string, body: object, retain: boolean): Promise<void> {
    return this.o.bus.publish(topic, JSON.stringify(body), { retain, qos: 1 }).catch((e: Error) => {
      this.stats.publishFailures++;
      this.limiter.warn(`publish:${topic}`, { topic, err: e.message }, 'publish failed');
    });
  }

  private persistFailed(key: string, e: Error): void {
    this.stats.persistFailures++;
    this.limiter.error(`persist:${key}`, { slot: key, err: e.message }, 'could not persist shelf event: not published');
  }

  // ---- requests (technician calibration, stock queries) ----

  private registerRequests(): void {
    const { bus } = this.o;
    bus.onRequest('stock.get', async ({ payload }) => {
      const p = (payload ?? {}) as { shelf?: string; slot?: string };
      return this.snapshot().filter((s) => (p.shelf === undefined || s.shelf_id === p.shelf) && (p.slot === undefined || s.slot_id === p.slot));
    });
    bus.onRequest('calibrate.tare', async ({ payload, username }) => this.calibrate(payload, username, (e) => ({ tareG: tareFromWeight(this.settled(e)) })));
    bus.onRequest('calibrate.set_unit_weight', async ({ payload, username }) =>
      this.calibrate(payload, username, () => ({ unitWeightG: validateUnitWeight(Number((payload as { grams?: unknown })?.grams)) })),
    );
    bus.onRequest('calibrate.learn', async ({ payload, username }) =>
      this.calibrate(payload, username, (e) => ({ unitWeightG: learnUnitWeight(this.settled(e), e.params.tareG, Number((payload as { items?: unknown })?.items)) })),
    );
  }

  /**
   * A slot assignment from central (which product a slot holds, its unit weight). The sync service
   * applies the version rule before calling this; here it is stored like a calibration, so it
   * survives restarts, and the count is recomputed (a `recount`, not a sale).
   */
  async assignSlot(shelfId: string, slotId: string, a: { gtin: string | null; unitWeightG: number | null }): Promise<{ count: number | null }> {
    const entry = this.bySlot.get(`${shelfId}/${slotId}`);
    if (!entry) throw new ShelfgateError(ErrorCode.NOT_FOUND, `no slot ${shelfId}/${slotId}`);
    const delta = { gtin: a.gtin ?? undefined, unitWeightG: a.unitWeightG === null ? undefined : validateUnitWeight(a.unitWeightG) };
    await this.o.store.saveCalibration(shelfId, slotId, { gtin: a.gtin, unitWeightG: a.unitWeightG });
    entry.params.gtin = delta.gtin;
    entry.params.unitWeightG = delta.unitWeightG;
    for (const ev of entry.tracker.setParams({ ...entry.params }, Date.now())) this.record(entry, ev, performance.now());
    this.o.log.info({ slot: entry.key, gtin: a.gtin, unit_weight_g: a.unitWeightG, count: entry.tracker.count }, 'slot assigned by central');
    return { count: entry.tracker.count };
  }

  private settled(e: SlotEntry): number {
    const w = e.tracker.settledWeightG;
    if (w === null) throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `slot ${e.key} has no settled weight yet: wait until the shelf is still`);
    return w;
  }

  private async calibrate(payload: unknown, username: string, change: (e: SlotEntry) => { tareG?: number; unitWeightG?: number }) {
    const p = (payload ?? {}) as { shelf?: unknown; slot?: unknown };
    const entry = this.bySlot.get(`${String(p.shelf)}/${String(p.slot)}`);
    if (!entry) throw new ShelfgateError(ErrorCode.NOT_FOUND, `no slot ${String(p.shelf)}/${String(p.slot)}`);
    const delta = change(entry);
    await this.o.store.saveCalibration(entry.shelfId, entry.slotId, delta);
    Object.assign(entry.params, delta);
    const before = entry.tracker.count;
    for (const ev of entry.tracker.setParams({ ...entry.params }, Date.now())) this.record(entry, ev, performance.now());
    this.o.log.info({ slot: entry.key, by: username, ...delta, count_before: before, count: entry.tracker.count }, 'slot calibrated');
    return { shelf: entry.shelfId, slot: entry.slotId, tare_g: entry.params.tareG, unit_weight_g: entry.params.unitWeightG ?? null, count: entry.tracker.count };
  }
}

/** The wire form of a slot event (snake_case, like every payload on the bus and to central). */
function eventFields(ev: SlotEvent): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(ev)) out[k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)] = k === 'ts' ? undefined : v;
  out.kind = ev.type === 'recount' ? 'count' : ev.type;
  if (ev.type === 'recount') out.reason = 'recount';
  delete out.type;
  delete out.ts;
  return out;
}
