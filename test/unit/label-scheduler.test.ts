/**
 * The label delivery scheduler, with an injected clock: coalescing, urgency order, no early send
 * of a future price, back-off from the check-in interval, confirmation only on the label's ack
 * (never on the AP's HTTP 200), the AP that last heard a label, and each AP's radio budget.
 */
import { describe, expect, it } from 'vitest';
import { DeliveryScheduler, MAX_PLAN, Urgency, type ContentInput, type Dispatch, type SchedulerOptions } from '../../src/features/labels/scheduler';

const T0 = Date.parse('2026-03-02T12:00:00Z');
const CHECK_IN = 40_000;
const BYTES = 2_000; // 0.4 s of radio at 5 kB/s

function setup(opts: Partial<SchedulerOptions> = {}) {
  const clock = { now: T0 };
  const s = new DeliveryScheduler({ clock: () => clock.now, ...opts });
  return { s, clock };
}

function content(hash: string, price: number | null, o: Partial<ContentInput> = {}): ContentInput {
  return { hash, body: `[{"text":[0,0,"${hash}","f",1,0]}]`, bytes: BYTES, effectiveAt: T0, price, currency: 'EUR', priceKey: JSON.stringify(['EUR', price, o.priceKey ?? null]), ...o };
}

/** A label on `ap`, already confirmed showing a price (the baseline urgency is measured against). */
function confirmedLabel(s: DeliveryScheduler, mac: string, ap: string, price: number, hash = `base-${mac}`): void {
  s.setLabel(mac, { checkInMs: CHECK_IN });
  s.heard(mac, ap, T0);
  s.submit(mac, [content(hash, price)]);
  const d = s.next().find((x) => x.mac === mac);
  expect(d?.hash).toBe(hash);
  expect(s.acknowledged(mac)).toBe(true);
}

describe('coalescing', () => {
  it('rapid changes before a send go out as the newest content only', () => {
    const { s } = setup();
    s.setLabel('A', { checkInMs: CHECK_IN });
    s.heard('A', 'ap1');
    s.submit('A', [content('v1', 100)]);
    s.submit('A', [content('v2', 110)]);
    const seqs = s.submit('A', [content('v3', 120)]);
    const out = s.next();
    expect(out.map((d) => [d.mac, d.hash, d.seq])).toEqual([['A', 'v3', seqs[0]]]);
    expect(seqs[0]).toBe(3); // the content version counts every submission
    expect(s.stats.coalesced).toBe(2);
    expect(s.acknowledged('A')).toBe(true);
    expect(s.record('A')).toMatchObject({ state: 'confirmed', shown: { seq: 3, hash: 'v3', price: 120 } });
    expect(s.next()).toEqual([]);
  });

  it('changes during a transfer wait for its end, then only the newest of them is sent', () => {
    const { s } = setup();
    s.setLabel('A', { checkInMs: CHECK_IN });
    s.heard('A', 'ap1');
    s.submit('A', [content('v1', 100)]);
    expect(s.next().map((d) => d.hash)).toEqual(['v1']);
    s.submit('A', [content('v2', 110)]);
    s.submit('A', [content('v3', 120)]);
    // one transfer per label: an ack names the MAC only, so a second one would make it ambiguous
    expect(s.next()).toEqual([]);
    expect(s.record('A')!.state).toBe('sent');
    expect(s.acknowledged('A')).toBe(true);
    expect(s.record('A')).toMatchObject({ state: 'pending', shown: { hash: 'v1' } });
    expect(s.next().map((d) => d.hash)).toEqual(['v3']);
    expect(s.stats.coalesced).toBe(1); // v2 never went on air
  });

  it('content equal to what the label confirmed showing is not sent again', () => {
    const { s } = setup();
    confirmedLabel(s, 'A', 'ap1', 100, 'same');
    s.submit('A', [content('same', 100)]);
    expect(s.record('A')!.state).toBe('confirmed');
    expect(s.next()).toEqual([]);
    expect(s.stats.dispatched).toBe(1);
  });

  it('a plan is bounded and must be in time order', () => {
    const { s } = setup();
    s.setLabel('A', { checkInMs: CHECK_IN });
    expect(() => s.submit('A', Array.from({ length: MAX_PLAN + 1 }, (_, i) => content(`c${i}`, 1, { effectiveAt: T0 + i })))).toThrow(RangeError);
    expect(() => s.submit('A', [content('b', 1, { effectiveAt: T0 + 5 }), content('a', 1)])).toThrow(RangeError);
    expect(() => s.submit('nope', [content('a', 1)])).toThrow(RangeError);
  });
});

