/**
 * OpenEPaperLink (OEPL) access point as a pure codec: HTTP response bodies and WebSocket frames in,
 * typed records out; requests in, method/path/body out. No I/O and no timers: the caller owns the
 * HTTP client, the WebSocket and every timeout (transports are injected elsewhere).
 *
 * Source of the facts: the OpenEPaperLink repository, ESP32 AP firmware (`ESP32_AP-Flasher/src/
 * web.cpp`, `tag_db.cpp`, `newproto.cpp`). docs/oepl.md lists them with what this module does about
 * each. The points that shape the code:
 * - `/get_db[?pos=N]` answers `{"tags":[...]}`; a page stops once its JSON passes about 5,000 bytes
 *   and then carries `"continu": <next start index>`; no `continu` means the last page.
 *   `/get_db?mac=M` answers the same shape with zero or one tag, or `{"error":"..."}`.
 * - A tag's `mac` is 16 uppercase hex digits. The AP also accepts a 12-digit MAC in requests and
 *   stores it with two zero bytes on top, so it comes back as `0000` + the 12 digits.
 * - Times (`lastseen`, `nextcheckin`, `nextupdate`, `updatelast`) are Unix seconds. `pending` is a
 *   count of queued items, not a boolean.
 * - WebSocket `/ws` pushes `{"tags":[<one record>]}` on every change of a tag, and log lines as
 *   `{"logMsg":"..."}` / `{"errMsg":"..."}`. The acknowledgement is the log line
 *   `<MAC> reports xfer complete` followed by a line break (CR LF or LF inside the string,
 *   depending on the firmware version; older versions print `< ` before a 12-digit MAC). A transfer
 *   that never completes ends in `< <MAC> xfer timeout` (sent as errMsg by the firmware).
 * - `/jsonupload` answering 200 `Ok, saved` only means stored at the AP; 409 means the AP is not
 *   running (booting).
 */
import { ErrorCode, ShelfgateError } from '../errors';

// ------------------------------------------------------------------ errors

/** Why a body or frame was refused; callers branch on this, never on the message. */
export type OeplParseReason =
  /** Empty body. */
  | 'empty'
  /** An HTML page (a captive portal, a proxy error, the AP's own web UI). */
  | 'html'
  /** JSON that stops in the middle (a dropped connection, a cut-off page). */
  | 'truncated'
  /** Not JSON at all. */
  | 'not-json'
  /** JSON, but not the shape the AP sends. */
  | 'shape'
  /** The AP answered with its own `{"error": ...}`. */
  | 'ap-error'
  /** A `continu` that does not move forward (the walk would loop). */
  | 'no-progress';

export class OeplParseError extends ShelfgateError {
  readonly reason: OeplParseReason;
  constructor(reason: OeplParseReason, message: string, details?: Record<string, unknown>) {
    super(ErrorCode.FRAME_INVALID, `OEPL: ${message}`, { reason, ...details });
    this.name = 'OeplParseError';
    this.reason = reason;
  }
}

/** A request the builder refused to make (bad MAC, bad pattern, unknown command). */
function badRequest(message: string, details?: Record<string, unknown>): ShelfgateError {
  return new ShelfgateError(ErrorCode.REQUEST_INVALID, `OEPL: ${message}`, details);
}

// ------------------------------------------------------------------ MAC addresses

const MAC_RE = /^(?:[0-9A-Fa-f]{12}|[0-9A-Fa-f]{16})$/;

/**
 * The AP's form of a MAC: 16 uppercase hex digits. A 12-digit MAC gets `0000` in front (the AP
 * stores it with two zero bytes on top). Returns null for anything else (separators included).
 */
export function normaliseMac(s: string): string | null {
  if (!MAC_RE.test(s)) return null;
  const up = s.toUpperCase();
  return up.length === 12 ? `0000${up}` : up;
}

