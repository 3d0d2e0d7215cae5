/**
 * Pick-to-light for online orders picked for store pickup (issue #9, "LED flash"). A store system
 * sends an order (`order.pick`: GTINs and quantities); every label at every location holding one
 * of its GTINs flashes in the order's colour until the line is picked, the order is cancelled or
 * the picker ends it (`order.done`). Picks are confirmed by the weight shelves where the slot is
 * weighed and by hand (`order.confirm`) where it is not. Each order has a report: retained on
 * `shelfgate/v1/<store>/orders/<order_id>` while it runs and after it ended, and one outbox event
 * `pick_report` when it ends.
 *
 * The service stands alone: everything it needs is injected (PickDeps), so the labels feature wires
 * it to its radios and label bindings, and tests to fakes.
 *
 * Design choices (open points of the issue, decided here):
 * - Weighed: a location is weighed when it has a unit weight (without one the shelf cannot count
 *   items); `PickDeps.weighed` may decide otherwise. A line is confirmed by weight only from
 *   `stockCommitted` events with observedBy `weight`. `order.confirm` is refused for a line whose
 *   GTIN is held only by weighed locations (the shelf confirms it; a hand confirmation would count
 *   the same item twice). A line with no location at all may be confirmed by hand (the picker found
 *   the item elsewhere).
 * - A pick is a count going DOWN by d at a weighed location between two committed events of the
 *   same GTIN (the last count per location is kept from the events, seeded from the committed stock
 *   at start when `locations.loadStock` is given). min(d, remaining) counts for the open line; with
 *   several open orders wanting that GTIN, the oldest order (creation order) is served first and
 *   what is left goes to the next. Items taken beyond every open line are a shopper's, not ours.
 * - A count going UP (items put back) never un-picks a line: the shelf cannot tell the picker's
 *   put-back from a restock or a shopper's return, and un-picking would light a label again for an
 *   item that is already in the order's bag. A picker who put an item back and needs another picks
 *   it again; the report keeps the truth of what was taken.
 * - Order lines repeating a GTIN are merged (quantities summed): order systems send one line per
 *   basket item. The merged, GTIN-sorted lines plus the requested colour are the order's body for
 *   idempotency: the same body for an active (or recently ended) order id answers its report, a
 *   different body is refused.
 * - Colours: a palette of six LED colours. A new order gets a colour no active order has, the
 *   least recently assigned among those (a colour that just ended is not handed out at once, so a
 *   picker does not mistake the next order's lights for the last one's). When all six are taken,
 *   the least recently assigned colour is reused and the report says so (`colour_reused`). A label
 *   wanted by several orders flashes up to three of their colours, one per flash group, oldest first.
 * - Flashing: a flash reaches a label at its next check-in and runs for a limited time, so every
 *   wanted label is flashed again every `reflashMs`; a change (new order, line closed) flashes at
 *   once. A label no open line wants any more gets the all-zero pattern (stop); if that fails, the
 *   running pattern ends by itself. Flash failures are counted and logged (rate-limited), never
 *   thrown at the command's caller.
 * - Bounds: at most `maxOrders` active orders (BUSY beyond) and `maxLines` lines per order
 *   (REQUEST_INVALID beyond); the last `recentEnded` ended orders stay answerable (order.get,
 *   idempotent replays); an ended order dropped from that list has its retained topic cleared.
 * - Durability: active orders live in `pick_orders` (migration 12), one row per order with its
 *   lines as JSON, written through the Store's one writer; an ended order's row is deleted in the
 *   same batch as its `pick_report` outbox event (both or neither: when that batch fails, the order
 *   stays active and the command answers STORAGE_WRITE_FAILED). After a restart the orders are
 *   restored, their reports re-published and flashing resumes. Ended orders are not kept across a
 *   restart (their report is in the outbox and on the bus).
 */
import type { Statement } from 'better-sqlite3';
import { z } from 'zod';
import type { LocalBus } from '../../bus/broker';
import type { TopicArea } from '../../bus/acl';
import { isValidId, storePrefix } from '../../bus/topics';
import { declareCommand, handle, type Caller } from '../../core/commands';
import { Priority, type EventKindPolicy } from '../../core/event-kinds';
import type { EventBus, StockCommitted } from '../../core/events';
import type { Location, Locations } from '../../core/locations';
import { buildLedPattern, LED_COLOURS, LED_PATTERN_OFF, type LedColourName } from '../../drivers/oepl';
import { ErrorCode, ShelfgateError } from '../../errors';
import type { Service } from '../../lifecycle';
import { LogLimiter, type Logger } from '../../log';
import type { Migration } from '../../store/migrations';
import type { Store } from '../../store/store';
import { isValidGtin, toGtin14 } from '../../util/gtin';

