/**
 * Builds the gateway from one validated config (every dependency made once and handed in, after
 * Zigbee2MQTT's controller) and runs it: start in order, stop in reverse, signals, exit codes.
 *
 * Data path: serial/TCP link -> PolledSource (codec) -> WeightReading -> ShelfService (SlotTracker)
 *            -> Store (SQLite batch commit: outbox + slot state) -> LocalBus (retained MQTT).
 */
import { join } from 'node:path';
import type { EventEmitter } from 'node:events';
import type { Config, BusConfig } from './config/schema';
import { loadConfigFile } from './config/load';
import type { DeviceDefinition } from './devices/types';
import { loadDefinitions } from './devices/definitions';
import { ErrorCode, ExitCode, isShelfgateError, ShelfgateError } from './errors';
import type { Service } from './lifecycle';
import { createLogger, type Logger } from './log';
import { openerFor } from './transport/opener';
import { ReconnectingLink } from './transport/reconnecting';
import type { SerialSettings } from './transport/types';
import { createWeightSource } from './features/shelves/sources';
import type { Source } from './core/sources/types';
import { sensorKey } from './features/shelves/types';
import { Store } from './store/store';
import { LocalBus } from './bus/broker';
import { ShelfService } from './features/shelves/service';
import { SystemdNotifier } from './systemd/notify';
import { SyncService, createSyncTransport } from './sync/service';
import { reportConfigError } from './cli';
import { packageVersion } from './util/paths';

export interface Gateway {
  readonly store: Store;
  readonly bus: LocalBus;
  readonly shelves: ShelfService;
  readonly sync: SyncService;
  readonly links: readonly ReconnectingLink[];
  readonly sources: readonly Source[];
  start(): Promise<void>;
  stop(): Promise<void>;
}

function serialSettings(def: DeviceDefinition, bus: BusConfig): SerialSettings {
  return {
    baudRate: bus.serial?.baud_rate ?? def.serial.baudRate,
    dataBits: bus.serial?.data_bits ?? def.serial.dataBits,
    parity: bus.serial?.parity ?? def.serial.parity,
    stopBits: bus.serial?.stop_bits ?? def.serial.stopBits,
  };
}

export function buildGateway(config: Config, deps: { log: Logger; definitions: ReadonlyMap<string, DeviceDefinition> }): Gateway {
  const { log, definitions } = deps;
  const store = new Store({
    path: config.storage.path ?? join(config.data_dir, 'shelfgate.db'),
    synchronous: config.storage.synchronous,
    flushIntervalMs: config.storage.flush_interval_ms,
    storeId: config.store_id,
    log: log.child({ module: 'store' }),
  });
  const bus = new LocalBus({ config: config.mqtt, storeId: config.store_id, version: packageVersion(), log: log.child({ module: 'bus' }) });

  const links: ReconnectingLink[] = [];
  const sources: Source[] = [];
  const sensorInfo = new Map<string, { kind: string; model: string; path: string }>();
  for (const b of config.buses) {
    const def = definitions.get(b.model);
    if (!def) throw new ShelfgateError(ErrorCode.DEVICE_MODEL_UNKNOWN, `bus ${b.id}: unknown model ${b.model}`);
    const serial = serialSettings(def, b);
    const link = new ReconnectingLink({
      name: b.id,
      opener: openerFor(b.path, serial),
      backoff: { initialMs: b.reconnect.initial_ms, maxMs: b.reconnect.max_ms },
      log: log.child({ module: 'link', bus: b.id }),
    });
    const addresses = config.shelves.flatMap((s) => s.slots.filter((sl) => sl.sensor.bus === b.id).map((sl) => sl.sensor.address ?? 0));
    const keys = def.protocol === 'modbus-rtu' ? addresses.map((a) => sensorKey(b.id, a)) : [sensorKey(b.id)];
    const common = {
      name: `source:${b.id}`,
      busId: b.id,
      link,
      pollIntervalMs: b.poll_interval_ms,
      missesToOffline: b.offline_after_misses,
      timeoutMs: b.timeout_ms ?? def.timeoutMs,
      log: log.child({ module: 'weight', bus: b.id }),
    };
    const source = createWeightSource(def, { ...common, addresses, baudRate: serial.baudRate, serialTiming: !b.path.startsWith('mock://') });
    for (const k of keys) sensorInfo.set(k, { kind: def.protocol, model: def.id, path: b.path });
    links.push(link);
    sources.push(source);
  }
  const shelves = new ShelfService({
    storeId: config.store_id,
    shelves: config.shelves,
    stability: config.stability,
    store,
    bus,
    sources: sources as unknown as EventEmitter[],
    sensorInfo,
    log: log.child({ module: 'shelves' }),
  });

  const sync = new SyncService({
    storeId: config.store_id,
    config: config.sync,
    store,
    bus,
    shelves,
    transport: createSyncTransport(config.sync, config.store_id, log),
    log: log.child({ module: 'sync' }),
  });

  // Start order: storage, bus, shelves (restores state, republishes retained), central sync
  // (republishes prices, drains the outbox), then links and pollers; stop in reverse.
  const services: Service[] = [store, bus, shelves, sync, ...links, ...sources];
  const started: Service[] = [];
  return {
    store,
    bus,
    shelves,
    sync,
    links,
    sources,
    async start() {
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
    },
    stop: stopAll,
  };

  async function stopAll(): Promise<void> {
    while (started.length) {
      const s = started.pop()!;
      try {
        await s.stop();
      } catch (e) {
        log.error({ service: s.name, err: (e as Error).message }, 'service failed to stop cleanly');
      }
    }
  }
}

