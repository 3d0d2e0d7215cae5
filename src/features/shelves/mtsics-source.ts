import { performance } from 'node:perf_hooks';
import { ErrorCode, ShelfgateError } from '../../errors';
import type { MtSicsDefinition } from '../../devices/types';
import { LineFramer } from '../../drivers/lines';
import { answersCommand, encodeSicsCommand, parseSicsResponse, toGrams, type SicsResponse } from '../../drivers/mtsics';
import { PolledSource, type PolledSourceOptions } from '../../core/sources/polled-source';
import type { RequestOptions } from '../../core/sources/channel';
import { overCapacity, sensorKey, underCapacity, type WeightReading } from './types';

export interface MtSicsSourceOptions extends Omit<PolledSourceOptions, 'sensors' | 'gapMs'> {
  busId: string;
  definition: MtSicsDefinition;
  timeoutMs: number;
}

/**
 * One MT-SICS scale on its own serial line (RS-232/USB). Polls with SI (immediate weight with a
 * stability flag) or S, per the device definition. `S I` (busy) is an answer, not a miss. A weight
 * beyond the model's capacity is flagged overload (underload below minus the capacity).
 *
 * An answer is only taken for the command it answers (answersCommand: a `T S` or `Z A` line during
 * a weight poll is a stray answer to an earlier command, counted in lateAnswers and skipped), only
 * from bytes that arrived after the request was written (the framer is reset as each request
 * starts), and never after its timeout: a late answer is drained by the channel's late-answer
 * guard, so a scale that always answers late misses every poll and goes offline instead of
 * staying online one poll behind.
 */
export class MtSicsSource extends PolledSource<WeightReading> {
  private readonly framer = new LineFramer({ maxLineBytes: 128 });
  private readonly sensor: string;
  private readonly pollFrame: Buffer;
  /** Framer counters already added to the stats. */
  private seenRejected = 0;
  private seenOverlong = 0;
  /** When the last poll answer arrived (performance.now()). */
  private rxMono = 0;
  /** Every request starts from an empty framer: a partial line left from before is not part of its answer. */
  private readonly requestOpts: RequestOptions = { begin: () => this.framer.reset() };
  /** The poll decoder: one function for every poll, not a closure per poll. */
  private readonly pollFeed = (chunk: Buffer): SicsResponse | null => {
    const r = this.firstAnswer(chunk, this.sopts.definition.pollCommand);
    if (r) this.rxMono = performance.now();
    return r;
  };

  constructor(private readonly sopts: MtSicsSourceOptions) {
    super({ ...sopts, sensors: [sensorKey(sopts.busId)], gapMs: 0, lateGuardMs: sopts.lateGuardMs ?? sopts.timeoutMs });
    this.sensor = sensorKey(sopts.busId);
    this.pollFrame = encodeSicsCommand(sopts.definition.pollCommand);
  }

  /** Sends a command (Z, T, ...) and returns the parsed answer: used by calibration. */
  command(cmd: string): Promise<SicsResponse> {
    return this.channel.request(encodeSicsCommand(cmd), (chunk) => this.firstAnswer(chunk, cmd), this.sopts.timeoutMs, this.requestOpts);
  }

  protected async pollSensor(sensor: string): Promise<WeightReading> {
    const res = await this.channel.request(this.pollFrame, this.pollFeed, this.sopts.timeoutMs, this.requestOpts);
    const ts = Date.now();
    const rxMono = this.rxMono;
    // MT-SICS level 0: S / SI answer `S S|D <value> <unit>`, or `S I|+|-` without a value.
    if (res.kind === 'weight') {
      const grams = toGrams(res.value, res.unit);
      const cap = this.sopts.definition.capacityG;
      return { sensor, grams, deviceStable: res.stable, overload: overCapacity(grams, cap), underload: underCapacity(grams, cap), ts, rxMono };
    }
    if (res.kind === 'status' && (res.status === '+' || res.status === '-' || res.status === 'I'))
      return { sensor, grams: Number.NaN, deviceStable: false, overload: res.status === '+', underload: res.status === '-', ts, rxMono };
    if (res.kind === 'error') throw new ShelfgateError(ErrorCode.DEVICE_ERROR_RESPONSE, `scale ${this.sensor} answered ${res.code}`);
    throw new ShelfgateError(ErrorCode.FRAME_INVALID, `unexpected answer from scale ${this.sensor}`);
  }

  /**
   * Feeds bytes to the line framer; the first line that parses and answers `cmd` is the answer.
   * Lines the framer rejects (a control byte) or that do not parse count as invalid frames; valid
   * answers to another command count as late answers. Neither ends the request: the real answer
   * may still follow within the timeout.
   */
  private firstAnswer(chunk: Buffer, cmd: string): SicsResponse | null {
    const lines = this.framer.push(chunk);
    this.countFramerDrops();
    for (const line of lines) {
      let r: SicsResponse;
      try {
        r = parseSicsResponse(line);
      } catch {
        this.stats.invalidFrames++;
        continue;
      }
      if (answersCommand(cmd, r)) return r;
      this.stats.lateAnswers++;
    }
    return null;
  }

  private countFramerDrops(): void {
    const { rejected, overlong } = this.framer;
    if (rejected !== this.seenRejected || overlong !== this.seenOverlong) {
      this.stats.invalidFrames += rejected - this.seenRejected + (overlong - this.seenOverlong);
      this.seenRejected = rejected;
      this.seenOverlong = overlong;
    }
  }
}
