import { describe, expect, it } from 'vitest';
import { ErrorCode, isShelfgateError } from '../../src/errors';
import { RfidSmoother, type SmootherOptions, type SmoothingEvent, type TagRead } from '../../src/features/rfid/smoothing';

const GTIN_A = '80614141123458';
const GTIN_B = '04717276945640';
const EPC1 = '3074257BF7194E4000001A85';

const zones: SmootherOptions['zones'] = [
  {
    id: 'backroom',
    antennas: [
      { reader: 'r1', antenna: 1 },
      { reader: 'r1', antenna: 2 },
    ],
    arriveAfter: 3,
    windowMs: 2000,
    departAfterMs: 5000,
    readCycleMs: 250,
  },
  {
    id: 'g1/s3',
    antennas: [
      { reader: 'r1', antenna: 3 },
      { reader: 'r2', antenna: 1 },
    ],
    arriveAfter: 3,
    windowMs: 2000,
    departAfterMs: 5000,
    readCycleMs: 250,
  },
];

function setup(opts: Partial<SmootherOptions> = {}) {
  const events: SmoothingEvent[] = [];
  const s = new RfidSmoother({ zones, handoverMarginDb: 6, minDwellMs: 3000, rssiAlpha: 0.25, ...opts }, (e) => events.push(e));
  const read = (at: number, over: Partial<TagRead> = {}) => s.read({ epc: EPC1, gtin: GTIN_A, reader: 'r1', antenna: 1, rssi: -50, at, ...over });
  const take = () => events.splice(0, events.length);
  return { s, events, read, take };
}

/** Deterministic noise (mulberry32), uniform in [-1, 1). */
function noise(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
}

describe('arrival', () => {
  it('only after arriveAfter sightings within the window', () => {
    const { read, take, s } = setup();
    read(0);
    read(300);
    expect(take()).toEqual([]);
    expect(s.zoneOf(EPC1)).toBeNull();
    read(600);
    expect(take()).toEqual([{ type: 'arrival', epc: EPC1, zone: 'backroom', gtin: GTIN_A, rssi: -50, firstSeen: 0, from: null, at: 600 }]);
    expect(s.zoneOf(EPC1)).toBe('backroom');
  });

  it('sightings spread wider than the window do not arrive until N fall inside it', () => {
    const { read, take } = setup();
    read(0);
    read(1500);
    read(3000); // 0..3000 is wider than 2000 ms
    expect(take()).toEqual([]);
    read(3300); // 1500, 3000, 3300: within 2000 ms
    expect(take()).toMatchObject([{ type: 'arrival', zone: 'backroom', at: 3300 }]);
  });

  it('a single stray read never arrives, and is forgotten after its window', () => {
    const { read, take, s } = setup();
    read(0, { epc: 'E2806894000050245895B5EB', gtin: null });
    for (let t = 100; t <= 3_600_000; t += 60_000) s.tick(t);
    expect(take()).toEqual([]);
    expect(s.trackedTags).toBe(0);
    expect(s.counters.strays).toBe(1);
  });

  it('a burst of duplicates (many reads, two antennas of one zone, one read cycle) is one sighting', () => {
    const { read, take, s } = setup();
    for (let i = 0; i < 20; i++) read(i * 10, { antenna: 1 + (i % 2) });
    s.tick(1000);
    expect(take()).toEqual([]);
    expect(s.counters.duplicates).toBe(19);
    expect(s.zoneOf(EPC1)).toBeNull();
  });

  it('keeps the RSSI: the average of each cycle peak, the current peak folded in', () => {
    const { read, take } = setup();
    read(0, { rssi: -60 });
    read(100, { rssi: -50, antenna: 2 }); // cycle 1 peak -50
    read(300, { rssi: -70 });
    read(400, { rssi: -40 }); // cycle 2 peak -40; average after cycle 1: -50
    read(600, { rssi: -45 }); // cycle 3: average -50 + 0.25 * 10 = -47.5; -47.5 + 0.25 * 2.5 = -46.875
    expect(take()).toMatchObject([{ type: 'arrival', rssi: -46.9 }]);
  });

  it('a reader without RSSI still gives arrivals, with rssi null', () => {
    const { read, take } = setup();
    for (const t of [0, 300, 600]) read(t, { rssi: null });
    expect(take()).toMatchObject([{ type: 'arrival', rssi: null }]);
  });
});

