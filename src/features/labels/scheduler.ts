/**
 * Delivery of label content: which label gets which content through which access point, when, and
 * when it counts as shown. Pure and deterministic: no I/O, no timers; time comes from an injected
 * clock (or the `now` argument), and the caller (the labels service, next session) feeds it the
 * driver's events and hands what `next()` returns to the driver.
 *
 * Design note: why these rules and orderings.
 *
 * - Radio time is the scarce resource. An OpenEPaperLink access point carries about 5 kB/s and a
 *   label takes content only when it checks in (about every 40 s), so a chain-wide change to
 *   thousands of labels takes many minutes. What is sent first therefore matters, and what is
 *   sent needlessly is time stolen from a label that shows a wrong price.
 * - Coalescing: a label's plan is replaced as a whole by the newest content (one price version
 *   gives "now" plus the promotion's start and end). Only the entry effective now is ever sent; an
 *   older one that was never sent is dropped without costing radio time. Content whose hash equals
 *   what the label confirmed showing is never sent (the AP would not even transfer it, and no
 *   acknowledgement would follow).
 * - One transfer per label at a time. OEPL's acknowledgement ("<MAC> reports xfer complete" on the
 *   AP's WebSocket) names the label, not the content. With two contents outstanding an ack could
 *   not say which one the label shows, and a label must never be marked confirmed on content it
 *   does not show. So newer content waits until the transfer in flight is acknowledged, fails or
 *   times out; that costs at most one check-in cycle for a label changed mid-transfer. A driver
 *   that learns the shown content's hash (by reconciling against the AP's tag database) passes it
 *   with the ack, and only a matching hash confirms.
 * - Confirmation only on the acknowledgement. HTTP 200 from /jsonupload ("Ok, saved") means stored
 *   at the AP, which may still lose it (restart: its queue is memory) or time out on the label;
 *   `stored()` only restarts the ack timer.
 * - Never early. A plan entry with a future effective time is not due before that time (the till
 *   charges by the same rule, so a label showing tomorrow's price today is as wrong as one showing
 *   yesterday's). It becomes due exactly at its time; nextWakeAt() includes it.
 * - Urgency order among due labels (lower first), measured against what the label confirmed
 *   showing:
 *     0 PRICE_RISE: the new price is higher, or the label shows no or another currency's price.
 *       Until it switches the till charges more than the shelf says: the overcharge that brings
 *       complaints and fines, so it goes first.
 *     1 PRICE_CUT: the new price is lower (a promotion that starts, a cut). The customer is charged
 *       less than the label says: wrong, but in the customer's favour.
 *     2 PRICE_DETAIL: same price, another was-price or unit price.
 *     3 COSMETIC: same prices, other text (a name, a layout).
 *   Within a class the content due longest goes first (the oldest mismatch), then by MAC so the
 *   order is deterministic. "Effective now before effective tomorrow" follows: tomorrow's is not
 *   due today, and tomorrow it is ordered by its class and how long it has been due.
 * - Capacity: each AP has a byte budget refilled at its radio rate (default 5,000 B/s) with a
 *   burst of `burstMs` of radio time. A dispatch spends the content's radio bytes. The budget
 *   keeps the AP's own queue (which we cannot reorder and which a crash loses) short, so the
 *   urgency order is decided here and not by whatever the AP happened to queue first. An AP whose
 *   most urgent content does not fit its remaining budget takes nothing until it does (a small
 *   cosmetic content never overtakes a price change for the same radio); other APs still go.
 * - Route: a label is reached through the AP that last heard it (`heard()`, newest time wins).
 *   When it moves to another AP, a transfer outstanding at the old one is given up (not counted as
 *   a failed attempt) and the content is sent through the new one; an ack then counts only from the
 *   AP the transfer went through, since the old one may still deliver what it had queued. An AP that went down or
 *   restarted loses its queue: `apLost()` returns its outstanding transfers to pending, likewise
 *   without counting them against the label.
 * - Timeouts and back-off derive from the label's check-in interval: an ack is awaited for
 *   `ackCheckIns` check-ins plus the radio time of the content; a failed attempt n waits
 *   checkIn x 2^(n-1), at most checkIn x `maxBackoffCheckIns`. After `maxAttempts` failed attempts
 *   the label is `failed` (reported) and still retried at the longest back-off; hearing from it
 *   again after a silence of more than LOST_CHECK_INS check-ins makes it due at once.
 *
 * Cost. Due labels wait in one priority queue per AP and every label has one timer (ack deadline,
 * end of back-off, next effective time), so next() costs O(log n) per dispatch and per timer that
 * fired, not a scan of every label: bench/labels-schedule.ts hands 10,000 price changes over
 * 10 APs out in about 0.2 s of CPU (rendering them: about 0.6 s).
 *
 * States per label (LabelRecord.state): `pending` (content to send, waiting for its turn, a route,
 * budget or back-off), `sent` (handed to an AP, waiting for the ack), `confirmed` (it shows the
 * content effective now), `failed` (attempts exhausted). The record is what the repository keeps,
 * so after a restart nothing confirmed is resent and nothing unconfirmed is forgotten.
 */

