/**
 * One MagicRF M100 / QM100 serial UHF module (R200, JRD-4035, YRM100...) as a StreamingSource:
 * the module pushes tag notifications during multi-poll and the gateway listens. Protocol in
 * src/drivers/m100.ts and docs/m100.md.
 *
 * Each time the link comes up (and again while the module is silent, after a power cycle behind a
 * link that stayed up) the start sequence is written: the transmit power when configured, then
 * multi-poll with `pollCount` rounds. On stop() multi-poll is stopped.
 *
 * Design choices:
 * - Multi-poll ends by itself after its count, and a module busy in multi-poll may ignore other
 *   commands. So a tick every `probeMs` writes the hardware-version probe, and when no inventory
 *   activity (a tag notification or a "no tag" error) came for `rearmMs`, re-arms: stop multi-poll,
 *   probe, multi-poll again. Whatever the module state (still polling an empty field, finished its
 *   count, or reset), one of those three gets an answer, so a module that is there never looks
 *   silent, and inventory always resumes. With tags in the field notifications keep coming and no
 *   re-arm happens (no gap in reads).
 * - Liveness is the base class's: any good frame (a notification, a "no tag" error, the probe's or
 *   the stop's answer) counts; none for `silenceMs` is offline (reason `silent`). A dropped link
 *   is offline at once and the ReconnectingLink reconnects on its own.
 * - A tag read carries the raw EPC hex: decoding it (SGTIN-96 to GTIN) belongs to the feature.
 * - "No tag" (error 0x15) is the normal answer of an empty field, not a device error; every other
 *   error code is a device error (counted and logged rate-limited), and the module is alive.
 * - Frame drops are counted by reason (decoderStats): checksum and tag CRC also in
 *   stats.crcErrors, the others in stats.invalidFrames, skipped bytes in stats.noiseBytes.
 */
import { StreamingSource, type StreamDecoder, type StreamSink, type StreamingLink } from '../../core/sources/streaming-source';
import type { SourceReading } from '../../core/sources/types';
import {
  hardwareVersionCommand,
  M100_FRAMING_BB7E,
  M100Cmd,
  M100Decoder,
  M100Info,
  multiPollCommand,
  parseInfoResponse,
  parseStatusResponse,
  setTxPowerCommand,
  stopMultiPollCommand,
  type M100BadReason,
  type M100DecoderStats,
  type M100Framing,
  type M100Message,
} from '../../drivers/m100';
import { LogLimiter, type Logger } from '../../log';
import type { SerialSettings } from '../../transport/types';

/** One tag seen by one antenna of one reader. */
export interface TagRead extends SourceReading {
  /** The reader's id (same as `sensor`). */
  reader: string;
  /** 1-based antenna port; an M100 module has one. */
  antenna: number;
  /** The EPC as upper-case hex, undecoded. */
  epcHex: string;
  /** Signed dBm. */
  rssi: number;
}

/** The module's factory line settings (MagicRF M100 manual): 115200 8N1. */
export const M100_SERIAL: Readonly<SerialSettings> = Object.freeze({ baudRate: 115200, dataBits: 8, parity: 'none', stopBits: 1 });

export interface M100SourceOptions {
  /** Source name (logs). */
  name: string;
  /** Reader id: the device key of its reads and availability. Topic-safe. */
  reader: string;
  link: StreamingLink;
  log: Logger;
  /** Header/trailer bytes; default BB/7E. */
  framing?: M100Framing;
  /** Transmit power written at start, dBm (0.01 dBm steps). Default: leave the module's setting. */
  txPowerDbm?: number;
  /** Rounds per multi-poll command, 1-65535. Default 10000. */
  pollCount?: number;
  /** Tick of the hardware-version probe, ms. Default 2000. */
  probeMs?: number;
  /** No inventory activity for this long: stop, probe and start multi-poll again, ms. Default 3000. */
  rearmMs?: number;
  /** No frame at all for this long: offline, ms. Default 3 x probeMs. */
  silenceMs?: number;
  /** Largest frame length believed. Default 255. */
  maxParamBytes?: number;
}

