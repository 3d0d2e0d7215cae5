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