import { Heap } from '../../util/heap';

/** Urgency classes, lower first (see the design note). */
export const Urgency = { PRICE_RISE: 0, PRICE_CUT: 1, PRICE_DETAIL: 2, COSMETIC: 3 } as const;
export type Urgency = (typeof Urgency)[keyof typeof Urgency];

export type DeliveryState = 'pending' | 'sent' | 'confirmed' | 'failed';

/** One content a label should show from `effectiveAt` on, as submitted. */
export interface ContentInput {
  /** Identity of what the label shows (content.ts: RenderedContent.hash). */
  hash: string;
  /** What goes to the driver (the OEPL JSON template). */
  body: string;
  /** Radio bytes of the transfer, for the AP budget. */
  bytes: number;
  /** ms epoch from which the label must show it. */
  effectiveAt: number;
  /** The price shown, minor units; null if it shows none. */
  price: number | null;
  currency: string | null;
  /** Equal for contents that show the same prices (price, was-price, unit price, currency). */
  priceKey: string;
}

/** A content with the per-label sequence number the scheduler gave it (the content version). */
export interface ContentVersion extends ContentInput {
  seq: number;
}

export interface InFlight {
  content: ContentVersion;
  ap: string;
  sentAt: number;
  /** When the AP answered that it stored the content (HTTP 200); null before. */
  storedAt: number | null;
  /** The transfer counts as failed if no ack arrives by then. */
  deadline: number;
}

export interface ShownContent {
  seq: number;
  hash: string;
  price: number | null;
  currency: string | null;
  priceKey: string;
  /** ms epoch of the acknowledgement. */
  at: number;
}

/** Everything the scheduler knows about one label: what the repository stores. */
export interface LabelRecord {
  mac: string;
  checkInMs: number;
  /** The AP that last heard it, and when. */
  ap: string | null;
  lastHeardAt: number | null;
  /** Highest content seq given to this label. */
  lastSeq: number;
  /** Contents by effectiveAt, ascending; at most MAX_PLAN. The entry effective now is the target. */
  plan: ContentVersion[];
  shown: ShownContent | null;
  inflight: InFlight | null;
  state: DeliveryState;
  /** Failed attempts since the last success or new content. */
  attempts: number;
  /** No attempt before this ms epoch (back-off). */
  nextAttemptAt: number;
  lastError: string | null;
  /** Since when the label has not shown what it should (ms epoch), null when it does. */
  mismatchSince: number | null;
}

/** What the driver must send now. */
export interface Dispatch {
  mac: string;
  ap: string;
  seq: number;
  hash: string;
  body: string;
  bytes: number;
  urgency: Urgency;
  /** The attempt number (1 = first). */
  attempt: number;
}

export interface SchedulerOptions {
  clock: () => number;
  /** Radio bytes per second per AP (default 5000). */
  apBytesPerSecond?: number;
  /** Budget burst in ms of radio time (default 10,000). */
  burstMs?: number;
  /** Check-ins to wait for an ack (default 3). */
  ackCheckIns?: number;
  /** Failed attempts before a label is `failed` (default 5). */
  maxAttempts?: number;
  /** Longest back-off in check-ins (default 16). */
  maxBackoffCheckIns?: number;
}

export interface SchedulerStats {
  dispatched: number;
  confirmed: number;
  ackTimeouts: number;
  sendFailures: number;
  transferFailures: number;
  /** Acks that matched no transfer in flight (or another hash): never confirm anything. */
  unmatchedAcks: number;
  /** Events for a MAC the scheduler does not know (not counted per MAC: no map keyed by input). */
  unknownLabels: number;
  /** Outstanding transfers given up because the label moved or the AP was lost. */
  rerouted: number;
  /** Contents replaced before they were sent (coalesced). */
  coalesced: number;
  /** Times a due label waited because its AP's budget was spent. */
  budgetDeferred: number;
}

