/**
 * The GPIO service on the simulated backend with a manual clock and a recording bus: inputs publish
 * one edge per bounce train and a retained state (logical levels: active_low inverted), a
 * poll_shelf input emits pollRequested on each edge, outputs start and stop at their safe level,
 * gpio.set writes (and a pulse reverts), gpio.simulate is refused on a real backend, and a backend
 * that cannot open leaves the service running without GPIO (status says why) instead of throwing.
 */
import { describe, expect, it } from 'vitest';
import { EventBus } from '../../src/core/events';
import type { PollRequested } from '../../src/core/poll-requested';
import { ErrorCode, ShelfgateError } from '../../src/errors';
import type { GpioBackend } from '../../src/features/gpio/backend';
import { gpioSchema } from '../../src/features/gpio/config';
import { GpioService } from '../../src/features/gpio/service';
import { SimGpioBackend } from '../../src/features/gpio/sim-backend';
import { silentLogger } from '../../src/log';
import { ManualClock } from '../helpers/manual-clock';

const caller = { username: 'tech', role: 'technician' as const, via: 'internal' as const };

function rig(backend?: GpioBackend) {
  const config = gpioSchema.parse({
    backend: 'sim',
    inputs: [
      { name: 'beam', pin: 17, kind: 'presence', active_low: true, debounce_ms: 20, poll_shelf: 'g1' },
      { name: 'help', pin: 5, kind: 'button', debounce_ms: 10 },
    ],
    outputs: [
      { name: 'led', pin: 27 },
      { name: 'light', pin: 22, initial: 1, active_low: true },
    ],
  });
  const sim = new SimGpioBackend(new Map([[17, 1]])); // the beam's receiver idles high (active low)
  const clock = new ManualClock();
  const published: Array<{ topic: string; body: Record<string, unknown>; retain: boolean }> = [];
  const bus = { publish: async (topic: string, payload: string | Buffer, o: { retain?: boolean }) => void published.push({ topic, body: JSON.parse(String(payload)), retain: !!o.retain }) };
  const events = new EventBus(silentLogger());
  const polls: PollRequested[] = [];
  events.on(polls, 'pollRequested', (r) => polls.push(r));
  const service = new GpioService({ storeId: 's1', config, backend: backend ?? sim, bus: bus as never, events, log: silentLogger(), clock });
  const handlers = new Map(service.commandHandlers().map((h) => [h.decl.name, h]));
  const run = (name: string, payload: unknown) => {
    const h = handlers.get(name)!;
    return h.handler(h.decl.payload.parse(payload), caller) as Promise<Record<string, unknown>>;
  };
  const on = (topic: string) => published.filter((p) => p.topic === `shelfgate/v1/s1/gpio/${topic}`);
  return { sim, clock, published, events, polls, service, run, on };
}

const flush = () => new Promise((r) => setImmediate(r));

