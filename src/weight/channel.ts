import { ErrorCode, ShelfgateError } from '../errors';

/** The part of ReconnectingLink a channel needs (so tests can pass a fake). */
export interface ByteLink {
  readonly online: boolean;
  write(data: Buffer): Promise<void>;
  on(event: 'data', listener: (chunk: Buffer) => void): unknown;
  off(event: 'data', listener: (chunk: Buffer) => void): unknown;
}

/**
 * One request at a time on one link (an RS-485 bus or an RS-232 scale are half-duplex
 * request/response lines: Modbus over serial line V1.02 §2.1 "only one master ... one transaction
 * at a time"). The caller supplies a decoder fed every received chunk; it returns a result when a
 * whole answer has arrived, or null to keep waiting. Bytes that arrive with no request outstanding
 * are handed to `onUnsolicited` (counted as noise by the caller) and never to the next request.
 */
export class RequestChannel {
  private pending: { feed: (chunk: Buffer) => unknown; resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout } | null = null;
  private tail: Promise<unknown> = Promise.resolve();
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
      this.settle();
      p.reject(e as Error);
      return;
    }
    if (result !== null && result !== undefined) {
      this.settle();
      p.resolve(result);
    }
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
    if (this.pending) {
      const p = this.pending;
      this.settle();
      p.reject(new ShelfgateError(ErrorCode.STOPPED, 'channel stopped'));
    }
  }

  /** Queues a request behind any outstanding one; resolves with the decoder's result. */
  request<T>(frame: Buffer, feed: (chunk: Buffer) => T | null, timeoutMs: number): Promise<T> {
    const run = (): Promise<T> =>
      new Promise<T>((resolve, reject) => {
        if (!this.link.online) {
          reject(new ShelfgateError(ErrorCode.TRANSPORT_CLOSED, 'link offline'));
          return;
        }
        const timer = setTimeout(() => {
          this.settle();
          reject(new ShelfgateError(ErrorCode.DEVICE_TIMEOUT, `no answer within ${timeoutMs} ms`));
        }, timeoutMs);
        this.pending = { feed, resolve: resolve as (v: unknown) => void, reject, timer };
        this.link.write(frame).catch((e: Error) => {
          if (this.pending?.timer === timer) {
            this.settle();
            reject(e);
          }
        });
      });
    const result = this.tail.then(run, run);
    this.tail = result.catch(() => undefined);
    return result;
  }

  private settle(): void {
    if (this.pending) clearTimeout(this.pending.timer);
    this.pending = null;
  }
}
