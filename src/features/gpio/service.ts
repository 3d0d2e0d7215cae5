/**
 * The GPIO service: opens the configured pins on a backend (onoff or simulated), debounces inputs
 * and publishes their edges, sets outputs on command, and asks for shelf polls on presence edges.
 *
 * Bus topics (P = shelfgate/v1/<store>/):
 * - `P/gpio/<kind>/<name>/edge` (not retained): one message per debounced edge of an input;
 * - `P/gpio/<kind>/<name>/state` (retained): an input's debounced level; kind = presence|contact|button;
 * - `P/gpio/output/<name>/state` (retained): an output's level and who set it;
 * - `P/gpio/status` (retained): backend, chip, available or why not.
 * Kiosks read `gpio/button/#` only (a kiosk page reacts to its own buttons); presence beams and
 * door/lid contacts are for store systems (service, technician, admin read all of P).
 *
 * Levels on the bus and in commands are LOGICAL: 1 = active (beam broken, door open, button
 * pressed, LED on), whatever `active_low` says about the wiring.
 *
 * Edges of an input with `poll_shelf` (both edges: a shopper arriving and leaving both precede a
 * weight change worth reading at once) emit `pollRequested` on the in-process event bus; the
 * shelves feature polls that shelf, rate limited per bus.
 *
 * Outputs are driven to `initial` at start and again at stop (their safe state). When the backend
 * cannot be opened (no GPIO on this machine, no permission, unknown board), the service logs why,
 * publishes it on `gpio/status`, and the rest of the gateway runs: GPIO is an accessory, weighing
 * and labels must not stop for a missing beam. `gpio.set` then answers DEVICE_UNREACHABLE.
 */
import type { LocalBus } from '../../bus/broker';
import { featureTopic } from '../../bus/topics';
import { handle } from '../../core/commands';
import type { EventBus } from '../../core/events';
import type { PollRequested } from '../../core/poll-requested';
import { ErrorCode, ShelfgateError } from '../../errors';
import type { Service } from '../../lifecycle';
import { LogLimiter, type Logger } from '../../log';
import type { GpioBackend, GpioInputPin, GpioOutputPin, Level } from './backend';
import { gpioSet, gpioSimulate, gpioStatus } from './commands';
import type { GpioConfig, GpioInputConfig, GpioOutputConfig } from './config';
import { Debouncer, systemClock, type Clock } from './debounce';
import { SimGpioBackend } from './sim-backend';

export interface GpioServiceOptions {
  storeId: string;
  config: GpioConfig;
  backend: GpioBackend;
  bus: Pick<LocalBus, 'publish'>;
  events: EventBus;
  log: Logger;
  /** Time and timers for debouncing and pulses (tests inject a manual clock). */
  clock?: Clock;
}

interface InputEntry {
  cfg: GpioInputConfig;
  edgeTopic: string;
  stateTopic: string;
  pin: GpioInputPin | null;
  debouncer: Debouncer | null;
  error: string | null;
  readErrors: number;
  /** ms time of the last debounced change (or of the open). */
  since: number;
}

interface OutputEntry {
  cfg: GpioOutputConfig;
  stateTopic: string;
  pin: GpioOutputPin | null;
  error: string | null;
  /** Logical level now. */
  value: Level;
  pulse: unknown;
  sets: number;
}

const logical = (physical: Level, activeLow: boolean): Level => (activeLow ? (physical === 1 ? 0 : 1) : physical);
const physicalOf = logical; // the inversion is its own inverse

export class GpioService implements Service {
  readonly name = 'gpio';
  readonly stats = { edges: 0, bouncesSuppressed: 0, rawChanges: 0, readErrors: 0, publishFailures: 0, openFailures: 0, sets: 0, pollRequests: 0 };
  private readonly inputs = new Map<string, InputEntry>();
  private readonly outputs = new Map<string, OutputEntry>();
  private readonly clock: Clock;
  private readonly limiter: LogLimiter;
  private readonly inflight = new Set<Promise<void>>();
  /** Waits between the levels of a `gpio.simulate` with step_ms: stop() ends them early. */
  private readonly sleeps = new Set<{ handle: unknown; done: () => void }>();
  private error: { code: string; message: string } | null = null;
  private started = false;

