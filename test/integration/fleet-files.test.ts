/**
 * The fleet files (fleet/prometheus, fleet/grafana) cannot drift from the gateway:
 * - `promtool check rules` accepts the alert rules, and `promtool test rules` proves each alert fires
 *   on synthetic series (and not before its `for:`); promtool comes from Debian's `prometheus`
 *   package, and its absence fails the test (scripts/setup.sh --test installs it);
 * - every metric a built-in feature declares is supplied by its collectMetrics() (has a series);
 * - every metric name the rules and the dashboards use is one a real gateway renders on /metrics
 *   (parsed from the exposition), and every label they select a shelfgate_ metric on is one it
 *   declares (or a target label: job, instance, store);
 * - the store dashboard filters every query on its `store` variable;
 * - docs/operations.md lists every declared metric and every alert.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { validateConfig } from '../../src/config/load';
import { buildGateway } from '../../src/core/gateway';
import { loadDefinitions } from '../../src/devices/definitions';
import { BUILTIN_FEATURES } from '../../src/features';
import { silentLogger } from '../../src/log';
import { CORE_METRICS, GatewayMetrics, METRIC_PREFIX } from '../../src/ops/metrics';
import { ROOT, tmp, useCleanups } from '../helpers/daemon';
import { parseExposition } from '../helpers/prom';

const PROMTOOL = '/usr/bin/promtool';
const RULES_DIR = join(ROOT, 'fleet/prometheus');
const RULES = join(RULES_DIR, 'shelfgate-alerts.yml');
const DASHBOARDS = ['shelfgate-store.json', 'shelfgate-fleet.json'].map((f) => join(ROOT, 'fleet/grafana', f));
/** Labels Prometheus attaches to every series of a target (the scrape config sets `store`). */
const TARGET_LABELS = new Set(['job', 'instance', 'store']);

function promtool(args: string[], cwd = ROOT): { code: number | null; out: string } {
  const r = spawnSync(PROMTOOL, args, { cwd, encoding: 'utf8' });
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT')
    throw new Error(`${PROMTOOL} not found: install Debian's \`prometheus\` package (apt-get install --no-install-recommends prometheus; scripts/setup.sh --test does it)`);
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

function rules(): Rule[] {
  const doc = parseYaml(readFileSync(RULES, 'utf8')) as { groups: Array<{ rules: Rule[] }> };
  return doc.groups.flatMap((g) => g.rules);
}

/** Every PromQL expression of a dashboard (panel targets and query variables). */
function dashboardExprs(file: string): string[] {
  const d = JSON.parse(readFileSync(file, 'utf8')) as { panels: Array<{ targets?: Array<{ expr: string }> }>; templating: { list: Array<{ query?: unknown }> } };
  const out = d.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
  for (const v of d.templating.list) if (v.query && typeof v.query === 'object') out.push((v.query as { query: string }).query);
  return out;
}

const NAME = /\b((?:shelfgate|process|nodejs)_[a-z0-9_]+)\b/g;
/** `name{label="x", other=~"y"}` selectors: the metric and the label names. */
const SELECTOR = /\b(shelfgate_[a-z0-9_]+)\{([^}]*)\}/g;

function namesIn(texts: string[]): Set<string> {
  const out = new Set<string>();
  for (const t of texts) for (const m of t.matchAll(NAME)) out.add(m[1]!);
  return out;
}

/** What a real gateway built from the built-in features renders on /metrics: sample and family names. */
async function renderedNames(cleanups: Array<() => Promise<void> | void>): Promise<Set<string>> {
  const dir = tmp('sg-fleet-');
  const defs = loadDefinitions();
  const raw = {
    store_id: 'st-fleet',
    data_dir: dir,
    mqtt: { port: 0 },
    buses: [{ id: 'bus1', path: 'mock://fleet-files-nothing-here', model: 'generic-modbus-loadcell' }],
    shelves: [{ id: 'sh', slots: [{ id: 'a', sensor: { bus: 'bus1', address: 1 } }, { id: 'b' }] }],
    // every feature configured (its devices unreachable), so every feature's metrics have series
    rfid: { readers: [{ id: 'r1', kind: 'm100', path: 'mock://fleet-files-no-reader' }], zones: [{ id: 'floor', location: 'sh/b', antennas: [{ reader: 'r1' }] }] },
    labels: { access_points: [{ id: 'ap1', url: 'http://127.0.0.1:9' }] },
    scanners: [{ id: 'pc1', kind: 'serial', port: 'mock://fleet-files-no-scanner', terminator: 'crlf' }],
    gpio: { backend: 'sim', inputs: [{ name: 'beam', pin: 17, kind: 'presence' }] },
  };
  const { config, issues } = validateConfig(raw, defs, BUILTIN_FEATURES);
  expect(issues).toEqual([]);
  const gw = buildGateway(config!, { log: silentLogger(), definitions: defs, features: BUILTIN_FEATURES });
  await gw.start();
  cleanups.push(() => gw.stop());
  const metrics = new GatewayMetrics({ gateway: gw, features: BUILTIN_FEATURES, dataDir: dir, log: silentLogger() });
  await metrics.start();
  cleanups.push(() => metrics.stop());
  const e = parseExposition((await metrics.render()).body);
  // every metric a feature declares has a series: its collectMetrics() supplies each declared name
  const withSeries = new Set(e.samples.map((s) => s.name.replace(/_(bucket|sum|count)$/, '')));
  const silent = BUILTIN_FEATURES.flatMap((f) => (f.metrics ?? []).map((d) => METRIC_PREFIX + d.name)).filter((n) => !withSeries.has(n));
  expect(silent).toEqual([]);
  // A family is rendered (HELP/TYPE) even without series (e.g. sync_last_success before any
  // success); a histogram family is used through its _bucket/_sum/_count.
  const names = new Set(e.names());
  for (const [family, type] of e.types) {
    names.add(family);
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(family + s);
  }
  return names;
}

