/**
 * The scanners feature: barcode scanners at kiosks and price checkers (docs/scanners.md). Serial
 * and USB-CDC scanners (one read per line) and USB keyboard-wedge scanners (Linux input events)
 * are read, each read validated (GTIN check digit, GS1 element string) and, if valid, emitted as
 * `barcodeScanned` (./events.ts; the kiosk feature answers it) and published on
 * `scanners/<id>/read`. A misread is counted by reason and goes nowhere.
 *
 * Contributes: the `scanners` config key (absent or [] = none); one ScannerSource per scanner on
 * its ReconnectingLink (./sources.ts), tracked by the device registry (availability = link open);
 * the ScannersService; the `scanners/#` topic area, which kiosks may read (a read carries a code
 * and its kiosk, nothing a kiosk may not see: kiosks read prices and stock already); the
 * `scanners.list` read command. No outbox kind and no table (./service.ts says why).
 */
import { defineFeature, type FeatureContext, type FeatureParts } from '../../core/feature';
import type { Service } from '../../lifecycle';
import { SCANNER_COMMANDS } from './commands';
import { scannersConfigShape, scannersSlice, validateScanners } from './config';
import { ScannersService, SCANNERS_AREA } from './service';
import { createScanner } from './sources';
import type { ScannerSource } from './source';
import './events';
import { SCANNERS_METRICS, scannersMetricValues } from './metrics';

export const scannersFeature = defineFeature({
  name: 'scanners',
  config: scannersConfigShape,
  validate: (config) => validateScanners(config),
  summary: (config) => {
    const n = scannersSlice(config).length;
    return n > 0 ? `${n} scanner(s)` : 'no scanners';
  },
  topics: [{ filter: `${SCANNERS_AREA}/#`, gatewayOwned: true, readers: ['kiosk'], description: 'barcode scanners: every valid read, on scanners/<id>/read (not retained)' }],
  commands: SCANNER_COMMANDS,
  metrics: SCANNERS_METRICS,
  build(ctx: FeatureContext): FeatureParts {
    const configs = scannersSlice(ctx.config);
    const links: Service[] = [];
    const scanners: Array<{ config: (typeof configs)[number]; source: ScannerSource }> = [];
    const log = ctx.log.child({ module: 'scanners' });
    for (const c of configs) {
      const built = createScanner(c, log);
      ctx.devices.track(built.source, () => built.info);
      links.push(built.link);
      scanners.push({ config: c, source: built.source });
    }
    const service = new ScannersService({ storeId: ctx.storeId, scanners, events: ctx.events, bus: ctx.bus, log });
    return {
      // links after the service: a source attaches to its link when sources start, after every service
      services: [service, ...links],
      sources: scanners.map((s) => s.source),
      commands: service.commandHandlers(),
      status: () => service.status(),
      collectMetrics: () => scannersMetricValues(service),
    };
  },
});

/** The ScannersService of a built gateway (tests, the demo). */
export function scannersOf(gw: { features: ReadonlyMap<string, { services?: unknown[] }> }): ScannersService {
  const s = gw.features.get(scannersFeature.name)?.services?.find((x): x is ScannersService => x instanceof ScannersService);
  if (!s) throw new Error('this gateway has no scanners feature');
  return s;
}