function requireMac(s: string): string {
  const mac = typeof s === 'string' ? normaliseMac(s) : null;
  if (mac === null) throw badRequest(`MAC must be 12 or 16 hex digits, got ${JSON.stringify(s)}`, { mac: s });
  return mac;
}

// ------------------------------------------------------------------ tag records

/** One tag (label) as the AP reports it. Times are Unix seconds. */
export interface OeplTag {
  /** 16 uppercase hex digits. */
  mac: string;
  /** Hash of the content the label shows (hex, as sent). */
  hash: string;
  lastSeen: number;
  nextCheckin: number;
  /** Items queued at the AP for this label (0 is not delivery). */
  pending: number;
  rssi: number;
  lqi: number;
  batteryMv: number;
  hwType: number;
  /** Completed transfers; null when the firmware does not report it (older versions). */
  updateCount: number | null;
  /** Unix seconds of the last completed transfer; null when not reported. */
  updateLast: number | null;
  temperature: number | null;
  nextUpdate: number | null;
  alias: string | null;
  contentMode: number | null;
  wakeupReason: number | null;
  /** Tag firmware version. */
  ver: number | null;
}

/** A record of a page that could not be read, and why; the other records are still usable. */
export interface OeplInvalidRecord {
  index: number;
  why: string;
}

export interface OeplGetDbPage {
  tags: OeplTag[];
  /** Start index of the next page (`continu`), or null on the last page. */
  next: number | null;
  invalid: OeplInvalidRecord[];
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function num(r: Obj, key: string, errs: string[]): number {
  const v = r[key];
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    errs.push(`${key} is ${v === undefined ? 'missing' : `not a number (${JSON.stringify(v)})`}`);
    return NaN;
  }
  return v;
}

function optNum(r: Obj, key: string, errs: string[]): number | null {
  if (r[key] === undefined || r[key] === null) return null;
  return num(r, key, errs);
}

/**
 * Reads one tag record. Unknown fields are ignored (each firmware version adds some); the fields
 * the gateway depends on must be there with the right type.
 */
export function parseTagRecord(v: unknown): { tag: OeplTag } | { why: string } {
  if (!isObj(v)) return { why: 'record is not an object' };
  const errs: string[] = [];
  const mac = typeof v['mac'] === 'string' ? normaliseMac(v['mac']) : null;
  if (mac === null) errs.push(`mac ${JSON.stringify(v['mac'])} is not 12 or 16 hex digits`);
  const hash = v['hash'];
  if (typeof hash !== 'string' || !/^[0-9A-Fa-f]*$/.test(hash)) errs.push(`hash ${JSON.stringify(hash)} is not hex`);
  const tag: OeplTag = {
    mac: mac ?? '',
    hash: typeof hash === 'string' ? hash : '',
    lastSeen: num(v, 'lastseen', errs),
    nextCheckin: num(v, 'nextcheckin', errs),
    pending: num(v, 'pending', errs),
    rssi: num(v, 'RSSI', errs),
    lqi: num(v, 'LQI', errs),
    batteryMv: num(v, 'batteryMv', errs),
    hwType: num(v, 'hwType', errs),
    updateCount: optNum(v, 'updatecount', errs),
    updateLast: optNum(v, 'updatelast', errs),
    temperature: optNum(v, 'temperature', errs),
    nextUpdate: optNum(v, 'nextupdate', errs),
    alias: typeof v['alias'] === 'string' ? v['alias'] : null,
    contentMode: optNum(v, 'contentMode', errs),
    wakeupReason: optNum(v, 'wakeupReason', errs),
    ver: optNum(v, 'ver', errs),
  };
  if (errs.length === 0 && (!Number.isInteger(tag.pending) || tag.pending < 0)) errs.push(`pending ${tag.pending} is not a count`);
  return errs.length > 0 ? { why: errs.join('; ') } : { tag };
}

