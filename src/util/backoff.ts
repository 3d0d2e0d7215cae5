/**
 * Capped exponential backoff with jitter, for reconnect loops (a known failure of other gateways: retry storms).
 *
 * Zigbee2MQTT #32936: a backoff computed as `initial * 2 ** attempt` grew past setTimeout's
 * 2^31 - 1 ms limit, which Node turns into 1 ms, so the daemon retried in a tight loop. Here the
 * delay is grown step by step and stops growing at the cap, so no attempt count can overflow it,
 * and the cap itself is clamped to one hour, far below 2^31 ms (~24.8 days).
 */

/** The largest delay any Backoff returns: 1 h. */
export const MAX_BACKOFF_MS = 3_600_000;

export interface BackoffOptions {
  /** Delay before the first retry, in ms (>= 1). */
  initialMs: number;
  /** Cap on the delay, in ms; clamped to MAX_BACKOFF_MS. */
  maxMs: number;
  /** Growth per attempt; default 2. */
  factor?: number;
  /** Relative jitter: 0.2 spreads each delay uniformly over ±20 %. Default 0.2. */
  jitter?: number;
  /** Uniform [0, 1) source, injectable for tests; default Math.random. */
  random?: () => number;
}

export class Backoff {
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly factor: number;
  private readonly jitter: number;
  private readonly random: () => number;
  private base: number;
  private attempts = 0;

  constructor(opts: BackoffOptions) {
    const { initialMs, maxMs, factor = 2, jitter = 0.2, random = Math.random } = opts;
    if (!(initialMs >= 1) || !Number.isFinite(initialMs)) throw new RangeError(`initialMs must be a finite number >= 1, got ${initialMs}`);
    if (!(maxMs >= 1)) throw new RangeError(`maxMs must be >= 1, got ${maxMs}`);
    if (!(factor >= 1) || !Number.isFinite(factor)) throw new RangeError(`factor must be a finite number >= 1, got ${factor}`);
    if (!(jitter >= 0 && jitter <= 1)) throw new RangeError(`jitter must be within 0..1, got ${jitter}`);
    this.maxMs = Math.min(maxMs, MAX_BACKOFF_MS);
    this.initialMs = Math.min(initialMs, this.maxMs);
    this.factor = factor;
    this.jitter = jitter;
    this.random = random;
    this.base = this.initialMs;
  }

  /** How many delays next() has handed out since construction or the last reset(). */
  get attempt(): number {
    return this.attempts;
  }

  /** The delay before the next retry, in whole ms, within [1, maxMs]. */
  next(): number {
    const spread = 1 + this.jitter * (2 * this.random() - 1);
    const delay = Math.min(this.maxMs, Math.max(1, Math.round(this.base * spread)));
    this.attempts++;
    // Grow towards the cap; once there it stays there (no exponent, so nothing to overflow).
    this.base = Math.min(this.maxMs, this.base * this.factor);
    return delay;
  }

  /** Back to initialMs, e.g. after a connection proved stable. */
  reset(): void {
    this.attempts = 0;
    this.base = this.initialMs;
  }
}

/** setTimeout turns anything above 2^31 - 1 ms (or NaN) into 1 ms (Node docs); clamp instead. */
function clampTimeout(ms: number): number {
  return ms > 0 ? Math.min(ms, 2 ** 31 - 1) : 0;
}

/**
 * Waits `ms`. If `signal` aborts first, resolves at once (never rejects: a forgotten catch on a
 * cancelled sleep must not become an unhandled rejection); callers check `signal.aborted`.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, clampTimeout(ms));
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
