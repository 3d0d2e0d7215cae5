import { describe, expect, it } from 'vitest';
import { AuthFailureTracker, DUMMY_HASH, checkCredentials, hashPassword, parseHash, verifyPassword } from '../../src/bus/auth';
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
  const make = () => {
    let now = 1_000_000;
    const tr = new AuthFailureTracker({ maxFailures: 3, lockoutMs: 60_000, now: () => now });
    return { tr, advance: (ms: number) => (now += ms) };
  };

  it('locks an address out after maxFailures failures and releases it after lockoutMs', () => {
    const { tr, advance } = make();
    for (let i = 0; i < 3; i++) {
      expect(tr.begin('10.0.0.1')).toBe('ok');
      tr.failed('10.0.0.1');
    }
    expect(tr.authFailures).toBe(3);
    expect(tr.lockouts).toBe(1);
    expect(tr.isLocked('10.0.0.1')).toBe(true);
    expect(tr.begin('10.0.0.1')).toBe('locked');
    expect(tr.begin('10.0.0.2')).toBe('ok'); // other addresses unaffected
    advance(60_001);
    expect(tr.isLocked('10.0.0.1')).toBe(false);
    expect(tr.begin('10.0.0.1')).toBe('ok');
  });

  it('forgets failures older than the window and resets on success', () => {
    const { tr, advance } = make();
    tr.begin('a');
    tr.failed('a');
    tr.begin('a');
    tr.failed('a');
    advance(61_000);
    tr.begin('a');
    tr.failed('a');
    expect(tr.isLocked('a')).toBe(false);
    tr.begin('a');
    tr.succeeded('a');
    tr.begin('a');
    tr.failed('a');
    tr.begin('a');
    tr.failed('a');
    expect(tr.isLocked('a')).toBe(false);
    expect(tr.lockouts).toBe(0);
  });

  it('counts checks in flight, so parallel guesses cannot exceed the limit', () => {
    const { tr } = make();
    expect(tr.begin('a')).toBe('ok');
    expect(tr.begin('a')).toBe('ok');
    expect(tr.begin('a')).toBe('ok');
    expect(tr.begin('a')).toBe('busy');
    tr.failed('a');
    tr.failed('a');
    tr.failed('a');
    expect(tr.begin('a')).toBe('locked');
  });

  it('stays bounded in memory under many addresses', () => {
    const tr = new AuthFailureTracker({ maxFailures: 3, lockoutMs: 1000, maxEntries: 100 });
    for (let i = 0; i < 1000; i++) {
      tr.begin(`10.0.${i >> 8}.${i & 255}`);
      tr.failed(`10.0.${i >> 8}.${i & 255}`);
    }
    expect(tr.size).toBeLessThanOrEqual(100);
  });
});
