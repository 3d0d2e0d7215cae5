/**
 * The reference central's own SQLite database: received events (deduplicated by event_id per
 * store), rejections (remembered by event_id, so a resent rejected event gets the same answer),
 * seq coverage, gaps and contiguous_seq per (store, epoch), remembered Idempotency-Keys with their
 * fingerprint and a compact form of their response, per-device arrival order, the change feed and
 * the acknowledgements. One connection, used only from the simulator's event loop; every batch is
 * one transaction.
 */
import Database from 'better-sqlite3';
import { EVENT_KINDS, EventSchema, LIMITS, type Ack, type EventErrorCode, type EventResult, type EventStatus, type FeedChange, type ProductChange, type SeqGap } from './types';

/** Bumped whenever SCHEMA changes: a database of another version is refused, not misread. */
const SCHEMA_VERSION = 2;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS events (
  store_id TEXT NOT NULL, epoch TEXT NOT NULL, event_id TEXT NOT NULL, seq INTEGER NOT NULL, device_id TEXT NOT NULL,
  kind TEXT NOT NULL, priority INTEGER NOT NULL, created_at TEXT NOT NULL, payload TEXT NOT NULL,
  received_at TEXT NOT NULL, batch_id TEXT NOT NULL,
  PRIMARY KEY (store_id, event_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS events_seq ON events (store_id, epoch, seq);
-- remembered = 1: the rejection answers every later event with this event_id (central-api.yaml,
-- Event results, rule 1); 0: a log line only (event_id_conflict, or an id that is stored as an event).
CREATE TABLE IF NOT EXISTS rejected (
  store_id TEXT NOT NULL, epoch TEXT NOT NULL, batch_id TEXT NOT NULL, idx INTEGER NOT NULL, event_id TEXT, seq INTEGER,
  code TEXT NOT NULL, detail TEXT NOT NULL, received_at TEXT NOT NULL, remembered INTEGER NOT NULL, times INTEGER NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX IF NOT EXISTS rejected_event ON rejected (store_id, event_id) WHERE remembered = 1;
CREATE INDEX IF NOT EXISTS rejected_seq ON rejected (store_id, epoch, seq);
CREATE TABLE IF NOT EXISTS covered (
  store_id TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (store_id, epoch, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gaps (
  store_id TEXT NOT NULL, epoch TEXT NOT NULL, from_seq INTEGER NOT NULL, to_seq INTEGER NOT NULL, reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS gaps_from ON gaps (store_id, epoch, from_seq);
CREATE TABLE IF NOT EXISTS stores (
  store_id TEXT PRIMARY KEY, epoch TEXT,
  duplicates INTEGER NOT NULL DEFAULT 0, batches INTEGER NOT NULL DEFAULT 0, retried_batches INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS epochs (
  store_id TEXT NOT NULL, epoch TEXT NOT NULL, contiguous_seq INTEGER NOT NULL DEFAULT 0,
  batches INTEGER NOT NULL DEFAULT 0, first_seen TEXT NOT NULL, last_seen TEXT NOT NULL,
  PRIMARY KEY (store_id, epoch)
);
-- statuses: one character per event of the request (a/d/r); errors: JSON {index: EventError}.
CREATE TABLE IF NOT EXISTS batches (
  store_id TEXT NOT NULL, batch_id TEXT NOT NULL, digest TEXT NOT NULL, received_ms INTEGER NOT NULL,
  epoch TEXT NOT NULL, statuses TEXT NOT NULL, errors TEXT NOT NULL,
  PRIMARY KEY (store_id, batch_id)
);
CREATE TABLE IF NOT EXISTS device_order (
  store_id TEXT NOT NULL, epoch TEXT NOT NULL, device_id TEXT NOT NULL, last_seq INTEGER NOT NULL,
  out_of_order INTEGER NOT NULL DEFAULT 0, last_out_of_order TEXT,
  PRIMARY KEY (store_id, epoch, device_id)
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
  /** The gateway database's epoch ("" = legacy: a batch without one). */
  epoch: string;
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

export interface RejectedEvent {
  epoch: string;
  event_id: string | null;
  seq: number | null;
  code: string;
  detail: string;
  /** How often this rejection was answered (a resend gets the stored one again). */
  times: number;
}

export interface OutOfOrderDevice {
  device_id: string;
  /** The epoch whose seqs arrived out of order (seqs of different epochs are not compared). */
  epoch: string;
  out_of_order: number;
  last_seq: number;
  /** "seq N after M" for the last violation. */
  last: string | null;
}

export interface EpochStats {
  epoch: string;
  contiguous_seq: number;
  max_seq: number;
  events: number;
  batches: number;
  first_seen: string;
  last_seen: string;
}

export interface StoreStats {
  events: number;
  /** Events delivered again: deduplicated by event_id, or answered from a remembered Idempotency-Key. */
  duplicates: number;
  rejected: number;
  batches: number;
  /** Batches whose Idempotency-Key had been seen before (a client retry). */
  retried_batches: number;
  /** The epoch of the store's latest batch; contiguous_seq and max_seq are that epoch's. */
  epoch: string | null;
  contiguous_seq: number;
  max_seq: number;
  /** Every epoch of the store, in the order central first saw them. */
  epochs: EpochStats[];
  by_kind: Record<string, number>;
  out_of_order_devices: OutOfOrderDevice[];
  acks: Record<'applied' | 'stale' | 'invalid', number>;
}

export interface StoredAck extends Ack {
  received_at: string;
  times: number;
}

export type BatchOutcome =
  | { ok: true; results: EventResult[]; contiguous_seq: number; retried: boolean; replayed: boolean }
  | { ok: false; reason: 'idempotency_key_reused' };

export interface BatchInput {
  storeId: string;
  batchId: string;
  /** sha256 of the request's fingerprint (method, path, decompressed body). */
  digest: string;
  epoch: string;
  events: unknown[];
  gaps: SeqGap[];
  nowMs: number;
  /** How long a key is remembered (IDEMPOTENCY_TTL_MS). */
  keyTtlMs: number;
}

/**
 * Canonical JSON text of a JSON value (RFC 8785 JCS for the values a payload holds: members sorted
 * by key, no whitespace, numbers and strings as ECMAScript serialises them), so two payloads
 * compare equal exactly when they are the same JSON value.
 */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const keys = Object.keys(v).filter((k) => (v as Record<string, unknown>)[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

const STATUS_CHAR: Record<EventStatus, string> = { accepted: 'a', duplicate: 'd', rejected: 'r' };
const CHAR_STATUS: Record<string, EventStatus> = { a: 'accepted', d: 'duplicate', r: 'rejected' };

/** What a result echoes of an event: its event_id if a short string, its seq if valid. */
export function echoedId(raw: unknown): string | null {
  const id = isRecord(raw) ? raw['event_id'] : undefined;
  return typeof id === 'string' && id.length <= LIMITS.maxEchoedIdLength ? id : null;
}

function echoedSeq(raw: unknown): number | null {
  const seq = isRecord(raw) ? raw['seq'] : undefined;
  return Number.isSafeInteger(seq) && (seq as number) >= 1 ? (seq as number) : null;
}

function cut(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}

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

  /** Opens (creating) the database; refuses one written by another version of this simulator. */
  open(): void {
    const db = new Database(this.path);
    try {
      const version = db.pragma('user_version', { simple: true }) as number;
      const fresh = (db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").get() as { n: number }).n === 0;
      if (!fresh && version !== SCHEMA_VERSION) {
        throw new Error(`central simulator database ${this.path} has schema version ${version}, this simulator writes ${SCHEMA_VERSION}: delete it or use another --db`);
      }
      if (this.path !== ':memory:') db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.exec(SCHEMA);
      db.pragma(`user_version = ${SCHEMA_VERSION}`);
    } catch (e) {
      db.close();
      throw e;
    }
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
   * Stores one batch in one transaction, following central-api.yaml (Event results, Gaps,
   * Idempotency-Key). A key remembered within `keyTtlMs` with the same digest replays the stored
   * results (nothing is processed again; contiguous_seq is the current one); with another digest
   * it is refused. Otherwise every event is decided by the contract's rules, in their order:
   * remembered rejection, invalid_event, unknown_kind, duplicate / event_id_conflict, seq_conflict,
   * accepted. Rejected events with a valid seq cover it; the gaps cover their ranges.
   */
  storeBatch(b: BatchInput): BatchOutcome {
    const { storeId, batchId, epoch } = b;
    const now = new Date(b.nowMs).toISOString();
    return this.d.transaction((): BatchOutcome => {
      this.stmt('INSERT OR IGNORE INTO stores (store_id) VALUES (?)').run(storeId);
      const prior = this.stmt('SELECT digest, received_ms, epoch, statuses, errors FROM batches WHERE store_id = ? AND batch_id = ?').get(storeId, batchId) as
        | { digest: string; received_ms: number; epoch: string; statuses: string; errors: string }
        | undefined;
      const remembered = prior !== undefined && b.nowMs - prior.received_ms < b.keyTtlMs ? prior : undefined;
      if (remembered && remembered.digest !== b.digest) return { ok: false, reason: 'idempotency_key_reused' };
      this.stmt('UPDATE stores SET epoch = ?, batches = batches + 1, retried_batches = retried_batches + ? WHERE store_id = ?').run(epoch, prior ? 1 : 0, storeId);
      this.stmt(
        'INSERT INTO epochs (store_id, epoch, batches, first_seen, last_seen) VALUES (?, ?, 1, ?, ?) ON CONFLICT (store_id, epoch) DO UPDATE SET batches = batches + 1, last_seen = excluded.last_seen',
      ).run(storeId, epoch, now, now);

      if (remembered) {
        // The same request again: answer what was answered, process nothing.
        const errors = JSON.parse(remembered.errors) as Record<string, EventResult['error']>;
        const results = b.events.map((raw, index): EventResult => {
          const status = CHAR_STATUS[remembered.statuses[index] ?? ''] ?? 'rejected';
          const err = errors[String(index)];
          return { index, event_id: echoedId(raw), seq: echoedSeq(raw), status, ...(err ? { error: err } : {}) };
        });
        const again = results.filter((r) => r.status !== 'rejected').length;
        if (again > 0) this.stmt('UPDATE stores SET duplicates = duplicates + ? WHERE store_id = ?').run(again, storeId);
        return { ok: true, results, contiguous_seq: this.contiguous(storeId, epoch), retried: true, replayed: true };
      }

      const results = b.events.map((raw, index) => this.decide(storeId, epoch, batchId, raw, index, now));
      const addGap = this.stmt('INSERT INTO gaps VALUES (?, ?, ?, ?, ?)');
      for (const g of b.gaps) addGap.run(storeId, epoch, g.from_seq, g.to_seq, g.reason);
      const duplicates = results.filter((r) => r.status === 'duplicate').length;
      if (duplicates > 0) this.stmt('UPDATE stores SET duplicates = duplicates + ? WHERE store_id = ?').run(duplicates, storeId);

      const errors: Record<string, EventResult['error']> = {};
      for (const r of results) if (r.error) errors[String(r.index)] = r.error;
      this.stmt('INSERT OR REPLACE INTO batches VALUES (?, ?, ?, ?, ?, ?, ?)').run(
        storeId,
        batchId,
        b.digest,
        b.nowMs,
        epoch,
        results.map((r) => STATUS_CHAR[r.status]).join(''),
        JSON.stringify(errors),
      );
      return { ok: true, results, contiguous_seq: this.advanceContiguous(storeId, epoch), retried: prior !== undefined, replayed: false };
    })();
  }

  /** One event of a batch (inside its transaction): the contract's rules, first match wins. */
  private decide(storeId: string, epoch: string, batchId: string, raw: unknown, index: number, now: string): EventResult {
    const rawId = isRecord(raw) && typeof raw['event_id'] === 'string' ? raw['event_id'] : null;
    const eventId = echoedId(raw);
    const rawSeq = echoedSeq(raw);
    const rejected = (code: EventErrorCode, detail: string, opts: { cover: boolean; remember: boolean }): EventResult => {
      const d = cut(detail, LIMITS.maxEventDetail);
      // An id that is stored as an event is never remembered as rejected: its resends stay duplicate.
      const remember = opts.remember && rawId !== null && !this.stmt('SELECT 1 FROM events WHERE store_id = ? AND event_id = ?').get(storeId, rawId);
      this.stmt('INSERT INTO rejected VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)').run(storeId, epoch, batchId, index, rawId, rawSeq, code, d, now, remember ? 1 : 0);
      if (opts.cover && rawSeq !== null) this.stmt('INSERT OR IGNORE INTO covered VALUES (?, ?, ?)').run(storeId, epoch, rawSeq);
      return { index, event_id: eventId, seq: rawSeq, status: 'rejected', error: { code, detail: d } };
    };

    // What central knows of this event_id: a remembered rejection or a stored event (never both).
    // One statement for both: this runs for every event, and each statement costs more than its lookup.
    const known =
      rawId === null
        ? undefined
        : (this.stmt(
            `SELECT 'r' AS src, rowid AS id, code, detail, NULL AS epoch, NULL AS seq, NULL AS payload FROM rejected WHERE store_id = @store AND event_id = @id AND remembered = 1
             UNION ALL SELECT 'e', NULL, NULL, NULL, epoch, seq, payload FROM events WHERE store_id = @store AND event_id = @id LIMIT 1`,
          ).get({ store: storeId, id: rawId }) as
            | { src: 'r'; id: number; code: EventErrorCode; detail: string }
            | { src: 'e'; epoch: string; seq: number; payload: string }
            | undefined);
    // 1. rejected before: the stored rejection again, whatever the event holds now
    if (known?.src === 'r') {
      this.stmt('UPDATE rejected SET times = times + 1 WHERE rowid = ?').run(known.id);
      return { index, event_id: eventId, seq: rawSeq, status: 'rejected', error: { code: known.code, detail: known.detail } };
    }
    // 2. not an Event
    const parsed = EventSchema.safeParse(raw);
    if (!parsed.success) {
      const detail = parsed.error.issues.map((i) => `${i.path.join('.') || '(event)'}: ${i.message}`).join('; ');
      return rejected('invalid_event', detail, { cover: true, remember: true });
    }
    const e = parsed.data;
    // 3. a kind this central does not know
    if (!this.knownKinds.has(e.kind)) {
      return rejected('unknown_kind', `kind ${JSON.stringify(e.kind)} is not one of ${[...this.knownKinds].join(', ')}`, { cover: true, remember: true });
    }
    // 4. stored: duplicate only if the same epoch, seq and payload (as JSON values)
    const stored = known?.src === 'e' ? known : undefined;
    if (stored) {
      const differs: string[] = [];
      if (stored.epoch !== epoch) differs.push(`epoch ${JSON.stringify(stored.epoch)}`);
      if (stored.seq !== e.seq) differs.push(`seq ${stored.seq}`);
      if (canonicalJson(JSON.parse(stored.payload)) !== canonicalJson(e.payload)) differs.push('another payload');
      if (differs.length === 0) return { index, event_id: e.event_id, seq: e.seq, status: 'duplicate' };
      return rejected('event_id_conflict', `event ${e.event_id} is stored with ${differs.join(', ')}; the stored version stays`, { cover: false, remember: false });
    }
    // 5. the seq is held in this epoch by another event (stored, or rejected as invalid or of an unknown kind)
    const holder = this.stmt(
      `SELECT event_id FROM events WHERE store_id = @store AND epoch = @epoch AND seq = @seq
       UNION ALL SELECT event_id FROM rejected WHERE store_id = @store AND epoch = @epoch AND seq = @seq AND code IN ('invalid_event', 'unknown_kind') LIMIT 1`,
    ).get({ store: storeId, epoch, seq: e.seq }) as { event_id: string | null } | undefined;
    if (holder) {
      // The seq is covered already; do not touch coverage.
      const by = holder.event_id === null ? 'a rejected event without an event_id' : `event ${holder.event_id}`;
      return rejected('seq_conflict', `seq ${e.seq} is already held${epoch === '' ? '' : ` in epoch ${epoch}`} by ${by}`, { cover: false, remember: true });
    }
    // 6. accepted
    this.stmt(
      'INSERT INTO events VALUES (@store_id, @epoch, @event_id, @seq, @device_id, @kind, @priority, @created_at, @payload, @received_at, @batch_id)',
    ).run({ store_id: storeId, epoch, ...e, payload: JSON.stringify(e.payload), received_at: now, batch_id: batchId });
    this.stmt('INSERT OR IGNORE INTO covered VALUES (?, ?, ?)').run(storeId, epoch, e.seq);
    const last = this.stmt('SELECT last_seq FROM device_order WHERE store_id = ? AND epoch = ? AND device_id = ?').get(storeId, epoch, e.device_id) as
      | { last_seq: number }
      | undefined;
    if (!last) {
      this.stmt('INSERT INTO device_order (store_id, epoch, device_id, last_seq) VALUES (?, ?, ?, ?)').run(storeId, epoch, e.device_id, e.seq);
    } else if (e.seq > last.last_seq) {
      this.stmt('UPDATE device_order SET last_seq = ? WHERE store_id = ? AND epoch = ? AND device_id = ?').run(e.seq, storeId, epoch, e.device_id);
    } else {
      this.stmt('UPDATE device_order SET out_of_order = out_of_order + 1, last_out_of_order = ? WHERE store_id = ? AND epoch = ? AND device_id = ?').run(
        `seq ${e.seq} after ${last.last_seq}`,
        storeId,
        epoch,
        e.device_id,
      );
    }
    return { index, event_id: e.event_id, seq: e.seq, status: 'accepted' };
  }

  private contiguous(storeId: string, epoch: string): number {
    const r = this.stmt('SELECT contiguous_seq FROM epochs WHERE store_id = ? AND epoch = ?').get(storeId, epoch) as { contiguous_seq: number } | undefined;
    return r?.contiguous_seq ?? 0;
  }

  /** Highest S such that every seq 1..S of the epoch is stored, rejected or declared as a gap. */
  private advanceContiguous(storeId: string, epoch: string): number {
    let cur = this.contiguous(storeId, epoch);
    const nextCovered = this.stmt('SELECT seq FROM covered WHERE store_id = ? AND epoch = ? AND seq > ? ORDER BY seq LIMIT 1000');
    const gapAt = this.stmt('SELECT MAX(to_seq) AS to_seq FROM gaps WHERE store_id = ? AND epoch = ? AND from_seq <= ? AND to_seq >= ?');
    for (;;) {
      let moved = false;
      for (const row of nextCovered.iterate(storeId, epoch, cur) as IterableIterator<{ seq: number }>) {
        if (row.seq !== cur + 1) break;
        cur = row.seq;
        moved = true;
      }
      const g = gapAt.get(storeId, epoch, cur + 1, cur + 1) as { to_seq: number | null };
      if (g.to_seq !== null) {
        cur = g.to_seq;
        moved = true;
      }
      if (!moved) break;
    }
    this.stmt('UPDATE epochs SET contiguous_seq = ? WHERE store_id = ? AND epoch = ?').run(cur, storeId, epoch);
    return cur;
  }

  /** Stored events of a store (optionally of one epoch), by arrival or by (epoch first seen, seq). */
  receivedEvents(storeId: string, orderBy: 'arrival' | 'seq' = 'arrival', epoch?: string): ReceivedEvent[] {
    const where = epoch === undefined ? 'e.store_id = ?' : 'e.store_id = ? AND e.epoch = ?';
    const order = orderBy === 'seq' ? 'ep.first_seen, ep.rowid, e.seq' : 'e.rowid';
    const rows = this.stmt(
      `SELECT e.epoch, e.event_id, e.seq, e.device_id, e.kind, e.priority, e.created_at, e.payload, e.received_at, e.batch_id
         FROM events e JOIN epochs ep ON ep.store_id = e.store_id AND ep.epoch = e.epoch WHERE ${where} ORDER BY ${order}`,
    ).all(...(epoch === undefined ? [storeId] : [storeId, epoch])) as (Omit<ReceivedEvent, 'payload'> & { payload: string })[];
    return rows.map((r) => ({ ...r, payload: JSON.parse(r.payload) as Record<string, unknown> }));
  }

  lastEvents(n: number): (ReceivedEvent & { store_id: string })[] {
    const rows = this.stmt('SELECT * FROM events ORDER BY rowid DESC LIMIT ?')
      .all(n) as (Omit<ReceivedEvent, 'payload'> & { store_id: string; payload: string })[];
    return rows.map((r) => ({ ...r, payload: JSON.parse(r.payload) as Record<string, unknown> }));
  }

  /** Every rejection of a store, once each (a resend of a rejected event counts in `times`). */
  rejectedEvents(storeId: string): RejectedEvent[] {
    return this.stmt('SELECT epoch, event_id, seq, code, detail, times FROM rejected WHERE store_id = ? ORDER BY rowid').all(storeId) as RejectedEvent[];
  }

  storeIds(): string[] {
    return (this.stmt('SELECT store_id FROM stores ORDER BY store_id').all() as { store_id: string }[]).map((r) => r.store_id);
  }

  storeStats(storeId: string): StoreStats {
    const s = this.stmt('SELECT * FROM stores WHERE store_id = ?').get(storeId) as
      | { epoch: string | null; duplicates: number; batches: number; retried_batches: number }
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
    const epochs = this.stmt(
      `SELECT ep.epoch, ep.contiguous_seq, COALESCE(MAX(e.seq), 0) AS max_seq, COUNT(e.event_id) AS events, ep.batches, ep.first_seen, ep.last_seen
         FROM epochs ep LEFT JOIN events e ON e.store_id = ep.store_id AND e.epoch = ep.epoch
        WHERE ep.store_id = ? GROUP BY ep.epoch ORDER BY ep.first_seen, ep.rowid`,
    ).all(storeId) as EpochStats[];
    const current = epochs.find((x) => x.epoch === s?.epoch);
    return {
      events: epochs.reduce((n, x) => n + x.events, 0),
      duplicates: s?.duplicates ?? 0,
      rejected: (this.stmt('SELECT COUNT(*) AS n FROM rejected WHERE store_id = ?').get(storeId) as { n: number }).n,
      batches: s?.batches ?? 0,
      retried_batches: s?.retried_batches ?? 0,
      epoch: s?.epoch ?? null,
      contiguous_seq: current?.contiguous_seq ?? 0,
      max_seq: current?.max_seq ?? 0,
      epochs,
      by_kind: byKind,
      out_of_order_devices: (
        this.stmt(
          'SELECT device_id, epoch, out_of_order, last_seq, last_out_of_order FROM device_order WHERE store_id = ? AND out_of_order > 0 ORDER BY device_id, epoch',
        ).all(storeId) as { device_id: string; epoch: string; out_of_order: number; last_seq: number; last_out_of_order: string | null }[]
      ).map((r) => ({ device_id: r.device_id, epoch: r.epoch, out_of_order: r.out_of_order, last_seq: r.last_seq, last: r.last_out_of_order })),
      acks,
    };
  }

  // ---- change feed ----

  /** Latest version published for a price GTIN or a slot key, or 0. */
  latestVersion(type: string, key: string): number {
    const r = this.stmt('SELECT MAX(version) AS v FROM changes WHERE type = ? AND key = ?').get(type, key) as { v: number | null };
    return r.v ?? 0;
  }

  /** Appends a change; returns its feed position. */
  appendChange(change: FeedChange, key: string): number {
    const info = this.stmt('INSERT INTO changes (change_id, type, store_id, key, version, body) VALUES (?, ?, ?, ?, ?, ?)')
      .run(change.change_id, change.type, change.store_id, key, change.version, JSON.stringify(change));
    return Number(info.lastInsertRowid);
  }

  /** Changes visible to a store (its own and the all-store ones) after feed position `after`. */
  changesAfter(storeId: string, after: number, limit: number): { feedSeq: number; change: FeedChange }[] {
    const rows = this.stmt('SELECT feed_seq, body FROM changes WHERE feed_seq > ? AND (store_id IS NULL OR store_id = ?) ORDER BY feed_seq LIMIT ?')
      .all(after, storeId, limit) as { feed_seq: number; body: string }[];
    return rows.map((r) => ({ feedSeq: r.feed_seq, change: JSON.parse(r.body) as FeedChange }));
  }

  feedHead(): number {
    return (this.stmt('SELECT COALESCE(MAX(feed_seq), 0) AS h FROM changes').get() as { h: number }).h;
  }

  allChanges(limit = 1_000_000): FeedChange[] {
    return (this.stmt('SELECT body FROM changes ORDER BY feed_seq LIMIT ?').all(limit) as { body: string }[]).map(
      (r) => JSON.parse(r.body) as FeedChange,
    );
  }

  /** The latest product change published for a GTIN-14 (any store), or null. */
  latestProduct(gtin: string): ProductChange | null {
    const r = this.stmt("SELECT body FROM changes WHERE type = 'product' AND key = ? ORDER BY version DESC LIMIT 1").get(gtin) as { body: string } | undefined;
    return r ? (JSON.parse(r.body) as ProductChange) : null;
  }

  changeCounts(): { price: number; slot: number; product: number; other: number } {
    const out = { price: 0, slot: 0, product: 0, other: 0 };
    for (const r of this.stmt('SELECT type, COUNT(*) AS n FROM changes GROUP BY type').all() as { type: string; n: number }[])
      if (r.type === 'price' || r.type === 'slot' || r.type === 'product') out[r.type] = r.n;
      else out.other += r.n;
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
