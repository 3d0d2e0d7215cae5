import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { defaultDefinitionsDir, loadDefinitions, validateDefinition, type DefinitionIssue } from '../../src/devices/definitions';
import { ErrorCode, isShelfgateError } from '../../src/errors';

const repoDevices = join(__dirname, '..', '..', 'devices');

const modbusDoc = () => ({
  id: 'test-cell',
  protocol: 'modbus-rtu',
  vendor: 'test',
  description: 'test cell',
  serial: { baud_rate: 9600 },
  timeout_ms: 100,
  capacity_g: 30000,
  reads: [{ function: 3, address: 0x08, count: 1 }, { function: 3, address: 0x50, count: 4 }],
  fields: { weight: { register: 0x52, type: 'int32be' }, status: { register: 0x08, type: 'uint16' } },
  scaling: { unit: 'g', decimals: { status_mask: 0x07 } },
  status_bits: { sign: 3, unstable: 5, overload: 6 },
});

function issuesOf(fn: () => unknown): DefinitionIssue[] {
  try {
    fn();
  } catch (e) {
    expect(isShelfgateError(e, ErrorCode.DEVICE_DEFINITION_INVALID)).toBe(true);
    return (e as { details: DefinitionIssue[] }).details;
  }
  throw new Error('expected DEVICE_DEFINITION_INVALID');
}

describe('devices/ (the shipped definitions)', () => {
  it('resolves the default folder to the repository devices/', () => {
    expect(defaultDefinitionsDir()).toBe(repoDevices);
  });

  it('loads every YAML file in devices/, keyed by id = file name, frozen', () => {
    const defs = loadDefinitions();
    const files = readdirSync(repoDevices).filter((f) => /\.ya?ml$/.test(f));
    expect(files.length).toBeGreaterThanOrEqual(3);
    expect([...defs.keys()].sort()).toEqual(files.map((f) => f.replace(/\.ya?ml$/, '')).sort());
    for (const d of defs.values()) expect(Object.isFrozen(d)).toBe(true);
  });

  it('maps snake_case YAML to the TypeScript types', () => {
    const defs = loadDefinitions();
    expect(defs.get('mettler-toledo-mt-sics')).toEqual({
      id: 'mettler-toledo-mt-sics',
      protocol: 'mt-sics',
      vendor: 'Mettler Toledo',
      description: expect.any(String),
      serial: { baudRate: 9600, dataBits: 8, parity: 'none', stopBits: 1 },
      timeoutMs: 500,
      capacityG: 15000,
      mode: 'poll',
      pollCommand: 'SI',
      streamCommand: 'SIR',
    });
    expect(defs.get('mettler-toledo-mt-sics-continuous')).toMatchObject({ protocol: 'mt-sics', mode: 'stream', streamCommand: 'SIR', capacityG: 15000, timeoutMs: 500 });
    expect(defs.get('generic-modbus-loadcell')).toEqual({
      id: 'generic-modbus-loadcell',
      protocol: 'modbus-rtu',
      vendor: 'generic',
      description: expect.any(String),
      serial: { baudRate: 9600, dataBits: 8, parity: 'none', stopBits: 1 },
      timeoutMs: 100,
      capacityG: 30000,
      reads: [{ function: 3, address: 0x08, count: 1 }, { function: 3, address: 0x50, count: 4 }],
      fields: { weight: { register: 0x52, type: 'int32be' }, status: { register: 0x08, type: 'uint16' }, gross: { register: 0x50, type: 'int32be' } },
      scaling: { unit: 'g', factor: 1, decimals: { statusMask: 0x07 } },
      statusBits: { sign: 3, unstable: 5, overload: 6 },
    });
    expect(defs.get('generic-modbus-loadcell-kg')).toMatchObject({ scaling: { unit: 'kg', factor: 1, decimals: 3 }, reads: [{ function: 4, address: 0, count: 3 }] });
  });

  it('gives every weighing model a capacity: 1 kg to 1 t, in grams', () => {
    for (const d of loadDefinitions().values()) {
      expect(d.capacityG, d.id).toBeGreaterThanOrEqual(1_000);
      expect(d.capacityG, d.id).toBeLessThanOrEqual(1_000_000);
    }
  });
});

