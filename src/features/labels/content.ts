/**
 * Label content: from a product, the price it has at a given time and the store's locale, the
 * drawing a label of a given type shows, as an OpenEPaperLink JSON template.
 *
 * The OpenEPaperLink access point (ESP32 AP firmware, OpenEPaperLink repository: wiki page
 * "Json template", drawElement/drawString in ESP32_AP-Flasher/src/contentmanager.cpp) renders such
 * a template itself: `POST /jsonupload` with form fields `mac` and `json`, the json being an array
 * of draw commands. We use two of them:
 *   {"text": [x, y, "text", "font", "colour", alignment(, size)]}
 *       alignment 0: x is the left edge, 1: the centre, 2: the right edge; y is the top of the
 *       line. `font` is a bitmap font file (`fonts/bahnschrift20`) or a TrueType file
 *       (`Signika-SB.ttf`) drawn at `size` pixels.
 *   {"line": [x1, y1, x2, y2, "colour"]}  (the stroke through a was-price)
 * Colours go by name (`white`, `black`, `red`, `yellow`): the firmware also takes numbers, but its
 * 2 is red and 3 yellow whatever the tag has, so a name says what is meant.
 * Two firmware facts shape the text: the AP replaces `{name}` in a text by its variable `name` (or
 * `-`), so braces in a product name are sent as parentheses; and a bitmap font has only the glyphs
 * it was made with (the AP's bahnschrift and calibrib files have no `€`), so each font in the label
 * type data lists its glyphs and a price whose currency sign the font lacks is written with the
 * currency code (`2,49 EUR`); a letter the font lacks loses its accent (`è` -> `e`) or becomes `?`,
 * and the result lists it in `substituted`.
 *
 * Fitting. The gateway cannot measure glyphs the AP draws, so each font in the label type data
 * carries upper bounds of the advance per character class (digit or currency sign, narrow
 * punctuation, other, wide); a text measured
 * with them is never wider on the tag. Then:
 * - a price, a was-price or a unit price that does not fit its field is an error
 *   (LabelContentError SG_LABEL_TEXT_TOO_LONG): a price is never cut or shrunk;
 * - a product name is word-wrapped onto the field's lines; a word longer than a line is broken
 *   between characters; what does not fit the last line is cut where `...` still fits after it,
 *   and the result says `truncated: true` (the caller reports it). A name is never dropped.
 *
 * Text is put on the label as plain characters: the no-break spaces Intl puts into prices
 * (U+00A0, U+202F in fr-FR) become ordinary spaces (the AP's fonts need not have those glyphs),
 * control characters are removed and runs of white space become one space.
 *
 * Prices are minor units (what central's feed and the core's `priceApplied` event carry); they are
 * formatted with Intl.NumberFormat for the store's locale from an exact decimal string, never
 * through a binary fraction. With a promotion, `price` is the promotion price in
 * [valid_from, valid_to) and `promotion.was_price` the price outside it (priceAt, priceTimeline).
 */
import { createHash } from 'node:crypto';
import type { ContentInput } from './scheduler';
import type { FontMetrics, LabelType, TextField } from './types';

export type LabelContentErrorCode = 'SG_LABEL_TEXT_TOO_LONG' | 'SG_LABEL_TEXT_UNRENDERABLE' | 'SG_LABEL_INPUT_INVALID';

/** Content that cannot be put on a label. `field` names the template field or input at fault. */
export class LabelContentError extends Error {
  readonly code: LabelContentErrorCode;
  readonly field: string;
  readonly details: Readonly<Record<string, unknown>>;
  constructor(code: LabelContentErrorCode, field: string, message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.name = 'LabelContentError';
    this.code = code;
    this.field = field;
    this.details = details;
  }
}

export interface Promotion {
  /** Minor units: the price outside the promotion, shown struck through while it runs. */
  was_price: number;
  /** RFC 3339; absent: from the start. */
  valid_from?: string;
  /** RFC 3339, exclusive; absent: open-ended. */
  valid_to?: string;
}

/** A price as the core's `priceApplied` event and central's feed carry it. */
export interface LabelPrice {
  /** Minor units. */
  price: number;
  /** ISO 4217. */
  currency: string;
  promotion: Promotion | null;
}

/** What a label shows of a price at one time. */
export interface DisplayedPrice {
  /** Minor units. */
  price: number;
  currency: string;
  /** Minor units; null when no promotion runs. */
  wasPrice: number | null;
}

