/**
 * The gateway's Prometheus metrics (`/metrics`, text format 0.0.4), read at scrape time.
 *
 * Design choices:
 * - Collected, not pushed: every value is read from counters the parts already keep (SourceStats,
 *   LinkStats, the store's, the sync service's, the bus's) when Prometheus scrapes, so the hot
 *   paths pay nothing for metrics. The one exception is the sync latency histogram (per event taken
 *   by central, a few comparisons: core/metrics.ts Histogram).
 * - One declaration mechanism for the core and the features (core/metrics.ts MetricDecl): the
 *   core's metrics are declared below like a feature's; each feature declares its own in
 *   `Feature.metrics` and supplies values through its parts' `collectMetrics()`. This file names
 *   no feature. Each render() collects every part once, then lets prom-client's Registry format
 *   the result (custom metric objects registered in a Registry of our own, plus prom-client's
 *   default process metrics: event-loop lag, RSS, heap, GC).
 * - Bounded labels: sources, links and devices are labelled with ids from the config, and with
 *   the feature that built them; outbox kinds come from the features' declarations. Nothing from
 *   outside input (EPC, GTIN, client id) is ever a label. A metric with more than
 *   MAX_SERIES_PER_METRIC series in one scrape is cut there and counted
 *   (shelfgate_metrics_series_dropped_total), never thrown.
 * - The free space of the data_dir file system (fs.statfs) is read at scrape time, for the disk
 *   alert; a failing statfs leaves those two series out and is counted.
 */
import { statfs } from 'node:fs/promises';
import { Registry, collectDefaultMetrics } from 'prom-client';
import type { Feature } from '../core/feature';
import type { Gateway } from '../core/gateway';
import { MAX_SERIES_PER_METRIC, byLabel, checkMetricDecls, type HistogramSnapshot, type MetricDecl, type MetricValues, type ScalarSample } from '../core/metrics';
import { ErrorCode, ShelfgateError } from '../errors';
import type { Service } from '../lifecycle';
import { LogLimiter, type Logger } from '../log';
import { ReconnectingLink } from '../transport/reconnecting';
import { packageVersion } from '../util/paths';
import type { GatewayHealth } from './health';

export const METRIC_PREFIX = 'shelfgate_';

