import { EventEmitter } from 'node:events';
import { LogLimiter, type Logger } from '../../log';
import type { SourceLink } from './polled-source';

/** A streaming source writes only its start and stop sequences, with a promise (not the per-request send path). */
export type StreamingLink = SourceLink & { write(data: Buffer): Promise<void> };
import type { DeviceAvailability, Source, SourceReading, SourceStats } from './types';

/**
 * What a decoder reports while it decodes one chunk. One object per source, reused for every chunk
 * (the per-frame path allocates nothing); `ts`/`rxMono` are the chunk's arrival times.
 */
export interface StreamSink<R extends SourceReading> {
  /** Wall clock (ms since epoch) when the chunk arrived. */
  readonly ts: number;
  /** performance.now() when the chunk arrived. */
  readonly rxMono: number;
  /** A decoded reading: emitted, and its device counts as heard from. */
  reading(r: R): void;
  /** A good frame that carries no reading (a status, a keep-alive, an answer): the device is alive. */
  alive(device: string): void;
  /** A frame that could not be decoded (counted in invalidFrames). */
  invalid(why?: string): void;
  /** A frame with a wrong checksum or CRC (counted in crcErrors). */
  crcError(): void;
  /** The device reported an error of its own (counted in deviceErrors, logged rate-limited). */
  deviceError(device: string, message: string): void;
  /** Bytes skipped as line noise (counted in noiseBytes). */
  noise(bytes: number): void;
}

/** Turns the received byte stream into readings. Sees every chunk, split anywhere. */
export interface StreamDecoder<R extends SourceReading> {
  /** Decodes one chunk (part of a frame, or several). A throw counts as one invalid frame and resets it. */
  decode(chunk: Buffer, sink: StreamSink<R>): void;
  /** Forgets any partial frame: called when the link comes up or goes down, and on stop. */
  reset(): void;
}

export interface StreamingSourceOptions<R extends SourceReading> {
  name: string;
  link: StreamingLink;
  /** Device keys this stream reports on; each has its own silence clock. */
  devices: readonly string[];
  decoder: StreamDecoder<R>;
  /** A device that sends no good frame for this long goes offline (reason `silent`). */
  silenceMs: number;
  /** Written, in order, each time the link comes up (e.g. the command that starts continuous output). */
  startFrames?: readonly Buffer[];
  /** Written, in order, on stop() while the link is up (e.g. the command that ends it). */
  stopFrames?: readonly Buffer[];
  /**
   * Write startFrames again every `silenceMs` while a device is silent. Default true: a device
   * power-cycled behind a link that stayed up (a USB-serial adapter, a serial server) comes back
   * in its default mode and would never stream again.
   */
  restartWhenSilent?: boolean;
  log: Logger;
}

/** stop() waits at most this long for the stop frames to be written. */
const STOP_WRITE_TIMEOUT_MS = 1_000;

interface DeviceState {
  online: boolean | null;
  /** performance.now() of the last good frame, or of the link coming up. */
  lastMono: number;
}

/**
 * The second kind of source beside PolledSource: the device pushes frames (an RFID reader's tag
 * notifications, a scanner's lines, a scale in continuous mode) and the gateway only listens.
 * Protocol-free: the decoder turns chunks into readings, the optional start and stop frames put
 * the device in and out of its streaming mode.
 *
 * Liveness, per device: offline after `silenceMs` without a good frame (reason `silent: ...`, and
 * stats.timeouts counts it), back online at its next good frame; every device goes offline at
 * once when the link drops. Only transitions are reported, as with PolledSource. Garbage is
 * counted (invalidFrames, crcErrors, noiseBytes), logged rate-limited, and never stops the stream.
 * Times come from the global `performance` (not node:perf_hooks' export), so fake timers drive it.
 */
export class StreamingSource<R extends SourceReading = SourceReading> extends EventEmitter implements Source<R> {
  readonly name: string;
  readonly devices: readonly string[];
  readonly stats: SourceStats = { polls: 0, readings: 0, timeouts: 0, crcErrors: 0, deviceErrors: 0, invalidFrames: 0, noiseBytes: 0, lateAnswers: 0 };
  private readonly log: Logger;
  private readonly limiter: LogLimiter;
  private readonly state = new Map<string, DeviceState>();
  private readonly restartWhenSilent: boolean;
  private running = false;
  private timer: NodeJS.Timeout | null = null;
  /** performance.now() when startFrames were last written. */
  private lastStartMono = -Infinity;
  private readonly sink: StreamSink<R> & { ts: number; rxMono: number };

  private readonly onData = (chunk: Buffer): void => {
    if (!this.running) return;
    this.sink.ts = Date.now();
    this.sink.rxMono = performance.now();
    try {
      this.opts.decoder.decode(chunk, this.sink);
    } catch (e) {
      this.stats.invalidFrames++;
      this.opts.decoder.reset();
      this.limiter.warn(`${this.name}:decode`, { err: (e as Error).message }, 'stream decoder failed on a chunk; reset');
    }
  };
  private readonly onOnline = (): void => {
    if (!this.running) return;
    this.opts.decoder.reset();
    const now = performance.now();
    for (const s of this.state.values()) s.lastMono = now;
    this.writeStart();
    this.arm();
  };
  private readonly onOffline = (reason: string): void => {
    if (!this.running) return;
    this.opts.decoder.reset();
    this.disarm();
    const ts = Date.now();
    for (const [device, s] of this.state) {
      if (s.online === false) continue;
      s.online = false;
      this.report({ sensor: device, online: false, reason: `link down: ${reason}`, ts });
    }
  };
  private readonly onTimer = (): void => {
    this.timer = null;
    if (!this.running || !this.opts.link.online) return;
    const now = performance.now();
    const ts = Date.now();
    let silent = false;
    for (const [device, s] of this.state) {
      if (s.online !== false && now - s.lastMono >= this.opts.silenceMs) {
        s.online = false;
        this.stats.timeouts++;
        this.report({ sensor: device, online: false, reason: `silent: no frame for ${this.opts.silenceMs} ms`, ts });
      }
      if (s.online === false) silent = true;
    }
    if (silent && this.restartWhenSilent && now - this.lastStartMono >= this.opts.silenceMs) this.writeStart();
    this.arm();
  };

