/**
 * The wire module both transports share (src/sync/wire.ts): bodies out, answers in (zod, with the
 * field named on a contract violation), and the status -> failure table; then each transport's own
 * outcome -> failure mapping (HTTPS answers and network errors, MQTT CONNACK/PUBACK/TLS/Problem).
 */
import { describe, expect, it } from 'vitest';
import { ErrorCode, ShelfgateError } from '../../src/errors';
import { SyncTransportError, failureOf } from '../../src/sync/failure';
import { answerFailure, networkFailure } from '../../src/sync/https';
import { connackFailure, connectionErrorFailure, problemFailure, publishFailure } from '../../src/sync/mqtt-bridge';
import type { ChangeAck, UploadEvent } from '../../src/sync/types';
import {
  MAX_ACKS_PER_REQUEST,
  ackBodies,
  failureForStatus,
  parseAckResult,
  parseChange,
  parseChangesPage,
  parseProblem,
  parseSyncMarker,
  parseUploadResults,
  uploadBody,
} from '../../src/sync/wire';

const GTIN = '04006381333931';

function ev(i: number): UploadEvent {
  return { event_id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, seq: 100 + i, device_id: 'sh1/1', kind: 'pick', priority: 0, created_at: '2025-03-01T10:00:00.000Z', payload: { count: i } };
}

/** The error `fn` throws (fails the test if it does not). */
function thrown(fn: () => unknown): SyncTransportError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(SyncTransportError);
    return e as SyncTransportError;
  }
  throw new Error('expected a throw');
}

describe('wire: bodies out', () => {
  it('EventBatch carries gaps only when there are some', () => {
    const events = [ev(1)];
    expect(uploadBody(events)).toEqual({ events });
    expect(uploadBody(events, [])).toEqual({ events });
    const gaps = [{ from_seq: 3, to_seq: 4, reason: 'dropped_buffer_full' }];
    expect(uploadBody(events, gaps)).toEqual({ events, gaps });
  });

  it('AckRequest bodies hold at most 1000 acks each, in order', () => {
    const acks: ChangeAck[] = Array.from({ length: 2500 }, (_, i) => ({ change_id: `c${i}`, status: 'applied', applied_at: '2025-03-01T10:00:00.000Z' }));
    const bodies = ackBodies(acks);
    expect(bodies.map((b) => b.acks.length)).toEqual([MAX_ACKS_PER_REQUEST, MAX_ACKS_PER_REQUEST, 500]);
    expect(bodies.flatMap((b) => b.acks)).toEqual(acks);
    expect(ackBodies([])).toEqual([]);
  });
});

describe('wire: upload results', () => {
  const events = [ev(0), ev(1), ev(2), ev(3)];

  it('reads accepted, duplicate and rejected (error.detail becomes the message)', () => {
    const body = {
      batch_id: 'b1',
      results: [
        { index: 0, event_id: events[0]!.event_id, seq: 100, status: 'accepted' },
        { index: 1, event_id: events[1]!.event_id, seq: 101, status: 'duplicate' },
        { index: 2, event_id: events[2]!.event_id, seq: 102, status: 'rejected', error: { code: 'unknown_kind', detail: 'kind teleport' } },
      ],
      counts: { accepted: 1, duplicate: 1, rejected: 1 },
      contiguous_seq: 0,
      future_field: true,
    };
    expect(parseUploadResults(body, events, 'answer')).toEqual([
      { event_id: events[0]!.event_id, seq: 100, status: 'accepted' },
      { event_id: events[1]!.event_id, seq: 101, status: 'duplicate' },
      { event_id: events[2]!.event_id, seq: 102, status: 'rejected', error: { code: 'unknown_kind', message: 'kind teleport' } },
    ]);
  });

  it('a result without event_id is named by its index; seq falls back to the sent event', () => {
    expect(parseUploadResults({ results: [{ index: 3, event_id: null, seq: null, status: 'accepted' }] }, events, 'answer')).toEqual([{ event_id: events[3]!.event_id, seq: 103, status: 'accepted' }]);
    // a rejected result without an error still says why in the contract's terms
    expect(parseUploadResults({ results: [{ event_id: events[1]!.event_id, status: 'rejected' }] }, events, 'answer')).toEqual([{ event_id: events[1]!.event_id, seq: 101, status: 'rejected', error: { code: 'rejected' } }]);
  });

  it('a contract violation is fatal `contract` and names the field', () => {
    const bad = { results: [0, 1, 2, 3].map((i) => ({ index: i, event_id: events[i]!.event_id, seq: 100 + i, status: i === 3 ? 'stored' : 'accepted' })) };
    const e = thrown(() => parseUploadResults(bad, events, 'the events:batch answer'));
    expect(e.failure).toEqual({ kind: 'fatal', code: 'contract' });
    expect(e.code).toBe(ErrorCode.SYNC_FATAL);
    expect(e.message).toMatch(/^central broke the contract: the events:batch answer: results\[3\]\.status: /);
    expect(thrown(() => parseUploadResults({ results: 'all good' }, events, 'a')).message).toMatch(/results: /);
    expect(thrown(() => parseUploadResults({}, events, 'a')).message).toMatch(/results: is required/);
    expect(thrown(() => parseUploadResults({ results: [{ index: 9, status: 'accepted' }] }, events, 'a')).message).toMatch(/results\[0\]\.event_id: is required/);
    expect(thrown(() => parseUploadResults({ results: [{ event_id: 3, status: 'accepted' }] }, events, 'a')).message).toMatch(/results\[0\]\.event_id: .*expected string, received number/);
    expect(thrown(() => parseUploadResults('<html>', events, 'a')).message).toMatch(/^central broke the contract: a: .*expected object, received string/);
    expect(thrown(() => parseUploadResults({ results: [{ event_id: 'x', status: 'rejected', error: { detail: 'no code' } }] }, events, 'a')).message).toMatch(/results\[0\]\.error\.code: is required/);
  });
});

