/**
 * Label content: label types loaded from devices/labels, prices formatted per locale from minor
 * units, unit prices, promotions over time, and text that does not fit (an error for prices, a
 * defined cut for names), rendered as an OpenEPaperLink JSON template.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  LabelContentError,
  contentInput,
  formatPrice,
  measure,
  priceAt,
  priceTimeline,
  renderLabel,
  unitPrice,
  type DrawCommand,
  type LabelPrice,
  type RenderInput,
} from '../../src/features/labels/content';
import { labelTypeForHwType, loadLabelTypes } from '../../src/features/labels/label-types';
import { normalizeMac } from '../../src/features/labels/mac';
import type { LabelType } from '../../src/features/labels/types';
import { ErrorCode, isShelfgateError } from '../../src/errors';
import type { DefinitionIssue } from '../../src/devices/definitions';

const types = loadLabelTypes();
const t29 = types.get('oepl-m2-2.9-bwr')!;
const t154 = types.get('oepl-m2-1.54-bwr')!;
const GTIN = '04006381333931';

function texts(cmds: DrawCommand[]): string[] {
  return cmds.flatMap((c) => ('text' in c ? [c.text[2]] : []));
}

function textAt(cmds: DrawCommand[], y: number): string | undefined {
  for (const c of cmds) if ('text' in c && c.text[1] === y) return c.text[2];
  return undefined;
}

function input(over: Partial<RenderInput> & { name?: string } = {}): RenderInput {
  return {
    product: { gtin: GTIN, name: over.name ?? 'Vollmilch 3,5%', netContent: null, ...over.product },
    display: { price: 249, currency: 'EUR', wasPrice: null, ...over.display },
    locale: over.locale ?? 'de-DE',
  };
}

/** Every text lies inside its field and the label, in the field's font: nothing overflows silently. */
function expectInside(cmds: DrawCommand[], type: LabelType): void {
  const fields = Object.values(type.template);
  for (const c of cmds) {
    if (!('text' in c)) continue;
    const [x, y, s, file, , , size] = c.text;
    const f = fields.find((fl) => {
      const font = type.fonts[fl.font]!;
      return font.file === file && (font.size ?? undefined) === size && fl.x === x && (y === fl.y || ('lineHeightPx' in fl && (y - fl.y) % fl.lineHeightPx === 0));
    });
    expect(f, `a field for ${JSON.stringify(c)}`).toBeDefined();
    const font = type.fonts[f!.font]!;
    const w = measure(s, font);
    expect(w).toBeLessThanOrEqual(f!.maxWidthPx);
    const left = f!.align === 'left' ? x : f!.align === 'right' ? x - w : x - w / 2;
    expect(left).toBeGreaterThanOrEqual(0);
    expect(left + w).toBeLessThanOrEqual(type.widthPx);
    expect(y + font.heightPx).toBeLessThanOrEqual(type.heightPx);
    if (font.glyphs) for (const ch of s) if (ch !== ' ') expect(font.glyphs, `${font.file} has ${ch}`).toContain(ch);
  }
}

