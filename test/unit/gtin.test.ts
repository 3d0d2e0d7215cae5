/**
 * GTIN normalisation (src/util/gtin.ts) with codes printed on real products or published as
 * examples by GS1 and in the barcode standards' literature, typed by hand (not made by our code).
 */
import { describe, expect, it } from 'vitest';
import { isValidGtin as gtinCheckDigitOk, normalizeGtin } from '../../src/util/gtin';

describe('normalizeGtin', () => {
  it('pads EAN-13, EAN-8, UPC-A and GTIN-14 to GTIN-14', () => {
    expect(normalizeGtin('4006381333931')).toBe('04006381333931'); // EAN-13 (STABILO pen, a common textbook example)
    expect(normalizeGtin('5901234123457')).toBe('05901234123457'); // EAN-13 (GS1 Poland example)
    expect(normalizeGtin('9780306406157')).toBe('09780306406157'); // ISBN-13 as EAN-13
    expect(normalizeGtin('96385074')).toBe('00000096385074'); // EAN-8 example
    expect(normalizeGtin('73513537')).toBe('00000073513537'); // EAN-8
    expect(normalizeGtin('036000291452')).toBe('00036000291452'); // UPC-A example
    expect(normalizeGtin('10012345678902')).toBe('10012345678902'); // GTIN-14 (GS1 example, indicator 1)
    expect(normalizeGtin('00012345678905')).toBe('00012345678905'); // GTIN-14 of UPC-A 012345678905
  });

  it('ignores white space around the code', () => {
    expect(normalizeGtin(' 4006381333931\r\n')).toBe('04006381333931');
  });

  it('refuses a wrong check digit, a wrong length, or anything but digits', () => {
    expect(normalizeGtin('4006381333932')).toBeNull();
    expect(normalizeGtin('96385075')).toBeNull();
    expect(normalizeGtin('036000291453')).toBeNull();
    expect(normalizeGtin('50000000000000')).toBeNull();
    expect(normalizeGtin('400638133393')).toBeNull(); // 12 digits whose last is not the check digit of the rest
    expect(normalizeGtin('1234567')).toBeNull();
    expect(normalizeGtin('123456789012345')).toBeNull();
    expect(normalizeGtin('40063813-33931')).toBeNull();
    expect(normalizeGtin('4006381 333931')).toBeNull();
    expect(normalizeGtin('')).toBeNull();
  });
});

describe('gtinCheckDigitOk', () => {
  it('checks the GS1 mod-10 check digit of 8, 12, 13 and 14 digits', () => {
    expect(gtinCheckDigitOk('4006381333931')).toBe(true);
    expect(gtinCheckDigitOk('96385074')).toBe(true);
    expect(gtinCheckDigitOk('036000291452')).toBe(true);
    expect(gtinCheckDigitOk('10012345678902')).toBe(true);
    expect(gtinCheckDigitOk('10012345678903')).toBe(false);
    expect(gtinCheckDigitOk(' 4006381333931')).toBe(false); // no trimming here
    expect(gtinCheckDigitOk('123456789')).toBe(false);
  });
});
