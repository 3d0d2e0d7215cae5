/**
 * The shelf model of one slot, as pure logic: weight readings in, stock events out. No I/O and no
 * timers: time comes in with each reading (`r.ts`) or an explicit `tick(nowMs)`, so every rule is
 * unit-testable and the per-reading path allocates nothing (a fixed ring buffer holds the
 * stability window; the common "no event" answer is one shared frozen empty array).
 *
 * Pipeline per reading:
 *   1. NaN/Infinity grams (without a device flag) -> ignored, `stats.invalid`.
 *   2. Device overload/underload flag -> the value is meaningless: the window is emptied; `window`
 *      flagged readings in a row -> condition overload/underload (a touch does not flap it).
 *   3. Stability window: the last `window` readings within `maxSpreadG` (max - min), and the
 *      device's own stability flag not false -> settled; settled weight = mean of the window.
 *   4. A settled weight is classified (net = settled - tare): overload (net > maxLoadG),
 *      uncalibrated (no unit weight), underload (net < -tolerance), a whole count n
 *      (|net - n * unit| <= tolerance), or mismatch (anything else: a foreign object or a
 *      misplaced item). Only a whole count changes the count.
 * The reported condition is an overlay (offline, unstable) if one is active, else the last
 * classification; every change of it is one `condition` event.
 */
import { ErrorCode, ShelfgateError } from '../../errors';
import type { WeightReading } from './types';
import { defaultToleranceG } from './calibration';

export type SlotCondition = 'ok' | 'mismatch' | 'underload' | 'overload' | 'unstable' | 'offline' | 'uncalibrated';

/** The whole count changed on a settled weight: pick (fewer items) or put (more). `delta` = count - previousCount (negative for a pick). */
export interface StockChangeEvent {
  type: 'pick' | 'put';
  delta: number;
  count: number;
  previousCount: number;
  /** Settled gross weight (g, 0.1 g). */
  weightG: number;
  ts: number;
}

/** First whole count of a slot with no known count (fresh start, no restored state): a stock count, not a sale. */
export interface CountEvent {
  type: 'count';
  count: number;
  weightG: number;
  ts: number;
}

/** The count was recomputed because the calibration changed (setParams): not a sale. */
export interface RecountEvent {
  type: 'recount';
  count: number | null;
  previousCount: number | null;
  /** The settled gross weight the count was recomputed from (g, 0.1 g), null if none yet. */
  weightG: number | null;
  ts: number;
}

/** A settled weight that is not a whole number of this product (once per entry into `mismatch`). */
export interface AnomalyEvent {
  type: 'anomaly';
  reason: 'mismatch';
  /** Measured net weight (settled - tare), g, 0.1 g. */
  netG: number;
  /** The nearest whole count, and how far the net weight is from it in units (e.g. 0.4). */
  nearestCount: number;
  offsetUnits: number;
  /** The count kept (unchanged by the anomaly). */
  count: number | null;
  weightG: number;
  ts: number;
}

export interface ConditionEvent {
  type: 'condition';
  condition: SlotCondition;
  previous: SlotCondition;
  ts: number;
  /** Human-readable cause, for the alert and the log. */
  detail: string;
}

export type SlotEvent = StockChangeEvent | CountEvent | RecountEvent | AnomalyEvent | ConditionEvent;

export interface SlotParams {
  gtin?: string;
  /** Grams per item; undefined = not calibrated (weight only, no counts). */
  unitWeightG?: number;
  /** Weight of the empty slot (tray, divider), subtracted from the reading. */
  tareG: number;
  /** Default 25% of the unit weight. */
  toleranceG?: number;
  /** Net grams above which the slot reports overload. */
  maxLoadG?: number;
}

export interface SlotStability {
  /** Readings that must agree (2..100). */
  window: number;
  /** Max - min in grams within the window. */
  maxSpreadG: number;
  /** Report `unstable` after this long without a settled reading. */
  unstableAlarmMs: number;
}

export interface SlotTrackerOptions {
  shelfId: string;
  slotId: string;
  sensor: string;
  params: SlotParams;
  stability: SlotStability;
  /** State restored after a restart (SQLite), so a restart emits no spurious count, pick or put. */
  initial?: { count: number | null; weightG: number | null };
}

