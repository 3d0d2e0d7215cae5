/**
 * The gateway's one HTTP server (fastify 5), a core service: features register routes on it
 * (FeatureContext.http) and it carries kiosk lookups and pages now, and metrics, health and the
 * technician page next. It names no feature.
 *
 * Design choices:
 * - Off unless `http` is configured (an extra open port is a decision, and two test daemons must
 *   not fight over a fixed default port). Loopback by default; any other address serves HTTPS with
 *   `http.tls` (the same file settings as the bus's `mqtt.tls`), and plain HTTP there is refused
 *   by the config check unless `http.allow_plain_on_lan` (src/config/check.ts), like the bus.
 * - Authentication is HTTP Basic with the bus's users and roles, verified by the bus itself
 *   (`LocalBus.login`: the same cached verifier, bounded scrypt and per-(address, username)
 *   lockout), so a password guess costs the same and counts the same over MQTT and HTTP. A route
 *   declares the permission it needs (`read`, `operate`, `calibrate`, `admin` of
 *   src/core/commands.ts, or `public`); a user whose role lacks it gets 403.
 * - Every error is JSON `{ ok: false, error: { code, message } }` with a stable `SG_...` code and
 *   an HTTP status derived from the code (statusOf). Bodies are bounded (`body_limit_bytes`), a
 *   request must arrive within `request_timeout_ms`, sockets are bounded (`max_connections`) and
 *   so are server-sent event streams (`max_event_streams`). The server keeps no state per client
 *   beyond the open streams.
 * - `POST /api/v1/commands/<name>` runs any command of the core command registry with the
 *   caller's role (the HTTP twin of the bus's `request/<command>`): the registry checks the
 *   command's permission, as the bus's ACL does.
 *
 * The bound address is logged as `http listening` with its URL and reported by address()/url()
 * (the daemon's `gateway ready` line carries it, which is how the tests find port 0's port).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import type { Role } from '../bus/auth';
import { normalizeAddress } from '../bus/admission';
import { loadOne } from '../bus/listeners';
import type { HttpConfig } from '../config/schema';
import { roleHas, type CommandRegistry, type Permission } from '../core/commands';
import { ErrorCode, ShelfgateError, isShelfgateError } from '../errors';
import type { Service } from '../lifecycle';
import { LogLimiter, type Logger } from '../log';
import { CSRF_HEADER, SessionStore, sessionCookie, sessionIdFrom } from './sessions';

/** Who may call a route: a permission the caller's role must hold, or anyone (no credentials asked). */
export type HttpAccess = Permission | 'public';

export interface HttpUser {
  username: string;
  role: Role;
}

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE';

export interface HttpRoute {
  method: HttpMethod;
  /** fastify path, e.g. `/api/v1/lookup/:code`. */
  url: string;
  access: HttpAccess;
  /**
   * Returns the JSON body (or sends the reply itself, e.g. a page or an event stream, and returns
   * `reply`). Throw a ShelfgateError for an error answer (status from its code). `user` is null on
   * public routes.
   */
  handler(req: FastifyRequest, reply: FastifyReply, user: HttpUser | null): Promise<unknown> | unknown;
  /** Smaller body limit for this route (bytes). */
  bodyLimit?: number;
}

/** What a feature may do with the HTTP server (FeatureContext.http). */
export interface HttpRoutes {
  /** Registers a route (during build, before the server starts). Two routes on one method and path refuse to build. */
  route(r: HttpRoute): void;
  /**
   * Opens a server-sent event stream on `reply` (text/event-stream, a comment every 15 s to keep
   * it open through proxies), or throws BUSY (503) when `max_event_streams` are open. The stream
   * ends when the client goes or the server stops (`onClose` is called either way).
   */
  openEventStream(req: FastifyRequest, reply: FastifyReply): EventStream;
  /** The CSRF token of the request's login session (a page sends it back on changes), or null without a session. */
  csrfOf(req: FastifyRequest): string | null;
}

export interface EventStream {
  /** Sends one event (`data` as JSON); false if the stream is closed or the client does not keep up (the event is dropped). */
  send(event: string, data: unknown): boolean;
  close(): void;
  onClose(fn: () => void): void;
  readonly closed: boolean;
}

/** The bus's login (LocalBus.login), injected so this module does not need the broker. */
export type LoginFn = (address: string, username: string, password: string) => Promise<{ kind: 'ok'; user: HttpUser } | { kind: 'bad' | 'busy' | 'cancelled' | 'locked' | 'stopped' }>;

