/**
 * The reference central's own SQLite database: received events (deduplicated by event_id),
 * per-device arrival order, the change feed and the acknowledgements. One connection, used only
 * from the simulator's event loop; every batch is one transaction.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { EVENT_KINDS, EventSchema, type Ack, type Change, type EventResult, type SeqGap } from './types';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS events (
  store_id TEXT NOT NULL, event_id TEXT NOT NULL, seq INTEGER NOT NULL, device_id TEXT NOT NULL,
  kind TEXT NOT NULL, priority INTEGER NOT NULL, created_at TEXT NOT NULL, payload TEXT NOT NULL,
  received_at TEXT NOT NULL, batch_id TEXT NOT NULL,
  PRIMARY KEY (store_id, event_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS events_seq ON events (store_id, seq);
CREATE TABLE IF NOT EXISTS rejected (
  store_id TEXT NOT NULL, batch_id TEXT NOT NULL, idx INTEGER NOT NULL, event_id TEXT, seq INTEGER,
  code TEXT NOT NULL, detail TEXT NOT NULL, received_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS covered (
  store_id TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (store_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gaps (
  store_id TEXT NOT NULL, from_seq INTEGER NOT NULL, to_seq INTEGER NOT NULL, reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS stores (
  store_id TEXT PRIMARY KEY, contiguous_seq INTEGER NOT NULL DEFAULT 0,
  duplicates INTEGER NOT NULL DEFAULT 0, batches INTEGER NOT NULL DEFAULT 0, retried_batches INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS batches (
  store_id TEXT NOT NULL, batch_id TEXT NOT NULL, digest TEXT NOT NULL, received_at TEXT NOT NULL,
  PRIMARY KEY (store_id, batch_id)
);
CREATE TABLE IF NOT EXISTS device_order (
  store_id TEXT NOT NULL, device_id TEXT NOT NULL, last_seq INTEGER NOT NULL,
  out_of_order INTEGER NOT NULL DEFAULT 0, last_out_of_order TEXT,
  PRIMARY KEY (store_id, device_id)
);
CREATE TABLE IF NOT EXISTS changes (
  feed_seq INTEGER PRIMARY KEY AUTOINCREMENT, change_id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
  store_id TEXT, key TEXT NOT NULL, version INTEGER NOT NULL, body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_key ON changes (type, key, version);
CREATE TABLE IF NOT EXISTS acks (
  store_id TEXT NOT NULL, change_id TEXT NOT NULL, status TEXT NOT NULL, applied_at TEXT NOT NULL,
  detail TEXT, received_at TEXT NOT NULL, times INTEGER NOT NULL DEFAULT 1,
  PRIMARY KEY (store_id, change_id)
);
`;

export interface ReceivedEvent {
  event_id: string;
  seq: number;
  device_id: string;
  kind: string;
  priority: number;
  created_at: string;
  payload: Record<string, unknown>;
  received_at: string;
  batch_id: string;
}

export interface OutOfOrderDevice {
  device_id: string;
  out_of_order: number;
  last_seq: number;
  /** "seq N after M" for the last violation. */
  last: string | null;
}

export interface StoreStats {
  events: number;
  duplicates: number;
  rejected: number;
  batches: number;
  /** Batches whose Idempotency-Key had been seen before (a client retry). */
  retried_batches: number;
  contiguous_seq: number;
  max_seq: number;
  by_kind: Record<string, number>;
  out_of_order_devices: OutOfOrderDevice[];
  acks: Record<'applied' | 'stale' | 'invalid', number>;
}

export interface StoredAck extends Ack {
  received_at: string;
  times: number;
}

export type BatchOutcome =
  | { ok: true; results: EventResult[]; contiguous_seq: number; retried: boolean }
  | { ok: false; reason: 'idempotency_key_reused' };


export class CentralStore {
  private db: Database.Database | null = null;
  /** Prepared statements of the open connection, by SQL text (prepared once, not per call). */
  private readonly stmts = new Map<string, Database.Statement>();
  private readonly knownKinds: ReadonlySet<string>;

  /** `extraKinds`: kinds beyond the contract's EVENT_KINDS this central accepts (a newer contract minor version). */
  constructor(
    private readonly path: string,
    extraKinds: readonly string[] = [],
  ) {
    this.knownKinds = new Set([...EVENT_KINDS, ...extraKinds]);
  }

  open(): void {
    const db = new Database(this.path);
    if (this.path !== ':memory:') db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.exec(SCHEMA);
    this.db = db;
  }

  close(): void {
    this.stmts.clear();
    this.db?.close();
    this.db = null;
  }

  private get d(): Database.Database {
    if (!this.db) throw new Error('central store is not open');
    return this.db;
  }

