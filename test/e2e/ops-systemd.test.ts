/**
 * Whole daemon under a stand-in for systemd: the test binds the NOTIFY_SOCKET (a real AF_UNIX
 * datagram socket, as systemd does) and runs the compiled `shelfgate run` with a watchdog. The
 * STATUS= line is the gateway's readiness line (ops/health.ts, the one /readyz answers from):
 * - READY=1 carries `STATUS=ready: ...`;
 * - a scale that stops answering changes STATUS to `1/2 devices online`, and the watchdog pings go
 *   on (an offline device is not unreadiness: no restart for an unplugged scale);
 * - the scale back: `2/2 devices online`; SIGTERM: STOPPING=1.
 */
import { describe, expect, it } from 'vitest';
import path from 'node:path';
import type { UnixDgramModule, UnixDgramSocket } from '../../src/systemd/notify';
import { loadDefinitions } from '../../src/devices/definitions';
import type { ModbusDefinition } from '../../src/devices/types';
import { ModbusLoadCellBusSimulator } from '../../simulators/modbus-loadcell-sim';
import { LoadCellPhysics, mulberry32 } from '../../simulators/physics';
import { serveTcp } from '../../simulators/serve';
import { startDaemon, tmp, useCleanups, waitFor } from '../helpers/daemon';

type ReceiverSocket = UnixDgramSocket & { bind(path: string): void; on(event: 'message', listener: (buf: Buffer) => void): unknown };
const dgram = require('unix-dgram') as Omit<UnixDgramModule, 'createSocket'> & { createSocket(type: 'unix_dgram'): ReceiverSocket };

describe('systemd status and watchdog follow readiness (whole daemon)', () => {
  const cleanups = useCleanups();

  it('READY with the readiness line, STATUS following devices, watchdog pings kept while a scale is offline, STOPPING', async () => {
    const dir = tmp('sg-ops-systemd-');
    const socketPath = path.join(dir, 'notify');
    const received: string[] = [];
    const receiver = dgram.createSocket('unix_dgram');
    receiver.on('message', (buf: Buffer) => void received.push(buf.toString('utf8')));
    receiver.bind(socketPath);
    cleanups.push(() => receiver.close());

    const defs = loadDefinitions();
    const sim = new ModbusLoadCellBusSimulator({
      definition: defs.get('generic-modbus-loadcell') as ModbusDefinition,
      slaves: new Map([
        [1, new LoadCellPhysics({ unitWeightG: 250, items: 4, noiseSigmaG: 0.3, settleMs: 60, rng: mulberry32(3) })],
        [2, new LoadCellPhysics({ unitWeightG: 100, items: 6, noiseSigmaG: 0.3, settleMs: 60, rng: mulberry32(4) })],
      ]),
      turnaroundMs: 0,
    });
    const tcp = await serveTcp(sim, '127.0.0.1', 0);
    cleanups.push(() => tcp.close());
    const config = {
      store_id: 'st-systemd',
      data_dir: dir,
      mqtt: { port: 0 },
      buses: [{ id: 'bus1', path: tcp.url, model: 'generic-modbus-loadcell', poll_interval_ms: 50, timeout_ms: 200, offline_after_misses: 3 }],
      shelves: [{ id: 'sh1', slots: [{ id: 'a', sensor: { bus: 'bus1', address: 1 }, unit_weight_g: 250 }, { id: 'b', sensor: { bus: 'bus1', address: 2 }, unit_weight_g: 100 }] }],
    };
    // WATCHDOG_USEC 1 s: a ping every 500 ms
    const daemon = await startDaemon(config, dir, 20_000, { NOTIFY_SOCKET: socketPath, WATCHDOG_USEC: '1000000' });
    cleanups.push(() => daemon.stop().then(() => undefined));

    const ready = await waitFor(() => received.find((m) => m.startsWith('READY=1')), 10_000, 'READY=1');
    expect(ready).toMatch(/^READY=1\nSTATUS=ready: mqtt listening on 127\.0\.0\.1:\d+; started; [0-2]\/2 devices online$/);
    await waitFor(() => received.some((m) => m.startsWith('STATUS=') && m.endsWith('; started; 2/2 devices online')), 15_000, 'STATUS with both scales online');

    sim.setFaults(2, { silent: true });
    await waitFor(() => received.some((m) => m === `STATUS=ready: mqtt listening on 127.0.0.1:${daemon.mqttPort}; started; 1/2 devices online`), 15_000, 'STATUS with one scale offline');
    const pingsAt = received.length;
    await waitFor(() => received.slice(pingsAt).filter((m) => m === 'WATCHDOG=1').length >= 3, 10_000, 'three watchdog pings while the scale is offline');

    sim.setFaults(2, {});
    await waitFor(() => received.slice(pingsAt).some((m) => m.startsWith('STATUS=') && m.endsWith('2/2 devices online')), 15_000, 'STATUS with both back');

    expect(await daemon.stop()).toBe(0);
    await waitFor(() => received.some((m) => m.startsWith('STOPPING=1')), 5_000, 'STOPPING=1');
  });
});
