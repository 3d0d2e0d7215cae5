/**
 * The simulators over real transports: a TCP serial server (ser2net-like), a socat pty pair opened
 * with serialport's real binding, and the `shelfgate sim` command line run in-process.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SerialPort } from 'serialport';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadDefinitions } from '../../src/devices/definitions';
import type { ModbusDefinition, MtSicsDefinition } from '../../src/devices/types';
import { runSimCli } from '../../simulators/cli';
import type { DeviceSimulator } from '../../simulators/io';
import { ModbusLoadCellBusSimulator } from '../../simulators/modbus-loadcell-sim';
import { MtSicsSimulator } from '../../simulators/mtsics-sim';
import { LoadCellPhysics } from '../../simulators/physics';
import { servePty, serveTcp, type Serving } from '../../simulators/serve';
import { waitFor } from '../helpers/wait';

const defs = loadDefinitions();
const MB = defs.get('generic-modbus-loadcell') as ModbusDefinition;
const SICS = defs.get('mettler-toledo-mt-sics') as MtSicsDefinition;
const quiet = { noiseSigmaG: 0, driftGPerHour: 0, driftSigmaGPerSqrtHour: 0 };
const REQ_GROSS = Buffer.from('010300500002C41A', 'hex');
const RES_GROSS = '01 03 04 00 00 00 84 FA 50';
const REQ_NET = Buffer.from('01030052000265DA', 'hex');
const RES_NET = '01 03 04 FF FF C1 EF EA 0B';

const show = (b: Buffer): string => b.toString('hex').toUpperCase().replace(/(..)(?!$)/g, '$1 ');

/** A reference bus: address 1 shows gross 132 and net -15889 (reference frames of a generic Modbus RTU load-cell transmitter). */
function referenceBus(): ModbusLoadCellBusSimulator {
  const bus = new ModbusLoadCellBusSimulator({ definition: MB, slaves: { 1: new LoadCellPhysics({ unitWeightG: 1, ...quiet }) } });
  bus.setRegisters(1, { 0x50: 0x0000, 0x51: 0x0084, 0x52: 0xffff, 0x53: 0xc1ef });
  return bus;
}

class Client {
  got = Buffer.alloc(0);
  constructor(readonly socket: Socket) {
    socket.on('data', (c: Buffer) => (this.got = Buffer.concat([this.got, c])));
    socket.on('error', () => undefined);
  }
  static async open(port: number): Promise<Client> {
    const s = connect(port, '127.0.0.1');
    await new Promise<void>((res, rej) => {
      s.once('connect', () => res());
      s.once('error', rej);
    });
    return new Client(s);
  }
  async ask(req: Buffer, len: number): Promise<Buffer> {
    this.got = Buffer.alloc(0);
    this.socket.write(req);
    await waitFor(() => this.got.length >= len, 5000, `${len} bytes`);
    return this.got;
  }
}

let dir: string;
const cleanups: (() => Promise<void> | void)[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'shelfgate-sim-'));
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  rmSync(dir, { recursive: true, force: true });
});

function track<T extends Serving>(s: T): T {
  cleanups.push(() => s.close());
  return s;
}

