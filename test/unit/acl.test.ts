import { describe, expect, it } from 'vitest';
import { AclDecisionCache, AclRules, CORE_TOPIC_AREAS, canPublish, canReceive, canSubscribe, requestCommand, type Role } from '../../src/bus/acl';
import { CommandRegistry } from '../../src/core/commands';
import { BUILTIN_FEATURES } from '../../src/features';

const S = 's1';
const P = `shelfgate/v1/${S}/`;
const ROLES: Role[] = ['device', 'kiosk', 'service', 'technician', 'admin'];

// The ACL reads declarations: the topic areas and command permissions of the core and the built-in features.
const registry = new CommandRegistry();
for (const f of BUILTIN_FEATURES) registry.declare(f.name, f.commands ?? []);
const RULES = new AclRules(S, [...CORE_TOPIC_AREAS, ...BUILTIN_FEATURES.flatMap((f) => f.topics ?? [])], (c) => registry.permissionOf(c));

const gatewayOwned = [
  `${P}gateway/status`,
  `${P}gateway/anything/else`,
  `${P}device/d1/availability`,
  `${P}shelf/A/slot/1/stock`,
  `${P}shelf/A/slot/1/event`,
  `${P}shelf/A/slot/1/alert`,
  `${P}shelf/A`,
  `${P}response/u/stock.get`,
  `${P}response/someone/x`,
];

describe('publish', () => {
  it.each(ROLES)('%s can never publish gateway-owned topics', (role) => {
    for (const topic of gatewayOwned) {
      expect(RULES.isGatewayOwned(topic)).toBe(true);
      expect(canPublish(role, 'u', topic, RULES)).toBe(false);
    }
  });

  it.each(ROLES)('%s can never publish outside the store prefix, to $SYS, or with wildcards', (role) => {
    for (const topic of ['$SYS/x', 'shelfgate/v1/s2/request/stock.get', 'shelfgate/v1/s1', 'shelfgate/v1/s1/', 'other', `${P}request/+`, `${P}price/#`, '']) {
      expect(canPublish(role, 'u', topic, RULES)).toBe(false);
    }
  });

  it('kiosk: only read-only requests', () => {
    expect(canPublish('kiosk', 'k', `${P}request/stock.get`, RULES)).toBe(true);
    expect(canPublish('kiosk', 'k', `${P}request/calibrate.tare`, RULES)).toBe(false);
    expect(canPublish('kiosk', 'k', `${P}request/stock.set`, RULES)).toBe(false);
    expect(canPublish('kiosk', 'k', `${P}price/x`, RULES)).toBe(false);
    expect(canPublish('kiosk', 'k', `${P}ext/k/x`, RULES)).toBe(false);
    expect(canPublish('kiosk', 'k', `${P}request/stock.get/x`, RULES)).toBe(false);
  });

  it('service: any request except calibration', () => {
    expect(canPublish('service', 'u', `${P}request/stock.get`, RULES)).toBe(true);
    expect(canPublish('service', 'u', `${P}request/outbox.status`, RULES)).toBe(true);
    expect(canPublish('service', 'u', `${P}request/calibrate.tare`, RULES)).toBe(false);
    expect(canPublish('service', 'u', `${P}request/calibrate.learn`, RULES)).toBe(false);
    expect(canPublish('service', 'u', `${P}price/x`, RULES)).toBe(false);
    expect(canPublish('service', 'u', `${P}request/Not-A-Command`, RULES)).toBe(false);
  });

  it('technician: requests including calibration', () => {
    expect(canPublish('technician', 't', `${P}request/calibrate.tare`, RULES)).toBe(true);
    expect(canPublish('technician', 't', `${P}request/calibrate.set_unit_weight`, RULES)).toBe(true);
    expect(canPublish('technician', 't', `${P}request/stock.get`, RULES)).toBe(true);
    expect(canPublish('technician', 't', `${P}price/x`, RULES)).toBe(false);
  });

  it('admin: anything under the prefix except gateway-owned', () => {
    // prices and sync status come only from the gateway (central's version rule): not even an admin
    expect(canPublish('admin', 'a', `${P}price/gtin/123`, RULES)).toBe(false);
    expect(canPublish('admin', 'a', `${P}sync/status`, RULES)).toBe(false);
    expect(canPublish('admin', 'a', `${P}request/calibrate.tare`, RULES)).toBe(true);
    expect(canPublish('admin', 'a', `${P}ext/dev1/x`, RULES)).toBe(true);
    expect(canPublish('admin', 'a', `${P}device/d1/config`, RULES)).toBe(true);
  });

  it('device: only its own ext subtree', () => {
    expect(canPublish('device', 'd1', `${P}ext/d1/temp`, RULES)).toBe(true);
    expect(canPublish('device', 'd1', `${P}ext/d1/a/b/c`, RULES)).toBe(true);
    expect(canPublish('device', 'd1', `${P}ext/d1`, RULES)).toBe(true);
    expect(canPublish('device', 'd1', `${P}ext/d2/temp`, RULES)).toBe(false);
    expect(canPublish('device', 'd1', `${P}ext/d1x/temp`, RULES)).toBe(false);
    expect(canPublish('device', 'd1', `${P}request/stock.get`, RULES)).toBe(false);
  });

  it('refuses injected usernames or stores and unknown roles', () => {
    expect(canPublish('device', 'd1/../d2', `${P}ext/d1/../d2/x`, RULES)).toBe(false);
    expect(canPublish('device', '+', `${P}ext/+/x`, RULES)).toBe(false);
    // an injected store id cannot even make a rule set
    expect(() => new AclRules('#', CORE_TOPIC_AREAS, () => 'operate')).toThrow(/store id/);
    expect(canPublish('root' as Role, 'a', `${P}price/x`, RULES)).toBe(false);
  });

  it('requestCommand parses only exact request topics', () => {
    expect(requestCommand(`${P}request/stock.get`, S)).toBe('stock.get');
    expect(requestCommand(`${P}request/stock.get/x`, S)).toBeNull();
    expect(requestCommand(`${P}request/`, S)).toBeNull();
    expect(requestCommand(`shelfgate/v1/s2/request/stock.get`, S)).toBeNull();
  });
});

