/**
 * Label types as data: one YAML file per label model in devices/labels/, validated here like the
 * device definitions (src/devices/definitions.ts): every problem of every file reported at once as
 * `file: path: message`, keys snake_case in the file, camelCase and frozen in memory.
 *
 * Beyond the schema it checks what would otherwise only show on a shelf: every font a field uses
 * is declared, every colour is in the label's palette, every field's box (its maximum width times
 * its line height, and for the name all its lines) lies inside the label, and no two boxes overlap.
 */
import { basename, join } from 'node:path';
import { z } from 'zod';
import { defaultDefinitionsDir, type DefinitionIssue } from '../../devices/definitions';
import { loadYamlFolder, zodIssues } from '../../util/yaml-folder';
import type { Align, FontMetrics, LabelType, TextField } from './types';

const px = z.number().int().min(0, 'must be >= 0 (pixels)').max(4096, 'must be <= 4096 (pixels)');
const positivePx = z.number().int().min(1, 'must be >= 1 (pixels)').max(4096, 'must be <= 4096 (pixels)');
const byLanguage = z
  .record(z.string().regex(/^([a-z]{2,3}|default)$/, 'keys must be language subtags (de, en, ...) or default'), z.string().max(40))
  .refine((r) => r.default !== undefined, 'must have a default');

const textField = {
  x: px,
  y: px,
  align: z.enum(['left', 'center', 'right']).default('left'),
  font: z.string().min(1),
  colour: z.string().min(1),
  max_width_px: positivePx,
};

const labelTypeSchema = z.strictObject({
  id: z.string().regex(/^[a-z0-9][a-z0-9.-]{0,63}$/, 'must be 1-64 characters of a-z 0-9 . -'),
  vendor: z.string().min(1, 'must not be empty'),
  description: z.string().min(1, 'must not be empty'),
  driver: z.literal('oepl', { error: 'must be oepl' }),
  hw_types: z.array(z.number().int().min(0).max(0xff, 'must be a byte (0-255)')).min(1, 'must list at least one hwType'),
  width_px: positivePx,
  height_px: positivePx,
  colours: z.array(z.enum(['white', 'black', 'red', 'yellow'])).min(2, 'needs at least two colours').max(4),
  fonts: z.record(
    z.string().regex(/^[a-z0-9][a-z0-9-]{0,31}$/, 'font ids are 1-32 characters of a-z 0-9 -'),
    z.strictObject({
      file: z.string().regex(/^[A-Za-z0-9_./-]{1,64}$/, 'must be a font file name on the AP'),
      size: positivePx.optional(),
      glyphs: z.string().min(1).optional(),
      height_px: positivePx,
      digit_width_px: positivePx,
      punct_width_px: positivePx,
      char_width_px: positivePx,
      wide_width_px: positivePx,
    }),
  ),
  template: z.strictObject({
    name: z.strictObject({ ...textField, max_lines: z.number().int().min(1).max(4), line_height_px: positivePx }),
    price: z.strictObject({ ...textField, promo_colour: z.string().min(1) }),
    was_price: z.strictObject({ ...textField, strike: z.boolean().default(true), prefix: byLanguage.default({ default: '' }) }),
    unit_price: z.strictObject({ ...textField, pattern: byLanguage.default({ default: '{price}/{unit}' }) }),
  }),
});

/** The horizontal extent of a field anchored at x with its alignment. */
export function fieldLeft(f: { x: number; align: Align; maxWidthPx: number }): number {
  return f.align === 'left' ? f.x : f.align === 'right' ? f.x - f.maxWidthPx : f.x - Math.floor(f.maxWidthPx / 2);
}

interface Box {
  field: string;
  left: number;
  top: number;
  right: number;
  bottom: number;
}

