/**
 * The HTTPS transport to central (docs/central-api.yaml), on node:https with one keep-alive agent.
 *
 * - TLS certificate verification is always on; there is no option to turn it off. `ca_file`
 *   replaces the system CAs (a retailer's private CA); `cert_file`/`key_file` add a client
 *   certificate (mutual TLS). Plain `http://` is accepted only for a loopback host (the reference
 *   simulator on 127.0.0.1, tests): a bearer token never crosses a network in clear.
 * - Keep-alive sockets live at most MAX_SOCKET_AGE_MS (5 min) and TLS sessions are not resumed, so
 *   a certificate central rotates (or revokes by moving to another CA) is verified again within
 *   minutes instead of riding on a connection verified under the old one.
 * - The bearer token is read from `token_file` at start(); a missing or empty file is a clear
 *   CONFIG_UNREADABLE error. No token_file: no Authorization header.
 * - Errors are SyncTransportError (src/sync/failure.ts), statuses mapped by `failureForStatus`
 *   (src/sync/wire.ts, shared with the MQTT bridge): network failures, timeouts, 408/429/5xx and an
 *   answer over MAX_ANSWER_BYTES (1 MiB) are retryable (`retryAfterMs` from Retry-After); 413
 *   too_large; 400/415/422 invalid_request; 410 on the feed cursor_lost; a 3xx is fatal `redirect`
 *   and never followed (the token must not go to another host); 401/403/404 and other 4xx fatal
 *   with the problem+json `code`. A server certificate that does not verify, or a TLS alert from
 *   the server, is fatal with the TLS code (an operator must fix it). Answers are validated with
 *   the contract's schemas; a violation is fatal `contract` naming the field.
 * - Request bodies over 8 KiB are gzip-compressed (`Content-Encoding: gzip`, which central MUST
 *   accept).
 * - stop() aborts every request in flight (they reject STOPPED) and closes the agent's sockets.
 */
import http from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { gzip as gzipCb } from 'node:zlib';
import type { SyncConfig } from '../config/schema';
import { ErrorCode, ShelfgateError } from '../errors';
import type { Logger } from '../log';
import { SyncTransportError } from './failure';
import type { Change, ChangeAck, SeqGap, SyncTransport, UploadEvent, UploadResults } from './types';
import {
  MAX_ANSWER_BYTES,
  TLS_VERIFY_CODES,
  ackBodies,
  answerTooLarge,
  failureForStatus,
  parseAckResult,
  parseChangesPage,
  parseJson,
  parseProblem,
  parseUploadResults,
  uploadBody,
  type TransportFailure,
} from './wire';

const gzip = promisify(gzipCb);

export type HttpsSyncConfig = NonNullable<SyncConfig['https']>;

export interface HttpsTransportOptions {
  config: HttpsSyncConfig;
  storeId: string;
  log: Logger;
  /** Bodies larger than this are gzip-compressed; default 8192 bytes. */
  gzipMinBytes?: number;
  /** Sockets the agent keeps per host; default 16 (pipeline + long-poll + acks). */
  maxSockets?: number;
  /** The most read of one answer; default MAX_ANSWER_BYTES (1 MiB). */
  maxAnswerBytes?: number;
  /** Keep-alive sockets are not kept or reused past this age; default MAX_SOCKET_AGE_MS (5 min). */
  maxSocketAgeMs?: number;
}

/**
 * How long a keep-alive socket may serve requests after it was opened. A connection is verified
 * once, at its TLS handshake; under steady traffic (four upload lanes, the long-poll, acks) a socket
 * would otherwise live for days, still trusted after central moved to a new certificate or the
 * retailer stopped trusting the old CA. 5 min: a new handshake per socket every 5 minutes costs
 * nothing, and a rotated or distrusted certificate is noticed within 5 minutes.
 */
export const MAX_SOCKET_AGE_MS = 5 * 60_000;

type Op = 'events:batch' | 'changes' | 'changes:ack';

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

function isLoopback(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

function readPem(path: string | undefined, what: string): Buffer | undefined {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path);
  } catch (e) {
    throw new ShelfgateError(ErrorCode.CONFIG_UNREADABLE, `sync.https.${what} ${path} cannot be read: ${(e as Error).message}`, { path }, { cause: e });
  }
}

