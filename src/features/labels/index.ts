/**
 * The shelf-labels feature: every applied price reaches every bound electronic shelf label and is
 * confirmed label by label; the price-integrity report says which labels do not show their price
 * and since when.
 *
 * Contributes: the `labels` config key (access points, locale, delivery parameters; absent = off);
 * the label registry and delivery state (migration 10); the LabelsService and one LabelRadio per
 * access point (OpenEPaperLink today: oepl-radio.ts); the outbox kind `label_integrity`
 * (compacted per label, never dropped); the `labels/#` topic area (retained summary and per-label
 * integrity); the label.* and labels.list commands. Label types (size, colours, template) are
 * data in devices/labels/.
 */
import { ErrorCode, ShelfgateError } from '../../errors';
import { Priority } from '../../core/event-kinds';
import { handle, type CommandDecl } from '../../core/commands';
import { defineFeature, type FeatureContext, type FeatureParts } from '../../core/feature';
import type { Logger } from '../../log';
import { LABELS_COMMANDS, labelBind, labelCommand, labelFlash, labelPush, labelsList, labelUnbind } from './commands';
import { labelsConfigShape, labelsSlice, validateLabels, type LabelsConfig } from './config';
import { loadLabelTypes } from './label-types';
import { OeplRadio } from './oepl-radio';
import type { LabelRadio } from './radio';
import { LABELS_MIGRATIONS, LabelRepository } from './repository';
import { PICK_COMMANDS, PICK_EVENT_KINDS, PICK_MIGRATIONS, PICK_TOPICS, PickService, storeOutbox } from './pick';
import { buildLedPattern, LED_COLOURS } from '../../drivers/oepl';
import { LabelsService } from './service';
import { LABELS_METRICS, labelsMetricValues } from './metrics';
import { LABELS_PRODUCTS_MIGRATION, ProductApplier, ProductCatalog } from './products';

/** Find-this-label: what `label.flash` sends when no pattern is given (white, three groups, about 20 s). */
export const FIND_LABEL_PATTERN = buildLedPattern({
  flashDuration: 8,
  groups: [0, 1, 2].map(() => ({ colour: LED_COLOURS.white, flashes: 5, speed: 2, delayAfter: 3 })),
  repeats: 5,
});

export interface LabelsFeatureOptions {
  /** Makes the radio of one access point (default: an OpenEPaperLink AP over HTTP and WebSocket). */
  radio?: (ap: LabelsConfig['access_points'][number], log: Logger) => LabelRadio;
  /** Folder of label types (default devices/labels). */
  typesDir?: string;
}

function notConfigured(): never {
  throw new ShelfgateError(ErrorCode.NOT_FOUND, 'this gateway has no shelf labels (no `labels:` section in its config)');
}

export function createLabelsFeature(opts: LabelsFeatureOptions = {}) {
  const makeRadio =
    opts.radio ??
    ((ap, log) => new OeplRadio({ id: ap.id, url: ap.url, log, maxConcurrentRequests: ap.max_concurrent_requests, requestTimeoutMs: ap.request_timeout_ms, pollIntervalMs: ap.poll_interval_ms }));
  return defineFeature({
    name: 'labels',
    config: labelsConfigShape,
    validate: (config) => validateLabels(config),
    summary: (config) => {
      const cfg = labelsSlice(config);
      return cfg ? `${cfg.access_points.length} label access point(s)` : 'no shelf labels';
    },
    eventKinds: [
      {
        kind: 'label_integrity',
        priority: Priority.ANOMALY,
        compaction: 'label-integrity',
        droppable: false,
        description: 'a label started or stopped showing its current price, failed, or changed condition; carries its whole integrity, so only the newest per label matters',
      },
      ...PICK_EVENT_KINDS,
    ],
    migrations: [...LABELS_MIGRATIONS, LABELS_PRODUCTS_MIGRATION, ...PICK_MIGRATIONS],
    topics: [{ filter: 'labels/#', gatewayOwned: true, description: 'shelf-label price integrity: retained summary and per-label state' }, ...PICK_TOPICS],
    commands: [...LABELS_COMMANDS, ...PICK_COMMANDS],
    metrics: LABELS_METRICS,
    build(ctx: FeatureContext): FeatureParts {
      const cfg = labelsSlice(ctx.config);
      // Product data is kept whether or not this store has labels yet: labels bound later show names at once.
      const catalog = new ProductCatalog(ctx.store);
      const appliers = [new ProductApplier({ catalog, events: ctx.events, log: ctx.log.child({ module: 'products' }) })];
      if (!cfg) {
        return { services: [catalog], appliers, commands: [...LABELS_COMMANDS, ...PICK_COMMANDS].map((d) => handle(d as CommandDecl, async () => notConfigured())) };
      }
      const types = loadLabelTypes(opts.typesDir);
      const radios = cfg.access_points.map((ap) => makeRadio(ap, ctx.log.child({ module: 'label-radio', ap: ap.id })));
      const service = new LabelsService({
        storeId: ctx.storeId,
        config: cfg,
        store: ctx.store,
        bus: ctx.bus,
        events: ctx.events,
        locations: ctx.locations,
        radios,
        types,
        products: catalog,
        repo: new LabelRepository(ctx.store),
        log: ctx.log.child({ module: 'labels' }),
      });
      // A slot is weighed when a scale observes it (the shelves feature's `sensor` key on the slot).
      const weighedSlots = new Set<string>();
      for (const shelf of ctx.config.shelves) for (const slot of shelf.slots as Array<{ id: string; sensor?: unknown }>) if (slot.sensor) weighedSlots.add(`${shelf.id}/${slot.id}`);
      const pick = new PickService({
        storeId: ctx.storeId,
        store: ctx.store,
        events: ctx.events,
        locations: ctx.locations,
        bus: ctx.bus,
        labelsAt: (loc) => service.labelsAt(loc),
        flash: (mac, pattern) => service.flashLabel(mac, pattern),
        outbox: storeOutbox(ctx.store),
        weighed: (loc) => weighedSlots.has(loc.id),
        log: ctx.log.child({ module: 'pick' }),
      });
      service.onBindingsChanged(() => pick.bindingsChanged());
      return {
        // the service subscribes to the radios in start(); the radios connect after it; orders after the labels
        services: [catalog, service, pick, ...radios],
        appliers,
        commands: [
          ...pick.commandHandlers(),
          handle(labelBind, async (p, caller) => service.bind(p, caller.username)),
          handle(labelUnbind, async (p, caller) => service.unbind(p.mac, caller.username)),
          handle(labelFlash, async (p) => service.flash(p.mac, p.pattern ?? FIND_LABEL_PATTERN)),
          handle(labelPush, async (p) => service.push(p.mac)),
          handle(labelCommand, async (p) => service.command(p.mac, p.cmd)),
          handle(labelsList, async (p) => service.report({ stale: p.stale })),
        ],
        status: () => service.status(),
        collectMetrics: () => labelsMetricValues(service),
      };
    },
  });
}

export const labelsFeature = createLabelsFeature();

/** The LabelsService of a built gateway (tests, benchmarks, the demo). */
export function labelsOf(gw: { features: ReadonlyMap<string, { services?: unknown[] }> }): LabelsService {
  const s = gw.features.get('labels')?.services?.find((x): x is LabelsService => x instanceof LabelsService);
  if (!s) throw new Error('this gateway has no labels feature with access points configured');
  return s;
}
