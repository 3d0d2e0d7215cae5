/**
 * EPC decoding (GS1 EPC Tag Data Standard, "TDS"), pure: the contents of a tag's EPC bank in,
 * a discriminated union out. No I/O, no state, never throws for any input.
 *
 * What is decoded: SGTIN-96 (header 0x30) and SGTIN-198 (header 0x36), to GTIN-14 + serial, the
 * filter value, the pure-identity URI (`urn:epc:id:sgtin:...`) and the tag URI
 * (`urn:epc:tag:sgtin-96:...`). Everything else (another header, partition 7, a company prefix or
 * item reference wider than its digit count, a length that is not the scheme's, a 198-bit serial
 * with a character outside the TDS's character set, non-zero pad bits) comes back as
 * `{ scheme: 'raw', hex, reason }`: shelfgate never guesses a GTIN. docs/epc.md has the facts.
 *
 * Design choices:
 * - Input is what readers report: the EPC without the PC word, padded to whole 16-bit words
 *   (96 bits = 12 bytes, 198 bits = 13 words = 26 bytes). A 25-byte form (198 bits padded to whole
 *   bytes, as some software prints it) is accepted as well. The pad bits must be zero, because the
 *   TDS's encoder writes zeros there; anything else means the bits are not what we think they are.
 * - The length must be exactly the scheme's: a 0x30 header in 8 words is not decoded (an EPC
 *   bank whose PC length disagrees with the header is a mis-programmed tag, and a count that
 *   trusts it would count the wrong thing).
 * - All fields fit in a double (the widest is 44 bits), so plain numbers, no BigInt: this runs
 *   for every tag read (tens of thousands per second).
 */
import { gs1CheckDigit } from '../util/gtin';

/** Partition table for SGTIN (TDS, SGTIN partition table): bits and decimal digits of the two fields. */
export const SGTIN_PARTITIONS: ReadonlyArray<{
  readonly companyPrefixBits: number;
  readonly companyPrefixDigits: number;
  readonly itemReferenceBits: number;
  /** Digits of indicator + item reference (the indicator is the first of them). */
  readonly itemReferenceDigits: number;
}> = [
  { companyPrefixBits: 40, companyPrefixDigits: 12, itemReferenceBits: 4, itemReferenceDigits: 1 },
  { companyPrefixBits: 37, companyPrefixDigits: 11, itemReferenceBits: 7, itemReferenceDigits: 2 },
  { companyPrefixBits: 34, companyPrefixDigits: 10, itemReferenceBits: 10, itemReferenceDigits: 3 },
  { companyPrefixBits: 30, companyPrefixDigits: 9, itemReferenceBits: 14, itemReferenceDigits: 4 },
  { companyPrefixBits: 27, companyPrefixDigits: 8, itemReferenceBits: 17, itemReferenceDigits: 5 },
  { companyPrefixBits: 24, companyPrefixDigits: 7, itemReferenceBits: 20, itemReferenceDigits: 6 },
  { companyPrefixBits: 20, companyPrefixDigits: 6, itemReferenceBits: 24, itemReferenceDigits: 7 },
];

export const SGTIN96_HEADER = 0x30;
export const SGTIN198_HEADER = 0x36;

interface SgtinFields {
  /** GTIN-14 with its check digit. */
  gtin: string;
  /** SGTIN-96: the decimal serial (no leading zeros); SGTIN-198: the serial characters, unescaped. */
  serial: string;
  /** Filter value 0..7 (1 = point-of-sale item, 2 = full case, ...; see docs/epc.md). */
  filter: number;
  /** Partition value 0..6. */
  partition: number;
  /** GS1 company prefix, zero-padded to its digit count (6..12 digits). */
  companyPrefix: string;
  /** Indicator digit + item reference, zero-padded (13 - company prefix digits). */
  itemReference: string;
  /** GS1 pure-identity URI, serial escaped as the TDS requires: `urn:epc:id:sgtin:C.I.S`. */
  uri: string;
  /** EPC tag URI (adds the scheme and filter): `urn:epc:tag:sgtin-96:F.C.I.S`. */
  tagUri: string;
  /** The EPC as given, uppercase hex (pad bits included). */
  hex: string;
}

export interface Sgtin96Epc extends SgtinFields {
  scheme: 'sgtin-96';
}