describe('departure', () => {
  it('after departAfterMs unseen, and not one millisecond before', () => {
    const { read, take, s } = setup();
    for (const t of [0, 300, 600, 900]) read(t);
    take();
    s.tick(900 + 4999);
    expect(take()).toEqual([{ type: 'count', zone: 'backroom', gtin: GTIN_A, count: 1, at: 5899 }]);
    s.tick(900 + 5000);
    expect(take()).toEqual([
      { type: 'departure', epc: EPC1, zone: 'backroom', gtin: GTIN_A, lastSeen: 900, reason: 'unseen', to: null, at: 5900 },
      { type: 'count', zone: 'backroom', gtin: GTIN_A, count: 0, at: 5900 },
    ]);
    expect(s.zoneOf(EPC1)).toBeNull();
    expect(s.trackedTags).toBe(0);
  });

  it('reads keep it present however long it stays, duplicates included', () => {
    const { read, take, s } = setup();
    for (let t = 0; t <= 60_000; t += 50) {
      read(t);
      if (t % 1000 === 0) s.tick(t);
    }
    expect(take().filter((e) => e.type !== 'count')).toMatchObject([{ type: 'arrival', at: 500 }]); // cycles start at 0, 250, 500
  });

  it('a gap longer than departAfterMs is a departure even when tick() was late; the next reads arrive anew', () => {
    const { read, take } = setup();
    for (const t of [0, 300, 600]) read(t);
    take();
    for (const t of [10_000, 10_300, 10_600]) read(t);
    expect(take()).toMatchObject([
      { type: 'departure', zone: 'backroom', lastSeen: 600, at: 10_000 },
      { type: 'arrival', zone: 'backroom', firstSeen: 10_000, at: 10_600 },
    ]);
  });
});

describe('a blind zone (its readers offline)', () => {
  it('keeps its tags while held, and gives them a full departAfterMs from the release', () => {
    const { read, take, s } = setup();
    for (const t of [0, 300, 600, 900]) read(t);
    take();
    s.setHeld('backroom', true, 1000);
    s.tick(60_000);
    expect(take()).toEqual([{ type: 'count', zone: 'backroom', gtin: GTIN_A, count: 1, at: 60_000 }]);
    expect(s.zoneOf(EPC1)).toBe('backroom');
    s.setHeld('backroom', false, 60_000);
    s.tick(60_000 + 4999);
    expect(take()).toEqual([]);
    s.tick(60_000 + 5000);
    expect(take()).toEqual([
      { type: 'departure', epc: EPC1, zone: 'backroom', gtin: GTIN_A, lastSeen: 60_000, reason: 'unseen', to: null, at: 65_000 },
      { type: 'count', zone: 'backroom', gtin: GTIN_A, count: 0, at: 65_000 },
    ]);
  });
});

