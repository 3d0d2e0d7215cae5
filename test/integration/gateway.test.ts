/**
 * In-process gateway: the real services (store on a real SQLite file, bus on a real socket, shelf
 * model, poll loops) with simulated load-cell buses behind mock:// links. The whole-daemon tests
 * in test/e2e do the same through a real process, ptys and TCP.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import type { EventEmitter } from 'node:events';
import { hashPassword } from '../../src/bus/auth';
import { validateConfig } from '../../src/config/load';
import { loadDefinitions } from '../../src/devices/definitions';
import type { ModbusDefinition } from '../../src/devices/types';
import { buildGateway, type Gateway } from '../../src/core/gateway';
import { BUILTIN_FEATURES } from '../../src/features';
import { shelvesOf } from '../../src/features/shelves';
import { silentLogger } from '../../src/log';
import { registerMock, unregisterMock } from '../../src/transport/mock';
import { ModbusLoadCellBusSimulator } from '../../simulators/modbus-loadcell-sim';
import { LoadCellPhysics, mulberry32 } from '../../simulators/physics';
import { mockDeviceIo } from '../../simulators/io';
import { connectClient, tmp, waitFor } from '../helpers/daemon';

const defs = loadDefinitions();
const PASSWORD = 'pw-for-tests';

async function setup(dir: string, name: string) {
  const hash = await hashPassword(PASSWORD);
  const raw = {
    store_id: 'st1',
    data_dir: dir,
    mqtt: { port: 0, users: [{ username: 'kiosk', role: 'kiosk', password_hash: hash }, { username: 'tech', role: 'technician', password_hash: hash }] },
    storage: { flush_interval_ms: 5 },
    stability: { window: 3, max_spread_g: 3 },
    buses: [{ id: 'bus1', path: `mock://${name}`, model: 'generic-modbus-loadcell', poll_interval_ms: 20, timeout_ms: 100, reconnect: { initial_ms: 20, max_ms: 200 } }],
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
  const physics = new Map([
    [1, new LoadCellPhysics({ unitWeightG: 250, items: 10, noiseSigmaG: 0.3, settleMs: 60, rng: mulberry32(1) })],
    [2, new LoadCellPhysics({ unitWeightG: 100, items: 5, noiseSigmaG: 0.3, settleMs: 60, rng: mulberry32(2) })],
  ]);
  const sim = new ModbusLoadCellBusSimulator({ definition: defs.get('generic-modbus-loadcell') as ModbusDefinition, slaves: physics, turnaroundMs: 0 });
  const device = registerMock(name);
  sim.attach(mockDeviceIo(device));
  const gw = buildGateway(config!, { log: silentLogger(), definitions: defs, features: BUILTIN_FEATURES });
  return { gw, sim, device, physics };
}

describe('gateway in process', () => {
  let gw: Gateway | undefined;
  let mockName = '';
  afterEach(async () => {
    await gw?.stop();
    unregisterMock(mockName);
  });

  it('counts settled weight, publishes after commit, survives a restart without spurious events', async () => {
    const dir = tmp();
    mockName = `gw-${process.pid}-${Date.now()}`;
    const s = await setup(dir, mockName);
    gw = s.gw;
    await gw.start();
    const { client, messages } = await connectClient(gw.bus.address().port, 'kiosk', PASSWORD);
    await client.subscribeAsync('shelfgate/v1/st1/shelf/#', { qos: 1 });
    const stock = (slot: string) =>
      messages.filter((m) => m.topic === `shelfgate/v1/st1/shelf/sh1/slot/${slot}/stock`).map((m) => JSON.parse(m.payload) as { count: number });
    await waitFor(() => stock('a').at(-1)?.count === 10 && stock('b').at(-1)?.count === 5, 10_000, 'initial counts');

    s.physics.get(1)!.pick(3);
    await waitFor(() => stock('a').at(-1)?.count === 7, 10_000, 'count after pick');
    const events = messages.filter((m) => m.topic.endsWith('/event')).map((m) => JSON.parse(m.payload) as Record<string, unknown>);
    const pick = events.find((e) => e.kind === 'pick')!;
    expect(pick).toMatchObject({ shelf_id: 'sh1', slot_id: 'a', delta: -3, count: 7, previous_count: 10, gtin: '04006381333931' });
    expect(typeof pick.event_id).toBe('string');
    // Published means committed: the outbox already holds it.
    const outbox = gw.store.peekOutbox(0, 100);
    expect(outbox.map((r) => r.eventId)).toContain(pick.event_id);

    // A foreign object (not a whole number of items) is an anomaly, never a count.
    s.physics.get(2)!.placeForeign(40);
    await waitFor(() => messages.some((m) => m.topic.endsWith('/b/alert') && JSON.parse(m.payload).condition === 'mismatch'), 10_000, 'mismatch alert');
    expect(stock('b').every((m) => m.count === 5)).toBe(true);
    s.physics.get(2)!.removeForeign();
    await waitFor(() => messages.some((m) => m.topic.endsWith('/b/alert') && JSON.parse(m.payload).condition === 'ok'), 10_000, 'ok again');

    await client.endAsync();
    await gw.stop();
    const before = gw.store;
    expect(before).toBeDefined();

    // restart on the same data dir: last known stock is republished, no new pick/put
    const eventsBefore = (await import('better-sqlite3')).default(join(dir, 'shelfgate.db'), { readonly: true });
    const countBefore = (eventsBefore.prepare('SELECT COUNT(*) AS n FROM outbox').get() as { n: number }).n;
    eventsBefore.close();
    unregisterMock(mockName);
    const s2 = await setup(dir, mockName);
    s2.physics.get(1)!.setItems(7);
    gw = s2.gw;
    await gw.start();
    const c2 = await connectClient(gw.bus.address().port, 'kiosk', PASSWORD);
    await c2.client.subscribeAsync('shelfgate/v1/st1/shelf/+/slot/+/stock', { qos: 1 });
    await waitFor(() => c2.messages.some((m) => m.retain && m.topic.endsWith('/a/stock') && JSON.parse(m.payload).count === 7), 5_000, 'retained stock after restart');
    // what is republished at start is the saved state, flagged as last known
    expect(JSON.parse(c2.messages.find((m) => m.retain && m.topic.endsWith('/a/stock'))!.payload)).toMatchObject({ count: 7, condition: 'ok', last_known: true });
    // 40 readings since the restart (the two sensors are polled in turn): far past the 3-reading
    // stability window and the 60 ms settle, so the restored counts were met by settled readings.
    const shelves = shelvesOf(gw);
    await waitFor(() => shelves.stats.readings >= 40, 10_000, 'readings after restart');
    expect(shelves.stats.events).toBe(0);
    expect(gw.store.outboxStats().count).toBe(countBefore);
    await c2.client.endAsync();
  });

  it('marks a sensor offline when its transmitter stops answering and back online when it returns', async () => {
    const dir = tmp();
    mockName = `gw-off-${process.pid}-${Date.now()}`;
    const s = await setup(dir, mockName);
    gw = s.gw;
    await gw.start();
    const { client, messages } = await connectClient(gw.bus.address().port, 'kiosk', PASSWORD);
    await client.subscribeAsync('shelfgate/v1/st1/device/+/availability', { qos: 1 });
    const avail = () => messages.filter((m) => m.topic === 'shelfgate/v1/st1/device/bus1.2/availability').map((m) => JSON.parse(m.payload).state as string);
    await waitFor(() => avail().at(-1) === 'online', 5_000, 'online');
    s.sim.setFaults(2, { silent: true });
    await waitFor(() => avail().at(-1) === 'offline', 5_000, 'offline after misses');
    s.sim.setFaults(2, {});
    await waitFor(() => avail().at(-1) === 'online', 10_000, 'online again');
    // unplugging the whole bus takes every sensor offline, and it comes back by itself
    s.device.unplug();
    await waitFor(() => messages.some((m) => m.topic.endsWith('bus1.1/availability') && JSON.parse(m.payload).state === 'offline'), 5_000, 'bus offline');
    await waitFor(() => avail().at(-1) === 'online' && messages.filter((m) => m.topic.endsWith('bus1.1/availability')).at(-1)?.payload.includes('online'), 10_000, 'bus back');
    await client.endAsync();
    // stop removes every listener: event bus, sources, links
    await gw.stop();
    expect(gw.events.listenerCount()).toBe(0);
    for (const src of gw.sources as unknown as EventEmitter[]) expect(src.listenerCount('reading') + src.listenerCount('availability')).toBe(0);
  });
});