describe('urgency order', () => {
  it('a price rise, then a price cut, then a was-price/unit-price change, then cosmetic content', () => {
    const { s, clock } = setup();
    for (const mac of ['A', 'B', 'C', 'D', 'E']) confirmedLabel(s, mac, 'ap1', 200);
    clock.now += 1000;
    s.submit('A', [content('a-cosmetic', 200, { effectiveAt: clock.now })]); // same price, new name
    s.submit('B', [content('b-detail', 200, { effectiveAt: clock.now, priceKey: 'new unit price' })]);
    s.submit('C', [content('c-cut', 150, { effectiveAt: clock.now })]);
    s.submit('D', [content('d-rise', 250, { effectiveAt: clock.now })]);
    s.submit('E', [content('e-currency', 200, { effectiveAt: clock.now, currency: 'CHF' })]);
    const out = s.next();
    expect(out.map((d) => [d.hash, d.urgency])).toEqual([
      ['d-rise', Urgency.PRICE_RISE],
      ['e-currency', Urgency.PRICE_RISE],
      ['c-cut', Urgency.PRICE_CUT],
      ['b-detail', Urgency.PRICE_DETAIL],
      ['a-cosmetic', Urgency.COSMETIC],
    ]);
  });

  it('within a class, the label wrong for longest goes first; a label that never showed anything counts as a rise', () => {
    const { s, clock } = setup();
    confirmedLabel(s, 'Z', 'ap1', 200);
    confirmedLabel(s, 'Y', 'ap1', 200);
    s.setLabel('N', { checkInMs: CHECK_IN });
    s.heard('N', 'ap1');
    s.submit('Z', [content('z-cut', 100, { effectiveAt: T0 + 10 })]);
    s.submit('Y', [content('y-cut', 100, { effectiveAt: T0 + 20 })]);
    s.submit('N', [content('n-first', 100, { effectiveAt: T0 + 30 })]);
    clock.now = T0 + 30;
    expect(s.next().map((d) => d.hash)).toEqual(['n-first', 'z-cut', 'y-cut']);
  });

  it('is deterministic: the same inputs give the same dispatches', () => {
    const run = (): Dispatch[] => {
      const { s } = setup({ burstMs: 2000 });
      for (let i = 0; i < 30; i++) {
        const mac = `M${String(i).padStart(2, '0')}`;
        s.setLabel(mac, { checkInMs: CHECK_IN });
        s.heard(mac, i % 2 ? 'ap1' : 'ap2');
        s.submit(mac, [content(`h${i}`, 100 + (i % 3))]);
      }
      return s.next();
    };
    const a = run();
    expect(a.length).toBeGreaterThan(0);
    expect(run()).toEqual(a);
  });
});

