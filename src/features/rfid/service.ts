/**
 * RFID zones: tag reads from every reader -> EPC decoding (cached per EPC) -> zone smoothing
 * (./smoothing.ts) -> durable events. The order is the shelves feature's: SQLite commit first
 * (outbox event, plus the zone count and the location's stock in the same batch), then the bus and
 * the in-process EventBus, with exactly what was committed, in commit order per zone.
 *
 * Outbox (device id `rfid/<zone>`, docs/central-api.yaml): `arrival` and `departure` per tag,
 * `zone_count` per (zone, GTIN) when the number of present tags of that GTIN changes.
 *
 * Design choices:
 * - Zone counts are stock observations of the zone's location: the count of the GTIN the location
 *   holds (its assignment) is saved as the location's stock (`observed_by: 'rfid'`) and announced
 *   as `stockCommitted`, like a weight count. Other GTINs seen in the zone (a misplaced item, a mixed
 *   back room) are counted per GTIN on the bus and to central (zone_count) but are not the
 *   location's stock. Tags whose EPC carries no GTIN (not an SGTIN) are counted on the bus under
 *   `none` only: central's zone_count needs a GTIN, and a guessed one would be a phantom.
 * - Which zone each present tag is in is committed with its arrival or departure (table
 *   rfid_presence, ./repository.ts). At start those tags are restored as present without an
 *   arrival (central has it already): a tag still there is simply read on, one that left while the
 *   gateway was down departs after the zone's depart_after_ms from the start. For the first
 *   `settleMs` (twice the longest arrival window) count changes are held, then each (zone, GTIN)
 *   is compared with the count committed before the restart: an unchanged count is not reported
 *   again, and a GTIN no longer seen drops to 0.
 * - The retained count message of a (zone, GTIN) that drops to 0 is cleared (an empty retained
 *   payload), so the retained set stays bounded by what is present; zone_count 0 still goes to central.
 * - The EPC cache (decoded GTIN and serial) holds at most `maxTags` EPCs, oldest first out.
 * - A zone whose readers are all offline is held (RfidSmoother.setHeld): its tags do not depart
 *   while nobody can read them; the reader's offline state is on the bus as device availability.
 * - Raw reads (optional) are rate-limited per second across readers; reads beyond are counted, not queued.
 */
import { performance } from 'node:perf_hooks';
import { ErrorCode, ShelfgateError } from '../../errors';
import type { Service } from '../../lifecycle';
import { LogLimiter, type Logger } from '../../log';
import type { LocalBus } from '../../bus/broker';
import * as topics from '../../bus/topics';
import { handle } from '../../core/commands';
import { Priority } from '../../core/event-kinds';
import type { EventBus } from '../../core/events';
import type { Locations } from '../../core/locations';
import type { DeviceAvailability, Source } from '../../core/sources/types';
import { decodeEpc, epcGtin } from '../../drivers/epc';
import type { Store } from '../../store/store';
import { toGtin14 } from '../../util/gtin';
import { LatencyRecorder } from '../../util/latency';
import { rfidReaders, rfidZones } from './commands';
import type { RfidConfig, RfidZoneConfig } from './config';
import type { TagRead } from './m100-source';
import type { PresenceRow, ZoneCountRepository, ZonePresenceRepository } from './repository';
import { RfidSmoother, type SmoothingEvent } from './smoothing';

/** Which feature observed a stock level (core `stock.observed_by`). */
export const OBSERVER = 'rfid';
/** The topic area of the feature, `shelfgate/v1/<store>/rfid/...`. */
export const RFID_AREA = 'rfid';
/** Topic level of the count of tags whose EPC carries no GTIN. */
export const NO_GTIN = 'none';

export interface RfidServiceOptions {
  storeId: string;
  config: RfidConfig;
  store: Store;
  bus: Pick<LocalBus, 'publish'>;
  events: EventBus;
  locations: Locations;
  repo: ZoneCountRepository;
  /** Tags present per zone, restored at start (no repeated arrivals after a restart). */
  presence: ZonePresenceRepository;
  sources: ReadonlyArray<Source<TagRead>>;
  log: Logger;
}

interface PresentTag {
  gtin: string | null;
  serial: string | null;
  since: number;
  rssi: number | null;
  reader: string;
  antenna: number;
}

