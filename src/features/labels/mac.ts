/**
 * Label MACs as the OpenEPaperLink AP reports them in /get_db: 16 uppercase hex digits; a 12-digit
 * MAC comes back with `0000` in front. Every MAC the labels feature keys by is in that form.
 */
export function normalizeMac(raw: string): string | null {
  const hex = raw.replace(/[:\-\s]/g, '').toUpperCase();
  if (/^[0-9A-F]{16}$/.test(hex)) return hex;
  if (/^[0-9A-F]{12}$/.test(hex)) return `0000${hex}`;
  return null;
}
