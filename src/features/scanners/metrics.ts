/**
 * The barcode-scanner feature's Prometheus metrics (core/metrics.ts; exported as
 * shelfgate_<name>). Misreads are one counter labelled with the fixed set of reasons
 * (MISREAD_REASONS); scanner ids are per device in the core's source and device metrics. A
 * scanned code is never a label.
 */
import type { MetricDecl, MetricValues } from '../../core/metrics';
import type { ScannersService } from './service';
import { MISREAD_REASONS } from './source';

export const SCANNERS_METRICS: readonly MetricDecl[] = [
  { name: 'scanners_configured', help: 'Barcode scanners in the config.', type: 'gauge' },
  { name: 'scanners_online', help: 'Barcode scanners online now.', type: 'gauge' },
  { name: 'scanners_reads_total', help: 'Scans decoded.', type: 'counter' },
  { name: 'scanners_misreads_total', help: 'Scans refused, by reason.', type: 'counter', labels: ['reason'] },
  { name: 'scanners_not_gtin_total', help: 'Scans decoded that carry no GTIN.', type: 'counter' },
  { name: 'scanners_emitted_total', help: 'Scans handed to in-process consumers (barcodeScanned).', type: 'counter' },
  { name: 'scanners_published_total', help: 'Scans published on the local bus.', type: 'counter' },
  { name: 'scanners_publish_failures_total', help: 'Scans that could not be published on the local bus.', type: 'counter' },
];

/** The values of SCANNERS_METRICS, from the service's flat metrics. */
export function scannersMetricValues(service: ScannersService): MetricValues {
  const flat = service.metrics();
  const out: MetricValues = {};
  for (const d of SCANNERS_METRICS) if (d.name !== 'scanners_misreads_total' && flat[d.name] !== undefined) out[d.name] = flat[d.name]!;
  out.scanners_misreads_total = MISREAD_REASONS.map((reason) => ({ labels: { reason }, value: flat[`scanners_misreads_${reason}_total`] ?? 0 }));
  return out;
}
