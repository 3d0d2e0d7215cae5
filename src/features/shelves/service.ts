import { performance } from 'node:perf_hooks';
import { ErrorCode, ShelfgateError } from '../../errors';
import type { Service } from '../../lifecycle';
import { LogLimiter, type Logger } from '../../log';
import type { LocalBus } from '../../bus/broker';
import * as topics from '../../bus/topics';
import { handle } from '../../core/commands';
import { calibrateLearn, calibrateSetUnitWeight, calibrateTare, stockGet } from './commands';
import { Priority } from '../../core/event-kinds';
import type { EventBus } from '../../core/events';
import type { PollRequested } from '../../core/poll-requested';
import { locationId, type Locations, type StockRow } from '../../core/locations';
import type { Source } from '../../core/sources/types';
import type { Store } from '../../store/store';
import { LatencyRecorder } from '../../util/latency';
import { learnUnitWeight, tareFromWeight, validateUnitWeight } from './calibration';
import type { CalibrationRepository } from './repository';
import { SlotTracker, type SlotEvent } from './slot';
import { sensorKey, type WeightReading } from './types';
import type { ShelvesConfig, WeighedSlotConfig } from './config';

/** Which feature observed a stock level (core `stock.observed_by`). */
export const OBSERVER = 'weight';

export interface ShelfServiceOptions {
  storeId: string;
  config: ShelvesConfig;
  store: Store;
  bus: Pick<LocalBus, 'publish'>;
  events: EventBus;
  locations: Locations;
  calibration: CalibrationRepository;
  /** Weight sources (Modbus buses, scales). */
  sources: ReadonlyArray<Source<WeightReading>>;
  log: Logger;
}

/** A stock state exactly as committed with an event: what the retained messages carry. */
interface Snapshot {
  /** The GTIN the slot held when the event was committed. */
  gtin: string | null;
  count: number | null;
  weightG: number | null;
  condition: string;
  ts: number;
  lastKnown?: boolean;
}

interface SlotEntry {
  shelfId: string;
  slotId: string;
  key: string;
  tracker: SlotTracker;
  /** Built once per slot: every event publishes on them. */
  topics: topics.SlotTopics;
  config: WeighedSlotConfig;
  /** The newest committed state (what stock.get answers and the bus shows). */
  committed: Snapshot;
  /** Tail of this slot's commit-then-publish chain: its messages reach the bus in commit order. */
  tail: Promise<void>;
}

/**
 * Weight shelves: turns settled weight into item counts per slot, and every change into a durable
 * event. The order is always: SQLite commit first, MQTT publish second, and what is published is
 * exactly what was committed (a snapshot taken with the event, never the tracker's live state). A
 * count on the bus is a count that survives a crash; the outbox holds the event for central sync.
 *
 * The slot's product (GTIN, unit weight) belongs to its location (core/locations.ts); this service
 * observes it and follows `assignmentChanged`. Device availability comes from the core device
 * registry as `availability` events.
 */
export class ShelfService implements Service {
  readonly name = 'shelves';
  readonly latency = new LatencyRecorder();
  readonly stats = { readings: 0, unknownSensor: 0, events: 0, publishFailures: 0, persistFailures: 0, pollRequests: 0, pollRequestsRefused: 0 };
  private readonly bySensor = new Map<string, SlotEntry>();
  private readonly bySlot = new Map<string, SlotEntry>();
  private readonly limiter: LogLimiter;
  private tickTimer: NodeJS.Timeout | null = null;
  /** Persist-then-publish chains in flight: stop() lets them finish while the store and bus still run. */
  private readonly inflight = new Set<Promise<void>>();
  private readonly onReading = (r: WeightReading): void => this.handleReading(r);

  constructor(private readonly o: ShelfServiceOptions) {
    this.limiter = new LogLimiter(o.log);
  }