/** What a settled weight classifies as (the conditions an overlay can hide). */
type Classified = 'ok' | 'mismatch' | 'underload' | 'overload' | 'uncalibrated';

const NO_EVENTS: readonly SlotEvent[] = Object.freeze([]);

const round1 = (g: number): number => Math.round(g * 10) / 10;

function invalidParams(message: string, details?: unknown): ShelfgateError {
  return new ShelfgateError(ErrorCode.REQUEST_INVALID, message, details);
}

export class SlotTracker {
  readonly shelfId: string;
  readonly slotId: string;
  readonly sensor: string;
  readonly stats = { readings: 0, invalid: 0, settled: 0 };

  private p!: SlotParams;
  private tolG = 0;
  /** Extra tolerance for staying at the current count (hysteresis against ok/mismatch flapping). */
  private keepG = 0;
  private readonly window: number;
  private readonly maxSpreadG: number;
  private readonly unstableAlarmMs: number;

  private readonly ring: Float64Array;
  private ringLen = 0;
  private ringPos = 0;
  /** Consecutive readings with the device's overload (+1..) or underload (-1..) flag. */
  private flagRun = 0;

  private _count: number | null;
  private _settledWeightG: number | null;
  /** The count has not been confirmed by a settled reading since start or since going offline. */
  private _stale: boolean;
  private classified: Classified;
  private overlay: 'offline' | 'unstable' | null = null;
  /** From availability events; an 'offline' overlay only gives way to 'unstable' once back online. */
  private online = true;
  private _condition: SlotCondition;
  /** The last valid reading settled (or was a sustained device overload/underload). */
  private quiet = false;
  /** Reference for the unstable alarm: last settled reading, first reading, or back-online time. */
  private quietSinceMs: number | null = null;
  private lastTs = 0;
  private out: SlotEvent[] | null = null;

  constructor(o: SlotTrackerOptions) {
    this.shelfId = o.shelfId;
    this.slotId = o.slotId;
    this.sensor = o.sensor;
    const { window, maxSpreadG, unstableAlarmMs } = o.stability;
    if (!Number.isInteger(window) || window < 1) throw invalidParams(`stability window must be an integer >= 1, got ${window}`);
    if (!(maxSpreadG > 0)) throw invalidParams(`stability maxSpreadG must be > 0, got ${maxSpreadG}`);
    if (!(unstableAlarmMs > 0)) throw invalidParams(`stability unstableAlarmMs must be > 0, got ${unstableAlarmMs}`);
    this.window = window;
    this.maxSpreadG = maxSpreadG;
    this.unstableAlarmMs = unstableAlarmMs;
    this.ring = new Float64Array(window);
    this.applyParams(o.params);
    const calibrated = this.p.unitWeightG !== undefined;
    const initialCount = o.initial?.count;
    this._count = calibrated && initialCount !== undefined && initialCount !== null && Number.isInteger(initialCount) && initialCount >= 0 ? initialCount : null;
    const w = o.initial?.weightG;
    this._settledWeightG = w !== undefined && w !== null && Number.isFinite(w) ? w : null;
    this._stale = true;
    this.classified = calibrated ? 'ok' : 'uncalibrated';
    this._condition = this.classified;
  }

  /** Current whole count; null until the first settled count, or when not calibrated. Kept (stale) while offline. */
  get count(): number | null {
    return this._count;
  }

  /** Mean of the last settled window (gross grams), or the restored one; null if none yet. */
  get settledWeightG(): number | null {
    return this._settledWeightG;
  }

  get condition(): SlotCondition {
    return this._condition;
  }

  /** True while the count is last-known only: since start (restored state) or going offline, until a reading settles. */
  get stale(): boolean {
    return this._stale;
  }

  get params(): Readonly<SlotParams> {
    return this.p;
  }

  /** The tolerance in use (g): `toleranceG`, or 25% of the unit weight; 0 when not calibrated and none given. */
  get toleranceG(): number {
    return this.tolG;
  }

