import { afterEach, describe, expect, it, vi } from 'vitest';
import { ErrorCode, isShelfgateError } from '../../src/errors';
import { createLogger, silentLogger } from '../../src/log';
import { createMockLinkPair } from '../../src/transport/mock';
import { ReconnectingLink, type ReconnectingLinkOptions } from '../../src/transport/reconnecting';
import type { Link } from '../../src/transport/types';
import { waitFor, waitForEvent } from '../helpers/wait';

let current: ReconnectingLink | undefined;
afterEach(async () => {
  await current?.stop();
  current = undefined;
});

function setup(opts: Partial<ReconnectingLinkOptions> = {}) {
  const { gateway, device } = createMockLinkPair('scale');
  const links: Link[] = [];
  const events: string[] = [];
  const rl = new ReconnectingLink({
    name: 'bus1',
    opener: async () => {
      const l = await gateway();
      links.push(l);
      return l;
    },
    backoff: { initialMs: 10, maxMs: 40 },
    log: silentLogger(),
    ...opts,
  });
  rl.on('online', () => events.push('online'));
  rl.on('offline', (reason) => events.push(`offline:${reason}`));
  current = rl;
  return { rl, device, links, events };
}

describe('ReconnectingLink', () => {
  it('constructor does nothing; start() resolves without waiting for the device', async () => {
    const { rl, device } = setup();
    device.openDelayMs = 500;
    expect(device.opens).toBe(0);
    const t = Date.now();
    await rl.start();
    expect(Date.now() - t).toBeLessThan(50);
    expect(rl.online).toBe(false);
    await waitFor(() => rl.online);
  });

  it('carries bytes both ways and counts them', async () => {
    const { rl, device } = setup();
    const got: Buffer[] = [];
    rl.on('data', (c) => got.push(c));
    await rl.start();
    await waitFor(() => rl.online);
    await rl.write(Buffer.from('S\r\n'));
    expect(device.takeWritten().toString()).toBe('S\r\n');
    device.send('S S 1.00 g\r\n');
    await waitFor(() => got.length === 1);
    expect(Buffer.concat(got).toString()).toBe('S S 1.00 g\r\n');
    expect(rl.stats).toMatchObject({ opens: 1, bytesOut: 3, bytesIn: 12, disconnects: 0 });
  });

  it('unplug -> offline -> back online by itself', async () => {
    const { rl, device, events } = setup();
    await rl.start();
    await waitFor(() => rl.online);
    device.unplug();
    expect(rl.online).toBe(false);
    await expect(rl.write(Buffer.from('x'))).rejects.toSatisfy((e) => isShelfgateError(e, ErrorCode.TRANSPORT_CLOSED));
    await waitFor(() => rl.online);
    expect(events).toEqual(['online', 'offline:EIO: i/o error, read (mock unplug)', 'online']);
    expect(rl.stats).toMatchObject({ opens: 2, disconnects: 1 });
    await rl.write(Buffer.from('again'));
    expect(device.takeWritten().toString()).toBe('again');
  });

  it('open failing N times: one offline event, one log line, then online', async () => {
    const lines: { msg: string }[] = [];
    const log = createLogger('debug', { write: (s: string) => void lines.push(JSON.parse(s)) });
    const { rl, device, events } = setup({ log });
    device.failNextOpens(5);
    await rl.start();
    await waitFor(() => rl.online);
    expect(rl.stats.openFailures).toBe(5);
    expect(rl.stats.opens).toBe(1);
    expect(events).toEqual(['offline:open failed: mock://scale: ENOENT: no such device scale', 'online']);
    expect(lines.filter((l) => l.msg.startsWith('link open failed')).length).toBe(1); // LogLimiter
  });

  it('backs off between failed opens (no tight loop)', async () => {
    const { rl, device } = setup({ backoff: { initialMs: 20, maxMs: 40 } });
    device.failNextOpens(1000);
    const t0 = Date.now();
    await rl.start();
    // at least 3 attempts in 250 ms: it keeps retrying
    await waitFor(() => rl.stats.openFailures >= 3, 2000, 'three failed opens');
    expect(Date.now() - t0).toBeLessThan(250);
    // at most 10 in 250 ms: 20, 40, 40, ... ±20 % puts the 11th at 16 + 9 x 32 = 304 ms or later
    await waitFor(() => rl.stats.openFailures >= 11, 5000, 'eleven failed opens');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
  });

  it('stop() during the backoff resolves at once and opens nothing more', async () => {
    // Fake timeouts, so that "nothing more" is checked past the end of the 60 s backoff.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const { rl, device } = setup({ backoff: { initialMs: 60_000, maxMs: 60_000 } });
      device.failNextOpens(1);
      await rl.start();
      await vi.advanceTimersByTimeAsync(0); // the failed open settles (promises only)
      expect(rl.stats.openFailures).toBe(1);
      expect(vi.getTimerCount()).toBe(1); // the backoff
      const t = Date.now();
      await rl.stop();
      expect(Date.now() - t).toBeLessThan(100);
      expect(vi.getTimerCount()).toBe(0);
      await vi.advanceTimersByTimeAsync(120_000); // past the longest backoff (60 s + 20 %)
      expect(device.opens).toBe(0);
      expect(rl.stats.openFailures).toBe(1);
    } finally {
      vi.useRealTimers();
    }
  });

  it('stop() in the middle of an open resolves, and the late link is closed', async () => {
    const { rl, device } = setup();
    device.openDelayMs = 100;
    const lateLinkClosed = waitForEvent(device, 'close', 5000, 'the late link to be closed');
    await rl.start();
    const t = Date.now();
    await rl.stop();
    expect(Date.now() - t).toBeLessThan(50);
    await lateLinkClosed;
    expect(device.opens).toBe(1);
    expect(device.connected).toBe(false);
    expect(rl.online).toBe(false);
  });

  it('stop() closes an open link and can be started again', async () => {
    const { rl, device, events } = setup();
    await rl.start();
    await waitFor(() => rl.online);
    await rl.stop();
    expect(device.connected).toBe(false);
    expect(events).toEqual(['online', 'offline:stopped']);
    expect(rl.stats.disconnects).toBe(0);
    await rl.start();
    await waitFor(() => rl.online);
    expect(device.opens).toBe(2);
  });

  it('leaks no listeners over many reconnects', async () => {
    const { rl, device, links } = setup({ backoff: { initialMs: 1, maxMs: 2 } });
    const before = rl.eventNames().map((e) => `${String(e)}:${rl.listenerCount(e)}`);
    await rl.start();
    for (let i = 0; i < 30; i++) {
      await waitFor(() => rl.online);
      device.unplug();
    }
    await waitFor(() => rl.online);
    await rl.stop();
    expect(links.length).toBe(31);
    for (const l of links) {
      const e = l as unknown as { listenerCount(n: string): number };
      expect(e.listenerCount('data') + e.listenerCount('close')).toBe(0);
    }
    expect(rl.eventNames().map((e) => `${String(e)}:${rl.listenerCount(e)}`)).toEqual(before);
    expect(device.listenerCount('close')).toBe(0);
  });

  it('a throwing data listener does not break the link', async () => {
    const { rl, device } = setup();
    rl.on('data', () => {
      throw new Error('bad consumer');
    });
    await rl.start();
    await waitFor(() => rl.online);
    device.send('a');
    device.send('b');
    await waitFor(() => rl.stats.bytesIn === 2);
    expect(rl.online).toBe(true);
  });

  it('a reconnect loop that fails is logged, reported offline, and runs again after a backoff', async () => {
    const lines: { msg: string; level: number; delayMs?: number }[] = [];
    const log = createLogger('debug', { write: (s: string) => void lines.push(JSON.parse(s)) });
    const { gateway, device } = createMockLinkPair('scale');
    let closedBroken = 0;
    let calls = 0;
    // a buggy driver: its first link throws when the reconnect loop attaches to it
    const broken = {
      description: 'broken',
      write: async () => undefined,
      send: () => undefined,
      close: async () => void closedBroken++,
      on: () => {
        throw new TypeError("Cannot read properties of undefined (reading 'on')");
      },
      off: () => broken,
    } as unknown as Link;
    const rl = new ReconnectingLink({ name: 'bus1', opener: async () => (++calls === 1 ? broken : gateway()), backoff: { initialMs: 10, maxMs: 40 }, log });
    current = rl;
    const events: string[] = [];
    rl.on('online', () => events.push('online'));
    rl.on('offline', (reason) => events.push(`offline:${reason}`));
    await rl.start();
    await waitFor(() => rl.online);
    expect(device.opens).toBe(1);
    expect(closedBroken).toBe(1);
    expect(events).toEqual([`offline:reconnect loop failed: Cannot read properties of undefined (reading 'on')`, 'online']);
    expect(lines.find((l) => l.msg === 'reconnect loop failed; reopening after backoff')).toMatchObject({ level: 50, delayMs: expect.any(Number) });
    await rl.write(Buffer.from('SI\r\n'));
    expect(device.takeWritten().toString()).toBe('SI\r\n');
  });
});