describe('wire: change feed', () => {
  const price = { change_id: `price/${GTIN}/v7`, type: 'price', gtin: GTIN, price: 249, currency: 'EUR', promotion: null, version: 7, store_id: null, published_at: '2025-03-01T06:00:00.000Z' };
  const slot = { change_id: 'slot/st1/sh1/2/v3', type: 'slot', store_id: 'st1', shelf: 'sh1', slot: 2, gtin: GTIN, unit_weight_g: 250, version: 3, published_at: '2025-03-01T06:00:00.000Z' };

  it('prices and slot assignments are typed (slot -> slot_assignment, slot as a string); unknown fields stay', () => {
    const page = parseChangesPage({ changes: [price, slot], next_cursor: 'djE6NDI' }, 'page');
    expect(page.nextCursor).toBe('djE6NDI');
    expect(page.changes[0]).toMatchObject({ type: 'price', price: 249, store_id: null });
    expect(page.changes[1]).toMatchObject({ type: 'slot_assignment', slot: '2', shelf: 'sh1', unit_weight_g: 250, store_id: 'st1' });
  });

  it('an unknown change type, or a known one whose fields do not fit, does not fail the page: it is handed on as it came', () => {
    const shelfLabel = { change_id: 'label/1', type: 'shelf_label', text: 'hello' };
    const badPrice = { ...price, change_id: 'price/bad', price: 2.49 };
    const page = parseChangesPage({ changes: [shelfLabel, price, badPrice], next_cursor: 'c' }, 'page');
    expect(page.changes).toEqual([shelfLabel, expect.objectContaining({ type: 'price', price: 249 }), badPrice]);
  });

  it('what makes a change unacknowledgeable, or the page unreadable, fails the page naming the field', () => {
    const e = thrown(() => parseChangesPage({ changes: [price, { type: 'price', gtin: GTIN }], next_cursor: 'c' }, 'the changes answer'));
    expect(e.failure).toEqual({ kind: 'fatal', code: 'contract' });
    expect(e.message).toBe('central broke the contract: the changes answer: changes[1].change_id: is required');
    expect(thrown(() => parseChangesPage({ changes: [price, 'price'], next_cursor: 'c' }, 'p')).message).toMatch(/p: changes\[1\]: /);
    expect(thrown(() => parseChangesPage({ changes: [price] }, 'p')).message).toMatch(/p: next_cursor: is required/);
    expect(thrown(() => parseChangesPage({ changes: {}, next_cursor: 'c' }, 'p')).message).toMatch(/p: changes: /);
    expect(thrown(() => parseChange({ change_id: 'x', type: 7 }, 'a changes message')).message).toMatch(/a changes message: type: /);
  });

  it('the MQTT sync marker and the ack result are checked too', () => {
    expect(parseSyncMarker({ type: 'sync_done', sync_id: 's1', next_cursor: 'c' }, 'm')).toMatchObject({ sync_id: 's1', next_cursor: 'c' });
    expect(thrown(() => parseSyncMarker({ type: 'sync_done', next_cursor: 'c' }, 'm')).message).toMatch(/m: sync_id: is required/);
    expect(() => parseAckResult({ results: [{ change_id: 'c1', result: 'recorded' }] }, 'a')).not.toThrow();
    expect(thrown(() => parseAckResult({ results: [{ change_id: 'c1' }] }, 'a')).message).toMatch(/results\[0\]\.result: is required/);
  });
});

