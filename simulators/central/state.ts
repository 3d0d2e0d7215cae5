/** What the reference central reports about itself (its status page and `stats()`). */
import type { Faults } from './faults';
import type { ReceivedEvent, StoreStats, StoredAck } from './store';
import type { FeedChange } from './types';

export interface CentralStats {
  stores: Record<string, StoreStats>;
  totals: { events: number; duplicates: number; rejected: number; batches: number; retried_batches: number; out_of_order_devices: number };
  changes: { price: number; slot: number; product: number; other: number; head: number };
  requests: {
    total: number;
    by_route: Record<string, number>;
    by_status: Record<string, number>;
    faults_injected: {
      status5xx: number;
      status429: number;
      timeout: number;
      drop_connection: number;
      lost_response: number;
      slowed: number;
      feed_duplicates: number;
      feed_reordered_pages: number;
    };
  };
  connections: { open: number; long_polls: number; sse: number };
}

export interface SimState {
  url: string;
  stats: CentralStats;
  faults: Faults;
  lastEvents: (ReceivedEvent & { store_id: string })[];
  lastChanges: FeedChange[];
  lastAcks: (StoredAck & { store_id: string })[];
}

