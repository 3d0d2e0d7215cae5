/**
 * Zone smoothing of RFID tag reads, after EPCglobal ALE's event cycles: raw reads (tag, reader,
 * antenna, RSSI, time) in; arrivals, departures and per-zone counts per GTIN out. Pure and
 * deterministic: no I/O, no timers, no clock of its own. Every read carries its time, and the
 * caller calls `tick(now)` (e.g. every 250 ms) to let departures and count changes happen.
 *
 * Model:
 * - A zone is a set of (reader, antenna) pairs observing one location id (`backroom`, `g1/s3`,
 *   `fitting-1`). One antenna belongs to at most one zone (checked at construction).
 * - Read cycle (duplicate suppression): reads of one tag in one zone within `readCycleMs` of the
 *   start of that tag's current cycle are one sighting. They still refresh "last seen" and the
 *   cycle's peak RSSI, but count once towards arrival (readers report a tag many times a second,
 *   and several antennas of one zone see it at once; without this, one burst would look like N
 *   sightings).
 * - Arrival: a tag arrives in a zone after `arriveAfter` sightings within `windowMs` (so a single
 *   stray read, and a short burst, never arrive). Departure: after `departAfterMs` without any read
 *   in that zone, decided at `tick(now)` with `now - lastSeen >= departAfterMs`, never before.
 * - RSSI: per tag per zone, an exponential moving average (weight `rssiAlpha`) of each cycle's
 *   peak RSSI; the current cycle's peak is folded in when the value is read. Peak-per-cycle, not
 *   every read, so a reader that reports a tag 20 times a cycle does not outweigh one reporting
 *   it once.
 * - One zone at a time: a tag present in two zones (both passed the arrival rule) belongs to the
 *   zone it arrived in until the other zone's RSSI is stronger by at least `handoverMarginDb` AND
 *   the tag has been in its zone for at least `minDwellMs`. Both conditions together stop
 *   flapping: noise smaller than the margin never moves it, and a burst of noise larger than the
 *   margin cannot move it back and forth faster than the dwell. When the owning zone stops seeing
 *   the tag (departure) and another zone has it present, it arrives there at once. A first arrival
 *   waits (at most one window) while another zone sees the tag stronger by the margin but has not
 *   counted to N yet, so a tag entering an overlap does not arrive in the weaker zone first.
 * - Hand-over is reported as a departure from the old zone (`reason: 'moved'`, `to`) followed by an
 *   arrival in the new one (`from`), not as a separate `moved` event: every consumer that keeps
 *   counts or presence per zone handles it with the two events it already understands, and
 *   `to`/`from` keep the move visible to those that care.
 * - Counts: per zone, the number of tags present per GTIN (tags without GTIN under `null`). Count
 *   changes are collected and emitted at `tick(now)`, one event per (zone, GTIN) whose count
 *   differs from the last emitted one: a pallet of 500 arrivals is one count event per GTIN, not
 *   500 (the outbox compacts count changes anyway; this keeps the bus quiet too).
 * - Blind zones: the caller holds a zone whose readers are offline (`setHeld`): its present tags
 *   do not depart while it cannot read them, and on release get a full departAfterMs to be seen
 *   again. A dead reader is a device condition, not every tag leaving at once.
 * - Bounded memory: at most `maxTags` tags are tracked (present or candidate). A read of a new tag
 *   beyond the cap is dropped and counted (`tagsOverCap`); tracked tags are never evicted to make
 *   room, since that would report departures of tags that are still there. A candidate that never
 *   reaches the arrival rule is forgotten once its window has passed, and a tag with no zone left
 *   is forgotten at once, so strays do not fill the table. Per tag: one small object per zone
 *   that sees it, with a ring of `arriveAfter` sighting times.
 */
import { ErrorCode, ShelfgateError } from '../../errors';

export interface ZoneConfig {
  /** Location id the zone observes (e.g. `backroom`, `g1/s3`, `fitting-1`). Unique. */
  id: string;
  antennas: ReadonlyArray<{ reader: string; antenna: number }>;
  /** Sightings (read cycles) needed within `windowMs` for an arrival; >= 1. */
  arriveAfter: number;
  windowMs: number;
  /** Unseen this long (ms) in the zone: departure. */
  departAfterMs: number;
  /** Reads of one tag within this many ms are one sighting (default 250). */
  readCycleMs?: number;
}

