/**
 * The `rfid:` config slice through the composed schema and the feature's cross-checks: absent is
 * off, defaults are filled, and every problem comes back with its path (unknown reader or
 * location, an antenna in two zones, duplicate ids, an M100 antenna other than 1, a reader id that
 * is a bus's device id, unknown keys).
 */
import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load';
import { loadDefinitions } from '../../src/devices/definitions';
import { BUILTIN_FEATURES } from '../../src/features';
import { rfidSlice } from '../../src/features/rfid/config';

const defs = loadDefinitions();

function base(rfid?: unknown): Record<string, unknown> {
  return {
    store_id: 's1',
    data_dir: '/tmp/sg-rfid-config',
    buses: [{ id: 'bus1', path: 'mock://a', model: 'generic-modbus-loadcell' }],
    shelves: [
      { id: 'g1', slots: [{ id: 's1', sensor: { bus: 'bus1', address: 1 }, gtin: '04006381333931', unit_weight_g: 100 }, { id: 'floor' }] },
      { id: 'back', slots: [{ id: 'room' }] },
    ],
    ...(rfid !== undefined ? { rfid } : {}),
  };
}

const okRfid = () => ({
  readers: [
    { id: 'r1', kind: 'm100', path: '/dev/ttyUSB0' },
    { id: 'r2', kind: 'm100', path: 'tcp://10.0.0.5:4001', framing: 'aadd', tx_power_dbm: 20 },
  ],
  zones: [
    { id: 'backroom', location: 'back/room', antennas: [{ reader: 'r1' }] },
    { id: 'floor', location: 'g1/floor', antennas: [{ reader: 'r2', antenna: 1 }], arrive_after: 2, depart_after_ms: 8000 },
  ],
});

const issuesOf = (raw: unknown) => validateConfig(raw, defs, BUILTIN_FEATURES).issues;

describe('rfid config', () => {
  it('absent: the feature is off', () => {
    const { config, issues } = validateConfig(base(), defs, BUILTIN_FEATURES);
    expect(issues).toEqual([]);
    expect(rfidSlice(config!)).toBeUndefined();
  });

  it('fills the defaults', () => {
    const { config, issues } = validateConfig(base(okRfid()), defs, BUILTIN_FEATURES);
    expect(issues).toEqual([]);
    const c = rfidSlice(config!)!;
    expect(c.readers[0]).toMatchObject({ framing: 'bb7e', baud_rate: 115200, probe_ms: 2000, reconnect: { initial_ms: 500, max_ms: 30_000 } });
    expect(c.readers[1]).toMatchObject({ framing: 'aadd', tx_power_dbm: 20 });
    expect(c.zones[0]).toMatchObject({ arrive_after: 3, window_ms: 2000, depart_after_ms: 10_000, read_cycle_ms: 250, antennas: [{ reader: 'r1', antenna: 1 }] });
    expect(c).toMatchObject({ handover_margin_db: 6, min_dwell_ms: 3000, max_tags: 100_000, tick_ms: 250, raw_reads: { enabled: false, max_per_s: 50 } });
  });

  it('reports each cross-reference problem with its path', () => {
    const r = okRfid();
    r.readers.push({ id: 'r1', kind: 'm100', path: '/dev/ttyUSB1' }); // duplicate id
    r.readers.push({ id: 'bus1', kind: 'm100', path: 'tcp://10.0.0.6:4001' }); // a bus's device id
    r.readers.push({ id: 'r9', kind: 'm100', path: '/dev/ttyUSB0' }); // same device as r1
    r.zones.push({ id: 'floor', location: 'g1/nowhere', antennas: [{ reader: 'r2', antenna: 1 }, { reader: 'rX', antenna: 1 }, { reader: 'r1', antenna: 2 }] } as never);
    expect(issuesOf(base(r))).toEqual(
      expect.arrayContaining([
        { path: 'rfid.readers[2].id', message: 'duplicate reader id "r1"' },
        { path: 'rfid.readers[3].id', message: '"bus1" is already a weight bus\'s device id' },
        { path: 'rfid.readers[4].path', message: 'the same device as reader "r1"' },
        { path: 'rfid.zones[2].id', message: 'duplicate zone id "floor"' },
        { path: 'rfid.zones[2].location', message: expect.stringContaining('unknown location "g1/nowhere"') },
        { path: 'rfid.zones[2].antennas[0]', message: 'r2 antenna 1 is already in zone "floor"' },
        { path: 'rfid.zones[2].antennas[1].reader', message: expect.stringContaining('unknown reader "rX"') },
        { path: 'rfid.zones[2].antennas[2].antenna', message: 'an M100 module has one antenna port: 1' },
      ]),
    );
  });

  it('a zone must not empty faster than its readers are known to be offline', () => {
    const r = okRfid();
    (r.readers[0] as Record<string, unknown>).offline_after_ms = 12_000;
    expect(issuesOf(base(r))).toEqual([{ path: 'rfid.zones[0].depart_after_ms', message: expect.stringContaining('offline time (12000 ms)') }]);
  });

  it('schema errors: unknown keys, unknown reader kind, bad path, empty lists', () => {
    const r = okRfid() as Record<string, unknown> & ReturnType<typeof okRfid>;
    (r.readers[0] as Record<string, unknown>).antenna_count = 4;
    const paths = issuesOf(base(r)).map((i) => i.path);
    expect(paths).toContain('rfid.readers[0]');
    expect(issuesOf(base({ ...okRfid(), readers: [{ id: 'x', kind: 'llrp-unknown', path: '/dev/x' }] })).map((i) => i.path)).toContain('rfid.readers[0].kind');
    expect(issuesOf(base({ ...okRfid(), readers: [{ id: 'r1', kind: 'm100', path: 'ttyUSB0' }, okRfid().readers[1]] }))).toContainEqual({ path: 'rfid.readers[0].path', message: expect.stringContaining('absolute device path') });
    expect(issuesOf(base({ readers: [], zones: [] })).map((i) => i.path)).toEqual(expect.arrayContaining(['rfid.readers', 'rfid.zones']));
  });
});
