import { performance } from 'node:perf_hooks';
import { ErrorCode, ShelfgateError } from '../../errors';
import type { MtSicsDefinition } from '../../devices/types';
import { LineFramer } from '../../drivers/lines';
import { answersCommand, encodeSicsCommand, parseSicsResponse, toGrams, type SicsResponse } from '../../drivers/mtsics';
import { PolledSource, type PolledSourceOptions } from '../../core/sources/polled-source';
import type { RequestOptions } from '../../core/sources/channel';
import { StreamingSource, type StreamDecoder, type StreamSink, type StreamingLink } from '../../core/sources/streaming-source';
import type { Logger } from '../../log';
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

/**
 * Decodes an MT-SICS scale's continuous output (after `SIR`): every line is an SI answer,
 * `S S <v> <u>` stable or `S D <v> <u>` dynamic, or `S +`/`S -` overload/underload, `S I` not
 * executable (METTLER TOLEDO MT-SICS Reference Manual, SI and SIR). The same strict line framing
 * and grammar as the poll path: a line with a control byte or a malformed value is an invalid
 * frame, never a weight. A valid answer to another command (the scale is there, but this is no
 * weight) only keeps the scale alive; `ES`/`ET`/`EL` count as device errors.
 */
export class MtSicsStreamDecoder implements StreamDecoder<WeightReading> {
  private readonly framer = new LineFramer({ maxLineBytes: 128 });
  private seenRejected = 0;
  private seenOverlong = 0;

  constructor(
    private readonly sensor: string,
    private readonly capacityG: number,
  ) {}

  decode(chunk: Buffer, sink: StreamSink<WeightReading>): void {
    const lines = this.framer.push(chunk);
    const { rejected, overlong } = this.framer;
    for (; this.seenRejected < rejected; this.seenRejected++) sink.invalid();
    for (; this.seenOverlong < overlong; this.seenOverlong++) sink.invalid('overlong line');
    for (const line of lines) {
      let r: SicsResponse;
      try {
        r = parseSicsResponse(line);
      } catch (e) {
        sink.invalid((e as Error).message);
        continue;
      }
      const { sensor } = this;
      if (r.kind === 'weight' && answersCommand('SIR', r)) {
        let grams: number;
        try {
          grams = toGrams(r.value, r.unit);
        } catch (e) {
          sink.invalid((e as Error).message);
          continue;
        }
        const overload = overCapacity(grams, this.capacityG);
        const underload = underCapacity(grams, this.capacityG);
        sink.reading({ sensor, grams, deviceStable: r.stable, overload, underload, ts: sink.ts, rxMono: sink.rxMono });
      } else if (r.kind === 'status' && r.cmd === 'S' && (r.status === '+' || r.status === '-' || r.status === 'I')) {
        sink.reading({ sensor, grams: Number.NaN, deviceStable: false, overload: r.status === '+', underload: r.status === '-', ts: sink.ts, rxMono: sink.rxMono });
      } else if (r.kind === 'error') {
        sink.deviceError(sensor, `scale ${sensor} sent ${r.code}`);
      } else {
        sink.alive(sensor);
      }
    }
  }

  reset(): void {
    this.framer.reset();
  }
}

export interface MtSicsStreamSourceOptions {
  name: string;
  busId: string;
  link: StreamingLink;
  definition: MtSicsDefinition;
  /** No weight line for this long: the scale is offline (reason silent). */
  silenceMs: number;
  log: Logger;
}

/**
 * One MT-SICS scale in continuous mode: `SIR` ("send weight immediately and repeat") is written
 * whenever the link comes up (and again while the scale is silent: after a power cycle it forgets
 * SIR), and the scale pushes a weight line several times a second. On stop `SI` ends the
 * repetition (the Reference Manual: a following S, SI, SR or @ cancels SIR; SI is the one without
 * side effects, whereas @ also resets the scale).
 */
export class MtSicsStreamSource extends StreamingSource<WeightReading> {
  constructor(o: MtSicsStreamSourceOptions) {
    const sensor = sensorKey(o.busId);
    super({
      name: o.name,
      link: o.link,
      devices: [sensor],
      decoder: new MtSicsStreamDecoder(sensor, o.definition.capacityG),
      silenceMs: o.silenceMs,
      startFrames: [encodeSicsCommand(o.definition.streamCommand)],
      stopFrames: [encodeSicsCommand('SI')],
      log: o.log,
    });
  }
}
