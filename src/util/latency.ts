/**
 * Fixed-memory latency recorder: a log-linear histogram from 0.01 ms to ~100 s (about 2% relative
 * error), so a months-long daemon can report p50/p99 without keeping samples.
 */
export class LatencyRecorder {
  private static readonly BUCKETS = 800;
  private readonly counts = new Uint32Array(LatencyRecorder.BUCKETS);
  private n = 0;
  private max = 0;

  record(ms: number): void {
    if (!(ms >= 0) || !Number.isFinite(ms)) return;
    const b = Math.min(LatencyRecorder.BUCKETS - 1, Math.max(0, Math.floor(Math.log(ms / 0.01 + 1) / Math.log(1.02))));
    this.counts[b]!++;
    this.n++;
    if (ms > this.max) this.max = ms;
  }

  get count(): number {
    return this.n;
  }

  /** Upper bound of the bucket holding quantile q (0..1), in ms. */
  quantile(q: number): number {
    if (this.n === 0) return 0;
    const target = Math.ceil(q * this.n);
    let seen = 0;
    for (let b = 0; b < LatencyRecorder.BUCKETS; b++) {
      seen += this.counts[b]!;
      if (seen >= target) return Math.min(this.max, 0.01 * (Math.pow(1.02, b + 1) - 1));
    }
    return this.max;
  }

  summary(): { count: number; p50: number; p99: number; max: number } {
    return { count: this.n, p50: this.quantile(0.5), p99: this.quantile(0.99), max: this.max };
  }

  reset(): void {
    this.counts.fill(0);
    this.n = 0;
    this.max = 0;
  }
}
