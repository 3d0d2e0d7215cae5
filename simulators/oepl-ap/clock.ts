/**
 * A scaled event clock for the access point simulator. Virtual time runs `scale` times faster than
 * real time (1 in real mode, 1000 in fast mode: a 40 s check-in interval passes in 40 ms). Events
 * run in the order of their virtual time, ties in the order they were scheduled, and each handler
 * sees `now()` equal to its own event time, however late the process got round to it. So a run's
 * order of check-ins, transfers and acknowledgements depends only on its inputs, not on how busy
 * the machine was.
 *
 * One real timer at a time is armed, for the earliest event. stop() clears it and drops every event.
 */

import { Heap } from '../../src/util/heap';

interface Entry {
  t: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

export interface ClockHandle {
  cancel(): void;
}

export class ScaledClock {
  private readonly heap = new Heap<Entry>((a, b) => a.t < b.t || (a.t === b.t && a.seq < b.seq));
  private seq = 0;
  private timer: NodeJS.Timeout | null = null;
  private armedFor = Infinity;
  private current: number | null = null;
  private readonly realStart: number;
  private stopped = false;

  /**
   * @param scale virtual ms per real ms (>= 1 speeds up)
   * @param startMs the virtual time at the start (Unix ms); default the real time
   * @param realNow the real clock (tests); default Date.now
   */
  constructor(
    readonly scale: number,
    private readonly startMs: number = Date.now(),
    private readonly realNow: () => number = Date.now,
  ) {
    this.realStart = realNow();
  }

  /** Virtual Unix ms: the event's own time inside a handler, else derived from the real clock. */
  now(): number {
    if (this.current !== null) return this.current;
    return this.startMs + (this.realNow() - this.realStart) * this.scale;
  }

  /** Converts a virtual duration into real ms (what a test has to wait). */
  realMs(virtualMs: number): number {
    return virtualMs / this.scale;
  }

  /** Runs `fn` at virtual time `t` (now if in the past). */
  at(t: number, fn: () => void): ClockHandle {
    const e: Entry = { t, seq: this.seq++, fn, cancelled: false };
    if (this.stopped) return { cancel: () => undefined };
    this.heap.push(e);
    this.arm();
    return { cancel: () => void (e.cancelled = true) };
  }

  after(virtualMs: number, fn: () => void): ClockHandle {
    return this.at(this.now() + virtualMs, fn);
  }

  /** Events still scheduled (cancelled ones included until they come up). */
  get size(): number {
    return this.heap.size;
  }

  /**
   * Handles an input from outside (an HTTP request, a test's call) at one virtual instant: first
   * runs every event that is due, then runs `fn` with now() held at the time those events were run
   * up to. So cause precedes effect: a check-in due at t=100 that the timer has not run yet is run
   * before an upload made at t=105, and the upload is stamped with a time no later than any event
   * still to come (the real clock may tick between the two; at x1000 one tick is a virtual second).
   */
  input<T>(fn: () => T): T {
    if (this.current !== null || this.stopped) return fn();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const until = this.run();
    this.current = until;
    try {
      return fn();
    } finally {
      this.current = null;
      this.arm();
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.heap.clear();
  }

  private arm(): void {
    const first = this.heap.peek();
    if (!first || this.stopped) return;
    if (this.timer && this.armedFor <= first.t) return;
    if (this.timer) clearTimeout(this.timer);
    this.armedFor = first.t;
    const delay = Math.max(0, (first.t - this.now()) / this.scale);
    this.timer = setTimeout(() => this.run(), Math.min(delay, 2 ** 31 - 1));
  }

  /** Runs the due events; returns the virtual time it ran them up to. */
  private run(): number {
    this.timer = null;
    this.armedFor = Infinity;
    const until = this.now();
    // Bound one turn so a burst of due events cannot starve the HTTP server.
    for (let n = 0; n < 5000 && !this.stopped; n++) {
      const first = this.heap.peek();
      if (!first || first.t > until) break;
      this.heap.pop();
      if (first.cancelled) continue;
      this.current = first.t;
      try {
        first.fn();
      } finally {
        this.current = null;
      }
    }
    this.arm();
    return until;
  }
}
