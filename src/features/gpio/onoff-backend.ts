/**
 * The real backend: onoff 6 (Linux GPIO sysfs; edges through epoll on the `value` file).
 *
 * - open(): finds the SoC's gpiochip under `sysfsRoot` (./sysfs.ts) and checks onoff's
 *   `Gpio.accessible` (can /sys/class/gpio/export be opened for writing?). On a machine without
 *   GPIO sysfs, or a user without write access (the `gpio` group), that is false: open() throws
 *   TRANSPORT_OPEN_FAILED saying so, and the service runs without GPIO instead of crashing in
 *   onoff's constructor (which throws ENOENT/EACCES from a synchronous write).
 * - onoff is loaded in open(), not at import: it loads the `epoll` native addon, which a gateway
 *   using the simulated backend (or no GPIO) never needs.
 * - Inputs use edge `both` and onoff's own debounce is off: the service debounces (./debounce.ts).
 *   sysfs `active_low` is left 0: the service applies active_low, as with the simulated backend.
 * - An output is exported with direction `high` or `low` (sysfs sets direction and level in one
 *   write, so the line never shows the other level). On close it is NOT unexported: the Raspberry
 *   Pi pin controller returns a freed line to an input, which floats (a buzzer may sound, a relay
 *   drop). It stays exported and driven at the safe level the service wrote last; only its file
 *   descriptor is closed. Inputs are unexported.
 */
import { closeSync } from 'node:fs';
import { ErrorCode, ShelfgateError } from '../../errors';
import type { GpioBackend, GpioInputPin, GpioOutputPin, Level } from './backend';
import { findSocChip, sysfsNumber, type GpioChip } from './sysfs';

/** The part of onoff's Gpio class this backend uses. */
export interface OnoffGpio {
  readSync(): 0 | 1;
  writeSync(value: 0 | 1): void;
  watch(callback: (err: Error | null | undefined, value: 0 | 1) => void): void;
  unwatchAll(): void;
  unexport(): void;
}

export interface OnoffModule {
  Gpio: {
    new (gpio: number, direction: 'in' | 'out' | 'high' | 'low', edge?: 'none' | 'rising' | 'falling' | 'both', options?: { activeLow?: boolean; reconfigureDirection?: boolean }): OnoffGpio;
    readonly accessible: boolean;
  };
}

export interface OnoffBackendOptions {
  sysfsRoot: string;
  chipLabel?: string;
  /** Loads onoff (tests inject a fake; default: the `onoff` package). */
  load?: () => OnoffModule;
}

function openError(what: string, e: unknown): ShelfgateError {
  const err = e as NodeJS.ErrnoException;
  const hint = err?.code === 'EACCES' ? ' (is the user in the gpio group?)' : err?.code === 'EBUSY' ? ' (the line is used by a kernel driver or another program)' : '';
  return new ShelfgateError(ErrorCode.TRANSPORT_OPEN_FAILED, `${what}: ${err?.message ?? String(e)}${hint}`, undefined, { cause: e });
}

export class OnoffBackend implements GpioBackend {
  readonly kind = 'onoff';
  private mod: OnoffModule | null = null;
  private chipInfo: GpioChip | null = null;

  constructor(private readonly o: OnoffBackendOptions) {}

  /** The chip found by open() (for status and logs). */
  get chip(): GpioChip | null {
    return this.chipInfo;
  }

  async open(): Promise<void> {
    const chip = findSocChip(this.o.sysfsRoot, this.o.chipLabel);
    let mod: OnoffModule;
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      mod = this.o.load ? this.o.load() : (require('onoff') as OnoffModule);
    } catch (e) {
      throw openError('cannot load onoff (its epoll addon is built for Linux only)', e);
    }
    if (!mod.Gpio.accessible)
      throw new ShelfgateError(
        ErrorCode.TRANSPORT_OPEN_FAILED,
        'onoff: /sys/class/gpio/export cannot be opened for writing: this machine has no GPIO sysfs, or the user is not in the gpio group (onoff always uses /sys/class/gpio, whatever gpio.sysfs_root says)',
      );
    this.chipInfo = chip;
    this.mod = mod;
  }

  private ready(): { mod: OnoffModule; chip: GpioChip } {
    if (!this.mod || !this.chipInfo) throw new ShelfgateError(ErrorCode.STOPPED, 'the onoff backend is not open');
    return { mod: this.mod, chip: this.chipInfo };
  }

  openInput(pin: number, onLevel: (level: Level) => void, onError: (err: Error) => void): GpioInputPin {
    const { mod, chip } = this.ready();
    const n = sysfsNumber(chip, pin);
    let g: OnoffGpio;
    try {
      g = new mod.Gpio(n, 'in', 'both', { activeLow: false });
    } catch (e) {
      throw openError(`cannot open BCM ${pin} (sysfs ${n}) as an input`, e);
    }
    g.watch((err, value) => (err ? onError(err) : onLevel(value === 1 ? 1 : 0)));
    return {
      pin,
      read: () => g.readSync(),
      close: () => {
        try {
          g.unwatchAll();
          g.unexport();
        } catch {
          // already gone: nothing left to release
        }
      },
    };
  }

  openOutput(pin: number, initial: Level): GpioOutputPin {
    const { mod, chip } = this.ready();
    const n = sysfsNumber(chip, pin);
    let g: OnoffGpio;
    try {
      g = new mod.Gpio(n, initial === 1 ? 'high' : 'low', 'none', { activeLow: false });
    } catch (e) {
      throw openError(`cannot open BCM ${pin} (sysfs ${n}) as an output`, e);
    }
    return {
      pin,
      read: () => g.readSync(),
      write: (level) => g.writeSync(level),
      close: () => {
        // onoff 6 has no close without unexport: release the value file's descriptor only
        const fd = (g as unknown as { _valueFd?: unknown })._valueFd;
        if (typeof fd === 'number')
          try {
            closeSync(fd);
          } catch {
            // already closed
          }
      },
    };
  }

  async close(): Promise<void> {
    this.mod = null;
    this.chipInfo = null;
  }
}
