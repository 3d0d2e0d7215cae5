/**
 * The OEPL access point simulator over real HTTP and WebSocket on 127.0.0.1 (port 0), read with the
 * driver codec (src/drivers/oepl.ts) as the gateway will read a real AP. Fast mode (time x1000)
 * where the test needs check-ins and transfers to happen; real time with a day-long check-in
 * interval where it needs them NOT to happen on their own (checkinNow() drives them).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { connect, createServer, type Server } from 'node:net';
import WebSocket from 'ws';
import {
  buildGetDb,
  buildGetDbForMac,
  buildJsonUpload,
  buildLedFlash,
  buildTagCmd,
  nextGetDbPos,
  OeplParseError,
  parseCommandResponse,
  parseGetDbPage,
  parseWsMessage,
  type OeplRequest,
  type OeplTag,
  type OeplWsEvent,
} from '../../src/drivers/oepl';
import { OeplApSimulator, type OeplApOptions } from '../../simulators/oepl-ap/simulator';
import { runOeplApCli } from '../../simulators/oepl-ap/cli';
import { runSimCli } from '../../simulators/cli';
import { waitFor } from '../helpers/wait';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function startSim(o: Partial<OeplApOptions> = {}): Promise<OeplApSimulator> {
  const sim = new OeplApSimulator({ labels: 10, timeScale: 1000, ...o });
  await sim.start();
  cleanups.push(() => sim.stop());
  return sim;
}

async function call(sim: OeplApSimulator, req: OeplRequest): Promise<{ status: number; body: string }> {
  const res = await fetch(sim.url + req.path, { method: req.method, headers: req.headers, ...(req.body !== undefined ? { body: req.body } : {}) });
  return { status: res.status, body: await res.text() };
}

async function tagOf(sim: OeplApSimulator, mac: string): Promise<OeplTag> {
  const page = parseGetDbPage((await call(sim, buildGetDbForMac(mac))).body);
  expect(page.tags).toHaveLength(1);
  return page.tags[0]!;
}

/** A WebSocket client that parses every frame with the codec and keeps the events. */
async function wsClient(sim: OeplApSimulator): Promise<{ events: OeplWsEvent[]; ws: WebSocket }> {
  const ws = new WebSocket(`${sim.url.replace(/^http/, 'ws')}/ws`);
  const events: OeplWsEvent[] = [];
  ws.on('message', (data) => events.push(parseWsMessage(data.toString())));
  ws.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  cleanups.push(() => ws.terminate());
  return { events, ws };
}

const acksFor = (events: OeplWsEvent[], mac: string): number => events.filter((e) => e.kind === 'ack' && e.mac === mac).length;
const tagPushFor = (events: OeplWsEvent[], mac: string, pred: (t: OeplTag) => boolean = () => true): boolean =>
  events.some((e) => e.kind === 'tags' && e.tags.some((t) => t.mac === mac && pred(t)));

const content = (price: string): string => JSON.stringify([{ text: [10, 10, `EUR ${price}`, 'fonts/bahnschrift30', 1] }]);

/** A simulator whose labels do not check in by themselves during a test (a day-long interval, real time). */
const STILL: Partial<OeplApOptions> = { timeScale: 1, checkinMs: 86_400_000 };

