/**
 * The HTTPS transport to central (docs/central-api.yaml), on node:https with one keep-alive agent.
 *
 * - TLS certificate verification is always on; there is no option to turn it off. `ca_file`
 *   replaces the system CAs (a retailer's private CA); `cert_file`/`key_file` add a client
 *   certificate (mutual TLS). Plain `http://` is accepted only for a loopback host (the reference
 *   simulator on 127.0.0.1, tests): a bearer token never crosses a network in clear.
 * - The bearer token is read from `token_file` at start(); a missing or empty file is a clear
 *   CONFIG_UNREADABLE error. No token_file: no Authorization header.
 * - Errors: network failures, timeouts, 5xx and 429 reject SYNC_RETRYABLE (details.retryAfterMs
 *   from Retry-After); 400/401/403/410/413/415/422 and other 4xx reject SYNC_FATAL with the
 *   problem+json `code` (details: {status, code, maxEvents?, maxBytes?}). A server certificate that
 *   does not verify, or a TLS alert from the server, rejects SYNC_FATAL with details.tls (an
 *   operator must fix it; the sync service retries at its maximum backoff).
 * - Request bodies over 8 KiB are gzip-compressed (`Content-Encoding: gzip`, which central MUST
 *   accept).
 * - stop() aborts every request in flight (they reject STOPPED) and closes the agent's sockets.
 */
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { gzip as gzipCb } from 'node:zlib';
import type { SyncConfig } from '../config/schema';
import { ErrorCode, ShelfgateError } from '../errors';
import type { Logger } from '../log';
import type { Change, ChangeAck, SeqGap, SyncTransport, UploadEvent, UploadResult } from './types';

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
}

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** Codes of TLS verification failures (OpenSSL / Node) that retrying cannot fix (also used by the MQTT bridge). */
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
 * Wire change (central-api.yaml `Change`: type `slot`, numeric slot) to the contract's Change type
 * (src/sync/types.ts: `slot_assignment`, slot as a string). Shared with the MQTT bridge, so the sync
 * service sees the same shapes from both transports.
 */