describe('label types (devices/labels)', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('loads the shipped types, frozen, and maps the AP hwType to its type', () => {
    expect([...types.keys()].sort()).toEqual(['oepl-m2-1.54-bwr', 'oepl-m2-2.9-bwr', 'oepl-m2-4.2-bwr']);
    expect(t29).toMatchObject({ widthPx: 296, heightPx: 128, colours: ['white', 'black', 'red'], hwTypes: [1] });
    expect(Object.isFrozen(t29.template.price)).toBe(true);
    expect(labelTypeForHwType(types, 0x01)?.id).toBe('oepl-m2-2.9-bwr');
    expect(labelTypeForHwType(types, 0x02)?.id).toBe('oepl-m2-4.2-bwr');
    expect(labelTypeForHwType(types, 0x99)).toBeUndefined();
  });

  it('reports every problem of a template at once: undeclared font, colour outside the palette, a field off the label, overlapping fields, a shared hwType', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sg-labeltypes-'));
    dirs.push(dir);
    const doc = `
id: bad
vendor: x
description: x
driver: oepl
hw_types: [0x01]
width_px: 200
height_px: 100
colours: [white, black]
fonts:
  f20: { file: fonts/f20, height_px: 20, digit_width_px: 10, punct_width_px: 5, char_width_px: 10, wide_width_px: 14 }
  tt: { file: X.ttf, height_px: 20, digit_width_px: 10, punct_width_px: 5, char_width_px: 10, wide_width_px: 14 }
template:
  name: { x: 0, y: 0, font: f20, colour: black, max_width_px: 200, max_lines: 2, line_height_px: 22 }
  price: { x: 199, y: 30, align: right, font: f20, colour: black, promo_colour: red, max_width_px: 100 }
  was_price: { x: 150, y: 45, font: f20, colour: black, max_width_px: 100 }
  unit_price: { x: 0, y: 90, font: nope, colour: black, max_width_px: 50 }
`;
    writeFileSync(join(dir, 'bad.yaml'), doc);
    writeFileSync(join(dir, 'other.yaml'), doc.replace('id: bad', 'id: other').replace(/template:[\s\S]*/, 'template: {}'));
    let issues: DefinitionIssue[] = [];
    try {
      loadLabelTypes(dir);
    } catch (e) {
      expect(isShelfgateError(e, ErrorCode.DEVICE_DEFINITION_INVALID)).toBe(true);
      issues = (e as { details: DefinitionIssue[] }).details;
    }
    const msgs = issues.map((i) => `${i.path}: ${i.message}`);
    expect(msgs).toEqual(
      expect.arrayContaining([
        'template.unit_price.font: font "nope" is not declared in fonts',
        'template.price.promo_colour: "red" is not one of the label\'s colours (white, black)',
        "template.was_price.max_width_px: the field spans x 150..250, outside the label's 0..200",
        'template.price: overlaps template.name',
        'template.was_price: overlaps template.price',
        'fonts.tt.size: is required for a TrueType font (.ttf)',
      ]),
    );
    // the second file's own problems are listed too (one run reports everything)
    expect(issues.some((i) => i.file.endsWith('other.yaml') && i.path.startsWith('template.'))).toBe(true);
  });

  it('refuses two types that claim the same hwType', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sg-labeltypes-'));
    dirs.push(dir);
    for (const id of ['oepl-m2-2.9-bwr', 'copy']) {
      const src = readFileSync(join(__dirname, '..', '..', 'devices', 'labels', 'oepl-m2-2.9-bwr.yaml'), 'utf8');
      writeFileSync(join(dir, `${id}.yaml`), src.replace('id: oepl-m2-2.9-bwr', `id: ${id}`));
    }
    expect(() => loadLabelTypes(dir)).toThrow(/hwType 0x01 is also claimed by/);
  });

  it('MACs are kept as the AP reports them: 16 uppercase hex digits', () => {
    expect(normalizeMac('00:00:02:1a:2b:3c:4d:5e')).toBe('0000021A2B3C4D5E');
    expect(normalizeMac('1a2b3c4d5e6f')).toBe('00001A2B3C4D5E6F');
    expect(normalizeMac('xyz')).toBeNull();
  });
});

describe('prices formatted for the store locale', () => {
  it('de-DE, en-US and fr-FR format the same minor units their own way (no-break spaces become spaces)', () => {
    expect(formatPrice(249, 'EUR', 'de-DE')).toBe('2,49 €');
    expect(formatPrice(249, 'EUR', 'en-US')).toBe('€2.49');
    expect(formatPrice(249, 'USD', 'en-US')).toBe('$2.49');
    expect(formatPrice(249, 'EUR', 'fr-FR')).toBe('2,49 €');
    expect(formatPrice(123456, 'EUR', 'de-DE')).toBe('1.234,56 €');
    expect(formatPrice(123456, 'USD', 'en-US')).toBe('$1,234.56');
    expect(formatPrice(123456, 'EUR', 'fr-FR')).toBe('1 234,56 €');
    expect(formatPrice(5, 'EUR', 'de-DE')).toBe('0,05 €');
    expect(formatPrice(0, 'EUR', 'en-US')).toBe('€0.00');
  });

  it('uses the currency minor digits and exact decimals (no binary fractions)', () => {
    expect(formatPrice(500, 'JPY', 'en-US')).toBe('¥500');
    // 0.29 * 100 is 28.999999999999996 in binary floating point; minor units never go through it
    expect(formatPrice(29, 'EUR', 'en-US')).toBe('€0.29');
    expect(formatPrice(Number.MAX_SAFE_INTEGER, 'EUR', 'de-DE')).toBe('90.071.992.547.409,91 €');
  });

  it('refuses what is not a price: negative, fractional, a bad currency or locale', () => {
    for (const [p, c, l, field] of [
      [-1, 'EUR', 'de-DE', 'price'],
      [2.5, 'EUR', 'de-DE', 'price'],
      [249, 'eur', 'de-DE', 'currency'],
      [249, 'EUR', 'not a locale!', 'locale'],
    ] as const) {
      try {
        formatPrice(p, c, l);
        expect.unreachable(`${p} ${c} ${l}`);
      } catch (e) {
        expect(e).toBeInstanceOf(LabelContentError);
        expect((e as LabelContentError).code).toBe('SG_LABEL_INPUT_INVALID');
        expect((e as LabelContentError).field).toBe(field);
      }
    }
  });
});