describe('validateDefinition', () => {
  it('accepts a valid definition and fills defaults', () => {
    const r = validateDefinition(modbusDoc(), 'test-cell.yaml');
    expect(r.issues).toEqual([]);
    expect(r.definition).toMatchObject({ serial: { baudRate: 9600, dataBits: 8, parity: 'none', stopBits: 1 }, scaling: { factor: 1 } });
  });

  it('reports schema errors with their path, all at once', () => {
    const d: any = modbusDoc();
    d.serial.baud_rate = -1;
    d.reads[1].count = 200;
    d.fields.weight.type = 'float32';
    d.scaling.colour = 'red';
    delete d.timeout_ms;
    const { issues } = validateDefinition(d, 'x.yaml');
    const byPath = Object.fromEntries(issues.map((i) => [i.path, i.message]));
    expect(Object.keys(byPath).sort()).toEqual(['fields.weight.type', 'reads[1].count', 'scaling', 'serial.baud_rate', 'timeout_ms']);
    expect(byPath['timeout_ms']).toBe('is required');
    expect(byPath['reads[1].count']).toBe('must be 1-125');
    expect(byPath['scaling']).toMatch(/unknown key.*colour/);
    expect(issues.every((i) => i.file === 'x.yaml')).toBe(true);
  });

  it('requires capacity_g, a number of grams from 1 to 100 t', () => {
    const d: any = modbusDoc();
    delete d.capacity_g;
    expect(validateDefinition(d, 'x.yaml').issues).toEqual([{ file: 'x.yaml', path: 'capacity_g', message: 'is required' }]);
    for (const [v, msg] of [[0, 'must be >= 1 (grams)'], [-5, 'must be >= 1 (grams)'], [1e9, 'must be <= 100000000 (grams)']] as const) {
      expect(validateDefinition({ ...modbusDoc(), capacity_g: v }, 'x.yaml').issues).toEqual([{ file: 'x.yaml', path: 'capacity_g', message: msg }]);
    }
    expect(validateDefinition({ ...modbusDoc(), capacity_g: '30 kg' }, 'x.yaml').issues.map((i) => i.path)).toEqual(['capacity_g']);
    expect(validateDefinition({ ...modbusDoc(), capacity_g: 2500.5 }, 'test-cell.yaml').definition).toMatchObject({ capacityG: 2500.5 });
  });

  it('mt-sics mode: poll (default) with poll_command, or stream with stream_command SIR; not the other one', () => {
    const sics = (extra: object) => ({ id: 's', protocol: 'mt-sics', vendor: 'v', description: 'd', serial: { baud_rate: 9600 }, timeout_ms: 500, capacity_g: 6200, ...extra });
    expect(validateDefinition(sics({}), 's.yaml').definition).toMatchObject({ mode: 'poll', pollCommand: 'SI' });
    expect(validateDefinition(sics({ mode: 'stream' }), 's.yaml').definition).toMatchObject({ mode: 'stream', streamCommand: 'SIR' });
    expect(validateDefinition(sics({ mode: 'stream', stream_command: 'SIR' }), 's.yaml').issues).toEqual([]);
    const paths = (extra: object) => validateDefinition(sics(extra), 's.yaml').issues.map((i) => `${i.path}: ${i.message}`);
    expect(paths({ mode: 'push' })).toEqual([expect.stringMatching(/^mode: /)]);
    expect(paths({ mode: 'stream', stream_command: 'SR' })).toEqual(['stream_command: must be SIR']);
    expect(paths({ stream_command: 'SIR' })).toEqual(['stream_command: only with mode: stream']);
    expect(paths({ mode: 'stream', poll_command: 'S' })).toEqual(['poll_command: only with mode: poll']);
  });

  it('reports an unknown protocol', () => {
    const { issues } = validateDefinition({ ...modbusDoc(), protocol: 'canbus' }, 'x.yaml');
    expect(issues).toEqual([{ file: 'x.yaml', path: 'protocol', message: 'protocol must be "mt-sics" or "modbus-rtu"' }]);
  });

  it('requires every field inside a declared read block', () => {
    const d: any = modbusDoc();
    d.fields.weight.register = 0x54; // 0x54-0x55, block ends at 0x53
    d.fields.extra = { register: 0x53, type: 'uint32be' }; // straddles the end
    d.fields.ok = { register: 0x53, type: 'uint16' };
    const { issues } = validateDefinition(d, 'test-cell.yaml');
    expect(issues.map((i) => i.path)).toEqual(['fields.weight.register', 'fields.extra.register']);
    expect(issues[0]!.message).toBe('registers 84-85 (int32be) not inside any block in reads');
  });

  it('checks status-driven decimals and bits against the status field', () => {
    const d: any = modbusDoc();
    delete d.fields.status;
    d.reads = [{ function: 3, address: 0x50, count: 4 }];
    const { issues } = validateDefinition(d, 'test-cell.yaml');
    expect(issues.map((i) => `${i.path}: ${i.message}`)).toEqual([
      'scaling.decimals.status_mask: needs fields.status',
      'status_bits.unstable: needs fields.status',
      'status_bits.overload: needs fields.status',
      'status_bits.sign: needs fields.status',
    ]);
    const e: any = modbusDoc();
    e.scaling.decimals = { status_mask: 0x05 };
    e.status_bits.overload = 16;
    expect(validateDefinition(e, 'test-cell.yaml').issues.map((i) => i.path)).toEqual(['scaling.decimals.status_mask', 'status_bits.overload']);
  });

  it('requires the id to match the file name', () => {
    expect(validateDefinition(modbusDoc(), '/x/other.yaml').issues).toEqual([{ file: '/x/other.yaml', path: 'id', message: 'must equal the file name "other"' }]);
  });
});

