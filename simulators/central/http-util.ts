/** Small HTTP helpers for the reference central: JSON bodies, problem+json (RFC 9457), gzip. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { gunzip } from 'node:zlib';
import { promisify } from 'node:util';
import { LIMITS, type Problem, type ProblemCode } from './types';

const gunzipAsync = promisify(gunzip);

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  410: 'Gone',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/** The `type` URI of a problem code: stable, documented in central-api.yaml (Problem.type). */
export function problemType(code: ProblemCode): string {
  return `https://shelfgate.dev/problems/${code.replace(/_/g, '-')}`;
}

/** Sends JSON; returns false (sending nothing) if the text would exceed `maxBytes`. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}, maxBytes = Infinity): boolean {
  if (res.headersSent || res.destroyed) return true;
  const text = JSON.stringify(body);
  if (text.length > maxBytes / 4 && Buffer.byteLength(text) > maxBytes) return false;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', ...headers });
  res.end(text);
  return true;
}

/** `detail` is cut to LIMITS.maxProblemDetail characters (answers stay small whatever was wrong). */
export function sendProblem(
  res: ServerResponse,
  status: number,
  code: ProblemCode,
  detail: string,
  opts: { headers?: Record<string, string>; instance?: string; ext?: Record<string, unknown> } = {},
): void {
  if (res.headersSent || res.destroyed) return;
  const body: Problem = {
    type: problemType(code),
    title: TITLES[status] ?? 'Error',
    status,
    code,
    detail: detail.length > LIMITS.maxProblemDetail ? `${detail.slice(0, LIMITS.maxProblemDetail - 1)}…` : detail,
    ...(opts.instance ? { instance: opts.instance } : {}),
    ...opts.ext,
  };
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/problem+json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...opts.headers,
  });
  res.end(text);
}

export class BodyError extends Error {
  constructor(
    readonly status: 400 | 413 | 415,
    readonly code: 'invalid_request' | 'payload_too_large' | 'unsupported_media_type',
    message: string,
  ) {
    super(message);
    this.name = 'BodyError';
  }
}

/**
 * Reads a JSON body of at most `maxBytes` (after gunzip, if Content-Encoding: gzip). Rejects with
 * BodyError; on 413 the rest of the body is not read (the caller answers with Connection: close).
 */
export async function readJsonBody(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  return (await readJsonBodyRaw(req, maxBytes)).value;
}

/** readJsonBody, with the decompressed bytes (an Idempotency-Key's fingerprint covers them). */
export async function readJsonBodyRaw(req: IncomingMessage, maxBytes: number): Promise<{ value: unknown; raw: Buffer }> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/json') throw new BodyError(415, 'unsupported_media_type', 'Content-Type must be application/json');
  const encoding = (req.headers['content-encoding'] ?? 'identity').toLowerCase();
  if (encoding !== 'identity' && encoding !== 'gzip') throw new BodyError(415, 'unsupported_media_type', `Content-Encoding ${encoding} is not supported (identity, gzip)`);
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > maxBytes) throw new BodyError(413, 'payload_too_large', `body of ${declared} bytes exceeds ${maxBytes}`);
  const chunks: Buffer[] = [];
  let size = 0;
  await new Promise<void>((resolve, reject) => {
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size > maxBytes) {
        cleanup();
        req.pause();
        reject(new BodyError(413, 'payload_too_large', `body exceeds ${maxBytes} bytes`));
        return;
      }
      chunks.push(c);
    };
    const onEnd = (): void => {
      cleanup();
      resolve();
    };
    const onError = (e: Error): void => {
      cleanup();
      reject(e);
    };
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
  let raw = Buffer.concat(chunks);
  if (encoding === 'gzip') {
    try {
      raw = await gunzipAsync(raw, { maxOutputLength: maxBytes });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw new BodyError(413, 'payload_too_large', `decompressed body exceeds ${maxBytes} bytes`);
      throw new BodyError(400, 'invalid_request', 'body is not valid gzip');
    }
  }
  try {
    return { value: JSON.parse(raw.toString('utf8')) as unknown, raw };
  } catch {
    throw new BodyError(400, 'invalid_request', 'body is not valid JSON');
  }
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