export interface SmootherOptions {
  zones: ReadonlyArray<ZoneConfig>;
  /** Most tags tracked at once (default 100,000). */
  maxTags?: number;
  /** RSSI advantage (dB) another zone needs to take a tag over (default 6). */
  handoverMarginDb?: number;
  /** Time (ms) a tag stays in a zone before another zone may take it over (default 3,000). */
  minDwellMs?: number;
  /** Weight of each new cycle peak in the RSSI average, 0 < a <= 1 (default 0.25). */
  rssiAlpha?: number;
}

export interface TagRead {
  /** Tag identity: the EPC as uppercase hex. */
  epc: string;
  /** GTIN-14 decoded from the EPC, or null (raw EPC). Taken from a tag's first read. */
  gtin: string | null;
  reader: string;
  antenna: number;
  /** Peak RSSI in dBm, or null when the reader did not report it. */
  rssi: number | null;
  /** Time of the read (ms, same clock as `tick`). */
  at: number;
}

export interface ArrivalEvent {
  type: 'arrival';
  epc: string;
  zone: string;
  gtin: string | null;
  /** Smoothed RSSI in this zone at arrival (dBm), null if the reader reports none. */
  rssi: number | null;
  /** First read in this zone of the run of reads that made it arrive. */
  firstSeen: number;
  /** The zone it came from when this arrival is the second half of a hand-over, else null. */
  from: string | null;
  at: number;
}

export interface DepartureEvent {
  type: 'departure';
  epc: string;
  zone: string;
  gtin: string | null;
  lastSeen: number;
  /** `unseen`: not read for departAfterMs; `moved`: taken over by a stronger zone (`to`). */
  reason: 'unseen' | 'moved';
  to: string | null;
  at: number;
}

export interface CountEvent {
  type: 'count';
  zone: string;
  /** null: tags whose EPC carries no GTIN. */
  gtin: string | null;
  count: number;
  at: number;
}

export type SmoothingEvent = ArrivalEvent | DepartureEvent | CountEvent;

export interface SmootherCounters {
  reads: number;
  /** Reads folded into the current read cycle (not a new sighting). */
  duplicates: number;
  /** Reads from a (reader, antenna) that belongs to no zone. */
  unknownAntenna: number;
  /** Reads of a new tag dropped because `maxTags` tags are tracked. */
  tagsOverCap: number;
  /** Reads with a time or RSSI that is not a finite number. */
  invalidReads: number;
  arrivals: number;
  departures: number;
  handovers: number;
  /** Candidates (tag in a zone) forgotten without ever arriving: strays. */
  strays: number;
}

const DEFAULTS = { maxTags: 100_000, handoverMarginDb: 6, minDwellMs: 3000, rssiAlpha: 0.25, readCycleMs: 250 };

interface Zone {
  id: string;
  index: number;
  arriveAfter: number;
  windowMs: number;
  departAfterMs: number;
  readCycleMs: number;
  /** Blind (its readers are offline): its tags do not depart for being unseen. */
  held: boolean;
}

/** One tag as seen by one zone. */
interface Obs {
  zone: Zone;
  firstSeen: number;
  lastSeen: number;
  cycleStart: number;
  /** Peak RSSI of the current cycle (NaN: none). */
  peak: number;
  /** Average of completed cycles' peaks (NaN: none yet). */
  avg: number;
  /** Ring of the last `arriveAfter` sighting times. */
  times: number[];
  head: number;
  sightings: number;
  present: boolean;
}

interface Tag {
  epc: string;
  gtin: string | null;
  /** Usually one; two or three where zones overlap. */
  obs: Obs[];
  owner: Obs | null;
  ownerSince: number;
}

interface CountEntry {
  zone: Zone;
  gtin: string | null;
  count: number;
  reported: number;
  dirty: boolean;
}

export class RfidSmoother {
  readonly counters: SmootherCounters = {
    reads: 0,
    duplicates: 0,
    unknownAntenna: 0,
    tagsOverCap: 0,
    invalidReads: 0,
    arrivals: 0,
    departures: 0,
    handovers: 0,
    strays: 0,
  };
  private readonly zones: Zone[] = [];
  private readonly byAntenna = new Map<string, Map<number, Zone>>();
  private readonly tags = new Map<string, Tag>();
  private readonly counts: Array<Map<string | null, CountEntry>> = [];
  private dirty: CountEntry[] = [];
  private readonly maxTags: number;
  private readonly margin: number;
  private readonly minDwellMs: number;
  private readonly alpha: number;

