import { describe, expect, it } from 'vitest';
import { LoadCellPhysics, gaussian, mulberry32 } from '../../simulators/physics';
import { ShopperScript, describeAction, type ShopperAction } from '../../simulators/shoppers';

const quiet = { noiseSigmaG: 0, driftGPerHour: 0, driftSigmaGPerSqrtHour: 0 };

describe('mulberry32 and gaussian', () => {
  it('is deterministic per seed and uniform-ish in [0, 1)', () => {
    const a = mulberry32(42);
    const b = mulberry32(42);
    const xs = Array.from({ length: 1000 }, () => a());
    expect(xs).toEqual(Array.from({ length: 1000 }, () => b()));
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
    expect(xs.reduce((s, x) => s + x, 0) / xs.length).toBeCloseTo(0.5, 1);
    expect(mulberry32(43)()).not.toBe(mulberry32(42)());
  });

  it('gaussian has mean 0 and sd 1', () => {
    const rng = mulberry32(7);
    const xs = Array.from({ length: 20000 }, () => gaussian(rng));
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    const sd = Math.sqrt(xs.reduce((s, x) => s + (x - mean) ** 2, 0) / xs.length);
    expect(Math.abs(mean)).toBeLessThan(0.03);
    expect(sd).toBeGreaterThan(0.97);
    expect(sd).toBeLessThan(1.03);
  });
});

describe('LoadCellPhysics', () => {
  it('weighs items * unit weight + tray, stable at the start', () => {
    const p = new LoadCellPhysics({ unitWeightG: 250, items: 12, tareG: 80, ...quiet });
    expect(p.read(0)).toEqual({ grams: 3080, stable: true, overload: false, gross: 3080 });
  });

  it('settles exponentially with an overshoot after a pick, unstable until settleMs', () => {
    const p = new LoadCellPhysics({ unitWeightG: 100, items: 10, ...quiet, settleMs: 400 });
    p.read(0);
    expect(p.pick(2, 1000)).toBe(2);
    const at = (t: number): { grams: number; stable: boolean } => p.read(1000 + t);
    expect(at(0).grams).toBeCloseTo(1000, 6); // starts where it was
    expect(at(0).stable).toBe(false);
    // swings past the target (800) on the way: the wobble
    const samples = Array.from({ length: 40 }, (_, i) => at(i * 10));
    expect(Math.min(...samples.map((s) => s.grams))).toBeLessThan(800 - 5);
    expect(samples.every((s) => !s.stable)).toBe(true);
    // the envelope decays: late samples are close to the target
    expect(Math.abs(at(300).grams - 800)).toBeLessThan(Math.abs(at(20).grams - 800) + 1e-9);
    expect(Math.abs(at(399).grams - 800)).toBeLessThan(2);
    expect(at(400)).toMatchObject({ grams: 800, stable: true });
    expect(at(5000)).toMatchObject({ grams: 800, stable: true });
  });

  it('a second change while settling starts from where the reading is', () => {
    const p = new LoadCellPhysics({ unitWeightG: 100, items: 10, ...quiet, settleMs: 400 });
    p.pick(1, 0);
    const mid = p.read(100).grams;
    p.put(1, 100);
    expect(p.read(100).grams).toBeCloseTo(mid, 6);
    expect(p.read(499).stable).toBe(false);
    expect(p.read(500)).toMatchObject({ grams: 1000, stable: true });
  });

  it('noise stays within bounds and has the configured sigma', () => {
    const p = new LoadCellPhysics({ unitWeightG: 100, items: 5, noiseSigmaG: 0.5, driftGPerHour: 0, driftSigmaGPerSqrtHour: 0, rng: mulberry32(9) });
    const xs = Array.from({ length: 5000 }, (_, i) => p.read(i).grams - 500);
    expect(Math.max(...xs.map(Math.abs))).toBeLessThan(0.5 * 5);
    const sd = Math.sqrt(xs.reduce((s, x) => s + x * x, 0) / xs.length);
    expect(sd).toBeGreaterThan(0.45);
    expect(sd).toBeLessThan(0.55);
  });

  it('is reproducible with the same seed and call sequence', () => {
    const run = (): number[] => {
      const p = new LoadCellPhysics({ unitWeightG: 100, items: 5, rng: mulberry32(5) });
      const out: number[] = [];
      for (let t = 0; t < 50; t++) {
        if (t === 10) p.pick(2, t * 100);
        out.push(p.read(t * 100).grams);
      }
      return out;
    };
    expect(run()).toEqual(run());
  });

  it('drifts slowly (+0.5 g/h by default) and a tare removes it', () => {
    const hour = 3_600_000;
    const p = new LoadCellPhysics({ unitWeightG: 100, items: 0, noiseSigmaG: 0, driftSigmaGPerSqrtHour: 0 });
    expect(p.read(0).grams).toBe(0);
    expect(p.read(10 * hour).grams).toBeCloseTo(5, 6);
    expect(p.tare(10 * hour)).toBeCloseTo(5, 6);
    expect(p.read(10 * hour).grams).toBeCloseTo(0, 6);
    expect(p.read(12 * hour).grams).toBeCloseTo(1, 6); // keeps drifting from there

    // with the random walk on, the drift wanders around the trend
    const w = new LoadCellPhysics({ unitWeightG: 1, noiseSigmaG: 0, rng: mulberry32(3) });
    w.read(0);
    for (let h = 1; h <= 10; h++) w.read(h * hour);
    expect(Math.abs(w.driftG - 5)).toBeLessThan(0.5 * Math.sqrt(10) * 4);
  });

  it('tare (T/Z) makes the device subtract the present load', () => {
    const p = new LoadCellPhysics({ unitWeightG: 200, items: 3, tareG: 50, ...quiet });
    expect(p.tare(0)).toBe(650);
    expect(p.read(0)).toMatchObject({ grams: 0, gross: 650 });
    p.pick(1, 0);
    expect(p.read(1000)).toMatchObject({ grams: -200, gross: 450, stable: true });
  });

  it('pick never goes below zero items; put adds back', () => {
    const p = new LoadCellPhysics({ unitWeightG: 100, items: 2, ...quiet });
    expect(p.pick(3, 0)).toBe(2);
    expect(p.items).toBe(0);
    expect(p.pick(1, 10)).toBe(0);
    p.put(1, 20);
    expect(p.items).toBe(1);
    expect(p.read(1000).grams).toBe(100);
  });

  it('a foreign object adds its weight until removed', () => {
    const p = new LoadCellPhysics({ unitWeightG: 100, items: 4, ...quiet });
    p.placeForeign(37, 0);
    expect(p.foreignG).toBe(37);
    expect(p.read(100).stable).toBe(false);
    expect(p.read(1000).grams).toBe(437);
    p.removeForeign(1000);
    expect(p.read(2000).grams).toBe(400);
  });

  it('reports overload when forced or above capacity', () => {
    const p = new LoadCellPhysics({ unitWeightG: 100, items: 4, capacityG: 1000, ...quiet });
    expect(p.read(0).overload).toBe(false);
    p.setOverload(true);
    expect(p.read(0).overload).toBe(true);
    p.setOverload(false);
    p.put(7, 0);
    expect(p.read(1000).overload).toBe(true);
  });
});