/** Retry-After: delay-seconds or an HTTP-date; ms, or undefined. */
export function parseRetryAfter(v: string | string[] | undefined, now = Date.now()): number | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (s === undefined || s.trim() === '') return undefined;
  if (/^\d+$/.test(s.trim())) return Math.min(Number(s.trim()), 86_400) * 1000;
  const t = Date.parse(s);
  return Number.isNaN(t) ? undefined : Math.max(0, Math.min(t - now, 86_400_000));
}

/**
 * Keeps `agent`'s sockets no longer than `maxAgeMs` after they were opened: one freed later is
 * closed instead of kept, and one waiting in the pool is closed when it reaches the age (the
 * agent destroys a free socket that times out). A socket the agent hands straight to a request
 * queued for it (only with more than maxSockets in flight) is checked at its next release.
 */
export function boundSocketAge<A extends http.Agent>(agent: A, maxAgeMs: number): A {
  const opened = new WeakMap<object, number>();
  const create = agent.createConnection.bind(agent);
  agent.createConnection = (options, callback) => {
    const note = (s: Duplex | null | undefined): void => {
      if (s && !opened.has(s)) opened.set(s, Date.now());
    };
    const s = create(options, (err, stream) => {
      note(stream);
      callback?.(err, stream);
    });
    note(s);
    return s;
  };
  const keep = agent.keepSocketAlive.bind(agent) as (socket: Duplex) => boolean;
  agent.keepSocketAlive = (socket: Duplex): boolean => {
    const left = (opened.get(socket) ?? 0) + maxAgeMs - Date.now();
    if (left <= 0) return false;
    const kept = keep(socket);
    const s = socket as Socket;
    if (!s.timeout || s.timeout > left) s.setTimeout(Math.ceil(left));
    return kept;
  };
  return agent;
}

/** What a failed request means for the sync service: network, timeout, TLS (see the module doc). */
export function networkFailure(e: Error, timedOut: boolean): TransportFailure {
  const code = (e as { code?: string }).code ?? '';
  if (TLS_VERIFY_CODES.has(code) || code.startsWith('ERR_SSL_')) return { kind: 'fatal', code };
  return { kind: 'retryable', code: timedOut ? 'timeout' : code || 'network' };
}

/** What a non-2xx answer means for the sync service (failureForStatus with the problem+json body and Retry-After). */
export function answerFailure(op: Op, status: number, headers: http.IncomingHttpHeaders, body: Buffer): TransportFailure {
  let parsed: unknown = null;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    // not problem+json (a proxy's HTML page): the status alone says it
  }
  const problem = parseProblem(typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? { ...parsed, status } : { status });
  return failureForStatus(status, problem, { feed: op === 'changes', retryAfterMs: parseRetryAfter(headers['retry-after']) });
}

export class HttpsTransport implements SyncTransport {
  readonly name = 'sync-https';
  private readonly base: URL;
  private agent: http.Agent | https.Agent | null = null;
  private token: string | null = null;
  private readonly inflight = new Set<AbortController>();
  private stopped = true;

