/**
 * RFID, whole daemon: the real `shelfgate run` process, two R200 module simulators sharing one tag
 * population, one over a real pseudo-terminal (socat, the gateway opens it with serialport) and
 * one over TCP (a ser2net-like serial server), and the reference central over HTTP. Proves: tags
 * arrive in their zones (bus and central), counts per GTIN are retained on the bus and the count of
 * the location's GTIN is that location's stock in SQLite, a scripted move is exactly one departure
 * and one arrival, a garbage burst is counted and makes no phantom tag, and a reader that stops
 * answering goes offline on the bus (its tags kept) and comes back.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { BusClient } from '../../src/bus/request-client';
import { loadDefinitions } from '../../src/devices/definitions';
import type { ModbusDefinition } from '../../src/devices/types';
import { silentLogger } from '../../src/log';
import { CentralSimulator } from '../../simulators/central';
import { ModbusLoadCellBusSimulator } from '../../simulators/modbus-loadcell-sim';
import { LoadCellPhysics, mulberry32 } from '../../simulators/physics';
import { TagPopulation } from '../../simulators/rfid/population';
import { R200Simulator } from '../../simulators/rfid/r200-sim';
import { servePty, serveTcp } from '../../simulators/serve';
import { connectClient, startDaemon, tmp, useCleanups, waitFor } from '../helpers/daemon';
import { fastHash, usersWithHash } from '../helpers/users';

const STORE = 'rf';
const PW = 'pw-rfid';
const cleanups = useCleanups();
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

interface Msg {
  topic: string;
  body: Record<string, unknown> | null;
  retain: boolean;
}

async function rig() {
  const dir = tmp('sg-rfid-e2e-');
  const ptyDir = mkdtempSync(join(tmpdir(), 'sg-rfid-pty-'));
  cleanups.push(() => rmSync(ptyDir, { recursive: true, force: true }));
  const central = new CentralSimulator({ host: '127.0.0.1', port: 0, token: 'tok', storeIds: [STORE], log: silentLogger(), seed: 3 });
  await central.start();
  cleanups.push(() => central.stop());
  writeFileSync(join(dir, 'token'), 'tok\n', { mode: 0o600 });
  // zone 0: the back room, read over the pty; zone 1: the sales floor, read over TCP
  const population = new TagPopulation({ tags: 12, gtins: 3, zones: 2, seed: 11, missProbability: 0.05, rssiSigmaDb: 1 });
  const back = new R200Simulator({ population, zone: 0, roundMs: 40 });
  const floor = new R200Simulator({ population, zone: 1, roundMs: 40 });
  const pty = await servePty(back, join(ptyDir, 'ttyR200'));
  cleanups.push(() => pty.close());
  const tcp = await serveTcp(floor, '127.0.0.1', 0);
  cleanups.push(() => tcp.close());
  // the config requires a weight bus: one scale, nothing on it
  const defs = loadDefinitions();
  const physics = new LoadCellPhysics({ unitWeightG: 250, items: 0, noiseSigmaG: 0.1, settleMs: 30, rng: mulberry32(1) });
  const modbus = await serveTcp(new ModbusLoadCellBusSimulator({ definition: defs.get('generic-modbus-loadcell') as ModbusDefinition, slaves: new Map([[1, physics]]), turnaroundMs: 0 }), '127.0.0.1', 0);
  cleanups.push(() => modbus.close());
  const hash = await fastHash(PW);
  const zoneCfg = { arrive_after: 2, window_ms: 1500, read_cycle_ms: 50, depart_after_ms: 1500 };
  const config = {
    store_id: STORE,
    data_dir: join(dir, 'state'),
    mqtt: { port: 0, users: usersWithHash(hash, { tech: 'technician', kiosk: 'kiosk' }) },
    storage: { flush_interval_ms: 10 },
    sync: { transport: 'https', https: { url: central.url, token_file: join(dir, 'token'), request_timeout_ms: 2000 }, long_poll_s: 1, backoff: { initial_ms: 50, max_ms: 500 } },
    buses: [{ id: 'bus', path: modbus.url, model: 'generic-modbus-loadcell', poll_interval_ms: 100, timeout_ms: 200 }],
    shelves: [
      { id: 'g1', slots: [{ id: 's1', sensor: { bus: 'bus', address: 1 }, gtin: population.gtins[1], unit_weight_g: 250 }, { id: 'floor', gtin: population.gtins[0] }] },
      { id: 'back', slots: [{ id: 'room' }] },
    ],
    rfid: {
      readers: [
        { id: 'rpty', kind: 'm100', path: pty.url, tx_power_dbm: 20, probe_ms: 200, offline_after_ms: 1000, reconnect: { initial_ms: 50, max_ms: 300 } },
        { id: 'rtcp', kind: 'm100', path: tcp.url, probe_ms: 200, offline_after_ms: 1000, reconnect: { initial_ms: 50, max_ms: 300 } },
      ],
      zones: [
        { id: 'backroom', location: 'back/room', antennas: [{ reader: 'rpty' }], ...zoneCfg },
        { id: 'floor', location: 'g1/floor', antennas: [{ reader: 'rtcp' }], ...zoneCfg },
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
  watch.client.on('message', (topic, payload, packet) => msgs.push({ topic, body: payload.length ? (JSON.parse(payload.toString()) as Record<string, unknown>) : null, retain: packet.retain }));
  await watch.client.subscribeAsync([`shelfgate/v1/${STORE}/rfid/#`, `shelfgate/v1/${STORE}/device/+/availability`], { qos: 1 });
  const tech = await BusClient.connect({ url: `mqtt://127.0.0.1:${daemon.mqttPort}`, username: 'tech', password: PW, store: STORE });
  cleanups.push(() => tech.close());
  const events = (zone?: string) => msgs.filter((m) => m.topic.endsWith('/event') && (zone === undefined || m.topic === `shelfgate/v1/${STORE}/rfid/zone/${zone}/event`)).map((m) => m.body!);
  /** The newest count of a GTIN in a zone on the bus (0 once its retained message was cleared). */
  const count = (zone: string, gtin: string): number | undefined => {
    const m = msgs.filter((x) => x.topic === `shelfgate/v1/${STORE}/rfid/zone/${zone}/count/${gtin}`).at(-1);
    return m === undefined ? undefined : m.body === null ? 0 : (m.body.count as number);
  };
  const present = (zone: number) => population.inZone(zone).map((t) => t.epcHex);
  return { dir, central, population, back, floor, daemon, tech, msgs, events, count, present, config };
}

