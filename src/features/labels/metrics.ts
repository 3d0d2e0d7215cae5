/**
 * The shelf-labels feature's Prometheus metrics (core/metrics.ts; exported as shelfgate_<name>).
 * Price integrity is exported both as the share the labels report computes and as its two terms
 * (labels priced, labels confirmed showing their current price), so a fleet dashboard can sum the
 * terms across stores instead of averaging shares. Labels by state use the fixed set of delivery
 * states; access points are labelled with their configured id. A label's MAC is never a label.
 */
import type { MetricDecl, MetricValues } from '../../core/metrics';
import type { LabelsService } from './service';

export const LABELS_METRICS: readonly MetricDecl[] = [
  { name: 'labels_bound', help: 'Shelf labels bound to a location.', type: 'gauge' },
  { name: 'labels_priced', help: 'Bound labels that have a price to show.', type: 'gauge' },
  { name: 'labels_showing_current_price', help: 'Priced labels that confirmed showing their current price.', type: 'gauge' },
  { name: 'labels_price_integrity_ratio', help: 'labels_showing_current_price / labels_priced (1 when nothing is priced).', type: 'gauge' },
  { name: 'labels_by_state', help: 'Bound labels by delivery state (pending, sent, confirmed, failed).', type: 'gauge', labels: ['state'] },
  { name: 'labels_oldest_mismatch_age_seconds', help: 'How long the label longest showing a wrong price has shown it (0 when none).', type: 'gauge' },
  { name: 'labels_low_battery', help: 'Labels reporting a battery below labels.low_battery_mv.', type: 'gauge' },
  { name: 'labels_lost', help: 'Labels not heard from for several check-ins.', type: 'gauge' },
  { name: 'label_access_point_online', help: '1 while the label access point answers.', type: 'gauge', labels: ['access_point'] },
  { name: 'label_renders_total', help: 'Label images rendered.', type: 'counter' },
  { name: 'label_render_failures_total', help: 'Label images that could not be rendered.', type: 'counter' },
  { name: 'label_sends_total', help: 'Label images handed to an access point.', type: 'counter' },
  { name: 'label_send_failures_total', help: 'Label images an access point refused or could not take.', type: 'counter' },
  { name: 'label_acks_total', help: 'Labels that confirmed showing what was sent.', type: 'counter' },
  { name: 'label_persist_failures_total', help: 'Label state changes that could not be written to SQLite.', type: 'counter' },
  { name: 'label_publish_failures_total', help: 'Label state that could not be published on the local bus.', type: 'counter' },
];

/** The values of LABELS_METRICS, read from the service at scrape time. */
export function labelsMetricValues(service: LabelsService): MetricValues {
  const s = service.summary();
  const aps = (service.status().access_points ?? []) as Array<{ id: string; online: boolean }>;
  const st = service.stats;
  return {
    labels_bound: s.labels,
    labels_priced: s.priced,
    labels_showing_current_price: s.confirmed_current,
    labels_price_integrity_ratio: s.share,
    labels_by_state: Object.entries(s.by_state).map(([state, value]) => ({ labels: { state }, value })),
    labels_oldest_mismatch_age_seconds: s.oldest_mismatch_age_s ?? 0,
    labels_low_battery: s.low_battery,
    labels_lost: s.lost,
    label_access_point_online: aps.map((a) => ({ labels: { access_point: a.id }, value: a.online ? 1 : 0 })),
    label_renders_total: st.rendered,
    label_render_failures_total: st.renderFailures,
    label_sends_total: st.dispatched,
    label_send_failures_total: st.sendFailures,
    label_acks_total: st.acks,
    label_persist_failures_total: st.persistFailures,
    label_publish_failures_total: st.publishFailures,
  };
}
