/**
 * Device definitions are data (after zigbee-herdsman-converters): one YAML file per
 * model in devices/, keys in snake_case like the rest of the configuration, validated here with
 * every problem reported at once as `file: path: message`, then mapped to the camelCase types of
 * src/devices/types.ts and frozen. The format is described in devices/README.md.
 */
import { repoRoot } from '../util/paths';
import { loadYamlFolder, zodIssues, type DefinitionIssue } from '../util/yaml-folder';
import { basename, join } from 'node:path';
import { z } from 'zod';
import { ErrorCode, ShelfgateError } from '../errors';
import type { DeviceDefinition, ModbusDefinition, ModbusField, MtSicsDefinition, RegisterType } from './types';

export type { DefinitionIssue };

const id = z.string().regex(/^[a-z0-9][a-z0-9-]{0,63}$/, 'must be 1-64 characters of a-z 0-9 - (used in the config as model:)');
const u16 = z.number().int().min(0, 'must be 0-65535').max(0xffff, 'must be 0-65535');

const serial = z.strictObject({
  baud_rate: z.number().int().positive(),
  data_bits: z.union([z.literal(5), z.literal(6), z.literal(7), z.literal(8)]).default(8),
  parity: z.enum(['none', 'even', 'odd']).default('none'),
  stop_bits: z.union([z.literal(1), z.literal(2)]).default(1),
});

const common = {
  id,
  vendor: z.string().min(1, 'must not be empty'),
  description: z.string().min(1, 'must not be empty'),
  serial,
  timeout_ms: z.number().int().min(5, 'must be >= 5').max(10_000, 'must be <= 10000'),
};

// Weighing range of the model, grams: readings beyond +/- this are overload/underload (1 g to 100 t).
const capacityG = z.number().min(1, 'must be >= 1 (grams)').max(100_000_000, 'must be <= 100000000 (grams)');

const mtSics = z.strictObject({
  ...common,
  capacity_g: capacityG,
  protocol: z.literal('mt-sics'),
  mode: z.enum(['poll', 'stream']).default('poll'),
  poll_command: z.enum(['SI', 'S']).optional(),
  stream_command: z.literal('SIR', { error: 'must be SIR' }).optional(),
});

const registerType = z.enum(['uint16', 'int16', 'uint32be', 'int32be', 'uint32le', 'int32le']);
const field = z.strictObject({ register: u16, type: registerType });
const bitIndex = z.number().int().min(0, 'must be a bit index 0-31').max(31, 'must be a bit index 0-31');

const modbusRtu = z.strictObject({
  ...common,
  capacity_g: capacityG,
  protocol: z.literal('modbus-rtu'),
  reads: z
    .array(
      z.strictObject({
        // Read Holding Registers (0x03) or Read Input Registers (0x04), Modbus App. Protocol §6.3/§6.4.
        function: z.union([z.literal(3), z.literal(4)], { error: 'must be 3 (holding registers) or 4 (input registers)' }),
        address: u16,
        count: z.number().int().min(1, 'must be 1-125').max(125, 'must be 1-125'),
      }),
    )
    .min(1, 'must list at least one register block'),
  fields: z.object({ weight: field, status: field.optional() }).catchall(field),
  scaling: z.strictObject({
    unit: z.enum(['g', 'kg']),
    factor: z.number().positive().finite().default(1),
    decimals: z.union([
      z.number().int().min(0, 'must be 0-9').max(9, 'must be 0-9'),
      z.strictObject({ status_mask: z.number().int().min(1, 'must be a non-zero bit mask').max(0xffffffff) }),
    ]),
  }),
  status_bits: z
    .strictObject({ unstable: bitIndex.optional(), overload: bitIndex.optional(), sign: bitIndex.optional() })
    .default({}),
});

const definitionSchema = z.discriminatedUnion('protocol', [mtSics, modbusRtu], {
  error: (iss) => (iss.code === 'invalid_union' ? 'protocol must be "mt-sics" or "modbus-rtu"' : undefined),
});

function width(type: RegisterType): number {
  return type === 'uint16' || type === 'int16' ? 1 : 2;
}

/**
 * Validates one parsed definition document. `file` names it in the issues, and when given with a
 * path the definition's id must equal the file name without `.yaml`.
 */
