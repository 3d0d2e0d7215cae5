/**
 * Serial-over-TCP (ser2net raw mode) transport against a real net.Server on 127.0.0.1, port 0.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, isShelfgateError } from '../../src/errors';
import { silentLogger } from '../../src/log';
import { openerFor } from '../../src/transport/opener';
import { ReconnectingLink } from '../../src/transport/reconnecting';
import { tcpOpener } from '../../src/transport/tcp';
import { waitFor, waitForEvent } from '../helpers/wait';

let server: Server | undefined;
let link: ReconnectingLink | undefined;
const sockets: Socket[] = [];
const fillers: Socket[] = [];
const children: ChildProcess[] = [];
const SILENT_HOST =
  "const s=require('net').createServer().listen({port:0,host:'127.0.0.1',backlog:1},()=>{process.stdout.write(s.address().port+'\\n');Atomics.wait(new Int32Array(new SharedArrayBuffer(4)),0,0,20000)})";

/** A "gateway" that records what it receives; listens on 127.0.0.1 (`port` 0 = any free port). */
async function listen(port = 0): Promise<{ port: number; received: () => string }> {
  let got = '';
  const s = createServer((sock) => {
    sockets.push(sock);
    sock.on('data', (c) => (got += c.toString('latin1')));
    sock.on('error', () => undefined);
  });
  await new Promise<void>((res, rej) => {
    s.once('error', rej);
    s.listen(port, '127.0.0.1', () => res());
  });
  server = s;
  return { port: (s.address() as AddressInfo).port, received: () => got };
}

async function closeServer(): Promise<void> {
  const s = server;
  server = undefined;
  for (const sock of sockets.splice(0)) sock.destroy();
  if (s) await new Promise<void>((r) => s.close(() => r()));
}