  private stmt(sql: string): Database.Statement {
    let s = this.stmts.get(sql);
    if (!s) {
      s = this.d.prepare(sql);
      this.stmts.set(sql, s);
    }
    return s;
  }

  /**
   * Stores one batch in one transaction. Results follow the request order. An event already stored
   * (same store, same event_id) is `duplicate`; a new event whose seq is taken by another event_id
   * is rejected `seq_conflict`; an invalid one is rejected with the reason. Rejected events with a
   * usable seq count as covered for contiguous_seq (central has seen them; the gateway parks them).
   */
  storeBatch(storeId: string, batchId: string, events: unknown[], gaps: SeqGap[], now: string): BatchOutcome {
    const d = this.d;
    const digest = createHash('sha256')
      .update(JSON.stringify(events.map((e) => (isRecord(e) ? e['event_id'] : null))))
      .digest('hex');
    return d.transaction((): BatchOutcome => {
      this.stmt('INSERT OR IGNORE INTO stores (store_id) VALUES (?)').run(storeId);
      const prior = this.stmt('SELECT digest FROM batches WHERE store_id = ? AND batch_id = ?').get(storeId, batchId) as
        | { digest: string }
        | undefined;
      if (prior && prior.digest !== digest) return { ok: false, reason: 'idempotency_key_reused' };
      if (!prior) this.stmt('INSERT INTO batches VALUES (?, ?, ?, ?)').run(storeId, batchId, digest, now);
      this.stmt('UPDATE stores SET batches = batches + 1, retried_batches = retried_batches + ? WHERE store_id = ?').run(
        prior ? 1 : 0,
        storeId,
      );

      const insert = this.stmt(
        'INSERT OR IGNORE INTO events VALUES (@store_id, @event_id, @seq, @device_id, @kind, @priority, @created_at, @payload, @received_at, @batch_id)',
      );
      const bySeq = this.stmt('SELECT event_id FROM events WHERE store_id = ? AND seq = ?');
      const cover = this.stmt('INSERT OR IGNORE INTO covered VALUES (?, ?)');
      const reject = this.stmt('INSERT INTO rejected VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
      const order = this.stmt('SELECT last_seq FROM device_order WHERE store_id = ? AND device_id = ?');
      const orderFirst = this.stmt('INSERT INTO device_order (store_id, device_id, last_seq) VALUES (?, ?, ?)');
      const orderNext = this.stmt('UPDATE device_order SET last_seq = ? WHERE store_id = ? AND device_id = ?');
      const orderBroken = this.stmt('UPDATE device_order SET out_of_order = out_of_order + 1, last_out_of_order = ? WHERE store_id = ? AND device_id = ?');
      const results: EventResult[] = [];
      let duplicates = 0;

      events.forEach((raw, index) => {
        const eventId = isRecord(raw) && typeof raw['event_id'] === 'string' ? raw['event_id'] : null;
        const rawSeq = isRecord(raw) && Number.isSafeInteger(raw['seq']) && (raw['seq'] as number) >= 1 ? (raw['seq'] as number) : null;
        const parsed = EventSchema.safeParse(raw);
        const rejectWith = (code: 'invalid_event' | 'unknown_kind' | 'seq_conflict', detail: string, coverSeq: boolean): void => {
          reject.run(storeId, batchId, index, eventId, rawSeq, code, detail, now);
          if (coverSeq && rawSeq !== null) cover.run(storeId, rawSeq);
          results.push({ index, event_id: eventId, seq: rawSeq, status: 'rejected', error: { code, detail } });
        };
        if (!parsed.success) {
          const detail = parsed.error.issues.map((i) => `${i.path.join('.') || '(event)'}: ${i.message}`).join('; ');
          rejectWith('invalid_event', detail, true);
          return;
        }
        const e = parsed.data;
        if (!this.knownKinds.has(e.kind)) {
          rejectWith('unknown_kind', `kind ${JSON.stringify(e.kind)} is not one of ${[...this.knownKinds].join(', ')}`, true);
          return;
        }
        const holder = bySeq.get(storeId, e.seq) as { event_id: string } | undefined;
        if (holder && holder.event_id !== e.event_id) {
          // The seq is covered by the stored event; do not touch coverage.
          rejectWith('seq_conflict', `seq ${e.seq} is already stored for event ${holder.event_id}`, false);
          return;
        }
        const info = insert.run({
          store_id: storeId,
          ...e,
          payload: JSON.stringify(e.payload),
          received_at: now,
          batch_id: batchId,
        });
        if (info.changes === 0) {
          duplicates++;
          results.push({ index, event_id: e.event_id, seq: e.seq, status: 'duplicate' });
          return;
        }
        cover.run(storeId, e.seq);
        const last = order.get(storeId, e.device_id) as { last_seq: number } | undefined;
        if (!last) {
          orderFirst.run(storeId, e.device_id, e.seq);
        } else if (e.seq > last.last_seq) {
          orderNext.run(e.seq, storeId, e.device_id);
        } else {
          orderBroken.run(`seq ${e.seq} after ${last.last_seq}`, storeId, e.device_id);
        }
        results.push({ index, event_id: e.event_id, seq: e.seq, status: 'accepted' });
      });

      const addGap = this.stmt('INSERT INTO gaps VALUES (?, ?, ?, ?)');
      for (const g of gaps) addGap.run(storeId, g.from_seq, g.to_seq, g.reason);
      if (duplicates > 0) this.stmt('UPDATE stores SET duplicates = duplicates + ? WHERE store_id = ?').run(duplicates, storeId);
      return { ok: true, results, contiguous_seq: this.advanceContiguous(storeId), retried: prior !== undefined };
    })();
  }

  /** Highest S such that every seq 1..S is stored, rejected or declared as a gap. */
  private advanceContiguous(storeId: string): number {
    let cur = (this.stmt('SELECT contiguous_seq FROM stores WHERE store_id = ?').get(storeId) as { contiguous_seq: number }).contiguous_seq;
    const nextCovered = this.stmt('SELECT seq FROM covered WHERE store_id = ? AND seq > ? ORDER BY seq LIMIT 1000');
    const gapAt = this.stmt('SELECT MAX(to_seq) AS to_seq FROM gaps WHERE store_id = ? AND from_seq <= ? AND to_seq >= ?');
    for (;;) {
      let moved = false;
      for (const row of nextCovered.iterate(storeId, cur) as IterableIterator<{ seq: number }>) {
        if (row.seq !== cur + 1) break;
        cur = row.seq;
        moved = true;
      }
      const g = gapAt.get(storeId, cur + 1, cur + 1) as { to_seq: number | null };
      if (g.to_seq !== null) {
        cur = g.to_seq;
        moved = true;
      }
      if (!moved) break;
    }
    this.stmt('UPDATE stores SET contiguous_seq = ? WHERE store_id = ?').run(cur, storeId);
    return cur;
  }

  receivedEvents(storeId: string, orderBy: 'arrival' | 'seq' = 'arrival'): ReceivedEvent[] {
    const rows = this.stmt(
        `SELECT event_id, seq, device_id, kind, priority, created_at, payload, received_at, batch_id FROM events WHERE store_id = ? ORDER BY ${
          orderBy === 'seq' ? 'seq' : 'rowid'
        }`,
      )
      .all(storeId) as (Omit<ReceivedEvent, 'payload'> & { payload: string })[];
    return rows.map((r) => ({ ...r, payload: JSON.parse(r.payload) as Record<string, unknown> }));
  }

  lastEvents(n: number): (ReceivedEvent & { store_id: string })[] {
    const rows = this.stmt('SELECT * FROM events ORDER BY rowid DESC LIMIT ?')
      .all(n) as (Omit<ReceivedEvent, 'payload'> & { store_id: string; payload: string })[];
    return rows.map((r) => ({ ...r, payload: JSON.parse(r.payload) as Record<string, unknown> }));
  }

  rejectedEvents(storeId: string): { event_id: string | null; seq: number | null; code: string; detail: string }[] {
    return this.stmt('SELECT event_id, seq, code, detail FROM rejected WHERE store_id = ? ORDER BY rowid')
      .all(storeId) as { event_id: string | null; seq: number | null; code: string; detail: string }[];
  }

  storeIds(): string[] {
    return (this.stmt('SELECT store_id FROM stores ORDER BY store_id').all() as { store_id: string }[]).map((r) => r.store_id);
  }

  storeStats(storeId: string): StoreStats {
    const s = this.stmt('SELECT * FROM stores WHERE store_id = ?').get(storeId) as
      | { contiguous_seq: number; duplicates: number; batches: number; retried_batches: number }
      | undefined;
    const byKind: Record<string, number> = {};
    for (const r of this.stmt('SELECT kind, COUNT(*) AS n FROM events WHERE store_id = ? GROUP BY kind').all(storeId) as {
      kind: string;
      n: number;
    }[])
      byKind[r.kind] = r.n;
    const acks = { applied: 0, stale: 0, invalid: 0 };
    for (const r of this.stmt('SELECT status, COUNT(*) AS n FROM acks WHERE store_id = ? GROUP BY status').all(storeId) as {
      status: keyof typeof acks;
      n: number;
    }[])
      acks[r.status] = r.n;
    const agg = this.stmt('SELECT COUNT(*) AS n, COALESCE(MAX(seq), 0) AS max_seq FROM events WHERE store_id = ?').get(storeId) as {
      n: number;
      max_seq: number;
    };
    return {
      events: agg.n,
      duplicates: s?.duplicates ?? 0,
      rejected: (this.stmt('SELECT COUNT(*) AS n FROM rejected WHERE store_id = ?').get(storeId) as { n: number }).n,
      batches: s?.batches ?? 0,
      retried_batches: s?.retried_batches ?? 0,
      contiguous_seq: s?.contiguous_seq ?? 0,
      max_seq: agg.max_seq,
      by_kind: byKind,
      out_of_order_devices: (
        this.stmt('SELECT device_id, out_of_order, last_seq, last_out_of_order FROM device_order WHERE store_id = ? AND out_of_order > 0 ORDER BY device_id')
          .all(storeId) as { device_id: string; out_of_order: number; last_seq: number; last_out_of_order: string | null }[]
      ).map((r) => ({ device_id: r.device_id, out_of_order: r.out_of_order, last_seq: r.last_seq, last: r.last_out_of_order })),
      acks,
    };
  }

  // ---- change feed ----

  /** Latest version published for a price GTIN or a slot key, or 0. */
  latestVersion(type: Change['type'], key: string): number {
    const r = this.stmt('SELECT MAX(version) AS v FROM changes WHERE type = ? AND key = ?').get(type, key) as { v: number | null };
    return r.v ?? 0;
  }

  /** Appends a change; returns its feed position. */
  appendChange(change: Change, key: string): number {
    const info = this.stmt('INSERT INTO changes (change_id, type, store_id, key, version, body) VALUES (?, ?, ?, ?, ?, ?)')
      .run(change.change_id, change.type, change.store_id, key, change.version, JSON.stringify(change));
    return Number(info.lastInsertRowid);
  }

  /** Changes visible to a store (its own and the all-store ones) after feed position `after`. */
  changesAfter(storeId: string, after: number, limit: number): { feedSeq: number; change: Change }[] {
    const rows = this.stmt('SELECT feed_seq, body FROM changes WHERE feed_seq > ? AND (store_id IS NULL OR store_id = ?) ORDER BY feed_seq LIMIT ?')
      .all(after, storeId, limit) as { feed_seq: number; body: string }[];
    return rows.map((r) => ({ feedSeq: r.feed_seq, change: JSON.parse(r.body) as Change }));
  }

  feedHead(): number {
    return (this.stmt('SELECT COALESCE(MAX(feed_seq), 0) AS h FROM changes').get() as { h: number }).h;
  }

  allChanges(limit = 1_000_000): Change[] {
    return (this.stmt('SELECT body FROM changes ORDER BY feed_seq LIMIT ?').all(limit) as { body: string }[]).map(
      (r) => JSON.parse(r.body) as Change,
    );
  }

  changeCounts(): { price: number; slot: number } {
    const out = { price: 0, slot: 0 };
    for (const r of this.stmt('SELECT type, COUNT(*) AS n FROM changes GROUP BY type').all() as { type: 'price' | 'slot'; n: number }[])
      out[r.type] = r.n;
    return out;
  }

  /** Records acks (a repeated ack of the same change updates it and counts `times`). */
  recordAcks(storeId: string, acks: Ack[], now: string): ('recorded' | 'unknown_change')[] {
    const d = this.d;
    const known = this.stmt('SELECT 1 FROM changes WHERE change_id = ? AND (store_id IS NULL OR store_id = ?)');
    const upsert = this.stmt(
      `INSERT INTO acks VALUES (?, ?, ?, ?, ?, ?, 1)
       ON CONFLICT (store_id, change_id) DO UPDATE SET status = excluded.status, applied_at = excluded.applied_at,
         detail = excluded.detail, received_at = excluded.received_at, times = times + 1`,
    );
    return d.transaction(() => {
      this.stmt('INSERT OR IGNORE INTO stores (store_id) VALUES (?)').run(storeId);
      return acks.map((a) => {
        if (!known.get(a.change_id, storeId)) return 'unknown_change' as const;
        upsert.run(storeId, a.change_id, a.status, a.applied_at, a.detail ?? null, now);
        return 'recorded' as const;
      });
    })();
  }

  acks(storeId?: string): (StoredAck & { store_id: string })[] {
    const sql = 'SELECT store_id, change_id, status, applied_at, detail, received_at, times FROM acks';
    const rows = (
      storeId === undefined ? this.stmt(`${sql} ORDER BY received_at, rowid`).all() : this.stmt(`${sql} WHERE store_id = ? ORDER BY rowid`).all(storeId)
    ) as (StoredAck & { store_id: string; detail: string | null })[];
    return rows.map(({ detail, ...r }) => (detail === null ? r : { ...r, detail }));
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
