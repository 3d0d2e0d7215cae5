/**
 * Debouncing of one input, deterministic and with an injectable clock (tests drive it by hand).
 *
 * Rule (settle, not leading edge): every raw level change restarts a timer of `debounceMs`; when
 * the line has been quiet that long, its last level is compared with the debounced level, and an
 * edge is reported only if they differ. So a bounce train shorter than debounceMs (however many
 * changes) is at most one edge, and a glitch that returns to where it started is none. The edge is
 * reported debounceMs after the last bounce and carries the time of the train's FIRST change (when
 * the beam was really broken). Chosen over "report the first change, then ignore for debounceMs"
 * because that reports a glitch as two edges and can end on the wrong level; the cost is the
 * debounce time of latency, a few tens of ms.
 *
 * Counters: `raw` level changes seen, `edges` reported, `suppressed` raw changes that did not
 * become an edge (counted when the train settles). A line that never stays quiet for debounceMs
 * reports no edge; `raw` keeps rising and shows it.
 */
import type { Level } from './backend';

/** Time and timers, injectable: the system's in production, a manual clock in unit tests. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface DebouncerOptions {
  /** The debounced level at start (the line's level when the pin was opened). */
  initial: Level;
  debounceMs: number;
  clock: Clock;
  /** A debounced change: the new level and the ms time of the train's first raw change. */
  onEdge(level: Level, firstChangeTs: number): void;
}

export class Debouncer {
  readonly stats = { raw: 0, edges: 0, suppressed: 0 };
  private stable: Level;
  private last: Level;
  /** Raw changes of the train in progress, and when it began. */
  private pending = 0;
  private trainStart = 0;
  private timer: unknown = null;
  private stopped = false;

  constructor(private readonly o: DebouncerOptions) {
    this.stable = o.initial;
    this.last = o.initial;
  }

  /** The debounced level. */
  get level(): Level {
    return this.stable;
  }

  /** A raw level report from the pin (every change, bounces included). */
  raw(level: Level): void {
    if (this.stopped) return;
    this.stats.raw++;
    if (this.pending === 0) this.trainStart = this.o.clock.now();
    this.pending++;
    this.last = level;
    if (this.o.debounceMs <= 0) return this.settle();
    if (this.timer !== null) this.o.clock.clearTimeout(this.timer);
    this.timer = this.o.clock.setTimeout(() => this.settle(), this.o.debounceMs);
  }

  /** Cancels a train in progress (nothing is reported). */
  stop(): void {
    this.stopped = true;
    if (this.timer !== null) this.o.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  private settle(): void {
    this.timer = null;
    const n = this.pending;
    this.pending = 0;
    if (this.last === this.stable) {
      this.stats.suppressed += n;
      return;
    }
    this.stable = this.last;
    this.stats.edges++;
    this.stats.suppressed += n - 1;
    this.o.onEdge(this.stable, this.trainStart);
  }
}
