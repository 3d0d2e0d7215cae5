/**
 * The serial transport over REAL pseudo-terminals: socat links two ptys, the
 * gateway opens one through serialOpener + ReconnectingLink, the test opens the other as the
 * "device". Killing socat is an unplug (the gateway's reads fail with EIO; serialport #2043),
 * starting it again on the same paths is a replug.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SerialPort } from 'serialport';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCode, isShelfgateError } from '../../src/errors';
import { silentLogger } from '../../src/log';
import { ReconnectingLink } from '../../src/transport/reconnecting';
import { serialOpener } from '../../src/transport/serial';
import type { SerialSettings } from '../../src/transport/types';
import { waitFor } from '../helpers/wait';

const SETTINGS: SerialSettings = { baudRate: 9600, dataBits: 8, parity: 'none', stopBits: 1 };

/** True once the serial port under a Link has finished closing (no Link-level event says so). */
function portClosed(link: unknown): boolean {
  const port = (link as { stream: SerialPort }).stream;
  return !port.isOpen && !port.closing;
}

let dir: string;
let socat: ChildProcess | undefined;
let socatLog = '';
let link: ReconnectingLink | undefined;
const devices: SerialPort[] = [];

async function startSocat(): Promise<void> {
  const a = join(dir, 'a');
  const b = join(dir, 'b');
  const p = spawn('socat', ['-d', '-d', `pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  p.stderr!.on('data', (c: Buffer) => (socatLog = (socatLog + c.toString()).slice(-4000)));
  socat = p;
  await waitFor(() => existsSync(a) && existsSync(b), 5000, `socat links (log: ${socatLog})`);
  // socat logs "starting data transfer loop" once both ptys are set up
  await waitFor(() => socatLog.includes('starting data transfer loop'), 5000, 'socat transfer loop');
}

async function killSocat(): Promise<void> {
  const p = socat;
  socat = undefined;
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  p.kill('SIGTERM');
  const t = setTimeout(() => p.kill('SIGKILL'), 2000);
  await exited;
  clearTimeout(t);
}

async function openDevice(): Promise<{ port: SerialPort; received: () => string }> {
  const port = new SerialPort({ path: join(dir, 'b'), ...SETTINGS, autoOpen: false });
  port.on('error', () => undefined); // it fails with EIO when socat dies; that is expected
  let got = '';
  port.on('data', (c: Buffer) => (got += c.toString('latin1')));
  await new Promise<void>((res, rej) => port.open((err) => (err ? rej(err) : res())));
  devices.push(port);
  return { port, received: () => got };
}

async function exchange(rl: ReconnectingLink, tag: string): Promise<void> {
  const { port, received } = await openDevice();
  let gatewayGot = '';
  const onData = (c: Buffer): void => void (gatewayGot += c.toString('latin1'));
  rl.on('data', onData);
  try {
    port.write(`from-device-${tag}\r\n`);
    await waitFor(() => gatewayGot === `from-device-${tag}\r\n`, 5000, 'device -> gateway bytes');
    await rl.write(Buffer.from(`from-gateway-${tag}\r\n`));
    await waitFor(() => received() === `from-gateway-${tag}\r\n`, 5000, 'gateway -> device bytes');
  } finally {
    rl.off('data', onData);
  }
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'shelfgate-pty-'));
  socatLog = '';
});

afterEach(async () => {
  await link?.stop();
  link = undefined;
  for (const d of devices.splice(0)) if (d.isOpen) await new Promise<void>((r) => d.close(() => r()));
  await killSocat();
  rmSync(dir, { recursive: true, force: true });
});

describe('serial transport over socat ptys', () => {
  it('carries bytes, goes offline on unplug and comes back by itself on replug', async () => {
    await startSocat();
    const rl = new ReconnectingLink({
      name: 'pty',
      opener: serialOpener(join(dir, 'a'), SETTINGS),
      backoff: { initialMs: 50, maxMs: 400 },
      log: silentLogger(),
    });
    link = rl;
    const events: string[] = [];
    rl.on('online', () => events.push('online'));
    rl.on('offline', (reason) => events.push(`offline:${reason}`));

    await rl.start();
    await waitFor(() => rl.online, 5000, 'online');
    await exchange(rl, '1');

    await killSocat(); // unplug
    await waitFor(() => !rl.online, 5000, 'offline after unplug');
    expect(events[1]).toMatch(/^offline:(?!stopped)/); // e.g. "bad file descriptor" (EBADF) from the read poller
    expect(rl.stats.disconnects).toBe(1);

    await waitFor(() => rl.stats.openFailures >= 2, 5000, 'failed reopens while unplugged');
    await startSocat(); // replug
    await waitFor(() => rl.online, 5000, 'online after replug');
    await exchange(rl, '2');

    expect(events.filter((e) => e === 'online').length).toBe(2);
    expect(events.filter((e) => e.startsWith('offline')).length).toBe(1); // not one per failed retry
    expect(rl.stats.opens).toBe(2);
  });

  it('a Link emits exactly one close: on unplug (with an error, no write needed) or on close()', async () => {
    const open = serialOpener(join(dir, 'a'), SETTINGS);
    // Five unplugs: before our EOF fix (bindings-cpp #162) about half of them gave no 'close' at all.
    for (let i = 0; i < 5; i++) {
      await startSocat();
      const link = await open();
      const closes: (Error | undefined)[] = [];
      link.on('close', (err) => closes.push(err));
      await killSocat(); // unplug, and nothing written afterwards
      await waitFor(() => closes.length === 1, 3000, `close after unplug #${i}`);
      // the port's own teardown is the last thing that could still bring a second 'close'
      await waitFor(() => portClosed(link), 3000, `port closed after unplug #${i}`);
      expect(closes.length).toBe(1);
      expect(closes[0]).toBeInstanceOf(Error);
      await expect(link.write(Buffer.from('x'))).rejects.toSatisfy((e) => isShelfgateError(e, ErrorCode.TRANSPORT_CLOSED));
      await link.close(); // no second 'close'
      expect(closes.length).toBe(1);
    }

    await startSocat();
    const second = await open();
    const closes2: (Error | undefined)[] = [];
    second.on('close', (err) => closes2.push(err));
    await second.write(Buffer.from('bye'));
    await second.close();
    await second.close();
    expect(closes2).toEqual([undefined]);
    await expect(second.write(Buffer.from('x'))).rejects.toSatisfy((e) => isShelfgateError(e, ErrorCode.TRANSPORT_CLOSED));
  });

  it('a path that does not exist yet does not block start(); the link opens once it appears', async () => {
    const rl = new ReconnectingLink({
      name: 'pty-late',
      opener: serialOpener(join(dir, 'a'), SETTINGS),
      backoff: { initialMs: 20, maxMs: 100 },
      log: silentLogger(),
    });
    link = rl;
    await rl.start();
    expect(rl.online).toBe(false);
    await waitFor(() => rl.stats.openFailures >= 2, 5000, 'some failed opens');
    await startSocat();
    await waitFor(() => rl.online, 5000, 'online');
    await exchange(rl, 'late');
  });
});
