/**
 * Scanners, whole daemon: the compiled `shelfgate run` and `shelfgate sim scanner` as two separate
 * processes, joined by a real pseudo-terminal pair (socat, made by the simulator; the gateway opens
 * it with serialport). The scanner cycles through a valid EAN-13, the same code with a wrong check
 * digit and a valid EAN-8, with AIM identifiers and CR LF, and sends a line of random bytes now and
 * then (--fault-garbage). Proves: valid reads reach the bus on `scanners/<id>/read` with the bound
 * kiosk id, read by a kiosk user; misreads and garbage are counted by reason (`scanners.list`,
 * asked by that kiosk: a read command) and never reach the bus; the scanner is online on the bus.
 * And a keyboard-wedge scanner configured `kind: hid`, played into a FIFO standing in for its
 * input event device (recorded 24-byte input_event records as literal hex): its reads reach the
 * bus the same way, and a wrong check digit typed is counted.
 */
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BusClient } from '../../src/bus/request-client';
import { loadDefinitions } from '../../src/devices/definitions';
import type { ModbusDefinition } from '../../src/devices/types';
import { ModbusLoadCellBusSimulator } from '../../simulators/modbus-loadcell-sim';
import { LoadCellPhysics, mulberry32 } from '../../simulators/physics';
import { serveTcp } from '../../simulators/serve';
import { CLI, connectClient, startDaemon, tmp, useCleanups, waitFor } from '../helpers/daemon';
import { fastHash, usersWithHash } from '../helpers/users';

const STORE = 'scan';
const PW = 'pw-scan-e2e';
const cleanups = useCleanups();