/** A label not heard for more than this many check-ins was out of reach. */
export const LOST_CHECK_INS = 2;

/** Most plan entries per label (a price and its promotion's start and end need three). */
export const MAX_PLAN = 8;

interface QueueEntry {
  urgency: Urgency;
  dueAt: number;
  mac: string;
  seq: number;
  ap: string;
}

interface Timer {
  at: number;
  mac: string;
}

function before(a: QueueEntry, b: QueueEntry): boolean {
  return a.urgency !== b.urgency ? a.urgency < b.urgency : a.dueAt !== b.dueAt ? a.dueAt < b.dueAt : a.mac < b.mac;
}

interface Bucket {
  tokens: number;
  at: number;
  /** The AP takes nothing before this (down, or answering 409). */
  pausedUntil: number;
}

export class DeliveryScheduler {
  private readonly labels = new Map<string, LabelRecord>();
  private readonly buckets = new Map<string, Bucket>();
  private readonly dirty = new Set<string>();
  /** Per AP, the labels due for sending in urgency order (entries checked when they reach the top). */
  private readonly queues = new Map<string, Heap<QueueEntry>>();
  /** The key of the queue entry a label has (so repeated events do not pile up entries). */
  private readonly queued = new Map<string, string>();
  /** When a label next needs a look: its ack deadline, the end of its back-off, its next effective time. */
  private readonly timers = new Heap<Timer>((a, b) => a.at < b.at || (a.at === b.at && a.mac < b.mac));
  private readonly timerAt = new Map<string, number>();
  private readonly rate: number;
  private readonly burst: number;
  private readonly ackCheckIns: number;
  private readonly maxAttempts: number;
  private readonly maxBackoffCheckIns: number;
  readonly stats: SchedulerStats = {
    dispatched: 0,
    confirmed: 0,
    ackTimeouts: 0,
    sendFailures: 0,
    transferFailures: 0,
    unmatchedAcks: 0,
    unknownLabels: 0,
    rerouted: 0,
    coalesced: 0,
    budgetDeferred: 0,
  };

  constructor(private readonly o: SchedulerOptions) {
    this.rate = o.apBytesPerSecond ?? 5000;
    this.burst = (this.rate * (o.burstMs ?? 10_000)) / 1000;
    this.ackCheckIns = o.ackCheckIns ?? 3;
    this.maxAttempts = o.maxAttempts ?? 5;
    this.maxBackoffCheckIns = o.maxBackoffCheckIns ?? 16;
  }

  // ---- labels ----

  /** Adds a label (or changes its check-in interval). */
  setLabel(mac: string, opts: { checkInMs: number }): void {
    if (!(opts.checkInMs > 0)) throw new RangeError(`check-in interval of ${mac} must be positive`);
    const l = this.labels.get(mac);
    if (l) {
      l.checkInMs = opts.checkInMs;
    } else {
      this.labels.set(mac, {
        mac,
        checkInMs: opts.checkInMs,
        ap: null,
        lastHeardAt: null,
        lastSeq: 0,
        plan: [],
        shown: null,
        inflight: null,
        state: 'pending',
        attempts: 0,
        nextAttemptAt: 0,
        lastError: null,
        mismatchSince: null,
      });
    }
    this.touch(mac);
  }

  removeLabel(mac: string): void {
    if (this.labels.delete(mac)) this.dirty.add(mac);
    this.queued.delete(mac);
    this.timerAt.delete(mac);
  }

  /** Restores records as the repository loaded them (at start, before any event). */
  restore(records: Iterable<LabelRecord>): void {
    const now = this.o.clock();
    for (const r of records) {
      const l = structuredClone(r);
      this.labels.set(r.mac, l);
      this.evaluate(l, now);
    }
  }

  /**
   * A copy of the label's record. The content versions in it are shared, not copied (they are
   * frozen and never changed: a new plan replaces them), so a save does not copy kilobytes of bodies.
   */
  record(mac: string): LabelRecord | undefined {
    const l = this.labels.get(mac);
    if (!l) return undefined;
    this.refresh(l, this.o.clock());
    return { ...l, plan: l.plan.slice(), shown: l.shown ? { ...l.shown } : null, inflight: l.inflight ? { ...l.inflight } : null };
  }