export type NetUnit = 'g' | 'kg' | 'ml' | 'cl' | 'l';

export interface NetContent {
  amount: number;
  unit: NetUnit;
}

export interface LabelProduct {
  gtin: string;
  name: string;
  /** Net content of one item, for the unit price; null/absent: no unit price on the label. */
  netContent?: NetContent | null;
}

export type TextCommand = [x: number, y: number, text: string, font: string, colour: string, align: number, size?: number];
export type DrawCommand = { text: TextCommand } | { line: [number, number, number, number, string] };

/** What the label shows, for the integrity report and for ordering deliveries. */
export interface ContentMeta {
  gtin: string;
  name: string;
  price: number;
  currency: string;
  wasPrice: number | null;
  /** Minor units per `unit`; null without net content. */
  unitPrice: { price: number; unit: 'kg' | 'l' } | null;
}

export interface RenderedContent {
  commands: DrawCommand[];
  /** The JSON sent as `json` to /jsonupload. */
  body: string;
  /** sha256 of the label type id and the body (32 hex digits): equal hashes show the same thing. */
  hash: string;
  /** UTF-8 bytes of the body (what goes over the LAN). */
  bytes: number;
  /** Bytes the radio carries at most for it: the label's raw bitmap (imageBytes; the AP may compress). */
  radioBytes: number;
  /** The name was cut to fit (see the rule above). */
  truncated: boolean;
  /** Characters of the name the font does not have, replaced (see above); empty when none. */
  substituted: string[];
  meta: ContentMeta;
}

export interface RenderInput {
  product: LabelProduct;
  display: DisplayedPrice;
  /** BCP 47, e.g. `de-DE`. */
  locale: string;
}

// ---- prices over time ----

function parseTime(s: string | undefined, field: string): number | null {
  if (s === undefined) return null;
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw new LabelContentError('SG_LABEL_INPUT_INVALID', field, `${field} ${JSON.stringify(s)} is not a time`);
  return t;
}

/** What a label must show of `p` at ms epoch `t`. */
export function priceAt(p: LabelPrice, t: number): DisplayedPrice {
  const promo = p.promotion;
  if (promo) {
    const from = parseTime(promo.valid_from, 'promotion.valid_from');
    const to = parseTime(promo.valid_to, 'promotion.valid_to');
    const on = (from === null || t >= from) && (to === null || t < to);
    return on ? { price: p.price, currency: p.currency, wasPrice: promo.was_price } : { price: promo.was_price, currency: p.currency, wasPrice: null };
  }
  return { price: p.price, currency: p.currency, wasPrice: null };
}

/**
 * What a label must show of `p` from `now` on: the display at `now`, then one entry at each later
 * promotion boundary (valid_from, valid_to) where the display changes. A future entry is content
 * that must not be shown before its time (the till charges by the same rule).
 */
export function priceTimeline(p: LabelPrice, now: number): Array<{ effectiveAt: number; display: DisplayedPrice }> {
  const out = [{ effectiveAt: now, display: priceAt(p, now) }];
  if (!p.promotion) return out;
  const bounds = [parseTime(p.promotion.valid_from, 'promotion.valid_from'), parseTime(p.promotion.valid_to, 'promotion.valid_to')]
    .filter((t): t is number => t !== null && t > now)
    .sort((a, b) => a - b);
  for (const t of bounds) {
    const d = priceAt(p, t);
    const last = out.at(-1)!.display;
    if (d.price !== last.price || d.wasPrice !== last.wasPrice) out.push({ effectiveAt: t, display: d });
  }
  return out;
}

// ---- formatting ----

const formatters = new Map<string, Intl.NumberFormat>();

function currencyFormat(locale: string, currency: string, display: 'symbol' | 'code'): Intl.NumberFormat {
  const key = `${locale}|${currency}|${display}`;
  let f = formatters.get(key);
  if (!f) {
    try {
      f = new Intl.NumberFormat(locale, { style: 'currency', currency, currencyDisplay: display });
    } catch (e) {
      throw new LabelContentError('SG_LABEL_INPUT_INVALID', 'locale', `cannot format ${currency} for locale ${JSON.stringify(locale)}: ${(e as Error).message}`);
    }
    if (formatters.size < 256) formatters.set(key, f);
  }
  return f;
}

/** Minor units as an exact decimal string with the currency's digits: 249, 2 -> "2.49". */
function decimalString(minor: number, digits: number): string {
  if (digits === 0) return String(minor);
  const s = String(Math.abs(minor)).padStart(digits + 1, '0');
  return `${minor < 0 ? '-' : ''}${s.slice(0, -digits)}.${s.slice(-digits)}`;
}

