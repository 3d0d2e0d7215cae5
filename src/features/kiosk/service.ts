/**
 * The kiosk lookup service: answers product lookups from the in-memory ProductIndex (lookup.ts)
 * and keeps what each configured kiosk shows.
 *
 * - A lookup (`product.lookup` over MQTT, `GET /api/v1/lookup/<code>` over HTTP) normalises the
 *   code to GTIN-14 (src/util/gtin.ts normalizeGtin; a bad length or check digit is REQUEST_INVALID) and
 *   answers found or not found (an unknown product is an answer, not an error).
 * - A scan (`barcodeScanned` from the scanners feature) on a scanner bound to a kiosk, or a lookup
 *   asked for a kiosk (the page's manual entry), is SHOWN on that kiosk: published on
 *   `kiosk/<id>/lookup` and sent to the kiosk's open pages (server-sent events).
 * - While a kiosk shows a product, a new price of that product (`priceApplied`) is shown at once
 *   (same topic, same event), so the page never shows a price the shelf label no longer shows.
 *
 * Design choice: `kiosk/<id>/lookup` is NOT retained. An answer belongs to one shopper's scan; a
 * retained one would greet the next MQTT client (a kiosk app restarting an hour later) with a
 * stranger's product. A page that (re)connects gets what its kiosk shows now from memory, and only
 * while it is recent (`show_s`). Live prices for any product stay on the retained `price/<gtin>`.
 *
 * State: one entry per configured kiosk (what it shows, its open pages); nothing keyed by outside
 * input. The pages themselves are bounded by the HTTP server's `max_event_streams`.
 */
import type { BarcodeScanned } from '../scanners/events';
import type { EventBus } from '../../core/events';
import { normalizeGtin } from '../../util/gtin';
import type { EventStream } from '../../http/server';
import { Histogram, type MetricDecl, type MetricValues } from '../../core/metrics';
import { ErrorCode, ShelfgateError } from '../../errors';
import type { Service } from '../../lifecycle';
import { LogLimiter, type Logger } from '../../log';
import * as topics from '../../bus/topics';
import { noGtinAnswer, type LookupAnswer, type ProductIndex } from './lookup';

/** The kiosk feature's Prometheus metrics (docs/operations.md). Labels come from fixed sets only. */
export const KIOSK_METRICS: readonly MetricDecl[] = [
  { name: 'kiosk_lookups_total', help: 'Product lookups (MQTT, HTTP, scans) by result: found, not_found, invalid (not a GTIN with a valid check digit).', type: 'counter', labels: ['result'] },
  { name: 'kiosk_lookup_duration_seconds', help: 'Time to answer a lookup from the in-memory index (without the transport).', type: 'histogram' },
  { name: 'kiosk_scans_total', help: 'Barcode scans seen by result: shown (on a configured kiosk), unbound (scanner bound to no kiosk), unknown_kiosk.', type: 'counter', labels: ['result'] },
  { name: 'kiosk_shows_total', help: 'Answers shown on a kiosk (topic and page): scans, lookups for a kiosk, price refreshes.', type: 'counter' },
  { name: 'kiosk_price_refreshes_total', help: 'New prices of a product a kiosk was showing, shown at once.', type: 'counter' },
  { name: 'kiosk_publish_failures_total', help: 'Kiosk answers that could not be published on the local bus.', type: 'counter' },
  { name: 'kiosk_pages', help: 'Price-checker pages connected now (event streams).', type: 'gauge' },
];

export interface KioskConfig {
  id: string;
  name?: string | undefined;
}

export interface KioskServiceOptions {
  storeId: string;
  kiosks: readonly KioskConfig[];
  /** How long a shown answer stays on a kiosk (and is replayed to a page that connects), seconds. */
  showS: number;
  index: ProductIndex;
  events: EventBus;
  bus: { publish(topic: string, payload: string, opts?: { qos?: 0 | 1; retain?: boolean }): Promise<void> };
  log: Logger;
  now?: () => number;
}

/** What a kiosk's page and topic get. */
export interface KioskShow {
  kiosk: string;
  /** Why: a scan, a lookup asked for this kiosk, or a new price of the product shown. */
  reason: 'scan' | 'lookup' | 'price';
  scanner?: string;
  answer: LookupAnswer;
  /** RFC 3339. */
  at: string;
}

