/**
 * The wire side of the central contract (docs/central-api.yaml), shared by the HTTPS transport and
 * the MQTT bridge so both send and read exactly the same payloads:
 *
 * - out: the EventBatch body (`uploadBody`), AckRequest bodies of at most 1000 acks (`ackBodies`);
 * - in: EventBatchResult (`parseUploadResults`), ChangesPage (`parseChangesPage`), one Change
 *   (`parseChange`, also what the MQTT bridge reads per message), AckResult (`parseAckResult`),
 *   Problem (`parseProblem`) and the MQTT sync marker (`parseSyncMarker`), validated with zod;
 * - a Problem or HTTP status as a SyncFailure (`failureForStatus`), one table for both transports.
 *
 * A contract violation is a fatal SyncTransportError (code `contract`) whose message names the
 * field, e.g. `results[3].status: ...`. Unknown fields are ignored (contract: compatibility). A
 * change of a type this gateway does not know, or a known type whose fields do not fit, does NOT
 * fail its page: it is handed on as it came (`UnknownChange`) so the sync service acknowledges it
 * `invalid` and the feed moves on; only what makes a change unacknowledgeable (no `change_id` or
 * `type`) or the page itself unreadable fails the page.
 */
import { z } from 'zod';
import { SyncTransportError, type SyncFailure } from './failure';
import type { Change, ChangeAck, SeqGap, SyncDoneMarker, UnknownChange, UploadEvent, UploadResult, UploadResults } from './types';

/**
 * The most the gateway reads of one answer from central (an HTTP body, an MQTT message). The
 * contract says central keeps every answer under 1 MiB: a full page of 500 changes or the result of
 * a 500-event batch is ~150 KB. Without a bound each upload lane, the feed and the acks buffer
 * whatever arrives (16 MiB each, RSS 99 -> 265 MB and kept there); past it the answer is refused
 * as a retryable `answer_too_large` and its connection closed.
 */
export const MAX_ANSWER_BYTES = 1024 * 1024;

/** AckRequest `acks`: maxItems 1000 (docs/central-api.yaml). */
export const MAX_ACKS_PER_REQUEST = 1000;

/** Codes of TLS verification failures (OpenSSL / Node) that retrying cannot fix (both transports). */
export const TLS_VERIFY_CODES: ReadonlySet<string> = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'HOSTNAME_MISMATCH',
]);

/**
 * A failure as a transport reports it. `status` is kept when central itself answered one (an HTTP
 * status, or the `status` of a Problem on the MQTT bridge), never made up for anything else.
 */
export type TransportFailure = SyncFailure & { status?: number };

// ---------------------------------------------------------------- out

/**
 * The EventBatch body (the same for POST events:batch and the MQTT events topic). `epoch`: the
 * database's (contract 1.1, Epochs); "" (the legacy epoch) is left out, as a 1.0 gateway sent it.
 */
export function uploadBody(events: UploadEvent[], gaps?: SeqGap[], epoch = ''): { events: UploadEvent[]; gaps?: SeqGap[]; epoch?: string } {
  return { ...(epoch ? { epoch } : {}), events, ...(gaps && gaps.length > 0 ? { gaps } : {}) };
}

/** AckRequest bodies, each within the contract's 1000 acks. */
export function ackBodies(acks: ChangeAck[]): { acks: ChangeAck[] }[] {
  const out: { acks: ChangeAck[] }[] = [];
  for (let i = 0; i < acks.length; i += MAX_ACKS_PER_REQUEST) out.push({ acks: acks.slice(i, i + MAX_ACKS_PER_REQUEST) });
  return out;
}

// ---------------------------------------------------------------- validation

/** The fatal failure for an answer that breaks the contract; `what` names the answer. */
export function contractViolation(what: string, detail: string): SyncTransportError {
  return new SyncTransportError({ kind: 'fatal', code: 'contract' }, `central broke the contract: ${what}: ${detail}`);
}

/** `at` + a zod path as the contract names fields, e.g. `changes[3]` + `['change_id']` -> `changes[3].change_id`. */
function joinPath(at: string, path: ReadonlyArray<PropertyKey>): string {
  let out = at;
  for (const k of path) out += typeof k === 'number' ? `[${k}]` : out === '' ? String(k) : `.${String(k)}`;
  return out;
}

