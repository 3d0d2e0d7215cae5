/**
 * The simulator's theoretical minimum: the earliest time each label of one access point can have
 * received its content, if ALL content were queued at the AP at `t0`, under the simulator's own
 * radio rules (simulator.ts):
 *
 * - a label takes content only at a check-in: its check-ins are fixed (phase + n x checkinMs);
 * - at a check-in with content queued and nothing on the radio for it, the transfer is put on the
 *   AP's one radio: it starts when the radio is free (the label waits awake) and takes
 *   bytes / rateBps; transfers are serial.
 *
 * So every label can start at its first check-in at or after `t0`, and the radio carries one
 * transfer after another. All transfers take the same time, so serving them in check-in order
 * (what the simulator does) gives the earliest k-th completion for every k: no gateway schedule can
 * beat these times, only match them (it matches them if it has every label's content at the AP
 * before the label's first check-in after t0, or at least before the radio would reach it).
 *
 * Pure; times in the AP's virtual ms.
 */

export interface IdealCompletion {
  /** Completion time of every label, ascending (virtual ms, absolute). */
  times: number[];
  /** When `q` of the labels (0 < q <= 1) have received their content, relative to t0 (ms). */
  at(q: number): number;
}

/**
 * @param checkins each label's next check-in as the simulator has it scheduled (SimLabel.nextCheckin);
 *   one earlier than t0 is rolled forward by whole intervals (that check-in has passed: the label
 *   takes nothing before its next one)
 * @param bytes radio bytes per content
 * @param rateBps the AP's radio throughput
 * @param checkinMs the labels' check-in interval
 * @param t0 the moment all content is queued at the AP
 */
export function idealCompletion(checkins: readonly number[], bytes: number, rateBps: number, checkinMs: number, t0: number): IdealCompletion {
  if (!(rateBps > 0) || !(checkinMs > 0) || !(bytes >= 0)) throw new RangeError('rateBps and checkinMs must be > 0, bytes >= 0');
  const first = checkins.map((c) => (c >= t0 ? c : c + Math.ceil((t0 - c) / checkinMs) * checkinMs)).sort((a, b) => a - b);
  const each = (bytes * 1000) / rateBps;
  const times: number[] = [];
  let radioFree = t0;
  for (const c of first) {
    radioFree = Math.max(c, radioFree) + each;
    times.push(radioFree);
  }
  return { times, at: (q) => quantileAfter(times, q, t0) };
}

/**
 * When `q` of the events (times ascending or not) have happened, relative to t0: the ceil(q*n)-th
 * earliest (the 99% time of 1,000 labels is the 990th). NaN when there are none.
 */
export function quantileAfter(times: readonly number[], q: number, t0: number): number {
  if (times.length === 0) return Number.NaN;
  const sorted = [...times].sort((a, b) => a - b);
  const k = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length - 1e-9)));
  return sorted[k - 1]! - t0;
}
