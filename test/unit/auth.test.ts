import { describe, expect, it } from 'vitest';
import { AuthFailureTracker, DUMMY_HASH, PasswordVerifier, checkCredentials, hashPassword, parseHash, verifyPassword } from '../../src/bus/auth';
import { hashForCli } from '../../src/bus/passwd';
import type { MqttUser } from '../../src/config/schema';

// the regex of mqtt.users[].password_hash in src/config/schema.ts
const SCHEMA_RE = /^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/;

describe('scrypt hashes', () => {
  it('produces scrypt$16384$8$1$<16-byte salt>$<32-byte key> matching the config schema', async () => {
    const h = await hashPassword('correct horse');
    expect(h).toMatch(SCHEMA_RE);
    const parts = h.split('$');
    expect(parts.slice(0, 4)).toEqual(['scrypt', '16384', '8', '1']);
    expect(Buffer.from(parts[4]!, 'base64')).toHaveLength(16);
    expect(Buffer.from(parts[5]!, 'base64')).toHaveLength(32);
    expect(DUMMY_HASH).toMatch(SCHEMA_RE);
  });

  it('verifies the right password only', async () => {
    const h = await hashPassword('s3cret', { N: 1024 });
    expect(await verifyPassword('s3cret', h)).toBe(true);
    expect(await verifyPassword(Buffer.from('s3cret'), h)).toBe(true);
    expect(await verifyPassword('s3cret ', h)).toBe(false);
    expect(await verifyPassword('', h)).toBe(false);
  });

  it('salts: two hashes of one password differ', async () => {
    const [a, b] = await Promise.all([hashPassword('x', { N: 1024 }), hashPassword('x', { N: 1024 })]);
    expect(a).not.toBe(b);
  });

  it('treats malformed or hostile stored hashes as a mismatch, never throwing', async () => {
    for (const bad of ['', 'plain', 'scrypt$16384$8$1$abc', 'scrypt$1000$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=', `scrypt$${2 ** 30}$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=`]) {
      expect(parseHash(bad)).toBeNull();
      expect(await verifyPassword('x', bad)).toBe(false);
    }
  });

  it('refuses bad parameters when hashing', async () => {
    await expect(hashPassword('x', { N: 1000 })).rejects.toThrow(RangeError);
    await expect(hashPassword('x', { saltBytes: 8 })).rejects.toThrow(RangeError);
  });

  it('hashForCli hashes with defaults and refuses an empty password', async () => {
    const h = await hashForCli('pw');
    expect(h).toMatch(/^scrypt\$16384\$8\$1\$/);
    expect(await verifyPassword('pw', h)).toBe(true);
    await expect(hashForCli('')).rejects.toThrow();
  });
});

describe('checkCredentials', () => {
  it('returns the user for the right password, null otherwise; unknown users cost a scrypt too', async () => {
    const users: MqttUser[] = [{ username: 'k', password_hash: await hashPassword('pw'), role: 'kiosk' }];
    expect(await checkCredentials(users, 'k', Buffer.from('pw'))).toEqual({ username: 'k', role: 'kiosk' });
    expect(await checkCredentials(users, 'k', Buffer.from('no'))).toBeNull();
    expect(await checkCredentials(users, 'k', undefined)).toBeNull();
    expect(await checkCredentials(users, undefined, Buffer.from('pw'))).toBeNull();

    // timing: an unknown user is verified against the dummy hash (same parameters), so it takes
    // about as long as a wrong password, not ~0 ms
    const time = async (f: () => Promise<unknown>): Promise<number> => {
      const t0 = performance.now();
      for (let i = 0; i < 3; i++) await f();
      return performance.now() - t0;
    };
    const wrong = await time(() => checkCredentials(users, 'k', Buffer.from('no')));
    const unknown = await time(() => checkCredentials(users, 'nobody', Buffer.from('no')));
    expect(unknown).toBeGreaterThan(wrong * 0.25);
  });
});

