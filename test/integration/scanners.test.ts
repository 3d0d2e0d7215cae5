/**
 * The scanners feature's parts (createScanner: link + source; ScannersService) against real
 * transports and a real in-process bus: the scanner simulator over a socat pseudo-terminal and
 * over TCP (through `shelfgate sim scanner`'s CLI function), and a keyboard-wedge scanner played
 * into a FIFO standing in for `/dev/input/...-event-kbd` (recorded input_event records as literal
 * hex). Proves: a valid read becomes `barcodeScanned` (with the kiosk id) and a message on
 * `scanners/<id>/read` that a kiosk user may read; a misread is counted by reason and neither
 * emitted nor published; an HID device that goes away is offline and comes back.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { LocalBus } from '../../src/bus/broker';
import { EventBus } from '../../src/core/events';
import type { DeviceAvailability } from '../../src/core/sources/types';
import { scannersSchema, type ScannerConfig } from '../../src/features/scanners/config';
import type { BarcodeScanned } from '../../src/features/scanners/events';
import { ScannersService } from '../../src/features/scanners/service';
import { createScanner } from '../../src/features/scanners/sources';
import { silentLogger } from '../../src/log';
import { runScannerCli } from '../../simulators/scanner-cli';
import { ScannerSimulator, serveDemoScanner } from '../../simulators/scanner-sim';
import { servePty, type Serving } from '../../simulators/serve';
import { fastHash, localMqttConfig, startLocalBus, usersWithHash } from '../helpers/bus';
import { connectClient } from '../helpers/daemon';
import { waitFor } from '../helpers/wait';

const STORE = 'sc';
const PW = 'pw-scan';
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function rig(configs: unknown[]) {
  const hash = await fastHash(PW);
  const bus: LocalBus = await startLocalBus(localMqttConfig(usersWithHash(hash, { kiosk: 'kiosk' })), STORE, { features: true });
  cleanups.push(() => bus.stop());
  const events = new EventBus(silentLogger());
  const scanned: BarcodeScanned[] = [];
  const owner = {};
  events.on(owner, 'barcodeScanned', (e) => void scanned.push(e));
  cleanups.push(() => events.removeOwner(owner));
  const parsed = scannersSchema.parse(configs) as ScannerConfig[];
  const built = parsed.map((c) => ({ config: c, ...createScanner(c, silentLogger()) }));
  const service = new ScannersService({ storeId: STORE, scanners: built, events, bus, log: silentLogger() });
  const avail: DeviceAvailability[] = [];
  for (const b of built) b.source.on('availability', (a) => avail.push(a));
  // the gateway's order: services, then links, then sources
  await service.start();
  for (const b of built) await b.link.start();
  for (const b of built) await b.source.start();
  cleanups.push(async () => {
    for (const b of built) await b.source.stop();
    for (const b of built) await b.link.stop();
    await service.stop();
  });
  // a kiosk reads the scanners' area
  const kiosk = await connectClient(bus.address().port, 'kiosk', PW);
  cleanups.push(async () => void (await kiosk.client.endAsync()));
  const granted = await kiosk.client.subscribeAsync(`shelfgate/v1/${STORE}/scanners/#`, { qos: 1 });
  expect(granted[0]!.qos).toBe(1);
  const onBus = () => kiosk.messages.filter((m) => m.topic.includes('/scanners/')).map((m) => ({ topic: m.topic, body: JSON.parse(m.payload) as Record<string, unknown> }));
  return { bus, events, scanned, service, built, avail, onBus };
}

describe('scanners over real transports', () => {
  it('serial over a pty (CR LF, AIM ids): valid reads are emitted and published, a bad check digit is counted and goes nowhere', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sg-scan-pty-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const sim = new ScannerSimulator({ codes: ['4006381333931'], terminator: 'crlf', aim: true });
    const pty: Serving = await servePty(sim, join(dir, 'ttyScan'));
    cleanups.push(() => pty.close());
    const r = await rig([{ id: 'till1', kind: 'serial', port: pty.url, terminator: 'crlf', aim_prefix: true, kiosk: 'k1', reconnect: { initial_ms: 50, max_ms: 300 } }]);
    await waitFor(() => r.avail.some((a) => a.online), 10_000, 'scanner online');

    sim.scan('4006381333931');
    sim.scan('4006381333932'); // wrong check digit
    sim.scan('96385074');
    await waitFor(() => r.scanned.length === 2, 10_000, 'two valid reads');
    // the misread came between them on one line, so it has been decoded by now
    const list = r.service.list()[0]!;
    expect(list).toMatchObject({ scanner_id: 'till1', kind: 'serial', kiosk_id: 'k1', online: true, reads: 2, misreads: 1, misreads_by_reason: { bad_check: 1 } });
    expect(r.scanned.map((e) => [e.scannerId, e.kioskId, e.symbology, e.raw, e.gtin])).toEqual([
      ['till1', 'k1', ']E0', '4006381333931', '04006381333931'],
      ['till1', 'k1', ']E4', '96385074', '00000096385074'],
    ]);
    await waitFor(() => r.onBus().length === 2, 10_000, 'two reads on the bus');
    expect(r.onBus().map((m) => m.topic)).toEqual([`shelfgate/v1/${STORE}/scanners/till1/read`, `shelfgate/v1/${STORE}/scanners/till1/read`]);
    expect(r.onBus()[0]!.body).toMatchObject({ scanner_id: 'till1', kiosk_id: 'k1', gtin: '04006381333931', symbology: ']E0' });
    expect(r.service.metrics()).toMatchObject({ scanners_reads_total: 2, scanners_misreads_total: 1, scanners_misreads_bad_check_total: 1, scanners_online: 1 });

    // garbage with control bytes: one rejected line, and the next scan still reads
    sim.injectGarbage(Buffer.from([0x01, 0x99, 0x00, 0x34, 0x0d, 0x0a]));
    sim.scan('036000291452');
    await waitFor(() => r.scanned.length === 3, 10_000, 'a read after the garbage');
    expect(r.scanned[2]!.gtin).toBe('00036000291452');
    expect(r.service.list()[0]!.misreads_by_reason).toEqual({ bad_check: 1, control: 1 });
  });

  it('serial over TCP from `shelfgate sim scanner` (ETX, GS1 element strings with {GS}, cycled list): batch, expiry and serial; misreads are not emitted', async () => {
    const ac = new AbortController();
    let url = '';
    let out = '';
    const done = runScannerCli(
      ['--tcp', '127.0.0.1:0', '--code', '010950110153000317251231' + '10AB-123{GS}21XYZ', '--code', '0109501101530004', '--code', '(01)95012345678903(3103)000123', '--interval', '50', '--terminator', 'etx'],
      { stdout: { write: (s: string) => (out += s) }, stderr: { write: () => undefined }, signal: ac.signal, onServing: (s) => (url = s.url) },
    );
    cleanups.push(async () => {
      ac.abort();
      expect(await done).toBe(0);
    });
    await waitFor(() => url !== '', 10_000, 'the simulator serving');
    const r = await rig([{ id: 'pc1', kind: 'serial', port: url, terminator: 'etx', kiosk: 'k2', reconnect: { initial_ms: 50, max_ms: 300 } }]);
    // the list cycles: per round two valid codes and one with a wrong check digit (scans before the connection are lost, as on a real line)
    await waitFor(() => r.scanned.length >= 4 && (r.service.list()[0]!.misreads as number) >= 2, 15_000, 'valid reads and misreads');
    const gs1 = r.scanned.find((e) => e.gtin === '09501101530003');
    expect(gs1).toMatchObject({ scannerId: 'pc1', kioskId: 'k2', expiry: '251231', batch: 'AB-123', serial: 'XYZ', symbology: null, raw: '010950110153000317251231' + '10AB-123\x1d21XYZ' });
    expect(r.scanned.find((e) => e.gtin === '95012345678903')).toMatchObject({ raw: '(01)95012345678903(3103)000123' });
    expect(new Set(r.scanned.map((e) => e.gtin))).toEqual(new Set(['09501101530003', '95012345678903']));
    expect(r.service.list()[0]!.misreads_by_reason).toEqual({ bad_check: expect.any(Number) });
    await waitFor(() => r.onBus().length >= 4, 10_000, 'reads on the bus');
    expect(new Set(r.onBus().map((m) => m.body.gtin))).toEqual(new Set(['09501101530003', '95012345678903']));
    expect(out).toMatch(/^scanner: 3 code\(s\) every 50 ms on tcp:\/\/127\.0\.0\.1:\d+ \(terminator etx\)$/m);
    expect(out).toMatch(/^scan 0109501101530004$/m);
  });

  it('serveDemoScanner (the demo helper) scans its codes now and then over TCP', async () => {
    const demo = await serveDemoScanner({ codes: ['4006381333931', '96385074'], intervalMs: 30 });
    cleanups.push(() => demo.close());
    expect(demo.url).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
    const r = await rig([{ id: 'demo', kind: 'serial', port: demo.url, kiosk: 'k9', reconnect: { initial_ms: 50, max_ms: 300 } }]);
    await waitFor(() => r.scanned.length >= 2, 10_000, 'demo reads');
    expect(new Set(r.scanned.map((e) => e.gtin))).toEqual(new Set(['04006381333931', '00000096385074']));
    expect(r.scanned[0]!.kioskId).toBe('k9');
  });

  it('a keyboard-wedge scanner (recorded 24-byte input events through a FIFO): reads, a misread counted, offline when the device goes, back when it returns', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sg-scan-hid-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const fifo = join(dir, 'usb-Scanner-event-kbd');
    execFileSync('mkfifo', [fifo]);
    // O_RDWR on a FIFO never blocks and keeps a writer present (Linux)
    let w = openSync(fifo, 'r+');
    cleanups.push(() => {
      try {
        closeSync(w);
      } catch {
        /* closed already */
      }
    });
    const r = await rig([{ id: 'hid1', kind: 'hid', device: fifo, record_size: 24, poll_ms: 5, kiosk: 'k3', reconnect: { initial_ms: 50, max_ms: 200 } }]);
    await waitFor(() => r.avail.some((a) => a.online), 10_000, 'hid scanner online');
    // 73513537 + Enter, one record per press/release with its SYN_REPORT (struct input_event, 64-bit, little-endian):
    // tv_sec 0x692f7d80, tv_usec 100000 (0x186a0), then type, code, value
    const key = (code: number, value: number): string =>
      '807d2f6900000000' + 'a086010000000000' + '0100' + code.toString(16).padStart(2, '0') + '00' + (value === 1 ? '01000000' : '00000000') + '807d2f6900000000a0860100000000000000000000000000';
    const typed = (codes: number[]): Buffer => Buffer.from(codes.map((c) => key(c, 1) + key(c, 0)).join('') + key(28, 1) + key(28, 0), 'hex');
    // KEY_7 = 8, KEY_3 = 4, KEY_5 = 6, KEY_1 = 2
    writeSync(w, typed([8, 4, 6, 2, 4, 6, 4, 8]));
    await waitFor(() => r.scanned.length === 1, 10_000, 'the HID read');
    expect(r.scanned[0]).toMatchObject({ scannerId: 'hid1', kioskId: 'k3', raw: '73513537', gtin: '00000073513537' });
    // a wrong check digit typed: 73513538
    writeSync(w, typed([8, 4, 6, 2, 4, 6, 4, 9]));
    writeSync(w, typed([8, 4, 6, 2, 4, 6, 4, 8]));
    await waitFor(() => r.scanned.length === 2, 10_000, 'the second valid HID read');
    expect(r.service.list()[0]).toMatchObject({ kind: 'hid', reads: 2, misreads: 1, misreads_by_reason: { bad_check: 1 } });

    // the device goes away (the last writer closes: the read sees end of file) and comes back
    closeSync(w);
    await waitFor(() => r.avail.at(-1)?.online === false, 10_000, 'hid scanner offline');
    w = openSync(fifo, 'r+');
    await waitFor(() => r.avail.at(-1)?.online === true, 10_000, 'hid scanner back online');
    writeSync(w, typed([8, 4, 6, 2, 4, 6, 4, 8]));
    await waitFor(() => r.scanned.length === 3, 10_000, 'a read after coming back');
  });
});
