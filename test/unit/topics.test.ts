import { describe, expect, it } from 'vitest';
import * as t from '../../src/bus/topics';
import { ErrorCode, isShelfgateError } from '../../src/errors';

describe('topic builders', () => {
  it('builds the v1 tree', () => {
    expect(t.storePrefix('s1')).toBe('shelfgate/v1/s1/');
    expect(t.gatewayStatus('s1')).toBe('shelfgate/v1/s1/gateway/status');
    expect(t.deviceAvailability('s1', 'bus1-3')).toBe('shelfgate/v1/s1/device/bus1-3/availability');
    expect(t.slotTopics('s1', 'A', '2')).toEqual({
      stock: 'shelfgate/v1/s1/shelf/A/slot/2/stock',
      event: 'shelfgate/v1/s1/shelf/A/slot/2/event',
      alert: 'shelfgate/v1/s1/shelf/A/slot/2/alert',
    });
    expect(t.slotStock('s1', 'A', '2')).toBe('shelfgate/v1/s1/shelf/A/slot/2/stock');
    expect(t.slotEvent('s1', 'A', '2')).toBe('shelfgate/v1/s1/shelf/A/slot/2/event');
    expect(t.slotAlert('s1', 'A', '2')).toBe('shelfgate/v1/s1/shelf/A/slot/2/alert');
    expect(t.request('s1', 'stock.get')).toBe('shelfgate/v1/s1/request/stock.get');
    expect(t.requestFilter('s1')).toBe('shelfgate/v1/s1/request/+');
    expect(t.response('s1', 'kiosk1', 'stock.get')).toBe('shelfgate/v1/s1/response/kiosk1/stock.get');
    expect(t.responseFilter('s1', 'kiosk1')).toBe('shelfgate/v1/s1/response/kiosk1/#');
    expect(t.extFilter('s1', 'dev')).toBe('shelfgate/v1/s1/ext/dev/#');
  });

  it.each(['+', '#', 'a/b', 'a+b', 'x#', 'a\u0000b', '', 'tab\there', '$SYS', ' lead', 'x'.repeat(129)])(
    'refuses %j as an id in every builder',
    (bad) => {
      expect(t.isValidId(bad)).toBe(false);
      const calls = [
        () => t.storePrefix(bad),
        () => t.deviceAvailability('s1', bad),
        () => t.slotTopics('s1', bad, '1'),
        () => t.slotTopics('s1', '1', bad),
        () => t.response('s1', bad, 'stock.get'),
        () => t.responseFilter('s1', bad),
      ];
      for (const c of calls) {
        try {
          c();
          expect.unreachable(`accepted ${JSON.stringify(bad)}`);
        } catch (e) {
          expect(isShelfgateError(e, ErrorCode.REQUEST_INVALID)).toBe(true);
        }
      }
    },
  );

  it('accepts ordinary ids', () => {
    for (const ok of ['s1', 'A', 'bus1-3', 'kiosk_01', 'dev.7', 'x'.repeat(128), 'user@example.com']) expect(t.validateId(ok)).toBe(ok);
  });

  it('validates commands', () => {
    for (const ok of ['stock.get', 'calibrate.tare', 'calibrate.set_unit_weight', 'ping']) expect(t.isValidCommand(ok)).toBe(true);
    for (const bad of ['', 'Stock.get', 'stock/get', 'stock.+', '#', 'stock..get', '.x', 'a.b.c.d.e', 'x'.repeat(40)]) {
      expect(t.isValidCommand(bad)).toBe(false);
    }
    expect(() => t.request('s1', 'a/b')).toThrow();
  });
});

describe('parseTopic', () => {
  it('round-trips every builder', () => {
    expect(t.parseTopic(t.gatewayStatus('s1'))).toEqual({ kind: 'gateway-status', store: 's1' });
    expect(t.parseTopic(t.deviceAvailability('s1', 'd1'))).toEqual({ kind: 'device-availability', store: 's1', deviceId: 'd1' });
    const s = t.slotTopics('s1', 'A', '2');
    expect(t.parseTopic(s.stock)).toEqual({ kind: 'slot-stock', store: 's1', shelfId: 'A', slotId: '2' });
    expect(t.parseTopic(s.event)).toEqual({ kind: 'slot-event', store: 's1', shelfId: 'A', slotId: '2' });
    expect(t.parseTopic(s.alert)).toEqual({ kind: 'slot-alert', store: 's1', shelfId: 'A', slotId: '2' });
    expect(t.parseTopic(t.request('s1', 'stock.get'))).toEqual({ kind: 'request', store: 's1', command: 'stock.get' });
    expect(t.parseTopic(t.response('s1', 'u', 'stock.get'))).toEqual({ kind: 'response', store: 's1', username: 'u', command: 'stock.get' });
  });

  it.each([
    'shelfgate/v2/s1/gateway/status',
    'other/v1/s1/gateway/status',
    'shelfgate/v1/s1/gateway/status/x',
    'shelfgate/v1/s1/gateway',
    'shelfgate/v1/+/gateway/status',
    'shelfgate/v1/s1/device/+/availability',
    'shelfgate/v1/s1/shelf/A/slot/2/weight',
    'shelfgate/v1/s1/shelf/A/bin/2/stock',
    'shelfgate/v1/s1/request/Bad',
    'shelfgate/v1/s1/request/stock.get/extra',
    'shelfgate/v1/s1/response/u',
    'shelfgate/v1/s1/price/x',
    '',
  ])('returns null for %j', (topic) => {
    expect(t.parseTopic(topic)).toBeNull();
  });
});