/** Counters beyond SourceStats. */
export interface M100SourceStats {
  /** Re-arm sequences written (stop, probe, multi-poll). */
  rearms: number;
  /** Hardware-version probes written. */
  probes: number;
  /** "No tag" answers (normal, not errors). */
  noTag: number;
}

/**
 * Turns the module's byte stream into tag reads for one reader; tells the source about inventory
 * activity (for re-arming) and the hardware version when the probe's answer comes.
 */
export class M100StreamDecoder implements StreamDecoder<TagRead> {
  private readonly decoder: M100Decoder;
  private sink: StreamSink<TagRead> | null = null;
  /** The module's hardware version string, once the probe was answered. */
  hardwareVersion: string | null = null;
  noTag = 0;

  private readonly handler = {
    message: (m: M100Message): void => this.onMessage(m),
    bad: (reason: M100BadReason, detail: string): void => {
      if (reason === 'checksum' || reason === 'tagCrc') this.sink!.crcError();
      else this.sink!.invalid(`${reason}: ${detail}`);
    },
    noise: (bytes: number): void => this.sink!.noise(bytes),
  };

  constructor(
    private readonly reader: string,
    opts: { framing?: M100Framing; maxParamBytes?: number } = {},
    /** Called on every tag notification and "no tag" answer. */
    private readonly onInventory: () => void = () => undefined,
  ) {
    this.decoder = new M100Decoder({ framing: opts.framing ?? M100_FRAMING_BB7E, ...(opts.maxParamBytes !== undefined ? { maxParamBytes: opts.maxParamBytes } : {}) });
  }

  /** The codec's counters: good frames, noise, drops by reason. */
  get stats(): M100DecoderStats {
    return this.decoder.stats;
  }

  decode(chunk: Buffer, sink: StreamSink<TagRead>): void {
    this.sink = sink;
    this.decoder.decode(chunk, this.handler);
  }

  reset(): void {
    this.decoder.reset();
  }

  private onMessage(m: M100Message): void {
    const sink = this.sink!;
    const reader = this.reader;
    switch (m.kind) {
      case 'tag':
        this.onInventory();
        sink.reading({ sensor: reader, reader, antenna: 1, epcHex: m.tag.epcHex, rssi: m.tag.rssi, ts: sink.ts, rxMono: sink.rxMono });
        return;
      case 'error':
        sink.alive(reader);
        if (m.noTag) {
          this.noTag++;
          this.onInventory();
        } else sink.deviceError(reader, `M100 error 0x${m.code.toString(16).padStart(2, '0')}: ${m.description}`);
        return;
      case 'response':
        sink.alive(reader);
        this.onResponse(m.frame.cmd, m.frame.params, sink);
        return;
      case 'command':
        // A module never sends commands: an echo (a loop-back adapter) or another host on the line.
        sink.invalid('a host command came from the module side');
        return;
    }
  }

  private onResponse(cmd: number, params: Buffer, sink: StreamSink<TagRead>): void {
    try {
      if (cmd === M100Cmd.GET_INFO) {
        const r = parseInfoResponse(params);
        if (r.info === M100Info.HARDWARE) this.hardwareVersion = r.text;
      } else if (cmd === M100Cmd.SET_TX_POWER && !parseStatusResponse(params)) {
        sink.deviceError(this.reader, 'M100 refused the transmit power');
      }
    } catch (e) {
      sink.invalid((e as Error).message);
    }
  }
}

