/**
 * A TLS client connection as a Link, for devices that speak their protocol over TLS (LLRP readers
 * on port 5085). The certificate files are read at every connect attempt, so a renewed CA bundle
 * or client certificate applies at the next reconnect without a restart; a file that cannot be
 * read fails that attempt with its path in the message, like a refused connection would.
 * The server's certificate is always verified (against `caFile`, else the system CAs) and its name
 * checked against `serverName` (default: the host): there is no switch to turn that off, because
 * a reader's tag stream is stock data and a technician who needs it off should fix the
 * certificate instead.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { connect, type TLSSocket } from 'node:tls';
import { ErrorCode, ShelfgateError } from '../errors';
import { settleConnect, StreamLink } from './stream-link';
import type { Opener } from './types';

export interface TlsOpenerOptions {
  /** PEM CA bundle for the server's certificate (default: the system CAs). */
  caFile?: string;
  /** PEM client certificate and key, for readers that ask for one. */
  certFile?: string;
  keyFile?: string;
  /** Name the certificate must carry (default: the host). */
  serverName?: string;
  /** Give up a connect + handshake attempt after this long. Default 10000. */
  connectTimeoutMs?: number;
  /** Idle time before the first TCP keepalive probe. Default 10000. */
  keepAliveMs?: number;
}

class TlsLink extends StreamLink<TLSSocket> {
  protected writeRaw(data: Buffer, done: (err?: Error | null) => void): void {
    this.stream.write(data, done);
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

function readPem(path: string | undefined, what: string, description: string): Buffer | undefined {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ShelfgateError(ErrorCode.TRANSPORT_OPEN_FAILED, `${description}: cannot read the ${what} ${path}: ${(err as Error).message}`, { path }, { cause: err });
  }
}

export function tlsOpener(host: string, port: number, opts: TlsOpenerOptions = {}): Opener {
  const { connectTimeoutMs = 10_000, keepAliveMs = 10_000 } = opts;
  const description = `tls://${host.includes(':') ? `[${host}]` : host}:${port}`;
  return async () => {
    const ca = readPem(opts.caFile, 'CA bundle (ca_file)', description);
    const cert = readPem(opts.certFile, 'client certificate (cert_file)', description);
    const key = readPem(opts.keyFile, 'client key (key_file)', description);
    // Node checks the certificate against `servername` when given, else against `host`; an IP
    // address may not be sent as SNI, so for one the certificate needs that IP in its SANs.
    const servername = opts.serverName ?? (isIP(host) === 0 ? host : undefined);
    const socket = connect({ host, port, ...(servername ? { servername } : {}), ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}), rejectUnauthorized: true });
    socket.setNoDelay(true);
    socket.setKeepAlive(true, keepAliveMs);
    return settleConnect(socket, 'secureConnect', { description, host, port, timeoutMs: connectTimeoutMs, timeoutWhat: 'connect and TLS handshake' }, () => new TlsLink(socket, description));
  };
}