// ------------------------------------------------------------------ static declarations

export const PICK_SCHEMA_VERSION = 12;

export const PICK_MIGRATIONS: readonly Migration[] = [
  {
    version: PICK_SCHEMA_VERSION,
    description: 'labels: pick-to-light orders that are still active',
    up: `
      CREATE TABLE pick_orders (
        order_id      TEXT PRIMARY KEY,
        seq           INTEGER NOT NULL,        -- creation order (oldest order is served first)
        body          TEXT NOT NULL,           -- canonical request (idempotency)
        colour        TEXT NOT NULL,
        colour_reused INTEGER NOT NULL CHECK (colour_reused IN (0, 1)),
        created_at    INTEGER NOT NULL,
        first_pick_at INTEGER,
        last_pick_at  INTEGER,
        lines         TEXT NOT NULL,           -- JSON [{gtin, qty, picked, by_weight, by_hand}]
        updated_at    INTEGER NOT NULL
      ) WITHOUT ROWID;
    `,
  },
];

/** The outbox kind of the per-order report: after stock, never dropped (an order's record). */
export const PICK_EVENT_KINDS: readonly EventKindPolicy[] = [
  { kind: 'pick_report', priority: Priority.ANOMALY, droppable: false, description: 'an online order picked for store pickup ended: per line qty, picked, short, with the times' },
];

export const PICK_TOPICS: readonly TopicArea[] = [
  { filter: 'orders/#', gatewayOwned: true, description: 'retained pick-to-light report per online order (orders/<order_id>)' },
];

/** The palette, in allocation order. */
export const PICK_PALETTE: readonly LedColourName[] = ['red', 'green', 'blue', 'yellow', 'magenta', 'cyan'];

/** Upper bounds the command schemas enforce; the service's options may set lower ones. */
export const PICK_LIMITS = { maxOrders: 32, maxLines: 100, maxQty: 9999, recentEnded: 64 } as const;

const orderIdSchema = z
  .string()
  .max(64, 'must be at most 64 characters')
  .refine(isValidId, "must be a topic-safe id (no '+', '#', '/', control characters, surrounding spaces or leading '$')");
const gtinSchema = z
  .string()
  .refine(isValidGtin, 'must be a GTIN-8/12/13/14 with a valid GS1 check digit')
  .transform((g) => toGtin14(g));
const qtySchema = z.number().int('must be a whole number').min(1, 'must be >= 1').max(PICK_LIMITS.maxQty, `must be <= ${PICK_LIMITS.maxQty}`);

export const orderPick = declareCommand({
  name: 'order.pick',
  permission: 'operate',
  description: 'flash the labels of the slots holding an online order’s GTINs until each line is picked',
  payload: z.object({
    order_id: orderIdSchema,
    lines: z
      .array(z.object({ gtin: gtinSchema, qty: qtySchema }))
      .min(1, 'must have at least one line')
      .max(PICK_LIMITS.maxLines, `must have at most ${PICK_LIMITS.maxLines} lines`),
    colour: z.enum(PICK_PALETTE as [LedColourName, ...LedColourName[]]).optional(),
  }),
});

export const orderCancel = declareCommand({
  name: 'order.cancel',
  permission: 'operate',
  description: 'cancel an active pick order (its labels stop flashing)',
  payload: z.object({ order_id: orderIdSchema }),
});

export const orderDone = declareCommand({
  name: 'order.done',
  permission: 'operate',
  description: 'the picker ends an order; lines not picked are short',
  payload: z.object({ order_id: orderIdSchema }),
});

export const orderConfirm = declareCommand({
  name: 'order.confirm',
  permission: 'operate',
  description: 'a picker confirms items of a line taken from a slot that is not weighed',
  payload: z.object({ order_id: orderIdSchema, gtin: gtinSchema, qty: qtySchema }),
});

export const orderGet = declareCommand({
  name: 'order.get',
  permission: 'read',
  description: 'the report of an active or recently ended pick order',
  payload: z.object({ order_id: orderIdSchema }),
});

export const PICK_COMMANDS = [orderPick, orderCancel, orderDone, orderConfirm, orderGet];