export function validateDefinition(raw: unknown, file: string): { definition?: DeviceDefinition; issues: DefinitionIssue[] } {
  const parsed = definitionSchema.safeParse(raw, { reportInput: true });
  if (!parsed.success) {
    return { issues: zodIssues(file, parsed.error) };
  }
  const d = parsed.data;
  const issues: DefinitionIssue[] = [];
  const issue = (path: string, message: string): void => {
    issues.push({ file, path, message });
  };
  const stem = basename(file).replace(/\.ya?ml$/, '');
  if (/\.ya?ml$/.test(file) && d.id !== stem) issue('id', `must equal the file name "${stem}"`);
  const base = {
    id: d.id,
    vendor: d.vendor,
    description: d.description,
    serial: { baudRate: d.serial.baud_rate, dataBits: d.serial.data_bits, parity: d.serial.parity, stopBits: d.serial.stop_bits },
    timeoutMs: d.timeout_ms,
  };
  if (d.protocol === 'mt-sics') {
    if (d.mode === 'poll' && d.stream_command !== undefined) issue('stream_command', 'only with mode: stream');
    if (d.mode === 'stream' && d.poll_command !== undefined) issue('poll_command', 'only with mode: poll');
    if (issues.length) return { issues };
    const definition: MtSicsDefinition = {
      ...base,
      protocol: 'mt-sics',
      capacityG: d.capacity_g,
      mode: d.mode,
      pollCommand: d.poll_command ?? 'SI',
      streamCommand: d.stream_command ?? 'SIR',
    };
    return { definition, issues };
  }

  // Every field must fall wholly inside one declared read block, or decodeLoadCell could not find it.
  d.reads.forEach((r, i) => {
    if (r.address + r.count > 0x10000) issue(`reads[${i}].count`, 'block runs past register 65535');
  });
  const fields = d.fields as Record<string, { register: number; type: RegisterType }>;
  for (const [name, f] of Object.entries(fields)) {
    const end = f.register + width(f.type);
    if (!d.reads.some((r) => f.register >= r.address && end <= r.address + r.count)) {
      const regs = width(f.type) === 1 ? `register ${f.register}` : `registers ${f.register}-${end - 1}`;
      issue(`fields.${name}.register`, `${regs} (${f.type}) not inside any block in reads`);
    }
  }
  const status = d.fields.status;
  const statusBitsWide = status ? width(status.type) * 16 : 0;
  if (typeof d.scaling.decimals !== 'number') {
    const mask = d.scaling.decimals.status_mask;
    if (!status) issue('scaling.decimals.status_mask', 'needs fields.status');
    else if (statusBitsWide < 32 && mask >= 2 ** statusBitsWide) issue('scaling.decimals.status_mask', `does not fit the ${status.type} status field`);
    if (!/^1+0*$/.test(mask.toString(2))) issue('scaling.decimals.status_mask', 'must be one contiguous run of bits');
  }
  for (const [name, b] of Object.entries(d.status_bits)) {
    if (b === undefined) continue;
    if (!status) issue(`status_bits.${name}`, 'needs fields.status');
    else if (b >= statusBitsWide) issue(`status_bits.${name}`, `bit ${b} is outside the ${status.type} status field`);
  }

  if (issues.length) return { issues };
  const toField = (f: { register: number; type: RegisterType }): ModbusField => ({ register: f.register, type: f.type });
  const mappedFields = Object.fromEntries(Object.entries(fields).map(([k, f]) => [k, toField(f)])) as ModbusDefinition['fields'];
  const decimals = typeof d.scaling.decimals === 'number' ? d.scaling.decimals : { statusMask: d.scaling.decimals.status_mask };
  const statusBits: ModbusDefinition['statusBits'] = {};
  if (d.status_bits.unstable !== undefined) statusBits.unstable = d.status_bits.unstable;
  if (d.status_bits.overload !== undefined) statusBits.overload = d.status_bits.overload;
  if (d.status_bits.sign !== undefined) statusBits.sign = d.status_bits.sign;
  const definition: ModbusDefinition = {
    ...base,
    protocol: 'modbus-rtu',
    capacityG: d.capacity_g,
    reads: d.reads.map((r) => ({ function: r.function, address: r.address, count: r.count })),
    fields: mappedFields,
    scaling: { unit: d.scaling.unit, factor: d.scaling.factor, decimals },
    statusBits,
  };
  return { definition, issues };
}

/** The default definitions folder: `<repo>/devices`. */
export function defaultDefinitionsDir(): string {
  try {
    return join(repoRoot(), 'devices');
  } catch (e) {
    throw new ShelfgateError(ErrorCode.DEVICE_DEFINITION_INVALID, `cannot find devices/: ${(e as Error).message}`);
  }
}

/**
 * Loads and validates every `*.yaml` / `*.yml` in `dir` (default: the repository's devices/),
 * keyed by id and frozen. Throws ShelfgateError(DEVICE_DEFINITION_INVALID) listing every issue of
 * every file in its message, with the DefinitionIssue[] in `details`.
 */
export function loadDefinitions(dir: string = defaultDefinitionsDir()): Map<string, DeviceDefinition> {
  return loadYamlFolder(dir, {
    what: 'device definitions',
    emptyMessage: 'no device definition files (*.yaml)',
    validate: (raw, file) => {
      const r = validateDefinition(raw, file);
      return { value: r.definition, issues: r.issues };
    },
  });
}