describe('wire: status -> failure (both transports)', () => {
  const problem = (status: number, code: string, extra: Record<string, unknown> = {}) => parseProblem({ type: 'x', title: 'x', status, code, ...extra });

  it('maps every class of answer', () => {
    expect(failureForStatus(503, problem(503, 'unavailable'), { retryAfterMs: 2000 })).toEqual({ kind: 'retryable', code: 'unavailable', status: 503, retryAfterMs: 2000 });
    expect(failureForStatus(429, problem(429, 'rate_limited'))).toEqual({ kind: 'retryable', code: 'rate_limited', status: 429 });
    expect(failureForStatus(408, null)).toEqual({ kind: 'retryable', code: 'http_408', status: 408 });
    expect(failureForStatus(502, null)).toEqual({ kind: 'retryable', code: 'http_502', status: 502 });
    expect(failureForStatus(413, problem(413, 'payload_too_large', { max_events: 500 }))).toEqual({ kind: 'too_large', code: 'payload_too_large', status: 413, maxEvents: 500 });
    expect(failureForStatus(413, problem(413, 'payload_too_large', { max_bytes: 1000 }))).toEqual({ kind: 'too_large', code: 'payload_too_large', status: 413, maxBytes: 1000 });
    expect(failureForStatus(400, problem(400, 'invalid_request'))).toEqual({ kind: 'invalid_request', code: 'invalid_request', status: 400 });
    expect(failureForStatus(415, null)).toEqual({ kind: 'invalid_request', code: 'http_415', status: 415 });
    expect(failureForStatus(422, problem(422, 'idempotency_key_reused'))).toEqual({ kind: 'invalid_request', code: 'idempotency_key_reused', status: 422 });
    expect(failureForStatus(401, problem(401, 'invalid_token'))).toEqual({ kind: 'fatal', code: 'invalid_token', status: 401 });
    expect(failureForStatus(403, problem(403, 'store_not_permitted'))).toEqual({ kind: 'fatal', code: 'store_not_permitted', status: 403 });
    expect(failureForStatus(404, null)).toEqual({ kind: 'fatal', code: 'http_404', status: 404 });
    for (const s of [301, 302, 303, 307, 308]) expect(failureForStatus(s, null)).toEqual({ kind: 'fatal', code: 'redirect', status: s });
  });

  it('410 and a lost cursor are cursor_lost on the change feed only', () => {
    expect(failureForStatus(410, problem(410, 'cursor_expired'), { feed: true })).toEqual({ kind: 'cursor_lost', code: 'cursor_expired', status: 410 });
    expect(failureForStatus(400, problem(400, 'invalid_cursor'), { feed: true })).toEqual({ kind: 'cursor_lost', code: 'invalid_cursor', status: 400 });
    expect(failureForStatus(410, null)).toEqual({ kind: 'fatal', code: 'http_410', status: 410 });
    expect(failureForStatus(400, problem(400, 'invalid_request'), { feed: true })).toMatchObject({ kind: 'invalid_request' });
  });

  it('failureOf reads a SyncTransportError as it was thrown', () => {
    const f = failureForStatus(413, problem(413, 'payload_too_large', { max_events: 10 }));
    const e = new SyncTransportError(f, 'too large');
    expect(failureOf(e)).toBe(f);
    expect(e.code).toBe(ErrorCode.SYNC_FATAL);
    expect(new SyncTransportError({ kind: 'retryable', code: 'x' }, 'm').code).toBe(ErrorCode.SYNC_RETRYABLE);
    // the older shape still reads the same way
    expect(failureOf(new ShelfgateError(ErrorCode.SYNC_FATAL, 'x', { status: 413, code: 'payload_too_large', maxEvents: 10 }))).toMatchObject({ kind: 'too_large', maxEvents: 10 });
  });
});