export function validateLabelType(raw: unknown, file: string): { labelType?: LabelType; issues: DefinitionIssue[] } {
  const parsed = labelTypeSchema.safeParse(raw, { reportInput: true });
  if (!parsed.success) return { issues: zodIssues(file, parsed.error) };
  const d = parsed.data;
  const issues: DefinitionIssue[] = [];
  const issue = (path: string, message: string): void => {
    issues.push({ file, path, message });
  };
  const stem = basename(file).replace(/\.ya?ml$/, '');
  if (/\.ya?ml$/.test(file) && d.id !== stem) issue('id', `must equal the file name "${stem}"`);
  if (new Set(d.colours).size !== d.colours.length) issue('colours', 'lists a colour twice');

  const fonts: Record<string, FontMetrics> = {};
  for (const [name, f] of Object.entries(d.fonts)) {
    const truetype = f.file.endsWith('.ttf');
    if (truetype && f.size === undefined) issue(`fonts.${name}.size`, 'is required for a TrueType font (.ttf)');
    if (!truetype && f.size !== undefined) issue(`fonts.${name}.size`, 'only for a TrueType font (.ttf): a bitmap font has one size');
    fonts[name] = {
      file: f.file,
      size: f.size ?? null,
      glyphs: f.glyphs ?? null,
      heightPx: f.height_px,
      digitWidthPx: f.digit_width_px,
      punctWidthPx: f.punct_width_px,
      charWidthPx: f.char_width_px,
      wideWidthPx: f.wide_width_px,
    };
  }
  const toField = (f: { x: number; y: number; align: Align; font: string; colour: string; max_width_px: number }): TextField => ({
    x: f.x,
    y: f.y,
    align: f.align,
    font: f.font,
    colour: f.colour,
    maxWidthPx: f.max_width_px,
  });
  const t = d.template;
  const template = {
    name: { ...toField(t.name), maxLines: t.name.max_lines, lineHeightPx: t.name.line_height_px },
    price: { ...toField(t.price), promoColour: t.price.promo_colour },
    wasPrice: { ...toField(t.was_price), strike: t.was_price.strike, prefix: t.was_price.prefix },
    unitPrice: { ...toField(t.unit_price), pattern: t.unit_price.pattern },
  };

  const boxes: Box[] = [];
  const yamlKey = { name: 'name', price: 'price', wasPrice: 'was_price', unitPrice: 'unit_price' } as const;
  for (const key of ['name', 'price', 'wasPrice', 'unitPrice'] as const) {
    const f = template[key];
    const path = `template.${yamlKey[key]}`;
    const font = fonts[f.font];
    if (!font) {
      issue(`${path}.font`, `font "${f.font}" is not declared in fonts`);
      continue;
    }
    for (const c of key === 'price' ? [f.colour, template.price.promoColour] : [f.colour]) {
      if (!d.colours.includes(c as (typeof d.colours)[number])) issue(`${path}.${c === f.colour ? 'colour' : 'promo_colour'}`, `"${c}" is not one of the label's colours (${d.colours.join(', ')})`);
    }
    const lines = key === 'name' ? template.name.maxLines : 1;
    if (key === 'name' && template.name.lineHeightPx < font.heightPx) issue(`${path}.line_height_px`, `is smaller than the font's height (${font.heightPx})`);
    const left = fieldLeft(f);
    const bottom = f.y + (lines - 1) * (key === 'name' ? template.name.lineHeightPx : 0) + font.heightPx;
    if (left < 0 || left + f.maxWidthPx > d.width_px) issue(`${path}.max_width_px`, `the field spans x ${left}..${left + f.maxWidthPx}, outside the label's 0..${d.width_px}`);
    if (bottom > d.height_px) issue(`${path}.y`, `the field spans y ${f.y}..${bottom}, below the label's height ${d.height_px}`);
    boxes.push({ field: yamlKey[key], left, top: f.y, right: left + f.maxWidthPx, bottom });
  }
  for (let i = 0; i < boxes.length; i++) {
    for (let j = i + 1; j < boxes.length; j++) {
      const a = boxes[i]!;
      const b = boxes[j]!;
      if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom) issue(`template.${b.field}`, `overlaps template.${a.field}`);
    }
  }
  if (issues.length) return { issues };
  const labelType: LabelType = {
    id: d.id,
    vendor: d.vendor,
    description: d.description,
    driver: d.driver,
    hwTypes: d.hw_types,
    widthPx: d.width_px,
    heightPx: d.height_px,
    colours: d.colours,
    fonts,
    template,
  };
  return { labelType, issues };
}

/** The default folder: `<repo>/devices/labels`. */
export function defaultLabelTypesDir(): string {
  return join(defaultDefinitionsDir(), 'labels');
}

/**
 * Loads and validates every `*.yaml` / `*.yml` in `dir`, keyed by id and frozen. Throws
 * ShelfgateError(DEVICE_DEFINITION_INVALID) listing every issue, with the DefinitionIssue[] in `details`.
 * Two types claiming the same hwType are refused: a label the AP reports must map to one type.
 */
export function loadLabelTypes(dir: string = defaultLabelTypesDir()): Map<string, LabelType> {
  const hwTypeOf = new Map<number, string>();
  return loadYamlFolder(dir, {
    what: 'label types',
    emptyMessage: 'no label type files (*.yaml)',
    validate: (raw, file) => {
      const r = validateLabelType(raw, file);
      return { value: r.labelType, issues: r.issues };
    },
    check: (labelType, file, issues) => {
      for (const hw of labelType.hwTypes) {
        const other = hwTypeOf.get(hw);
        if (other) issues.push({ file, path: 'hw_types', message: `hwType 0x${hw.toString(16).padStart(2, '0')} is also claimed by ${other}` });
        else hwTypeOf.set(hw, labelType.id);
      }
    },
  });
}

/** The label type for a hwType the AP reports, or undefined. */
export function labelTypeForHwType(types: ReadonlyMap<string, LabelType>, hwType: number): LabelType | undefined {
  for (const t of types.values()) if (t.hwTypes.includes(hwType)) return t;
  return undefined;
}