  /**
   * The label's record as the scheduler holds it, brought up to `now` but not copied: for reports
   * over thousands of labels (record() clones, with every content body). Callers must not change it.
   */
  peek(mac: string): Readonly<LabelRecord> | undefined {
    const l = this.labels.get(mac);
    if (!l) return undefined;
    this.refresh(l, this.o.clock());
    return l;
  }

  macs(): string[] {
    return [...this.labels.keys()];
  }

  /** MACs whose record changed since the last call (to be saved); a removed MAC is in it too. */
  drainDirty(): string[] {
    const out = [...this.dirty];
    this.dirty.clear();
    return out;
  }

  /** MACs changed since the last drainDirty(), without draining them (what the next save covers). */
  pendingDirty(): ReadonlySet<string> {
    return this.dirty;
  }

  /** Marks a label to be saved again (its last save failed). */
  markDirty(mac: string): void {
    this.dirty.add(mac);
  }

  /** Labels per state, at `now`. */
  counts(now = this.o.clock()): Record<DeliveryState, number> {
    const c = { pending: 0, sent: 0, confirmed: 0, failed: 0 };
    for (const l of this.labels.values()) {
      this.refresh(l, now);
      c[l.state]++;
    }
    return c;
  }

  // ---- inputs ----

  /**
   * Replaces the label's plan with `contents` (sorted by effectiveAt; one price version's
   * timeline). Returns the seqs given. New content resets the back-off: it is due at once.
   */
  submit(mac: string, contents: readonly ContentInput[]): number[] {
    const l = this.labels.get(mac);
    if (!l) {
      this.stats.unknownLabels++;
      throw new RangeError(`label ${mac} is not known to the scheduler`);
    }
    if (contents.length === 0 || contents.length > MAX_PLAN) throw new RangeError(`a plan has 1..${MAX_PLAN} contents, got ${contents.length}`);
    for (let i = 1; i < contents.length; i++) {
      if (contents[i]!.effectiveAt < contents[i - 1]!.effectiveAt) throw new RangeError('contents must be sorted by effectiveAt');
    }
    const now = this.o.clock();
    // Entries of the old plan that were due and never reached the label are coalesced away.
    for (const c of l.plan) if (c.effectiveAt <= now && c.hash !== l.shown?.hash && c.hash !== l.inflight?.content.hash) this.stats.coalesced++;
    l.plan = contents.map((c) => Object.freeze({ ...c, seq: ++l.lastSeq }));
    l.attempts = 0;
    l.nextAttemptAt = 0;
    l.lastError = null;
    this.evaluate(l, now);
    this.touch(mac);
    return l.plan.map((c) => c.seq);
  }

  /**
   * The label checked in through `ap` at `at` (a check-in on the WebSocket or in /get_db). `ap` is
   * an AP id of the configuration: the scheduler keeps one queue and one budget per AP it is told.
   * Returns whether something worth saving changed (route, a return after a silence, the state).
   */
  heard(mac: string, ap: string, at: number = this.o.clock()): boolean {
    const l = this.labels.get(mac);
    if (!l) {
      this.stats.unknownLabels++;
      return false;
    }
    if (l.lastHeardAt !== null && at < l.lastHeardAt) return false;
    // Silent for more than LOST_CHECK_INS check-ins: the label was out of reach and is back.
    const returned = l.lastHeardAt === null || at - l.lastHeardAt > LOST_CHECK_INS * l.checkInMs;
    const moved = l.ap !== null && l.ap !== ap;
    l.ap = ap;
    l.lastHeardAt = at;
    if (moved && l.inflight && l.inflight.ap !== ap) {
      // The content waits at the old AP for a label that now listens to another one.
      l.inflight = null;
      l.nextAttemptAt = 0;
      this.stats.rerouted++;
    }
    // A failed label that comes back after a silence is reachable again: try it at once. (One that
    // checks in on time but never acknowledges keeps its back-off.)
    if (returned && l.attempts >= this.maxAttempts) l.nextAttemptAt = 0;
    const state = l.state;
    this.evaluate(l, this.o.clock());
    // A check-in on time at the same AP changes nothing worth a write: 10,000 labels check in 250
    // times a second, and rewriting each row for it cost most of a core. The route, a return after
    // a silence and a state change are saved; lastHeardAt alone rides along with the next save.
    const changed = moved || returned || l.state !== state;
    if (changed) this.touch(mac);
    return changed;
  }

