/**
 * What went wrong with an exchange with central, as the sync service acts on it, whatever the
 * transport (HTTPS statuses, MQTT bridge outcomes). Transports throw SyncTransportError with one of
 * these; `failureOf` also reads the older ShelfgateError(SYNC_RETRYABLE/SYNC_FATAL) shapes so both
 * can coexist while transports move over.
 *
 * | kind             | when                                                        | the service                                   |
 * |------------------|-------------------------------------------------------------|-----------------------------------------------|
 * | retryable        | network, timeout, 5xx, 429, 408; an incomplete answer         | retries after `retryAfterMs` or its back-off (which grows either way) |
 * | too_large        | 413: the batch is too big for central                        | splits the batch (maxEvents) and retries      |
 * | invalid_request  | 400, 415, 422: central refused this request as malformed      | per the contract's error table; never resent unchanged forever |
 * | fatal            | 401, 403, 404 unknown store, 3xx, TLS, contract violations    | pauses that direction until reconfigured (status says why) |
 * | cursor_lost      | 410 on the change feed                                        | restarts the feed from the beginning          |
 */
import { ErrorCode, ShelfgateError, isShelfgateError } from '../errors';

export type SyncFailure =
  | { kind: 'retryable'; code: string; retryAfterMs?: number }
  | { kind: 'too_large'; code: string; maxEvents?: number; maxBytes?: number }
  | { kind: 'invalid_request'; code: string; status?: number }
  | { kind: 'fatal'; code: string; status?: number }
  | { kind: 'cursor_lost'; code: string };

export class SyncTransportError extends ShelfgateError {
  constructor(
    readonly failure: SyncFailure,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(failure.kind === 'retryable' ? ErrorCode.SYNC_RETRYABLE : ErrorCode.SYNC_FATAL, message, failure, options);
    this.name = 'SyncTransportError';
  }
}

/** The failure an error stands for (anything unknown is retryable: the next try finds out more). */
export function failureOf(e: unknown): SyncFailure {
  if (e instanceof SyncTransportError) return e.failure;
  const d = (isShelfgateError(e) ? e.details : undefined) as { status?: number; code?: string; retryAfterMs?: number; maxEvents?: number; maxBytes?: number } | undefined;
  const code = typeof d?.code === 'string' ? d.code : ((e as { code?: string })?.code ?? 'error');
  if (isShelfgateError(e, ErrorCode.SYNC_FATAL)) {
    const status = d?.status;
    if (status === 413) return { kind: 'too_large', code, maxEvents: d?.maxEvents, maxBytes: d?.maxBytes };
    if (status === 410) return { kind: 'cursor_lost', code };
    if (status === 400 || status === 415 || status === 422) return { kind: 'invalid_request', code, status };
    return { kind: 'fatal', code, status };
  }
  return { kind: 'retryable', code, ...(typeof d?.retryAfterMs === 'number' && d.retryAfterMs >= 0 ? { retryAfterMs: d.retryAfterMs } : {}) };
}
