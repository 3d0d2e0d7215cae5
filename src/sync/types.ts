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

/**
 * What an upload resolves with: one result per event, and (a non-enumerable property of the list)
 * central's `contiguous_seq` for the batch's epoch when it sent one.
 */
export type UploadResults = UploadResult[] & { contiguousSeq?: number };

/**
 * A change from central's feed (docs/central-api.yaml `Change`): a price or a slot assignment as
 * the transport typed them, or anything else it could not type (`UnknownChange`).
 */
export type Change = KnownChange | UnknownChange;

/**
 * A change of a type this gateway does not know, or a known type whose fields do not fit: handed
 * on as it came, so the sync service acknowledges it `invalid` instead of failing its whole page.
 */
export interface UnknownChange {
  change_id: string;
  type: string;
  cursor?: string;
  [field: string]: unknown;
}

/** A price or a slot assignment that fits its schema (src/sync/wire.ts). */
export type KnownChange =
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

/** The MQTT bridge's marker after a replay (docs/central-mqtt.md). */
export interface SyncDoneMarker {
  type: 'sync_done';
  sync_id: string;
  next_cursor?: string;
  /** The replay could not be served (invalid_cursor 400, cursor_expired 410): the gateway resyncs from null. */
  error?: { status: number; code: string; detail?: string };
}

export interface ChangeAck {
  change_id: string;
  status: 'applied' | 'stale' | 'invalid';
  applied_at: string;
  detail?: string;
}

/**
 * An upstream transport. Errors: reject with a SyncTransportError (src/sync/failure.ts) whose
 * `failure` says what the sync service should do: retryable (network, timeout, 5xx, 429, an answer
 * over MAX_ANSWER_BYTES; honour `retryAfterMs` when set), too_large, invalid_request, fatal (401,
 * 403, TLS, a redirect, a contract violation) or cursor_lost; `failureOf(e)` reads it. STOPPED
 * after stop() or an aborted signal.
 */
export interface SyncTransport extends Service {
  /** Uploads one batch; resolves with one result per event (any order). Idempotent per batchId. */
  upload(batchId: string, events: UploadEvent[], gaps?: SeqGap[], epoch?: string): Promise<UploadResults>;
  /**
   * Changes after `cursor` (null: from the beginning), waiting up to `waitS` seconds when there are
   * none. Aborting `signal` ends the wait early (resolves with no changes or rejects STOPPED).
   */
  fetchChanges(cursor: string | null, waitS: number, signal: AbortSignal): Promise<{ changes: Change[]; nextCursor: string | null }>;
  ack(acks: ChangeAck[]): Promise<void>;
}
