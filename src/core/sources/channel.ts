import { performance } from 'node:perf_hooks';
import { ErrorCode, ShelfgateError } from '../../errors';

/** The part of ReconnectingLink a channel needs (so tests can pass a fake). */
export interface ByteLink {
  readonly online: boolean;
  /** Writes without a promise; `onError` at most once, only if the bytes cannot be written. */
  send(data: Buffer, onError: (err: Error) => void): void;
  on(event: 'data', listener: (chunk: Buffer) => void): unknown;
  off(event: 'data', listener: (chunk: Buffer) => void): unknown;
}

/** Per-request options; pass one constant object per kind of request (the hot path allocates nothing). */
export interface RequestOptions {
  /**
   * What the answer looks like, for the late-answer guard (see RequestChannelOptions.lateGuardMs):
   * requests with different keys can never take each other's answers (a Modbus answer names its
   * address, function and byte count, so `1:3:4` vs `2:3:4`). Without a key, an answer to any
   * earlier request could be mistaken for this one's.
   */
  key?: string;
  /** Called just before the request is written, e.g. to reset a framer so no byte from before counts. */
  begin?: () => void;
}

export interface RequestChannelOptions {
  /**
   * After a request times out, the next request that could take its answer (same key, or no key)
   * is held until the link has been quiet for this long (default 0: no guard). Bytes that arrive
   * meanwhile are a late answer: handed to `onLate` and discarded.
   */
  lateGuardMs?: number;
  /** Late bytes; `first` is true for the first chunk after a given timeout (count late answers on it). */
  onLate?: (chunk: Buffer, first: boolean) => void;
}

interface Pending {
  feed: (chunk: Buffer) => unknown;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timeoutMs: number;
  opts: RequestOptions | undefined;
}

interface Queued extends Pending {
  frame: Buffer;
}

/**
 * One request at a time on one link (an RS-485 bus or an RS-232 scale are half-duplex
 * request/response lines: Modbus over serial line V1.02 §2.1 "only one master ... one transaction
 * at a time"). The caller supplies a decoder fed every received chunk; it returns a result when a
 * whole answer has arrived, or null to keep waiting. Bytes that arrive with no request outstanding
 * are handed to `onUnsolicited` (counted as noise by the caller) and never to the next request.
 *
 * Late answers. A device that answers after its timeout would otherwise have that answer taken
 * as the answer to the NEXT request (neither MT-SICS nor Modbus RTU carries a sequence number),
 * and stay "online" one poll behind forever. So after a timeout the next request that could take
 * that answer waits until the line has been quiet for `lateGuardMs` (bytes in that window restart
 * it, capped at 4x, and are handed to `onLate`, never to a decoder). Chosen over counting owed
 * answers (discard the next N lines after N timeouts) because a device that lost a command would
 * then have every good answer discarded from then on; the quiet guard cannot get stuck, costs
 * nothing while a device answers in time, and costs `lateGuardMs` once per timeout otherwise. An
 * answer later than timeout + guard is indistinguishable from an answer to the next request: keep
 * timeouts generous. Callers also reset their framer in `begin`, so no byte that arrived before a
 * request was written can be part of its answer.
 *
 * This is the per-reading hot path (tens of thousands of requests a second on a busy store), so
 * the timeout costs no timer work per request: one timer per channel, armed for no later than the
 * current request's deadline, checks that deadline when it fires and waits out the rest (a poll
 * answered in a few ms leaves the timer alone; it fires about once per timeout period).
 */
export class RequestChannel {
  private pending: Pending | null = null;
  private readonly queue: Queued[] = [];
  private timer: NodeJS.Timeout | null = null;
  /** When the armed timer fires (performance.now()); 0 when none is armed. */
  private timerAt = 0;
  private deadline = 0;
  private readonly guardMs: number;
  private readonly onLate: (chunk: Buffer, first: boolean) => void;
  /** Timed-out requests whose answer may still come: answer key ('' = none) -> when it timed out. */
  private readonly owed = new Map<string, number>();
  /** When the last late byte arrived (performance.now()). */
  private lastLateAt = -Infinity;
  /** A late byte arrived since the last timeout. */
  private lateSeen = false;
  /** A request waiting for the late-answer guard; nothing is pending meanwhile. */
  private held: Queued | null = null;
  private holdTimer: NodeJS.Timeout | null = null;

  private readonly onData = (chunk: Buffer): void => {
    const p = this.pending;
    if (!p) {
      if (this.owed.size > 0 && this.pruneOwed(performance.now()) > 0) {
        this.lastLateAt = performance.now();
        const first = !this.lateSeen;
        this.lateSeen = true;
        this.onLate(chunk, first);
        return;
      }
      this.onUnsolicited(chunk);
      return;
    }
    let result: unknown;
    try {
      result = p.feed(chunk);
    } catch (e) {
      this.finish();
      p.reject(e as Error);
      return;
    }
    if (result !== null && result !== undefined) {
      this.finish();
      p.resolve(result);
    }
  };

