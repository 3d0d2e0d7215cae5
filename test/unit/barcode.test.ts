/**
 * The scanner codec on published codes, written as literals: EAN-13 4006381333931 and
 * 5901234123457, UPC-A 036000291452, EAN-8 96385074, ISBN-13 9780306406157 (all widely published
 * examples with correct check digits); GS1 element strings in the style of the GS1 General
 * Specifications' examples (GTIN 09501101530003 is GS1's example GTIN; (01)95012345678903(3103)000123
 * is a GS1-128 example with a fixed-length measure AI).
 */
import { describe, expect, it } from 'vitest';
import { decodeScan, parseGs1, ScanFramer, splitAim } from '../../src/drivers/barcode';
import { isValidGtin as gtinCheckDigitOk, normalizeGtin as toGtin14 } from '../../src/util/gtin';

const GS = '\x1d';

describe('GS1 check digit', () => {
  it('accepts published codes of every length and refuses a changed digit', () => {
    for (const c of ['4006381333931', '5901234123457', '036000291452', '96385074', '09501101530003', '10614141000415']) expect(gtinCheckDigitOk(c)).toBe(true);
    for (const c of ['4006381333932', '5901234123447', '036000291451', '96385075', '09501101530004']) expect(gtinCheckDigitOk(c)).toBe(false);
    for (const c of ['', '1234567', '12345678901', '123456789012345', '40063813339a1']) expect(gtinCheckDigitOk(c)).toBe(false);
  });

  it('normalises to GTIN-14, null when invalid', () => {
    expect(toGtin14('4006381333931')).toBe('04006381333931');
    expect(toGtin14('036000291452')).toBe('00036000291452');
    expect(toGtin14('96385074')).toBe('00000096385074');
    expect(toGtin14('10614141000415')).toBe('10614141000415');
    expect(toGtin14('4006381333932')).toBeNull();
  });
});

describe('ScanFramer', () => {
  const lines = (f: ScanFramer, s: string) => f.push(Buffer.from(s, 'latin1'));

  it('frames on CR, CR LF, LF and ETX, across chunks', () => {
    const cr = new ScanFramer({ terminator: 'cr' });
    expect(lines(cr, '40063813')).toEqual([]);
    expect(lines(cr, '33931\r5901234123457\r')).toEqual([{ ok: true, line: '4006381333931' }, { ok: true, line: '5901234123457' }]);
    const crlf = new ScanFramer({ terminator: 'crlf' });
    expect(lines(crlf, '96385074\r')).toEqual([]);
    expect(lines(crlf, '\n036000291452\r\n')).toEqual([{ ok: true, line: '96385074' }, { ok: true, line: '036000291452' }]);
    const etx = new ScanFramer({ terminator: 'etx' });
    expect(lines(etx, '\x02]E04006381333931\x03\x0296385074\x03')).toEqual([{ ok: true, line: ']E04006381333931' }, { ok: true, line: '96385074' }]);
    const lf = new ScanFramer({ terminator: 'lf' });
    expect(lines(lf, '96385074\n')).toEqual([{ ok: true, line: '96385074' }]);
  });

  it('tolerates CR LF sent to a CR-configured gateway (the LF is trimmed)', () => {
    const cr = new ScanFramer({ terminator: 'cr' });
    expect(lines(cr, '96385074\r\n4006381333931\r\n')).toEqual([{ ok: true, line: '96385074' }, { ok: true, line: '4006381333931' }]);
  });

  it('keeps GS inside a line; rejects a line with another control byte whole', () => {
    const f = new ScanFramer({ terminator: 'cr' });
    expect(lines(f, `]C10109501101530003${GS}10AB\r`)).toEqual([{ ok: true, line: `]C10109501101530003${GS}10AB` }]);
    expect(lines(f, '4006\x00381333931\r96385074\r')).toEqual([{ ok: false, reason: 'control', bytes: 14 }, { ok: true, line: '96385074' }]);
  });

  it('garbage without a terminator never grows the buffer: dropped up to the next terminator, counted once', () => {
    const f = new ScanFramer({ terminator: 'cr', maxLineBytes: 16 });
    for (let i = 0; i < 1000; i++) expect(lines(f, 'x'.repeat(100))).toEqual([]);
    expect(lines(f, 'yy\r96385074\r')).toEqual([{ ok: false, reason: 'overlong', bytes: 100_002 }, { ok: true, line: '96385074' }]);
    // a CR LF line of exactly maxLineBytes fits
    const g = new ScanFramer({ terminator: 'crlf', maxLineBytes: 8 });
    expect(lines(g, '96385074\r\n')).toEqual([{ ok: true, line: '96385074' }]);
    expect(lines(g, '963850740\r\n')).toEqual([{ ok: false, reason: 'overlong', bytes: 10 }]);
  });

  it('reset() forgets a partial line', () => {
    const f = new ScanFramer({ terminator: 'cr' });
    lines(f, '4006');
    f.reset();
    expect(lines(f, '96385074\r')).toEqual([{ ok: true, line: '96385074' }]);
  });
});

describe('AIM symbology identifiers (ISO/IEC 15424)', () => {
  it('splits ]E0 ]E4 ]E3 ]C1 ]d2 ]Q3 and leaves data without one alone', () => {
    expect(splitAim(']E04006381333931')).toEqual({ symbology: ']E0', data: '4006381333931' });
    expect(splitAim(']E496385074')).toEqual({ symbology: ']E4', data: '96385074' });
    expect(splitAim(']d20109501101530003')).toEqual({ symbology: ']d2', data: '0109501101530003' });
    expect(splitAim(']Q30109501101530003')).toEqual({ symbology: ']Q3', data: '0109501101530003' });
    expect(splitAim('4006381333931')).toEqual({ symbology: null, data: '4006381333931' });
    expect(splitAim(']')).toEqual({ symbology: null, data: ']' });
  });
});

