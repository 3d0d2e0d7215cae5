import { describe, expect, it } from 'vitest';
import { isShelfgateError, ErrorCode } from '../../src/errors';
import { answersCommand, encodeSicsCommand, formatSicsResponse, parseSicsCommand, parseSicsResponse, toGrams, type SicsResponse } from '../../src/drivers/mtsics';

// Every level-0/1 response of the METTLER TOLEDO MT-SICS Reference Manual we use, as the scale
// sends it (CR LF stripped by the line framer).
const fixtures: [string, SicsResponse][] = [
  ['S S     100.00 g', { kind: 'weight', cmd: 'S', stable: true, value: 100, unit: 'g', decimals: 2 }],
  ['S I', { kind: 'status', cmd: 'S', status: 'I' }],
  ['S +', { kind: 'status', cmd: 'S', status: '+' }],
  ['S -', { kind: 'status', cmd: 'S', status: '-' }],
  ['S D      12.34 g', { kind: 'weight', cmd: 'S', stable: false, value: 12.34, unit: 'g', decimals: 2 }],
  ['Z A', { kind: 'status', cmd: 'Z', status: 'A' }],
  ['Z I', { kind: 'status', cmd: 'Z', status: 'I' }],
  ['Z +', { kind: 'status', cmd: 'Z', status: '+' }],
  ['Z -', { kind: 'status', cmd: 'Z', status: '-' }],
  ['T S      25.00 g', { kind: 'weight', cmd: 'T', stable: true, value: 25, unit: 'g', decimals: 2 }],
  ['T I', { kind: 'status', cmd: 'T', status: 'I' }],
  ['T +', { kind: 'status', cmd: 'T', status: '+' }],
  ['T -', { kind: 'status', cmd: 'T', status: '-' }],
  ['I4 A "1234567"', { kind: 'info', cmd: 'I4', value: '1234567' }],
  ['ES', { kind: 'error', code: 'ES' }],
  ['ET', { kind: 'error', code: 'ET' }],
  ['EL', { kind: 'error', code: 'EL' }],
];

function expectInvalid(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    expect(isShelfgateError(e, ErrorCode.FRAME_INVALID)).toBe(true);
    return;
  }
  throw new Error('expected FRAME_INVALID');
}

describe('MT-SICS client: commands', () => {
  it('encodes commands with CR LF, byte-exact', () => {
    expect(encodeSicsCommand('S').toString('hex')).toBe('530d0a');
    expect(encodeSicsCommand('SI').toString('hex')).toBe('53490d0a');
    expect(encodeSicsCommand('Z').toString('hex')).toBe('5a0d0a');
    expect(encodeSicsCommand('T').toString('hex')).toBe('540d0a');
    expect(encodeSicsCommand('I4').toString('hex')).toBe('49340d0a');
  });

  it('refuses an empty command or one with control characters', () => {
    expect(() => encodeSicsCommand('')).toThrow();
    expect(() => encodeSicsCommand('S\r\nZ')).toThrow();
  });
});

describe('MT-SICS client: responses (MT-SICS Reference Manual)', () => {
  it.each(fixtures)('parses %j', (line, expected) => {
    expect(parseSicsResponse(line)).toEqual(expected);
  });

  it('splits on runs of blanks: pad widths vary between models', () => {
    expect(parseSicsResponse('S S 100.00 g')).toEqual(fixtures[0]![1]);
    expect(parseSicsResponse('S  S     100.00   g  ')).toEqual(fixtures[0]![1]);
    expect(parseSicsResponse('S S    -0.50 kg')).toMatchObject({ value: -0.5, unit: 'kg', stable: true });
    expect(parseSicsResponse('S D 7 lb')).toMatchObject({ value: 7, unit: 'lb', stable: false, decimals: 0 });
  });

  it('accepts the logical-error status L of newer levels', () => {
    expect(parseSicsResponse('Z L')).toEqual({ kind: 'status', cmd: 'Z', status: 'L' });
  });

  it.each([
    '',
    '   ',
    'S',
    'S S',
    'S S 100.00',
    'S S abc g',
    'S S 1.0.0 g',
    'S S 100.00 g extra',
    'S X',
    'ES junk',
    'I4 A 1234567',
    'I4 A "1234567',
    'hello world',
    '"S" S 1 g',
  ])('rejects malformed %j with FRAME_INVALID', (line) => {
    expectInvalid(() => parseSicsResponse(line));
  });

  // A weight value is `-`? digits (`.` digits)?; fields are separated by blanks only. Each of these
  // is one corrupted or foreign byte away from a valid line and must not yield a number.
  it.each([
    'S S       .345 g',
    'S S       100. g',
    'S S         +5 g',
    'S S        1e3 g',
    'S S         -. g',
    'S S         -- g',
    'S S 0x10 g',
    'S S 1_000 g',
    'S S     100.00\u00a0g',
    'S\u00a0S     100.00 g',
    'S S\u00a0\u00a0\u00a0100.00 g',
    'S S\t100.00 g',
    'S\tS 100.00 g',
    'S S     100.00 g\t',
    'S S     400\x0e00 g',
    '\x00S S     100.00 g',
    'S S     100.00 g\x7f',
    'I4 A "12\x0034"',
    'S S     100.00 "g"',
  ])('rejects the non-MT-SICS number or separator in %j', (line) => {
    expectInvalid(() => parseSicsResponse(line));
  });

  it('accepts the manual\'s value shapes: integers, decimals, a leading minus', () => {
    expect(parseSicsResponse('S S          0 g')).toMatchObject({ value: 0, decimals: 0 });
    expect(parseSicsResponse('S S      -0.00 g')).toMatchObject({ value: -0, decimals: 2 });
    expect(parseSicsResponse('S D   12345.678 kg')).toMatchObject({ value: 12345.678, decimals: 3, stable: false });
    expect(parseSicsResponse('S S       5.00 \u00b5g')).toMatchObject({ unit: '\u00b5g' });
  });
});