  /** The AP answered 200 to the upload: stored there, NOT shown. Restarts the ack timer. */
  stored(mac: string, seq: number, at: number = this.o.clock()): void {
    const l = this.labels.get(mac);
    if (!l) return void this.stats.unknownLabels++;
    if (!l.inflight || l.inflight.content.seq !== seq) return;
    l.inflight.storedAt = at;
    l.inflight.deadline = at + this.ackTimeout(l, l.inflight.content.bytes);
    this.evaluate(l, this.o.clock());
    // Not marked dirty: the stored answer changes nothing a restart needs (transfers in flight at a
    // restart go out again at once, whatever their deadline) nor anything the integrity shows, and
    // saving it was a third write per label. The next save of the label carries it.
  }

  /**
   * The label acknowledged a transfer ("xfer complete"). Without `hash` it confirms the content in
   * flight, and only if it came from the AP that transfer went through (`ap`, when the driver says
   * which AP reported it: an AP the label left may still deliver the older content it had queued).
   * With `hash` (learnt from the AP's tag database) only content with that hash is confirmed.
   * Returns whether something was confirmed.
   */
  acknowledged(mac: string, at: number = this.o.clock(), hash?: string, ap?: string): boolean {
    const l = this.labels.get(mac);
    if (!l) {
      this.stats.unknownLabels++;
      return false;
    }
    let c: ContentVersion | undefined;
    if (l.inflight && (hash === undefined ? ap === undefined || ap === l.inflight.ap : hash === l.inflight.content.hash)) c = l.inflight.content;
    else if (hash !== undefined) c = l.plan.find((p) => p.hash === hash && p.effectiveAt <= at);
    if (!c) {
      this.stats.unmatchedAcks++;
      return false;
    }
    l.shown = { seq: c.seq, hash: c.hash, price: c.price, currency: c.currency, priceKey: c.priceKey, at };
    l.inflight = null;
    l.attempts = 0;
    l.nextAttemptAt = 0;
    l.lastError = null;
    this.stats.confirmed++;
    this.evaluate(l, this.o.clock());
    this.touch(mac);
    return true;
  }

  /** The upload failed (network error, 409, garbage answer): the attempt failed. */
  sendFailed(mac: string, seq: number, reason: string): void {
    const l = this.labels.get(mac);
    if (!l) return void this.stats.unknownLabels++;
    if (!l.inflight || l.inflight.content.seq !== seq) return;
    this.stats.sendFailures++;
    this.fail(l, reason, this.o.clock());
  }

  /** The AP gave up on the transfer (its "xfer timeout" for the MAC): the attempt failed. */
  transferFailed(mac: string, reason: string): void {
    const l = this.labels.get(mac);
    if (!l) return void this.stats.unknownLabels++;
    if (!l.inflight) return;
    this.stats.transferFailures++;
    this.fail(l, reason, this.o.clock());
  }

  /**
   * The AP restarted or is down: what it had queued is gone. Its outstanding transfers go back to
   * pending (not counted against the labels); with `until`, nothing is sent to it before then.
   */
  apLost(ap: string, until?: number): void {
    for (const l of this.labels.values()) {
      if (l.inflight?.ap === ap) {
        l.inflight = null;
        l.nextAttemptAt = 0;
        this.stats.rerouted++;
        this.evaluate(l, this.o.clock());
        this.touch(l.mac);
      }
    }
    if (until !== undefined) this.bucket(ap, this.o.clock()).pausedUntil = until;
  }

  // ---- output ----

