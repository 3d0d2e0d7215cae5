/**
 * The bus's LAN listeners, beside the plain loopback one of broker.ts:
 *
 * - `mqtt.tls`: MQTT over TLS (mqtts), a node:tls server. Each TLS socket goes to the broker as is.
 * - `mqtt.wss`: MQTT over secure WebSockets (browsers), an https server whose configured path
 *   upgrades (ws package) and whose every other request gets 404. The WebSocket is wrapped in a
 *   Duplex (ws createWebSocketStream) that the broker handles like a socket.
 *
 * Both: TLS 1.2 at least; certificate and key read once at start (a missing, unreadable or
 * unusable file fails start with the config key in the error). With `client_ca_file` the server
 * asks for a client certificate but does not require one (a password login still works); a
 * certificate verified against that CA is reported by verifiedCertCn() and the broker maps its
 * subject CN to a user (`users[].cert_cn`).
 *
 * The broker's per-connection protections (packet size guard, write coalescing, connection
 * tracking, remote address) apply to every listener: each connection is handed to
 * `hooks.accept(stream, address)`, the one entry point of the plain listener too. What only a
 * listener here can see (a failed TLS handshake, a refused upgrade, a WebSocket frame over
 * max_packet_bytes or not binary) is counted here (stats()) or reported through `hooks.violation`.
 *
 * Handles: every accepted TCP socket is tracked from its first byte (before the TLS handshake or
 * the HTTP upgrade), so close() leaves none behind. A socket gets `connectTimeoutMs` for the TLS
 * handshake and again for the HTTP upgrade request; after that the broker's CONNECT timeout runs.
 */
import { readFileSync } from 'node:fs';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Server as NetServer, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createSecureContext, createServer as createTlsServer, TLSSocket, type SecureContextOptions, type Server as TlsServer } from 'node:tls';
import { WebSocketServer, createWebSocketStream, type WebSocket } from 'ws';
import type { MqttConfig } from '../config/schema';
import { ErrorCode, ShelfgateError } from '../errors';
import type { LogLimiter, Logger } from '../log';
import { normalizeAddress } from './admission';
import { Tally } from '../util/tally';

export type ListenerKind = 'mqtt' | 'mqtts' | 'wss';

export interface ListenerAddress {
  kind: ListenerKind;
  host: string;
  port: number;
}

/**
 * WebSocket subprotocols accepted, in order of preference: "mqtt" [MQTT-6.0.0-3], and "mqttv3.1",
 * which MQTT 3.1 clients (Paho JS with protocol version 3) offer alone. Selecting it for them departs
 * from [MQTT-6.0.0-4] (the server selects "mqtt"); a client offering "mqtt" always gets "mqtt".
 */
const WS_SUBPROTOCOLS = ['mqtt', 'mqttv3.1'] as const;

export interface ListenerCounters {
  /** TLS handshakes that failed (client does not trust our certificate, no common protocol, timeout, not TLS). */
  tlsHandshakeFailures: number;
  /** HTTP requests to the wss listener refused: other path (404), no MQTT subprotocol, or not an upgrade. */
  wsRefused: number;
  /** TCP sockets refused at accept: their address already had max_connections_per_address open on that listener. */
  addressRefused: number;
}

/** PEM material of one TLS listener, read at start. */
export interface ListenerFiles {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
}

export interface LoadedListenerFiles {
  tls?: ListenerFiles;
  wss?: ListenerFiles;
}

type ListenerTlsConfig = Pick<NonNullable<MqttConfig['tls']>, 'cert_file' | 'key_file' | 'client_ca_file'>;

