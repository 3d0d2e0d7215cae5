/**
 * The RFID feature's slice of the one config: the readers, the zones (sets of reader antennas
 * observing one location) and the smoothing parameters. The feature is off when the `rfid` key is
 * absent (a store without RFID).
 *
 * Design choices:
 * - `readers[]` is a union discriminated by `kind`: `m100` (serial MagicRF M100/QM100/R200
 *   modules, over a serial device or a TCP serial server) and `llrp` (a fixed LLRP 1.0.1 reader on
 *   TCP, ./llrp-source.ts). Each kind is one member of `readerSchema` and one case in ./sources.ts.
 *   Everything else (zones, the service) only uses `id`.
 * - An LLRP reader's `trigger` is per reader, not per zone. The reader gets one ROSpec per zone
 *   that uses it (ROSpecID = the zone's 1-based position in `zones[]`, so it is stable and unique
 *   per reader). A reader has one radio and runs one ROSpec at a time (LLRP 1.0.1: ROSpecs are
 *   scheduled by priority, and a reader does not run two at once). So `immediate` (one ROSpec
 *   running all the time) allows one zone per reader. `periodic` splits each period into one slot
 *   of `duration_ms` per zone: the reader's k-th of n zones starts at offset k x period_ms / n
 *   (spare time becomes gaps between slots, so one ROSpec ends before the next starts). A per-zone
 *   trigger would let two zones of one reader ask for overlapping air time, which the reader cannot
 *   give; per reader, the slots are laid out here and checked to fit the period.
 * - A zone observes a location id of the config's shelves (`shelf/slot`), the same location a
 *   scale may observe: a back room or a fitting room is a slot without a sensor. Its counts are
 *   stock observations of that location (see ./service.ts).
 * - An antenna number is 1-based (LLRP AntennaID and the M100's single port are both 1-based).
 */
import { z } from 'zod';
import { backoff, id, type Config } from '../../config/schema';
import type { ConfigIssue } from '../../config/load';

/** A serial M100/R200 module. */
export const m100ReaderSchema = z.strictObject({
  id,
  kind: z.literal('m100'),
  /** `/dev/serial/by-id/...` (recommended), `/dev/ttyUSB0`, `tcp://host:port` (a TCP serial server such as ser2net), or `mock://name` (tests). */
  path: z.string().min(1, 'must not be empty'),
  /** Frame header/trailer bytes: `bb7e` (most boards) or `aadd` (YPD-R200 and similar). */
  framing: z.enum(['bb7e', 'aadd']).default('bb7e'),
  /** Transmit power written at start (dBm, 0.01 steps); absent: the module's own setting. */
  tx_power_dbm: z.number().min(0).max(33).optional(),
  /** Baud rate of the module's UART (ignored for tcp://); the modules ship at 115200. */
  baud_rate: z.number().int().positive().default(115200),
  /** Interval of the liveness probe (hardware version) and of the multi-poll re-arm check. */
  probe_ms: z.number().int().min(50).max(60_000).default(2000),
  /** No frame at all from the module for this long: the reader is offline. Default 3 x probe_ms. */
  offline_after_ms: z.number().int().min(100).max(600_000).optional(),
  reconnect: backoff,
});

/** `host`, `host:port`, `[v6]:port` or `tcp://host:port`; the LLRP port is 5084. */
const LLRP_ADDRESS_RE = /^(?:tcp:\/\/)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::\d{1,5})?$/;

/** A fixed LLRP 1.0.1 reader (Impinj, Zebra, ...) on TCP (docs/llrp.md). */
export const llrpReaderSchema = z.strictObject({
  id,
  kind: z.literal('llrp'),
  /** `host` or `host:port` (port 5084, the LLRP port, when left out); `tcp://host:port` also accepted. */
  address: z.string().regex(LLRP_ADDRESS_RE, 'must be host or host:port (e.g. 10.0.0.20 or reader-1.local:5084)'),
  /** Antenna ports of the reader; when given, zones' antenna ids are checked against 1..antenna_ports. */
  antenna_ports: z.number().int().min(1).max(65535).optional(),
  /** KEEPALIVE period asked of the reader (KeepaliveSpec). */
  keepalive_ms: z.number().int().min(100).max(600_000).default(2000),
  /** No message at all for this many keepalive periods: the reader is offline and the connection is dropped. */
  missed_keepalives: z.number().int().min(1).max(100).default(3),
  /** `immediate`: read all the time (one zone per reader); periodic: each zone reads `duration_ms` of every `period_ms`. */
  trigger: z
    .union([
      z.literal('immediate'),
      z.strictObject({
        periodic: z.strictObject({
          period_ms: z.number().int().min(10).max(3_600_000),
          duration_ms: z.number().int().min(10).max(3_600_000),
        }),
      }),
    ])
    .default('immediate'),
  reconnect: backoff,
  /**
   * LLRP over TLS (the specification's port 5085, used when `address` has no port). The reader's
   * certificate is always verified, against `ca_file` (else the system CAs) and `server_name`
   * (else the host in `address`); `cert_file`/`key_file` when the reader asks for a client
   * certificate. Files are read at each connect, so a renewed certificate applies at the next one.
   */
  tls: z
    .strictObject({
      ca_file: z.string().min(1).optional(),
      cert_file: z.string().min(1).optional(),
      key_file: z.string().min(1).optional(),
      server_name: z.string().min(1).optional(),
    })
    .optional(),
});