export interface HttpServerOptions {
  /** `http` of the config; undefined: the server stays off. */
  config: HttpConfig | undefined;
  login: LoginFn;
  commands: CommandRegistry;
  log: Logger;
  /** Keep-alive comment period of event streams; default 15 s. */
  heartbeatMs?: number;
}

/** HTTP status of an error code. */
export function statusOf(code: string): number {
  switch (code) {
    case ErrorCode.REQUEST_INVALID:
      return 400;
    case ErrorCode.BUS_AUTH_FAILED:
      return 401;
    case ErrorCode.BUS_NOT_AUTHORIZED:
      return 403;
    case ErrorCode.NOT_FOUND:
      return 404;
    case ErrorCode.BUSY:
    case ErrorCode.STOPPED:
    case ErrorCode.DEVICE_UNREACHABLE:
      return 503;
    case ErrorCode.DEVICE_TIMEOUT:
      return 504;
    default:
      return 500;
  }
}

/** Longest username and password accepted in a Basic header (a configured username is at most 64 characters). */
const MAX_USERNAME = 64;
const MAX_PASSWORD = 1024;
/** Bytes an event stream may have queued in its socket before further events to it are dropped. */
const MAX_STREAM_BACKLOG = 256 * 1024;
const REALM = 'Basic realm="shelfgate", charset="UTF-8"';

interface Counters {
  requests: number;
  errors4xx: number;
  errors5xx: number;
  authMissing: number;
  authRefused: number;
  lockedOut: number;
  forbidden: number;
  streamsOpened: number;
  streamsRefused: number;
  streamEventsDropped: number;
}

export class HttpServer implements Service, HttpRoutes {
  readonly name = 'http';
  private readonly routes: HttpRoute[] = [];
  private readonly keys = new Set<string>();
  private app: FastifyInstance | null = null;
  private readonly streams = new Set<StreamImpl>();
  private readonly limiter: LogLimiter;
  private scheme: 'http' | 'https' = 'http';
  /** Login sessions of web pages (./sessions.ts): a cookie instead of Basic credentials. */
  readonly sessions: SessionStore;
  private readonly counters: Counters = {
    requests: 0,
    errors4xx: 0,
    errors5xx: 0,
    authMissing: 0,
    authRefused: 0,
    lockedOut: 0,
    forbidden: 0,
    streamsOpened: 0,
    streamsRefused: 0,
    streamEventsDropped: 0,
  };

  constructor(private readonly o: HttpServerOptions) {
    this.limiter = new LogLimiter(o.log);
    const c = o.config;
    this.sessions = new SessionStore({ idleMs: (c?.session_idle_s ?? 1800) * 1000, maxAgeMs: (c?.session_max_s ?? 43_200) * 1000, maxSessions: c?.max_sessions ?? 64 });
    this.route({ method: 'POST', url: '/api/v1/commands/:name', access: 'read', handler: (req, _reply, user) => this.runCommand(req, user!) });
    this.route({ method: 'POST', url: '/api/v1/session', access: 'public', bodyLimit: 4096, handler: (req, reply) => this.login(req, reply) });
    this.route({
      method: 'DELETE',
      url: '/api/v1/session',
      access: 'public',
      handler: (req, reply) => {
        this.sessions.end(sessionIdFrom(req.headers.cookie));
        reply.header('set-cookie', sessionCookie(null, { secure: this.scheme === 'https', maxAgeS: 0 }));
        return { ok: true, data: null };
      },
    });
  }

  /** True when `http` is configured (the server listens once started). */
  get enabled(): boolean {
    return this.o.config !== undefined;
  }

  route(r: HttpRoute): void {
    if (this.app) throw new Error(`route ${r.method} ${r.url} registered after the HTTP server started`);
    const key = `${r.method} ${r.url}`;
    if (this.keys.has(key)) throw new Error(`HTTP route ${key} is registered twice`);
    this.keys.add(key);
    this.routes.push(r);
  }