describe('OEPL AP simulator', () => {
  it('an upload is only stored (200 Ok, saved); the acknowledgement comes over /ws after a check-in and the transfer', async () => {
    const sim = await startSim({ labels: 6, rateBps: 5000 });
    const { events } = await wsClient(sim);
    const mac = sim.macs[2]!;
    const done = new Promise<[string, number, number]>((r) => sim.on('xfer-complete', (...a) => r(a)));
    const body = content('1.99');
    const res = await call(sim, buildJsonUpload({ mac, json: body }));
    expect(res.status).toBe(200);
    expect(parseCommandResponse(res.status, res.body)).toEqual({ kind: 'ok' });

    await waitFor(() => acksFor(events, mac) === 1, 20_000, `xfer complete for ${mac}`);
    const [ackedMac, bytes, virtualMs] = await done;
    expect(ackedMac).toBe(mac);
    expect(bytes).toBe(Buffer.byteLength(body));
    expect(virtualMs).toBeGreaterThanOrEqual((bytes * 1000) / 5000); // at least the radio time
    // The push after the ack carries the new hash and count; get_db agrees.
    await waitFor(() => tagPushFor(events, mac, (t) => t.updateCount === 1 && t.pending === 0), 20_000, 'tag push after the ack');
    const tag = await tagOf(sim, mac);
    expect(tag.updateCount).toBe(1);
    expect(tag.hash).not.toBe('0'.repeat(32));
    expect(tag.pending).toBe(0);
    // Only this label was acknowledged.
    expect(events.filter((e) => e.kind === 'ack')).toHaveLength(1);
  });

  it('content identical to what the label shows is not sent again: no acknowledgement follows it', async () => {
    const sim = await startSim({ labels: 4 });
    const { events } = await wsClient(sim);
    const mac = sim.macs[1]!;
    expect((await call(sim, buildJsonUpload({ mac, json: content('2.49') }))).status).toBe(200);
    await waitFor(() => acksFor(events, mac) === 1, 20_000, 'first ack');
    const shown = (await tagOf(sim, mac)).hash;

    const again = await call(sim, buildJsonUpload({ mac, json: content('2.49') }));
    expect(parseCommandResponse(again.status, again.body)).toEqual({ kind: 'ok' });
    expect(sim.stats.identical).toBe(1);
    expect((await tagOf(sim, mac)).pending).toBe(0);
    // A different content afterwards is acknowledged; had the identical one been sent, its ack would have come first.
    expect((await call(sim, buildJsonUpload({ mac, json: content('2.29') }))).status).toBe(200);
    await waitFor(() => sim.label(mac)!.updateCount === 2, 20_000, 'second transfer');
    await waitFor(() => acksFor(events, mac) === 2, 20_000, 'second ack');
    const tag = await tagOf(sim, mac);
    expect(tag.updateCount).toBe(2);
    expect(tag.hash).not.toBe(shown);
    expect(sim.stats.transfers).toBe(2);
  });

  it('get_db pages at about 5,000 bytes with continu; walking it with the codec finds every label once', async () => {
    const sim = await startSim({ labels: 120, ...STILL });
    const seen: string[] = [];
    let pos = 0;
    let pages = 0;
    for (;;) {
      const { status, body } = await call(sim, buildGetDb(pos));
      expect(status).toBe(200);
      const page = parseGetDbPage(body);
      expect(page.invalid).toEqual([]);
      pages++;
      const next = nextGetDbPos(pos, page);
      if (next !== null) {
        expect(body.length).toBeGreaterThan(5000);
        // the record that passed the limit ends the page: without it the page was within it
        expect(body.length - JSON.stringify(JSON.parse(body).tags.at(-1)).length).toBeLessThanOrEqual(5000 + 20);
      }
      seen.push(...page.tags.map((t) => t.mac));
      if (next === null) break;
      pos = next;
      expect(pages).toBeLessThan(100);
    }
    expect(pages).toBeGreaterThan(2);
    expect(seen).toEqual(sim.macs);
    expect(new Set(seen).size).toBe(120);
    // MACs as the AP writes them: 16 uppercase hex, and half of them a 6-byte MAC behind 0000
    expect(seen.every((m) => /^[0-9A-F]{16}$/.test(m))).toBe(true);
    expect(seen.filter((m) => m.startsWith('0000')).length).toBeGreaterThanOrEqual(60);
    // ?mac= with the 12-digit form finds the same label
    const short = seen.find((m) => m.startsWith('0000'))!;
    expect((await tagOf(sim, short.slice(4))).mac).toBe(short);
    // an unknown MAC: an empty page; a malformed one: the AP's error
    expect(parseGetDbPage((await call(sim, buildGetDbForMac('FFFFFFFFFFFFFFFF'))).body).tags).toEqual([]);
    const bad = await fetch(`${sim.url}/get_db?mac=xyz`);
    try {
      parseGetDbPage(await bad.text());
      throw new Error('accepted');
    } catch (e) {
      expect((e as OeplParseError).reason).toBe('ap-error');
    }
  });

  it('answers 409 to uploads while booting, then accepts them; get_db and /ws carry on meanwhile', async () => {
    const sim = await startSim({ labels: 4 });
    const { events } = await wsClient(sim);
    const mac = sim.macs[0]!;
    sim.busyFor(2000 * 1000); // 2 s of real time at x1000
    const refused = await call(sim, buildJsonUpload({ mac, json: content('0.99') }));
    expect(refused.status).toBe(409);
    expect(parseCommandResponse(refused.status, refused.body)).toEqual({ kind: 'busy' });
    // other requests and the WebSocket carry on
    expect(parseGetDbPage((await call(sim, buildGetDb())).body).tags).toHaveLength(4);
    const before = events.length;
    await waitFor(() => events.length > before, 20_000, 'tag pushes during the 409 window');
    // the window ends by itself
    const ok = await waitFor(async () => {
      const r = await call(sim, buildJsonUpload({ mac, json: content('0.99') }));
      return r.status === 200 ? r : null;
    }, 20_000, 'upload accepted after boot', 100);
    expect(ok.body).toBe('Ok, saved');
    expect(sim.stats.refused409).toBeGreaterThanOrEqual(1);
    await waitFor(() => acksFor(events, mac) === 1, 20_000, 'ack after the 409 window');
  });

  it('a lost label never acknowledges: its content times out ("xfer timeout") while other labels are acknowledged', async () => {
    const sim = await startSim({ labels: 6, xferTimeoutMs: 60_000 });
    const { events } = await wsClient(sim);
    const [lost] = sim.loseLabels([sim.macs[3]!]);
    const lostAt = Math.floor(sim.now() / 1000);
    const good = sim.macs[4]!;
    expect((await call(sim, buildJsonUpload({ mac: lost!, json: content('5.00') }))).status).toBe(200); // stored, nothing more
    expect((await call(sim, buildJsonUpload({ mac: good, json: content('5.00') }))).status).toBe(200);
    await waitFor(() => acksFor(events, good) === 1, 20_000, 'ack of the good label');
    await waitFor(() => events.some((e) => e.kind === 'timeout' && e.mac === lost), 20_000, 'xfer timeout of the lost label');
    expect(acksFor(events, lost!)).toBe(0);
    const tag = await tagOf(sim, lost!);
    expect(tag.pending).toBe(0); // the AP dropped it: pending 0 is not delivery
    expect(tag.updateCount).toBe(0);
    expect(tag.lastSeen).toBeLessThanOrEqual(lostAt); // never heard again
  });

  it('a restart loses the queue (the AP keeps it in memory); while down, connections are refused', async () => {
    const sim = await startSim({ labels: 4, ...STILL });
    const mac = sim.macs[1]!;
    const other = sim.macs[2]!;
    expect((await call(sim, buildJsonUpload({ mac, json: content('3.10') }))).status).toBe(200);
    expect((await tagOf(sim, mac)).pending).toBe(1);

    await sim.restart({ downMs: 3_600_000 });
    const refused = await new Promise<string>((resolve) => {
      const c = connect(sim.port, '127.0.0.1');
      c.once('connect', () => {
        c.destroy();
        resolve('connected');
      });
      c.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    });
    expect(refused).toBe('ECONNREFUSED');
    await sim.comeUp();

    const { events } = await wsClient(sim);
    const tag = await tagOf(sim, mac);
    expect(tag.pending).toBe(0);
    expect(tag.updateCount).toBe(0);
    sim.checkinNow(mac);
    sim.checkinNow(other);
    await waitFor(() => tagPushFor(events, other), 20_000, 'check-ins after the restart');
    expect(tagPushFor(events, mac)).toBe(true);
    expect(acksFor(events, mac)).toBe(0); // the queued content was lost
    // sent again, it is delivered
    expect((await call(sim, buildJsonUpload({ mac, json: content('3.10') }))).status).toBe(200);
    sim.checkinNow(mac);
    await waitFor(() => acksFor(events, mac) === 1, 20_000, 'ack of the content sent again');
  });

  it('lost WebSocket messages: the ack may never arrive, get_db tells the truth', async () => {
    const sim = await startSim({ labels: 4, faults: { wsLoss: 1 } });
    const { events } = await wsClient(sim);
    const mac = sim.macs[0]!;
    const done = new Promise<void>((r) => sim.once('xfer-complete', () => r()));
    expect((await call(sim, buildJsonUpload({ mac, json: content('7.77') }))).status).toBe(200);
    await done;
    expect(events).toEqual([]);
    expect(sim.stats.wsLost).toBeGreaterThan(0);
    expect((await tagOf(sim, mac)).updateCount).toBe(1);
  });

  it('HTML or garbage answers are clear parse errors for the codec; the AP answers normally afterwards', async () => {
    const sim = await startSim({ labels: 3, ...STILL });
    sim.faults.answer = 'html';
    let r = await call(sim, buildGetDb());
    expect(() => parseGetDbPage(r.body)).toThrow(expect.objectContaining({ reason: 'html' }));
    r = await call(sim, buildJsonUpload({ mac: sim.macs[0]!, json: '[]' }));
    expect(parseCommandResponse(r.status, r.body).kind).toBe('unexpected');
    sim.faults.answer = 'garbage';
    r = await call(sim, buildGetDb());
    expect(() => parseGetDbPage(r.body)).toThrow(OeplParseError);
    sim.faults.answer = 'normal';
    expect(parseGetDbPage((await call(sim, buildGetDb())).body).tags).toHaveLength(3);
  });

  it('tag_cmd and led_flash: accepted for a known label, refused for an unknown one or a bad pattern; delivered at the next check-in', async () => {
    const sim = await startSim({ labels: 3, ...STILL });
    const mac = sim.macs[0]!;
    let r = await call(sim, buildLedFlash(mac, '0103E4030A0A0A0000000000'));
    expect(parseCommandResponse(r.status, r.body)).toEqual({ kind: 'ok' });
    r = await call(sim, buildTagCmd(mac, 'ledflash_stop'));
    expect(parseCommandResponse(r.status, r.body)).toEqual({ kind: 'ok' });
    expect((await tagOf(sim, mac)).pending).toBe(2);
    r = await call(sim, buildTagCmd('FFFFFFFFFFFFFFFF', 'refresh'));
    expect(parseCommandResponse(r.status, r.body)).toEqual({ kind: 'unknown-mac' });
    const bad = await fetch(`${sim.url}/led_flash?mac=${mac}&pattern=zz`);
    expect(bad.status).toBe(400);
    const { events } = await wsClient(sim);
    sim.checkinNow(mac);
    await waitFor(() => tagPushFor(events, mac, (t) => t.pending === 0), 20_000, 'commands delivered');
    expect(sim.label(mac)!.commands.map((c) => c.cmd)).toEqual(['led_flash:0103E4030A0A0A0000000000', 'ledflash_stop']);
  });
});

