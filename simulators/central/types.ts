/**
 * Wire types of the central inventory API (docs/central-api.yaml), with the zod schemas the
 * reference central uses to validate what stores send. The YAML is the contract; these mirror it,
 * and test/integration/central-sim.test.ts pins both to each other.
 */
import { z } from 'zod';

/** Limits a conforming central advertises (central-api.yaml: info.x-limits). */
export const LIMITS = {
  maxBatchEvents: 500,
  maxBodyBytes: 1024 * 1024,
  maxWaitSeconds: 30,
  maxFeedLimit: 500,
  defaultFeedLimit: 100,
  maxAcks: 1000,
  /** Every response body central sends is at most this (central-api.yaml: Limits). */
  maxResponseBytes: 1024 * 1024,
  /** A result echoes event_id only up to this length (else null), so results stay small. */
  maxEchoedIdLength: 128,
  /** EventError.detail and Problem.detail are cut to these lengths. */
  maxEventDetail: 500,
  maxProblemDetail: 1000,
} as const;

/** How long central remembers an Idempotency-Key with its fingerprint and response (central-api.yaml: Idempotency-Key). */
export const IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000;

/** The kinds of contract 1.3 (central-api.yaml: EventKind); label_integrity and pick_report are new in 1.3. */
export const EVENT_KINDS = ['pick', 'put', 'count', 'anomaly', 'condition', 'arrival', 'departure', 'zone_count', 'label_integrity', 'pick_report'] as const;
export type EventKind = (typeof EVENT_KINDS)[number];

export const STORE_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** 8-4-4-4-12 hex; any UUID version (central-api.yaml: Event.event_id). */
export const UUID_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
export const GTIN14_RE = /^\d{14}$/;
export const CURRENCY_RE = /^[A-Z]{3}$/;
/** A gateway database's epoch: a lower-case UUID, or "" (the legacy epoch of 1.0 gateways). */
export const EPOCH_RE = /^$|^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
export const LEGACY_EPOCH = '';

const rfc3339 = z.iso.datetime({ offset: true });

/** One stock event as uploaded (central-api.yaml: components.schemas.Event). */
export const EventSchema = z.object({
  event_id: z.string().regex(UUID_RE, 'must be a UUID'),
  seq: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  device_id: z.string().min(1).max(128),
  kind: z.string().min(1).max(32),
  priority: z.number().int().min(0).max(9),
  created_at: rfc3339,
  payload: z.record(z.string(), z.unknown()),
});
export type StockEvent = z.infer<typeof EventSchema>;

/** A seq range of the batch's epoch the gateway will never send (dropped, compacted or parked). */
export const SeqGapSchema = z.object({
  from_seq: z.number().int().min(1),
  to_seq: z.number().int().min(1),
  reason: z.enum(['dropped_buffer_full', 'compacted', 'parked']),
});
export type SeqGap = z.infer<typeof SeqGapSchema>;

/**
 * The batch envelope. `events` items are validated one by one so one bad event never fails a batch.
 * `events` may be empty when the batch declares gaps; `epoch` absent is the legacy epoch "".
 */
export const BatchEnvelopeSchema = z
  .object({
    epoch: z.string().regex(EPOCH_RE, 'must be a lower-case UUID or ""').optional(),
    events: z.array(z.unknown()).max(LIMITS.maxBatchEvents),
    gaps: z.array(SeqGapSchema).max(1000).optional(),
  })
  .refine((b) => b.events.length > 0 || (b.gaps?.length ?? 0) > 0, 'a batch needs at least one event or one gap');

export type EventStatus = 'accepted' | 'duplicate' | 'rejected';
export type EventErrorCode = 'invalid_event' | 'unknown_kind' | 'seq_conflict' | 'event_id_conflict';
export interface EventError {
  code: EventErrorCode;
  detail: string;
}
export interface EventResult {
  index: number;
  event_id: string | null;
  seq: number | null;
  status: EventStatus;
  error?: EventError;
}
export interface BatchResponse {
  batch_id: string;
  /** The batch's epoch, echoed ("" for a batch without one). */
  epoch: string;
  results: EventResult[];
  counts: { accepted: number; duplicate: number; rejected: number };
  contiguous_seq: number;
}

