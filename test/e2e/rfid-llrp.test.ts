/**
 * RFID over LLRP, whole daemon: the real `shelfgate run` process and two in-process LLRP reader
 * simulators on 127.0.0.1 (port 0) sharing one tag population, plus the reference central over
 * HTTP. `fit` has two antennas, one fitting room each (two zones, so a periodic trigger: each zone
 * reads in its own slot of the period); `back` has one antenna on the back room (immediate).
 * Proves: tags arrive in their zones on the bus and at central; a tag moved between the two zones
 * of one reader is exactly one departure and one arrival (no flapping); a reader pulled mid-report
 * (half an RO_ACCESS_REPORT with an unknown EPC, then a reboot) goes offline on the bus, its zone is
 * held (no departure while it is down, proven by the other reader reading on for longer than the
 * departure time), it comes back, the cut report is counted, and it made no phantom tag.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BusClient } from '../../src/bus/request-client';
import { loadDefinitions } from '../../src/devices/definitions';
import type { ModbusDefinition } from '../../src/devices/types';
import { silentLogger } from '../../src/log';
import { CentralSimulator } from '../../simulators/central';
import { ModbusLoadCellBusSimulator } from '../../simulators/modbus-loadcell-sim';
import { LoadCellPhysics, mulberry32 } from '../../simulators/physics';
import { LlrpReaderSimulator } from '../../simulators/rfid/llrp-sim';
import { TagPopulation } from '../../simulators/rfid/population';
import { serveTcp } from '../../simulators/serve';
import { connectClient, startDaemon, tmp, useCleanups, waitFor } from '../helpers/daemon';
import { fastHash, usersWithHash } from '../helpers/users';

const STORE = 'rfl';
const PW = 'pw-llrp';
const cleanups = useCleanups();
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/**
 * The first 20 of the 32 bytes of an RO_ACCESS_REPORT (LLRP 1.0.1, written by hand): version 1 and
 * type 61 (0x043D), length 32, id 0xFF01; TagReportData (type 240, length 22) with EPC-96 (TV 13)
 * 3014DEADBEEF000000009999, an EPC no simulated tag has; the cut falls inside the EPC.
 */
const HALF_REPORT = hex('04 3D 00000020 0000FF01  00F0 0016  8D 3014DEADBEEF0000');

interface Msg {
  topic: string;
  body: Record<string, unknown> | null;
}

type ReaderRow = { reader_id: string; online: boolean; readings: number; noiseBytes: number };