/** The core's metrics (names without the prefix). docs/operations.md explains each. */
export const CORE_METRICS: readonly MetricDecl[] = [
  { name: 'build_info', help: 'Always 1; the version of shelfgate running.', type: 'gauge', labels: ['version'] },
  { name: 'ready', help: '1 when the gateway is ready (/readyz), 0 when not.', type: 'gauge' },
  // devices and their sources
  { name: 'devices_configured', help: 'Devices reported on by the configured sources.', type: 'gauge' },
  { name: 'devices_online', help: 'Devices online now.', type: 'gauge' },
  { name: 'device_online', help: '1 if the device answers, 0 if it is offline.', type: 'gauge', labels: ['feature', 'device'] },
  { name: 'source_readings_total', help: 'Readings decoded by the source (a bus, a reader, a scale).', type: 'counter', labels: ['feature', 'source'] },
  { name: 'source_polls_total', help: 'Requests sent by a polled source.', type: 'counter', labels: ['feature', 'source'] },
  { name: 'source_timeouts_total', help: 'Requests the device did not answer in time.', type: 'counter', labels: ['feature', 'source'] },
  { name: 'source_frames_dropped_total', help: 'Frames received and discarded, by reason (crc, invalid, device_error, late).', type: 'counter', labels: ['feature', 'source', 'reason'] },
  { name: 'source_noise_bytes_total', help: 'Bytes skipped while looking for a frame start.', type: 'counter', labels: ['feature', 'source'] },
  { name: 'link_online', help: '1 while the serial/TCP link to the device is open.', type: 'gauge', labels: ['feature', 'link'] },
  { name: 'link_opens_total', help: 'Times the link was opened (the first open and every reconnect).', type: 'counter', labels: ['feature', 'link'] },
  { name: 'link_open_failures_total', help: 'Failed attempts to open the link.', type: 'counter', labels: ['feature', 'link'] },
  { name: 'link_disconnects_total', help: 'Times an open link was lost (unplugged adapter, closed socket); each is followed by reconnect attempts.', type: 'counter', labels: ['feature', 'link'] },
  { name: 'device_transitions_total', help: 'Device availability changes recorded by the device registry.', type: 'counter' },
  // the store and the outbox
  { name: 'outbox_events_total', help: 'Events appended to the outbox by this process, by kind.', type: 'counter', labels: ['kind'] },
  { name: 'outbox_backlog_events', help: 'Events in the outbox not yet taken by central.', type: 'gauge' },
  { name: 'outbox_backlog_bytes', help: 'Payload bytes of the events in the outbox.', type: 'gauge' },
  { name: 'outbox_oldest_event_age_seconds', help: 'Age of the oldest event waiting for upload (0 when none waits).', type: 'gauge' },
  { name: 'outbox_buffer_max_bytes', help: 'The outbox byte bound (sync.buffer_max_bytes).', type: 'gauge' },
  { name: 'outbox_over_limit', help: '1 while the outbox is over its byte bound (the buffer policy is compacting or dropping).', type: 'gauge' },
  { name: 'outbox_removed_events_total', help: 'Events removed from the outbox before upload by the buffer policy, by kind and policy (compacted, dropped).', type: 'counter', labels: ['kind', 'policy'] },
  { name: 'store_batches_total', help: 'SQLite write batches committed.', type: 'counter' },
  { name: 'store_failed_batches_total', help: 'SQLite write batches that could not be committed (disk full, I/O error).', type: 'counter' },
  { name: 'store_pending_writes', help: 'Writes queued for the next SQLite batch.', type: 'gauge' },
  { name: 'data_dir_free_bytes', help: 'Bytes available to shelfgate on the data_dir file system.', type: 'gauge' },
  { name: 'data_dir_size_bytes', help: 'Size of the data_dir file system.', type: 'gauge' },
  // sync with central
  { name: 'sync_connected', help: '1 while central is reachable.', type: 'gauge' },
  { name: 'sync_last_success_timestamp_seconds', help: 'Unix time of the last successful exchange with central (absent before the first).', type: 'gauge' },
  { name: 'sync_uploaded_events_total', help: 'Events accepted by central.', type: 'counter' },
  { name: 'sync_duplicate_events_total', help: 'Events central already had (taken as delivered).', type: 'counter' },
  { name: 'sync_parked_events_total', help: 'Events refused by central and parked (kept, not resent).', type: 'counter' },
  { name: 'sync_batches_total', help: 'Upload batches answered by central.', type: 'counter' },
  { name: 'sync_batch_failures_total', help: 'Upload batches that failed or were answered incompletely.', type: 'counter' },
  { name: 'sync_latency_seconds', help: 'Seconds from an event being recorded to central taking it.', type: 'histogram' },
  { name: 'sync_price_versions_applied_total', help: 'Price versions from central applied to the store.', type: 'counter' },
  { name: 'sync_slot_assignments_applied_total', help: 'Slot assignments from central applied.', type: 'counter' },
  { name: 'sync_feed_pages_applied_total', help: "Pages of central's change feed applied.", type: 'counter' },
  { name: 'sync_pending_acks', help: 'Acknowledgements of applied changes not yet sent to central.', type: 'gauge' },
  // the MQTT bus
  { name: 'mqtt_clients', help: 'MQTT clients connected now.', type: 'gauge' },
  { name: 'mqtt_connections_total', help: 'TCP connections accepted by the MQTT listeners.', type: 'counter' },
  { name: 'mqtt_connections_refused_total', help: 'MQTT connections or logins refused, by reason.', type: 'counter', labels: ['reason'] },
  { name: 'mqtt_auth_failures_total', help: 'MQTT logins with a wrong user or password.', type: 'counter' },
  { name: 'mqtt_messages_received_total', help: 'Messages published by MQTT clients.', type: 'counter' },
  { name: 'mqtt_messages_delivered_total', help: 'Messages delivered to MQTT clients.', type: 'counter' },
  { name: 'mqtt_gateway_publishes_total', help: 'Messages published by the gateway itself.', type: 'counter' },
  { name: 'mqtt_denied_total', help: 'Publishes and subscriptions refused by the ACL, by action.', type: 'counter', labels: ['action'] },
  { name: 'mqtt_slow_consumer_drops_total', help: 'QoS 0 messages not sent to a client whose queue was over its bound.', type: 'counter' },
  { name: 'mqtt_slow_consumer_disconnects_total', help: 'Clients disconnected for not reading their messages.', type: 'counter' },
  { name: 'mqtt_session_queue_dropped_total', help: "Messages dropped from an offline persistent session's full queue.", type: 'counter' },
  // the HTTP server (pages, lookups, these endpoints)
  { name: 'http_requests_total', help: 'HTTP requests received by the gateway.', type: 'counter' },
  { name: 'http_errors_total', help: 'HTTP answers with an error status, by class (4xx, 5xx).', type: 'counter', labels: ['class'] },
  { name: 'http_refused_total', help: 'HTTP requests refused before their handler, by reason (no credentials, bad credentials, locked out, forbidden).', type: 'counter', labels: ['reason'] },
  { name: 'http_event_streams', help: 'Server-sent event streams open now (kiosk and technician pages).', type: 'gauge' },
  { name: 'http_event_streams_refused_total', help: 'Event streams refused because http.max_event_streams were open.', type: 'counter' },
  { name: 'http_stream_events_dropped_total', help: 'Events not sent to a page that did not keep up.', type: 'counter' },
  { name: 'http_sessions', help: 'Web login sessions alive (the technician page).', type: 'gauge' },
  // the exporter itself
  { name: 'metrics_collect_failures_total', help: 'Scrapes in which a part could not report its metrics, by part.', type: 'counter', labels: ['part'] },
  { name: 'metrics_series_dropped_total', help: 'Series left out because a metric went over its series bound.', type: 'counter' },
];

