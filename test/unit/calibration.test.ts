import { describe, expect, it } from 'vitest';
import { defaultToleranceG, learnUnitWeight, suggestTolerance, tareFromWeight, validateUnitWeight } from '../../src/features/shelves/calibration';
import { ErrorCode, isShelfgateError } from '../../src/errors';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return isShelfgateError(e) ? e.code : 'not a ShelfgateError';
  }
  return undefined;
}

describe('calibration', () => {
  it('tareFromWeight: the settled weight, rounded to 0.01 g; negative or NaN rejected', () => {
    expect(tareFromWeight(412.3456)).toBe(412.35);
    expect(Object.is(tareFromWeight(-0.001), 0)).toBe(true);
    expect(tareFromWeight(0)).toBe(0);
    expect(codeOf(() => tareFromWeight(-5))).toBe(ErrorCode.REQUEST_INVALID);
    expect(codeOf(() => tareFromWeight(NaN))).toBe(ErrorCode.REQUEST_INVALID);
    expect(codeOf(() => tareFromWeight(Infinity))).toBe(ErrorCode.REQUEST_INVALID);
  });

  it('learnUnitWeight: (settled - tare) / items', () => {
    expect(learnUnitWeight(3400, 400, 12)).toBe(250);
    expect(learnUnitWeight(1000.5, 0.5, 3)).toBe(333.33);
    expect(learnUnitWeight(650, 400, 1)).toBe(250);
  });

  it('learnUnitWeight: items must be an integer >= 1, the result > 0', () => {
    for (const items of [0, -1, 1.5, NaN, Infinity, 20_000]) expect(codeOf(() => learnUnitWeight(3400, 400, items))).toBe(ErrorCode.REQUEST_INVALID);
    expect(codeOf(() => learnUnitWeight(400, 400, 3))).toBe(ErrorCode.REQUEST_INVALID); // nothing on the tray
    expect(codeOf(() => learnUnitWeight(300, 400, 3))).toBe(ErrorCode.REQUEST_INVALID); // below tare
    expect(codeOf(() => learnUnitWeight(400.001, 400, 3))).toBe(ErrorCode.REQUEST_INVALID); // rounds to 0
    expect(codeOf(() => learnUnitWeight(NaN, 400, 3))).toBe(ErrorCode.REQUEST_INVALID);
    expect(codeOf(() => learnUnitWeight(3400, NaN, 3))).toBe(ErrorCode.REQUEST_INVALID);
  });

  it('validateUnitWeight', () => {
    expect(validateUnitWeight(250)).toBe(250);
    expect(validateUnitWeight(0.5)).toBe(0.5);
    for (const g of [0, -1, NaN, Infinity, 100_001]) expect(codeOf(() => validateUnitWeight(g))).toBe(ErrorCode.REQUEST_INVALID);
  });

  it('tolerance: 25% by default, widened for noise and item spread, capped at 45%', () => {
    expect(defaultToleranceG(250)).toBe(62.5);
    expect(suggestTolerance(250)).toEqual({ toleranceG: 62.5, countable: true });
    expect(suggestTolerance(250, { maxSpreadG: 3, unitSpreadG: 10 })).toEqual({ toleranceG: 62.5, countable: true });
    expect(suggestTolerance(250, { unitSpreadG: 40 })).toEqual({ toleranceG: 80, countable: true });
    expect(suggestTolerance(10, { maxSpreadG: 3 })).toEqual({ toleranceG: 3, countable: true });
    expect(suggestTolerance(5, { maxSpreadG: 3 })).toEqual({ toleranceG: 2.25, countable: false });
    expect(codeOf(() => suggestTolerance(0))).toBe(ErrorCode.REQUEST_INVALID);
  });
});