describe('scanners (whole daemon)', () => {
  it('`shelfgate sim scanner` over a pty: valid reads on the bus for the kiosk, misreads and garbage counted and not published', async () => {
    const dir = tmp('sg-scan-e2e-');
    const ptyDir = mkdtempSync(join(tmpdir(), 'sg-scan-pty-'));
    cleanups.push(() => rmSync(ptyDir, { recursive: true, force: true }));
    const ptyPath = join(ptyDir, 'ttyScanner');
    const sim = spawn(
      process.execPath,
      [CLI, 'sim', 'scanner', '--pty', ptyPath, '--code', '4006381333931', '--code', '4006381333932', '--code', '96385074', '--interval', '100', '--aim', '--terminator', 'crlf', '--fault-garbage', '0.3', '--seed', '7'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    sim.stdout.on('data', (d: Buffer) => (out += d.toString()));
    sim.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const simExited = new Promise<number | null>((r) => sim.on('exit', (code) => r(code)));
    cleanups.push(async () => {
      sim.kill('SIGTERM');
      expect(await simExited).toBe(0);
    });
    const first = await waitFor(() => (out.includes('\n') ? out.split('\n')[0] : null), 20_000, 'the simulator serving');
    expect(first, err).toBe(`scanner: 3 code(s) every 100 ms on pty ${ptyPath} (terminator crlf, AIM ids)`);

    // the config requires a weight bus: one scale, nothing on it
    const physics = new LoadCellPhysics({ unitWeightG: 250, items: 0, noiseSigmaG: 0.1, settleMs: 30, rng: mulberry32(1) });
    const modbus = await serveTcp(new ModbusLoadCellBusSimulator({ definition: loadDefinitions().get('generic-modbus-loadcell') as ModbusDefinition, slaves: new Map([[1, physics]]), turnaroundMs: 0 }), '127.0.0.1', 0);
    cleanups.push(() => modbus.close());
    const hash = await fastHash(PW);
    const daemon = await startDaemon(
      {
        store_id: STORE,
        data_dir: join(dir, 'state'),
        mqtt: { port: 0, users: usersWithHash(hash, { kiosk1: 'kiosk' }) },
        storage: { flush_interval_ms: 10 },
        buses: [{ id: 'bus', path: modbus.url, model: 'generic-modbus-loadcell', poll_interval_ms: 200, timeout_ms: 200 }],
        shelves: [{ id: 'g1', slots: [{ id: 's1', sensor: { bus: 'bus', address: 1 }, gtin: '4006381333931', unit_weight_g: 250 }] }],
        scanners: [{ id: 'pc1', kind: 'serial', port: ptyPath, terminator: 'crlf', aim_prefix: true, kiosk: 'k1', reconnect: { initial_ms: 50, max_ms: 300 } }],
      },
      dir,
    );
    cleanups.push(async () => void (await daemon.stop('SIGKILL')));

    const kiosk = await connectClient(daemon.mqttPort, 'kiosk1', PW);
    cleanups.push(async () => void (await kiosk.client.endAsync()));
    await kiosk.client.subscribeAsync([`shelfgate/v1/${STORE}/scanners/#`, `shelfgate/v1/${STORE}/device/pc1/availability`], { qos: 1 });
    const reads = () => kiosk.messages.filter((m) => m.topic === `shelfgate/v1/${STORE}/scanners/pc1/read`).map((m) => JSON.parse(m.payload) as Record<string, unknown>);
    await waitFor(() => kiosk.messages.some((m) => m.topic.endsWith('/device/pc1/availability') && (JSON.parse(m.payload) as { state: string }).state === 'online'), 15_000, 'pc1 online on the bus');

    const client = await BusClient.connect({ url: `mqtt://127.0.0.1:${daemon.mqttPort}`, username: 'kiosk1', password: PW, store: STORE });
    cleanups.push(() => client.close());
    type Row = { scanner_id: string; kiosk_id: string; online: boolean; reads: number; misreads: number; misreads_by_reason: Record<string, number> };
    const row = async () => ((await client.request('scanners.list', {})) as Row[])[0]!;
    // enough scans for every code of the cycle and some garbage lines
    await waitFor(async () => {
      const r = await row();
      return r.reads >= 4 && (r.misreads_by_reason.bad_check ?? 0) >= 2 && (r.misreads_by_reason.control ?? 0) >= 1;
    }, 30_000, 'reads, bad check digits and garbage counted');
    const r = await row();
    expect(r).toMatchObject({ scanner_id: 'pc1', kiosk_id: 'k1', online: true });
    await waitFor(() => reads().length >= 4, 10_000, 'reads on the bus');
    // only valid codes ever reached the bus, each with the kiosk and its AIM id
    for (const m of reads()) expect([['04006381333931', ']E0'], ['00000096385074', ']E4']]).toContainEqual([m.gtin, m.symbology]);
    expect(reads()[0]).toMatchObject({ scanner_id: 'pc1', kiosk_id: 'k1' });
    expect(out).toMatch(/^garbage [0-9a-f]+$/m);
    expect(out).toMatch(/^scan 4006381333932$/m);
  });

  it('a keyboard-wedge scanner (kind: hid) on a FIFO standing in for its event device: reads on the bus, a misread counted', async () => {
    const dir = tmp('sg-scan-hid-e2e-');
    const devDir = mkdtempSync(join(tmpdir(), 'sg-scan-hid-'));
    cleanups.push(() => rmSync(devDir, { recursive: true, force: true }));
    const fifo = join(devDir, 'usb-Scanner-event-kbd');
    execFileSync('mkfifo', [fifo]);
    const w = openSync(fifo, 'r+'); // keeps a writer present; never blocks (Linux)
    cleanups.push(() => closeSync(w));
    const physics = new LoadCellPhysics({ unitWeightG: 250, items: 0, noiseSigmaG: 0.1, settleMs: 30, rng: mulberry32(1) });
    const modbus = await serveTcp(new ModbusLoadCellBusSimulator({ definition: loadDefinitions().get('generic-modbus-loadcell') as ModbusDefinition, slaves: new Map([[1, physics]]), turnaroundMs: 0 }), '127.0.0.1', 0);
    cleanups.push(() => modbus.close());
    const hash = await fastHash(PW);
    const daemon = await startDaemon(
      {
        store_id: STORE,
        data_dir: join(dir, 'state'),
        mqtt: { port: 0, users: usersWithHash(hash, { kiosk1: 'kiosk' }) },
        storage: { flush_interval_ms: 10 },
        buses: [{ id: 'bus', path: modbus.url, model: 'generic-modbus-loadcell', poll_interval_ms: 200, timeout_ms: 200 }],
        shelves: [{ id: 'g1', slots: [{ id: 's1', sensor: { bus: 'bus', address: 1 }, gtin: '4006381333931', unit_weight_g: 250 }] }],
        scanners: [{ id: 'wedge', kind: 'hid', device: fifo, record_size: 24, kiosk: 'k2', reconnect: { initial_ms: 50, max_ms: 300 } }],
      },
      dir,
    );
    cleanups.push(async () => void (await daemon.stop('SIGKILL')));
    const kiosk = await connectClient(daemon.mqttPort, 'kiosk1', PW);
    cleanups.push(async () => void (await kiosk.client.endAsync()));
    await kiosk.client.subscribeAsync([`shelfgate/v1/${STORE}/scanners/#`, `shelfgate/v1/${STORE}/device/wedge/availability`], { qos: 1 });
    await waitFor(() => kiosk.messages.some((m) => m.topic.endsWith('/device/wedge/availability') && (JSON.parse(m.payload) as { state: string }).state === 'online'), 15_000, 'wedge online on the bus');
    // one press or release of `code` and its SYN_REPORT: tv_sec 0x692f7d80, tv_usec 100000, type 1, code, value
    const key = (code: number, value: 0 | 1): string =>
      '807d2f6900000000a086010000000000' + '0100' + code.toString(16).padStart(2, '0') + '00' + (value ? '01000000' : '00000000') + '807d2f6900000000a0860100000000000000000000000000';
    const typed = (codes: number[]): Buffer => Buffer.from(codes.map((c) => key(c, 1) + key(c, 0)).join('') + key(28, 1) + key(28, 0), 'hex');
    // 96385075 (wrong check digit), then 96385074: KEY_9 = 10, KEY_6 = 7, KEY_3 = 4, KEY_8 = 9, KEY_5 = 6, KEY_0 = 11, KEY_7 = 8, KEY_4 = 5
    writeSync(w, typed([10, 7, 4, 9, 6, 11, 8, 6]));
    writeSync(w, typed([10, 7, 4, 9, 6, 11, 8, 5]));
    const reads = () => kiosk.messages.filter((m) => m.topic === `shelfgate/v1/${STORE}/scanners/wedge/read`).map((m) => JSON.parse(m.payload) as Record<string, unknown>);
    await waitFor(() => reads().length === 1, 15_000, 'the HID read on the bus');
    expect(reads()[0]).toMatchObject({ scanner_id: 'wedge', kiosk_id: 'k2', raw: '96385074', gtin: '00000096385074', symbology: null });
    const client = await BusClient.connect({ url: `mqtt://127.0.0.1:${daemon.mqttPort}`, username: 'kiosk1', password: PW, store: STORE });
    cleanups.push(() => client.close());
    const [row] = (await client.request('scanners.list', {})) as Array<Record<string, unknown>>;
    expect(row).toMatchObject({ scanner_id: 'wedge', kind: 'hid', online: true, reads: 1, misreads: 1, misreads_by_reason: { bad_check: 1 } });
  });
});
