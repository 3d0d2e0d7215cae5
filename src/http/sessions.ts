/**
 * Login sessions for the gateway's web pages (the technician page): a browser logs in once with a
 * bus user's password and then carries an opaque session id in a cookie, instead of sending the
 * password with every request as HTTP Basic does (a browser keeps Basic credentials until it is
 * closed, with no way to log out, and a phone would have to type them into a native prompt).
 *
 * - The id is 32 random bytes (base64url), the only thing in the cookie. The cookie is HttpOnly
 *   (page scripts cannot read it), SameSite=Strict (no other site's page can make the browser send
 *   it), Path=/, and Secure whenever the server speaks HTTPS (always on the LAN).
 * - Each session has its own CSRF token, given to the page in its state and required in the
 *   `x-shelfgate-csrf` header of every state-changing request made with the cookie. SameSite=Strict
 *   already stops cross-site requests in current browsers; the token covers older ones.
 * - Sessions live in memory only (a restart logs everyone out, which is the safe side), at most
 *   `maxSessions` (the oldest goes first), and end after `idleMs` without a request or `maxAgeMs`
 *   after login, whichever is first. The role is the one at login; a user removed from the config
 *   takes effect at the next restart, like an open MQTT connection.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Role } from '../bus/auth';

export interface Session {
  id: string;
  username: string;
  role: Role;
  csrf: string;
  createdAt: number;
  lastSeen: number;
}

export interface SessionStoreOptions {
  idleMs: number;
  maxAgeMs: number;
  maxSessions: number;
  now?: () => number;
}

export const SESSION_COOKIE = 'shelfgate_session';
export const CSRF_HEADER = 'x-shelfgate-csrf';

const token = (): string => randomBytes(32).toString('base64url');

export class SessionStore {
  /** Insertion order is login order: the first entry is the oldest session. */
  private readonly sessions = new Map<string, Session>();
  private readonly now: () => number;
  readonly counters = { created: 0, expired: 0, evicted: 0, ended: 0 };

  constructor(private readonly o: SessionStoreOptions) {
    this.now = o.now ?? Date.now;
  }

  get size(): number {
    return this.sessions.size;
  }

  create(username: string, role: Role): Session {
    this.sweep();
    while (this.sessions.size >= this.o.maxSessions) {
      const oldest = this.sessions.keys().next().value as string;
      this.sessions.delete(oldest);
      this.counters.evicted++;
    }
    const t = this.now();
    const s: Session = { id: token(), username, role, csrf: token(), createdAt: t, lastSeen: t };
    this.sessions.set(s.id, s);
    this.counters.created++;
    return s;
  }

  /** The live session for `id` (its idle time restarts), or null. */
  get(id: string | undefined): Session | null {
    if (!id) return null;
    const s = this.sessions.get(id);
    if (!s) return null;
    const t = this.now();
    if (this.expired(s, t)) {
      this.sessions.delete(id);
      this.counters.expired++;
      return null;
    }
    s.lastSeen = t;
    return s;
  }

  end(id: string | undefined): void {
    if (id && this.sessions.delete(id)) this.counters.ended++;
  }

  /** Drops expired sessions (called on each login; the map is bounded either way). */
  sweep(): void {
    const t = this.now();
    for (const [id, s] of this.sessions)
      if (this.expired(s, t)) {
        this.sessions.delete(id);
        this.counters.expired++;
      }
  }

  clear(): void {
    this.sessions.clear();
  }

  private expired(s: Session, t: number): boolean {
    return t - s.lastSeen > this.o.idleMs || t - s.createdAt > this.o.maxAgeMs;
  }

  /** Constant-time comparison of a request's CSRF header with its session's token. */
  static csrfMatches(s: Session, header: string | string[] | undefined): boolean {
    if (typeof header !== 'string') return false;
    const a = Buffer.from(header);
    const b = Buffer.from(s.csrf);
    return a.length === b.length && timingSafeEqual(a, b);
  }
}

/** The Set-Cookie value for a session (or, with `id` null, one that deletes it). */
export function sessionCookie(id: string | null, opts: { secure: boolean; maxAgeS: number }): string {
  const attrs = ['Path=/', 'HttpOnly', 'SameSite=Strict', ...(opts.secure ? ['Secure'] : [])];
  return id === null ? `${SESSION_COOKIE}=; Max-Age=0; ${attrs.join('; ')}` : `${SESSION_COOKIE}=${id}; Max-Age=${opts.maxAgeS}; ${attrs.join('; ')}`;
}

/** The session id from a Cookie header, or undefined. */
export function sessionIdFrom(cookieHeader: string | undefined): string | undefined {
  if (!cookieHeader) return undefined;
  for (const part of cookieHeader.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === SESSION_COOKIE) {
      const v = part.slice(eq + 1).trim();
      return /^[A-Za-z0-9_-]{43}$/.test(v) ? v : undefined;
    }
  }
  return undefined;
}
