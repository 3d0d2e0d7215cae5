/**
 * Liveness and readiness of a gateway, as plain functions returning `{ ok, checks }`: the HTTP
 * server answers `/healthz` and `/readyz` from them (200 when ok, 503 when not), and the daemon's
 * systemd watchdog ping and `STATUS=` line are computed from the same readiness, so `systemctl
 * status`, the load balancer and Prometheus all say one thing.
 *
 * - Liveness (`/healthz`): the event loop turns (a 1 s heartbeat timer fired within
 *   `maxLoopStallMs`) and the SQLite writer keeps up (fewer than `maxPendingOps` writes queued).
 *   A process failing it is wedged: restarting it is the remedy.
 * - Readiness (`/readyz`): alive, AND the MQTT broker is listening, AND the SQLite database is
 *   open, AND the gateway has started (every service, the device sources last) and is not stopping.
 *
 * Design choice: a device being offline does NOT make the gateway unready. The devices check says
 * the sources were started (they are reconnecting on their own from then on), and reports how many
 * devices are online as information. An unplugged scale is an alert (DeviceOffline), not a reason
 * for systemd's watchdog to restart a daemon that serves every other device; and a restart would
 * not plug the scale back in.
 *
 * The watchdog withholds its ping while readiness fails: after start, every readiness condition
 * is one the process itself broke (its broker closed, its database closed), and a restart is what
 * repairs it.
 */
import type { Gateway } from '../core/gateway';
import type { Service } from '../lifecycle';

export interface CheckResult {
  ok: boolean;
  /** One line for people (`systemctl status`, the technician page). */
  detail: string;
}

export interface HealthReport {
  ok: boolean;
  checks: Record<string, CheckResult>;
}

/** The parts of a gateway the checks read. */
export type HealthTarget = Pick<Gateway, 'store' | 'bus' | 'sources' | 'state'>;

export interface GatewayHealthOptions {
  gateway: HealthTarget;
  /** The loop is stalled when the heartbeat has not fired for this long; default 10 000 ms. */
  maxLoopStallMs?: number;
  /** The writer is behind when this many writes are queued; default 100 000 (the daemon's watchdog bound). */
  maxPendingOps?: number;
  /** Heartbeat period; default 1000 ms. */
  heartbeatMs?: number;
  /** Clock (tests). */
  now?: () => number;
}

export class GatewayHealth implements Service {
  readonly name = 'health';
  private timer: NodeJS.Timeout | null = null;
  private lastBeat = 0;
  private readonly maxStall: number;
  private readonly maxPending: number;
  private readonly beatMs: number;
  private readonly now: () => number;
  private lastLine = '';
  private readonly listeners = new Set<(line: string, ready: HealthReport) => void>();

  constructor(private readonly o: GatewayHealthOptions) {
    this.maxStall = o.maxLoopStallMs ?? 10_000;
    this.maxPending = o.maxPendingOps ?? 100_000;
    this.beatMs = o.heartbeatMs ?? 1000;
    this.now = o.now ?? Date.now;
  }

  async start(): Promise<void> {
    if (this.timer) return;
    this.lastBeat = this.now();
    this.timer = setInterval(this.beat, this.beatMs);
    this.timer.unref(); // the heartbeat never keeps the process alive on its own
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.listeners.clear();
  }

  /** `/healthz`: the process is alive (event loop turning, SQLite writer keeping up). */
  liveness(): HealthReport {
    const checks: Record<string, CheckResult> = {};
    if (this.timer === null) checks.event_loop = { ok: false, detail: 'health monitor not started' };
    else {
      const stall = this.now() - this.lastBeat;
      checks.event_loop = stall <= this.maxStall ? { ok: true, detail: `heartbeat ${stall} ms ago` } : { ok: false, detail: `event loop stalled: no heartbeat for ${stall} ms` };
    }
    let pending: number;
    try {
      pending = this.o.gateway.store.stats().pendingOps;
      checks.store_writer = pending < this.maxPending ? { ok: true, detail: `${pending} writes queued` } : { ok: false, detail: `SQLite writer behind: ${pending} writes queued (limit ${this.maxPending})` };
    } catch (e) {
      checks.store_writer = { ok: false, detail: `store unreadable: ${(e as Error).message}` };
    }
    return report(checks);
  }

  /** `/readyz`: alive, broker listening, SQLite open, gateway (devices included) started. */
  readiness(): HealthReport {
    const gw = this.o.gateway;
    const checks = { ...this.liveness().checks };
    try {
      const a = gw.bus.address();
      checks.broker = { ok: true, detail: `mqtt listening on ${a.host}:${a.port}` };
    } catch {
      checks.broker = { ok: false, detail: 'MQTT broker not listening' };
    }
    checks.sqlite = gw.store.isOpen ? { ok: true, detail: 'database open' } : { ok: false, detail: 'database not open' };
    const { online, total } = devicesOnline(gw.sources);
    checks.devices = gw.state === 'running' ? { ok: true, detail: `started; ${online}/${total} devices online` } : { ok: false, detail: `gateway ${gw.state}; ${online}/${total} devices online` };
    return report(checks);
  }

  /** The systemd `STATUS=` line for a readiness report: `ready: ...` or `NOT READY: <failing checks>`. */
  statusLine(r: HealthReport = this.readiness()): string {
    if (r.ok) return `ready: ${r.checks.broker?.detail ?? ''}; ${r.checks.devices?.detail ?? ''}`;
    return `NOT READY: ${Object.entries(r.checks)
      .filter(([, c]) => !c.ok)
      .map(([k, c]) => `${k}: ${c.detail}`)
      .join('; ')}`;
  }

  /**
   * Calls `fn` with the status line whenever it changes from the line of the moment of the call
   * (evaluated on each heartbeat). Returns an unsubscribe function. stop() removes every listener.
   */
  onStatusChange(fn: (line: string, ready: HealthReport) => void): () => void {
    if (this.listeners.size === 0) this.lastLine = this.statusLine();
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private readonly beat = (): void => {
    this.lastBeat = this.now();
    if (this.listeners.size === 0) return;
    const r = this.readiness();
    const line = this.statusLine(r);
    if (line === this.lastLine) return;
    this.lastLine = line;
    for (const fn of this.listeners) {
      try {
        fn(line, r);
      } catch {
        // a status listener (the notifier) never throws; if it did, the heartbeat must go on
      }
    }
  };
}

function report(checks: Record<string, CheckResult>): HealthReport {
  return { ok: Object.values(checks).every((c) => c.ok), checks };
}

/** Devices of every source, and how many are online now. */
export function devicesOnline(sources: HealthTarget['sources']): { online: number; total: number } {
  let online = 0;
  let total = 0;
  for (const s of sources)
    for (const d of s.devices) {
      total++;
      if (s.isOnline(d)) online++;
    }
  return { online, total };
}
