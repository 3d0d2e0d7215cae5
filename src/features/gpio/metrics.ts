/**
 * The GPIO feature's Prometheus metrics (core/metrics.ts; exported as shelfgate_<name>), read from
 * the service's counters at scrape time.
 */
import type { MetricDecl, MetricValues } from '../../core/metrics';
import type { GpioService } from './service';

export const GPIO_METRICS: readonly MetricDecl[] = [
  { name: 'gpio_available', help: '1 when the GPIO backend could be opened, 0 when not (see gpio/status).', type: 'gauge' },
  { name: 'gpio_edges_total', help: 'Debounced input edges.', type: 'counter' },
  { name: 'gpio_raw_changes_total', help: 'Raw input level changes seen before debouncing.', type: 'counter' },
  { name: 'gpio_bounces_suppressed_total', help: 'Input level changes suppressed by debouncing.', type: 'counter' },
  { name: 'gpio_read_errors_total', help: 'Failed reads of an input.', type: 'counter' },
  { name: 'gpio_open_failures_total', help: 'Failed attempts to open a GPIO line.', type: 'counter' },
  { name: 'gpio_sets_total', help: 'Outputs set.', type: 'counter' },
  { name: 'gpio_poll_requests_total', help: 'Shelf polls requested by an input edge (poll_shelf).', type: 'counter' },
  { name: 'gpio_publish_failures_total', help: 'GPIO state that could not be published on the local bus.', type: 'counter' },
];

/** The values of GPIO_METRICS: the service's flat metrics under the feature's prefix. */
export function gpioMetricValues(service: GpioService): MetricValues {
  const flat = service.metrics();
  const out: MetricValues = {};
  for (const d of GPIO_METRICS) {
    const v = flat[d.name.slice('gpio_'.length)];
    if (v !== undefined) out[d.name] = v;
  }
  return out;
}
