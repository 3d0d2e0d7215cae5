/**
 * The access point simulator's scaled clock: events run in virtual-time order (ties in scheduling
 * order) and each handler sees its own event time, however late the timer fired. That is what makes
 * a fast-mode run's order depend on its inputs only.
 */
import { describe, expect, it } from 'vitest';
import { ScaledClock } from '../../simulators/oepl-ap/clock';
import { waitFor } from '../helpers/wait';

describe('ScaledClock', () => {
  it('runs events in virtual-time order, ties in scheduling order, with now() at the event time', async () => {
    let real = 1_000;
    const clock = new ScaledClock(1000, 5_000_000, () => real);
    const seen: [string, number][] = [];
    const note = (name: string) => () => seen.push([name, clock.now()]);
    clock.at(5_000_300, note('c'));
    clock.at(5_000_100, note('a'));
    clock.at(5_000_300, note('d'));
    clock.at(5_000_200, () => {
      note('b')();
      clock.after(50, note('b+50')); // scheduled from inside a handler: relative to the event time
    });
    const late = clock.at(5_000_250, note('cancelled'));
    late.cancel();
    real += 10; // the process was busy: 10 real ms = 10 virtual s have passed, all events are due
    await waitFor(() => seen.length === 5, 5_000, 'all events');
    expect(seen).toEqual([
      ['a', 5_000_100],
      ['b', 5_000_200],
      ['b+50', 5_000_250],
      ['c', 5_000_300],
      ['d', 5_000_300],
    ]);
    expect(clock.now()).toBe(5_010_000);
    clock.stop();
  });

  it('stop() drops every event', async () => {
    const clock = new ScaledClock(1000);
    let ran = 0;
    clock.after(1, () => ran++);
    clock.stop();
    clock.after(1, () => ran++);
    const proof = new ScaledClock(1000);
    let proved = false;
    proof.after(5, () => (proved = true));
    await waitFor(() => proved, 5_000, 'a later event of another clock');
    proof.stop();
    expect(ran).toBe(0);
    expect(clock.size).toBe(0);
  });
});