describe('AuthFailureTracker', () => {
  const make = (over: { lockoutMaxMs?: number; addressMaxFailures?: number } = {}) => {
    let now = 1_000_000;
    const tr = new AuthFailureTracker({ maxFailures: 3, lockoutMs: 60_000, now: () => now, ...over });
    return { tr, advance: (ms: number) => (now += ms) };
  };
  const fail = async (tr: AuthFailureTracker, a: string, u: string) => {
    expect(await tr.acquire(a, u)).toBe('ok');
    return tr.failed(a, u);
  };

  it('locks an (address, username) pair out after maxFailures failures and releases it after lockoutMs', async () => {
    const { tr, advance } = make();
    for (let i = 0; i < 2; i++) expect(await fail(tr, '10.0.0.1', 'k1')).toEqual([]);
    expect(await fail(tr, '10.0.0.1', 'k1')).toEqual([{ scope: 'pair', address: '10.0.0.1', username: 'k1', durationMs: 60_000, nth: 1 }]);
    expect(tr.authFailures).toBe(3);
    expect(tr.lockouts).toBe(1);
    expect(tr.locked('10.0.0.1', 'k1')).toBe('pair');
    expect(await tr.acquire('10.0.0.1', 'k1')).toBe('locked');
    // the same address with another username (kiosks behind one NAT), and the same username elsewhere, carry on
    expect(tr.locked('10.0.0.1', 'k2')).toBeNull();
    expect(await tr.acquire('10.0.0.1', 'k2')).toBe('ok');
    tr.succeeded('10.0.0.1', 'k2');
    expect(await tr.acquire('10.0.0.2', 'k1')).toBe('ok');
    tr.succeeded('10.0.0.2', 'k1');
    advance(60_001);
    expect(tr.locked('10.0.0.1', 'k1')).toBeNull();
    expect(await tr.acquire('10.0.0.1', 'k1')).toBe('ok');
  });

  it('doubles each further lockout of the same pair up to lockoutMaxMs; a success resets the back-off', async () => {
    const { tr, advance } = make({ lockoutMaxMs: 200_000 });
    const lockOnce = async (): Promise<number> => {
      await fail(tr, 'a', 'u');
      await fail(tr, 'a', 'u');
      const [l] = await fail(tr, 'a', 'u');
      advance(l!.durationMs + 1);
      return l!.durationMs;
    };
    expect(await lockOnce()).toBe(60_000);
    expect(await lockOnce()).toBe(120_000);
    expect(await lockOnce()).toBe(200_000); // 240 s capped
    expect(await lockOnce()).toBe(200_000);
    expect(await tr.acquire('a', 'u')).toBe('ok');
    tr.succeeded('a', 'u');
    expect(await lockOnce()).toBe(60_000);
  });

  it('forgets failures older than the window; a success resets them', async () => {
    const { tr, advance } = make();
    await fail(tr, 'a', 'u');
    await fail(tr, 'a', 'u');
    advance(61_000);
    await fail(tr, 'a', 'u');
    expect(tr.locked('a', 'u')).toBeNull();
    await tr.acquire('a', 'u');
    tr.succeeded('a', 'u');
    await fail(tr, 'a', 'u');
    await fail(tr, 'a', 'u');
    expect(tr.locked('a', 'u')).toBeNull();
    expect(tr.lockouts).toBe(0);
  });

  it('never refuses a correct login because checks are in flight: it waits for them, then decides', async () => {
    const { tr } = make();
    // old behaviour: the 4th concurrent attempt was refused as 'busy' even with the right password
    for (let i = 0; i < 3; i++) expect(await tr.acquire('a', 'u')).toBe('ok');
    let fourth: string | undefined;
    const p = tr.acquire('a', 'u').then((v) => (fourth = v));
    await Promise.resolve();
    expect(fourth).toBeUndefined(); // waiting, not refused
    tr.succeeded('a', 'u'); // one of the three was correct: failures reset, a turn is free
    await p;
    expect(fourth).toBe('ok');
    tr.succeeded('a', 'u');
    tr.succeeded('a', 'u');
    tr.succeeded('a', 'u');
    expect(tr.authFailures).toBe(0);
  });

  it('parallel wrong guesses cannot overshoot the limit: waiting attempts end locked', async () => {
    const { tr } = make();
    for (let i = 0; i < 3; i++) expect(await tr.acquire('a', 'u')).toBe('ok');
    const waiting = tr.acquire('a', 'u');
    tr.failed('a', 'u');
    tr.failed('a', 'u');
    tr.failed('a', 'u');
    expect(await waiting).toBe('locked');
    expect(tr.authFailures).toBe(3);
  });

  it('abandon() frees a turn without counting a failure', async () => {
    const { tr } = make();
    for (let i = 0; i < 3; i++) await tr.acquire('a', 'u');
    const waiting = tr.acquire('a', 'u');
    tr.abandon('a', 'u');
    expect(await waiting).toBe('ok');
    expect(tr.authFailures).toBe(0);
  });

  it('locks a whole address that sprays many usernames (addressMaxFailures), with back-off', async () => {
    const { tr, advance } = make({ addressMaxFailures: 5, lockoutMaxMs: 600_000 });
    for (let i = 0; i < 4; i++) expect(await fail(tr, 'x', `user${i}`)).toEqual([]);
    // a success from the address does not reset the spray count
    await tr.acquire('x', 'good');
    tr.succeeded('x', 'good');
    const started = await fail(tr, 'x', 'user4');
    expect(started).toEqual([{ scope: 'address', address: 'x', username: 'user4', durationMs: 60_000, nth: 1 }]);
    expect(tr.locked('x', 'anyone')).toBe('address');
    expect(tr.locked('y', 'user0')).toBeNull(); // other addresses carry on
    advance(60_001);
    for (let i = 0; i < 4; i++) await fail(tr, 'x', `other${i}`);
    expect((await fail(tr, 'x', 'other4'))[0]).toMatchObject({ scope: 'address', durationMs: 120_000, nth: 2 });
  });

  it('stays bounded in memory under many addresses and usernames', async () => {
    const tr = new AuthFailureTracker({ maxFailures: 3, lockoutMs: 1000, maxEntries: 100 });
    for (let i = 0; i < 1000; i++) {
      const a = `10.0.${i >> 8}.${i & 255}`;
      await tr.acquire(a, `u${i}`);
      tr.failed(a, `u${i}`);
      await tr.acquire('10.9.9.9', `spray${i}`);
      tr.failed('10.9.9.9', `spray${i}`);
    }
    expect(tr.size).toBeLessThanOrEqual(200);
    // a very long username is kept short in the key
    await tr.acquire('z', 'x'.repeat(100_000));
    expect(tr.failed('z', 'x'.repeat(100_000))).toEqual([]);
  });
});

