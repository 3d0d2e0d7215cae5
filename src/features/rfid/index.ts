/**
 * The RFID feature: serial M100/R200 modules and fixed LLRP readers read tags in zones;
 * EPCs are decoded to GTINs (SGTIN-96/198, docs/epc.md), reads are smoothed into arrivals,
 * departures and counts per GTIN per zone (docs/rfid-smoothing.md), and every change is a durable
 * outbox event; a zone's count of its location's GTIN is that location's stock.
 *
 * Contributes: the `rfid` config key (readers, zones, smoothing; absent = off); one tag-read source
 * per reader (./sources.ts, by reader kind) with its link; the RfidService; the outbox kinds
 * arrival and departure (never dropped, not compacted) and zone_count (never dropped, not
 * compacted: see below); the rfid_zone_counts table (migration 13); the `rfid/#` topic area
 * (kiosks read it); the rfid.zones command.
 *
 * zone_count is not compacted: the outbox compacts per device id, and one zone's device id
 * (`rfid/<zone>`, the contract's form) carries one count per GTIN, so a newer count of one GTIN
 * would delete the last count of another. Count changes are already coalesced per tick per
 * (zone, GTIN) by the smoother.
 */
import { handle, type CommandDecl } from '../../core/commands';
import { Priority } from '../../core/event-kinds';
import { defineFeature, type FeatureContext, type FeatureParts } from '../../core/feature';
import type { Source } from '../../core/sources/types';
import { ErrorCode, ShelfgateError } from '../../errors';
import type { Service } from '../../lifecycle';
import { RFID_COMMANDS } from './commands';
import { rfidConfigShape, rfidSlice, validateRfid } from './config';
import type { TagRead } from './m100-source';
import { RFID_METRICS, rfidMetricValues } from './metrics';
import { RFID_MIGRATIONS, ZoneCountRepository, ZonePresenceRepository } from './repository';
import { RfidService } from './service';
import { createRfidSource } from './sources';

function notConfigured(): never {
  throw new ShelfgateError(ErrorCode.NOT_FOUND, 'this gateway has no RFID (no `rfid:` section in its config)');
}

export const RFID_EVENT_KINDS = [
  { kind: 'arrival', priority: Priority.STOCK, droppable: false, description: 'an RFID tag arrived in a zone (smoothed); device rfid/<zone>' },
  { kind: 'departure', priority: Priority.STOCK, droppable: false, description: 'an RFID tag left a zone (unseen for the zone\'s departure time, or taken over by another zone); device rfid/<zone>' },
  { kind: 'zone_count', priority: Priority.STOCK, droppable: false, description: 'the absolute number of present tags of one GTIN in a zone; device rfid/<zone>' },
] as const;

export const rfidFeature = defineFeature({
  name: 'rfid',
  config: rfidConfigShape,
  validate: (config) => validateRfid(config),
  summary: (config) => {
    const cfg = rfidSlice(config);
    return cfg ? `${cfg.readers.length} RFID reader(s), ${cfg.zones.length} zone(s)` : 'no RFID';
  },
  eventKinds: RFID_EVENT_KINDS,
  migrations: RFID_MIGRATIONS,
  topics: [{ filter: 'rfid/#', gatewayOwned: true, readers: ['kiosk'], description: 'RFID zones: arrivals and departures, retained counts per GTIN, optional raw reads' }],
  commands: RFID_COMMANDS,
  metrics: RFID_METRICS,
  build(ctx: FeatureContext): FeatureParts {
    const cfg = rfidSlice(ctx.config);
    if (!cfg) return { commands: RFID_COMMANDS.map((d) => handle(d as CommandDecl, async () => notConfigured())) };
    const links: Service[] = [];
    const sources: Array<Source<TagRead>> = [];
    for (const r of cfg.readers) {
      const built = createRfidSource(r, ctx.log, cfg.zones);
      ctx.devices.track(built.source, () => built.info);
      links.push(...built.services);
      sources.push(built.source);
    }
    const service = new RfidService({
      storeId: ctx.storeId,
      config: cfg,
      store: ctx.store,
      bus: ctx.bus,
      events: ctx.events,
      locations: ctx.locations,
      repo: new ZoneCountRepository(ctx.store),
      presence: new ZonePresenceRepository(ctx.store),
      sources,
      log: ctx.log.child({ module: 'rfid' }),
    });
    return {
      // links first: a source's start() attaches to its link; the links open after the service listens
      services: [service, ...links],
      sources,
      commands: service.commandHandlers(),
      status: () => service.status(),
      collectMetrics: () => rfidMetricValues(service),
    };
  },
});

/** The RfidService of a built gateway (tests, benchmarks, the demo). */
export function rfidOf(gw: { features: ReadonlyMap<string, { services?: unknown[] }> }): RfidService {
  const s = gw.features.get(rfidFeature.name)?.services?.find((x): x is RfidService => x instanceof RfidService);
  if (!s) throw new Error('this gateway has no RFID feature with readers configured');
  return s;
}
