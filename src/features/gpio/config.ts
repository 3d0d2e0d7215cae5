/**
 * The GPIO feature's slice of the one config (absent = no GPIO):
 *
 *   gpio:
 *     backend: onoff            # or sim (tests, the demo)
 *     sysfs_root: /sys          # where the gpiochip discovery reads (tests point it at a fake tree)
 *     chip_label: ...           # only for a board that is not a Raspberry Pi (see ./sysfs.ts)
 *     inputs:  [{ name, pin, kind: presence|contact|button, active_low, debounce_ms, poll_shelf }]
 *     outputs: [{ name, pin, initial, active_low }]
 *
 * Design choices:
 * - `pin` is the BCM number (GPIO17 is 17), never the header position and never the sysfs number:
 *   the sysfs number depends on the kernel (base 0 on old kernels, 512 on a Pi 4 and 571 on a Pi 5
 *   since 6.6) and is found at start by reading the gpiochips (./sysfs.ts). The schema allows 0..63;
 *   whether the pin exists on this board's chip (ngpio) is checked when the chip is known, at start.
 * - There is no pull-up/down setting: the sysfs interface has no file for it, so a `pull` key is
 *   refused with the way to get one (config.txt `gpio=<pin>=ip,pu`, the device tree, or a resistor).
 * - `active_low` is the service's: logical 1 is "active" (beam broken, door open, button pressed,
 *   LED on) whatever the wiring. Outputs' `initial` is also their safe level, written at start and
 *   again at stop.
 * - Names are unique across inputs and outputs: a name is one topic level and one command argument.
 */
import { z } from 'zod';
import { id, type Config } from '../../config/schema';
import type { ConfigIssue } from '../../config/load';

/** BCM GPIO number. The SoC chips have 54 (BCM2835, RP1) or 58 (BCM2711) lines; the chip found at start decides. */
const bcmPin = z.number().int().min(0, 'must be a BCM GPIO number >= 0').max(63, 'must be a BCM GPIO number <= 63');
const level = z.union([z.boolean(), z.literal(0), z.literal(1)]).transform((v) => (v === true || v === 1 ? 1 : 0));

export const GPIO_INPUT_KINDS = ['presence', 'contact', 'button'] as const;
export type GpioInputKind = (typeof GPIO_INPUT_KINDS)[number];

export const gpioInputSchema = z.strictObject({
  name: id,
  pin: bcmPin,
  /** presence: IR beam or presence sensor at a shelf; contact: door or lid; button: kiosk buttons (kiosks may read these). */
  kind: z.enum(GPIO_INPUT_KINDS),
  /** The input is active (logical 1) when the line is low (a contact to ground with a pull-up, most IR beam receivers). */
  active_low: z.boolean().default(false),
  /** The line must stay quiet this long before a change counts; shorter bounce trains are one edge (0 = no debounce). */
  debounce_ms: z.number().int().min(0).max(10_000).default(30),
  /** A shelf id: each edge of this input asks for an immediate poll of that shelf's weight sensors. */
  poll_shelf: id.optional(),
  /** Not settable through sysfs: refused by validateGpio with the way to set it. */
  pull: z.unknown().optional(),
});

export const gpioOutputSchema = z.strictObject({
  name: id,
  pin: bcmPin,
  /** Logical level at start and at stop (the safe state): 0/false = off. */
  initial: level.default(0),
  /** The load is on (logical 1) when the line is low (an LED to 3V3, many relay boards). */
  active_low: z.boolean().default(false),
});

export const gpioSchema = z.strictObject({
  backend: z.enum(['onoff', 'sim']).default('onoff'),
  /** Root of the sysfs tree the gpiochip discovery reads (`<root>/class/gpio/gpiochip*`). onoff itself always uses /sys. */
  sysfs_root: z.string().regex(/^\//, 'must be an absolute path').default('/sys'),
  /** The label of the gpiochip whose lines are the BCM numbers, for a board the built-in list does not know. */
  chip_label: z.string().min(1).max(128).optional(),
  inputs: z.array(gpioInputSchema).default([]),
  outputs: z.array(gpioOutputSchema).default([]),
});

export type GpioConfig = z.output<typeof gpioSchema>;
export type GpioInputConfig = GpioConfig['inputs'][number];
export type GpioOutputConfig = GpioConfig['outputs'][number];

export const gpioConfigShape = { gpio: gpioSchema.optional() };

/** The gpio slice, or undefined when the gateway has no GPIO. */
export function gpioSlice(config: Config): GpioConfig | undefined {
  return (config as unknown as { gpio?: GpioConfig }).gpio;
}

/** Cross-checks: unique names and pins, `pull` refused, `poll_shelf` names a shelf with a weighed slot. */
export function validateGpio(config: Config): ConfigIssue[] {
  const cfg = gpioSlice(config);
  if (!cfg) return [];
  const issues: ConfigIssue[] = [];
  const names = new Map<string, string>();
  const pins = new Map<number, string>();
  const weighed = new Map(config.shelves.map((s) => [s.id, s.slots.some((sl) => (sl as { sensor?: unknown }).sensor !== undefined)]));
  const check = (at: string, e: { name: string; pin: number }) => {
    const n = names.get(e.name);
    if (n !== undefined) issues.push({ path: `${at}.name`, message: `duplicate name "${e.name}" (also ${n})` });
    else names.set(e.name, at);
    const p = pins.get(e.pin);
    if (p !== undefined) issues.push({ path: `${at}.pin`, message: `BCM pin ${e.pin} is already used by ${p}` });
    else pins.set(e.pin, `${at} ("${e.name}")`);
  };
  cfg.inputs.forEach((inp, i) => {
    const at = `gpio.inputs[${i}]`;
    check(at, inp);
    if (inp.pull !== undefined)
      issues.push({
        path: `${at}.pull`,
        message: 'pull-up/down cannot be set through sysfs: set it in /boot/firmware/config.txt (e.g. `gpio=17=ip,pu`), in a device-tree overlay, or with a resistor, then remove this key',
      });
    if (inp.poll_shelf !== undefined) {
      const w = weighed.get(inp.poll_shelf);
      if (w === undefined) issues.push({ path: `${at}.poll_shelf`, message: `unknown shelf "${inp.poll_shelf}" (known: ${[...weighed.keys()].join(', ')})` });
      else if (!w) issues.push({ path: `${at}.poll_shelf`, message: `shelf "${inp.poll_shelf}" has no slot with a weight sensor: there is nothing to poll` });
    }
  });
  cfg.outputs.forEach((out, i) => check(`gpio.outputs[${i}]`, out));
  if (cfg.backend === 'sim' && cfg.chip_label !== undefined) issues.push({ path: 'gpio.chip_label', message: 'only used by the onoff backend' });
  return issues;
}
