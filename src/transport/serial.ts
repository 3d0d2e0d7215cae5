import { EventEmitter } from 'node:events';
import { read } from 'node:fs';
import { promisify } from 'node:util';
import { SerialPort } from 'serialport';
import { ErrorCode, ShelfgateError } from '../errors';
import type { Link, Opener, SerialSettings } from './types';

/**
 * A serial port as a Link. serialport #2043: a physical unplug emits no 'close' until a read or
 * write fails (EIO, ENXIO, EBADF), and a failed write surfaces as 'error'; so any 'error' counts as
 * "disconnected": close the port and emit the Link's single 'close'.
 */
class SerialLink extends EventEmitter implements Link {
  private closed = false;
  private readonly pending = new Set<(e: Error) => void>();
  private readonly onData = (chunk: Buffer): void => {
    this.emit('data', chunk);
  };
  private readonly onError = (err: Error): void => this.finish(err);
  private readonly onClose = (err?: Error | null): void => this.finish(err ?? undefined);

  constructor(
    private readonly port: SerialPort,
    readonly description: string,
  ) {
    super();
    port.on('data', this.onData);
    port.on('error', this.onError);
    port.on('close', this.onClose);
  }

  write(data: Buffer): Promise<void> {
    if (this.closed) return Promise.reject(closedError(this.description));
    return new Promise<void>((resolve, reject) => {
      const fail = (e: Error): void => {
        this.pending.delete(fail);
        reject(new ShelfgateError(ErrorCode.TRANSPORT_CLOSED, `${this.description}: write failed: ${e.message}`, undefined, { cause: e }));
      };
      this.pending.add(fail);
      // drain() waits for the write and tcdrain(), so the bytes have left the UART when we resolve.
      this.port.write(data, (err) => {
        if (err) return fail(err);
        this.port.drain((derr) => {
          if (!this.pending.delete(fail)) return; // already rejected by finish()
          if (derr) reject(new ShelfgateError(ErrorCode.TRANSPORT_CLOSED, `${this.description}: drain failed: ${derr.message}`, undefined, { cause: derr }));
          else resolve();
        });
      });
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.detach(undefined);
    await closePort(this.port);
    this.emit('close');
  }

  private finish(err: Error | undefined): void {
    if (this.closed) return;
    this.detach(err);
    void closePort(this.port);
    this.emit('close', err);
  }

  private detach(err: Error | undefined): void {
    this.closed = true;
    this.port.off('data', this.onData);
    this.port.off('close', this.onClose);
    // Keep an 'error' listener: an 'error' emitted by a port nobody listens to would crash the daemon.
    this.port.off('error', this.onError);
    this.port.on('error', ignore);
    // A drain callback may never come once the port is gone (it waits for a reopen); fail writes now.
    for (const fail of [...this.pending]) fail(err ?? closedError(this.description));
  }
}

function ignore(): void {}

function closedError(description: string): ShelfgateError {
  return new ShelfgateError(ErrorCode.TRANSPORT_CLOSED, `${description}: link closed`);
}

/** Closes the port if it is open; never rejects (a port that is already gone is closed enough). */
function closePort(port: SerialPort): Promise<void> {
  if (!port.isOpen) return Promise.resolve();
  return new Promise((resolve) => port.close(() => resolve()));
}

/**
 * serialport's own binding with one fix. bindings-cpp #162 (fix PR #164 not merged in 13.0.0):
 * after a hangup (USB unplug, pty master closed) read() returns 0 bytes, and unix-read.js retries
 * that at once, forever: 100 % CPU and no 'close' until a write fails (measured here with socat
 * in about half of the unplugs). On a non-blocking tty 0 bytes only ever means end of file, so our
 * read treats it as a disconnect, which the stream turns into its 'close'.
 */
const readAsync = promisify(read);
type UnixPort = { fd: number | null; poller: { once(event: 'readable', cb: (err?: Error | null) => void): unknown } };
const detected = SerialPort.binding;
type OpenOptions = Parameters<typeof detected.open>[0];
type PortBinding = Awaited<ReturnType<typeof detected.open>>;
const eofAwareBinding = {
  list: () => detected.list(),
  async open(options: OpenOptions): Promise<PortBinding> {
    const port = await (detected.open as (o: OpenOptions) => Promise<PortBinding>)(options);
    const unix = port as unknown as Partial<UnixPort>;
    if (typeof unix.fd !== 'number' || !unix.poller) return port; // Windows: its own read, untouched
    const { poller } = unix as UnixPort;
    port.read = async (buffer, offset, length) => {
      for (;;) {
        const fd = (unix as UnixPort).fd;
        if (fd === null) throw Object.assign(new Error('Port is not open'), { canceled: true });
        try {
          const { bytesRead } = await readAsync(fd, buffer, offset, length, null);
          if (bytesRead > 0) return { bytesRead, buffer };
          throw Object.assign(new Error('EOF: the device hung up (unplugged)'), { code: 'EOF', disconnect: true });
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code !== 'EAGAIN' && code !== 'EWOULDBLOCK' && code !== 'EINTR') throw err;
          await new Promise<void>((resolve, reject) => poller.once('readable', (e) => (e ? reject(e) : resolve())));
        }
      }
    };
    return port;
  },
};

/** Opens `path` (prefer /dev/serial/by-id/..., protocols.md §7: ttyUSBn can change on replug). */
export function serialOpener(path: string, settings: SerialSettings): Opener {
  const description = `serial:${path}`;
  return async () => {
    let port: SerialPort;
    try {
      const options = { path, ...settings, autoOpen: false, binding: eofAwareBinding };
      port = new SerialPort(options as ConstructorParameters<typeof SerialPort>[0]);
    } catch (e) {
      throw new ShelfgateError(ErrorCode.TRANSPORT_OPEN_FAILED, `${description}: ${(e as Error).message}`, { path }, { cause: e });
    }
    port.on('error', ignore); // until the Link takes over
    await new Promise<void>((resolve, reject) =>
      port.open((err) =>
        err ? reject(new ShelfgateError(ErrorCode.TRANSPORT_OPEN_FAILED, `${description}: ${err.message}`, { path }, { cause: err })) : resolve(),
      ),
    );
    port.off('error', ignore);
    return new SerialLink(port, description);
  };
}