describe('serveTcp', () => {
  it('answers the reference Modbus requests over a raw TCP socket', async () => {
    const serving = track(await serveTcp(referenceBus(), '127.0.0.1', 0));
    expect(serving.port).toBeGreaterThan(0);
    expect(serving.url).toBe(`tcp://127.0.0.1:${serving.port}`);
    const c = await Client.open(serving.port);
    cleanups.push(() => void c.socket.destroy());
    expect(show(await c.ask(REQ_GROSS, 9))).toBe(RES_GROSS);
    expect(show(await c.ask(REQ_NET, 9))).toBe(RES_NET);
  });

  it('one client at a time: a new client replaces the old one', async () => {
    const serving = track(await serveTcp(referenceBus(), '127.0.0.1', 0));
    const first = await Client.open(serving.port);
    cleanups.push(() => void first.socket.destroy());
    const firstClosed = new Promise<void>((r) => first.socket.once('close', () => r()));
    const second = await Client.open(serving.port);
    cleanups.push(() => void second.socket.destroy());
    await firstClosed;
    expect(show(await second.ask(REQ_GROSS, 9))).toBe(RES_GROSS);
    expect(serving.connections).toBe(2);
  });

  it('serves an MT-SICS scale', async () => {
    const sim = new MtSicsSimulator({ definition: SICS, physics: new LoadCellPhysics({ unitWeightG: 100, items: 1, ...quiet }) });
    const serving = track(await serveTcp(sim, '127.0.0.1', 0));
    const c = await Client.open(serving.port);
    cleanups.push(() => void c.socket.destroy());
    expect((await c.ask(Buffer.from('S\r\n'), 18)).toString('latin1')).toBe('S S     100.00 g\r\n');
  });

  it('close() ends the client and frees the port', async () => {
    const serving = await serveTcp(referenceBus(), '127.0.0.1', 0);
    const c = await Client.open(serving.port);
    const closed = new Promise<void>((r) => c.socket.once('close', () => r()));
    await serving.close();
    await closed;
    await serving.close(); // twice is fine
    const again = track(await serveTcp(referenceBus(), '127.0.0.1', serving.port));
    expect(again.port).toBe(serving.port);
  });
});

describe('servePty (socat)', () => {
  async function openGateway(path: string): Promise<{ port: SerialPort; got: () => Buffer }> {
    const port = new SerialPort({ path, baudRate: 9600, dataBits: 8, parity: 'none', stopBits: 1, autoOpen: false });
    port.on('error', () => undefined);
    let got = Buffer.alloc(0);
    port.on('data', (c: Buffer) => (got = Buffer.concat([got, c])));
    await new Promise<void>((res, rej) => port.open((e) => (e ? rej(e) : res())));
    cleanups.push(() => new Promise<void>((r) => (port.isOpen ? port.close(() => r()) : r())));
    return { port, got: () => got };
  }

  it('the gateway opens the link like hardware and gets the reference answers', async () => {
    const link = join(dir, 'ttyV0');
    const serving = track(await servePty(referenceBus(), link));
    expect(serving.path).toBe(link);
    expect(existsSync(link) && existsSync(`${link}.sim`)).toBe(true);
    const gw = await openGateway(link);
    gw.port.write(REQ_GROSS);
    await waitFor(() => gw.got().length >= 9, 5000, 'gross answer');
    expect(show(gw.got())).toBe(RES_GROSS);
    gw.port.write(REQ_NET);
    await waitFor(() => gw.got().length >= 18, 5000, 'net answer');
    expect(show(gw.got().subarray(9))).toBe(RES_NET);
  });

  it('serves MT-SICS over a pty; close() kills socat and removes the links', async () => {
    const link = join(dir, 'ttyS');
    const sim: DeviceSimulator = new MtSicsSimulator({ definition: SICS, physics: new LoadCellPhysics({ unitWeightG: 100, items: 1, ...quiet }) });
    const serving = await servePty(sim, link);
    const gw = await openGateway(link);
    gw.port.write('S\r\n');
    await waitFor(() => gw.got().length >= 18, 5000, 'answer');
    expect(gw.got().toString('latin1')).toBe('S S     100.00 g\r\n');
    await serving.close();
    expect(existsSync(link)).toBe(false);
    expect(existsSync(`${link}.sim`)).toBe(false);
  });

  it('rejects, bounded, when socat cannot make the links', async () => {
    const t0 = Date.now();
    await expect(servePty(referenceBus(), join(dir, 'no-such-dir', 'tty'), { timeoutMs: 1000 })).rejects.toThrow();
    expect(Date.now() - t0).toBeLessThan(5000);
  });
});

