import { describe, expect, it } from 'vitest';
import { LineFramer } from '../../src/drivers/lines';

const b = (s: string) => Buffer.from(s, 'latin1');

describe('LineFramer', () => {
  it('splits CR LF lines (MT-SICS terminator) and keeps a partial line for the next chunk', () => {
    const f = new LineFramer();
    expect(f.push(b('S S     100.00 g\r\nZ A\r\nT '))).toEqual(['S S     100.00 g', 'Z A']);
    expect(f.push(b('S 5.00 g\r\n'))).toEqual(['T S 5.00 g']);
    expect(f.dropped).toBe(0);
    expect(f.overlong).toBe(0);
  });

  it('tolerates bare LF and bare CR, and counts CR LF once even across chunks', () => {
    const f = new LineFramer();
    expect(f.push(b('A\nB\rC\r'))).toEqual(['A', 'B', 'C']);
    expect(f.push(b('\nD\r\n\r\n'))).toEqual(['D']);
  });

  it('handles a line delivered one byte at a time', () => {
    const f = new LineFramer();
    const out: string[] = [];
    for (const byte of b('I4 A "1234567"\r\n')) out.push(...f.push(Buffer.from([byte])));
    expect(out).toEqual(['I4 A "1234567"']);
  });

  it('rejects a whole line holding a control byte, never strips the byte out of it', () => {
    const f = new LineFramer();
    // 0x0E inside the value: stripping it would read 40000 g instead of rejecting the line
    expect(f.push(b('S S     400\x0e00 g\r\n'))).toEqual([]);
    expect(f.rejected).toBe(1);
    expect(f.dropped).toBe(16);
    // NUL, BEL, DEL, a C1 control and TAB each reject their line; the next line is unharmed
    for (const bad of [[0x00, 0x53, 0x20, 0x49], [0x53, 0x20, 0x49, 0x07], [0x53, 0x7f, 0x49], [0x53, 0x85, 0x49], [0x53, 0x09, 0x49]]) {
      expect(f.push(Buffer.from([...bad, 0x0d, 0x0a, 0x5a, 0x20, 0x41, 0x0d, 0x0a]))).toEqual(['Z A']);
    }
    expect(f.rejected).toBe(6);
    // a line made only of garbage is rejected too
    expect(f.push(Buffer.from([0x00, 0x01, 0x0d, 0x0a]))).toEqual([]);
    expect(f.rejected).toBe(7);
  });

  it('a control byte split across chunks still rejects its line', () => {
    const f = new LineFramer();
    expect(f.push(b('S S   4'))).toEqual([]);
    expect(f.push(Buffer.from([0x00]))).toEqual([]);
    expect(f.push(b('00.00 g\r\nS I\r\n'))).toEqual(['S I']);
    expect(f.rejected).toBe(1);
  });

  it('decodes latin1 (one byte, one character)', () => {
    const f = new LineFramer();
    expect(f.push(Buffer.from([0x41, 0xb5, 0x67, 0x0d, 0x0a]))).toEqual(['A\u00b5g']);
  });

  it('drops an overlong line up to its terminator and never grows past maxLineBytes', () => {
    const f = new LineFramer({ maxLineBytes: 8 });
    expect(f.push(b('12345678\r\n'))).toEqual(['12345678']);
    expect(f.push(b('123456789'))).toEqual([]);
    expect(f.push(b('x'.repeat(10_000)))).toEqual([]);
    expect(f.push(b('tail\r\nS I\r\n'))).toEqual(['S I']);
    expect(f.overlong).toBe(1);
    expect(f.dropped).toBe(9 + 10_000 + 4);
    expect(f.push(b('Z A\r\n'))).toEqual(['Z A']);
  });

  it('survives a megabyte of terminator-less garbage then a valid line', () => {
    const f = new LineFramer();
    // printable bytes and NULs, no terminator
    const junk = Buffer.alloc(1 << 20, 'AB\x00');
    expect(f.push(junk)).toEqual([]);
    expect(f.push(b('\r\nS S     100.00 g\r\n'))).toEqual(['S S     100.00 g']);
    expect(f.overlong).toBeGreaterThanOrEqual(1);
  });

  it('reset forgets a partial line and counts it as dropped', () => {
    const f = new LineFramer();
    f.push(b('S S   1'));
    f.reset();
    expect(f.dropped).toBe(7);
    expect(f.push(b('Z A\r\n'))).toEqual(['Z A']);
  });

  it('rejects a non-positive maxLineBytes', () => {
    expect(() => new LineFramer({ maxLineBytes: 0 })).toThrow(RangeError);
  });
});