/** Exit code for a start-up failure: the operator learns what to fix from the code alone. */
function startFailureCode(e: unknown): number {
  if (isShelfgateError(e, ErrorCode.CONFIG_INVALID) || isShelfgateError(e, ErrorCode.CONFIG_UNREADABLE)) return ExitCode.CONFIG;
  if (isShelfgateError(e, ErrorCode.STORAGE_INTEGRITY) || isShelfgateError(e, ErrorCode.STORAGE_MIGRATION)) return ExitCode.CANTCREAT;
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code === 'EACCES' || code === 'EROFS' || code === 'ENOSPC') return ExitCode.CANTCREAT;
  if (code === 'EADDRINUSE' || code === 'EADDRNOTAVAIL') return ExitCode.UNAVAILABLE;
  return ExitCode.SOFTWARE;
}

/** `shelfgate run --config FILE`: resolves with the process exit code once the daemon has stopped. */
export async function runDaemon(configPath: string): Promise<number> {
  let config: Config;
  let definitions: ReadonlyMap<string, DeviceDefinition>;
  try {
    definitions = loadDefinitions();
    config = loadConfigFile(configPath, definitions);
  } catch (e) {
    return reportConfigError(configPath, e);
  }
  const log = createLogger(config.log.level);
  const notifier = new SystemdNotifier({ log: log.child({ module: 'systemd' }) });
  const gateway = buildGateway(config, { log, definitions });

  const fatal = (kind: string) => (e: unknown) => {
    log.fatal({ err: e instanceof Error ? { message: e.message, stack: e.stack } : String(e) }, kind);
    process.exit(ExitCode.SOFTWARE); // systemd restarts us (Restart=on-failure)
  };
  process.on('uncaughtException', fatal('uncaught exception'));
  process.on('unhandledRejection', fatal('unhandled promise rejection'));

  try {
    await gateway.start();
  } catch (e) {
    log.fatal({ err: (e as Error).message, code: (e as ShelfgateError).code ?? (e as NodeJS.ErrnoException).code }, 'gateway failed to start');
    return startFailureCode(e);
  }
  // The watchdog ping (WatchdogSec) goes out only while the event loop turns AND the store writer keeps up.
  notifier.setHealthCheck(() => gateway.store.stats().pendingOps < 100_000);
  await notifier.start();
  const addr = gateway.bus.address();
  log.info({ store: config.store_id, mqtt: addr, buses: config.buses.length, slots: config.shelves.reduce((n, s) => n + s.slots.length, 0) }, 'gateway ready');
  notifier.ready(`serving ${config.shelves.length} shelves on mqtt ${addr.host}:${addr.port}`);

  await new Promise<void>((resolve) => {
    let stopping = false;
    const onSignal = (sig: NodeJS.Signals): void => {
      if (stopping) {
        log.warn({ signal: sig }, 'second signal: exiting without a clean stop');
        process.exit(ExitCode.FAILURE);
      }
      stopping = true;
      log.info({ signal: sig }, 'stopping');
      notifier.stopping();
      resolve();
    };
    // `on`, not `once`: a second signal during a slow stop must reach onSignal (forced exit),
    // not the default handler.
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  await gateway.stop();
  await notifier.stop();
  log.info('stopped');
  await new Promise<void>((r) => log.flush(() => r()));
  return ExitCode.OK;
}
