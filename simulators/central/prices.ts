/**
 * Price sources for the reference central: a CSV file (columns
 * gtin,price,currency,was_price,valid_from,valid_to,version; price and was_price in integer minor
 * units) and a seeded random generator. Both produce PriceInput values; the simulator publishes them.
 */
import { gs1CheckDigit, isValidGtin } from '../../src/util/gtin';
import type { SeededRng } from './rng';
import { CURRENCY_RE, type Promotion } from './types';

export interface PriceInput {
  /** GTIN-8/12/13/14; normalised to GTIN-14. */
  gtin: string;
  /** Integer minor units (cents). */
  price: number;
  /** ISO 4217, e.g. EUR. */
  currency: string;
  promotion?: Promotion | null;
  /** Monotonic per GTIN; omitted: the next version after the latest published. */
  version?: number;
  /** Only for this store; omitted: every store. */
  storeId?: string;
}

export interface CsvIssue {
  line: number;
  message: string;
}

const COLUMNS = ['gtin', 'price', 'currency', 'was_price', 'valid_from', 'valid_to', 'version'] as const;

/** Splits one CSV line (RFC 4180 quoting, no embedded newlines). */
function splitCsvLine(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out.map((s) => s.trim());
}

/**
 * Parses a price CSV. The header names the columns (any order; was_price/valid_from/valid_to/version
 * may be absent). Every issue is collected with its line number; nothing is returned partially.
 */
export function parsePricesCsv(text: string): { prices: PriceInput[]; issues: CsvIssue[] } {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  const issues: CsvIssue[] = [];
  const prices: PriceInput[] = [];
  const header = splitCsvLine(lines[0] ?? '').map((h) => h.toLowerCase());
  for (const required of ['gtin', 'price', 'currency']) {
    if (!header.includes(required)) issues.push({ line: 1, message: `missing column ${required}` });
  }
  for (const h of header) {
    if (!(COLUMNS as readonly string[]).includes(h)) issues.push({ line: 1, message: `unknown column ${JSON.stringify(h)}` });
  }
  if (issues.length > 0) return { prices: [], issues };
  const col = (cells: string[], name: (typeof COLUMNS)[number]): string => {
    const i = header.indexOf(name);
    return i < 0 ? '' : (cells[i] ?? '');
  };
  const int = (s: string): number | null => (/^\d+$/.test(s) && Number.isSafeInteger(Number(s)) ? Number(s) : null);

  for (let n = 1; n < lines.length; n++) {
    const line = lines[n] ?? '';
    if (line.trim() === '' || line.startsWith('#')) continue;
    const lineNo = n + 1;
    const cells = splitCsvLine(line);
    const bad = (message: string): void => {
      issues.push({ line: lineNo, message });
    };
    const before = issues.length;
    const gtin = col(cells, 'gtin');
    if (!isValidGtin(gtin)) bad(`gtin ${JSON.stringify(gtin)} is not a valid GTIN-8/12/13/14`);
    const price = int(col(cells, 'price'));
    if (price === null) bad(`price ${JSON.stringify(col(cells, 'price'))} is not a non-negative integer (minor units)`);
    const currency = col(cells, 'currency');
    if (!CURRENCY_RE.test(currency)) bad(`currency ${JSON.stringify(currency)} is not an ISO 4217 code`);
    const versionText = col(cells, 'version');
    const version = versionText === '' ? undefined : int(versionText);
    if (version === null || version === 0) bad(`version ${JSON.stringify(versionText)} is not a positive integer`);
    const wasText = col(cells, 'was_price');
    const from = col(cells, 'valid_from');
    const to = col(cells, 'valid_to');
    let promotion: Promotion | null = null;
    if (wasText !== '' || from !== '' || to !== '') {
      const was = int(wasText);
      if (was === null) bad(`was_price ${JSON.stringify(wasText)} is not a non-negative integer`);
      const f = Date.parse(from);
      const t = Date.parse(to);
      if (!isRfc3339(from) || !isRfc3339(to)) bad('valid_from and valid_to must be RFC 3339 date-times with an offset');
      else if (!(f < t)) bad('valid_from must be before valid_to');
      if (was !== null) promotion = { was_price: was, valid_from: from, valid_to: to };
    }
    if (issues.length > before) continue;
    prices.push({
      gtin: gtin.padStart(14, '0'),
      price: price as number,
      currency,
      promotion,
      ...(version === undefined ? {} : { version: version as number }),
    });
  }
  return { prices, issues };
}

export function isRfc3339(s: string): boolean {
  return /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(s) && !Number.isNaN(Date.parse(s));
}

/** A valid GTIN-14 from a 13-digit body. */
export function gtin14(body13: string): string {
  return body13 + String(gs1CheckDigit(body13));
}

/**
 * Random prices over a fixed pool of GTINs (seeded): each draw picks a GTIN and a price between
 * 0.49 and 49.99; about one in five carries a promotion valid for a week from now.
 */
export class RandomPrices {
  readonly gtins: string[];
  constructor(
    private readonly rng: SeededRng,
    poolSize = 50,
    private readonly currency = 'EUR',
  ) {
    this.gtins = Array.from({ length: poolSize }, (_, i) => gtin14(`0400000${String(i).padStart(6, '0')}`));
  }

  next(now: Date): PriceInput {
    const gtin = this.gtins[this.rng.int(0, this.gtins.length - 1)] as string;
    const price = this.rng.int(49, 4999);
    const promo = this.rng.chance(0.2);
    return {
      gtin,
      price,
      currency: this.currency,
      promotion: promo
        ? {
            was_price: price + this.rng.int(10, 500),
            valid_from: now.toISOString(),
            valid_to: new Date(now.getTime() + 7 * 86_400_000).toISOString(),
          }
        : null,
    };
  }
}
