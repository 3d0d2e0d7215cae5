/**
 * Central's change feed into the store: a loop long-polls fetchChanges(cursor, long_poll_s); each
 * page is validated and applied by the appliers of its change types (appliers.ts) with the version
 * rule, and the appliers' writes, the acks of the page and the next cursor are committed in ONE
 * transaction: the cursor is never ahead of what is applied, and acks survive a crash
 * (pending_acks; sent by acks.ts). A page that fails (e.g. a store error) is not committed and is
 * fetched again. Invalid changes (bad GTIN, unknown slot, unknown type) are acknowledged `invalid`
 * and never block the feed.
 *
 * A cursor central no longer knows (410 cursor_expired, 400 invalid_cursor) is dropped and the
 * feed read again from the start: the version rule makes that safe.
 */
import { LogLimiter } from '../log';
import { Backoff, sleep } from '../util/backoff';
import type { ChangeApplier, ChangeAppliers, VersionedChange } from './appliers';
import { failureOf } from './failure';
import { changeIdOf, unknownTypeDetail, validateEnvelope } from './prices';
import type { ExchangeOptions } from './status';
import type { ChangeAck } from './types';

export interface ChangeFeedOptions extends ExchangeOptions {
  appliers: ChangeAppliers;
  longPollS: number;
  /** Central answered the feed: other directions may stop waiting for it. */
  reachable: () => void;
  /** New acks are pending. */
  acksPending: () => void;
}

export class ChangeFeed {
  private readonly limiter: LogLimiter;
  private readonly backoff: Backoff;

  constructor(private readonly o: ChangeFeedOptions) {
    this.limiter = new LogLimiter(o.log);
    this.backoff = new Backoff({ initialMs: o.backoff.initial_ms, maxMs: o.backoff.max_ms });
  }

  /** Runs until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    const { transport, repo } = this.o;
    while (!signal.aborted) {
      let page: { changes: unknown[]; nextCursor: string | null };
      let cursor: string | null = null;
      try {
        cursor = repo.cursor();
        page = await transport.fetchChanges(cursor, this.o.longPollS, signal);
      } catch (e) {
        if (signal.aborted) break;
        const f = failureOf(e);
        if (f.kind === 'cursor_lost' || f.code === 'cursor_expired' || f.code === 'invalid_cursor') {
          this.o.log.warn({ cursor, code: f.code }, 'central does not know the feed cursor: reading the feed again from the start');
          try {
            repo.setCursor(null);
            continue;
          } catch (err) {
            e = err; // the store cannot write now (disk full): back off like any failure, the loop lives on
          }
        }
        this.o.failed(e, 'changes');
        await sleep(this.o.delayFor(e, this.backoff), signal);
        continue;
      }
      this.o.succeeded('changes');
      this.backoff.reset();
      this.o.reachable();
      if (signal.aborted) break;
      try {
        await this.applyPage(page.changes, page.nextCursor, cursor);
      } catch (e) {
        if (signal.aborted) break;
        this.limiter.error(`apply:${failureOf(e).code}`, { err: (e as Error)?.message }, 'applying a page of changes failed: it will be fetched again');
        await sleep(this.backoff.next(), signal);
      }
    }
  }

  /** Applies one page with the version rule; commits the appliers' writes, the acks and the cursor together. */
  async applyPage(changes: unknown[], nextCursor: string | null, prevCursor: string | null): Promise<void> {
    const nowMs = Date.now();
    const nowIso = new Date(nowMs).toISOString();
    const acks = new Map<string, ChangeAck>();
    const ack = (a: ChangeAck): void => {
      acks.set(a.change_id, a);
    };
    const invalid = (id: string, detail: string): void => {
      ack({ change_id: id, status: 'invalid', applied_at: nowIso, detail: detail.slice(0, 500) });
      this.limiter.warn('invalid-change', { change_id: id, detail }, 'invalid change from central acknowledged as invalid');
    };
    // validate; the newest version per applier and key within this page: only it can be applied
    const valid: { applier: ChangeApplier; c: VersionedChange; key: string }[] = [];
    const newest = new Map<string, VersionedChange>();
    for (const raw of changes) {
      const id = changeIdOf(raw);
      if (id === null) {
        this.limiter.warn('change-without-id', { change: JSON.stringify(raw)?.slice(0, 300) }, 'change without a change_id ignored (cannot be acknowledged)');
        continue;
      }
      const env = validateEnvelope(raw);
      if (!env.ok) {
        invalid(id, env.detail);
        continue;
      }
      const { o, changeId, version } = env.change;
      const applier = this.o.appliers.of(o.type);
      if (!applier) {
        invalid(id, unknownTypeDetail(o.type));
        continue;
      }
      const v = applier.validate(o, changeId, version);
      if (!v.ok) {
        invalid(id, v.detail);
        continue;
      }
      const key = `${applier.type}\u0000${applier.key(v.change)}`;
      const top = newest.get(key);
      if (!top || v.change.version > top.version) newest.set(key, v.change);
      valid.push({ applier, c: v.change, key });
    }
    const staged = new Map<ChangeApplier, VersionedChange[]>();
    const handled = new Set<string>();
    for (const { applier, c, key } of valid) {
      const handledKey = `${applier.type}\u0000${c.changeId}`;
      if (handled.has(handledKey)) continue; // the same change twice in a page: decided once
      handled.add(handledKey);
      const top = newest.get(key)!;
      const cur = applier.current(c);
      if (cur && cur.version === c.version && cur.changeId === c.changeId) {
        ack({ change_id: c.changeId, status: 'applied', applied_at: typeof cur.appliedAt === 'number' ? new Date(cur.appliedAt).toISOString() : nowIso });
        continue;
      }
      if ((cur && cur.version >= c.version) || top.version > c.version || (top.version === c.version && top.changeId !== c.changeId)) {
        ack({ change_id: c.changeId, status: 'stale', applied_at: nowIso });
        continue;
      }
      if (applier.effect) {
        const r = await applier.effect(c);
        if (!r.ok) {
          ack({ change_id: c.changeId, status: 'invalid', applied_at: nowIso, detail: r.detail.slice(0, 500) });
          continue;
        }
      }
      staged.set(applier, [...(staged.get(applier) ?? []), c]);
      ack({ change_id: c.changeId, status: 'applied', applied_at: nowIso });
    }
    const written = this.o.repo.commitPage(
      { acks: [...acks.values()], ...(nextCursor !== null && nextCursor !== prevCursor ? { cursor: nextCursor } : {}) },
      () => [...staged].map(([applier, cs]) => [applier, applier.apply(this.o.repo, cs, nowMs)] as const),
    );
    const counters = this.o.counters;
    counters.pagesApplied++;
    let applied = 0;
    for (const [applier, cs] of written) {
      applied += cs.length;
      if (applier.type === 'price') counters.pricesApplied += cs.length;
      else if (applier.type === 'slot_assignment') counters.slotsApplied += cs.length;
    }
    for (const [applier, cs] of written) {
      if (cs.length === 0 || !applier.committed) continue;
      try {
        await applier.committed(cs, nowMs);
      } catch (e) {
        this.limiter.warn(`committed:${applier.type}`, { err: (e as Error)?.message }, 'handing on applied changes failed (they are stored)');
      }
    }
    if (acks.size > 0) this.o.acksPending();
    if (applied > 0) {
      this.o.log.info({ changes: changes.length, applied, by_type: Object.fromEntries(written.map(([a, cs]) => [a.type, cs.length])), acks: acks.size }, 'changes from central applied');
    }
  }
}
