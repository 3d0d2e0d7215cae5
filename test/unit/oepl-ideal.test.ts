/** idealCompletion: the simulator's theoretical minimum, on hand-computed schedules. */
import { describe, expect, it } from 'vitest';
import { idealCompletion, quantileAfter } from '../../simulators/oepl-ap/ideal';

describe('idealCompletion', () => {
  it('a free radio: every label finishes one transfer after its first check-in', () => {
    // 1,000 B at 1,000 B/s = 1 s each; check-ins 10 s apart never contend
    const r = idealCompletion([12_000, 2_000, 22_000], 1000, 1000, 40_000, 0);
    expect(r.times).toEqual([3_000, 13_000, 23_000]);
    expect(r.at(1)).toBe(23_000);
  });

  it('a busy radio: transfers queue behind each other from the first check-in on', () => {
    // 5 s each; check-ins at 1, 2, 3 s: 6, 11, 16 s
    const r = idealCompletion([3_000, 1_000, 2_000], 5000, 1000, 40_000, 0);
    expect(r.times).toEqual([6_000, 11_000, 16_000]);
  });

  it('a check-in before t0 has passed: the label takes content at its next one', () => {
    // interval 10 s, t0 = 25.5 s: 5 s -> 35 s, 24 s -> 34 s, 26 s stays
    const r = idealCompletion([5_000, 24_000, 26_000], 1000, 1000, 10_000, 25_500);
    expect(r.times).toEqual([27_000, 35_000, 36_000]);
    expect(r.at(1)).toBe(10_500);
    expect(r.at(0.5)).toBe(9_500);
  });

  it('99% of 1,000 labels is the 990th completion; a saturated radio is bytes x labels / rate', () => {
    // every label checks in within the first second, 9,472 B at 5,000 B/s
    const checkins = Array.from({ length: 1000 }, (_, i) => i);
    const r = idealCompletion(checkins, 9472, 5000, 40_000, 0);
    expect(r.at(1)).toBeCloseTo(1000 * 1894.4, 6);
    expect(r.at(0.99)).toBeCloseTo(990 * 1894.4, 6);
  });

  it('rejects a radio without throughput', () => {
    expect(() => idealCompletion([1], 10, 0, 1000, 0)).toThrow(RangeError);
  });

  it('quantileAfter: the ceil(q*n)-th earliest, relative to t0, in any input order', () => {
    expect(quantileAfter([30, 10, 20, 40], 0.5, 5)).toBe(15);
    expect(quantileAfter([30, 10, 20, 40], 0.99, 0)).toBe(40);
    expect(quantileAfter([], 0.99, 0)).toBeNaN();
  });
});
