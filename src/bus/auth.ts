/**
 * Password hashing for bus users, the login failure tracker (lockout per address and username with
 * growing back-off) and the password verifier (cached keyed verifier, bounded concurrent scrypt).
 *
 * Hash format (checked by the config schema): `scrypt$N$r$p$<salt base64>$<key base64>`,
 * defaults N=16384 (2^14), r=8, p=1, 16-byte salt, 32-byte key (RFC 7914; the OWASP minimum for
 * scrypt). One verification costs about 16 MiB of memory (128 * N * r bytes) and tens of
 * milliseconds of CPU on a Pi, which is why PasswordVerifier bounds how many run at once and lets a
 * known client's reconnect skip it.
 */
import { createHmac, randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import type { MqttUser } from '../config/schema';

export type Role = MqttUser['role'];

export interface HashOptions {
  /** CPU/memory cost, a power of two. Default 16384. */
  N?: number;
  r?: number;
  p?: number;
  saltBytes?: number;
  keyBytes?: number;
}

const DEFAULTS = { N: 16384, r: 8, p: 1, saltBytes: 16, keyBytes: 32 } as const;

/** Limits on parameters read back from a stored hash, so a hostile config cannot exhaust memory. */
const MAX_N = 1 << 20;
const MAX_R = 32;
const MAX_P = 16;
const MAX_KEY_BYTES = 128;
/** Upper bound handed to scrypt as `maxmem`: 128*N*r plus slack, capped at 256 MiB. */
const MAX_MEM_CAP = 256 * 1024 * 1024;

const HASH_RE = /^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/;

function scrypt(password: string | Buffer, salt: Buffer, keylen: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scryptCb(password, salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

function maxmemFor(N: number, r: number): number {
  return Math.min(MAX_MEM_CAP, 128 * N * r + 1024 * 1024);
}

function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 1 && (n & (n - 1)) === 0;
}

/** Hashes `plain` into `scrypt$N$r$p$<salt>$<key>`. */
export async function hashPassword(plain: string, opts: HashOptions = {}): Promise<string> {
  const N = opts.N ?? DEFAULTS.N;
  const r = opts.r ?? DEFAULTS.r;
  const p = opts.p ?? DEFAULTS.p;
  const saltBytes = opts.saltBytes ?? DEFAULTS.saltBytes;
  const keyBytes = opts.keyBytes ?? DEFAULTS.keyBytes;
  if (!isPowerOfTwo(N) || N > MAX_N) throw new RangeError(`scrypt N must be a power of two in 2..${MAX_N}`);
  if (!Number.isInteger(r) || r < 1 || r > MAX_R) throw new RangeError(`scrypt r must be 1..${MAX_R}`);
  if (!Number.isInteger(p) || p < 1 || p > MAX_P) throw new RangeError(`scrypt p must be 1..${MAX_P}`);
  if (!Number.isInteger(saltBytes) || saltBytes < 16) throw new RangeError('salt must be at least 16 bytes');
  if (!Number.isInteger(keyBytes) || keyBytes < 16 || keyBytes > MAX_KEY_BYTES) throw new RangeError(`key must be 16..${MAX_KEY_BYTES} bytes`);
  const salt = randomBytes(saltBytes);
  const key = await scrypt(plain.normalize('NFC'), salt, keyBytes, { N, r, p, maxmem: maxmemFor(N, r) });
  return `scrypt$${N}$${r}$${p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

interface ParsedHash {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  key: Buffer;
}

/** Parses a stored hash; null if malformed or its parameters are outside the accepted limits. */
export function parseHash(stored: string): ParsedHash | null {
  const m = HASH_RE.exec(stored);
  if (!m) return null;
  const N = Number(m[1]);
  const r = Number(m[2]);
  const p = Number(m[3]);
  if (!isPowerOfTwo(N) || N > MAX_N || r < 1 || r > MAX_R || p < 1 || p > MAX_P) return null;
  const salt = Buffer.from(m[4]!, 'base64');
  const key = Buffer.from(m[5]!, 'base64');
  if (salt.length < 8 || key.length < 16 || key.length > MAX_KEY_BYTES) return null;
  return { N, r, p, salt, key };
}

/**
 * True if `plain` matches `stored`. Constant-time comparison of the derived keys; a malformed
 * stored hash is false (never throws for bad input).
 */
export async function verifyPassword(plain: string | Buffer, stored: string): Promise<boolean> {
  const h = parseHash(stored);
  if (!h) return false;
  const input = typeof plain === 'string' ? plain.normalize('NFC') : plain;
  let derived: Buffer;
  try {
    derived = await scrypt(input, h.salt, h.key.length, { N: h.N, r: h.r, p: h.p, maxmem: maxmemFor(h.N, h.r) });
  } catch {
    return false;
  }
  return derived.length === h.key.length && timingSafeEqual(derived, h.key);
}

/**
 * A fixed hash with the default parameters, verified for unknown usernames so that they cost the
 * same time as a wrong password (no user enumeration by timing). Its password is random and
 * unknown: nothing can match it.
 */
export const DUMMY_HASH = `scrypt$16384$8$1$${randomBytes(16).toString('base64')}$${randomBytes(32).toString('base64')}`;

export interface AuthenticatedUser {
  username: string;
  role: Role;
}

/**
 * Checks a username/password against the configured users. Unknown users and users whose stored
 * hash is unusable are verified against DUMMY_HASH so every refusal costs one scrypt.
 */
export async function checkCredentials(
  users: readonly MqttUser[],
  username: string | undefined,
  password: Buffer | string | undefined,
): Promise<AuthenticatedUser | null> {
  const user = username === undefined ? undefined : users.find((u) => u.username === username);
  const pw = password ?? Buffer.alloc(0);
  const stored = user?.password_hash !== undefined && parseHash(user.password_hash) ? user.password_hash : DUMMY_HASH;
  const ok = await verifyPassword(pw, stored);
  return ok && user && username !== undefined ? { username: user.username, role: user.role } : null;
}

// ---- lockout ----

export interface FailureTrackerOptions {
  /** Failures of one (address, username) pair within `windowMs` before that pair is locked out. */
  maxFailures: number;
  /** First lockout of a pair (or an address); each further one doubles it, up to `lockoutMaxMs`. */
  lockoutMs: number;
  /** Longest lockout. Default: `lockoutMs` (no growth). */
  lockoutMaxMs?: number;
  /** How long a failure counts; default: `lockoutMs`. */
  windowMs?: number;
  /**
   * Failures from one address, whatever the username, within `windowMs` before the whole address is
   * locked out (password spraying: one guess for each of many usernames). Default 4 * maxFailures.
   */
  addressMaxFailures?: number;
  now?: () => number;
  /** Bound on tracked pairs and on tracked addresses (each); idle entries go first. Default 10000. */
  maxEntries?: number;
}

interface LockState {
  /** Times of failures within the window (at most the limit: reaching it locks and clears them). */
  failures: number[];
  lockedUntil: number;
  /** Lockouts so far (the back-off exponent); reset by a success, forgotten after a long quiet. */
  lockouts: number;
}

interface PairState extends LockState {
  /** Password checks of this pair running now. */
  pending: number;
  /** Attempts waiting for one of those to finish. */
  waiters: Array<() => void>;
}

/** A lockout that began with this failure. */
export interface Lockout {
  scope: 'pair' | 'address';
  address: string;
  username: string;
  durationMs: number;
  /** 1 for the first lockout of this pair (address), 2 for the next, ... */
  nth: number;
}

/** Longest username kept in a tracker key; longer ones cannot be configured users anyway. */
const MAX_KEY_USERNAME = 128;

/**
 * Login failures per (remote address, username) pair, with a looser per-address bound.
 *
 * - A pair with `maxFailures` failures within the window is locked out for `lockoutMs`, doubling
 *   with each further lockout of the same pair up to `lockoutMaxMs`; a success resets the pair.
 *   Kiosks behind one NAT (one address, different usernames) are not locked out together, and a
 *   wrong password on one account does not lock its other users' addresses.
 * - Password spraying (a few guesses for each of many usernames from one address) is bounded per
 *   address: `addressMaxFailures` failures from one address within the window lock the whole
 *   address, with the same growing back-off. A success does not reset this count (a spraying
 *   client with one valid account could reset it otherwise). This is the one case where users
 *   behind the same address are locked out together: someone there is guessing passwords.
 * - A correct login is never counted as a failure. Checks in flight are not failures either: a
 *   pair whose failures plus running checks already reach `maxFailures` makes a further attempt
 *   WAIT for a running check to end (then decide again), instead of refusing it, so parallel guesses
 *   cannot overshoot the limit and a correct concurrent login is not refused.
 */
export class AuthFailureTracker {
  private readonly pairs = new Map<string, PairState>();
  private readonly addresses = new Map<string, LockState>();
  private readonly windowMs: number;
  private readonly lockoutMaxMs: number;
  private readonly addressMaxFailures: number;
  private readonly now: () => number;
  private readonly maxEntries: number;
  authFailures = 0;
  lockouts = 0;

  constructor(private readonly opts: FailureTrackerOptions) {
    this.windowMs = opts.windowMs ?? opts.lockoutMs;
    this.lockoutMaxMs = Math.max(opts.lockoutMs, opts.lockoutMaxMs ?? opts.lockoutMs);
    this.addressMaxFailures = opts.addressMaxFailures ?? opts.maxFailures * 4;
    this.now = opts.now ?? Date.now;
    this.maxEntries = opts.maxEntries ?? 10_000;
  }

  /** Which lockout refuses (address, username) now, if any. */
  locked(address: string, username: string): 'pair' | 'address' | null {
    const t = this.now();
    const a = this.addresses.get(address);
    if (a && t < a.lockedUntil) return 'address';
    const p = this.pairs.get(pairKey(address, username));
    return p && t < p.lockedUntil ? 'pair' : null;
  }

  /**
   * Call before checking a password. 'locked': refuse without checking. 'ok': check it, then call
   * exactly one of succeeded(), failed() or abandon() for the same pair. May wait (see the class).
   */
  async acquire(address: string, username: string): Promise<'ok' | 'locked'> {
    for (;;) {
      if (this.locked(address, username)) return 'locked';
      const t = this.now();
      const key = pairKey(address, username);
      const p = this.pair(key, t);
      // (pending 0: nothing to wait for; cannot happen with failures < maxFailures, kept as a guard)
      if (p.pending === 0 || p.failures.length + p.pending < this.opts.maxFailures) {
        p.pending++;
        return 'ok';
      }
      // only while checks run (failures alone reaching the limit lock the pair), so this ends
      await new Promise<void>((resolve) => p.waiters.push(resolve));
    }
  }

  /** A correct login of the pair: forgets its failures and its back-off. */
  succeeded(address: string, username: string, fromAcquire = true): void {
    const key = pairKey(address, username);
    const p = this.pairs.get(key);
    if (!p) return;
    if (fromAcquire) this.settle(p);
    p.failures = [];
    p.lockouts = 0;
    if (p.pending === 0 && p.waiters.length === 0 && p.lockedUntil <= this.now()) this.pairs.delete(key);
  }

  /** An acquired check that did not run (queue full, client gone): neither success nor failure. */
  abandon(address: string, username: string): void {
    const p = this.pairs.get(pairKey(address, username));
    if (p) this.settle(p);
  }

  /** A failed login of the pair. Returns the lockouts it started (pair and/or address), for logs. */
  failed(address: string, username: string, fromAcquire = true): Lockout[] {
    const t = this.now();
    const name = username.slice(0, MAX_KEY_USERNAME);
    const p = this.pair(pairKey(address, username), t);
    if (fromAcquire) this.settle(p);
    this.authFailures++;
    const started: Lockout[] = [];
    const pl = this.recordFailure(p, t, this.opts.maxFailures);
    if (pl) started.push({ scope: 'pair', address, username: name, ...pl });
    const a = this.address(address, t);
    const al = this.recordFailure(a, t, this.addressMaxFailures);
    if (al) started.push({ scope: 'address', address, username: name, ...al });
    return started;
  }

  /** Tracked pairs plus tracked addresses (for tests and stats). */
  get size(): number {
    return this.pairs.size + this.addresses.size;
  }

  private settle(p: PairState): void {
    p.pending = Math.max(0, p.pending - 1);
    const waiters = p.waiters;
    p.waiters = [];
    for (const w of waiters) w();
  }

  private recordFailure(s: LockState, t: number, limit: number): { durationMs: number; nth: number } | null {
    if (t < s.lockedUntil) return null; // already locked (a check that started before the lockout)
    s.failures.push(t);
    if (s.failures.length < limit) return null;
    // a long quiet since the last lockout ended: start the back-off again
    if (s.lockouts > 0 && t >= s.lockedUntil + this.lockoutMaxMs) s.lockouts = 0;
    const durationMs = Math.min(this.lockoutMaxMs, this.opts.lockoutMs * 2 ** Math.min(s.lockouts, 30));
    s.lockouts++;
    s.lockedUntil = t + durationMs;
    s.failures = [];
    this.lockouts++;
    return { durationMs, nth: s.lockouts };
  }

  private pair(key: string, t: number): PairState {
    let s = this.pairs.get(key);
    if (!s) {
      if (this.pairs.size >= this.maxEntries) this.evict(this.pairs, t);
      s = { failures: [], lockedUntil: 0, lockouts: 0, pending: 0, waiters: [] };
    } else {
      this.pairs.delete(key); // re-inserted below: the map's order is least recently used first
      this.expire(s, t);
    }
    this.pairs.set(key, s);
    return s;
  }

  private address(address: string, t: number): LockState {
    let s = this.addresses.get(address);
    if (!s) {
      if (this.addresses.size >= this.maxEntries) this.evict(this.addresses, t);
      s = { failures: [], lockedUntil: 0, lockouts: 0 };
    } else {
      this.addresses.delete(address);
      this.expire(s, t);
    }
    this.addresses.set(address, s);
    return s;
  }

  private expire(s: LockState, t: number): void {
    const cutoff = t - this.windowMs;
    while (s.failures.length > 0 && s.failures[0]! <= cutoff) s.failures.shift();
  }

  /** Makes room in a full map: idle entries first, then the least recently used; never one with checks running. */
  private evict(map: Map<string, LockState | PairState>, t: number): void {
    const busy = (s: LockState | PairState): boolean => 'pending' in s && (s.pending > 0 || s.waiters.length > 0);
    for (const [k, s] of map) {
      this.expire(s, t);
      if (!busy(s) && s.failures.length === 0 && t >= s.lockedUntil + this.lockoutMaxMs) map.delete(k);
    }
    // still full (an attack from many addresses or usernames): drop the least recently used
    for (const [k, s] of map) {
      if (map.size < this.maxEntries) break;
      if (!busy(s)) map.delete(k);
    }
  }
}

function pairKey(address: string, username: string): string {
  return `${address}\u0000${username.slice(0, MAX_KEY_USERNAME)}`;
}

// ---- password checks: cached verifier and bounded concurrency ----

export interface VerifierOptions {
  /** scrypt checks running at once. */
  maxConcurrent: number;
  /** Checks waiting for a turn; beyond it a login is refused as busy. */
  maxQueue: number;
  /** Bound on cached verifiers (one per configured user at most). Default 4096. */
  maxCached?: number;
}

/** Result of PasswordVerifier.check(). */
export type CheckResult =
  | { kind: 'ok'; user: AuthenticatedUser; cached: boolean }
  | { kind: 'bad' }
  | { kind: 'busy' }
  | { kind: 'cancelled' };

interface CachedVerifier {
  /** The configured hash this verifier was derived under: a changed hash invalidates it. */
  hash: string;
  mac: Buffer;
}

/**
 * Checks passwords against the configured users, cheaply for a known client's reconnect:
 *
 * - After a successful scrypt verification, a keyed verifier of (username, password) is kept in
 *   memory: HMAC-SHA256 under a random key made per process (never stored), compared with
 *   timingSafeEqual. A later login with the same username and password matches it and skips
 *   scrypt. The entry records the configured hash it was made under; if that hash changes (or the
 *   user is removed) the entry no longer matches. Unknown usernames never enter it, and a
 *   password that does not match the entry goes through scrypt as before, so a wrong password
 *   costs the same for a cached user as for any other (no enumeration by timing).
 * - scrypt checks run at most `maxConcurrent` at once (each holds ~16 MiB and a libuv thread);
 *   further ones wait in a queue of at most `maxQueue`, beyond which the login is refused as busy.
 *   Cached matches never queue.
 * - Unknown usernames, and users without a usable password hash, cost one dummy scrypt.
 */
export class PasswordVerifier {
  private readonly key = randomBytes(32);
  private readonly cache = new Map<string, CachedVerifier>();
  private readonly byName = new Map<string, MqttUser>();
  private readonly queue: Array<() => void> = [];
  private running = 0;
  private readonly maxCached: number;
  /** scrypt verifications run (dummy ones included). */
  passwordChecks = 0;
  /** Logins accepted by the cached verifier, without scrypt. */
  verifierHits = 0;
  /** Checks that shared the scrypt of the same username and password already running. */
  coalesced = 0;
  /** The scrypt checks running or waiting, by username and keyed MAC of the password (bounded by the queue). */
  private readonly checking = new Map<string, Promise<CheckResult>>();
  /** Logins refused because the queue of waiting checks was full. */
  queueFull = 0;
  /** Most checks waiting at once. */
  queuedMax = 0;

  constructor(
    users: readonly MqttUser[],
    private readonly opts: VerifierOptions,
  ) {
    this.maxCached = opts.maxCached ?? 4096;
    this.setUsers(users);
  }

  /** Replaces the configured users; verifiers of removed users or changed hashes are dropped. */
  setUsers(users: readonly MqttUser[]): void {
    this.byName.clear();
    for (const u of users) this.byName.set(u.username, u);
    for (const [name, v] of this.cache) if (this.byName.get(name)?.password_hash !== v.hash) this.cache.delete(name);
  }

  /** Checks waiting for a turn now. */
  get queued(): number {
    return this.queue.length;
  }

  /** Entries in the verifier cache. */
  get cachedCount(): number {
    return this.cache.size;
  }

  /** The user, if (username, password) matches its cached verifier: no scrypt needed. */
  cached(username: string, password: Buffer | string | undefined): AuthenticatedUser | null {
    const v = this.cache.get(username);
    if (!v) return null;
    const user = this.byName.get(username);
    if (!user || user.password_hash !== v.hash) {
      this.cache.delete(username);
      return null;
    }
    if (!timingSafeEqual(this.mac(username, password), v.mac)) return null;
    this.verifierHits++;
    // least recently used first
    this.cache.delete(username);
    this.cache.set(username, v);
    return { username: user.username, role: user.role };
  }

  /**
   * Full check: the cached verifier, else scrypt (waiting for a turn). `isCancelled` is asked when
   * the turn comes: true (the client went away meanwhile) skips the scrypt.
   */
  async check(username: string, password: Buffer | string | undefined, isCancelled: () => boolean = () => false): Promise<CheckResult> {
    const hit = this.cached(username, password);
    if (hit) return { kind: 'ok', user: hit, cached: true };
    // The same username and password already being checked (kiosks of one user starting together,
    // or an attacker repeating one guess in parallel): share that scrypt instead of running another.
    // Without this, N logins of one user that arrive before the first check ends cost N scrypts.
    const key = `${username}\u0000${this.mac(username, password).toString('base64')}`;
    const running = this.checking.get(key);
    if (running) {
      const r = await running;
      // the leader's client went away or found the queue full: that says nothing about this login
      if (r.kind === 'busy' || r.kind === 'cancelled') return this.check(username, password, isCancelled);
      this.coalesced++;
      return r;
    }
    const p = this.checkOnce(username, password, isCancelled);
    this.checking.set(key, p);
    try {
      return await p;
    } finally {
      this.checking.delete(key);
    }
  }

  private async checkOnce(username: string, password: Buffer | string | undefined, isCancelled: () => boolean): Promise<CheckResult> {
    if (this.running >= this.opts.maxConcurrent) {
      if (this.queue.length >= this.opts.maxQueue) {
        this.queueFull++;
        return { kind: 'busy' };
      }
      // the turn is handed over by a finishing check (running stays counted), so none can jump it
      await new Promise<void>((resolve) => {
        this.queue.push(resolve);
        this.queuedMax = Math.max(this.queuedMax, this.queue.length);
      });
    } else {
      this.running++;
    }
    try {
      if (isCancelled()) return { kind: 'cancelled' };
      this.passwordChecks++;
      const user = this.byName.get(username);
      const stored = user?.password_hash;
      const user2 = await checkCredentials(user ? [user] : [], username, password);
      if (!user2 || stored === undefined) return { kind: 'bad' };
      this.remember(username, stored, password);
      return { kind: 'ok', user: user2, cached: false };
    } finally {
      const next = this.queue.shift();
      if (next) next();
      else this.running--;
    }
  }

  private remember(username: string, hash: string, password: Buffer | string | undefined): void {
    if (this.byName.get(username)?.password_hash !== hash) return; // changed while we checked
    this.cache.delete(username);
    if (this.cache.size >= this.maxCached) {
      const oldest = this.cache.keys().next();
      if (!oldest.done) this.cache.delete(oldest.value);
    }
    this.cache.set(username, { hash, mac: this.mac(username, password) });
  }

  private mac(username: string, password: Buffer | string | undefined): Buffer {
    const name = Buffer.from(username, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32BE(name.length);
    const pw = password === undefined ? Buffer.alloc(0) : typeof password === 'string' ? Buffer.from(password.normalize('NFC'), 'utf8') : password;
    // length-prefixed username, so (ab, c) and (a, bc) differ
    return createHmac('sha256', this.key).update(len).update(name).update(pw).digest();
  }
}
