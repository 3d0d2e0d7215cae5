/**
 * Label MACs as a technician or central writes them: the AP's form (src/drivers/oepl.ts
 * normaliseMac: 16 uppercase hex digits, a 12-digit MAC with `0000` in front), with `:`, `-` and
 * spaces between the digits allowed. Every MAC the labels feature keys by is in that form.
 */
import { ErrorCode, ShelfgateError } from '../../errors';
import { normaliseMac } from '../../drivers/oepl';

export function normalizeMac(raw: string): string | null {
  return normaliseMac(raw.replace(/[:\-\s]/g, ''));
}

/** normalizeMac, or REQUEST_INVALID naming what was given. */
export function requireMac(raw: string): string {
  const mac = normalizeMac(raw);
  if (!mac) throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `mac ${JSON.stringify(raw)} is not a label MAC (12 or 16 hex digits)`);
  return mac;
}