describe('unit price', () => {
  it('is per kg for g/kg and per litre for ml/cl/l, rounded half up to minor units', () => {
    expect(unitPrice(249, { amount: 500, unit: 'g' })).toEqual({ price: 498, unit: 'kg' });
    expect(unitPrice(299, { amount: 750, unit: 'ml' })).toEqual({ price: 399, unit: 'l' }); // 398.67
    expect(unitPrice(500, { amount: 1.5, unit: 'kg' })).toEqual({ price: 333, unit: 'kg' }); // 333.33
    expect(unitPrice(199, { amount: 33, unit: 'cl' })).toEqual({ price: 603, unit: 'l' }); // 603.03
    expect(unitPrice(1, { amount: 2000, unit: 'g' })).toEqual({ price: 1, unit: 'kg' }); // 0.5 -> 1
    expect(unitPrice(249, null)).toBeNull();
    expect(() => unitPrice(249, { amount: 0, unit: 'g' })).toThrow(LabelContentError);
  });

  it('appears on the label in the pattern for the language, computed from the price shown', () => {
    const net = { gtin: GTIN, name: 'Kaffee', netContent: { amount: 500, unit: 'g' as const } };
    const de = renderLabel({ product: net, display: { price: 249, currency: 'EUR', wasPrice: null }, locale: 'de-DE' }, t29);
    expect(texts(de.commands)).toContain('1 kg = 4,98 €');
    const en = renderLabel({ product: net, display: { price: 249, currency: 'USD', wasPrice: null }, locale: 'en-US' }, t29);
    expect(texts(en.commands)).toContain('$4.98/kg');
    const fr = renderLabel({ product: net, display: { price: 249, currency: 'EUR', wasPrice: null }, locale: 'fr-FR' }, types.get('oepl-m2-4.2-bwr')!);
    expect(texts(fr.commands)).toContain('4,98 € le kg');
    // during a promotion the unit price is that of the promotion price
    const promo = renderLabel({ product: net, display: { price: 199, currency: 'EUR', wasPrice: 249 }, locale: 'de-DE' }, t29);
    expect(texts(promo.commands)).toContain('1 kg = 3,98 €');
    expect(de.meta.unitPrice).toEqual({ price: 498, unit: 'kg' });
    // without net content there is no unit price line
    expect(texts(renderLabel(input(), t29).commands)).toHaveLength(2);
  });
});

