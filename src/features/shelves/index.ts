/**
 * The weight-shelves feature: MT-SICS scales and Modbus RTU load-cell buses observe shelf slots,
 * settled weight becomes item counts, and every change is a durable outbox event.
 *
 * Contributes: the `buses` and `stability` config keys and the weighing keys of each slot; one
 * source per bus (polled, or streaming for a continuous scale: the device model data in devices/
 * decides); the
 * ShelfService; the outbox kinds pick/put/count (compacted per slot, never dropped), anomaly and
 * condition (droppable); the weight_calibration table; the `shelf/#` topic area; the stock.get and
 * calibrate.* commands.
 */
import type { DeviceDefinition } from '../../devices/types';
import type { Source } from '../../core/sources/types';
import { ErrorCode, ShelfgateError } from '../../errors';
import { Priority } from '../../core/event-kinds';
import type { MetricDecl } from '../../core/metrics';
import { defineFeature } from '../../core/feature';
import { openerFor } from '../../transport/opener';
import { ReconnectingLink } from '../../transport/reconnecting';
import type { SerialSettings } from '../../transport/types';
import { shelvesConfigShape, shelvesSlice, validateShelves, weighedSlotShape, type BusConfig } from './config';
import { createWeightSource } from './sources';
import { CalibrationRepository, SHELVES_MIGRATIONS } from './repository';
import { SHELVES_COMMANDS } from './commands';
import { ShelfService } from './service';
import type { WeightReading } from './types';

function serialSettings(def: DeviceDefinition, bus: BusConfig): SerialSettings {
  return {
    baudRate: bus.serial?.baud_rate ?? def.serial.baudRate,
    dataBits: bus.serial?.data_bits ?? def.serial.dataBits,
    parity: bus.serial?.parity ?? def.serial.parity,
    stopBits: bus.serial?.stop_bits ?? def.serial.stopBits,
  };
}

/** Prometheus metrics of the shelves feature (core/metrics.ts; exported as shelfgate_<name>). */
export const SHELVES_METRICS: readonly MetricDecl[] = [
  { name: 'shelf_readings_total', help: 'Weight readings handled by the shelf model (all buses).', type: 'counter' },
  { name: 'shelf_unknown_sensor_readings_total', help: 'Weight readings from a sensor no slot is configured for.', type: 'counter' },
  { name: 'shelf_events_total', help: 'Stock events recorded for shelf slots (pick, restock, count changes).', type: 'counter' },
  { name: 'shelf_publish_failures_total', help: 'Shelf slot state that could not be published on the local bus.', type: 'counter' },
  { name: 'shelf_persist_failures_total', help: 'Shelf slot changes that could not be written to SQLite.', type: 'counter' },
  { name: 'shelf_poll_requests_total', help: 'Requests to poll a shelf now (e.g. a GPIO beam broken at it).', type: 'counter' },
  { name: 'shelf_poll_requests_refused_total', help: 'Poll-now requests no source of the shelf could start (each rate limits itself).', type: 'counter' },
];

export const shelvesFeature = defineFeature({
  name: 'shelves',
  config: shelvesConfigShape,
  slotConfig: weighedSlotShape,
  validate: (config, { models }) => validateShelves(config, models),
  summary: (config) => `${shelvesSlice(config).buses.length} bus(es)`,
  eventKinds: [
    { kind: 'pick', priority: Priority.STOCK, compaction: 'stock-level', droppable: false, description: 'items taken; carries the absolute count' },
    { kind: 'put', priority: Priority.STOCK, compaction: 'stock-level', droppable: false, description: 'items put back or restocked; carries the absolute count' },
    { kind: 'count', priority: Priority.STOCK, compaction: 'stock-level', droppable: false, description: 'a stock level without a pick or put (first reading, recount)' },
    { kind: 'anomaly', priority: Priority.ANOMALY, droppable: true, description: 'a settled weight that is not a whole number of items' },
    { kind: 'condition', priority: Priority.CONDITION, droppable: true, description: 'a slot condition changed (offline, unstable, overload...)' },
  ],
  migrations: SHELVES_MIGRATIONS,
  commands: SHELVES_COMMANDS,
  metrics: SHELVES_METRICS,
  topics: [{ filter: 'shelf/#', gatewayOwned: true, readers: ['kiosk'], description: 'stock, events and alerts per shelf slot' }],
  build(ctx) {
    const cfg = shelvesSlice(ctx.config);
    const links: ReconnectingLink[] = [];
    const sources: Array<Source<WeightReading>> = [];
    for (const b of cfg.buses) {
      const def = ctx.definitions.get(b.model);
      if (!def) throw new ShelfgateError(ErrorCode.DEVICE_MODEL_UNKNOWN, `bus ${b.id}: unknown model ${b.model}`);
      const serial = serialSettings(def, b);
      const link = new ReconnectingLink({
        name: b.id,
        opener: openerFor(b.path, serial),
        backoff: { initialMs: b.reconnect.initial_ms, maxMs: b.reconnect.max_ms },
        log: ctx.log.child({ module: 'link', bus: b.id }),
      });
      const addresses = cfg.shelves.flatMap((s) => s.slots.filter((sl) => sl.sensor?.bus === b.id).map((sl) => sl.sensor!.address ?? 0));
      // the device model data decides: polled Modbus bus, polled MT-SICS scale, or a streaming scale
      const source = createWeightSource(def, {
        name: `source:${b.id}`,
        busId: b.id,
        link,
        pollIntervalMs: b.poll_interval_ms,
        missesToOffline: b.offline_after_misses,
        timeoutMs: b.timeout_ms ?? def.timeoutMs,
        log: ctx.log.child({ module: 'weight', bus: b.id }),
        addresses,
        baudRate: serial.baudRate,
        serialTiming: !b.path.startsWith('mock://'),
      });
      ctx.devices.track(source, () => ({ kind: def.protocol, model: def.id, path: b.path }));
      links.push(link);
      sources.push(source);
    }
    const shelves = new ShelfService({
      storeId: ctx.storeId,
      config: cfg,
      store: ctx.store,
      bus: ctx.bus,
      events: ctx.events,
      locations: ctx.locations,
      calibration: new CalibrationRepository(ctx.store),
      sources,
      log: ctx.log.child({ module: 'shelves' }),
    });
    return {
      // links first: a source's start() attaches to its link; the links open after the service listens
      services: [shelves, ...links],
      sources,
      commands: shelves.commandHandlers(),
      status: () => ({ slots: shelves.snapshot().length, readings: shelves.stats.readings, events: shelves.stats.events }),
      collectMetrics: () => ({
        shelf_readings_total: shelves.stats.readings,
        shelf_unknown_sensor_readings_total: shelves.stats.unknownSensor,
        shelf_events_total: shelves.stats.events,
        shelf_publish_failures_total: shelves.stats.publishFailures,
        shelf_persist_failures_total: shelves.stats.persistFailures,
        shelf_poll_requests_total: shelves.stats.pollRequests,
        shelf_poll_requests_refused_total: shelves.stats.pollRequestsRefused,
      }),
    };
  },
});


/** The ShelfService of a built gateway (tests, benchmarks, the demo). */
export function shelvesOf(gw: { features: ReadonlyMap<string, { services?: unknown[] }> }): ShelfService {
  const s = gw.features.get(shelvesFeature.name)?.services?.find((x): x is ShelfService => x instanceof ShelfService);
  if (!s) throw new Error('this gateway has no shelves feature');
  return s;
}