describe('GpioService (sim backend, manual clock)', () => {
  it('starts: outputs at their safe level (active_low applied), inputs published as retained logical states', async () => {
    const r = rig();
    await r.service.start();
    expect(r.sim.writes).toEqual([
      { pin: 27, level: 0 },
      { pin: 22, level: 0 }, // light: initial on, active low
    ]);
    expect(r.on('presence/beam/state')).toEqual([{ topic: 'shelfgate/v1/s1/gpio/presence/beam/state', retain: true, body: expect.objectContaining({ name: 'beam', kind: 'presence', pin: 17, value: 0 }) }]);
    expect(r.on('output/light/state')[0]!.body).toMatchObject({ value: 1, by: 'start' });
    expect(r.on('status')[0]!.body).toMatchObject({ backend: 'sim', available: true });
    await r.service.stop();
  });

  it('a bounce train is one edge (and one poll request); the bounces are counted', async () => {
    const r = rig();
    await r.service.start();
    // the beam is broken: the line goes low, bouncing
    for (const l of [0, 1, 0, 1, 0] as const) r.sim.drive(17, l);
    r.clock.advance(19);
    expect(r.on('presence/beam/edge')).toEqual([]);
    r.clock.advance(1);
    await flush();
    expect(r.on('presence/beam/edge').map((m) => [m.body.value, m.body.edge, m.retain])).toEqual([[1, 'active', false]]);
    expect(r.on('presence/beam/state').at(-1)!.body.value).toBe(1);
    expect(r.polls).toEqual([{ shelfId: 'g1', reason: 'gpio:beam' }]);
    // the beam clears: the other edge, and another poll request
    r.sim.drive(17, 1);
    r.clock.advance(20);
    await flush();
    expect(r.on('presence/beam/edge').map((m) => m.body.edge)).toEqual(['active', 'inactive']);
    expect(r.polls).toHaveLength(2);
    const st = (await r.run('gpio.status', {})) as { inputs: Array<Record<string, unknown>> };
    expect(st.inputs[0]).toMatchObject({ name: 'beam', value: 0, raw_changes: 6, edges: 2, bounces_suppressed: 4 });
    // a button without poll_shelf asks for no poll
    r.sim.drive(5, 1);
    r.clock.advance(10);
    await flush();
    expect(r.on('button/help/edge')).toHaveLength(1);
    expect(r.polls).toHaveLength(2);
    await r.service.stop();
  });

  it('gpio.set writes the physical level; a pulse reverts; unknown outputs are NOT_FOUND; stop restores the safe level', async () => {
    const r = rig();
    await r.service.start();
    await expect(r.run('gpio.set', { name: 'led', value: true })).resolves.toMatchObject({ name: 'led', value: 1 });
    expect(r.sim.level(27)).toBe(1);
    await r.run('gpio.set', { name: 'light', value: 0, pulse_ms: 500 });
    expect(r.sim.level(22)).toBe(1); // off = high on an active-low output
    r.clock.advance(499);
    expect(r.sim.level(22)).toBe(1);
    r.clock.advance(1);
    expect(r.sim.level(22)).toBe(0); // back on
    await flush();
    expect(r.on('output/light/state').map((m) => [m.body.value, m.body.by])).toEqual([
      [1, 'start'],
      [0, 'tech'],
      [1, 'tech (pulse end)'],
    ]);
    await expect(r.run('gpio.set', { name: 'nope', value: 1 })).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
    // a pulse still running at stop is cancelled, and the safe level written
    await r.run('gpio.set', { name: 'led', value: 1, pulse_ms: 1000 });
    await r.service.stop();
    expect(r.clock.pending).toBe(0);
    expect(r.sim.writes.slice(-2)).toEqual([
      { pin: 27, level: 0 },
      { pin: 22, level: 0 },
    ]);
    expect(r.events.listenerCount('pollRequested')).toBe(1); // only the test's own
  });

  it('gpio.simulate drives an input; on a non-sim backend it is NOT_FOUND', async () => {
    const r = rig();
    await r.service.start();
    await expect(r.run('gpio.simulate', { name: 'help', levels: [1, 0, 1] })).resolves.toMatchObject({ name: 'help', pin: 5, levels: 3, physical: 1 });
    await expect(r.run('gpio.simulate', { name: 'led', levels: [1] })).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
    // levels step_ms apart follow the clock; stop() ends a simulation in progress (no timer left)
    const slow = r.run('gpio.simulate', { name: 'help', levels: [0, 1, 0], step_ms: 100 });
    await flush();
    expect(r.sim.level(5)).toBe(0);
    r.clock.advance(100);
    await flush();
    expect(r.sim.level(5)).toBe(1);
    await r.service.stop();
    await expect(slow).resolves.toMatchObject({ name: 'help' });
    expect(r.sim.level(5)).toBeUndefined(); // closed: the third level was never driven
    expect(r.clock.pending).toBe(0);
    const other: GpioBackend = { kind: 'onoff', open: async () => undefined, openInput: (pin) => ({ pin, read: () => 0, close: () => undefined }), openOutput: (pin) => ({ pin, read: () => 0, write: () => undefined, close: () => undefined }), close: async () => undefined };
    const r2 = rig(other);
    await r2.service.start();
    await expect(r2.run('gpio.simulate', { name: 'help', levels: [1] })).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND, message: 'gpio.simulate exists only with gpio.backend: sim' });
    await r2.service.stop();
  });

  it('a backend that cannot open: start() does not throw, status and gpio/status say why, gpio.set is DEVICE_UNREACHABLE', async () => {
    const broken: GpioBackend = {
      kind: 'onoff',
      open: async () => {
        throw new ShelfgateError(ErrorCode.TRANSPORT_OPEN_FAILED, 'no GPIO sysfs at /sys/class/gpio (ENOENT)');
      },
      openInput: () => {
        throw new Error('not open');
      },
      openOutput: () => {
        throw new Error('not open');
      },
      close: async () => undefined,
    };
    const r = rig(broken);
    await r.service.start();
    expect(r.service.available).toBe(false);
    expect(r.service.status()).toMatchObject({ available: false, error: { code: ErrorCode.TRANSPORT_OPEN_FAILED } });
    expect(r.on('status')[0]!.body).toMatchObject({ available: false, error: { message: expect.stringContaining('no GPIO sysfs') } });
    await expect(r.run('gpio.set', { name: 'led', value: 1 })).rejects.toMatchObject({ code: ErrorCode.DEVICE_UNREACHABLE });
    expect(r.service.metrics().available).toBe(0);
    await r.service.stop();
  });
});