// ------------------------------------------------------------------ types

export type OrderState = 'open' | 'picked' | 'short' | 'cancelled';
export type LineState = 'open' | 'picked' | 'short' | 'cancelled';

/** Writes a `pick_report` outbox event; called inside `store.together` with the order's row delete. */
export type PickOutbox = (kind: 'pick_report', payload: object, meta: { deviceId: string; createdAt: number }) => Promise<unknown>;

export interface PickDeps {
  storeId: string;
  store: Store;
  events: EventBus;
  /** `loadStock` (optional) seeds the last count per location, so the first pick after a restart counts. */
  locations: Pick<Locations, 'list' | 'get'> & Partial<Pick<Locations, 'loadStock'>>;
  bus: Pick<LocalBus, 'publish'>;
  /** MACs of the labels bound to a location. */
  labelsAt(locationId: string): string[];
  /** The label's radio (LabelRadio.flash): pattern is 24 hex digits. */
  flash(mac: string, pattern: string): Promise<void>;
  /** The outbox append for `pick_report` (storeOutbox(store) writes it through the same Store). */
  outbox: PickOutbox;
  /** ms epoch; default Date.now. */
  clock?: () => number;
  log: Logger;
  /** Whether a location is weighed; default: it has a unit weight. */
  weighed?(location: Location): boolean;
  options?: Partial<PickOptions>;
}

export interface PickOptions {
  maxOrders: number;
  maxLines: number;
  /** Re-flash interval of every wanted label (ms). */
  reflashMs: number;
  /** Repetitions of the flash sequence in one pattern (0-255); one sequence of pickPattern runs about 4 s on the EFR32 firmware. */
  patternRepeats: number;
  /** Ended orders kept answerable (order.get, idempotent replays) and retained on the bus. */
  recentEnded: number;
}

const DEFAULTS: PickOptions = { maxOrders: PICK_LIMITS.maxOrders, maxLines: PICK_LIMITS.maxLines, reflashMs: 60_000, patternRepeats: 15, recentEnded: PICK_LIMITS.recentEnded };

interface Line {
  gtin: string;
  qty: number;
  picked: number;
  byWeight: number;
  byHand: number;
}

interface Order {
  id: string;
  seq: number;
  body: string;
  colour: LedColourName;
  colourReused: boolean;
  createdAt: number;
  firstPickAt: number | null;
  lastPickAt: number | null;
  lines: Line[];
  /** Tail of this order's write-then-publish chain (reports reach the bus in commit order). */
  tail: Promise<void>;
}

export interface PickLineReport {
  gtin: string;
  qty: number;
  picked: number;
  short: number;
  state: LineState;
  by_weight: number;
  by_hand: number;
  /** Locations holding the GTIN. */
  locations: string[];
  /** Why no label flashes for it: no location holds the GTIN, or none of its locations has a label. */
  unlocated: 'no-location' | 'no-label' | null;
}

export interface PickReport {
  store_id: string;
  order_id: string;
  state: OrderState;
  colour: LedColourName;
  /** The colour is also another active order's (all palette colours were taken, or it was requested). */
  colour_reused: boolean;
  created_at: string;
  first_pick_at: string | null;
  last_pick_at: string | null;
  ended_at: string | null;
  lines: PickLineReport[];
  /** GTINs of the lines in `lines` whose `unlocated` is set. */
  unlocated: string[];
}

interface OrderRow {
  order_id: string;
  seq: number;
  body: string;
  colour: string;
  colour_reused: number;
  created_at: number;
  first_pick_at: number | null;
  last_pick_at: number | null;
  lines: string;
}

interface SaveInput {
  id: string;
  row: Omit<OrderRow, 'order_id'> | null;
  ts: number;
}

/** An outbox writer through `store.appendEvent` (the `pick_report` policy's priority). */
export function storeOutbox(store: Store): PickOutbox {
  return (kind, payload, meta) => store.appendEvent({ deviceId: meta.deviceId, kind, priority: PICK_EVENT_KINDS[0]!.priority, payload, createdAt: meta.createdAt });
}

/** The LED pattern of a label wanted by orders of these colours (1-3, oldest order first). */
export function pickPattern(colours: readonly LedColourName[], repeats: number): string {
  if (colours.length === 0) return LED_PATTERN_OFF;
  const groups = [0, 1, 2].map((i) => ({ colour: LED_COLOURS[colours[i % colours.length]!], flashes: 3, speed: 2, delayAfter: 5 }));
  return buildLedPattern({ flashDuration: 8, groups, repeats });
}