export interface GatewayMetricsOptions {
  gateway: Gateway;
  /** The features the gateway was built from (their metric declarations). */
  features: readonly Feature[];
  /** config.data_dir: its file system's free space is exported. */
  dataDir: string;
  log: Logger;
  /** When given, `shelfgate_ready` follows its readiness. */
  health?: Pick<GatewayHealth, 'readiness'>;
  /** prom-client's default process metrics (event-loop lag, RSS, heap, GC); default true. */
  defaultMetrics?: boolean;
}

interface Entry {
  decl: MetricDecl;
  /** Feature name, or '' for the core. */
  owner: string;
}

type Collected = Map<string, MetricValues[string]>;

/** prom-client's shape of one metric's values (what Registry formats). */
interface PromValue {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

export class GatewayMetrics implements Service {
  readonly name = 'metrics';
  readonly registry = new Registry();
  private readonly entries = new Map<string, Entry>();
  private readonly limiter: LogLimiter;
  private readonly failures = new Map<string, number>();
  private seriesDropped = 0;
  private current: Collected = new Map();
  private started = false;

  constructor(private readonly o: GatewayMetricsOptions) {
    this.limiter = new LogLimiter(o.log);
    const problems = checkMetricDecls(CORE_METRICS).map((p) => `core: ${p}`);
    for (const d of CORE_METRICS) this.entries.set(d.name, { decl: d, owner: '' });
    for (const f of o.features) {
      problems.push(...checkMetricDecls(f.metrics ?? []).map((p) => `${f.name}: ${p}`));
      for (const d of f.metrics ?? []) {
        const prev = this.entries.get(d.name);
        if (prev) problems.push(`${f.name}: metric ${d.name} already declared by ${prev.owner || 'the core'}`);
        else this.entries.set(d.name, { decl: d, owner: f.name });
      }
    }
    if (problems.length) throw new ShelfgateError(ErrorCode.INTERNAL, `metric declarations refused: ${problems.join('; ')}`);
  }

