import { describe, expect, it } from 'vitest';
import { SessionStore, sessionCookie, sessionIdFrom, SESSION_COOKIE } from '../../src/http/sessions';

describe('web sessions', () => {
  const store = (t: { now: number }, o: Partial<{ idleMs: number; maxAgeMs: number; maxSessions: number }> = {}) =>
    new SessionStore({ idleMs: 1000, maxAgeMs: 5000, maxSessions: 3, ...o, now: () => t.now });

  it('a session lives while used, ends after idle time or maximum age, and on logout', () => {
    const t = { now: 0 };
    const s = store(t);
    const a = s.create('tech', 'technician');
    expect(a.id).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(a.csrf).not.toBe(a.id);
    t.now = 900;
    expect(s.get(a.id)?.username).toBe('tech');
    t.now = 1800; // 900 ms idle: still alive (the get above restarted the idle time)
    expect(s.get(a.id)).not.toBeNull();
    t.now = 2900; // 1100 ms idle
    expect(s.get(a.id)).toBeNull();
    expect(s.counters.expired).toBe(1);
    const b = s.create('tech', 'technician');
    for (t.now = 3000; t.now <= 7900; t.now += 900) expect(s.get(b.id)).not.toBeNull();
    t.now = 8100; // used all along, but 5100 ms since login
    expect(s.get(b.id)).toBeNull();
    const c = s.create('tech', 'technician');
    s.end(c.id);
    expect(s.get(c.id)).toBeNull();
    expect(s.get(undefined)).toBeNull();
    expect(s.get('not-a-session')).toBeNull();
  });

  it('is bounded: the oldest login goes first', () => {
    const t = { now: 0 };
    const s = store(t);
    const ids = [1, 2, 3, 4].map(() => s.create('u', 'technician').id);
    expect(s.size).toBe(3);
    expect(s.get(ids[0])).toBeNull();
    expect(s.get(ids[3])).not.toBeNull();
    expect(s.counters.evicted).toBe(1);
  });

  it('CSRF: only the session\'s own token, compared in constant time', () => {
    const s = store({ now: 0 }).create('u', 'technician');
    expect(SessionStore.csrfMatches(s, s.csrf)).toBe(true);
    expect(SessionStore.csrfMatches(s, `${s.csrf}x`)).toBe(false);
    expect(SessionStore.csrfMatches(s, undefined)).toBe(false);
    expect(SessionStore.csrfMatches(s, [s.csrf])).toBe(false);
  });

  it('cookies: HttpOnly, SameSite=Strict, Secure over HTTPS; parsed back from a Cookie header', () => {
    const id = 'A'.repeat(43);
    expect(sessionCookie(id, { secure: true, maxAgeS: 60 })).toBe(`${SESSION_COOKIE}=${id}; Max-Age=60; Path=/; HttpOnly; SameSite=Strict; Secure`);
    expect(sessionCookie(null, { secure: false, maxAgeS: 60 })).toBe(`${SESSION_COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict`);
    expect(sessionIdFrom(`theme=dark; ${SESSION_COOKIE}=${id}; other=1`)).toBe(id);
    expect(sessionIdFrom(`${SESSION_COOKIE}=short`)).toBeUndefined();
    expect(sessionIdFrom(undefined)).toBeUndefined();
  });
});