  /**
   * What to send now, in urgency order, within each AP's budget. Each returned dispatch is in
   * flight from here on: the caller reports stored / sendFailed / acknowledged for it.
   * `room(ap)`: how many more uploads the caller can take for that AP now (its driver's request
   * queue); an AP without room takes nothing this time, as one without budget, and is not paused.
   */
  next(now: number = this.o.clock(), limit = Infinity, room?: (ap: string) => number): Dispatch[] {
    // Labels whose time has come: an ack deadline, the end of a back-off, an effective time.
    for (let t = this.timers.peek(); t && t.at <= now; t = this.timers.peek()) {
      this.timers.pop();
      if (this.timerAt.get(t.mac) !== t.at) continue; // stale: the label's timer moved
      this.timerAt.delete(t.mac);
      const l = this.labels.get(t.mac);
      if (!l) continue;
      if (l.inflight && l.inflight.deadline <= now) {
        this.stats.ackTimeouts++;
        this.fail(l, `no acknowledgement within ${l.inflight.deadline - l.inflight.sentAt} ms`, now);
      }
      this.evaluate(l, now);
    }
    const out: Dispatch[] = [];
    const blocked = new Set<string>();
    const left = new Map<string, number>();
    if (room) for (const ap of this.queues.keys()) if (room(ap) <= 0) blocked.add(ap);
    while (out.length < limit) {
      // The most urgent label among the APs that can take its content now.
      let best: { e: QueueEntry; c: ContentVersion; q: Heap<QueueEntry> } | null = null;
      for (const [ap, q] of this.queues) {
        if (blocked.has(ap)) continue;
        const top = this.validTop(q, now);
        if (!top) continue;
        const b = this.bucket(ap, now);
        // Content larger than the whole burst goes when the bucket is full, or it would never go.
        if (b.pausedUntil > now || b.tokens < Math.min(top.c.bytes, this.burst)) {
          if (b.pausedUntil <= now) this.stats.budgetDeferred++;
          blocked.add(ap);
          continue;
        }
        if (!best || before(top.e, best.e)) best = { ...top, q };
      }
      if (!best) break;
      const { e, c, q } = best;
      q.pop();
      this.queued.delete(e.mac);
      const l = this.labels.get(e.mac)!;
      this.bucket(e.ap, now).tokens -= c.bytes;
      l.inflight = { content: c, ap: e.ap, sentAt: now, storedAt: null, deadline: now + this.ackTimeout(l, c.bytes) };
      this.stats.dispatched++;
      this.evaluate(l, now);
      this.touch(l.mac);
      out.push({ mac: l.mac, ap: e.ap, seq: c.seq, hash: c.hash, body: c.body, bytes: c.bytes, urgency: e.urgency, attempt: l.attempts + 1 });
      if (room) {
        const n = (left.get(e.ap) ?? room(e.ap)) - 1;
        left.set(e.ap, n);
        if (n <= 0) blocked.add(e.ap);
      }
    }
    return out;
  }

  /** When next() may have something new to do: a deadline, a back-off, an effective time, budget. Null: nothing until an event. */
  nextWakeAt(now: number = this.o.clock()): number | null {
    let top = this.timers.peek();
    while (top && this.timerAt.get(top.mac) !== top.at) {
      this.timers.pop();
      top = this.timers.peek();
    }
    let t = top?.at ?? Infinity;
    for (const [ap, q] of this.queues) {
      const top = this.validTop(q, now);
      if (!top) continue;
      const b = this.bucket(ap, now);
      const need = Math.min(top.c.bytes, this.burst);
      const budgetAt = b.tokens >= need ? now : now + Math.ceil(((need - b.tokens) * 1000) / this.rate);
      t = Math.min(t, Math.max(b.pausedUntil, budgetAt));
    }
    return t === Infinity ? null : t;
  }

  // ---- internals ----

  /**
   * Puts the label where it belongs after a change: in its AP's queue if its content is due and
   * sendable now, and on the timer for the next moment that changes that (deadline, back-off end,
   * next effective time).
   */
  private evaluate(l: LabelRecord, now: number): void {
    this.refresh(l, now);
    let wake = Infinity;
    if (l.inflight) {
      wake = l.inflight.deadline;
    } else {
      const c = this.target(l, now);
      if (c && c.hash !== l.shown?.hash) {
        if (l.nextAttemptAt > now) {
          wake = l.nextAttemptAt;
        } else if (l.ap !== null) {
          const e: QueueEntry = { urgency: this.urgency(l.shown, c), dueAt: Math.max(c.effectiveAt, l.nextAttemptAt), mac: l.mac, seq: c.seq, ap: l.ap };
          const key = `${e.ap}|${e.seq}|${e.urgency}|${e.dueAt}`;
          if (this.queued.get(l.mac) !== key) {
            this.queued.set(l.mac, key);
            let q = this.queues.get(e.ap);
            if (!q) this.queues.set(e.ap, (q = new Heap(before)));
            q.push(e);
          }
        }
      }
    }
    for (const p of l.plan) {
      if (p.effectiveAt > now) {
        wake = Math.min(wake, p.effectiveAt);
        break;
      }
    }
    // One live timer per label: a heap entry whose time is not the label's timerAt is stale and skipped.
    if (wake === Infinity) {
      this.timerAt.delete(l.mac);
    } else if (this.timerAt.get(l.mac) !== wake) {
      this.timerAt.set(l.mac, wake);
      this.timers.push({ at: wake, mac: l.mac });
    }
  }