/**
 * Every reader kind. To add one: define its strict schema with `id`, `kind` and its own keys,
 * add it to this union, and add its case to createRfidSource() in ./sources.ts.
 */
export const readerSchema = z.discriminatedUnion('kind', [m100ReaderSchema, llrpReaderSchema]);

export const zoneSchema = z.strictObject({
  /** Zone id: the device id `rfid/<zone>` to central, and a topic level on the bus. */
  id,
  /** The location the zone observes: a `shelf/slot` id of the config's shelves (a slot without sensor for a back room). */
  location: z.string().min(3, 'must be a shelf/slot location id'),
  /** The reader antennas that see this zone; one antenna belongs to one zone at most. */
  antennas: z
    .array(
      z.strictObject({
        reader: id,
        /** 1-based antenna port: an M100 module has one (1); an LLRP reader's AntennaID 1..N. */
        antenna: z.number().int().min(1).max(65535).default(1),
      }),
    )
    .min(1, 'must list at least one antenna'),
  /** Sightings (read cycles) within `window_ms` before a tag arrives. */
  arrive_after: z.number().int().min(1).max(64).default(3),
  window_ms: z.number().int().min(0).max(600_000).default(2000),
  /** A present tag not read for this long departs. */
  depart_after_ms: z.number().int().min(100).max(86_400_000).default(10_000),
  /** Reads of one tag within this long are one sighting (duplicate suppression). */
  read_cycle_ms: z.number().int().min(0).max(60_000).default(250),
});

export const rfidSchema = z.strictObject({
  readers: z.array(readerSchema).min(1, 'must list at least one reader'),
  zones: z.array(zoneSchema).min(1, 'must list at least one zone'),
  /** RSSI advantage (dB) another zone needs before it takes a tag over (hysteresis). */
  handover_margin_db: z.number().min(0).max(60).default(6),
  /** A tag stays at least this long in its zone before another zone may take it over. */
  min_dwell_ms: z.number().int().min(0).max(600_000).default(3000),
  /** Most tags tracked at once (present or candidate); reads of new tags beyond are dropped and counted. */
  max_tags: z.number().int().min(1).max(10_000_000).default(100_000),
  /** How often departures and count changes are decided. */
  tick_ms: z.number().int().min(20).max(10_000).default(250),
  /** Every read on the bus (`rfid/<zone>/read`), for diagnostics; rate-limited, reads beyond the rate dropped and counted. */
  raw_reads: z
    .strictObject({
      enabled: z.boolean().default(false),
      max_per_s: z.number().int().min(1).max(10_000).default(50),
    })
    .prefault({}),
});

export type RfidConfig = z.output<typeof rfidSchema>;
export type RfidReaderConfig = RfidConfig['readers'][number];
export type RfidZoneConfig = RfidConfig['zones'][number];

export const rfidConfigShape = { rfid: rfidSchema.optional() };

/** The rfid slice, or undefined when the store has no RFID. */
export function rfidSlice(config: Config): RfidConfig | undefined {
  return (config as unknown as { rfid?: RfidConfig }).rfid;
}

const PATH_RE = /^(tcp:\/\/[^:/]+:\d{1,5}|mock:\/\/.+|\/.+)$/;

/** LLRP ports (LLRP 1.0.1: 5084 plain, 5085 TLS). */
export const LLRP_PORT = 5084;
export const LLRP_TLS_PORT = 5085;

/**
 * An LLRP address as `tcp://host:port` (port 5084, or 5085 with TLS, when left out), the form an
 * m100 tcp:// path has: one key per endpoint.
 */
