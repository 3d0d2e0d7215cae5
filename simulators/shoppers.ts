/**
 * Shoppers acting on simulated slots: random (picks 1-3 items, sometimes puts one back, now and
 * then leaves a foreign object for a while; a clerk restocks a slot that runs low) or scripted
 * from a list of steps. Deterministic: `advance(nowMs)` applies every action due up to `nowMs`
 * with its own scheduled time, drawing from the injected RNG; `start()` only drives advance()
 * from a timer. Every applied action is reported through `onAction`.
 */
import { mulberry32, randomInt, type LoadCellPhysics, type Rng } from './physics';

export interface ShopperSlot {
  /** Shown in the log, e.g. `g1-s2/s3` or `modbus:3`. */
  id: string;
  /** The product on the slot, for the log. */
  gtin?: string;
  physics: LoadCellPhysics;
  /** Items after a restock. Default: the items on the slot when the script is built (at least 1). */
  capacity?: number;
}

export type ShopperActionKind = 'pick' | 'put' | 'foreign' | 'clear' | 'restock';

export interface ShopperAction {
  atMs: number;
  slot: string;
  gtin?: string;
  action: ShopperActionKind;
  /** Items picked, put or restocked; grams for a foreign object; 0 for clear. */
  n: number;
}

export interface ScriptStep {
  /** Ms after the script's start (the first advance() or start()). */
  atMs: number;
  slot: string;
  action: 'pick' | 'put' | 'foreign' | 'clear';
  /** Items for pick/put (default 1), grams for foreign (default 100). */
  n?: number;
}

export interface ShopperScriptOptions {
  slots: ShopperSlot[];
  /** Scripted mode when given: exactly these steps, nothing random. */
  steps?: ScriptStep[];
  rng?: Rng;
  /** Random mode: mean time between shopper visits, ms (uniform 0.5x-1.5x). Default 5000. */
  meanIntervalMs?: number;
  /** Random mode: chance a shopper puts one item back a moment later. Default 0.15. */
  putBackChance?: number;
  /** Random mode: chance a visit leaves a foreign object (20-300 g) for 2-10 s. Default 0.05. */
  foreignChance?: number;
  /** Random mode: a slot at or below this many items gets restocked 5-20 s later. Default 2. */
  lowWater?: number;
  onAction?: (a: ShopperAction) => void;
  /** Time source for start(). Default Date.now. */
  clock?: () => number;
}

interface Pending {
  atMs: number;
  slot: ShopperSlot;
  action: ShopperActionKind;
  n: number;
}

/** `shopper picked 2 x 04717276945640 from g1-s2/s3` */
export function describeAction(a: ShopperAction): string {
  const what = (n: number): string => (a.gtin ? `${n} x ${a.gtin}` : `${n} item${n === 1 ? '' : 's'}`);
  switch (a.action) {
    case 'pick':
      return `shopper picked ${what(a.n)} from ${a.slot}`;
    case 'put':
      return `shopper put ${what(a.n)} back on ${a.slot}`;
    case 'foreign':
      return `shopper left a foreign object of ${a.n} g on ${a.slot}`;
    case 'clear':
      return `foreign object removed from ${a.slot}`;
    case 'restock':
      return `clerk restocked ${a.slot} with ${what(a.n)}`;
  }
}

