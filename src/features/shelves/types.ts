import type { DeviceAvailability, SourceReading } from '../../core/sources/types';

/**
 * The one way to name a sensor: `<busId>.<address>` on a Modbus bus, `<busId>` for a single scale.
 * It is also the device id in the registry and in `device/<id>/availability` topics, so it must be
 * topic-safe: bus ids are [A-Za-z0-9_-] and '.' cannot occur in them, so the key is unambiguous.
 */
export function sensorKey(busId: string, address?: number): string {
  return address === undefined ? busId : `${busId}.${address}`;
}

/** What a weight source (a polled scale, one address on a Modbus bus) hands to the shelf model. */
export interface WeightReading extends SourceReading {
  /** Sensor key from sensorKey(): `<busId>.<address>` on a Modbus bus, `<busId>` for a single scale. */
  sensor: string;
  /** Gross weight on the sensor in grams (device units converted), before slot tare. NaN if none. */
  grams: number;
  /** The device's own stability flag, or null when it has none. */
  deviceStable: boolean | null;
  overload: boolean;
  underload: boolean;
  /** Wall clock (ms since epoch) when the frame was received. */
  ts: number;
  /** Monotonic time (performance.now()) when the frame was received: for latency measurement. */
  rxMono: number;
}

/**
 * A weight beyond the model's capacity cannot come from goods on the platform (a corrupted frame,
 * a wrong register map, a miswired cell): it is an overload, a condition, never a count.
 */
export function overCapacity(grams: number, capacityG: number): boolean {
  return grams > capacityG;
}

/** A negative weight larger than the capacity cannot come from taking goods off: an underload. */
export function underCapacity(grams: number, capacityG: number): boolean {
  return grams < -capacityG;
}

/** A sensor stopped or resumed answering (after `offline_after_misses` misses or a transport drop). */
export type SensorAvailability = DeviceAvailability;
