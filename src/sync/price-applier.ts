/**
 * Price changes: applied per GTIN with the version rule, stored by the sync repository, then
 * handed to in-process consumers (`priceApplied`: shelf labels, kiosk lookups) and published
 * retained on `price/<gtin>` (never with a version lower than or equal to one this process
 * published already). At start every stored price is published again (last known state after a
 * broker restart).
 */
import * as topics from '../bus/topics';
import type { PublishOptions } from '../bus/broker';
import type { EventBus } from '../core/events';
import { LogLimiter, type Logger } from '../log';
import type { ChangeApplier } from './appliers';
import { priceMessage, validatePrice, type PriceChangeIn, type StoredPrice } from './prices';
import type { SyncRepository } from './repository';

export interface PriceApplierOptions {
  storeId: string;
  repo: SyncRepository;
  bus: { publish(topic: string, payload: string | Buffer, opts?: PublishOptions): Promise<void> };
  events: Pick<EventBus, 'emit'>;
  log: Logger;
}

export class PriceApplier implements ChangeApplier<PriceChangeIn> {
  readonly type = 'price';
  private readonly limiter: LogLimiter;
  private readonly published = new Map<string, number>();

  constructor(private readonly o: PriceApplierOptions) {
    this.limiter = new LogLimiter(o.log);
  }

  validate(o: Record<string, unknown>, changeId: string, version: number) {
    return validatePrice(o, changeId, version);
  }

  key(c: PriceChangeIn): string {
    return c.gtin;
  }

  current(c: PriceChangeIn): { version: number; changeId: string; appliedAt: number } | null {
    const p = this.o.repo.price(c.gtin);
    return p ? { version: p.version, changeId: p.changeId, appliedAt: p.appliedAt } : null;
  }

  apply(tx: SyncRepository, changes: PriceChangeIn[], appliedAt: number): PriceChangeIn[] {
    return changes.filter((c) => tx.putPriceIfNewer(stored(c, appliedAt)));
  }

  async committed(written: PriceChangeIn[], appliedAt: number): Promise<void> {
    for (const c of written) await this.publish(stored(c, appliedAt));
  }

  async start(): Promise<void> {
    let n = 0;
    for (const p of this.o.repo.prices()) {
      await this.publish(p);
      n++;
    }
    if (n > 0) this.o.log.info({ prices: n }, 'stored prices republished');
  }

  /**
   * Hands a committed price to in-process consumers (`priceApplied`) and publishes it retained for
   * clients outside, unless an equal or newer version went out already.
   */
  private async publish(p: StoredPrice): Promise<void> {
    if ((this.published.get(p.gtin) ?? 0) >= p.version) return;
    this.published.set(p.gtin, p.version);
    this.o.events.emit('priceApplied', { gtin: p.gtin, price: p.price, currency: p.currency, promotion: p.promotion, version: p.version, changeId: p.changeId, appliedAt: p.appliedAt });
    let topic: string;
    try {
      topic = topics.price(this.o.storeId, p.gtin);
    } catch (e) {
      this.limiter.warn('price-topic', { gtin: p.gtin, err: (e as Error).message }, 'price cannot be published: invalid topic');
      return;
    }
    try {
      await this.o.bus.publish(topic, JSON.stringify(priceMessage(p)), { retain: true, qos: 1 });
    } catch (e) {
      this.limiter.warn('price-publish', { gtin: p.gtin, err: (e as Error).message }, 'price could not be published on the local bus');
    }
  }
}

function stored(c: PriceChangeIn, appliedAt: number): StoredPrice {
  return { gtin: c.gtin, price: c.price, currency: c.currency, promotion: c.promotion, version: c.version, changeId: c.changeId, appliedAt };
}
