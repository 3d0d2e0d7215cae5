/**
 * Connection admission for the local bus: which sockets may stay open, and which logins may take
 * a connection slot. Separate caps, so that one address or one user can never use up what the
 * others need:
 *
 *   at accept (socket destroyed, no CONNACK):
 *     - per remote address (`max_connections_per_address`): every open socket from that address;
 *     - not yet authenticated (`max_unauthenticated`): sockets from accept until their login
 *       succeeded. One address may hold at most a quarter of these (`unauthenticatedPerAddress`),
 *       so half-open sockets from one address can never take all of them: a flood of them fills
 *       only that address's share, and the admin still gets a socket from elsewhere;
 *   at login (CONNACK 3, server unavailable):
 *     - per username (`max_connections_per_user`): authenticated connections of that user;
 *     - global (`max_connections`): authenticated connections, of which the last
 *       `reserved_connections` are kept for admin and technician users.
 *
 * Sockets never exceed max_connections + max_unauthenticated (plus sockets being closed), which is
 * what the listener's hard socket ceiling (`socketCeiling`) is set to, so file descriptors stay
 * bounded whatever clients do.
 *
 * The CONNECT timeout (`connect_timeout_s`) runs from accept until the login succeeded: a socket
 * that sends nothing, or a CONNECT byte by byte, or waits too long for its password check, is
 * closed.
 *
 * MQTT 3.1.1: a refusal at accept closes the socket before any MQTT packet was read (transport
 * level, no CONNACK). A refusal at login is CONNACK 3 "Server unavailable" (section 3.2.2.3), after
 * which the server closes the connection [MQTT-3.2.2-5]. A login that takes over its own client id
 * [MQTT-3.1.4-2] is never refused by the slot of the connection it replaces (see login()).
 *
 * Every map here is keyed by something that holds an open socket (its address) or by a configured
 * username (only after a successful login), so their size is bounded by the socket ceiling and the
 * configured users.
 */
import type { Role } from './auth';
import { Tally } from '../util/tally';

export interface AdmissionLimits {
  maxConnections: number;
  reservedConnections: number;
  perAddress: number;
  perUser: number;
  maxUnauthenticated: number;
  connectTimeoutMs: number;
}

/** Why a socket was refused at accept: its address's share (open sockets, or sockets logging in), or the unauthenticated cap. */
export type AcceptRefusal = 'address' | 'unauthenticated';
/** Why a login was refused (CONNACK 3): the user's cap, the global cap, or only reserved slots left. */
export type LoginRefusal = 'user' | 'global' | 'reserved';

/** One address may hold at most 1/UNAUTH_SHARE of the max_unauthenticated slots (at least 1). */
const UNAUTH_SHARE = 4;

/** Roles that may take the reserved slots. */
const PRIVILEGED_ROLES: ReadonlySet<Role> = new Set<Role>(['admin', 'technician']);

interface ConnState {
  address: string;
  username: string | null;
  timer: NodeJS.Timeout | null;
}

export interface AdmissionCounters {
  refusedAddress: number;
  refusedUnauthenticated: number;
  refusedUser: number;
  /** Refused at login by the global cap, reserved slots included. */
  refusedGlobal: number;
  connectTimeouts: number;
}

