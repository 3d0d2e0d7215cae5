/**
 * The labels feature's tables: the label registry (a label's MAC, its type and what it is bound
 * to) and its delivery state (what it confirmed showing, what is in flight, what it should show
 * from when), so that after a restart nothing confirmed is resent and nothing unconfirmed is
 * forgotten. Its SQL lives only here; writes go through the Store's one writer (defineWrite),
 * coalesced per MAC within a batch: the last state of a label in a batch is what is committed.
 *
 * Schema version 10 (the core has 1, 2, 3, 5, 6; shelves 4; the labels feature also 11 and 12).
 */
import type { Statement } from 'better-sqlite3';
import type { Migration } from '../../store/migrations';
import type { Store } from '../../store/store';
import type { ContentVersion, DeliveryScheduler, DeliveryState, LabelRecord } from './scheduler';

export const LABELS_SCHEMA_VERSION = 10;

export const LABELS_MIGRATIONS: readonly Migration[] = [
  {
    version: LABELS_SCHEMA_VERSION,
    description: 'labels: label registry and delivery state, label content by version',
    up: `
      CREATE TABLE labels (
        mac             TEXT PRIMARY KEY,      -- 16 uppercase hex digits, as the OEPL AP reports it
        label_type      TEXT NOT NULL,         -- devices/labels/<id>.yaml
        gtin            TEXT,                  -- bound to a product ...
        location_id     TEXT,                  -- ... or to a slot ('shelf/slot'); not both
        check_in_ms     INTEGER NOT NULL,
        ap_id           TEXT,                  -- the AP that last heard it
        last_heard_at   INTEGER,
        last_seq        INTEGER NOT NULL DEFAULT 0,
        state           TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'confirmed', 'failed')),
        shown_seq       INTEGER,               -- what the label acknowledged showing
        shown_hash      TEXT,
        shown_price     INTEGER,
        shown_currency  TEXT,
        shown_price_key TEXT,
        shown_at        INTEGER,
        inflight_seq    INTEGER,               -- the transfer awaiting its acknowledgement
        inflight_ap     TEXT,
        sent_at         INTEGER,
        stored_at       INTEGER,
        deadline        INTEGER,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL DEFAULT 0,
        last_error      TEXT,
        mismatch_since  INTEGER,
        updated_at      INTEGER NOT NULL,
        CHECK (gtin IS NULL OR location_id IS NULL),
        CHECK ((inflight_seq IS NULL) = (inflight_ap IS NULL))
      );
      CREATE INDEX labels_by_gtin ON labels (gtin) WHERE gtin IS NOT NULL;
      CREATE INDEX labels_by_location ON labels (location_id) WHERE location_id IS NOT NULL;

      -- The contents a label still needs: its plan (in_plan = 1) and the one in flight.
      CREATE TABLE label_content (
        mac          TEXT NOT NULL REFERENCES labels (mac) ON DELETE CASCADE,
        seq          INTEGER NOT NULL,
        in_plan      INTEGER NOT NULL CHECK (in_plan IN (0, 1)),
        effective_at INTEGER NOT NULL,
        hash         TEXT NOT NULL,
        body         TEXT NOT NULL,
        bytes        INTEGER NOT NULL,
        price        INTEGER,
        currency     TEXT,
        price_key    TEXT NOT NULL,
        PRIMARY KEY (mac, seq)
      ) WITHOUT ROWID;
    `,
  },
];

export interface LabelBinding {
  /** A label type id (devices/labels). */
  labelType: string;
  gtin: string | null;
  locationId: string | null;
}

export interface StoredLabel {
  binding: LabelBinding;
  delivery: LabelRecord;
}

interface LabelRow {
  mac: string;
  label_type: string;
  gtin: string | null;
  location_id: string | null;
  check_in_ms: number;
  ap_id: string | null;
  last_heard_at: number | null;
  last_seq: number;
  state: DeliveryState;
  shown_seq: number | null;
  shown_hash: string | null;
  shown_price: number | null;
  shown_currency: string | null;
  shown_price_key: string | null;
  shown_at: number | null;
  inflight_seq: number | null;
  inflight_ap: string | null;
  sent_at: number | null;
  stored_at: number | null;
  deadline: number | null;
  attempts: number;
  next_attempt_at: number;
  last_error: string | null;
  mismatch_since: number | null;
}

interface ContentRow {
  mac: string;
  seq: number;
  in_plan: number;
  effective_at: number;
  hash: string;
  body: string;
  bytes: number;
  price: number | null;
  currency: string | null;
  price_key: string;
}

/** `contentKey`: the plan's and the transfer's seqs; content rows are rewritten only when it differs from what was committed. */
type WriteInput = { mac: string; label: StoredLabel | null; at: number; contentKey?: string; writeContent?: boolean };

export class LabelRepository {
  private selectLabels: Statement | null = null;
  private selectContent: Statement | null = null;
  private readonly write: (input: WriteInput) => Promise<void>;
  /** Per label, the content seqs its last committed save wrote. */
  private readonly committedContent = new Map<string, string>();