describe('loadDefinitions from a folder', () => {
  let dir = '';
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  const write = (name: string, text: string) => writeFileSync(join(dir, name), text);

  it('reports every error of every file with file and path, and ignores non-YAML files', () => {
    dir = mkdtempSync(join(tmpdir(), 'sg-defs-'));
    write('README.md', '# not a definition');
    write('good.yaml', 'id: good\nprotocol: mt-sics\nvendor: v\ndescription: d\nserial: { baud_rate: 9600 }\ntimeout_ms: 500\ncapacity_g: 6200\n');
    write('bad-sics.yaml', 'id: bad-sics\nprotocol: mt-sics\nvendor: v\ndescription: d\nserial: { baud_rate: 9600, parity: mark }\ntimeout_ms: 500\ncapacity_g: 6200\npoll_command: SIR\n');
    write('broken.yaml', 'id: broken\nprotocol: [\n');
    write('dup.yaml', 'id: x\nid: y\n');
    const issues = issuesOf(() => loadDefinitions(dir));
    const lines = issues.map((i) => `${i.file.slice(dir.length + 1)}: ${i.path}`);
    expect(lines).toEqual(['bad-sics.yaml: serial.parity', 'bad-sics.yaml: poll_command', 'broken.yaml: ', 'dup.yaml: ']);
    expect(issues[2]!.message).toMatch(/^YAML: /);
    try {
      loadDefinitions(dir);
    } catch (e) {
      expect((e as Error).message).toContain(`${join(dir, 'bad-sics.yaml')}: serial.parity: `);
    }
  });

  it('loads a folder of valid files', () => {
    dir = mkdtempSync(join(tmpdir(), 'sg-defs-'));
    write('good.yml', 'id: good\nprotocol: mt-sics\nvendor: v\ndescription: d\nserial: { baud_rate: 9600 }\ntimeout_ms: 500\ncapacity_g: 6200\n');
    expect([...loadDefinitions(dir).keys()]).toEqual(['good']);
  });

  it('fails on an empty or missing folder', () => {
    dir = mkdtempSync(join(tmpdir(), 'sg-defs-'));
    expect(issuesOf(() => loadDefinitions(dir))[0]!.message).toMatch(/no device definition files/);
    expect(issuesOf(() => loadDefinitions(join(dir, 'nope')))[0]!.message).toMatch(/cannot read folder: ENOENT/);
  });
});