interface ZoneEntry {
  cfg: RfidZoneConfig;
  id: string;
  deviceId: string;
  eventTopic: string;
  antennas: Set<string>;
  present: Map<string, PresentTag>;
  /** Tail of this zone's commit-then-publish chain: its messages reach the bus in commit order. */
  tail: Promise<void>;
}

interface EpcInfo {
  gtin: string | null;
  serial: string | null;
  /** The EPC's last read. */
  reader: string;
  antenna: number;
}

export interface RfidStats {
  reads: number;
  /** Distinct EPCs decoded that are not an SGTIN (kept as raw hex, no GTIN). */
  rawEpcs: number;
  epcCacheEvictions: number;
  arrivals: number;
  departures: number;
  /** zone_count events committed to the outbox. */
  zoneCounts: number;
  /** Stock observations of locations (zone counts of the location's GTIN). */
  stockObservations: number;
  rawReadsPublished: number;
  rawReadsDropped: number;
  publishFailures: number;
  persistFailures: number;
}

const antennaKey = (reader: string, antenna: number): string => `${reader}#${antenna}`;

export class RfidService implements Service {
  readonly name = 'rfid';
  /** Arrival latency: from the read that made a tag arrive to its event on the bus. */
  readonly latency = new LatencyRecorder();
  readonly stats: RfidStats = {
    reads: 0,
    rawEpcs: 0,
    epcCacheEvictions: 0,
    arrivals: 0,
    departures: 0,
    zoneCounts: 0,
    stockObservations: 0,
    rawReadsPublished: 0,
    rawReadsDropped: 0,
    publishFailures: 0,
    persistFailures: 0,
  };
  readonly smoother: RfidSmoother;
  /** Count changes are held this long (ms) after start; see the file comment. */
  readonly settleMs: number;
  private readonly zones = new Map<string, ZoneEntry>();
  private readonly zoneOfAntenna = new Map<string, ZoneEntry>();
  private readonly epcs = new Map<string, EpcInfo>();
  private readonly maxEpcs: number;
  /** Last recorded count per zone and GTIN (entries at 0 leave once committed). */
  private readonly levels = new Map<string, number>();
  /** Counts held while settling, by zone and GTIN (`null` GTIN as NO_GTIN). */
  private pending: Map<string, { zone: ZoneEntry; gtin: string | null; count: number }> | null = null;
  private readonly limiter: LogLimiter;
  private tickTimer: NodeJS.Timeout | null = null;
  private settleTimer: NodeJS.Timeout | null = null;
  private current: TagRead | null = null;
  private rawWindowStart = 0;
  private rawInWindow = 0;
  private running = false;
  private readonly inflight = new Set<Promise<void>>();
  private readonly onReading = (r: TagRead): void => this.handleRead(r);
  /** Readers reported offline by their source. */
  private readonly offline = new Set<string>();
  private readonly onAvailability = (a: DeviceAvailability): void => this.readerAvailability(a.sensor, a.online);

  constructor(private readonly o: RfidServiceOptions) {
    this.limiter = new LogLimiter(o.log);
    const c = o.config;
    this.maxEpcs = c.max_tags;
    this.settleMs = 2 * Math.max(...c.zones.map((z) => Math.max(z.window_ms, z.arrive_after * z.read_cycle_ms)), c.tick_ms);
    this.smoother = new RfidSmoother(
      {
        zones: c.zones.map((z) => ({ id: z.id, antennas: z.antennas, arriveAfter: z.arrive_after, windowMs: z.window_ms, departAfterMs: z.depart_after_ms, readCycleMs: z.read_cycle_ms })),
        maxTags: c.max_tags,
        handoverMarginDb: c.handover_margin_db,
        minDwellMs: c.min_dwell_ms,
      },
      (e) => this.onSmoothing(e),
    );
    for (const z of c.zones) {
      const entry: ZoneEntry = {
        cfg: z,
        id: z.id,
        deviceId: `rfid/${z.id}`,
        eventTopic: topics.featureTopic(o.storeId, RFID_AREA, 'zone', z.id, 'event'),
        antennas: new Set(z.antennas.map((a) => antennaKey(a.reader, a.antenna))),
        present: new Map(),
        tail: Promise.resolve(),
      };
      this.zones.set(z.id, entry);
      for (const a of z.antennas) this.zoneOfAntenna.set(antennaKey(a.reader, a.antenna), entry);
    }
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    this.pending = new Map();
    this.restorePresence(Date.now());
    this.o.events.on(this, 'assignmentChanged', (a) => {
      for (const z of this.zones.values()) if (z.cfg.location === a.locationId && a.gtin) this.recountLocation(z, toGtin14(a.gtin));
    });
    for (const s of this.o.sources) {
      s.on('reading', this.onReading);
      s.on('availability', this.onAvailability);
    }
    this.tickTimer = setInterval(() => this.smoother.tick(Date.now()), this.o.config.tick_ms);
    this.tickTimer.unref();
    this.settleTimer = setTimeout(() => this.settled(), this.settleMs);
    this.settleTimer.unref();
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    for (const s of this.o.sources) {
      s.off('reading', this.onReading);
      s.off('availability', this.onAvailability);
    }
    this.o.events.removeOwner(this);
    if (this.tickTimer) clearInterval(this.tickTimer);
    if (this.settleTimer) clearTimeout(this.settleTimer);
    this.tickTimer = null;
    this.settleTimer = null;
    this.pending = null;
    await Promise.allSettled([...this.inflight]);
  }