  constructor(
    opts: SmootherOptions,
    private readonly emit: (e: SmoothingEvent) => void,
  ) {
    const issues: Array<{ path: string; message: string }> = [];
    const num = (path: string, v: number, ok: boolean) => {
      if (!Number.isFinite(v) || !ok) issues.push({ path, message: `invalid value ${v}` });
    };
    this.maxTags = opts.maxTags ?? DEFAULTS.maxTags;
    this.margin = opts.handoverMarginDb ?? DEFAULTS.handoverMarginDb;
    this.minDwellMs = opts.minDwellMs ?? DEFAULTS.minDwellMs;
    this.alpha = opts.rssiAlpha ?? DEFAULTS.rssiAlpha;
    num('maxTags', this.maxTags, Number.isInteger(this.maxTags) && this.maxTags >= 1);
    num('handoverMarginDb', this.margin, this.margin >= 0);
    num('minDwellMs', this.minDwellMs, this.minDwellMs >= 0);
    num('rssiAlpha', this.alpha, this.alpha > 0 && this.alpha <= 1);
    const ids = new Set<string>();
    opts.zones.forEach((z, i) => {
      const at = `zones[${i}]`;
      if (!z.id || ids.has(z.id)) issues.push({ path: `${at}.id`, message: z.id ? `duplicate zone id ${z.id}` : 'empty zone id' });
      ids.add(z.id);
      num(`${at}.arriveAfter`, z.arriveAfter, Number.isInteger(z.arriveAfter) && z.arriveAfter >= 1 && z.arriveAfter <= 64);
      num(`${at}.windowMs`, z.windowMs, z.windowMs >= 0);
      num(`${at}.departAfterMs`, z.departAfterMs, z.departAfterMs > 0);
      const readCycleMs = z.readCycleMs ?? DEFAULTS.readCycleMs;
      num(`${at}.readCycleMs`, readCycleMs, readCycleMs >= 0);
      const zone: Zone = { id: z.id, index: i, arriveAfter: z.arriveAfter, windowMs: z.windowMs, departAfterMs: z.departAfterMs, readCycleMs, held: false };
      this.zones.push(zone);
      this.counts.push(new Map());
      for (const a of z.antennas) {
        let m = this.byAntenna.get(a.reader);
        if (!m) this.byAntenna.set(a.reader, (m = new Map()));
        const other = m.get(a.antenna);
        if (other) issues.push({ path: `${at}.antennas`, message: `${a.reader} antenna ${a.antenna} is already in zone ${other.id}` });
        else m.set(a.antenna, zone);
      }
    });
    if (issues.length > 0) throw new ShelfgateError(ErrorCode.CONFIG_INVALID, `invalid RFID zones: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`, issues);
  }

  /** Number of tags tracked now (present somewhere, or candidates). */
  get trackedTags(): number {
    return this.tags.size;
  }

  /** The zone a tag is in now, or null. */
  zoneOf(epc: string): string | null {
    return this.tags.get(epc)?.owner?.zone.id ?? null;
  }

  /** Present tags per GTIN in a zone (counts as of the last change, emitted or not). */
  zoneCounts(zone: string): Map<string | null, number> {
    const out = new Map<string | null, number>();
    const z = this.zones.find((x) => x.id === zone);
    if (z) for (const [g, e] of this.counts[z.index]!) if (e.count > 0) out.set(g, e.count);
    return out;
  }

  /**
   * Holds a zone whose readers cannot read (offline): while held, its present tags do not depart
   * for being unseen (not seeing them proves nothing). On release, every tag of the zone counts as
   * seen at `now`, so it departs only if it stays unseen for the zone's departAfterMs from then.
   */
  setHeld(zone: string, held: boolean, now: number): void {
    const z = this.zones.find((x) => x.id === zone);
    if (!z || z.held === held) return;
    z.held = held;
    if (held) return;
    for (const tag of this.tags.values()) for (const o of tag.obs) if (o.zone === z && o.present && o.lastSeen < now) o.lastSeen = now;
  }

