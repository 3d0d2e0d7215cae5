/**
 * The technician page's server side: one state object built from the gateway's own commands, run
 * with the logged-in user's role through the command registry (so the page can show no more than
 * that user could ask for over MQTT), and pushed to every open page as a server-sent `state` event
 * whenever it changed.
 *
 * When it is rebuilt: at once (coalesced over `debounceMs`) after a device's availability, a
 * committed stock level or an applied price, which the page must show within a second; and every
 * `refreshMs` otherwise, for what has no event of its own (sync backlog, labels, RFID zones). Only
 * while at least one page is open: a gateway nobody looks at does no work for the page. A page that
 * does not keep up loses intermediate states, never the newest (the next change sends it again).
 *
 * The state names commands of features (stock.get, rfid.zones, labels.list): this is a feature
 * module, the core does not. A feature that is not configured simply has no state section.
 */
import type { CommandRegistry, Caller } from '../../core/commands';
import type { EventBus } from '../../core/events';
import type { EventStream } from '../../http/server';
import type { Service } from '../../lifecycle';
import { ErrorCode, isShelfgateError } from '../../errors';
import { LogLimiter, type Logger } from '../../log';

export interface PageUser {
  username: string;
  role: Caller['role'];
}

export interface TechnicianPageOptions {
  commands: CommandRegistry;
  events: EventBus;
  log: Logger;
  refreshMs: number;
  debounceMs: number;
  /** Labels listed on the page at most (those off their current price first). */
  maxLabels: number;
}

interface LabelRow {
  mac: string;
  matches: boolean;
  problem: string | null;
  state: string;
}

/** The actions the page offers, by the command each runs. */
const ACTIONS = { tare: 'calibrate.tare', learn: 'calibrate.learn', bind: 'label.bind', flash: 'label.flash', scenario: 'demo.scenario' } as const;

export class TechnicianPage implements Service {
  readonly name = 'technician-page';
  private readonly streams = new Map<EventStream, { user: PageUser; csrf: string; last: string }>();
  private readonly limiter: LogLimiter;
  private timer: NodeJS.Timeout | null = null;
  private soon: NodeJS.Timeout | null = null;
  private running = false;
  private building = false;
  private again = false;
  readonly counters = { builds: 0, sent: 0, unchanged: 0, dropped: 0, failures: 0 };

  /** Pages open now. */
  get open(): number {
    return this.streams.size;
  }

  constructor(private readonly o: TechnicianPageOptions) {
    this.limiter = new LogLimiter(o.log);
  }

  async start(): Promise<void> {
    this.running = true;
    const nudge = (): void => this.schedule();
    this.o.events.on(this, 'availability', nudge);
    this.o.events.on(this, 'stockCommitted', nudge);
    this.o.events.on(this, 'priceApplied', nudge);
  }

  async stop(): Promise<void> {
    this.running = false;
    this.o.events.removeOwner(this);
    if (this.timer) clearInterval(this.timer);
    if (this.soon) clearTimeout(this.soon);
    this.timer = this.soon = null;
    for (const s of [...this.streams.keys()]) s.close();
    this.streams.clear();
  }

  /** The page's state for `user` (GET /tech/api/state, and each pushed `state` event). */
  async state(user: PageUser, csrf: string): Promise<Record<string, unknown>> {
    const caller: Caller = { username: user.username, role: user.role, via: 'http' };
    // a feature that is not configured answers its commands NOT_FOUND: no section for it
    const run = async (name: string, payload: object): Promise<unknown> => {
      if (!this.o.commands.has(name) || !this.o.commands.may(user.role, name)) return null;
      try {
        return await this.o.commands.execute(name, payload, caller);
      } catch (e) {
        if (isShelfgateError(e, ErrorCode.NOT_FOUND)) return null;
        throw e;
      }
    };
    const [status, devices, shelves, zones, labels] = await Promise.all([
      run('gateway.status', {}),
      run('devices.list', {}),
      run('stock.get', {}),
      run('rfid.zones', { tags: false }),
      run('labels.list', {}),
    ]);
    const may = Object.fromEntries(Object.entries(ACTIONS).map(([k, cmd]) => [k, this.o.commands.has(cmd) && this.o.commands.may(user.role, cmd)]));
    return { me: user, csrf, may, status, devices: devices ?? [], shelves: shelves ?? [], zones, labels: labels ? this.trimLabels(labels as { summary: unknown; labels: LabelRow[] }) : null };
  }

  /** Streams `state` events to one open page until it closes. */
  attach(stream: EventStream, user: PageUser, csrf: string): void {
    this.streams.set(stream, { user, csrf, last: '' });
    stream.onClose(() => {
      this.streams.delete(stream);
      if (this.streams.size === 0 && this.timer) {
        clearInterval(this.timer);
        this.timer = null;
      }
    });
    if (!this.timer && this.running) {
      this.timer = setInterval(() => void this.push(), this.o.refreshMs);
      this.timer.unref();
    }
    void this.pushTo(stream);
  }

  private schedule(): void {
    if (!this.running || this.streams.size === 0 || this.soon) return;
    this.soon = setTimeout(() => {
      this.soon = null;
      void this.push();
    }, this.o.debounceMs);
    this.soon.unref();
  }

  private async pushTo(stream: EventStream): Promise<void> {
    const entry = this.streams.get(stream);
    if (!entry) return;
    try {
      this.sendIfChanged(stream, entry, await this.state(entry.user, entry.csrf));
    } catch (e) {
      this.counters.failures++;
      this.limiter.warn('state', { err: (e as Error).message }, 'technician page: could not build the state');
    }
  }

  /** Rebuilds and sends to every open page; one build at a time, a request meanwhile runs once after it. */
  private async push(): Promise<void> {
    if (this.building) {
      this.again = true;
      return;
    }
    this.building = true;
    try {
      do {
        this.again = false;
        this.counters.builds++;
        // one build per role: the state differs by role only (the commands it may run)
        const byRole = new Map<string, Record<string, unknown>>();
        for (const [stream, entry] of [...this.streams]) {
          let base = byRole.get(entry.user.role);
          if (!base) {
            base = await this.state(entry.user, '');
            byRole.set(entry.user.role, base);
          }
          if (stream.closed) continue;
          this.sendIfChanged(stream, entry, { ...base, me: entry.user, csrf: entry.csrf });
        }
      } while (this.again && this.running);
    } catch (e) {
      this.counters.failures++;
      this.limiter.warn('state', { err: (e as Error).message }, 'technician page: could not build the state');
    } finally {
      this.building = false;
    }
  }

  private sendIfChanged(stream: EventStream, entry: { last: string }, state: Record<string, unknown>): void {
    // uptime and ages move every second; compare without the gateway's uptime so an idle page stays quiet
    const status = state.status as Record<string, unknown> | null;
    const key = JSON.stringify({ ...state, status: status ? { ...status, uptime_s: 0 } : null });
    if (key === entry.last) {
      this.counters.unchanged++;
      return;
    }
    if (stream.send('state', state)) {
      entry.last = key;
      this.counters.sent++;
    } else this.counters.dropped++;
  }

  private trimLabels(l: { summary: unknown; labels: LabelRow[] }): { summary: unknown; labels: LabelRow[]; truncated: boolean } {
    if (l.labels.length <= this.o.maxLabels) return { ...l, truncated: false };
    const off = l.labels.filter((x) => !x.matches || x.problem !== null || x.state === 'failed');
    const rest = l.labels.filter((x) => !(!x.matches || x.problem !== null || x.state === 'failed'));
    return { summary: l.summary, labels: [...off, ...rest].slice(0, this.o.maxLabels), truncated: true };
  }
}
