/**
 * The GPIO feature: presence beams, door/lid contacts and kiosk buttons as debounced edge events
 * on the bus; LEDs, buzzers and shelf lights set over the bus by the roles allowed to; a presence
 * edge at a shelf asks the shelves feature (through the in-process `pollRequested` event, never an
 * import) to read that shelf's scales at once. Pins are BCM numbers; the sysfs offset is found
 * from the gpiochips (./sysfs.ts). docs/gpio.md.
 *
 * Contributes: the `gpio` config key (absent = off); the GpioService on an onoff or simulated
 * backend; the topic areas `gpio/#` (gateway-owned) and `gpio/button/#` (kiosks read it); the
 * commands gpio.set (operate), gpio.status (operate), gpio.simulate (admin, sim backend only).
 * No tables and no outbox kinds: edges are live signals for the store, not stock facts for central
 * (migration number 16 stays reserved for when one is needed).
 */
import { handle, type CommandDecl } from '../../core/commands';
import { defineFeature, type FeatureContext, type FeatureParts } from '../../core/feature';
import { ErrorCode, ShelfgateError } from '../../errors';
import type { GpioBackend, Level } from './backend';
import { GPIO_COMMANDS } from './commands';
import { gpioConfigShape, gpioSlice, validateGpio, type GpioConfig } from './config';
import { OnoffBackend } from './onoff-backend';
import { GpioService } from './service';
import { SimGpioBackend } from './sim-backend';
import { GPIO_METRICS, gpioMetricValues } from './metrics';

function notConfigured(): never {
  throw new ShelfgateError(ErrorCode.NOT_FOUND, 'this gateway has no GPIO (no `gpio:` section in its config)');
}

/** The backend a config asks for. A simulated input starts at its inactive level. */
export function createGpioBackend(cfg: GpioConfig): GpioBackend {
  if (cfg.backend === 'sim') return new SimGpioBackend(new Map(cfg.inputs.map((i) => [i.pin, (i.active_low ? 1 : 0) as Level])));
  return new OnoffBackend({ sysfsRoot: cfg.sysfs_root, ...(cfg.chip_label !== undefined ? { chipLabel: cfg.chip_label } : {}) });
}

export const gpioFeature = defineFeature({
  name: 'gpio',
  config: gpioConfigShape,
  validate: (config) => validateGpio(config),
  summary: (config) => {
    const cfg = gpioSlice(config);
    return cfg ? `GPIO (${cfg.backend}): ${cfg.inputs.length} input(s), ${cfg.outputs.length} output(s)` : 'no GPIO';
  },
  topics: [
    { filter: 'gpio/#', gatewayOwned: true, description: 'GPIO: input edges and retained states (presence, contact, button), output states, backend status' },
    { filter: 'gpio/button/#', gatewayOwned: true, readers: ['kiosk'], description: 'GPIO kiosk buttons: edges and retained states (kiosks read these)' },
  ],
  commands: GPIO_COMMANDS,
  metrics: GPIO_METRICS,
  build(ctx: FeatureContext): FeatureParts {
    const cfg = gpioSlice(ctx.config);
    if (!cfg) return { commands: GPIO_COMMANDS.map((d) => handle(d as CommandDecl, async () => notConfigured())) };
    const service = new GpioService({
      storeId: ctx.storeId,
      config: cfg,
      backend: createGpioBackend(cfg),
      bus: ctx.bus,
      events: ctx.events,
      log: ctx.log.child({ module: 'gpio' }),
    });
    return {
      services: [service],
      commands: service.commandHandlers(),
      status: () => service.status(),
      collectMetrics: () => gpioMetricValues(service),
    };
  },
});

/** The GpioService of a built gateway (tests, the demo). */
export function gpioOf(gw: { features: ReadonlyMap<string, { services?: unknown[] }> }): GpioService {
  const s = gw.features.get(gpioFeature.name)?.services?.find((x): x is GpioService => x instanceof GpioService);
  if (!s) throw new Error('this gateway has no GPIO feature configured');
  return s;
}
