/**
 * A small SGTIN-96 encoder for the RFID simulators (GS1 EPC Tag Data Standard, SGTIN-96):
 * 96 bits = header 0x30 (8) | filter (3) | partition (3) | company prefix + item reference (44) |
 * serial (38). The partition says how the 44 bits split between the company prefix and the item
 * reference (whose first digit is the indicator digit), from 12 prefix digits (partition 0) down
 * to 6 (partition 6). Only the simulators encode EPCs; the gateway decodes them elsewhere.
 */
import { gs1CheckDigit } from '../../src/util/gtin';


/** [company prefix bits, digits, item reference bits, digits] per partition 0-6 (TDS table for SGTIN). */
const PARTITIONS: readonly (readonly [number, number, number, number])[] = [
  [40, 12, 4, 1],
  [37, 11, 7, 2],
  [34, 10, 10, 3],
  [30, 9, 14, 4],
  [27, 8, 17, 5],
  [24, 7, 20, 6],
  [20, 6, 24, 7],
];

export interface Sgtin96 {
  /** Filter value 0-7 (1 = point of sale item, 3 = ...: see the TDS). */
  filter: number;
  /** GS1 company prefix, 6-12 digits (leading zeros count). */
  companyPrefix: string;
  /** Indicator digit + item reference, 13 minus the prefix length digits. */
  itemReference: string;
  /** Serial number, 0 .. 2^38-1. */
  serial: bigint | number;
}

/** The 12 bytes of an SGTIN-96 EPC. Throws RangeError on a field that does not fit. */
export function encodeSgtin96(s: Sgtin96): Buffer {
  const partition = PARTITIONS.findIndex((p) => p[1] === s.companyPrefix.length);
  if (partition < 0 || !/^\d+$/.test(s.companyPrefix)) throw new RangeError(`company prefix must be 6-12 digits, got ${JSON.stringify(s.companyPrefix)}`);
  const [cpBits, , irBits, irDigits] = PARTITIONS[partition]!;
  if (s.itemReference.length !== irDigits || !/^\d+$/.test(s.itemReference))
    throw new RangeError(`item reference must be ${irDigits} digits with a ${s.companyPrefix.length}-digit prefix, got ${JSON.stringify(s.itemReference)}`);
  if (!Number.isInteger(s.filter) || s.filter < 0 || s.filter > 7) throw new RangeError(`filter must be 0-7, got ${s.filter}`);
  const serial = BigInt(s.serial);
  if (serial < 0n || serial >= 1n << 38n) throw new RangeError(`serial must be 0 .. 2^38-1, got ${serial}`);
  const cp = BigInt(s.companyPrefix);
  const ir = BigInt(s.itemReference);
  if (cp >= 1n << BigInt(cpBits) || ir >= 1n << BigInt(irBits)) throw new RangeError('company prefix or item reference too large for its partition');
  let v = 0x30n;
  v = (v << 3n) | BigInt(s.filter);
  v = (v << 3n) | BigInt(partition);
  v = (v << BigInt(cpBits)) | cp;
  v = (v << BigInt(irBits)) | ir;
  v = (v << 38n) | serial;
  return Buffer.from(v.toString(16).padStart(24, '0'), 'hex');
}

/** GS1 check digit of a string of data digits (the gateway's own, src/util/gtin.ts). */
export { gs1CheckDigit };

/** GTIN-14 of an SGTIN: indicator + company prefix + rest of the item reference + check digit. */
export function sgtinGtin14(companyPrefix: string, itemReference: string): string {
  const body = itemReference[0]! + companyPrefix + itemReference.slice(1);
  return body + String(gs1CheckDigit(body));
}
