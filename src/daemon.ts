/**
 * `shelfgate run`: loads the config, builds the gateway from the built-in features
 * (src/features/index.ts) and runs it: signals, systemd notifications, exit codes.
 */
import type { Config } from './config/schema';
import { loadConfig, type ConfigIssue } from './config/load';
import { readCgroupMemoryMax, readOpenFileLimit } from './config/check';
import { reportConfigError } from './config/report';
import type { DeviceDefinition } from './devices/types';
import { loadDefinitions } from './devices/definitions';
import { ErrorCode, ExitCode, isShelfgateError, type ShelfgateError } from './errors';
import { createLogger } from './log';
import { SystemdNotifier } from './systemd/notify';
import { buildGateway } from './core/gateway';
import { mountOps, type Ops } from './ops/routes';
import { BUILTIN_FEATURES } from './features';

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
  let warnings: ConfigIssue[];
  try {
    definitions = loadDefinitions();
    // This process serves the bus: its own open-file limit must hold the bus's socket ceiling, and
    // its own memory limit (the unit's MemoryMax, drop-ins included) is the one to compare with.
    ({ config, warnings } = loadConfig(configPath, definitions, BUILTIN_FEATURES, { openFileLimit: readOpenFileLimit(), memoryLimit: readCgroupMemoryMax() }));
  } catch (e) {
    return reportConfigError(configPath, e);
  }
  const log = createLogger(config.log.level);
  for (const w of warnings) log.warn({ config: configPath, path: w.path, warning: w.message }, `configuration warning: ${w.path ? `${w.path}: ` : ''}${w.message}`);
  const notifier = new SystemdNotifier({ log: log.child({ module: 'systemd' }) });
  const gateway = buildGateway(config, { log, definitions, features: BUILTIN_FEATURES });
  let ops: Ops;
  try {
    ops = mountOps({ gateway, features: BUILTIN_FEATURES, config, log });
  } catch (e) {
    return reportConfigError(configPath, e);
  }

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
  // The watchdog ping (WatchdogSec) and the STATUS= line follow the gateway's readiness (ops/health.ts),
  // the same function /readyz answers from: event loop turning, store writer keeping up, broker
  // listening, SQLite open, gateway started.
  const health = ops.health;
  await ops.start();
  notifier.setHealthCheck(() => health.readiness().ok);
  await notifier.start();
  const addr = gateway.bus.address();
  log.info({ store: config.store_id, mqtt: addr, listeners: gateway.bus.listeners(), ...(gateway.http.url() ? { http: { ...gateway.http.address(), url: gateway.http.url() } } : {}), features: [...gateway.features.keys()], slots: config.shelves.reduce((n, s) => n + s.slots.length, 0) }, 'gateway ready');
  notifier.ready(health.statusLine());
  health.onStatusChange((line) => notifier.status(line));

  await new Promise<void>((resolve) => {
    let stopping = false;
    const onSignal = (sig: NodeJS.Signals): void => {
      if (stopping) {
        log.warn({ signal: sig }, 'second signal: exiting without a clean stop');
        process.exit(ExitCode.FAILURE);
      }
      stopping = true;
      log.info({ signal: sig }, 'stopping');
      notifier.stopping('stopping');
      resolve();
    };
    // `on`, not `once`: a second signal during a slow stop must reach onSignal (forced exit),
    // not the default handler.
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  await ops.stop();
  await gateway.stop();
  await notifier.stop();
  log.info('stopped');
  await new Promise<void>((r) => log.flush(() => r()));
  return ExitCode.OK;
}