describe('effective times', () => {
  it('a future price is never sent early: it is due at its effective time, and nextWakeAt says when', () => {
    const { s, clock } = setup();
    const tomorrow = T0 + 86_400_000;
    s.setLabel('A', { checkInMs: CHECK_IN });
    s.heard('A', 'ap1');
    s.submit('A', [content('regular', 249), content('promo', 199, { effectiveAt: tomorrow })]);
    expect(s.next().map((d) => d.hash)).toEqual(['regular']);
    s.acknowledged('A');
    expect(s.record('A')!.state).toBe('confirmed');
    expect(s.nextWakeAt()).toBe(tomorrow);
    clock.now = tomorrow - 1;
    s.heard('A', 'ap1');
    expect(s.next()).toEqual([]);
    expect(s.record('A')).toMatchObject({ state: 'confirmed', mismatchSince: null });
    clock.now = tomorrow;
    const out = s.next();
    expect(out.map((d) => [d.hash, d.urgency])).toEqual([['promo', Urgency.PRICE_CUT]]);
    expect(s.record('A')).toMatchObject({ state: 'sent', mismatchSince: tomorrow });
    s.acknowledged('A');
    expect(s.record('A')).toMatchObject({ state: 'confirmed', mismatchSince: null, shown: { hash: 'promo' } });
  });

  it('a label whose change is effective now goes before one whose change is effective tomorrow, even with the radio to spare', () => {
    const { s, clock } = setup();
    confirmedLabel(s, 'NOW', 'ap1', 300);
    confirmedLabel(s, 'TMR', 'ap1', 300);
    s.submit('TMR', [content('base-TMR', 300), content('tmr-rise', 400, { effectiveAt: T0 + 86_400_000 })]);
    s.submit('NOW', [content('now-cut', 250, { effectiveAt: clock.now })]);
    expect(s.next().map((d) => d.hash)).toEqual(['now-cut']);
    expect(s.record('TMR')!.plan.map((p) => p.hash)).toEqual(['base-TMR', 'tmr-rise']);
  });

  it('the entry effective now replaces older due entries of the plan; future ones are kept', () => {
    const { s, clock } = setup();
    s.setLabel('A', { checkInMs: CHECK_IN });
    s.submit('A', [content('p1', 1), content('p2', 2, { effectiveAt: T0 + 100 }), content('p3', 3, { effectiveAt: T0 + 200 })]);
    clock.now = T0 + 150;
    expect(s.record('A')!.plan.map((p) => p.hash)).toEqual(['p2', 'p3']);
  });
});

