import { createConnection, type Socket } from 'node:net';
import { ErrorCode, ShelfgateError } from '../errors';
import { closedError, ignore, StreamLink } from './stream-link';
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
class TcpLink extends StreamLink<Socket> {
  /** The socket's onread callback: a copy of what arrived (the read buffer is reused). */
  readonly onRead = (n: number, buf: Buffer): void => {
    this.received(Buffer.from(buf.subarray(0, n)));
  };

  // The callback runs once the bytes are handed to the kernel (or with an error).
  protected writeRaw(data: Buffer, done: (err?: Error | null) => void): void {
    this.stream.write(data, done);
  }

  /**
   * No promise and no pending-write bookkeeping: a socket calls every write callback, with an
   * error if the write failed or the socket was destroyed first, and a failed write also ends the
   * link through 'error'/'close'. This is one request per reading: it runs tens of thousands of
   * times a second on a busy store.
   */
  override send(data: Buffer, onError: (err: Error) => void): void {
    if (this.isClosed) return onError(closedError(this.description));
    this.stream.write(data, (err) => {
      if (err) onError(this.writeFailed(err));
    });
  }

  protected destroyStream(): Promise<void> {
    return new Promise<void>((resolve) => {
      if (this.stream.destroyed) return resolve();
      this.stream.once('close', () => resolve());
      this.stream.destroy();
    });
  }

  protected override peerClosedError(): Error {
    return new Error('connection closed by peer');
  }
}

/** One read buffer per connection: answers are tens of bytes; a longer burst arrives in several reads. */
const READ_BUFFER_BYTES = 4096;

export function tcpOpener(host: string, port: number, opts: TcpOpenerOptions = {}): Opener {
  const { connectTimeoutMs = 5000, keepAliveMs = 10_000 } = opts;
  const description = `tcp://${host.includes(':') ? `[${host}]` : host}:${port}`;
  return () =>
    new Promise<Link>((resolve, reject) => {
      // onread reads into one buffer per socket and calls us directly: no stream push, 'data'
      // event and 64 KiB allocation per answer (the link copies each answer out).
      let link: TcpLink | null = null;
      const onread = {
        buffer: Buffer.allocUnsafe(READ_BUFFER_BYTES),
        callback: (n: number, buf: Buffer): boolean => {
          link?.onRead(n, buf);
          return true; // false would pause the socket
        },
      };
      const socket = createConnection({ host, port, noDelay: true, keepAlive: true, keepAliveInitialDelay: keepAliveMs, onread });
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
        link = new TcpLink(socket, description);
        resolve(link);
      };
      const timer = setTimeout(() => fail(new Error(`connect timed out after ${connectTimeoutMs} ms`)), connectTimeoutMs);
      socket.once('connect', onConnect);
      socket.once('error', fail);
    });
}