  /**
   * The tags present when the gateway stopped are present again, with no arrival event (central
   * has them already); the smoother's departure rule then decides from now on. A tag whose zone is
   * gone from the config is dropped from the table.
   */
  private restorePresence(now: number): void {
    let restored = 0;
    for (const row of this.o.presence.load()) {
      const zone = this.zones.get(row.zoneId);
      if (!zone || !this.smoother.restore({ epc: row.epc, gtin: row.gtin, zone: zone.id, since: row.since }, now)) {
        void this.o.presence.save({ ...row, zoneId: null }).catch(() => undefined);
        continue;
      }
      zone.present.set(row.epc, { gtin: row.gtin, serial: row.serial, since: row.since, rssi: null, ...this.readerIn(zone, undefined) });
      restored++;
    }
    if (restored > 0) this.o.log.info({ tags: restored }, 'rfid: tags present before the restart restored (no new arrivals for them)');
  }

  /** True while count changes are held after start. */
  get settling(): boolean {
    return this.pending !== null;
  }

  /** Zones with their counts per GTIN and (up to `limit` per zone) the tags present. */
  zonesReport(opts: { zone?: string; tags?: boolean; limit?: number } = {}) {
    const list = [...this.zones.values()].filter((z) => opts.zone === undefined || z.id === opts.zone);
    if (opts.zone !== undefined && list.length === 0) throw new ShelfgateError(ErrorCode.NOT_FOUND, `no RFID zone ${opts.zone}`);
    const limit = opts.limit ?? 1000;
    return list.map((z) => {
      const counts = [...this.smoother.zoneCounts(z.id)].map(([gtin, count]) => ({ gtin, count })).sort((a, b) => (a.gtin ?? '').localeCompare(b.gtin ?? ''));
      const out: Record<string, unknown> = { zone_id: z.id, location_id: z.cfg.location, tags_present: z.present.size, counts };
      if (opts.tags !== false) {
        const tags: object[] = [];
        for (const [epc, t] of z.present) {
          if (tags.length >= limit) break;
          tags.push({ epc, gtin: t.gtin, serial: t.serial, since: new Date(t.since).toISOString(), rssi_dbm: t.rssi, reader_id: t.reader, antenna: t.antenna });
        }
        out.tags = tags;
      }
      return out;
    });
  }

  /** Every reader: online or not, and its source's frame counters. */
  readersReport() {
    return this.o.sources.flatMap((s) => s.devices.map((id) => ({ reader_id: id, online: s.isOnline(id), ...s.stats })));
  }

  commandHandlers() {
    return [handle(rfidZones, async (p) => this.zonesReport(p)), handle(rfidReaders, async () => this.readersReport())];
  }

  status(): Record<string, unknown> {
    return {
      readers: this.o.sources.length,
      zones: [...this.zones.values()].map((z) => ({ id: z.id, location: z.cfg.location, tags: z.present.size })),
      tags_tracked: this.smoother.trackedTags,
      settling: this.settling,
    };
  }