describe('retries and back-off from the check-in interval', () => {
  it('an unacknowledged transfer times out after 3 check-ins plus its radio time; retries back off 1, 2, 4, 8, 16 check-ins, then stay there; the label is failed after 5 attempts', () => {
    const { s, clock } = setup();
    s.setLabel('A', { checkInMs: CHECK_IN });
    s.heard('A', 'ap1');
    s.submit('A', [content('v', 100)]);
    const timeout = 3 * CHECK_IN + (BYTES * 1000) / 5000;
    const gaps: number[] = [];
    let sentAt = clock.now;
    expect(s.next()).toHaveLength(1);
    for (let attempt = 1; attempt <= 7; attempt++) {
      clock.now = sentAt + timeout - 1;
      expect(s.next()).toEqual([]);
      clock.now = sentAt + timeout;
      expect(s.next()).toEqual([]); // timed out now; the retry waits for its back-off
      const failedAt = clock.now;
      const wake = s.nextWakeAt()!;
      gaps.push(wake - failedAt);
      expect(s.record('A')!.state).toBe(attempt >= 5 ? 'failed' : 'pending');
      clock.now = wake - 1;
      expect(s.next()).toEqual([]);
      clock.now = wake;
      const d = s.next();
      expect(d.map((x) => [x.hash, x.attempt])).toEqual([['v', attempt + 1]]);
      sentAt = clock.now;
    }
    expect(gaps.map((g) => g / CHECK_IN)).toEqual([1, 2, 4, 8, 16, 16, 16]);
    expect(s.stats.ackTimeouts).toBe(7);
    expect(s.record('A')!.lastError).toMatch(/no acknowledgement/);
  });

  it('a failed upload (409, network) backs off the same way; new content makes the label due at once', () => {
    const { s, clock } = setup();
    s.setLabel('A', { checkInMs: CHECK_IN });
    s.heard('A', 'ap1');
    s.submit('A', [content('v1', 100)]);
    const [d] = s.next();
    s.sendFailed('A', d!.seq, 'HTTP 409 Come back later');
    expect(s.record('A')).toMatchObject({ state: 'pending', attempts: 1, lastError: 'HTTP 409 Come back later' });
    expect(s.next()).toEqual([]);
    expect(s.nextWakeAt()).toBe(clock.now + CHECK_IN);
    s.submit('A', [content('v2', 90)]);
    expect(s.next().map((x) => [x.hash, x.attempt])).toEqual([['v2', 1]]);
    // a report for an older attempt changes nothing
    s.sendFailed('A', d!.seq, 'late');
    expect(s.record('A')!.state).toBe('sent');
  });

  it('the AP giving up on a transfer ("xfer timeout") is a failed attempt', () => {
    const { s, clock } = setup();
    s.setLabel('A', { checkInMs: CHECK_IN });
    s.heard('A', 'ap1');
    s.submit('A', [content('v1', 100)]);
    s.next();
    s.transferFailed('A', 'xfer timeout');
    expect(s.record('A')).toMatchObject({ state: 'pending', attempts: 1, lastError: 'xfer timeout', inflight: null });
    expect(s.nextWakeAt()).toBe(clock.now + CHECK_IN);
  });

  it('a failed label that comes back after a silence is tried at once; one that checks in on time keeps its back-off', () => {
    const { s, clock } = setup({ maxAttempts: 3 });
    for (const mac of ['BACK', 'ONTIME']) {
      s.setLabel(mac, { checkInMs: CHECK_IN });
      s.heard(mac, 'ap1');
      s.submit(mac, [content(mac, 100)]);
    }
    // both fail three times (at T0, +1 and +3 check-ins); ONTIME checks in every 40 s throughout
    while (s.record('ONTIME')!.attempts < 3) {
      s.heard('ONTIME', 'ap1');
      for (const d of s.next()) s.sendFailed(d.mac, d.seq, 'HTTP 500');
      clock.now += CHECK_IN;
    }
    expect(s.counts()).toMatchObject({ failed: 2 });
    expect(s.record('BACK')!.nextAttemptAt).toBe(T0 + 7 * CHECK_IN); // 4 check-ins after the third failure
    s.heard('ONTIME', 'ap1');
    s.heard('BACK', 'ap1', T0 - CHECK_IN); // an old report changes nothing
    expect(s.next()).toEqual([]);
    // BACK was silent for 4 check-ins (more than 2): it was out of reach and is back
    s.heard('BACK', 'ap1');
    expect(s.next().map((d) => d.mac)).toEqual(['BACK']);
    expect(s.record('ONTIME')).toMatchObject({ state: 'failed', nextAttemptAt: T0 + 7 * CHECK_IN });
  });
});

