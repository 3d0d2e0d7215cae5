/**
 * The technician CLI against the running daemon (the compiled `shelfgate` commands as child
 * processes, the real daemon, a Modbus shelf bus served over TCP, and one bus whose port nothing
 * listens on): `status`, `devices`, `tail`, `shelf tare`, with and without `--json`; where to connect
 * from the environment; a kiosk user refused; a missing password a usage error (64).
 */
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadDefinitions } from '../../src/devices/definitions';
import type { ModbusDefinition } from '../../src/devices/types';
import { ModbusLoadCellBusSimulator } from '../../simulators/modbus-loadcell-sim';
import { LoadCellPhysics, mulberry32 } from '../../simulators/physics';
import { serveTcp } from '../../simulators/serve';
import { CLI, connectClient, runCli, startDaemon, tmp, useCleanups, waitFor } from '../helpers/daemon';
import { fastHash, usersWithHash } from '../helpers/users';

const STORE = 'tcli';
const PW = 'pw-tcli';
const cleanups = useCleanups();

/** A TCP port nothing listens on (bound, then closed). */
async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('technician CLI against the running daemon', () => {
  it('status, devices, tail and shelf tare; --json; the environment names the gateway; kiosk refused', async () => {
    const dir = tmp('sg-tcli-');
    const defs = loadDefinitions();
    // a1: empty slot with a tray of 80 g on it (to be tared); a2: 6 items
    const a1 = new LoadCellPhysics({ unitWeightG: 250, items: 0, tareG: 80, noiseSigmaG: 0.2, settleMs: 60, rng: mulberry32(1) });
    const a2 = new LoadCellPhysics({ unitWeightG: 400, items: 6, noiseSigmaG: 0.2, settleMs: 60, rng: mulberry32(2) });
    const bus = await serveTcp(new ModbusLoadCellBusSimulator({ definition: defs.get('generic-modbus-loadcell') as ModbusDefinition, slaves: new Map([[1, a1], [2, a2]]), turnaroundMs: 0 }), '127.0.0.1', 0);
    cleanups.push(() => bus.close());
    const hash = await fastHash(PW);
    const config = {
      store_id: STORE,
      data_dir: join(dir, 'state'),
      mqtt: { port: 0, users: usersWithHash(hash, { tech: 'technician', kiosk: 'kiosk' }) },
      storage: { flush_interval_ms: 10 },
      stability: { window: 3, max_spread_g: 3 },
      buses: [
        { id: 'busA', path: bus.url, model: 'generic-modbus-loadcell', poll_interval_ms: 50, timeout_ms: 200 },
        { id: 'busGone', path: `tcp://127.0.0.1:${await deadPort()}`, model: 'generic-modbus-loadcell', poll_interval_ms: 100, timeout_ms: 200 },
      ],
      shelves: [
        { id: 'shelf1', slots: [{ id: 'a', sensor: { bus: 'busA', address: 1 }, gtin: '04006381333931', unit_weight_g: 250 }, { id: 'b', sensor: { bus: 'busA', address: 2 }, gtin: '05012345678900', unit_weight_g: 400 }] },
        { id: 'shelf2', slots: [{ id: 'x', sensor: { bus: 'busGone', address: 1 }, gtin: '04006381333931', unit_weight_g: 250 }] },
      ],
    };
    const daemon = await startDaemon(config, dir);
    cleanups.push(async () => void (await daemon.stop('SIGKILL')));
    const env = { SHELFGATE_URL: `mqtt://127.0.0.1:${daemon.mqttPort}`, SHELFGATE_STORE: STORE, SHELFGATE_USER: 'tech', SHELFGATE_PASSWORD: PW };
    const watch = await connectClient(daemon.mqttPort, 'tech', PW);
    cleanups.push(async () => void (await watch.client.endAsync()));
    await watch.client.subscribeAsync(`shelfgate/v1/${STORE}/device/+/availability`, { qos: 1 });
    const avail = (id: string) => watch.messages.filter((m) => m.topic === `shelfgate/v1/${STORE}/device/${id}/availability`).map((m) => JSON.parse(m.payload) as { state: string }).at(-1)?.state;
    await waitFor(() => avail('busA.1') === 'online' && avail('busA.2') === 'online' && avail('busGone.1') === 'offline', 20_000, 'availability settled');

    // --- status: a screen and JSON
    const status = await runCli(['status'], { env });
    expect(status.stderr).toBe('');
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(new RegExp(`^gateway ${STORE} \\(shelfgate \\d+\\.\\d+\\.\\d+\\), up `, 'm'));
    expect(status.stdout).toMatch(/^devices: 2\/3 online$/m);
    expect(status.stdout).toMatch(/^ {2}OFFLINE busGone\.1 for \d+ s: .+/m);
    expect(status.stdout).toMatch(/^central \(none\): not configured, backlog \d+ event\(s\)/m);
    const sj = JSON.parse((await runCli(['status', '--json'], { env })).stdout) as { devices: { total: number; online: number; offline: Array<{ id: string; last_error: string | null }> }; sync: { backlog_count: number }; features: Record<string, unknown> };
    expect(sj.devices).toMatchObject({ total: 3, online: 2 });
    expect(sj.devices.offline.map((d) => d.id)).toEqual(['busGone.1']);
    expect(sj.devices.offline[0]!.last_error).toMatch(/.+/);
    expect(sj.sync.backlog_count).toBeGreaterThan(0); // the stock events of this run (transport none keeps them)
    expect(Object.keys(sj.features)).toContain('shelves');

    // --- devices
    const devices = await runCli(['devices'], { env });
    expect(devices.code).toBe(0);
    const lines = devices.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^DEVICE\s+STATE\s+FOR\s+KIND\s+WHERE\s+READ\/TIMEOUT\/BAD\s+LAST ERROR$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/).slice(0, 2))).toEqual([['busA.1', 'online'], ['busA.2', 'online'], ['busGone.1', 'offline']]);
    const dj = JSON.parse((await runCli(['devices', '--json'], { env })).stdout) as Array<{ id: string; state: string; kind: string; source: string; counters: { readings: number } | null }>;
    expect(dj.find((d) => d.id === 'busA.1')).toMatchObject({ state: 'online', kind: 'modbus-rtu', source: expect.stringContaining('busA') });
    expect(dj.find((d) => d.id === 'busA.1')!.counters!.readings).toBeGreaterThan(0);

    // --- tail: the retained availability of the three devices, then it stops by itself
    const t = await runCli(['tail', 'device/+/availability', '--count', '3', '--json'], { env });
    expect(t.code).toBe(0);
    const tailed = t.stdout.trim().split('\n').map((l) => JSON.parse(l) as { topic: string; retained: boolean; payload: { state: string } });
    expect(tailed.map((m) => m.topic).sort()).toEqual(['device/busA.1/availability', 'device/busA.2/availability', 'device/busGone.1/availability']);
    expect(tailed.every((m) => m.retained)).toBe(true);
    // a live message: the tail prints slot b's retained stock first; once that line is out it is
    // subscribed, and a pick of 2 is printed as it comes (the line format, without --json)
    const live = spawn(process.execPath, [CLI, 'tail', 'shelf/shelf1/slot/b/stock', '--count', '2'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    cleanups.push(() => void live.kill('SIGKILL'));
    let out = '';
    live.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => live.once('exit', (code) => r(code)));
    await waitFor(() => out.includes('(retained)'), 10_000, 'the retained stock line');
    a2.pick(2);
    expect(await exited).toBe(0);
    const tlLines = out.trim().split('\n');
    expect(tlLines[0]).toMatch(/^\d\d:\d\d:\d\d\.\d{3} \(retained\) shelf\/shelf1\/slot\/b\/stock \{.*"count":6/);
    expect(tlLines[1]).toMatch(/^\d\d:\d\d:\d\d\.\d{3} shelf\/shelf1\/slot\/b\/stock \{.*"count":4/);

    // --- shelf tare: the tray's 80 g become the tare
    const tare = await runCli(['shelf', 'tare', 'shelf1', 'a', '--json'], { env });
    expect(tare.stderr).toBe('');
    expect(tare.code).toBe(0);
    const tj = JSON.parse(tare.stdout) as { tare_g: number; count: number };
    expect(tj.tare_g).toBeGreaterThan(78);
    expect(tj.tare_g).toBeLessThan(82);
    expect(tj.count).toBe(0);
    const human = await runCli(['shelf', 'tare', 'shelf1', 'a'], { env });
    expect(human.stdout).toMatch(/^tared shelf1\/a: tare \d+(\.\d+)? g, count now 0$/m);
    // an unknown slot: the gateway's error, exit 1
    const unknown = await runCli(['shelf', 'tare', 'shelf1', 'zz'], { env });
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^shelfgate shelf tare: .*zz/m);

    // --- a kiosk may read the status but not tare
    const kioskEnv = { ...env, SHELFGATE_USER: 'kiosk' };
    const refused = await runCli(['shelf', 'tare', 'shelf1', 'a'], { env: kioskEnv });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^shelfgate shelf tare: .*(not allowed|calibrate permission)/m);

    // --- where to connect missing: a usage error naming what to set
    const noPw = await runCli(['status'], { env: { ...env, SHELFGATE_PASSWORD: '' } });
    expect(noPw.code).toBe(64);
    expect(noPw.stderr).toBe('shelfgate status: set the technician password in $SHELFGATE_PASSWORD\n');
    const noStore = await runCli(['devices', '-u', 'tech'], { env: { SHELFGATE_PASSWORD: PW, SHELFGATE_STORE: '', SHELFGATE_URL: env.SHELFGATE_URL } });
    expect(noStore.code).toBe(64);
    expect(noStore.stderr).toBe('shelfgate devices: set --store (or $SHELFGATE_STORE)\n');
    const badCount = await runCli(['tail', '--count', '0'], { env });
    expect(badCount.code).toBe(64);
    expect(badCount.stderr).toMatch(/--count takes a whole number of at least 1/);
  });
});
