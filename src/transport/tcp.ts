import { EventEmitter } from 'node:events';
import { createConnection, type Socket } from 'node:net';
import { ErrorCode, ShelfgateError } from '../errors';
import type { Link, Opener } from './types';

export interface TcpOpenerOptions {
  /** Give up a connect attempt after this long (an unplugged gateway often answers nothing). Default 5000. */
  connectTimeoutMs?: number;
  /** Idle time before the first TCP keepalive probe. Default 10000. */
  keepAliveMs?: number;
}

/**
 * Serial over TCP (ser2net raw mode, Ethernet RS-485 gateways; protocols.md §7) as a Link.
 * A gateway that loses power sends no FIN, so keepalive is on to notice it; noDelay is on because
 * request/response frames are small and latency-bound (Nagle would hold them back).
 */
class TcpLink extends EventEmitter implements Link {
  private closed = false;
  private readonly pending = new Set<(e: Error) => void>();
  private readonly onData = (chunk: Buffer): void => {
    this.emit('data', chunk);
  };
  private readonly onError = (err: Error): void => this.finish(err);
  private readonly onClose = (): void => this.finish(new Error('connection closed by peer'));

  constructor(
    private readonly socket: Socket,
    readonly description: string,
  ) {
    super();
    socket.on('data', this.onData);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
  }

  write(data: Buffer): Promise<void> {
    if (this.closed) return Promise.reject(closedError(this.description));
    return new Promise<void>((resolve, reject) => {
      const fail = (e: Error): void => {
        this.pending.delete(fail);
        reject(new ShelfgateError(ErrorCode.TRANSPORT_CLOSED, `${this.description}: write failed: ${e.message}`, undefined, { cause: e }));
      };
      this.pending.add(fail);
      // The callback runs once the bytes are handed to the kernel (or with an error).
      this.socket.write(data, (err) => {
        if (!this.pending.has(fail)) return;
        if (err) fail(err);
        else {
          this.pending.delete(fail);
          resolve();
        }
      });
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.detach(undefined);
    await new Promise<void>((resolve) => {
      if (this.socket.destroyed) return resolve();
      this.socket.once('close', () => resolve());
      this.socket.destroy();
    });
    this.emit('close');
  }

  private finish(err: Error): void {
    if (this.closed) return;
    this.detach(err);
    this.socket.destroy();
    this.emit('close', err);
  }

  private detach(err: Error | undefined): void {
    this.closed = true;
    this.socket.off('data', this.onData);
    this.socket.off('close', this.onClose);
    this.socket.off('error', this.onError);
    this.socket.on('error', ignore); // a late error on a socket nobody listens to would crash the daemon
    for (const fail of [...this.pending]) fail(err ?? closedError(this.description));
  }
}

function ignore(): void {}

function closedError(description: string): ShelfgateError {
  return new ShelfgateError(ErrorCode.TRANSPORT_CLOSED, `${description}: link closed`);
}

export function tcpOpener(host: string, port: number, opts: TcpOpenerOptions = {}): Opener {
  const { connectTimeoutMs = 5000, keepAliveMs = 10_000 } = opts;
  const description = `tcp://${host.includes(':') ? `[${host}]` : host}:${port}`;
  return () =>
    new Promise<Link>((resolve, reject) => {
      const socket = createConnection({ host, port, noDelay: true, keepAlive: true, keepAliveInitialDelay: keepAliveMs });
      const fail = (err: Error): void => {
        clearTimeout(timer);
        socket.off('connect', onConnect);
        socket.off('error', fail);
        socket.on('error', ignore);
        socket.destroy();
        reject(new ShelfgateError(ErrorCode.TRANSPORT_OPEN_FAILED, `${description}: ${err.message}`, { host, port }, { cause: err }));
      };
      const onConnect = (): void => {
        clearTimeout(timer);
        socket.off('error', fail);
        resolve(new TcpLink(socket, description));
      };
      const timer = setTimeout(() => fail(new Error(`connect timed out after ${connectTimeoutMs} ms`)), connectTimeoutMs);
      socket.once('connect', onConnect);
      socket.once('error', fail);
    });
}
