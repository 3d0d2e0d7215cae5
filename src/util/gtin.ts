/**
 * GTINs, the one place for them (GS1 General Specifications): a GTIN is 8, 12, 13 or 14 digits, the
 * last one a check digit. EAN-8 is GTIN-8, UPC-A is GTIN-12, EAN-13 is GTIN-13; each is the same
 * number as a GTIN-14 left-padded with zeros, the key the gateway stores prices, assignments and
 * stock under (central's feed sends GTIN-14). Nothing is repaired or guessed: separators, letters,
 * another length or a wrong check digit make a code invalid. (A UPC-E, the zero-suppressed 8-digit
 * UPC, would pass as an EAN-8 by length alone, so a scanner that knows its symbology expands it
 * first.)
 */

/**
 * GS1 check digit (GS1 General Specifications 7.9.1): from the rightmost data digit leftwards,
 * weights 3,1,3,1...; check = (10 - sum mod 10) mod 10. Validates EAN-8, UPC-A (12), EAN-13, GTIN-14.
 */
export function gs1CheckDigit(data: string): number {
  if (!/^\d+$/.test(data)) throw new TypeError(`not digits: ${JSON.stringify(data)}`);
  let sum = 0;
  for (let i = data.length - 1, w = 3; i >= 0; i--, w = w === 3 ? 1 : 3) sum += (data.charCodeAt(i) - 48) * w;
  return (10 - (sum % 10)) % 10;
}

/** True if `code` is 8, 12, 13 or 14 digits with a correct GS1 check digit. */
export function isValidGtin(code: string): boolean {
  if (!/^\d{8}$|^\d{12,14}$/.test(code)) return false;
  return gs1CheckDigit(code.slice(0, -1)) === code.charCodeAt(code.length - 1) - 48;
}

/** Normalises a valid GTIN-8/12/13/14 to GTIN-14 (left-padded with zeros). */
export function toGtin14(code: string): string {
  if (!isValidGtin(code)) throw new TypeError(`invalid GTIN: ${JSON.stringify(code)}`);
  return code.padStart(14, '0');
}

/**
 * `code` (GTIN-8/12/13/14, EAN-8, UPC-A, EAN-13; white space around it ignored, e.g. a keyboard's
 * stray blank) as GTIN-14, or null if it is not one: for input from outside (a kiosk, a scanner).
 */
export function normalizeGtin(code: unknown): string | null {
  if (typeof code !== 'string') return null;
  const c = code.trim();
  return isValidGtin(c) ? c.padStart(14, '0') : null;
}
