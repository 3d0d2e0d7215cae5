/**
 * The `gpio:` config slice through the composed schema and the feature's cross-checks: absent is
 * off, defaults are filled, and each problem comes back with its path: duplicate names and pins
 * (across inputs and outputs), a pin outside 0..63, a `pull` key (refused with the way to set a
 * pull), an unknown poll_shelf or one without a weighed slot, a relative sysfs_root.
 */
import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load';
import { loadDefinitions } from '../../src/devices/definitions';
import { BUILTIN_FEATURES } from '../../src/features';
import { gpioSlice } from '../../src/features/gpio/config';

const defs = loadDefinitions();

function base(gpio?: unknown): Record<string, unknown> {
  return {
    store_id: 's1',
    data_dir: '/tmp/sg-gpio-config',
    buses: [{ id: 'bus1', path: 'mock://a', model: 'generic-modbus-loadcell' }],
    shelves: [
      { id: 'g1', slots: [{ id: 's1', sensor: { bus: 'bus1', address: 1 }, gtin: '04006381333931', unit_weight_g: 100 }] },
      { id: 'back', slots: [{ id: 'room' }] },
    ],
    ...(gpio !== undefined ? { gpio } : {}),
  };
}

const issuesOf = (raw: unknown) => validateConfig(raw, defs, BUILTIN_FEATURES).issues;

describe('gpio config', () => {
  it('absent: the feature is off', () => {
    const { config, issues } = validateConfig(base(), defs, BUILTIN_FEATURES);
    expect(issues).toEqual([]);
    expect(gpioSlice(config!)).toBeUndefined();
  });

  it('fills the defaults; initial accepts true/false/0/1', () => {
    const { config, issues } = validateConfig(
      base({ inputs: [{ name: 'beam', pin: 17, kind: 'presence', poll_shelf: 'g1' }], outputs: [{ name: 'led', pin: 27 }, { name: 'light', pin: 22, initial: true, active_low: true }] }),
      defs,
      BUILTIN_FEATURES,
    );
    expect(issues).toEqual([]);
    const c = gpioSlice(config!)!;
    expect(c).toMatchObject({ backend: 'onoff', sysfs_root: '/sys' });
    expect(c.inputs[0]).toEqual({ name: 'beam', pin: 17, kind: 'presence', active_low: false, debounce_ms: 30, poll_shelf: 'g1' });
    expect(c.outputs).toEqual([
      { name: 'led', pin: 27, initial: 0, active_low: false },
      { name: 'light', pin: 22, initial: 1, active_low: true },
    ]);
  });

  it('reports each problem with its path', () => {
    const issues = issuesOf(
      base({
        backend: 'sim',
        inputs: [
          { name: 'beam', pin: 17, kind: 'presence', poll_shelf: 'nope' },
          { name: 'door', pin: 17, kind: 'contact', pull: 'up' },
          { name: 'lid', pin: 5, kind: 'contact', poll_shelf: 'back' },
        ],
        outputs: [{ name: 'beam', pin: 27 }],
      }),
    );
    expect(issues).toEqual(
      expect.arrayContaining([
        { path: 'gpio.inputs[0].poll_shelf', message: 'unknown shelf "nope" (known: g1, back)' },
        { path: 'gpio.inputs[1].pin', message: 'BCM pin 17 is already used by gpio.inputs[0] ("beam")' },
        { path: 'gpio.inputs[1].pull', message: expect.stringContaining('cannot be set through sysfs') },
        { path: 'gpio.inputs[2].poll_shelf', message: 'shelf "back" has no slot with a weight sensor: there is nothing to poll' },
        { path: 'gpio.outputs[0].name', message: 'duplicate name "beam" (also gpio.inputs[0])' },
      ]),
    );
    expect(issues).toHaveLength(5);
  });

  it('schema errors: pin out of range, unknown kind, relative sysfs_root, unknown keys', () => {
    const issues = issuesOf(base({ sysfs_root: 'sys', inputs: [{ name: 'b', pin: 64, kind: 'beam' }], outputs: [{ name: 'o', pin: -1, colour: 'red' }] }));
    const paths = issues.map((i) => i.path);
    expect(paths).toEqual(expect.arrayContaining(['gpio.sysfs_root', 'gpio.inputs[0].pin', 'gpio.inputs[0].kind', 'gpio.outputs[0].pin']));
    expect(issues.find((i) => i.path === 'gpio.inputs[0].pin')!.message).toMatch(/<= 63/);
    expect(issues.some((i) => i.message.includes('colour'))).toBe(true);
  });
});