export function fromWire(raw: unknown): Change {
  const o = (raw ?? {}) as Record<string, unknown>;
  if (o.type === 'slot') {
    return { ...(o as object), type: 'slot_assignment', slot: typeof o.slot === 'number' ? String(o.slot) : (o.slot as string) } as Change;
  }
  return o as unknown as Change;
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
        ...(ca ? { ca } : {}),
        ...(cert ? { cert } : {}),
        ...(key ? { key } : {}),
      });
    } else {
      this.agent = new http.Agent({ keepAlive: true, maxSockets });
    }
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

  private path(op: 'events:batch' | 'changes' | 'changes:ack'): string {
    const prefix = this.base.pathname.replace(/\/+$/, '');
    return `${prefix}/v1/stores/${encodeURIComponent(this.o.storeId)}/${op}`;
  }

  async upload(batchId: string, events: UploadEvent[], gaps?: SeqGap[]): Promise<UploadResult[]> {
    const body = JSON.stringify(gaps && gaps.length > 0 ? { events, gaps } : { events });
    const res = await this.request('POST', this.path('events:batch'), { body, headers: { 'idempotency-key': batchId } });
    const parsed = this.json(res) as { results?: unknown };
    if (!Array.isArray(parsed.results)) throw this.contract('events:batch answer has no results array');
    return parsed.results.map((r: unknown) => {
      const x = (r ?? {}) as { event_id?: unknown; seq?: unknown; status?: unknown; error?: { code?: unknown; detail?: unknown; message?: unknown } };
      const status = x.status === 'accepted' || x.status === 'duplicate' || x.status === 'rejected' ? x.status : null;
      if (status === null || typeof x.event_id !== 'string') throw this.contract('events:batch result without event_id or with an unknown status');
      const out: UploadResult = { event_id: x.event_id, seq: typeof x.seq === 'number' ? x.seq : -1, status };
      if (x.error) {
        out.error = { code: String(x.error.code ?? 'unknown') };
        const m = x.error.detail ?? x.error.message;
        if (typeof m === 'string') out.error.message = m;
      }
      return out;
    });
  }

  async fetchChanges(cursor: string | null, waitS: number, signal: AbortSignal): Promise<{ changes: Change[]; nextCursor: string | null }> {
    const wait = Math.max(0, Math.min(30, Math.floor(waitS)));
    const q = new URLSearchParams({ wait: String(wait), limit: '500' });
    if (cursor !== null && cursor !== '') q.set('cursor', cursor);
    const res = await this.request('GET', `${this.path('changes')}?${q.toString()}`, {
      signal,
      timeoutMs: Math.max(this.o.config.request_timeout_ms, wait * 1000 + 15_000),
    });
    const parsed = this.json(res) as { changes?: unknown; next_cursor?: unknown };
    if (!Array.isArray(parsed.changes)) throw this.contract('changes answer has no changes array');
    return { changes: parsed.changes.map(fromWire), nextCursor: typeof parsed.next_cursor === 'string' ? parsed.next_cursor : null };
  }

  async ack(acks: ChangeAck[]): Promise<void> {
    if (acks.length === 0) return;
    const res = await this.request('POST', this.path('changes:ack'), { body: JSON.stringify({ acks }) });
    this.json(res);
  }

  // ---- HTTP ----

  private contract(msg: string): ShelfgateError {
    return new ShelfgateError(ErrorCode.SYNC_FATAL, `central broke the contract: ${msg}`, { code: 'contract' });
  }

  private json(res: RawResponse): unknown {
    try {
      return JSON.parse(res.body.toString('utf8')) as unknown;
    } catch {
      throw this.contract(`answer ${res.status} is not JSON`);
    }
  }

  private async request(
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
    const lib = this.base.protocol === 'https:' ? https : http;
    try {
      return await new Promise<RawResponse>((resolve, reject) => {
        let settled = false;
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
            const chunks: Buffer[] = [];
            let size = 0;
            res.on('data', (c: Buffer) => {
              size += c.length;
              if (size > 16 * 1024 * 1024) {
                req.destroy(new Error('answer larger than 16 MiB'));
                return;
              }
              chunks.push(c);
            });
            res.on('end', () => {
              if (settled) return;
              const raw: RawResponse = { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) };
              if (raw.status >= 200 && raw.status < 300) {
                settled = true;
                clearTimeout(timer);
                resolve(raw);
              } else {
                fail(this.statusError(method, path, raw));
              }
            });
            res.on('error', (e) => fail(this.networkError(e, ac, timedOut)));
            res.on('aborted', () => fail(this.networkError(new Error('answer aborted'), ac, timedOut)));
          },
        );
        let timedOut = false;
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

  private statusError(method: string, path: string, res: RawResponse): ShelfgateError {
    let code = 'http_' + res.status;
    let detail = '';
    const ext: Record<string, unknown> = {};
    try {
      const p = JSON.parse(res.body.toString('utf8')) as Record<string, unknown>;
      if (typeof p.code === 'string') code = p.code;
      if (typeof p.detail === 'string') detail = p.detail;
      if (typeof p.max_events === 'number') ext.maxEvents = p.max_events;
      if (typeof p.max_bytes === 'number') ext.maxBytes = p.max_bytes;
    } catch {
      // not problem+json: keep the status
    }
    const what = `${method} ${path.split('?')[0]} answered ${res.status} ${code}${detail ? `: ${detail}` : ''}`;
    const retryAfterMs = parseRetryAfter(res.headers['retry-after']);
    if (res.status === 429 || res.status >= 500) {
      return new ShelfgateError(ErrorCode.SYNC_RETRYABLE, what, { status: res.status, code, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) });
    }
    return new ShelfgateError(ErrorCode.SYNC_FATAL, what, { status: res.status, code, ...ext });
  }

  private networkError(e: Error, ac: AbortController, timedOut: boolean): ShelfgateError {
    if (ac.signal.aborted || this.stopped) return new ShelfgateError(ErrorCode.STOPPED, 'request aborted', undefined, { cause: e });
    const code = (e as { code?: string }).code ?? '';
    if (TLS_VERIFY_CODES.has(code) || code.startsWith('ERR_SSL_') || code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
      return new ShelfgateError(ErrorCode.SYNC_FATAL, `TLS with ${this.base.host} failed: ${e.message} (${code})`, { tls: true, code }, { cause: e });
    }
    return new ShelfgateError(
      ErrorCode.SYNC_RETRYABLE,
      timedOut ? `central did not answer: ${e.message}` : `cannot reach central at ${this.base.host}: ${e.message}${code ? ` (${code})` : ''}`,
      { code: timedOut ? 'timeout' : code || 'network' },
      { cause: e },
    );
  }
}