async function rig() {
  const dir = tmp('sg-rfid-llrp-e2e-');
  const central = new CentralSimulator({ host: '127.0.0.1', port: 0, token: 'tok', storeIds: [STORE], log: silentLogger(), seed: 5 });
  await central.start();
  cleanups.push(() => central.stop());
  writeFileSync(join(dir, 'token'), 'tok\n', { mode: 0o600 });
  // zone 0: fitting room A (fit antenna 1), zone 1: fitting room B (fit antenna 2), zone 2: the back room (back antenna 1)
  const population = new TagPopulation({ tags: 12, gtins: 3, zones: 3, seed: 13, missProbability: 0.05, rssiSigmaDb: 1 });
  const fit = new LlrpReaderSimulator({ population, antennas: 2, antennaZones: [0, 1], roundMs: 30, rng: mulberry32(3) });
  const back = new LlrpReaderSimulator({ population, antennas: 1, antennaZones: [2], roundMs: 40, rng: mulberry32(4) });
  await fit.start();
  cleanups.push(() => fit.stop());
  await back.start();
  cleanups.push(() => back.stop());
  // the config requires a weight bus: one scale, nothing on it
  const defs = loadDefinitions();
  const physics = new LoadCellPhysics({ unitWeightG: 250, items: 0, noiseSigmaG: 0.1, settleMs: 30, rng: mulberry32(1) });
  const modbus = await serveTcp(new ModbusLoadCellBusSimulator({ definition: defs.get('generic-modbus-loadcell') as ModbusDefinition, slaves: new Map([[1, physics]]), turnaroundMs: 0 }), '127.0.0.1', 0);
  cleanups.push(() => modbus.close());
  const hash = await fastHash(PW);
  const zoneCfg = { arrive_after: 2, window_ms: 1500, read_cycle_ms: 50, depart_after_ms: 2000 };
  const llrp = { keepalive_ms: 300, missed_keepalives: 3, reconnect: { initial_ms: 50, max_ms: 300 } };
  const config = {
    store_id: STORE,
    data_dir: join(dir, 'state'),
    mqtt: { port: 0, users: usersWithHash(hash, { tech: 'technician', kiosk: 'kiosk' }) },
    storage: { flush_interval_ms: 10 },
    sync: { transport: 'https', https: { url: central.url, token_file: join(dir, 'token'), request_timeout_ms: 2000 }, long_poll_s: 1, backoff: { initial_ms: 50, max_ms: 500 } },
    buses: [{ id: 'bus', path: modbus.url, model: 'generic-modbus-loadcell', poll_interval_ms: 100, timeout_ms: 200 }],
    shelves: [
      { id: 'g1', slots: [{ id: 's1', sensor: { bus: 'bus', address: 1 }, gtin: population.gtins[1], unit_weight_g: 250 }] },
      { id: 'fit', slots: [{ id: 'a' }, { id: 'b' }] },
      { id: 'back', slots: [{ id: 'room', gtin: population.gtins[0] }] },
    ],
    rfid: {
      readers: [
        // host:port without tcp:// (the LLRP address form); two zones share the reader's period
        { id: 'fit', kind: 'llrp', address: `127.0.0.1:${fit.port}`, antenna_ports: 2, trigger: { periodic: { period_ms: 300, duration_ms: 120 } }, ...llrp },
        { id: 'back', kind: 'llrp', address: back.url, ...llrp },
      ],
      zones: [
        { id: 'fit-a', location: 'fit/a', antennas: [{ reader: 'fit', antenna: 1 }], ...zoneCfg },
        { id: 'fit-b', location: 'fit/b', antennas: [{ reader: 'fit', antenna: 2 }], ...zoneCfg },
        { id: 'backroom', location: 'back/room', antennas: [{ reader: 'back', antenna: 1 }], ...zoneCfg },
      ],
      handover_margin_db: 10,
      tick_ms: 50,
    },
  };
  const daemon = await startDaemon(config, dir);
  cleanups.push(async () => void (await daemon.stop('SIGKILL')));
  const watch = await connectClient(daemon.mqttPort, 'kiosk', PW);
  cleanups.push(async () => void (await watch.client.endAsync()));
  const msgs: Msg[] = [];
  watch.client.on('message', (topic, payload) => msgs.push({ topic, body: payload.length ? (JSON.parse(payload.toString()) as Record<string, unknown>) : null }));
  await watch.client.subscribeAsync([`shelfgate/v1/${STORE}/rfid/#`, `shelfgate/v1/${STORE}/device/+/availability`], { qos: 1 });
  const tech = await BusClient.connect({ url: `mqtt://127.0.0.1:${daemon.mqttPort}`, username: 'tech', password: PW, store: STORE });
  cleanups.push(() => tech.close());
  const events = (zone?: string) => msgs.filter((m) => m.topic.endsWith('/event') && (zone === undefined || m.topic === `shelfgate/v1/${STORE}/rfid/zone/${zone}/event`)).map((m) => m.body!);
  const present = (zone: number) => population.inZone(zone).map((t) => t.epcHex);
  const reader = async (id: string) => ((await tech.request('rfid.readers', {})) as ReaderRow[]).find((x) => x.reader_id === id)!;
  const allArrived = () => waitFor(() => [['fit-a', 0], ['fit-b', 1], ['backroom', 2]].every(([z, i]) => events(z as string).filter((e) => e.kind === 'arrival').length === present(i as number).length), 30_000, 'every tag arrived');
  return { central, population, fit, back, daemon, tech, msgs, events, present, reader, allArrived };
}

