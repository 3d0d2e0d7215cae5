/**
 * The local MQTT bus: an embedded aedes broker (MQTT 3.1/3.1.1 only) on a TCP port, with scrypt
 * users, lockout per address and username, connection caps (admission.ts), the role ACL of acl.ts,
 * a packet size guard, and an in-process API for the gateway (publish, request handlers).
 *
 * Wire path of one connection:
 *   net.Socket (its push() guarded by MqttLengthScanner: refuses oversized / malformed lengths
 *   before they are buffered) -> aedes client (mqtt-packet parser, handlers per packet type)
 * No stream sits between the socket and aedes: a Duplex hop per connection cost more than all
 * our per-message checks together (bench/mqtt-bus.ts).
 * The mqtts and wss listeners (listeners.ts) hand their connections (a TLS socket; a wss
 * connection's stream) to the same onConnection, so the guard, write coalescing, tracking and
 * address apply to every listener; a verified client certificate may name the user (cert_cn).
 *
 * aedes hooks used (node_modules/aedes/docs/Aedes.md): preConnect (stopping), authenticate
 * (CONNACK 4 bad credentials, 5 not authorized or locked out, 3 busy or a connection cap, 2 client id
 * owned by another user), authorizePublish (closes the connection on a denied publish, allowed by
 * [MQTT-3.3.5-2]), authorizeSubscribe (a denied filter is negated: SUBACK 0x80), authorizeForward
 * (delivery re-checked per message), published (routes `request/<command>`).
 * Every publish (gateway, clients, wills) is handed to the subscribers in the order it was made
 * (publish-order.ts): without that, aedes 1.2 drops a retained message overtaken by a live one.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { writeToStream } from 'mqtt-packet';
import { Aedes, type AedesPublishPacket, type Client, type PublishPacket, type Subscription } from 'aedes';
import type { MqttConfig, MqttUser } from '../config/schema';
import { ErrorCode, ShelfgateError, isShelfgateError } from '../errors';
import type { Service } from '../lifecycle';
import { LogLimiter, type Logger } from '../log';
import { AclDecisionCache, AclRules, CORE_TOPIC_AREAS, canPublish, canReceive, canSubscribe, requestCommand, type TopicArea } from './acl';
import { CommandRegistry } from '../core/commands';
import { AuthFailureTracker, PasswordVerifier, type CheckResult, type Lockout, type Role } from './auth';
import { ConnectionAdmission, normalizeAddress, type AcceptRefusal, type LoginRefusal } from './admission';
import * as topics from './topics';
import { orderPublishes, type PublishOrderStats } from './publish-order';
import { sleep } from '../util/backoff';
import { Sessions, type SessionStats } from './sessions';
import { SecureListeners, loadListenerFiles, verifiedCertCn, type ListenerAddress } from './listeners';
import { DeliveryGuard, type DeliveryStats } from './delivery';

export type { Role } from './auth';
export type { ListenerAddress, ListenerKind } from './listeners';

/** Code used in error responses for handler failures that are not ShelfgateErrors (details are logged, not sent). */
export const INTERNAL_ERROR_CODE = 'SG_INTERNAL';

export interface PublishOptions {
  retain?: boolean;
  qos?: 0 | 1;
}

/** The bus's counters, the delivery bounds' (delivery.ts) included. */
export interface BusStats extends DeliveryStats {
  /** Clients currently connected (past CONNACK). */
  connections: number;
  /** TCP connections accepted since start. */
  connectionsTotal: number;
  /** TCP connections dropped by the listener's hard socket ceiling (max_connections + max_unauthenticated). */
  connectionsRejected: number;
  /** Sockets refused at accept: their address already had max_connections_per_address open (on the mqtts/wss listeners, counted from the TCP accept, before TLS). */
  connectionsRefusedAddress: number;
  /** Sockets refused at accept: max_unauthenticated sockets were still logging in. */
  connectionsRefusedUnauthenticated: number;
  /** Logins refused (CONNACK 3): the user already had max_connections_per_user connections. */
  connectionsRefusedUser: number;
  /** Logins refused (CONNACK 3): max_connections reached, or only the reserved slots left and not admin/technician. */
  connectionsRefusedGlobal: number;
  /** Sockets accepted and not logged in yet. */
  unauthenticated: number;
  authFailures: number;
  lockouts: number;
  /** Connections refused because their address was locked out (no password check). */
  lockedOutRefusals: number;
  anonymousRefused: number;
  malformed: number;
  oversized: number;
  /** CONNECTs with a protocol version other than 3.1/3.1.1 (e.g. MQTT 5), refused with CONNACK 1. */
  protocolRefused: number;
  connectTimeouts: number;
  /** scrypt password verifications run (dummy ones for unknown users included). */
  passwordChecks: number;
  /** Logins accepted by the cached verifier without scrypt (a known client reconnecting). */
  verifierHits: number;
  /** Logins refused (CONNACK 3) because too many password checks were waiting. */
  authQueueFull: number;
  /** Most password checks waiting at once. */
  authQueuedMax: number;
  deniedPublishes: number;
  deniedSubscribes: number;
  /** Messages published by clients. */
  messagesIn: number;
  /** Deliveries to clients. */
  messagesOut: number;
  /** Messages published in-process by the gateway. */
  gatewayPublishes: number;
  /** Publishes (any publisher) that waited for an earlier one to reach the subscribers first (publish-order.ts). */
  publishesWaited: number;
  /** Most publishes waiting at once for that. */
  publishesWaitingMax: number;
  requests: number;
  requestErrors: number;
  /** Client ids, persistent sessions and subscription limits (sessions.ts). */
  sessions: SessionStats;
  /** TLS handshakes that failed on the mqtts/wss listeners (e.g. the client does not trust our certificate). */
  tlsHandshakeFailures: number;
  /** HTTP requests to the wss listener refused (other path, no mqtt subprotocol, not an upgrade). */
  wsRefused: number;
  /** Logins refused because the username sent differs from the user of the client certificate. */
  certLoginsRefused: number;
}

