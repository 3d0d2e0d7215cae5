/**
 * Device models are data (after zigbee-herdsman-converters): a definition in
 * devices/*.yaml names its protocol, its serial settings and, for Modbus, its register map and
 * scaling. Adding a load-cell model with another register map needs a new YAML file, no code.
 * The schema that validates these files lives in src/devices/definitions.ts.
 */
import type { SerialSettings } from '../transport/types';

export type Protocol = 'mt-sics' | 'modbus-rtu';

export interface BaseDefinition {
  /** Stable id used in the config's `model:` field, e.g. `generic-modbus-loadcell`. */
  id: string;
  protocol: Protocol;
  vendor: string;
  description: string;
  serial: SerialSettings;
  /** Default response timeout for one request, ms. */
  timeoutMs: number;
}

/**
 * Largest gross weight the model measures, grams. A reading above it (or below minus it) cannot
 * come from goods on the platform: the sources flag it overload (underload) instead of passing on a
 * number that would become a count in the millions.
 */
export interface WeighingCapacity {
  capacityG: number;
}

export interface MtSicsDefinition extends BaseDefinition, WeighingCapacity {
  protocol: 'mt-sics';
  /**
   * `poll`: the gateway asks for every weight (pollCommand). `stream`: the gateway sends
   * streamCommand once the link is up and the scale keeps sending weights by itself.
   */
  mode: 'poll' | 'stream';
  /** Command used to poll: `SI` (immediate, reports S/D stability) or `S` (waits for stable). */
  pollCommand: 'SI' | 'S';
  /** Command that starts continuous output in stream mode: `SIR` (every weight, immediately, repeated). */
  streamCommand: 'SIR';
}

export type RegisterType = 'uint16' | 'int16' | 'uint32be' | 'int32be' | 'uint32le' | 'int32le';

export interface ModbusField {
  /** Register address (0-based, as on the wire). */
  register: number;
  type: RegisterType;
}

export interface ModbusBlockRead {
  function: 3 | 4;
  address: number;
  count: number;
}

export interface ModbusDefinition extends BaseDefinition, WeighingCapacity {
  protocol: 'modbus-rtu';
  /** Register blocks read on every poll of one address, in order. Every field must fall inside one. */
  reads: ModbusBlockRead[];
  /** Named fields decoded from the blocks. `weight` is required; `status` is optional. */
  fields: { weight: ModbusField; status?: ModbusField } & Record<string, ModbusField>;
  /** Weight value = raw * 10^-decimals * factor, in `unit`. */
  scaling: {
    unit: 'g' | 'kg';
    factor: number;
    /** Fixed decimals, or read from the status register with this mask (bits 2-0 -> mask 0x07). */
    decimals: number | { statusMask: number };
  };
  /** Bits of the status field (bit index, 0 = LSB). */
  statusBits: { unstable?: number; overload?: number; sign?: number };
}

export type DeviceDefinition = MtSicsDefinition | ModbusDefinition;
