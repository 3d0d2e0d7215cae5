/**
 * What every source hands to the features that consume it, whatever the device: a polled scale, a
 * Modbus bus, a reader that pushes tag reports, a scanner. Sources are typed emitters of
 * `reading` and `availability`; the feature that builds a source is the one that listens to it.
 */
import type { Service } from '../../lifecycle';

/** The least a reading carries: which device it came from and when. */
export interface SourceReading {
  /** Device key, unique in the store (`<bus>.<address>`, `<bus>`, a reader id...). Topic-safe. */
  sensor: string;
  /** Wall clock (ms since epoch) when the frame was received. */
  ts: number;
  /** Monotonic time (performance.now()) when the frame was received: for latency measurement. */
  rxMono: number;
}

/** A device stopped or resumed answering (after N misses, silence, or a transport drop). */
export interface DeviceAvailability {
  sensor: string;
  online: boolean;
  reason?: string;
  ts: number;
}

export interface SourceStats {
  polls: number;
  readings: number;
  timeouts: number;
  crcErrors: number;
  deviceErrors: number;
  invalidFrames: number;
  noiseBytes: number;
  /** Answers that came too late (after their request timed out) or answered another request: discarded. */
  lateAnswers: number;
}

export interface SourceEvents<R extends SourceReading> {
  reading: [R];
  availability: [DeviceAvailability];
}

/** A polled or streaming source: a Service that emits typed readings and availability. */
export interface Source<R extends SourceReading = SourceReading> extends Service {
  readonly stats: SourceStats;
  /** Device keys this source reports on. */
  readonly devices: readonly string[];
  isOnline(sensor: string): boolean;
  /** Polled sources: start the next poll cycle now (rate limited); false when refused. Streaming sources have none. */
  pollNow?(): boolean;
  on<K extends keyof SourceEvents<R>>(event: K, listener: (...args: SourceEvents<R>[K]) => void): this;
  off<K extends keyof SourceEvents<R>>(event: K, listener: (...args: SourceEvents<R>[K]) => void): this;
}