describe('PasswordVerifier', () => {
  const users = async (): Promise<MqttUser[]> => {
    const h = await hashPassword('pw', { N: 1024 });
    return [
      { username: 'k1', password_hash: h, role: 'kiosk' },
      { username: 'k2', password_hash: h, role: 'kiosk' },
      { username: 'certonly', cert_cn: 'cn', role: 'device' },
    ];
  };

  it('a reconnect with the same password skips scrypt; a wrong one pays it; unknown users never enter the cache', async () => {
    const v = new PasswordVerifier(await users(), { maxConcurrent: 2, maxQueue: 10 });
    expect(await v.check('k1', Buffer.from('pw'))).toEqual({ kind: 'ok', user: { username: 'k1', role: 'kiosk' }, cached: false });
    expect(v.passwordChecks).toBe(1);
    expect(await v.check('k1', Buffer.from('pw'))).toEqual({ kind: 'ok', user: { username: 'k1', role: 'kiosk' }, cached: true });
    expect(v.passwordChecks).toBe(1);
    expect(v.verifierHits).toBe(1);
    expect(await v.check('k1', Buffer.from('pw2'))).toEqual({ kind: 'bad' });
    expect(await v.check('k1', Buffer.from('p'))).toEqual({ kind: 'bad' });
    expect(v.passwordChecks).toBe(3); // wrong passwords of a cached user cost a scrypt like any other
    expect(await v.check('nobody', Buffer.from('pw'))).toEqual({ kind: 'bad' });
    expect(await v.check('nobody', Buffer.from('pw'))).toEqual({ kind: 'bad' });
    expect(await v.check('certonly', Buffer.from(''))).toEqual({ kind: 'bad' });
    expect(v.passwordChecks).toBe(6); // unknown usernames: a dummy scrypt each time
    expect(v.cachedCount).toBe(1);
    // the verifier is bound to the username: the same password for k2 is a full check
    expect(await v.check('k2', 'pw')).toMatchObject({ kind: 'ok', cached: false });
    expect(v.passwordChecks).toBe(7);
  });

  it('a changed or removed configured hash invalidates the cached verifier', async () => {
    const u = await users();
    const v = new PasswordVerifier(u, { maxConcurrent: 2, maxQueue: 10 });
    await v.check('k1', 'pw');
    expect(v.cached('k1', 'pw')).not.toBeNull();
    const newHash = await hashPassword('new', { N: 1024 });
    v.setUsers([{ ...u[0]!, password_hash: newHash }, u[1]!]);
    expect(v.cached('k1', 'pw')).toBeNull();
    expect(await v.check('k1', 'pw')).toEqual({ kind: 'bad' });
    expect(await v.check('k1', 'new')).toMatchObject({ kind: 'ok', cached: false });
    v.setUsers([u[1]!]);
    expect(v.cached('k1', 'new')).toBeNull();
    expect(v.cachedCount).toBe(0);
  });

  it('bounds concurrent scrypt checks: waiting ones wait, beyond the queue they are refused as busy', async () => {
    const v = new PasswordVerifier(await users(), { maxConcurrent: 2, maxQueue: 3 });
    // different passwords, so that no check can share another's scrypt
    const results = await Promise.all(Array.from({ length: 7 }, (_, i) => v.check(i % 2 ? 'k1' : 'k2', i < 2 ? 'pw' : `wrong-${i}`)));
    // 2 running + 3 waiting are checked (the two right ones succeed); the 6th and 7th found the queue full
    expect(results.filter((r) => r.kind === 'ok')).toHaveLength(2);
    expect(results.filter((r) => r.kind === 'bad')).toHaveLength(3);
    expect(results.filter((r) => r.kind === 'busy')).toHaveLength(2);
    expect(v.queueFull).toBe(2);
    expect(v.queuedMax).toBe(3);
    expect(v.passwordChecks).toBe(5);
    // all done: the turns were all given back
    expect(await v.check('k1', 'pw')).toMatchObject({ kind: 'ok', cached: true });
    expect(v.queued).toBe(0);
  });

  it('runs one scrypt for logins of the same user and password that arrive together', async () => {
    const v = new PasswordVerifier(await users(), { maxConcurrent: 8, maxQueue: 64 });
    const results = await Promise.all(Array.from({ length: 8 }, () => v.check('k1', 'pw')));
    expect(results.every((r) => r.kind === 'ok')).toBe(true);
    expect(v.passwordChecks).toBe(1);
    expect(v.coalesced).toBe(7);
    // a different (wrong) password is not answered by that scrypt
    const [good, bad] = await Promise.all([v.check('k2', 'pw'), v.check('k2', 'nope')]);
    expect(good).toMatchObject({ kind: 'ok' });
    expect(bad).toEqual({ kind: 'bad' });
    expect(v.passwordChecks).toBe(3);
  });

  it('a login sharing a check whose client went away gets its own check', async () => {
    const v = new PasswordVerifier(await users(), { maxConcurrent: 1, maxQueue: 3 });
    const blocker = v.check('k2', 'pw');
    const gone = v.check('k1', 'pw', () => true); // waits behind the blocker, then finds its client gone
    const follower = v.check('k1', 'pw'); // same user and password: shares the check above
    expect(await gone).toEqual({ kind: 'cancelled' });
    expect(await follower).toMatchObject({ kind: 'ok', cached: false });
    expect(await blocker).toMatchObject({ kind: 'ok' });
    expect(v.passwordChecks).toBe(2);
  });

  it('skips the scrypt of a waiting check whose client went away', async () => {
    const v = new PasswordVerifier(await users(), { maxConcurrent: 1, maxQueue: 3 });
    const first = v.check('k1', 'pw');
    const gone = v.check('k2', 'pw', () => true);
    expect(await gone).toEqual({ kind: 'cancelled' });
    expect(await first).toMatchObject({ kind: 'ok' });
    expect(v.passwordChecks).toBe(1);
    expect(await v.check('k2', 'pw')).toMatchObject({ kind: 'ok', cached: false });
  });
});