  metrics(): Record<string, number> {
    const s = this.stats;
    const c = this.smoother.counters;
    let present = 0;
    for (const z of this.zones.values()) present += z.present.size;
    return {
      rfid_reads_total: s.reads,
      rfid_raw_epcs_total: s.rawEpcs,
      rfid_epc_cache_evictions_total: s.epcCacheEvictions,
      rfid_arrivals_total: s.arrivals,
      rfid_departures_total: s.departures,
      rfid_handovers_total: c.handovers,
      rfid_zone_counts_total: s.zoneCounts,
      rfid_stock_observations_total: s.stockObservations,
      rfid_duplicate_reads_total: c.duplicates,
      rfid_unknown_antenna_reads_total: c.unknownAntenna,
      rfid_tags_over_cap_total: c.tagsOverCap,
      rfid_invalid_reads_total: c.invalidReads,
      rfid_stray_tags_total: c.strays,
      rfid_raw_reads_published_total: s.rawReadsPublished,
      rfid_raw_reads_dropped_total: s.rawReadsDropped,
      rfid_publish_failures_total: s.publishFailures,
      rfid_persist_failures_total: s.persistFailures,
      rfid_tags_tracked: this.smoother.trackedTags,
      rfid_tags_present: present,
    };
  }

  // ------------------------------------------------------------------ reads

  /** A zone all of whose readers are offline is held: its tags do not depart while nobody can see them. */
  private readerAvailability(reader: string, online: boolean): void {
    if (online ? !this.offline.delete(reader) : this.offline.has(reader)) return;
    if (!online) this.offline.add(reader);
    const now = Date.now();
    for (const z of this.zones.values()) {
      if (!z.cfg.antennas.some((a) => a.reader === reader)) continue;
      const blind = z.cfg.antennas.every((a) => this.offline.has(a.reader));
      this.smoother.setHeld(z.id, blind, now);
      this.o.log.info({ zone: z.id, reader, held: blind }, blind ? 'rfid zone blind: its readers are offline, its tags are kept' : 'rfid zone reading again');
    }
  }

  /** Feeds one read (the sources call this; exposed for tests and benchmarks). */
  handleRead(r: TagRead): void {
    this.stats.reads++;
    const info = this.epcInfo(r.epcHex);
    info.reader = r.reader;
    info.antenna = r.antenna;
    this.current = r;
    try {
      this.smoother.read({ epc: r.epcHex, gtin: info.gtin, reader: r.reader, antenna: r.antenna, rssi: r.rssi, at: r.ts });
    } finally {
      this.current = null;
    }
    if (this.o.config.raw_reads.enabled) this.rawRead(r, info);
  }

  private epcInfo(hex: string): EpcInfo {
    const hit = this.epcs.get(hex);
    if (hit) return hit;
    const d = decodeEpc(hex);
    const gtin = epcGtin(d);
    if (d.scheme === 'raw') this.stats.rawEpcs++;
    const serial = d.scheme !== 'raw' && /^[0-9]{1,20}$/.test(d.serial) ? d.serial : null;
    if (this.epcs.size >= this.maxEpcs) {
      const oldest = this.epcs.keys().next().value;
      if (oldest !== undefined) this.epcs.delete(oldest);
      this.stats.epcCacheEvictions++;
    }
    const info: EpcInfo = { gtin, serial, reader: '', antenna: 0 };
    this.epcs.set(hex, info);
    return info;
  }

  private rawRead(r: TagRead, info: EpcInfo): void {
    const now = performance.now();
    if (now - this.rawWindowStart >= 1000) {
      this.rawWindowStart = now;
      this.rawInWindow = 0;
    }
    if (this.rawInWindow >= this.o.config.raw_reads.max_per_s) {
      this.stats.rawReadsDropped++;
      return;
    }
    this.rawInWindow++;
    this.stats.rawReadsPublished++;
    const zone = this.zoneOfAntenna.get(antennaKey(r.reader, r.antenna));
    void this.publish(
      topics.featureTopic(this.o.storeId, RFID_AREA, 'reader', r.reader, 'read'),
      { store_id: this.o.storeId, reader_id: r.reader, antenna: r.antenna, zone_id: zone?.id ?? null, epc: r.epcHex, gtin: info.gtin, rssi_dbm: r.rssi, ts: new Date(r.ts).toISOString() },
      false,
    );
  }

  // ------------------------------------------------------------------ smoothing events

