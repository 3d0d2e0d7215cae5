/**
 * Slot calibration as pure functions: settled weights in, calibration values out, a
 * ShelfgateError(REQUEST_INVALID) for anything a technician must redo. No I/O: the MQTT/CLI
 * request wiring (src/shelf/service.ts) reads the settled weight and persists the result.
 */
import { ErrorCode, ShelfgateError } from '../../errors';

/** Default tolerance as a fraction of the unit weight (config: `tolerance_g`, default 25%). */
export const DEFAULT_TOLERANCE_FRACTION = 0.25;
/** Above half a unit two neighbouring counts overlap; suggestions stay below this. */
export const MAX_TOLERANCE_FRACTION = 0.45;
/** Largest unit weight accepted (100 kg): beyond any shelf load cell, so surely a typo. */
export const MAX_UNIT_WEIGHT_G = 100_000;
/** Largest number of items accepted for learning in one go. */
export const MAX_LEARN_ITEMS = 10_000;

function invalid(message: string, details?: unknown): ShelfgateError {
  return new ShelfgateError(ErrorCode.REQUEST_INVALID, message, details);
}

/** Rounds to 0.01 g: below any load cell's resolution, keeps persisted values readable. */
function round2(g: number): number {
  return Math.round(g * 100) / 100;
}

/** The default tolerance for a unit weight: 25% of it. */
export function defaultToleranceG(unitWeightG: number): number {
  return unitWeightG * DEFAULT_TOLERANCE_FRACTION;
}

/**
 * Tare of an empty slot (tray, divider) from its settled gross weight. Must be finite and >= 0
 * (the config schema's `tare_g` rule); a negative gross weight means the load cell needs zeroing.
 */
export function tareFromWeight(settledWeightG: number): number {
  if (!Number.isFinite(settledWeightG)) throw invalid(`settled weight ${settledWeightG} is not a number`);
  const tare = round2(settledWeightG);
  if (tare < 0) throw invalid(`settled weight ${tare} g is negative: zero the load cell before taring`, { weightG: tare });
  return tare + 0; // never -0
}

/** Checks a unit weight (grams per item) and returns it: finite, > 0, <= MAX_UNIT_WEIGHT_G. */
export function validateUnitWeight(g: number): number {
  if (!Number.isFinite(g)) throw invalid(`unit weight ${g} is not a number`);
  if (g <= 0) throw invalid(`unit weight ${g} g must be > 0`, { unitWeightG: g });
  if (g > MAX_UNIT_WEIGHT_G) throw invalid(`unit weight ${g} g is above ${MAX_UNIT_WEIGHT_G} g`, { unitWeightG: g });
  return g;
}

/**
 * Learns the unit weight from a settled weight with a known number of items on the slot:
 * (settled - tare) / items, rounded to 0.01 g. `items` must be an integer 1..MAX_LEARN_ITEMS and
 * the result > 0 (more items on the slot than the tare), else REQUEST_INVALID.
 */
export function learnUnitWeight(settledWeightG: number, tareG: number, items: number): number {
  if (!Number.isInteger(items) || items < 1 || items > MAX_LEARN_ITEMS)
    throw invalid(`items must be an integer from 1 to ${MAX_LEARN_ITEMS}, got ${items}`, { items });
  if (!Number.isFinite(settledWeightG)) throw invalid(`settled weight ${settledWeightG} is not a number`);
  if (!Number.isFinite(tareG)) throw invalid(`tare ${tareG} is not a number`);
  const net = settledWeightG - tareG;
  const unit = round2(net / items);
  if (!(unit > 0))
    throw invalid(`net weight ${round2(net)} g over ${items} item(s) is not positive: are the items on the slot, and is the tare right?`, {
      weightG: settledWeightG,
      tareG,
      items,
    });
  return validateUnitWeight(unit);
}

/**
 * A suggested `tolerance_g` for a unit weight: 25% of a unit, widened to the stability window's
 * noise band (`maxSpreadG`) and to twice the item-to-item spread of the product (`unitSpreadG`,
 * e.g. max - min of a few weighed items) when those are larger, but never above 45% of a unit.
 * `countable` is false when even that cap does not cover the noise and the spread: the product is
 * too light for this load cell to count reliably.
 */
export function suggestTolerance(unitWeightG: number, opts: { maxSpreadG?: number; unitSpreadG?: number } = {}): { toleranceG: number; countable: boolean } {
  validateUnitWeight(unitWeightG);
  const need = Math.max(opts.maxSpreadG ?? 0, 2 * (opts.unitSpreadG ?? 0));
  const cap = unitWeightG * MAX_TOLERANCE_FRACTION;
  const toleranceG = round2(Math.min(cap, Math.max(defaultToleranceG(unitWeightG), need)));
  return { toleranceG, countable: need <= cap };
}
