/**
 * The RFID simulators' parts: the SGTIN-96 encoder against GS1 Tag Data Standard vectors (written
 * by hand, not made by our encoder), the tag population, and the R200 module simulator's answers
 * against the MagicRF M100 manual's frames, its link-rate pacing under fake timers.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { memoryIo } from '../../simulators/io';
import { parsePopulationScript, TagPopulation, uartBytesPerSecond } from '../../simulators/rfid/population';
import { parseHexLines, R200Simulator } from '../../simulators/rfid/r200-sim';
import { encodeSgtin96, gs1CheckDigit, sgtinGtin14 } from '../../simulators/rfid/sgtin';
import { M100Decoder } from '../../src/drivers/m100';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const show = (b: Buffer): string => b.toString('hex').toUpperCase().replace(/(..)(?!$)/g, '$1 ');

describe('SGTIN-96 encoder', () => {
  it('encodes the Tag Data Standard example (filter 3, partition 5, 0614141.812345.6789)', () => {
    expect(encodeSgtin96({ filter: 3, companyPrefix: '0614141', itemReference: '812345', serial: 6789 }).toString('hex').toUpperCase()).toBe('3074257BF7194E4000001A85');
  });

  it('encodes the EPC of a real tag (4717276.094564.21002259824)', () => {
    expect(encodeSgtin96({ filter: 3, companyPrefix: '4717276', itemReference: '094564', serial: 21002259824 }).toString('hex').toUpperCase()).toBe('30751FEB705C5904E3D50D70');
  });

  it('rejects fields that do not fit', () => {
    expect(() => encodeSgtin96({ filter: 8, companyPrefix: '0614141', itemReference: '812345', serial: 1 })).toThrow(RangeError);
    expect(() => encodeSgtin96({ filter: 1, companyPrefix: '12345', itemReference: '1234567', serial: 1 })).toThrow(RangeError);
    expect(() => encodeSgtin96({ filter: 1, companyPrefix: '0614141', itemReference: '81234', serial: 1 })).toThrow(RangeError);
    expect(() => encodeSgtin96({ filter: 1, companyPrefix: '0614141', itemReference: '812345', serial: 2n ** 38n })).toThrow(RangeError);
  });

  it('GS1 check digits and GTIN-14', () => {
    expect(gs1CheckDigit('629104150021')).toBe(3);
    expect(gs1CheckDigit('539123456789')).toBe(2);
    expect(sgtinGtin14('0614141', '812345')).toBe('80614141123458');
    expect(sgtinGtin14('4717276', '094564')).toBe('04717276945640');
  });
});

describe('tag population', () => {
  it('spreads N tags of M GTINs over the zones, SGTIN-96 EPCs, deterministic per seed', () => {
    const p = new TagPopulation({ tags: 2000, gtins: 60, zones: 4, seed: 7 });
    expect(p.tags).toHaveLength(2000);
    expect(new Set(p.tags.map((t) => t.epcHex)).size).toBe(2000);
    expect(p.gtins).toHaveLength(60);
    for (let z = 0; z < 4; z++) expect(p.inZone(z)).toHaveLength(500);
    // tag 1: GTIN #0 = item reference 000001 of 0614141, serial 1
    expect(p.tags[0]!.epcHex).toBe(encodeSgtin96({ filter: 1, companyPrefix: '0614141', itemReference: '000001', serial: 1 }).toString('hex').toUpperCase());
    expect(p.tags[0]!.epcHex.slice(0, 2)).toBe('30');
    expect(p.gtins[0]).toBe(sgtinGtin14('0614141', '000001'));
    const q = new TagPopulation({ tags: 2000, gtins: 60, zones: 4, seed: 7 });
    expect(q.round(1).map((s) => [s.tag.epcHex, s.rssi])).toEqual(p.round(1).map((s) => [s.tag.epcHex, s.rssi]));
  });

  it('misses reads and adds RSSI noise', () => {
    const p = new TagPopulation({ tags: 1000, gtins: 10, zones: 1, missProbability: 0.2, rssiSigmaDb: 3 });
    const n = p.round(0).length;
    expect(n).toBeGreaterThan(700);
    expect(n).toBeLessThan(900);
    const all = new TagPopulation({ tags: 10, gtins: 1, zones: 1, missProbability: 0, rssiSigmaDb: 0 });
    expect(all.round(0).map((s) => s.rssi)).toEqual(all.tags.map((t) => Math.round(t.rssiDbm)));
  });

  it('moves tags by script and at random', () => {
    const p = new TagPopulation({ tags: 100, gtins: 5, zones: 2, missProbability: 0 });
    const script = parsePopulationScript('# a comment\n1000 move 3 gtin 2 from 0 to out\n\n500 move 10 from out to 1\n');
    expect(script).toEqual([
      { atMs: 500, count: 10, from: null, to: 1 },
      { atMs: 1000, count: 3, gtin: 2, from: 0, to: null },
    ]);
    const moved = p.move(script[1]!);
    expect(moved).toHaveLength(3);
    expect(moved.every((t) => t.gtin === 2 && t.zone === null)).toBe(true);
    expect(p.inZone(0)).toHaveLength(47);
    expect(p.round(0).some((s) => s.tag.zone !== 0)).toBe(false);
    expect(p.randomMoves(5)).toHaveLength(5);
    expect(() => parsePopulationScript('soon move 3 from 0 to 1')).toThrow(/line 1/);
  });

  it('a UART at 115200 baud carries 480 24-byte notifications a second', () => {
    expect(uartBytesPerSecond(115200) / 24).toBe(480);
  });
});

describe('R200 simulator', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  function setup(o: { tags?: number; zones?: number } = {}) {
    const population = new TagPopulation({ tags: o.tags ?? 10, gtins: 2, zones: o.zones ?? 1, missProbability: 0 });
    const sim = new R200Simulator({ population });
    const io = memoryIo();
    sim.attach(io);
    return { sim, io, population };
  }

  it('answers with the manual frames', () => {
    const { io } = setup();
    io.send(hex('BB 00 03 00 01 00 04 7E'));
    expect(show(io.received())).toBe('BB 01 03 00 10 00 4D 31 30 30 20 32 36 64 42 6D 20 56 31 2E 30 92 7E');
    io.clear();
    io.send(hex('BB 00 B6 00 02 07 D0 8F 7E'));
    expect(show(io.received())).toBe('BB 01 B6 00 01 00 B8 7E');
    io.clear();
    io.send(hex('BB 00 B7 00 00 B7 7E'));
    expect(show(io.received())).toBe('BB 01 B7 00 02 07 D0 91 7E');
    io.clear();
    io.send(hex('BB 00 28 00 00 28 7E'));
    expect(show(io.received())).toBe('BB 01 28 00 01 00 2A 7E');
  });

  it('single inventory: a notification per tag, or the no-tag error', () => {
    const { io, sim, population } = setup({ tags: 4, zones: 2 });
    io.send(hex('BB 00 22 00 00 22 7E'));
    const ms = new M100Decoder().push(io.received());
    expect(ms.map((m) => (m.kind === 'tag' ? m.tag.epcHex : m.kind))).toEqual(population.inZone(0).map((t) => t.epcHex));
    io.clear();
    sim.zone = 1;
    population.move({ count: 10, from: 1, to: null });
    io.send(hex('BB 00 22 00 00 22 7E'));
    expect(show(io.received())).toBe('BB 01 FF 00 01 15 16 7E');
  });

  it('multi-poll runs its count of rounds at no more than the link carries', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const { io, sim } = setup({ tags: 1000 });
    io.send(hex('BB 00 27 00 03 22 FF FF 4A 7E'));
    expect(sim.polling).toBe(true);
    vi.advanceTimersByTime(10_000);
    const d = new M100Decoder();
    const n = d.push(io.received()).length;
    expect(d.badFrames).toBe(0);
    // 11520 bytes/s / 24 bytes = 480 reads/s; the bucket starts empty and holds at most one second
    expect(n).toBeGreaterThan(4700);
    expect(n).toBeLessThanOrEqual(4800);
    expect(sim.stats.overLinkRate).toBeGreaterThan(0);
    io.clear();
    io.send(hex('BB 00 28 00 00 28 7E'));
    expect(sim.polling).toBe(false);
    expect(show(io.received())).toBe('BB 01 28 00 01 00 2A 7E');
  });

  it('multi-poll stops by itself after its count', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const { io, sim } = setup({ tags: 1 });
    io.send(hex('BB 00 27 00 03 22 00 05 51 7E')); // 5 rounds; 27+03+22+05 = 0x51
    vi.advanceTimersByTime(5_000);
    expect(sim.polling).toBe(false);
    expect(sim.stats.rounds).toBe(5);
  });

  it('replays captured frames', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const frames = parseHexLines('# capture\nBB 02 22 00 11 C9 34 00 30 75 1F EB 70 5C 59 04 E3 D5 0D 70 3A 76 EF 7E\nBB 01 FF 00 01 15 16 7E\n');
    const sim = new R200Simulator({ population: new TagPopulation({ tags: 1, gtins: 1, zones: 1 }), replay: frames });
    const io = memoryIo();
    sim.attach(io);
    io.send(hex('BB 00 27 00 03 22 00 0A 56 7E'));
    vi.advanceTimersByTime(1_000);
    const ms = new M100Decoder().push(io.received());
    expect(ms.length).toBeGreaterThan(2);
    expect(ms[0]!.kind === 'tag' && ms[0]!.tag.epcHex).toBe('30751FEB705C5904E3D50D70');
    expect(ms[1]!.kind).toBe('error');
    expect(() => parseHexLines('BB 0')).toThrow(/line 1/);
  });
});

describe('R200 simulator faults', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('--fault-crc sends frames whose checksum is right and whose tag CRC is wrong', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const sim = new R200Simulator({ population: new TagPopulation({ tags: 5, gtins: 1, zones: 1, missProbability: 0 }), faults: { corruptCrc: 1 } });
    const io = memoryIo();
    sim.attach(io);
    io.send(hex('BB 00 27 00 03 22 00 0A 56 7E'));
    vi.advanceTimersByTime(1_000);
    const d = new M100Decoder();
    expect(d.push(io.received())).toEqual([]);
    expect(d.stats.bad.tagCrc).toBe(sim.stats.notifications);
    expect(d.stats.bad.tagCrc).toBeGreaterThan(0);
    expect(d.stats.bad.checksum).toBe(0);
  });
});
