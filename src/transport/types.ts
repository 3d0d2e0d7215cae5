/**
 * Transports are small injected interfaces (after zwave-js's bindings): a driver never
 * knows whether its bytes travel over a serial port, a TCP socket (ser2net, Ethernet RS-485 gateway)
 * or an in-memory mock.
 */

/** Serial line settings; ignored by TCP and mock links. */
export interface SerialSettings {
  baudRate: number;
  dataBits: 5 | 6 | 7 | 8;
  parity: 'none' | 'even' | 'odd';
  stopBits: 1 | 2;
}

/** One open byte link. Emits 'data' (Buffer) and exactly one 'close' (Error | undefined) per open. */
export interface Link {
  /** Human-readable description, e.g. `serial:/dev/ttyUSB0` or `tcp://10.0.0.5:4001`. */
  readonly description: string;
  /** Writes `data`; resolves once the link has taken the bytes (serial: after tcdrain). */
  write(data: Buffer): Promise<void>;
  /**
   * The per-request path: writes `data` with no promise to allocate and settle. `onError` is called
   * at most once (possibly before send() returns), only if the bytes cannot be written (a TCP
   * socket whose write fails also ends the link with its 'close').
   */
  send(data: Buffer, onError: (err: Error) => void): void;
  close(): Promise<void>;
  on(event: 'data', listener: (chunk: Buffer) => void): this;
  on(event: 'close', listener: (err?: Error) => void): this;
  off(event: 'data', listener: (chunk: Buffer) => void): this;
  off(event: 'close', listener: (err?: Error) => void): this;
}

/** Opens a fresh Link each time it is called (a reconnect calls it again). Rejects if it cannot. */
export type Opener = () => Promise<Link>;
