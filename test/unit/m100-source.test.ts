/**
 * M100Source with a FakeLink under fake timers: the start sequence byte for byte (frames written
 * by hand from the MagicRF M100 manual), tag reads from real module frames, error handling, frame
 * drops by reason, silence and re-arming of multi-poll.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { DeviceAvailability } from '../../src/core/sources/types';
import { M100Source, type TagRead } from '../../src/features/rfid/m100-source';
import { silentLogger } from '../../src/log';
import { FakeLink } from '../helpers/fake-link';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const show = (b: Buffer): string => b.toString('hex').toUpperCase().replace(/(..)(?!$)/g, '$1 ');
const TAG_1 = 'BB 02 22 00 11 C9 34 00 30 75 1F EB 70 5C 59 04 E3 D5 0D 70 3A 76 EF 7E';
const TAG_2_27 = 'BB 02 27 00 11 DC 30 00 E2 80 68 94 00 00 50 24 58 95 B5 EB D5 F9 73 7E'; // cmd 27: checksum 6E + 5
const NO_TAG = 'BB 01 FF 00 01 15 16 7E';
const HW_REPLY = 'BB 01 03 00 10 00 4D 31 30 30 20 32 36 64 42 6D 20 56 31 2E 30 92 7E';
const STOP = 'BB 00 28 00 00 28 7E';
const PROBE = 'BB 00 03 00 01 00 04 7E';
const POLL_10000 = 'BB 00 27 00 03 22 27 10 83 7E';

const flush = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

function setup() {
  const link = new FakeLink();
  const src = new M100Source({ name: 'm100', reader: 'r1', link, log: silentLogger(), txPowerDbm: 20, probeMs: 1000, rearmMs: 2500, silenceMs: 3000 });
  const reads: TagRead[] = [];
  const avail: DeviceAvailability[] = [];
  src.on('reading', (r) => reads.push(r));
  src.on('availability', (a) => avail.push(a));
  return { link, src, reads, avail };
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date', 'performance'] });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('M100Source', () => {
  it('configures power, probes, starts multi-poll; stop() stops it', async () => {
    const { link, src } = setup();
    await src.start();
    await flush();
    expect(link.written.map(show)).toEqual(['BB 00 B6 00 02 07 D0 8F 7E', PROBE, POLL_10000]);
    link.written.length = 0;
    await src.stop();
    expect(link.written.map(show)).toEqual([STOP]);
    link.written.length = 0;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(link.written).toEqual([]); // no timer left
  });

  it('emits tag reads from notifications with cmd 22 and 27, raw EPC hex', async () => {
    const { link, src, reads, avail } = setup();
    await src.start();
    vi.setSystemTime(1_700_000_000_000);
    const bytes = hex(`${TAG_1} ${TAG_2_27}`);
    link.fromDevice(bytes.subarray(0, 9));
    link.fromDevice(bytes.subarray(9));
    await flush();
    expect(reads.map(({ sensor, reader, antenna, epcHex, rssi, ts }) => ({ sensor, reader, antenna, epcHex, rssi, ts }))).toEqual([
      { sensor: 'r1', reader: 'r1', antenna: 1, epcHex: '30751FEB705C5904E3D50D70', rssi: -55, ts: 1_700_000_000_000 },
      { sensor: 'r1', reader: 'r1', antenna: 1, epcHex: 'E2806894000050245895B5EB', rssi: -36, ts: 1_700_000_000_000 },
    ]);
    expect(avail).toEqual([{ sensor: 'r1', online: true, ts: 1_700_000_000_000 }]);
    await src.stop();
  });

  it('"no tag" is no error; other errors are device errors; the hardware version is kept', async () => {
    const { link, src, reads } = setup();
    await src.start();
    link.fromDevice(hex(`${NO_TAG} BB 01 FF 00 01 09 0A 7E ${HW_REPLY}`));
    await flush();
    expect(reads).toEqual([]);
    expect(src.stats.deviceErrors).toBe(1);
    expect(src.m100Stats.noTag).toBe(1);
    expect(src.hardwareVersion).toBe('M100 26dBm V1.0');
    expect(src.isOnline('r1')).toBe(true);
    await src.stop();
  });

  it('counts garbage, a bad checksum and a bad tag CRC without a phantom tag', async () => {
    const { link, src, reads } = setup();
    await src.start();
    link.fromDevice(hex('00 13 BB 7E 55'));
    link.fromDevice(hex(TAG_1.replace('EF 7E', 'EE 7E')));
    link.fromDevice(hex('BB 02 22 00 11 C9 34 00 30 75 1F EB 70 5C 59 04 E3 D5 0D 70 3A 77 F0 7E'));
    link.fromDevice(hex(NO_TAG));
    await flush();
    expect(reads).toEqual([]);
    expect(src.stats.crcErrors).toBe(2);
    expect(src.decoderStats.bad).toMatchObject({ checksum: 1, tagCrc: 1 });
    expect(src.stats.noiseBytes).toBeGreaterThan(0);
    await src.stop();
  });

  it('probes while reads come, re-arms multi-poll when inventory goes quiet, offline when nothing at all comes', async () => {
    const { link, src, avail } = setup();
    await src.start();
    link.fromDevice(hex(TAG_1));
    await flush();
    link.written.length = 0;
    await vi.advanceTimersByTimeAsync(1000);
    expect(link.written.map(show)).toEqual([PROBE]);
    link.fromDevice(hex(HW_REPLY));
    await flush();
    link.written.length = 0;
    await vi.advanceTimersByTimeAsync(2000); // 3 s since the last tag: rearm
    expect(link.written.map(show)).toEqual([PROBE, STOP, PROBE, POLL_10000]);
    expect(src.m100Stats.rearms).toBe(1);
    expect(src.isOnline('r1')).toBe(true);
    await vi.advanceTimersByTimeAsync(1500); // 3 s since the probe answer: silent
    expect(src.isOnline('r1')).toBe(false);
    expect(avail.at(-1)).toMatchObject({ online: false, reason: 'silent: no frame for 3000 ms' });
    link.fromDevice(hex(NO_TAG));
    await flush();
    expect(src.isOnline('r1')).toBe(true);
    await src.stop();
  });

  it('a link drop is offline at once; the start sequence is written again when it is back', async () => {
    const { link, src } = setup();
    await src.start();
    link.fromDevice(hex(TAG_1));
    await flush();
    link.goOffline('unplugged');
    expect(src.isOnline('r1')).toBe(false);
    link.written.length = 0;
    link.goOnline();
    await flush();
    expect(link.written.map(show)).toEqual(['BB 00 B6 00 02 07 D0 8F 7E', PROBE, POLL_10000]);
    await src.stop();
  });
});
