/**
 * Liveness and readiness (ops/health.ts) against a stand-in gateway whose parts the test switches:
 * what each check says, that an offline device does not make the gateway unready, the STATUS= line,
 * and that status listeners hear changes only. The real gateway's readiness is checked in
 * test/integration/ops-metrics.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, ShelfgateError } from '../../src/errors';
import type { GatewayState } from '../../src/core/gateway';
import { GatewayHealth, type HealthTarget } from '../../src/ops/health';
import { waitFor } from '../helpers/wait';

function standIn() {
  const s = {
    listening: true,
    open: true,
    pendingOps: 0,
    state: 'running' as GatewayState,
    online: new Map([
      ['bus1.1', true],
      ['bus1.2', true],
    ]),
  };
  const target: HealthTarget = {
    get state() {
      return s.state;
    },
    store: {
      stats: () => ({ pendingOps: s.pendingOps }),
      get isOpen() {
        return s.open;
      },
    } as unknown as HealthTarget['store'],
    bus: {
      address: () => {
        if (!s.listening) throw new ShelfgateError(ErrorCode.STOPPED, 'local bus is not listening');
        return { host: '127.0.0.1', port: 1883 };
      },
    } as unknown as HealthTarget['bus'],
    sources: [{ devices: [...s.online.keys()], isOnline: (d: string) => s.online.get(d) === true }] as unknown as HealthTarget['sources'],
  };
  return { s, target };
}

describe('GatewayHealth', () => {
  let health: GatewayHealth | undefined;
  afterEach(async () => {
    await health?.stop();
  });

  it('is alive and ready when every part is; an offline device is reported but does not make it unready', async () => {
    const { s, target } = standIn();
    health = new GatewayHealth({ gateway: target });
    await health.start();
    expect(health.liveness().ok).toBe(true);
    const r = health.readiness();
    expect(r.ok).toBe(true);
    expect(Object.keys(r.checks)).toEqual(['event_loop', 'store_writer', 'broker', 'sqlite', 'devices']);
    expect(health.statusLine(r)).toBe('ready: mqtt listening on 127.0.0.1:1883; started; 2/2 devices online');
    s.online.set('bus1.2', false);
    expect(health.readiness().ok).toBe(true);
    expect(health.readiness().checks.devices!.detail).toBe('started; 1/2 devices online');
  });

  it('is not ready while the broker is down, the database closed, or the gateway not running', async () => {
    const { s, target } = standIn();
    health = new GatewayHealth({ gateway: target });
    await health.start();
    s.listening = false;
    expect(health.readiness().ok).toBe(false);
    expect(health.statusLine()).toBe('NOT READY: broker: MQTT broker not listening');
    expect(health.liveness().ok).toBe(true); // alive all the same
    s.listening = true;
    s.open = false;
    expect(health.readiness().checks.sqlite).toEqual({ ok: false, detail: 'database not open' });
    s.open = true;
    for (const state of ['stopped', 'starting', 'stopping'] as const) {
      s.state = state;
      expect(health.readiness().ok).toBe(false);
      expect(health.readiness().checks.devices!.detail).toBe(`gateway ${state}; 2/2 devices online`);
    }
  });

  it('is not alive when the event loop stalled or the SQLite writer is far behind, nor before start()', async () => {
    const { s, target } = standIn();
    let now = 1_000_000;
    health = new GatewayHealth({ gateway: target, now: () => now, maxLoopStallMs: 5000, maxPendingOps: 10 });
    expect(health.liveness().checks.event_loop).toEqual({ ok: false, detail: 'health monitor not started' });
    await health.start();
    now += 5000;
    expect(health.liveness().ok).toBe(true);
    now += 1; // no heartbeat for longer than the bound (the injected clock stands for a blocked loop)
    expect(health.liveness().checks.event_loop).toEqual({ ok: false, detail: 'event loop stalled: no heartbeat for 5001 ms' });
    expect(health.readiness().ok).toBe(false);
    now -= 1;
    s.pendingOps = 10;
    expect(health.liveness().checks.store_writer).toEqual({ ok: false, detail: 'SQLite writer behind: 10 writes queued (limit 10)' });
  });

  it('tells status listeners when the line changes, and only then', async () => {
    const { s, target } = standIn();
    let clockReads = 0; // each heartbeat reads the clock: counting reads proves heartbeats went by
    health = new GatewayHealth({ gateway: target, heartbeatMs: 10, now: () => (clockReads++, Date.now()) });
    await health.start();
    const lines: string[] = [];
    health.onStatusChange((line) => lines.push(line));
    s.online.set('bus1.1', false);
    await waitFor(() => lines.length === 1, 5000, 'first change');
    expect(lines[0]).toBe('ready: mqtt listening on 127.0.0.1:1883; started; 1/2 devices online');
    s.listening = false;
    await waitFor(() => lines.length === 2, 5000, 'second change');
    expect(lines[1]).toBe('NOT READY: broker: MQTT broker not listening');
    // at least five more heartbeats with nothing changed: no new line
    const reads = clockReads;
    await waitFor(() => clockReads >= reads + 10, 5000, 'more heartbeats');
    expect(lines).toHaveLength(2);
  });
});
