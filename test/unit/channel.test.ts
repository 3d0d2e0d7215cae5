import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { RequestChannel } from '../../src/core/sources/channel';
import { ErrorCode } from '../../src/errors';

class FakeLink extends EventEmitter {
  online = true;
  written: Buffer[] = [];
  async write(data: Buffer): Promise<void> {
    if (!this.online) throw new Error('closed');
    this.written.push(data);
  }
}

const untilNewline = (acc: { s: string }) => (chunk: Buffer) => {
  acc.s += chunk.toString();
  return acc.s.endsWith('\n') ? acc.s.trim() : null;
};

describe('RequestChannel', () => {
  it('resolves when the decoder completes, across chunks', async () => {
    const link = new FakeLink();
    const ch = new RequestChannel(link);
    ch.attach();
    const p = ch.request(Buffer.from('Q1'), untilNewline({ s: '' }), 500);
    link.emit('data', Buffer.from('ans'));
    link.emit('data', Buffer.from('wer\n'));
    await expect(p).resolves.toBe('answer');
    ch.detach();
  });

  it('runs queued requests strictly one at a time, in order', async () => {
    const link = new FakeLink();
    const ch = new RequestChannel(link);
    ch.attach();
    const a = ch.request(Buffer.from('A'), untilNewline({ s: '' }), 500);
    const b = ch.request(Buffer.from('B'), untilNewline({ s: '' }), 500);
    expect(link.written.map(String)).toEqual(['A']); // B waits for A's answer
    link.emit('data', Buffer.from('a\n'));
    await expect(a).resolves.toBe('a');
    expect(link.written.map(String)).toEqual(['A', 'B']);
    link.emit('data', Buffer.from('b\n'));
    await expect(b).resolves.toBe('b');
    ch.detach();
  });

  it('times out a silent device, then serves the next request with its own full timeout', async () => {
    const link = new FakeLink();
    const ch = new RequestChannel(link);
    ch.attach();
    const t0 = Date.now();
    await expect(ch.request(Buffer.from('A'), () => null, 50)).rejects.toMatchObject({ code: ErrorCode.DEVICE_TIMEOUT });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(45);
    const p = ch.request(Buffer.from('B'), untilNewline({ s: '' }), 200);
    // the scenario: the device answers 100 ms in, past the first request's 50 ms but within this one's 200 ms; `await p` is the outcome
    setTimeout(() => link.emit('data', Buffer.from('late but in time\n')), 100);
    await expect(p).resolves.toBe('late but in time');
    ch.detach();
  });

  it('gives bytes that arrive with no request outstanding to onUnsolicited, never to the next request', async () => {
    const link = new FakeLink();
    const noise: Buffer[] = [];
    const ch = new RequestChannel(link, (c) => noise.push(c));
    ch.attach();
    link.emit('data', Buffer.from('garbage'));
    expect(Buffer.concat(noise).toString()).toBe('garbage');
    const p = ch.request(Buffer.from('A'), untilNewline({ s: '' }), 200);
    link.emit('data', Buffer.from('ok\n'));
    await expect(p).resolves.toBe('ok');
    ch.detach();
  });

  it('rejects at once when the link is offline, and everything pending on detach', async () => {
    const link = new FakeLink();
    const ch = new RequestChannel(link);
    ch.attach();
    link.online = false;
    await expect(ch.request(Buffer.from('A'), () => null, 100)).rejects.toMatchObject({ code: ErrorCode.TRANSPORT_CLOSED });
    link.online = true;
    const a = ch.request(Buffer.from('A'), () => null, 10_000);
    const b = ch.request(Buffer.from('B'), () => null, 10_000);
    ch.detach();
    await expect(a).rejects.toMatchObject({ code: ErrorCode.STOPPED });
    await expect(b).rejects.toMatchObject({ code: ErrorCode.STOPPED });
    expect(link.listenerCount('data')).toBe(0);
  });

  it('a decoder that throws rejects that request only', async () => {
    const link = new FakeLink();
    const ch = new RequestChannel(link);
    ch.attach();
    const bad = ch.request(Buffer.from('A'), () => {
      throw new Error('bad frame');
    }, 200);
    link.emit('data', Buffer.from('x'));
    await expect(bad).rejects.toThrow('bad frame');
    const good = ch.request(Buffer.from('B'), untilNewline({ s: '' }), 200);
    link.emit('data', Buffer.from('fine\n'));
    await expect(good).resolves.toBe('fine');
    ch.detach();
  });
});