  constructor(private readonly o: HttpsTransportOptions) {
    let url: URL;
    try {
      url = new URL(o.config.url);
    } catch {
      throw new ShelfgateError(ErrorCode.CONFIG_INVALID, `sync.https.url ${o.config.url} is not a URL`);
    }
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopback(url.hostname))) {
      throw new ShelfgateError(ErrorCode.CONFIG_INVALID, `sync.https.url must be https:// (plain http:// only for a loopback address), got ${o.config.url}`);
    }
    this.base = url;
  }

  async start(): Promise<void> {
    if (!this.stopped) return;
    const c = this.o.config;
    if (c.token_file !== undefined) {
      let t: string;
      try {
        t = readFileSync(c.token_file, 'utf8').trim();
      } catch (e) {
        throw new ShelfgateError(ErrorCode.CONFIG_UNREADABLE, `sync.https.token_file ${c.token_file} cannot be read: ${(e as Error).message}`, { path: c.token_file }, { cause: e });
      }
      if (t === '' || !/^[A-Za-z0-9._~+/=-]+$/.test(t)) {
        throw new ShelfgateError(ErrorCode.CONFIG_INVALID, `sync.https.token_file ${c.token_file} does not hold a bearer token (one line of token68 characters)`, { path: c.token_file });
      }
      this.token = t;
    }
    const maxSockets = this.o.maxSockets ?? 16;
    if (this.base.protocol === 'https:') {
      const ca = readPem(c.ca_file, 'ca_file');
      const cert = readPem(c.cert_file, 'cert_file');
      const key = readPem(c.key_file, 'key_file');
      this.agent = new https.Agent({
        keepAlive: true,
        maxSockets,
        rejectUnauthorized: true,
        // no TLS session resumption: a resumed session skips certificate verification, which
        // would carry the old certificate's trust past MAX_SOCKET_AGE_MS
        maxCachedSessions: 0,
        ...(ca ? { ca } : {}),
        ...(cert ? { cert } : {}),
        ...(key ? { key } : {}),
      });
    } else {
      this.agent = new http.Agent({ keepAlive: true, maxSockets });
    }
    boundSocketAge(this.agent, this.o.maxSocketAgeMs ?? MAX_SOCKET_AGE_MS);
    this.stopped = false;
    this.o.log.info({ url: this.base.origin, mtls: c.cert_file !== undefined, ca_file: c.ca_file ?? null, token: this.token !== null }, 'sync https transport ready');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const ac of this.inflight) ac.abort();
    this.inflight.clear();
    this.agent?.destroy();
    this.agent = null;
  }

  private path(op: Op): string {
    const prefix = this.base.pathname.replace(/\/+$/, '');
    return `${prefix}/v1/stores/${encodeURIComponent(this.o.storeId)}/${op}`;
  }

  async upload(batchId: string, events: UploadEvent[], gaps?: SeqGap[], epoch?: string): Promise<UploadResults> {
    const res = await this.request('events:batch', 'POST', this.path('events:batch'), { body: JSON.stringify(uploadBody(events, gaps, epoch)), headers: { 'idempotency-key': batchId } });
    const what = 'the events:batch answer';
    return parseUploadResults(parseJson(res.body.toString('utf8'), what), events, what);
  }

  async fetchChanges(cursor: string | null, waitS: number, signal: AbortSignal): Promise<{ changes: Change[]; nextCursor: string | null }> {
    const wait = Math.max(0, Math.min(30, Math.floor(waitS)));
    const q = new URLSearchParams({ wait: String(wait), limit: '500' });
    if (cursor !== null && cursor !== '') q.set('cursor', cursor);
    const res = await this.request('changes', 'GET', `${this.path('changes')}?${q.toString()}`, {
      signal,
      timeoutMs: Math.max(this.o.config.request_timeout_ms, wait * 1000 + 15_000),
    });
    const what = 'the changes answer';
    return parseChangesPage(parseJson(res.body.toString('utf8'), what), what);
  }

  async ack(acks: ChangeAck[]): Promise<void> {
    for (const body of ackBodies(acks)) {
      const res = await this.request('changes:ack', 'POST', this.path('changes:ack'), { body: JSON.stringify(body) });
      const what = 'the changes:ack answer';
      parseAckResult(parseJson(res.body.toString('utf8'), what), what);
    }
  }

  // ---- HTTP ----

  private async request(
    op: Op,
    method: 'GET' | 'POST',
    path: string,
    opts: { body?: string; headers?: Record<string, string>; signal?: AbortSignal; timeoutMs?: number } = {},
  ): Promise<RawResponse> {
    const agent = this.agent;
    if (this.stopped || !agent) throw new ShelfgateError(ErrorCode.STOPPED, 'sync transport is stopped');
    const headers: Record<string, string | number> = { accept: 'application/json', ...opts.headers };
    if (this.token !== null) headers.authorization = `Bearer ${this.token}`;
    let payload: Buffer | undefined;
    if (opts.body !== undefined) {
      payload = Buffer.from(opts.body, 'utf8');
      headers['content-type'] = 'application/json';
      if (payload.length > (this.o.gzipMinBytes ?? 8192)) {
        payload = await gzip(payload);
        headers['content-encoding'] = 'gzip';
      }
      headers['content-length'] = payload.length;
    }
    const ac = new AbortController();
    const onOuterAbort = (): void => ac.abort();
    opts.signal?.addEventListener('abort', onOuterAbort, { once: true });
    if (opts.signal?.aborted) ac.abort();
    this.inflight.add(ac);
    const timeoutMs = opts.timeoutMs ?? this.o.config.request_timeout_ms;
    const limit = this.o.maxAnswerBytes ?? MAX_ANSWER_BYTES;
    const what = `${method} ${op}`;
    const lib = this.base.protocol === 'https:' ? https : http;
    try {
      return await new Promise<RawResponse>((resolve, reject) => {
        let settled = false;
        let timedOut = false;
        const fail = (e: Error): void => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          reject(e);
        };
        const req = lib.request(
          {
            protocol: this.base.protocol,
            hostname: this.base.hostname.replace(/^\[|\]$/g, ''),
            port: this.base.port || undefined,
            method,
            path,
            headers,
            agent,
            signal: ac.signal,
          },
          (res) => {
            res.on('error', (e) => fail(this.networkError(e, ac, timedOut)));
            res.on('aborted', () => fail(this.networkError(new Error('answer aborted'), ac, timedOut)));
            const status = res.statusCode ?? 0;
            /** Fails with `e` and closes the connection without reading the rest of the answer. */
            const refuse = (e: Error): void => {
              fail(e);
              req.destroy();
            };
            if (status >= 300 && status < 400) {
              const location = typeof res.headers.location === 'string' ? ` to ${res.headers.location}` : '';
              refuse(new SyncTransportError(failureForStatus(status, null), `${what} answered ${status}, a redirect${location}: not followed (the token goes to the configured URL only); configure central's URL as it is now`));
              return;
            }
            const declared = Number(res.headers['content-length']);
            if (Number.isFinite(declared) && declared > limit) {
              refuse(answerTooLarge(`the ${what} answer (Content-Length)`, declared, limit));
              return;
            }
            const chunks: Buffer[] = [];
            let size = 0;
            res.on('data', (c: Buffer) => {
              if (settled) return;
              size += c.length;
              if (size > limit) {
                chunks.length = 0;
                refuse(answerTooLarge(`the ${what} answer`, size, limit));
                return;
              }
              chunks.push(c);
            });
            res.on('end', () => {
              if (settled) return;
              const raw: RawResponse = { status, headers: res.headers, body: Buffer.concat(chunks) };
              if (status >= 200 && status < 300) {
                settled = true;
                clearTimeout(timer);
                resolve(raw);
              } else {
                fail(this.statusError(op, what, raw));
              }
            });
          },
        );
        const timer = setTimeout(() => {
          timedOut = true;
          req.destroy(new Error(`no answer within ${timeoutMs} ms`));
        }, timeoutMs);
        req.on('error', (e) => fail(this.networkError(e, ac, timedOut)));
        req.end(payload);
      });
    } finally {
      this.inflight.delete(ac);
      opts.signal?.removeEventListener('abort', onOuterAbort);
    }
  }

  private statusError(op: Op, what: string, res: RawResponse): SyncTransportError {
    const failure = answerFailure(op, res.status, res.headers, res.body);
    let detail = '';
    try {
      const d = (JSON.parse(res.body.toString('utf8')) as { detail?: unknown }).detail;
      if (typeof d === 'string') detail = `: ${d.slice(0, 300)}`;
    } catch {
      // not problem+json
    }
    return new SyncTransportError(failure, `${what} answered ${res.status} ${failure.code}${detail}`);
  }

  private networkError(e: Error, ac: AbortController, timedOut: boolean): ShelfgateError {
    if (ac.signal.aborted || this.stopped) return new ShelfgateError(ErrorCode.STOPPED, 'request aborted', undefined, { cause: e });
    const failure = networkFailure(e, timedOut);
    const code = (e as { code?: string }).code;
    const msg =
      failure.kind === 'fatal'
        ? `TLS with ${this.base.host} failed: ${e.message} (${failure.code})`
        : timedOut
          ? `central did not answer: ${e.message}`
          : `cannot reach central at ${this.base.host}: ${e.message}${code ? ` (${code})` : ''}`;
    return new SyncTransportError(failure, msg, { cause: e });
  }
}