export class ShopperScript {
  private readonly slots: ShopperSlot[];
  private readonly byId = new Map<string, ShopperSlot>();
  private readonly capacity = new Map<ShopperSlot, number>();
  private readonly rng: Rng;
  private readonly scripted: boolean;
  private readonly opts: ShopperScriptOptions;
  private readonly clock: () => number;
  private startMs: number | undefined;
  private nextVisitMs = Infinity;
  private pending: Pending[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(opts: ShopperScriptOptions) {
    if (opts.slots.length === 0) throw new RangeError('ShopperScript needs at least one slot');
    this.opts = opts;
    this.slots = opts.slots;
    for (const s of opts.slots) {
      if (this.byId.has(s.id)) throw new RangeError(`duplicate slot id ${s.id}`);
      this.byId.set(s.id, s);
      this.capacity.set(s, Math.max(1, s.capacity ?? s.physics.items));
    }
    this.rng = opts.rng ?? mulberry32(4);
    this.clock = opts.clock ?? Date.now;
    this.scripted = opts.steps !== undefined;
    for (const step of opts.steps ?? []) {
      if (!this.byId.has(step.slot)) throw new RangeError(`script step at ${step.atMs} ms names unknown slot ${step.slot}`);
    }
  }

  /** Applies every action due up to `nowMs` (the first call sets the start time). Returns them. */
  advance(nowMs: number): ShopperAction[] {
    if (this.startMs === undefined) this.begin(nowMs);
    const done: ShopperAction[] = [];
    for (;;) {
      const next = this.pending[0];
      const t = Math.min(next?.atMs ?? Infinity, this.nextVisitMs);
      if (t > nowMs) break;
      if (next && next.atMs <= this.nextVisitMs) {
        this.pending.shift();
        const a = this.apply(next);
        if (a) done.push(a);
      } else {
        this.visit(this.nextVisitMs, done);
        this.nextVisitMs += this.interval();
      }
    }
    return done;
  }

  /** Drives advance() from a timer every `tickMs` (default 50). */
  start(tickMs = 50): void {
    if (this.timer) return;
    this.advance(this.clock());
    this.timer = setInterval(() => this.advance(this.clock()), tickMs);
    this.timer.unref?.();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private begin(nowMs: number): void {
    this.startMs = nowMs;
    if (this.scripted) {
      this.pending = (this.opts.steps ?? [])
        .map((s, i) => ({ i, p: { atMs: nowMs + s.atMs, slot: this.byId.get(s.slot)!, action: s.action, n: s.n ?? (s.action === 'foreign' ? 100 : s.action === 'clear' ? 0 : 1) } }))
        .sort((a, b) => a.p.atMs - b.p.atMs || a.i - b.i)
        .map((x) => x.p);
    } else {
      this.nextVisitMs = nowMs + this.interval();
    }
  }

  private interval(): number {
    const mean = this.opts.meanIntervalMs ?? 5000;
    return Math.max(1, Math.round(mean * (0.5 + this.rng())));
  }

  /** A random shopper at one slot. */
  private visit(atMs: number, done: ShopperAction[]): void {
    const slot = this.slots[randomInt(this.rng, 0, this.slots.length - 1)]!;
    const picked = this.apply({ atMs, slot, action: 'pick', n: randomInt(this.rng, 1, 3) });
    if (picked) done.push(picked);
    if (picked && this.rng() < (this.opts.putBackChance ?? 0.15)) this.schedule({ atMs: atMs + randomInt(this.rng, 500, 3000), slot, action: 'put', n: 1 });
    if (this.rng() < (this.opts.foreignChance ?? 0.05)) {
      const leftAt = atMs + randomInt(this.rng, 200, 1000);
      this.schedule({ atMs: leftAt, slot, action: 'foreign', n: randomInt(this.rng, 20, 300) });
      this.schedule({ atMs: leftAt + randomInt(this.rng, 2000, 10_000), slot, action: 'clear', n: 0 });
    }
    const low = this.opts.lowWater ?? 2;
    if (slot.physics.items <= low && !this.pending.some((p) => p.slot === slot && p.action === 'restock')) {
      this.schedule({ atMs: atMs + randomInt(this.rng, 5000, 20_000), slot, action: 'restock', n: 0 });
    }
  }

  private schedule(p: Pending): void {
    let i = this.pending.length;
    while (i > 0 && this.pending[i - 1]!.atMs > p.atMs) i--;
    this.pending.splice(i, 0, p);
  }

  /** Applies one action to the physics; null when it changed nothing (picking from an empty slot). */
  private apply(p: Pending): ShopperAction | null {
    const ph = p.slot.physics;
    let n = p.n;
    switch (p.action) {
      case 'pick':
        n = ph.pick(p.n, p.atMs);
        if (n === 0) return null;
        break;
      case 'put':
        ph.put(p.n, p.atMs);
        break;
      case 'foreign':
        ph.placeForeign(p.n, p.atMs);
        break;
      case 'clear':
        if (ph.foreignG === 0) return null;
        ph.removeForeign(p.atMs);
        break;
      case 'restock': {
        n = this.capacity.get(p.slot)! - ph.items;
        if (n <= 0) return null;
        ph.setItems(ph.items + n, p.atMs);
        break;
      }
    }
    const a: ShopperAction = { atMs: p.atMs, slot: p.slot.id, action: p.action, n, ...(p.slot.gtin ? { gtin: p.slot.gtin } : {}) };
    this.opts.onAction?.(a);
    return a;
  }
}