describe('confirmation', () => {
  it('HTTP 200 from the AP ("Ok, saved") is not a confirmation: only the acknowledgement is', () => {
    const { s, clock } = setup();
    s.setLabel('A', { checkInMs: CHECK_IN });
    s.heard('A', 'ap1');
    s.submit('A', [content('v1', 100)]);
    const [d] = s.next();
    clock.now += 500;
    s.stored('A', d!.seq);
    expect(s.record('A')).toMatchObject({ state: 'sent', shown: null, inflight: { storedAt: clock.now } });
    // the ack timer restarts from the store at the AP
    expect(s.record('A')!.inflight!.deadline).toBe(clock.now + 3 * CHECK_IN + 400);
    clock.now += 10_000;
    expect(s.acknowledged('A')).toBe(true);
    expect(s.record('A')).toMatchObject({ state: 'confirmed', shown: { hash: 'v1', at: clock.now }, inflight: null, attempts: 0 });
    expect(s.stats.confirmed).toBe(1);
  });

  it('an ack with nothing in flight, or for another content hash, confirms nothing', () => {
    const { s } = setup();
    s.setLabel('A', { checkInMs: CHECK_IN });
    s.heard('A', 'ap1');
    s.submit('A', [content('v1', 100)]);
    expect(s.acknowledged('A')).toBe(false); // not sent yet
    s.next();
    expect(s.acknowledged('A', undefined, 'some-other-hash')).toBe(false);
    expect(s.record('A')).toMatchObject({ state: 'sent', shown: null });
    expect(s.acknowledged('A', undefined, 'v1')).toBe(true);
    expect(s.stats.unmatchedAcks).toBe(2);
    expect(s.acknowledged('UNKNOWN')).toBe(false);
    expect(s.stats.unknownLabels).toBe(1);
  });

  it('counts labels per state, and since when a label has been wrong', () => {
    const { s, clock } = setup();
    confirmedLabel(s, 'A', 'ap1', 100);
    s.setLabel('B', { checkInMs: CHECK_IN });
    s.submit('B', [content('b', 100)]); // no AP has heard B: it waits
    clock.now += 5000;
    expect(s.next()).toEqual([]);
    expect(s.counts()).toEqual({ pending: 1, sent: 0, confirmed: 1, failed: 0 });
    expect(s.record('B')).toMatchObject({ state: 'pending', mismatchSince: T0, ap: null });
    s.heard('B', 'ap2');
    expect(s.next().map((d) => [d.mac, d.ap])).toEqual([['B', 'ap2']]);
  });
});

describe('routes: the AP that last heard a label', () => {
  it('a label heard by another AP gets its content through that one; the transfer at the old AP is given up without counting against the label', () => {
    const { s, clock } = setup();
    s.setLabel('A', { checkInMs: CHECK_IN });
    s.heard('A', 'ap1');
    s.submit('A', [content('v1', 100)]);
    expect(s.next().map((d) => [d.ap, d.attempt])).toEqual([['ap1', 1]]);
    clock.now += 1000;
    s.heard('A', 'ap2');
    s.heard('A', 'ap1', clock.now - 500); // an older report from the first AP does not move it back
    expect(s.record('A')).toMatchObject({ ap: 'ap2', state: 'pending', attempts: 0 });
    expect(s.next().map((d) => [d.ap, d.attempt])).toEqual([['ap2', 1]]);
    expect(s.stats.rerouted).toBe(1);
    expect(s.acknowledged('A')).toBe(true);
  });

  it('an ack reported by an AP the transfer did not go through confirms nothing (that AP may deliver older content it had queued)', () => {
    const { s, clock } = setup();
    s.setLabel('A', { checkInMs: CHECK_IN });
    s.heard('A', 'ap1');
    s.submit('A', [content('old', 100)]);
    s.next();
    clock.now += 1000;
    s.heard('A', 'ap2');
    s.submit('A', [content('new', 120)]);
    expect(s.next().map((d) => [d.hash, d.ap])).toEqual([['new', 'ap2']]);
    expect(s.acknowledged('A', clock.now, undefined, 'ap1')).toBe(false);
    expect(s.record('A')).toMatchObject({ state: 'sent', shown: null });
    expect(s.acknowledged('A', clock.now, undefined, 'ap2')).toBe(true);
    expect(s.record('A')!.shown!.hash).toBe('new');
  });

  it('an AP that restarted lost its queue: its transfers go back to pending; while it is down nothing is sent to it', () => {
    const { s, clock } = setup();
    for (const [mac, ap] of [['A', 'ap1'], ['B', 'ap2']] as const) {
      s.setLabel(mac, { checkInMs: CHECK_IN });
      s.heard(mac, ap);
      s.submit(mac, [content(mac, 100)]);
    }
    expect(s.next()).toHaveLength(2);
    s.apLost('ap1', clock.now + 30_000);
    expect(s.record('A')).toMatchObject({ state: 'pending', attempts: 0, inflight: null });
    expect(s.record('B')!.state).toBe('sent');
    expect(s.next()).toEqual([]);
    expect(s.nextWakeAt()).toBe(clock.now + 30_000);
    clock.now += 30_000;
    expect(s.next().map((d) => [d.mac, d.ap])).toEqual([['A', 'ap1']]);
  });
});