export interface Sgtin198Epc extends SgtinFields {
  scheme: 'sgtin-198';
}

/** Why an EPC stays raw; callers branch on this, never on `detail`. */
export type EpcRawReason =
  /** No bytes at all. */
  | 'empty'
  /** A string that is not an even number of hex digits. */
  | 'not-hex'
  /** A header this module does not decode (another GS1 scheme, a TID-style or unprogrammed EPC). */
  | 'unsupported-header'
  /** A length that is not the scheme's (12 bytes for SGTIN-96, 25 or 26 for SGTIN-198). */
  | 'length'
  /** Partition value 7 (reserved in the TDS). */
  | 'partition'
  /** The company prefix field holds a number with more digits than the partition allows. */
  | 'company-prefix-overflow'
  /** The item reference field holds a number with more digits than the partition allows. */
  | 'item-reference-overflow'
  /** SGTIN-198: a serial character outside the TDS's set, or characters after the terminating zero. */
  | 'serial-invalid'
  /** SGTIN-198: no serial character at all. */
  | 'serial-empty'
  /** Pad bits after the 198 bits of an SGTIN-198 are not zero. */
  | 'padding';

export interface RawEpc {
  scheme: 'raw';
  /** Uppercase hex of the EPC ('' when the input was not hex). */
  hex: string;
  reason: EpcRawReason;
  /** Human-readable explanation for logs (e.g. "header 0x31 (SSCC-96)"). */
  detail: string;
}

export type DecodedEpc = Sgtin96Epc | Sgtin198Epc | RawEpc;

/** Names of the other headers the TDS assigns, for the raw reason's detail only. */
const OTHER_HEADERS: Readonly<Record<number, string>> = {
  0x2c: 'GDTI-96',
  0x2d: 'GSRN-96',
  0x2e: 'GSRNP-96',
  0x31: 'SSCC-96',
  0x32: 'SGLN-96',
  0x33: 'GRAI-96',
  0x34: 'GIAI-96',
  0x35: 'GID-96',
  0x37: 'GRAI-170',
  0x38: 'GIAI-202',
  0x39: 'SGLN-195',
  0x3c: 'CPI-96',
  0x3e: 'GDTI-174',
  0xf7: 'SGTIN+',
};

const POW10 = [1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13];

const HEX = '0123456789ABCDEF';

function toHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex').toUpperCase();
}

function raw(hex: string, reason: EpcRawReason, detail: string): RawEpc {
  return { scheme: 'raw', hex, reason, detail };
}

/** `len` bits (at most 53) from bit `pos` (0 = most significant bit of byte 0), big-endian. */
function bits(b: Uint8Array, pos: number, len: number): number {
  let v = 0;
  while (len > 0) {
    const off = pos & 7;
    const take = Math.min(8 - off, len);
    v = v * (1 << take) + ((b[pos >> 3]! >> (8 - off - take)) & ((1 << take) - 1));
    pos += take;
    len -= take;
  }
  return v;
}

/** Characters allowed in an SGTIN-198 serial (GS1 AI encodable character set 82): `!`, `"`, `%`..`?`, `A`-`Z`, `_`, `a`-`z`. */
function isSerialChar(c: number): boolean {
  return c === 0x21 || c === 0x22 || (c >= 0x25 && c <= 0x3f) || (c >= 0x41 && c <= 0x5a) || c === 0x5f || (c >= 0x61 && c <= 0x7a);
}

/** Characters the TDS says must be %-escaped in an EPC URI. */
const URI_ESCAPES: Readonly<Record<string, string>> = { '"': '%22', '%': '%25', '&': '%26', '/': '%2F', '<': '%3C', '>': '%3E', '?': '%3F' };

