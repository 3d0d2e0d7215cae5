/**
 * /metrics, /healthz and /readyz of the real daemon, scraped and parsed while the test does things,
 * each value checked against what the test did: devices configured and online (one load cell made
 * silent), kiosk lookups by result, MQTT clients connected, the outbox backlog against the
 * gateway's own status, readiness.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BusClient } from '../../src/bus/request-client';
import { loadDefinitions } from '../../src/devices/definitions';
import type { ModbusDefinition } from '../../src/devices/types';
import { ModbusLoadCellBusSimulator } from '../../simulators/modbus-loadcell-sim';
import { LoadCellPhysics, mulberry32 } from '../../simulators/physics';
import { serveTcp } from '../../simulators/serve';
import { connectClient, startDaemon, tmp, useCleanups, waitFor } from '../helpers/daemon';
import { fastHash, usersWithHash } from '../helpers/users';

const STORE = 'tmet';
const PW = 'pw-metrics';
const cleanups = useCleanups();

/** The Prometheus text format as `name{labels}` -> value (labels as written, sorted by the exporter). */
function parse(text: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    m.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return m;
}

const series = (m: Map<string, number>, name: string, labels: Record<string, string> = {}): number | undefined => {
  for (const [k, v] of m) {
    const brace = k.indexOf('{');
    if ((brace < 0 ? k : k.slice(0, brace)) !== name) continue;
    if (Object.entries(labels).every(([l, val]) => k.includes(`${l}="${val}"`))) return v;
  }
  return undefined;
};