describe('two zones: hand-over with hysteresis', () => {
  /** Reads the tag in both zones every 100 ms from t0 to t1 with the given mean RSSI and ±3 dB noise. */
  function both(read: (at: number, o?: Partial<TagRead>) => void, s: RfidSmoother, rnd: () => number, t0: number, t1: number, meanA: number, meanB: number) {
    for (let t = t0; t < t1; t += 100) {
      read(t, { reader: 'r1', antenna: 1 + ((t / 100) % 2), rssi: Math.round(meanA + 3 * rnd()) });
      read(t + 7, { reader: 'r2', antenna: 1, rssi: Math.round(meanB + 3 * rnd()) });
      if (t % 500 === 0) s.tick(t);
    }
  }

  it('noisy RSSI whose means differ by less than the margin: no flapping at all', () => {
    const { read, take, s } = setup();
    for (const t of [0, 300, 600]) read(t, { rssi: -55 }); // arrives in backroom first
    both(read, s, noise(42), 700, 120_000, -55, -54);
    const moves = take().filter((e) => e.type !== 'count');
    expect(moves).toMatchObject([{ type: 'arrival', zone: 'backroom' }]);
    expect(s.counters.handovers).toBe(0);
    expect(s.zoneOf(EPC1)).toBe('backroom');
  });

  it('the same noise without hysteresis does flap (so the test above proves something)', () => {
    const { read, s } = setup({ handoverMarginDb: 0, minDwellMs: 0 });
    for (const t of [0, 300, 600]) read(t, { rssi: -55 });
    both(read, s, noise(42), 700, 120_000, -55, -54);
    expect(s.counters.handovers).toBeGreaterThan(10);
  });

  it('a clear move: exactly one hand-over, a departure (moved) then an arrival (from), and counts follow', () => {
    const { read, take, s } = setup();
    const rnd = noise(7);
    for (const t of [0, 300, 600]) read(t, { rssi: -50 });
    both(read, s, rnd, 700, 20_000, -50, -75);
    both(read, s, rnd, 20_000, 60_000, -75, -50);
    s.tick(60_000);
    const ev = take();
    const moves = ev.filter((e) => e.type !== 'count');
    expect(moves).toHaveLength(3);
    expect(moves[0]).toMatchObject({ type: 'arrival', zone: 'backroom', from: null });
    expect(moves[1]).toMatchObject({ type: 'departure', zone: 'backroom', reason: 'moved', to: 'g1/s3' });
    expect(moves[2]).toMatchObject({ type: 'arrival', zone: 'g1/s3', from: 'backroom', at: moves[1]!.at });
    expect(moves[1]!.at).toBeGreaterThan(20_000);
    expect(moves[1]!.at).toBeLessThan(25_000);
    expect(s.counters.handovers).toBe(1);
    expect(s.zoneCounts('backroom').get(GTIN_A)).toBeUndefined();
    expect(s.zoneCounts('g1/s3').get(GTIN_A)).toBe(1);
    const counts = ev.filter((e) => e.type === 'count');
    expect(counts.slice(-2)).toEqual(
      expect.arrayContaining([
        { type: 'count', zone: 'backroom', gtin: GTIN_A, count: 0, at: expect.any(Number) },
        { type: 'count', zone: 'g1/s3', gtin: GTIN_A, count: 1, at: expect.any(Number) },
      ]),
    );
  });

  it('the old zone losing sight while the new one sees the tag: departure (unseen) then arrival there at once', () => {
    const { read, take, s } = setup();
    for (const t of [0, 300, 600]) read(t, { rssi: -50 });
    for (const t of [700, 1000, 1300]) read(t, { reader: 'r2', rssi: -60 }); // present in g1/s3 too, weaker
    take();
    for (let t = 1600; t <= 8000; t += 300) {
      read(t, { reader: 'r2', rssi: -60 });
      s.tick(t);
    }
    expect(take().filter((e) => e.type !== 'count')).toEqual([
      { type: 'departure', epc: EPC1, zone: 'backroom', gtin: GTIN_A, lastSeen: 600, reason: 'unseen', to: null, at: 5800 },
      { type: 'arrival', epc: EPC1, zone: 'g1/s3', gtin: GTIN_A, rssi: -60, firstSeen: 700, from: 'backroom', at: 5800 },
    ]);
  });
});

