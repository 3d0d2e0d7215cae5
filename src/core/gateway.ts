/**
 * Builds a gateway from one validated config and a list of features (every dependency made once
 * and handed in, after Zigbee2MQTT's controller), and runs its services: start in order, stop in
 * reverse. The core services come first; each feature's services after them; central sync once
 * every feature listens; the sources last, so nothing they report falls on deaf ears.
 *
 * Data path: link -> source (codec) -> feature service -> Store (SQLite batch: outbox + state)
 *            -> LocalBus (retained MQTT) and the EventBus (in-process consumers) -> SyncService.
 */
import { join } from 'node:path';
import type { Config } from '../config/schema';
import type { DeviceDefinition } from '../devices/types';
import type { Service } from '../lifecycle';
import type { Logger } from '../log';
import { Store } from '../store/store';
import { MIGRATIONS, type Migration } from '../store/migrations';
import { LocalBus } from '../bus/broker';
import type { ChangeApplier } from '../sync/appliers';
import { SyncService, createSyncTransport } from '../sync/service';
import { HttpServer } from '../http/server';
import { packageVersion } from '../util/paths';
import { CommandRegistry } from './commands';
import { GATEWAY_COMMANDS, gatewayCommandHandlers } from './gateway-commands';
import { DeviceRegistry } from './devices';
import { EventKinds } from './event-kinds';
import { EventBus } from './events';
import type { Feature, FeatureParts } from './feature';
import { Locations } from './locations';
import type { Source } from './sources/types';

export interface Gateway {
  readonly store: Store;
  readonly bus: LocalBus;
  readonly events: EventBus;
  readonly commands: CommandRegistry;
  readonly kinds: EventKinds;
  readonly locations: Locations;
  readonly devices: DeviceRegistry;
  readonly sync: SyncService;
  /** The one HTTP server (off unless `http` is configured). */
  readonly http: HttpServer;
  readonly sources: readonly Source[];
  /** What each feature built, by feature name. */
  readonly features: ReadonlyMap<string, FeatureParts>;
  /** `running` once start() resolved (every service, the sources last, started) until stop() begins. */
  readonly state: GatewayState;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Core migrations and every feature's, in the one `user_version` order (gaps and duplicates refused by migrate()). */
export function composeMigrations(features: readonly Feature[]): Migration[] {
  return [...MIGRATIONS, ...features.flatMap((f) => f.migrations ?? [])].sort((a, b) => a.version - b.version);
}

export type GatewayState = 'stopped' | 'starting' | 'running' | 'stopping';

export interface GatewayDeps {
  log: Logger;
  definitions: ReadonlyMap<string, DeviceDefinition>;
  features: readonly Feature[];
}

export function buildGateway(config: Config, deps: GatewayDeps): Gateway {
  const { log, definitions, features } = deps;
  const events = new EventBus(log.child({ module: 'events' }));
  const commands = new CommandRegistry();
  const kinds = new EventKinds();
  const store = new Store({
    path: config.storage.path ?? join(config.data_dir, 'shelfgate.db'),
    synchronous: config.storage.synchronous,
    flushIntervalMs: config.storage.flush_interval_ms,
    storeId: config.store_id,
    migrations: composeMigrations(features),
    log: log.child({ module: 'store' }),
  });
  const bus = new LocalBus({
    config: config.mqtt,
    storeId: config.store_id,
    version: packageVersion(),
    commands,
    topicAreas: features.flatMap((f) => f.topics ?? []),
    log: log.child({ module: 'bus' }),
  });
  const locations = new Locations({ shelves: config.shelves, store, events, log: log.child({ module: 'locations' }) });
  const devices = new DeviceRegistry({ storeId: config.store_id, store, bus, events, log: log.child({ module: 'devices' }) });
  const http = new HttpServer({ config: config.http, login: (a, u, p) => bus.login(a, u, p), commands, log: log.child({ module: 'http' }) });

  const built = new Map<string, FeatureParts>();
  const featureServices: Service[] = [];
  const sources: Source[] = [];
  const appliers: ChangeApplier[] = [];
  commands.declare('core', GATEWAY_COMMANDS);
  for (const f of features) {
    kinds.register(f.name, f.eventKinds ?? []);
    commands.declare(f.name, f.commands ?? []);
  }
  for (const f of features) {
    const parts = f.build({ config, storeId: config.store_id, log: log.child({ feature: f.name }), definitions, events, store, bus, devices, locations, commands, http });
    for (const c of parts.commands ?? []) commands.bind(f.name, c);
    featureServices.push(...(parts.services ?? []));
    sources.push(...(parts.sources ?? []));
    appliers.push(...(parts.appliers ?? []));
    built.set(f.name, parts);
  }

  const sync = new SyncService({
    storeId: config.store_id,
    config: config.sync,
    store,
    bus,
    events,
    kinds,
    locations,
    transport: createSyncTransport(config.sync, config.store_id, log),
    log: log.child({ module: 'sync' }),
    appliers,
  });

  for (const c of gatewayCommandHandlers({ storeId: config.store_id, version: packageVersion(), store, sync, sources, features: built })) commands.bind('core', c);
  const unbound = commands.unbound();
  if (unbound.length) throw new Error(`declared commands without a handler: ${unbound.join(', ')}`);

  const services: Service[] = [store, bus, locations, devices, ...featureServices, sync, http, ...sources];
  const started: Service[] = [];
  let state: GatewayState = 'stopped';
  return {
    store,
    bus,
    events,
    commands,
    kinds,
    locations,
    devices,
    sync,
    http,
    sources,
    features: built,
    get state() {
      return state;
    },
    async start() {
      state = 'starting';
      for (const s of services) {
        try {
          await s.start();
        } catch (e) {
          log.error({ service: s.name, err: (e as Error).message }, 'service failed to start; stopping the others');
          await stopAll();
          throw e;
        }
        started.push(s);
      }
      state = 'running';
    },
    stop: stopAll,
  };

  async function stopAll(): Promise<void> {
    state = 'stopping';
    while (started.length) {
      const s = started.pop()!;
      try {
        await s.stop();
      } catch (e) {
        log.error({ service: s.name, err: (e as Error).message }, 'service failed to stop cleanly');
      }
    }
    state = 'stopped';
  }
}
