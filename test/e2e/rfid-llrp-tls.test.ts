/**
 * LLRP over TLS, whole daemon: the real `shelfgate run` and two LLRP reader simulators serving TLS
 * on 127.0.0.1 (port 0) with a certificate from a test CA (openssl). Reader `good` is configured
 * with that CA: its tags arrive on the bus. Reader `rogue` presents a certificate of another CA:
 * the gateway refuses the handshake, reports the reader offline with the certificate error, and
 * takes no tag from it, while `good` reads on.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BusClient } from '../../src/bus/request-client';
import { loadDefinitions } from '../../src/devices/definitions';
import type { ModbusDefinition } from '../../src/devices/types';
import { ModbusLoadCellBusSimulator } from '../../simulators/modbus-loadcell-sim';
import { LoadCellPhysics, mulberry32 } from '../../simulators/physics';
import { LlrpReaderSimulator } from '../../simulators/rfid/llrp-sim';
import { TagPopulation } from '../../simulators/rfid/population';
import { serveTcp } from '../../simulators/serve';
import { connectClient, startDaemon, tmp, useCleanups, waitFor } from '../helpers/daemon';
import { makeLeafCert, makeTestCa } from '../helpers/mosquitto';
import { fastHash, usersWithHash } from '../helpers/users';

const STORE = 'rft';
const PW = 'pw-llrp-tls';
const cleanups = useCleanups();

describe('RFID: LLRP over TLS (whole daemon)', () => {
  it('reads from a reader whose certificate the configured CA signed; refuses one signed by another CA and reports why', async () => {
    const dir = tmp('sg-rfid-llrp-tls-');
    const pki = join(dir, 'pki');
    mkdirSync(pki);
    const ca = makeTestCa(pki, 'store-ca');
    const other = makeTestCa(pki, 'other-ca');
    const goodCert = makeLeafCert(pki, ca, 'reader-good');
    const rogueCert = makeLeafCert(pki, other, 'reader-rogue');
    const tlsOf = (c: { certFile: string; keyFile: string }) => ({ cert: readFileSync(c.certFile), key: readFileSync(c.keyFile) });

    // zone 0 is seen by `good`, zone 1 by `rogue`
    const population = new TagPopulation({ tags: 8, gtins: 2, zones: 2, seed: 17, missProbability: 0, rssiSigmaDb: 1 });
    const good = new LlrpReaderSimulator({ population, antennas: 1, antennaZones: [0], roundMs: 40, rng: mulberry32(5), tls: tlsOf(goodCert) });
    const rogue = new LlrpReaderSimulator({ population, antennas: 1, antennaZones: [1], roundMs: 40, rng: mulberry32(6), tls: tlsOf(rogueCert) });
    await good.start();
    cleanups.push(() => good.stop());
    await rogue.start();
    cleanups.push(() => rogue.stop());
    expect(good.url).toMatch(/^tls:\/\/127\.0\.0\.1:\d+$/);

    const defs = loadDefinitions();
    const physics = new LoadCellPhysics({ unitWeightG: 250, items: 0, noiseSigmaG: 0.1, settleMs: 30, rng: mulberry32(1) });
    const modbus = await serveTcp(new ModbusLoadCellBusSimulator({ definition: defs.get('generic-modbus-loadcell') as ModbusDefinition, slaves: new Map([[1, physics]]), turnaroundMs: 0 }), '127.0.0.1', 0);
    cleanups.push(() => modbus.close());
    const hash = await fastHash(PW);
    const zoneCfg = { arrive_after: 2, window_ms: 1500, read_cycle_ms: 50, depart_after_ms: 5000 };
    const llrp = { keepalive_ms: 300, missed_keepalives: 3, reconnect: { initial_ms: 50, max_ms: 300 } };
    const config = {
      store_id: STORE,
      data_dir: join(dir, 'state'),
      mqtt: { port: 0, users: usersWithHash(hash, { tech: 'technician', kiosk: 'kiosk' }) },
      storage: { flush_interval_ms: 10 },
      buses: [{ id: 'bus', path: modbus.url, model: 'generic-modbus-loadcell', poll_interval_ms: 100, timeout_ms: 200 }],
      shelves: [
        { id: 'g1', slots: [{ id: 's1', sensor: { bus: 'bus', address: 1 } }] },
        { id: 'rail', slots: [{ id: 'a' }, { id: 'b' }] },
      ],
      rfid: {
        readers: [
          { id: 'good', kind: 'llrp', address: `127.0.0.1:${good.port}`, tls: { ca_file: ca.certFile }, ...llrp },
          { id: 'rogue', kind: 'llrp', address: `127.0.0.1:${rogue.port}`, tls: { ca_file: ca.certFile }, ...llrp },
        ],
        zones: [
          { id: 'rail-a', location: 'rail/a', antennas: [{ reader: 'good', antenna: 1 }], ...zoneCfg },
          { id: 'rail-b', location: 'rail/b', antennas: [{ reader: 'rogue', antenna: 1 }], ...zoneCfg },
        ],
        tick_ms: 50,
      },
    };
    const daemon = await startDaemon(config, dir);
    cleanups.push(async () => void (await daemon.stop('SIGKILL')));
    const watch = await connectClient(daemon.mqttPort, 'kiosk', PW);
    cleanups.push(async () => void (await watch.client.endAsync()));
    const msgs: Array<{ topic: string; body: Record<string, unknown> | null }> = [];
    watch.client.on('message', (topic, payload) => msgs.push({ topic, body: payload.length ? (JSON.parse(payload.toString()) as Record<string, unknown>) : null }));
    await watch.client.subscribeAsync([`shelfgate/v1/${STORE}/rfid/#`, `shelfgate/v1/${STORE}/device/+/availability`], { qos: 1 });
    const tech = await BusClient.connect({ url: `mqtt://127.0.0.1:${daemon.mqttPort}`, username: 'tech', password: PW, store: STORE });
    cleanups.push(() => tech.close());
    const arrivals = (zone: string) => msgs.filter((m) => m.topic === `shelfgate/v1/${STORE}/rfid/zone/${zone}/event` && m.body?.kind === 'arrival').map((m) => m.body!.epc as string);
    const avail = (reader: string) => msgs.filter((m) => m.topic === `shelfgate/v1/${STORE}/device/${reader}/availability`).at(-1)?.body;

    const inA = population.inZone(0).map((t) => t.epcHex);
    await waitFor(() => arrivals('rail-a').length === inA.length, 30_000, 'every tag of the good reader arrived');
    expect(arrivals('rail-a').sort()).toEqual(inA.sort());
    expect(avail('good')?.state).toBe('online');
    expect(good.stats.connections).toBeGreaterThanOrEqual(1);

    // the rogue reader: offline, with the certificate error as the reason
    await waitFor(() => avail('rogue')?.state === 'offline' && /certificate|self.signed|unable to verify/i.test(String(avail('rogue')?.reason)), 15_000, 'rogue reported offline with the certificate error');
    type Row = { reader_id: string; online: boolean; readings: number };
    const rows = async () => (await tech.request('rfid.readers', {})) as Row[];
    // the good reader reads on (time passes in the daemon), and still no session with the rogue:
    // its simulator counts a connection only once a handshake completed
    const goodReads = (await rows()).find((r) => r.reader_id === 'good')!.readings;
    await waitFor(async () => (await rows()).find((r) => r.reader_id === 'good')!.readings > goodReads + 20, 15_000, 'good reads on');
    expect(rogue.stats.connections).toBe(0);
    expect(arrivals('rail-b')).toEqual([]);
    const rogueRow = (await rows()).find((r) => r.reader_id === 'rogue')!;
    expect(rogueRow).toMatchObject({ online: false, readings: 0 });
  });
});