interface KioskState {
  cfg: KioskConfig;
  shown: KioskShow | null;
  shownAt: number;
  pages: Set<EventStream>;
}

export class KioskService implements Service {
  readonly name = 'kiosk';
  private readonly kiosks = new Map<string, KioskState>();
  private readonly limiter: LogLimiter;
  private readonly now: () => number;
  readonly counters = {
    lookups: 0,
    lookupsNotFound: 0,
    lookupsInvalid: 0,
    scans: 0,
    scansUnbound: 0,
    scansUnknownKiosk: 0,
    shows: 0,
    priceRefreshes: 0,
    publishFailures: 0,
  };

  /** Time to answer a lookup (HTTP, MQTT or a scan), seconds: the index's work, not the transport's. */
  private readonly durations = new Histogram([0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1]);

  constructor(private readonly o: KioskServiceOptions) {
    this.limiter = new LogLimiter(o.log);
    this.now = o.now ?? Date.now;
    for (const k of o.kiosks) this.kiosks.set(k.id, { cfg: k, shown: null, shownAt: 0, pages: new Set() });
  }

  async start(): Promise<void> {
    this.o.index.load();
    const ev = this.o.events;
    ev.on(this, 'priceApplied', (p) => {
      this.o.index.onPrice(p);
      this.refreshPrice(p.gtin);
    });
    ev.on(this, 'assignmentChanged', (a) => this.o.index.onAssignment(a));
    ev.on(this, 'stockCommitted', (s) => this.o.index.onStock(s));
    ev.on(this, 'productChanged', (p) => this.o.index.onProduct(p));
    ev.on(this, 'barcodeScanned', (s) => this.onScan(s));
    this.o.log.info({ kiosks: this.kiosks.size, ...this.o.index.sizes() }, 'kiosk lookups ready');
  }

  async stop(): Promise<void> {
    this.o.events.removeOwner(this);
    for (const k of this.kiosks.values()) {
      for (const p of [...k.pages]) p.close();
      k.pages.clear();
      k.shown = null;
    }
  }

  /** The kiosk's config, or undefined. */
  kiosk(id: string): KioskConfig | undefined {
    return this.kiosks.get(id)?.cfg;
  }

