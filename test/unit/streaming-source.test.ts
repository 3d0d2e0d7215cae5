/**
 * StreamingSource with a fake link and a toy line protocol (`<device>:<grams>` readings, `<device>:ok`
 * keep-alives, `!crc` checksum failures, `E<device>` device errors, anything else invalid), under
 * fake timers so silence is exact.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { StreamingSource, type StreamDecoder, type StreamSink } from '../../src/core/sources/streaming-source';
import type { DeviceAvailability, SourceReading } from '../../src/core/sources/types';
import { silentLogger } from '../../src/log';
import { FakeLink } from '../helpers/fake-link';

interface ToyReading extends SourceReading {
  grams: number;
}

class ToyDecoder implements StreamDecoder<ToyReading> {
  private buf = '';
  resets = 0;
  throwOn: string | null = null;
  decode(chunk: Buffer, sink: StreamSink<ToyReading>): void {
    this.buf += chunk.toString('latin1');
    let i: number;
    while ((i = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, i);
      this.buf = this.buf.slice(i + 1);
      if (line === this.throwOn) throw new Error('decoder bug');
      const m = /^([a-z]):(-?\d+|ok)$/.exec(line);
      if (m && m[2] === 'ok') sink.alive(m[1]!);
      else if (m) sink.reading({ sensor: m[1]!, grams: Number(m[2]), ts: sink.ts, rxMono: sink.rxMono });
      else if (line === '!crc') sink.crcError();
      else if (/^E[a-z]$/.test(line)) sink.deviceError(line[1]!, 'device says E');
      else {
        sink.noise(line.length);
        sink.invalid();
      }
    }
  }
  reset(): void {
    this.buf = '';
    this.resets++;
  }
}

const SILENCE = 100;
/** Lets the fake link's microtask deliveries run. */
const flush = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