describe('RFID (whole daemon)', () => {
  it('tags arrive in their zones over a pty and TCP; counts per GTIN on the bus, as stock, at central; a move is one departure and one arrival', async () => {
    const r = await rig();
    // 12 tags of 3 GTINs round-robin over 2 zones: two tags of each GTIN in each zone
    const gtins = r.population.gtins;
    const g0 = gtins[0]!;
    const inZone = (z: number, g: number) => r.population.inZone(z).filter((t) => t.gtin === g).length;
    // every tag arrives where it is, and nowhere else
    await waitFor(() => r.events('backroom').filter((e) => e.kind === 'arrival').length === r.present(0).length && r.events('floor').filter((e) => e.kind === 'arrival').length === r.present(1).length, 20_000, 'every tag arrived');
    expect(r.events('backroom').map((e) => e.epc).sort()).toEqual(r.present(0).sort());
    expect(r.events('floor').map((e) => e.epc).sort()).toEqual(r.present(1).sort());
    expect(r.events('floor')[0]).toMatchObject({ zone_id: 'floor', reader_id: 'rtcp', antenna: 1, location_id: 'g1/floor' });
    // counts per GTIN, retained
    await waitFor(() => [0, 1].every((z) => gtins.every((g, i) => r.count(z === 0 ? 'backroom' : 'floor', g) === inZone(z, i))), 10_000, 'counts per GTIN on the bus');
    expect(inZone(1, 0)).toBe(2);
    const late = await connectClient(r.daemon.mqttPort, 'kiosk', PW);
    cleanups.push(async () => void (await late.client.endAsync()));
    await late.client.subscribeAsync(`shelfgate/v1/${STORE}/rfid/zone/+/count/+`, { qos: 1 });
    await waitFor(() => late.messages.filter((m) => m.retain).length === 6, 5000, 'six retained counts for a late subscriber');
    // the floor slot holds g0: its stock is the floor's count of g0, observed by rfid
    const db = new Database(join(r.dir, 'state', 'shelfgate.db'), { readonly: true });
    cleanups.push(() => void db.close());
    await waitFor(() => (db.prepare("SELECT count FROM stock WHERE location_id = 'g1/floor' AND observed_by = 'rfid'").get() as { count: number } | undefined)?.count === inZone(1, 0), 10_000, 'stock of g1/floor');
    // central got arrivals and counts, under rfid/<zone>
    await waitFor(() => r.central.receivedEvents(STORE).filter((e) => e.kind === 'arrival').length === r.population.tags.length, 20_000, 'arrivals at central');
    const zc = r.central.receivedEvents(STORE).filter((e) => e.kind === 'zone_count');
    expect(new Set(zc.map((e) => e.device_id))).toEqual(new Set(['rfid/backroom', 'rfid/floor']));
    // the command's view
    const zones = (await r.tech.request('rfid.zones', { tags: false })) as Array<{ zone_id: string; tags_present: number }>;
    expect(zones.map((z) => [z.zone_id, z.tags_present])).toEqual([['backroom', r.present(0).length], ['floor', r.present(1).length]]);

    // a scripted move: one g0 tag from the floor to the back room
    const [moved] = r.population.move({ count: 1, gtin: 0, from: 1, to: 0 });
    const tagEvents = (epc: string) => r.events().filter((e) => e.epc === epc).map((e) => `${e.kind as string}:${e.zone_id as string}`);
    await waitFor(() => tagEvents(moved!.epcHex).length === 3, 15_000, 'the moved tag departed and arrived');
    // a second move later is the barrier: once it is done, the first tag had time to flap, and did not
    const [second] = r.population.move({ count: 1, gtin: 1, from: 0, to: 1 });
    await waitFor(() => tagEvents(second!.epcHex).length === 3, 15_000, 'the second move');
    expect(tagEvents(moved!.epcHex)).toEqual(['arrival:floor', 'departure:floor', 'arrival:backroom']);
    expect(r.events('backroom').find((e) => e.epc === moved!.epcHex && e.kind === 'arrival')).toMatchObject({ from_zone: 'floor' });
    await waitFor(() => r.count('floor', g0) === inZone(1, 0) && r.count('backroom', g0) === inZone(0, 0), 10_000, 'counts follow the move');
  });

  it('a garbage burst is counted and makes no phantom tag; a silent reader goes offline (its tags kept) and comes back', async () => {
    const r = await rig();
    await waitFor(() => r.events().filter((e) => e.kind === 'arrival').length === r.population.tags.length, 20_000, 'every tag arrived');
    type ReaderRow = { reader_id: string; online: boolean; crcErrors: number; invalidFrames: number; noiseBytes: number; readings: number };
    const readers = async () => ((await r.tech.request('rfid.readers', {})) as ReaderRow[]).find((x) => x.reader_id === 'rpty')!;
    const before = await readers();
    // random bytes, then a well-framed notification whose tag CRC is wrong (an EPC not in the population)
    r.back.injectNoise(hex('00 FF BB 13 BB BB 01 7E 42 BB 02 22 00 11 C9 34 00 30 75 1F EB 70 5C 59 04 E3 D5 0D 70 3A 77 F0 7E 99 BB 88'));
    await waitFor(async () => (await readers()).crcErrors > before.crcErrors, 10_000, 'the bad tag CRC counted');
    const after = await readers();
    expect(after.noiseBytes).toBeGreaterThan(before.noiseBytes);
    // reads went on after the burst, and no tag but the population's ever arrived
    await waitFor(async () => (await readers()).readings > after.readings + 20, 10_000, 'reads after the burst');
    const known = new Set(r.population.tags.map((t) => t.epcHex));
    expect(r.events().filter((e) => !known.has(e.epc as string))).toEqual([]);

    // the back-room module stops answering: offline on the bus; its tags do not depart
    const avail = () => r.msgs.filter((m) => m.topic === `shelfgate/v1/${STORE}/device/rpty/availability`).at(-1)?.body;
    const departures = r.events().filter((e) => e.kind === 'departure').length;
    r.back.faults.silent = true;
    await waitFor(() => avail()?.state === 'offline', 10_000, 'rpty offline on the bus');
    // the floor keeps reading for longer than the departure time: proof that time passed
    const floorReads = (await r.tech.request('rfid.readers', {}) as ReaderRow[]).find((x) => x.reader_id === 'rtcp')!.readings;
    await waitFor(async () => ((await r.tech.request('rfid.readers', {})) as ReaderRow[]).find((x) => x.reader_id === 'rtcp')!.readings > floorReads + 400, 20_000, 'floor reads while rpty is silent');
    expect(r.events().filter((e) => e.kind === 'departure').length).toBe(departures);
    r.back.faults.silent = false;
    await waitFor(() => avail()?.state === 'online', 10_000, 'rpty back online');
    const reads = (await readers()).readings;
    await waitFor(async () => (await readers()).readings > reads + 20, 10_000, 'reads after coming back');
    expect(r.events().filter((e) => e.kind === 'departure')).toEqual([]);
  });
});
