import { EventEmitter } from 'node:events';
import { ErrorCode, ShelfgateError } from '../errors';
import type { Socket } from 'node:net';
import type { Link } from './types';

/** What a byte stream (a serial port, a TCP socket) offers a StreamLink. */
export interface ByteStreamLike {
  on(event: 'data', l: (chunk: Buffer) => void): unknown;
  on(event: 'error', l: (err: Error) => void): unknown;
  on(event: 'close', l: (err?: Error | null) => void): unknown;
  off(event: 'data', l: (chunk: Buffer) => void): unknown;
  off(event: 'error', l: (err: Error) => void): unknown;
  off(event: 'close', l: (err?: Error | null) => void): unknown;
}

export function closedError(description: string): ShelfgateError {
  return new ShelfgateError(ErrorCode.TRANSPORT_CLOSED, `${description}: link closed`);
}

export function ignore(): void {}

/**
 * The Link lifecycle shared by serial ports and TCP sockets: 'data' passes through; the first
 * 'error' or 'close' of the stream (or close()) ends the link with exactly ONE 'close'; writes still
 * pending then are rejected at once (a drain callback may never come once the device is gone); an
 * 'error' listener stays on the dead stream, because an 'error' nobody listens to crashes the daemon.
 * Subclasses say how bytes are written and how the stream is torn down.
 */
export abstract class StreamLink<S extends ByteStreamLike> extends EventEmitter implements Link {
  private closed = false;
  private readonly pending = new Set<(e: Error) => void>();
  private readonly onData = (chunk: Buffer): void => {
    this.emit('data', chunk);
  };
  /** For streams that hand over bytes some other way than 'data' (a socket's onread). */
  protected received(chunk: Buffer): void {
    if (!this.closed) this.emit('data', chunk);
  }
  private readonly onError = (err: Error): void => this.finish(err);
  private readonly onClose = (err?: Error | null): void => this.finish(err ?? this.peerClosedError());

  constructor(
    protected readonly stream: S,
    readonly description: string,
  ) {
    super();
    stream.on('data', this.onData);
    stream.on('error', this.onError);
    stream.on('close', this.onClose);
  }

  /** Writes `data`; `done` once the bytes have left (serial: after tcdrain) or with the error. */
  protected abstract writeRaw(data: Buffer, done: (err?: Error | null) => void): void;
  /** Tears the stream down; resolves when it is gone. Never rejects. */
  protected abstract destroyStream(): Promise<void>;
  /** The error a 'close' without one stands for (undefined: a plain close). */
  protected peerClosedError(): Error | undefined {
    return undefined;
  }

  write(data: Buffer): Promise<void> {
    if (this.closed) return Promise.reject(closedError(this.description));
    return new Promise<void>((resolve, reject) => {
      const fail = (e: Error): void => {
        this.pending.delete(fail);
        reject(this.writeFailed(e));
      };
      this.pending.add(fail);
      this.writeRaw(data, (err) => {
        if (!this.pending.has(fail)) return; // already rejected by finish()
        if (err) fail(err);
        else {
          this.pending.delete(fail);
          resolve();
        }
      });
    });
  }

  /** Default: through write(). A stream whose write callbacks always come may do without the promise. */
  send(data: Buffer, onError: (err: Error) => void): void {
    this.write(data).catch(onError);
  }

  protected get isClosed(): boolean {
    return this.closed;
  }

  protected writeFailed(e: Error): ShelfgateError {
    return new ShelfgateError(ErrorCode.TRANSPORT_CLOSED, `${this.description}: write failed: ${e.message}`, undefined, { cause: e });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.detach(undefined);
    await this.destroyStream();
    this.emit('close');
  }

  private finish(err: Error | undefined): void {
    if (this.closed) return;
    this.detach(err);
    void this.destroyStream();
    this.emit('close', err);
  }

  private detach(err: Error | undefined): void {
    this.closed = true;
    this.stream.off('data', this.onData);
    this.stream.off('close', this.onClose);
    this.stream.off('error', this.onError);
    this.stream.on('error', ignore);
    for (const fail of [...this.pending]) fail(err ?? closedError(this.description));
  }
}

/**
 * Waits for a client socket to be usable (`connect` for TCP, `secureConnect` for TLS), then hands
 * it to `makeLink`; on an error or after `timeoutMs` destroys it and rejects TRANSPORT_OPEN_FAILED
 * with the endpoint in the message. The one place the TCP and TLS openers settle a connect.
 */
export function settleConnect(socket: Socket, readyEvent: 'connect' | 'secureConnect', o: { description: string; host: string; port: number; timeoutMs: number; timeoutWhat: string }, makeLink: () => Link): Promise<Link> {
  return new Promise<Link>((resolve, reject) => {
    const fail = (err: Error): void => {
      clearTimeout(timer);
      socket.off(readyEvent, onReady);
      socket.off('error', fail);
      socket.on('error', ignore);
      socket.destroy();
      reject(new ShelfgateError(ErrorCode.TRANSPORT_OPEN_FAILED, `${o.description}: ${err.message}`, { host: o.host, port: o.port }, { cause: err }));
    };
    const onReady = (): void => {
      clearTimeout(timer);
      socket.off('error', fail);
      resolve(makeLink());
    };
    const timer = setTimeout(() => fail(new Error(`${o.timeoutWhat} timed out after ${o.timeoutMs} ms`)), o.timeoutMs);
    socket.once(readyEvent, onReady);
    socket.once('error', fail);
  });
}