/** The value at `path` in `body` (undefined when absent). */
function valueAt(body: unknown, path: ReadonlyArray<PropertyKey>): unknown {
  let v = body;
  for (const k of path) {
    if (typeof v !== 'object' || v === null) return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  return v;
}

function issuesText(error: z.ZodError, body: unknown, at: string): string {
  return error.issues
    .slice(0, 3)
    .map((i) => {
      const path = joinPath(at, i.path);
      const msg = i.code === 'invalid_type' && valueAt(body, i.path) === undefined ? 'is required' : i.message;
      return path ? `${path}: ${msg}` : msg;
    })
    .join('; ');
}

/** The parsed body, or a contract violation naming each bad field (`at` prefixes their paths). */
function parseWith<T extends z.ZodType>(schema: T, body: unknown, what: string, at = ''): z.output<T> {
  const r = schema.safeParse(body);
  if (!r.success) throw contractViolation(what, issuesText(r.error, body, at));
  return r.data;
}

/** JSON text to a value, or a contract violation naming the answer. */
export function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw contractViolation(what, 'not JSON');
  }
}

// ---------------------------------------------------------------- upload results

const eventResultSchema = z.looseObject({
  index: z.number().int().min(0).optional(),
  event_id: z.string().min(1).nullable().optional(),
  seq: z.number().int().nullable().optional(),
  status: z.enum(['accepted', 'duplicate', 'rejected']),
  error: z.looseObject({ code: z.string(), detail: z.string().optional(), message: z.string().optional() }).optional(),
});

const batchResultSchema = z.looseObject({ results: z.array(eventResultSchema), contiguous_seq: z.number().int().min(0).optional() });

/** Whether an answer to a batch is an EventBatchResult (it has `results`) rather than a Problem. */
export function isBatchResult(body: unknown): boolean {
  return typeof body === 'object' && body !== null && 'results' in body;
}

/**
 * EventBatchResult -> one UploadResult per result. A result names its event by `event_id`, or by
 * `index` into the batch as sent (the contract's `event_id` is null for an event sent without one);
 * `seq` falls back to the sent event's. A result naming neither is a contract violation.
 */
export function parseUploadResults(body: unknown, events: readonly UploadEvent[], what: string): UploadResults {
  const parsed = parseWith(batchResultSchema, body, what);
  const byId = new Map(events.map((e) => [e.event_id, e]));
  const results: UploadResults = parsed.results.map((r, i) => {
    const sent = r.index !== undefined ? events[r.index] : undefined;
    const eventId = r.event_id ?? sent?.event_id;
    if (eventId === undefined) throw contractViolation(what, `results[${i}].event_id: is required (and index ${r.index ?? 'is absent'} names no event of the batch)`);
    const seq = r.seq ?? byId.get(eventId)?.seq ?? sent?.seq ?? -1;
    const out: UploadResult = { event_id: eventId, seq, status: r.status };
    if (r.status === 'rejected' || r.error) {
      out.error = { code: r.error?.code ?? 'rejected' };
      const m = r.error?.detail ?? r.error?.message;
      if (m !== undefined) out.error.message = m;
    }
    return out;
  });
  // not enumerable: the results stay a plain list of results for everything that iterates or compares them
  if (parsed.contiguous_seq !== undefined) Object.defineProperty(results, 'contiguousSeq', { value: parsed.contiguous_seq, enumerable: false });
  return results;
}

// ---------------------------------------------------------------- change feed

const changeIdentitySchema = z.looseObject({ change_id: z.string().min(1).max(128), type: z.string().min(1) });

const promotionSchema = z.looseObject({ was_price: z.number().int().min(0), valid_from: z.string().optional(), valid_to: z.string().optional() });

const priceChangeSchema = z.looseObject({
  change_id: z.string().min(1).max(128),
  type: z.literal('price'),
  gtin: z.string(),
  price: z.number().int().min(0),
  currency: z.string(),
  promotion: promotionSchema.nullable().optional(),
  version: z.number().int().min(1),
  cursor: z.string().optional(),
});

/** The wire's `slot` (numeric slot) becomes the contract type's `slot_assignment` with the slot as a string. */
const slotChangeSchema = z
  .looseObject({
    change_id: z.string().min(1).max(128),
    type: z.literal('slot'),
    shelf: z.string(),
    slot: z.number().int().min(1),
    gtin: z.string().nullable(),
    unit_weight_g: z.number().nullable(),
    version: z.number().int().min(1),
    cursor: z.string().optional(),
  })
  .transform((o) => ({ ...o, type: 'slot_assignment' as const, slot: String(o.slot) }));

/**
 * One change as the sync service gets it: a price or slot assignment typed, anything else with a
 * `change_id` and `type` handed on as it came (the service acknowledges it `invalid`). Throws a
 * contract violation only when the change cannot be acknowledged (not an object, no change_id/type).
 */