  private onSmoothing(e: SmoothingEvent): void {
    const zone = this.zones.get(e.zone);
    if (!zone) return;
    switch (e.type) {
      case 'arrival': {
        const info = this.epcs.get(e.epc);
        const where = this.readerIn(zone, info);
        const serial = info?.serial ?? null;
        zone.present.set(e.epc, { gtin: e.gtin, serial, since: e.at, rssi: e.rssi, ...where });
        this.stats.arrivals++;
        this.persistPresence({ epc: e.epc, zoneId: zone.id, gtin: e.gtin, serial, since: e.at });
        const payload = {
          store_id: this.o.storeId,
          zone_id: zone.id,
          kind: 'arrival',
          epc: e.epc,
          gtin: e.gtin,
          serial,
          reader_id: where.reader,
          antenna: where.antenna,
          ...(e.rssi !== null ? { rssi_dbm: e.rssi } : {}),
          location_id: zone.cfg.location,
          first_seen_at: new Date(e.firstSeen).toISOString(),
          from_zone: e.from,
        };
        this.record(zone, 'arrival', payload, e.at, this.current?.rxMono ?? performance.now());
        return;
      }
      case 'departure': {
        const was = zone.present.get(e.epc);
        zone.present.delete(e.epc);
        this.stats.departures++;
        // a hand-over's arrival elsewhere follows in the same turn and wins the coalesced write
        this.persistPresence({ epc: e.epc, zoneId: null, gtin: e.gtin, serial: null, since: e.at });
        const info = this.epcs.get(e.epc);
        const where = was ? { reader: was.reader, antenna: was.antenna } : this.readerIn(zone, info);
        const payload = {
          store_id: this.o.storeId,
          zone_id: zone.id,
          kind: 'departure',
          epc: e.epc,
          gtin: e.gtin,
          serial: was?.serial ?? info?.serial ?? null,
          reader_id: where.reader,
          antenna: where.antenna,
          last_seen_at: new Date(e.lastSeen).toISOString(),
          location_id: zone.cfg.location,
          reason: e.reason,
          to_zone: e.to,
        };
        this.record(zone, 'departure', payload, e.at, performance.now());
        return;
      }
      case 'count':
        if (this.pending) this.pending.set(`${zone.id}\u0000${e.gtin ?? NO_GTIN}`, { zone, gtin: e.gtin, count: e.count });
        else this.count(zone, e.gtin, e.count, e.at, false);
        return;
    }
  }

  /** The reader antenna of a zone that saw the tag: the current read's, else its last read's if in the zone, else the zone's first. */
  private readerIn(zone: ZoneEntry, info: EpcInfo | undefined): { reader: string; antenna: number } {
    const c = this.current;
    if (c && zone.antennas.has(antennaKey(c.reader, c.antenna))) return { reader: c.reader, antenna: c.antenna };
    if (info && zone.antennas.has(antennaKey(info.reader, info.antenna))) return { reader: info.reader, antenna: info.antenna };
    const a = zone.cfg.antennas[0]!;
    return { reader: a.reader, antenna: a.antenna };
  }

  /** The end of the settling period: report the counts that differ from the ones committed before. */
  private settled(): void {
    const held = this.pending;
    this.pending = null;
    this.settleTimer = null;
    if (!held || !this.running) return;
    const now = Date.now();
    for (const p of held.values()) this.count(p.zone, p.gtin, p.count, now, false);
    // GTINs counted before the restart and not seen since: gone
    for (const row of this.o.repo.load()) {
      const zone = this.zones.get(row.zoneId);
      if (!zone || row.count === 0 || held.has(`${zone.id}\u0000${row.gtin}`)) continue;
      if ((this.smoother.zoneCounts(zone.id).get(row.gtin) ?? 0) === 0) this.count(zone, row.gtin, 0, now, false);
    }
    this.o.log.info({ zones: this.zones.size, counts: held.size, settle_ms: this.settleMs }, 'rfid zone counts settled after start');
  }

  /** The location's assignment changed: its stock is now the count of the new GTIN in the zone. */
  private recountLocation(zone: ZoneEntry, gtin: string): void {
    if (this.pending) return; // the settle reports it
    this.count(zone, gtin, this.smoother.zoneCounts(zone.id).get(gtin) ?? 0, Date.now(), true);
  }

