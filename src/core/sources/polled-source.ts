import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { ErrorCode, isShelfgateError } from '../../errors';
import { LogLimiter, type Logger } from '../../log';
import { Backoff } from '../../util/backoff';
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
  /** Delay before a crashed poll loop is started again; grows to maxMs. Default 1 s to 30 s. */
  restartBackoff?: { initialMs: number; maxMs: number };
  /** pollNow() starts an early cycle at most once per this long (a flapping trigger must not hammer the line). Default 1 s. */
  pollNowMinIntervalMs?: number;
}

/** A poll loop that ran this long before it failed starts its restart backoff from the beginning. */
const LOOP_STABLE_MS = 60_000;

/**
 * Event-loop turns, counted only while someone looks: turn() schedules one setImmediate per turn
 * for the whole process (not one per request). A poll cycle notes turn() when it starts; if the
 * count has not moved by its end, its answers never left the microtask queue (a mock device, a
 * simulator in the same process) and it must yield, or timers and I/O would starve.
 */
let turns = 0;
let counting = false;
function countTurn(): void {
  turns++;
  counting = false;
}
function turn(): number {
  if (!counting) {
    counting = true;
    setImmediate(countTurn).unref();
  }
  return turns;
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export type { SourceStats } from './types';

/**
 * The poll loop shared by every polled weight source: walks the sensors of one link one request at
 * a time, paces cycles to `pollIntervalMs`, counts misses per sensor and reports availability.
 * Subclasses implement only `pollSensor` (encode, await the answer, decode).
 *
 * The loop never ends silently while the source runs: a listener that throws is logged and does
 * not touch the loop; anything else that escapes it (a bug) is logged, every device of the source
 * is reported offline, and the loop starts again after a bounded backoff.
 */
export abstract class PolledSource<R extends SourceReading = SourceReading> extends EventEmitter implements Source<R> {
  readonly name: string;
  readonly devices: readonly string[];
  readonly stats: SourceStats = { polls: 0, readings: 0, timeouts: 0, crcErrors: 0, deviceErrors: 0, invalidFrames: 0, noiseBytes: 0, lateAnswers: 0 };
  protected readonly channel: RequestChannel;
  protected readonly log: Logger;
  protected readonly limiter: LogLimiter;
  /** How many times the poll loop failed and was started again. */
  restarts = 0;
  /** pollNow() calls that started an early cycle, and those refused by the rate limit (or while stopped). */
  readonly pollNowStats = { accepted: 0, limited: 0 };
  private readonly health: SensorHealth;
  private readonly restartBackoff: Backoff;
  private running = false;
  private loopDone: Promise<void> = Promise.resolve();
  private wake: (() => void) | null = null;
  /** True while the loop waits out the rest of a cycle (the only wait pollNow may cut short: not a t3.5 gap). */
  private resting = false;
  private pollPending = false;
  private lastPollNow = -Infinity;
  private readonly onOffline = (reason: string): void => {
    this.health.linkDown(`link down: ${reason}`, Date.now());
    this.channel.linkDown(reason);
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
      this.safeEmit('availability', a satisfies DeviceAvailability),
    );
    this.restartBackoff = new Backoff(opts.restartBackoff ?? { initialMs: 1_000, maxMs: 30_000 });
  }

  async start(): Promise<void> {
    this.channel.attach();
    this.opts.link.on('offline', this.onOffline);
    this.opts.link.on('online', this.onOnline);
    this.running = true;
    this.restartBackoff.reset();
    this.loopDone = this.supervise();
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

  /**
   * Starts the next poll cycle now instead of after the rest of the poll interval (a cycle in
   * progress finishes first; the next one then starts without waiting). At most one early cycle per
   * `pollNowMinIntervalMs`: returns false (and counts it) when refused by that limit or stopped.
   */
  pollNow(): boolean {
    const now = performance.now();
    if (!this.running || now - this.lastPollNow < (this.opts.pollNowMinIntervalMs ?? 1_000)) {
      this.pollNowStats.limited++;
      return false;
    }
    this.lastPollNow = now;
    this.pollNowStats.accepted++;
    this.pollPending = true;
    if (this.resting) this.wake?.();
    return true;
  }

  /** Sends one request to `sensor` and resolves with its reading; rejects with a ShelfgateError on a miss. */
  protected abstract pollSensor(sensor: string): Promise<R>;

  /** Runs the poll loop until stop(); a loop that fails is logged, its devices go offline, and it starts again. */
  private async supervise(): Promise<void> {
    while (this.running) {
      const started = performance.now();
      try {
        await this.loop();
        return;
      } catch (e) {
        if (!this.running) return;
        this.restarts++;
        if (performance.now() - started >= LOOP_STABLE_MS) this.restartBackoff.reset();
        const delayMs = this.restartBackoff.next();
        this.log.error({ err: e, restarts: this.restarts, delayMs }, 'poll loop failed; its devices are offline until it runs again');
        this.health.linkDown(`poll loop failed: ${messageOf(e)}`, Date.now());
        // link events wake idle() too: sleep out the whole delay unless stop() comes
        const until = performance.now() + delayMs;
        for (let left = delayMs; this.running && left > 0; left = until - performance.now()) await this.idle(left);
      }
    }
  }

  private async loop(): Promise<void> {
    const { sensors, pollIntervalMs, gapMs } = this.opts;
    while (this.running) {
      if (!this.opts.link.online) {
        await this.idle(1_000);
        continue;
      }
      const cycleStart = performance.now();
      const cycleTurn = turn();
      this.pollPending = false; // this cycle serves every pollNow() before it
      let polled = 0;
      for (let i = 0; i < sensors.length; i++) {
        const sensor = sensors[i]!;
        if (!this.running || !this.opts.link.online) break;
        if (!this.health.due(sensor, performance.now())) continue;
        polled++;
        this.stats.polls++;
        // awaited here rather than in an async pollOne(): one promise and microtask hop less per reading
        let reading: R | null = null;
        try {
          reading = await this.pollSensor(sensor);
        } catch (e) {
          this.missed(sensor, e);
        }
        if (reading) this.received(sensor, reading);
        if (gapMs > 0) await this.idle(gapMs);
      }
      const now = performance.now();
      let rest = pollIntervalMs - (now - cycleStart);
      // Nothing was due (every sensor offline between probes): sleep until the next probe, not spin.
      if (polled === 0) rest = Math.max(rest, Math.min(this.health.msUntilDue(now), 1_000), 1);
      // With no time left to wait, go on: a timer here (even setTimeout(0), which is 1 ms) would
      // cap a bus near 500 requests a second whatever the line. A cycle that waited on I/O has
      // been through the event loop already; one that did not yields a turn (setImmediate).
      if (this.pollPending) rest = 0; // pollNow() during this cycle: the next one starts now
      if (rest >= 1) {
        this.resting = true;
        await this.idle(rest);
        this.resting = false;
      } else if (turn() === cycleTurn) await this.yieldTurn();
    }
  }

  private received(sensor: string, reading: R): void {
    this.stats.readings++;
    this.health.ok(sensor, reading.ts);
    this.safeEmit('reading', reading);
  }

  private missed(sensor: string, e: unknown): void {
    if (!this.running) return;
    if (isShelfgateError(e, ErrorCode.TRANSPORT_CLOSED) || isShelfgateError(e, ErrorCode.STOPPED)) return; // link down: reported by onOffline
    let kind = 'invalid';
    if (isShelfgateError(e, ErrorCode.DEVICE_TIMEOUT)) (this.stats.timeouts++, (kind = 'timeout'));
    else if (isShelfgateError(e, ErrorCode.FRAME_CRC)) (this.stats.crcErrors++, (kind = 'crc'));
    else if (isShelfgateError(e, ErrorCode.DEVICE_ERROR_RESPONSE)) (this.stats.deviceErrors++, (kind = 'device-error'));
    else this.stats.invalidFrames++;
    const message = messageOf(e);
    this.limiter.warn(`${sensor}:${kind}`, { sensor, kind, err: message }, 'sensor did not answer correctly');
    this.health.miss(sensor, `${kind}: ${message}`, Date.now(), performance.now());
  }

  /** A throwing listener is the listener's bug: it must not count as a sensor miss nor stop the loop. */
  private safeEmit(event: 'reading' | 'availability', arg: unknown): void {
    try {
      this.emit(event, arg);
    } catch (err) {
      this.limiter.error(`${this.name}:${event}-listener`, { err, event }, 'source listener threw');
    }
  }

  /** One event-loop turn (timers, I/O, other buses) without a timer. */
  private yieldTurn(): Promise<void> {
    return new Promise((resolve) => setImmediate(resolve));
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