export function parseChange(raw: unknown, what: string, at = ''): Change {
  const id = parseWith(changeIdentitySchema, raw, what, at);
  const schema = id.type === 'price' ? priceChangeSchema : id.type === 'slot' ? slotChangeSchema : null;
  const typed = schema?.safeParse(raw);
  if (typed?.success) return typed.data as Change;
  return id as UnknownChange;
}

const changesPageSchema = z.looseObject({ changes: z.array(z.unknown()), next_cursor: z.string().max(512) });

/** ChangesPage -> the changes (see parseChange) and the next cursor. */
export function parseChangesPage(body: unknown, what: string): { changes: Change[]; nextCursor: string } {
  const page = parseWith(changesPageSchema, body, what);
  return { changes: page.changes.map((c, i) => parseChange(c, what, `changes[${i}]`)), nextCursor: page.next_cursor };
}

const syncMarkerSchema = z.looseObject({
  type: z.literal('sync_done'),
  sync_id: z.string().min(1),
  next_cursor: z.string().max(512).optional(),
  error: z.looseObject({ status: z.number().int(), code: z.string(), detail: z.string().optional() }).optional(),
});

/** The MQTT bridge's sync marker (docs/central-mqtt.md); a contract violation if it does not fit. */
export function parseSyncMarker(body: unknown, what: string): SyncDoneMarker {
  return parseWith(syncMarkerSchema, body, what);
}

const ackResultSchema = z.looseObject({ results: z.array(z.looseObject({ change_id: z.string(), result: z.string() })) });

/** AckResult: one result per acknowledgement (`recorded`, `unknown_change`); only its shape is checked. */
export function parseAckResult(body: unknown, what: string): void {
  parseWith(ackResultSchema, body, what);
}

// ---------------------------------------------------------------- problems and failures

const problemSchema = z.looseObject({
  status: z.number().int(),
  code: z.string().optional(),
  detail: z.string().optional(),
  max_events: z.number().int().positive().optional(),
  max_bytes: z.number().int().positive().optional(),
  /** MQTT bridge only (docs/central-mqtt.md): HTTP has the Retry-After header instead. */
  retry_after_s: z.number().min(0).optional(),
});

export type Problem = z.output<typeof problemSchema>;

/** RFC 9457 problem details as far as the gateway reads them, or null when the body is not one. */
export function parseProblem(body: unknown): Problem | null {
  const r = problemSchema.safeParse(body);
  return r.success ? r.data : null;
}

/**
 * What an HTTP status (or a Problem's `status`) means for the sync service (src/sync/failure.ts):
 * 3xx fatal `redirect` (never followed: the token must not go to another host); 408, 429, 5xx
 * retryable (after `retryAfterMs` when given); 413 too_large (`max_events`/`max_bytes`); on the
 * change feed 410 or an `invalid_cursor`/`cursor_expired` problem cursor_lost; 400, 415, 422
 * invalid_request; every other status fatal (401, 403, 404 unknown store...). `code` is the
 * Problem's code, else `http_<status>`.
 */
export function failureForStatus(status: number, problem: Problem | null, opts: { feed?: boolean; retryAfterMs?: number } = {}): TransportFailure {
  const code = problem?.code ?? `http_${status}`;
  if (status >= 300 && status < 400) return { kind: 'fatal', code: 'redirect', status };
  if (status === 408 || status === 429 || status >= 500) {
    return { kind: 'retryable', code, status, ...(opts.retryAfterMs !== undefined ? { retryAfterMs: opts.retryAfterMs } : {}) };
  }
  if (status === 413) {
    return {
      kind: 'too_large',
      code,
      status,
      ...(problem?.max_events !== undefined ? { maxEvents: problem.max_events } : {}),
      ...(problem?.max_bytes !== undefined ? { maxBytes: problem.max_bytes } : {}),
    };
  }
  if (opts.feed && (status === 410 || code === 'cursor_expired' || code === 'invalid_cursor')) return { kind: 'cursor_lost', code, status };
  if (status === 400 || status === 415 || status === 422) return { kind: 'invalid_request', code, status };
  return { kind: 'fatal', code, status };
}

/** The retryable failure for an answer over MAX_ANSWER_BYTES. */
export function answerTooLarge(what: string, bytes: number, limit: number): SyncTransportError {
  return new SyncTransportError({ kind: 'retryable', code: 'answer_too_large' }, `${what} exceeds ${limit} bytes (${bytes} or more); refused`);
}