  /** Registers every metric (and the default process metrics) in this instance's own Registry. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    for (const [name, e] of this.entries) this.registry.registerMetric(this.metricObject(name, e.decl) as never);
    if (this.o.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 10 });
  }

  /**
   * Forgets the registered metrics. prom-client's default metrics keep a perf_hooks event-loop
   * monitor and GC observer alive for the process (prom-client has no way to end them); they hold
   * no timer that keeps the process running.
   */
  async stop(): Promise<void> {
    this.started = false;
    this.registry.clear();
    this.current = new Map();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** One scrape: collects every part once, then formats. Never rejects for a part's failure. */
  async render(): Promise<{ contentType: string; body: string }> {
    if (!this.started) throw new ShelfgateError(ErrorCode.STOPPED, 'metrics not started');
    const collected = await this.collect();
    // Our metric objects read `current` synchronously when the Registry calls their get(), which
    // it does for every metric before its first await: two scrapes at once never mix values.
    this.current = collected;
    const body = await this.registry.metrics();
    return { contentType: this.registry.contentType, body };
  }

  // ------------------------------------------------------------------ collection

  private async collect(): Promise<Collected> {
    const out: Collected = new Map();
    this.guard('core', () => this.collectCore(out));
    for (const f of this.o.features) {
      const parts = this.o.gateway.features.get(f.name);
      if (!parts) continue;
      this.guard(f.name, () => {
        if (f.metrics?.length && parts.collectMetrics) {
          const values = parts.collectMetrics();
          for (const d of f.metrics) if (values[d.name] !== undefined) out.set(d.name, values[d.name]!);
        } else if (!f.metrics?.length && parts.metrics) {
          // deprecated flat form (FeatureParts.metrics): typed by its name
          for (const [k, v] of Object.entries(parts.metrics())) {
            const name = k.replace(/[^a-z0-9_]/gi, '_').toLowerCase();
            if (this.entries.has(name) && this.entries.get(name)!.owner !== f.name) continue;
            if (!this.entries.has(name)) {
              const decl: MetricDecl = { name, help: `${f.name}: ${k} (undeclared flat metric)`, type: name.endsWith('_total') ? 'counter' : 'gauge' };
              this.entries.set(name, { decl, owner: f.name });
              if (this.started) this.registry.registerMetric(this.metricObject(name, decl) as never);
            }
            out.set(name, v);
          }
        }
      });
    }
    try {
      const fs = await statfs(this.o.dataDir);
      out.set('data_dir_free_bytes', fs.bavail * fs.bsize);
      out.set('data_dir_size_bytes', fs.blocks * fs.bsize);
    } catch (e) {
      this.failed('statfs', e);
    }
    out.set('metrics_collect_failures_total', [...this.failures].map(([part, value]) => ({ labels: { part }, value })));
    out.set('metrics_series_dropped_total', this.seriesDropped);
    return out;
  }

  private guard(part: string, fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.failed(part, e);
    }
  }

  private failed(part: string, e: unknown): void {
    this.failures.set(part, (this.failures.get(part) ?? 0) + 1);
    this.limiter.warn(`collect:${part}`, { part, err: (e as Error)?.message }, 'metrics: a part could not report its values (left out of this scrape)');
  }

