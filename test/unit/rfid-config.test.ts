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

describe('rfid config: LLRP readers', () => {
  const llrp = (extra: Record<string, unknown> = {}) => ({ id: 'fx', kind: 'llrp', address: '10.0.0.20', ...extra });
  const withLlrp = (reader: Record<string, unknown>, zones: unknown[]) => base({ readers: [{ id: 'r1', kind: 'm100', path: '/dev/ttyUSB0' }, reader], zones });

  it('fills the defaults; one immediate zone gets ROSpec = its zone position, with its antennas', async () => {
    const { config, issues } = validateConfig(withLlrp(llrp(), [{ id: 'backroom', location: 'back/room', antennas: [{ reader: 'fx', antenna: 3 }, { reader: 'fx', antenna: 4 }] }]), defs, BUILTIN_FEATURES);
    expect(issues).toEqual([]);
    const r = rfidSlice(config!)!.readers[1]!;
    expect(r).toEqual({ id: 'fx', kind: 'llrp', address: '10.0.0.20', keepalive_ms: 2000, missed_keepalives: 3, trigger: 'immediate', reconnect: { initial_ms: 500, max_ms: 30_000 } });
    const { llrpZonePlans, llrpEndpoint } = await import('../../src/features/rfid/config');
    expect(llrpZonePlans(r as never, rfidSlice(config!)!.zones)).toEqual([{ zone: 'backroom', rospecId: 1, antennas: [3, 4], trigger: { type: 'immediate' } }]);
    expect(llrpEndpoint('10.0.0.20')).toBe('tcp://10.0.0.20:5084');
    expect(llrpEndpoint('tcp://Reader-1.local:5085')).toBe('tcp://reader-1.local:5085');
    expect(llrpEndpoint('[fe80::1]')).toBe('tcp://[fe80::1]:5084');
  });

  it('TLS: port 5085 when the address has none; a client certificate needs its key; the same reader twice is found across forms', async () => {
    const { llrpEndpoint } = await import('../../src/features/rfid/config');
    expect(llrpEndpoint('10.0.0.20', true)).toBe('tcp://10.0.0.20:5085');
    expect(llrpEndpoint('10.0.0.20:6000', true)).toBe('tcp://10.0.0.20:6000');
    const zones = [{ id: 'z', location: 'back/room', antennas: [{ reader: 'fx', antenna: 1 }] }];
    const ok = validateConfig(withLlrp(llrp({ tls: { ca_file: '/etc/shelfgate/readers-ca.pem', server_name: 'fx.store.local' } }), zones), defs, BUILTIN_FEATURES);
    expect(ok.issues).toEqual([]);
    const half = validateConfig(withLlrp(llrp({ tls: { cert_file: '/etc/shelfgate/gw.pem' } }), zones), defs, BUILTIN_FEATURES);
    expect(half.issues).toEqual([{ path: 'rfid.readers[1].tls.key_file', message: 'cert_file and key_file go together (a client certificate and its key)' }]);
    const typo = validateConfig(withLlrp(llrp({ tls: { verify: false } }), zones), defs, BUILTIN_FEATURES);
    expect(typo.config).toBeUndefined();
    expect(typo.issues.map((i) => i.path)).toContain('rfid.readers[1].tls');
    // 10.0.0.20 over TLS is 10.0.0.20:5085: one device, whichever way it is written
    const twice = validateConfig(base({ readers: [llrp({ tls: {} }), { id: 'fy', kind: 'llrp', address: '10.0.0.20:5085' }], zones: [{ id: 'z', location: 'back/room', antennas: [{ reader: 'fx', antenna: 1 }] }] }), defs, BUILTIN_FEATURES);
    expect(twice.issues).toContainEqual({ path: 'rfid.readers[1].address', message: 'the same device as reader "fx"' });
  });

  it('periodic: each zone of the reader gets its own slot of the period', async () => {
    const zones = [
      { id: 'backroom', location: 'back/room', antennas: [{ reader: 'r1' }] },
      { id: 'fit-a', location: 'g1/floor', antennas: [{ reader: 'fx', antenna: 1 }], window_ms: 3000 },
      { id: 'fit-b', location: 'g1/s1', antennas: [{ reader: 'fx', antenna: 2 }], window_ms: 3000 },
    ];
    const { config, issues } = validateConfig(withLlrp(llrp({ trigger: { periodic: { period_ms: 1000, duration_ms: 400 } } }), zones), defs, BUILTIN_FEATURES);
    expect(issues).toEqual([]);
    const { llrpZonePlans } = await import('../../src/features/rfid/config');
    const c = rfidSlice(config!)!;
    expect(llrpZonePlans(c.readers[1] as never, c.zones)).toEqual([
      { zone: 'fit-a', rospecId: 2, antennas: [1], trigger: { type: 'periodic', periodMs: 1000, durationMs: 400, offsetMs: 0 } },
      { zone: 'fit-b', rospecId: 3, antennas: [2], trigger: { type: 'periodic', periodMs: 1000, durationMs: 400, offsetMs: 500 } },
    ]);
  });

  it('cross-checks with paths: same endpoint, antenna range, M100 antenna rule kept, triggers, offline time, unused reader', () => {
    const cfg = {
      readers: [
        { id: 'r1', kind: 'm100', path: 'tcp://10.0.0.20:5084' },
        { id: 'fx', kind: 'llrp', address: '10.0.0.20', antenna_ports: 4 },
        { id: 'fy', kind: 'llrp', address: 'tcp://10.0.0.21:5084' },
        { id: 'fz', kind: 'llrp', address: '10.0.0.21:5084' },
        { id: 'fp', kind: 'llrp', address: '10.0.0.22', keepalive_ms: 5000, trigger: { periodic: { period_ms: 2000, duration_ms: 1500 } } },
        { id: 'fq', kind: 'llrp', address: '10.0.0.23:99999' },
      ],
      zones: [
        { id: 'a', location: 'back/room', antennas: [{ reader: 'fx', antenna: 5 }, { reader: 'r1', antenna: 2 }] },
        { id: 'b', location: 'g1/floor', antennas: [{ reader: 'fy', antenna: 1 }] },
        { id: 'c', location: 'g1/s1', antennas: [{ reader: 'fy', antenna: 2 }] },
        { id: 'd', location: 'g1/s1', antennas: [{ reader: 'fp', antenna: 1 }], arrive_after: 3, window_ms: 4000, depart_after_ms: 1000, read_cycle_ms: 2000 },
        { id: 'e', location: 'g1/s1', antennas: [{ reader: 'fp', antenna: 2 }, { reader: 'fq', antenna: 1 }], window_ms: 5000, depart_after_ms: 20_000 },
      ],
    };
    expect(issuesOf(base(cfg))).toEqual(
      expect.arrayContaining([
        { path: 'rfid.readers[1].address', message: 'the same device as reader "r1"' },
        { path: 'rfid.readers[3].address', message: 'the same device as reader "fy"' },
        { path: 'rfid.readers[5].address', message: 'port 99999 is not 1..65535' },
        { path: 'rfid.zones[0].antennas[0].antenna', message: 'reader "fx" has antenna ports 1..4' },
        { path: 'rfid.zones[0].antennas[1].antenna', message: 'an M100 module has one antenna port: 1' },
        { path: 'rfid.readers[2].trigger', message: expect.stringContaining('2 zones use this reader') },
        { path: 'rfid.readers[3]', message: expect.stringContaining('no zone uses LLRP reader "fz"') },
        { path: 'rfid.readers[4].trigger.periodic', message: expect.stringContaining('do not fit period_ms 2000') },
        { path: 'rfid.zones[3].depart_after_ms', message: expect.stringContaining('offline time (15000 ms)') },
        { path: 'rfid.zones[3].depart_after_ms', message: expect.stringContaining('trigger period (2000 ms)') },
        { path: 'rfid.zones[3].window_ms', message: expect.stringContaining('(4000 ms)') },
        { path: 'rfid.zones[3].read_cycle_ms', message: expect.stringContaining('trigger period (2000 ms)') },
      ]),
    );
    expect(issuesOf(base(cfg)).filter((i) => i.path.startsWith('rfid.zones[4]'))).toEqual([]);
  });

  it('schema errors: a bad address, a trigger that is neither immediate nor periodic, m100 keys on an LLRP reader', () => {
    const z = [{ id: 'a', location: 'back/room', antennas: [{ reader: 'fx', antenna: 1 }] }];
    expect(issuesOf(withLlrp(llrp({ address: 'http://x/y' }), z)).map((i) => i.path)).toContain('rfid.readers[1].address');
    expect(issuesOf(withLlrp(llrp({ trigger: 'periodic' }), z)).map((i) => i.path)).toContain('rfid.readers[1].trigger');
    expect(issuesOf(withLlrp(llrp({ trigger: { periodic: { period_ms: 1000 } } }), z)).map((i) => i.path)).toContain('rfid.readers[1].trigger');
    expect(issuesOf(withLlrp(llrp({ path: '/dev/ttyUSB1' }), z)).map((i) => i.path)).toContain('rfid.readers[1]');
  });
});
