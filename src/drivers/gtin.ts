/**
 * GTIN normalisation for product lookups and barcode reads: a pure codec, no I/O.
 *
 * A GTIN (GS1 General Specifications, section 3.3.2) is 8, 12, 13 or 14 digits, the last one a
 * check digit (section 7.9.1: from the rightmost data digit leftwards, weights 3, 1, 3, 1 ...;
 * check = (10 - sum mod 10) mod 10). EAN-8 is GTIN-8, UPC-A is GTIN-12, EAN-13 is GTIN-13. Every
 * one is the same number as a GTIN-14 left-padded with zeros, which is the key the gateway stores
 * prices, assignments and stock under (central's feed sends GTIN-14).
 *
 * Accepted input: the digits alone, optionally surrounded by white space (a scanner's or a
 * keyboard's stray blank). Nothing else is repaired: a code with separators, letters, another
 * length or a wrong check digit is refused (null), never guessed. A UPC-E (zero-suppressed
 * 8-digit UPC) would be misread as an EAN-8 by length alone, so a scanner that knows its
 * symbology expands it before calling this.
 */
import { gs1CheckDigit } from '../util/gtin';

const DIGITS = /^(?:\d{8}|\d{12}|\d{13}|\d{14})$/;

/** True if `code` is 8, 12, 13 or 14 digits and its last digit is the GS1 check digit of the others. */
export function gtinCheckDigitOk(code: string): boolean {
  if (!DIGITS.test(code)) return false;
  return gs1CheckDigit(code.slice(0, -1)) === code.charCodeAt(code.length - 1) - 48;
}

/**
 * `code` (GTIN-8/12/13/14, EAN-8, UPC-A, EAN-13; white space around it ignored) as GTIN-14, or
 * null if it is not one (wrong length, not digits, wrong check digit).
 */
export function normalizeGtin(code: string): string | null {
  if (typeof code !== 'string') return null;
  const c = code.trim();
  if (!gtinCheckDigitOk(c)) return null;
  return c.padStart(14, '0');
}
