/**
 * Label types are data (devices/labels/*.yaml, validated by label-types.ts): the size and palette
 * of an e-paper label, the radio hardware ids that identify it, the fonts its templates use with
 * the widths they are measured with, and one template that places the price fields.
 */

/** Where a text is anchored at x: its left edge, its centre or its right edge (OEPL alignment 0/1/2). */
export type Align = 'left' | 'center' | 'right';

export interface FontMetrics {
  /**
   * The font as the AP names it: a bitmap font file (`fonts/bahnschrift20`, drawn with its top at
   * y) or a TrueType file (`Signika-SB.ttf`, drawn at `size` pixels with its ascender at y).
   */
  file: string;
  /** Pixel size for a TrueType font (sent as the text command's size); null for a bitmap font. */
  size: number | null;
  /** Every character the font has besides space; null: not listed (any character is drawn). */
  glyphs: string | null;
  /** Line height in pixels (the text occupies y .. y + heightPx). */
  heightPx: number;
  /** Upper bound of the advance of a digit and of a currency sign (fonts draw them tabular). */
  digitWidthPx: number;
  /** Upper bound of the advance of narrow punctuation: `.` `,` `'` `:` `;` `!` `|` and space. */
  punctWidthPx: number;
  /** Upper bound of the advance of any other character that is not wide. */
  charWidthPx: number;
  /** Upper bound of the advance of capitals and wide glyphs (m, w, @, %, &, #, æ, œ, ¼, ½, ¾). */
  wideWidthPx: number;
}

export interface TextField {
  x: number;
  y: number;
  align: Align;
  font: string;
  /** Palette name (one of the label type's colours). */
  colour: string;
  maxWidthPx: number;
}

export interface NameField extends TextField {
  maxLines: number;
  lineHeightPx: number;
}

export interface PriceField extends TextField {
  /** Colour of the price while a promotion is on. */
  promoColour: string;
}

export interface WasPriceField extends TextField {
  /** Draw a line through the was-price. */
  strike: boolean;
  /** Text before the was-price by language subtag (`de`, `en`, ...) with a `default`. */
  prefix: Readonly<Record<string, string>>;
}

export interface UnitPriceField extends TextField {
  /** `{price}` and `{unit}` placeholders, by language subtag with a `default`. */
  pattern: Readonly<Record<string, string>>;
}

export interface LabelTemplate {
  name: NameField;
  price: PriceField;
  wasPrice: WasPriceField;
  unitPrice: UnitPriceField;
}

export interface LabelType {
  /** e.g. `oepl-m2-2.9-bwr`, equal to the file name. */
  id: string;
  vendor: string;
  description: string;
  /** Which driver speaks to it (`oepl`: an OpenEPaperLink access point). */
  driver: 'oepl';
  /** Hardware type ids the AP reports for this label in `/get_db` (`hwType`). */
  hwTypes: readonly number[];
  widthPx: number;
  heightPx: number;
  /** The colours the display has (`white`, `black`, `red`, `yellow`), sent by name. */
  colours: readonly string[];
  fonts: Readonly<Record<string, FontMetrics>>;
  template: LabelTemplate;
}
