import { describe, expect, it } from 'vitest';
import { isShelfgateError, ErrorCode } from '../../src/errors';
import { encodeSicsCommand, formatSicsResponse, parseSicsCommand, parseSicsResponse, toGrams, type SicsResponse } from '../../src/drivers/mtsics';

// Every response of protocols.md §3a, as the scale sends it (CR LF stripped by the line framer).
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

describe('MT-SICS client: responses (protocols.md §3a)', () => {
  it.each(fixtures)('parses %j', (line, expected) => {
    expect(parseSicsResponse(line)).toEqual(expected);
  });

  it('splits on any whitespace: pad widths vary between models', () => {
    expect(parseSicsResponse('S S 100.00 g')).toEqual(fixtures[0]![1]);
    expect(parseSicsResponse('S  S\t   100.00   g  ')).toEqual(fixtures[0]![1]);
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