export function llrpEndpoint(address: string, tls = false): string {
  const a = address.trim().replace(/^tcp:\/\//, '');
  const hasPort = /^\[[^\]]+\]:\d+$/.test(a) || /^[^:[\]]+:\d+$/.test(a);
  return `tcp://${(hasPort ? a : `${a}:${tls ? LLRP_TLS_PORT : LLRP_PORT}`).toLowerCase()}`;
}

/** How long a reader may be silent before it is known offline (ms). */
export function readerOfflineMs(r: RfidReaderConfig): number {
  return r.kind === 'llrp' ? r.keepalive_ms * r.missed_keepalives : (r.offline_after_ms ?? 3 * r.probe_ms);
}

/** One ROSpec of an LLRP reader: the zone it reads for and how (see the file comment). */
export interface LlrpZonePlan {
  zone: string;
  rospecId: number;
  antennas: number[];
  trigger: { type: 'immediate' } | { type: 'periodic'; periodMs: number; durationMs: number; offsetMs: number };
}

/** The ROSpecs of LLRP reader `r`: one per zone using it, in zones[] order; periodic slots spread evenly over the period. */
export function llrpZonePlans(r: Extract<RfidReaderConfig, { kind: 'llrp' }>, zones: readonly RfidZoneConfig[]): LlrpZonePlan[] {
  const plans: LlrpZonePlan[] = [];
  zones.forEach((z, i) => {
    const antennas = [...new Set(z.antennas.filter((a) => a.reader === r.id).map((a) => a.antenna))];
    if (antennas.length === 0) return;
    plans.push({ zone: z.id, rospecId: i + 1, antennas, trigger: { type: 'immediate' } });
  });
  const t = r.trigger;
  if (t !== 'immediate') {
    // slots spread evenly over the period: any spare time is a gap between two zones' ROSpecs, so one ends before the next starts
    const slot = Math.floor(t.periodic.period_ms / Math.max(1, plans.length));
    plans.forEach((p, k) => (p.trigger = { type: 'periodic', periodMs: t.periodic.period_ms, durationMs: t.periodic.duration_ms, offsetMs: k * slot }));
  }
  return plans;
}

