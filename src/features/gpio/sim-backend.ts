/**
 * The simulated backend: pins in memory, behind the same interface as onoff, for tests and the
 * demo. Its inputs are driven with `drive(pin, level)`.
 *
 * How it is driven from outside the process (a whole-daemon test, a technician trying a config on
 * a laptop): the admin-only command `gpio.simulate` ({ name, levels, step_ms }) over the bus's
 * request/response, which calls drive() for each level. Chosen over a watched directory of files
 * because it needs nothing beside the bus the test already talks to, goes through the same ACL and
 * payload validation as every command, and is deterministic: the levels of one request are applied
 * in order on one turn of the event loop (step_ms 0), so a bounce train of N levels is N raw
 * changes inside any debounce time, with no file-watch latency or coalescing in between. With the
 * onoff backend the command answers NOT_FOUND: a real pin cannot be driven from software.
 */
import { ErrorCode, ShelfgateError } from '../../errors';
import type { GpioBackend, GpioInputPin, GpioOutputPin, Level } from './backend';

interface SimPin {
  level: Level;
  dir: 'in' | 'out';
  onLevel: ((level: Level) => void) | null;
}

export class SimGpioBackend implements GpioBackend {
  readonly kind = 'sim';
  private readonly pins = new Map<number, SimPin>();
  /** Writes to outputs, in order (tests and the demo read them). */
  readonly writes: Array<{ pin: number; level: Level }> = [];

  /** `idle`: the physical level each input starts at (default 0). */
  constructor(private readonly idle: ReadonlyMap<number, Level> = new Map()) {}

  async open(): Promise<void> {}

  openInput(pin: number, onLevel: (level: Level) => void): GpioInputPin {
    if (this.pins.has(pin)) throw new ShelfgateError(ErrorCode.TRANSPORT_OPEN_FAILED, `sim: BCM ${pin} is already open`);
    const p: SimPin = { level: this.idle.get(pin) ?? 0, dir: 'in', onLevel };
    this.pins.set(pin, p);
    return {
      pin,
      read: () => p.level,
      close: () => {
        p.onLevel = null;
        this.pins.delete(pin);
      },
    };
  }

  openOutput(pin: number, initial: Level): GpioOutputPin {
    if (this.pins.has(pin)) throw new ShelfgateError(ErrorCode.TRANSPORT_OPEN_FAILED, `sim: BCM ${pin} is already open`);
    const p: SimPin = { level: initial, dir: 'out', onLevel: null };
    this.pins.set(pin, p);
    this.writes.push({ pin, level: initial });
    return {
      pin,
      read: () => p.level,
      write: (level) => {
        p.level = level;
        this.writes.push({ pin, level });
      },
      close: () => void this.pins.delete(pin),
    };
  }

  /** Sets an input's physical level; a change is reported to the pin's listener, as an edge interrupt would be. */
  drive(pin: number, level: Level): void {
    const p = this.pins.get(pin);
    if (!p || p.dir !== 'in') throw new ShelfgateError(ErrorCode.NOT_FOUND, `sim: BCM ${pin} is not an open input`);
    if (p.level === level) return;
    p.level = level;
    p.onLevel?.(level);
  }

  /** The physical level of an open pin, or undefined. */
  level(pin: number): Level | undefined {
    return this.pins.get(pin)?.level;
  }

  async close(): Promise<void> {
    for (const p of this.pins.values()) p.onLevel = null;
    this.pins.clear();
  }
}