describe('radio budget per AP', () => {
  it('each AP gets at most its burst at once, then its rate; the other AP is not held up', () => {
    const { s, clock } = setup(); // 5000 B/s, 10 s burst = 50,000 B
    const big = 9_472; // a 296x128 two-plane bitmap
    for (let i = 0; i < 20; i++) {
      const mac = `L${String(i).padStart(2, '0')}`;
      s.setLabel(mac, { checkInMs: CHECK_IN });
      s.heard(mac, i < 10 ? 'ap1' : 'ap2');
      s.submit(mac, [content(mac, 100, { bytes: big })]);
    }
    const first = s.next();
    const perAp = (ds: Dispatch[]) => ({ ap1: ds.filter((d) => d.ap === 'ap1').length, ap2: ds.filter((d) => d.ap === 'ap2').length });
    expect(perAp(first)).toEqual({ ap1: 5, ap2: 5 }); // 5 x 9,472 = 47,360 <= 50,000
    expect(s.stats.budgetDeferred).toBeGreaterThan(0);
    // 2,640 B left per AP; the next 9,472 B are there after 6,832 / 5 = 1,366.4 ms
    const wake = s.nextWakeAt()!;
    expect(wake).toBe(T0 + 1367);
    clock.now = wake - 1;
    expect(s.next()).toEqual([]);
    clock.now = wake;
    expect(perAp(s.next())).toEqual({ ap1: 1, ap2: 1 });
  });

  it('the budget is spent in urgency order: the price rise goes before cosmetic content queued earlier', () => {
    const { s, clock } = setup({ burstMs: 1000 }); // 5,000 B: two contents of 2,000 B
    for (const mac of ['C1', 'C2', 'C3']) {
      confirmedLabel(s, mac, 'ap1', 100);
      clock.now += 1000; // budget full again
    }
    s.submit('C1', [content('c1-name', 100, { effectiveAt: clock.now - 10 })]);
    s.submit('C2', [content('c2-name', 100, { effectiveAt: clock.now - 10 })]);
    s.submit('C3', [content('c3-rise', 130, { effectiveAt: clock.now })]);
    expect(s.next().map((d) => d.hash)).toEqual(['c3-rise', 'c1-name']);
  });

  it('content larger than the whole burst still goes when the budget is full', () => {
    const { s } = setup({ burstMs: 1000 });
    s.setLabel('A', { checkInMs: CHECK_IN });
    s.heard('A', 'ap1');
    s.submit('A', [content('huge', 100, { bytes: 60_000 })]);
    expect(s.next().map((d) => d.hash)).toEqual(['huge']);
  });
});

describe('labels going away, and a limit per call', () => {
  it('a removed label is never dispatched and is reported changed (to be deleted)', () => {
    const { s } = setup();
    for (const mac of ['A', 'B']) {
      s.setLabel(mac, { checkInMs: CHECK_IN });
      s.heard(mac, 'ap1');
      s.submit(mac, [content(mac, 100)]);
    }
    s.drainDirty();
    s.removeLabel('A');
    expect(s.drainDirty()).toEqual(['A']);
    expect(s.record('A')).toBeUndefined();
    expect(s.next().map((d) => d.mac)).toEqual(['B']);
    expect(s.acknowledged('A')).toBe(false);
  });

  it('next(now, limit) hands out at most `limit`, the most urgent first, and the rest on the next call', () => {
    const { s } = setup();
    for (const [mac, price] of [['A', 100], ['B', 300], ['C', 200]] as const) {
      s.setLabel(mac, { checkInMs: CHECK_IN });
      s.heard(mac, mac === 'B' ? 'ap2' : 'ap1');
      s.submit(mac, [content(mac, price)]);
    }
    // no label has shown anything yet: all are rises, in MAC order
    expect(s.next(undefined, 2).map((d) => d.mac)).toEqual(['A', 'B']);
    expect(s.next(undefined, 2).map((d) => d.mac)).toEqual(['C']);
  });
});

