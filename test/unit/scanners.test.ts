/**
 * The scanners feature in unit: the `scanners:` config through the composed schema and its
 * cross-checks (defaults, every problem with its path), and ScannerSource on a fake link (AIM
 * required or optional, codes without a GTIN ignored or emitted, misreads counted by reason and
 * never emitted, availability following the link).
 */
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load';
import type { DeviceAvailability } from '../../src/core/sources/types';
import { loadDefinitions } from '../../src/devices/definitions';
import { ScanFramer } from '../../src/drivers/barcode';
import { BUILTIN_FEATURES } from '../../src/features';
import { scannersSlice } from '../../src/features/scanners/config';
import { ScannerSource, type ScanRead } from '../../src/features/scanners/source';
import { silentLogger } from '../../src/log';
import { runScannerCli } from '../../simulators/scanner-cli';

const defs = loadDefinitions();

function base(scanners?: unknown, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    store_id: 's1',
    data_dir: '/tmp/sg-scanners-config',
    buses: [{ id: 'bus1', path: 'mock://a', model: 'generic-modbus-loadcell' }],
    shelves: [{ id: 'g1', slots: [{ id: 's1', sensor: { bus: 'bus1', address: 1 }, gtin: '04006381333931', unit_weight_g: 100 }] }],
    ...(scanners !== undefined ? { scanners } : {}),
    ...extra,
  };
}

const issuesOf = (raw: unknown) => validateConfig(raw, defs, BUILTIN_FEATURES).issues;

describe('scanners config', () => {
  it('absent: no scanners', () => {
    const { config, issues } = validateConfig(base(), defs, BUILTIN_FEATURES);
    expect(issues).toEqual([]);
    expect(scannersSlice(config!)).toEqual([]);
  });

  it('fills the defaults of both kinds', () => {
    const { config, issues } = validateConfig(
      base([
        { id: 'pc1', kind: 'serial', port: '/dev/serial/by-id/usb-Datalogic-if00', kiosk: 'k1' },
        { id: 'pc2', kind: 'hid', device: '/dev/input/by-id/usb-Honeywell-event-kbd' },
      ]),
      defs,
      BUILTIN_FEATURES,
    );
    expect(issues).toEqual([]);
    const [a, b] = scannersSlice(config!);
    expect(a).toMatchObject({ kind: 'serial', terminator: 'cr', baud_rate: 9600, aim_prefix: false, non_gtin: 'ignore', max_line: 512, kiosk: 'k1', reconnect: { initial_ms: 500, max_ms: 30_000 } });
    expect(b).toMatchObject({ kind: 'hid', terminator: 'enter', poll_ms: 8, aim_prefix: false });
    expect(b).not.toHaveProperty('record_size');
  });

  it('reports every schema problem with its path', () => {
    const issues = issuesOf(
      base([
        { id: 'pc1', kind: 'serial', port: '/dev/a', terminator: 'tab' },
        { id: 'pc2', kind: 'hid', device: '/dev/b', record_size: 20 },
        { id: 'x', kind: 'usb', port: '/dev/x' },
        { id: 'y', kind: 'serial', port: '/dev/y', kiosk: 'bad id!', colour: 'red' },
      ]),
    );
    expect(issues.map((i) => i.path).sort()).toEqual(['scanners[0].terminator', 'scanners[1].record_size', 'scanners[2].kind', 'scanners[3]', 'scanners[3].kiosk']);
  });

  it('cross-checks: duplicate ids and devices, ids of other devices, path forms', () => {
    const issues = issuesOf(
      base(
        [
          { id: 'pc1', kind: 'serial', port: 'ttyUSB0' },
          { id: 'pc1', kind: 'hid', device: 'event3' },
          { id: 'bus1', kind: 'serial', port: 'tcp://Scanners.local:4001' },
          { id: 'r1', kind: 'serial', port: 'tcp://scanners.local:4001' },
        ],
        { rfid: { readers: [{ id: 'r1', kind: 'm100', path: '/dev/ttyUSB9' }], zones: [{ id: 'z', location: 'g1/s1', antennas: [{ reader: 'r1' }], depart_after_ms: 60_000 }] } },
      ),
    );
    expect(issues).toEqual(
      expect.arrayContaining([
        { path: 'scanners[0].port', message: expect.stringContaining('absolute device path') },
        { path: 'scanners[1].id', message: 'duplicate scanner id "pc1"' },
        { path: 'scanners[1].device', message: expect.stringContaining('/dev/input/by-id/') },
        { path: 'scanners[2].id', message: `"bus1" is already a weight bus's device id` },
        { path: 'scanners[3].id', message: `"r1" is already an RFID reader's device id` },
        { path: 'scanners[3].port', message: 'the same device as scanner "bus1"' },
      ]),
    );
  });
});