  private collectCore(out: Collected): void {
    const gw = this.o.gateway;
    out.set('build_info', [{ labels: { version: packageVersion() }, value: 1 }]);
    if (this.o.health) out.set('ready', this.o.health.readiness().ok ? 1 : 0);

    // sources and devices, labelled with the feature that built them
    const online: ScalarSample[] = [];
    const readings: ScalarSample[] = [];
    const polls: ScalarSample[] = [];
    const timeouts: ScalarSample[] = [];
    const dropped: ScalarSample[] = [];
    const noise: ScalarSample[] = [];
    const links: Record<string, ScalarSample[]> = { link_online: [], link_opens_total: [], link_open_failures_total: [], link_disconnects_total: [] };
    let nOnline = 0;
    let nDevices = 0;
    for (const [feature, parts] of gw.features) {
      for (const s of parts.sources ?? []) {
        const source = s.name.startsWith('source:') ? s.name.slice('source:'.length) : s.name;
        const l = { feature, source };
        const st = s.stats;
        readings.push({ labels: l, value: st.readings });
        polls.push({ labels: l, value: st.polls });
        timeouts.push({ labels: l, value: st.timeouts });
        noise.push({ labels: l, value: st.noiseBytes });
        dropped.push(
          { labels: { ...l, reason: 'crc' }, value: st.crcErrors },
          { labels: { ...l, reason: 'invalid' }, value: st.invalidFrames },
          { labels: { ...l, reason: 'device_error' }, value: st.deviceErrors },
          { labels: { ...l, reason: 'late' }, value: st.lateAnswers },
        );
        for (const d of s.devices) {
          const up = s.isOnline(d);
          nDevices++;
          if (up) nOnline++;
          online.push({ labels: { feature, device: d }, value: up ? 1 : 0 });
        }
      }
      for (const svc of parts.services ?? []) {
        if (!(svc instanceof ReconnectingLink)) continue;
        const l = { feature, link: svc.name };
        links.link_online!.push({ labels: l, value: svc.online ? 1 : 0 });
        links.link_opens_total!.push({ labels: l, value: svc.stats.opens });
        links.link_open_failures_total!.push({ labels: l, value: svc.stats.openFailures });
        links.link_disconnects_total!.push({ labels: l, value: svc.stats.disconnects });
      }
    }
    out.set('devices_configured', nDevices);
    out.set('devices_online', nOnline);
    out.set('device_online', online);
    out.set('source_readings_total', readings);
    out.set('source_polls_total', polls);
    out.set('source_timeouts_total', timeouts);
    out.set('source_frames_dropped_total', dropped);
    out.set('source_noise_bytes_total', noise);
    for (const [k, v] of Object.entries(links)) out.set(k, v);
    out.set('device_transitions_total', gw.devices.stats().transitions);

    // store
    const ss = gw.store.stats();
    out.set('store_batches_total', ss.batches);
    out.set('store_failed_batches_total', ss.failedBatches);
    out.set('store_pending_writes', ss.pendingOps);
    // every declared kind has a series from the start (0), so rate() sees its first event
    const appended = new Map<string, number>(gw.kinds.list().map((k) => [k.kind, 0]));
    for (const [kind, n] of gw.store.appendedByKind()) appended.set(kind, n);
    out.set('outbox_events_total', [...appended].map(([kind, value]) => ({ labels: { kind }, value })));

    // bus
    const b = gw.bus.stats();
    out.set('mqtt_clients', b.connections);
    out.set('mqtt_connections_total', b.connectionsTotal);
    out.set('mqtt_connections_refused_total', byLabel('reason', {
      listener_full: b.connectionsRejected,
      per_address: b.connectionsRefusedAddress,
      unauthenticated_limit: b.connectionsRefusedUnauthenticated,
      per_user: b.connectionsRefusedUser,
      global_limit: b.connectionsRefusedGlobal,
      locked_out: b.lockedOutRefusals,
      anonymous: b.anonymousRefused,
      protocol: b.protocolRefused,
    }));
    out.set('mqtt_auth_failures_total', b.authFailures);
    out.set('mqtt_messages_received_total', b.messagesIn);
    out.set('mqtt_messages_delivered_total', b.messagesOut);
    out.set('mqtt_gateway_publishes_total', b.gatewayPublishes);
    out.set('mqtt_denied_total', byLabel('action', {
      publish: b.deniedPublishes,
      subscribe: b.deniedSubscribes,
    }));
    out.set('mqtt_slow_consumer_drops_total', b.slowConsumerDrops);
    out.set('mqtt_slow_consumer_disconnects_total', b.slowConsumerDisconnects);
    out.set('mqtt_session_queue_dropped_total', b.sessions.sessionQueueDropped);

    // HTTP server
    const h = gw.http.stats();
    out.set('http_requests_total', h.requests);
    out.set('http_errors_total', byLabel('class', {
      '4xx': h.errors4xx,
      '5xx': h.errors5xx,
    }));
    out.set('http_refused_total', byLabel('reason', {
      no_credentials: h.authMissing,
      bad_credentials: h.authRefused,
      locked_out: h.lockedOut,
      forbidden: h.forbidden,
    }));
    out.set('http_event_streams', h.streamsOpen);
    out.set('http_event_streams_refused_total', h.streamsRefused);
    out.set('http_stream_events_dropped_total', h.streamEventsDropped);
    out.set('http_sessions', h.sessions);

    // sync (its status reads SQLite: only while the store is open)
    const sync = gw.sync.stats();
    out.set('outbox_buffer_max_bytes', sync.buffer.max_bytes);
    out.set('outbox_over_limit', sync.buffer.over_limit ? 1 : 0);
    out.set('outbox_removed_events_total', [
      ...Object.entries(sync.buffer.compacted_by_kind).map(([kind, value]) => ({ labels: { kind, policy: 'compacted' }, value })),
      ...Object.entries(sync.buffer.dropped_by_kind).map(([kind, value]) => ({ labels: { kind, policy: 'dropped' }, value })),
    ]);
    out.set('sync_uploaded_events_total', sync.uploaded);
    out.set('sync_duplicate_events_total', sync.duplicates);
    out.set('sync_batches_total', sync.batches);
    out.set('sync_batch_failures_total', sync.batchFailures);
    out.set('sync_price_versions_applied_total', sync.pricesApplied);
    out.set('sync_slot_assignments_applied_total', sync.slotsApplied);
    out.set('sync_feed_pages_applied_total', sync.pagesApplied);
    out.set('sync_latency_seconds', gw.sync.latency.snapshot());
    if (gw.store.isOpen) {
      const st = gw.sync.status();
      out.set('sync_connected', st.connected ? 1 : 0);
      if (st.last_success) out.set('sync_last_success_timestamp_seconds', Date.parse(st.last_success) / 1000);
      out.set('sync_parked_events_total', st.parked);
      out.set('sync_pending_acks', st.pending_acks);
      out.set('outbox_backlog_events', st.backlog_count);
      out.set('outbox_backlog_bytes', st.backlog_bytes);
      out.set('outbox_oldest_event_age_seconds', st.oldest_event_age_s ?? 0);
    }
  }

