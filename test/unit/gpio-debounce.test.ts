/**
 * The GPIO debouncer on a manual clock: a bounce train shorter than the debounce time is one edge
 * (with the time of its first change), a glitch that returns is none, each bounce is counted,
 * debounce 0 reports every change, and stop() cancels a train in progress.
 */
import { describe, expect, it } from 'vitest';
import type { Level } from '../../src/features/gpio/backend';
import { Debouncer } from '../../src/features/gpio/debounce';
import { ManualClock } from '../helpers/manual-clock';

function rig(debounceMs: number, initial: Level = 0) {
  const clock = new ManualClock(1000);
  const edges: Array<[Level, number]> = [];
  const d = new Debouncer({ initial, debounceMs, clock, onEdge: (l, ts) => edges.push([l, ts]) });
  return { clock, edges, d };
}

describe('Debouncer', () => {
  it('a bounce train shorter than debounce_ms is one edge, exactly debounce_ms after the last bounce, stamped with its first change', () => {
    const { clock, edges, d } = rig(30);
    for (const l of [1, 0, 1, 0, 1] as Level[]) {
      d.raw(l);
      clock.advance(2);
    }
    // the last raw change was at 1008; 2 ms have passed since: 28 to go
    clock.advance(27);
    expect(edges).toEqual([]);
    clock.advance(1);
    expect(edges).toEqual([[1, 1000]]);
    expect(d.level).toBe(1);
    expect(d.stats).toEqual({ raw: 5, edges: 1, suppressed: 4 });
  });

  it('a glitch that returns to the debounced level is no edge; the next real change is', () => {
    const { clock, edges, d } = rig(20, 1);
    d.raw(0);
    clock.advance(3);
    d.raw(1);
    clock.advance(100);
    expect(edges).toEqual([]);
    expect(d.stats).toEqual({ raw: 2, edges: 0, suppressed: 2 });
    d.raw(0);
    clock.advance(20);
    expect(edges).toEqual([[0, 1103]]);
    expect(d.stats).toEqual({ raw: 3, edges: 1, suppressed: 2 });
  });

  it('changes further apart than debounce_ms are separate edges', () => {
    const { clock, edges, d } = rig(10);
    d.raw(1);
    clock.advance(50);
    d.raw(0);
    clock.advance(50);
    expect(edges.map((e) => e[0])).toEqual([1, 0]);
    expect(d.stats.suppressed).toBe(0);
  });

  it('a line that never stays quiet reports no edge, but its raw changes are counted', () => {
    const { clock, edges, d } = rig(10);
    for (let i = 0; i < 100; i++) {
      d.raw((i % 2 === 0 ? 1 : 0) as Level);
      clock.advance(5);
    }
    expect(edges).toEqual([]);
    expect(d.stats.raw).toBe(100);
  });

  it('debounce_ms 0 reports every change at once; a repeated level is counted as suppressed', () => {
    const { edges, d } = rig(0);
    d.raw(1);
    d.raw(1);
    d.raw(0);
    expect(edges.map((e) => e[0])).toEqual([1, 0]);
    expect(d.stats).toEqual({ raw: 3, edges: 2, suppressed: 1 });
  });

  it('stop() cancels the train in progress and ignores later changes', () => {
    const { clock, edges, d } = rig(30);
    d.raw(1);
    d.stop();
    expect(clock.pending).toBe(0);
    d.raw(0);
    clock.advance(100);
    expect(edges).toEqual([]);
  });
});
