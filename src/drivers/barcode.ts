/**
 * Barcode scanner reads: a pure codec, no I/O (docs/scanners.md). Three layers:
 *
 * 1. `ScanFramer`: bytes -> lines, with the scanner's configured terminator (CR, CR LF, LF or ETX).
 * 2. `splitAim`: the optional AIM symbology identifier (ISO/IEC 15424: `]`, a code character, a
 *    modifier character) in front of the data.
 * 3. `decodeScan`: the data -> GTIN-14 (EAN-8, UPC-A, EAN-13, GTIN-14 by GS1 check digit) and the
 *    GS1 element string's (10) batch, (17) expiry and (21) serial; or a misread with its reason.
 *
 * Design choices:
 * - A misread is a value (`{ ok: false, reason }`), never an exception: the caller counts reasons.
 * - Framing keeps GS (0x1D, FNC1 as transmitted) and rejects every other control byte inside a
 *   line (the line is counted `control` and dropped whole: a corrupted byte in a code must not turn
 *   into another code). CR and LF next to the terminator are trimmed, so a scanner sending CR LF to
 *   a gateway configured for CR (or the reverse) still reads. In ETX mode a leading STX (0x02) is
 *   dropped: scanners set to ETX usually frame STX ... ETX.
 * - A line longer than `maxLineBytes` is dropped up to its terminator and counted `overlong`; the
 *   buffer never grows beyond `maxLineBytes`, whatever arrives without a terminator.
 * - GS1 element strings are parsed by the GS1 General Specifications' rule (section 7.8.5, table of
 *   element strings with predefined length): an element whose AI starts with one of those two-digit
 *   prefixes has that fixed length; every other element ends at FNC1 (GS) or at the end of the
 *   data. So an unknown AI is skipped exactly (by its predefined length, or to the next GS) and
 *   never costs the GTIN. An element shorter than its predefined length is `gs1_truncated`.
 * - In the human-readable form `(01)...(10)...` each AI is in brackets. A value containing `(`
 *   followed by digits and `)` cannot be told from the next AI; that form is accepted for scanners
 *   set to send it, and the FNC1 form is the recommended setting.
 * - Without an AIM prefix the kind is inferred from the content: 8/12/13/14 digits are a GTIN;
 *   digits starting `01` of length >= 16, data with GS, or data starting `(` are GS1 element
 *   strings; anything else carries no GTIN (`not_gtin`, which is not a misread: a loyalty card, a
 *   coupon in Code 128). Digits of any other length are a misread (`bad_length`).
 * - EAN with add-on (`]E3`, 13 + 2 or 5 digits): the GTIN is the first 13 digits; the add-on (a
 *   periodical's issue number) is not part of the product's identity and is dropped.
 */
import { isValidGtin, normalizeGtin } from '../util/gtin';

/** Why a read is not a product code. `not_gtin` is not a misread: the code is fine, it is not a product. */
export type MisreadReason =
  | 'control'
  | 'overlong'
  | 'aim_missing'
  | 'bad_check'
  | 'bad_length'
  | 'bad_chars'
  | 'gs1_syntax'
  | 'gs1_truncated'
  | 'gs1_bad_value'
  | 'gs1_conflict';

export type ScanTerminator = 'cr' | 'crlf' | 'lf' | 'etx';

// ---- framing ----

export interface ScanFramerOptions {
  terminator: ScanTerminator;
  /** Longest accepted line, terminator excluded. Default 512. */
  maxLineBytes?: number;
}

export type FramedLine = { ok: true; line: string } | { ok: false; reason: 'control' | 'overlong'; bytes: number };

const CR = 0x0d;
const LF = 0x0a;
const ETX = 0x03;
const STX = 0x02;
const GS = 0x1d;

