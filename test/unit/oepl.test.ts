/**
 * The OEPL codec against fixtures written by hand from the AP firmware's format (OpenEPaperLink
 * repository, ESP32 AP firmware: tag_db.cpp fillNode/tagDBtoJson, web.cpp, newproto.cpp), never
 * against output of our own encoder or simulator.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ErrorCode, isShelfgateError } from '../../src/errors';
import {
  buildGetDb,
  buildGetDbForMac,
  buildJsonUpload,
  buildLedFlash,
  buildTagCmd,
  nextGetDbPos,
  normaliseMac,
  OeplParseError,
  parseCommandResponse,
  parseGetDbPage,
  parseWsMessage,
  type OeplParseReason,
  type OeplTagCommand,
} from '../../src/drivers/oepl';

const FIX = join(__dirname, '..', 'fixtures', 'oepl');
const fixture = (name: string): string => readFileSync(join(FIX, name), 'utf8');

function parseError(body: string): OeplParseError {
  try {
    parseGetDbPage(body);
  } catch (e) {
    expect(e).toBeInstanceOf(OeplParseError);
    expect(isShelfgateError(e, ErrorCode.FRAME_INVALID)).toBe(true);
    return e as OeplParseError;
  }
  throw new Error('parseGetDbPage accepted the body');
}

describe('normaliseMac', () => {
  it('puts 0000 in front of a 12-digit MAC and upper-cases, as the AP stores it', () => {
    expect(normaliseMac('0218c9073b10')).toBe('00000218C9073B10');
    expect(normaliseMac('ABCD0000000000B3')).toBe('ABCD0000000000B3');
    expect(normaliseMac('abcd0000000000b3')).toBe('ABCD0000000000B3');
  });
  it('refuses separators, other lengths and non-hex', () => {
    for (const bad of ['02:18:C9:07:3B:10', '0218C9073B1', '00000218C9073B10A', 'G218C9073B10', '', ' 0218C9073B10']) expect(normaliseMac(bad)).toBeNull();
  });
});

describe('parseGetDbPage', () => {
  it('reads a page with continu into typed records, ignoring unknown fields', () => {
    const page = parseGetDbPage(fixture('get_db-page0.json'));
    expect(page.next).toBe(2);
    expect(page.invalid).toEqual([]);
    expect(page.tags).toHaveLength(2);
    expect(page.tags[0]).toEqual({
      mac: '00000218C9073B10',
      hash: 'a1b2c3d4e5f6a7b80000000000000000',
      lastSeen: 1764687412,
      nextCheckin: 1764687472,
      pending: 0,
      rssi: -63,
      lqi: 212,
      batteryMv: 2963,
      hwType: 1,
      updateCount: 7,
      updateLast: 1764687100,
      temperature: 21,
      nextUpdate: 0,
      alias: '',
      contentMode: 19,
      wakeupReason: 0,
      ver: 38,
    });
    expect(page.tags[1]!.pending).toBe(2); // a count, not a boolean
    expect(page.tags[1]).not.toHaveProperty('someFutureField');
  });

  it('a page without continu is the last page', () => {
    const page = parseGetDbPage(fixture('get_db-last.json'));
    expect(page.next).toBeNull();
    expect(page.tags.map((t) => t.mac)).toEqual(['0000D3A95B11C2E4']);
    expect(nextGetDbPos(2, page)).toBeNull();
  });

  it('walks pages by continu and refuses a continu that does not move forward', () => {
    const first = parseGetDbPage(fixture('get_db-page0.json'));
    expect(nextGetDbPos(0, first)).toBe(2);
    // A firmware that keeps pos in one byte answers pos=300 from index 44 and says continu 50.
    const wrapped = parseGetDbPage('{"tags":[],"continu":50}');
    expect(() => nextGetDbPos(300, wrapped)).toThrow(OeplParseError);
    try {
      nextGetDbPos(300, wrapped);
    } catch (e) {
      expect((e as OeplParseError).reason).toBe('no-progress');
    }
  });

  it('normalises a 12-digit MAC in a record (older firmware) and tolerates missing newer fields', () => {
    const page = parseGetDbPage(fixture('get_db-old-firmware.json'));
    expect(page.tags[0]!.mac).toBe('0000D3A95B11C2E4');
    expect(page.tags[0]!.updateCount).toBeNull();
    expect(page.tags[0]!.updateLast).toBeNull();
  });

  it('an empty tag list (e.g. ?mac= for a MAC the AP does not know) is a valid last page', () => {
    expect(parseGetDbPage('{"tags":[]}')).toEqual({ tags: [], next: null, invalid: [] });
  });

  it.each<[string, string, OeplParseReason]>([
    ['an HTML error page', fixture('ap-error.html'), 'html'],
    ['a page cut off mid-record', fixture('get_db-truncated.txt'), 'truncated'],
    ['a page cut off inside a string', '{"tags":[{"mac":"0000', 'truncated'],
    ['an empty body', '', 'empty'],
    ['whitespace only', ' \r\n', 'empty'],
    ['random bytes', '\u0000\u00ff\u0013garbage\u0007', 'not-json'],
    ['brackets that do not match', '{"tags":[}', 'not-json'],
    ['plain text', 'come back later', 'not-json'],
    ['an array', '[1,2,3]', 'shape'],
    ['tags not an array', '{"tags":{"mac":"x"}}', 'shape'],
    ['no tags at all', '{"foo":1}', 'shape'],
    ['a bad continu', '{"tags":[],"continu":"2"}', 'shape'],
    ['a negative continu', '{"tags":[],"continu":-1}', 'shape'],
    ["the AP's own error for a malformed mac parameter", '{"error": "malformatted parameter"}', 'ap-error'],
  ])('%s is a clear error, not a crash', (_what, body, reason) => {
    const e = parseError(body);
    expect(e.reason).toBe(reason);
    expect(e.message).toMatch(/^OEPL: get_db/);
    expect(e.message.length).toBeLessThan(300); // never the whole body
  });

  it('keeps the good records of a page and lists the bad ones with the reason', () => {
    const body = JSON.stringify({
      tags: [
        { mac: '00000218C9073B10', hash: 'ab', lastseen: 1, nextcheckin: 2, pending: 0, RSSI: -60, LQI: 200, batteryMv: 2900, hwType: 1 },
        { mac: '02:18:C9:07:3B:10', hash: 'ab', lastseen: 1, nextcheckin: 2, pending: 0, RSSI: -60, LQI: 200, batteryMv: 2900, hwType: 1 },
        { mac: 'ABCD0000000000B3', hash: 'ab', lastseen: '1', nextcheckin: 2, pending: true, RSSI: -60, LQI: 200, batteryMv: 2900, hwType: 1 },
        'not a record',
        { mac: 'ABCD0000000000B4', hash: 'ab', lastseen: 1, nextcheckin: 2, pending: 1.5, RSSI: -60, LQI: 200, batteryMv: 2900, hwType: 1 },
      ],
    });
    const page = parseGetDbPage(body);
    expect(page.tags.map((t) => t.mac)).toEqual(['00000218C9073B10']);
    expect(page.invalid.map((i) => i.index)).toEqual([1, 2, 3, 4]);
    expect(page.invalid[0]!.why).toMatch(/mac/);
    expect(page.invalid[1]!.why).toMatch(/lastseen is not a number.*pending is not a number/);
    expect(page.invalid[2]!.why).toMatch(/not an object/);
    expect(page.invalid[3]!.why).toMatch(/pending 1.5 is not a count/);
  });
});

describe('parseWsMessage', () => {
  it('reads xfer complete with CR LF inside the string as the acknowledgement', () => {
    const raw = fixture('ws-xfer-complete.json').trim();
    expect(raw).toContain('\\r\\n'); // the escape is inside the JSON string
    expect(parseWsMessage(raw)).toEqual({ kind: 'ack', mac: '00000218C9073B10' });
  });

  it('reads the older form with "< " and a 12-digit MAC, normalised', () => {
    expect(parseWsMessage(fixture('ws-xfer-complete-old.json'))).toEqual({ kind: 'ack', mac: '00000218C9073B10' });
  });

  it('reads xfer timeout (sent as errMsg)', () => {
    expect(parseWsMessage(fixture('ws-xfer-timeout.json'))).toEqual({ kind: 'timeout', mac: 'ABCD0000000000B3' });
    expect(parseWsMessage('{"logMsg":"ABCD0000000000B3 xfer timeout\\r\\n"}')).toEqual({ kind: 'timeout', mac: 'ABCD0000000000B3' });
  });

  it('reads a tag push', () => {
    const ev = parseWsMessage(fixture('ws-tag-push.json'));
    expect(ev.kind).toBe('tags');
    if (ev.kind !== 'tags') return;
    expect(ev.tags).toHaveLength(1);
    expect(ev.tags[0]).toMatchObject({ mac: 'ABCD0000000000B3', hash: '5d41402abc4b2a760000000000000000', updateCount: 1, pending: 0 });
  });

  it('other log lines stay logs, and a line that only mentions xfer complete is not an ack', () => {
    expect(parseWsMessage('{"logMsg":"Updating ABCD0000000000B3\\r\\n"}')).toEqual({ kind: 'log', level: 'log', text: 'Updating ABCD0000000000B3' });
    expect(parseWsMessage('{"logMsg":"ABCD0000000000B3 reports xfer complete, not really"}').kind).toBe('log');
    expect(parseWsMessage('{"logMsg":"XYZ reports xfer complete"}').kind).toBe('log');
    expect(parseWsMessage('{"errMsg":"REBOOTING"}')).toEqual({ kind: 'log', level: 'err', text: 'REBOOTING' });
  });

  it('known messages of no interest are "other"', () => {
    expect(parseWsMessage(fixture('ws-sys.json'))).toEqual({ kind: 'other', key: 'sys' });
    expect(parseWsMessage('{"upload":{"src":"ABCD0000000000B3","current":1,"total":2}}')).toEqual({ kind: 'other', key: 'upload' });
  });

  it.each([
    ['garbage', '\u0001\u0002zz', 'not-json'],
    ['HTML', '<html>oops</html>', 'html'],
    ['truncated', '{"logMsg":"00000218C9073B10 reports xf', 'truncated'],
    ['empty', '', 'empty'],
    ['a JSON number', '42', 'shape'],
    ['an empty object', '{}', 'shape'],
    ['tags not an array', '{"tags":"x"}', 'shape'],
  ])('%s is unparseable, never a throw', (_what, text, reason) => {
    const ev = parseWsMessage(text);
    expect(ev.kind).toBe('unparseable');
    if (ev.kind === 'unparseable') expect(ev.reason).toBe(reason);
  });
});

describe('request builders', () => {
  it('jsonupload: form fields mac (normalised), json and optional ttl', () => {
    const req = buildJsonUpload({ mac: '0218c9073b10', json: [{ text: [10, 10, '1,99 €', 'fonts/bahnschrift30', 1] }], ttl: 0 });
    expect(req.method).toBe('POST');
    expect(req.path).toBe('/jsonupload');
    expect(req.headers['content-type']).toBe('application/x-www-form-urlencoded');
    const f = new URLSearchParams(req.body);
    expect(f.get('mac')).toBe('00000218C9073B10');
    expect(JSON.parse(f.get('json')!)).toEqual([{ text: [10, 10, '1,99 €', 'fonts/bahnschrift30', 1] }]);
    expect(f.get('ttl')).toBe('0');
    const noTtl = new URLSearchParams(buildJsonUpload({ mac: 'ABCD0000000000B3', json: '[{"a":1}]' }).body);
    expect(noTtl.has('ttl')).toBe(false);
    expect(noTtl.get('json')).toBe('[{"a":1}]');
  });

  it('jsonupload refuses a bad MAC, empty content and a bad ttl', () => {
    expect(() => buildJsonUpload({ mac: '02:18:C9:07:3B:10', json: '[]' })).toThrow(/MAC/);
    expect(() => buildJsonUpload({ mac: 'ABCD0000000000B3', json: ' ' })).toThrow(/empty/);
    expect(() => buildJsonUpload({ mac: 'ABCD0000000000B3', json: '[]', ttl: -1 })).toThrow(/ttl/);
    expect(() => buildJsonUpload({ mac: 'ABCD0000000000B3', json: '[]', ttl: 1.5 })).toThrow(/ttl/);
    try {
      buildJsonUpload({ mac: 'nope', json: '[]' });
    } catch (e) {
      expect(isShelfgateError(e, ErrorCode.REQUEST_INVALID)).toBe(true);
    }
  });

  it('tag_cmd: mac and cmd from the enum only', () => {
    const req = buildTagCmd('ABCD0000000000B3', 'ledflash_stop');
    expect(req).toMatchObject({ method: 'POST', path: '/tag_cmd' });
    expect(Object.fromEntries(new URLSearchParams(req.body))).toEqual({ mac: 'ABCD0000000000B3', cmd: 'ledflash_stop' });
    expect(() => buildTagCmd('ABCD0000000000B3', 'purge' as OeplTagCommand)).toThrow(/unknown tag command/);
  });

  it('led_flash: 24 hex digits of pattern, nothing else', () => {
    const req = buildLedFlash('0218C9073B10', '0103e4030a0a0a0000000000');
    expect(req.method).toBe('GET');
    const u = new URL(req.path, 'http://ap');
    expect(u.pathname).toBe('/led_flash');
    expect(u.searchParams.get('mac')).toBe('00000218C9073B10');
    expect(u.searchParams.get('pattern')).toBe('0103E4030A0A0A0000000000');
    for (const bad of ['', '0103e4030a0a0a00000000', '0103e4030a0a0a000000000000', '0103e4030a0a0a00000000zz', '0103e4030a0a 0a0000000000']) {
      expect(() => buildLedFlash('0218C9073B10', bad), bad).toThrow(/24 hex/);
    }
  });

  it('get_db: first page, pos=N, and ?mac=', () => {
    expect(buildGetDb().path).toBe('/get_db');
    expect(buildGetDb(37).path).toBe('/get_db?pos=37');
    expect(buildGetDbForMac('0218c9073b10').path).toBe('/get_db?mac=00000218C9073B10');
    expect(() => buildGetDb(-1)).toThrow();
    expect(() => buildGetDbForMac('x')).toThrow(/MAC/);
  });
});

describe('parseCommandResponse', () => {
  it('classifies the plain-text answers of the AP', () => {
    expect(parseCommandResponse(200, 'Ok, saved')).toEqual({ kind: 'ok' });
    expect(parseCommandResponse(200, 'Ok, done')).toEqual({ kind: 'ok' });
    expect(parseCommandResponse(200, 'ok, request transmitted')).toEqual({ kind: 'ok' });
    expect(parseCommandResponse(409, 'come back later')).toEqual({ kind: 'busy' });
    expect(parseCommandResponse(400, 'mac not found in tagDB')).toEqual({ kind: 'unknown-mac' });
    expect(parseCommandResponse(400, 'Error: mac not found')).toEqual({ kind: 'unknown-mac' });
    expect(parseCommandResponse(400, 'Missing parameters')).toEqual({ kind: 'rejected', status: 400, text: 'Missing parameters' });
    expect(parseCommandResponse(500, 'param error')).toEqual({ kind: 'rejected', status: 500, text: 'param error' });
    expect(parseCommandResponse(200, fixture('ap-error.html')).kind).toBe('unexpected');
    expect(parseCommandResponse(200, '\u0000\u0001').kind).toBe('unexpected');
    expect(parseCommandResponse(502, 'Bad Gateway').kind).toBe('unexpected');
  });
});

describe('robustness', () => {
  it('every cut-off prefix of a real page is "truncated", never a crash or a partial page', () => {
    const page = fixture('get_db-page0.json').trim();
    for (let n = 1; n < page.length; n++) {
      const e = parseError(page.slice(0, n));
      expect(e.reason, `prefix of ${n} bytes`).toBe('truncated');
    }
  });

  it('random bytes and random mutations of real frames never throw anything but OeplParseError; /ws parsing never throws', () => {
    let seed = 12345;
    const rnd = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    const sources = [fixture('get_db-page0.json'), fixture('ws-tag-push.json'), fixture('ws-xfer-complete.json')];
    for (let i = 0; i < 2000; i++) {
      let s: string;
      if (i % 2 === 0) {
        s = Array.from({ length: Math.floor(rnd() * 60) }, () => String.fromCharCode(Math.floor(rnd() * 256))).join('');
      } else {
        const chars = [...sources[i % sources.length]!];
        for (let k = 0; k < 3; k++) chars[Math.floor(rnd() * chars.length)] = String.fromCharCode(Math.floor(rnd() * 128));
        s = chars.join('');
      }
      try {
        const p = parseGetDbPage(s);
        expect(Array.isArray(p.tags)).toBe(true);
      } catch (e) {
        expect(e, JSON.stringify(s)).toBeInstanceOf(OeplParseError);
      }
      expect(() => parseWsMessage(s)).not.toThrow();
    }
  });
});
