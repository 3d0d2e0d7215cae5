import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger, type Logger } from '../../src/log';
import {
  notifySocketAddress,
  SystemdNotifier,
  watchdogIntervalMs,
  type UnixDgramModule,
  type UnixDgramSocket,
} from '../../src/systemd/notify';
import { waitFor } from '../helpers/wait';

// The real native module: these tests talk over a real AF_UNIX datagram socket, as systemd does.
type ReceiverSocket = UnixDgramSocket & {
  bind(path: string): void;
  on(event: 'message', listener: (buf: Buffer) => void): unknown;
};
const dgram = require('unix-dgram') as Omit<UnixDgramModule, 'createSocket'> & { createSocket(type: 'unix_dgram'): ReceiverSocket };

function captureLogger(): { log: Logger; lines: () => Array<Record<string, unknown>> } {
  const out: string[] = [];
  const log = createLogger('debug', { write: (s: string) => void out.push(s) });
  return { log, lines: () => out.map((s) => JSON.parse(s) as Record<string, unknown>) };
}

/** A stand-in for systemd's notify socket: a bound unix datagram socket recording what arrives. */
let dir: string;
let socketPath: string;
let receiver: ReceiverSocket;
let received: string[];
let notifier: SystemdNotifier | undefined;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shelfgate-notify-'));
  socketPath = path.join(dir, 'notify');
  received = [];
  receiver = dgram.createSocket('unix_dgram');
  receiver.on('message', (buf: Buffer) => void received.push(buf.toString('utf8')));
  receiver.on('error', (e: Error) => void received.push(`receiver error: ${e.message}`));
  receiver.bind(socketPath);
});

afterEach(async () => {
  await notifier?.stop();
  notifier = undefined;
  receiver.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const pings = () => received.filter((m) => m === 'WATCHDOG=1').length;
/** What the notifier sent: everything received but the test's own markers. */
const sent = () => received.filter((m) => !m.startsWith('MARKER='));

/**
 * Sends a marker datagram to the stand-in socket from a socket of its own and waits until it has
 * arrived. The socket's receive queue is one FIFO, so everything the notifier sent before is in
 * `received` by then: an absence checked after a marker is not just "not arrived yet".
 */
let markers = 0;
async function marker(): Promise<void> {
  const text = `MARKER=${++markers}`;
  const s = dgram.createSocket('unix_dgram');
  try {
    await new Promise<void>((resolve, reject) => s.send(Buffer.from(text), 0, text.length, socketPath, (err) => (err ? reject(err) : resolve())));
  } finally {
    s.close();
  }
  await waitFor(() => received.includes(text), 2000, text);
}

/**
 * Waits until `n` watchdog periods of `usec` have passed, counted by a second notifier pinging a
 * socket of its own. A watchdog timer of the notifier under test, armed earlier with the same
 * period, would have fired at least `n` times by then (Node runs same-period timers in the order
 * they were armed): "it did not ping" then means it had n chances.
 */
async function periodsPass(n: number, usec: string): Promise<void> {
  const clockPath = path.join(dir, `clock-${++markers}`);
  const rx = dgram.createSocket('unix_dgram') as typeof receiver;
  let ticks = 0;
  rx.on('message', (buf: Buffer) => {
    if (buf.toString('utf8') === 'WATCHDOG=1') ticks++;
  });
  rx.bind(clockPath);
  const clock = new SystemdNotifier({ log: captureLogger().log, env: { NOTIFY_SOCKET: clockPath, WATCHDOG_USEC: usec } });
  await clock.start();
  try {
    await waitFor(() => ticks >= n, 5000, `${n} watchdog periods of ${usec} us`);
  } finally {
    await clock.stop();
    rx.close();
  }
}

describe('SystemdNotifier over a real unix datagram socket', () => {
  it('sends READY=1 with STATUS, STATUS and STOPPING=1', async () => {
    const { log } = captureLogger();
    notifier = new SystemdNotifier({ log, env: { NOTIFY_SOCKET: socketPath } });
    await notifier.start();
    expect(notifier.active).toBe(true);
    notifier.ready('serving 3 shelves');
    notifier.status('bus 1 reconnecting\nretry in 5 s');
    notifier.stopping();
    await waitFor(() => received.length >= 3);
    expect(received).toEqual(['READY=1\nSTATUS=serving 3 shelves', 'STATUS=bus 1 reconnecting retry in 5 s', 'STOPPING=1']);
  });

  it('sends bare READY=1 without a status', async () => {
    notifier = new SystemdNotifier({ log: captureLogger().log, env: { NOTIFY_SOCKET: socketPath } });
    await notifier.start();
    notifier.ready();
    await waitFor(() => received.length >= 1);
    expect(received).toEqual(['READY=1']);
  });

  it('pings WATCHDOG=1 every WATCHDOG_USEC/2 and stops after stop()', async () => {
    notifier = new SystemdNotifier({
      log: captureLogger().log,
      env: { NOTIFY_SOCKET: socketPath, WATCHDOG_USEC: '60000', WATCHDOG_PID: String(process.pid) },
    });
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '60000' }, process.pid)).toBe(30);
    await notifier.start();
    await waitFor(() => pings() >= 3);
    await notifier.stop();
    notifier = undefined;
    await marker(); // a datagram already in flight lands before it
    const after = pings();
    await periodsPass(5, '60000');
    await marker();
    expect(pings()).toBe(after);
  });

  it('withholds pings while the health check fails, and resumes when it passes', async () => {
    const { log, lines } = captureLogger();
    let healthy = false;
    let checks = 0;
    notifier = new SystemdNotifier({ log, env: { NOTIFY_SOCKET: socketPath, WATCHDOG_USEC: '40000' } });
    notifier.setHealthCheck(() => {
      checks++;
      return healthy;
    });
    await notifier.start();
    await waitFor(() => checks >= 7, 5000, 'seven watchdog ticks');
    await marker();
    expect(pings()).toBe(0);
    // rate-limited: one warning, not one per tick
    expect(lines().filter((l) => String(l.msg).startsWith('health check failing')).length).toBe(1);
    healthy = true;
    await waitFor(() => pings() >= 2);
  });

  it('treats a throwing health check as unhealthy and does not throw', async () => {
    notifier = new SystemdNotifier({ log: captureLogger().log, env: { NOTIFY_SOCKET: socketPath, WATCHDOG_USEC: '40000' } });
    let checks = 0;
    notifier.setHealthCheck(() => {
      checks++;
      throw new Error('db wedged');
    });
    await notifier.start();
    await waitFor(() => checks >= 6, 5000, 'six watchdog ticks');
    await marker();
    expect(pings()).toBe(0);
  });

  it('does not ping when WATCHDOG_PID names another process', async () => {
    notifier = new SystemdNotifier({
      log: captureLogger().log,
      env: { NOTIFY_SOCKET: socketPath, WATCHDOG_USEC: '40000', WATCHDOG_PID: String(process.pid + 1) },
    });
    await notifier.start();
    notifier.ready();
    await periodsPass(6, '40000');
    await marker();
    expect(sent()).toEqual(['READY=1']);
  });

  it('never throws when the notify socket is gone; the failure is logged once per window', async () => {
    const { log, lines } = captureLogger();
    notifier = new SystemdNotifier({ log, env: { NOTIFY_SOCKET: path.join(dir, 'missing') } });
    await notifier.start();
    for (let i = 0; i < 5; i++) expect(() => notifier!.status(`try ${i}`)).not.toThrow();
    const failures = lines().filter((l) => l.msg === 'sd_notify send failed');
    expect(failures.length).toBe(1);
    expect(String(failures[0]!.err)).toMatch(/-2|ENOENT/);
  });
});

