import { describe, expect, it } from 'vitest';
import { validateConfig, formatIssues } from '../../src/config/load';
import { BUILTIN_FEATURES } from '../../src/features';
import { shelvesSlice } from '../../src/features/shelves/config';
import type { DeviceDefinition } from '../../src/devices/types';

const serial = { baudRate: 9600, dataBits: 8, parity: 'none', stopBits: 1 } as const;
const models = new Map<string, DeviceDefinition>([
  ['mb', { id: 'mb', protocol: 'modbus-rtu', vendor: 't', description: 't', serial, timeoutMs: 100, reads: [{ function: 3, address: 0x50, count: 4 }], fields: { weight: { register: 0x52, type: 'int32be' } }, scaling: { unit: 'g', factor: 1, decimals: 0 }, statusBits: {}, capacityG: 30_000 }],
  ['sics', { id: 'sics', protocol: 'mt-sics', vendor: 't', description: 't', serial, timeoutMs: 500, pollCommand: 'SI', mode: 'poll', streamCommand: 'SIR', capacityG: 15_000 }],
]);

const slot = (id: string, address: number, extra: object = {}) => ({ id, sensor: { bus: 'bus-a', address }, gtin: '04006381333931', unit_weight_g: 250, ...extra });
function base(): any {
  return {
    store_id: 'store-1',
    buses: [{ id: 'bus-a', path: 'tcp://127.0.0.1:5020', model: 'mb' }, { id: 'scale', path: '/dev/ttyUSB0', model: 'sics' }],
    shelves: [
      { id: 'sh0', slots: [slot('a', 1)] },
      { id: 'sh1', slots: [slot('a', 2)] },
      { id: 'sh2', slots: [slot('a', 3)] },
      { id: 'sh3', slots: [slot('a', 4), slot('b', 5)] },
      { id: 'deli', slots: [{ id: 'c', sensor: { bus: 'scale' } }] },
    ],
  };
}

describe('config validation', () => {
  it('accepts a minimal config and fills every default', () => {
    const { config, issues } = validateConfig(base(), models, BUILTIN_FEATURES);
    expect(issues).toEqual([]);
    expect(config!.mqtt.host).toBe('127.0.0.1');
    expect(config!.mqtt.port).toBe(1883);
    expect(config!.storage.synchronous).toBe('full');
    const shelves = shelvesSlice(config!);
    expect(shelves.buses[0]!.poll_interval_ms).toBe(200);
    expect(shelves.buses[0]!.reconnect).toEqual({ initial_ms: 500, max_ms: 30000 });
    expect(shelves.shelves[0]!.slots[0]!.tare_g).toBe(0);
    expect(Object.isFrozen(config!.shelves[0]!.slots[0])).toBe(true);
  });

  it('reports the example path format from the issue', () => {
    const raw = base();
    raw.shelves[3].slots[1].unit_weight_g = 0;
    const { config, issues } = validateConfig(raw, models, BUILTIN_FEATURES);
    expect(config).toBeUndefined();
    expect(formatIssues(issues)).toBe('shelves[3].slots[1].unit_weight_g: must be > 0');
  });

  it('reports every error at once', () => {
    const raw = base();
    delete raw.store_id;
    raw.mqtt = { port: 70000, colour: 'blue' };
    raw.shelves[0].slots[0].gtin = '04006381333932';
    raw.shelves[1].slots[0].sensor.address = 300;
    raw.shelves[3].slots[1].unit_weight_g = -1;
    const lines = formatIssues(validateConfig(raw, models, BUILTIN_FEATURES).issues).split('\n');
    expect(lines).toEqual(
      expect.arrayContaining([
        'store_id: is required',
        expect.stringMatching(/^mqtt\.port: /),
        expect.stringMatching(/^mqtt: unknown key\(s\) "colour"/),
        'shelves[0].slots[0].gtin: must be a GTIN-8/12/13/14 with a valid GS1 check digit',
        'shelves[1].slots[0].sensor.address: must be <= 247',
        'shelves[3].slots[1].unit_weight_g: must be > 0',
      ]),
    );
    expect(lines).toHaveLength(6);
  });

  it('checks cross references after the schema', () => {
    const raw = base();
    raw.buses.push({ id: 'bus-a', path: 'COM3', model: 'nope' });
    raw.shelves[0].slots[0].sensor = { bus: 'missing', address: 1 };
    raw.shelves[1].slots.push(slot('a', 9));
    raw.shelves[2].slots[0].sensor = { bus: 'bus-a' };
    raw.shelves[3].slots[1].sensor.address = 4;
    raw.shelves[4].slots[0].sensor.address = 1;
    const text = formatIssues(validateConfig(raw, models, BUILTIN_FEATURES).issues);
    expect(text).toContain('buses[2].id: duplicate bus id "bus-a"');
    expect(text).toContain('buses[2].model: unknown device model "nope" (known: mb, sics)');
    expect(text).toContain('buses[2].path: must be an absolute device path');
    expect(text).toContain('shelves[0].slots[0].sensor.bus: unknown bus "missing"');
    expect(text).toContain('shelves[1].slots[1].id: duplicate slot id "a" in shelf "sh1"');
    expect(text).toContain('shelves[2].slots[0].sensor.address: is required on a Modbus bus (1-247)');
    expect(text).toContain('shelves[3].slots[1].sensor: sensor already used by sh3/a');
    expect(text).toContain('shelves[4].slots[0].sensor.address: must be omitted');
  });

  it('refuses ids that could inject MQTT wildcards', () => {
    const raw = base();
    raw.store_id = 'store/#';
    expect(formatIssues(validateConfig(raw, models, BUILTIN_FEATURES).issues)).toMatch(/^store_id: must be 1-64 characters/);
  });

  it('refuses a plaintext password', () => {
    const raw = base();
    raw.mqtt = { users: [{ username: 'k', role: 'kiosk', password_hash: 'hunter2' }] };
    expect(formatIssues(validateConfig(raw, models, BUILTIN_FEATURES).issues)).toBe('mqtt.users[0].password_hash: must be a scrypt hash from `shelfgate passwd`');
  });

  it('reports sync files that cannot be read (token, CA) as config errors', () => {
    const raw = base();
    raw.sync = { transport: 'https', https: { url: 'https://central.example.com', token_file: '/nonexistent/token', ca_file: '/nonexistent/ca.pem' } };
    expect(formatIssues(validateConfig(raw, models, BUILTIN_FEATURES).issues).split('\n')).toEqual([
      'sync.https.token_file: cannot read /nonexistent/token: ENOENT',
      'sync.https.ca_file: cannot read /nonexistent/ca.pem: ENOENT',
    ]);
    raw.sync.transport = 'none'; // files of an unused transport are not read
    expect(validateConfig(raw, models, BUILTIN_FEATURES).issues).toEqual([]);
  });

  it('refuses a shelf and slot id pair longer than the 128-character device id central stores', () => {
    const raw = base();
    raw.shelves[0].id = 's'.repeat(64);
    raw.shelves[0].slots[0].id = 'a'.repeat(64);
    expect(formatIssues(validateConfig(raw, models, BUILTIN_FEATURES).issues)).toBe(
      'shelves[0].slots[0].id: shelf id and slot id together must be at most 127 characters (the event device id "<shelf>/<slot>" is limited to 128)',
    );
    raw.shelves[0].slots[0].id = 'a'.repeat(63);
    expect(validateConfig(raw, models, BUILTIN_FEATURES).issues).toEqual([]);
  });

  it('refuses a non-object document', () => {
    const { issues } = validateConfig('just a string', models, BUILTIN_FEATURES);
    expect(issues.length).toBe(1);
  });
});