describe('ShopperScript', () => {
  it('applies scripted steps at their times and reports them', () => {
    const a = new LoadCellPhysics({ unitWeightG: 250, items: 5, ...quiet });
    const b = new LoadCellPhysics({ unitWeightG: 100, items: 5, ...quiet });
    const seen: string[] = [];
    const s = new ShopperScript({
      slots: [
        { id: 'g1-s2/s3', gtin: '04717276945640', physics: a },
        { id: 'g1-s2/s4', physics: b },
      ],
      steps: [
        { atMs: 1000, slot: 'g1-s2/s3', action: 'pick', n: 2 },
        { atMs: 500, slot: 'g1-s2/s4', action: 'foreign', n: 40 },
        { atMs: 3000, slot: 'g1-s2/s4', action: 'clear' },
        { atMs: 4000, slot: 'g1-s2/s3', action: 'put', n: 1 },
      ],
      onAction: (x) => seen.push(describeAction(x)),
    });
    expect(s.advance(10_000)).toEqual([]); // sets the start
    expect(s.advance(10_999).map((x) => x.action)).toEqual(['foreign']);
    const acts = s.advance(13_500);
    expect(acts).toEqual<ShopperAction[]>([
      { atMs: 11_000, slot: 'g1-s2/s3', gtin: '04717276945640', action: 'pick', n: 2 },
      { atMs: 13_000, slot: 'g1-s2/s4', action: 'clear', n: 0 },
    ]);
    s.advance(20_000);
    expect(seen).toEqual([
      'shopper left a foreign object of 40 g on g1-s2/s4',
      'shopper picked 2 x 04717276945640 from g1-s2/s3',
      'foreign object removed from g1-s2/s4',
      'shopper put 1 x 04717276945640 back on g1-s2/s3',
    ]);
    expect(a.items).toBe(4);
    expect(a.read(20_000).grams).toBe(1000);
  });

  it('random shoppers pick 1-3, restock low slots, and are reproducible', () => {
    const run = (): { log: ShopperAction[]; items: number[] } => {
      const slots = [0, 1, 2].map((i) => ({ id: `s${i}`, physics: new LoadCellPhysics({ unitWeightG: 100, items: 6, ...quiet }) }));
      const log: ShopperAction[] = [];
      const s = new ShopperScript({ slots, rng: mulberry32(11), meanIntervalMs: 1000, foreignChance: 0.2, onAction: (a) => log.push(a) });
      for (let t = 0; t <= 600_000; t += 250) s.advance(t);
      return { log, items: slots.map((x) => x.physics.items) };
    };
    const r = run();
    expect(r).toEqual(run());
    const picks = r.log.filter((a) => a.action === 'pick');
    expect(picks.length).toBeGreaterThan(100);
    expect(picks.every((a) => a.n >= 1 && a.n <= 3)).toBe(true);
    expect(r.log.some((a) => a.action === 'restock')).toBe(true);
    expect(r.log.some((a) => a.action === 'put')).toBe(true);
    expect(r.log.some((a) => a.action === 'foreign')).toBe(true);
    const foreigns = r.log.filter((a) => a.action === 'foreign').length;
    const clears = r.log.filter((a) => a.action === 'clear').length;
    expect(clears).toBeGreaterThanOrEqual(1); // every foreign object is taken away again (overlapping ones at once)
    expect(clears).toBeLessThanOrEqual(foreigns);
    expect(r.items.every((n) => n >= 0 && n <= 7)).toBe(true); // a put-back may land on a just-restocked slot
    // times never go backwards
    for (let i = 1; i < r.log.length; i++) expect(r.log[i]!.atMs).toBeGreaterThanOrEqual(r.log[i - 1]!.atMs);
  });
});
