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

describe('ScaledClock.input', () => {
  it('runs the due events first, then the input at the time they ran up to, even if the real clock ticks meanwhile', async () => {
    let real = 0;
    const clock = new ScaledClock(1000, 0, () => real);
    const seen: [string, number][] = [];
    clock.at(100, () => seen.push(['due', clock.now()]));
    clock.at(1_500, () => seen.push(['next', clock.now()]));
    real = 1; // virtual 1,000: the first event is due, its timer may not have run yet
    const t = clock.input(() => {
      real = 2; // the real clock ticks (virtual 2,000) while the input is handled
      seen.push(['input', clock.now()]);
      return clock.now();
    });
    expect(t).toBe(1_000); // held at the time the due events were run up to
    expect(seen).toEqual([
      ['due', 100],
      ['input', 1_000],
    ]);
    await waitFor(() => seen.length === 3, 5_000, 'the next event');
    expect(seen[2]).toEqual(['next', 1_500]); // still after the input, as its time says
    clock.stop();
  });
});