  // ------------------------------------------------------------------ formatting

  /** A prom-client metric object whose values are this scrape's collected ones. */
  private metricObject(name: string, decl: MetricDecl): { name: string; help: string; type: string; get(): Promise<object> } {
    const full = METRIC_PREFIX + name;
    return {
      name: full,
      help: decl.help,
      type: decl.type,
      get: async () => ({ name: full, help: decl.help, type: decl.type, aggregator: 'sum', values: this.values(full, decl, this.current.get(name)) }),
    };
  }

  private values(full: string, decl: MetricDecl, v: MetricValues[string] | undefined): PromValue[] {
    if (v === undefined) return [];
    const declared = decl.labels ?? [];
    const out: PromValue[] = [];
    const samples = typeof v === 'number' || !Array.isArray(v) ? [isHistogram(v) ? { histogram: v } : { value: v as number }] : (v as Array<ScalarSample | { labels?: Record<string, string>; histogram: HistogramSnapshot }>);
    let series = 0;
    for (const s of samples) {
      if (series >= MAX_SERIES_PER_METRIC) {
        this.seriesDropped++;
        this.limiter.warn(`series:${full}`, { metric: full, bound: MAX_SERIES_PER_METRIC }, 'metrics: too many series for one metric; the rest are left out');
        continue;
      }
      const labels: Record<string, string> = {};
      for (const l of declared) labels[l] = String(s.labels?.[l] ?? '');
      series++;
      if (decl.type === 'histogram') {
        if (!('histogram' in s)) {
          this.mismatch(full, decl);
          continue;
        }
        const h = s.histogram;
        let cum = 0;
        h.buckets.forEach((le, i) => {
          cum += h.counts[i] ?? 0;
          out.push({ metricName: `${full}_bucket`, labels: { ...labels, le }, value: cum });
        });
        out.push({ metricName: `${full}_bucket`, labels: { ...labels, le: '+Inf' }, value: h.count });
        out.push({ metricName: `${full}_sum`, labels, value: h.sum });
        out.push({ metricName: `${full}_count`, labels, value: h.count });
      } else if ('value' in s && typeof s.value === 'number') {
        out.push({ labels, value: s.value });
      } else {
        this.mismatch(full, decl);
      }
    }
    return out;
  }

  /** A value of the wrong shape for its declared type (a histogram for a gauge...): left out, counted, logged. */
  private mismatch(full: string, decl: MetricDecl): void {
    const owner = this.entries.get(decl.name)?.owner || 'core';
    this.failures.set(owner, (this.failures.get(owner) ?? 0) + 1);
    this.limiter.warn(`shape:${full}`, { metric: full, type: decl.type, part: owner }, 'metrics: a value does not fit its declared type (left out)');
  }
}

function isHistogram(v: unknown): v is HistogramSnapshot {
  return typeof v === 'object' && v !== null && Array.isArray((v as HistogramSnapshot).buckets) && Array.isArray((v as HistogramSnapshot).counts);
}
