import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, LogLimiter } from '../../src/log';

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const dest = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { log: createLogger('info', dest), lines };
}

describe('LogLimiter', () => {
  it('logs the first of a burst, then one line with the count of what it held back', () => {
    const { log, lines } = capture();
    let now = 1_000;
    const lim = new LogLimiter(log, 60_000, () => now);
    for (let i = 0; i < 10_000; i++) lim.warn('busa.3:crc', { sensor: 'busa.3' }, 'sensor did not answer correctly');
    expect(lines).toHaveLength(1);
    now += 60_001;
    lim.warn('busa.3:crc', { sensor: 'busa.3' }, 'sensor did not answer correctly');
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ sensor: 'busa.3', repeated: 9_999, level: 40 });
  });

  it('keeps keys apart: one chatty device never hides another', () => {
    const { log, lines } = capture();
    const lim = new LogLimiter(log, 60_000, () => 5);
    for (let i = 0; i < 100; i++) lim.warn('a', {}, 'x');
    lim.error('b', {}, 'y');
    expect(lines.map((l) => l.msg)).toEqual(['x', 'y']);
  });
});
