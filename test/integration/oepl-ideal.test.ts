/**
 * idealCompletion against the AP simulator itself, over real HTTP on 127.0.0.1: when every content
 * is at the AP before its label's first check-in, the simulator delivers exactly at the ideal times
 * (so the function is the simulator's schedule, not an approximation of it).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { OeplApSimulator } from '../../simulators/oepl-ap/simulator';
import { idealCompletion } from '../../simulators/oepl-ap/ideal';
import { waitFor } from '../helpers/wait';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('idealCompletion and the simulator', () => {
  it('content queued before every check-in is delivered at the ideal times', { timeout: 60_000 }, async () => {
    // fast mode: 4,000 s virtual check-in interval = 4 s real; one transfer = 100 s virtual, so they contend
    const checkinMs = 4_000_000;
    const ap = new OeplApSimulator({ labels: 40, seed: 7, checkinMs, rateBps: 100, transferBytes: 10_000, timeScale: 1000, xferTimeoutMs: 100 * checkinMs });
    await ap.start();
    cleanups.push(() => ap.stop());
    // labels whose first check-in is at least a quarter interval (1 s real) away: the uploads land before it
    const now = ap.now();
    const macs = ap.macs.filter((m) => ap.label(m)!.nextCheckin > now + checkinMs / 4);
    expect(macs.length).toBeGreaterThanOrEqual(10);
    const checkins = macs.map((m) => ap.label(m)!.nextCheckin);
    for (const mac of macs) {
      const res = await fetch(`${ap.url}/jsonupload`, { method: 'POST', body: new URLSearchParams({ mac, json: JSON.stringify([{ text: [0, 0, mac, 'fonts/bahnschrift20', 1] }]) }) });
      expect(await res.text()).toBe('Ok, saved');
    }
    const t0 = ap.now();
    expect(Math.min(...checkins)).toBeGreaterThan(t0); // none checked in before its content was there
    await waitFor(() => macs.every((m) => ap.label(m)!.updateCount > 0), 30_000, 'every label received its content');
    const got = macs.map((m) => ap.label(m)!.updateLast).sort((a, b) => a - b);
    expect(got).toEqual(idealCompletion(checkins, 10_000, 100, checkinMs, t0).times);
  });
});
