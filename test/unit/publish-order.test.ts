/**
 * orderPublishes() on a bare aedes broker, no sockets: hand-over order, and that a publish which
 * fails before its hand-over does not hold up the ones after it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Aedes, type AedesPublishPacket, type PublishPacket } from 'aedes';
import { orderPublishes } from '../../src/bus/publish-order';

const brokers: Aedes[] = [];
afterEach(async () => {
  while (brokers.length > 0) {
    const b = brokers.pop()!;
    await new Promise<void>((r) => b.close(() => r()));
  }
});

async function broker(): Promise<{ b: Aedes; seen: string[]; stats: ReturnType<typeof orderPublishes> }> {
  const b = await Aedes.createBroker();
  brokers.push(b);
  const stats = orderPublishes(b);
  const seen: string[] = [];
  await new Promise<void>((r) =>
    b.subscribe(
      't/#',
      (p: AedesPublishPacket, cb: () => void) => {
        seen.push(`${p.topic} ${String(p.payload)}`);
        cb();
      },
      () => r(),
    ),
  );
  return { b, seen, stats };
}

function pkt(topic: string, payload: string, retain: boolean, qos: 0 | 1 = 0): PublishPacket {
  return { cmd: 'publish', topic, payload: Buffer.from(payload), retain, qos, dup: false };
}

function publish(b: Aedes, p: PublishPacket): Promise<Error | undefined> {
  return new Promise((resolve) => b.publish(p, (err) => resolve(err ?? undefined)));
}

describe('orderPublishes', () => {
  it('hands publishes over in call order, whatever their retain flag and QoS', async () => {
    const { b, seen, stats } = await broker();
    const expected: string[] = [];
    const done: Promise<unknown>[] = [];
    for (let i = 0; i < 30; i++) {
      const p = pkt(`t/${i % 3}`, String(i), i % 2 === 0, i % 4 === 0 ? 1 : 0);
      expected.push(`${p.topic} ${i}`);
      done.push(publish(b, p));
    }
    expect(await Promise.all(done)).toEqual(expected.map(() => undefined));
    expect(seen).toEqual(expected);
    expect(stats.waited).toBeGreaterThan(0);
    expect(stats.maxWaiting).toBeGreaterThan(0);
  });

  it('a publish whose store step fails reports the error and does not hold up the next ones', async () => {
    const { b, seen } = await broker();
    const persistence = (b as unknown as { persistence: { storeRetained(p: unknown): Promise<void> } }).persistence;
    const store = persistence.storeRetained.bind(persistence);
    let failNext = true;
    persistence.storeRetained = (p: unknown) => {
      if (!failNext) return store(p);
      failNext = false;
      return Promise.reject(new Error('disk gone'));
    };
    const results = await Promise.all([publish(b, pkt('t/a', 'lost', true)), publish(b, pkt('t/b', 'live', false)), publish(b, pkt('t/a', 'kept', true))]);
    expect(results.map((e) => e?.message)).toEqual(['disk gone', undefined, undefined]);
    expect(seen).toEqual(['t/b live', 't/a kept']);
  });

  it('a publish refused at once (too many topic levels) does not hold up the next ones', async () => {
    const { b, seen } = await broker();
    const deep = `t/${Array.from({ length: 120 }, () => 'x').join('/')}`;
    const results = await Promise.all([publish(b, pkt('t/a', '1', true)), publish(b, pkt(deep, 'deep', false)), publish(b, pkt('t/b', '2', false))]);
    expect(results[1]?.message).toMatch(/too many levels/);
    expect(seen).toEqual(['t/a 1', 't/b 2']);
  });

  it('a publish made during a hand-over (from a delivery) is handed over after it, to every subscriber', async () => {
    const b = await Aedes.createBroker();
    brokers.push(b);
    orderPublishes(b);
    const sub = (f: (p: AedesPublishPacket) => void) =>
      new Promise<void>((r) =>
        b.subscribe(
          't/#',
          (p: AedesPublishPacket, cb: () => void) => {
            f(p);
            cb();
          },
          () => r(),
        ),
      );
    // the first subscription publishes when it gets 'first'; the second only records
    await sub((p) => {
      if (String(p.payload) === 'first') b.publish(pkt('t/x', 'from delivery', false), () => {});
    });
    const seen: string[] = [];
    await sub((p) => seen.push(String(p.payload)));
    await publish(b, pkt('t/x', 'first', false));
    await publish(b, pkt('t/z', 'last', true));
    expect(seen).toEqual(['first', 'from delivery', 'last']);
  });
});