describe('labels config', () => {
  it('is optional, and when present every problem is named by its path', () => {
    expect(validateConfig(base(), models, BUILTIN_FEATURES).issues).toEqual([]);
    const raw = base();
    raw.labels = {
      locale: 'xx-notalocale-123456789',
      access_points: [
        { id: 'ap1', url: 'http://10.0.0.5' },
        { id: 'ap1', url: 'ftp://10.0.0.6' },
      ],
      radio_bytes_per_s: 5,
      colour: 'red',
    };
    const lines = formatIssues(validateConfig(raw, models, BUILTIN_FEATURES).issues);
    expect(lines).toMatch(/labels\.access_points\[1\]\.url: must be an http:\/\/ or https:\/\/ URL/);
    expect(lines).toMatch(/labels\.radio_bytes_per_s/);
    expect(lines).toMatch(/labels.*colour|Unrecognized key.*colour/);
  });

  it('cross-checks a valid shape: duplicate access point ids and an unknown locale', () => {
    const raw = base();
    raw.labels = { locale: 'qq-QQ', access_points: [{ id: 'ap1', url: 'http://10.0.0.5' }, { id: 'ap1', url: 'http://10.0.0.6' }] };
    const lines = formatIssues(validateConfig(raw, models, BUILTIN_FEATURES).issues);
    expect(lines).toMatch(/labels\.access_points\[1\]\.id: duplicate access point id "ap1"/);
    expect(lines).toMatch(/labels\.locale: .*qq-QQ/);
    raw.labels = { locale: 'de-DE', access_points: [{ id: 'ap1', url: 'http://10.0.0.5' }] };
    const { config, issues } = validateConfig(raw, models, BUILTIN_FEATURES);
    expect(issues).toEqual([]);
    expect((config as unknown as { labels: { ap_queue_s: number; access_points: Array<{ poll_interval_ms: number }> } }).labels).toMatchObject({ ap_queue_s: 80, access_points: [{ poll_interval_ms: 30_000 }] });
  });
});