/** IPv4-mapped IPv6 (`::ffff:10.0.0.5`) counts as its IPv4 address. */
export function normalizeAddress(address: string | undefined): string {
  if (!address) return 'unknown';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

export class ConnectionAdmission {
  private readonly conns = new Map<object, ConnState>();
  private readonly byAddress = new Tally<string>();
  private readonly byUser = new Tally<string>();
  /** Sockets still logging in, per address. */
  private readonly unauthByAddress = new Tally<string>();
  private unauth = 0;
  private authed = 0;
  readonly counters: AdmissionCounters = { refusedAddress: 0, refusedUnauthenticated: 0, refusedUser: 0, refusedGlobal: 0, connectTimeouts: 0 };

  /** Sockets one address may have logging in at once. */
  readonly unauthenticatedPerAddress: number;

  constructor(private readonly limits: AdmissionLimits) {
    this.unauthenticatedPerAddress = Math.max(1, Math.min(limits.perAddress, Math.floor(limits.maxUnauthenticated / UNAUTH_SHARE)));
  }

  /** Hard bound on open sockets for the listener (net.Server.maxConnections). */
  get socketCeiling(): number {
    return this.limits.maxConnections + this.limits.maxUnauthenticated;
  }

  /** Sockets accepted and not yet logged in. */
  get unauthenticated(): number {
    return this.unauth;
  }

  /** Connections that logged in and are still open. */
  get authenticated(): number {
    return this.authed;
  }

  /** Open sockets from `address` (for tests and stats). */
  fromAddress(address: string): number {
    return this.byAddress.get(address);
  }

  /** Authenticated connections of `username`. */
  ofUser(username: string): number {
    return this.byUser.get(username);
  }

  /**
   * A socket was accepted from `address`. Null: admitted, the CONNECT timeout runs (onTimeout is
   * called once if it fires; then close the socket) and release() must follow when the socket
   * closes. Otherwise the reason to destroy it at once (nothing was counted but the refusal).
   */
  accept(conn: object, address: string, onTimeout: () => void): AcceptRefusal | null {
    if (this.conns.has(conn)) return null;
    if (this.byAddress.get(address) >= this.limits.perAddress || this.unauthByAddress.get(address) >= this.unauthenticatedPerAddress) {
      this.counters.refusedAddress++;
      return 'address';
    }
    if (this.unauth >= this.limits.maxUnauthenticated) {
      this.counters.refusedUnauthenticated++;
      return 'unauthenticated';
    }
    const state: ConnState = { address, username: null, timer: null };
    state.timer = setTimeout(() => {
      state.timer = null;
      this.counters.connectTimeouts++;
      onTimeout();
    }, this.limits.connectTimeoutMs);
    state.timer.unref();
    this.conns.set(conn, state);
    this.byAddress.add(address);
    this.unauthByAddress.add(address);
    this.unauth++;
    return null;
  }

  /**
   * `conn` passed its password (or certificate) check as `username`. Null: it now holds a slot of
   * that user and of the global cap, and is no longer unauthenticated (its CONNECT timeout is
   * stopped). Otherwise the cap that refuses it (send CONNACK 3; the socket stays counted as
   * unauthenticated until it closes).
   *
   * `replaces`: an open connection of the same user with the same client id, which this login takes
   * over (aedes closes it right after): its slot counts as free, so a client reconnecting before its
   * old connection timed out is not refused by its own ghost.
   */
  login(conn: object, username: string, role: Role, replaces?: object): LoginRefusal | null {
    const state = this.conns.get(conn);
    if (!state) return 'global'; // not accepted here, or already closed
    if (state.username !== null) return null;
    const old = replaces !== undefined && replaces !== conn ? this.conns.get(replaces) : undefined;
    const freed = old?.username === username ? 1 : 0;
    if (this.byUser.get(username) - freed >= this.limits.perUser) {
      this.counters.refusedUser++;
      return 'user';
    }
    const open = this.authed - freed;
    if (open >= this.limits.maxConnections) {
      this.counters.refusedGlobal++;
      return 'global';
    }
    if (open >= this.limits.maxConnections - this.limits.reservedConnections && !PRIVILEGED_ROLES.has(role)) {
      this.counters.refusedGlobal++;
      return 'reserved';
    }
    this.stopTimer(state);
    state.username = username;
    this.unauth--;
    this.unauthByAddress.remove(state.address);
    this.authed++;
    this.byUser.add(username);
    return null;
  }

  /** The socket closed (idempotent): frees everything it held. */
  release(conn: object): void {
    const state = this.conns.get(conn);
    if (!state) return;
    this.conns.delete(conn);
    this.stopTimer(state);
    this.byAddress.remove(state.address);
    if (state.username === null) {
      this.unauth--;
      this.unauthByAddress.remove(state.address);
    } else {
      this.authed--;
      this.byUser.remove(state.username);
    }
  }

  /** Stops every timer and forgets every socket (the bus is stopping and closes them all). */
  clear(): void {
    for (const s of this.conns.values()) this.stopTimer(s);
    this.conns.clear();
    this.byAddress.clear();
    this.byUser.clear();
    this.unauthByAddress.clear();
    this.unauth = 0;
    this.authed = 0;
  }

  private stopTimer(state: ConnState): void {
    if (state.timer) clearTimeout(state.timer);
    state.timer = null;
  }
}