describe('state for the repository', () => {
  it('a restored record carries on: confirmed content is not resent, a transfer in flight still awaits its ack', () => {
    const { s, clock } = setup();
    confirmedLabel(s, 'DONE', 'ap1', 100, 'done-hash');
    s.setLabel('WAIT', { checkInMs: CHECK_IN });
    s.heard('WAIT', 'ap1');
    s.submit('WAIT', [content('wait-hash', 100)]);
    s.next();
    s.setLabel('TODO', { checkInMs: CHECK_IN });
    s.submit('TODO', [content('todo-hash', 100)]);
    const dirty = s.drainDirty().sort();
    expect(dirty).toEqual(['DONE', 'TODO', 'WAIT']);
    expect(s.drainDirty()).toEqual([]);

    const again = new DeliveryScheduler({ clock: () => clock.now });
    again.restore(['DONE', 'WAIT', 'TODO'].map((m) => s.record(m)!));
    again.submit('DONE', [content('done-hash', 100)]); // the same content re-rendered after the restart
    expect(again.next()).toEqual([]);
    expect(again.acknowledged('WAIT')).toBe(true);
    expect(again.record('WAIT')!.state).toBe('confirmed');
    again.heard('TODO', 'ap1');
    expect(again.next().map((d) => [d.mac, d.hash, d.seq])).toEqual([['TODO', 'todo-hash', 1]]);
    // seqs continue where they were
    expect(again.submit('DONE', [content('done-2', 101)])).toEqual([3]);
  });
});

describe('room at the driver', () => {
  it('an AP without room takes no more this round and is not paused; the others go on; the rest follow when room comes back', () => {
    const { s } = setup({ apBytesPerSecond: 1_000_000, burstMs: 3_600_000 });
    for (let i = 0; i < 10; i++) {
      for (const ap of ['ap1', 'ap2']) {
        const mac = `${ap}-${i}`;
        s.setLabel(mac, { checkInMs: CHECK_IN });
        s.heard(mac, ap);
        s.submit(mac, [content(`h-${mac}`, 100)]);
      }
    }
    const room = new Map([
      ['ap1', 3],
      ['ap2', 0],
    ]);
    const first = s.next(T0, Infinity, (ap) => room.get(ap)!);
    expect(first.map((d) => d.ap)).toEqual(['ap1', 'ap1', 'ap1']);
    expect(s.counts().pending).toBe(17);
    // nothing was failed or paused: with room, every other label goes at once
    room.set('ap1', 100).set('ap2', 100);
    const rest = s.next(T0, Infinity, (ap) => room.get(ap)!);
    expect(rest).toHaveLength(17);
    expect(rest.every((d) => d.attempt === 1)).toBe(true);
    expect(s.stats.sendFailures).toBe(0);
  });
});

describe('check-ins', () => {
  it('a check-in on time at the same AP is not a change to save; a move, a return after silence and a first check-in are', () => {
    const { s, clock } = setup();
    confirmedLabel(s, 'A', 'ap1', 100);
    s.drainDirty();
    clock.now += CHECK_IN;
    expect(s.heard('A', 'ap1')).toBe(false);
    expect(s.drainDirty()).toEqual([]);
    expect(s.peek('A')!.lastHeardAt).toBe(clock.now); // kept in memory all the same
    clock.now += CHECK_IN;
    expect(s.heard('A', 'ap2')).toBe(true); // moved
    expect(s.drainDirty()).toEqual(['A']);
    clock.now += 10 * CHECK_IN;
    expect(s.heard('A', 'ap2')).toBe(true); // back after a silence
    s.setLabel('B', { checkInMs: CHECK_IN });
    s.drainDirty();
    expect(s.heard('B', 'ap1')).toBe(true); // first heard: a route
  });
});