/** Plain text for the label: no control characters, no-break spaces as spaces, one space per run, no braces (AP variables). */
export function labelText(s: string): string {
  return s
    .normalize('NFC')
    .replace(/[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2060-\u206f]/g, ' ')
    .replace(/[\s\u00a0\u202f]+/g, ' ')
    .replace(/\{/g, '(')
    .replace(/\}/g, ')')
    .trim();
}

/** Characters of `text` that `font` has no glyph for (space always drawn). */
export function missingGlyphs(text: string, font: FontMetrics | undefined): string[] {
  if (!font?.glyphs) return [];
  const out = new Set<string>();
  for (const ch of text) if (ch !== ' ' && !font.glyphs.includes(ch)) out.add(ch);
  return [...out];
}

/**
 * A price in minor units formatted for `locale` (e.g. 249 EUR: de-DE "2,49 €", en-US "€2.49").
 * With `font`, a currency sign the font lacks is written as the currency code ("2,49 EUR").
 */
export function formatPrice(minor: number, currency: string, locale: string, font?: FontMetrics): string {
  if (!Number.isSafeInteger(minor) || minor < 0) throw new LabelContentError('SG_LABEL_INPUT_INVALID', 'price', `price ${minor} is not a non-negative integer of minor units`);
  if (!/^[A-Z]{3}$/.test(currency)) throw new LabelContentError('SG_LABEL_INPUT_INVALID', 'currency', `currency ${JSON.stringify(currency)} is not an ISO 4217 code`);
  // A chain-wide change formats the same few hundred prices thousands of times (Intl and labelText
  // were a third of rendering): the text per font, locale, currency and amount is kept, bounded.
  const fontKey = font ?? NO_FONT;
  let cache = formatted.get(fontKey);
  if (!cache) formatted.set(fontKey, (cache = new Map()));
  const key = `${locale}|${currency}|${minor}`;
  const hit = cache.get(key);
  if (hit !== undefined) return hit;
  const text = formatPriceUncached(minor, currency, locale, font);
  if (cache.size >= MAX_FORMATTED) cache.clear();
  cache.set(key, text);
  return text;
}

/** Formatted prices per font (FontMetrics objects are the label types' own, loaded once). */
const formatted = new WeakMap<object, Map<string, string>>();
const NO_FONT = {};
const MAX_FORMATTED = 4096;

function formatPriceUncached(minor: number, currency: string, locale: string, font?: FontMetrics): string {
  const f = currencyFormat(locale, currency, 'symbol');
  const digits = f.resolvedOptions().maximumFractionDigits ?? 2;
  const decimal = decimalString(minor, digits);
  // Node 20's Intl formats a decimal string exactly (Intl.NumberFormat v3); lib ES2022 types only number.
  const format = (nf: Intl.NumberFormat): string => labelText((nf.format as unknown as (v: string) => string)(decimal));
  const text = format(f);
  if (missingGlyphs(text, font).length === 0) return text;
  return format(currencyFormat(locale, currency, 'code'));
}

/** The unit price in minor units per kg or per litre, rounded half up; null without net content. */
export function unitPrice(priceMinor: number, net: NetContent | null | undefined): { price: number; unit: 'kg' | 'l' } | null {
  if (!net) return null;
  if (!Number.isFinite(net.amount) || !(net.amount > 0)) throw new LabelContentError('SG_LABEL_INPUT_INVALID', 'netContent', `net content ${net.amount} ${net.unit} is not a positive amount`);
  const perBase = { g: 1, kg: 1000, ml: 1, cl: 10, l: 1000 }[net.unit];
  if (perBase === undefined) throw new LabelContentError('SG_LABEL_INPUT_INVALID', 'netContent', `net content unit ${JSON.stringify(net.unit)} is not g, kg, ml, cl or l`);
  const base = net.amount * perBase; // grams or millilitres
  return { price: Math.round((priceMinor * 1000) / base), unit: net.unit === 'g' || net.unit === 'kg' ? 'kg' : 'l' };
}

// ---- measuring and fitting ----