describe('shelfgate sim (runSimCli in-process)', () => {
  /** Runs `shelfgate sim ARGS` in-process until stop() (or the test's cleanup); resolves once it serves. */
  async function serveSim(args: string[]): Promise<{ out: () => string; port: number; stop: () => Promise<number> }> {
    let out = '';
    const ac = new AbortController();
    let port = 0;
    const done = runSimCli(args, {
      stdout: { write: (s: string) => (out += s) },
      stderr: { write: () => true },
      signal: ac.signal,
      onServing: (s) => (port = Number(new URL(s.url).port)),
    });
    const stop = async (): Promise<number> => {
      ac.abort();
      return done;
    };
    cleanups.push(async () => {
      await stop();
    });
    await waitFor(() => port > 0, 5_000, 'serving');
    return { out: () => out, port, stop };
  }

  it('usage errors return 64', async () => {
    let err = '';
    const io = { stdout: { write: () => true }, stderr: { write: (s: string) => (err += s) } };
    expect(await runSimCli([], io)).toBe(64);
    expect(await runSimCli(['modbus-loadcell'], io)).toBe(64); // no --tcp/--pty/--port
    expect(await runSimCli(['modbus-loadcell', '--tcp', '127.0.0.1:0', '--pty', '/tmp/x'], io)).toBe(64);
    expect(await runSimCli(['scale', '--tcp', '127.0.0.1:0'], io)).toBe(64);
    expect(await runSimCli(['modbus-loadcell', '--tcp', 'nohost'], io)).toBe(64);
    expect(await runSimCli(['modbus-loadcell', '--tcp', '127.0.0.1:0', '--addresses', '0-300'], io)).toBe(64);
    expect(await runSimCli(['mt-sics', '--tcp', '127.0.0.1:0', '--model', 'generic-modbus-loadcell'], io)).toBe(64);
    expect(await runSimCli(['mt-sics', '--tcp', '127.0.0.1:0', '--bogus'], io)).toBe(64);
    expect(await runSimCli(['modbus-loadcell', '--tcp', '127.0.0.1:0', '--stream-interval-ms', '50'], io)).toBe(64);
    expect(await runSimCli(['mt-sics', '--tcp', '127.0.0.1:0', '--stream-interval-ms', '0'], io)).toBe(64);
    expect(err).toContain('usage: shelfgate sim');
  });

  it('serves a modbus bus on TCP until aborted, printing what it serves', async () => {
    const { out, port, stop } = await serveSim(['modbus-loadcell', '--tcp', '127.0.0.1:0', '--addresses', '1-16', '--items', '0', '--tare', '132', '--noise', '0', '--seed', '7']);
    expect(out()).toMatch(/^modbus-loadcell: 16 addresses on tcp:\/\/127\.0\.0\.1:\d+ \(model generic-modbus-loadcell/);
    const c = await Client.open(port);
    cleanups.push(() => void c.socket.destroy());
    // an empty 132 g tray: gross = 132, the reference frame
    expect(show(await c.ask(REQ_GROSS, 9))).toBe(RES_GROSS);
    expect(await stop()).toBe(0);
  });

  it('serves the continuous MT-SICS model: SIR streams weight lines at --stream-interval-ms, the next command ends it', async () => {
    const { out, port, stop } = await serveSim(['mt-sics', '--model', 'mettler-toledo-mt-sics-continuous', '--tcp', '127.0.0.1:0', '--items', '2', '--unit-weight', '250', '--noise', '0', '--stream-interval-ms', '20']);
    expect(out()).toMatch(/^mt-sics: scale on tcp:\/\/127\.0\.0\.1:\d+ \(model mettler-toledo-mt-sics-continuous/);
    const c = await Client.open(port);
    cleanups.push(() => void c.socket.destroy());
    c.socket.write('SIR\r\n');
    const line = 'S S     500.00 g\r\n';
    await waitFor(() => c.got.length >= 5 * line.length, 5_000, 'five streamed lines');
    expect(c.got.toString('latin1').startsWith(line.repeat(5))).toBe(true);
    c.socket.write('I4\r\n');
    await waitFor(() => c.got.toString('latin1').includes('I4 A'), 5_000, 'the I4 answer');
    const lines = c.got.toString('latin1').split('\r\n').slice(0, -1);
    expect(lines.at(-1)).toBe('I4 A "1234567"'); // the stream ended before the answer
    expect(lines.slice(0, -1).every((l) => l === 'S S     500.00 g')).toBe(true);
    expect(await stop()).toBe(0);
  });
});