function normGtin(g: string | null | undefined): string | null {
  if (!g) return null;
  return isValidGtin(g) ? toGtin14(g) : g;
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

// ------------------------------------------------------------------ service

export class PickService implements Service {
  readonly name = 'labels.pick';
  readonly stats = { orders: 0, ended: 0, flashes: 0, flashFailures: 0, persistFailures: 0, publishFailures: 0, picksByWeight: 0, picksByHand: 0, unattributedItems: 0, colourReuses: 0 };
  private readonly o: PickOptions;
  private readonly now: () => number;
  private readonly limiter: LogLimiter;
  private readonly active = new Map<string, Order>();
  /** Ended orders, oldest first (bounded by recentEnded). */
  private readonly recent = new Map<string, { body: string; report: PickReport }>();
  /** Last committed count (and the GTIN it counted) per weighed location; keyed by known locations only. */
  private readonly lastCount = new Map<string, { count: number; gtin: string | null }>();
  /** Assignment sequence of each colour (higher = more recently assigned). */
  private readonly colourUsed = new Map<LedColourName, number>();
  private useSeq = 0;
  private orderSeq = 0;
  /** The pattern last sent to each label this service flashes (bounded by the labels of open lines). */
  private readonly sent = new Map<string, string>();
  private readonly inflight = new Set<Promise<unknown>>();
  private timer: NodeJS.Timeout | null = null;
  private selectOrders: Statement | null = null;
  private readonly saveOrder: (i: SaveInput) => Promise<void>;
  private running = false;

  constructor(private readonly d: PickDeps) {
    this.o = { ...DEFAULTS, ...d.options };
    this.now = d.clock ?? Date.now;
    this.limiter = new LogLimiter(d.log);
    d.store.onOpen((db) => {
      this.selectOrders = db.prepare('SELECT order_id, seq, body, colour, colour_reused, created_at, first_pick_at, last_pick_at, lines FROM pick_orders ORDER BY seq');
    });
    this.saveOrder = d.store.defineWrite<SaveInput>({
      name: 'pick.saveOrder',
      prepare: (db) => {
        const upsert = db.prepare(
          `INSERT INTO pick_orders (order_id, seq, body, colour, colour_reused, created_at, first_pick_at, last_pick_at, lines, updated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (order_id) DO UPDATE SET first_pick_at = excluded.first_pick_at, last_pick_at = excluded.last_pick_at,
             lines = excluded.lines, updated_at = excluded.updated_at`,
        );
        const del = db.prepare('DELETE FROM pick_orders WHERE order_id = ?');
        return ({ id, row, ts }) => {
          if (row === null) del.run(id);
          else upsert.run(id, row.seq, row.body, row.colour, row.colour_reused, row.created_at, row.first_pick_at, row.last_pick_at, row.lines, ts);
        };
      },
      // the last state of an order in a batch is what counts (null: it ended)
      coalesce: { key: (i) => i.id },
    });
  }

  async start(): Promise<void> {
    this.running = true;
    this.active.clear();
    for (const r of this.selectOrders!.all() as OrderRow[]) {
      const colour = (PICK_PALETTE as readonly string[]).includes(r.colour) ? (r.colour as LedColourName) : PICK_PALETTE[0]!;
      const lines = (JSON.parse(r.lines) as Array<{ gtin: string; qty: number; picked: number; by_weight: number; by_hand: number }>).map((l) => ({
        gtin: l.gtin,
        qty: l.qty,
        picked: l.picked,
        byWeight: l.by_weight,
        byHand: l.by_hand,
      }));
      const order: Order = { id: r.order_id, seq: r.seq, body: r.body, colour, colourReused: r.colour_reused === 1, createdAt: r.created_at, firstPickAt: r.first_pick_at, lastPickAt: r.last_pick_at, lines, tail: Promise.resolve() };
      this.active.set(order.id, order);
      this.orderSeq = Math.max(this.orderSeq, r.seq);
      this.colourUsed.set(colour, ++this.useSeq);
    }
    this.lastCount.clear();
    for (const s of this.d.locations.loadStock?.() ?? []) {
      const loc = this.d.locations.get(s.locationId);
      if (loc && s.observedBy === 'weight' && s.count !== null) this.lastCount.set(s.locationId, { count: s.count, gtin: normGtin(loc.gtin) });
    }
    this.d.events.on(this, 'stockCommitted', (e) => this.onStock(e));
    // a slot that now holds (or no longer holds) an open line's product: its labels follow at once
    this.d.events.on(this, 'assignmentChanged', () => this.syncFlashes(false));
    for (const order of this.active.values()) this.publishReport(order, this.report(order, 'open', null));
    if (this.active.size > 0) this.d.log.info({ orders: this.active.size }, 'pick orders restored: flashing resumes');
    this.syncFlashes(true);
    this.timer = setInterval(() => this.syncFlashes(true), this.o.reflashMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.d.events.removeOwner(this);
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.settled();
  }

  /** Resolves when every flash, write and publish started so far has finished (tests, stop()). */
  async settled(): Promise<void> {
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
  }

  /** Re-flashes every wanted label now (what the interval timer does). */
  reflash(): void {
    this.syncFlashes(true);
  }

  /** Label bindings changed (the labels service calls this): flashes labels newly wanted, stops those no longer wanted. */
  bindingsChanged(): void {
    this.syncFlashes(false);
  }

  /** Reports of the active orders, oldest first. */
  activeReports(): PickReport[] {
    return this.ordered().map((o) => this.report(o, 'open', null));
  }

  /** Handlers of PICK_COMMANDS. */
  commandHandlers() {
    return [
      handle(orderPick, async (p, caller) => this.pick(p.order_id, p.lines, p.colour ?? null, caller)),
      handle(orderCancel, async (p, caller) => this.end(this.mustBeActive(p.order_id), 'cancelled', caller)),
      handle(orderDone, async (p, caller) => {
        const order = this.mustBeActive(p.order_id);
        return this.end(order, order.lines.every((l) => l.picked >= l.qty) ? 'picked' : 'short', caller);
      }),
      handle(orderConfirm, async (p, caller) => this.confirm(p.order_id, p.gtin, p.qty, caller)),
      handle(orderGet, async (p) => {
        const order = this.active.get(p.order_id);
        if (order) return this.report(order, 'open', null);
        const ended = this.recent.get(p.order_id);
        if (ended) return ended.report;
        throw new ShelfgateError(ErrorCode.NOT_FOUND, `no pick order ${p.order_id} (neither active nor recently ended)`);
      }),
    ];
  }

  // ---- commands ----

  private async pick(id: string, input: Array<{ gtin: string; qty: number }>, colour: LedColourName | null, caller: Caller): Promise<PickReport> {
    this.mustRun();
    const merged = new Map<string, number>();
    for (const l of input) merged.set(l.gtin, (merged.get(l.gtin) ?? 0) + l.qty);
    const lines = [...merged].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([gtin, qty]) => ({ gtin, qty }));
    const body = JSON.stringify({ lines, colour });
    const existing = this.active.get(id);
    if (existing) {
      if (existing.body === body) return this.report(existing, 'open', null);
      throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `pick order ${id} is active with other lines or colour: cancel it first or use another order id`, { order_id: id });
    }
    const ended = this.recent.get(id);
    if (ended) {
      if (ended.body === body) return ended.report;
      throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `pick order ${id} has ended (${ended.report.state}): use another order id`, { order_id: id });
    }
    if (lines.length > this.o.maxLines) throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `pick order ${id} has ${lines.length} different GTINs: at most ${this.o.maxLines} per order`, { order_id: id });
    if (this.active.size >= this.o.maxOrders)
      throw new ShelfgateError(ErrorCode.BUSY, `${this.active.size} pick orders are active (the most this gateway runs at once): finish or cancel one first`, { max_orders: this.o.maxOrders });
    const { colour: c, reused } = this.allocateColour(colour);
    const order: Order = {
      id,
      seq: ++this.orderSeq,
      body,
      colour: c,
      colourReused: reused,
      createdAt: this.now(),
      firstPickAt: null,
      lastPickAt: null,
      lines: lines.map((l) => ({ ...l, picked: 0, byWeight: 0, byHand: 0 })),
      tail: Promise.resolve(),
    };
    this.active.set(id, order);
    try {
      await this.saveOrder(this.saveInput(order));
    } catch (e) {
      this.active.delete(id);
      this.stats.persistFailures++;
      throw new ShelfgateError(ErrorCode.STORAGE_WRITE_FAILED, `pick order ${id} could not be stored: ${(e as Error).message}`, { order_id: id }, { cause: e });
    }
    this.stats.orders++;
    if (reused) this.stats.colourReuses++;
    const report = this.report(order, 'open', null);
    this.d.log.info({ order_id: id, by: caller.username, lines: lines.length, colour: c, colour_reused: reused, unlocated: report.unlocated }, 'pick order started');
    this.publishReport(order, report);
    this.syncFlashes(false);
    return report;
  }

  private async confirm(id: string, gtin: string, qty: number, caller: Caller): Promise<PickReport> {
    this.mustRun();
    const order = this.mustBeActive(id);
    const line = order.lines.find((l) => l.gtin === gtin);
    if (!line) throw new ShelfgateError(ErrorCode.NOT_FOUND, `pick order ${id} has no line for GTIN ${gtin}`, { order_id: id, gtin });
    const locs = this.locationsOf(gtin);
    if (locs.length > 0 && locs.every((l) => this.isWeighed(l)))
      throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `GTIN ${gtin} is only in weighed slots (${locs.map((l) => l.id).join(', ')}): the shelf confirms the pick`, { order_id: id, gtin });
    const take = Math.min(qty, line.qty - line.picked);
    if (take > 0) {
      line.picked += take;
      line.byHand += take;
      this.stats.picksByHand += take;
      this.touch(order, this.now());
      this.d.log.info({ order_id: id, gtin, qty: take, by: caller.username }, 'pick confirmed by hand');
    }
    return this.afterChange(order, caller.username);
  }

  // ---- weight picks ----

  private onStock(e: StockCommitted): void {
    if (e.observedBy !== 'weight') return;
    const loc = this.d.locations.get(e.locationId);
    if (!loc) return; // only configured locations are tracked (bounded)
    const gtin = normGtin(e.gtin ?? loc.gtin);
    const prev = this.lastCount.get(e.locationId);
    if (e.count === null) return; // offline or unknown: keep the last count
    this.lastCount.set(e.locationId, { count: e.count, gtin });
    if (!prev || prev.gtin !== gtin || gtin === null || e.count >= prev.count) return; // no baseline, another product, or put back
    let rest = prev.count - e.count;
    const changed: Order[] = [];
    for (const order of this.ordered()) {
      if (rest === 0) break;
      const line = order.lines.find((l) => l.gtin === gtin && l.picked < l.qty);
      if (!line) continue;
      const take = Math.min(rest, line.qty - line.picked);
      line.picked += take;
      line.byWeight += take;
      rest -= take;
      this.stats.picksByWeight += take;
      this.touch(order, e.ts);
      changed.push(order);
      this.d.log.info({ order_id: order.id, gtin, qty: take, location: e.locationId }, 'pick confirmed by weight');
    }
    if (rest > 0 && changed.length > 0) this.stats.unattributedItems += rest;
    for (const order of changed) this.track(this.afterChange(order, 'weight').catch(() => undefined));
  }

  /** Persists and publishes a changed order; ends it when every line is picked. */
  private async afterChange(order: Order, by: string): Promise<PickReport> {
    if (order.lines.every((l) => l.picked >= l.qty)) return this.end(order, 'picked', { username: by });
    const report = this.report(order, 'open', null);
    const input = this.saveInput(order);
    const step = order.tail.then(async () => {
      try {
        await this.saveOrder(input);
      } catch (e) {
        this.stats.persistFailures++;
        this.limiter.error(`persist:${order.id}`, { order_id: order.id, err: (e as Error).message }, 'could not store pick order progress: the next change stores it');
        return;
      }
      await this.publish(this.topic(order.id), report);
    });
    order.tail = step;
    this.track(step);
    this.syncFlashes(false);
    await step;
    return report;
  }

  // ---- ending ----

  private async end(order: Order, state: Exclude<OrderState, 'open'>, caller: Pick<Caller, 'username'>): Promise<PickReport> {
    if (this.active.get(order.id) !== order) return this.recent.get(order.id)?.report ?? this.report(order, state, this.now());
    const endedAt = this.now();
    this.active.delete(order.id);
    const report = this.report(order, state, endedAt);
    this.remember(order.id, order.body, report);
    this.stats.ended++;
    this.d.log.info({ order_id: order.id, by: caller.username, state, short: report.lines.reduce((n, l) => n + l.short, 0) }, 'pick order ended');
    const { store } = this.d;
    const step = order.tail.then(async (): Promise<Error | null> => {
      try {
        // one batch: the report reaches the outbox exactly when the order leaves the table
        await store.together(() =>
          Promise.all([this.d.outbox('pick_report', { kind: 'pick_report', ...report }, { deviceId: `orders/${order.id}`, createdAt: endedAt }), this.saveOrder({ id: order.id, row: null, ts: endedAt })]),
        );
      } catch (e) {
        return e as Error;
      }
      await this.publish(this.topic(order.id), report);
      return null;
    });
    order.tail = step.then(() => undefined);
    this.track(step);
    this.syncFlashes(false);
    const failed = await step;
    if (failed) {
      // neither the report nor the row delete was stored: the order is still active, here as on disk
      this.stats.persistFailures++;
      this.stats.ended--;
      this.recent.delete(order.id);
      this.active.set(order.id, order);
      this.syncFlashes(false);
      this.limiter.error(`persist:${order.id}`, { order_id: order.id, err: failed.message }, 'could not store the end of a pick order: it stays active');
      throw new ShelfgateError(ErrorCode.STORAGE_WRITE_FAILED, `the end of pick order ${order.id} could not be stored (${failed.message}): it is still active, try again`, { order_id: order.id }, { cause: failed });
    }
    return report;
  }

  private remember(id: string, body: string, report: PickReport): void {
    this.recent.delete(id);
    this.recent.set(id, { body, report });
    while (this.recent.size > this.o.recentEnded) {
      const oldest = this.recent.keys().next().value as string;
      this.recent.delete(oldest);
      // its retained report goes too: the bus keeps no more ended orders than this service answers for
      this.track(this.d.bus.publish(this.topic(oldest), '', { retain: true, qos: 1 }).catch((e: Error) => this.publishFailed(oldest, e)));
    }
  }

  // ---- colours ----

  private allocateColour(requested: LedColourName | null): { colour: LedColourName; reused: boolean } {
    const inUse = new Set([...this.active.values()].map((o) => o.colour));
    const lru = (cands: readonly LedColourName[]): LedColourName =>
      cands.reduce((best, c) => ((this.colourUsed.get(c) ?? 0) < (this.colourUsed.get(best) ?? 0) ? c : best), cands[0]!);
    let colour: LedColourName;
    if (requested) colour = requested;
    else {
      const free = PICK_PALETTE.filter((c) => !inUse.has(c));
      colour = lru(free.length > 0 ? free : PICK_PALETTE);
    }
    this.colourUsed.set(colour, ++this.useSeq);
    return { colour, reused: inUse.has(colour) };
  }

  // ---- flashing ----

  /** Sends the pattern each wanted label should run; `force`: also to labels already sent it (re-flash). */
  private syncFlashes(force: boolean): void {
    if (!this.running) return;
    const want = new Map<string, LedColourName[]>();
    const byGtin = this.locationsByGtin();
    for (const order of this.ordered()) {
      for (const line of order.lines) {
        if (line.picked >= line.qty) continue;
        for (const loc of byGtin.get(line.gtin) ?? []) {
          for (const mac of this.labelsAt(loc.id)) {
            const cs = want.get(mac) ?? [];
            if (!cs.includes(order.colour) && cs.length < 3) cs.push(order.colour);
            want.set(mac, cs);
          }
        }
      }
    }
    for (const [mac, colours] of want) {
      const pattern = pickPattern(colours, this.o.patternRepeats);
      if (!force && this.sent.get(mac) === pattern) continue;
      this.sent.set(mac, pattern);
      this.send(mac, pattern);
    }
    for (const mac of [...this.sent.keys()]) {
      if (want.has(mac)) continue;
      this.sent.delete(mac);
      this.send(mac, LED_PATTERN_OFF);
    }
  }

  private send(mac: string, pattern: string): void {
    let p: Promise<void>;
    try {
      p = this.d.flash(mac, pattern);
    } catch (e) {
      p = Promise.reject(e);
    }
    this.track(
      p.then(
        () => {
          this.stats.flashes++;
        },
        (e: Error) => {
          this.stats.flashFailures++;
          // a failed flash is sent again: at the next re-flash, or at the next change for this label
          if (this.sent.get(mac) === pattern) this.sent.delete(mac);
          this.limiter.warn(`flash:${mac}`, { mac, err: e?.message, code: (e as { code?: string })?.code }, 'LED flash failed');
        },
      ),
    );
  }

  private labelsAt(locationId: string): string[] {
    try {
      return this.d.labelsAt(locationId);
    } catch (e) {
      this.limiter.error(`labelsAt:${locationId}`, { location: locationId, err: (e as Error).message }, 'could not read the labels of a location');
      return [];
    }
  }

  // ---- helpers ----

  private ordered(): Order[] {
    return [...this.active.values()].sort((a, b) => a.seq - b.seq);
  }

  private locationsByGtin(): Map<string, Location[]> {
    const out = new Map<string, Location[]>();
    for (const l of this.d.locations.list()) {
      const g = normGtin(l.gtin);
      if (g) out.set(g, [...(out.get(g) ?? []), l]);
    }
    return out;
  }

  private locationsOf(gtin: string): Location[] {
    return this.d.locations.list().filter((l) => normGtin(l.gtin) === gtin);
  }

  private isWeighed(l: Location): boolean {
    return this.d.weighed ? this.d.weighed(l) : l.unitWeightG !== null;
  }

  private touch(order: Order, ts: number): void {
    if (order.firstPickAt === null) order.firstPickAt = ts;
    order.lastPickAt = order.lastPickAt === null ? ts : Math.max(order.lastPickAt, ts);
  }

  private mustBeActive(id: string): Order {
    this.mustRun();
    const order = this.active.get(id);
    if (order) return order;
    const ended = this.recent.get(id);
    if (ended) throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `pick order ${id} has already ended (${ended.report.state})`, { order_id: id, state: ended.report.state });
    throw new ShelfgateError(ErrorCode.NOT_FOUND, `no active pick order ${id}`, { order_id: id });
  }

  private mustRun(): void {
    if (!this.running) throw new ShelfgateError(ErrorCode.STOPPED, 'pick-to-light is not running');
  }

  private saveInput(order: Order): SaveInput {
    return {
      id: order.id,
      ts: this.now(),
      row: {
        seq: order.seq,
        body: order.body,
        colour: order.colour,
        colour_reused: order.colourReused ? 1 : 0,
        created_at: order.createdAt,
        first_pick_at: order.firstPickAt,
        last_pick_at: order.lastPickAt,
        lines: JSON.stringify(order.lines.map((l) => ({ gtin: l.gtin, qty: l.qty, picked: l.picked, by_weight: l.byWeight, by_hand: l.byHand }))),
      },
    };
  }

  private report(order: Order, state: OrderState, endedAt: number | null): PickReport {
    const byGtin = this.locationsByGtin();
    const lines = order.lines.map((l): PickLineReport => {
      const locs = byGtin.get(l.gtin) ?? [];
      const unlocated = locs.length === 0 ? 'no-location' : locs.some((loc) => this.labelsAt(loc.id).length > 0) ? null : 'no-label';
      const done = l.picked >= l.qty;
      const lineState: LineState = done ? 'picked' : state === 'cancelled' ? 'cancelled' : state === 'open' ? 'open' : 'short';
      return {
        gtin: l.gtin,
        qty: l.qty,
        picked: l.picked,
        short: lineState === 'short' ? l.qty - l.picked : 0,
        state: lineState,
        by_weight: l.byWeight,
        by_hand: l.byHand,
        locations: locs.map((x) => x.id),
        unlocated,
      };
    });
    return {
      store_id: this.d.storeId,
      order_id: order.id,
      state,
      colour: order.colour,
      colour_reused: order.colourReused,
      created_at: iso(order.createdAt)!,
      first_pick_at: iso(order.firstPickAt),
      last_pick_at: iso(order.lastPickAt),
      ended_at: iso(endedAt),
      lines,
      unlocated: lines.filter((l) => l.unlocated !== null).map((l) => l.gtin),
    };
  }

  private topic(orderId: string): string {
    return `${storePrefix(this.d.storeId)}orders/${orderId}`;
  }

  private publishReport(order: Order, report: PickReport): void {
    const step = order.tail.then(() => this.publish(this.topic(order.id), report));
    order.tail = step;
    this.track(step);
  }

  private publish(topic: string, body: object): Promise<void> {
    return this.d.bus.publish(topic, JSON.stringify(body), { retain: true, qos: 1 }).catch((e: Error) => this.publishFailed(topic, e));
  }

  private publishFailed(topic: string, e: Error): void {
    this.stats.publishFailures++;
    this.limiter.warn(`publish:${topic}`, { topic, err: e.message }, 'publish failed');
  }

  private track<T>(p: Promise<T>): void {
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p)).catch(() => undefined);
  }
}