/** Bytes -> lines of one scanner; see the file comment for what is trimmed and rejected. */
export class ScanFramer {
  private readonly max: number;
  private readonly term: number;
  private readonly buf: Buffer;
  private len = 0;
  private discarding = false;
  private poisoned = false;
  /** Bytes seen since the last terminator (kept counting while poisoned or discarding). */
  private seen = 0;

  constructor(opts: ScanFramerOptions) {
    const max = opts.maxLineBytes ?? 512;
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`maxLineBytes must be a positive integer, got ${max}`);
    this.max = max;
    this.buf = Buffer.alloc(max + 1); // + 1: a CR before the LF of a CR LF line of max bytes
    // crlf ends at LF (the CR before it is trimmed); cr at CR; lf at LF; etx at ETX
    this.term = opts.terminator === 'cr' ? CR : opts.terminator === 'etx' ? ETX : LF;
  }

  /** Feeds received bytes; returns the lines (and rejected lines) they complete, in order. */
  push(chunk: Buffer): FramedLine[] {
    const out: FramedLine[] = [];
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (b === this.term) {
        this.endLine(out);
        continue;
      }
      this.seen++;
      if (this.discarding) continue;
      // CR/LF that are not the terminator, and STX, only ever frame: trimmed where they touch the ends
      if ((b === CR || b === LF || b === STX) && this.len === 0 && !this.poisoned) continue;
      if (this.len === this.max + 1) {
        this.discarding = true;
        continue;
      }
      if ((b < 0x20 && b !== GS && b !== CR && b !== LF) || b === 0x7f) this.poisoned = true;
      this.buf[this.len++] = b;
    }
    return out;
  }

  /** Forgets a partial line (after a reconnect). */
  reset(): void {
    this.len = 0;
    this.seen = 0;
    this.discarding = false;
    this.poisoned = false;
  }

  private endLine(out: FramedLine[]): void {
    let end = this.len;
    while (end > 0 && (this.buf[end - 1] === CR || this.buf[end - 1] === LF)) end--;
    if (this.discarding || end > this.max) out.push({ ok: false, reason: 'overlong', bytes: this.seen });
    else if (this.poisoned || this.buf.subarray(0, end).some((b) => b === CR || b === LF)) out.push({ ok: false, reason: 'control', bytes: this.seen });
    else if (end > 0) out.push({ ok: true, line: this.buf.toString('latin1', 0, end) });
    this.reset();
  }
}

// ---- AIM symbology identifiers ----

/** `]` + code character + modifier (ISO/IEC 15424). */
const AIM_RE = /^\][A-Za-z][0-9A-Za-z]/;

/** Splits an AIM symbology identifier off the front of `line`; symbology null if there is none. */
export function splitAim(line: string): { symbology: string | null; data: string } {
  return AIM_RE.test(line) ? { symbology: line.slice(0, 3), data: line.slice(3) } : { symbology: null, data: line };
}

/** AIM identifiers whose data is a GS1 element string (FNC1 in first position). */
const GS1_AIMS = new Set([']C1', ']d2', ']Q3', ']e0', ']J1']);

// ---- decoding ----

export interface ScanData {
  /** GTIN-14 (check digit verified), or null when the code carries none. */
  gtin: string | null;
  batch?: string;
  /** YYMMDD as encoded (day 00 = end of the month). */
  expiry?: string;
  serial?: string;
}

export type ScanResult = ({ ok: true } & ScanData) | { ok: false; reason: MisreadReason; detail: string };

function miss(reason: MisreadReason, detail: string): ScanResult {
  return { ok: false, reason, detail };
}

function gtinOf(digits: string, what: string): ScanResult {
  const g = normalizeGtin(digits);
  return g ? { ok: true, gtin: g } : miss('bad_check', `${what} ${digits}: wrong check digit`);
}

/**
 * Decodes one read's data (after `splitAim`). `symbology` null means no AIM identifier: the kind is
 * inferred from the content (file comment).
 */
