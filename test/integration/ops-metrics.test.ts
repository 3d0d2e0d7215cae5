/**
 * /metrics and health of a real gateway built in process, values checked against what the test did:
 * - weight shelves: a Modbus load-cell bus simulator served over a real TCP socket (as ser2net would
 *   serve an RS-485 line); readings counted, a scale silenced (offline gauge 0, readiness still ok),
 *   a scale answering with bad CRCs (frames dropped by reason), the TCP link cut (disconnect and
 *   reconnect counted);
 * - sync: the reference central service over HTTP, first failing every request (backlog, bytes and
 *   oldest age of the events the test appended), then healthy (uploaded count, the latency histogram
 *   of those events, backlog 0), and a price version applied;
 * - a feature defined in this file declares its own metrics (counter with a label, gauge, histogram)
 *   and they are exported with the values it supplies;
 * - MQTT clients and failed logins;
 * - `promtool check metrics` finds nothing wrong with the shelfgate_ series.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/bus/auth';
import { validateConfig } from '../../src/config/load';
import { Priority } from '../../src/core/event-kinds';
import { defineFeature, type FeatureContext } from '../../src/core/feature';
import { buildGateway, type Gateway } from '../../src/core/gateway';
import { Histogram } from '../../src/core/metrics';
import { loadDefinitions } from '../../src/devices/definitions';
import type { ModbusDefinition } from '../../src/devices/types';
import { BUILTIN_FEATURES } from '../../src/features';
import { shelvesOf } from '../../src/features/shelves';
import { silentLogger } from '../../src/log';
import { GatewayHealth } from '../../src/ops/health';
import { GatewayMetrics } from '../../src/ops/metrics';
import { CentralSimulator } from '../../simulators/central';
import { streamIo } from '../../simulators/io';
import { ModbusLoadCellBusSimulator } from '../../simulators/modbus-loadcell-sim';
import { LoadCellPhysics, mulberry32 } from '../../simulators/physics';
import { connectClient, tmp, useCleanups, waitFor } from '../helpers/daemon';
import { parseExposition, type Exposition } from '../helpers/prom';

const defs = loadDefinitions();
const PW = 'ops-metrics-pw';

async function startOps(gw: Gateway, features: Parameters<typeof buildGateway>[1]['features'], dataDir: string, cleanups: Array<() => Promise<void> | void>) {
  await gw.start();
  cleanups.push(() => gw.stop());
  const health = new GatewayHealth({ gateway: gw });
  await health.start();
  cleanups.push(() => health.stop());
  const metrics = new GatewayMetrics({ gateway: gw, features, dataDir, log: silentLogger(), health });
  await metrics.start();
  cleanups.push(() => metrics.stop());
  const scrape = async (): Promise<Exposition> => parseExposition((await metrics.render()).body);
  return { health, metrics, scrape };
}

describe('gateway metrics', () => {
  const cleanups = useCleanups();

  it('weight shelves over TCP: readings, devices online, frames dropped by reason, link reconnects, readiness', async () => {
    const dir = tmp('sg-ops-');
    const physics = new Map([
      [1, new LoadCellPhysics({ unitWeightG: 250, items: 10, noiseSigmaG: 0.3, settleMs: 60, rng: mulberry32(1) })],
      [2, new LoadCellPhysics({ unitWeightG: 100, items: 5, noiseSigmaG: 0.3, settleMs: 60, rng: mulberry32(2) })],
    ]);
    const sim = new ModbusLoadCellBusSimulator({ definition: defs.get('generic-modbus-loadcell') as ModbusDefinition, slaves: physics, turnaroundMs: 0 });
    const sockets = new Set<Socket>();
    const server: Server = createServer((sock) => {
      sockets.add(sock);
      sock.on('close', () => sockets.delete(sock));
      sock.on('error', () => undefined); // a reset by the gateway (reconnect, stop) is its business; 'close' follows
      sim.attach(streamIo(sock));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    cleanups.push(() => {
      for (const s of sockets) s.destroy();
    });
    const port = (server.address() as { port: number }).port;
    const raw = {
      store_id: 'st-ops',
      data_dir: dir,
      mqtt: { port: 0 },
      storage: { flush_interval_ms: 5 },
      stability: { window: 3, max_spread_g: 3 },
      buses: [{ id: 'bus1', path: `tcp://127.0.0.1:${port}`, model: 'generic-modbus-loadcell', poll_interval_ms: 20, timeout_ms: 100, offline_after_misses: 3, reconnect: { initial_ms: 20, max_ms: 200 } }],
      shelves: [
        {
          id: 'sh1',
          slots: [
            { id: 'a', sensor: { bus: 'bus1', address: 1 }, gtin: '04006381333931', unit_weight_g: 250 },
            { id: 'b', sensor: { bus: 'bus1', address: 2 }, gtin: '5901234123457', unit_weight_g: 100 },
          ],
        },
      ],
    };
    const { config, issues } = validateConfig(raw, defs, BUILTIN_FEATURES);
    expect(issues).toEqual([]);
    const gw = buildGateway(config!, { log: silentLogger(), definitions: defs, features: BUILTIN_FEATURES });
    // every reading the source hands on, counted from before the source starts
    let readings = 0;
    const source = gw.sources[0]!;
    source.on('reading', () => readings++);
    const { health, scrape } = await startOps(gw, BUILTIN_FEATURES, dir, cleanups);
    const dev = (d: string) => ({ feature: 'shelves', device: d });
    const src = { feature: 'shelves', source: 'bus1' };
    const link = { feature: 'shelves', link: 'bus1' };

    let m = await waitFor(async () => {
      const e = await scrape();
      return e.value('shelfgate_devices_online') === 2 && e;
    }, 15_000, 'both scales online in /metrics');
    expect(m.value('shelfgate_devices_configured')).toBe(2);
    expect(m.value('shelfgate_device_online', dev('bus1.1'))).toBe(1);
    expect(m.value('shelfgate_link_online', link)).toBe(1);
    expect(m.value('shelfgate_link_opens_total', link)).toBe(1);

    // The readings counter is what the source handed on, exactly: both are read in the same turn
    // (render() collects synchronously before its first await).
    await waitFor(() => readings >= 20, 10_000, '20 readings');
    const seen = readings;
    const shelfSeen = shelvesOf(gw).stats.readings;
    const rendering = scrape();
    m = await rendering;
    expect(m.value('shelfgate_source_readings_total', src)).toBe(seen);
    expect(m.value('shelfgate_shelf_readings_total')).toBe(shelfSeen);
    expect(m.value('shelfgate_source_polls_total', src)).toBeGreaterThanOrEqual(seen);

    // A scale that stops answering: offline after 3 misses; its gauge says 0, the other stays 1,
    // the timeouts moved by at least those 3 misses, and the gateway is still ready.
    const timeoutsBefore = m.value('shelfgate_source_timeouts_total', src)!;
    sim.setFaults(2, { silent: true });
    m = await waitFor(async () => {
      const e = await scrape();
      return e.value('shelfgate_device_online', dev('bus1.2')) === 0 && e;
    }, 15_000, 'bus1.2 offline in /metrics');
    expect(m.value('shelfgate_device_online', dev('bus1.1'))).toBe(1);
    expect(m.value('shelfgate_devices_online')).toBe(1);
    expect(m.value('shelfgate_source_timeouts_total', src)! - timeoutsBefore).toBeGreaterThanOrEqual(3);
    expect(m.value('shelfgate_ready')).toBe(1);
    const ready = health.readiness();
    expect(ready.ok).toBe(true);
    expect(ready.checks.devices!.detail).toContain('1/2 devices online');
    expect(health.statusLine(ready)).toMatch(/^ready: .*1\/2 devices online/);

    // Back: the gauge returns to 1.
    sim.setFaults(2, {});
    await waitFor(async () => (await scrape()).value('shelfgate_device_online', dev('bus1.2')) === 1, 15_000, 'bus1.2 back online');

    // Every answer of scale 1 with a broken CRC: counted as frames dropped for reason crc.
    const crcBefore = (await scrape()).value('shelfgate_source_frames_dropped_total', { ...src, reason: 'crc' })!;
    expect(crcBefore).toBe(0);
    sim.setFaults(1, { corruptCrc: 1 });
    m = await waitFor(async () => {
      const e = await scrape();
      return e.value('shelfgate_device_online', dev('bus1.1')) === 0 && e;
    }, 15_000, 'bus1.1 offline after bad CRCs');
    expect(m.value('shelfgate_source_frames_dropped_total', { ...src, reason: 'crc' })).toBeGreaterThanOrEqual(3);
    expect(m.value('shelfgate_source_frames_dropped_total', { ...src, reason: 'crc' })).toBe(source.stats.crcErrors);
    sim.setFaults(1, {});
    await waitFor(async () => (await scrape()).value('shelfgate_devices_online') === 2, 15_000, 'both online again');

    // The TCP link cut (as an unplugged USB adapter): one disconnect, then a second open.
    for (const s of sockets) s.destroy();
    m = await waitFor(async () => {
      const e = await scrape();
      return e.value('shelfgate_link_opens_total', link) === 2 && e;
    }, 15_000, 'link reopened');
    expect(m.value('shelfgate_link_disconnects_total', link)).toBe(1);
    await waitFor(async () => (await scrape()).value('shelfgate_devices_online') === 2, 15_000, 'devices back after reconnect');
  });

  it('sync backlog, upload latency and price versions; a feature’s own metrics; MQTT clients', async () => {
    const dir = tmp('sg-ops-');
    const central = new CentralSimulator({ host: '127.0.0.1', port: 0, token: 'tok', log: silentLogger(), extraKinds: ['probe_event'] });
    await central.start();
    cleanups.push(() => central.stop());
    writeFileSync(join(dir, 'token'), 'tok');
    central.setFaults({ status5xxRate: 1 });

    // A feature only this file knows: its outbox kind and its metrics, declared like any feature's.
    const lookups = new Histogram([0.01, 0.1, 1]);
    const results = { found: 0, unknown: 0 };
    let ctx: FeatureContext | undefined;
    const probe = defineFeature({
      name: 'probe',
      eventKinds: [{ kind: 'probe_event', priority: Priority.STOCK, droppable: false, description: 'a test event' }],
      metrics: [
        { name: 'probe_lookups_total', help: 'Lookups by result.', type: 'counter', labels: ['result'] },
        { name: 'probe_lookup_duration_seconds', help: 'Lookup latency.', type: 'histogram' },
        { name: 'probe_queue_depth', help: 'Queue depth.', type: 'gauge' },
      ],
      build(c) {
        ctx = c;
        return {
          collectMetrics: () => ({
            probe_lookups_total: Object.entries(results).map(([result, value]) => ({ labels: { result }, value })),
            probe_lookup_duration_seconds: lookups.snapshot(),
            probe_queue_depth: 7,
          }),
        };
      },
    });
    const hash = await hashPassword(PW);
    const raw = {
      store_id: 'st-ops2',
      data_dir: dir,
      mqtt: { port: 0, users: [{ username: 'tech', role: 'technician', password_hash: hash }] },
      storage: { flush_interval_ms: 5 },
      sync: { transport: 'https', https: { url: central.url, token_file: join(dir, 'token') }, backoff: { initial_ms: 50, max_ms: 300 } },
      shelves: [{ id: 'entrance', slots: [{ id: 'mat' }] }],
    };
    const features = [probe];
    const { config, issues } = validateConfig(raw, defs, features);
    expect(issues).toEqual([]);
    const gw = buildGateway(config!, { log: silentLogger(), definitions: defs, features });
    const { scrape } = await startOps(gw, features, dir, cleanups);

    let m = await scrape();
    expect(m.value('shelfgate_outbox_events_total', { kind: 'probe_event' })).toBe(0);
    expect(m.value('shelfgate_outbox_backlog_events')).toBe(0);
    expect(m.value('shelfgate_sync_connected')).toBe(0);

    // K events while central fails every request; the first is two minutes old.
    const K = 5;
    const payloads = Array.from({ length: K }, (_, i) => ({ n: i, note: 'x'.repeat(i * 10) }));
    const t0 = Date.now();
    for (const [i, payload] of payloads.entries()) await ctx!.store.appendEvent({ deviceId: 'probe/1', kind: 'probe_event', priority: 2, payload, createdAt: i === 0 ? t0 - 120_000 : t0 });
    m = await scrape();
    expect(m.value('shelfgate_outbox_events_total', { kind: 'probe_event' })).toBe(K);
    expect(m.value('shelfgate_outbox_backlog_events')).toBe(K);
    expect(m.value('shelfgate_outbox_backlog_bytes')).toBe(payloads.reduce((n, p) => n + Buffer.byteLength(JSON.stringify(p)), 0));
    expect(m.value('shelfgate_outbox_oldest_event_age_seconds')).toBeGreaterThanOrEqual(120);
    // an upload refused by central proves the uploader ran before we look for what it did not do
    m = await waitFor(async () => {
      const e = await scrape();
      return e.value('shelfgate_sync_batch_failures_total')! > 0 && e;
    }, 10_000, 'a failed upload');
    expect(m.value('shelfgate_sync_uploaded_events_total')).toBe(0);
    expect(m.value('shelfgate_sync_latency_seconds_count')).toBe(0);

    // Central healthy: all K taken, each observed once in the latency histogram.
    central.resetFaults();
    m = await waitFor(async () => {
      const e = await scrape();
      return e.value('shelfgate_sync_uploaded_events_total') === K && e.value('shelfgate_outbox_backlog_events') === 0 && e;
    }, 15_000, 'the K events uploaded');
    expect(m.value('shelfgate_sync_latency_seconds_count')).toBe(K);
    expect(m.value('shelfgate_sync_latency_seconds_bucket', { le: '+Inf' })).toBe(K);
    expect(m.value('shelfgate_sync_latency_seconds_bucket', { le: '60' })).toBe(K - 1); // the old one is over a minute
    expect(m.value('shelfgate_sync_latency_seconds_bucket', { le: '300' })).toBe(K);
    expect(m.value('shelfgate_sync_latency_seconds_sum')).toBeGreaterThanOrEqual(120);
    expect(m.value('shelfgate_outbox_oldest_event_age_seconds')).toBe(0);
    expect(m.value('shelfgate_sync_connected')).toBe(1);
    const lastSuccess = m.value('shelfgate_sync_last_success_timestamp_seconds')!;
    expect(Math.abs(lastSuccess - Date.now() / 1000)).toBeLessThan(60);
    expect(central.receivedEvents('st-ops2').length).toBe(K);

    // A price version from central's feed.
    expect(m.value('shelfgate_sync_price_versions_applied_total')).toBe(0);
    central.publishPrice({ gtin: '04006381333931', price: 199, currency: 'EUR' });
    await waitFor(async () => (await scrape()).value('shelfgate_sync_price_versions_applied_total') === 1, 15_000, 'price version applied');

    // The feature's own metrics, with the values it supplies.
    results.found = 3;
    results.unknown = 1;
    for (const v of [0.005, 0.05, 0.5, 5]) lookups.observe(v);
    m = await scrape();
    expect(m.types.get('shelfgate_probe_lookups_total')).toBe('counter');
    expect(m.types.get('shelfgate_probe_lookup_duration_seconds')).toBe('histogram');
    expect(m.value('shelfgate_probe_lookups_total', { result: 'found' })).toBe(3);
    expect(m.value('shelfgate_probe_lookups_total', { result: 'unknown' })).toBe(1);
    expect(m.value('shelfgate_probe_queue_depth')).toBe(7);
    expect([0.01, 0.1, 1].map((le) => m.value('shelfgate_probe_lookup_duration_seconds_bucket', { le: String(le) }))).toEqual([1, 2, 3]);
    expect(m.value('shelfgate_probe_lookup_duration_seconds_bucket', { le: '+Inf' })).toBe(4);
    expect(m.value('shelfgate_probe_lookup_duration_seconds_sum')).toBeCloseTo(5.555, 6);

    // MQTT: one client logged in, one wrong password.
    const { client } = await connectClient(gw.bus.address().port, 'tech', PW);
    cleanups.push(() => client.endAsync());
    await expect(connectClient(gw.bus.address().port, 'tech', 'wrong')).rejects.toThrow();
    m = await waitFor(async () => {
      const e = await scrape();
      return e.value('shelfgate_mqtt_clients') === 1 && e.value('shelfgate_mqtt_auth_failures_total') === 1 && e;
    }, 10_000, 'one client, one auth failure');
    expect(m.value('shelfgate_mqtt_connections_total')).toBeGreaterThanOrEqual(2);

    // Process metrics (prom-client defaults) and the data_dir file system are there.
    expect(m.value('process_resident_memory_bytes')).toBeGreaterThan(0);
    expect(m.names().has('nodejs_eventloop_lag_seconds')).toBe(true);
    expect(m.value('shelfgate_data_dir_free_bytes')).toBeGreaterThan(0);
    expect(m.value('shelfgate_data_dir_size_bytes')).toBeGreaterThanOrEqual(m.value('shelfgate_data_dir_free_bytes')!);
    expect(m.value('shelfgate_metrics_series_dropped_total')).toBe(0);
    const notFinite = m.samples.filter((x) => x.name.startsWith('shelfgate_') && !Number.isFinite(x.value) && x.labels.le !== '+Inf');
    expect(notFinite).toEqual([]);
  });

  it('promtool check metrics finds no problem in the shelfgate_ series', async () => {
    const promtool = '/usr/bin/promtool';
    const check = spawnSync(promtool, ['--version'], { encoding: 'utf8' });
    if (check.error) throw new Error(`${promtool} is missing: install Debian's \`prometheus\` package (scripts/setup.sh --test does)`);
    const dir = tmp('sg-ops-');
    const raw = {
      store_id: 'st-ops3',
      data_dir: dir,
      mqtt: { port: 0 },
      buses: [{ id: 'bus1', path: 'mock://ops-metrics-nothing-here', model: 'generic-modbus-loadcell' }],
      shelves: [{ id: 'sh', slots: [{ id: 'a', sensor: { bus: 'bus1', address: 1 } }] }],
    };
    const { config, issues } = validateConfig(raw, defs, BUILTIN_FEATURES);
    expect(issues).toEqual([]);
    const gw = buildGateway(config!, { log: silentLogger(), definitions: defs, features: BUILTIN_FEATURES });
    const { metrics } = await startOps(gw, BUILTIN_FEATURES, dir, cleanups);
    const { body, contentType } = await metrics.render();
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    const r = spawnSync(promtool, ['check', 'metrics'], { input: body, encoding: 'utf8' });
    // prom-client's own default gauges (nodejs_active_handles_total, ...) break a naming lint;
    // ours must not.
    const ours = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => l.includes('shelfgate_'));
    expect(ours).toEqual([]);
  });
});
