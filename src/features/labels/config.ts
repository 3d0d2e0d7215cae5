/**
 * The labels feature's slice of the one config: where the access points are, how prices are
 * formatted, and the delivery parameters. Label bindings are not config: they are made at run time
 * by a technician (`label.bind`) or by central (a slot assignment's `labels`), and kept in SQLite.
 *
 * The feature is off when the `labels` key is absent (a store without electronic labels).
 */
import { z } from 'zod';
import { id, type Config } from '../../config/schema';
import type { ConfigIssue } from '../../config/load';

export const accessPointSchema = z.strictObject({
  id,
  /** The AP's HTTP root, e.g. `http://10.0.20.5` (its WebSocket is `/ws` on the same host). */
  url: z
    .string()
    .url('must be a URL such as http://10.0.20.5')
    .refine((u) => /^https?:\/\//.test(u), 'must be an http:// or https:// URL'),
  /** HTTP requests to the AP at once (an ESP32 AP serves few). */
  max_concurrent_requests: z.number().int().min(1).max(16).default(2),
  request_timeout_ms: z.number().int().min(100).max(120_000).default(10_000),
  /** How often the gateway looks up transfers the AP has not acknowledged (`/get_db?mac=`), in case the WebSocket lost the ack. */
  poll_interval_ms: z.number().int().min(100).max(600_000).default(30_000),
  /**
   * Reuse HTTP connections to the AP (keep-alive). Off by default: the OpenEPaperLink firmware's web
   * server (ESPAsyncWebServer) answers every request with `Connection: close` and closes the
   * connection, so a kept-alive socket is never reused there. For an AP or proxy that keeps
   * connections open it saves a TCP connection per upload.
   */
  keep_alive: z.boolean().default(false),
});

export const labelsSchema = z.strictObject({
  /** BCP 47 locale for prices on labels, e.g. `de-DE` (grouping, decimal sign, currency position). */
  locale: z.string().min(2).default('en-US'),
  access_points: z.array(accessPointSchema).min(1, 'must list at least one access point'),
  /** A label's check-in interval until it reports its own (OEPL labels: about 40 s). */
  default_check_in_s: z.number().min(0.05).max(3600).default(40),
  /** Radio throughput of one AP, the scheduler's byte budget per second. */
  radio_bytes_per_s: z.number().int().min(100).max(1_000_000).default(5000),
  /**
   * Radio time, in seconds, the gateway lets queue up at one AP (the scheduler's burst). An AP can
   * only send to a label when that label checks in, so its queue must hold enough labels to keep
   * the radio busy through a check-in interval: about two intervals of radio time (default 80 s at
   * 40 s check-ins). More than that hands the ordering by urgency to the AP's own first-come queue.
   */
  ap_queue_s: z.number().min(0.01).max(3600).default(80),
  /** Check-ins to wait for an acknowledgement before a transfer counts as failed. */
  ack_check_ins: z.number().int().min(1).max(100).default(3),
  /** Failed attempts before a label is reported `failed` (it is still retried at the longest back-off). */
  max_attempts: z.number().int().min(1).max(100).default(5),
  /** Below this battery voltage a label reports `low_battery`. */
  low_battery_mv: z.number().int().min(0).max(5000).default(2400),
  /** A label not heard for this many check-ins reports `lost`. */
  lost_after_check_ins: z.number().int().min(2).max(1000).default(5),
  /** Shortest time between two publishes of the retained summary (and of one label's state). */
  publish_interval_ms: z.number().int().min(0).max(60_000).default(1000),
});

export type LabelsConfig = z.output<typeof labelsSchema>;

export const labelsConfigShape = { labels: labelsSchema.optional() };

/** The labels slice, or undefined when the store has no labels. */
export function labelsSlice(config: Config): LabelsConfig | undefined {
  return (config as unknown as { labels?: LabelsConfig }).labels;
}

export function validateLabels(config: Config): ConfigIssue[] {
  const cfg = labelsSlice(config);
  if (!cfg) return [];
  const issues: ConfigIssue[] = [];
  const seen = new Set<string>();
  cfg.access_points.forEach((ap, i) => {
    if (seen.has(ap.id)) issues.push({ path: `labels.access_points[${i}].id`, message: `duplicate access point id "${ap.id}"` });
    seen.add(ap.id);
  });
  try {
    if (Intl.NumberFormat.supportedLocalesOf([cfg.locale]).length === 0)
      issues.push({ path: 'labels.locale', message: `locale ${cfg.locale} is not supported by this Node.js build (no ICU data for it)` });
  } catch {
    issues.push({ path: 'labels.locale', message: `${JSON.stringify(cfg.locale)} is not a BCP 47 locale (e.g. de-DE)` });
  }
  return issues;
}