describe('decodeScan', () => {
  it('EAN-13, UPC-A, EAN-8 with and without AIM', () => {
    expect(decodeScan('4006381333931', ']E0')).toEqual({ ok: true, gtin: '04006381333931' });
    expect(decodeScan('0036000291452', ']E0')).toEqual({ ok: true, gtin: '00036000291452' });
    expect(decodeScan('036000291452', null)).toEqual({ ok: true, gtin: '00036000291452' });
    expect(decodeScan('96385074', ']E4')).toEqual({ ok: true, gtin: '00000096385074' });
    expect(decodeScan('9780306406157', null)).toEqual({ ok: true, gtin: '09780306406157' });
  });

  it('a wrong check digit is a misread', () => {
    expect(decodeScan('4006381333932', ']E0')).toMatchObject({ ok: false, reason: 'bad_check' });
    expect(decodeScan('96385075', null)).toMatchObject({ ok: false, reason: 'bad_check' });
  });

  it('a length that does not fit the symbology is a misread', () => {
    expect(decodeScan('400638133393', ']E4')).toMatchObject({ ok: false, reason: 'bad_length' });
    expect(decodeScan('12345', null)).toMatchObject({ ok: false, reason: 'bad_length' });
    expect(decodeScan('', null)).toMatchObject({ ok: false, reason: 'bad_length' });
  });

  it(']E3: EAN-13 with a 2- or 5-digit add-on is the EAN-13', () => {
    expect(decodeScan('978030640615812', ']E3')).toMatchObject({ ok: false, reason: 'bad_check' });
    expect(decodeScan('9780306406157', ']E3')).toMatchObject({ ok: false, reason: 'bad_length' });
    expect(decodeScan('978030640615712', ']E3')).toEqual({ ok: true, gtin: '09780306406157' });
    expect(decodeScan('978030640615790000', ']E3')).toEqual({ ok: true, gtin: '09780306406157' });
  });

  it('a code that is fine but carries no GTIN (Code 128 text) is not a misread', () => {
    expect(decodeScan('LOYALTY-0042', ']C0')).toEqual({ ok: true, gtin: null });
    expect(decodeScan('LOYALTY-0042', null)).toEqual({ ok: true, gtin: null });
  });
});

describe('GS1 element strings', () => {
  it('(01) (17) (10) (21) with FNC1 after variable-length fields (GS1 DataMatrix, ]d2)', () => {
    expect(decodeScan(`010950110153000317140704` + `10AB-123${GS}21XYZ789`, ']d2')).toEqual({ ok: true, gtin: '09501101530003', expiry: '140704', batch: 'AB-123', serial: 'XYZ789' });
  });

  it('GS1-128 (]C1) with a leading FNC1 and an unknown fixed-length AI (3103) skipped by its predefined length', () => {
    expect(decodeScan(`${GS}0195012345678903` + `3103000123`, ']C1')).toEqual({ ok: true, gtin: '95012345678903' });
  });

  it('an unknown variable-length AI is skipped to its FNC1 and does not cost the GTIN', () => {
    expect(parseGs1(`10LOT7${GS}400PO-7781${GS}0109501101530003${GS}21S1`)).toEqual({ ok: true, gtin: '09501101530003', batch: 'LOT7', serial: 'S1' });
  });

  it('is recognised without an AIM prefix (digits starting 01, 16+ long; or containing GS)', () => {
    expect(decodeScan('010950110153000317251231', null)).toEqual({ ok: true, gtin: '09501101530003', expiry: '251231' });
    // a needless FNC1 after a fixed-length element is tolerated
    expect(decodeScan(`0109501101530003${GS}21A`, null)).toEqual({ ok: true, gtin: '09501101530003', serial: 'A' });
  });

  it('the human-readable bracket form', () => {
    expect(decodeScan('(01)09501101530003(17)140704(10)AB-123', null)).toEqual({ ok: true, gtin: '09501101530003', expiry: '140704', batch: 'AB-123' });
    expect(decodeScan('(01)95012345678903(3103)000123', ']C1')).toEqual({ ok: true, gtin: '95012345678903' });
    expect(decodeScan('(01)9501234567890(10)X', null)).toMatchObject({ ok: false, reason: 'gs1_truncated' });
    expect(decodeScan('(x)0109501101530003', ']C1')).toMatchObject({ ok: false, reason: 'gs1_syntax' });
  });

  it('a bad GTIN check digit inside (01) is a misread', () => {
    expect(decodeScan('0109501101530004', ']C1')).toMatchObject({ ok: false, reason: 'bad_check' });
  });

  it('truncated fixed-length element, bad expiry, bad batch characters, conflicting repeats', () => {
    expect(parseGs1('01095011015300')).toMatchObject({ ok: false, reason: 'gs1_truncated' });
    expect(parseGs1(`0109501101530003${GS}` + '17141304')).toMatchObject({ ok: false, reason: 'gs1_bad_value' });
    expect(parseGs1('0109501101530003' + '10A B')).toMatchObject({ ok: false, reason: 'gs1_bad_value' });
    expect(parseGs1('0109501101530003' + '0195012345678903')).toMatchObject({ ok: false, reason: 'gs1_conflict' });
    expect(parseGs1('0109501101530003' + '0109501101530003')).toEqual({ ok: true, gtin: '09501101530003' });
    expect(parseGs1('XX12')).toMatchObject({ ok: false, reason: 'gs1_syntax' });
  });

  it('an element string without (01) decodes with gtin null (an SSCC)', () => {
    expect(parseGs1('00106141411234567897')).toEqual({ ok: true, gtin: null });
  });
});
