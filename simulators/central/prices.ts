/**
 * Price sources for the reference central: a CSV file (columns
 * gtin,price,currency,was_price,valid_from,valid_to,version,name,net_content; price and was_price
 * in integer minor units; name and net_content, e.g. `500 g`, optional) and a seeded random
 * generator over a demo catalogue of grocery products. Both produce PriceInput values, and
 * ProductInput values for the products they name; the simulator publishes them.
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

/** Units of a product's net content (docs/central-api.yaml NetContent). */
export const NET_UNITS = ['g', 'kg', 'ml', 'cl', 'l'] as const;
export type NetUnit = (typeof NET_UNITS)[number];

export interface NetContent {
  amount: number;
  unit: NetUnit;
}

/** A product's master data (central-api.yaml ProductChange). */
export interface ProductInput {
  /** GTIN-8/12/13/14; normalised to GTIN-14. */
  gtin: string;
  /** 1-200 characters. */
  name: string;
  /** null/omitted: unknown (no unit price). */
  netContent?: NetContent | null;
  /** Monotonic per GTIN; omitted: the next version after the latest published. */
  version?: number;
  /** Only for this store; omitted: every store. */
  storeId?: string;
}

/**
 * `500 g`, `0.75 l`, `0,75 l`, `1.5kg` -> {amount, unit}; null when it is not an amount > 0 in g,
 * kg, ml, cl or l.
 */
export function parseNetContent(text: string): NetContent | null {
  const m = /^(\d+(?:[.,]\d+)?)\s*(g|kg|ml|cl|l)$/i.exec(text.trim());
  if (!m) return null;
  const amount = Number(m[1]!.replace(',', '.'));
  return amount > 0 && Number.isFinite(amount) ? { amount, unit: m[2]!.toLowerCase() as NetUnit } : null;
}

export interface CsvIssue {
  line: number;
  message: string;
}

const COLUMNS = ['gtin', 'price', 'currency', 'was_price', 'valid_from', 'valid_to', 'version', 'name', 'net_content'] as const;

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
 * and name/net_content may be absent). A row with a name also names its product: `products` holds
 * the last name and net content given per GTIN (net content without a name is an issue). Every
 * issue is collected with its line number; nothing is returned partially.
 */
export function parsePricesCsv(text: string): { prices: PriceInput[]; products: ProductInput[]; issues: CsvIssue[] } {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  const issues: CsvIssue[] = [];
  const prices: PriceInput[] = [];
  const products = new Map<string, ProductInput>();
  const header = splitCsvLine(lines[0] ?? '').map((h) => h.toLowerCase());
  for (const required of ['gtin', 'price', 'currency']) {
    if (!header.includes(required)) issues.push({ line: 1, message: `missing column ${required}` });
  }
  for (const h of header) {
    if (!(COLUMNS as readonly string[]).includes(h)) issues.push({ line: 1, message: `unknown column ${JSON.stringify(h)}` });
  }
  if (issues.length > 0) return { prices: [], products: [], issues };
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
    const name = col(cells, 'name');
    const netText = col(cells, 'net_content');
    const netContent = netText === '' ? null : parseNetContent(netText);
    if (netText !== '' && netContent === null) bad(`net_content ${JSON.stringify(netText)} is not an amount > 0 in g, kg, ml, cl or l (e.g. "500 g")`);
    if (name === '' && netText !== '') bad('net_content needs a name');
    if (name !== '' && [...name].length > 200) bad('name is longer than 200 characters');
    if (issues.length > before) continue;
    if (name !== '') {
      const g14 = gtin.padStart(14, '0');
      products.delete(g14); // file order: the last row of a GTIN wins
      products.set(g14, { gtin: g14, name, netContent });
    }
    prices.push({
      gtin: gtin.padStart(14, '0'),
      price: price as number,
      currency,
      promotion,
      ...(version === undefined ? {} : { version: version as number }),
    });
  }
  return { prices, products: issues.length > 0 ? [] : [...products.values()], issues };
}

export function isRfc3339(s: string): boolean {
  return /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(s) && !Number.isNaN(Date.parse(s));
}

/** A valid GTIN-14 from a 13-digit body. */
export function gtin14(body13: string): string {
  return body13 + String(gs1CheckDigit(body13));
}

/**
 * The demo catalogue: plausible grocery products, with the net content printed on the pack where
 * one is sold by weight or volume (null: sold by the piece, no unit price).
 */
const DEMO_PRODUCTS: ReadonlyArray<[name: string, net: string | null]> = [
  ['Whole milk 3.5 %', '1 l'], ['Butter', '250 g'], ['Greek yoghurt', '500 g'], ['Gouda slices', '150 g'],
  ['Free-range eggs, 10 pack', null], ['Wholegrain bread', '750 g'], ['Butter croissants, 4 pack', null], ['Basmati rice', '1 kg'],
  ['Spaghetti', '500 g'], ['Tomato passata', '500 g'], ['Extra virgin olive oil', '750 ml'], ['Sunflower oil', '1 l'],
  ['Ground coffee', '500 g'], ['Green tea, 20 bags', '35 g'], ['Orange juice', '1 l'], ['Sparkling water', '1.5 l'],
  ['Cola', '330 ml'], ['Dark chocolate 70 %', '100 g'], ['Salted peanuts', '200 g'], ['Potato crisps', '175 g'],
  ['Oat flakes', '500 g'], ['Crunchy muesli', '750 g'], ['Forest honey', '250 g'], ['Strawberry jam', '340 g'],
  ['Peanut butter', '350 g'], ['Chickpeas', '400 g'], ['Tuna in olive oil', '160 g'], ['Sweetcorn', '285 g'],
  ['Red lentils', '500 g'], ['Plain flour', '1 kg'], ['Caster sugar', '1 kg'], ['Sea salt', '500 g'],
  ['Black pepper, ground', '50 g'], ['Tomato ketchup', '500 ml'], ['Mayonnaise', '250 ml'], ['Dijon mustard', '200 ml'],
  ['Bananas, bunch', null], ['Apples Braeburn', '1 kg'], ['Carrots', '1 kg'], ['Cherry tomatoes', '250 g'],
  ['Iceberg lettuce', null], ['Frozen peas', '750 g'], ['Margherita pizza, frozen', '350 g'], ['Vanilla ice cream', '900 ml'],
  ['Dishwasher tablets, 30 pack', null], ['Washing-up liquid', '500 ml'], ['Toilet paper, 8 rolls', null], ['Kitchen roll, 2 rolls', null],
  ['Toothpaste', '75 ml'], ['Shower gel', '250 ml'],
];

/** The demo catalogue's product `i` (any index: the list repeats with a variant name). */
export function demoProduct(i: number): { name: string; netContent: NetContent | null } {
  const [name, net] = DEMO_PRODUCTS[i % DEMO_PRODUCTS.length]!;
  const round = Math.floor(i / DEMO_PRODUCTS.length);
  return { name: round === 0 ? name : `${name} (${round + 1})`, netContent: net === null ? null : parseNetContent(net) };
}

/**
 * Random prices over a fixed pool of GTINs (seeded): each draw picks a GTIN and a price between
 * 0.49 and 49.99; about one in five carries a promotion valid for a week from now. `product(gtin)`
 * names each GTIN of the pool from the demo catalogue.
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

  /** The product of a GTIN of the pool (from the demo catalogue); undefined for any other GTIN. */
  product(gtin: string): ProductInput | undefined {
    const i = this.gtins.indexOf(gtin);
    return i < 0 ? undefined : { gtin, ...demoProduct(i) };
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