  constructor(private readonly o: GpioServiceOptions) {
    this.clock = o.clock ?? systemClock;
    this.limiter = new LogLimiter(o.log);
    for (const cfg of o.config.inputs)
      this.inputs.set(cfg.name, {
        cfg,
        edgeTopic: featureTopic(o.storeId, 'gpio', cfg.kind, cfg.name, 'edge'),
        stateTopic: featureTopic(o.storeId, 'gpio', cfg.kind, cfg.name, 'state'),
        pin: null,
        debouncer: null,
        error: null,
        readErrors: 0,
        since: 0,
      });
    for (const cfg of o.config.outputs)
      this.outputs.set(cfg.name, { cfg, stateTopic: featureTopic(o.storeId, 'gpio', 'output', cfg.name, 'state'), pin: null, error: null, value: cfg.initial as Level, pulse: null, sets: 0 });
  }

  /** Whether the backend opened (pins may still have failed one by one: see status()). */
  get available(): boolean {
    return this.started && this.error === null;
  }

  async start(): Promise<void> {
    const { backend, log } = this.o;
    this.started = true;
    try {
      await backend.open();
    } catch (e) {
      const err = e as ShelfgateError;
      this.error = { code: err.code ?? ErrorCode.INTERNAL, message: err.message };
      log.error({ backend: backend.kind, code: this.error.code, err: err.message }, 'GPIO unavailable: inputs and outputs are off, the rest of the gateway runs');
      await this.publish(featureTopic(this.o.storeId, 'gpio', 'status'), this.statusMessage(), true);
      return;
    }
    for (const out of this.outputs.values()) {
      try {
        out.pin = backend.openOutput(out.cfg.pin, physicalOf(out.value, out.cfg.active_low));
        this.track(this.publish(out.stateTopic, this.outputMessage(out, 'start'), true));
      } catch (e) {
        this.pinFailed(out, 'output', e);
      }
    }
    for (const inp of this.inputs.values()) {
      try {
        inp.pin = backend.openInput(
          inp.cfg.pin,
          (level) => inp.debouncer?.raw(logical(level, inp.cfg.active_low)),
          (err) => {
            inp.readErrors++;
            this.stats.readErrors++;
            this.limiter.warn(`read:${inp.cfg.name}`, { input: inp.cfg.name, pin: inp.cfg.pin, err: err.message }, 'GPIO input read failed');
          },
        );
        inp.since = this.clock.now();
        inp.debouncer = new Debouncer({
          initial: logical(inp.pin.read(), inp.cfg.active_low),
          debounceMs: inp.cfg.debounce_ms,
          clock: this.clock,
          onEdge: (level, ts) => this.edge(inp, level, ts),
        });
        this.track(this.publish(inp.stateTopic, this.inputMessage(inp), true));
      } catch (e) {
        this.pinFailed(inp, 'input', e);
      }
    }
    await Promise.allSettled([...this.inflight]);
    await this.publish(featureTopic(this.o.storeId, 'gpio', 'status'), this.statusMessage(), true);
    log.info({ backend: backend.kind, inputs: this.inputs.size, outputs: this.outputs.size, failed: this.stats.openFailures, ...this.chipFields() }, 'GPIO ready');
  }

  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    for (const w of [...this.sleeps]) (this.clock.clearTimeout(w.handle), w.done());
    for (const inp of this.inputs.values()) {
      inp.debouncer?.stop();
      inp.pin?.close();
      inp.pin = null;
    }
    for (const out of this.outputs.values()) {
      if (out.pulse !== null) this.clock.clearTimeout(out.pulse);
      out.pulse = null;
      if (!out.pin) continue;
      try {
        // the safe state, left driven (see ./onoff-backend.ts on why outputs are not unexported)
        out.value = out.cfg.initial as Level;
        out.pin.write(physicalOf(out.value, out.cfg.active_low));
        this.track(this.publish(out.stateTopic, this.outputMessage(out, 'stop'), true));
      } catch (e) {
        this.o.log.error({ output: out.cfg.name, pin: out.cfg.pin, err: (e as Error).message }, 'could not write the safe level of a GPIO output at stop');
      }
      out.pin.close();
      out.pin = null;
    }
    await Promise.allSettled([...this.inflight]);
    try {
      await this.o.backend.close();
    } catch {
      // close never throws by contract; a broken backend must not break the gateway's stop
    }
  }

  /** Handlers of the commands declared in ./commands.ts. */
  commandHandlers() {
    return [
      handle(gpioSet, async (p, caller) => {
        const out = this.outputs.get(p.name);
        if (!out) throw new ShelfgateError(ErrorCode.NOT_FOUND, `no GPIO output "${p.name}" (outputs: ${[...this.outputs.keys()].join(', ') || 'none'})`);
        const pin = this.usable(out);
        if (out.pulse !== null) {
          this.clock.clearTimeout(out.pulse);
          out.pulse = null;
        }
        const before = out.value;
        this.write(out, pin, p.value as Level, caller.username);
        if (p.pulse_ms !== undefined) {
          out.pulse = this.clock.setTimeout(() => {
            out.pulse = null;
            if (out.pin) this.write(out, out.pin, before, `${caller.username} (pulse end)`);
          }, p.pulse_ms);
        }
        this.o.log.info({ output: out.cfg.name, value: p.value, pulse_ms: p.pulse_ms, by: caller.username }, 'GPIO output set');
        return { name: out.cfg.name, pin: out.cfg.pin, value: p.value, ...(p.pulse_ms !== undefined ? { pulse_ms: p.pulse_ms, then: before } : {}) };
      }),
      handle(gpioStatus, async () => this.status()),
      handle(gpioSimulate, async (p) => {
        const sim = this.o.backend;
        if (!(sim instanceof SimGpioBackend)) throw new ShelfgateError(ErrorCode.NOT_FOUND, 'gpio.simulate exists only with gpio.backend: sim');
        const inp = this.inputs.get(p.name);
        if (!inp) throw new ShelfgateError(ErrorCode.NOT_FOUND, `no GPIO input "${p.name}" (inputs: ${[...this.inputs.keys()].join(', ') || 'none'})`);
        if (!this.available || !inp.pin) throw new ShelfgateError(ErrorCode.DEVICE_UNREACHABLE, `GPIO input "${p.name}" is not open`);
        for (let i = 0; i < p.levels.length; i++) {
          if (i > 0 && p.step_ms > 0) await this.sleep(p.step_ms);
          if (!inp.pin) break; // stopped meanwhile
          sim.drive(inp.cfg.pin, p.levels[i]!);
        }
        return { name: inp.cfg.name, pin: inp.cfg.pin, levels: p.levels.length, physical: sim.level(inp.cfg.pin) ?? null };
      }),
    ];
  }

  status(): Record<string, unknown> {
    return {
      backend: this.o.backend.kind,
      available: this.available,
      ...(this.error ? { error: this.error } : {}),
      ...this.chipFields(),
      inputs: [...this.inputs.values()].map((i) => ({
        name: i.cfg.name,
        kind: i.cfg.kind,
        pin: i.cfg.pin,
        value: i.debouncer?.level ?? null,
        ...(i.error ? { error: i.error } : {}),
        raw_changes: i.debouncer?.stats.raw ?? 0,
        edges: i.debouncer?.stats.edges ?? 0,
        bounces_suppressed: i.debouncer?.stats.suppressed ?? 0,
        read_errors: i.readErrors,
      })),
      outputs: [...this.outputs.values()].map((o) => ({ name: o.cfg.name, pin: o.cfg.pin, value: o.pin ? o.value : null, ...(o.error ? { error: o.error } : {}), sets: o.sets })),
    };
  }

  metrics(): Record<string, number> {
    let raw = 0;
    let suppressed = 0;
    for (const i of this.inputs.values()) (raw += i.debouncer?.stats.raw ?? 0), (suppressed += i.debouncer?.stats.suppressed ?? 0);
    return {
      available: this.available ? 1 : 0,
      edges_total: this.stats.edges,
      raw_changes_total: raw,
      bounces_suppressed_total: suppressed,
      read_errors_total: this.stats.readErrors,
      open_failures_total: this.stats.openFailures,
      sets_total: this.stats.sets,
      poll_requests_total: this.stats.pollRequests,
      publish_failures_total: this.stats.publishFailures,
    };
  }

  private edge(inp: InputEntry, value: Level, firstChangeTs: number): void {
    this.stats.edges++;
    inp.since = firstChangeTs;
    const settledAt = this.clock.now();
    this.o.log.debug({ input: inp.cfg.name, value }, 'GPIO edge');
    const body = { ...this.inputMessage(inp), edge: value === 1 ? 'active' : 'inactive', settled_at: new Date(settledAt).toISOString() };
    // edge, then state: both queued now, in this order, on the in-process broker
    this.track(this.publish(inp.edgeTopic, body, false).then(() => this.publish(inp.stateTopic, this.inputMessage(inp), true)));
    if (inp.cfg.poll_shelf !== undefined) {
      this.stats.pollRequests++;
      const req: PollRequested = { shelfId: inp.cfg.poll_shelf, reason: `gpio:${inp.cfg.name}` };
      this.o.events.emit('pollRequested', req);
    }
  }

  private write(out: OutputEntry, pin: GpioOutputPin, value: Level, by: string): void {
    try {
      pin.write(physicalOf(value, out.cfg.active_low));
    } catch (e) {
      throw new ShelfgateError(ErrorCode.DEVICE_UNREACHABLE, `GPIO output "${out.cfg.name}" (BCM ${out.cfg.pin}) could not be written: ${(e as Error).message}`);
    }
    out.value = value;
    out.sets++;
    this.stats.sets++;
    this.track(this.publish(out.stateTopic, this.outputMessage(out, by), true));
  }

  private usable(out: OutputEntry): GpioOutputPin {
    if (this.error) throw new ShelfgateError(ErrorCode.DEVICE_UNREACHABLE, `GPIO is not available: ${this.error.message}`);
    if (!out.pin) throw new ShelfgateError(ErrorCode.DEVICE_UNREACHABLE, `GPIO output "${out.cfg.name}" is not open${out.error ? `: ${out.error}` : ''}`);
    return out.pin;
  }

  private pinFailed(entry: { cfg: { name: string; pin: number }; error: string | null }, what: string, e: unknown): void {
    this.stats.openFailures++;
    entry.error = (e as Error).message;
    this.o.log.error({ [what]: entry.cfg.name, pin: entry.cfg.pin, code: (e as ShelfgateError).code, err: entry.error }, `GPIO ${what} could not be opened; the others run`);
  }

  private chipFields(): Record<string, unknown> {
    const chip = (this.o.backend as { chip?: { name: string; label: string; base: number; ngpio: number } | null }).chip;
    return chip ? { chip: chip.name, chip_label: chip.label, chip_base: chip.base, chip_ngpio: chip.ngpio } : {};
  }

  private inputMessage(inp: InputEntry) {
    return { store_id: this.o.storeId, name: inp.cfg.name, kind: inp.cfg.kind, pin: inp.cfg.pin, value: inp.debouncer?.level ?? null, since: new Date(inp.since).toISOString() };
  }

  private outputMessage(out: OutputEntry, by: string) {
    return { store_id: this.o.storeId, name: out.cfg.name, pin: out.cfg.pin, value: out.value, by, ts: new Date(this.clock.now()).toISOString() };
  }

  private statusMessage() {
    return { store_id: this.o.storeId, backend: this.o.backend.kind, available: this.available, ...(this.error ? { error: this.error } : {}), ...this.chipFields(), ts: new Date().toISOString() };
  }

  private publish(topic: string, body: object, retain: boolean): Promise<void> {
    return this.o.bus.publish(topic, JSON.stringify(body), { retain, qos: 1 }).catch((e: Error) => {
      this.stats.publishFailures++;
      this.limiter.warn(`publish:${topic}`, { topic, err: e.message }, 'publish failed');
    });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const w = {
        handle: null as unknown,
        done: () => {
          this.sleeps.delete(w);
          resolve();
        },
      };
      w.handle = this.clock.setTimeout(w.done, ms);
      this.sleeps.add(w);
    });
  }

  private track(p: Promise<void>): void {
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p));
  }
}