export interface Promotion {
  was_price: number;
  valid_from: string;
  valid_to: string;
}

export const PromotionSchema = z
  .object({ was_price: z.number().int().min(0), valid_from: rfc3339, valid_to: rfc3339 })
  .refine((p) => Date.parse(p.valid_from) < Date.parse(p.valid_to), 'valid_from must be before valid_to');

/** A price change as it appears in the feed (central-api.yaml: PriceChange). */
export interface PriceChange {
  change_id: string;
  type: 'price';
  gtin: string;
  price: number;
  currency: string;
  promotion: Promotion | null;
  version: number;
  /** null: every store. */
  store_id: string | null;
  published_at: string;
}

/** A slot assignment (central-api.yaml: SlotAssignment). gtin null clears the slot. */
export interface SlotAssignment {
  change_id: string;
  type: 'slot';
  store_id: string;
  shelf: string;
  slot: number;
  gtin: string | null;
  unit_weight_g: number | null;
  /** Shelf labels (OEPL MACs, 12 or 16 hex digits) showing this slot's product; absent: not said. */
  labels?: string[];
  version: number;
  published_at: string;
}

/** A product's master data (central-api.yaml: ProductChange), versioned per GTIN. */
export interface ProductChange {
  change_id: string;
  type: 'product';
  gtin: string;
  /** 1-200 characters. */
  name: string;
  /** null: unknown (a label shows no unit price). */
  net_content: { amount: number; unit: 'g' | 'kg' | 'ml' | 'cl' | 'l' } | null;
  version: number;
  /** null: every store. */
  store_id: string | null;
  published_at: string;
}

export type Change = PriceChange | SlotAssignment | ProductChange;

/**
 * A change of a type this contract version does not define (a later minor version adds it). The
 * simulator publishes one on request, so stores can be tested against a newer central.
 */
export interface OtherChange {
  change_id: string;
  type: string;
  store_id: string | null;
  version: number;
  published_at: string;
  [member: string]: unknown;
}

/** Anything the feed carries. */
export type FeedChange = Change | OtherChange;

export function isKnownChange(c: FeedChange): c is Change {
  return c.type === 'price' || c.type === 'slot' || c.type === 'product';
}

export interface ChangesResponse {
  changes: FeedChange[];
  next_cursor: string;
}

export const AckSchema = z.object({
  change_id: z.string().min(1).max(128),
  status: z.enum(['applied', 'stale', 'invalid']),
  applied_at: rfc3339,
  detail: z.string().max(500).optional(),
});
export type Ack = z.infer<typeof AckSchema>;
export const AckRequestSchema = z.object({ acks: z.array(AckSchema).min(1).max(LIMITS.maxAcks) });
export interface AckResponse {
  results: { change_id: string; result: 'recorded' | 'unknown_change' }[];
}

/** RFC 9457 problem details with the stable `code` (central-api.yaml: Problem). */
export interface Problem {
  type: string;
  title: string;
  status: number;
  code: ProblemCode;
  detail?: string;
  instance?: string;
  [ext: string]: unknown;
}

export const ProblemCode = {
  INVALID_REQUEST: 'invalid_request',
  INVALID_CURSOR: 'invalid_cursor',
  CURSOR_EXPIRED: 'cursor_expired',
  IDEMPOTENCY_KEY_MISSING: 'idempotency_key_missing',
  IDEMPOTENCY_KEY_REUSED: 'idempotency_key_reused',
  UNAUTHORIZED: 'unauthorized',
  INVALID_TOKEN: 'invalid_token',
  STORE_NOT_PERMITTED: 'store_not_permitted',
  NOT_FOUND: 'not_found',
  UNKNOWN_STORE: 'unknown_store',
  METHOD_NOT_ALLOWED: 'method_not_allowed',
  PAYLOAD_TOO_LARGE: 'payload_too_large',
  UNSUPPORTED_MEDIA_TYPE: 'unsupported_media_type',
  RATE_LIMITED: 'rate_limited',
  INTERNAL: 'internal',
  UNAVAILABLE: 'unavailable',
} as const;
export type ProblemCode = (typeof ProblemCode)[keyof typeof ProblemCode];
