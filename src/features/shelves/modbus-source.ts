import { performance } from 'node:perf_hooks';
import { ErrorCode, ShelfgateError } from '../../errors';
import type { ModbusDefinition } from '../../devices/types';
import { decodeLoadCell } from '../../drivers/loadcell';
import { encodeReadRequest, RtuResponseFramer, t35Ms } from '../../drivers/modbus';
import { PolledSource, type PolledSourceOptions } from '../../core/sources/polled-source';
import type { RequestOptions } from '../../core/sources/channel';
import { overCapacity, sensorKey, underCapacity, type WeightReading } from './types';

export interface ModbusSourceOptions extends Omit<PolledSourceOptions, 'sensors' | 'gapMs'> {
  busId: string;
  definition: ModbusDefinition;
  addresses: readonly number[];
  timeoutMs: number;
  baudRate: number;
  /** False for in-memory links (tests, benchmarks), where there is no line silence to keep. */
  serialTiming: boolean;
}

/**
 * A Modbus RTU load-cell bus: many transmitters on one RS-485 line, polled strictly one request at
 * a time (Modbus over serial line V1.02 §2.1). The register map comes from the device definition,
 * so a new transmitter model is a YAML file in devices/, not code here.
 *
 * Late answers: the response framer only takes an answer with the expected address, function and
 * byte count, so a late answer from address 1 is skipped while address 2 is polled. But an RTU
 * answer names no register, so a late answer is taken by the next request with the same address,
 * function and count (the next cycle's poll of that address, or a same-sized block): each request
 * carries that triple as its channel key, and after a timeout the channel holds the next request
 * with the same key until the line is quiet (RequestChannel, lateGuardMs = the timeout).
 */
export class ModbusLoadCellSource extends PolledSource<WeightReading> {
  private readonly framer = new RtuResponseFramer();
  private readonly byKey = new Map<string, number>();
  private readonly requests: Map<number, Buffer[]>;
  /** Channel options per address and read block: the late-answer key `address:function:count`. */
  private readonly requestOpts: Map<number, RequestOptions[]>;
  /** When the last whole answer arrived (performance.now()). */
  private rxMono = 0;
  /** The decoder handed to the channel: one function for every request, not a closure per poll. */
  private readonly feed = (chunk: Buffer): ReturnType<RtuResponseFramer['push']> => {
    const r = this.framer.push(chunk);
    if (r) this.rxMono = performance.now();
    return r;
  };

  constructor(private readonly mopts: ModbusSourceOptions) {
    super({
      ...mopts,
      sensors: mopts.addresses.map((a) => sensorKey(mopts.busId, a)),
      // t3.5 silence between frames (§2.5.1.1); the answer itself already gives the gap before it.
      gapMs: mopts.serialTiming ? Math.ceil(t35Ms(mopts.baudRate)) : 0,
      lateGuardMs: mopts.lateGuardMs ?? mopts.timeoutMs,
    });
    for (const a of mopts.addresses) this.byKey.set(sensorKey(mopts.busId, a), a);
    // Requests are the same bytes every poll: encode them once per address.
    this.requests = new Map(
      mopts.addresses.map((a) => [a, mopts.definition.reads.map((r) => encodeReadRequest(a, r.function, r.address, r.count))]),
    );
    this.requestOpts = new Map(
      mopts.addresses.map((a) => [
        a,
        // expect() as the request is written: bytes still buffered from before are stale and dropped.
        mopts.definition.reads.map((r) => ({ key: `${a}:${r.function}:${r.count}`, begin: () => this.framer.expect(a, r.function, r.count) })),
      ]),
    );
  }

  get framerStats(): { dropped: number; crcErrors: number } {
    return { dropped: this.framer.dropped, crcErrors: this.framer.crcErrors };
  }

  protected async pollSensor(sensor: string): Promise<WeightReading> {
    const address = this.byKey.get(sensor)!;
    const { definition, timeoutMs } = this.mopts;
    const frames = this.requests.get(address)!;
    const opts = this.requestOpts.get(address)!;
    const blocks: { address: number; registers: number[] }[] = [];
    for (let i = 0; i < definition.reads.length; i++) {
      const read = definition.reads[i]!;
      const res = await this.channel.request(frames[i]!, this.feed, timeoutMs, opts[i]);
      if (res.type === 'crc-error') throw new ShelfgateError(ErrorCode.FRAME_CRC, `CRC error in answer from address ${address}`);
      if (res.type === 'exception')
        throw new ShelfgateError(ErrorCode.DEVICE_ERROR_RESPONSE, `address ${address} answered exception ${res.code} to function ${read.function}`);
      blocks.push({ address: read.address, registers: res.registers });
    }
    const d = decodeLoadCell(definition, blocks);
    const cap = definition.capacityG;
    return {
      sensor,
      grams: d.grams,
      deviceStable: definition.statusBits.unstable === undefined ? null : !d.unstable,
      // the transmitter's own overflow bit, or a value no load on the cell can produce
      overload: d.overload || overCapacity(d.grams, cap),
      underload: underCapacity(d.grams, cap),
      ts: Date.now(),
      rxMono: this.rxMono,
    };
  }
}
