/**
 * The typed in-process event flow (after Zigbee2MQTT's lib/eventBus.ts): one map of event names
 * to argument tuples, every listener registered under an owner, and `removeOwner(owner)` on stop.
 * Features never call each other; they talk through this bus. The local MQTT bus is for clients
 * outside the process: a shelf-label driver or a kiosk lookup reads prices from here, not from
 * its own broker.
 *
 * The core declares the events it emits itself. A feature adds its own by declaration merging,
 * so the core names no feature:
 *
 *   declare module '../../core/events' {
 *     interface GatewayEvents { tagArrived: [TagArrival] }
 *   }
 *
 * Emitting is synchronous, in registration order. A listener that throws is logged (rate-limited)
 * and the others still run: one feature's bug must not cut another feature's data path.
 */
import { LogLimiter, type Logger } from '../log';
import type { DeviceAvailability } from './sources/types';

/** A stock observation of one location, as committed to SQLite (what the outbox and the bus carry). */
export interface StockCommitted {
  /** `shelf/slot` for a shelf slot; other location kinds name themselves the same way. */
  locationId: string;
  gtin: string | null;
  count: number | null;
  condition: string;
  /** Which feature observed it (`weight`, `rfid`, ...). */
  observedBy: string;
  /** Outbox seq and event id of the event that carried the change. */
  seq: number;
  eventId: string;
  /** ms epoch of the observation. */
  ts: number;
}

/** A price that passed the version rule and is committed (sync/prices.ts). */
export interface PriceApplied {
  gtin: string;
  /** Minor units. */
  price: number;
  currency: string;
  promotion: unknown;
  version: number;
  changeId: string;
  appliedAt: number;
}

/** A location's product assignment changed (central's slot assignment, or a technician). */
export interface AssignmentChanged {
  locationId: string;
  shelfId: string;
  slotId: string;
  gtin: string | null;
  unitWeightG: number | null;
  by: string;
  /**
   * Fields of the assignment the core does not interpret, handed on for the features that do
   * (present only when the assignment carried some). For central's slot assignment: every field of
   * the change except the contract's own (change_id, type, store_id, shelf, slot, gtin,
   * unit_weight_g, version, published_at, cursor), e.g. `labels` (docs/central-api.yaml
   * SlotAssignment). Not stored by the core: a feature that needs them after a restart keeps them.
   */
  attributes?: Readonly<Record<string, unknown>>;
}

/** Events the core emits. Features extend this interface (see above). */
export interface GatewayEvents {
  /** A device came online or went offline (committed to the device registry first). */
  availability: [DeviceAvailability];
  stockCommitted: [StockCommitted];
  priceApplied: [PriceApplied];
  assignmentChanged: [AssignmentChanged];
}

type Listener<K extends keyof GatewayEvents> = (...args: GatewayEvents[K]) => void;

interface Entry {
  owner: object;
  fn: (...args: unknown[]) => void;
}

export class EventBus {
  private readonly listeners = new Map<keyof GatewayEvents, Entry[]>();
  private readonly limiter: LogLimiter;

  constructor(log: Logger) {
    this.limiter = new LogLimiter(log);
  }

  on<K extends keyof GatewayEvents>(owner: object, event: K, fn: Listener<K>): void {
    const list = this.listeners.get(event);
    const entry = { owner, fn: fn as (...args: unknown[]) => void };
    // Copy on write: an emit in progress keeps iterating the list it started with.
    this.listeners.set(event, list ? [...list, entry] : [entry]);
  }

  emit<K extends keyof GatewayEvents>(event: K, ...args: GatewayEvents[K]): void {
    const list = this.listeners.get(event);
    if (!list) return;
    for (let i = 0; i < list.length; i++) {
      try {
        list[i]!.fn(...args);
      } catch (e) {
        this.limiter.error(`listener:${String(event)}`, { event, err: (e as Error)?.message }, 'event listener failed');
      }
    }
  }

  /** Removes every listener `owner` registered (a service calls this in stop()). */
  removeOwner(owner: object): void {
    for (const [event, list] of this.listeners) {
      const kept = list.filter((e) => e.owner !== owner);
      if (kept.length === 0) this.listeners.delete(event);
      else if (kept.length !== list.length) this.listeners.set(event, kept);
    }
  }

  /** Listeners registered for `event` (tests check that stop() removed them all). */
  listenerCount(event?: keyof GatewayEvents): number {
    if (event !== undefined) return this.listeners.get(event)?.length ?? 0;
    let n = 0;
    for (const l of this.listeners.values()) n += l.length;
    return n;
  }
}
