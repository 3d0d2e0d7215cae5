/**
 * OeplRadio against the real OEPL access point simulator, in-process, over real HTTP and WebSocket
 * on 127.0.0.1 (port 0), in fast mode (simulated time x1000: a 40 s check-in takes 40 ms). Every
 * wait is bounded and waits for the event that proves what the test needs.
 */
import { afterEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { WebSocketServer } from 'ws';
import { OeplApSimulator, type OeplApOptions } from '../../simulators/oepl-ap/simulator';
import { OeplRadio, type OeplRadioOptions } from '../../src/features/labels/oepl-radio';
import { RadioError, type RadioEvent } from '../../src/features/labels/radio';
import { silentLogger } from '../../src/log';
import { waitFor } from '../helpers/wait';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function startSim(o: Partial<OeplApOptions> = {}): Promise<OeplApSimulator> {
  const sim = new OeplApSimulator({ labels: 6, timeScale: 1000, ...o });
  await sim.start();
  cleanups.push(() => sim.stop());
  return sim;
}

interface Harness {
  radio: OeplRadio;
  events: RadioEvent[];
  /** Resolves with the first event (from index `from` on) that matches. */
  next<T extends RadioEvent['type']>(type: T, pred?: (e: Extract<RadioEvent, { type: T }>) => boolean, from?: number, timeoutMs?: number): Promise<Extract<RadioEvent, { type: T }>>;
}

async function startRadio(url: string, o: Partial<OeplRadioOptions> = {}): Promise<Harness> {
  const radio = new OeplRadio({
    id: 'ap1',
    url,
    log: silentLogger(),
    requestTimeoutMs: 3000,
    reconnect: { initialMs: 20, maxMs: 200 },
    pollIntervalMs: 100,
    pollAfterMs: 0,
    ...o,
  });
  const events: RadioEvent[] = [];
  radio.subscribe((e) => events.push(e));
  cleanups.push(() => radio.stop());
  await radio.start();
  const next: Harness['next'] = (type, pred, from = 0, timeoutMs = 10_000) =>
    waitFor(
      () => events.slice(from).find((e): e is Extract<RadioEvent, { type: typeof type }> => e.type === type && (pred === undefined || pred(e as never))),
      timeoutMs,
      `radio event ${type}`,
    );
  return { radio, events, next };
}

async function rejection(p: Promise<unknown>): Promise<RadioError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(RadioError);
    return e as RadioError;
  }
  throw new Error('expected a rejection');
}

const acksFor = (events: RadioEvent[], mac: string): RadioEvent[] => events.filter((e) => e.type === 'ack' && e.mac === mac);

