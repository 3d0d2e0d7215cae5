import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { PolledSource, type PolledSourceOptions } from '../../src/core/sources/polled-source';
import type { DeviceAvailability, SourceReading } from '../../src/core/sources/types';
import { ErrorCode, ShelfgateError } from '../../src/errors';
import { createLogger } from '../../src/log';
import { waitFor } from '../helpers/daemon';

/** A link that is always up; `failOnline` makes the next read of `online` throw (a bug in the loop's path). */
class FakeLink extends EventEmitter {
  failOnline = false;
  get online(): boolean {
    if (this.failOnline) {
      this.failOnline = false;
      throw new TypeError("Cannot read properties of undefined (reading 'online')");
    }
    return true;
  }
  send(): void {}
}

type Step = 'ok' | Error;

/** Answers each poll after one event-loop turn (as I/O would) from a script, then 'ok' forever. */
class ScriptedSource extends PolledSource {
  constructor(
    opts: Omit<PolledSourceOptions, 'name' | 'gapMs' | 'log'> & { log: PolledSourceOptions['log'] },
    private readonly script: Step[] = [],
  ) {
    super({ name: 'test', gapMs: 0, ...opts });
  }

  protected async pollSensor(sensor: string): Promise<SourceReading> {
    await new Promise((r) => setImmediate(r));
    const step = this.script.shift() ?? 'ok';
    if (step !== 'ok') throw step;
    return { sensor, ts: Date.now(), rxMono: performance.now() };
  }
}

/** Polls through the real RequestChannel: `SI` out, a line back (or nothing: then it times out). */
class ChannelSource extends PolledSource {
  protected pollSensor(sensor: string): Promise<SourceReading> {
    return this.channel.request(Buffer.from('SI\r\n'), (c) => (c.includes(0x0a) ? { sensor, ts: Date.now(), rxMono: performance.now() } : null), 300);
  }
}

/** A link whose writes are recorded and that can drop and come back. */
class DroppingLink extends EventEmitter {
  online = true;
  sent: Buffer[] = [];
  send(data: Buffer): void {
    this.sent.push(data);
  }
  drop(reason: string): void {
    this.online = false;
    this.emit('offline', reason);
  }
  back(): void {
    this.online = true;
    this.emit('online');
  }
}

/** A device that answers every request in a microtask, with no I/O at all (like a MockDevice with a simulator). */
class InstantLink extends EventEmitter {
  online = true;
  send(): void {
    queueMicrotask(() => this.emit('data', Buffer.from('S S 1.00 g\r\n')));
  }
}