describe('topic filter logic', () => {
  it('validates names and filters', () => {
    expect(t.isValidTopicName('a/b')).toBe(true);
    expect(t.isValidTopicName('a/+')).toBe(false);
    expect(t.isValidTopicName('a/#')).toBe(false);
    expect(t.isValidTopicName('')).toBe(false);
    expect(t.isValidTopicName('a\u0000')).toBe(false);
    for (const ok of ['#', '+', 'a/#', 'a/+/b', '+/+', '/', 'a//b']) expect(t.isValidTopicFilter(ok)).toBe(true);
    for (const bad of ['', 'a/#/b', 'a#', 'a/b+', '#/a', 'a\u0000']) expect(t.isValidTopicFilter(bad)).toBe(false);
  });

  it('matches like MQTT 3.1.1 section 4.7', () => {
    expect(t.topicMatches('a/#', 'a')).toBe(true); // [MQTT-4.7.1-2] parent level
    expect(t.topicMatches('a/#', 'a/b/c')).toBe(true);
    expect(t.topicMatches('a/+', 'a/b')).toBe(true);
    expect(t.topicMatches('a/+', 'a/b/c')).toBe(false);
    expect(t.topicMatches('a/+', 'a')).toBe(false);
    expect(t.topicMatches('+/+', '/x')).toBe(true);
    expect(t.topicMatches('#', '$SYS/x')).toBe(false); // [MQTT-4.7.2-1]
    expect(t.topicMatches('+/x', '$SYS/x')).toBe(false);
    expect(t.topicMatches('$SYS/#', '$SYS/x')).toBe(true);
  });

  it('filterCovers', () => {
    expect(t.filterCovers('a/#', 'a/b/+')).toBe(true);
    expect(t.filterCovers('a/#', 'a')).toBe(true);
    expect(t.filterCovers('a/#', 'a/#')).toBe(true);
    expect(t.filterCovers('a/+/c', 'a/b/c')).toBe(true);
    expect(t.filterCovers('a/+/c', 'a/+/c')).toBe(true);
    expect(t.filterCovers('a/b/c', 'a/+/c')).toBe(false);
    expect(t.filterCovers('a/+/c', 'a/#')).toBe(false);
    expect(t.filterCovers('a/b', 'a/b/c')).toBe(false);
    expect(t.filterCovers('a/b/#', 'a')).toBe(false);
    expect(t.filterCovers('a/#', '#')).toBe(false);
    expect(t.filterCovers('#', '#')).toBe(true);
  });

  it('filtersIntersect', () => {
    expect(t.filtersIntersect('#', 'a/b')).toBe(true);
    expect(t.filtersIntersect('a/+/c', 'a/b/+')).toBe(true);
    expect(t.filtersIntersect('a/b', 'a/c')).toBe(false);
    expect(t.filtersIntersect('a', 'a/#')).toBe(true);
    expect(t.filtersIntersect('a', 'a/+')).toBe(false);
    expect(t.filtersIntersect('a/b/c', 'a/b')).toBe(false);
    expect(t.filtersIntersect('#', '$SYS/x')).toBe(false);
    expect(t.filtersIntersect('$SYS/#', '$SYS/x')).toBe(true);
  });
});

describe('topicMatches (split-free walk)', () => {
  /** The former implementation: both strings split into levels. */
  function reference(filter: string, topic: string): boolean {
    const f = filter.split('/');
    const tl = topic.split('/');
    if (topic.startsWith('$') && (f[0] === '+' || f[0] === '#')) return false;
    for (let i = 0; i < f.length; i++) {
      const fl = f[i]!;
      if (fl === '#') return true;
      if (i >= tl.length) return false;
      if (fl !== '+' && fl !== tl[i]) return false;
    }
    return f.length === tl.length;
  }

  it('agrees with level-by-level comparison of split strings, including odd and malformed input', () => {
    const atoms = ['a', 'b', 'ab', '', '+', '#', '$SYS', '$', '+a', 'a#', 'é'];
    const strings: string[] = [];
    // every sequence of up to 3 levels over the atoms, plus a few longer ones
    for (const x of atoms) {
      strings.push(x);
      for (const y of atoms) {
        strings.push(`${x}/${y}`);
        for (const z of ['a', '', '#', '+']) strings.push(`${x}/${y}/${z}`);
      }
    }
    strings.push('shelfgate/v1/s1/ext/dev1/stock', 'shelfgate/v1/s1/#', 'shelfgate/+/s1/ext/+/stock', '/', '//', 'a//b');
    let checked = 0;
    let matched = 0;
    const wrong: string[] = [];
    for (const f of strings) {
      for (const topic of strings) {
        const want = reference(f, topic);
        if (t.topicMatches(f, topic) !== want) wrong.push(`${f} vs ${topic}: want ${want}`);
        if (want) matched++;
        checked++;
      }
    }
    expect(wrong.slice(0, 20)).toEqual([]);
    expect(checked).toBeGreaterThan(100_000);
    expect(matched).toBeGreaterThan(1_000);
  });
});

describe('storePrefix memo', () => {
  it('still validates every new store id, also after a valid one', () => {
    expect(t.storePrefix('s1')).toBe('shelfgate/v1/s1/');
    expect(() => t.storePrefix('a/b')).toThrow();
    expect(() => t.storePrefix(undefined as unknown as string)).toThrow();
    expect(() => t.storePrefix('')).toThrow();
    expect(t.storePrefix('s1')).toBe('shelfgate/v1/s1/');
    expect(t.storePrefix('s2')).toBe('shelfgate/v1/s2/');
    expect(() => t.storePrefix('+')).toThrow();
  });
});