describe('fleet files', () => {
  const cleanups = useCleanups();

  it('promtool check rules accepts the alert rules', () => {
    const r = promtool(['check', 'rules', RULES]);
    expect(r.out).toContain('SUCCESS');
    expect(r.code).toBe(0);
  });

  it('promtool test rules: each alert fires on synthetic series, not before its for:', () => {
    const r = promtool(['test', 'rules', 'shelfgate-alerts.test.yml'], RULES_DIR);
    expect(r.out).toContain('SUCCESS');
    expect(r.code).toBe(0);
    // every alert of the rules file is exercised by the unit test file
    const tested = new Set([...readFileSync(join(RULES_DIR, 'shelfgate-alerts.test.yml'), 'utf8').matchAll(/alertname: (\w+)/g)].map((m) => m[1]!));
    expect(rules().map((r) => r.alert).filter((a) => !tested.has(a))).toEqual([]);
  });

  it('every alert has a for:, a severity and annotations a technician can act on', () => {
    const required = ['ShelfgateGatewayDown', 'ShelfgateDeviceOffline', 'ShelfgateSyncBacklogOld', 'ShelfgatePriceIntegrityLow', 'ShelfgateDiskNearlyFull'];
    const all = rules();
    expect(required.filter((a) => !all.some((r) => r.alert === a))).toEqual([]);
    for (const r of all) {
      expect(r.for, r.alert).toMatch(/^\d+[smh]$/);
      expect(['critical', 'warning', 'info'], r.alert).toContain(r.labels?.severity);
      expect(r.annotations?.summary, r.alert).toBeTruthy();
      expect((r.annotations?.description ?? '').length, r.alert).toBeGreaterThan(60);
    }
    expect(all.find((r) => r.alert === 'ShelfgateGatewayDown')!.expr).toBe('up{job="shelfgate"} == 0');
  });

  it('the rules and dashboards use only metric names a gateway renders, and only labels they declare', async () => {
    const rendered = await renderedNames(cleanups);
    const texts = [...rules().flatMap((r) => [r.expr, ...Object.values(r.annotations ?? {})]), ...DASHBOARDS.flatMap(dashboardExprs)];
    const used = namesIn(texts);
    expect(used.size).toBeGreaterThan(20);
    expect([...used].filter((n) => !rendered.has(n))).toEqual([]);

    const declared = new Map<string, Set<string>>();
    for (const d of [...CORE_METRICS, ...BUILTIN_FEATURES.flatMap((f) => f.metrics ?? [])]) {
      const labels = new Set(d.labels ?? []);
      if (d.type === 'histogram') {
        labels.add('le');
        for (const s of ['_bucket', '_sum', '_count']) declared.set(METRIC_PREFIX + d.name + s, labels);
      }
      declared.set(METRIC_PREFIX + d.name, labels);
    }
    const wrong: string[] = [];
    for (const t of texts)
      for (const m of t.matchAll(SELECTOR))
        for (const [, label] of m[2]!.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!=|!~|=)/g))
          if (!TARGET_LABELS.has(label!) && !declared.get(m[1]!)?.has(label!)) wrong.push(`${m[1]}{${label}}`);
    expect(wrong).toEqual([]);
  });

  it('docs/operations.md lists every metric the core and the built-in features declare, and every alert', () => {
    const doc = readFileSync(join(ROOT, 'docs/operations.md'), 'utf8');
    const declared = [...CORE_METRICS, ...BUILTIN_FEATURES.flatMap((f) => f.metrics ?? [])].map((d) => METRIC_PREFIX + d.name);
    expect(declared.filter((n) => !doc.includes(`\`${n}\``))).toEqual([]);
    expect(rules().map((r) => r.alert).filter((a) => !doc.includes(`\`${a}\``))).toEqual([]);
  });

  it('the store dashboard has a store variable and filters every query on it; panel ids are unique', () => {
    for (const file of DASHBOARDS) {
      const d = JSON.parse(readFileSync(file, 'utf8')) as { uid: string; panels: Array<{ id: number; targets: Array<{ expr: string }> }>; templating: { list: Array<{ name: string }> } };
      const ids = d.panels.map((p) => p.id);
      expect(new Set(ids).size, file).toBe(ids.length);
      expect(d.templating.list.map((v) => v.name), file).toContain('datasource');
      if (d.uid === 'shelfgate-store') {
        expect(d.templating.list.map((v) => v.name)).toContain('store');
        const unfiltered = d.panels.flatMap((p) => p.targets.map((t) => t.expr)).filter((e) => [...e.matchAll(NAME)].some((m) => !e.slice(m.index! + m[0].length).startsWith('{store="$store"}')));
        expect(unfiltered).toEqual([]);
      }
    }
  });
});
