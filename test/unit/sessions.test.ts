/**
 * Sessions.admit's ownership rules on their own: the `<username>-` convention (longest username
 * wins), ownership by use while a session exists, and release when a clean session ends.
 */
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import type { Client } from 'aedes';
import { Sessions } from '../../src/bus/sessions';
import { coreConfigShape } from '../../src/config/schema';
import { LogLimiter, silentLogger } from '../../src/log';

function sessions(usernames: string[]): Sessions {
  const config = coreConfigShape.mqtt.parse({
    users: usernames.map((username) => ({ username, role: 'kiosk', password_hash: 'scrypt$16384$8$1$AAAA$AAAA' })),
  });
  const log = silentLogger();
  return new Sessions({ config, log, limiter: new LogLimiter(log), now: () => 0 });
}

function client(id: string, clean = true): Client & { conn: EventEmitter } {
  return { id, clean, conn: new EventEmitter() } as unknown as Client & { conn: EventEmitter };
}

describe('Sessions.admit', () => {
  it('gives an id named <username> or <username>-... to that user, the longest username first', () => {
    const s = sessions(['kiosk', 'kiosk-2', 'svc']);
    expect(s.admit(client('kiosk-2-a'), 'kiosk', 'a')).not.toBeNull();
    expect(s.admit(client('kiosk-2-a'), 'kiosk-2', 'a')).toBeNull();
    expect(s.admit(client('kiosk-1'), 'kiosk', 'a')).toBeNull();
    expect(s.admit(client('kiosk-9'), 'kiosk-2', 'a')).not.toBeNull();
    expect(s.admit(client('svc'), 'kiosk', 'a')).not.toBeNull();
    // only a '-' separates: `svcx` and `svc_1` are nobody's until used
    expect(s.admit(client('svcx'), 'kiosk', 'a')).toBeNull();
    expect(s.admit(client('svc_1'), 'kiosk', 'a')).toBeNull();
    expect(s.stats().clientIdRefused).toBe(3);
  });

  it('an unconventional id belongs to its user while the session exists, and is free once a clean session ends', () => {
    const s = sessions(['a', 'b']);
    const c1 = client('pos');
    expect(s.admit(c1, 'a', 'x')).toBeNull();
    expect(s.admit(client('pos'), 'b', 'x')).toMatch(/another user/);
    c1.conn.emit('close');
    expect(s.stats().sessions).toBe(0);
    expect(s.admit(client('pos'), 'b', 'x')).toBeNull();
  });
});
