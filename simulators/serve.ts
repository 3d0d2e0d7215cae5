/**
 * Exposes one device simulator to the outside, the ways a real device reaches the gateway:
 * - serveTcp: a TCP serial server like ser2net raw mode or an Ethernet RS-485 gateway (one client
 *   at a time; a new client replaces the old, as ser2net does with `max-connections: 1` + kick);
 * - servePty: a pseudo-terminal pair made by socat; the gateway opens
 *   `linkPath` like hardware, the simulator sits on `<linkPath>.sim`;
 * - servePort: a real serial port (a USB-serial cable to the gateway).
 * Every wait is bounded; close() releases everything and never throws.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { SerialPort } from 'serialport';
import type { SerialSettings } from '../src/transport/types';
import { sleep } from '../src/util/backoff';
import { streamIo, type DeviceSimulator } from './io';

export interface Serving {
  /** Where the gateway connects: `tcp://127.0.0.1:5020`, a pty link path, or a device path. */
  readonly url: string;
  close(): Promise<void>;
}

export interface TcpServing extends Serving {
  readonly host: string;
  readonly port: number;
  /** Clients accepted so far. */
  readonly connections: number;
}

export async function serveTcp(sim: DeviceSimulator, host: string, port: number): Promise<TcpServing> {
  let current: Socket | null = null;
  let connections = 0;
  const server = createServer((socket) => {
    connections++;
    const previous = current;
    current = socket;
    previous?.destroy(); // one client at a time: the newest wins
    socket.setNoDelay(true);
    socket.on('error', () => undefined); // a reset by the client is its business; 'close' follows
    const detach = sim.attach(streamIo(socket));
    socket.once('close', () => {
      detach();
      if (current === socket) current = null;
    });
  });
  await new Promise<void>((resolve, reject) => {
    const onError = (e: Error): void => reject(e);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', () => undefined);
  const addr = server.address() as AddressInfo;
  const shownHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  let closed = false;
  return {
    host: addr.address,
    port: addr.port,
    url: `tcp://${shownHost}:${addr.port}`,
    get connections() {
      return connections;
    },
    async close() {
      if (closed) return;
      closed = true;
      const done = new Promise<void>((resolve) => server.close(() => resolve()));
      current?.destroy();
      current = null;
      sim.detach();
      await done;
    },
  };
}

export interface PtyServing extends Serving {
  /** The gateway's end (the `linkPath` given). */
  readonly path: string;
  /** The simulator's end, `<linkPath>.sim`. */
  readonly simPath: string;
}

export interface ServePtyOptions {
  /** Bound on waiting for socat's links, ms. Default 5000. */
  timeoutMs?: number;
  /** socat executable. Default `socat`. */
  socat?: string;
}

async function waitUntil(what: string, cond: () => boolean, timeoutMs: number, failed: () => string | null): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const why = failed();
    if (why) throw new Error(`${what}: ${why}`);
    if (cond()) return;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

async function stopProcess(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  p.kill('SIGTERM');
  const t = setTimeout(() => p.kill('SIGKILL'), 2000);
  await Promise.race([exited, sleep(3000)]);
  clearTimeout(t);
}

function openPort(path: string, settings: SerialSettings): Promise<SerialPort> {
  return new Promise((resolve, reject) => {
    let port: SerialPort;
    try {
      port = new SerialPort({ path, ...settings, autoOpen: false });
    } catch (e) {
      reject(e as Error);
      return;
    }
    // 'error' after open (EIO when the other side goes away) must never crash the simulator.
    port.on('error', () => undefined);
    port.open((err) => (err ? reject(err) : resolve(port)));
  });
}

function closePort(port: SerialPort): Promise<void> {
  if (!port.isOpen) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(resolve, 2000);
    port.close(() => {
      clearTimeout(t);
      resolve();
    });
  });
}

/**
 * Makes a pty pair with socat: `<linkPath>` for the gateway, `<linkPath>.sim` for the simulator.
 * Rejects (after cleaning up) if socat cannot start or the links do not appear in time.
 */
export async function servePty(sim: DeviceSimulator, linkPath: string, opts: ServePtyOptions = {}): Promise<PtyServing> {
  const simPath = `${linkPath}.sim`;
  const timeoutMs = opts.timeoutMs ?? 5000;
  let log = '';
  let spawnError: Error | null = null;
  const socat = spawn(opts.socat ?? 'socat', ['-d', '-d', `pty,raw,echo=0,link=${linkPath}`, `pty,raw,echo=0,link=${simPath}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  socat.on('error', (e) => (spawnError = e));
  socat.stderr!.on('data', (c: Buffer) => (log = (log + c.toString()).slice(-4000)));
  const removeLinks = (): void => {
    for (const p of [linkPath, simPath]) rmSync(p, { force: true });
  };
  let port: SerialPort | null = null;
  try {
    const failed = (): string | null =>
      spawnError ? `cannot run socat: ${spawnError.message}` : socat.exitCode !== null || socat.signalCode !== null ? `socat exited (${log.trim()})` : null;
    await waitUntil(`socat links ${linkPath}`, () => existsSync(linkPath) && existsSync(simPath), timeoutMs, failed);
    // socat logs "starting data transfer loop" once both ptys are set up.
    await waitUntil('socat transfer loop', () => log.includes('starting data transfer loop'), timeoutMs, failed);
    port = await openPort(simPath, sim.serial);
  } catch (e) {
    await stopProcess(socat);
    removeLinks();
    throw e;
  }
  const p = port;
  const detach = sim.attach(streamIo(p));
  let closed = false;
  return {
    url: linkPath,
    path: linkPath,
    simPath,
    async close() {
      if (closed) return;
      closed = true;
      detach();
      await closePort(p);
      await stopProcess(socat);
      removeLinks();
    },
  };
}

/** Attaches the simulator to a real serial port (default settings: the simulated device's). */
export async function servePort(sim: DeviceSimulator, devicePath: string, settings: SerialSettings = sim.serial): Promise<Serving> {
  const port = await openPort(devicePath, settings);
  const detach = sim.attach(streamIo(port));
  let closed = false;
  return {
    url: devicePath,
    async close() {
      if (closed) return;
      closed = true;
      detach();
      await closePort(port);
    },
  };
}

/**
 * Serves `sim` the way a simulator's command line asked (`--tcp HOST:PORT`, `--pty PATH` or
 * `--port DEVICE`, exactly one given): the one place the three transports are chosen.
 */
export function serveAs(sim: DeviceSimulator, where: { tcp?: { host: string; port: number } | null; pty?: string | undefined; port?: string | undefined }): Promise<Serving> {
  if (where.tcp) return serveTcp(sim, where.tcp.host, where.tcp.port);
  if (where.pty !== undefined) return servePty(sim, where.pty);
  if (where.port !== undefined) return servePort(sim, where.port, sim.serial);
  return Promise.reject(new Error('no transport: give --tcp, --pty or --port'));
}
