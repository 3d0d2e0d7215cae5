/**
 * How a feature (and the core) declares the metrics it exports, and supplies their values at
 * scrape time. The core names no feature: a feature lists `metrics` (name, help, type, label
 * names) beside its event kinds and commands, and its built parts answer `collectMetrics()` with
 * the current values when Prometheus scrapes. Nothing is pushed on a hot path: counters a feature
 * already keeps (plain numbers) are read when asked. A latency is the one thing that must be
 * recorded when it happens: `Histogram` below is a fixed array of bucket counts (no allocation per
 * observation), read the same way.
 *
 * Names are given without the `shelfgate_` prefix (the exporter adds it) and follow Prometheus
 * conventions: counters end in `_total`, durations are `_seconds`, sizes `_bytes`.
 *
 * Labels must stay bounded: their values come from the config (device, zone, access point ids) or
 * from a fixed set (a state, a reason); never from outside input (an EPC, a GTIN, a client id).
 * The exporter enforces the declared label names and refuses, per scrape, more than
 * MAX_SERIES_PER_METRIC series of one metric (counted and logged, never thrown).
 */

export type MetricType = 'counter' | 'gauge' | 'histogram';

export interface MetricDecl {
  /** Without the `shelfgate_` prefix: `rfid_reads_total`. [a-z_][a-z0-9_]*. */
  readonly name: string;
  readonly help: string;
  readonly type: MetricType;
  /** Label names, in order (values come with each sample). Bounded values only (see above). */
  readonly labels?: readonly string[];
}

/** Label values of one series, by label name (every declared label present). */
export type MetricLabels = Readonly<Record<string, string>>;

export interface ScalarSample {
  labels?: MetricLabels;
  value: number;
}

/** One series per value of a single label: `byLabel('reason', { per_user: 3 })` is `[{ labels: { reason: 'per_user' }, value: 3 }]`. */
export function byLabel(label: string, values: Readonly<Record<string, number>>): ScalarSample[] {
  return Object.entries(values).map(([v, value]) => ({ labels: { [label]: v }, value }));
}

/** A histogram's state: `counts[i]` observations <= `buckets[i]` (NOT cumulative), plus the ones above the last bound. */
export interface HistogramSnapshot {
  /** Upper bounds, ascending (without +Inf). */
  buckets: readonly number[];
  /** Per bucket, not cumulative; length buckets.length + 1 (the last is the +Inf overflow). */
  counts: readonly number[];
  sum: number;
  count: number;
}

export interface HistogramSample {
  labels?: MetricLabels;
  histogram: HistogramSnapshot;
}

/** What collectMetrics() returns: by metric name (as declared), a number (one unlabelled series) or the samples. */
export type MetricValues = Record<string, number | ScalarSample[] | HistogramSnapshot | HistogramSample[]>;

/** Most series one metric may have in one scrape; beyond, the rest are left out (and counted). */
export const MAX_SERIES_PER_METRIC = 1000;

/** Default buckets for a latency in seconds: 1 ms to 10 min. */
export const LATENCY_BUCKETS_S: readonly number[] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600];

/**
 * A fixed-bucket histogram recorded where the latency is known (one comparison loop and two
 * additions per observation) and exported at scrape time through its snapshot().
 */
export class Histogram {
  private readonly bounds: readonly number[];
  private readonly counts: number[];
  private total = 0;
  private n = 0;

  constructor(buckets: readonly number[] = LATENCY_BUCKETS_S) {
    for (let i = 1; i < buckets.length; i++) if (!(buckets[i]! > buckets[i - 1]!)) throw new RangeError('histogram buckets must be strictly ascending');
    this.bounds = [...buckets];
    this.counts = new Array<number>(buckets.length + 1).fill(0);
  }

  observe(value: number): void {
    if (!Number.isFinite(value)) return;
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > b[i]!) i++;
    this.counts[i]!++;
    this.total += value;
    this.n++;
  }

  snapshot(): HistogramSnapshot {
    return { buckets: this.bounds, counts: [...this.counts], sum: this.total, count: this.n };
  }
}

const NAME = /^[a-z_][a-z0-9_]*$/;

/** Problems with a list of declarations (names, conventions, duplicates); empty when fine. */
export function checkMetricDecls(decls: readonly MetricDecl[]): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const d of decls) {
    if (!NAME.test(d.name)) out.push(`${d.name}: not a metric name ([a-z_][a-z0-9_]*)`);
    if (d.name.startsWith('shelfgate_')) out.push(`${d.name}: declare it without the shelfgate_ prefix`);
    if (d.type === 'counter' && !d.name.endsWith('_total')) out.push(`${d.name}: a counter's name ends in _total`);
    if (d.type !== 'counter' && d.name.endsWith('_total')) out.push(`${d.name}: only counters end in _total`);
    if (seen.has(d.name)) out.push(`${d.name}: declared twice`);
    seen.add(d.name);
    for (const l of d.labels ?? []) if (!NAME.test(l) || l === 'le' || l.startsWith('__')) out.push(`${d.name}: bad label name ${l}`);
  }
  return out;
}
