/**
 * The device registry: every source's availability, whatever the feature. A transition is
 * committed to SQLite first, then published retained on `device/<id>/availability` and emitted as
 * `availability` on the event bus (the feature that owns the device reacts there, e.g. a slot
 * whose scale went offline). At start the last known state of every device is republished,
 * marked `last_known`, until the device reports again.
 */
import type { LocalBus } from '../bus/broker';
import * as topics from '../bus/topics';
import type { Service } from '../lifecycle';
import { LogLimiter, type Logger } from '../log';
import type { Store } from '../store/store';
import type { EventBus } from './events';
import type { DeviceAvailability, Source } from './sources/types';

export interface DeviceInfo {
  /** Protocol or device kind, e.g. `modbus-rtu`, `mt-sics`, `llrp`. */
  kind: string;
  model: string;
  /** Where it is reached (`/dev/serial/by-id/...`, `tcp://...`). */
  path: string;
}

export interface DeviceRegistryOptions {
  storeId: string;
  store: Store;
  bus: Pick<LocalBus, 'publish'>;
  events: EventBus;
  log: Logger;
}

export class DeviceRegistry implements Service {
  readonly name = 'devices';
  private readonly tracked: Array<{ source: Source; info: (sensor: string) => DeviceInfo }> = [];
  private readonly limiter: LogLimiter;
  private readonly inflight = new Set<Promise<void>>();
  private readonly onAvailability = (a: DeviceAvailability, info: DeviceInfo): void => this.report(a, info);
  private readonly handlers = new Map<Source, (a: DeviceAvailability) => void>();
  /** Per device: the tail of its commit-then-publish chain, so its transitions reach the bus in order. */
  private readonly tails = new Map<string, Promise<void>>();
  private readonly counters = { transitions: 0, persistFailures: 0 };

  constructor(private readonly o: DeviceRegistryOptions) {
    this.limiter = new LogLimiter(o.log);
  }

  /** Registers a source before start(): its availability reports reach the registry. */
  track(source: Source, info: (sensor: string) => DeviceInfo): void {
    this.tracked.push({ source, info });
  }

  async start(): Promise<void> {
    const { store, storeId } = this.o;
    for (const d of store.loadDevices())
      await this.publish(topics.deviceAvailability(storeId, d.id), { state: d.online ? 'online' : 'offline', reason: d.reason ?? undefined, since: new Date(d.updatedAt ?? Date.now()).toISOString(), last_known: true });
    for (const { source, info } of this.tracked) {
      const h = (a: DeviceAvailability): void => this.onAvailability(a, info(a.sensor));
      this.handlers.set(source, h);
      source.on('availability', h);
    }
  }

  async stop(): Promise<void> {
    for (const [source, h] of this.handlers) source.off('availability', h);
    this.handlers.clear();
    await Promise.allSettled([...this.inflight]);
  }

  stats(): { transitions: number; persistFailures: number } {
    return { ...this.counters };
  }

  private report(a: DeviceAvailability, info: DeviceInfo): void {
    this.counters.transitions++;
    const body = { state: a.online ? 'online' : 'offline', reason: a.reason, since: new Date(a.ts).toISOString() };
    const committed = this.o.store.setDeviceState({ id: a.sensor, kind: info.kind, model: info.model, path: info.path, online: a.online, reason: a.reason, ts: a.ts });
    const prev = this.tails.get(a.sensor) ?? Promise.resolve();
    const p: Promise<void> = Promise.all([committed, prev])
      .then(async () => {
        this.o.events.emit('availability', a);
        await this.publish(topics.deviceAvailability(this.o.storeId, a.sensor), body);
      })
      .catch((e: Error) => {
        this.counters.persistFailures++;
        this.limiter.error(`persist:${a.sensor}`, { device: a.sensor, err: e.message }, 'could not persist device availability: not published');
      })
      .finally(() => {
        this.inflight.delete(p);
        if (this.tails.get(a.sensor) === p) this.tails.delete(a.sensor);
      });
    this.tails.set(a.sensor, p);
    this.inflight.add(p);
  }

  private publish(topic: string, body: object): Promise<void> {
    return this.o.bus.publish(topic, JSON.stringify(body), { retain: true, qos: 1 }).catch((e: Error) => {
      this.limiter.warn(`publish:${topic}`, { topic, err: e.message }, 'publish failed');
    });
  }
}