  /** The AP queue's top entry if it still stands (label due, same content, same urgency); stale entries are dropped. */
  private validTop(q: Heap<QueueEntry>, now: number): { e: QueueEntry; c: ContentVersion } | null {
    for (let e = q.peek(); e; e = q.peek()) {
      const l = this.labels.get(e.mac);
      const c = l && !l.inflight && l.ap === e.ap && l.nextAttemptAt <= now ? this.target(l, now) : undefined;
      if (l && c && c.seq === e.seq && c.hash !== l.shown?.hash && this.urgency(l.shown, c) === e.urgency) return { e, c };
      q.pop();
      if (l && this.queued.get(e.mac) === `${e.ap}|${e.seq}|${e.urgency}|${e.dueAt}`) {
        this.queued.delete(e.mac);
        this.evaluate(l, now);
      }
    }
    return null;
  }

  /** The plan entry effective at `now`: the newest whose effectiveAt has come. */
  private target(l: LabelRecord, now: number): ContentVersion | undefined {
    let c: ContentVersion | undefined;
    for (const p of l.plan) {
      if (p.effectiveAt <= now) c = p;
      else break;
    }
    return c;
  }

  private urgency(shown: ShownContent | null, c: ContentVersion): Urgency {
    if (!shown || shown.price === null || c.price === null || shown.currency !== c.currency) return Urgency.PRICE_RISE;
    if (c.price > shown.price) return Urgency.PRICE_RISE;
    if (c.price < shown.price) return Urgency.PRICE_CUT;
    return c.priceKey !== shown.priceKey ? Urgency.PRICE_DETAIL : Urgency.COSMETIC;
  }

  private ackTimeout(l: LabelRecord, bytes: number): number {
    return l.checkInMs * this.ackCheckIns + Math.ceil((bytes * 1000) / this.rate);
  }

  private fail(l: LabelRecord, reason: string, now: number): void {
    l.inflight = null;
    l.attempts++;
    const backoff = l.checkInMs * Math.min(2 ** (l.attempts - 1), this.maxBackoffCheckIns);
    l.nextAttemptAt = now + backoff;
    l.lastError = reason;
    this.evaluate(l, now);
    this.touch(l.mac);
  }

  /** Drops plan entries superseded at `now` and derives state and mismatchSince. */
  private refresh(l: LabelRecord, now: number): void {
    let cur = -1;
    for (let i = 0; i < l.plan.length; i++) if (l.plan[i]!.effectiveAt <= now) cur = i;
    if (cur > 0) {
      // Only the newest due entry matters; the in-flight one is kept in `inflight` itself.
      for (const p of l.plan.slice(0, cur)) if (p.hash !== l.shown?.hash && p.hash !== l.inflight?.content.hash) this.stats.coalesced++;
      l.plan = l.plan.slice(cur);
      this.touch(l.mac);
    }
    const target = cur >= 0 ? l.plan[0] : undefined;
    const showsTarget = target !== undefined && target.hash === l.shown?.hash;
    const state: DeliveryState = l.inflight ? 'sent' : target === undefined || showsTarget ? (l.shown || target ? 'confirmed' : 'pending') : l.attempts >= this.maxAttempts ? 'failed' : 'pending';
    const mismatchSince = target === undefined || showsTarget ? null : (l.mismatchSince ?? target.effectiveAt);
    if (state !== l.state || mismatchSince !== l.mismatchSince) {
      l.state = state;
      l.mismatchSince = mismatchSince;
      this.touch(l.mac);
    }
  }

  private bucket(ap: string, now: number): Bucket {
    let b = this.buckets.get(ap);
    if (!b) {
      b = { tokens: this.burst, at: now, pausedUntil: 0 };
      this.buckets.set(ap, b);
    } else if (now > b.at) {
      b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) * this.rate) / 1000);
      b.at = now;
    }
    return b;
  }

  private touch(mac: string): void {
    this.dirty.add(mac);
  }
}
