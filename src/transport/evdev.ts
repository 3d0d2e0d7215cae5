/**
 * A read-only Link on a Linux input event device (`/dev/input/by-id/...-event-kbd`), for
 * keyboard-wedge barcode scanners (src/drivers/evdev.ts decodes what it reads). Used behind a
 * ReconnectingLink like any other link: an unplugged scanner ends the link (the read fails with
 * ENODEV), the reconnect loop reopens it with backoff, and a device missing at boot is an open
 * failure (ENOENT) retried the same way.
 *
 * Design choice: non-blocking reads on a short timer, not a blocking read stream. libuv cannot
 * poll a character device (it is handled like a file, so net.Socket refuses it and fs streams read
 * it in the thread pool). A blocking read would hold one of the pool's 4 threads for as long as
 * the scanner is idle, and at shutdown the pending read keeps the process alive until the next key
 * press (closing the descriptor does not wake a read in progress). So the device is opened
 * O_NONBLOCK and read every `pollMs` (default 8 ms) until it answers EAGAIN; between two reads the
 * kernel keeps the events in the reader's buffer (evdev keeps at least 64 events per reader, about
 * ten characters with their scan codes and SYN records). A buffer overflow is not silent: the
 * kernel then sends SYN_DROPPED, and the read in progress is rejected (src/drivers/evdev.ts).
 *
 * Exclusive access (EVIOCGRAB) needs an ioctl that Node cannot issue without a native module, so
 * the kernel also delivers the scanner's keys to the console and any other reader: see
 * docs/scanners.md for the udev rule that keeps them away from the console.
 */
import { EventEmitter } from 'node:events';
import { constants, promises as fsp } from 'node:fs';
import { ErrorCode, ShelfgateError } from '../errors';
import type { Link, Opener } from './types';

export interface EvdevLinkOptions {
  /** Read the device every this many ms while it has nothing. Default 8. */
  pollMs?: number;
  /** Bytes per read (whole records). Default 4608 (192 records of 24 bytes, 288 of 16). */
  readBytes?: number;
}

/** Reads that still return data back to back before the link yields to the event loop. */
const MAX_READS_PER_TURN = 16;

class EvdevLink extends EventEmitter implements Link {
  readonly description: string;
  private closed = false;
  private timer: NodeJS.Timeout | null = null;
  private reading: Promise<void> | null = null;
  private readonly buf: Buffer;

  constructor(
    private readonly fh: fsp.FileHandle,
    path: string,
    private readonly pollMs: number,
    readBytes: number,
  ) {
    super();
    this.description = `evdev:${path}`;
    this.buf = Buffer.alloc(readBytes);
    this.schedule(0);
  }

  write(): Promise<void> {
    return Promise.reject(new ShelfgateError(ErrorCode.TRANSPORT_CLOSED, `${this.description}: an input device is read-only`));
  }

  send(_data: Buffer, onError: (err: Error) => void): void {
    onError(new ShelfgateError(ErrorCode.TRANSPORT_CLOSED, `${this.description}: an input device is read-only`));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.reading; // a non-blocking read returns at once
    await this.fh.close().catch(() => undefined);
    this.emit('close');
  }

  private schedule(ms: number): void {
    if (this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.reading = this.drain().finally(() => (this.reading = null));
    }, ms);
  }

  private async drain(): Promise<void> {
    for (let n = 0; n < MAX_READS_PER_TURN && !this.closed; n++) {
      let got: number;
      try {
        got = (await this.fh.read(this.buf, 0, this.buf.length, null)).bytesRead;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN' || code === 'EWOULDBLOCK') return this.schedule(this.pollMs);
        return this.fail(e as Error); // ENODEV: unplugged; EIO, EBADF: gone
      }
      if (got === 0) return this.fail(new Error('end of file on an input device'));
      if (!this.closed) this.emit('data', Buffer.from(this.buf.subarray(0, got)));
    }
    this.schedule(0); // more may be waiting: read again after other work had its turn
  }

  private fail(err: Error): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    void this.fh.close().catch(() => undefined);
    this.emit('close', err);
  }
}

/** Opens `path` (an input event device) read-only and non-blocking; rejects if it cannot. */
export function evdevOpener(path: string, opts: EvdevLinkOptions = {}): Opener {
  const pollMs = opts.pollMs ?? 8;
  const readBytes = opts.readBytes ?? 4608;
  return async () => {
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(path, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (e) {
      throw new ShelfgateError(ErrorCode.TRANSPORT_OPEN_FAILED, `cannot open ${path}: ${(e as Error).message}`, { path }, { cause: e });
    }
    return new EvdevLink(fh, path, pollMs, readBytes);
  };
}