class FakeLink extends EventEmitter {
  online = false;
  up(): void {
    this.online = true;
    this.emit('online');
  }
  down(reason: string): void {
    this.online = false;
    this.emit('offline', reason);
  }
  feed(s: string): void {
    this.emit('data', Buffer.from(s, 'latin1'));
  }
}

async function source(o: { aimPrefix?: boolean; emitNonGtin?: boolean } = {}) {
  const link = new FakeLink();
  const src = new ScannerSource({ scanner: 'pc1', link, decoder: new ScanFramer({ terminator: 'cr', maxLineBytes: 64 }), aimPrefix: o.aimPrefix ?? false, emitNonGtin: o.emitNonGtin ?? false, log: silentLogger() });
  const reads: ScanRead[] = [];
  const avail: DeviceAvailability[] = [];
  src.on('reading', (r) => reads.push(r));
  src.on('availability', (a) => avail.push(a));
  await src.start();
  return { link, src, reads, avail };
}

describe('ScannerSource', () => {
  it('is online while its link is open, offline when it drops', async () => {
    const { link, src, avail } = await source();
    link.up();
    expect(src.isOnline('pc1')).toBe(true);
    link.down('EIO');
    link.down('EIO');
    expect(avail.map((a) => [a.online, a.reason])).toEqual([[true, undefined], [false, 'link down: EIO']]);
    await src.stop();
  });

  it('aim_prefix true: a read without AIM id is a misread; with it, the id is reported', async () => {
    const { link, src, reads } = await source({ aimPrefix: true });
    link.up();
    link.feed('4006381333931\r]E04006381333931\r');
    expect(reads.map((r) => [r.symbology, r.gtin])).toEqual([[']E0', '04006381333931']]);
    expect(src.counters.misreads.aim_missing).toBe(1);
    expect(src.stats.invalidFrames).toBe(1);
  });

  it('aim_prefix false: an AIM id is still recognised; none is fine', async () => {
    const { link, reads } = await source();
    link.up();
    link.feed(']E496385074\r96385074\r');
    expect(reads.map((r) => [r.symbology, r.raw, r.gtin])).toEqual([[']E4', '96385074', '00000096385074'], [null, '96385074', '00000096385074']]);
  });

  it('codes without a GTIN are counted and dropped, or emitted with gtin null', async () => {
    const a = await source();
    a.link.up();
    a.link.feed('LOYALTY-0042\r');
    expect(a.reads).toEqual([]);
    expect(a.src.counters.notGtin).toBe(1);
    expect(a.src.stats.invalidFrames).toBe(0);
    const b = await source({ emitNonGtin: true });
    b.link.up();
    b.link.feed('LOYALTY-0042\r');
    expect(b.reads.map((r) => [r.raw, r.gtin])).toEqual([['LOYALTY-0042', null]]);
  });

  it('misreads are counted by reason and never emitted; bytes after stop() are ignored', async () => {
    const { link, src, reads } = await source();
    link.up();
    link.feed('4006381333932\r12345\r' + 'x'.repeat(200) + '\r]C10109501101530003(\r');
    expect(reads).toEqual([]);
    expect(src.counters.misreads).toMatchObject({ bad_check: 1, bad_length: 1, overlong: 1, gs1_syntax: 1 });
    expect(src.stats.invalidFrames).toBe(4);
    await src.stop();
    link.feed('4006381333931\r');
    expect(reads).toEqual([]);
    expect(link.listenerCount('data')).toBe(0);
  });
});

describe('shelfgate sim scanner (usage)', () => {
  const run = async (argv: string[]) => {
    let err = '';
    const code = await runScannerCli(argv, { stdout: { write: () => undefined }, stderr: { write: (s: string) => (err += s) } });
    return { code, err };
  };
  it('refuses a missing target, missing codes, a bad terminator, --valid-ratio without --random', async () => {
    expect(await run(['--code', '96385074'])).toMatchObject({ code: 64, err: expect.stringContaining('exactly one of --tcp') });
    expect(await run(['--tcp', '127.0.0.1:0'])).toMatchObject({ code: 64, err: expect.stringContaining('give --code X, --codes FILE or --random') });
    expect(await run(['--tcp', '127.0.0.1:0', '--random', '--terminator', 'nul'])).toMatchObject({ code: 64, err: expect.stringContaining('--terminator must be') });
    expect(await run(['--tcp', '127.0.0.1:0', '--code', '1', '--valid-ratio', '0.5'])).toMatchObject({ code: 64, err: expect.stringContaining('--valid-ratio is for --random') });
    expect(await run(['--tcp', '127.0.0.1:0', '--codes', '/nonexistent/codes.txt'])).toMatchObject({ code: 66 });
  });
});