  async start(): Promise<void> {
    const c = this.o.config;
    if (this.app || !c) return;
    const files = c.tls ? loadOne({ cert_file: c.tls.cert_file, key_file: c.tls.key_file }, 'http.tls') : null;
    this.scheme = files ? 'https' : 'http';
    const opts: FastifyServerOptions & { https?: object } = {
      logger: false,
      bodyLimit: c.body_limit_bytes,
      requestTimeout: c.request_timeout_ms,
      // idle keep-alive sockets go soon; a request's headers must come within the request timeout
      keepAliveTimeout: 5_000,
      connectionTimeout: 0,
      return503OnClosing: true,
      forceCloseConnections: true,
      trustProxy: false,
      routerOptions: { maxParamLength: 128, ignoreTrailingSlash: true },
      ...(files ? { https: { cert: files.cert, key: files.key, minVersion: 'TLSv1.2' } } : {}),
    };
    const app = Fastify(opts) as unknown as FastifyInstance;
    app.server.maxConnections = c.max_connections;
    app.server.headersTimeout = Math.min(c.request_timeout_ms, 60_000);
    app.addHook('onRequest', async () => {
      this.counters.requests++;
    });
    app.addHook('onResponse', async (_req, reply) => {
      if (reply.statusCode >= 500) this.counters.errors5xx++;
      else if (reply.statusCode >= 400) this.counters.errors4xx++;
    });
    app.setErrorHandler((err, req, reply) => {
      if (isShelfgateError(err)) return this.sendError(reply, err.code, err.message);
      const fe = err as { statusCode?: number; code?: string; message?: string };
      const status = typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500 ? fe.statusCode : 500;
      if (status === 500) {
        this.limiter.error(`route:${req.routeOptions.url ?? '?'}`, { url: req.routeOptions.url, err: fe.message }, 'HTTP handler failed');
        return this.sendError(reply, ErrorCode.INTERNAL, 'internal error', 500);
      }
      // fastify's own: body too large (413), bad JSON (400), unsupported media type (415), ...
      return this.sendError(reply, ErrorCode.REQUEST_INVALID, `${fe.message ?? 'bad request'}${fe.code ? ` (${fe.code})` : ''}`, status);
    });
    app.setNotFoundHandler((req, reply) => this.sendError(reply, ErrorCode.NOT_FOUND, `no route ${req.method} ${req.url.split('?')[0]!.slice(0, 200)}`));
    for (const r of this.routes) {
      app.route({
        method: r.method,
        url: r.url,
        ...(r.bodyLimit !== undefined ? { bodyLimit: r.bodyLimit } : {}),
        handler: async (req, reply) => {
          const user = r.access === 'public' ? null : await this.authenticate(req, reply, r.access);
          if (user === undefined) return reply; // answered (401/403/429/503)
          return r.handler(req, reply, user);
        },
      });
    }
    try {
      await app.listen({ host: c.host, port: c.port });
    } catch (e) {
      await app.close().catch(() => undefined);
      throw e;
    }
    this.app = app;
    this.o.log.info({ url: this.url(), ...this.address(), tls: files !== null, routes: this.routes.length }, 'http listening');
  }

  async stop(): Promise<void> {
    const app = this.app;
    if (!app) return;
    this.app = null;
    this.sessions.clear();
    for (const s of [...this.streams]) s.close();
    this.streams.clear();
    try {
      await app.close();
    } catch (e) {
      this.o.log.warn({ err: (e as Error).message }, 'http server did not close cleanly');
    }
    this.o.log.info('http stopped');
  }

  /** Bound address, after start(); null while off. */
  address(): { host: string; port: number } | null {
    const a = this.app?.server.address() as AddressInfo | string | null | undefined;
    if (!a || typeof a === 'string') return null;
    return { host: a.address, port: a.port };
  }

  /** Base URL, e.g. `http://127.0.0.1:8080`, after start(); null while off. */
  url(): string | null {
    const a = this.address();
    if (!a) return null;
    const host = a.host.includes(':') ? `[${a.host}]` : a.host;
    return `${this.scheme}://${host}:${a.port}`;
  }

  /** Its counters, with the event streams and login sessions open now (src/ops/metrics.ts exports them). */
  stats(): Counters & { streamsOpen: number; sessions: number } {
    return { ...this.counters, streamsOpen: this.streams.size, sessions: this.sessions.size };
  }

  openEventStream(req: FastifyRequest, reply: FastifyReply): EventStream {
    const c = this.o.config;
    if (!c || !this.app) throw new ShelfgateError(ErrorCode.STOPPED, 'http server is not running');
    if (this.streams.size >= c.max_event_streams) {
      this.counters.streamsRefused++;
      this.limiter.warn('streams-full', { max: c.max_event_streams }, 'too many event streams open: stream refused');
      throw new ShelfgateError(ErrorCode.BUSY, `more than ${c.max_event_streams} event streams are open: try again later`);
    }
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    res.write(': open\n\n');
    const s = new StreamImpl(req.raw, res, this.o.heartbeatMs ?? 15_000, () => {
      this.counters.streamEventsDropped++;
    });
    this.streams.add(s);
    this.counters.streamsOpened++;
    s.onClose(() => this.streams.delete(s));
    return s;
  }

