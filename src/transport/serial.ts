import { read } from 'node:fs';
import { promisify } from 'node:util';
import { SerialPort } from 'serialport';
import { ErrorCode, ShelfgateError } from '../errors';
import { ignore, StreamLink } from './stream-link';
import type { Opener, SerialSettings } from './types';

/**
 * A serial port as a Link. serialport #2043: a physical unplug emits no 'close' until a read or
 * write fails (EIO, ENXIO, EBADF), and a failed write surfaces as 'error'; so any 'error' counts as
 * "disconnected": close the port and emit the Link's single 'close'.
 */
class SerialLink extends StreamLink<SerialPort> {
  // drain() waits for the write and tcdrain(), so the bytes have left the UART when done() runs.
  protected writeRaw(data: Buffer, done: (err?: Error | null) => void): void {
    this.stream.write(data, (err) => {
      if (err) return done(err);
      this.stream.drain((derr) => done(derr ? new Error(`drain failed: ${derr.message}`) : undefined));
    });
  }

  protected destroyStream(): Promise<void> {
    return closePort(this.stream);
  }
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

/** Opens `path` (prefer /dev/serial/by-id/...: ttyUSBn can change on replug). */
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