describe('RFID over LLRP (whole daemon)', () => {
  it('tags arrive in their zones (bus, central); a tag moved between two zones of one reader is one departure and one arrival', async () => {
    const r = await rig();
    await r.allArrived();
    expect(r.events('fit-a').map((e) => e.epc).sort()).toEqual(r.present(0).sort());
    expect(r.events('fit-b').map((e) => e.epc).sort()).toEqual(r.present(1).sort());
    expect(r.events('backroom').map((e) => e.epc).sort()).toEqual(r.present(2).sort());
    expect(r.events('fit-b')[0]).toMatchObject({ zone_id: 'fit-b', reader_id: 'fit', antenna: 2, location_id: 'fit/b' });
    expect(r.events('backroom')[0]).toMatchObject({ reader_id: 'back', antenna: 1 });
    // one ROSpec per zone on the two-zone reader, each on its own antenna
    expect(r.fit.roSpecs().map((s) => [s.id, s.antennas])).toEqual([[1, [1]], [2, [2]]]);
    await waitFor(() => r.central.receivedEvents(STORE).filter((e) => e.kind === 'arrival').length === r.population.tags.length, 20_000, 'arrivals at central');
    expect(new Set(r.central.receivedEvents(STORE).filter((e) => e.kind === 'arrival').map((e) => e.device_id))).toEqual(new Set(['rfid/fit-a', 'rfid/fit-b', 'rfid/backroom']));

    // a tag carried from fitting room A to B (both seen by the same reader)
    const [moved] = r.population.move({ count: 1, from: 0, to: 1 });
    const tagEvents = (epc: string) => r.events().filter((e) => e.epc === epc).map((e) => `${e.kind as string}:${e.zone_id as string}`);
    await waitFor(() => tagEvents(moved!.epcHex).length === 3, 20_000, 'the moved tag departed and arrived');
    // a second move later is the barrier: once it is done, the first tag had time to flap, and did not
    const second = r.population.inZone(1).find((t) => t !== moved)!;
    second.zone = 0;
    await waitFor(() => tagEvents(second!.epcHex).length === 3, 20_000, 'the second move');
    expect(tagEvents(moved!.epcHex)).toEqual(['arrival:fit-a', 'departure:fit-a', 'arrival:fit-b']);
    expect(tagEvents(second!.epcHex)).toEqual(['arrival:fit-b', 'departure:fit-b', 'arrival:fit-a']);
    expect(r.events('fit-b').find((e) => e.epc === moved!.epcHex && e.kind === 'arrival')).toMatchObject({ from_zone: 'fit-a' });
    expect(r.events().filter((e) => e.kind === 'departure')).toHaveLength(2);
  });

  it('a reader pulled mid-report goes offline, its zone is held (no departures), it comes back, and the cut report makes no phantom tag', async () => {
    const r = await rig();
    await r.allArrived();
    const avail = () => r.msgs.filter((m) => m.topic === `shelfgate/v1/${STORE}/device/back/availability`).at(-1)?.body;
    await waitFor(() => avail()?.state === 'online', 10_000, 'back online on the bus');
    const before = await r.reader('back');
    const departures = r.events().filter((e) => e.kind === 'departure').length;
    // half a report reaches the gateway, then the reader loses power (down 2.5 s, longer than depart_after_ms)
    const up = new Promise<void>((resolve) => r.back.once('up', () => resolve()));
    r.back.injectGarbage(HALF_REPORT);
    r.back.reboot(2500);
    await waitFor(() => avail()?.state === 'offline', 10_000, 'back offline on the bus');
    // the other reader keeps reading for longer than the departure time: proof that time passed in the daemon
    const fitReads = (await r.reader('fit')).readings;
    await waitFor(async () => (await r.reader('fit')).readings > fitReads + 100, 30_000, 'fit reads while back is down');
    await up;
    expect(r.events().filter((e) => e.kind === 'departure')).toHaveLength(departures);
    await waitFor(() => avail()?.state === 'online', 15_000, 'back online again');
    const back = await r.reader('back');
    await waitFor(async () => (await r.reader('back')).readings > back.readings + 20, 10_000, 'reads after coming back');
    // the cut report was counted as noise, never a tag
    expect((await r.reader('back')).noiseBytes).toBeGreaterThanOrEqual(before.noiseBytes + HALF_REPORT.length);
    const known = new Set(r.population.tags.map((t) => t.epcHex));
    expect(r.events().filter((e) => !known.has(e.epc as string))).toEqual([]);
    expect(r.events().filter((e) => e.kind === 'departure')).toEqual([]);
    // the back room's tags stayed present through the outage: no second arrival, the zone's count unchanged
    expect(r.events('backroom').filter((e) => e.kind === 'arrival')).toHaveLength(r.present(2).length);
    const zones = (await r.tech.request('rfid.zones', { tags: false })) as Array<{ zone_id: string; tags_present: number }>;
    expect(zones.map((z) => [z.zone_id, z.tags_present])).toEqual([['fit-a', r.present(0).length], ['fit-b', r.present(1).length], ['backroom', r.present(2).length]]);
  });
});