describe('subscribe', () => {
  it('kiosk: its read set and its own responses, nothing else', () => {
    const ok = [
      `${P}shelf/#`,
      `${P}shelf/A/slot/1/stock`,
      `${P}shelf/+/slot/+/stock`,
      `${P}shelf/+/slot/+/#`,
      `${P}device/+/availability`,
      `${P}device/d1/availability`,
      `${P}gateway/status`,
      `${P}price/#`,
      `${P}price/+`,
      `${P}response/k/#`,
      `${P}response/k/stock.get`,
      `${P}response/k/+`,
    ];
    for (const f of ok) expect(canSubscribe('kiosk', 'k', f, RULES), f).toBe(true);
    const no = [
      '#',
      '+',
      '+/#',
      'shelfgate/#',
      'shelfgate/v1/#',
      `${P}#`,
      `${P}+/#`,
      `${P}device/#`,
      `${P}device/d1/+`,
      `${P}gateway/#`,
      `${P}gateway/+`,
      `${P}request/+`,
      `${P}ext/#`,
      `${P}response/#`,
      `${P}response/+/#`,
      `${P}response/+/stock.get`,
      `${P}response/other/#`,
      `${P}+/k/#`,
      '+/v1/s1/shelf/#',
      'shelfgate/+/s1/shelf/#',
      'shelfgate/v1/+/shelf/#',
      'shelfgate/v1/s2/shelf/#',
      '$SYS/#',
      '$SYS/+/heartbeat',
      `${P}shelf/#/x`,
      '',
    ];
    for (const f of no) expect(canSubscribe('kiosk', 'k', f, RULES), f).toBe(false);
  });

  it.each(['service', 'technician'] as const)('%s: everything of the store except other users\' responses', (role) => {
    const ok = [`${P}shelf/#`, `${P}gateway/#`, `${P}device/#`, `${P}request/+`, `${P}ext/#`, `${P}price/#`, `${P}response/u/#`, `${P}+/u/#`, `${P}+`];
    for (const f of ok) expect(canSubscribe(role, 'u', f, RULES), f).toBe(true);
    const no = ['#', 'shelfgate/#', `${P}#`, `${P}+/#`, `${P}response/#`, `${P}response/+/x`, `${P}response/other/#`, '$SYS/#', 'shelfgate/v1/s2/#', 'shelfgate/v1/+/shelf/#'];
    for (const f of no) expect(canSubscribe(role, 'u', f, RULES), f).toBe(false);
  });

  it('admin: anything, including other responses and $SYS', () => {
    for (const f of ['#', '$SYS/#', `${P}response/#`, 'shelfgate/#']) expect(canSubscribe('admin', 'a', f, RULES)).toBe(true);
    expect(canSubscribe('admin', 'a', 'a/#/b', RULES)).toBe(false); // malformed stays malformed
  });

  it('device: only its own responses', () => {
    expect(canSubscribe('device', 'd1', `${P}response/d1/#`, RULES)).toBe(true);
    expect(canSubscribe('device', 'd1', `${P}response/d1/stock.get`, RULES)).toBe(true);
    for (const f of [`${P}response/d2/#`, `${P}shelf/#`, `${P}ext/d1/#`, '#', `${P}response/+/#`]) expect(canSubscribe('device', 'd1', f, RULES), f).toBe(false);
  });

  it('refuses injected usernames', () => {
    expect(canSubscribe('kiosk', '+', `${P}response/+/#`, RULES)).toBe(false);
    expect(canSubscribe('service', '#', `${P}response/#`, RULES)).toBe(false);
  });
});