  // ---- internals ----

  private sendError(reply: FastifyReply, code: string, message: string, status = statusOf(code)): FastifyReply {
    // a page with its own log-in form says so (x-shelfgate-page): no Basic challenge, or the browser would put up its prompt
    if (status === 401 && reply.request.headers['x-shelfgate-page'] === undefined) reply.header('www-authenticate', REALM);
    return reply.code(status).header('cache-control', 'no-store').send({ ok: false, error: { code, message } });
  }

  /**
   * `POST /api/v1/session {username, password}`: the bus's login (same verifier and lockout as
   * Basic and MQTT); on success a session cookie and `{username, role}`. A wrong password is 401
   * without the Basic challenge (the page shows its own form, not the browser's prompt).
   */
  private async login(req: FastifyRequest, reply: FastifyReply): Promise<unknown> {
    const b = req.body as { username?: unknown; password?: unknown } | undefined;
    if (!b || typeof b.username !== 'string' || typeof b.password !== 'string' || b.username.length === 0 || b.username.length > MAX_USERNAME || b.password.length > MAX_PASSWORD)
      throw new ShelfgateError(ErrorCode.REQUEST_INVALID, 'body must be {"username": "...", "password": "..."}');
    const address = normalizeAddress(req.socket.remoteAddress);
    const r = await this.o.login(address, b.username, b.password);
    if (r.kind !== 'ok') {
      this.counters.authRefused++;
      const status = r.kind === 'locked' ? 429 : r.kind === 'bad' ? 401 : 503;
      const message = r.kind === 'locked' ? 'locked out after too many failed logins: try again later' : r.kind === 'bad' ? 'bad username or password' : 'the gateway is busy or stopping: try again';
      this.limiter.warn(`session-login:${address}`, { address, username: b.username.slice(0, 64), result: r.kind }, 'web login refused');
      return reply.code(status).header('cache-control', 'no-store').send({ ok: false, error: { code: status === 503 ? ErrorCode.BUSY : ErrorCode.BUS_AUTH_FAILED, message } });
    }
    const s = this.sessions.create(r.user.username, r.user.role);
    this.o.log.info({ username: r.user.username, role: r.user.role, address }, 'web login');
    reply.header('set-cookie', sessionCookie(s.id, { secure: this.scheme === 'https', maxAgeS: Math.round((this.o.config?.session_max_s ?? 43_200)) }));
    reply.header('cache-control', 'no-store');
    return { ok: true, data: { username: s.username, role: s.role } };
  }

  /** The CSRF token of the request's session (for a page's state), or null without one. */
  csrfOf(req: FastifyRequest): string | null {
    return this.sessions.get(sessionIdFrom(req.headers.cookie))?.csrf ?? null;
  }