export interface LocalBusOptions {
  config: MqttConfig;
  storeId: string;
  log: Logger;
  /** The commands `request/<command>` runs (and the permission each needs). Default: an empty registry. */
  commands?: CommandRegistry;
  /** Topic areas the features declare, beside the core's (CORE_TOPIC_AREAS). */
  topicAreas?: readonly TopicArea[];
  /** Reported in gateway/status. */
  version?: string;
  /** Time a socket may take from accept to a completed login. Default: mqtt.connect_timeout_s. */
  connectTimeoutMs?: number;
  /** Bound on the time stop() waits for request handlers and for the offline status to flush. Default 2 s. */
  stopGraceMs?: number;
  now?: () => number;
  /** How often offline persistent sessions are checked for expiry. Default: session_expiry_s / 10, within 1-60 s. */
  sessionSweepMs?: number;
}

/** Password checks running at once (each holds ~16 MiB and a libuv thread for tens of ms). */
const MAX_CONCURRENT_AUTH = 8;
/** Password checks waiting for a turn; beyond it a login gets CONNACK 3 (a waiting one is not refused). */
const MAX_QUEUED_AUTH = 64;
const MAX_TOPIC_LEVELS = 32;

interface Identity {
  username: string;
  role: Role;
  address: string;
  /**
   * This connection's publish decisions by topic: DENY, ALLOW, or ALLOW_REQUEST (a request topic,
   * stored without retain). Per connection, bounded (acl.ts AclDecisionCache).
   */
  publish: AclDecisionCache<PublishDecision>;
  /** This connection's delivery decisions (canReceive) by topic. */
  receive: AclDecisionCache<boolean>;
  /** Its `request/<command>` publishes being handled now (bounded by MAX_REQUESTS_IN_FLIGHT). */
  requests: number;
}

/**
 * Requests one connection may have in progress; more are answered SG_BUSY at once. Each holds its
 * payload (up to max_packet_bytes) until its command ends, so without a bound one client sending
 * requests for a slow command could hold any amount of memory.
 */
export const MAX_REQUESTS_IN_FLIGHT = 16;

const DENY = 0;
const ALLOW = 1;
const ALLOW_REQUEST = 2;
type PublishDecision = typeof DENY | typeof ALLOW | typeof ALLOW_REQUEST;

type AuthError = Error & { returnCode: number };

function authError(returnCode: 2 | 3 | 4 | 5, message: string): AuthError {
  const e = new ShelfgateError(returnCode === 4 ? ErrorCode.BUS_AUTH_FAILED : ErrorCode.BUS_NOT_AUTHORIZED, message) as ShelfgateError & {
    returnCode: number;
  };
  e.returnCode = returnCode;
  return e;
}

/**
 * Follows MQTT fixed headers (section 2.2) through a byte stream without buffering: byte 1 is the
 * packet type, then the Remaining Length as a variable byte integer of at most 4 bytes
 * (section 2.2.3), then that many bytes. Reports a packet longer than `maxPacketBytes` as soon as
 * its length is known, and a length of 5+ bytes as malformed.
 */
export class MqttLengthScanner {
  private state: 'header' | 'length' | 'body' = 'header';
  private mult = 1;
  private len = 0;
  private lenBytes = 0;
  private left = 0;

  constructor(private readonly maxPacketBytes: number) {}

  /** Feeds bytes; returns null while all is well, else the violation (then stop feeding). */
  feed(chunk: Buffer): 'oversize' | 'malformed' | null {
    let i = 0;
    while (i < chunk.length) {
      if (this.state === 'body') {
        const n = Math.min(this.left, chunk.length - i);
        this.left -= n;
        i += n;
        if (this.left === 0) this.state = 'header';
        continue;
      }
      const b = chunk[i++]!;
      if (this.state === 'header') {
        this.state = 'length';
        this.mult = 1;
        this.len = 0;
        this.lenBytes = 0;
        continue;
      }
      this.len += (b & 0x7f) * this.mult;
      this.lenBytes++;
      this.mult *= 128;
      if (b & 0x80) {
        if (this.lenBytes >= 4) return 'malformed';
        continue;
      }
      if (1 + this.lenBytes + this.len > this.maxPacketBytes) return 'oversize';
      if (this.len === 0) this.state = 'header';
      else {
        this.state = 'body';
        this.left = this.len;
      }
    }
    return null;
  }
}

type Violation = 'oversize' | 'malformed';

/**
 * Puts the size guard in front of a socket's readable buffer, without a stream in between: every
 * chunk net.Socket reads from the kernel enters its buffer through `push()` (node
 * lib/internal/stream_base_commons.js onStreamRead), so this socket's own `push` scans the chunk
 * first and refuses it (and destroys the socket) on a violation. Nothing of a refused chunk is
 * buffered or reaches the mqtt-packet parser, which only reads from that buffer.
 */
function guardSocket(socket: Duplex, scanner: MqttLengthScanner, onViolation: (kind: Violation) => void): void {
  const push = socket.push;
  let violated = false;
  socket.push = function guardedPush(this: Duplex, chunk: unknown, encoding?: BufferEncoding): boolean {
    if (chunk === null || chunk === undefined) return push.call(this, chunk, encoding); // EOF
    if (violated) return false;
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, encoding) : (chunk as Buffer);
    const violation = scanner.feed(bytes);
    if (violation) {
      violated = true;
      onViolation(violation);
      socket.destroy();
      return false;
    }
    return push.call(this, chunk, encoding);
  };
}

