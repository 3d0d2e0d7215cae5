/**
 * The RFID feature's slice of the one config: the readers, the zones (sets of reader antennas
 * observing one location) and the smoothing parameters. The feature is off when the `rfid` key is
 * absent (a store without RFID).
 *
 * Design choices:
 * - `readers[]` is a union discriminated by `kind`. Only `m100` (serial MagicRF M100/QM100/R200
 *   modules, over a serial device or a TCP serial server) exists today; a fixed LLRP reader is one
 *   more member of `readerSchema` (its own keys: host, port, TLS, keepalive...) and one more case
 *   in ./sources.ts. Everything else (zones, validation, the service) only uses `id`.
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

/**
 * Every reader kind. To add one (LLRP): define its strict schema with `id`, `kind` and its own keys,
 * add it to this union, and add its case to createRfidSource() in ./sources.ts.
 */
export const readerSchema = z.discriminatedUnion('kind', [m100ReaderSchema]);

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
        /** 1-based antenna port; an M100 module has one (1). */
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

/** Cross-references: duplicate ids, unknown readers and locations, an antenna in two zones, reader paths. */
export function validateRfid(config: Config): ConfigIssue[] {
  const cfg = rfidSlice(config);
  if (!cfg) return [];
  const issues: ConfigIssue[] = [];
  const readers = new Map<string, RfidReaderConfig['kind']>();
  const paths = new Map<string, string>();
  // a reader id is a device id (availability), like a weight bus's: they must not collide
  const buses = new Set(((config as unknown as { buses?: Array<{ id: string }> }).buses ?? []).map((b) => b.id));
  cfg.readers.forEach((r, i) => {
    const at = `rfid.readers[${i}]`;
    if (readers.has(r.id)) issues.push({ path: `${at}.id`, message: `duplicate reader id "${r.id}"` });
    if (!readers.has(r.id)) readers.set(r.id, r.kind);
    if (buses.has(r.id) || [...buses].some((b) => r.id.startsWith(`${b}.`))) issues.push({ path: `${at}.id`, message: `"${r.id}" is already a weight bus's device id` });
    if (!PATH_RE.test(r.path)) issues.push({ path: `${at}.path`, message: 'must be an absolute device path (/dev/serial/by-id/...), tcp://host:port or mock://name' });
    const other = paths.get(r.path);
    if (other !== undefined) issues.push({ path: `${at}.path`, message: `the same device as reader "${other}"` });
    else paths.set(r.path, r.id);
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
    const offlineMs = Math.max(0, ...z.antennas.map((a) => cfg.readers.find((r) => r.id === a.reader)).map((r) => (r ? (r.offline_after_ms ?? 3 * r.probe_ms) : 0)));
    if (z.depart_after_ms <= offlineMs)
      issues.push({ path: `${at}.depart_after_ms`, message: `must be longer than its readers' offline time (${offlineMs} ms): a silent reader would empty the zone before it is known to be offline` });
    z.antennas.forEach((a, j) => {
      const ap = `${at}.antennas[${j}]`;
      const kind = readers.get(a.reader);
      if (kind === undefined) issues.push({ path: `${ap}.reader`, message: `unknown reader "${a.reader}" (known: ${[...readers.keys()].join(', ')})` });
      else if (kind === 'm100' && a.antenna !== 1) issues.push({ path: `${ap}.antenna`, message: 'an M100 module has one antenna port: 1' });
      const key = `${a.reader}#${a.antenna}`;
      const owner = antennas.get(key);
      if (owner !== undefined) issues.push({ path: ap, message: `${a.reader} antenna ${a.antenna} is already in zone "${owner}"` });
      else antennas.set(key, z.id);
    });
  });
  return issues;
}