  async start(): Promise<void> {
    const { config, locations, calibration, events } = this.o;
    const stock = new Map<string, StockRow>(locations.loadStock().map((r) => [r.locationId, r]));
    const cal = calibration.load();
    const { stability } = config;
    for (const shelf of config.shelves) {
      for (const slot of shelf.slots) {
        if (!slot.sensor) continue; // a location no scale observes (RFID zones may)
        const key = locationId(shelf.id, slot.id);
        const loc = locations.get(key)!;
        const c = cal.get(key);
        const row = stock.get(key);
        const weightG = typeof row?.detail.weight_g === 'number' ? row.detail.weight_g : null;
        const tracker = new SlotTracker({
          shelfId: shelf.id,
          slotId: slot.id,
          sensor: sensorKey(slot.sensor.bus, slot.sensor.address),
          params: {
            gtin: loc.gtin ?? undefined,
            unitWeightG: loc.unitWeightG ?? undefined,
            tareG: c?.tareG ?? slot.tare_g,
            toleranceG: c?.toleranceG ?? slot.tolerance_g,
            maxLoadG: slot.max_load_g,
          },
          stability: { window: stability.window, maxSpreadG: stability.max_spread_g, unstableAlarmMs: stability.unstable_alarm_s * 1000 },
          initial: row ? { count: row.count, weightG } : undefined,
        });
        const committed: Snapshot = row
          ? { gtin: loc.gtin, count: row.count, weightG, condition: row.condition ?? tracker.condition, ts: row.updatedAt, lastKnown: true }
          : { gtin: loc.gtin, count: tracker.count, weightG: tracker.settledWeightG, condition: tracker.condition, ts: Date.now() };
        const entry: SlotEntry = { shelfId: shelf.id, slotId: slot.id, key, tracker, topics: topics.slotTopics(this.o.storeId, shelf.id, slot.id), config: slot, committed, tail: Promise.resolve() };
        this.bySensor.set(tracker.sensor, entry);
        this.bySlot.set(key, entry);
      }
    }
    // The last known state, marked as such, until the first settled reading replaces it: a slot
    // that was in mismatch before the restart must not be announced `ok` on faith.
    for (const e of this.bySlot.values()) {
      if (!stock.has(e.key)) continue;
      await this.publish(e.topics.stock, this.stockMessage(e, e.committed), true);
      await this.publish(e.topics.alert, this.alertMessage(e, e.committed), true);
    }
    events.on(this, 'availability', (a) => {
      const entry = this.bySensor.get(a.sensor);
      if (entry) for (const ev of entry.tracker.onAvailability(a.online, a.reason, a.ts)) this.record(entry, ev, performance.now());
    });
    events.on(this, 'assignmentChanged', (a) => {
      const entry = this.bySlot.get(a.locationId);
      if (!entry) return;
      const params = { ...entry.tracker.params, gtin: a.gtin ?? undefined, unitWeightG: a.unitWeightG ?? undefined };
      for (const ev of entry.tracker.setParams(params, Date.now())) this.record(entry, ev, performance.now());
      this.o.log.info({ slot: entry.key, by: a.by, gtin: a.gtin, unit_weight_g: a.unitWeightG, count: entry.tracker.count }, 'slot assignment changed');
    });
    events.on(this, 'pollRequested', (r) => this.pollShelf(r));
    for (const s of this.o.sources) s.on('reading', this.onReading);
    this.tickTimer = setInterval(() => this.tick(), 1_000);
    this.tickTimer.unref();
  }

  async stop(): Promise<void> {
    for (const s of this.o.sources) s.off('reading', this.onReading);
    this.o.events.removeOwner(this);
    if (this.tickTimer) clearInterval(this.tickTimer);
    this.tickTimer = null;
    await Promise.allSettled([...this.inflight]);
  }

  /** The committed stock of every weighed slot (for `stock.get` and the CLI). */
  snapshot(): Array<ReturnType<ShelfService['stockMessage']>> {
    return [...this.bySlot.values()].map((e) => this.stockMessage(e, e.committed));
  }

  /** Handlers of the commands declared in ./commands.ts. */
  commandHandlers() {
    return [
      // committed stock, plus the live gross weight of the last settled window (it moves with every
      // settle, not only when the count changes: the technician page shows it)
      handle(stockGet, async (p) =>
        [...this.bySlot.values()]
          .filter((e) => (p.shelf === undefined || e.shelfId === p.shelf) && (p.slot === undefined || e.slotId === p.slot))
          .map((e) => {
            const w = e.tracker.settledWeightG;
            return { ...this.stockMessage(e, e.committed), settled_weight_g: w === null ? null : Math.round(w * 10) / 10 };
          }),
      ),
      handle(calibrateTare, async (p, caller) => {
        const e = this.entry(p.shelf, p.slot);
        const tareG = tareFromWeight(this.settled(e));
        await this.o.calibration.save({ locationId: e.key, tareG });
        return this.recalibrated(e, caller.username, { ...e.tracker.params, tareG }, { tare_g: tareG });
      }),
      handle(calibrateSetUnitWeight, async (p, caller) => this.setUnitWeight(this.entry(p.shelf, p.slot), validateUnitWeight(p.grams), caller.username)),
      handle(calibrateLearn, async (p, caller) => {
        const e = this.entry(p.shelf, p.slot);
        return this.setUnitWeight(e, learnUnitWeight(this.settled(e), e.tracker.params.tareG, p.items), caller.username);
      }),
    ];
  }