/** Cross-references: duplicate ids, unknown readers and locations, an antenna in two zones, reader paths and addresses, LLRP triggers. */
export function validateRfid(config: Config): ConfigIssue[] {
  const cfg = rfidSlice(config);
  if (!cfg) return [];
  const issues: ConfigIssue[] = [];
  const readers = new Map<string, RfidReaderConfig>();
  const paths = new Map<string, string>();
  // a reader id is a device id (availability), like a weight bus's: they must not collide
  const buses = new Set(((config as unknown as { buses?: Array<{ id: string }> }).buses ?? []).map((b) => b.id));
  cfg.readers.forEach((r, i) => {
    const at = `rfid.readers[${i}]`;
    if (readers.has(r.id)) issues.push({ path: `${at}.id`, message: `duplicate reader id "${r.id}"` });
    if (!readers.has(r.id)) readers.set(r.id, r);
    if (buses.has(r.id) || [...buses].some((b) => r.id.startsWith(`${b}.`))) issues.push({ path: `${at}.id`, message: `"${r.id}" is already a weight bus's device id` });
    // one endpoint, one reader: an m100 tcp:// path and an LLRP address are compared in one form
    let key: string;
    let keyPath: string;
    if (r.kind === 'm100') {
      if (!PATH_RE.test(r.path)) issues.push({ path: `${at}.path`, message: 'must be an absolute device path (/dev/serial/by-id/...), tcp://host:port or mock://name' });
      key = r.path.startsWith('tcp://') ? r.path.toLowerCase() : r.path;
      keyPath = `${at}.path`;
    } else {
      key = llrpEndpoint(r.address, r.tls !== undefined);
      keyPath = `${at}.address`;
      if (r.tls && (r.tls.cert_file === undefined) !== (r.tls.key_file === undefined))
        issues.push({ path: `${at}.tls.${r.tls.cert_file === undefined ? 'cert_file' : 'key_file'}`, message: 'cert_file and key_file go together (a client certificate and its key)' });
      const port = Number(/:(\d+)$/.exec(key)?.[1]);
      if (!(port >= 1 && port <= 65535)) issues.push({ path: keyPath, message: `port ${port} is not 1..65535` });
    }
    const other = paths.get(key);
    if (other !== undefined) issues.push({ path: keyPath, message: `the same device as reader "${other}"` });
    else paths.set(key, r.id);
  });
  const locations = new Set<string>();
  for (const s of config.shelves) for (const sl of s.slots) locations.add(`${s.id}/${sl.id}`);
  const zones = new Set<string>();
  const antennas = new Map<string, string>();
  cfg.zones.forEach((z, i) => {
    const at = `rfid.zones[${i}]`;
    if (zones.has(z.id)) issues.push({ path: `${at}.id`, message: `duplicate zone id "${z.id}"` });
    zones.add(z.id);
    if (!locations.has(z.location)) issues.push({ path: `${at}.location`, message: `unknown location "${z.location}" (a shelf/slot of shelves[]; add a slot without sensor for a back room)` });
    // a reader is known dead only after its offline time: a zone that empties sooner reports every tag gone first
    const its = z.antennas.map((a) => readers.get(a.reader)).filter((r): r is RfidReaderConfig => r !== undefined);
    const offlineMs = Math.max(0, ...its.map(readerOfflineMs));
    if (z.depart_after_ms <= offlineMs)
      issues.push({ path: `${at}.depart_after_ms`, message: `must be longer than its readers' offline time (${offlineMs} ms): a silent reader would empty the zone before it is known to be offline` });
    // a periodic LLRP reader reports a tag once per period: the zone's timing must allow for that gap
    for (const r of new Set(its)) {
      if (r.kind !== 'llrp' || r.trigger === 'immediate') continue;
      const period = r.trigger.periodic.period_ms;
      if (z.depart_after_ms <= period) issues.push({ path: `${at}.depart_after_ms`, message: `must be longer than reader "${r.id}"'s trigger period (${period} ms): it reads the zone once a period, so every tag would depart between two reads` });
      if (z.arrive_after > 1 && z.window_ms <= (z.arrive_after - 1) * period)
        issues.push({ path: `${at}.window_ms`, message: `must be longer than ${z.arrive_after - 1} x reader "${r.id}"'s trigger period (${(z.arrive_after - 1) * period} ms): ${z.arrive_after} sightings a period apart never fit the window, so no tag would arrive` });
      if (z.read_cycle_ms >= period) issues.push({ path: `${at}.read_cycle_ms`, message: `must be shorter than reader "${r.id}"'s trigger period (${period} ms): reads of successive periods would count as one sighting` });
    }
    z.antennas.forEach((a, j) => {
      const ap = `${at}.antennas[${j}]`;
      const r = readers.get(a.reader);
      if (r === undefined) issues.push({ path: `${ap}.reader`, message: `unknown reader "${a.reader}" (known: ${[...readers.keys()].join(', ')})` });
      else if (r.kind === 'm100' && a.antenna !== 1) issues.push({ path: `${ap}.antenna`, message: 'an M100 module has one antenna port: 1' });
      else if (r.kind === 'llrp' && r.antenna_ports !== undefined && a.antenna > r.antenna_ports) issues.push({ path: `${ap}.antenna`, message: `reader "${r.id}" has antenna ports 1..${r.antenna_ports}` });
      const key = `${a.reader}#${a.antenna}`;
      const owner = antennas.get(key);
      if (owner !== undefined) issues.push({ path: ap, message: `${a.reader} antenna ${a.antenna} is already in zone "${owner}"` });
      else antennas.set(key, z.id);
    });
  });
  // an LLRP reader runs one ROSpec (one zone) at a time: several zones need periodic slots that fit the period
  cfg.readers.forEach((r, i) => {
    if (r.kind !== 'llrp' || readers.get(r.id) !== r) return;
    const at = `rfid.readers[${i}]`;
    const n = llrpZonePlans(r, cfg.zones).length;
    if (n === 0) issues.push({ path: at, message: `no zone uses LLRP reader "${r.id}": it gets its ROSpecs from its zones, so it would read nothing` });
    if (r.trigger === 'immediate') {
      if (n > 1) issues.push({ path: `${at}.trigger`, message: `${n} zones use this reader, and a reader runs one ROSpec at a time: use trigger { periodic: { period_ms, duration_ms } } (each zone reads duration_ms of every period)` });
    } else {
      const { period_ms, duration_ms } = r.trigger.periodic;
      if (n * duration_ms > period_ms) issues.push({ path: `${at}.trigger.periodic`, message: `${n} zone(s) x duration_ms ${duration_ms} = ${n * duration_ms} ms do not fit period_ms ${period_ms}: each zone of the reader reads in its own slot of the period` });
    }
  });
  return issues;
}