afterEach(async () => {
  await link?.stop();
  link = undefined;
  await closeServer();
  for (const f of fillers.splice(0)) f.destroy();
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

function reconnecting(port: number, initialMs = 20): ReconnectingLink {
  link = new ReconnectingLink({
    name: 'tcp',
    opener: openerFor(`tcp://127.0.0.1:${port}`, { baudRate: 9600, dataBits: 8, parity: 'none', stopBits: 1 }),
    backoff: { initialMs, maxMs: 200 },
    log: silentLogger(),
  });
  return link;
}

describe('tcp transport', () => {
  it('carries bytes; a server-side drop -> offline -> reconnects -> online', async () => {
    const srv = await listen();
    const rl = reconnecting(srv.port);
    const events: string[] = [];
    rl.on('online', () => events.push('online'));
    rl.on('offline', () => events.push('offline'));
    let got = '';
    rl.on('data', (c) => (got += c.toString('latin1')));

    await rl.start();
    await waitFor(() => rl.online && sockets.length === 1, 5000, 'online');
    await rl.write(Buffer.from('ping'));
    await waitFor(() => srv.received() === 'ping', 5000, 'server got ping');
    sockets[0]!.write('pong');
    await waitFor(() => got === 'pong', 5000, 'gateway got pong');

    const offline = waitForEvent(rl, 'offline'); // an event: the link is back within ~20 ms, too soon to poll for
    sockets[0]!.destroy();
    await offline;
    await expect(rl.write(Buffer.from('x'))).rejects.toSatisfy((e) => isShelfgateError(e, ErrorCode.TRANSPORT_CLOSED));
    await waitFor(() => rl.online && sockets.length === 2, 5000, 'online again');
    sockets[1]!.write('again');
    await waitFor(() => got === 'pongagain', 5000, 'gateway got again');
    expect(events).toEqual(['online', 'offline', 'online']);
    expect(rl.stats).toMatchObject({ opens: 2, disconnects: 1, bytesIn: 9, bytesOut: 4 });
  });

  it('send() writes without a promise; each received chunk is the caller\'s to keep', async () => {
    const srv = await listen();
    const rl = reconnecting(srv.port);
    const chunks: Buffer[] = [];
    rl.on('data', (c) => chunks.push(c));
    await rl.start();
    await waitFor(() => rl.online && sockets.length === 1, 10_000, 'online');
    const errors: Error[] = [];
    rl.send(Buffer.from('SI\r\n'), (e) => errors.push(e));
    await waitFor(() => srv.received() === 'SI\r\n', 10_000, 'server got SI');
    // two answers in two reads: the first chunk must not change when the second arrives
    sockets[0]!.write('S S 1.00 g\r\n');
    await waitFor(() => chunks.length === 1, 10_000, 'first answer');
    sockets[0]!.write('S S 2.00 g\r\n');
    await waitFor(() => chunks.length === 2, 10_000, 'second answer');
    expect(chunks.map((c) => c.toString('latin1'))).toEqual(['S S 1.00 g\r\n', 'S S 2.00 g\r\n']);
    expect(errors).toEqual([]);
    expect(rl.stats).toMatchObject({ bytesOut: 4, bytesIn: 24 });
    // offline: the error comes through the callback, not a throw
    // (wait for the event, not by polling: the link may reconnect within one polling interval)
    const offline = waitForEvent(rl, 'offline', 10_000);
    sockets[0]!.destroy();
    await offline;
    rl.send(Buffer.from('SI\r\n'), (e) => errors.push(e));
    expect(errors.map((e) => isShelfgateError(e, ErrorCode.TRANSPORT_CLOSED))).toEqual([true]);
  });

  it('writes issued in one turn keep their order, whether sent or written', async () => {
    const srv = await listen();
    const rl = reconnecting(srv.port);
    await rl.start();
    await waitFor(() => rl.online && sockets.length === 1, 10_000, 'online');
    const errors: Error[] = [];
    rl.send(Buffer.from('1'), (e) => errors.push(e));
    const two = rl.write(Buffer.from('2'));
    rl.send(Buffer.from('3'), (e) => errors.push(e));
    await two;
    await waitFor(() => srv.received().length === 3, 10_000, 'all three');
    expect(srv.received()).toBe('123');
    expect(errors).toEqual([]);
  });

  it('server not listening: retries with backoff, then connects when it appears', async () => {
    const { port } = await listen(); // learn a free port, then stop listening on it
    await closeServer();
    const rl = reconnecting(port, 50);
    const offline: string[] = [];
    rl.on('offline', (r) => offline.push(r));
    const t0 = Date.now();
    await rl.start();
    // at least 2 attempts in 400 ms: it keeps retrying
    await waitFor(() => rl.stats.openFailures >= 2, 5000, 'two refused connects');
    expect(Date.now() - t0).toBeLessThan(400);
    // at most 8 in 400 ms, not hundreds: 50, 100, 200, 200 ±20 % puts even the 5th at 40 + 80 + 160 + 160 = 440 ms or later
    await waitFor(() => rl.stats.openFailures >= 5, 10_000, 'five refused connects');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(400);
    expect(offline.length).toBe(1);
    expect(offline[0]).toMatch(/ECONNREFUSED/);

    await listen(port);
    await waitFor(() => rl.online, 5000, 'online');
  });

  it('connect timeout: a host that never answers the handshake rejects with TRANSPORT_OPEN_FAILED', async () => {
    // A "silent host" on 127.0.0.1: a child process listens with backlog 1 and then blocks, never
    // calling accept(); once its accept queue is full Linux drops further SYNs, so a connect hangs.
    const child = spawn(process.execPath, ['-e', SILENT_HOST], { stdio: ['ignore', 'pipe', 'ignore'] });
    children.push(child);
    const port = await new Promise<number>((res, rej) => {
      child.stdout!.once('data', (d: Buffer) => res(Number(d.toString().trim())));
      child.once('exit', () => rej(new Error('silent host exited')));
    });
    for (let i = 0; i < 8; i++) {
      const c = connect(port, '127.0.0.1');
      c.on('error', () => undefined);
      fillers.push(c);
      const connected = await new Promise<boolean>((res) => {
        // No SYN-ACK in 300 ms: the queue is full (the opener's own timeout below is the outcome).
        const t = setTimeout(() => res(false), 300);
        c.once('connect', () => (clearTimeout(t), res(true)));
      });
      if (!connected) break; // the queue is full: the next SYN goes unanswered too
    }
    const t = Date.now();
    const err = await tcpOpener('127.0.0.1', port, { connectTimeoutMs: 200 })().then(
      () => new Error('connected unexpectedly'),
      (e: unknown) => e,
    );
    expect(isShelfgateError(err, ErrorCode.TRANSPORT_OPEN_FAILED)).toBe(true);
    expect((err as Error).message).toMatch(/timed out after 200 ms/);
    expect(Date.now() - t).toBeGreaterThanOrEqual(190);
    expect(Date.now() - t).toBeLessThan(1500);
  });

  it('openerFor rejects unknown paths', () => {
    const s = { baudRate: 9600, dataBits: 8, parity: 'none', stopBits: 1 } as const;
    for (const p of ['ttyUSB0', 'tcp://host', 'tcp://host:0', 'tcp://host:70000', 'mock://', 'udp://x:1'])
      expect(() => openerFor(p, s), p).toThrow(expect.objectContaining({ code: ErrorCode.TRANSPORT_PATH_INVALID }));
    expect(typeof openerFor('tcp://[::1]:4001', s)).toBe('function');
    expect(typeof openerFor('/dev/serial/by-id/usb-x', s)).toBe('function');
    expect(typeof openerFor('mock://scale', s)).toBe('function');
  });
});