describe('the drawing (OEPL JSON template)', () => {
  it('draws name and price at the template positions, fonts and colours; the body is the JSON of the commands', () => {
    const r = renderLabel(input(), t29);
    expect(r.commands).toEqual([
      { text: [4, 2, 'Vollmilch 3,5%', 'fonts/bahnschrift20', 'black', 0] },
      { text: [292, 46, '2,49 €', 'Signika-SB.ttf', 'black', 2, 40] },
    ]);
    expect(JSON.parse(r.body)).toEqual(r.commands);
    expect(r.bytes).toBe(Buffer.byteLength(r.body));
    expect(r.radioBytes).toBe((296 * 128 * 2) / 8);
    expect(r.truncated).toBe(false);
    expect(r.substituted).toEqual([]);
    expectInside(r.commands, t29);
  });

  it('a promotion shows the price in the promotion colour and the was-price struck through', () => {
    const r = renderLabel(input({ display: { price: 199, currency: 'EUR', wasPrice: 249 } }), t29);
    expect(r.commands).toContainEqual({ text: [292, 46, '1,99 €', 'Signika-SB.ttf', 'red', 2, 40] });
    expect(r.commands).toContainEqual({ text: [4, 52, '2,49 €', 'Signika-SB.ttf', 'black', 0, 20] });
    const line = r.commands.find((c): c is { line: [number, number, number, number, string] } => 'line' in c)!;
    // through the middle of the was-price line, exactly as wide as it measures
    const w = measure('2,49 €', t29.fonts.signika20!);
    expect(line.line).toEqual([4, 52 + 12, 4 + w, 64, 'black']);
    expect(r.meta).toMatchObject({ price: 199, wasPrice: 249, currency: 'EUR' });
    expectInside(r.commands, t29);
  });

  it('a price in a font without the currency sign is written with the currency code; the AP fonts lack €', () => {
    const font = t29.fonts.bahnschrift20!;
    expect(formatPrice(249, 'EUR', 'de-DE', font)).toBe('2,49 EUR');
    expect(formatPrice(249, 'USD', 'en-US', font)).toBe('$2.49'); // it has $
    expect(formatPrice(249, 'EUR', 'de-DE', t29.fonts.signika20)).toBe('2,49 €');
  });

  it('letters the name font lacks lose their accent or become "?", and are reported; braces (AP variables) become parentheses', () => {
    const r = renderLabel(input({ name: 'Crème brûlée {ap_ip} 中' }), t29);
    expect(textAt(r.commands, 2)).toBe('Creme brulée (ap_ip) ?'); // the font has é, not è or û
    expect(r.substituted.sort()).toEqual(['è', 'û', '中'].sort());
    expectInside(r.commands, t29);
  });

  it('the hash changes with anything shown and not otherwise; the scheduler input carries the price key', () => {
    const a = renderLabel(input(), t29);
    expect(renderLabel(input(), t29).hash).toBe(a.hash);
    expect(renderLabel(input({ locale: 'en-US' }), t29).hash).not.toBe(a.hash);
    expect(renderLabel(input({ name: 'Vollmilch 1,5%' }), t29).hash).not.toBe(a.hash);
    expect(renderLabel(input(), t154).hash).not.toBe(a.hash);
    const ci = contentInput(a, 1000);
    const renamed = contentInput(renderLabel(input({ name: 'Frische Vollmilch' }), t29), 1000);
    expect(ci).toMatchObject({ hash: a.hash, body: a.body, bytes: a.radioBytes, effectiveAt: 1000, price: 249, currency: 'EUR' });
    expect(renamed.priceKey).toBe(ci.priceKey);
    expect(contentInput(renderLabel(input({ display: { price: 199, currency: 'EUR', wasPrice: 249 } }), t29), 0).priceKey).not.toBe(ci.priceKey);
  });
});