  /** One weight reading. Returns the events it caused, usually none (a shared frozen empty array). */
  onReading(r: WeightReading): readonly SlotEvent[] {
    this.stats.readings++;
    const ts = r.ts;
    if (r.overload || r.underload) {
      this.lastTs = ts;
      this.ringLen = 0;
      this.flagRun = r.overload ? (this.flagRun > 0 ? this.flagRun + 1 : 1) : this.flagRun < 0 ? this.flagRun - 1 : -1;
      if (this.flagRun >= this.window || -this.flagRun >= this.window) {
        // A sustained device flag is a steady state, not instability.
        this.quiet = true;
        this.quietSinceMs = ts;
        this._stale = false;
        this.overlay = null;
        this.classified = r.overload ? 'overload' : 'underload';
        this.syncCondition(ts, r.overload ? 'device reports overload' : 'device reports underload');
        return this.flush();
      }
      return this.notSettled(ts);
    }
    const g = r.grams;
    if (!Number.isFinite(g)) {
      this.stats.invalid++;
      return NO_EVENTS;
    }
    this.lastTs = ts;
    this.flagRun = 0;

    const n = this.window;
    const ring = this.ring;
    ring[this.ringPos] = g;
    this.ringPos = this.ringPos + 1 === n ? 0 : this.ringPos + 1;
    if (this.ringLen < n) this.ringLen++;
    if (this.ringLen < n || r.deviceStable === false) return this.notSettled(ts);

    let min = ring[0]!;
    let max = min;
    let sum = min;
    for (let i = 1; i < n; i++) {
      const v = ring[i]!;
      if (v < min) min = v;
      else if (v > max) max = v;
      sum += v;
    }
    if (max - min > this.maxSpreadG) return this.notSettled(ts);

    this.stats.settled++;
    this.quiet = true;
    this.quietSinceMs = ts;
    this._stale = false;
    this.overlay = null;
    this._settledWeightG = sum / n;
    this.classify(this._settledWeightG, ts, false);
    return this.flush();
  }

  /** The sensor stopped (online=false) or resumed answering. */
  onAvailability(online: boolean, reason: string | undefined, ts: number): readonly SlotEvent[] {
    this.ringLen = 0;
    this.flagRun = 0;
    this.quiet = false;
    this.online = online;
    if (!online) {
      this._stale = true;
      this.quietSinceMs = null;
      if (this.overlay !== 'offline') {
        this.overlay = 'offline';
        this.syncCondition(ts, reason ? `sensor offline: ${reason}` : 'sensor offline');
      }
      return this.flush();
    }
    // Back online: the condition is recomputed on the next settled reading; the unstable alarm
    // runs from now if none comes.
    this.quietSinceMs = ts;
    return NO_EVENTS;
  }

  /** Periodic check (e.g. every second) for the unstable-too-long alarm. */
  tick(nowMs: number): readonly SlotEvent[] {
    this.checkUnstable(nowMs);
    return this.flush();
  }

  /**
   * New calibration (tare, unit weight, tolerance...). The count is recomputed from the last
   * settled weight without a pick or put (a calibration is not a sale): a `recount` event when the
   * count changes, and a `condition` event when the classification does. `nowMs` defaults to the
   * last reading's time (or the wall clock if there was none).
   */
  setParams(p: SlotParams, nowMs?: number): readonly SlotEvent[] {
    const ts = nowMs ?? (this.lastTs > 0 ? this.lastTs : Date.now());
    this.applyParams(p);
    const previous = this._count;
    if (this.p.unitWeightG === undefined) {
      this._count = null;
      this.classified = 'uncalibrated';
      this.syncCondition(ts, 'no unit weight: weight only');
      if (previous !== null) this.emitRecount(previous, ts);
      return this.flush();
    }
    if (this._settledWeightG === null) {
      if (this.classified === 'uncalibrated') {
        this.classified = 'ok';
        this.syncCondition(ts, 'calibrated');
      }
      return this.flush();
    }
    this.classify(this._settledWeightG, ts, true);
    return this.flush();
  }

  // ---- internals ----

  private applyParams(p: SlotParams): void {
    if (!Number.isFinite(p.tareG)) throw invalidParams(`tareG must be a number, got ${p.tareG}`);
    if (p.unitWeightG !== undefined && !(Number.isFinite(p.unitWeightG) && p.unitWeightG > 0))
      throw invalidParams(`unitWeightG must be > 0, got ${p.unitWeightG}`);
    if (p.toleranceG !== undefined && !(Number.isFinite(p.toleranceG) && p.toleranceG > 0))
      throw invalidParams(`toleranceG must be > 0, got ${p.toleranceG}`);
    if (p.maxLoadG !== undefined && !(p.maxLoadG > 0)) throw invalidParams(`maxLoadG must be > 0, got ${p.maxLoadG}`);
    this.p = { ...p };
    const u = p.unitWeightG;
    this.tolG = p.toleranceG ?? (u === undefined ? 0 : defaultToleranceG(u));
    // Stay at the current count up to this much beyond the tolerance: the window mean jitters by
    // at most the spread, and a weight sitting on the tolerance edge must not flap ok/mismatch.
    this.keepG = Math.min(this.maxSpreadG, this.tolG * 0.2);
  }

