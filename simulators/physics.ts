/**
 * A simulated weighed slot: the physics under every load-cell simulator (MT-SICS scale, Modbus
 * transmitter). Pure and deterministic: time is injected (`nowMs`, or the `clock` option) and all
 * randomness comes from an injected RNG, so a seed reproduces a whole run.
 *
 * Model, in grams:
 *   gross  = items * unitWeightG + tareG + foreign + drift
 *   shown  = gross - deviceTare, settling towards that value after every change, plus noise
 * - `tareG` is the dead load on the platform (tray, divider), not subtracted by the device;
 *   the gateway's slot configuration subtracts it.
 * - `deviceTare` is what the device itself subtracts after `tare()` (a real scale's T/Z): it is
 *   set to the settled gross at that moment, which also removes the drift accumulated so far.
 * - After a change the shown value settles exponentially over `settleMs` with an overshoot wobble
 *   (a damped oscillation); while settling the device reports unstable.
 * - Drift is a random walk with a trend (`driftGPerHour`, default +0.5 g/h) and a spread
 *   (`driftSigmaGPerSqrtHour`, default 0.5), advanced on every read.
 */

/** Uniform in [0, 1). */
export type Rng = () => number;

/** mulberry32: a tiny seeded PRNG, good enough for simulations (not for anything secret). */
export function mulberry32(seed: number): Rng {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A standard normal deviate (Box-Muller) from a uniform RNG. */
export function gaussian(rng: Rng): number {
  let u = rng();
  while (u <= Number.MIN_VALUE) u = rng();
  const v = rng();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/** Integer in [min, max] from a uniform RNG. */
export function randomInt(rng: Rng, min: number, max: number): number {
  return min + Math.floor(rng() * (max - min + 1));
}

/** A new independent RNG seeded from another (to give each slot its own stream). */
export function forkRng(rng: Rng): Rng {
  return mulberry32(Math.floor(rng() * 0x100000000));
}

export interface LoadCellPhysicsOptions {
  /** Weight of one item, grams. */
  unitWeightG: number;
  /** Items on the slot at the start. Default 0. */
  items?: number;
  /** Dead load on the platform (tray), grams, included in the reading. Default 0. */
  tareG?: number;
  /** Standard deviation of the reading noise, grams. Default 0.5. */
  noiseSigmaG?: number;
  /** Time to settle after a change, ms; unstable until then. Default 400. */
  settleMs?: number;
  /** Drift trend, grams per hour. Default 0.5. */
  driftGPerHour?: number;
  /** Drift random-walk spread, grams per sqrt(hour). Default 0.5. */
  driftSigmaGPerSqrtHour?: number;
  /** Gross above this reports overload (as well as setOverload(true)). Default: never. */
  capacityG?: number;
  /** Randomness; default mulberry32(1). */
  rng?: Rng;
  /** Time source for pick/put/... when no time is passed. Default Date.now. */
  clock?: () => number;
}

export interface LoadCellReadout {
  /** What the device shows: gross - device tare, settling, with noise. */
  grams: number;
  stable: boolean;
  overload: boolean;
  /** The gross weight (shown grams + device tare). */
  gross: number;
}

export class LoadCellPhysics {
  readonly unitWeightG: number;
  readonly tareG: number;
  readonly noiseSigmaG: number;
  readonly settleMs: number;
  private readonly driftRate: number;
  private readonly driftSigma: number;
  private readonly capacityG: number | undefined;
  private readonly rng: Rng;
  private readonly clock: () => number;

  private itemCount: number;
  private foreign = 0;
  private drift = 0;
  private driftAtMs: number | undefined;
  private deviceTare = 0;
  private forcedOverload = false;
  /** Noiseless shown value when the last change began, and when it began. */
  private fromG: number;
  private changeAtMs = -Infinity;

  constructor(opts: LoadCellPhysicsOptions) {
    const nonNegative = (name: string, v: number): number => {
      if (!Number.isFinite(v) || v < 0) throw new RangeError(`${name} must be a finite number >= 0, got ${v}`);
      return v;
    };
    this.unitWeightG = nonNegative('unitWeightG', opts.unitWeightG);
    this.itemCount = nonNegative('items', opts.items ?? 0);
    if (!Number.isInteger(this.itemCount)) throw new RangeError(`items must be an integer, got ${this.itemCount}`);
    this.tareG = opts.tareG ?? 0;
    if (!Number.isFinite(this.tareG)) throw new RangeError(`tareG must be finite, got ${this.tareG}`);
    this.noiseSigmaG = nonNegative('noiseSigmaG', opts.noiseSigmaG ?? 0.5);
    this.settleMs = nonNegative('settleMs', opts.settleMs ?? 400);
    this.driftRate = opts.driftGPerHour ?? 0.5;
    if (!Number.isFinite(this.driftRate)) throw new RangeError(`driftGPerHour must be finite, got ${this.driftRate}`);
    this.driftSigma = nonNegative('driftSigmaGPerSqrtHour', opts.driftSigmaGPerSqrtHour ?? 0.5);
    this.capacityG = opts.capacityG;
    this.rng = opts.rng ?? mulberry32(1);
    this.clock = opts.clock ?? Date.now;
    this.fromG = this.targetG();
  }

  /** Items on the slot now. */
  get items(): number {
    return this.itemCount;
  }

  /** Weight of the foreign objects on the slot, grams (0: none). */
  get foreignG(): number {
    return this.foreign;
  }

  /** What the device subtracts since the last tare(), grams. */
  get deviceTareG(): number {
    return this.deviceTare;
  }

  /** Accumulated drift, grams (as of the last read or change). */
  get driftG(): number {
    return this.drift;
  }

  /** Takes up to n items (never below zero); returns how many were taken. */
  pick(n: number, atMs: number = this.clock()): number {
    const taken = Math.min(this.itemCount, Math.max(0, Math.floor(n)));
    if (taken > 0) this.change(atMs, () => (this.itemCount -= taken));
    return taken;
  }

  /** Puts n items (back) on the slot. */
  put(n: number, atMs: number = this.clock()): void {
    const k = Math.max(0, Math.floor(n));
    if (k > 0) this.change(atMs, () => (this.itemCount += k));
  }

  /** Sets the item count (a restock). */
  setItems(n: number, atMs: number = this.clock()): void {
    const k = Math.max(0, Math.floor(n));
    if (k !== this.itemCount) this.change(atMs, () => (this.itemCount = k));
  }

  /** A foreign object (or misplaced item) of `grams` is put on the slot, on top of any already there. */
  placeForeign(grams: number, atMs: number = this.clock()): void {
    if (!Number.isFinite(grams)) throw new RangeError(`grams must be finite, got ${grams}`);
    if (grams !== 0) this.change(atMs, () => (this.foreign += grams));
  }

  /** Removes every foreign object. */
  removeForeign(atMs: number = this.clock()): void {
    if (this.foreign !== 0) this.change(atMs, () => (this.foreign = 0));
  }

  /** Forces the overload flag (a crushed or overloaded cell), or releases it. */
  setOverload(on: boolean): void {
    this.forcedOverload = on;
  }

  /**
   * Zeroes the device-side tare like a real scale's T/Z: the device subtracts the settled gross
   * from now on (which also removes the drift so far). Returns the new device tare, grams.
   */
  tare(atMs: number = this.clock()): number {
    this.advanceDrift(atMs);
    const delta = this.targetG();
    this.deviceTare += delta;
    // The whole shown curve moves down by delta: a settling still in progress goes on around zero.
    this.fromG -= delta;
    return this.deviceTare;
  }

  /** The reading at `nowMs`. Draws noise (and drift) from the RNG: call order matters for reproducibility. */
  read(nowMs: number = this.clock()): LoadCellReadout {
    this.advanceDrift(nowMs);
    const shown = this.shownAt(nowMs);
    const noise = this.noiseSigmaG > 0 ? gaussian(this.rng) * this.noiseSigmaG : 0;
    const grams = shown + noise;
    const overload = this.forcedOverload || (this.capacityG !== undefined && this.grossG() > this.capacityG);
    return { grams, stable: this.isStable(nowMs), overload, gross: grams + this.deviceTare };
  }

  /** Whether the reading is settled at `nowMs` (draws nothing from the RNG). */
  isStable(nowMs: number = this.clock()): boolean {
    return nowMs - this.changeAtMs >= this.settleMs;
  }

  /** Settled gross, grams (no noise). */
  private grossG(): number {
    return this.itemCount * this.unitWeightG + this.tareG + this.foreign + this.drift;
  }

  /** Settled shown value, grams (no noise). */
  private targetG(): number {
    return this.grossG() - this.deviceTare;
  }

  /**
   * Noiseless shown value: target + (from - target) * e^(-dt/tau) * cos(2*pi*dt/period), with
   * tau = settleMs/5 (0.7 % left after settleMs) and period = settleMs/2: it starts at `from`,
   * swings past the target (the overshoot wobble) and dies out.
   */
  private shownAt(nowMs: number): number {
    const target = this.targetG();
    const dt = nowMs - this.changeAtMs;
    if (this.settleMs === 0 || !(dt < this.settleMs)) return target;
    const t = Math.max(0, dt);
    const tau = this.settleMs / 5;
    const period = this.settleMs / 2;
    return target + (this.fromG - target) * Math.exp(-t / tau) * Math.cos((2 * Math.PI * t) / period);
  }

  private change(atMs: number, apply: () => void): void {
    this.advanceDrift(atMs);
    const shownNow = this.shownAt(atMs);
    apply();
    this.fromG = shownNow;
    this.changeAtMs = atMs;
  }

  private advanceDrift(nowMs: number): void {
    if (this.driftAtMs === undefined) {
      this.driftAtMs = nowMs;
      return;
    }
    const dtH = (nowMs - this.driftAtMs) / 3_600_000;
    if (dtH <= 0) return;
    this.driftAtMs = nowMs;
    this.drift += this.driftRate * dtH;
    if (this.driftSigma > 0) this.drift += gaussian(this.rng) * this.driftSigma * Math.sqrt(dtH);
  }
}