/** Escapes an SGTIN-198 serial for the EPC URIs (TDS: `"` `%` `&` `/` `<` `>` `?` as %HH, uppercase hex). */
export function escapeEpcUriComponent(s: string): string {
  return s.replace(/["%&/<>?]/g, (c) => URI_ESCAPES[c]!);
}

function parseHex(s: string): Uint8Array | null {
  const t = s.replace(/\s+/g, '').replace(/^0x/i, '');
  if (t.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(t)) return null;
  return Buffer.from(t, 'hex');
}

/**
 * Decodes an EPC bank's EPC (without the PC word) given as bytes or hex (whitespace and a `0x`
 * prefix ignored, either case). Never throws.
 */
export function decodeEpc(input: Uint8Array | string): DecodedEpc {
  let b: Uint8Array;
  if (typeof input === 'string') {
    const p = parseHex(input);
    if (!p) return raw('', 'not-hex', `not an even number of hex digits (${input.length} characters)`);
    b = p;
  } else b = input;
  const hex = toHex(b);
  if (b.length === 0) return raw(hex, 'empty', 'no EPC bytes');
  const header = b[0]!;
  if (header === SGTIN96_HEADER) {
    if (b.length !== 12) return raw(hex, 'length', `SGTIN-96 header with ${b.length * 8} bits, expected 96`);
    return decodeSgtin(b, hex, 'sgtin-96');
  }
  if (header === SGTIN198_HEADER) {
    if (b.length !== 26 && b.length !== 25) return raw(hex, 'length', `SGTIN-198 header with ${b.length * 8} bits, expected 198 padded to 200 or 208`);
    return decodeSgtin(b, hex, 'sgtin-198');
  }
  const name = OTHER_HEADERS[header];
  return raw(hex, 'unsupported-header', `header 0x${HEX[header >> 4]}${HEX[header & 15]}${name ? ` (${name})` : ''} is not an SGTIN`);
}

function decodeSgtin(b: Uint8Array, hex: string, scheme: 'sgtin-96' | 'sgtin-198'): DecodedEpc {
  const filter = bits(b, 8, 3);
  const partition = bits(b, 11, 3);
  const p = SGTIN_PARTITIONS[partition];
  if (!p) return raw(hex, 'partition', `partition ${partition} is reserved`);
  const company = bits(b, 14, p.companyPrefixBits);
  if (company >= POW10[p.companyPrefixDigits]!) {
    return raw(hex, 'company-prefix-overflow', `company prefix ${company} has more than ${p.companyPrefixDigits} digits (partition ${partition})`);
  }
  const item = bits(b, 14 + p.companyPrefixBits, p.itemReferenceBits);
  if (item >= POW10[p.itemReferenceDigits]!) {
    return raw(hex, 'item-reference-overflow', `item reference ${item} has more than ${p.itemReferenceDigits} digits (partition ${partition})`);
  }
  let serial: string;
  let serialUri: string;
  if (scheme === 'sgtin-96') {
    serial = String(bits(b, 58, 38));
    serialUri = serial;
  } else {
    let s = '';
    let ended = false;
    for (let i = 0; i < 20; i++) {
      const c = bits(b, 58 + i * 7, 7);
      if (c === 0) {
        ended = true;
        continue;
      }
      if (ended) return raw(hex, 'serial-invalid', `serial character after the terminating zero (position ${i + 1})`);
      if (!isSerialChar(c)) return raw(hex, 'serial-invalid', `serial character 0x${c.toString(16).padStart(2, '0')} at position ${i + 1} is not allowed`);
      s += String.fromCharCode(c);
    }
    if (s === '') return raw(hex, 'serial-empty', 'SGTIN-198 with an empty serial');
    for (let pos = 198; pos < b.length * 8; pos++) {
      if (bits(b, pos, 1) !== 0) return raw(hex, 'padding', 'pad bits after the 198 bits are not zero');
    }
    serial = s;
    serialUri = escapeEpcUriComponent(s);
  }
  const companyPrefix = String(company).padStart(p.companyPrefixDigits, '0');
  const itemReference = String(item).padStart(p.itemReferenceDigits, '0');
  const data13 = itemReference[0]! + companyPrefix + itemReference.slice(1);
  const gtin = data13 + String(gs1CheckDigit(data13));
  return {
    scheme,
    gtin,
    serial,
    filter,
    partition,
    companyPrefix,
    itemReference,
    uri: `urn:epc:id:sgtin:${companyPrefix}.${itemReference}.${serialUri}`,
    tagUri: `urn:epc:tag:${scheme}:${filter}.${companyPrefix}.${itemReference}.${serialUri}`,
    hex,
  };
}

/** The GTIN-14 of a decoded EPC, or null when it stayed raw. */
export function epcGtin(e: DecodedEpc): string | null {
  return e.scheme === 'raw' ? null : e.gtin;
}