  /** A zone count of one GTIN: outbox zone_count (+ the location's stock when it is its GTIN), then the bus. */
  private count(zone: ZoneEntry, gtin: string | null, count: number, ts: number, force: boolean): void {
    const countTopic = topics.featureTopic(this.o.storeId, RFID_AREA, 'zone', zone.id, 'count', gtin ?? NO_GTIN);
    const message = { store_id: this.o.storeId, zone_id: zone.id, location_id: zone.cfg.location, gtin, count, ts: new Date(ts).toISOString() };
    if (gtin === null) {
      // not a product: on the bus only, in this zone's order
      this.chain(zone, Promise.resolve(null), async () => this.publish(countTopic, count > 0 ? message : null, true));
      return;
    }
    const key = `${zone.id}\u0000${gtin}`;
    const previous = this.levels.get(key) ?? this.o.repo.get(zone.id, gtin);
    if (previous === count && !force) return;
    this.levels.set(key, count);
    const loc = this.o.locations.get(zone.cfg.location);
    const isStock = !!loc?.gtin && toGtin14(loc.gtin) === gtin;
    const payload = { store_id: this.o.storeId, zone_id: zone.id, kind: 'zone_count', gtin, count, previous_count: previous, location_id: zone.cfg.location };
    const { store, locations } = this.o;
    this.stats.zoneCounts++;
    const committed = store.together(() =>
      Promise.all([
        store.appendEvent({ deviceId: zone.deviceId, kind: 'zone_count', priority: Priority.STOCK, payload, createdAt: ts }),
        this.o.repo.save({ zoneId: zone.id, gtin, count, updatedAt: ts }),
        ...(isStock ? [locations.saveStock({ locationId: zone.cfg.location, count, condition: 'ok', observedBy: OBSERVER, detail: { zone_id: zone.id, gtin }, updatedAt: ts })] : []),
      ]),
    );
    this.chain(
      zone,
      committed.then(([ev]) => ev),
      async (ev) => {
        if (this.levels.get(key) === 0 && count === 0) this.levels.delete(key);
        if (isStock) {
          this.stats.stockObservations++;
          this.o.events.emit('stockCommitted', { locationId: zone.cfg.location, gtin, count, condition: 'ok', observedBy: OBSERVER, seq: ev!.seq, eventId: ev!.eventId, ts });
        }
        await this.publish(countTopic, count > 0 ? { ...message, seq: ev!.seq, event_id: ev!.eventId } : null, true);
      },
    );
  }

  private persistPresence(r: PresenceRow): void {
    this.o.presence.save(r).catch((err: Error) => {
      this.stats.persistFailures++;
      this.limiter.error('presence', { err: err.message }, 'rfid: could not save which zone a tag is in');
    });
  }

  /** An arrival or departure: outbox first, then the zone's event topic. */
  private record(zone: ZoneEntry, kind: 'arrival' | 'departure', payload: Record<string, unknown>, ts: number, rxMono: number): void {
    const committed = this.o.store.appendEvent({ deviceId: zone.deviceId, kind, priority: Priority.STOCK, payload, createdAt: ts });
    this.chain(
      zone,
      committed,
      async (ev) => {
        await this.publish(zone.eventTopic, { ...payload, seq: ev!.seq, event_id: ev!.eventId, ts: new Date(ts).toISOString() }, false);
        if (kind === 'arrival') this.latency.record(performance.now() - rxMono);
      },
    );
  }

  /** Runs `then` after `committed` and after everything before it in this zone; a failed commit publishes nothing. */
  private chain<T>(zone: ZoneEntry, committed: Promise<T>, then: (v: T) => Promise<void>): void {
    const c: Promise<void> = Promise.all([committed, zone.tail])
      .then(([v]) => then(v))
      .catch((e: Error) => this.persistFailed(zone.id, e))
      .finally(() => this.inflight.delete(c));
    zone.tail = c;
    this.inflight.add(c);
  }

  /** `body` null: clear the retained message. */
  private publish(topic: string, body: object | null, retain: boolean): Promise<void> {
    return this.o.bus.publish(topic, body === null ? '' : JSON.stringify(body), { retain, qos: 1 }).catch((e: Error) => {
      this.stats.publishFailures++;
      this.limiter.warn(`publish:${topic}`, { topic, err: e.message }, 'publish failed');
    });
  }

  private persistFailed(zone: string, e: Error): void {
    this.stats.persistFailures++;
    this.limiter.error(`persist:${zone}`, { zone, err: e.message }, 'could not persist RFID event: not published');
  }
}