  /** Answers a lookup of `code`. Throws REQUEST_INVALID for a code that is not a GTIN with a valid check digit. */
  lookup(code: string): LookupAnswer {
    this.counters.lookups++;
    const c = code.trim();
    const gtin = normalizeGtin(c);
    if (gtin === null) {
      this.counters.lookupsInvalid++;
      throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `${JSON.stringify(c.slice(0, 64))} is not a GTIN, EAN-8, EAN-13 or UPC-A with a valid check digit`);
    }
    const t0 = performance.now();
    const a = this.o.index.lookup(gtin, c);
    this.durations.observe((performance.now() - t0) / 1000);
    if (!a.found) this.counters.lookupsNotFound++;
    return a;
  }

  /** Looks up `code` and shows the answer on kiosk `kioskId` (NOT_FOUND for an unknown kiosk). */
  lookupFor(kioskId: string, code: string): LookupAnswer {
    const k = this.kiosks.get(kioskId);
    if (!k) throw new ShelfgateError(ErrorCode.NOT_FOUND, `no kiosk ${JSON.stringify(kioskId.slice(0, 64))} is configured`);
    const a = this.lookup(code);
    this.show(k, { kiosk: k.cfg.id, reason: 'lookup', answer: a, at: new Date(this.now()).toISOString() });
    return a;
  }

  /** Attaches a page's event stream to a kiosk: it gets what the kiosk shows now (if recent) and every later show. */
  attachPage(kioskId: string, stream: EventStream): void {
    const k = this.kiosks.get(kioskId);
    if (!k) {
      stream.close();
      return;
    }
    k.pages.add(stream);
    stream.onClose(() => k.pages.delete(stream));
    stream.send('hello', { kiosk: k.cfg.id, name: k.cfg.name ?? null, show_s: this.o.showS });
    const current = this.current(k);
    if (current) stream.send('lookup', current);
  }

  status(): Record<string, unknown> {
    return {
      kiosks: [...this.kiosks.values()].map((k) => ({ id: k.cfg.id, pages: k.pages.size, showing: this.current(k)?.answer.gtin ?? null })),
      ...this.o.index.sizes(),
    };
  }

  metrics(): Record<string, number> {
    let pages = 0;
    for (const k of this.kiosks.values()) pages += k.pages.size;
    return { ...this.counters, pages };
  }

  /** The declared metrics' values (KIOSK_METRICS), at scrape time. */
  collectMetrics(): MetricValues {
    const c = this.counters;
    const m = this.metrics();
    return {
      kiosk_lookups_total: [
        { labels: { result: 'found' }, value: c.lookups - c.lookupsNotFound - c.lookupsInvalid },
        { labels: { result: 'not_found' }, value: c.lookupsNotFound },
        { labels: { result: 'invalid' }, value: c.lookupsInvalid },
      ],
      kiosk_lookup_duration_seconds: this.durations.snapshot(),
      kiosk_scans_total: [
        { labels: { result: 'shown' }, value: c.scans - c.scansUnbound - c.scansUnknownKiosk },
        { labels: { result: 'unbound' }, value: c.scansUnbound },
        { labels: { result: 'unknown_kiosk' }, value: c.scansUnknownKiosk },
      ],
      kiosk_shows_total: c.shows,
      kiosk_price_refreshes_total: c.priceRefreshes,
      kiosk_publish_failures_total: c.publishFailures,
      kiosk_pages: m.pages!,
    };
  }

  // ---- internals ----

  private current(k: KioskState): KioskShow | null {
    return k.shown && this.now() - k.shownAt < this.o.showS * 1000 ? k.shown : null;
  }

  private onScan(s: BarcodeScanned): void {
    this.counters.scans++;
    if (s.kioskId === null) {
      this.counters.scansUnbound++;
      return;
    }
    const k = this.kiosks.get(s.kioskId);
    if (!k) {
      this.counters.scansUnknownKiosk++;
      this.limiter.warn(`scan-kiosk:${s.scannerId}`, { scanner: s.scannerId, kiosk: s.kioskId }, 'scan for a kiosk that is not configured (kiosks[]): not shown');
      return;
    }
    this.counters.lookups++;
    const t0 = performance.now();
    const answer = s.gtin !== null ? this.o.index.lookup(s.gtin, s.raw) : noGtinAnswer(s.raw);
    this.durations.observe((performance.now() - t0) / 1000);
    if (!answer.found) this.counters.lookupsNotFound++;
    this.show(k, { kiosk: k.cfg.id, reason: 'scan', scanner: s.scannerId, answer, at: new Date(s.ts).toISOString() });
  }

  /** A new price of a product a kiosk shows now: show the new answer. */
  private refreshPrice(gtin: string): void {
    for (const k of this.kiosks.values()) {
      const cur = this.current(k);
      if (!cur || cur.answer.gtin !== gtin) continue;
      this.counters.priceRefreshes++;
      const answer = this.o.index.lookup(gtin, cur.answer.code);
      // the shopper's moment keeps its start: a price change does not extend how long it is shown
      const shownAt = k.shownAt;
      this.show(k, { ...cur, reason: 'price', answer, at: new Date(this.now()).toISOString() });
      k.shownAt = shownAt;
    }
  }

  private show(k: KioskState, show: KioskShow): void {
    this.counters.shows++;
    k.shown = show;
    k.shownAt = this.now();
    for (const p of k.pages) p.send('lookup', show);
    let topic: string;
    try {
      topic = topics.featureTopic(this.o.storeId, 'kiosk', k.cfg.id, 'lookup');
    } catch (e) {
      this.counters.publishFailures++;
      this.limiter.warn(`topic:${k.cfg.id}`, { kiosk: k.cfg.id, err: (e as Error).message }, 'kiosk answer cannot be published: invalid topic');
      return;
    }
    this.o.bus.publish(topic, JSON.stringify(show), { qos: 1, retain: false }).catch((e: Error) => {
      this.counters.publishFailures++;
      this.limiter.warn(`publish:${k.cfg.id}`, { kiosk: k.cfg.id, err: e.message }, 'kiosk answer could not be published');
    });
  }
}