describe('text that does not fit', () => {
  it('a price too wide for its field is an error naming the field, never cut or overflowing', () => {
    // "999,99 €" fits every shipped type; "123.456,78 €" none
    for (const t of types.values()) expectInside(renderLabel(input({ display: { price: 99999, currency: 'EUR', wasPrice: null } }), t).commands, t);
    const big = input({ display: { price: 12345678, currency: 'EUR', wasPrice: null } });
    for (const t of types.values()) expect(() => renderLabel(big, t), t.id).toThrow(expect.objectContaining({ code: 'SG_LABEL_TEXT_TOO_LONG', field: 'price' }));
    try {
      renderLabel(big, t154);
      expect.unreachable('too long');
    } catch (e) {
      expect(e).toBeInstanceOf(LabelContentError);
      const err = e as LabelContentError;
      expect(err.code).toBe('SG_LABEL_TEXT_TOO_LONG');
      expect(err.field).toBe('price');
      expect(err.details).toMatchObject({ text: '123.456,78 €', maxWidthPx: 144, labelType: 'oepl-m2-1.54-bwr' });
      expect(err.details.widthPx as number).toBeGreaterThan(144);
    }
  });

  it('a was-price or a unit price that does not fit is an error too', () => {
    const promo = input({ display: { price: 99999, currency: 'EUR', wasPrice: 12345678 } });
    expect(() => renderLabel(promo, t29)).toThrow(expect.objectContaining({ code: 'SG_LABEL_TEXT_TOO_LONG', field: 'was_price' }));
    const tiny = input({ display: { price: 99999, currency: 'EUR', wasPrice: null }, product: { gtin: GTIN, name: 'Safran', netContent: { amount: 1, unit: 'g' } } });
    // 999,99 € per gram is 999.990,00 € per kg: fine on the 2.9" label, too wide for the 1.54"
    expect(() => renderLabel(tiny, t29)).not.toThrow();
    expect(() => renderLabel(tiny, t154)).toThrow(expect.objectContaining({ code: 'SG_LABEL_TEXT_TOO_LONG', field: 'unit_price' }));
  });

  it('a long name is wrapped onto the lines of the field and cut with "..." on the last one, flagged truncated', () => {
    const name = 'Bio Vollmilch 3,8% Fett frisch aus der Region, laktosefrei und besonders lecker';
    const r = renderLabel(input({ name }), t29);
    const lines = r.commands.filter((c) => 'text' in c && c.text[3] === 'fonts/bahnschrift20').map((c) => ('text' in c ? c.text : null)!);
    expect(lines.map((l) => l[1])).toEqual([2, 24]); // max_lines 2, line_height_px 22
    expect(lines[0]![2]).toBe('Bio Vollmilch 3,8% Fett');
    expect(lines[1]![2].endsWith('...')).toBe(true);
    expect(name.startsWith(`${lines[0]![2]} ${lines[1]![2].slice(0, -3)}`)).toBe(true);
    expect(r.truncated).toBe(true);
    expectInside(r.commands, t29);
  });

  it('a word longer than a line is broken between characters; a name that fits is not touched', () => {
    const word = 'Donaudampfschifffahrtsgesellschaftskapitänsmütze';
    const r = renderLabel(input({ name: word }), t154);
    const lines = r.commands.flatMap((c) => ('text' in c && c.text[3] === 'fonts/bahnschrift20' ? [c.text[2]] : []));
    expect(lines).toHaveLength(2);
    expect(lines.join('').replace(/\.\.\.$/, '')).toBe(word.slice(0, lines.join('').replace(/\.\.\.$/, '').length));
    expectInside(r.commands, t154);
    const short = renderLabel(input({ name: '  Milch \u0007 frisch\n' }), t154);
    expect(texts(short.commands)[0]).toBe('Milch frisch');
    expect(short.truncated).toBe(false);
  });

  it('an empty name is an input error', () => {
    expect(() => renderLabel(input({ name: ' \n ' }), t29)).toThrow(expect.objectContaining({ code: 'SG_LABEL_INPUT_INVALID', field: 'name' }));
  });
});

describe('promotions over time', () => {
  const T0 = Date.parse('2026-03-02T12:00:00Z');
  const promo: LabelPrice = { price: 199, currency: 'EUR', promotion: { was_price: 249, valid_from: '2026-03-03T00:00:00+01:00', valid_to: '2026-03-10T00:00:00+01:00' } };
  const from = Date.parse('2026-03-03T00:00:00+01:00');
  const to = Date.parse('2026-03-10T00:00:00+01:00');

  it('the promotion price holds in [valid_from, valid_to); outside it the was-price is the price', () => {
    expect(priceAt(promo, from - 1)).toEqual({ price: 249, currency: 'EUR', wasPrice: null });
    expect(priceAt(promo, from)).toEqual({ price: 199, currency: 'EUR', wasPrice: 249 });
    expect(priceAt(promo, to - 1)).toEqual({ price: 199, currency: 'EUR', wasPrice: 249 });
    expect(priceAt(promo, to)).toEqual({ price: 249, currency: 'EUR', wasPrice: null });
    expect(priceAt({ price: 249, currency: 'EUR', promotion: null }, T0)).toEqual({ price: 249, currency: 'EUR', wasPrice: null });
    expect(priceAt({ price: 199, currency: 'EUR', promotion: { was_price: 249 } }, T0)).toEqual({ price: 199, currency: 'EUR', wasPrice: 249 });
  });

  it('a promotion starting tomorrow is a timeline: the regular price now, the promotion at its start, the regular price at its end', () => {
    expect(priceTimeline(promo, T0)).toEqual([
      { effectiveAt: T0, display: { price: 249, currency: 'EUR', wasPrice: null } },
      { effectiveAt: from, display: { price: 199, currency: 'EUR', wasPrice: 249 } },
      { effectiveAt: to, display: { price: 249, currency: 'EUR', wasPrice: null } },
    ]);
    // once it runs, only its end is still ahead
    expect(priceTimeline(promo, from + 1).map((e) => e.effectiveAt)).toEqual([from + 1, to]);
    expect(priceTimeline({ price: 249, currency: 'EUR', promotion: null }, T0)).toHaveLength(1);
  });
});
