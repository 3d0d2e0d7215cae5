import type { StreamingLink } from '../../core/sources/streaming-source';
import type { Source } from '../../core/sources/types';
import type { DeviceDefinition } from '../../devices/types';
import { ErrorCode, ShelfgateError } from '../../errors';
import type { Logger } from '../../log';
import { ModbusLoadCellSource } from './modbus-source';
import { MtSicsSource, MtSicsStreamSource } from './mtsics-source';
import type { WeightReading } from './types';

/** What every weight source of one bus is built from (the bus config plus its link). */
export interface WeightSourceOptions {
  name: string;
  busId: string;
  link: StreamingLink;
  pollIntervalMs: number;
  /** Misses before offline; a streaming scale is offline after `missesToOffline` x `timeoutMs` of silence. */
  missesToOffline: number;
  timeoutMs: number;
  log: Logger;
  /** Modbus: the addresses polled on this bus. */
  addresses: readonly number[];
  /** Modbus: for the t3.5 gap. */
  baudRate: number;
  /** Modbus: false for in-memory links, where there is no line silence to keep. */
  serialTiming: boolean;
}

/**
 * The weight source a device definition calls for: a polled Modbus bus, a polled MT-SICS scale,
 * or an MT-SICS scale streaming continuously (`mode: stream`). The caller only wires its events.
 */
export function createWeightSource(def: DeviceDefinition, o: WeightSourceOptions): Source<WeightReading> {
  const common = { name: o.name, busId: o.busId, link: o.link, log: o.log };
  switch (def.protocol) {
    case 'modbus-rtu':
      return new ModbusLoadCellSource({
        ...common,
        definition: def,
        addresses: o.addresses,
        pollIntervalMs: o.pollIntervalMs,
        missesToOffline: o.missesToOffline,
        timeoutMs: o.timeoutMs,
        baudRate: o.baudRate,
        serialTiming: o.serialTiming,
      });
    case 'mt-sics':
      if (def.mode === 'stream') return new MtSicsStreamSource({ ...common, definition: def, silenceMs: o.timeoutMs * o.missesToOffline });
      return new MtSicsSource({ ...common, definition: def, pollIntervalMs: o.pollIntervalMs, missesToOffline: o.missesToOffline, timeoutMs: o.timeoutMs });
    default:
      throw new ShelfgateError(ErrorCode.DEVICE_MODEL_UNKNOWN, `model ${(def as DeviceDefinition).id} is not a weighing device`);
  }
}
