import pino from 'pino';

export type Logger = pino.Logger;

/** The root logger: JSON lines to stdout (journald captures them). Components get `child({ module })`. */
export function createLogger(level: string = 'info', destination?: pino.DestinationStream): Logger {
  return pino({ level, base: { svc: 'shelfgate' }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
}

/** A logger that writes nothing, for unit tests that do not read logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/**
 * Rate-limits repeated identical log lines (a known failure of other gateways: log floods). The first occurrence of a key is
 * logged at once; further ones within `windowMs` are counted and summarised as one line
 * (`repeated: N`) when the window ends, on the next occurrence after it. Keys are chosen by the
 * caller (for example `${device}:crc`), so one chatty device never hides another's errors.
 */
export class LogLimiter {
  private readonly windows = new Map<string, { until: number; suppressed: number }>();
  constructor(
    private readonly log: Logger,
    private readonly windowMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** `obj` may be a function: it is then called only when the line is written, not when suppressed (for hot paths). */
  warn(key: string, obj: object | (() => object), msg: string): void {
    this.emit('warn', key, obj, msg);
  }

  error(key: string, obj: object | (() => object), msg: string): void {
    this.emit('error', key, obj, msg);
  }

  private emit(level: 'warn' | 'error', key: string, fields: object | (() => object), msg: string): void {
    const t = this.now();
    const w = this.windows.get(key);
    if (w && t < w.until) {
      w.suppressed++;
      return;
    }
    const repeated = w?.suppressed ?? 0;
    this.windows.set(key, { until: t + this.windowMs, suppressed: 0 });
    if (this.windows.size > 10_000) this.prune(t);
    const obj = typeof fields === 'function' ? fields() : fields;
    this.log[level](repeated > 0 ? { ...obj, repeated } : obj, msg);
  }

  private prune(t: number): void {
    for (const [k, w] of this.windows) if (t >= w.until && w.suppressed === 0) this.windows.delete(k);
  }
}