describe('metrics and health of the running daemon', () => {
  it('values follow what the test does; health and readiness', async () => {
    const dir = tmp('sg-metrics-');
    const defs = loadDefinitions();
    const a = new LoadCellPhysics({ unitWeightG: 250, items: 4, noiseSigmaG: 0.2, settleMs: 50, rng: mulberry32(1) });
    const b = new LoadCellPhysics({ unitWeightG: 400, items: 6, noiseSigmaG: 0.2, settleMs: 50, rng: mulberry32(2) });
    const sim = new ModbusLoadCellBusSimulator({ definition: defs.get('generic-modbus-loadcell') as ModbusDefinition, slaves: new Map([[1, a], [2, b]]), turnaroundMs: 0 });
    const bus = await serveTcp(sim, '127.0.0.1', 0);
    cleanups.push(() => bus.close());
    const hash = await fastHash(PW);
    const daemon = await startDaemon(
      {
        store_id: STORE,
        data_dir: join(dir, 'state'),
        mqtt: { port: 0, users: usersWithHash(hash, { tech: 'technician', kiosk: 'kiosk' }) },
        http: { host: '127.0.0.1', port: 0 },
        storage: { flush_interval_ms: 10 },
        stability: { window: 3, max_spread_g: 3 },
        buses: [{ id: 'busA', path: bus.url, model: 'generic-modbus-loadcell', poll_interval_ms: 50, timeout_ms: 150, offline_after_misses: 3 }],
        shelves: [{ id: 'shelf1', slots: [{ id: 'a', sensor: { bus: 'busA', address: 1 }, gtin: '04006381333931', unit_weight_g: 250 }, { id: 'b', sensor: { bus: 'busA', address: 2 }, gtin: '05012345678900', unit_weight_g: 400 }] }],
      },
      dir,
    );
    cleanups.push(async () => void (await daemon.stop('SIGKILL')));
    const url = daemon.httpUrl!;
    const scrape = async (): Promise<Map<string, number>> => {
      const r = await fetch(`${url}/metrics`);
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      return parse(await r.text());
    };

    const watch = await connectClient(daemon.mqttPort, 'tech', PW);
    cleanups.push(async () => void (await watch.client.endAsync()));
    await watch.client.subscribeAsync(`shelfgate/v1/${STORE}/device/+/availability`, { qos: 1 });
    const tech = await BusClient.connect({ url: `mqtt://127.0.0.1:${daemon.mqttPort}`, username: 'tech', password: PW, store: STORE });
    cleanups.push(() => tech.close());
    const avail = (id: string) => watch.messages.filter((m) => m.topic.endsWith(`/device/${id}/availability`)).map((m) => (JSON.parse(m.payload) as { state: string }).state).at(-1);
    await waitFor(() => avail('busA.1') === 'online' && avail('busA.2') === 'online', 15_000, 'both load cells online');

    // health
    for (const path of ['/healthz', '/readyz']) {
      const r = await fetch(`${url}${path}`);
      expect(r.status).toBe(200);
      expect(((await r.json()) as { ok: boolean }).ok).toBe(true);
    }

    let m = await scrape();
    expect(series(m, 'shelfgate_ready')).toBe(1);
    expect(series(m, 'shelfgate_devices_configured')).toBe(2);
    expect(series(m, 'shelfgate_devices_online')).toBe(2);
    expect(series(m, 'shelfgate_device_online', { device: 'busA.2' })).toBe(1);
    expect(series(m, 'shelfgate_mqtt_clients')).toBe(2); // the two clients of this test
    const readings0 = series(m, 'shelfgate_source_readings_total', { source: 'busA' }) ?? series(m, 'shelfgate_shelf_readings_total')!;
    expect(readings0).toBeGreaterThan(0);
    // the backlog the metric shows is the one the gateway reports (no central: every stock event waits)
    const backlog = async () => (await tech.request<{ sync: { backlog_count: number } }>('gateway.status', {})).sync.backlog_count;
    await waitFor(async () => (await backlog()) > 0, 15_000, 'the first stock events in the outbox');
    const before = await backlog();
    const metric = series(await scrape(), 'shelfgate_outbox_backlog_events')!;
    const after = await backlog();
    expect(metric).toBeGreaterThanOrEqual(before);
    expect(metric).toBeLessThanOrEqual(after);

    // lookups: 3 found (the slot's GTIN, over HTTP as a kiosk), 1 invalid (wrong check digit)
    const found0 = series(m, 'shelfgate_kiosk_lookups_total', { result: 'found' }) ?? 0;
    const invalid0 = series(m, 'shelfgate_kiosk_lookups_total', { result: 'invalid' }) ?? 0;
    const auth = { authorization: `Basic ${Buffer.from(`kiosk:${PW}`).toString('base64')}` };
    for (let i = 0; i < 3; i++) expect((await fetch(`${url}/api/v1/lookup/4006381333931`, { headers: auth })).status).toBe(200);
    expect((await fetch(`${url}/api/v1/lookup/4006381333932`, { headers: auth })).status).toBe(400);
    const badPw = { authorization: `Basic ${Buffer.from('kiosk:wrong').toString('base64')}` };
    expect((await fetch(`${url}/api/v1/lookup/4006381333931`, { headers: badPw })).status).toBe(401);
    m = await scrape();
    expect(series(m, 'shelfgate_kiosk_lookups_total', { result: 'found' })! - found0).toBe(3);
    // the HTTP server's own: the invalid code (400) and the wrong password (401) are the 4xx so far
    expect(series(m, 'shelfgate_http_errors_total', { class: '4xx' })).toBe(2);
    expect(series(m, 'shelfgate_http_refused_total', { reason: 'bad_credentials' })).toBe(1);
    expect(series(m, 'shelfgate_http_requests_total')).toBeGreaterThanOrEqual(9); // 2 health, 3 scrapes, 5 lookups (this scrape counts once done)
    expect(series(m, 'shelfgate_kiosk_lookups_total', { result: 'invalid' })! - invalid0).toBe(1);
    expect(series(m, 'shelfgate_source_readings_total', { source: 'busA' }) ?? series(m, 'shelfgate_shelf_readings_total')!).toBeGreaterThan(readings0);

    // a load cell goes silent: offline on the bus, then 0 in the metrics and one fewer online
    sim.setFaults(2, { silent: true });
    await waitFor(() => avail('busA.2') === 'offline', 15_000, 'busA.2 offline');
    m = await scrape();
    expect(series(m, 'shelfgate_device_online', { device: 'busA.2' })).toBe(0);
    expect(series(m, 'shelfgate_devices_online')).toBe(1);
    expect(series(m, 'shelfgate_ready')).toBe(1); // an unplugged scale is not unreadiness
    expect((await fetch(`${url}/readyz`)).status).toBe(200);
  });
});
