import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConnectionAdmission, normalizeAddress, type AdmissionLimits } from '../../src/bus/admission';

const LIMITS: AdmissionLimits = { maxConnections: 6, reservedConnections: 2, perAddress: 4, perUser: 2, maxUnauthenticated: 3, connectTimeoutMs: 1000 };

describe('ConnectionAdmission', () => {
  afterEach(() => {
    vi.useRealTimers();
  });
  const make = (over: Partial<AdmissionLimits> = {}) => new ConnectionAdmission({ ...LIMITS, ...over });
  const noop = (): void => {};

  it('caps sockets per address; other addresses carry on; a closed socket frees its slot', () => {
    const a = make({ maxUnauthenticated: 100 });
    const socks = Array.from({ length: 4 }, () => ({}));
    for (const s of socks) expect(a.accept(s, '10.0.0.1', noop)).toBeNull();
    expect(a.accept({}, '10.0.0.1', noop)).toBe('address');
    expect(a.accept({}, '10.0.0.2', noop)).toBeNull();
    expect(a.counters.refusedAddress).toBe(1);
    a.release(socks[0]!);
    a.release(socks[0]!); // idempotent
    expect(a.fromAddress('10.0.0.1')).toBe(3);
    expect(a.accept({}, '10.0.0.1', noop)).toBeNull();
    a.clear();
  });

  it('caps sockets still logging in; a login frees an unauthenticated slot', () => {
    const a = make();
    const s = [{}, {}, {}];
    s.forEach((x, i) => expect(a.accept(x, `10.0.0.${i}`, noop)).toBeNull());
    expect(a.accept({}, '10.0.0.9', noop)).toBe('unauthenticated');
    expect(a.counters.refusedUnauthenticated).toBe(1);
    expect(a.login(s[0]!, 'adm', 'admin')).toBeNull();
    expect(a.unauthenticated).toBe(2);
    expect(a.authenticated).toBe(1);
    expect(a.accept({}, '10.0.0.9', noop)).toBeNull();
    a.clear();
  });

  it('caps connections per user, keeps reserved slots for admin and technician, and a global maximum', () => {
    const a = make({ maxUnauthenticated: 100, perAddress: 100 });
    const login = (user: string, role: 'kiosk' | 'admin' | 'technician') => {
      const s = {};
      expect(a.accept(s, '10.0.0.1', noop)).toBeNull();
      return { s, r: a.login(s, user, role) };
    };
    expect(login('k1', 'kiosk').r).toBeNull();
    const k1b = login('k1', 'kiosk');
    expect(k1b.r).toBeNull();
    expect(login('k1', 'kiosk').r).toBe('user'); // k1's third
    expect(login('k2', 'kiosk').r).toBeNull(); // another kiosk carries on
    expect(login('k3', 'kiosk').r).toBeNull();
    expect(login('k4', 'kiosk').r).toBe('reserved'); // 4 of 6 taken: the last 2 are reserved
    expect(login('tech', 'technician').r).toBeNull();
    expect(login('adm', 'admin').r).toBeNull();
    expect(login('adm', 'admin').r).toBe('global');
    expect(a.counters).toMatchObject({ refusedUser: 1, refusedGlobal: 2 });
    a.release(k1b.s);
    expect(a.ofUser('k1')).toBe(1);
    expect(a.login({}, 'x', 'admin')).toBe('global'); // never accepted
    a.clear();
  });

  it('a reconnect that takes over its own old connection (same user) is not refused by it', () => {
    const a = make({ perUser: 1, maxUnauthenticated: 100 });
    const old = {};
    a.accept(old, '10.0.0.1', noop);
    expect(a.login(old, 'k1', 'kiosk')).toBeNull();
    const other = {};
    a.accept(other, '10.0.0.1', noop);
    const fresh = {};
    a.accept(fresh, '10.0.0.1', noop);
    expect(a.login(other, 'k1', 'kiosk')).toBe('user');
    expect(a.login(fresh, 'k1', 'kiosk', old)).toBeNull();
    a.clear();
  });

  it('times out a socket that does not log in in time, not one that did', () => {
    vi.useFakeTimers();
    const a = make();
    const timedOut: string[] = [];
    const [slow, fast, gone] = [{}, {}, {}];
    a.accept(slow, '10.0.0.1', () => timedOut.push('slow'));
    a.accept(fast, '10.0.0.1', () => timedOut.push('fast'));
    a.accept(gone, '10.0.0.1', () => timedOut.push('gone'));
    a.login(fast, 'k1', 'kiosk');
    a.release(gone);
    vi.advanceTimersByTime(999);
    expect(timedOut).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(timedOut).toEqual(['slow']);
    expect(a.counters.connectTimeouts).toBe(1);
    a.clear();
  });

  it('one address holds at most a quarter of the unauthenticated slots: a half-open flood from it leaves room for others', () => {
    const a = make({ maxUnauthenticated: 8, perAddress: 100 });
    expect(a.unauthenticatedPerAddress).toBe(2);
    const flood = Array.from({ length: 50 }, () => ({}));
    const refused = flood.filter((s) => a.accept(s, '10.0.0.66', noop) !== null);
    expect(refused).toHaveLength(48);
    expect(a.counters.refusedAddress).toBe(48);
    expect(a.counters.refusedUnauthenticated).toBe(0);
    const admin = {};
    expect(a.accept(admin, '10.0.0.2', noop)).toBeNull();
    expect(a.login(admin, 'adm', 'admin')).toBeNull();
    // a flooding socket that logs in frees its address's share
    expect(a.login(flood[0]!, 'k1', 'kiosk')).toBeNull();
    expect(a.accept({}, '10.0.0.66', noop)).toBeNull();
    a.clear();
  });

  it('socket ceiling and address normalization', () => {
    expect(make().socketCeiling).toBe(9);
    expect(normalizeAddress('::ffff:127.0.0.2')).toBe('127.0.0.2');
    expect(normalizeAddress('::1')).toBe('::1');
    expect(normalizeAddress(undefined)).toBe('unknown');
  });
});
