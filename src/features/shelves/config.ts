/**
 * The shelves feature's slice of the one config: the sensor buses, the stability filter, and the
 * keys it adds to each slot (which sensor weighs it, and how that weight is read). The slot's
 * product (`gtin`, `unit_weight_g`) is the core's: it belongs to the location.
 */
import { z } from 'zod';
import { backoff, id, serialOverride, type Config } from '../../config/schema';
import type { ConfigIssue } from '../../config/load';
import type { DeviceDefinition } from '../../devices/types';

export const busSchema = z.strictObject({
  id,
  /** `/dev/serial/by-id/...` (recommended), `/dev/ttyUSB0`, `tcp://host:port`, or `mock://name` (tests). */
  path: z.string().min(1, 'must not be empty'),
  /** Device definition id from devices/*.yaml, e.g. `generic-modbus-loadcell` or `mettler-toledo-mt-sics`. */
  model: id,
  serial: serialOverride,
  /** Time between polls of one address (Modbus) or of the scale (MT-SICS). */
  poll_interval_ms: z.number().int().min(0).max(60_000).default(200),
  /** Response timeout; defaults to the device definition's. */
  timeout_ms: z.number().int().min(5).max(10_000).optional(),
  /** Consecutive missed answers before a sensor is reported offline. */
  offline_after_misses: z.number().int().min(1).max(100).default(3),
  reconnect: backoff,
});

const sensorRef = z.strictObject({
  bus: id,
  /** Modbus slave address 1-247; omitted for a single scale (MT-SICS). */
  address: z.number().int().min(1, 'must be >= 1').max(247, 'must be <= 247').optional(),
});

export const shelvesConfigShape = {
  buses: z.array(busSchema).min(1, 'must list at least one bus'),
  stability: z
    .strictObject({
      /** Readings in the window that must agree before a weight counts as settled. */
      window: z.number().int().min(2).max(100).default(4),
      /** Max spread (max - min) in grams within the window for a settled reading. */
      max_spread_g: z.number().gt(0).default(3),
      /** Report a slot unstable after this long without a settled reading. */
      unstable_alarm_s: z.number().gt(0).default(30),
    })
    .prefault({}),
};

export const weighedSlotShape = {
  /** The load cell or scale that weighs this slot; a slot without one is a location only. */
  sensor: sensorRef.optional(),
  /** Weight of the empty slot (tray, divider) in grams, subtracted from the reading. */
  tare_g: z.number().min(0, 'must be >= 0').default(0),
  /** A settled weight within this distance of a whole number of items counts as that number. Default: 25% of unit weight. */
  tolerance_g: z.number().gt(0, 'must be > 0').optional(),
  /** Above this (net grams) the slot reports overload. */
  max_load_g: z.number().gt(0, 'must be > 0').optional(),
};

const sliceSchema = z.object({
  ...shelvesConfigShape,
  shelves: z.array(z.object({ id, slots: z.array(z.object({ id, gtin: z.string().optional(), unit_weight_g: z.number().optional(), ...weighedSlotShape })) })),
});

/** The config as the shelves feature sees it (its keys plus the core's shelves). */
export type ShelvesConfig = z.output<typeof sliceSchema>;
export type BusConfig = ShelvesConfig['buses'][number];
export type WeighedSlotConfig = ShelvesConfig['shelves'][number]['slots'][number];
export type StabilityConfig = ShelvesConfig['stability'];

/** The slice of a validated config (validated by the composed schema, which includes these keys). */
export function shelvesSlice(config: Config): ShelvesConfig {
  return config as unknown as ShelvesConfig;
}

/** Cross-references: unknown bus or model, duplicate bus ids, a sensor used twice, addresses per protocol. */
export function validateShelves(config: Config, models: ReadonlyMap<string, DeviceDefinition>): ConfigIssue[] {
  const cfg = shelvesSlice(config);
  const issues: ConfigIssue[] = [];
  const buses = new Map<string, { protocol?: string }>();
  cfg.buses.forEach((b, i) => {
    if (buses.has(b.id)) issues.push({ path: `buses[${i}].id`, message: `duplicate bus id "${b.id}"` });
    const def = models.get(b.model);
    if (!def) issues.push({ path: `buses[${i}].model`, message: `unknown device model "${b.model}" (known: ${[...models.keys()].sort().join(', ')})` });
    if (!/^(tcp:\/\/[^:/]+:\d{1,5}|mock:\/\/.+|\/.+)$/.test(b.path))
      issues.push({ path: `buses[${i}].path`, message: 'must be an absolute device path (/dev/serial/by-id/...), tcp://host:port or mock://name' });
    if (!buses.has(b.id)) buses.set(b.id, { protocol: def?.protocol });
  });
  const sensors = new Map<string, string>();
  cfg.shelves.forEach((s, si) => {
    s.slots.forEach((slot, li) => {
      const at = `shelves[${si}].slots[${li}]`;
      if (!slot.sensor) return;
      const bus = buses.get(slot.sensor.bus);
      if (!bus) {
        issues.push({ path: `${at}.sensor.bus`, message: `unknown bus "${slot.sensor.bus}"` });
      } else if (bus.protocol === 'modbus-rtu' && slot.sensor.address === undefined) {
        issues.push({ path: `${at}.sensor.address`, message: 'is required on a Modbus bus (1-247)' });
      } else if (bus.protocol === 'mt-sics' && slot.sensor.address !== undefined) {
        issues.push({ path: `${at}.sensor.address`, message: 'must be omitted: an MT-SICS scale has no bus address' });
      }
      const key = `${slot.sensor.bus}/${slot.sensor.address ?? 0}`;
      const owner = sensors.get(key);
      if (owner) issues.push({ path: `${at}.sensor`, message: `sensor already used by ${owner}` });
      else sensors.set(key, `${s.id}/${slot.id}`);
      if (slot.gtin !== undefined && slot.unit_weight_g === undefined)
        issues.push({ path: `${at}.unit_weight_g`, message: 'is required when gtin is set (or learn it: shelfgate calibrate learn)' });
    });
  });
  return issues;
}
