import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { RequestChannel } from '../../src/core/sources/channel';
import { ErrorCode } from '../../src/errors';
import { FakeLink as ScriptLink } from '../helpers/fake-link';

class FakeLink extends EventEmitter {
  online = true;
  written: Buffer[] = [];
  /** The next write fails: 'sync' inside send(), 'async' from a later callback (as a socket would). */
  failNext: 'sync' | 'async' | null = null;
  send(data: Buffer, onError: (e: Error) => void): void {
    if (!this.online) return onError(new Error('closed'));
    const fail = this.failNext;
    this.failNext = null;
    if (fail === 'sync') return onError(new Error('EPIPE (sync)'));
    this.written.push(data);
    if (fail === 'async') setImmediate(() => onError(new Error('EPIPE (async)')));
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

  describe('late-answer guard', () => {
    const nextWrite = (link: ScriptLink): Promise<string> => new Promise((r) => { const off = link.onWrite((c) => (off(), r(c.toString()))); });

    it('after a timeout, holds the next request until the line is quiet; late bytes go to onLate, never to a decoder', async () => {
      const link = new ScriptLink();
      const late: Array<[string, boolean]> = [];
      const ch = new RequestChannel(link, () => {}, { lateGuardMs: 50, onLate: (c, first) => late.push([c.toString(), first]) });
      ch.attach();
      await expect(ch.request(Buffer.from('A'), untilNewline({ s: '' }), 20)).rejects.toMatchObject({ code: ErrorCode.DEVICE_TIMEOUT });
      const begun: string[] = [];
      const b = ch.request(Buffer.from('B'), untilNewline({ s: '' }), 500, { begin: () => begun.push('B') });
      const written = nextWrite(link);
      expect(link.writtenText()).toBe('A'); // held, not written
      expect(begun).toEqual([]);
      link.emit('data', Buffer.from('late answer '));
      const lastLate = performance.now();
      link.emit('data', Buffer.from('to A\n'));
      expect(late).toEqual([['late answer ', true], ['to A\n', false]]);
      expect(await written).toBe('B');
      expect(performance.now() - lastLate).toBeGreaterThanOrEqual(45); // the quiet restarted at the late bytes
      expect(begun).toEqual(['B']);
      link.emit('data', Buffer.from('answer to B\n'));
      await expect(b).resolves.toBe('answer to B');
      ch.detach();
    });

    it('a request whose answer cannot be confused (another key) is not held; one with the same key is', async () => {
      const link = new ScriptLink();
      const ch = new RequestChannel(link, () => {}, { lateGuardMs: 10_000 });
      ch.attach();
      await expect(ch.request(Buffer.from('A1'), () => null, 20, { key: 'addr1' })).rejects.toMatchObject({ code: ErrorCode.DEVICE_TIMEOUT });
      const a2 = ch.request(Buffer.from('A2'), untilNewline({ s: '' }), 500, { key: 'addr2' });
      expect(link.writtenText()).toBe('A1A2'); // written at once
      link.emit('data', Buffer.from('two\n'));
      await expect(a2).resolves.toBe('two');
      const again = ch.request(Buffer.from('A1'), () => null, 20, { key: 'addr1' });
      expect(link.writtenText()).toBe('A1A2'); // held behind the guard
      ch.detach();
      await expect(again).rejects.toMatchObject({ code: ErrorCode.STOPPED });
    });

    it('no guard once the line has been quiet long enough since the timeout', async () => {
      const link = new ScriptLink();
      const ch = new RequestChannel(link, () => {}, { lateGuardMs: 30 });
      ch.attach();
      await expect(ch.request(Buffer.from('A'), () => null, 20, { key: 'k' })).rejects.toMatchObject({ code: ErrorCode.DEVICE_TIMEOUT });
      // 40 ms pass on a request that cannot take A's answer
      await expect(ch.request(Buffer.from('X'), () => null, 40, { key: 'other' })).rejects.toMatchObject({ code: ErrorCode.DEVICE_TIMEOUT });
      ch.request(Buffer.from('B'), () => null, 500, { key: 'k' }).catch(() => undefined);
      expect(link.writtenText()).toBe('AXB'); // written at once: A's guard has passed
      ch.detach();
    });
  });

  it('a write that fails rejects that request, and the next one is sent', async () => {
    for (const mode of ['sync', 'async'] as const) {
      const link = new FakeLink();
      const ch = new RequestChannel(link);
      ch.attach();
      link.failNext = mode;
      const a = ch.request(Buffer.from('A'), untilNewline({ s: '' }), 5_000);
      const b = ch.request(Buffer.from('B'), untilNewline({ s: '' }), 5_000);
      await expect(a).rejects.toThrow(`EPIPE (${mode})`);
      expect(link.written.map(String).at(-1)).toBe('B');
      link.emit('data', Buffer.from('b\n'));
      await expect(b).resolves.toBe('b');
      ch.detach();
    }
  });

  it('linkDown() fails the outstanding and queued requests at once with TRANSPORT_CLOSED', async () => {
    const link = new FakeLink();
    const ch = new RequestChannel(link);
    ch.attach();
    const a = ch.request(Buffer.from('A'), () => null, 10_000);
    const b = ch.request(Buffer.from('B'), () => null, 10_000);
    ch.linkDown('EIO');
    await expect(a).rejects.toMatchObject({ code: ErrorCode.TRANSPORT_CLOSED, message: 'link down: EIO' });
    await expect(b).rejects.toMatchObject({ code: ErrorCode.TRANSPORT_CLOSED });
    // the channel still works once the link is back
    const c = ch.request(Buffer.from('C'), untilNewline({ s: '' }), 1_000);
    link.emit('data', Buffer.from('c\n'));
    await expect(c).resolves.toBe('c');
    ch.detach();
  });

  it('each request gets its own timeout, whatever the timer was armed for before', async () => {
    const link = new FakeLink();
    const ch = new RequestChannel(link);
    ch.attach();
    // a long timeout answered at once, then a short one nobody answers: rejected on time
    const long = ch.request(Buffer.from('A'), untilNewline({ s: '' }), 5_000);
    link.emit('data', Buffer.from('a\n'));
    await long;
    let t0 = performance.now();
    await expect(ch.request(Buffer.from('B'), () => null, 50)).rejects.toMatchObject({ code: ErrorCode.DEVICE_TIMEOUT });
    expect(performance.now() - t0).toBeLessThan(1_000);
    // a short timeout answered at once, then a longer one: not rejected before its own timeout
    const short = ch.request(Buffer.from('C'), untilNewline({ s: '' }), 50);
    link.emit('data', Buffer.from('c\n'));
    await short;
    t0 = performance.now();
    await expect(ch.request(Buffer.from('D'), () => null, 300)).rejects.toMatchObject({ code: ErrorCode.DEVICE_TIMEOUT });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(295);
    ch.detach();
  });
});