  constructor(
    store: Store,
    private readonly clock: () => number = Date.now,
  ) {
    store.onOpen((db) => {
      this.selectLabels = db.prepare('SELECT * FROM labels ORDER BY mac');
      this.selectContent = db.prepare('SELECT * FROM label_content ORDER BY mac, seq');
    });
    this.write = store.defineWrite<WriteInput, void>({
      name: 'labels.save',
      prepare: (db) => {
        const upsert = db.prepare(
          `INSERT INTO labels (mac, label_type, gtin, location_id, check_in_ms, ap_id, last_heard_at, last_seq, state,
             shown_seq, shown_hash, shown_price, shown_currency, shown_price_key, shown_at,
             inflight_seq, inflight_ap, sent_at, stored_at, deadline, attempts, next_attempt_at, last_error, mismatch_since, updated_at)
           VALUES (@mac, @label_type, @gtin, @location_id, @check_in_ms, @ap_id, @last_heard_at, @last_seq, @state,
             @shown_seq, @shown_hash, @shown_price, @shown_currency, @shown_price_key, @shown_at,
             @inflight_seq, @inflight_ap, @sent_at, @stored_at, @deadline, @attempts, @next_attempt_at, @last_error, @mismatch_since, @updated_at)
           ON CONFLICT (mac) DO UPDATE SET
             label_type = excluded.label_type, gtin = excluded.gtin, location_id = excluded.location_id,
             check_in_ms = excluded.check_in_ms, ap_id = excluded.ap_id, last_heard_at = excluded.last_heard_at,
             last_seq = excluded.last_seq, state = excluded.state,
             shown_seq = excluded.shown_seq, shown_hash = excluded.shown_hash, shown_price = excluded.shown_price,
             shown_currency = excluded.shown_currency, shown_price_key = excluded.shown_price_key, shown_at = excluded.shown_at,
             inflight_seq = excluded.inflight_seq, inflight_ap = excluded.inflight_ap, sent_at = excluded.sent_at,
             stored_at = excluded.stored_at, deadline = excluded.deadline, attempts = excluded.attempts,
             next_attempt_at = excluded.next_attempt_at, last_error = excluded.last_error,
             mismatch_since = excluded.mismatch_since, updated_at = excluded.updated_at`,
        );
        const clearContent = db.prepare('DELETE FROM label_content WHERE mac = ?');
        const insertContent = db.prepare(
          `INSERT INTO label_content (mac, seq, in_plan, effective_at, hash, body, bytes, price, currency, price_key)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        );
        const remove = db.prepare('DELETE FROM labels WHERE mac = ?');
        return (input) => {
          const { mac, label, at } = input;
          if (!label) {
            remove.run(mac); // label_content goes with it (ON DELETE CASCADE)
            return;
          }
          const { binding: b, delivery: d } = label;
          upsert.run({
            mac,
            label_type: b.labelType,
            gtin: b.gtin,
            location_id: b.locationId,
            check_in_ms: d.checkInMs,
            ap_id: d.ap,
            last_heard_at: d.lastHeardAt,
            last_seq: d.lastSeq,
            state: d.state,
            shown_seq: d.shown?.seq ?? null,
            shown_hash: d.shown?.hash ?? null,
            shown_price: d.shown?.price ?? null,
            shown_currency: d.shown?.currency ?? null,
            shown_price_key: d.shown?.priceKey ?? null,
            shown_at: d.shown?.at ?? null,
            inflight_seq: d.inflight?.content.seq ?? null,
            inflight_ap: d.inflight?.ap ?? null,
            sent_at: d.inflight?.sentAt ?? null,
            stored_at: d.inflight?.storedAt ?? null,
            deadline: d.inflight?.deadline ?? null,
            attempts: d.attempts,
            next_attempt_at: d.nextAttemptAt,
            last_error: d.lastError,
            mismatch_since: d.mismatchSince,
            updated_at: at,
          });
          // The content rows (bodies of a kilobyte and more) change only with the plan or the
          // transfer in flight, not with a check-in, a stored answer or an attempt count.
          if (input.writeContent === false) return;
          clearContent.run(mac);
          const put = (c: ContentVersion, inPlan: boolean): void => {
            insertContent.run(mac, c.seq, inPlan ? 1 : 0, c.effectiveAt, c.hash, c.body, c.bytes, c.price, c.currency, c.priceKey);
          };
          for (const c of d.plan) put(c, true);
          if (d.inflight && !d.plan.some((c) => c.seq === d.inflight!.content.seq)) put(d.inflight.content, false);
        };
      },
      // The label's last state in a batch is what counts (a save after a remove re-creates it).
      coalesce: { key: (i) => i.mac },
    });
  }

  /**
   * Queues the label's binding and delivery state; resolves once committed. The object is the
   * repository's from here on (the caller passes a copy it does not change: scheduler.record()).
   */
  save(label: StoredLabel): Promise<void> {
    const mac = label.delivery.mac;
    const d = label.delivery;
    // The rows the save writes: the plan, and the transfer in flight when it is not in the plan
    // (a dispatch of a plan entry changes no row: the `sent` save no longer rewrites the bodies).
    const inflightSeq = d.inflight && !d.plan.some((c) => c.seq === d.inflight!.content.seq) ? d.inflight.content.seq : '';
    const contentKey = `${d.plan.map((c) => c.seq).join(',')}|${inflightSeq}`;
    // Skip the content rows when the last committed save of this label had the same ones. The memo
    // is set only after a commit and dropped on a failure, so it never claims rows that are not there.
    const writeContent = this.committedContent.get(mac) !== contentKey;
    return this.write({ mac, label, at: this.clock(), contentKey, writeContent }).then(
      () => void this.committedContent.set(mac, contentKey),
      (e: unknown) => {
        this.committedContent.delete(mac);
        throw e;
      },
    );
  }

  /** Queues the removal of a label and its content; resolves once committed. */
  remove(mac: string): Promise<void> {
    this.committedContent.delete(mac);
    return this.write({ mac, label: null, at: this.clock() });
  }

  /** Every label with its delivery state, by MAC (committed data). */
  load(): Map<string, StoredLabel> {
    const labels = this.selectLabels!.all() as LabelRow[];
    const contents = new Map<string, ContentRow[]>();
    for (const c of this.selectContent!.all() as ContentRow[]) {
      const list = contents.get(c.mac);
      if (list) list.push(c);
      else contents.set(c.mac, [c]);
    }
    const out = new Map<string, StoredLabel>();
    for (const r of labels) {
      const rows = contents.get(r.mac) ?? [];
      const version = (c: ContentRow): ContentVersion => ({
        seq: c.seq,
        hash: c.hash,
        body: c.body,
        bytes: c.bytes,
        effectiveAt: c.effective_at,
        price: c.price,
        currency: c.currency,
        priceKey: c.price_key,
      });
      const plan = rows.filter((c) => c.in_plan === 1).map(version).sort((a, b) => a.effectiveAt - b.effectiveAt || a.seq - b.seq);
      const inflightRow = r.inflight_seq === null ? undefined : rows.find((c) => c.seq === r.inflight_seq);
      const delivery: LabelRecord = {
        mac: r.mac,
        checkInMs: r.check_in_ms,
        ap: r.ap_id,
        lastHeardAt: r.last_heard_at,
        lastSeq: r.last_seq,
        plan,
        shown:
          r.shown_seq === null
            ? null
            : { seq: r.shown_seq, hash: r.shown_hash!, price: r.shown_price, currency: r.shown_currency, priceKey: r.shown_price_key ?? '', at: r.shown_at ?? 0 },
        // A transfer whose content row is missing cannot be confirmed by a plain ack: it is treated as lost (sent again).
        inflight:
          inflightRow && r.inflight_ap !== null
            ? { content: version(inflightRow), ap: r.inflight_ap, sentAt: r.sent_at ?? 0, storedAt: r.stored_at, deadline: r.deadline ?? 0 }
            : null,
        state: r.state,
        attempts: r.attempts,
        nextAttemptAt: r.next_attempt_at,
        lastError: r.last_error,
        mismatchSince: r.mismatch_since,
      };
      if (delivery.state === 'sent' && !delivery.inflight) delivery.state = 'pending';
      out.set(r.mac, { binding: { labelType: r.label_type, gtin: r.gtin, locationId: r.location_id }, delivery });
    }
    return out;
  }
}

/**
 * Queues every label the scheduler changed since the last call (its dirty set): a known label is
 * saved with its binding, one the scheduler no longer has is removed. Resolves when all are
 * committed or failed; a label whose write failed is marked dirty again (saved with the next call)
 * and listed in `failed`. A label with no binding is skipped and listed in `unbound` (the caller
 * binds before it schedules).
 */
export async function persistChanges(
  scheduler: Pick<DeliveryScheduler, 'drainDirty' | 'record' | 'markDirty'>,
  bindingOf: (mac: string) => LabelBinding | undefined,
  repo: LabelRepository,
): Promise<{ saved: number; removed: number; unbound: string[]; failed: Array<{ mac: string; error: Error }> }> {
  const writes: Array<Promise<void>> = [];
  const unbound: string[] = [];
  const failed: Array<{ mac: string; error: Error }> = [];
  let saved = 0;
  let removed = 0;
  const track = (mac: string, p: Promise<void>, done: () => void): void => {
    writes.push(
      p.then(done, (error: Error) => {
        failed.push({ mac, error });
        scheduler.markDirty(mac);
      }),
    );
  };
  for (const mac of scheduler.drainDirty()) {
    const delivery = scheduler.record(mac);
    if (!delivery) {
      track(mac, repo.remove(mac), () => removed++);
      continue;
    }
    const binding = bindingOf(mac);
    if (!binding) {
      unbound.push(mac);
      continue;
    }
    track(mac, repo.save({ binding, delivery }), () => saved++);
  }
  await Promise.all(writes);
  return { saved, removed, unbound, failed };
}
