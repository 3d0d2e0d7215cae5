import { describe, expect, it } from 'vitest';
import { AclDecisionCache, canPublish, canReceive, canSubscribe, isGatewayOwned, requestCommand, type Role } from '../../src/bus/acl';

const S = 's1';
const P = `shelfgate/v1/${S}/`;
const ROLES: Role[] = ['device', 'kiosk', 'service', 'technician', 'admin'];

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
      expect(isGatewayOwned(topic, S)).toBe(true);
      expect(canPublish(role, 'u', topic, S)).toBe(false);
    }
  });

  it.each(ROLES)('%s can never publish outside the store prefix, to $SYS, or with wildcards', (role) => {
    for (const topic of ['$SYS/x', 'shelfgate/v1/s2/request/stock.get', 'shelfgate/v1/s1', 'shelfgate/v1/s1/', 'other', `${P}request/+`, `${P}price/#`, '']) {
      expect(canPublish(role, 'u', topic, S)).toBe(false);
    }
  });

  it('kiosk: only read-only requests', () => {
    expect(canPublish('kiosk', 'k', `${P}request/stock.get`, S)).toBe(true);
    expect(canPublish('kiosk', 'k', `${P}request/calibrate.tare`, S)).toBe(false);
    expect(canPublish('kiosk', 'k', `${P}request/stock.set`, S)).toBe(false);
    expect(canPublish('kiosk', 'k', `${P}price/x`, S)).toBe(false);
    expect(canPublish('kiosk', 'k', `${P}ext/k/x`, S)).toBe(false);
    expect(canPublish('kiosk', 'k', `${P}request/stock.get/x`, S)).toBe(false);
  });

  it('service: any request except calibration', () => {
    expect(canPublish('service', 'u', `${P}request/stock.get`, S)).toBe(true);
    expect(canPublish('service', 'u', `${P}request/outbox.status`, S)).toBe(true);
    expect(canPublish('service', 'u', `${P}request/calibrate.tare`, S)).toBe(false);
    expect(canPublish('service', 'u', `${P}request/calibrate.learn`, S)).toBe(false);
    expect(canPublish('service', 'u', `${P}price/x`, S)).toBe(false);
    expect(canPublish('service', 'u', `${P}request/Not-A-Command`, S)).toBe(false);
  });

  it('technician: requests including calibration', () => {
    expect(canPublish('technician', 't', `${P}request/calibrate.tare`, S)).toBe(true);
    expect(canPublish('technician', 't', `${P}request/calibrate.set_unit_weight`, S)).toBe(true);
    expect(canPublish('technician', 't', `${P}request/stock.get`, S)).toBe(true);
    expect(canPublish('technician', 't', `${P}price/x`, S)).toBe(false);
  });

  it('admin: anything under the prefix except gateway-owned', () => {
    // prices and sync status come only from the gateway (central's version rule): not even an admin
    expect(canPublish('admin', 'a', `${P}price/gtin/123`, S)).toBe(false);
    expect(canPublish('admin', 'a', `${P}sync/status`, S)).toBe(false);
    expect(canPublish('admin', 'a', `${P}request/calibrate.tare`, S)).toBe(true);
    expect(canPublish('admin', 'a', `${P}ext/dev1/x`, S)).toBe(true);
    expect(canPublish('admin', 'a', `${P}device/d1/config`, S)).toBe(true);
  });

  it('device: only its own ext subtree', () => {
    expect(canPublish('device', 'd1', `${P}ext/d1/temp`, S)).toBe(true);
    expect(canPublish('device', 'd1', `${P}ext/d1/a/b/c`, S)).toBe(true);
    expect(canPublish('device', 'd1', `${P}ext/d1`, S)).toBe(true);
    expect(canPublish('device', 'd1', `${P}ext/d2/temp`, S)).toBe(false);
    expect(canPublish('device', 'd1', `${P}ext/d1x/temp`, S)).toBe(false);
    expect(canPublish('device', 'd1', `${P}request/stock.get`, S)).toBe(false);
  });

  it('refuses injected usernames or stores and unknown roles', () => {
    expect(canPublish('device', 'd1/../d2', `${P}ext/d1/../d2/x`, S)).toBe(false);
    expect(canPublish('device', '+', `${P}ext/+/x`, S)).toBe(false);
    expect(canPublish('admin', 'a', `shelfgate/v1/#/x`, '#')).toBe(false);
    expect(canPublish('root' as Role, 'a', `${P}price/x`, S)).toBe(false);
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
    for (const f of ok) expect(canSubscribe('kiosk', 'k', f, S), f).toBe(true);
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
    for (const f of no) expect(canSubscribe('kiosk', 'k', f, S), f).toBe(false);
  });

  it.each(['service', 'technician'] as const)('%s: everything of the store except other users\' responses', (role) => {
    const ok = [`${P}shelf/#`, `${P}gateway/#`, `${P}device/#`, `${P}request/+`, `${P}ext/#`, `${P}price/#`, `${P}response/u/#`, `${P}+/u/#`, `${P}+`];
    for (const f of ok) expect(canSubscribe(role, 'u', f, S), f).toBe(true);
    const no = ['#', 'shelfgate/#', `${P}#`, `${P}+/#`, `${P}response/#`, `${P}response/+/x`, `${P}response/other/#`, '$SYS/#', 'shelfgate/v1/s2/#', 'shelfgate/v1/+/shelf/#'];
    for (const f of no) expect(canSubscribe(role, 'u', f, S), f).toBe(false);
  });

  it('admin: anything, including other responses and $SYS', () => {
    for (const f of ['#', '$SYS/#', `${P}response/#`, 'shelfgate/#']) expect(canSubscribe('admin', 'a', f, S)).toBe(true);
    expect(canSubscribe('admin', 'a', 'a/#/b', S)).toBe(false); // malformed stays malformed
  });

  it('device: only its own responses', () => {
    expect(canSubscribe('device', 'd1', `${P}response/d1/#`, S)).toBe(true);
    expect(canSubscribe('device', 'd1', `${P}response/d1/stock.get`, S)).toBe(true);
    for (const f of [`${P}response/d2/#`, `${P}shelf/#`, `${P}ext/d1/#`, '#', `${P}response/+/#`]) expect(canSubscribe('device', 'd1', f, S), f).toBe(false);
  });

  it('refuses injected usernames', () => {
    expect(canSubscribe('kiosk', '+', `${P}response/+/#`, S)).toBe(false);
    expect(canSubscribe('service', '#', `${P}response/#`, S)).toBe(false);
  });
});

describe('canReceive (delivery re-check)', () => {
  it('hides other users\' responses from everyone but admin', () => {
    expect(canReceive('service', 'u', `${P}response/other/stock.get`, S)).toBe(false);
    expect(canReceive('service', 'u', `${P}response/u/stock.get`, S)).toBe(true);
    expect(canReceive('kiosk', 'k', `${P}response/other/stock.get`, S)).toBe(false);
    expect(canReceive('admin', 'a', `${P}response/other/stock.get`, S)).toBe(true);
  });
  it('follows the read sets', () => {
    expect(canReceive('kiosk', 'k', `${P}shelf/A/slot/1/stock`, S)).toBe(true);
    expect(canReceive('kiosk', 'k', `${P}ext/d/x`, S)).toBe(false);
    expect(canReceive('kiosk', 'k', '$SYS/x/heartbeat', S)).toBe(false);
    expect(canReceive('device', 'd', `${P}shelf/A/slot/1/stock`, S)).toBe(false);
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
