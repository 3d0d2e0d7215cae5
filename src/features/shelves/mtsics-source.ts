import { performance } from 'node:perf_hooks';
import { ErrorCode, ShelfgateError } from '../../errors';
import type { MtSicsDefinition } from '../../devices/types';
import { LineFramer } from '../../drivers/lines';
import { encodeSicsCommand, parseSicsResponse, toGrams } from '../../drivers/mtsics';
import { PolledSource, type PolledSourceOptions } from '../../core/sources/polled-source';
import { sensorKey, type WeightReading } from './types';

export interface MtSicsSourceOptions extends Omit<PolledSourceOptions, 'sensors' | 'gapMs'> {
  busId: string;
  definition: MtSicsDefinition;
  timeoutMs: number;
}

/**
 * One MT-SICS scale on its own serial line (RS-232/USB). Polls with SI (immediate weight with a
 * stability flag) or S, per the device definition. `S I` (busy) is an answer, not a miss.
 */
export class MtSicsSource extends PolledSource<WeightReading> {
  private readonly framer = new LineFramer({ maxLineBytes: 128 });
  private readonly sensor: string;
  private readonly pollFrame: Buffer;
  /** When the last poll answer arrived (performance.now()). */
  private rxMono = 0;
  /** The poll decoder: one function for every poll, not a closure per poll. */
  private readonly pollFeed = (chunk: Buffer): ReturnType<typeof parseSicsResponse> | null => {
    const r = this.firstAnswer(chunk);
    if (r) this.rxMono = performance.now();
    return r;
  };

  constructor(private readonly sopts: MtSicsSourceOptions) {
    super({ ...sopts, sensors: [sensorKey(sopts.busId)], gapMs: 0 });
    this.sensor = sensorKey(sopts.busId);
    this.pollFrame = encodeSicsCommand(sopts.definition.pollCommand);
  }

  /** Sends a command (Z, T, ...) and returns the parsed answer: used by calibration. */
  command(cmd: string): Promise<ReturnType<typeof parseSicsResponse>> {
    return this.channel.request(encodeSicsCommand(cmd), (chunk) => this.firstAnswer(chunk), this.sopts.timeoutMs);
  }

  protected async pollSensor(sensor: string): Promise<WeightReading> {
    const res = await this.channel.request(this.pollFrame, this.pollFeed, this.sopts.timeoutMs);
    const ts = Date.now();
    const rxMono = this.rxMono;
    // MT-SICS level 0: S / SI answer `S S|D <value> <unit>`, or `S I|+|-` without a value.
    if (res.kind === 'weight')
      return { sensor, grams: toGrams(res.value, res.unit), deviceStable: res.stable, overload: false, underload: false, ts, rxMono };
    if (res.kind === 'status' && (res.status === '+' || res.status === '-' || res.status === 'I'))
      return { sensor, grams: Number.NaN, deviceStable: false, overload: res.status === '+', underload: res.status === '-', ts, rxMono };
    if (res.kind === 'error') throw new ShelfgateError(ErrorCode.DEVICE_ERROR_RESPONSE, `scale ${this.sensor} answered ${res.code}`);
    throw new ShelfgateError(ErrorCode.FRAME_INVALID, `unexpected answer from scale ${this.sensor}`);
  }

  /** Feeds bytes to the line framer; the first parsable line is the answer. Unparsable lines count as invalid frames. */
  private firstAnswer(chunk: Buffer): ReturnType<typeof parseSicsResponse> | null {
    for (const line of this.framer.push(chunk)) {
      if (line.trim() === '') continue;
      try {
        return parseSicsResponse(line);
      } catch {
        this.stats.invalidFrames++;
      }
    }
    return null;
  }
}