describe('counts per GTIN', () => {
  it('one count event per (zone, GTIN) that changed since the last tick; raw EPCs under null', () => {
    const { s, take } = setup();
    const tags: Array<[string, string | null]> = [
      ['A1', GTIN_A],
      ['A2', GTIN_A],
      ['A3', GTIN_A],
      ['B1', GTIN_B],
      ['B2', GTIN_B],
      ['E2806894000050245895B5EB', null],
    ];
    for (const t of [0, 300, 600]) for (const [epc, gtin] of tags) s.read({ epc, gtin, reader: 'r1', antenna: 1, rssi: -50, at: t });
    expect(take().filter((e) => e.type === 'arrival')).toHaveLength(6);
    s.tick(700);
    expect(take()).toEqual([
      { type: 'count', zone: 'backroom', gtin: GTIN_A, count: 3, at: 700 },
      { type: 'count', zone: 'backroom', gtin: GTIN_B, count: 2, at: 700 },
      { type: 'count', zone: 'backroom', gtin: null, count: 1, at: 700 },
    ]);
    s.tick(800);
    expect(take()).toEqual([]);
    // all but A3 keep being read; A3 departs
    for (let t = 900; t <= 6000; t += 300) for (const [epc, gtin] of tags) if (epc !== 'A3') s.read({ epc, gtin, reader: 'r1', antenna: 2, rssi: -50, at: t });
    s.tick(5600);
    expect(take()).toEqual([
      { type: 'departure', epc: 'A3', zone: 'backroom', gtin: GTIN_A, lastSeen: 600, reason: 'unseen', to: null, at: 5600 },
      { type: 'count', zone: 'backroom', gtin: GTIN_A, count: 2, at: 5600 },
    ]);
    expect([...s.zoneCounts('backroom')]).toEqual([
      [GTIN_A, 2],
      [GTIN_B, 2],
      [null, 1],
    ]);
  });

  it('a tag arriving and departing between two ticks changes no count', () => {
    const { s, read, take } = setup();
    for (const t of [0, 300, 600]) read(t);
    for (const t of [10_000, 10_300]) read(t); // departs (late), no re-arrival yet
    s.tick(10_400);
    expect(take().map((e) => e.type)).toEqual(['arrival', 'departure']);
  });
});

describe('bounds and bad input', () => {
  it('caps the tags tracked and counts the reads it drops; room comes back when strays are forgotten', () => {
    const { s } = setup({ maxTags: 5 });
    for (let i = 0; i < 7; i++) s.read({ epc: `T${i}`, gtin: null, reader: 'r1', antenna: 1, rssi: -50, at: 0 });
    expect(s.trackedTags).toBe(5);
    expect(s.counters.tagsOverCap).toBe(2);
    s.read({ epc: 'T0', gtin: null, reader: 'r1', antenna: 1, rssi: -50, at: 100 }); // a tracked tag still counts
    expect(s.counters.tagsOverCap).toBe(2);
    s.tick(10_000);
    expect(s.trackedTags).toBe(0);
    s.read({ epc: 'T6', gtin: null, reader: 'r1', antenna: 1, rssi: -50, at: 10_001 });
    expect(s.trackedTags).toBe(1);
  });

  it('reads from an antenna in no zone, and reads with a time or RSSI that is not a number, are counted and dropped', () => {
    const { s, read } = setup();
    read(0, { reader: 'r9' });
    read(0, { reader: 'r1', antenna: 4 });
    read(NaN);
    read(0, { rssi: Number.POSITIVE_INFINITY });
    expect(s.counters).toMatchObject({ reads: 4, unknownAntenna: 2, invalidReads: 2 });
    expect(s.trackedTags).toBe(0);
  });

  it('refuses an antenna in two zones, duplicate zone ids and impossible numbers, with every problem listed', () => {
    try {
      new RfidSmoother(
        {
          zones: [
            { id: 'a', antennas: [{ reader: 'r1', antenna: 1 }], arriveAfter: 0, windowMs: 1000, departAfterMs: 5000 },
            { id: 'a', antennas: [{ reader: 'r1', antenna: 1 }], arriveAfter: 2, windowMs: 1000, departAfterMs: 0 },
          ],
          rssiAlpha: 2,
        },
        () => {},
      );
      expect.unreachable();
    } catch (e) {
      expect(isShelfgateError(e, ErrorCode.CONFIG_INVALID)).toBe(true);
      const paths = ((e as { details: Array<{ path: string }> }).details ?? []).map((i) => i.path);
      expect(paths).toEqual(expect.arrayContaining(['rssiAlpha', 'zones[0].arriveAfter', 'zones[1].id', 'zones[1].departAfterMs', 'zones[1].antennas']));
    }
  });
});

