/**
 * The contract between the sync service (outbox drain, change feed, version rule) and an upstream
 * transport (HTTPS REST or an MQTT bridge). Wire shapes are those of docs/central-api.yaml, so both
 * transports carry the same payloads and the sync service has one behaviour.
 */
import type { Service } from '../lifecycle';

/** One outbox event as uploaded (docs/central-api.yaml `Event`). */
export interface UploadEvent {
  event_id: string;
  seq: number;
  device_id: string;
  kind: string;
  priority: number;
  /** RFC 3339 */
  created_at: string;
  payload: Record<string, unknown>;
}

/** Seq ranges the gateway dropped (buffer full) so central can advance its contiguous seq. */
export interface SeqGap {
  from_seq: number;
  to_seq: number;
  reason: string;
}

export type UploadStatus = 'accepted' | 'duplicate' | 'rejected';

export interface UploadResult {
  event_id: string;
  seq: number;
  status: UploadStatus;
  error?: { code: string; message?: string };
}

/** A change from central's feed: a price or a slot assignment (docs/central-api.yaml `Change`). */
export type Change =
  | {
      change_id: string;
      type: 'price';
      gtin: string;
      /** integer minor units (cents) */
      price: number;
      currency: string;
      promotion?: { was_price: number; valid_from?: string; valid_to?: string } | null;
      version: number;
      cursor?: string;
    }
  | {
      change_id: string;
      type: 'slot_assignment';
      shelf: string;
      slot: string;
      gtin: string | null;
      unit_weight_g: number | null;
      version: number;
      cursor?: string;
    };

export interface ChangeAck {
  change_id: string;
  status: 'applied' | 'stale' | 'invalid';
  applied_at: string;
  detail?: string;
}

/**
 * An upstream transport. Errors: reject with a SyncTransportError (failure.ts) saying what went
 * wrong (retryable, too_large, invalid_request, fatal, cursor_lost); the sync service reads every
 * error through failureOf, which also understands the older ShelfgateError SYNC_RETRYABLE /
 * SYNC_FATAL shapes with `details.status`, `details.code`, `details.retryAfterMs`.
 */
export interface SyncTransport extends Service {
  /** Uploads one batch; resolves with one result per event (any order). Idempotent per batchId. */
  upload(batchId: string, events: UploadEvent[], gaps?: SeqGap[]): Promise<UploadResult[]>;
  /**
   * Changes after `cursor` (null: from the beginning), waiting up to `waitS` seconds when there are
   * none. Aborting `signal` ends the wait early (resolves with no changes or rejects STOPPED).
   */
  fetchChanges(cursor: string | null, waitS: number, signal: AbortSignal): Promise<{ changes: Change[]; nextCursor: string | null }>;
  ack(acks: ChangeAck[]): Promise<void>;
}