describe('answersCommand: an answer is only taken for the command it answers', () => {
  const w = (line: string) => parseSicsResponse(line);
  it('S and SI are answered by id S; SI accepts a dynamic weight, S only a stable one', () => {
    expect(answersCommand('SI', w('S S     100.00 g'))).toBe(true);
    expect(answersCommand('SI', w('S D     100.00 g'))).toBe(true);
    expect(answersCommand('S', w('S S     100.00 g'))).toBe(true);
    expect(answersCommand('S', w('S D     100.00 g'))).toBe(false);
    expect(answersCommand('SIR', w('S D     100.00 g'))).toBe(true);
    for (const st of ['S I', 'S +', 'S -']) {
      expect(answersCommand('S', w(st))).toBe(true);
      expect(answersCommand('SI', w(st))).toBe(true);
    }
  });

  it('a tare, zero or serial-number answer never answers a weight poll, and the other way round', () => {
    for (const other of ['T S      25.00 g', 'T I', 'Z A', 'Z I', 'Z +', 'I4 A "1234567"']) {
      expect(answersCommand('SI', w(other))).toBe(false);
      expect(answersCommand('S', w(other))).toBe(false);
    }
    expect(answersCommand('T', w('S S     100.00 g'))).toBe(false);
    expect(answersCommand('Z', w('S S     100.00 g'))).toBe(false);
    expect(answersCommand('T', w('T S      25.00 g'))).toBe(true);
    expect(answersCommand('Z', w('Z A'))).toBe(true);
    expect(answersCommand('I4', w('I4 A "1234567"'))).toBe(true);
  });

  it('the error lines (no id) may answer any command', () => {
    for (const e of ['ES', 'ET', 'EL']) expect(answersCommand('SI', w(e))).toBe(true);
  });
});

describe('toGrams', () => {
  it('converts g, kg, mg, lb, oz', () => {
    expect(toGrams(100, 'g')).toBe(100);
    expect(toGrams(0.1, 'kg')).toBe(100);
    expect(toGrams(1.005, 'kg')).toBe(1005);
    expect(toGrams(250, 'mg')).toBe(0.25);
    expect(toGrams(1, 'lb')).toBe(453.59237);
    expect(toGrams(16, 'oz')).toBeCloseTo(453.59237, 6);
    expect(toGrams(-2, 'g')).toBe(-2);
  });

  it('throws on an unknown unit', () => {
    expectInvalid(() => toGrams(1, 'ct'));
    expectInvalid(() => toGrams(1, 'KG'));
  });
});

describe('MT-SICS server side (simulators)', () => {
  it('parses commands', () => {
    expect(parseSicsCommand('SI')).toEqual({ cmd: 'SI', args: [] });
    expect(parseSicsCommand(' S ')).toEqual({ cmd: 'S', args: [] });
    expect(parseSicsCommand('TA 12.5 g')).toEqual({ cmd: 'TA', args: ['12.5', 'g'] });
    expect(parseSicsCommand('D "Hello world"')).toEqual({ cmd: 'D', args: ['Hello world'] });
    expectInvalid(() => parseSicsCommand(''));
    expectInvalid(() => parseSicsCommand('s'));
  });

  it.each(fixtures)('formats %j byte-exact', (line, r) => {
    expect(formatSicsResponse(r)).toBe(line);
  });

  it('pads the value right-aligned to width 10, answers SI with id S', () => {
    expect(formatSicsResponse({ kind: 'weight', cmd: 'SI', stable: false, value: -3.5, unit: 'g' })).toBe('S D      -3.50 g');
    expect(formatSicsResponse({ kind: 'weight', cmd: 'S', stable: true, value: 1.2346, unit: 'kg', decimals: 3 })).toBe('S S      1.235 kg');
    expect(formatSicsResponse({ kind: 'status', cmd: 'SI', status: 'I' })).toBe('S I');
    expect(Buffer.from(formatSicsResponse(fixtures[0]![1]) + '\r\n', 'latin1').toString('hex')).toBe('53205320202020203130302e303020670d0a');
  });
});