function capture() {
  const lines: Array<{ level: number; msg: string; [k: string]: unknown }> = [];
  const log = createLogger('debug', { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { log, lines };
}

let running: PolledSource[] = [];
afterEach(async () => {
  for (const s of running) await s.stop();
  running = [];
});

function start(s: PolledSource): PolledSource {
  running.push(s);
  void s.start();
  return s;
}

const timeout = (): ShelfgateError => new ShelfgateError(ErrorCode.DEVICE_TIMEOUT, 'no answer within 50 ms');

describe('PolledSource', () => {
  it('keeps polling when an availability listener throws', async () => {
    const { log, lines } = capture();
    const link = new FakeLink();
    const src = new ScriptedSource({ link, sensors: ['a'], pollIntervalMs: 0, missesToOffline: 1, log }, [timeout()]);
    const seen: DeviceAvailability[] = [];
    src.on('availability', (a) => {
      seen.push(a);
      if (!a.online) throw new TypeError('listener bug');
    });
    start(src);
    // offline after the first miss (the listener throws), probed again after 2 s, then online
    await waitFor(() => seen.some((a) => a.online) && src.stats.readings >= 3, 5_000, 'readings after the throwing listener');
    expect(seen.map((a) => a.online)).toEqual([false, true]);
    expect(lines.some((l) => l.msg === 'source listener threw' && l.event === 'availability')).toBe(true);
    expect(src.restarts).toBe(0);
  });

  it('does not count a throwing reading listener as a sensor miss', async () => {
    const { log, lines } = capture();
    const src = new ScriptedSource({ link: new FakeLink(), sensors: ['a'], pollIntervalMs: 0, missesToOffline: 1, log });
    const seen: DeviceAvailability[] = [];
    src.on('availability', (a) => seen.push(a));
    src.on('reading', () => {
      throw new TypeError('listener bug');
    });
    start(src);
    await waitFor(() => src.stats.readings >= 5, 2_000, 'five readings');
    expect(src.stats).toMatchObject({ invalidFrames: 0, timeouts: 0 });
    expect(seen.map((a) => a.online)).toEqual([true]);
    expect(src.isOnline('a')).toBe(true);
    // logged once, then rate-limited
    expect(lines.filter((l) => l.msg === 'source listener threw')).toHaveLength(1);
  });

  it('restarts a poll loop that failed, after a backoff, with its devices offline meanwhile', async () => {
    const { log, lines } = capture();
    const link = new FakeLink();
    const src = new ScriptedSource({ link, sensors: ['a', 'b'], pollIntervalMs: 0, missesToOffline: 3, log, restartBackoff: { initialMs: 20, maxMs: 100 } });
    const seen: DeviceAvailability[] = [];
    src.on('availability', (a) => seen.push(a));
    start(src);
    await waitFor(() => src.isOnline('a') && src.isOnline('b'), 2_000, 'both sensors online');
    link.failOnline = true; // the loop's next look at the link throws
    await waitFor(() => lines.find((l) => l.msg === 'poll loop failed; its devices are offline until it runs again'), 2_000, 'the failure logged');
    const failed = lines.find((l) => l.msg === 'poll loop failed; its devices are offline until it runs again')!;
    expect(failed).toMatchObject({ level: 50, restarts: 1, delayMs: expect.any(Number) });
    const offline = seen.filter((a) => !a.online);
    expect(offline.map((a) => a.sensor).sort()).toEqual(['a', 'b']);
    expect(offline[0]!.reason).toMatch(/^poll loop failed: Cannot read properties/);
    // polled again: both come back online, and readings keep coming
    const before = src.stats.readings;
    await waitFor(() => src.isOnline('a') && src.isOnline('b') && src.stats.readings >= before + 10, 2_000, 'polling again');
    expect(src.restarts).toBe(1);
    expect(seen.map((a) => `${a.sensor}:${a.online}`)).toEqual(['a:true', 'b:true', 'a:false', 'b:false', 'a:true', 'b:true']);
  });

  it('polls back to back with a zero interval: no timer (>= 1 ms) per cycle', async () => {
    const { log } = capture();
    const src = new ScriptedSource({ link: new FakeLink(), sensors: ['a'], pollIntervalMs: 0, missesToOffline: 3, log });
    start(src);
    await waitFor(() => src.stats.readings >= 1, 2_000, 'first reading');
    const t0 = performance.now();
    const n0 = src.stats.readings;
    await waitFor(() => src.stats.readings >= n0 + 1_000, 5_000, '1000 more readings');
    // a 1 ms timer per cycle would take >= 1000 ms for these
    expect(performance.now() - t0).toBeLessThan(700);
  });

  it('still paces cycles to poll_interval_ms', async () => {
    const { log } = capture();
    const src = new ScriptedSource({ link: new FakeLink(), sensors: ['a'], pollIntervalMs: 50, missesToOffline: 3, log });
    const at: number[] = [];
    src.on('reading', (r) => at.push(r.rxMono));
    start(src);
    await waitFor(() => at.length >= 5, 2_000, 'five readings');
    for (let i = 1; i < at.length; i++) expect(at[i]! - at[i - 1]!).toBeGreaterThanOrEqual(45); // timers may fire ~1 ms early against performance.now()
  });

  it('a link drop fails the request in flight at once: not a device timeout', async () => {
    const { log, lines } = capture();
    const link = new DroppingLink();
    const src = new ChannelSource({ name: 'test', link, sensors: ['a'], pollIntervalMs: 0, gapMs: 0, missesToOffline: 3, log });
    start(src);
    await waitFor(() => link.sent.length === 1, 2_000, 'the first request');
    link.drop('EIO'); // the device never answered it
    link.back();
    await waitFor(() => link.sent.length === 2, 2_000, 'a request after the link came back');
    expect(src.stats.timeouts).toBe(0);
    expect(lines.filter((l) => l.msg === 'sensor did not answer correctly')).toEqual([]);
  });

  it('a device answering without I/O (microtasks only) does not starve timers', async () => {
    const { log } = capture();
    const src = new ChannelSource({ name: 'test', link: new InstantLink(), sensors: ['a', 'b'], pollIntervalMs: 0, gapMs: 0, missesToOffline: 3, log });
    start(src);
    const at = src.stats.readings;
    await new Promise((r) => setTimeout(r, 20)); // never fires if the loop keeps the event loop in microtasks
    expect(src.stats.readings).toBeGreaterThan(at);
  });
});
