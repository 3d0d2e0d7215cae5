import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { Backoff, MAX_BACKOFF_MS, sleep } from '../../src/util/backoff';

const mid = () => 0.5; // jitter factor exactly 1

describe('Backoff', () => {
  it('grows by the factor from initialMs', () => {
    const b = new Backoff({ initialMs: 100, maxMs: 100_000, random: mid });
    expect([b.next(), b.next(), b.next(), b.next()]).toEqual([100, 200, 400, 800]);
    expect(b.attempt).toBe(4);
    const b3 = new Backoff({ initialMs: 10, maxMs: 100_000, factor: 3, random: mid });
    expect([b3.next(), b3.next(), b3.next()]).toEqual([10, 30, 90]);
  });

  it('stops at maxMs, jitter included', () => {
    const b = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 0.999 });
    const delays = Array.from({ length: 20 }, () => b.next());
    expect(Math.max(...delays)).toBeLessThanOrEqual(1000);
    expect(delays.at(-1)).toBe(1000);
  });

  it('keeps jitter within ±20 % by default', () => {
    const lo = new Backoff({ initialMs: 1000, maxMs: 60_000, random: () => 0 });
    const hi = new Backoff({ initialMs: 1000, maxMs: 60_000, random: () => 0.99999 });
    expect(lo.next()).toBe(800);
    expect(hi.next()).toBe(1200);
    const r = new Backoff({ initialMs: 1000, maxMs: 1000 });
    for (let i = 0; i < 1000; i++) {
      const d = r.next();
      expect(d).toBeGreaterThanOrEqual(800);
      expect(d).toBeLessThanOrEqual(1000); // capped at maxMs, jitter only spreads downwards there
    }
    const none = new Backoff({ initialMs: 500, maxMs: 10_000, jitter: 0, random: () => 0 });
    expect(none.next()).toBe(500);
  });

  it('does not overflow after 10 000 attempts (Zigbee2MQTT #32936) and clamps maxMs to 1 h', () => {
    const b = new Backoff({ initialMs: 1, maxMs: Number.MAX_SAFE_INTEGER, random: mid });
    let last = 0;
    for (let i = 0; i < 10_000; i++) {
      last = b.next();
      expect(Number.isFinite(last)).toBe(true);
      expect(last).toBeGreaterThanOrEqual(1);
      expect(last).toBeLessThanOrEqual(MAX_BACKOFF_MS);
    }
    expect(last).toBe(MAX_BACKOFF_MS);
    expect(MAX_BACKOFF_MS).toBeLessThan(2 ** 31 - 1);
    expect(b.attempt).toBe(10_000);
  });

  it('reset() starts over from initialMs', () => {
    const b = new Backoff({ initialMs: 50, maxMs: 5000, random: mid });
    for (let i = 0; i < 10; i++) b.next();
    b.reset();
    expect(b.attempt).toBe(0);
    expect(b.next()).toBe(50);
  });

  it('rejects nonsense options', () => {
    expect(() => new Backoff({ initialMs: 0, maxMs: 10 })).toThrow(RangeError);
    expect(() => new Backoff({ initialMs: Number.NaN, maxMs: 10 })).toThrow(RangeError);
    expect(() => new Backoff({ initialMs: 10, maxMs: 100, factor: 0.5 })).toThrow(RangeError);
    expect(() => new Backoff({ initialMs: 10, maxMs: 100, jitter: 2 })).toThrow(RangeError);
  });
});

describe('sleep', () => {
  it('waits about ms', async () => {
    const t = Date.now();
    await sleep(30); // the function under test, not a wait for the test
    expect(Date.now() - t).toBeGreaterThanOrEqual(25);
  });

  it('returns early on abort and leaves no listener behind', async () => {
    const ac = new AbortController();
    const t = Date.now();
    const p = sleep(10_000, ac.signal);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(1);
    setTimeout(() => ac.abort(), 10); // the abort comes while the sleep is pending; `await p` is its outcome
    await p;
    expect(Date.now() - t).toBeLessThan(1000);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    await sleep(10_000, ac.signal); // already aborted: immediate
  });
});