/** First characters of a body for an error message (never the whole of a large page). */
function snippet(s: string): string {
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}...` : s);
}

/**
 * JSON.parse with the failure classified: empty, HTML, truncated (valid so far but ends early),
 * or not JSON at all.
 */
function parseJsonBody(body: string, what: string): unknown {
  const text = body.replace(/^\uFEFF/, '').trim();
  if (text === '') throw new OeplParseError('empty', `${what}: empty body`);
  if (text.startsWith('<')) throw new OeplParseError('html', `${what}: an HTML page instead of JSON: ${snippet(text)}`, { length: body.length });
  try {
    return JSON.parse(text);
  } catch (e) {
    if ((text.startsWith('{') || text.startsWith('[')) && isTruncatedJson(text)) {
      throw new OeplParseError('truncated', `${what}: JSON ends early after ${body.length} bytes: ${snippet(text.slice(-60))}`, { length: body.length });
    }
    throw new OeplParseError('not-json', `${what}: not JSON (${(e as Error).message}): ${snippet(text)}`, { length: body.length });
  }
}

/**
 * True when `text` is a valid beginning of a JSON value that stops before its end: brackets still
 * open (or a string still open) and nothing invalid seen on the way. A cheap structural scan, not
 * a parser: it tells a cut-off page from garbage.
 */
function isTruncatedJson(text: string): boolean {
  const stack: string[] = [];
  let inString = false;
  let escaped = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (inString) {
      if (escaped) escaped = false;
      else if (c === '\\') escaped = true;
      else if (c === '"') inString = false;
      else if (c < ' ') return false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === '{' || c === '[') stack.push(c);
    else if (c === '}' || c === ']') {
      const open = stack.pop();
      if ((c === '}' && open !== '{') || (c === ']' && open !== '[')) return false;
      if (stack.length === 0) return false; // closed completely, so the error was elsewhere
    } else if (!/[\s,:0-9a-zA-Z.+-]/.test(c)) return false;
  }
  return stack.length > 0 || inString;
}

function readTags(list: unknown[]): { tags: OeplTag[]; invalid: OeplInvalidRecord[] } {
  const tags: OeplTag[] = [];
  const invalid: OeplInvalidRecord[] = [];
  list.forEach((rec, index) => {
    const r = parseTagRecord(rec);
    if ('tag' in r) tags.push(r.tag);
    else invalid.push({ index, why: r.why });
  });
  return { tags, invalid };
}

/**
 * Parses one `/get_db` answer (a page, or the answer to `?mac=`). Throws OeplParseError for a body
 * that is not a tag page at all (empty, HTML, truncated, garbage, `{"error":...}`, wrong shape);
 * a page whose individual records are bad still returns the good ones and lists the bad in
 * `invalid`. Unknown fields are ignored.
 */
export function parseGetDbPage(body: string): OeplGetDbPage {
  const doc = parseJsonBody(body, 'get_db');
  if (!isObj(doc)) throw new OeplParseError('shape', `get_db: expected an object with "tags", got ${snippet(JSON.stringify(doc) ?? String(doc))}`);
  if (doc['tags'] === undefined && typeof doc['error'] === 'string') {
    throw new OeplParseError('ap-error', `get_db: the AP answered an error: ${snippet(doc['error'])}`, { apError: doc['error'] });
  }
  if (!Array.isArray(doc['tags'])) throw new OeplParseError('shape', 'get_db: "tags" is missing or not an array');
  let next: number | null = null;
  const c = doc['continu'];
  if (c !== undefined && c !== null) {
    if (typeof c !== 'number' || !Number.isInteger(c) || c < 1) throw new OeplParseError('shape', `get_db: "continu" ${snippet(JSON.stringify(c))} is not a positive integer`);
    next = c;
  }
  return { ...readTags(doc['tags']), next };
}

/**
 * The next `pos` to request after the page fetched with `pos` (null: the walk is done). Refuses a
 * `continu` that does not move forward, so a walk over a misbehaving AP ends instead of looping
 * (some firmware versions keep the start index in one byte, so a start past 255 wraps around).
 */
export function nextGetDbPos(pos: number, page: OeplGetDbPage): number | null {
  if (page.next === null) return null;
  if (page.next <= pos) throw new OeplParseError('no-progress', `get_db: page at pos ${pos} says continue at ${page.next}`, { pos, continu: page.next });
  return page.next;
}

// ------------------------------------------------------------------ WebSocket frames

export type OeplWsEvent =
  /** `<MAC> reports xfer complete`: the label shows the content it was sent. */
  | { kind: 'ack'; mac: string }
  /** `<MAC> xfer timeout`: the AP gave up and dropped what it had queued for the label. */
  | { kind: 'timeout'; mac: string }
  /** A tag record pushed on a change (check-in, upload, transfer done). */
  | { kind: 'tags'; tags: OeplTag[]; invalid: OeplInvalidRecord[] }
  /** Any other log line (trailing line break removed). */
  | { kind: 'log'; level: 'log' | 'err'; text: string }
  /** Well-formed messages the gateway has no use for (`sys`, `upload` progress, `console`, `apitem`...). */
  | { kind: 'other'; key: string }
  | { kind: 'unparseable'; reason: OeplParseReason; message: string };

/** `[< ]<MAC 12|16 hex> reports xfer complete` or `... xfer timeout`, then optional CR/LF. */
const XFER_RE = /^(?:<\s*)?([0-9A-Fa-f]{16}|[0-9A-Fa-f]{12}) (reports xfer complete|xfer timeout)[\r\n\s]*$/;

/** Classifies one text frame from `/ws`. Never throws. */
export function parseWsMessage(text: string): OeplWsEvent {
  let doc: unknown;
  try {
    doc = parseJsonBody(text, 'ws');
  } catch (e) {
    const pe = e as OeplParseError;
    return { kind: 'unparseable', reason: pe.reason, message: pe.message };
  }
  if (!isObj(doc)) return { kind: 'unparseable', reason: 'shape', message: `OEPL: ws: not an object: ${snippet(text)}` };
  for (const key of ['logMsg', 'errMsg'] as const) {
    const msg = doc[key];
    if (typeof msg !== 'string') continue;
    const m = XFER_RE.exec(msg);
    if (m) return { kind: m[2] === 'xfer timeout' ? 'timeout' : 'ack', mac: normaliseMac(m[1]!)! };
    return { kind: 'log', level: key === 'logMsg' ? 'log' : 'err', text: msg.replace(/[\r\n]+$/, '') };
  }
  if ('tags' in doc) {
    if (!Array.isArray(doc['tags'])) return { kind: 'unparseable', reason: 'shape', message: 'OEPL: ws: "tags" is not an array' };
    return { kind: 'tags', ...readTags(doc['tags']) };
  }
  const key = Object.keys(doc)[0];
  if (key === undefined) return { kind: 'unparseable', reason: 'shape', message: 'OEPL: ws: empty object' };
  return { kind: 'other', key };
}

// ------------------------------------------------------------------ requests

export interface OeplRequest {
  method: 'GET' | 'POST';
  /** Path and query, e.g. `/get_db?pos=12`. */
  path: string;
  /** Form body for POST (application/x-www-form-urlencoded). */
  body?: string;
  headers: Record<string, string>;
}

const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

function form(fields: Record<string, string>): string {
  return new URLSearchParams(fields).toString();
}

export interface JsonUploadOptions {
  mac: string;
  /** The drawing template: a JSON string as-is, or a value to serialise. */
  json: string | unknown[] | Record<string, unknown>;
  /** Minutes until the AP re-renders (`ttl`); a non-negative integer. */
  ttl?: number;
}

/** `POST /jsonupload` with form fields `mac`, `json` and optional `ttl`. */
export function buildJsonUpload(o: JsonUploadOptions): OeplRequest {
  const mac = requireMac(o.mac);
  const json = typeof o.json === 'string' ? o.json : JSON.stringify(o.json);
  if (json === undefined || json.trim() === '') throw badRequest('json content is empty', { mac });
  const fields: Record<string, string> = { mac, json };
  if (o.ttl !== undefined) {
    if (!Number.isInteger(o.ttl) || o.ttl < 0) throw badRequest(`ttl must be a non-negative integer, got ${o.ttl}`, { mac });
    fields['ttl'] = String(o.ttl);
  }
  return { method: 'POST', path: '/jsonupload', body: form(fields), headers: { ...FORM } };
}

/** Commands `/tag_cmd` understands (per the AP firmware). `del` removes the tag from the AP's database. */
export const TAG_COMMANDS = ['refresh', 'clear', 'reboot', 'scan', 'reset', 'deepsleep', 'ledflash', 'ledflash_long', 'ledflash_stop', 'del'] as const;
export type OeplTagCommand = (typeof TAG_COMMANDS)[number];

export function isTagCommand(s: string): s is OeplTagCommand {
  return (TAG_COMMANDS as readonly string[]).includes(s);
}

/** `POST /tag_cmd` with form fields `mac` and `cmd`. */
export function buildTagCmd(mac: string, cmd: OeplTagCommand): OeplRequest {
  const m = requireMac(mac);
  if (!isTagCommand(cmd)) throw badRequest(`unknown tag command ${JSON.stringify(cmd)} (known: ${TAG_COMMANDS.join(', ')})`);
  return { method: 'POST', path: '/tag_cmd', body: form({ mac: m, cmd }), headers: { ...FORM } };
}

/** An LED pattern: 12 bytes as 24 hex digits (the AP parses it as 12 `%2hhx`). */
export function isLedPattern(s: string): boolean {
  return /^[0-9A-Fa-f]{24}$/.test(s);
}

/** `GET /led_flash?mac=..&pattern=<24 hex>`. */
export function buildLedFlash(mac: string, pattern: string): OeplRequest {
  const m = requireMac(mac);
  if (typeof pattern !== 'string' || !isLedPattern(pattern)) throw badRequest(`LED pattern must be 24 hex digits (12 bytes), got ${JSON.stringify(pattern)}`);
  return { method: 'GET', path: `/led_flash?${form({ mac: m, pattern: pattern.toUpperCase() })}`, headers: {} };
}

// ------------------------------------------------------------------ LED patterns

/**
 * The 12-byte LED command an OEPL label runs (`struct ledFlash` in the firmware's `oepl-proto.h`;
 * docs/oepl.md "LED patterns"). Byte 0: mode in the low nibble (1 = flash groups; an all-zero
 * pattern is what the AP sends to stop), the LED's on-time per flash in the high nibble. Then three
 * groups of 3 bytes: colour (RGB 3-3-2, `rrrgggbb`), a byte with the flash count in the low nibble
 * and the flash speed (the gap between flashes) in the high nibble, and the delay after the group.
 * Byte 10: how often the whole sequence is repeated; byte 11 is spare.
 */
export interface LedFlashGroup {
  /** RGB 3-3-2 colour byte, `rrrgggbb` (e.g. 0xE0 red, 0x1C green, 0x03 blue). */
  colour: number;
  /** Flash count, 0-15 (low nibble). */
  flashes: number;
  /** Gap between the flashes, 0-15 (high nibble; the tag's time unit, see docs/oepl.md). */
  speed: number;
  /** Pause after the group, 0-255 (the tag's time unit, see docs/oepl.md). */
  delayAfter: number;
}

export interface LedPatternSpec {
  /** On-time of one flash, 0-15 (ms on the tags we know; 15 = no off time, drains the battery). */
  flashDuration: number;
  /** One to three groups; missing groups are all zero (colour 0, no flashes, no delay). */
  groups: readonly LedFlashGroup[];
  /** Repetitions of the whole sequence, 0-255. */
  repeats: number;
}

/** The all-zero pattern: mode 0, which stops a running LED sequence (the AP's `ledflash_stop`). */
export const LED_PATTERN_OFF = '000000000000000000000000';

/** RGB 3-3-2 colour bytes of the colours a pick-to-light palette uses. */
export const LED_COLOURS = {
  red: 0xe0,
  green: 0x1c,
  blue: 0x03,
  yellow: 0xfc,
  magenta: 0xe3,
  cyan: 0x1f,
  white: 0xff,
} as const;
export type LedColourName = keyof typeof LED_COLOURS;

/** Builds a mode-1 LED pattern (24 uppercase hex digits for `buildLedFlash`). Throws REQUEST_INVALID on a field out of range. */
export function buildLedPattern(spec: LedPatternSpec): string {
  const field = (name: string, v: number, max: number): number => {
    if (!Number.isInteger(v) || v < 0 || v > max) throw badRequest(`LED pattern: ${name} must be an integer 0-${max}, got ${String(v)}`);
    return v;
  };
  if (!Array.isArray(spec.groups) || spec.groups.length < 1 || spec.groups.length > 3) throw badRequest(`LED pattern: 1 to 3 flash groups, got ${spec.groups?.length}`);
  const bytes = new Uint8Array(12);
  bytes[0] = 1 | (field('flashDuration', spec.flashDuration, 15) << 4);
  spec.groups.forEach((g, i) => {
    const o = 1 + i * 3;
    bytes[o] = field(`groups[${i}].colour`, g.colour, 255);
    bytes[o + 1] = field(`groups[${i}].flashes`, g.flashes, 15) | (field(`groups[${i}].speed`, g.speed, 15) << 4);
    bytes[o + 2] = field(`groups[${i}].delayAfter`, g.delayAfter, 255);
  });
  bytes[10] = field('repeats', spec.repeats, 255);
  return Buffer.from(bytes).toString('hex').toUpperCase();
}

/** `GET /get_db` (first page) or `GET /get_db?pos=N`. */
export function buildGetDb(pos = 0): OeplRequest {
  if (!Number.isInteger(pos) || pos < 0) throw badRequest(`get_db pos must be a non-negative integer, got ${pos}`);
  return { method: 'GET', path: pos === 0 ? '/get_db' : `/get_db?pos=${pos}`, headers: {} };
}

/** `GET /get_db?mac=M`: one tag (or none if the AP does not know it). */
export function buildGetDbForMac(mac: string): OeplRequest {
  return { method: 'GET', path: `/get_db?${form({ mac: requireMac(mac) })}`, headers: {} };
}

// ------------------------------------------------------------------ plain-text answers

export type OeplCommandResult =
  /** Accepted. For /jsonupload: stored at the AP, NOT shown on the label. */
  | { kind: 'ok' }
  /** 409: the AP is not running yet (booting); retry later. */
  | { kind: 'busy' }
  /** The AP does not know the MAC. */
  | { kind: 'unknown-mac' }
  /** The AP refused the request (missing or malformed parameters). */
  | { kind: 'rejected'; status: number; text: string }
  /** Anything else: HTML, garbage, another status. Retry with back-off. */
  | { kind: 'unexpected'; status: number; text: string };

/**
 * Reads the plain-text answer of `/jsonupload`, `/tag_cmd` or `/led_flash`. The AP answers 200
 * with `Ok, saved` / `Ok, done` / `ok, request transmitted`, 409 `come back later` while not
 * running, 400 with `mac not found` when the MAC is unknown, and 400/500 with a short reason for
 * bad parameters.
 */
export function parseCommandResponse(status: number, body: string): OeplCommandResult {
  const text = body.trim().slice(0, 200);
  if (status === 409) return { kind: 'busy' };
  if (/^\s*</.test(body)) return { kind: 'unexpected', status, text };
  if (status === 200 && /^ok\b/i.test(text)) return { kind: 'ok' };
  if (status === 400 && /mac not found/i.test(text)) return { kind: 'unknown-mac' };
  if ((status === 400 || status === 500) && /^[\x20-\x7e]*$/.test(text) && text !== '') return { kind: 'rejected', status, text };
  return { kind: 'unexpected', status, text };
}