export function decodeScan(data: string, symbology: string | null): ScanResult {
  if (data.length === 0) return miss('bad_length', 'empty read');
  switch (symbology) {
    case ']E0':
      if (!/^\d{12,13}$/.test(data)) return miss('bad_length', `EAN-13/UPC-A needs 12 or 13 digits, got ${JSON.stringify(data)}`);
      return gtinOf(data, 'EAN-13/UPC-A');
    case ']E4':
      if (!/^\d{8}$/.test(data)) return miss('bad_length', `EAN-8 needs 8 digits, got ${JSON.stringify(data)}`);
      return gtinOf(data, 'EAN-8');
    case ']E3':
      if (!/^\d{15}$|^\d{18}$/.test(data)) return miss('bad_length', `EAN-13 with add-on needs 15 or 18 digits, got ${JSON.stringify(data)}`);
      return gtinOf(data.slice(0, 13), 'EAN-13');
    case ']E1':
    case ']E2':
      return { ok: true, gtin: null }; // an add-on alone
  }
  if (symbology !== null && GS1_AIMS.has(symbology)) return parseGs1(data);
  if (/^\d+$/.test(data)) {
    if (data.length === 8 || (data.length >= 12 && data.length <= 14)) return gtinOf(data, 'GTIN');
    if (data.length >= 16 && data.startsWith('01')) return parseGs1(data);
    return miss('bad_length', `${data.length} digits is no GTIN length (8, 12, 13, 14)`);
  }
  if (data.startsWith('(') || data.includes('\x1d')) return parseGs1(data);
  return { ok: true, gtin: null };
}

// ---- GS1 element strings ----

/**
 * Total length (AI + data) of the element strings with predefined length, by the AI's first two
 * digits (GS1 General Specifications 7.8.5). These need no FNC1 after them; all others do.
 */
const PREDEFINED_LENGTH: Readonly<Record<string, number>> = {
  '00': 20, '01': 16, '02': 16, '03': 16, '04': 18,
  '11': 8, '12': 8, '13': 8, '14': 8, '15': 8, '16': 8, '17': 8, '18': 8, '19': 8,
  '20': 4,
  '31': 10, '32': 10, '33': 10, '34': 10, '35': 10, '36': 10,
  '41': 16,
};

