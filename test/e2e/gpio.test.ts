/**
 * GPIO, whole daemon: the real `shelfgate run` process with the simulated GPIO backend, driven from
 * outside over MQTT (`gpio.simulate`, admin), and a Modbus load-cell bus simulator over TCP polled
 * once a minute. Proves: a bounce train is one edge on the bus (and a glitch none), with the
 * bounces counted; a service user and a technician set outputs (retained state, a pulse reverts)
 * while a kiosk is refused `gpio.set` (and a service user `gpio.simulate`); kiosks read kiosk
 * buttons and nothing else of gpio/#; a presence edge makes the scale bus see a poll it would not
 * have seen for a minute; and with the onoff backend on a machine without GPIO sysfs the daemon
 * runs on and says why (log, retained gpio/status, DEVICE_UNREACHABLE answers).
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
import { subackCode } from '../helpers/suback';
import { fastHash, usersWithHash } from '../helpers/users';

const STORE = 'gp';
const PW = 'pw-gpio';
const P = `shelfgate/v1/${STORE}/gpio`;
const cleanups = useCleanups();

async function rig(gpioOver: Record<string, unknown> = {}) {
  const dir = tmp('sg-gpio-e2e-');
  const defs = loadDefinitions();
  const physics = new LoadCellPhysics({ unitWeightG: 250, items: 4, noiseSigmaG: 0.1, settleMs: 30, rng: mulberry32(5) });
  const scale = new ModbusLoadCellBusSimulator({ definition: defs.get('generic-modbus-loadcell') as ModbusDefinition, slaves: new Map([[1, physics]]), turnaroundMs: 0 });
  const modbus = await serveTcp(scale, '127.0.0.1', 0);
  cleanups.push(() => modbus.close());
  const hash = await fastHash(PW);
  const config = {
    store_id: STORE,
    data_dir: join(dir, 'state'),
    mqtt: { port: 0, users: usersWithHash(hash, { tech: 'technician', shop: 'service', kiosk: 'kiosk', root: 'admin' }) },
    storage: { flush_interval_ms: 10 },
    // one poll a minute: a second poll within the test comes from the presence beam
    buses: [{ id: 'bus', path: modbus.url, model: 'generic-modbus-loadcell', poll_interval_ms: 60_000, timeout_ms: 500 }],
    shelves: [{ id: 'g1', slots: [{ id: 's1', sensor: { bus: 'bus', address: 1 }, gtin: '04006381333931', unit_weight_g: 250 }] }],
    gpio: {
      backend: 'sim',
      inputs: [
        // an IR beam receiver pulling the line low while the beam is broken
        { name: 'beam', pin: 17, kind: 'presence', active_low: true, debounce_ms: 40, poll_shelf: 'g1' },
        { name: 'help', pin: 5, kind: 'button', debounce_ms: 20 },
        { name: 'door', pin: 6, kind: 'contact' },
      ],
      outputs: [
        { name: 'led', pin: 27 },
        { name: 'buzzer', pin: 22, active_low: true },
      ],
      ...gpioOver,
    },
  };
  const daemon = await startDaemon(config, dir);
  cleanups.push(async () => void (await daemon.stop('SIGKILL')));
  const client = async (user: string) => {
    const c = await BusClient.connect({ url: `mqtt://127.0.0.1:${daemon.mqttPort}`, username: user, password: PW, store: STORE });
    cleanups.push(() => c.close());
    return c;
  };
  const watch = await connectClient(daemon.mqttPort, 'tech', PW);
  cleanups.push(async () => void (await watch.client.endAsync()));
  await watch.client.subscribeAsync(`${P}/#`, { qos: 1 });
  const on = (t: string): Array<Record<string, unknown>> => watch.messages.filter((m) => m.topic === `${P}/${t}`).map((m) => ({ ...(JSON.parse(m.payload) as Record<string, unknown>), retain: m.retain }));
  return { dir, daemon, scale, client, watch, on };
}

describe('GPIO (whole daemon, simulated backend)', () => {
  it('a bounce train through the sim backend is one edge on the bus, a glitch is none, and the bounces are counted', async () => {
    const r = await rig();
    const root = await r.client('root');
    const tech = await r.client('tech');
    // retained states from the start: the beam idles clear (the line high, active low)
    await waitFor(() => r.on('presence/beam/state').length > 0 && r.on('status').length > 0, 10_000, 'retained gpio states');
    expect(r.on('presence/beam/state')[0]).toMatchObject({ name: 'beam', value: 0, retain: true });
    expect(r.on('status')[0]).toMatchObject({ backend: 'sim', available: true });
    // the beam is broken: the line falls, bouncing five times in one burst
    await root.request('gpio.simulate', { name: 'beam', levels: [0, 1, 0, 1, 0] });
    await waitFor(() => r.on('presence/beam/edge').length === 1, 10_000, 'the beam edge');
    expect(r.on('presence/beam/edge')[0]).toMatchObject({ name: 'beam', kind: 'presence', pin: 17, value: 1, edge: 'active', retain: false });
    // a glitch back to where it was: no edge. Then the beam clears: one edge. That second edge is the barrier.
    await root.request('gpio.simulate', { name: 'beam', levels: [1, 0] });
    await root.request('gpio.simulate', { name: 'beam', levels: [1] });
    await waitFor(() => r.on('presence/beam/edge').length >= 2, 10_000, 'the clearing edge');
    expect(r.on('presence/beam/edge').map((e) => e.edge)).toEqual(['active', 'inactive']);
    expect(r.on('presence/beam/state').at(-1)).toMatchObject({ value: 0, retain: false });
    const st = await tech.request<{ inputs: Array<Record<string, unknown>> }>('gpio.status', {});
    expect(st.inputs.find((i) => i.name === 'beam')).toMatchObject({ value: 0, raw_changes: 8, edges: 2, bounces_suppressed: 6 });
    // a late subscriber gets the retained current state
    const late = await connectClient(r.daemon.mqttPort, 'shop', PW);
    cleanups.push(async () => void (await late.client.endAsync()));
    await late.client.subscribeAsync(`${P}/presence/+/state`, { qos: 1 });
    await waitFor(() => late.messages.some((m) => m.retain && m.topic === `${P}/presence/beam/state` && (JSON.parse(m.payload) as { value: number }).value === 0), 5000, 'retained beam state');
  });

  it('outputs: a service user and a technician set them (a pulse reverts); a kiosk is refused gpio.set, a service user gpio.simulate', async () => {
    const r = await rig();
    const shop = await r.client('shop');
    const tech = await r.client('tech');
    await waitFor(() => r.on('output/led/state').length > 0, 10_000, 'retained led state');
    expect(r.on('output/led/state')[0]).toMatchObject({ value: 0, by: 'start' });
    await expect(shop.request('gpio.set', { name: 'led', value: true })).resolves.toMatchObject({ name: 'led', pin: 27, value: 1 });
    await waitFor(() => r.on('output/led/state').some((m) => m.value === 1 && m.by === 'shop'), 5000, 'led on by shop');
    await expect(tech.request('gpio.set', { name: 'buzzer', value: 1, pulse_ms: 100 })).resolves.toMatchObject({ pulse_ms: 100, then: 0 });
    await waitFor(() => r.on('output/buzzer/state').some((m) => m.value === 0 && m.by === 'tech (pulse end)'), 5000, 'the buzzer pulse ended');
    await expect(shop.request('gpio.set', { name: 'fan', value: 1 })).rejects.toThrow(/no GPIO output "fan"/);
    // the kiosk role may not drive outputs, nor simulate; a service user may not simulate either
    // (a refused publish closes the connection: one connection per refusal)
    for (const [user, command, body] of [
      ['kiosk', 'gpio.set', { name: 'led', value: 0 }],
      ['kiosk', 'gpio.simulate', { name: 'help', levels: [1] }],
      ['shop', 'gpio.simulate', { name: 'help', levels: [1] }],
    ] as const) {
      const c = await r.client(user);
      await expect(c.request(command, body, 3000)).rejects.toThrow(/not allowed|NOT_AUTHORIZED/);
    }
    // the refused set changed nothing: the led is still on (status read after the refusals)
    const st = await tech.request<{ outputs: Array<Record<string, unknown>> }>('gpio.status', {});
    expect(st.outputs.find((o) => o.name === 'led')).toMatchObject({ value: 1, sets: 1 });
    expect(r.on('output/led/state').at(-1)).toMatchObject({ value: 1, by: 'shop' });
  });

  it('kiosks read kiosk buttons, and no presence beam or door contact', async () => {
    const r = await rig();
    const root = await r.client('root');
    const k = await connectClient(r.daemon.mqttPort, 'kiosk', PW);
    cleanups.push(async () => void (await k.client.endAsync()));
    expect(await subackCode(k.client, `${P}/#`)).toBe(0x80);
    expect(await subackCode(k.client, `${P}/presence/#`)).toBe(0x80);
    expect(await subackCode(k.client, `${P}/contact/door/state`)).toBe(0x80);
    expect(await subackCode(k.client, `${P}/button/#`)).toBe(1);
    await root.request('gpio.simulate', { name: 'help', levels: [1, 0, 1] });
    await waitFor(() => k.messages.some((m) => m.topic === `${P}/button/help/edge`), 10_000, 'the button edge at the kiosk');
    expect(JSON.parse(k.messages.find((m) => m.topic === `${P}/button/help/edge`)!.payload)).toMatchObject({ name: 'help', value: 1, edge: 'active' });
    expect(k.messages.every((m) => m.topic.startsWith(`${P}/button/`))).toBe(true);
  });

  it('a presence edge polls the shelf now: the scale bus sees a poll it would not have seen for a minute', async () => {
    const r = await rig();
    const root = await r.client('root');
    // the first cycle at start (one request per read block of the model), then a minute of rest
    const perCycle = (loadDefinitions().get('generic-modbus-loadcell') as ModbusDefinition).reads.length;
    await waitFor(() => r.scale.stats.answered === perCycle, 10_000, 'the first poll cycle');
    const before = r.scale.stats.requests;
    expect(before).toBe(perCycle);
    await root.request('gpio.simulate', { name: 'beam', levels: [0] });
    await waitFor(() => r.on('presence/beam/edge').length === 1, 10_000, 'the beam edge');
    await waitFor(() => r.scale.stats.answered === 2 * perCycle, 10_000, 'a poll cycle caused by the beam');
    expect(r.scale.stats.requests).toBe(2 * perCycle);
  });

  it('onoff without GPIO sysfs: the daemon runs on, says why on gpio/status and in the log, and gpio.set is DEVICE_UNREACHABLE', async () => {
    // an empty sysfs root: the same condition as a machine without GPIO, whatever machine runs the test
    const r = await rig({ backend: 'onoff', sysfs_root: tmp('sg-nosysfs-') });
    const line = await r.daemon.waitLog((l) => l.msg === 'GPIO unavailable: inputs and outputs are off, the rest of the gateway runs');
    expect(line).toMatchObject({ code: 'SG_TRANSPORT_OPEN_FAILED', err: expect.stringContaining('no GPIO sysfs at') });
    await waitFor(() => r.on('status').length > 0, 10_000, 'gpio/status');
    expect(r.on('status')[0]).toMatchObject({ backend: 'onoff', available: false, error: { code: 'SG_TRANSPORT_OPEN_FAILED' } });
    const shop = await r.client('shop');
    await expect(shop.request('gpio.set', { name: 'led', value: 1 })).rejects.toThrow(/SG_DEVICE_UNREACHABLE: GPIO is not available: no GPIO sysfs/);
    // the rest of the gateway runs: the scale is polled and the shelves answer
    await waitFor(() => r.scale.stats.answered > 0, 10_000, 'the scale polled');
    expect(await shop.request('stock.get', { shelf: 'g1' })).toEqual([expect.objectContaining({ shelf_id: 'g1', slot_id: 's1' })]);
  });
});