describe('entering where two zones overlap', () => {
  it('arrives in the stronger zone even when the weaker one counts to N first', () => {
    const { read, take, s } = setup();
    for (const t of [0, 300, 600]) {
      read(t, { reader: 'r2', rssi: -70 }); // g1/s3, weak, read first in every cycle
      read(t + 10, { reader: 'r1', rssi: -50 }); // backroom, strong
    }
    s.tick(700);
    expect(take().filter((e) => e.type !== 'count')).toMatchObject([{ type: 'arrival', zone: 'backroom', from: null, at: 610 }]);
    expect(s.counters.handovers).toBe(0);
  });

  it('waits for the stronger zone at most its window: a strong stray does not keep the tag out', () => {
    const { read, take, s } = setup();
    read(0, { reader: 'r1', rssi: -40 }); // one strong read in backroom, never again
    for (const t of [100, 400, 700]) read(t, { reader: 'r2', rssi: -70 });
    expect(take()).toEqual([]); // held back: backroom may still count to N
    for (let t = 1000; t <= 2500; t += 300) read(t, { reader: 'r2', rssi: -70 });
    const ev = take();
    expect(ev).toMatchObject([{ type: 'arrival', zone: 'g1/s3', from: null, firstSeen: 100 }]);
    expect(ev[0]!.at).toBeGreaterThan(2000);
    expect(ev[0]!.at).toBeLessThanOrEqual(2200);
    s.tick(3000);
    expect(s.counters.strays).toBe(1);
  });
});

describe('restore (tags present before a restart)', () => {
  it('a restored tag counts at once with no arrival, stays while read, departs only departAfterMs after the restart', () => {
    const { s, read, take } = setup();
    expect(s.restore({ epc: EPC1, gtin: GTIN_A, zone: 'backroom', since: -3_600_000 }, 100_000)).toBe(true);
    expect(s.zoneOf(EPC1)).toBe('backroom');
    expect(s.zoneCounts('backroom').get(GTIN_A)).toBe(1);
    // read on after the restart: no arrival
    read(100_300);
    read(100_600);
    read(100_900);
    s.tick(101_000);
    expect(take().filter((e) => e.type !== 'count')).toEqual([]);
    // then unseen: it departs departAfterMs (5000) after its last read, not after the restart's time
    s.tick(105_899);
    expect(take().filter((e) => e.type === 'departure')).toEqual([]);
    s.tick(105_900);
    expect(take().filter((e) => e.type === 'departure').map((e) => [e.type, e.zone])).toEqual([['departure', 'backroom']]);
    expect(s.zoneCounts('backroom').get(GTIN_A) ?? 0).toBe(0);
  });

  it('a restored tag that is gone departs departAfterMs after the restart; unknown zones and known tags are refused', () => {
    const { s, take } = setup();
    expect(s.restore({ epc: EPC1, gtin: GTIN_A, zone: 'backroom', since: 0 }, 50_000)).toBe(true);
    expect(s.restore({ epc: EPC1, gtin: GTIN_A, zone: 'g1/s3', since: 0 }, 50_000)).toBe(false);
    expect(s.restore({ epc: 'E2801160600002', gtin: null, zone: 'removed-zone', since: 0 }, 50_000)).toBe(false);
    s.tick(54_999);
    expect(take().filter((e) => e.type === 'departure')).toEqual([]);
    s.tick(55_000);
    expect(take().filter((e) => e.type === 'departure')).toHaveLength(1);
  });
});
