import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { ErrorCode, isShelfgateError } from '../../errors';
import { LogLimiter, type Logger } from '../../log';
import { RequestChannel, type ByteLink } from './channel';
import { SensorHealth } from './health';
import type { DeviceAvailability, Source, SourceReading, SourceStats } from './types';

/** What a weight source needs of a (reconnecting) link. */
export interface SourceLink extends ByteLink {
  on(event: 'data', listener: (chunk: Buffer) => void): unknown;
  on(event: 'online', listener: () => void): unknown;
  on(event: 'offline', listener: (reason: string) => void): unknown;
  off(event: 'data', listener: (chunk: Buffer) => void): unknown;
  off(event: 'online', listener: () => void): unknown;
  off(event: 'offline', listener: (reason: string) => void): unknown;
}

export interface PolledSourceOptions {
  name: string;
  link: SourceLink;
  /** Sensor keys polled in order, one request at a time. */
  sensors: readonly string[];
  pollIntervalMs: number;
  missesToOffline: number;
  /** Silence kept between a response and the next request (Modbus t3.5). */
  gapMs: number;
  /** Quiet kept after a timeout before a request that could take the late answer (RequestChannel). Default 0. */
  lateGuardMs?: number;
  log: Logger;
}

export type { SourceStats } from './types';

/**
 * The poll loop shared by every polled weight source: walks the sensors of one link one request at
 * a time, paces cycles to `pollIntervalMs`, counts misses per sensor and reports availability.
 * Subclasses implement only `pollSensor` (encode, await the answer, decode).
 */
export abstract class PolledSource<R extends SourceReading = SourceReading> extends EventEmitter implements Source<R> {
  readonly name: string;
  readonly devices: readonly string[];
  readonly stats: SourceStats = { polls: 0, readings: 0, timeouts: 0, crcErrors: 0, deviceErrors: 0, invalidFrames: 0, noiseBytes: 0, lateAnswers: 0 };
  protected readonly channel: RequestChannel;
  protected readonly log: Logger;
  protected readonly limiter: LogLimiter;
  private readonly health: SensorHealth;
  private running = false;
  private loopDone: Promise<void> = Promise.resolve();
  private wake: (() => void) | null = null;
  private readonly onOffline = (reason: string): void => {
    this.health.linkDown(`link down: ${reason}`, Date.now());
    this.wake?.();
  };
  private readonly onOnline = (): void => this.wake?.();

  constructor(protected readonly opts: PolledSourceOptions) {
    super();
    this.name = opts.name;
    this.devices = opts.sensors;
    this.log = opts.log;
    this.limiter = new LogLimiter(opts.log);
    this.channel = new RequestChannel(
      opts.link,
      (chunk) => {
        this.stats.noiseBytes += chunk.length;
      },
      {
        lateGuardMs: opts.lateGuardMs ?? 0,
        onLate: (_chunk, first) => {
          if (first) this.stats.lateAnswers++;
        },
      },
    );
    this.health = new SensorHealth(opts.sensors, opts.missesToOffline, Math.max(2_000, opts.pollIntervalMs * 10), (a) =>
      this.emit('availability', a satisfies DeviceAvailability),
    );
  }

  async start(): Promise<void> {
    this.channel.attach();
    this.opts.link.on('offline', this.onOffline);
    this.opts.link.on('online', this.onOnline);
    this.running = true;
    this.loopDone = this.loop().catch((e: Error) => this.log.error({ err: e }, 'poll loop failed'));
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    this.channel.detach();
    await this.loopDone;
    this.opts.link.off('offline', this.onOffline);
    this.opts.link.off('online', this.onOnline);
  }

  isOnline(sensor: string): boolean {
    return this.health.isOnline(sensor);
  }

  /** Sends one request to `sensor` and resolves with its reading; rejects with a ShelfgateError on a miss. */
  protected abstract pollSensor(sensor: string): Promise<R>;

  private async loop(): Promise<void> {
    const { sensors, pollIntervalMs, gapMs } = this.opts;
    while (this.running) {
      if (!this.opts.link.online) {
        await this.idle(1_000);
        continue;
      }
      const cycleStart = performance.now();
      for (const sensor of sensors) {
        if (!this.running || !this.opts.link.online) break;
        if (!this.health.due(sensor, performance.now())) continue;
        await this.pollOne(sensor);
        if (gapMs > 0) await this.idle(gapMs);
      }
      const rest = pollIntervalMs - (performance.now() - cycleStart);
      // Yield to the event loop at least once a cycle, even with a zero interval.
      await this.idle(rest > 0 ? rest : 0);
    }
  }

  private async pollOne(sensor: string): Promise<void> {
    this.stats.polls++;
    try {
      const reading = await this.pollSensor(sensor);
      this.stats.readings++;
      this.health.ok(sensor, reading.ts);
      this.emit('reading', reading);
    } catch (e) {
      if (!this.running) return;
      if (isShelfgateError(e, ErrorCode.TRANSPORT_CLOSED) || isShelfgateError(e, ErrorCode.STOPPED)) return; // link down: reported by onOffline
      let kind = 'invalid';
      if (isShelfgateError(e, ErrorCode.DEVICE_TIMEOUT)) (this.stats.timeouts++, (kind = 'timeout'));
      else if (isShelfgateError(e, ErrorCode.FRAME_CRC)) (this.stats.crcErrors++, (kind = 'crc'));
      else if (isShelfgateError(e, ErrorCode.DEVICE_ERROR_RESPONSE)) (this.stats.deviceErrors++, (kind = 'device-error'));
      else this.stats.invalidFrames++;
      const message = (e as Error).message;
      this.limiter.warn(`${sensor}:${kind}`, { sensor, kind, err: message }, 'sensor did not answer correctly');
      this.health.miss(sensor, `${kind}: ${message}`, Date.now(), performance.now());
    }
  }

  /**
   * Hand-written rather than util sleep(ms, AbortSignal): this runs once per request on a serial
   * line (the t3.5 gap), and an AbortController plus listener per call raised the ingest
   * benchmark's RSS from 140 to 178 MB (bench/ingest.ts, 192 buses).
   */
  private idle(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      const self = this;
      function done(): void {
        clearTimeout(t);
        if (self.wake === done) self.wake = null;
        resolve();
      }
      this.wake = done;
    });
  }
}