describe('OeplRadio against the simulated access point', () => {
  it('reports every label heard and the AP online after connecting, and an ack after a send', async () => {
    const sim = await startSim();
    const h = await startRadio(sim.url);
    await h.next('status', (e) => e.online);
    for (const mac of sim.macs) await h.next('heard', (e) => e.mac === mac);
    const heard = h.events.find((e) => e.type === 'heard')!;
    expect(heard.type === 'heard' && heard.health.checkInMs).toBe(40_000);
    expect(h.radio.status()).toMatchObject({ id: 'ap1', online: true, lastError: null, labels: 6 });

    const mac = sim.macs[0]!;
    await h.radio.send(mac, '[{"text":[5,5,"2.49",1]}]');
    await h.next('ack', (e) => e.mac === mac);
    expect(sim.label(mac)!.updateCount).toBe(1);
    // One ack per send, whichever of the WebSocket line and the pushed record came first.
    await h.radio.send(sim.macs[1]!, '[{"text":[5,5,"1.99",1]}]');
    await h.next('ack', (e) => e.mac === sim.macs[1]);
    expect(acksFor(h.events, mac)).toHaveLength(1);
    expect(h.radio.stats.acksFromWs + h.radio.stats.acksFromReconcile).toBe(2);
    expect(h.radio.outstandingSends).toBe(0);

    await h.radio.flash(mac, 'AA0102030405060708090A0B');
    await waitFor(() => sim.label(mac)!.commands.length > 0, 5000, 'the LED command delivered');
  });

  it('closes the connection after every answer as the firmware does; with keep-alive reuses it, and sends an upload again on a fresh one when a kept-alive one is reset', async () => {
    // the firmware's web server answers with Connection: close
    const fw = await startSim();
    const answer = await new Promise<http.IncomingMessage>((resolve, reject) => http.get(`${fw.url}/get_db`, { agent: new http.Agent({ keepAlive: true }) }, resolve).on('error', reject));
    answer.resume();
    expect(answer.headers.connection).toBe('close');
    const plain = await startRadio(fw.url, { pollIntervalMs: 600_000 });
    await plain.next('status', (e) => e.online);
    let c0 = fw.stats.connections;
    for (const mac of fw.macs.slice(0, 3)) await plain.radio.send(mac, '[{"text":[5,5,"2.49",1]}]');
    expect(fw.stats.connections - c0).toBeGreaterThanOrEqual(3);

    const sim = await startSim({ keepAlive: true });
    const h = await startRadio(sim.url, { keepAlive: true, pollIntervalMs: 600_000 });
    await h.next('status', (e) => e.online);
    c0 = sim.stats.connections;
    for (const mac of sim.macs.slice(0, 4)) await h.radio.send(mac, '[{"text":[5,5,"2.49",1]}]');
    expect(sim.stats.connections - c0).toBeLessThanOrEqual(1);
    // the server resets the kept-alive connection as the next upload arrives: sent once more, stored, acknowledged
    sim.faults.resetReused = 1;
    const mac = sim.macs[4]!;
    await h.radio.send(mac, '[{"text":[5,5,"3.99",1]}]');
    expect(sim.faults.resetReused).toBe(0);
    expect(h.radio.stats.keepAliveRetries).toBe(1);
    expect(h.radio.stats.failures.SG_AP_UNREACHABLE).toBe(0);
    await h.next('ack', (e) => e.mac === mac);
    // a command that is not repeated fails instead (on a kept-alive connection: the reset one is gone)
    await h.radio.send(sim.macs[0]!, '[{"text":[5,5,"2.59",1]}]');
    sim.faults.resetReused = 1;
    const e = await rejection(h.radio.tagCommand(sim.macs[5]!, 'refresh'));
    expect(e.code).toBe('SG_AP_UNREACHABLE');
    expect(h.radio.stats.keepAliveRetries).toBe(1);
  });

  it('never takes 200 for an ack: a lost label gets no ack while another label is acknowledged', async () => {
    const sim = await startSim();
    const h = await startRadio(sim.url);
    await h.next('status', (e) => e.online);
    const [lostMac, okMac] = [sim.macs[2]!, sim.macs[3]!];
    sim.loseLabels([lostMac]);
    await h.radio.send(lostMac, '[{"text":[5,5,"9.99",1]}]');
    await h.radio.send(okMac, '[{"text":[5,5,"3.49",1]}]');
    await h.next('ack', (e) => e.mac === okMac);
    // Reconciliation has looked the lost label up several times since (polls run every 100 ms).
    const before = h.radio.stats.requests;
    await waitFor(() => h.radio.stats.requests >= before + 3, 10_000, 'three more polls of the lost label');
    expect(acksFor(h.events, lostMac)).toHaveLength(0);
    expect(h.radio.outstandingSends).toBe(1);
  });

  it('answers SG_AP_BUSY with retryAfterMs while the AP answers 409', async () => {
    const sim = await startSim();
    const h = await startRadio(sim.url);
    await h.next('status', (e) => e.online);
    sim.busyFor(3_600_000);
    const e = await rejection(h.radio.send(sim.macs[0]!, '[]x'));
    expect(e.code).toBe('SG_AP_BUSY');
    expect(e.retryAfterMs).toBeGreaterThan(0);
    expect(h.radio.stats.failures.SG_AP_BUSY).toBe(1);
    expect(h.radio.outstandingSends).toBe(0);
  });

  it('answers SG_AP_BAD_ANSWER to HTML and garbage, and works again once the AP answers properly', async () => {
    const sim = await startSim();
    const h = await startRadio(sim.url);
    await h.next('status', (e) => e.online);
    const mac = sim.macs[1]!;
    sim.faults.answer = 'html';
    const html = await rejection(h.radio.send(mac, '[{"text":[1,1,"a",1]}]'));
    expect(html.code).toBe('SG_AP_BAD_ANSWER');
    expect(html.message).toContain('<!DOCTYPE html>');
    expect(html.message.length).toBeLessThan(400);
    sim.faults.answer = 'garbage';
    expect((await rejection(h.radio.send(mac, '[{"text":[1,1,"b",1]}]'))).code).toBe('SG_AP_BAD_ANSWER');
    expect((await rejection(h.radio.flash(mac, '000000000000000000000000'))).code).toBe('SG_AP_BAD_ANSWER');
    sim.faults.answer = 'normal';
    await h.radio.send(mac, '[{"text":[1,1,"c",1]}]');
    await h.next('ack', (e) => e.mac === mac);
    expect(h.radio.stats.failures.SG_AP_BAD_ANSWER).toBeGreaterThanOrEqual(3);
  });

  it('refuses unknown labels and invalid requests with their codes', async () => {
    const sim = await startSim();
    const h = await startRadio(sim.url);
    await h.next('status', (e) => e.online);
    expect((await rejection(h.radio.send('0123456789ABCDEF', '[]'))).code).toBe('SG_AP_UNKNOWN_LABEL');
    expect((await rejection(h.radio.send('not-a-mac', '[]'))).code).toBe('SG_AP_REQUEST_INVALID');
    expect((await rejection(h.radio.flash(sim.macs[0]!, 'XYZ'))).code).toBe('SG_AP_REQUEST_INVALID');
    expect((await rejection(h.radio.flash('0123456789ABCDEF', 'AA0102030405060708090A0B'))).code).toBe('SG_AP_UNKNOWN_LABEL');
  });

  it('reports an AP that is down as offline and SG_AP_UNREACHABLE, and online with heard labels once it is back', async () => {
    const sim = await startSim();
    const h = await startRadio(sim.url);
    await h.next('status', (e) => e.online);
    await sim.goDown();
    const offline = await h.next('status', (e) => !e.online);
    expect(offline.type === 'status' && offline.error).toMatch(/ECONNREFUSED/);
    expect(h.radio.status().online).toBe(false);
    expect((await rejection(h.radio.send(sim.macs[0]!, '[1]'))).code).toBe('SG_AP_UNREACHABLE');
    const from = h.events.length;
    await sim.comeUp();
    await h.next('status', (e) => e.online, from);
    await h.next('heard', undefined, from);
    // It was unreachable: its queue may be gone.
    await h.next('lost', undefined, from);
    expect(h.radio.stats.reconnects).toBeGreaterThanOrEqual(1);
  });

  it('starts while the AP is down without failing, and comes online when it appears', async () => {
    const sim = await startSim();
    await sim.goDown();
    const h = await startRadio(sim.url);
    await h.next('status', (e) => !e.online);
    expect(h.radio.status()).toMatchObject({ online: false, labels: 0 });
    await sim.comeUp();
    await h.next('status', (e) => e.online);
    for (const mac of sim.macs) await h.next('heard', (e) => e.mac === mac);
  });

  it('learns acks through reconciliation when every WebSocket frame is lost', async () => {
    const sim = await startSim({ faults: { wsLoss: 1 } });
    const h = await startRadio(sim.url);
    await h.next('status', (e) => e.online);
    const macs = sim.macs.slice(0, 3);
    for (const [i, mac] of macs.entries()) await h.radio.send(mac, `[{"text":[5,5,"${i}.99",1]}]`);
    for (const mac of macs) await h.next('ack', (e) => e.mac === mac);
    expect(h.radio.stats.acksFromWs).toBe(0);
    expect(h.radio.stats.acksFromReconcile).toBe(3);
    expect(h.radio.stats.wsFrames).toBe(0);
    for (const mac of macs) expect(sim.label(mac)!.updateCount).toBe(1);
  });

  it('reports lost, and no ack, when the AP restarts with a transfer in flight', async () => {
    // Large content: a transfer takes 200 s of simulated time (200 ms), so the restart catches it.
    const sim = await startSim({ transferBytes: 1_000_000 });
    const h = await startRadio(sim.url);
    await h.next('status', (e) => e.online);
    const mac = sim.macs[0]!;
    await h.radio.send(mac, '[{"text":[5,5,"4.99",1]}]');
    expect(sim.queued).toBe(1);
    const from = h.events.length;
    await sim.restart({ downMs: 100_000, bootMs: 10_000 });
    const lost = await h.next('lost', undefined, from);
    expect(lost.type === 'lost' && lost.reason).toMatch(/unreachable/);
    expect(h.radio.outstandingSends).toBe(0);
    // The system moved past the restart: another label's content is acknowledged.
    const other = sim.macs[1]!;
    await waitFor(async () => h.radio.send(other, '[{"text":[5,5,"5.99",1]}]').then(() => true, () => false), 10_000, 'an upload accepted after the boot');
    await h.next('ack', (e) => e.mac === other, from, 15_000);
    expect(acksFor(h.events, mac)).toHaveLength(0);
    expect(sim.label(mac)!.updateCount).toBe(0);
  });

  it('reports lost with until, again while the AP boots, when it answers 409 after a WebSocket drop', async () => {
    const sim = await startSim();
    const h = await startRadio(sim.url, { busyRetryMs: 50 });
    await h.next('status', (e) => e.online);
    const from = h.events.length;
    // The WebSocket closes in order and the AP answers 409 when the radio comes back (booting);
    // a power cycle's reset is the other path (the restart test above).
    sim.busyFor(3_600_000);
    for (const c of sim['wss']!.clients) c.close();
    const first = await h.next('lost', undefined, from);
    expect(first.type === 'lost' && first.reason).toMatch(/409/);
    const firstUntil = first.type === 'lost' ? first.until! : 0;
    expect(firstUntil).toBeGreaterThan(Date.now() - 1000);
    const again = await h.next('lost', (e) => e !== first, from);
    expect(again.type === 'lost' && again.until).toBeGreaterThan(firstUntil);
    // Booted: uploads work again.
    sim.busyFor(0);
    await h.radio.send(sim.macs[0]!, '[{"text":[5,5,"8.99",1]}]');
    await h.next('ack', (e) => e.mac === sim.macs[0], from);
  });

  it('a short WebSocket drop with the AP answering at once reconciles without lost', async () => {
    const sim = await startSim({ faults: { wsLoss: 1 } });
    const h = await startRadio(sim.url, { pollIntervalMs: 3_600_000 });
    await h.next('status', (e) => e.online);
    const mac = sim.macs[4]!;
    await h.radio.send(mac, '[{"text":[5,5,"6.99",1]}]');
    await waitFor(() => sim.label(mac)!.updateCount === 1, 10_000, 'the transfer landed at the simulator');
    expect(acksFor(h.events, mac)).toHaveLength(0);
    // Drop every WebSocket client the simulator has; the AP itself keeps answering.
    const from = h.events.length;
    for (const c of sim['wss']!.clients) c.terminate();
    await h.next('ack', (e) => e.mac === mac, from);
    expect(h.radio.stats.acksFromReconcile).toBe(1);
    await waitFor(() => h.radio.stats.reconnects === 1 && h.radio.status().online, 5000, 'reconnected');
    expect(h.events.slice(from).filter((e) => e.type === 'lost' || (e.type === 'status' && !e.online))).toHaveLength(0);
  });
});

