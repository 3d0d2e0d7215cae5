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

interface Pending {
  feed: (chunk: Buffer) => unknown;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timeoutMs: number;
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

  private readonly onData = (chunk: Buffer): void => {
    const p = this.pending;
    if (!p) {
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
    this.finish();
    p.reject(new ShelfgateError(ErrorCode.DEVICE_TIMEOUT, `no answer within ${p.timeoutMs} ms`));
  };

  constructor(
    private readonly link: ByteLink,
    private readonly onUnsolicited: (chunk: Buffer) => void = () => {},
  ) {}

  attach(): void {
    this.link.on('data', this.onData);
  }

  detach(): void {
    this.link.off('data', this.onData);
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = 0;
    this.failAll(() => new ShelfgateError(ErrorCode.STOPPED, 'channel stopped'));
  }

  /**
   * The link went down: the outstanding and queued requests fail now with TRANSPORT_CLOSED, instead
   * of waiting out their timeouts and counting as device misses.
   */
  linkDown(reason: string): void {
    this.failAll(() => new ShelfgateError(ErrorCode.TRANSPORT_CLOSED, `link down: ${reason}`));
  }

  private failAll(error: () => Error): void {
    const p = this.pending;
    this.pending = null;
    p?.reject(error());
    for (const q of this.queue.splice(0)) q.reject(error());
  }

  /** Queues a request behind any outstanding one; resolves with the decoder's result. */
  request<T>(frame: Buffer, feed: (chunk: Buffer) => T | null, timeoutMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const item: Queued = { frame, feed, resolve: resolve as (v: unknown) => void, reject, timeoutMs };
      if (this.pending) this.queue.push(item);
      else this.send(item);
    });
  }

  private send(item: Queued): void {
    if (!this.link.online) {
      item.reject(new ShelfgateError(ErrorCode.TRANSPORT_CLOSED, 'link offline'));
      this.next();
      return;
    }
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
}
