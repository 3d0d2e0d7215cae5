/** What a weight source (a polled scale, one address on a Modbus bus) hands to the shelf model. */
export interface WeightReading {
  /** Sensor key: `<busId>/<address>` for Modbus, `<busId>/0` for a single scale. */
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

/** A sensor stopped or resumed answering (after `offline_after_misses` misses or a transport drop). */
export interface SensorAvailability {
  sensor: string;
  online: boolean;
  reason?: string;
  ts: number;
}

export interface WeightSourceEvents {
  reading: (r: WeightReading) => void;
  availability: (a: SensorAvailability) => void;
}