const DIGIT_CLASS = /[0-9\p{Sc}]/u;
const PUNCT_CLASS = /[.,':;!| ]/;
const WIDE_CLASS = /[\p{Lu}mwMW@%&#æœŵ¼½¾]/u;

/** Width in pixels of `text` in `font`, an upper bound (see FontMetrics). */
export function measure(text: string, font: FontMetrics): number {
  let w = 0;
  for (const ch of text) {
    w += DIGIT_CLASS.test(ch) ? font.digitWidthPx : PUNCT_CLASS.test(ch) ? font.punctWidthPx : WIDE_CLASS.test(ch) ? font.wideWidthPx : font.charWidthPx;
  }
  return w;
}

function fontOf(type: LabelType, f: TextField, field: string): FontMetrics {
  const font = type.fonts[f.font];
  if (!font) throw new LabelContentError('SG_LABEL_INPUT_INVALID', field, `label type ${type.id}: font ${f.font} is not declared`);
  return font;
}

function mustFit(type: LabelType, f: TextField, field: string, text: string): number {
  const font = fontOf(type, f, field);
  const missing = missingGlyphs(text, font);
  if (missing.length) {
    throw new LabelContentError('SG_LABEL_TEXT_UNRENDERABLE', field, `${field} "${text}": font ${font.file} of label type ${type.id} has no ${missing.join(' ')}`, {
      text,
      missing,
      labelType: type.id,
    });
  }
  const w = measure(text, font);
  if (w > f.maxWidthPx) {
    throw new LabelContentError('SG_LABEL_TEXT_TOO_LONG', field, `${field} "${text}" is ${w} px wide, the ${field} field of label type ${type.id} holds ${f.maxWidthPx} px`, {
      text,
      widthPx: w,
      maxWidthPx: f.maxWidthPx,
      labelType: type.id,
    });
  }
  return w;
}

const ELLIPSIS = '...';

/** Greedy word wrap into at most `maxLines` lines of `maxWidth`; the rest cut with an ellipsis. */
export function wrapName(name: string, font: FontMetrics, maxWidth: number, maxLines: number): { lines: string[]; truncated: boolean } {
  const fits = (s: string): boolean => measure(s, font) <= maxWidth;
  // Break words longer than a line between characters first.
  const words: string[] = [];
  for (const word of name.split(' ')) {
    let rest = word;
    while (rest.length && !fits(rest)) {
      const chars = [...rest];
      let n = chars.length - 1;
      while (n > 1 && !fits(chars.slice(0, n).join(''))) n--;
      words.push(chars.slice(0, Math.max(1, n)).join(''));
      rest = chars.slice(Math.max(1, n)).join('');
    }
    if (rest.length) words.push(rest);
  }
  const lines: string[] = [];
  let i = 0;
  while (i < words.length && lines.length < maxLines) {
    let line = words[i++]!;
    while (i < words.length && fits(`${line} ${words[i]}`)) line = `${line} ${words[i++]}`;
    lines.push(line);
  }
  if (i >= words.length) return { lines, truncated: false };
  // Cut the last line so that it and the ellipsis fit.
  let last = [...`${lines.pop()!} ${words.slice(i).join(' ')}`];
  while (last.length && !fits(`${last.join('').trimEnd()}${ELLIPSIS}`)) last = last.slice(0, -1);
  lines.push(`${last.join('').trimEnd()}${ELLIPSIS}`);
  return { lines, truncated: true };
}

function colourOf(type: LabelType, colour: string, field: string): string {
  if (!type.colours.includes(colour)) throw new LabelContentError('SG_LABEL_INPUT_INVALID', field, `label type ${type.id} has no colour ${colour}`);
  return colour;
}

const ALIGN = { left: 0, center: 1, right: 2 } as const;

function text(type: LabelType, f: TextField, field: string, s: string, colour = f.colour, y = f.y): DrawCommand {
  const font = fontOf(type, f, field);
  const cmd: TextCommand = [f.x, y, s, font.file, colourOf(type, colour, field), ALIGN[f.align]];
  if (font.size !== null) cmd.push(font.size);
  return { text: cmd };
}

/** The name with every character the font lacks replaced: without its accent if the font has the base letter, else `?`. */
function renderableName(name: string, font: FontMetrics): { name: string; substituted: string[] } {
  const missing = missingGlyphs(name, font);
  if (missing.length === 0) return { name, substituted: [] };
  let out = '';
  for (const ch of name) {
    if (ch === ' ' || !missing.includes(ch)) {
      out += ch;
      continue;
    }
    const base = ch.normalize('NFD').replace(/\p{M}/gu, '');
    out += base.length > 0 && missingGlyphs(base, font).length === 0 ? base : '?';
  }
  return { name: out, substituted: missing };
}

function byLanguage(map: Readonly<Record<string, string>>, locale: string): string {
  const lang = locale.split(/[-_]/)[0]!.toLowerCase();
  return map[lang] ?? map.default ?? '';
}

/** Raw size of the label's bitmap in bytes (one bit plane per colour beyond white): the most a transfer carries. */
export function imageBytes(type: LabelType): number {
  const planes = Math.max(1, Math.ceil(Math.log2(type.colours.length)));
  return Math.ceil((type.widthPx * type.heightPx * planes) / 8);
}

/**
 * Renders the content of one label. Throws LabelContentError: SG_LABEL_INPUT_INVALID (bad price,
 * currency, locale, net content, empty name), SG_LABEL_TEXT_TOO_LONG (a price that does not fit)
 * or SG_LABEL_TEXT_UNRENDERABLE (a price with a character its font lacks even as a currency code).
 */
export function renderLabel(input: RenderInput, type: LabelType): RenderedContent {
  const { product, display, locale } = input;
  const t = type.template;
  const name = labelText(product.name);
  if (!name) throw new LabelContentError('SG_LABEL_INPUT_INVALID', 'name', `product ${product.gtin} has no name`);
  const commands: DrawCommand[] = [];

  const nameFont = fontOf(type, t.name, 'name');
  const shown = renderableName(name, nameFont);
  const wrapped = wrapName(shown.name, nameFont, t.name.maxWidthPx, t.name.maxLines);
  wrapped.lines.forEach((line, i) => commands.push(text(type, t.name, 'name', line, t.name.colour, t.name.y + i * t.name.lineHeightPx)));

  const promo = display.wasPrice !== null;
  const priceText = formatPrice(display.price, display.currency, locale, fontOf(type, t.price, 'price'));
  mustFit(type, t.price, 'price', priceText);
  commands.push(text(type, t.price, 'price', priceText, promo ? t.price.promoColour : t.price.colour));

  if (promo) {
    const wasText = `${byLanguage(t.wasPrice.prefix, locale)}${formatPrice(display.wasPrice!, display.currency, locale, fontOf(type, t.wasPrice, 'was_price'))}`;
    const w = mustFit(type, t.wasPrice, 'was_price', wasText);
    commands.push(text(type, t.wasPrice, 'was_price', wasText));
    if (t.wasPrice.strike) {
      const font = fontOf(type, t.wasPrice, 'was_price');
      const left = t.wasPrice.align === 'left' ? t.wasPrice.x : t.wasPrice.align === 'right' ? t.wasPrice.x - w : t.wasPrice.x - Math.floor(w / 2);
      const y = t.wasPrice.y + Math.floor(font.heightPx / 2);
      commands.push({ line: [left, y, left + w, y, colourOf(type, t.wasPrice.colour, 'was_price')] });
    }
  }

  const unit = unitPrice(display.price, product.netContent);
  if (unit) {
    const unitPriceText = formatPrice(unit.price, display.currency, locale, fontOf(type, t.unitPrice, 'unit_price'));
    const unitText = byLanguage(t.unitPrice.pattern, locale).replace('{price}', unitPriceText).replace('{unit}', unit.unit);
    mustFit(type, t.unitPrice, 'unit_price', unitText);
    commands.push(text(type, t.unitPrice, 'unit_price', unitText));
  }

  const body = JSON.stringify(commands);
  const hash = createHash('sha256').update(type.id).update('\n').update(body).digest('hex').slice(0, 32);
  return {
    commands,
    body,
    hash,
    bytes: Buffer.byteLength(body, 'utf8'),
    radioBytes: imageBytes(type),
    truncated: wrapped.truncated,
    substituted: shown.substituted,
    meta: { gtin: product.gtin, name, price: display.price, currency: display.currency, wasPrice: display.wasPrice, unitPrice: unit },
  };
}

/** The prices a content shows, as one comparable key (equal keys: only text or layout differ). */
export function priceKey(m: ContentMeta): string {
  return JSON.stringify([m.currency, m.price, m.wasPrice, m.unitPrice?.price ?? null, m.unitPrice?.unit ?? null]);
}

/** A rendered content as the delivery scheduler takes it, effective from `effectiveAt`. */
export function contentInput(r: RenderedContent, effectiveAt: number): ContentInput {
  return { hash: r.hash, body: r.body, bytes: r.radioBytes, effectiveAt, price: r.meta.price, currency: r.meta.currency, priceKey: priceKey(r.meta) };
}
