/**
 * The metric declaration mechanism and the exporter's guards, with a stand-in gateway (the real
 * gateway is in test/integration/ops-metrics.test.ts):
 * - Histogram buckets and snapshots;
 * - declarations checked (names, conventions, clashes with the core or another feature);
 * - a part that throws is left out of that scrape and counted, the others still render;
 * - a metric over its series bound is cut and counted;
 * - the deprecated flat FeatureParts.metrics() still exports, typed by its name.
 */
import { describe, expect, it } from 'vitest';
import type { Feature, FeatureParts } from '../../src/core/feature';
import type { Gateway } from '../../src/core/gateway';
import { Histogram, MAX_SERIES_PER_METRIC, checkMetricDecls } from '../../src/core/metrics';
import { isShelfgateError } from '../../src/errors';
import { BUILTIN_FEATURES } from '../../src/features';
import { silentLogger } from '../../src/log';
import { CORE_METRICS, GatewayMetrics } from '../../src/ops/metrics';
import { tmp } from '../helpers/daemon';
import { parseExposition } from '../helpers/prom';

/** Only `features` is real: reading anything else of the core throws (the core part then fails). */
function standIn(parts: Record<string, FeatureParts>): Gateway {
  return { features: new Map(Object.entries(parts)) } as unknown as Gateway;
}

function feature(name: string, metrics?: Feature['metrics']): Feature {
  return { name, metrics, build: () => ({}) };
}

describe('Histogram', () => {
  it('counts each observation in its first bucket whose bound is >= the value, the rest in +Inf', () => {
    const h = new Histogram([1, 2, 5]);
    for (const v of [0.5, 1, 1.5, 5, 7, Number.NaN]) h.observe(v);
    expect(h.snapshot()).toEqual({ buckets: [1, 2, 5], counts: [2, 1, 1, 1], sum: 15, count: 5 });
  });

  it('refuses buckets that are not strictly ascending', () => {
    expect(() => new Histogram([1, 1, 2])).toThrow(RangeError);
  });
});

describe('metric declarations', () => {
  it('names every convention broken', () => {
    const problems = checkMetricDecls([
      { name: 'reads', help: '', type: 'counter' },
      { name: 'queue_total', help: '', type: 'gauge' },
      { name: 'shelfgate_x', help: '', type: 'gauge' },
      { name: 'Bad-Name', help: '', type: 'gauge' },
      { name: 'dup', help: '', type: 'gauge', labels: ['le'] },
      { name: 'dup', help: '', type: 'gauge' },
    ]);
    expect(problems).toEqual([
      "reads: a counter's name ends in _total",
      'queue_total: only counters end in _total',
      'shelfgate_x: declare it without the shelfgate_ prefix',
      'Bad-Name: not a metric name ([a-z_][a-z0-9_]*)',
      'dup: bad label name le',
      'dup: declared twice',
    ]);
  });

  it('the core and every built-in feature declare metrics that pass, with no name used twice', () => {
    expect(checkMetricDecls([...CORE_METRICS, ...BUILTIN_FEATURES.flatMap((f) => f.metrics ?? [])])).toEqual([]);
  });

  it('refuses a feature metric named like the core’s or another feature’s', () => {
    const make = (features: Feature[]) => new GatewayMetrics({ gateway: standIn({}), features, dataDir: tmp(), log: silentLogger() });
    expect(() => make([feature('a', [{ name: 'ready', help: 'h', type: 'gauge' }])])).toThrow(/a: metric ready already declared by the core/);
    try {
      make([feature('a', [{ name: 'x_total', help: 'h', type: 'counter' }]), feature('b', [{ name: 'x_total', help: 'h', type: 'counter' }])]);
      expect.unreachable();
    } catch (e) {
      expect(isShelfgateError(e)).toBe(true);
      expect((e as Error).message).toMatch(/b: metric x_total already declared by a/);
    }
  });
});