function readPem(path: string, key: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new ShelfgateError(ErrorCode.CONFIG_UNREADABLE, `${key}: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, [{ path: key, message: `cannot read ${path}` }], { cause: e });
  }
}

/** Reads and checks one TLS listener's files; `at` is its config key (also the HTTP server's `http.tls`). */
export function loadOne(c: ListenerTlsConfig, at: string): ListenerFiles {
  const cert = readPem(c.cert_file, `${at}.cert_file`);
  const key = readPem(c.key_file, `${at}.key_file`);
  const ca = c.client_ca_file !== undefined ? readPem(c.client_ca_file, `${at}.client_ca_file`) : undefined;
  // parse them now: a wrong file is a config error at start, not a failed handshake per client
  try {
    createSecureContext({ cert, key });
  } catch (e) {
    const message = `not a usable PEM certificate and matching private key: ${(e as Error).message}`;
    throw new ShelfgateError(ErrorCode.CONFIG_INVALID, `${at}.cert_file / ${at}.key_file: ${message}`, [{ path: `${at}.cert_file`, message }], { cause: e });
  }
  if (ca) {
    try {
      createSecureContext({ ca });
    } catch (e) {
      const message = `not a usable PEM CA bundle: ${(e as Error).message}`;
      throw new ShelfgateError(ErrorCode.CONFIG_INVALID, `${at}.client_ca_file: ${message}`, [{ path: `${at}.client_ca_file`, message }], { cause: e });
    }
  }
  return { cert, key, ...(ca ? { ca } : {}) };
}

/**
 * Reads and checks the certificate files of `mqtt.tls` and `mqtt.wss`. Throws a ShelfgateError
 * (CONFIG_UNREADABLE / CONFIG_INVALID) whose message starts with the key, e.g. `mqtt.tls.cert_file`.
 */
export function loadListenerFiles(config: MqttConfig): LoadedListenerFiles {
  return {
    ...(config.tls ? { tls: loadOne(config.tls, 'mqtt.tls') } : {}),
    ...(config.wss ? { wss: loadOne(config.wss, 'mqtt.wss') } : {}),
  };
}

function tlsOptions(f: ListenerFiles): SecureContextOptions & { requestCert: boolean; rejectUnauthorized: boolean } {
  return {
    cert: f.cert,
    key: f.key,
    minVersion: 'TLSv1.2',
    // a client certificate is asked for only when there is a CA to verify it; none is required
    ...(f.ca ? { ca: f.ca, requestCert: true, rejectUnauthorized: false } : { requestCert: false, rejectUnauthorized: false }),
  };
}

/** The TLS socket under each wss connection's stream (for its client certificate). */
const tlsUnder = new WeakMap<object, TLSSocket>();

/**
 * The subject CN of the client certificate on this connection (a TLS socket, or the stream of a
 * wss connection), if the client sent one and it verified against the listener's client_ca_file.
 * undefined otherwise (plain listener, no certificate, another CA, expired, CN missing or repeated).
 */
export function verifiedCertCn(conn: object): string | undefined {
  const socket = conn instanceof TLSSocket ? conn : tlsUnder.get(conn);
  if (!socket || !socket.authorized) return undefined;
  const cn = socket.getPeerCertificate()?.subject?.CN as unknown;
  return typeof cn === 'string' && cn.length > 0 ? cn : undefined;
}

export interface ListenerHooks {
  /** Hands an established connection (TLS socket or wss stream) to the broker. */
  accept(stream: Duplex, address: string): void;
  /** A wss connection sent a frame over max_packet_bytes ('oversize') or broke the WebSocket protocol ('malformed'); it is closed. */
  violation(kind: 'oversize' | 'malformed', address: string): void;
  /** A connection was dropped because the listener had max_connections sockets. */
  dropped(): void;
  /** True while the broker stops or is stopped: new connections are closed at once. */
  stopping(): boolean;
}

export interface SecureListenersOptions {
  config: MqttConfig;
  files: LoadedListenerFiles;
  hooks: ListenerHooks;
  log: Logger;
  limiter: LogLimiter;
  /** Bound on the TLS handshake, and then on the HTTP upgrade request. */
  connectTimeoutMs: number;
}

interface Running {
  kind: 'mqtts' | 'wss';
  server: NetServer;
  /** Every TCP socket accepted and not yet closed, from before its TLS handshake. */
  sockets: Set<Socket>;
}

function noop(): void {}

/** The optional mqtts and wss listeners of one bus. start() once, close() once. */
export class SecureListeners {
  private readonly o: SecureListenersOptions;
  private readonly running: Running[] = [];
  private wss: WebSocketServer | null = null;
  private readonly counters: ListenerCounters = { tlsHandshakeFailures: 0, wsRefused: 0, addressRefused: 0 };

  constructor(opts: SecureListenersOptions) {
    this.o = opts;
  }

  /** Starts the configured listeners; on a failure (port taken) the ones already started stay for close(). */
  async start(): Promise<void> {
    const { config, files } = this.o;
    if (config.tls && files.tls) {
      const server = createTlsServer({ ...tlsOptions(files.tls), noDelay: true, handshakeTimeout: this.o.connectTimeoutMs }, (socket) => {
        this.o.hooks.accept(socket, socket.remoteAddress ?? 'unknown');
      });
      await this.listen('mqtts', server, config.tls.host, config.tls.port);
    }
    if (config.wss && files.wss) {
      const wsCfg = config.wss;
      const wss = new WebSocketServer({
        noServer: true,
        clientTracking: false,
        perMessageDeflate: false,
        // one WebSocket message is never buffered beyond an MQTT packet's bound: a bigger frame closes the connection (1009)
        maxPayload: config.max_packet_bytes,
        handleProtocols: (offered) => WS_SUBPROTOCOLS.find((p) => offered.has(p)) ?? false,
      });
      this.wss = wss;
      const server = createHttpsServer({
        ...tlsOptions(files.wss),
        noDelay: true,
        handshakeTimeout: this.o.connectTimeoutMs,
        headersTimeout: this.o.connectTimeoutMs,
        requestTimeout: this.o.connectTimeoutMs,
        keepAliveTimeout: 1_000,
      });
      server.on('request', (req: IncomingMessage, res: ServerResponse) => this.onPlainRequest(req, res, wsCfg.path));
      server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(wss, req, socket, head, wsCfg.path));
      server.on('clientError', (_err, socket: Duplex) => socket.destroy());
      await this.listen('wss', server, wsCfg.host, wsCfg.port);
    }
  }

  addresses(): ListenerAddress[] {
    const out: ListenerAddress[] = [];
    for (const r of this.running) {
      const a = r.server.address() as AddressInfo | null;
      if (a && typeof a === 'object') out.push({ kind: r.kind, host: a.address, port: a.port });
    }
    return out;
  }

  stats(): ListenerCounters {
    return { ...this.counters };
  }

  /** Stops accepting, closes every socket the listeners accepted (in handshake, upgrade or MQTT), resolves when the servers are closed. */
  async close(): Promise<void> {
    const running = this.running.splice(0);
    const closed = running.map((r) => new Promise<void>((resolve) => r.server.close(() => resolve())));
    for (const r of running) {
      for (const s of r.sockets) {
        s.on('error', noop); // a late ECONNRESET must not become an uncaught error
        s.destroy();
      }
      r.sockets.clear();
    }
    await Promise.all(closed);
    for (const r of running) r.server.removeAllListeners();
    this.wss?.close();
    this.wss = null;
  }

  private async listen(kind: 'mqtts' | 'wss', server: TlsServer | HttpsServer, host: string, port: number): Promise<void> {
    const { config, limiter, log } = this.o;
    const sockets = new Set<Socket>();
    server.maxConnections = config.max_connections;
    // Open sockets per address, from the TCP accept on: the broker's caps (admission.ts) only see a
    // connection once its TLS handshake (and, on wss, the upgrade) is done, so without this one
    // address could fill this listener's max_connections with sockets that never start TLS.
    const perAddress = new Tally<string>();
    server.on('connection', (socket: Socket) => {
      if (this.o.hooks.stopping()) {
        socket.destroy();
        return;
      }
      const address = normalizeAddress(socket.remoteAddress);
      const open = perAddress.get(address);
      if (open >= config.max_connections_per_address) {
        this.counters.addressRefused++;
        limiter.warn(`address:${kind}:${address}`, { listener: kind, address, max: config.max_connections_per_address }, 'too many sockets from this address (max_connections_per_address, TLS handshakes included): connection refused');
        socket.on('error', noop);
        socket.destroy();
        return;
      }
      perAddress.add(address);
      sockets.add(socket);
      socket.once('close', () => {
        sockets.delete(socket);
        perAddress.remove(address);
      });
    });
    server.on('drop', () => {
      this.o.hooks.dropped();
      limiter.warn(`max_connections:${kind}`, { listener: kind, max: config.max_connections }, 'max_connections reached: connection dropped');
    });
    server.on('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket) => {
      this.counters.tlsHandshakeFailures++;
      const address = socket.remoteAddress ?? 'unknown';
      limiter.warn(`tls-handshake:${kind}:${address}`, { listener: kind, address, err: err.code ?? err.message.slice(0, 200) }, 'TLS handshake failed: connection closed');
    });
    const r: Running = { kind, server, sockets };
    this.running.push(r);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port }, () => {
        server.removeListener('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => log.error({ listener: kind, err: err.message }, 'mqtt listener error'));
  }

  private onPlainRequest(req: IncomingMessage, res: ServerResponse, path: string): void {
    this.counters.wsRefused++;
    const onPath = pathOf(req.url) === path;
    res.writeHead(onPath ? 426 : 404, { 'content-type': 'text/plain', connection: 'close', ...(onPath ? { upgrade: 'websocket' } : {}) });
    res.end(onPath ? 'MQTT over WebSocket: upgrade required\n' : 'not found\n');
  }

  private onUpgrade(wss: WebSocketServer, req: IncomingMessage, socket: Duplex, head: Buffer, path: string): void {
    const address = req.socket.remoteAddress ?? 'unknown';
    if (this.o.hooks.stopping()) return void socket.destroy();
    if (pathOf(req.url) !== path) return this.refuseUpgrade(socket, 404, 'Not Found', address, 'WebSocket upgrade on another path: 404');
    const offered = String(req.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((p) => p.trim());
    if (!WS_SUBPROTOCOLS.some((p) => offered.includes(p))) {
      // [MQTT-6.0.0-3]: the client must offer "mqtt"; one that does not is not speaking MQTT
      return this.refuseUpgrade(socket, 400, 'Bad Request', address, 'WebSocket upgrade without the mqtt subprotocol: refused');
    }
    wss.handleUpgrade(req, socket, head, (ws) => this.onWebSocket(ws, req.socket as TLSSocket, address));
  }

  private refuseUpgrade(socket: Duplex, status: number, reason: string, address: string, msg: string): void {
    this.counters.wsRefused++;
    this.o.limiter.warn(`ws-refused:${status}:${address}`, { address, status }, msg);
    socket.on('error', noop);
    socket.once('finish', () => socket.destroy());
    socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  }

  private onWebSocket(ws: WebSocket, tls: TLSSocket, address: string): void {
    const { hooks } = this.o;
    const stream = createWebSocketStream(ws);
    ws.on('error', (err: Error & { code?: string }) => {
      // ws closes the connection itself (close code 1009 / 1002) after this
      hooks.violation(err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' ? 'oversize' : 'malformed', address);
    });
    // runs before the stream's own listener: a text frame never reaches the MQTT parser
    ws.prependListener('message', (_data, isBinary) => {
      if (isBinary || stream.destroyed) return;
      // [MQTT-6.0.0-1]: MQTT data goes in binary frames; any other data frame closes the connection
      hooks.violation('malformed', address);
      stream.destroy();
    });
    // all writes of one event loop turn (broker.ts coalesceWrites corks the stream) go out as one WebSocket message
    stream._writev = (chunks, callback) => {
      ws.send(chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk as Buffer)), callback);
    };
    tlsUnder.set(stream, tls);
    hooks.accept(stream, address);
  }
}

/** The path of a request target, without the query. */
function pathOf(url: string | undefined): string {
  const u = url ?? '/';
  const q = u.indexOf('?');
  return q >= 0 ? u.slice(0, q) : u;
}
