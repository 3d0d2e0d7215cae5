/**
 * The scanners service: every valid read of every scanner becomes the in-process `barcodeScanned`
 * event (with the scanner's kiosk id; the kiosk feature looks it up) and a message on
 * `shelfgate/v1/<store>/scanners/<id>/read` (not retained, QoS 1). Misreads were already counted
 * and dropped by the source; nothing of them reaches the event or the bus.
 *
 * Design choice: a read is not stored. It is a question asked at a kiosk, answered at once; the
 * stock and prices it is answered from are already durable. So no outbox kind and no table.
 */
import type { LocalBus } from '../../bus/broker';
import * as topics from '../../bus/topics';
import { handle } from '../../core/commands';
import type { EventBus } from '../../core/events';
import type { Service } from '../../lifecycle';
import { LogLimiter, type Logger } from '../../log';
import type { ScannerConfig } from './config';
import { scannerPath } from './config';
import { scannersList } from './commands';
import type { BarcodeScanned } from './events';
import { MISREAD_REASONS, type ScannerSource, type ScanRead } from './source';

export const SCANNERS_AREA = 'scanners';

export interface ScannersServiceOptions {
  storeId: string;
  scanners: ReadonlyArray<{ config: ScannerConfig; source: ScannerSource }>;
  events: EventBus;
  bus: Pick<LocalBus, 'publish'>;
  log: Logger;
}

export class ScannersService implements Service {
  readonly name = 'scanners';
  private readonly limiter: LogLimiter;
  private readonly listeners = new Map<ScannerSource, (r: ScanRead) => void>();
  private readonly kiosks = new Map<string, string | null>();
  private readonly topicOf = new Map<string, string>();
  private readonly counters = { emitted: 0, published: 0, publishFailures: 0 };

  constructor(private readonly o: ScannersServiceOptions) {
    this.limiter = new LogLimiter(o.log);
    for (const { config } of o.scanners) {
      this.kiosks.set(config.id, config.kiosk ?? null);
      this.topicOf.set(config.id, topics.featureTopic(o.storeId, SCANNERS_AREA, config.id, 'read'));
    }
  }

  async start(): Promise<void> {
    for (const { source } of this.o.scanners) {
      if (this.listeners.has(source)) continue;
      const l = (r: ScanRead): void => this.onRead(r);
      this.listeners.set(source, l);
      source.on('reading', l);
    }
  }

  async stop(): Promise<void> {
    for (const [source, l] of this.listeners) source.off('reading', l);
    this.listeners.clear();
  }

  private onRead(r: ScanRead): void {
    const ev: BarcodeScanned = {
      scannerId: r.scanner,
      kioskId: this.kiosks.get(r.scanner) ?? null,
      raw: r.raw,
      symbology: r.symbology,
      gtin: r.gtin,
      ...(r.batch !== undefined ? { batch: r.batch } : {}),
      ...(r.expiry !== undefined ? { expiry: r.expiry } : {}),
      ...(r.serial !== undefined ? { serial: r.serial } : {}),
      ts: r.ts,
    };
    this.counters.emitted++;
    this.o.events.emit('barcodeScanned', ev);
    const body = {
      scanner_id: ev.scannerId,
      kiosk_id: ev.kioskId,
      raw: ev.raw,
      symbology: ev.symbology,
      gtin: ev.gtin,
      ...(ev.batch !== undefined ? { batch: ev.batch } : {}),
      ...(ev.expiry !== undefined ? { expiry: ev.expiry } : {}),
      ...(ev.serial !== undefined ? { serial: ev.serial } : {}),
      ts: new Date(ev.ts).toISOString(),
    };
    const topic = this.topicOf.get(r.scanner)!;
    this.o.bus.publish(topic, JSON.stringify(body), { qos: 1 }).then(
      () => void this.counters.published++,
      (e: Error) => {
        this.counters.publishFailures++;
        this.limiter.warn(`publish:${topic}`, { topic, err: e.message }, 'publish failed');
      },
    );
  }

  commandHandlers() {
    return [handle(scannersList, async () => this.list())];
  }

  list(): Array<Record<string, unknown>> {
    return this.o.scanners.map(({ config, source }) => ({
      scanner_id: config.id,
      kind: config.kind,
      path: scannerPath(config),
      kiosk_id: config.kiosk ?? null,
      online: source.isOnline(config.id),
      reads: source.stats.readings,
      misreads: source.stats.invalidFrames,
      misreads_by_reason: Object.fromEntries(Object.entries(source.counters.misreads).filter(([, n]) => n > 0)),
      not_gtin: source.counters.notGtin,
      misread_bytes: source.stats.noiseBytes,
      last_read_at: source.counters.lastReadAt === null ? null : new Date(source.counters.lastReadAt).toISOString(),
    }));
  }

  status(): Record<string, unknown> {
    return { scanners: this.o.scanners.length, online: this.o.scanners.filter(({ config, source }) => source.isOnline(config.id)).length };
  }

  metrics(): Record<string, number> {
    const m: Record<string, number> = {
      scanners_configured: this.o.scanners.length,
      scanners_online: this.o.scanners.filter(({ config, source }) => source.isOnline(config.id)).length,
      scanners_reads_total: 0,
      scanners_misreads_total: 0,
      scanners_not_gtin_total: 0,
      scanners_emitted_total: this.counters.emitted,
      scanners_published_total: this.counters.published,
      scanners_publish_failures_total: this.counters.publishFailures,
    };
    for (const reason of MISREAD_REASONS) m[`scanners_misreads_${reason}_total`] = 0;
    for (const { source } of this.o.scanners) {
      m.scanners_reads_total! += source.stats.readings;
      m.scanners_misreads_total! += source.stats.invalidFrames;
      m.scanners_not_gtin_total! += source.counters.notGtin;
      for (const reason of MISREAD_REASONS) m[`scanners_misreads_${reason}_total`]! += source.counters.misreads[reason];
    }
    return m;
  }
}
