/**
 * The byte side of a device simulator: a simulator is attached to one SimIo at a time (a TCP
 * client, the device end of a pty or of a real serial port, an in-memory pair, a MockDevice) and
 * answers what it receives on it. Adapters for the usual byte streams live here.
 */
import type { MockDevice } from '../src/transport/mock';
import type { SerialSettings } from '../src/transport/types';

export interface SimIo {
  /** Sends bytes to the gateway side. Must not throw once the far end is gone (drop them). */
  write(buf: Buffer): void;
  /** Subscribes to received bytes; returns the unsubscribe function. */
  onData(cb: (chunk: Buffer) => void): () => void;
}

/** What serve.ts needs from any simulator. */
export interface DeviceSimulator {
  /** e.g. `mt-sics` or `modbus-loadcell`. */
  readonly kind: string;
  /** Line settings of the simulated device (from its definition), for servePort(). */
  readonly serial: SerialSettings;
  /** Attaches to a byte link, replacing any previous one; returns a detach function. */
  attach(io: SimIo): () => void;
  /** Detaches from the current link (if any) and cancels pending answers. */
  detach(): void;
}

/** Minimal Duplex-like stream (net.Socket, SerialPort). */
export interface ByteStream {
  write(chunk: Buffer): unknown;
  on(event: 'data', cb: (chunk: Buffer) => void): unknown;
  off(event: 'data', cb: (chunk: Buffer) => void): unknown;
  readonly destroyed?: boolean;
  readonly writable?: boolean;
}

/** Adapts a socket or serial port. Writes to a stream that is gone are dropped. */
export function streamIo(stream: ByteStream): SimIo {
  return {
    write(buf) {
      if (stream.destroyed || stream.writable === false) return;
      try {
        stream.write(buf);
      } catch {
        // the far end went away between the check and the write: drop, like a line with no listener
      }
    },
    onData(cb) {
      stream.on('data', cb);
      return () => {
        stream.off('data', cb);
      };
    },
  };
}

/** Adapts the device side of a MockDevice (src/transport/mock.ts): the gateway's writes come in, our writes go to it. */
export function mockDeviceIo(device: MockDevice): SimIo {
  return {
    write(buf) {
      device.send(buf);
    },
    onData(cb) {
      device.on('write', cb);
      return () => {
        device.off('write', cb);
      };
    },
  };
}

/** An in-memory link for tests: `send()` delivers bytes to the simulator, `received` collects its answers. */
export interface MemoryIo extends SimIo {
  send(buf: Buffer): void;
  /** Everything the simulator wrote, concatenated. */
  received(): Buffer;
  /** Forgets what was received so far. */
  clear(): void;
}

export function memoryIo(): MemoryIo {
  const listeners = new Set<(chunk: Buffer) => void>();
  let got: Buffer[] = [];
  return {
    write(buf) {
      got.push(Buffer.from(buf));
    },
    onData(cb) {
      listeners.add(cb);
      return () => {
        listeners.delete(cb);
      };
    },
    send(buf) {
      for (const cb of [...listeners]) cb(buf);
    },
    received: () => Buffer.concat(got),
    clear() {
      got = [];
    },
  };
}
