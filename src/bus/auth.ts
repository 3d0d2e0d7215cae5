/**
 * Password hashing for bus users and the per-address failure tracker.
 *
 * Hash format (checked by the config schema): `scrypt$N$r$p$<salt base64>$<key base64>`,
 * defaults N=16384 (2^14), r=8, p=1, 16-byte salt, 32-byte key (RFC 7914; the OWASP minimum for
 * scrypt). One verification costs about 16 MiB of memory (128 * N * r bytes) and tens of
 * milliseconds of CPU on a Pi, which is why the broker bounds how many run at once.
 */
import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
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

export interface FailureTrackerOptions {
  /** Failures (and attempts still being checked) within `windowMs` before a lockout. */
  maxFailures: number;
  lockoutMs: number;
  /** How long a failure counts; default: the lockout duration. */
  windowMs?: number;
  now?: () => number;
  /** Bound on tracked addresses; the oldest entries are dropped first. Default 10000. */
  maxEntries?: number;
}

interface AddressState {
  failures: number[];
  pending: number;
  lockedUntil: number;
}

/** ok: verify the password; locked: the address is locked out; busy: too many checks in flight. */
export type AttemptVerdict = 'ok' | 'locked' | 'busy';

/**
 * Per-remote-address login failure tracker. After `maxFailures` failures within the window the
 * address is locked out for `lockoutMs`: attempts are refused without checking the password.
 * Attempts still being verified count as potential failures, so an attacker cannot start
 * hundreds of parallel scrypt checks before the first failure lands.
 */
export class AuthFailureTracker {
  private readonly byAddress = new Map<string, AddressState>();
  private readonly windowMs: number;
  private readonly now: () => number;
  private readonly maxEntries: number;
  authFailures = 0;
  lockouts = 0;

  constructor(private readonly opts: FailureTrackerOptions) {
    this.windowMs = opts.windowMs ?? opts.lockoutMs;
    this.now = opts.now ?? Date.now;
    this.maxEntries = opts.maxEntries ?? 10_000;
  }

  /** True while `address` is locked out. */
  isLocked(address: string): boolean {
    const s = this.byAddress.get(address);
    return s !== undefined && this.now() < s.lockedUntil;
  }

  /**
   * Call before verifying a password. 'locked' and 'busy' mean refuse at once without verifying
   * (busy: recent failures plus checks in flight already reach the limit); 'ok' means verify, then
   * call exactly one of succeeded()/failed() for the same address.
   */
  begin(address: string): AttemptVerdict {
    const t = this.now();
    const s = this.state(address, t);
    if (t < s.lockedUntil) return 'locked';
    if (s.failures.length + s.pending >= this.opts.maxFailures) return 'busy';
    s.pending++;
    return 'ok';
  }

  succeeded(address: string): void {
    const s = this.byAddress.get(address);
    if (!s) return;
    s.pending = Math.max(0, s.pending - 1);
    s.failures = [];
    if (s.pending === 0 && s.lockedUntil <= this.now()) this.byAddress.delete(address);
  }

  /** Records a failure (of an attempt started with begin(), or a refusal that did not verify). */
  failed(address: string, fromBegin = true): void {
    const t = this.now();
    const s = this.state(address, t);
    if (fromBegin) s.pending = Math.max(0, s.pending - 1);
    this.authFailures++;
    s.failures.push(t);
    if (s.failures.length >= this.opts.maxFailures && t >= s.lockedUntil) {
      s.lockedUntil = t + this.opts.lockoutMs;
      s.failures = [];
      this.lockouts++;
    }
  }

  /** Tracked addresses (for tests and stats). */
  get size(): number {
    return this.byAddress.size;
  }

  private state(address: string, t: number): AddressState {
    let s = this.byAddress.get(address);
    if (!s) {
      if (this.byAddress.size >= this.maxEntries) this.evict(t);
      s = { failures: [], pending: 0, lockedUntil: 0 };
      this.byAddress.set(address, s);
    } else {
      const cutoff = t - this.windowMs;
      while (s.failures.length > 0 && s.failures[0]! <= cutoff) s.failures.shift();
    }
    return s;
  }

  private evict(t: number): void {
    for (const [k, s] of this.byAddress) {
      if (s.pending === 0 && t >= s.lockedUntil && (s.failures.length === 0 || s.failures[s.failures.length - 1]! <= t - this.windowMs)) {
        this.byAddress.delete(k);
      }
    }
    // still full (an attack from many addresses): drop the oldest entries, never grow unbounded
    for (const k of this.byAddress.keys()) {
      if (this.byAddress.size < this.maxEntries) break;
      this.byAddress.delete(k);
    }
  }
}
