/**
 * The GPIO backend: the one small interface the GPIO service drives, whatever carries the pins.
 * Two implementations: `onoff` (Linux sysfs, ./onoff-backend.ts) and `sim` (in memory, driven from
 * outside the process by the `gpio.simulate` command, ./sim-backend.ts).
 *
 * Design choices:
 * - Pins are BCM numbers here (the config's numbers); a backend maps them to whatever its hardware
 *   needs (onoff: the sysfs number, base of the SoC's gpiochip + BCM offset, ./sysfs.ts).
 * - Levels are PHYSICAL (0 = low, 1 = high). `active_low` is applied by the service, not by the
 *   backend (not by sysfs `active_low` either), so the simulated and the real backend behave the
 *   same and the debouncer sees the same levels on both.
 * - An input reports every level change the backend sees, bounces included: debouncing is the
 *   service's (./debounce.ts), deterministic and tested with a manual clock.
 * - Everything is synchronous except open/close: onoff's sysfs I/O is synchronous anyway, and a
 *   write of one `value` file is a few microseconds.
 */

export type Level = 0 | 1;

/** An input pin, opened with its edge callback. */
export interface GpioInputPin {
  readonly pin: number;
  /** The physical level now. */
  read(): Level;
  /** Stops the edge callbacks and releases the pin. Never throws. */
  close(): void;
}

/** An output pin. */
export interface GpioOutputPin {
  readonly pin: number;
  read(): Level;
  write(level: Level): void;
  /** Releases the pin (after the service wrote its safe level). Never throws. */
  close(): void;
}

export interface GpioBackend {
  /** `onoff` or `sim`, for logs and status. */
  readonly kind: string;
  /**
   * Checks that the pins can be had at all (sysfs present and writable, chip found); throws a
   * ShelfgateError saying what is missing. Called once before any pin is opened.
   */
  open(): Promise<void>;
  /**
   * Opens `pin` as an input; `onLevel` gets every level change (both edges), bounces included;
   * `onError` gets read errors of the edge watch (the pin stays open). Throws a ShelfgateError.
   */
  openInput(pin: number, onLevel: (level: Level) => void, onError: (err: Error) => void): GpioInputPin;
  /** Opens `pin` as an output driven to `initial` at once (no glitch through the other level). Throws a ShelfgateError. */
  openOutput(pin: number, initial: Level): GpioOutputPin;
  /** Releases whatever open() took. Never throws. */
  close(): Promise<void>;
}