  /**
   * The caller, or undefined when the reply has been sent (refused). A valid session cookie
   * counts first (a state-changing request with it must carry the session's CSRF token), then HTTP
   * Basic.
   */
  private async authenticate(req: FastifyRequest, reply: FastifyReply, access: Permission): Promise<HttpUser | undefined> {
    const session = this.sessions.get(sessionIdFrom(req.headers.cookie));
    if (session) {
      if (req.method !== 'GET' && req.method !== 'HEAD' && !SessionStore.csrfMatches(session, req.headers[CSRF_HEADER])) {
        this.counters.forbidden++;
        this.sendError(reply, ErrorCode.BUS_NOT_AUTHORIZED, `a request made with a session cookie needs the session's ${CSRF_HEADER} header`);
        return undefined;
      }
      if (!roleHas(session.role, access)) {
        this.counters.forbidden++;
        this.sendError(reply, ErrorCode.BUS_NOT_AUTHORIZED, `this needs the ${access} permission, which role ${session.role} does not have`);
        return undefined;
      }
      return { username: session.username, role: session.role };
    }
    const creds = parseBasic(req.headers.authorization);
    const address = normalizeAddress(req.socket.remoteAddress);
    if (!creds) {
      this.counters.authMissing++;
      this.sendError(reply, ErrorCode.BUS_AUTH_FAILED, 'credentials required (HTTP Basic, a bus user)');
      return undefined;
    }
    if (creds.username.length > MAX_USERNAME || creds.password.length > MAX_PASSWORD) {
      this.counters.authRefused++;
      this.sendError(reply, ErrorCode.BUS_AUTH_FAILED, 'bad username or password');
      return undefined;
    }
    const r = await this.o.login(address, creds.username, creds.password);
    switch (r.kind) {
      case 'ok':
        if (!roleHas(r.user.role, access)) {
          this.counters.forbidden++;
          this.limiter.warn(`forbidden:${r.user.username}:${req.routeOptions.url}`, { username: r.user.username, role: r.user.role, url: req.routeOptions.url, needs: access }, 'HTTP request refused: role lacks the permission');
          this.sendError(reply, ErrorCode.BUS_NOT_AUTHORIZED, `this needs the ${access} permission, which role ${r.user.role} does not have`);
          return undefined;
        }
        return r.user;
      case 'locked':
        this.counters.lockedOut++;
        this.limiter.warn(`locked:${address}`, { address, username: creds.username.slice(0, 64) }, 'HTTP login refused: locked out after failed logins');
        reply.code(429).header('cache-control', 'no-store').send({ ok: false, error: { code: ErrorCode.BUS_AUTH_FAILED, message: 'locked out after too many failed logins: try again later' } });
        return undefined;
      case 'busy':
      case 'cancelled':
        this.sendError(reply, ErrorCode.BUSY, 'too many logins in progress: try again');
        return undefined;
      case 'stopped':
        this.sendError(reply, ErrorCode.STOPPED, 'gateway is stopping');
        return undefined;
      default:
        this.counters.authRefused++;
        this.limiter.warn(`auth:${address}`, { address, username: creds.username.slice(0, 64) }, 'HTTP login refused: bad username or password');
        this.sendError(reply, ErrorCode.BUS_AUTH_FAILED, 'bad username or password');
        return undefined;
    }
  }

  private async runCommand(req: FastifyRequest, user: HttpUser): Promise<unknown> {
    const name = (req.params as { name: string }).name;
    // the bus's rule: a command the role may not send (unknown ones need `operate`) is refused before anything else
    if (!this.o.commands.may(user.role, name)) {
      this.counters.forbidden++;
      throw new ShelfgateError(ErrorCode.BUS_NOT_AUTHORIZED, `${name} needs the ${this.o.commands.permissionOf(name)} permission, which role ${user.role} does not have`);
    }
    const body = req.body ?? {};
    if (typeof body !== 'object' || Array.isArray(body)) throw new ShelfgateError(ErrorCode.REQUEST_INVALID, 'request body must be a JSON object');
    const data = await this.o.commands.execute(name, body, { username: user.username, role: user.role, via: 'http' });
    return { ok: true, data: data ?? null };
  }
}

/** `Basic <base64(user:password)>` (RFC 7617), or null if absent or malformed. */
export function parseBasic(header: string | undefined): { username: string; password: string } | null {
  if (!header) return null;
  const m = /^Basic +([A-Za-z0-9+/=]{1,2048})\s*$/i.exec(header);
  if (!m) return null;
  const text = Buffer.from(m[1]!, 'base64').toString('utf8');
  const i = text.indexOf(':');
  if (i <= 0) return null;
  return { username: text.slice(0, i), password: text.slice(i + 1) };
}

class StreamImpl implements EventStream {
  closed = false;
  private readonly closers: Array<() => void> = [];
  private readonly timer: NodeJS.Timeout;
  private readonly end: () => void;

  constructor(
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    heartbeatMs: number,
    private readonly dropped: () => void,
  ) {
    this.timer = setInterval(() => {
      if (!this.closed) this.res.write(': keep-alive\n\n');
    }, heartbeatMs);
    this.timer.unref();
    this.end = (): void => this.close();
    req.once('close', this.end);
    res.once('close', this.end);
    res.once('error', this.end);
  }

  send(event: string, data: unknown): boolean {
    if (this.closed) return false;
    if (this.res.writableLength > MAX_STREAM_BACKLOG) {
      this.dropped();
      return false;
    }
    this.res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    return true;
  }

  onClose(fn: () => void): void {
    if (this.closed) fn();
    else this.closers.push(fn);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.req.off('close', this.end);
    this.res.off('close', this.end);
    this.res.end();
    const fns = this.closers.splice(0);
    for (const fn of fns) {
      try {
        fn();
      } catch {
        // a closer's failure must not keep the others from running
      }
    }
  }
}