describe('HTTPS: answer and network error -> failure', () => {
  const json = (o: unknown): Buffer => Buffer.from(JSON.stringify(o));

  it('reads the problem+json body and Retry-After; a body that is not JSON leaves the status', () => {
    expect(answerFailure('events:batch', 503, { 'retry-after': '3' }, json({ type: 't', title: 't', status: 503, code: 'unavailable' }))).toEqual({ kind: 'retryable', code: 'unavailable', status: 503, retryAfterMs: 3000 });
    expect(answerFailure('events:batch', 413, {}, json({ status: 413, code: 'payload_too_large', max_events: 3 }))).toEqual({ kind: 'too_large', code: 'payload_too_large', status: 413, maxEvents: 3 });
    expect(answerFailure('events:batch', 502, {}, Buffer.from('<html>bad gateway</html>'))).toEqual({ kind: 'retryable', code: 'http_502', status: 502 });
    // the HTTP status counts, not one a body claims
    expect(answerFailure('events:batch', 401, {}, json({ status: 500, code: 'invalid_token' }))).toEqual({ kind: 'fatal', code: 'invalid_token', status: 401 });
    expect(answerFailure('changes', 410, {}, json({ status: 410, code: 'cursor_expired' }))).toEqual({ kind: 'cursor_lost', code: 'cursor_expired', status: 410 });
    expect(answerFailure('changes:ack', 410, {}, json({ status: 410, code: 'gone' }))).toEqual({ kind: 'fatal', code: 'gone', status: 410 });
  });

  it('TLS verification failures and TLS alerts are fatal with their code; the rest is retryable', () => {
    const err = (code: string | undefined): Error => Object.assign(new Error('x'), code ? { code } : {});
    expect(networkFailure(err('UNABLE_TO_VERIFY_LEAF_SIGNATURE'), false)).toEqual({ kind: 'fatal', code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
    expect(networkFailure(err('ERR_TLS_CERT_ALTNAME_INVALID'), false)).toEqual({ kind: 'fatal', code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
    expect(networkFailure(err('ERR_SSL_TLSV1_ALERT_UNKNOWN_CA'), false)).toEqual({ kind: 'fatal', code: 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA' });
    expect(networkFailure(err('ECONNREFUSED'), false)).toEqual({ kind: 'retryable', code: 'ECONNREFUSED' });
    expect(networkFailure(err(undefined), true)).toEqual({ kind: 'retryable', code: 'timeout' });
    expect(networkFailure(err(undefined), false)).toEqual({ kind: 'retryable', code: 'network' });
  });
});

describe('MQTT bridge: outcome -> failure (no HTTP status made up)', () => {
  it('CONNACK refusals that need an operator are fatal by name; others are left to reconnect', () => {
    expect(connackFailure(0x86, 5)).toEqual({ kind: 'fatal', code: 'bad_credentials' });
    expect(connackFailure(0x87, 5)).toEqual({ kind: 'fatal', code: 'not_authorized' });
    // a server redirect (use another server, server moved) is never followed: a configuration error
    expect(connackFailure(0x9c, 5)).toEqual({ kind: 'fatal', code: 'redirect' });
    expect(connackFailure(0x9d, 5)).toEqual({ kind: 'fatal', code: 'redirect' });
    expect(connackFailure(0x85, 5)).toEqual({ kind: 'fatal', code: 'client_id_rejected' });
    expect(connackFailure(0x8a, 5)).toEqual({ kind: 'fatal', code: 'banned' });
    expect(connackFailure(0x8c, 5)).toEqual({ kind: 'fatal', code: 'bad_auth_method' });
    expect(connackFailure(0x89, 5)).toBeNull(); // server busy
    expect(connackFailure(4, 4)).toEqual({ kind: 'fatal', code: 'bad_credentials' });
    expect(connackFailure(5, 4)).toEqual({ kind: 'fatal', code: 'not_authorized' });
    expect(connackFailure(3, 4)).toBeNull(); // server unavailable
    expect(connackFailure(0x86, 4)).toBeNull();
  });

  it('a refused publish is fatal, a failed one retryable; a TLS verification failure is fatal with its code', () => {
    expect(publishFailure(0x87)).toEqual({ kind: 'fatal', code: 'not_authorized' });
    expect(publishFailure(0x90)).toEqual({ kind: 'fatal', code: 'topic_name_invalid' });
    expect(publishFailure(0x80)).toEqual({ kind: 'retryable', code: 'publish_failed' });
    expect(publishFailure(undefined)).toEqual({ kind: 'retryable', code: 'publish_failed' });
    expect(connectionErrorFailure(Object.assign(new Error('x'), { code: 'CERT_HAS_EXPIRED' }))).toEqual({ kind: 'fatal', code: 'CERT_HAS_EXPIRED' });
    expect(connectionErrorFailure(Object.assign(new Error('x'), { code: 'ECONNREFUSED' }))).toBeNull();
  });

  it('a Problem result is central own status and code, with retry_after_s', () => {
    const p = (o: Record<string, unknown>) => problemFailure(parseProblem({ batch_id: 'b', type: 't', title: 't', ...o })!);
    expect(p({ status: 503, code: 'unavailable', retry_after_s: 2 })).toEqual({ kind: 'retryable', code: 'unavailable', status: 503, retryAfterMs: 2000 });
    expect(p({ status: 413, code: 'payload_too_large', max_events: 3 })).toEqual({ kind: 'too_large', code: 'payload_too_large', status: 413, maxEvents: 3 });
    expect(p({ status: 422, code: 'idempotency_key_reused' })).toEqual({ kind: 'invalid_request', code: 'idempotency_key_reused', status: 422 });
    expect(p({ status: 403, code: 'store_not_permitted' })).toEqual({ kind: 'fatal', code: 'store_not_permitted', status: 403 });
  });
});