/**
 * Coalesces what aedes writes to `socket` during one event loop turn into one writev: the first
 * write of a turn corks the socket and a setImmediate uncorks it. aedes writes each packet on its
 * own (mqtt-packet corks only until process.nextTick, and aedes sends every forwarded message from
 * its own setImmediate), so without this every PUBACK and every delivery was one syscall.
 * Ordering is unchanged and write() still reports backpressure (the corked bytes count in
 * writableLength); the cost is at most one loop turn of latency.
 */
function coalesceWrites(socket: Duplex): void {
  const write = socket.write;
  let corked = false;
  const flush = (): void => {
    corked = false;
    socket.uncork();
  };
  socket.write = function coalescedWrite(this: Duplex, ...args: unknown[]): boolean {
    if (!corked && !socket.destroyed) {
      corked = true;
      socket.cork();
      setImmediate(flush);
    }
    return (write as (...a: unknown[]) => boolean).apply(this, args);
  } as Duplex['write'];
}

function noop(): void {}

// mqtt-packet (aedes's encoder, also mqtt.js's) builds on the first packet it writes a cache of all
// 65,536 two-byte numbers as separate Buffer objects: 6.4 MB of V8 heap for the life of the process
// (docs/aedes-memory.md). Without it each packet id / length is written from a fresh 2-byte slice of
// Buffer's pool; bench/mqtt-bus.ts showed no throughput difference beyond a shared VM's noise.
writeToStream.cacheNumbers = false;

export class LocalBus implements Service {
  readonly name = 'bus';
  private readonly o: LocalBusOptions;
  private readonly limiter: LogLimiter;
  private readonly now: () => number;
  private broker: Aedes | null = null;
  private server: Server | null = null;
  /** The mqtts and wss listeners (listeners.ts), when configured. */
  private secure: SecureListeners | null = null;
  private tracker: AuthFailureTracker | null = null;
  private verifier: PasswordVerifier | null = null;
  private admission: ConnectionAdmission | null = null;
  private publishOrder: PublishOrderStats | null = null;
  private readonly sessions: Sessions;
  private delivery: DeliveryGuard | null = null;
  private readonly conns = new Set<Duplex>();
  /** Remote address of each socket, kept past its close (for logs). */
  private readonly addresses = new WeakMap<object, string>();
  private readonly identities = new WeakMap<Client, Identity>();
  private readonly commands: CommandRegistry;
  private readonly acl: AclRules;
  private readonly inflight = new Set<Promise<void>>();
  private stopping = false;
  private startedAt = 0;
  private readonly counters = {
    connectionsTotal: 0,
    connectionsRejected: 0,
    lockedOutRefusals: 0,
    anonymousRefused: 0,
    malformed: 0,
    oversized: 0,
    protocolRefused: 0,
    connectTimeouts: 0,
    deniedPublishes: 0,
    deniedSubscribes: 0,
    messagesIn: 0,
    messagesOut: 0,
    gatewayPublishes: 0,
    requests: 0,
    requestErrors: 0,
    certLoginsRefused: 0,
  };

  constructor(opts: LocalBusOptions) {
    this.o = opts;
    this.limiter = new LogLimiter(opts.log);
    this.now = opts.now ?? Date.now;
    this.commands = opts.commands ?? new CommandRegistry();
    this.sessions = new Sessions({ config: opts.config, log: opts.log, limiter: this.limiter, now: this.now, sweepMs: opts.sessionSweepMs });
    this.acl = new AclRules(opts.storeId, [...CORE_TOPIC_AREAS, ...(opts.topicAreas ?? [])], (cmd) => this.commands.permissionOf(cmd));
  }

  // ---- lifecycle ----

