/**
 * The RFID feature's Prometheus metrics (core/metrics.ts; exported as shelfgate_<name>): the
 * service's counters, the tags tracked and present, and the tags present per zone (zone ids come
 * from the config, so the series stay bounded; EPCs and GTINs are never labels).
 */
import type { MetricDecl, MetricValues } from '../../core/metrics';
import type { RfidService } from './service';

export const RFID_METRICS: readonly MetricDecl[] = [
  { name: 'rfid_reads_total', help: 'Tag reads received from the readers.', type: 'counter' },
  { name: 'rfid_raw_epcs_total', help: 'Distinct EPCs decoded that are not an SGTIN (kept as raw hex, no GTIN).', type: 'counter' },
  { name: 'rfid_epc_cache_evictions_total', help: 'EPC decode cache evictions.', type: 'counter' },
  { name: 'rfid_arrivals_total', help: 'Tags that arrived in a zone (smoothed).', type: 'counter' },
  { name: 'rfid_departures_total', help: 'Tags that left a zone (smoothed).', type: 'counter' },
  { name: 'rfid_handovers_total', help: 'Tags taken over by another zone.', type: 'counter' },
  { name: 'rfid_zone_counts_total', help: 'zone_count events committed to the outbox.', type: 'counter' },
  { name: 'rfid_stock_observations_total', help: 'Stock observations of locations made from zone counts.', type: 'counter' },
  { name: 'rfid_duplicate_reads_total', help: 'Reads folded into the current read cycle of a tag in a zone (not a new sighting).', type: 'counter' },
  { name: 'rfid_unknown_antenna_reads_total', help: 'Reads from a reader antenna that belongs to no zone.', type: 'counter' },
  { name: 'rfid_tags_over_cap_total', help: 'Reads of a new tag dropped because the most tags are tracked already.', type: 'counter' },
  { name: 'rfid_invalid_reads_total', help: 'Reads with a time or RSSI that is not a finite number.', type: 'counter' },
  { name: 'rfid_stray_tags_total', help: 'Tags seen in a zone and forgotten without ever arriving (strays).', type: 'counter' },
  { name: 'rfid_raw_reads_published_total', help: 'Raw reads published on the local bus.', type: 'counter' },
  { name: 'rfid_raw_reads_dropped_total', help: 'Raw reads not published: over raw_reads.max_per_s.', type: 'counter' },
  { name: 'rfid_publish_failures_total', help: 'RFID state that could not be published on the local bus.', type: 'counter' },
  { name: 'rfid_persist_failures_total', help: 'RFID changes that could not be written to SQLite.', type: 'counter' },
  { name: 'rfid_tags_tracked', help: 'Tags the smoother tracks now.', type: 'gauge' },
  { name: 'rfid_tags_present', help: 'Tags present in any zone now.', type: 'gauge' },
  { name: 'rfid_zone_tags_present', help: 'Tags present in the zone now.', type: 'gauge', labels: ['zone'] },
];

/** The values of RFID_METRICS, read from the service at scrape time. */
export function rfidMetricValues(service: RfidService): MetricValues {
  const flat = service.metrics();
  const out: MetricValues = {};
  for (const d of RFID_METRICS) if (flat[d.name] !== undefined) out[d.name] = flat[d.name]!;
  const zones = service.status().zones as Array<{ id: string; tags: number }>;
  out.rfid_zone_tags_present = zones.map((z) => ({ labels: { zone: z.id }, value: z.tags }));
  return out;
}
