/**
 * The GPIO feature's commands, declared statically (the ACL reads the permissions):
 * - `gpio.set` (operate): set an output, optionally as a pulse. Service, technician and admin
 *   users; a kiosk is refused (it may not drive LEDs, buzzers or shelf lights).
 * - `gpio.status` (operate, though it changes nothing): every pin's level and counters. Not
 *   `read`, because it shows door and lid contacts and presence beams, which the kiosk role must
 *   not see (the same rule as the topic ACL: kiosks read only `gpio/button/#`).
 * - `gpio.simulate` (admin): drive simulated inputs (./sim-backend.ts says why a command). Only
 *   with `gpio.backend: sim`; NOT_FOUND otherwise.
 */
import { z } from 'zod';
import { declareCommand } from '../../core/commands';
import { id } from '../../config/schema';

const level = z.union([z.boolean(), z.literal(0), z.literal(1)]).transform((v) => (v === true || v === 1 ? 1 : 0));

export const gpioSet = declareCommand({
  name: 'gpio.set',
  permission: 'operate',
  description: 'set a GPIO output (logical: 1/true = on) by name; with pulse_ms, back to its previous value after that long',
  payload: z.object({
    name: id,
    value: level,
    pulse_ms: z.number().int().min(1).max(60_000).optional(),
  }),
});

export const gpioStatus = declareCommand({
  name: 'gpio.status',
  permission: 'operate',
  description: 'GPIO backend, chip, and every input and output: level, pin, counters (edges, bounces suppressed)',
  payload: z.object({}),
});

export const gpioSimulate = declareCommand({
  name: 'gpio.simulate',
  permission: 'admin',
  description: 'simulated backend only: drive an input through physical levels (0/1), step_ms apart (0: all at once, a bounce train)',
  payload: z.object({
    name: id,
    levels: z.array(z.union([z.literal(0), z.literal(1)])).min(1).max(1000),
    step_ms: z.number().int().min(0).max(10_000).default(0),
  }),
});

export const GPIO_COMMANDS = [gpioSet, gpioStatus, gpioSimulate];
