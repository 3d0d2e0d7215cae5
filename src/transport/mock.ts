import { EventEmitter } from 'node:events';
import { ErrorCode, ShelfgateError } from '../errors';
import { sleep } from '../util/backoff';
import type { Link, Opener } from './types';

/**
 * In-memory transport for tests and simulators (the same driver runs on serial, TCP
 * or a mock). The gateway side opens Links through `device.opener`; the test side is the
 * MockDevice: it sends bytes to the gateway, reads what the gateway wrote, unplugs the cable and
 * makes opens fail. Bytes are delivered on a microtask, never inside the caller's write(), as a
 * real link would (and so it also works under fake timers).
 *
 * MockDevice events: 'write' (Buffer, each chunk the gateway wrote), 'open', 'close' (err?).
 */
export class MockDevice extends EventEmitter {
  /** Opens a Link to this device; pass it wherever an Opener is expected. */
  readonly opener: Opener = () => this.open();
  /** Number of successful opens. */
  opens = 0;
  /** Delay every open by this many ms (to test a stop() in the middle of an open). */
  openDelayMs = 0;
  private link: MockLink | null = null;
  private failures: Error[] = [];
  private written: Buffer[] = [];

  constructor(readonly name = 'mock') {
    super();
  }

  /** True while a gateway Link to this device is open. */
  get connected(): boolean {
    return this.link !== null;
  }

  /** Sends bytes to the gateway. Returns false (and drops them) when no Link is open. */
  send(data: Buffer | string): boolean {
    const link = this.link;
    if (!link) return false;
    const chunk = Buffer.from(data);
    queueMicrotask(() => link.deliver(chunk));
    return true;
  }

  /** Everything the gateway wrote since the last take, as one Buffer; clears it. */
  takeWritten(): Buffer {
    const all = Buffer.concat(this.written);
    this.written = [];
    return all;
  }

  /** Simulates pulling the cable: the open Link closes with `err` (like serialport's EIO). */
  unplug(err: Error = Object.assign(new Error('EIO: i/o error, read (mock unplug)'), { code: 'EIO' })): void {
    this.link?.end(err);
  }

  /** The next `n` opens fail with `err` (like ENOENT for an absent USB adapter). */
  failNextOpens(n: number, err: Error = Object.assign(new Error(`ENOENT: no such device ${this.name}`), { code: 'ENOENT' })): void {
    for (let i = 0; i < n; i++) this.failures.push(err);
  }

  /** Called by MockLink. */
  onGatewayWrite(chunk: Buffer): void {
    this.written.push(chunk);
    queueMicrotask(() => this.emit('write', chunk));
  }

  /** Called by MockLink when it closes. */
  onLinkClosed(link: MockLink, err?: Error): void {
    if (this.link === link) this.link = null;
    this.emit('close', err);
  }

  private async open(): Promise<Link> {
    if (this.openDelayMs > 0) await sleep(this.openDelayMs);
    const failure = this.failures.shift();
    if (failure) throw new ShelfgateError(ErrorCode.TRANSPORT_OPEN_FAILED, `mock://${this.name}: ${failure.message}`, undefined, { cause: failure });
    if (this.link) throw new ShelfgateError(ErrorCode.TRANSPORT_OPEN_FAILED, `mock://${this.name}: already open (a real port is locked too)`);
    this.link = new MockLink(this);
    this.opens++;
    this.emit('open');
    return this.link;
  }
}

class MockLink extends EventEmitter implements Link {
  readonly description: string;
  private closed = false;

  constructor(private readonly device: MockDevice) {
    super();
    this.description = `mock://${device.name}`;
  }

  async write(data: Buffer): Promise<void> {
    if (this.closed) throw new ShelfgateError(ErrorCode.TRANSPORT_CLOSED, `${this.description}: link closed`);
    this.device.onGatewayWrite(Buffer.from(data));
  }

  send(data: Buffer, onError: (err: Error) => void): void {
    if (this.closed) return onError(new ShelfgateError(ErrorCode.TRANSPORT_CLOSED, `${this.description}: link closed`));
    this.device.onGatewayWrite(Buffer.from(data));
  }

  async close(): Promise<void> {
    this.end(undefined);
  }

  deliver(chunk: Buffer): void {
    if (!this.closed) this.emit('data', chunk);
  }

  end(err: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.device.onLinkClosed(this, err);
    this.emit('close', err);
  }
}

/** A fresh device and the Opener the gateway uses to reach it. */
export function createMockLinkPair(name?: string): { gateway: Opener; device: MockDevice } {
  const device = new MockDevice(name);
  return { gateway: device.opener, device };
}

const registry = new Map<string, MockDevice>();

/** Makes `mock://name` (a config path) resolve to `device`; returns the device. */
export function registerMock(name: string, device: MockDevice = new MockDevice(name)): MockDevice {
  registry.set(name, device);
  return device;
}

export function unregisterMock(name: string): void {
  registry.delete(name);
}

export function getMock(name: string): MockDevice | undefined {
  return registry.get(name);
}

/**
 * Opener for `mock://name`. The name is looked up at each open, so a device registered after the
 * config was loaded is found, and an unregistered one fails like an absent adapter.
 */
export function mockOpener(name: string): Opener {
  return () => {
    const device = registry.get(name);
    if (!device) return Promise.reject(new ShelfgateError(ErrorCode.TRANSPORT_OPEN_FAILED, `mock://${name}: no such mock registered`, { name }));
    return device.opener();
  };
}