  private readonly onTimer = (): void => {
    this.timerAt = 0;
    const p = this.pending;
    if (!p) return;
    const left = this.deadline - performance.now();
    if (left > 1) {
      // armed for an earlier request: the current one has time left
      this.arm(left);
      return;
    }
    if (this.guardMs > 0) {
      this.owed.set(p.opts?.key ?? '', performance.now());
      this.lateSeen = false;
    }
    this.finish();
    p.reject(new ShelfgateError(ErrorCode.DEVICE_TIMEOUT, `no answer within ${p.timeoutMs} ms`));
  };

  private readonly onHoldTimer = (): void => {
    this.holdTimer = null;
    const item = this.held;
    this.held = null;
    if (item) this.send(item);
  };

  constructor(
    private readonly link: ByteLink,
    private readonly onUnsolicited: (chunk: Buffer) => void = () => {},
    opts: RequestChannelOptions = {},
  ) {
    this.guardMs = opts.lateGuardMs ?? 0;
    this.onLate = opts.onLate ?? (() => {});
  }

  attach(): void {
    this.link.on('data', this.onData);
  }

  detach(): void {
    this.link.off('data', this.onData);
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = 0;
    this.owed.clear();
    this.failAll(() => new ShelfgateError(ErrorCode.STOPPED, 'channel stopped'));
  }

  /**
   * The link went down: the outstanding, held and queued requests fail now with TRANSPORT_CLOSED,
   * instead of waiting out their timeouts and counting as device misses.
   */
  linkDown(reason: string): void {
    this.failAll(() => new ShelfgateError(ErrorCode.TRANSPORT_CLOSED, `link down: ${reason}`));
  }

  private failAll(error: () => Error): void {
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = null;
    const p = this.pending ?? this.held;
    this.pending = null;
    this.held = null;
    p?.reject(error());
    for (const q of this.queue.splice(0)) q.reject(error());
  }

  /** Queues a request behind any outstanding one; resolves with the decoder's result. */
  request<T>(frame: Buffer, feed: (chunk: Buffer) => T | null, timeoutMs: number, opts?: RequestOptions): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const item: Queued = { frame, feed, resolve: resolve as (v: unknown) => void, reject, timeoutMs, opts };
      if (this.pending || this.held) this.queue.push(item);
      else this.send(item);
    });
  }

  private send(item: Queued): void {
    if (!this.link.online) {
      item.reject(new ShelfgateError(ErrorCode.TRANSPORT_CLOSED, 'link offline'));
      this.next();
      return;
    }
    if (this.owed.size > 0) {
      const wait = this.guardWait(item.opts?.key, performance.now());
      if (wait > 0) {
        this.held = item;
        this.holdTimer = setTimeout(this.onHoldTimer, wait);
        return;
      }
    }
    item.opts?.begin?.();
    this.pending = item;
    this.deadline = performance.now() + item.timeoutMs;
    // a timer that fires by the deadline will find this request and wait the rest
    if (this.timerAt === 0 || this.timerAt > this.deadline) this.arm(item.timeoutMs);
    this.link.send(item.frame, (e) => {
      if (this.pending === item) {
        this.finish();
        item.reject(e);
      }
    });
  }

  private arm(ms: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(this.onTimer, ms);
    this.timerAt = performance.now() + ms;
  }

  /** Ends the current request (the timer stays armed: onTimer ignores it or finds the next request) and starts the next. */
  private finish(): void {
    this.pending = null;
    this.next();
  }

  private next(): void {
    const q = this.queue.shift();
    if (q) this.send(q);
  }

  /** Forgets owed answers whose guard has passed (quiet for guardMs, or 4x guardMs since the timeout); returns how many remain. */
  private pruneOwed(now: number): number {
    for (const [key, at] of this.owed) {
      if (now - Math.max(at, this.lastLateAt) >= this.guardMs || now - at >= 4 * this.guardMs) this.owed.delete(key);
    }
    return this.owed.size;
  }

  /**
   * How long a request with `key` must still wait for the late-answer guard (<= 0: send now). Once
   * it may go, the owed answers it could have taken are forgotten.
   */
  private guardWait(key: string | undefined, now: number): number {
    this.pruneOwed(now);
    let wait = 0;
    for (const [k, at] of this.owed) {
      if (key !== undefined && k !== '' && k !== key) continue;
      const w = Math.min(this.guardMs - (now - Math.max(at, this.lastLateAt)), 4 * this.guardMs - (now - at));
      if (w > wait) wait = w;
    }
    if (wait > 0) return wait;
    for (const k of this.owed.keys()) if (key === undefined || k === '' || k === key) this.owed.delete(k);
    return 0;
  }
}