  /** `pollRequested`: the polled sources of the shelf's sensors start a cycle now (each rate limits itself). */
  private pollShelf(r: PollRequested): void {
    this.stats.pollRequests++;
    const sensors = new Set<string>();
    for (const e of this.bySlot.values()) if (e.shelfId === r.shelfId) sensors.add(e.tracker.sensor);
    let started = 0;
    for (const s of this.o.sources) if (s.pollNow && s.devices.some((d) => sensors.has(d)) && s.pollNow()) started++;
    if (started === 0) this.stats.pollRequestsRefused++;
    this.o.log.debug({ shelf: r.shelfId, reason: r.reason, sources: started }, 'poll requested');
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

  private tick(): void {
    const now = Date.now();
    for (const entry of this.bySlot.values()) for (const ev of entry.tracker.tick(now)) this.record(entry, ev, performance.now());
  }

  /** Persist (outbox + stock, one batch), then publish the committed snapshot, in order per slot. */
  private record(entry: SlotEntry, ev: SlotEvent, rxMono: number): void {
    this.stats.events++;
    const { store, storeId, locations } = this.o;
    const ts = ev.ts;
    const t = entry.tracker;
    // Taken now, with the event: a newer reading may change the tracker before this commits.
    const gtin = t.params.gtin ?? null;
    const snap: Snapshot = { gtin, count: t.count, weightG: t.settledWeightG, condition: t.condition, ts };
    const payload = { store_id: storeId, shelf_id: entry.shelfId, slot_id: entry.slotId, gtin, ...eventFields(ev) };
    // A recount (after calibration) is a stock level, not a sale: central sees it as a `count` with a reason.
    const outboxKind = ev.type === 'recount' ? 'count' : ev.type;
    const priority = ev.type === 'anomaly' ? Priority.ANOMALY : ev.type === 'condition' ? Priority.CONDITION : Priority.STOCK;
    // one batch: the event and the stock it leads to commit (or fail) together
    const committed = store.together(() =>
      Promise.all([
        store.appendEvent({ deviceId: entry.key, kind: outboxKind, priority, payload, createdAt: ts }),
        locations.saveStock({ locationId: entry.key, count: snap.count, condition: snap.condition, observedBy: OBSERVER, detail: { weight_g: snap.weightG }, updatedAt: ts }),
      ]),
    );
    const chain: Promise<void> = Promise.all([committed, entry.tail])
      .then(async ([[{ seq, eventId }]]) => {
        entry.committed = snap;
        this.o.events.emit('stockCommitted', { locationId: entry.key, gtin, count: snap.count, condition: snap.condition, observedBy: OBSERVER, seq, eventId, ts });
        const tp = entry.topics;
        await this.publish(tp.event, { ...payload, seq, event_id: eventId, ts: new Date(ts).toISOString() }, false);
        if (ev.type === 'condition' || ev.type === 'anomaly') await this.publish(tp.alert, this.alertMessage(entry, snap), true);
        await this.publish(tp.stock, this.stockMessage(entry, snap), true);
        this.latency.record(performance.now() - rxMono);
      })
      .catch((e: Error) => this.persistFailed(entry.key, e))
      .finally(() => this.inflight.delete(chain));
    entry.tail = chain;
    this.inflight.add(chain);
  }

  private stockMessage(e: SlotEntry, s: Snapshot) {
    return {
      store_id: this.o.storeId,
      shelf_id: e.shelfId,
      slot_id: e.slotId,
      gtin: s.gtin,
      count: s.count,
      weight_g: s.weightG === null ? null : Math.round(s.weightG * 10) / 10,
      condition: s.condition,
      ts: new Date(s.ts).toISOString(),
      ...(s.lastKnown ? { last_known: true } : {}),
    };
  }

  private alertMessage(e: SlotEntry, s: Snapshot) {
    return {
      store_id: this.o.storeId,
      shelf_id: e.shelfId,
      slot_id: e.slotId,
      condition: s.condition,
      ts: new Date(s.ts).toISOString(),
      ...(s.lastKnown ? { last_known: true } : {}),
    };
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

  // ---- calibration ----

  private entry(shelf: string, slot: string): SlotEntry {
    const e = this.bySlot.get(locationId(shelf, slot));
    if (!e) throw new ShelfgateError(ErrorCode.NOT_FOUND, `no slot ${shelf}/${slot}`);
    return e;
  }

  private settled(e: SlotEntry): number {
    const w = e.tracker.settledWeightG;
    if (w === null) throw new ShelfgateError(ErrorCode.NOT_SETTLED, `slot ${e.key} has no settled weight yet: wait until the shelf is still`);
    return w;
  }

  /** The unit weight is the location's (what the slot holds): the assignment listener recounts. */
  private async setUnitWeight(e: SlotEntry, unitWeightG: number, username: string) {
    const before = e.tracker.count;
    await this.o.locations.assign(e.shelfId, e.slotId, { unitWeightG }, username);
    this.o.log.info({ slot: e.key, by: username, unit_weight_g: unitWeightG, count_before: before, count: e.tracker.count }, 'slot calibrated');
    return this.calibrationAnswer(e);
  }

  private recalibrated(e: SlotEntry, username: string, params: SlotEntry['tracker']['params'], delta: object) {
    const before = e.tracker.count;
    for (const ev of e.tracker.setParams({ ...params }, Date.now())) this.record(e, ev, performance.now());
    this.o.log.info({ slot: e.key, by: username, ...delta, count_before: before, count: e.tracker.count }, 'slot calibrated');
    return this.calibrationAnswer(e);
  }

  private calibrationAnswer(e: SlotEntry) {
    const p = e.tracker.params;
    return { shelf: e.shelfId, slot: e.slotId, tare_g: p.tareG, unit_weight_g: p.unitWeightG ?? null, count: e.tracker.count };
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
