/**
 * Kiosks and price checkers: offline product lookups over MQTT (`product.lookup`, a `read`
 * command, so the kiosk role may send it) and HTTP (`GET /api/v1/lookup/<code>`), a price-checker
 * page per configured kiosk (`/kiosk/<id>`) that shows scans and manual entries and updates live
 * on a new price, and the scanner hook: a `barcodeScanned` on a scanner bound to a kiosk is
 * answered on `kiosk/<id>/lookup` and on that kiosk's page. docs/kiosk.md.
 *
 * Contributes: config `kiosks` (the kiosks: id, optional name) and `kiosk` (how long an answer
 * stays shown); the `kiosk/#` topic area (gateway-owned; kiosks read it); the `product.lookup`
 * command; the HTTP routes of ./routes.ts; no tables (everything it answers from is the core's or
 * central's, read into memory: ./lookup.ts), so schema version 14 (reserved) stays unused.
 */
import { z } from 'zod';
import { declareCommand, handle } from '../../core/commands';
import { defineFeature, type FeatureContext, type FeatureParts } from '../../core/feature';
import { id, type Config } from '../../config/schema';
import type { ConfigIssue } from '../../config/load';
import { ProductIndex } from './lookup';
import { registerKioskRoutes } from './routes';
import { KIOSK_METRICS, KioskService, type KioskConfig } from './service';

export const kioskConfigShape = {
  /** The kiosks and price checkers of the store: a page `/kiosk/<id>` and a topic `kiosk/<id>/lookup` each. */
  kiosks: z.array(z.strictObject({ id, name: z.string().min(1).max(100).optional() })).max(256).default([]),
  kiosk: z
    .strictObject({
      /** How long an answer stays shown (the page returns to "scan a product"; a page that connects later gets it only within this). */
      show_s: z.number().int().min(3).max(3600).default(30),
    })
    .prefault({}),
};

export const PRODUCT_LOOKUP = declareCommand({
  name: 'product.lookup',
  permission: 'read',
  description: 'price, promotion, on-shelf stock and location of a product, by GTIN, EAN-8, EAN-13 or UPC-A (answered offline)',
  payload: z.strictObject({ code: z.string().min(1).max(64) }),
});

export const KIOSK_COMMANDS = [PRODUCT_LOOKUP] as const;

interface KioskSlice {
  kiosks: KioskConfig[];
  kiosk: { show_s: number };
}

export function kioskSlice(config: Config): KioskSlice {
  return config as unknown as KioskSlice;
}

function validateKiosks(config: Config): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const seen = new Set<string>();
  kioskSlice(config).kiosks.forEach((k, i) => {
    if (seen.has(k.id)) issues.push({ path: `kiosks[${i}].id`, message: `duplicate kiosk id ${k.id}` });
    seen.add(k.id);
  });
  return issues;
}

export const kioskFeature = defineFeature({
  name: 'kiosk',
  config: kioskConfigShape,
  validate: (config) => validateKiosks(config),
  summary: (config) => `${kioskSlice(config).kiosks.length} kiosk(s)`,
  topics: [{ filter: 'kiosk/#', gatewayOwned: true, readers: ['kiosk'], description: "kiosk lookups: each kiosk's answers to its scans (kiosk/<id>/lookup, not retained)" }],
  commands: KIOSK_COMMANDS,
  metrics: KIOSK_METRICS,
  build(ctx: FeatureContext): FeatureParts {
    const cfg = kioskSlice(ctx.config);
    const index = new ProductIndex(ctx.store, ctx.locations);
    const service = new KioskService({
      storeId: ctx.storeId,
      kiosks: cfg.kiosks,
      showS: cfg.kiosk.show_s,
      index,
      events: ctx.events,
      bus: ctx.bus,
      log: ctx.log.child({ module: 'kiosk' }),
    });
    registerKioskRoutes(ctx.http, service);
    return {
      services: [service],
      commands: [handle(PRODUCT_LOOKUP, async (p) => service.lookup(p.code))],
      status: () => service.status(),
      collectMetrics: () => service.collectMetrics(),
    };
  },
});