  constructor(private readonly opts: StreamingSourceOptions<R>) {
    super();
    if (!(opts.silenceMs > 0)) throw new RangeError(`silenceMs must be > 0, got ${opts.silenceMs}`);
    this.name = opts.name;
    this.devices = opts.devices;
    this.log = opts.log;
    this.limiter = new LogLimiter(opts.log);
    this.restartWhenSilent = opts.restartWhenSilent ?? true;
    for (const d of opts.devices) this.state.set(d, { online: null, lastMono: 0 });
    const self = this;
    this.sink = {
      ts: 0,
      rxMono: 0,
      reading(r: R): void {
        self.stats.readings++;
        self.heard(r.sensor, r.ts);
        self.safeEmit('reading', r);
      },
      alive(device: string): void {
        self.heard(device, self.sink.ts);
      },
      invalid(why?: string): void {
        self.stats.invalidFrames++;
        if (why) self.limiter.warn(`${self.name}:invalid`, { err: why }, 'invalid frame in stream');
      },
      crcError(): void {
        self.stats.crcErrors++;
      },
      deviceError(device: string, message: string): void {
        self.stats.deviceErrors++;
        self.limiter.warn(`${device}:device-error`, { sensor: device, err: message }, 'device reported an error');
      },
      noise(bytes: number): void {
        self.stats.noiseBytes += bytes;
      },
    };
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    this.opts.link.on('data', this.onData);
    this.opts.link.on('online', this.onOnline);
    this.opts.link.on('offline', this.onOffline);
    if (this.opts.link.online) this.onOnline();
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.disarm();
    this.opts.link.off('data', this.onData);
    this.opts.link.off('online', this.onOnline);
    this.opts.link.off('offline', this.onOffline);
    this.opts.decoder.reset();
    const frames = this.opts.stopFrames ?? [];
    if (frames.length > 0 && this.opts.link.online) {
      let timer: NodeJS.Timeout | undefined;
      const write = (async () => {
        for (const f of frames) await this.opts.link.write(f);
      })().catch((e: Error) => this.log.warn({ err: e.message }, 'could not write the stop sequence'));
      await Promise.race([write, new Promise<void>((r) => (timer = setTimeout(r, STOP_WRITE_TIMEOUT_MS)))]);
      clearTimeout(timer);
    }
  }

  isOnline(device: string): boolean {
    return this.state.get(device)?.online === true;
  }

  /** A good frame from `device`: refreshes its silence clock, reports it online if it was not. */
  private heard(device: string, ts: number): void {
    const s = this.state.get(device);
    if (!s) return; // a device this source does not report on: the consumer counts it
    s.lastMono = this.sink.rxMono;
    if (s.online !== true) {
      s.online = true;
      this.report({ sensor: device, online: true, ts });
      if (!this.timer) this.arm();
    }
  }

  private report(a: DeviceAvailability): void {
    this.safeEmit('availability', a);
  }

  /** A throwing listener is the listener's bug: it must not cost the rest of the chunk nor reset the decoder. */
  private safeEmit(event: 'reading' | 'availability', arg: unknown): void {
    try {
      this.emit(event, arg);
    } catch (err) {
      this.limiter.error(`${this.name}:${event}-listener`, { err: (err as Error)?.message, event }, 'source listener threw');
    }
  }

  private writeStart(): void {
    const frames = this.opts.startFrames ?? [];
    if (frames.length === 0) return;
    this.lastStartMono = performance.now();
    void (async () => {
      for (const f of frames) await this.opts.link.write(f);
    })().catch((e: Error) => this.limiter.warn(`${this.name}:start`, { err: e.message }, 'could not write the start sequence; retrying while silent'));
  }

  /**
   * One timer for the whole source, set to the earliest silence deadline (or, with every device
   * silent, to the next start-sequence retry). Frames only move a timestamp; the timer re-arms
   * itself when it fires early for a device that was heard from meanwhile.
   */
  private arm(): void {
    this.disarm();
    if (!this.running || !this.opts.link.online) return;
    const { silenceMs } = this.opts;
    let next = Infinity;
    let anySilent = false;
    for (const s of this.state.values()) {
      if (s.online === false) anySilent = true;
      else next = Math.min(next, s.lastMono + silenceMs);
    }
    if (anySilent && this.restartWhenSilent && (this.opts.startFrames?.length ?? 0) > 0) next = Math.min(next, this.lastStartMono + silenceMs);
    if (next === Infinity) return;
    this.timer = setTimeout(this.onTimer, Math.max(0, next - performance.now()));
  }

  private disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