describe('shelfgate sim oepl-ap (in process)', () => {
  it('prints the bound URL first, serves, and exits 0 when stopped', async () => {
    let out = '';
    const ac = new AbortController();
    const run = runSimCli(['oepl-ap', '--listen', '127.0.0.1:0', '--labels', '5', '--fast', '--quiet'], {
      stdout: { write: (s: string) => (out += s) },
      signal: ac.signal,
    });
    await waitFor(() => out.includes('\n'), 20_000, 'first line');
    const m = /^oepl-ap: 5 labels on (http:\/\/127\.0\.0\.1:\d+) /.exec(out);
    expect(m).not.toBeNull();
    const page = parseGetDbPage(await (await fetch(`${m![1]}/get_db`)).text());
    expect(page.tags).toHaveLength(5);
    ac.abort();
    expect(await run).toBe(0);
    await expect(fetch(`${m![1]}/get_db`)).rejects.toThrow(); // closed on stop
  });

  it('exits 64 on bad usage', async () => {
    let err = '';
    const io = { stderr: { write: (s: string) => (err += s) }, stdout: { write: () => undefined } };
    expect(await runOeplApCli(['--listen', '127.0.0.1:0'], io)).toBe(64);
    expect(err).toContain('--labels N is required');
    expect(await runOeplApCli(['--listen', 'nope', '--labels', '3'], io)).toBe(64);
    expect(await runOeplApCli(['--listen', '127.0.0.1:0', '--labels', '0'], io)).toBe(64);
    expect(await runOeplApCli(['--listen', '127.0.0.1:0', '--labels', '3', '--ws-loss', '2'], io)).toBe(64);
    expect(await runOeplApCli(['--listen', '127.0.0.1:0', '--labels', '3', '--answer', 'teapot'], io)).toBe(64);
    expect(await runOeplApCli(['--listen', '127.0.0.1:0', '--labels', '3', '--bogus'], io)).toBe(64);
  });

  it('exits 69 when it cannot listen, and the holder of the port carries on', async () => {
    const holder: Server = createServer((s) => s.end('still here'));
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => new Promise<void>((r) => holder.close(() => r())));
    const port = (holder.address() as { port: number }).port;
    let err = '';
    expect(await runOeplApCli(['--listen', `127.0.0.1:${port}`, '--labels', '3'], { stderr: { write: (s: string) => (err += s) } })).toBe(69);
    expect(err).toContain('EADDRINUSE');
    const got = await new Promise<string>((resolve, reject) => {
      const c = connect(port, '127.0.0.1');
      let d = '';
      c.on('data', (b: Buffer) => (d += b.toString()));
      c.on('end', () => resolve(d));
      c.on('error', reject);
    });
    expect(got).toBe('still here');
  });
});

describe('OEPL AP simulator labels', () => {
  it('MACs and radio values come from the seed', async () => {
    const a = await startSim({ labels: 8, seed: 7, ...STILL });
    const b = await startSim({ labels: 8, seed: 7, ...STILL });
    const c = await startSim({ labels: 8, seed: 8, ...STILL });
    expect(b.macs).toEqual(a.macs);
    expect(c.macs).not.toEqual(a.macs);
    expect(b.macs.map((m) => b.label(m)!.rssi)).toEqual(a.macs.map((m) => a.label(m)!.rssi));
  });
});