  async start(): Promise<void> {
    if (this.broker) return;
    const { config, storeId } = this.o;
    this.checkConfig();
    const listenerFiles = loadListenerFiles(config); // a missing or bad certificate file fails here, naming its key
    this.stopping = false;
    this.tracker = new AuthFailureTracker({
      maxFailures: config.max_auth_failures,
      lockoutMs: config.lockout_s * 1000,
      lockoutMaxMs: config.lockout_max_s * 1000,
      now: this.now,
    });
    this.verifier = new PasswordVerifier(config.users, { maxConcurrent: MAX_CONCURRENT_AUTH, maxQueue: MAX_QUEUED_AUTH });
    const connectTimeoutMs = this.o.connectTimeoutMs ?? config.connect_timeout_s * 1000;
    const admission = new ConnectionAdmission({
      maxConnections: config.max_connections,
      reservedConnections: config.reserved_connections,
      perAddress: config.max_connections_per_address,
      perUser: config.max_connections_per_user,
      maxUnauthenticated: config.max_unauthenticated,
      connectTimeoutMs,
    });
    this.admission = admission;
    // slow consumers, delivery bounds and in-flight caps (delivery.ts)
    const delivery = new DeliveryGuard({
      config,
      limiter: this.limiter,
      now: this.now,
      describe: (client) => ({ username: this.identities.get(client)?.username, address: this.addressOf(client) }),
    });
    this.delivery = delivery;
    const broker = await Aedes.createBroker({
      id: `shelfgate-${storeId}`,
      // admission.ts times the connect from accept to login; aedes's own timer is only a backstop
      connectTimeout: connectTimeoutMs + 1_000,
      // a backstop only: delivery.ts disconnects a client over its bound after slow_consumer_timeout_s
      drainTimeout: 30_000,
      maxInflightInbound: delivery.maxInflightInbound,
      maxTopicLevels: MAX_TOPIC_LEVELS,
      preConnect: (client, packet, cb) => {
        this.sessions.noteConnect(client, packet);
        this.preConnect(client, cb);
      },
      authenticate: (client, username, password, cb) => this.authenticate(client, username, password, cb),
      authorizePublish: (client, packet, cb) => this.authorizePublish(client, packet, cb),
      authorizeSubscribe: (client, sub, cb) => this.authorizeSubscribe(client, sub, cb),
      authorizeForward: (client, packet) => this.authorizeForward(client, packet),
      published: (packet, client, cb) => {
        cb(null);
        if (client) this.onClientPublish(packet, client);
      },
    });
    // every publish reaches the subscribers in the order it was made, else aedes drops some (publish-order.ts)
    this.publishOrder = orderPublishes(broker);
    // client id ownership, bounded persistent sessions, subscription limits (sessions.ts)
    this.sessions.attach(broker);
    this.broker = broker;
    broker.on('clientError', (client, err) => this.onClientError(client, err));
    broker.on('connectionError', (client, err) => this.onClientError(client, err));
    broker.on('ack', (_packet, client) => delivery.onAck(client));
    delivery.start();

    const server = createServer({ noDelay: true }, (socket) => this.onConnection(socket));
    // hard ceiling on sockets (file descriptors); the caps of admission.ts refuse long before it
    server.maxConnections = admission.socketCeiling;
    server.on('drop', () => {
      this.counters.connectionsRejected++;
      this.limiter.warn('socket-ceiling', { max: admission.socketCeiling }, 'socket ceiling (max_connections + max_unauthenticated) reached: connection dropped');
    });
    this.server = server;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: config.host, port: config.port }, () => {
          server.removeListener('error', reject);
          resolve();
        });
      });
    } catch (e) {
      server.removeAllListeners();
      this.server = null;
      await this.closeBroker();
      throw e;
    }
    server.on('error', (err) => this.o.log.error({ err: err.message }, 'mqtt server error'));
    const secure = new SecureListeners({
      config,
      files: listenerFiles,
      log: this.o.log,
      limiter: this.limiter,
      connectTimeoutMs,
      hooks: {
        accept: (stream, address) => this.onConnection(stream, address),
        violation: (kind, address) => this.onGuardViolation(kind, address),
        dropped: () => this.counters.connectionsRejected++,
        stopping: () => this.stopping || !this.broker,
      },
    });
    try {
      await secure.start();
    } catch (e) {
      await secure.close();
      this.server = null;
      await new Promise<void>((resolve) => server.close(() => resolve()));
      server.removeAllListeners();
      await this.closeBroker();
      throw e;
    }
    this.secure = secure;
    this.startedAt = this.now();
    await this.publishStatus('online');
    this.o.log.info({ ...this.address(), listeners: this.listeners(), users: config.users.length }, 'local bus listening');
  }

  async stop(): Promise<void> {
    if (!this.broker) return;
    this.stopping = true;
    const grace = this.o.stopGraceMs ?? 2_000;
    try {
      if (this.inflight.size > 0) await withTimeout(Promise.allSettled([...this.inflight]), grace);
      await withTimeout(this.publishStatus('offline'), grace);
      await this.flushClients(Math.min(grace, 500));
    } catch (e) {
      this.o.log.warn({ err: (e as Error).message }, 'could not publish offline status');
    }
    const server = this.server;
    this.server = null;
    const serverClosed = server
      ? new Promise<void>((resolve) => server.close(() => resolve()))
      : Promise.resolve();
    const secure = this.secure;
    this.secure = null;
    await this.closeBroker();
    for (const c of this.conns) {
      c.on('error', noop); // a late ECONNRESET must not become an uncaught error
      c.destroy();
    }
    this.conns.clear();
    await serverClosed;
    await secure?.close();
    server?.removeAllListeners();
    this.inflight.clear();
    this.admission?.clear();
    this.admission = null;
    this.tracker = null;
    this.verifier = null;
    this.o.log.info('local bus stopped');
  }

  /** Bound address, after start(). */
  address(): { host: string; port: number } {
    const a = this.server?.address() as AddressInfo | null | undefined;
    if (!a || typeof a === 'string') throw new ShelfgateError(ErrorCode.STOPPED, 'local bus is not listening');
    return { host: a.address, port: a.port };
  }

  /** Every bound listener, after start(): the plain one (`mqtt`) first, then `mqtts` and `wss` when configured. */
  listeners(): ListenerAddress[] {
    return [{ kind: 'mqtt', ...this.address() }, ...(this.secure?.addresses() ?? [])];
  }

  stats(): BusStats {
    const adm = this.admission?.counters;
    return {
      ...this.counters,
      connections: this.broker?.connectedClients ?? 0,
      connectionsRefusedAddress: (adm?.refusedAddress ?? 0) + (this.secure?.stats().addressRefused ?? 0),
      connectionsRefusedUnauthenticated: adm?.refusedUnauthenticated ?? 0,
      connectionsRefusedUser: adm?.refusedUser ?? 0,
      connectionsRefusedGlobal: adm?.refusedGlobal ?? 0,
      unauthenticated: this.admission?.unauthenticated ?? 0,
      connectTimeouts: this.counters.connectTimeouts + (adm?.connectTimeouts ?? 0),
      passwordChecks: this.verifier?.passwordChecks ?? 0,
      verifierHits: this.verifier?.verifierHits ?? 0,
      authQueueFull: this.verifier?.queueFull ?? 0,
      authQueuedMax: this.verifier?.queuedMax ?? 0,
      authFailures: this.tracker?.authFailures ?? 0,
      lockouts: this.tracker?.lockouts ?? 0,
      publishesWaited: this.publishOrder?.waited ?? 0,
      publishesWaitingMax: this.publishOrder?.maxWaiting ?? 0,
      sessions: this.sessions.stats(),
      tlsHandshakeFailures: this.secure?.stats().tlsHandshakeFailures ?? 0,
      wsRefused: this.secure?.stats().wsRefused ?? 0,
      ...(this.delivery?.stats() ?? { slowConsumerDrops: 0, slowConsumerDisconnects: 0, inflightHeld: 0, inboundQos2Disconnects: 0 }),
    };
  }

  // ---- in-process API ----

  /**
   * Publishes as the gateway (no ACL: the gateway owns its topics). Subscribers get the gateway's
   * publishes in the order of the calls, retained or not, whatever the QoS. Rejects with STOPPED
   * when not running.
   */
  publish(topic: string, payload: string | Buffer, opts: PublishOptions = {}): Promise<void> {
    const broker = this.broker;
    if (!broker || broker.closed) return Promise.reject(new ShelfgateError(ErrorCode.STOPPED, 'local bus is not running'));
    if (!topics.isValidTopicName(topic) || topic.startsWith('$')) {
      return Promise.reject(new ShelfgateError(ErrorCode.REQUEST_INVALID, `invalid topic to publish: ${topic.slice(0, 200)}`));
    }
    const packet: PublishPacket = {
      cmd: 'publish',
      topic,
      payload: typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload,
      qos: opts.qos ?? 0,
      retain: opts.retain ?? false,
      dup: false,
    };
    this.counters.gatewayPublishes++;
    return new Promise((resolve, reject) => {
      broker.publish(packet, (err) => (err ? reject(err) : resolve()));
    });
  }

  /** Publishes the retained gateway status. */
  publishStatus(state: topics.GatewayStatus['state']): Promise<void> {
    const body: topics.GatewayStatus = {
      state,
      version: this.o.version ?? 'unknown',
      started_at: new Date(this.startedAt).toISOString(),
      ts: new Date(this.now()).toISOString(),
    };
    return this.publish(topics.gatewayStatus(this.o.storeId), JSON.stringify(body), { retain: true, qos: 1 });
  }

  // ---- connections ----

  /** One connection of any listener: a TCP or TLS socket, or a wss connection's stream (listeners.ts). */
  private onConnection(socket: Duplex, address: string = (socket as Socket).remoteAddress ?? 'unknown'): void {
    if (this.stopping || !this.broker) {
      socket.destroy();
      return;
    }
    this.counters.connectionsTotal++;
    address = normalizeAddress(address);
    if (!this.admit(socket, address)) return;
    this.addresses.set(socket, address);
    guardSocket(socket, new MqttLengthScanner(this.o.config.max_packet_bytes), (kind) => this.onGuardViolation(kind, address));
    coalesceWrites(socket);
    this.conns.add(socket);
    const client = this.broker.handle(socket);
    const delivery = this.delivery;
    delivery?.attach(client);
    socket.once('close', () => {
      this.conns.delete(socket);
      this.admission?.release(socket);
      delivery?.detach(client);
    });
  }

  /** The caps at accept (admission.ts); false: refused and destroyed. Starts the CONNECT timeout. */
  private admit(socket: Duplex, address: string): boolean {
    const admission = this.admission;
    if (!admission) {
      socket.destroy();
      return false;
    }
    const refusal = admission.accept(socket, address, () => {
      this.limiter.warn(`connect-timeout:${address}`, { address, connect_timeout_s: this.o.config.connect_timeout_s }, 'no completed CONNECT and login in time: connection closed');
      socket.destroy();
    });
    if (refusal === null) return true;
    this.logAcceptRefusal(refusal, address);
    socket.on('error', noop);
    socket.destroy();
    return false;
  }

  private logAcceptRefusal(refusal: AcceptRefusal, address: string): void {
    const c = this.o.config;
    if (refusal === 'address') {
      this.limiter.warn(
        `cap-address:${address}`,
        { address, max: c.max_connections_per_address, max_logging_in: this.admission?.unauthenticatedPerAddress },
        'too many connections (max_connections_per_address) or sockets still logging in from this address: connection refused',
      );
    } else {
      this.limiter.warn('cap-unauthenticated', { address, max: c.max_unauthenticated }, 'max_unauthenticated reached (sockets still logging in): connection refused');
    }
  }

  private logLoginRefusal(refusal: LoginRefusal, address: string, username: string): void {
    const c = this.o.config;
    if (refusal === 'user') {
      this.limiter.warn(`cap-user:${username}`, { address, username, max: c.max_connections_per_user }, 'max_connections_per_user reached: connection refused');
    } else if (refusal === 'reserved') {
      this.limiter.warn('cap-reserved', { address, username, max: c.max_connections, reserved: c.reserved_connections }, 'only the connections reserved for admin and technician are left: connection refused');
    } else {
      this.limiter.warn('cap-global', { address, username, max: c.max_connections }, 'max_connections reached: connection refused');
    }
  }

  private logLockout(l: Lockout): void {
    // at most one per pair (address) per lockout period, itself bounded by the failures before it
    this.o.log.warn(
      { address: l.address, username: l.username, lockout_s: l.durationMs / 1000, nth: l.nth },
      l.scope === 'pair'
        ? 'too many failed logins: username locked out from this address'
        : 'too many failed logins from this address (any username): address locked out',
    );
  }

  /**
   * Verifies a password: the cached verifier first (no lockout bookkeeping needed for a correct
   * login), else a scrypt check accounted by the lockout tracker.
   */
  private async checkPassword(client: Client | null, address: string, username: string, password: Buffer | undefined): Promise<CheckResult | { kind: 'locked' }> {
    const tracker = this.tracker!;
    const verifier = this.verifier!;
    const hit = verifier.cached(username, password);
    if (hit) {
      tracker.succeeded(address, username, false);
      return { kind: 'ok', user: hit, cached: true };
    }
    if ((await tracker.acquire(address, username)) === 'locked') return { kind: 'locked' };
    let r: CheckResult;
    try {
      r = await verifier.check(username, password, () => (client?.closed ?? false) || this.stopping);
    } catch (e) {
      tracker.abandon(address, username);
      throw e;
    }
    if (r.kind === 'ok') tracker.succeeded(address, username);
    else if (r.kind === 'bad') for (const l of tracker.failed(address, username)) this.logLockout(l);
    else tracker.abandon(address, username);
    return r;
  }

  /**
   * A password login for another transport of the gateway (the HTTP server's Basic auth): the
   * bus's users, verifier and lockout, so a guess counts the same whether it came over MQTT or
   * HTTP and a locked-out (address, username) pair is locked out of both. 'stopped' when the bus
   * is not running.
   */
  async login(address: string, username: string, password: string): Promise<CheckResult | { kind: 'locked' } | { kind: 'stopped' }> {
    const tracker = this.tracker;
    if (!tracker || !this.verifier || this.stopping) return { kind: 'stopped' };
    if (tracker.locked(address, username)) {
      this.counters.lockedOutRefusals++;
      return { kind: 'locked' };
    }
    const r = await this.checkPassword(null, address, username, Buffer.from(password, 'utf8'));
    if (r.kind === 'locked') this.counters.lockedOutRefusals++;
    return r;
  }

  /** The socket of the connection `client` replaces (same client id), if any. */
  private replacedConn(client: Client): object | undefined {
    const clients = (this.broker as unknown as { clients?: Record<string, Client> } | null)?.clients;
    const holder = client.id ? clients?.[client.id] : undefined;
    return holder && holder !== client ? holder.conn : undefined;
  }

  /** A packet over max_packet_bytes or a malformed length (or, on wss, frame): the connection is being closed. */
  private onGuardViolation(kind: Violation, address: string): void {
    if (kind === 'oversize') this.counters.oversized++;
    else this.counters.malformed++;
    this.limiter.warn(
      `guard-${kind}:${address}`,
      { address, max_packet_bytes: this.o.config.max_packet_bytes },
      kind === 'oversize' ? 'MQTT packet larger than max_packet_bytes: connection closed' : 'malformed MQTT length or WebSocket frame: connection closed',
    );
  }

  private addressOf(client: Client): string {
    return this.addresses.get(client.conn) ?? 'unknown';
  }

  private preConnect(client: Client, cb: (error: Error | null, success: boolean) => void): void {
    if (this.stopping) return cb(new ShelfgateError(ErrorCode.STOPPED, 'local bus is stopping'), false);
    // lockout and the connection caps are decided in authenticate (they need the username)
    cb(null, true);
  }

  private authenticate(
    client: Client,
    username: string | undefined,
    password: Buffer | undefined,
    done: (error: AuthError | null, success: boolean | null) => void,
  ): void {
    const tracker = this.tracker;
    const address = this.addressOf(client);
    if (!tracker || this.stopping) return done(authError(3, 'local bus is stopping'), null);
    // a verified client certificate (mqtts/wss with client_ca_file) names the user: no password (admitCertUser)
    const certUser = this.certUserOf(client);
    if (certUser) return this.admitCertUser(client, certUser, username, address, done);
    if (username === undefined) {
      this.counters.anonymousRefused++;
      this.limiter.warn(`anon:${address}`, { address }, 'anonymous connection refused');
      return done(authError(5, 'anonymous connections are not allowed'), null);
    }
    const lockedOut = (scope: string): void => {
      this.counters.lockedOutRefusals++;
      // a locked-out address may send any username, each attempt refused at once: the key must not
      // hold it then (one log line per username, and one limiter entry each, for free)
      const key = scope === 'address' ? `locked:${address}` : `locked:${address}:${username.slice(0, 64)}`;
      this.limiter.warn(key, { address, username: username.slice(0, 64), scope }, 'login refused: locked out after failed logins');
      done(authError(5, 'locked out'), null);
    };
    const lock = tracker.locked(address, username);
    if (lock) return lockedOut(lock);
    this.checkPassword(client, address, username, password)
      .then((result) => {
        if (result.kind === 'locked') return lockedOut(tracker.locked(address, username) ?? 'pair');
        if (result.kind === 'busy') {
          this.limiter.warn('auth-busy', { address, queued: MAX_QUEUED_AUTH }, 'too many logins waiting for a password check: connection refused');
          return done(authError(3, 'too many logins in progress'), null);
        }
        if (result.kind === 'cancelled') return done(authError(3, 'connection closed during login'), null);
        if (result.kind === 'bad') {
          this.limiter.warn(`auth:${address}`, { address, username: username.slice(0, 64) }, 'bad username or password');
          return done(authError(4, 'bad username or password'), null);
        }
        this.logIn(client, result.user, address, result.cached ? 'cached' : 'scrypt', done);
      })
      .catch((e: Error) => {
        this.o.log.error({ err: e.message, address }, 'password check failed');
        done(authError(3, 'password check failed'), null);
      });
  }

  /** The user whose `cert_cn` is the CN of this client's verified certificate, if any. */
  private certUserOf(client: Client): MqttUser | undefined {
    // the CN of a client certificate verified against the listener's client_ca_file (mqtts/wss only)
    const cn = client.conn ? verifiedCertCn(client.conn) : undefined;
    if (cn === undefined) return undefined;
    const user = this.o.config.users.find((u) => u.cert_cn === cn);
    if (!user) {
      const address = this.addressOf(client);
      this.limiter.warn(`cert-unknown:${address}`, { address, cert_cn: cn.slice(0, 255) }, 'client certificate CN matches no user: password login only');
    }
    return user;
  }

  /**
   * Login by client certificate. The certificate proves the user, so no password is checked and no
   * failure is counted; a username, if sent, must be that user's (else CONNACK 4: a client must not
   * present one identity and claim another).
   */
  private admitCertUser(
    client: Client,
    user: MqttUser,
    username: string | undefined,
    address: string,
    done: (error: AuthError | null, success: boolean | null) => void,
  ): void {
    if (username !== undefined && username !== user.username) {
      this.counters.certLoginsRefused++;
      this.limiter.warn(`cert-user:${address}`, { address, cert_user: user.username, username: username.slice(0, 64) }, 'username differs from the client certificate user: refused');
      return done(authError(4, 'username does not match the client certificate'), null);
    }
    this.logIn(client, user, address, 'certificate', done);
  }

  /**
   * The last steps of every login, whatever proved who the client is: the client id must be the
   * user's (sessions.ts), then the caps that depend on the user (admission.ts), then the identity
   * the ACL hooks read.
   */
  private logIn(
    client: Client,
    user: { username: string; role: Role },
    address: string,
    how: 'scrypt' | 'cached' | 'certificate',
    done: (error: AuthError | null, success: boolean | null) => void,
  ): void {
    // the connection went away (or the bus began stopping) while its password was checked: its
    // 'close' has fired already, so nothing recorded now (client id owner, slots) would be released
    if (client.closed || this.stopping) return done(authError(3, 'connection closed during login'), null);
    // a client id (live or stored session) belongs to its user: nobody else may take, hijack or wipe it
    const idRefusal = this.sessions.admit(client, user.username, address);
    if (idRefusal !== null) return done(authError(2, idRefusal), null);
    // the caps that depend on who logged in; CONNACK 3, server unavailable
    const admission = this.admission;
    const capped = admission ? admission.login(client.conn, user.username, user.role, this.replacedConn(client)) : 'global';
    if (capped !== null) {
      this.logLoginRefusal(capped, address, user.username);
      return done(authError(3, `connection cap reached (${capped})`), null);
    }
    this.o.log.debug({ address, username: user.username, client_id: client.id, password_check: how === 'certificate' ? undefined : how, login: how === 'certificate' ? 'certificate' : 'password' }, 'client logged in');
    this.identities.set(client, {
      username: user.username,
      role: user.role,
      address,
      publish: new AclDecisionCache<PublishDecision>(),
      receive: new AclDecisionCache<boolean>(),
      requests: 0,
    });
    done(null, true);
  }

  private authorizePublish(client: Client | null, packet: PublishPacket, cb: (error?: Error | null) => void): void {
    const id = client ? this.identities.get(client) : undefined;
    const decision = id ? (id.publish.get(packet.topic) ?? id.publish.set(packet.topic, this.publishDecision(id, packet.topic))) : DENY;
    if (decision !== DENY) {
      // a request is an action, not state: never store it as retained
      if (decision === ALLOW_REQUEST) packet.retain = false;
      return cb(null);
    }
    this.counters.deniedPublishes++;
    const who = id?.username ?? 'unknown';
    this.limiter.warn(`deny-pub:${who}`, { username: who, role: id?.role, topic: packet.topic.slice(0, 256) }, 'publish not authorized: connection closed');
    // [MQTT-3.3.5-2]: the server either acknowledges and drops, or closes the connection. aedes closes.
    cb(new ShelfgateError(ErrorCode.BUS_NOT_AUTHORIZED, 'publish not authorized'));
  }

  private authorizeSubscribe(client: Client, sub: Subscription, cb: (error: Error | null, subscription?: Subscription | null) => void): void {
    const id = this.identities.get(client);
    if (id && canSubscribe(id.role, id.username, sub.topic, this.acl)) {
      const over = this.sessions.subscribeRefusal(client, sub.topic);
      if (over === null) return cb(null, sub);
      const key = over === 'max_filter_length' ? 'filter-len' : 'max-subs';
      const limit = over === 'max_filter_length' ? this.o.config.max_filter_length : this.o.config.max_subscriptions;
      this.limiter.warn(`${key}:${id.username}`, { username: id.username, [over]: limit, filter: sub.topic.slice(0, 256) }, `subscription over ${over}: negated`);
      return cb(null, null); // negated: SUBACK 0x80 [MQTT-3.9.3]; the client's other subscriptions go on
    }
    this.counters.deniedSubscribes++;
    const who = id?.username ?? 'unknown';
    this.limiter.warn(`deny-sub:${who}`, { username: who, role: id?.role, filter: sub.topic.slice(0, 256) }, 'subscription not authorized: negated');
    cb(null, null); // negated: SUBACK return code 0x80 [MQTT-3.9.3]
  }

  private publishDecision(id: Identity, topic: string): PublishDecision {
    if (!canPublish(id.role, id.username, topic, this.acl)) return DENY;
    return requestCommand(topic, this.o.storeId) !== null ? ALLOW_REQUEST : ALLOW;
  }

  private authorizeForward(client: Client, packet: AedesPublishPacket): AedesPublishPacket | null {
    const id = this.identities.get(client);
    if (!id) return null;
    const topic = packet.topic;
    const ok = id.receive.get(topic) ?? id.receive.set(topic, canReceive(id.role, id.username, topic, this.acl));
    if (!ok || this.delivery?.admit(client, packet) === false) return null;
    this.counters.messagesOut++;
    return packet;
  }

  private onClientError(client: Client, err: Error): void {
    const address = this.addressOf(client);
    if (isShelfgateError(err)) return; // our own refusals, counted and logged where they happen
    if (this.delivery?.onClientError(client, err)) return;
    const connackCode = (err as Error & { errorCode?: number }).errorCode;
    if (connackCode !== undefined) {
      if (connackCode === 1) {
        this.counters.protocolRefused++;
        this.limiter.warn(`proto:${address}`, { address }, 'unsupported MQTT protocol version (only 3.1/3.1.1): refused');
      }
      return;
    }
    if ((err as NodeJS.ErrnoException).code !== undefined) {
      this.o.log.debug({ address, err: err.message }, 'client socket error');
      return;
    }
    if (err.message === 'connect did not arrive in time') {
      this.counters.connectTimeouts++;
      this.limiter.warn(`connect-timeout:${address}`, { address }, 'no CONNECT in time: connection closed');
      return;
    }
    if (err.message === 'keep alive timeout' || err.message === 'drain timeout' || err.message === 'connection closed') {
      this.o.log.debug({ address, err: err.message }, 'client dropped');
      return;
    }
    this.counters.malformed++;
    this.limiter.warn(`malformed:${address}`, { address, err: err.message.slice(0, 200) }, 'malformed or invalid MQTT packet: connection closed');
  }

  // ---- requests ----

  private onClientPublish(packet: AedesPublishPacket, client: Client): void {
    this.counters.messagesIn++;
    const command = requestCommand(packet.topic, this.o.storeId);
    if (command === null) return;
    const id = this.identities.get(client);
    if (!id) return;
    id.requests++;
    const p = this.handleRequest(id, command, packet.payload, packet.qos > 0 ? 1 : 0).catch((e: Error) => {
      this.limiter.warn(`respond:${id.username}`, { username: id.username, command, err: e.message }, 'could not send response');
    });
    this.inflight.add(p);
    void p.finally(() => {
      id.requests--;
      this.inflight.delete(p);
    });
  }

  private async handleRequest(id: Identity, command: string, raw: Buffer | string, qos: 0 | 1): Promise<void> {
    this.counters.requests++;
    const topic = topics.response(this.o.storeId, id.username, command);
    const respond = (body: topics.BusResponse): Promise<void> => this.publish(topic, JSON.stringify(body), { qos });
    const fail = (transaction: string | null, code: string, message: string): Promise<void> => {
      this.counters.requestErrors++;
      return respond({ transaction, ok: false, error: { code, message } });
    };

    let body: unknown;
    try {
      body = JSON.parse(typeof raw === 'string' ? raw : raw.toString('utf8'));
    } catch {
      return fail(null, ErrorCode.REQUEST_INVALID, 'request payload must be JSON');
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      return fail(null, ErrorCode.REQUEST_INVALID, 'request payload must be a JSON object');
    }
    const transaction = (body as { transaction?: unknown }).transaction;
    if (typeof transaction !== 'string' || transaction.length === 0 || transaction.length > topics.MAX_TRANSACTION_LENGTH) {
      return fail(null, ErrorCode.REQUEST_INVALID, `request needs a "transaction" string of 1-${topics.MAX_TRANSACTION_LENGTH} characters`);
    }
    if (this.stopping) return fail(transaction, ErrorCode.STOPPED, 'gateway is stopping');
    if (id.requests > MAX_REQUESTS_IN_FLIGHT) {
      this.limiter.warn(`busy:${id.username}`, { username: id.username, command, max: MAX_REQUESTS_IN_FLIGHT }, 'too many requests in progress on one connection: answered SG_BUSY');
      return fail(transaction, ErrorCode.BUSY, `more than ${MAX_REQUESTS_IN_FLIGHT} requests in progress on this connection: wait for their responses`);
    }

    const { transaction: _t, ...payload } = body as Record<string, unknown>;
    let data: unknown;
    try {
      data = await this.commands.execute(command, payload, { username: id.username, role: id.role, via: 'mqtt' });
    } catch (e) {
      if (isShelfgateError(e)) return fail(transaction, e.code, e.message);
      this.o.log.error({ command, username: id.username, err: (e as Error)?.message }, 'request handler failed');
      return fail(transaction, INTERNAL_ERROR_CODE, 'internal error');
    }
    let out: string;
    try {
      out = JSON.stringify({ transaction, ok: true, data: data ?? null } satisfies topics.BusResponse);
    } catch (e) {
      this.o.log.error({ command, err: (e as Error).message }, 'request handler returned data that is not JSON');
      return fail(transaction, INTERNAL_ERROR_CODE, 'internal error');
    }
    return this.publish(topic, out, { qos });
  }

  // ---- helpers ----

  private checkConfig(): void {
    const issues: Array<{ path: string; message: string }> = [];
    if (!topics.isValidId(this.o.storeId)) issues.push({ path: 'store_id', message: 'not usable in an MQTT topic' });
    const seen = new Set<string>();
    this.o.config.users.forEach((u, i) => {
      if (!topics.isValidId(u.username)) {
        issues.push({ path: `mqtt.users[${i}].username`, message: "must not contain '+', '#', '/', control characters or a leading '$' (used in topics)" });
      }
      if (seen.has(u.username)) issues.push({ path: `mqtt.users[${i}].username`, message: `duplicate username ${u.username}` });
      seen.add(u.username);
      if (u.cert_cn !== undefined && this.o.config.users.findIndex((o) => o.cert_cn === u.cert_cn) < i) {
        issues.push({ path: `mqtt.users[${i}].cert_cn`, message: `cert_cn ${u.cert_cn} already names another user` });
      }
    });
    if (issues.length > 0) throw new ShelfgateError(ErrorCode.CONFIG_INVALID, 'invalid mqtt users', issues);
  }

  /** Waits (bounded) until queued bytes have reached the kernel, so the offline status is sent. */
  private async flushClients(maxMs: number): Promise<void> {
    const until = this.now() + maxMs;
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    while ([...this.conns].some((c) => c.writableLength > 0) && this.now() < until) {
      await sleep(10);
    }
  }

  private async closeBroker(): Promise<void> {
    const broker = this.broker;
    this.broker = null;
    if (!broker) return;
    await new Promise<void>((resolve) => broker.close(() => resolve()));
    broker.removeAllListeners();
    this.sessions.detach();
    // the delivery guard lives as long as the broker whose clients it wraps (also on a failed start)
    this.delivery?.stop();
    this.delivery = null;
  }
}

async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
