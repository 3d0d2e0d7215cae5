import { EventEmitter } from 'node:events';
import { ErrorCode, ShelfgateError } from '../../src/errors';
import type { SimIo } from '../../simulators/io';

/**
 * A SourceLink for unit tests: what the gateway writes goes to `onWrite` (a script or a
 * simulator), what the device sends arrives as 'data' on a microtask, like a real link.
 */
export class FakeLink extends EventEmitter {
  online = true;
  readonly written: Buffer[] = [];
  private readonly writeListeners = new Set<(chunk: Buffer) => void>();

  async write(data: Buffer): Promise<void> {
    if (!this.online) throw new ShelfgateError(ErrorCode.TRANSPORT_CLOSED, 'fake link offline');
    const copy = Buffer.from(data);
    this.written.push(copy);
    queueMicrotask(() => {
      for (const l of [...this.writeListeners]) l(copy);
    });
  }

  /** Gateway -> device on the per-request path (Link.send): like write(), errors to `onError`. */
  send(data: Buffer, onError: (err: Error) => void): void {
    this.write(data).catch(onError);
  }

  /** Device -> gateway. */
  fromDevice(data: Buffer | string): void {
    const chunk = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
    queueMicrotask(() => this.emit('data', chunk));
  }

  /** Subscribes to what the gateway writes; returns the unsubscribe function. */
  onWrite(cb: (chunk: Buffer) => void): () => void {
    this.writeListeners.add(cb);
    return () => this.writeListeners.delete(cb);
  }

  /** Everything the gateway wrote, as latin1 text. */
  writtenText(): string {
    return Buffer.concat(this.written).toString('latin1');
  }

  goOffline(reason = 'unplugged'): void {
    this.online = false;
    this.emit('offline', reason);
  }

  goOnline(): void {
    this.online = true;
    this.emit('online');
  }

  /** The device end, to attach a simulator: `sim.attach(link.deviceIo())`. */
  deviceIo(): SimIo {
    return { write: (buf) => this.fromDevice(Buffer.from(buf)), onData: (cb) => this.onWrite(cb) };
  }
}

/** Resolves with the first event `name` on `emitter` that satisfies `pred`, or rejects after `timeoutMs`. */
export function nextEvent<T>(emitter: EventEmitter, name: string, pred: (v: T) => boolean = () => true, timeoutMs = 3000): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      emitter.off(name, on);
      reject(new Error(`no matching '${name}' event within ${timeoutMs} ms`));
    }, timeoutMs);
    function on(v: T): void {
      if (!pred(v)) return;
      clearTimeout(t);
      emitter.off(name, on);
      resolve(v);
    }
    emitter.on(name, on);
  });
}
