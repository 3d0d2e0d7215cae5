/**
 * A tag population for the RFID reader simulators (the serial M100/R200 one here; the LLRP one
 * later): N tags of M GTINs (SGTIN-96 EPCs), each in one zone or out of every field, moved in
 * and out by a script or at random (seeded). An inventory round over a zone yields the tags
 * that answer: each tag is missed with `missProbability`, and its RSSI is the tag's own level
 * (fixed at creation: distance and orientation) plus gaussian noise.
 *
 * Zones are numbered 0..zones-1; a reader antenna observes one zone (the simulator decides which).
 * Tags are spread round-robin over GTINs and zones at the start, so counts are predictable.
 *
 * Script lines (one per line, `#` comments): `<ms> move <count> [gtin <g>] from <zone|out> to <zone|out>`,
 * e.g. `5000 move 10 gtin 3 from 0 to out` (at 5 s, 10 tags of GTIN #3 leave zone 0).
 */
import { gaussian, mulberry32, randomInt, type Rng } from '../physics';
import { encodeSgtin96, sgtinGtin14 } from './sgtin';

export interface SimTag {
  /** 12-byte SGTIN-96 EPC. */
  readonly epc: Buffer;
  readonly epcHex: string;
  /** Index of its GTIN in `population.gtins`. */
  readonly gtin: number;
  /** Zone it is in, or null when out of every field. */
  zone: number | null;
  /** Mean RSSI at its place, dBm. */
  readonly rssiDbm: number;
}

export interface PopulationOptions {
  tags: number;
  gtins: number;
  zones: number;
  /** Default 1. */
  seed?: number;
  /** 7-digit GS1 company prefix of every GTIN. Default 0614141. */
  companyPrefix?: string;
  /** Probability a tag in the field does not answer a round. Default 0.1. */
  missProbability?: number;
  /** RSSI noise sigma, dB. Default 2. */
  rssiSigmaDb?: number;
  /** Mean RSSI range of the tags, dBm. Default [-70, -40]. */
  rssiRangeDbm?: [number, number];
  /** Share of tags out of every field at the start, 0-1. Default 0. */
  outShare?: number;
}

export interface TagSighting {
  tag: SimTag;
  rssi: number;
}

export interface ScriptMove {
  atMs: number;
  count: number;
  gtin?: number;
  from: number | null;
  to: number | null;
}

export class TagPopulation {
  readonly tags: readonly SimTag[];
  /** GTIN-14 of each GTIN index. */
  readonly gtins: readonly string[];
  readonly zones: number;
  private readonly rng: Rng;
  private readonly miss: number;
  private readonly sigma: number;
  private readonly byEpc = new Map<string, SimTag>();

  constructor(o: PopulationOptions) {
    for (const [k, v] of [['tags', o.tags], ['gtins', o.gtins], ['zones', o.zones]] as const)
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`${k} must be a positive integer, got ${v}`);
    if (o.gtins > 999_999) throw new RangeError(`at most 999999 GTINs, got ${o.gtins}`);
    this.rng = mulberry32(o.seed ?? 1);
    this.zones = o.zones;
    this.miss = o.missProbability ?? 0.1;
    this.sigma = o.rssiSigmaDb ?? 2;
    const [lo, hi] = o.rssiRangeDbm ?? [-70, -40];
    const cp = o.companyPrefix ?? '0614141';
    const items: string[] = [];
    const gtins: string[] = [];
    for (let g = 0; g < o.gtins; g++) {
      const item = `0${String(g + 1).padStart(12 - cp.length, '0')}`; // indicator 0, then the item number
      if (item.length !== 13 - cp.length) throw new RangeError(`${o.gtins} GTINs do not fit a ${cp.length}-digit company prefix`);
      items.push(item);
      gtins.push(sgtinGtin14(cp, item));
    }
    this.gtins = gtins;
    const out = o.outShare ?? 0;
    const tags: SimTag[] = [];
    for (let i = 0; i < o.tags; i++) {
      const g = i % o.gtins;
      const epc = encodeSgtin96({ filter: 1, companyPrefix: cp, itemReference: items[g]!, serial: i + 1 });
      const t: SimTag = { epc, epcHex: epc.toString('hex').toUpperCase(), gtin: g, zone: this.rng() < out ? null : i % o.zones, rssiDbm: lo + this.rng() * (hi - lo) };
      tags.push(t);
      this.byEpc.set(t.epcHex, t);
    }
    this.tags = tags;
  }

  get(epcHex: string): SimTag | undefined {
    return this.byEpc.get(epcHex.toUpperCase());
  }

  inZone(zone: number | null): SimTag[] {
    return this.tags.filter((t) => t.zone === zone);
  }

  /** Moves up to `count` tags (of GTIN `gtin` if given) from `from` to `to`; returns those moved. */
  move(m: Omit<ScriptMove, 'atMs'>): SimTag[] {
    const moved: SimTag[] = [];
    for (const t of this.tags) {
      if (moved.length >= m.count) break;
      if (t.zone !== m.from || (m.gtin !== undefined && t.gtin !== m.gtin)) continue;
      t.zone = m.to;
      moved.push(t);
    }
    return moved;
  }

  /** Moves `count` random tags each to a random zone or out (seeded). */
  randomMoves(count: number): SimTag[] {
    const moved: SimTag[] = [];
    for (let i = 0; i < count; i++) {
      const t = this.tags[randomInt(this.rng, 0, this.tags.length - 1)]!;
      const z = randomInt(this.rng, -1, this.zones - 1);
      t.zone = z < 0 ? null : z;
      moved.push(t);
    }
    return moved;
  }

  /** One inventory round over `zone`: the tags that answer, with a noisy RSSI. */
  round(zone: number): TagSighting[] {
    const out: TagSighting[] = [];
    for (const t of this.tags) {
      if (t.zone !== zone || this.rng() < this.miss) continue;
      out.push({ tag: t, rssi: Math.round(t.rssiDbm + gaussian(this.rng) * this.sigma) });
    }
    return out;
  }
}

/** Parses a population script (see the file comment). Throws RangeError naming the line. */
export function parsePopulationScript(text: string): ScriptMove[] {
  const moves: ScriptMove[] = [];
  const zone = (s: string): number | null => (s === 'out' ? null : Number(s));
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) return;
    const m = /^(\d+)\s+move\s+(\d+)(?:\s+gtin\s+(\d+))?\s+from\s+(\d+|out)\s+to\s+(\d+|out)$/.exec(line);
    if (!m) throw new RangeError(`script line ${i + 1}: expected "<ms> move <count> [gtin <g>] from <zone|out> to <zone|out>", got ${JSON.stringify(raw)}`);
    moves.push({ atMs: Number(m[1]), count: Number(m[2]), ...(m[3] !== undefined ? { gtin: Number(m[3]) } : {}), from: zone(m[4]!), to: zone(m[5]!) });
  });
  return moves.sort((a, b) => a.atMs - b.atMs);
}

/**
 * Bytes per second a UART carries: 10 bits per byte (start, 8 data, stop at 8N1). At 115200 baud
 * that is 11520 bytes/s, so a 24-byte M100 notification for a 96-bit EPC fits 480 times a second.
 */
export function uartBytesPerSecond(baud: number, bitsPerByte = 10): number {
  return baud / bitsPerByte;
}