/** A tag record as the firmware prints it (typed by hand, not by our codec). */
const handRecord = (mac: string, lastseen: number): string =>
  `{"mac":"${mac}","hash":"00000000000000000000000000000000","lastseen":${lastseen},"nextupdate":0,"nextcheckin":${lastseen + 40},` +
  `"pending":0,"alias":"","contentMode":0,"LQI":180,"RSSI":-70,"temperature":20,"batteryMv":2950,"hwType":3,"updatecount":0,"updatelast":0}`;

/**
 * A hand-written AP: fixed get_db pages, 400 to the empty upload (running), and a WebSocket that
 * sends `frames` on connect. `sockets` holds each WebSocket's TCP socket, to break it.
 */
async function handAp(o: { pages: Record<string, string>; frames?: Array<string | Buffer>; autoPong?: boolean }): Promise<{ url: string; sockets: Socket[] }> {
  const wss = new WebSocketServer({ noServer: true, autoPong: o.autoPong ?? true });
  const sockets: Socket[] = [];
  const server = http.createServer((req, res) => {
    const page = o.pages[req.url ?? ''];
    if (req.method === 'GET' && page !== undefined) res.writeHead(200, { 'content-type': 'application/json' }).end(page);
    else if (req.method === 'POST' && req.url === '/jsonupload') res.writeHead(400, { 'content-type': 'text/plain' }).end('Missing parameters');
    else res.writeHead(404).end();
  });
  server.on('upgrade', (req, socket, head) => {
    sockets.push(socket as Socket);
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('error', () => undefined);
      for (const f of o.frames ?? []) ws.send(f, { binary: Buffer.isBuffer(f) });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  cleanups.push(() => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, sockets };
}

describe('OeplRadio against a hand-written AP', () => {
  it('walks every get_db page, counts bad records and unreadable frames, and never throws on them', async () => {
    const ap = await handAp({
      pages: {
        '/get_db': `{"tags":[${handRecord('0000A1B2C3D4E5F6', 1764700000)},{"mac":"XYZ","lastseen":"yesterday"}],"continu":2}`,
        '/get_db?pos=2': `{"tags":[${handRecord('7F00112233445566', 1764699990)}]}`,
      },
      frames: [
        '{"tags":[{"mac":',
        Buffer.from([0xde, 0xad]),
        '{"tags":[{"mac":"0000A1B2C3D4E5F6","pending":"many"}]}',
        '{"sys":{"currtime":1764700001,"heap":100000}}',
        '{"logMsg":"0000A1B2C3D4E5F6 reports xfer complete\\r\\n"}',
      ],
    });
    const h = await startRadio(ap.url);
    await h.next('status', (e) => e.online);
    await h.next('ack', (e) => e.mac === '0000A1B2C3D4E5F6');
    await waitFor(() => h.radio.stats.wsFrames === 5, 5000, 'five frames');
    expect(h.events.filter((e) => e.type === 'heard').map((e) => e.type === 'heard' && e.mac).sort()).toEqual(['0000A1B2C3D4E5F6', '7F00112233445566']);
    expect(h.radio.stats).toMatchObject({ invalidRecords: 2, wsUnparseable: 2, acksFromWs: 1, acksFromReconcile: 0 });
    expect(h.radio.status()).toMatchObject({ online: true, labels: 2, lastError: null });
  });

  it('takes a WebSocket reset by the AP as a restart (lost), even when the AP answers at once', async () => {
    const ap = await handAp({ pages: { '/get_db': `{"tags":[${handRecord('0000A1B2C3D4E5F6', 1764700000)}]}` } });
    const h = await startRadio(ap.url);
    await h.next('status', (e) => e.online);
    expect(h.events.filter((e) => e.type === 'lost')).toHaveLength(0);
    ap.sockets[0]!.resetAndDestroy();
    const lost = await h.next('lost');
    expect(lost.type === 'lost' && lost.reason).toMatch(/ECONNRESET/);
    await waitFor(() => h.radio.stats.reconnects === 1 && h.radio.status().online, 5000, 'reconnected');
  });

  it('drops a WebSocket that answers no ping and takes it as a restart', async () => {
    const ap = await handAp({ pages: { '/get_db': '{"tags":[]}' }, autoPong: false });
    const h = await startRadio(ap.url, { pingIntervalMs: 50 });
    await h.next('status', (e) => e.online);
    const lost = await h.next('lost');
    expect(lost.type === 'lost' && lost.reason).toMatch(/ping/);
    expect(h.radio.stats.reconnects).toBeGreaterThanOrEqual(1);
  });
});

describe('OeplRadio resources', () => {
  it('stop() closes the WebSocket and every connection', async () => {
    const sim = await startSim();
    const h = await startRadio(sim.url);
    await h.next('status', (e) => e.online);
    await h.radio.send(sim.macs[0]!, '[{"text":[5,5,"7.99",1]}]');
    expect(sim['wss']!.clients.size).toBe(1);
    await h.radio.stop();
    await waitFor(() => sim['sockets'].size === 0 && sim['wss']!.clients.size === 0, 5000, 'the simulator without connections');
    await h.radio.stop();
  });

  it('bounds requests in flight and waiting, and stop() rejects them and closes their sockets', async () => {
    // An AP that accepts connections and never answers.
    const conns = new Set<Socket>();
    const firstLine = new Map<Socket, string>();
    const server: Server = createServer((s) => {
      conns.add(s);
      s.once('data', (d) => firstLine.set(s, d.toString().split('\r\n')[0]!));
      s.on('error', () => undefined);
      s.once('close', () => conns.delete(s));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => {
      for (const c of conns) c.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    });
    const port = (server.address() as { port: number }).port;
    const h = await startRadio(`http://127.0.0.1:${port}`, { maxConcurrentRequests: 2, maxQueuedRequests: 1, requestTimeoutMs: 60_000 });
    const pending = [h.radio.send('0000AABBCCDDEEFF', '[1]'), h.radio.send('0000AABBCCDDEE00', '[2]'), h.radio.send('0000AABBCCDDEE01', '[3]')];
    for (const p of pending) p.catch(() => undefined);
    const busy = await rejection(h.radio.send('0000AABBCCDDEE02', '[4]'));
    expect(busy.code).toBe('SG_AP_BUSY');
    // WebSocket handshake plus two requests.
    await waitFor(() => conns.size === 3, 5000, 'three connections at the silent AP');
    await h.radio.stop();
    for (const p of pending) expect((await rejection(p)).code).toBe('SG_AP_UNREACHABLE');
    await waitFor(() => conns.size === 0, 5000, 'every connection closed').catch((e: Error) => {
      throw new Error(`${e.message}; still open: ${[...conns].map((c) => firstLine.get(c) ?? 'no request yet').join(', ')}`);
    });
  });
});