function setup(o: { devices?: string[]; start?: string[]; stop?: string[]; restartWhenSilent?: boolean } = {}) {
  const link = new FakeLink();
  const decoder = new ToyDecoder();
  const src = new StreamingSource<ToyReading>({
    name: 'toy',
    link,
    devices: o.devices ?? ['a'],
    decoder,
    silenceMs: SILENCE,
    startFrames: (o.start ?? ['GO\r\n']).map((s) => Buffer.from(s)),
    stopFrames: (o.stop ?? ['HALT\r\n']).map((s) => Buffer.from(s)),
    ...(o.restartWhenSilent !== undefined ? { restartWhenSilent: o.restartWhenSilent } : {}),
    log: silentLogger(),
  });
  const readings: ToyReading[] = [];
  const avail: DeviceAvailability[] = [];
  src.on('reading', (r) => readings.push(r));
  src.on('availability', (a) => avail.push(a));
  return { link, decoder, src, readings, avail };
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date', 'performance'] });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('StreamingSource', () => {
  it('writes the start sequence when it starts on a live link, and emits decoded readings with their arrival times', async () => {
    const { link, src, readings, avail } = setup();
    await src.start();
    expect(link.writtenText()).toBe('GO\r\n');
    vi.setSystemTime(1_700_000_000_000);
    link.fromDevice('a:12');
    link.fromDevice('5\na:-3\n'); // split across chunks, and two frames in one chunk
    await flush();
    expect(readings.map((r) => r.grams)).toEqual([125, -3]);
    expect(readings[0]!.ts).toBe(1_700_000_000_000);
    expect(typeof readings[0]!.rxMono).toBe('number');
    expect(avail).toEqual([{ sensor: 'a', online: true, ts: 1_700_000_000_000 }]);
    expect(src.isOnline('a')).toBe(true);
    expect(src.stats).toMatchObject({ readings: 2, polls: 0, timeouts: 0 });
    await src.stop();
  });

  it('a device silent for silenceMs goes offline (reason silent), and online again at its next good frame', async () => {
    const { link, src, avail } = setup();
    await src.start();
    link.fromDevice('a:1\n');
    await flush();
    await vi.advanceTimersByTimeAsync(SILENCE - 1);
    expect(src.isOnline('a')).toBe(true);
    link.fromDevice('a:ok\n'); // a keep-alive refreshes the silence clock too
    await flush();
    await vi.advanceTimersByTimeAsync(SILENCE - 1);
    expect(src.isOnline('a')).toBe(true);
    await vi.advanceTimersByTimeAsync(1);
    expect(src.isOnline('a')).toBe(false);
    expect(avail.at(-1)).toMatchObject({ sensor: 'a', online: false, reason: `silent: no frame for ${SILENCE} ms` });
    expect(src.stats.timeouts).toBe(1);
    await vi.advanceTimersByTimeAsync(5 * SILENCE);
    expect(avail.filter((a) => !a.online)).toHaveLength(1); // transitions only
    link.fromDevice('a:2\n');
    await flush();
    expect(avail.at(-1)).toMatchObject({ sensor: 'a', online: true });
    expect(avail.map((a) => a.online)).toEqual([true, false, true]);
    await src.stop();
  });

  it('a device never heard from goes offline silenceMs after the link came up', async () => {
    const { src, avail } = setup();
    await src.start();
    await vi.advanceTimersByTimeAsync(SILENCE);
    expect(avail).toEqual([expect.objectContaining({ sensor: 'a', online: false, reason: expect.stringMatching(/^silent/) })]);
    await src.stop();
  });

  it('tracks silence per device on a shared stream', async () => {
    const { link, src, avail } = setup({ devices: ['a', 'b'] });
    await src.start();
    link.fromDevice('a:1\nb:1\n');
    await flush();
    for (let i = 0; i < 4; i++) {
      await vi.advanceTimersByTimeAsync(SILENCE / 2);
      link.fromDevice('a:1\n');
      await flush();
    }
    expect(src.isOnline('a')).toBe(true);
    expect(src.isOnline('b')).toBe(false);
    expect(avail.filter((x) => !x.online).map((x) => x.sensor)).toEqual(['b']);
    await src.stop();
  });

  it('link drop: every device offline at once; link back: decoder reset, start sequence again, online at the next frame', async () => {
    const { link, decoder, src, avail } = setup({ devices: ['a', 'b'] });
    await src.start();
    link.fromDevice('a:1\nb:1\nb:');
    await flush();
    const resetsBefore = decoder.resets;
    link.goOffline('EIO');
    expect(avail.slice(-2)).toEqual([
      expect.objectContaining({ sensor: 'a', online: false, reason: 'link down: EIO' }),
      expect.objectContaining({ sensor: 'b', online: false, reason: 'link down: EIO' }),
    ]);
    expect(decoder.resets).toBeGreaterThan(resetsBefore);
    await vi.advanceTimersByTimeAsync(10 * SILENCE);
    expect(avail).toHaveLength(4); // no 'silent' reports while the link is down
    link.goOnline();
    expect(link.writtenText()).toBe('GO\r\nGO\r\n');
    link.fromDevice('5\nb:7\n'); // the partial 'b:' from before the drop is gone: '5' alone is invalid
    await flush();
    expect(src.stats.invalidFrames).toBe(1);
    expect(src.isOnline('b')).toBe(true);
    expect(src.isOnline('a')).toBe(false);
    await src.stop();
  });

  it('re-sends the start sequence every silenceMs while silent (a device power-cycled behind a live link), and not otherwise', async () => {
    const { link, src } = setup();
    await src.start();
    link.fromDevice('a:1\n');
    await flush();
    await vi.advanceTimersByTimeAsync(SILENCE / 2);
    link.fromDevice('a:1\n');
    await flush();
    await vi.advanceTimersByTimeAsync(SILENCE / 2);
    expect(link.writtenText()).toBe('GO\r\n');
    await vi.advanceTimersByTimeAsync(SILENCE / 2); // now silent
    expect(src.isOnline('a')).toBe(false);
    expect(link.writtenText()).toBe('GO\r\nGO\r\n');
    await vi.advanceTimersByTimeAsync(SILENCE);
    expect(link.writtenText()).toBe('GO\r\nGO\r\nGO\r\n');
    link.fromDevice('a:1\n');
    await flush();
    await vi.advanceTimersByTimeAsync(SILENCE / 2);
    expect(link.writtenText()).toBe('GO\r\nGO\r\nGO\r\n');
    await src.stop();
  });

  it('restartWhenSilent: false writes the start sequence only when the link comes up', async () => {
    const { link, src } = setup({ restartWhenSilent: false });
    await src.start();
    await vi.advanceTimersByTimeAsync(5 * SILENCE);
    expect(link.writtenText()).toBe('GO\r\n');
    await src.stop();
  });

  it('counts garbage, CRC errors and device errors, survives a throwing decoder, and keeps streaming', async () => {
    const { link, decoder, src, readings } = setup();
    await src.start();
    decoder.throwOn = 'boom';
    link.fromDevice('%%%\n!crc\nEa\nboom\na:4\n');
    await flush();
    link.fromDevice('a:5\n');
    await flush();
    expect(src.stats).toMatchObject({ invalidFrames: 2, crcErrors: 1, deviceErrors: 1, noiseBytes: 3 });
    // the throw dropped the rest of its chunk (a:4), the next chunk decodes
    expect(readings.map((r) => r.grams)).toEqual([5]);
    await src.stop();
  });

  it('stop() writes the stop sequence, removes every listener and timer; nothing is emitted afterwards', async () => {
    const { link, src, readings, avail } = setup();
    await src.start();
    link.fromDevice('a:1\n');
    await flush();
    await src.stop();
    expect(link.writtenText()).toBe('GO\r\nHALT\r\n');
    for (const e of ['data', 'online', 'offline']) expect(link.listenerCount(e)).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
    link.emit('data', Buffer.from('a:2\n'));
    link.goOffline();
    expect(readings).toHaveLength(1);
    expect(avail).toHaveLength(1);
  });

  it('stop() on a dead link does not write, and a second start/stop is harmless', async () => {
    const { link, src } = setup();
    link.online = false;
    await src.start();
    expect(link.writtenText()).toBe('');
    await src.stop();
    await src.stop();
    expect(link.writtenText()).toBe('');
    link.online = true;
    await src.start();
    await src.start();
    expect(link.listenerCount('data')).toBe(1);
    await src.stop();
  });
});