/** GS1 AI encodable character set 82 (GS1 General Specifications 7.11, figure 7.11-1). */
const CSET82 = /^[!"%&'()*+,\-./0-9:;<=>?A-Z_a-z]+$/;

interface Elements {
  gtin?: string;
  batch?: string;
  expiry?: string;
  serial?: string;
}

/** Sets a field once; the same AI again with another value is a conflict (GS1 forbids it). */
function put(el: Elements, key: keyof Elements, value: string, ai: string): ScanResult | null {
  const old = el[key];
  if (old !== undefined && old !== value) return miss('gs1_conflict', `AI (${ai}) twice with different values`);
  el[key] = value;
  return null;
}

/** Checks and records one element we understand; other AIs are skipped (returns null: fine). */
function takeElement(el: Elements, ai: string, value: string): ScanResult | null {
  switch (ai) {
    case '01':
      if (!/^\d{14}$/.test(value)) return miss('gs1_bad_value', `AI (01) needs 14 digits, got ${JSON.stringify(value)}`);
      if (!isValidGtin(value)) return miss('bad_check', `AI (01) ${value}: wrong check digit`);
      return put(el, 'gtin', value, ai);
    case '17': {
      const m = /^(\d\d)(\d\d)(\d\d)$/.exec(value);
      const mm = m ? Number(m[2]) : 0;
      const dd = m ? Number(m[3]) : 99;
      if (!m || mm < 1 || mm > 12 || dd > 31) return miss('gs1_bad_value', `AI (17) needs YYMMDD, got ${JSON.stringify(value)}`);
      return put(el, 'expiry', value, ai);
    }
    case '10':
    case '21':
      if (value.length < 1 || value.length > 20 || !CSET82.test(value)) return miss('gs1_bad_value', `AI (${ai}) needs 1-20 characters of GS1 set 82, got ${JSON.stringify(value)}`);
      return put(el, ai === '10' ? 'batch' : 'serial', value, ai);
    default:
      return null;
  }
}

/** Which AI a variable-length element starts with, for the ones we extract; null for any other. */
function knownVariableAi(element: string): '10' | '21' | null {
  return element.startsWith('10') ? '10' : element.startsWith('21') ? '21' : null;
}

function done(el: Elements): ScanResult {
  return { ok: true, gtin: el.gtin !== undefined ? el.gtin : null, ...(el.batch !== undefined ? { batch: el.batch } : {}), ...(el.expiry !== undefined ? { expiry: el.expiry } : {}), ...(el.serial !== undefined ? { serial: el.serial } : {}) };
}

/** A GS1 element string: FNC1-separated (GS), or the bracketed human-readable form. */
export function parseGs1(data: string): ScanResult {
  if (data.startsWith('(')) return parseBracketed(data);
  const el: Elements = {};
  let i = data.charCodeAt(0) === GS ? 1 : 0; // FNC1 in first position, when the scanner sends it
  if (i >= data.length) return miss('gs1_syntax', 'no element string');
  while (i < data.length) {
    const prefix = data.slice(i, i + 2);
    if (!/^\d\d$/.test(prefix)) return miss('gs1_syntax', `no AI at offset ${i}: ${JSON.stringify(data.slice(i, i + 8))}`);
    const fixed = PREDEFINED_LENGTH[prefix];
    let element: string;
    if (fixed !== undefined) {
      element = data.slice(i, i + fixed);
      if (element.length < fixed || element.includes('\x1d')) return miss('gs1_truncated', `element (${prefix}..) needs ${fixed} characters`);
      i += fixed;
      if (data.charCodeAt(i) === GS) i++; // a needless FNC1 after a fixed-length element is tolerated
      const ai = prefix;
      const bad = takeElement(el, ai, element.slice(2));
      if (bad) return bad;
    } else {
      const gs = data.indexOf('\x1d', i);
      const end = gs < 0 ? data.length : gs;
      element = data.slice(i, end);
      i = gs < 0 ? data.length : gs + 1;
      if (gs >= 0 && i >= data.length) return miss('gs1_syntax', 'FNC1 at the end of the data');
      const ai = knownVariableAi(element);
      if (ai) {
        const bad = takeElement(el, ai, element.slice(2));
        if (bad) return bad;
      }
    }
  }
  return done(el);
}

/** `(01)09501101530003(17)140704(10)AB-123`; see the file comment for its one ambiguity. */
function parseBracketed(data: string): ScanResult {
  const el: Elements = {};
  const re = /\((\d{2,4})\)/g;
  const heads: Array<{ ai: string; at: number; end: number }> = [];
  for (let m = re.exec(data); m; m = re.exec(data)) heads.push({ ai: m[1]!, at: m.index, end: m.index + m[0].length });
  if (heads.length === 0 || heads[0]!.at !== 0) return miss('gs1_syntax', `bracketed element string must start with (AI): ${JSON.stringify(data.slice(0, 16))}`);
  for (let k = 0; k < heads.length; k++) {
    const h = heads[k]!;
    const value = data.slice(h.end, k + 1 < heads.length ? heads[k + 1]!.at : data.length);
    if (value.length === 0) return miss('gs1_syntax', `AI (${h.ai}) without a value`);
    const fixed = PREDEFINED_LENGTH[h.ai.slice(0, 2)];
    if (fixed !== undefined && h.ai.length + value.length !== fixed) return miss('gs1_truncated', `element (${h.ai}) needs ${fixed - h.ai.length} characters, got ${value.length}`);
    const bad = takeElement(el, h.ai, value);
    if (bad) return bad;
  }
  return done(el);
}