describe('canReceive (delivery re-check)', () => {
  it('hides other users\' responses from everyone but admin', () => {
    expect(canReceive('service', 'u', `${P}response/other/stock.get`, RULES)).toBe(false);
    expect(canReceive('service', 'u', `${P}response/u/stock.get`, RULES)).toBe(true);
    expect(canReceive('kiosk', 'k', `${P}response/other/stock.get`, RULES)).toBe(false);
    expect(canReceive('admin', 'a', `${P}response/other/stock.get`, RULES)).toBe(true);
  });
  it('follows the read sets', () => {
    expect(canReceive('kiosk', 'k', `${P}shelf/A/slot/1/stock`, RULES)).toBe(true);
    expect(canReceive('kiosk', 'k', `${P}ext/d/x`, RULES)).toBe(false);
    expect(canReceive('kiosk', 'k', '$SYS/x/heartbeat', RULES)).toBe(false);
    expect(canReceive('device', 'd', `${P}shelf/A/slot/1/stock`, RULES)).toBe(false);
  });
});

describe('AclDecisionCache (per-connection decision memo in the broker)', () => {
  it('is bounded: keeps at most maxEntries topics, dropping the oldest first', () => {
    const c = new AclDecisionCache<boolean>(3, 64);
    for (let i = 0; i < 10; i++) expect(c.set(`${P}ext/d/${i}`, i % 2 === 0)).toBe(i % 2 === 0);
    expect(c.size).toBe(3);
    expect(c.get(`${P}ext/d/0`)).toBeUndefined();
    expect(c.get(`${P}ext/d/6`)).toBeUndefined();
    expect(c.get(`${P}ext/d/7`)).toBe(false);
    expect(c.get(`${P}ext/d/8`)).toBe(true);
    expect(c.get(`${P}ext/d/9`)).toBe(false);
    // overwriting a present topic does not evict another
    c.set(`${P}ext/d/9`, true);
    expect(c.size).toBe(3);
    expect(c.get(`${P}ext/d/7`)).toBe(false);
  });

  it('does not keep topics longer than maxTopicLength (they are re-checked every time)', () => {
    const c = new AclDecisionCache<boolean>(8, 32);
    const long = `${P}ext/d/${'x'.repeat(40)}`;
    expect(c.set(long, true)).toBe(true);
    expect(c.get(long)).toBeUndefined();
    expect(c.size).toBe(0);
  });

  it('has default bounds, and instances share nothing', () => {
    const a = new AclDecisionCache<boolean>();
    const b = new AclDecisionCache<boolean>();
    expect(a.maxEntries).toBeGreaterThan(0);
    expect(a.maxEntries).toBeLessThanOrEqual(1024);
    expect(a.maxTopicLength).toBeLessThanOrEqual(1024);
    for (let i = 0; i < a.maxEntries * 3; i++) a.set(`${P}ext/d/${i}`, true);
    expect(a.size).toBe(a.maxEntries);
    expect(b.size).toBe(0);
    expect(b.get(`${P}ext/d/${a.maxEntries * 3 - 1}`)).toBeUndefined();
  });
});
