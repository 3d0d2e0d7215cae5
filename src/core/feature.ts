/**
 * A feature is one capability of the gateway (weight shelves today; shelf labels, RFID, kiosks,
 * GPIO and operations next) in one folder under src/features/, contributing through this one
 * interface. The core (config, store writer, bus, sync, lifecycle, transports) names no feature:
 * the composition root (src/features/index.ts) is a list of features, and a feature defined in a
 * test file plugs in the same way (test/integration/feature-host.test.ts).
 *
 * What a feature declares, statically:
 * - `config` / `slotConfig`: zod shapes merged into the one config (strict: unknown keys stay errors);
 * - `validate`: cross-reference checks once the schema passed, each issue with its path;
 * - `eventKinds`: outbox event kinds with their buffer policy (core/event-kinds.ts);
 * - `migrations`: its tables, in the one `user_version` order shared by core and features;
 * - `topics`: its topic areas under `shelfgate/v1/<store>/`, with who may read them;
 * - `commands`: each with its permission and payload schema (the ACL reads the permission);
 * - `metrics`: the Prometheus metrics it exports (name, help, type, label names; core/metrics.ts),
 *   whose values its built parts supply at scrape time through `collectMetrics()`;
 * - `build`: makes its services, sources, commands and change appliers from the validated config
 *   (no I/O: the services' start() does that).
 */
import type { z } from 'zod';
import type { Config } from '../config/schema';
import type { ConfigIssue } from '../config/load';
import type { DeviceDefinition } from '../devices/types';
import type { Service } from '../lifecycle';
import type { Logger } from '../log';
import type { Migration } from '../store/migrations';
import type { Store } from '../store/store';
import type { ChangeApplier } from '../sync/appliers';
import type { LocalBus } from '../bus/broker';
import type { TopicArea } from '../bus/acl';
import type { HttpRoutes } from '../http/server';
import type { CommandDecl, CommandHandler, CommandRegistry } from './commands';
import type { DeviceRegistry } from './devices';
import type { EventKindPolicy } from './event-kinds';
import type { EventBus } from './events';
import type { Locations } from './locations';
import type { MetricDecl, MetricValues } from './metrics';
import type { Source } from './sources/types';

export interface FeatureContext {
  /** The whole validated, frozen config; a feature reads its own slice (and the core's shelves). */
  config: Config;
  storeId: string;
  log: Logger;
  definitions: ReadonlyMap<string, DeviceDefinition>;
  events: EventBus;
  store: Store;
  /** Publishing only: subscriptions are for clients outside the process. */
  bus: Pick<LocalBus, 'publish'>;
  devices: DeviceRegistry;
  locations: Locations;
  commands: CommandRegistry;
  /** The gateway's one HTTP server: register routes (each with the permission it needs) during build. */
  http: HttpRoutes;
}

export interface FeatureParts {
  /** Started in order after the core services, stopped in reverse before them. */
  services?: Service[];
  /** Started after every service (a source feeds services that must already listen). Register them with ctx.devices.track. */
  sources?: Source[];
  /** A handler for every command the feature declares (bind them with `handle(decl, fn)`). */
  commands?: Array<{ decl: CommandDecl; handler: CommandHandler }>;
  /**
   * Appliers of the change types of central's feed the feature owns (e.g. a product master-data
   * type): registered with the sync service beside the core's (prices, slot assignments) before it
   * starts. The sync service applies the version rule per the applier's key, commits the applier's
   * writes with the page's acks and cursor, and acknowledges changes of a type no applier owns
   * `invalid` (src/sync/appliers.ts). Two appliers of one type, from any features, refuse to build.
   */
  appliers?: ChangeApplier[];
  /** A small status object for `gateway/status`-style reports and the technician tools. */
  status?(): Record<string, unknown>;
  /**
   * The current values of the metrics the feature declares (Feature.metrics), read at scrape time:
   * by declared name, a number (unlabelled) or labelled samples; histograms as snapshots. A
   * declared metric left out has no series in that scrape. May throw: that scrape leaves the
   * feature's metrics out and counts the failure (shelfgate_metrics_collect_failures_total).
   */
  collectMetrics?(): MetricValues;
  /**
   * @deprecated Flat `name -> number`, kept so a feature written before Feature.metrics still
   * exports something: only when the feature declares no metrics, each key is exported as
   * `shelfgate_<key>` (a counter if it ends in `_total`, else a gauge). Declare metrics instead.
   */
  metrics?(): Record<string, number>;
}

export interface Feature {
  /** Lower-case id, e.g. `shelves`. */
  readonly name: string;
  readonly config?: z.ZodRawShape;
  readonly slotConfig?: z.ZodRawShape;
  validate?(config: Config, ctx: { models: ReadonlyMap<string, DeviceDefinition> }): ConfigIssue[];
  /** A few words for `config check`'s ok line, e.g. `2 bus(es)`. */
  summary?(config: Config): string;
  readonly eventKinds?: readonly EventKindPolicy[];
  readonly migrations?: readonly Migration[];
  readonly topics?: readonly TopicArea[];
  /** Commands with their permission and payload schema; handlers come from build(). */
  readonly commands?: readonly CommandDecl[];
  /** Its Prometheus metrics (core/metrics.ts): values come from the built parts' collectMetrics(). */
  readonly metrics?: readonly MetricDecl[];
  build(ctx: FeatureContext): FeatureParts;
}

/** Keeps literal types of a feature definition. */
export function defineFeature<F extends Feature>(f: F): F {
  return f;
}