  /**
   * Puts back a tag that was present in `zone` before a restart, without an arrival: it counts in
   * the zone at once, and departs like any present tag if it stays unseen for the zone's
   * departAfterMs from `now` (not from before the restart). False when the zone is unknown (the
   * config changed), the tag is already tracked, or the tag cap is reached.
   */
  restore(t: { epc: string; gtin: string | null; zone: string; since: number }, now: number): boolean {
    const zone = this.zones.find((x) => x.id === t.zone);
    if (!zone || this.tags.has(t.epc) || this.tags.size >= this.maxTags) return false;
    const o: Obs = { zone, firstSeen: t.since, lastSeen: now, cycleStart: now, peak: NaN, avg: NaN, times: new Array<number>(zone.arriveAfter).fill(now), head: 0, sightings: zone.arriveAfter, present: true };
    this.tags.set(t.epc, { epc: t.epc, gtin: t.gtin, obs: [o], owner: o, ownerSince: t.since });
    this.count(zone, t.gtin, +1);
    return true;
  }

  /** Feeds one read. Emits arrivals (and hand-overs) at once; departures and counts wait for tick(). */
  read(r: TagRead): void {
    this.counters.reads++;
    const zone = this.byAntenna.get(r.reader)?.get(r.antenna);
    if (!zone) {
      this.counters.unknownAntenna++;
      return;
    }
    const at = r.at;
    const rssi = r.rssi === null ? NaN : r.rssi;
    if (!Number.isFinite(at) || (r.rssi !== null && !Number.isFinite(rssi))) {
      this.counters.invalidReads++;
      return;
    }
    let tag = this.tags.get(r.epc);
    if (!tag) {
      if (this.tags.size >= this.maxTags) {
        this.counters.tagsOverCap++;
        return;
      }
      tag = { epc: r.epc, gtin: r.gtin, obs: [], owner: null, ownerSince: 0 };
      this.tags.set(r.epc, tag);
    }
    // gaps the caller's tick() has not handled yet end their runs of reads first
    for (let i = tag.obs.length - 1; i >= 0; i--) {
      const x = tag.obs[i];
      if (x && this.stale(x, at)) this.expireObs(tag, x, at);
    }
    if (tag.obs.length === 0) this.tags.set(r.epc, tag);
    let o: Obs | undefined;
    for (let i = 0; i < tag.obs.length; i++) if (tag.obs[i]!.zone === zone) o = tag.obs[i];
    if (!o) {
      o = { zone, firstSeen: at, lastSeen: at, cycleStart: at, peak: rssi, avg: NaN, times: new Array<number>(zone.arriveAfter).fill(0), head: 0, sightings: 0, present: false };
      tag.obs.push(o);
      this.sighting(o, at);
    } else {
      if (at > o.lastSeen) o.lastSeen = at;
      if (at - o.cycleStart < zone.readCycleMs) {
        this.counters.duplicates++;
        if (rssi === rssi && !(rssi <= o.peak)) o.peak = rssi; // a number replaces NaN, NaN never replaces
        return;
      }
      // a new cycle: fold the last one's peak into the average
      if (o.peak === o.peak) o.avg = o.avg === o.avg ? o.avg + this.alpha * (o.peak - o.avg) : o.peak;
      o.cycleStart = at;
      o.peak = rssi;
      this.sighting(o, at);
    }
    if (!o.present) return;
    if (!tag.owner) {
      if (!this.blocked(tag, o, at)) this.arrive(tag, o, at, null);
    } else if (tag.owner !== o && at - tag.ownerSince >= this.minDwellMs && this.rssi(o) >= this.rssi(tag.owner) + this.margin) {
      const old = tag.owner;
      this.counters.handovers++;
      this.depart(tag, old, at, 'moved', o.zone.id);
      this.arrive(tag, o, at, old.zone.id);
    }
  }

  /**
   * Advances time: departures of tags unseen for their zone's departAfterMs, forgetting of strays,
   * then one count event per (zone, GTIN) whose count changed since the last tick.
   */
  tick(now: number): void {
    for (const tag of this.tags.values()) {
      const obs = tag.obs;
      for (let i = obs.length - 1; i >= 0; i--) {
        const o = obs[i];
        if (!o) continue; // removed by an expiry earlier in this loop
        if (this.stale(o, now)) this.expireObs(tag, o, now);
      }
    }
    this.flushCounts(now);
  }