describe('GatewayMetrics guards', () => {
  it('a failing part is left out of that scrape and counted; the others render', async () => {
    const ok = feature('ok', [{ name: 'ok_things', help: 'h', type: 'gauge' }]);
    const bad = feature('bad', [{ name: 'bad_things', help: 'h', type: 'gauge' }]);
    const m = new GatewayMetrics({
      gateway: standIn({ ok: { collectMetrics: () => ({ ok_things: 4 }) }, bad: { collectMetrics: () => { throw new Error('boom'); } } }),
      features: [ok, bad],
      dataDir: tmp(),
      log: silentLogger(),
      defaultMetrics: false,
    });
    await m.start();
    const e1 = parseExposition((await m.render()).body);
    expect(e1.value('shelfgate_ok_things')).toBe(4);
    expect(e1.value('shelfgate_bad_things')).toBeUndefined();
    expect(e1.value('shelfgate_metrics_collect_failures_total', { part: 'bad' })).toBe(1);
    // the stand-in has no store, bus or sync: the core part fails the same way
    expect(e1.value('shelfgate_metrics_collect_failures_total', { part: 'core' })).toBe(1);
    const e2 = parseExposition((await m.render()).body);
    expect(e2.value('shelfgate_metrics_collect_failures_total', { part: 'bad' })).toBe(2);
    await m.stop();
    await expect(m.render()).rejects.toThrow(/not started/);
  });

  it('cuts a metric at its series bound and counts what was left out', async () => {
    const f = feature('many', [{ name: 'many_things', help: 'h', type: 'gauge', labels: ['zone'] }]);
    const n = MAX_SERIES_PER_METRIC + 5;
    const m = new GatewayMetrics({
      gateway: standIn({ many: { collectMetrics: () => ({ many_things: Array.from({ length: n }, (_, i) => ({ labels: { zone: `z${i}` }, value: i })) }) } }),
      features: [f],
      dataDir: tmp(),
      log: silentLogger(),
      defaultMetrics: false,
    });
    await m.start();
    const e = parseExposition((await m.render()).body);
    expect(e.samples.filter((s) => s.name === 'shelfgate_many_things')).toHaveLength(MAX_SERIES_PER_METRIC);
    // counted during this scrape, visible from the next
    const e2 = parseExposition((await m.render()).body);
    expect(e2.value('shelfgate_metrics_series_dropped_total')).toBe(5);
    await m.stop();
  });

  it('exports a feature’s deprecated flat metrics() when it declares none, typed by the name', async () => {
    const m = new GatewayMetrics({
      gateway: standIn({ legacy: { metrics: () => ({ legacy_hits_total: 3, legacy_depth: 2 }) } }),
      features: [feature('legacy')],
      dataDir: tmp(),
      log: silentLogger(),
      defaultMetrics: false,
    });
    await m.start();
    const e = parseExposition((await m.render()).body);
    expect(e.value('shelfgate_legacy_hits_total')).toBe(3);
    expect(e.types.get('shelfgate_legacy_hits_total')).toBe('counter');
    expect(e.value('shelfgate_legacy_depth')).toBe(2);
    expect(e.types.get('shelfgate_legacy_depth')).toBe('gauge');
    await m.stop();
  });

  it('a value that does not fit its declared type is left out and counted against its feature', async () => {
    const f = feature('shape', [
      { name: 'shape_gauge', help: 'h', type: 'gauge' },
      { name: 'shape_seconds', help: 'h', type: 'histogram' },
    ]);
    const m = new GatewayMetrics({
      gateway: standIn({ shape: { collectMetrics: () => ({ shape_gauge: new Histogram([1]).snapshot(), shape_seconds: 3 }) } }),
      features: [f],
      dataDir: tmp(),
      log: silentLogger(),
      defaultMetrics: false,
    });
    await m.start();
    await m.render();
    const e = parseExposition((await m.render()).body);
    expect(e.samples.filter((s) => s.name.startsWith('shelfgate_shape_'))).toEqual([]);
    expect(e.value('shelfgate_metrics_collect_failures_total', { part: 'shape' })).toBe(2);
    await m.stop();
  });

  it('missing label values are exported empty, never as another label set', async () => {
    const f = feature('lab', [{ name: 'lab_things', help: 'h', type: 'gauge', labels: ['zone', 'kind'] }]);
    const m = new GatewayMetrics({
      gateway: standIn({ lab: { collectMetrics: () => ({ lab_things: [{ labels: { zone: 'a', extra: 'x' } as Record<string, string>, value: 1 }] }) } }),
      features: [f],
      dataDir: tmp(),
      log: silentLogger(),
      defaultMetrics: false,
    });
    await m.start();
    const e = parseExposition((await m.render()).body);
    expect(e.samples.find((s) => s.name === 'shelfgate_lab_things')!.labels).toEqual({ zone: 'a', kind: '' });
    await m.stop();
  });
});