/** A serial M100/R200 module: streams tag reads, keeps multi-poll running, probes liveness. */
export class M100Source extends StreamingSource<TagRead> {
  readonly reader: string;
  private readonly counters = { rearms: 0, probes: 0 };
  private readonly m100: M100StreamDecoder;
  private readonly m100Link: StreamingLink;
  private readonly m100Limiter: LogLimiter;
  private readonly probeMs: number;
  private readonly rearmMs: number;
  private readonly probeFrame: Buffer;
  private readonly rearmFrames: readonly Buffer[];
  private ticker: NodeJS.Timeout | null = null;
  private lastInventoryMono = 0;
  private active = false;

  private readonly onLinkOnline = (): void => {
    this.lastInventoryMono = performance.now(); // the start sequence is just being written
  };
  private readonly onTick = (): void => {
    if (!this.active || !this.m100Link.online) return;
    if (performance.now() - this.lastInventoryMono >= this.rearmMs) {
      this.counters.rearms++;
      this.counters.probes++;
      this.lastInventoryMono = performance.now();
      this.writeAll(this.rearmFrames, 'rearm');
    } else {
      this.counters.probes++;
      this.writeAll([this.probeFrame], 'probe');
    }
  };

  constructor(o: M100SourceOptions) {
    const framing = o.framing ?? M100_FRAMING_BB7E;
    const probeMs = o.probeMs ?? 2000;
    const rearmMs = o.rearmMs ?? 3000;
    const silenceMs = o.silenceMs ?? 3 * probeMs;
    if (!(probeMs > 0) || !(rearmMs > 0)) throw new RangeError(`probeMs and rearmMs must be > 0, got ${probeMs}, ${rearmMs}`);
    const start = multiPollCommand(o.pollCount ?? 10000, framing);
    const probe = hardwareVersionCommand(framing);
    const stop = stopMultiPollCommand(framing);
    let onInventory = (): void => undefined;
    const decoder = new M100StreamDecoder(o.reader, { framing, ...(o.maxParamBytes !== undefined ? { maxParamBytes: o.maxParamBytes } : {}) }, () => onInventory());
    super({
      name: o.name,
      link: o.link,
      devices: [o.reader],
      decoder,
      silenceMs,
      startFrames: [...(o.txPowerDbm !== undefined ? [setTxPowerCommand(o.txPowerDbm, framing)] : []), probe, start],
      stopFrames: [stop],
      log: o.log,
    });
    onInventory = () => {
      this.lastInventoryMono = performance.now();
    };
    this.reader = o.reader;
    this.m100 = decoder;
    this.m100Link = o.link;
    this.m100Limiter = new LogLimiter(o.log);
    this.probeMs = probeMs;
    this.rearmMs = rearmMs;
    this.probeFrame = probe;
    this.rearmFrames = [stop, probe, start];
  }

  /** The module's hardware version (e.g. "M100 26dBm V1.0"), once it answered the probe. */
  get hardwareVersion(): string | null {
    return this.m100.hardwareVersion;
  }

  /** The codec's counters: good frames, noise bytes, dropped frames by reason. */
  get decoderStats(): M100DecoderStats {
    return this.m100.stats;
  }

  /** Re-arms, probes and "no tag" answers so far. */
  get m100Stats(): M100SourceStats {
    return { ...this.counters, noTag: this.m100.noTag };
  }

  override async start(): Promise<void> {
    if (this.active) return;
    this.active = true;
    this.lastInventoryMono = performance.now();
    this.m100Link.on('online', this.onLinkOnline);
    this.ticker = setInterval(this.onTick, this.probeMs);
    await super.start();
  }

  override async stop(): Promise<void> {
    if (!this.active) return;
    this.active = false;
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = null;
    this.m100Link.off('online', this.onLinkOnline);
    await super.stop();
  }

  private writeAll(frames: readonly Buffer[], what: string): void {
    void (async () => {
      for (const f of frames) await this.m100Link.write(f);
    })().catch((e: Error) => this.m100Limiter.warn(`${this.name}:${what}`, { sensor: this.reader, err: e.message }, `could not write the M100 ${what}`));
  }
}