  /** Classifies a settled gross weight and emits what changed. */
  private classify(w: number, ts: number, calibration: boolean): void {
    const p = this.p;
    const net = w - p.tareG;
    const u = p.unitWeightG;
    const tol = this.tolG;
    let cls: Classified;
    let detail: string;
    let n = 0;
    let offset = 0;
    if (p.maxLoadG !== undefined && net > p.maxLoadG) {
      cls = 'overload';
      detail = `net ${round1(net)} g is above max load ${p.maxLoadG} g`;
    } else if (u === undefined) {
      cls = tol > 0 && net < -tol ? 'underload' : 'uncalibrated';
      detail = cls === 'underload' ? `net ${round1(net)} g is below zero by more than ${round1(tol)} g` : 'no unit weight: weight only';
    } else {
      n = Math.round(net / u) + 0; // + 0: never -0
      offset = net - n * u;
      if (net < -tol || n < 0) {
        cls = 'underload';
        detail = `net ${round1(net)} g is below zero by more than ${round1(tol)} g`;
      } else {
        const limit = this.classified === 'ok' && !this._stale && n === this._count ? tol + this.keepG : tol;
        if (Math.abs(offset) <= limit) {
          cls = 'ok';
          detail = `${n} item(s)`;
        } else {
          cls = 'mismatch';
          detail = `net ${round1(net)} g is ${(offset / u).toFixed(2)} units from ${n} item(s)`;
        }
      }
    }
    const wasMismatch = this.classified === 'mismatch';
    this.classified = cls;
    this.syncCondition(ts, detail);
    if (cls === 'mismatch' && !wasMismatch)
      this.emit({ type: 'anomaly', reason: 'mismatch', netG: round1(net), nearestCount: n, offsetUnits: Math.round((offset / u!) * 100) / 100, count: this._count, weightG: round1(w), ts });
    if (cls !== 'ok') return;
    const previous = this._count;
    if (previous === n) return;
    this._count = n;
    if (calibration) this.emitRecount(previous, ts);
    else if (previous === null) this.emit({ type: 'count', count: n, weightG: round1(w), ts });
    else this.emit({ type: n < previous ? 'pick' : 'put', delta: n - previous, count: n, previousCount: previous, weightG: round1(w), ts });
  }

  private notSettled(ts: number): readonly SlotEvent[] {
    this.quiet = false;
    if (this.quietSinceMs === null) this.quietSinceMs = ts;
    else if (ts - this.quietSinceMs > this.unstableAlarmMs) {
      this.checkUnstable(ts);
      return this.flush();
    }
    return NO_EVENTS;
  }

  private checkUnstable(nowMs: number): void {
    if (this.quiet || this.overlay === 'unstable' || (this.overlay === 'offline' && !this.online) || this.quietSinceMs === null) return;
    const forMs = nowMs - this.quietSinceMs;
    if (forMs <= this.unstableAlarmMs) return;
    this.overlay = 'unstable';
    this.syncCondition(nowMs, `no settled reading for ${(forMs / 1000).toFixed(1)} s`);
  }

  private syncCondition(ts: number, detail: string): void {
    const next: SlotCondition = this.overlay ?? this.classified;
    const previous = this._condition;
    if (next === previous) return;
    this._condition = next;
    this.emit({ type: 'condition', condition: next, previous, ts, detail });
  }

  private emitRecount(previous: number | null, ts: number): void {
    const w = this._settledWeightG;
    this.emit({ type: 'recount', count: this._count, previousCount: previous, weightG: w === null ? null : round1(w), ts });
  }

  private emit(ev: SlotEvent): void {
    (this.out ??= []).push(ev);
  }

  private flush(): readonly SlotEvent[] {
    const out = this.out;
    if (out === null) return NO_EVENTS;
    this.out = null;
    return out;
  }
}