describe('SystemdNotifier outside systemd', () => {
  it('is a no-op without NOTIFY_SOCKET and never loads unix-dgram', async () => {
    let loads = 0;
    notifier = new SystemdNotifier({
      log: captureLogger().log,
      env: { WATCHDOG_USEC: '40000' },
      loadDgram: () => {
        loads++;
        return dgram;
      },
    });
    await notifier.start();
    expect(notifier.active).toBe(false);
    notifier.setHealthCheck(() => true);
    notifier.ready('x');
    notifier.status('y');
    notifier.stopping();
    await periodsPass(5, '40000');
    await notifier.stop();
    expect(loads).toBe(0);
    await marker();
    expect(sent()).toEqual([]);
  });

  it('is a no-op, logged once at info, when unix-dgram cannot be loaded', async () => {
    const { log, lines } = captureLogger();
    notifier = new SystemdNotifier({
      log,
      env: { NOTIFY_SOCKET: socketPath, WATCHDOG_USEC: '40000' },
      loadDgram: () => {
        throw new Error("Cannot find module 'unix-dgram'");
      },
    });
    await notifier.start();
    expect(notifier.active).toBe(false);
    notifier.ready('x');
    await periodsPass(5, '40000');
    await marker();
    expect(sent()).toEqual([]);
    const info = lines().filter((l) => String(l.msg).startsWith('unix-dgram unavailable'));
    expect(info).toHaveLength(1);
    expect(info[0]!.level).toBe(30); // pino info
  });

  it('maps an @abstract NOTIFY_SOCKET to a leading NUL, and ignores relative paths', () => {
    expect(notifySocketAddress({ NOTIFY_SOCKET: '@/org/freedesktop/systemd1/notify/123' })).toBe('\0/org/freedesktop/systemd1/notify/123');
    expect(notifySocketAddress({ NOTIFY_SOCKET: '/run/systemd/notify' })).toBe('/run/systemd/notify');
    expect(notifySocketAddress({ NOTIFY_SOCKET: 'relative/notify' })).toBeUndefined();
    expect(notifySocketAddress({ NOTIFY_SOCKET: '@' })).toBeUndefined();
    expect(notifySocketAddress({})).toBeUndefined();
  });

  it('refuses an abstract address (unix-dgram cannot reach one) with a warning instead of mis-sending', async () => {
    const { log, lines } = captureLogger();
    notifier = new SystemdNotifier({ log, env: { NOTIFY_SOCKET: '@shelfgate-test' } });
    await notifier.start();
    expect(notifier.active).toBe(false);
    expect(() => notifier!.ready()).not.toThrow();
    expect(lines().some((l) => l.level === 40 && String(l.msg).includes('abstract NOTIFY_SOCKET'))).toBe(true);
  });

  it('parses WATCHDOG_USEC strictly', () => {
    expect(watchdogIntervalMs({}, 1)).toBeUndefined();
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '30000000' }, 1)).toBe(15_000);
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '0' }, 1)).toBeUndefined();
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '-5' }, 1)).toBeUndefined();
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '12abc' }, 1)).toBeUndefined();
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '1' }, 1)).toBe(15_000);
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '2' }, 1)).toBeUndefined();
  });
});