  /** Emits the pending count changes now (tick() does this; exposed for a caller's shutdown). */
  flushCounts(now: number): void {
    const d = this.dirty;
    if (d.length === 0) return;
    this.dirty = [];
    for (const e of d) {
      e.dirty = false;
      if (e.count !== e.reported) {
        e.reported = e.count;
        this.emit({ type: 'count', zone: e.zone.id, gtin: e.gtin, count: e.count, at: now });
      }
      if (e.count === 0) this.counts[e.zone.index]!.delete(e.gtin);
    }
  }

  // ------------------------------------------------------------------ internals

  /** Present: unseen for departAfterMs (departure). Candidate: its window has passed without an arrival. */
  private stale(o: Obs, now: number): boolean {
    if (o.present && o.zone.held) return false;
    return o.present ? now - o.lastSeen >= o.zone.departAfterMs : now - o.lastSeen > Math.max(o.zone.windowMs, o.zone.readCycleMs);
  }

  /** Smoothed RSSI of a tag in a zone: the average with the current cycle's peak folded in (NaN: none). */
  private rssi(o: Obs): number {
    if (o.peak !== o.peak) return o.avg;
    if (o.avg !== o.avg) return o.peak;
    return o.avg + this.alpha * (o.peak - o.avg);
  }

  /**
   * A first arrival waits while another zone sees the tag clearly stronger (by the hand-over
   * margin) but has not yet had its N sightings: otherwise a tag entering where two zones overlap
   * would arrive in whichever zone happened to count to N first and be handed over a few seconds
   * later (a spurious arrival and departure). The wait is bounded by the other zone's window,
   * counted from its first sighting: after that the tag arrives here with its next sighting (or
   * at once when the other zone's candidate is forgotten as a stray).
   */
  private blocked(tag: Tag, o: Obs, now: number): boolean {
    const r = this.rssi(o);
    for (const x of tag.obs) {
      if (x !== o && !x.present && now - x.firstSeen <= x.zone.windowMs && this.rssi(x) >= r + this.margin) return true;
    }
    return false;
  }

  private sighting(o: Obs, at: number): void {
    const n = o.times.length;
    o.times[o.head] = at;
    o.head = (o.head + 1) % n;
    o.sightings++;
    // after the write, o.head is the oldest of the last n sightings
    if (!o.present && o.sightings >= n && at - o.times[o.head]! <= o.zone.windowMs) o.present = true;
  }

  /** Ends a tag's run of reads in one zone: departure if it owned the tag, then maybe arrival elsewhere. */
  private expireObs(tag: Tag, o: Obs, now: number): void {
    const i = tag.obs.indexOf(o);
    if (i >= 0) tag.obs.splice(i, 1);
    const wasOwner = tag.owner === o;
    if (wasOwner) this.depart(tag, o, now, 'unseen', null);
    else if (!o.present) this.counters.strays++;
    if (!tag.owner) {
      // the tag may be present (or have become unblocked) in another zone: it arrives there now
      let best: Obs | null = null;
      for (const x of tag.obs) if (x.present && !this.stale(x, now) && (!best || this.rssi(x) > this.rssi(best))) best = x;
      if (best && !this.blocked(tag, best, now)) this.arrive(tag, best, now, wasOwner ? o.zone.id : null);
    }
    if (tag.obs.length === 0) this.tags.delete(tag.epc);
  }

  private arrive(tag: Tag, o: Obs, at: number, from: string | null): void {
    tag.owner = o;
    tag.ownerSince = at;
    this.counters.arrivals++;
    this.count(o.zone, tag.gtin, +1);
    const r = this.rssi(o);
    this.emit({ type: 'arrival', epc: tag.epc, zone: o.zone.id, gtin: tag.gtin, rssi: r === r ? Math.round(r * 10) / 10 : null, firstSeen: o.firstSeen, from, at });
  }

  private depart(tag: Tag, o: Obs, at: number, reason: 'unseen' | 'moved', to: string | null): void {
    tag.owner = null;
    this.counters.departures++;
    this.count(o.zone, tag.gtin, -1);
    this.emit({ type: 'departure', epc: tag.epc, zone: o.zone.id, gtin: tag.gtin, lastSeen: o.lastSeen, reason, to, at });
  }

  private count(zone: Zone, gtin: string | null, delta: number): void {
    const m = this.counts[zone.index]!;
    let e = m.get(gtin);
    if (!e) m.set(gtin, (e = { zone, gtin, count: 0, reported: 0, dirty: false }));
    e.count += delta;
    if (!e.dirty) {
      e.dirty = true;
      this.dirty.push(e);
    }
  }
}

