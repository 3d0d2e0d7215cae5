/**
 * The labels service: turns applied prices into label content and gets it onto every bound label,
 * confirmed label by label, with the truth about every label that is not there yet.
 *
 * Data path: `priceApplied` / `assignmentChanged` / `productChanged` (EventBus) -> render per
 * label (content.ts, the label type's template) -> DeliveryScheduler (pure: urgency, coalescing,
 * budgets, back-off) -> SQLite (repository.ts) -> LabelRadio.send (one per access point) -> the
 * radio's `ack` -> confirmed -> integrity on the bus (retained) and in the outbox (`label_integrity`).
 *
 * Rules this file keeps:
 * - Durable before acting: a round of dispatches is committed (state `sent`, the content in flight)
 *   before any of it goes to a radio. After kill -9 a transfer is either still `sent` (its ack is
 *   awaited, or it times out and is retried) or was never handed out; nothing confirmed is resent
 *   (the scheduler never sends content a label confirmed) and nothing unconfirmed is forgotten.
 * - Confirmed only on the radio's acknowledgement (scheduler.acknowledged), never on `send()`
 *   resolving (that is `stored`).
 * - An AP that is busy (409) or unreachable does not burn the labels' attempts: its transfers go
 *   back to pending and the AP is paused (scheduler.apLost with `until`).
 * - A label whose content cannot be made (no product at its slot, no price, a price that does not
 *   fit its template) keeps what it shows, is reported with the reason (`problem`), and is retried
 *   when its data changes.
 * - Everything a client or a radio can trigger repeatedly is logged through a LogLimiter.
 */
import type { LocalBus } from '../../bus/broker';
import * as topics from '../../bus/topics';
import { Priority } from '../../core/event-kinds';
import type { AssignmentChanged, EventBus, PriceApplied } from '../../core/events';
import type { Locations } from '../../core/locations';
import { ErrorCode, ShelfgateError } from '../../errors';
import type { Service } from '../../lifecycle';
import { LogLimiter, type Logger } from '../../log';
import { isValidGtin, toGtin14 } from '../../util/gtin';
import type { Store } from '../../store/store';
import { contentInput, LabelContentError, priceTimeline, renderLabel, type LabelPrice, type LabelProduct } from './content';
import type { LabelsConfig } from './config';
import { labelTypeForHwType } from './label-types';
import { normalizeMac, requireMac } from './mac';
import type { LabelHealth, LabelRadio, RadioEvent } from './radio';
import { RadioError } from './radio';
import { persistChanges, type LabelBinding, type LabelRepository } from './repository';
import { DeliveryScheduler, MAX_PLAN, type ContentInput, type Dispatch, type LabelRecord } from './scheduler';
import type { LabelType } from './types';
import { Heap } from '../../util/heap';

/** Product data for a label (name, net content); central's `product` changes fill it. */
export interface ProductLookup {
  get(gtin: string): LabelProduct | undefined;
}

export interface LabelsServiceOptions {
  storeId: string;
  config: LabelsConfig;
  store: Store;
  bus: Pick<LocalBus, 'publish'>;
  events: EventBus;
  locations: Pick<Locations, 'get' | 'list'>;
  radios: readonly LabelRadio[];
  types: ReadonlyMap<string, LabelType>;
  products: ProductLookup;
  repo: LabelRepository;
  log: Logger;
  clock?: () => number;
}

/** What the radios told about a label, bound or not (a technician binds what the APs see). */
interface Seen {
  ap: string;
  at: number;
  health: LabelHealth;
}

/** A label's integrity: what it shows against what it should show (bus, CLI, outbox). */
export interface LabelIntegrity {
  mac: string;
  type: string;
  gtin: string | null;
  location: string | null;
  state: LabelRecord['state'];
  /** The price the label confirmed showing. */
  shows: { price: number | null; currency: string | null; since: string } | null;
  /** The price it must show now. */
  should_show: { price: number | null; currency: string | null; since: string } | null;
  /** Shows the prices it should (price, was-price, unit price). */
  matches: boolean;
  mismatch_since: string | null;
  /** How long after its effective time the label switched to what it shows (the last switch). */
  switch_delay_ms: number | null;
  attempts: number;
  last_error: string | null;
  /** Why no content can be made for it (no product, no price, does not fit); null when none. */
  problem: string | null;
  ap: string | null;
  last_seen: string | null;
  next_check_in: string | null;
  battery_mv: number | null;
  rssi: number | null;
  lqi: number | null;
  conditions: string[];
}

export interface LabelsSummary {
  store_id: string;
  labels: number;
  /** Labels that have a price to show. */
  priced: number;
  /** Of those, labels that confirmed showing it. */
  confirmed_current: number;
  /** confirmed_current / priced (1 when nothing is priced). */
  share: number;
  oldest_mismatch_since: string | null;
  oldest_mismatch_age_s: number | null;
  by_state: Record<LabelRecord['state'], number>;
  problems: number;
  low_battery: number;
  lost: number;
  ts: string;
}

/**
 * Uploads outstanding at one radio at most. The OEPL driver runs 2 requests at once and queues 256,
 * failing any beyond with SG_AP_BUSY (taken as "AP busy": the AP is paused for seconds and every
 * transfer outstanding there goes back to pending). An unbounded radio budget (or a large
 * ap_queue_s) handed thousands to one AP in a round; 64 keeps the driver's two request slots busy
 * and leaves queue room for flashes and lookups.
 */
export const MAX_UPLOADS_PER_AP = 64;

/** How often a label's retained state is refreshed when nothing but its check-in changed. */
const HEALTH_REFRESH_MS = 5 * 60_000;

/** Most labels the radios may tell about that are not bound (a store has thousands, not millions). */
const MAX_SEEN = 100_000;

const iso = (t: number | null | undefined): string | null => (t === null || t === undefined ? null : new Date(t).toISOString());

export class LabelsService implements Service {
  readonly name = 'labels';
  readonly stats = {
    rendered: 0,
    renderFailures: 0,
    dispatched: 0,
    stored: 0,
    sendFailures: 0,
    acks: 0,
    persistFailures: 0,
    publishFailures: 0,
    pricesUnbound: 0,
    radioEvents: 0,
  };
  readonly scheduler: DeliveryScheduler;
  private readonly clock: () => number;
  private readonly limiter: LogLimiter;
  private readonly bindings = new Map<string, LabelBinding>();
  private readonly prices = new Map<string, PriceApplied>();
  private readonly seen = new Map<string, Seen>();
  private readonly problems = new Map<string, string>();
  private readonly switchDelay = new Map<string, number>();
  private readonly radios = new Map<string, LabelRadio>();
  private readonly unsubscribe: Array<() => void> = [];
  /** Per label, the integrity last published (JSON) and the last outbox-relevant key. */
  private readonly published = new Map<string, string>();
  private readonly reported = new Map<string, { key: string; conditions: string }>();
  private readonly toPublish = new Set<string>();
  private lastSummary = '';
  private lastSummaryAt = 0;
  private pumpScheduled = false;
  private pumping: Promise<void> | null = null;
  private wakeTimer: NodeJS.Timeout | null = null;
  private healthTimer: NodeJS.Timeout | null = null;
  private summaryTimer: NodeJS.Timeout | null = null;
  private running = false;
  private readonly inflight = new Set<Promise<unknown>>();
  /** Uploads handed to each radio and not yet answered (keyed by configured AP id: bounded). */
  private readonly uploading = new Map<string, number>();
  private readonly bindingListeners: Array<() => void> = [];
  /** What central asked for: MAC -> location, from the slots' committed assignments (`labels`). */
  private readonly centralWanted = new Map<string, string>();
  /** Labels whose `lost` condition was last seen set (healthTick publishes the ones that flip). */
  private readonly lostNow = new Set<string>();
  /** When each label's retained state was last published. */
  private readonly publishedAt = new Map<string, number>();
  /** GTIN -> bound MACs (through the label's product or its slot's); rebuilt after a binding or assignment changed. */
  private gtinIndex: Map<string, string[]> | null = null;
  /**
   * The published summary, kept up to date label by label: each label's share as of its last
   * integrity (every label that changed is in a round's snapshot, see snapshotChanged), summed in
   * `totals`. A full pass over every label once a second was most of the integrity work in the
   * 10,000-label benchmark; summary() (CLI, status) still makes the full pass.
   */
  private readonly contrib = new Map<string, Contribution>();
  private readonly totals = newTotals();
  /** Mismatched labels by mismatch_since (entries no longer matching `contrib` are skipped and dropped). */
  private readonly mismatches = new Heap<{ since: number; mac: string }>((a, b) => a.since < b.since);

  constructor(private readonly o: LabelsServiceOptions) {
    this.clock = o.clock ?? Date.now;
    this.limiter = new LogLimiter(o.log);
    this.scheduler = new DeliveryScheduler({
      clock: this.clock,
      apBytesPerSecond: o.config.radio_bytes_per_s,
      burstMs: o.config.ap_queue_s * 1000,
      ackCheckIns: o.config.ack_check_ins,
      maxAttempts: o.config.max_attempts,
    });
    for (const r of o.radios) this.radios.set(r.id, r);
  }

  async start(): Promise<void> {
    this.running = true;
    const stored = this.o.repo.load();
    const records: LabelRecord[] = [];
    for (const [mac, s] of stored) {
      this.bindings.set(mac, s.binding);
      records.push(s.delivery);
    }
    this.gtinIndex = null;
    this.scheduler.restore(records);
    // Transfers in flight when the gateway stopped go out again at once, without counting an
    // attempt: the AP may have lost them, and one the label did receive comes back as identical
    // content, which the radio acknowledges (oepl-radio.ts, rule 3) without a transfer.
    for (const ap of new Set(records.flatMap((r) => (r.inflight ? [r.inflight.ap] : [])))) this.scheduler.apLost(ap);
    for (const r of this.o.radios) this.unsubscribe.push(r.subscribe((e) => this.onRadio(r.id, e)));
    const { events } = this.o;
    events.on(this, 'priceApplied', (p) => this.onPrice(p));
    events.on(this, 'assignmentChanged', (a) => this.onAssignment(a));
    events.on(this, 'productChanged', (p) => this.productChanged(p.gtin));
    // Central's label bindings are committed with the slots (locations.attributes): bind what is missing.
    for (const loc of this.o.locations.list()) this.setCentralLabels(loc.id, loc.attributes?.labels, false);
    this.reconcileCentral();
    this.healthTimer = setInterval(() => this.healthTick(), Math.max(250, Math.min(5000, (this.o.config.publish_interval_ms || 1000) * 5)));
    this.healthTimer.unref();
    for (const mac of this.bindings.keys()) this.toPublish.add(mac);
    this.o.log.info({ labels: this.bindings.size, access_points: this.radios.size }, 'labels service started');
    this.schedulePump();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.o.events.removeOwner(this);
    for (const u of this.unsubscribe.splice(0)) u();
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    if (this.healthTimer) clearInterval(this.healthTimer);
    if (this.summaryTimer) clearTimeout(this.summaryTimer);
    this.wakeTimer = null;
    this.healthTimer = null;
    this.summaryTimer = null;
    // Let the last round commit what it started (the store is stopped after us).
    await Promise.allSettled([...this.inflight, this.pumping ?? Promise.resolve()]);
    await this.persist().catch(() => undefined);
  }

  // ---- bindings (technician CLI/MQTT, central's slot assignments) ----

  /** Binds a label to a product or a slot. The label type comes from `type` or from the hwType the AP reported. */
  bind(input: { mac: string; type?: string; gtin?: string; shelf?: string; slot?: string }, by: string): LabelIntegrity {
    const mac = requireMac(input.mac);
    if (input.gtin !== undefined && !isValidGtin(input.gtin)) throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `gtin ${JSON.stringify(input.gtin)} is not a valid GTIN-8, -12, -13 or -14 (check digit)`);
    const hasSlot = input.shelf !== undefined || input.slot !== undefined;
    if (hasSlot === (input.gtin !== undefined))
      throw new ShelfgateError(ErrorCode.REQUEST_INVALID, 'bind a label to either a product (gtin) or a slot (shelf and slot), not both and not neither');
    let locationId: string | null = null;
    if (hasSlot) {
      if (!input.shelf || !input.slot) throw new ShelfgateError(ErrorCode.REQUEST_INVALID, 'a slot binding needs both shelf and slot');
      locationId = `${input.shelf}/${input.slot}`;
      if (!this.o.locations.get(locationId)) throw new ShelfgateError(ErrorCode.NOT_FOUND, `unknown slot ${locationId}`);
    }
    const seen = this.seen.get(mac);
    let typeId = input.type;
    if (typeId === undefined) {
      const hw = seen?.health.hwType ?? null;
      const t = hw === null ? undefined : labelTypeForHwType(this.o.types, hw);
      if (!t)
        throw new ShelfgateError(
          ErrorCode.REQUEST_INVALID,
          hw === null
            ? `label ${mac} has not been heard by any access point: give its type (known: ${[...this.o.types.keys()].join(', ')})`
            : `label ${mac} reports hwType 0x${hw.toString(16)}, which no label type in devices/labels claims: give its type`,
        );
      typeId = t.id;
    } else if (!this.o.types.has(typeId)) {
      throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `unknown label type ${typeId} (known: ${[...this.o.types.keys()].join(', ')})`);
    }
    const binding: LabelBinding = { labelType: typeId, gtin: input.gtin === undefined ? null : toGtin14(input.gtin), locationId };
    this.gtinIndex = null;
    const checkInMs = seen?.health.checkInMs ?? this.o.config.default_check_in_s * 1000;
    this.bindings.set(mac, binding);
    this.scheduler.setLabel(mac, { checkInMs });
    if (seen) this.scheduler.heard(mac, seen.ap, seen.at);
    this.o.log.info({ mac, type: typeId, gtin: binding.gtin, location: locationId, by }, 'label bound');
    this.render(mac);
    this.toPublish.add(mac);
    this.schedulePump();
    this.bindingsChanged();
    return this.integrity(mac)!;
  }

  unbind(macIn: string, by: string): { mac: string; unbound: boolean } {
    const mac = requireMac(macIn);
    if (!this.bindings.delete(mac)) return { mac, unbound: false };
    this.gtinIndex = null;
    this.scheduler.removeLabel(mac);
    this.problems.delete(mac);
    this.switchDelay.delete(mac);
    this.lostNow.delete(mac);
    this.publishedAt.delete(mac);
    this.reported.delete(mac);
    this.published.delete(mac);
    this.count(mac, undefined, null);
    this.o.log.info({ mac, by }, 'label unbound');
    this.clearRetained(mac);
    this.schedulePump();
    this.bindingsChanged();
    return { mac, unbound: true };
  }

  /** Find-this-label: flashes its LED through the AP that last heard it. */
  async flash(macIn: string, pattern: string): Promise<{ mac: string; ap: string }> {
    return this.viaRadio(macIn, (radio, mac) => radio.flash(mac, pattern));
  }

  /** A maintenance command (refresh, reboot, scan) through the AP that last heard the label. */
  async command(macIn: string, cmd: string): Promise<{ mac: string; ap: string; cmd: string }> {
    const r = await this.viaRadio(macIn, (radio, mac, ap) => {
      if (!radio.tagCommand) throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `access point ${ap} does not take label commands`);
      return radio.tagCommand(mac, cmd);
    });
    return { ...r, cmd };
  }

  /** Runs `fn` on the radio of the AP that last heard the label; a RadioError becomes the command's error. */
  private async viaRadio(macIn: string, fn: (radio: LabelRadio, mac: string, ap: string) => Promise<void>): Promise<{ mac: string; ap: string }> {
    const mac = requireMac(macIn);
    const ap = this.scheduler.peek(mac)?.ap ?? this.seen.get(mac)?.ap;
    if (!ap) throw new ShelfgateError(ErrorCode.NOT_FOUND, `no access point has heard label ${mac}`);
    try {
      await fn(this.radios.get(ap)!, mac, ap);
    } catch (e) {
      if (e instanceof RadioError) throw new ShelfgateError(e.code === 'SG_AP_REQUEST_INVALID' ? ErrorCode.REQUEST_INVALID : ErrorCode.DEVICE_UNREACHABLE, `${ap}: ${e.message}`, { code: e.code });
      throw e;
    }
    return { mac, ap };
  }

  /** Re-renders the label from the current data and schedules what changed. */
  push(macIn: string): LabelIntegrity {
    const mac = normalizeMac(macIn);
    if (!mac || !this.bindings.has(mac)) throw new ShelfgateError(ErrorCode.NOT_FOUND, `label ${macIn} is not bound`);
    this.render(mac, true);
    this.schedulePump();
    return this.integrity(mac)!;
  }

  /** Called after every bind and unbind (pick-to-light flashes the labels of the slots it wants). */
  onBindingsChanged(fn: () => void): void {
    this.bindingListeners.push(fn);
  }

  private bindingsChanged(): void {
    for (const fn of this.bindingListeners) {
      try {
        fn();
      } catch (e) {
        this.limiter.error('bindings-listener', { err: (e as Error).message }, 'a listener of label bindings failed');
      }
    }
  }

  /** Labels bound to a location (pick-to-light). */
  labelsAt(locationId: string): string[] {
    const out: string[] = [];
    for (const [mac, b] of this.bindings) if (b.locationId === locationId) out.push(mac);
    return out;
  }

  /** Flashes a label through the AP that last heard it (pick-to-light); rejects when none did. */
  flashLabel(mac: string, pattern: string): Promise<void> {
    return this.flash(mac, pattern).then(() => undefined);
  }

  // ---- integrity ----

  integrity(mac: string): LabelIntegrity | undefined {
    return this.integrityAt(mac, this.clock())?.integrity;
  }

  /** The label's integrity at `now`, with its mismatch time as a number (for the live summary). */
  private integrityAt(mac: string, now: number): { integrity: LabelIntegrity; mismatchSince: number | null } | undefined {
    const b = this.bindings.get(mac);
    const r = this.scheduler.peek(mac);
    if (!b || !r) return undefined;
    let target: ContentInput | undefined;
    for (const p of r.plan) if (p.effectiveAt <= now) target = p;
    const shown = r.shown;
    const seen = this.seen.get(mac);
    const matches = !!(target && shown && shown.priceKey === target.priceKey);
    const integrity: LabelIntegrity = {
      mac,
      type: b.labelType,
      gtin: this.gtinOf(b),
      location: b.locationId,
      state: r.state,
      shows: shown ? { price: shown.price, currency: shown.currency, since: iso(shown.at)! } : null,
      should_show: target ? { price: target.price, currency: target.currency, since: iso(target.effectiveAt)! } : null,
      matches,
      mismatch_since: iso(r.mismatchSince),
      switch_delay_ms: this.switchDelay.get(mac) ?? null,
      attempts: r.attempts,
      last_error: r.lastError,
      problem: this.problems.get(mac) ?? null,
      ap: r.ap,
      last_seen: iso(r.lastHeardAt),
      next_check_in: iso(seen?.health.nextCheckInAt),
      battery_mv: seen?.health.batteryMv ?? null,
      rssi: seen?.health.rssi ?? null,
      lqi: seen?.health.lqi ?? null,
      conditions: this.conditions(r, seen, now),
    };
    return { integrity, mismatchSince: r.mismatchSince };
  }

  /** Moves the label's share of the live summary to what `i` says (undefined: the label is gone). */
  private count(mac: string, i: LabelIntegrity | undefined, mismatchSince: number | null): void {
    const old = this.contrib.get(mac);
    if (old) addContribution(this.totals, old, -1);
    if (!i) {
      this.contrib.delete(mac);
      return;
    }
    const priced = i.should_show !== null;
    const c: Contribution = {
      state: i.state,
      priced,
      current: priced && i.matches,
      since: priced && !i.matches ? mismatchSince : null,
      low: i.conditions.includes('low_battery'),
      lost: i.conditions.includes('lost'),
      problem: i.problem !== null,
    };
    this.contrib.set(mac, c);
    addContribution(this.totals, c, 1);
    if (c.since !== null && old?.since !== c.since) {
      this.mismatches.push({ since: c.since, mac });
      if (this.mismatches.size > 2 * this.contrib.size + 1024) {
        // stale entries (labels that switched since) pile up: rebuild from the live shares
        this.mismatches.clear();
        for (const [m, x] of this.contrib) if (x.since !== null) this.mismatches.push({ since: x.since, mac: m });
      }
    }
  }

  /** The summary from the live shares (what summary() computes with a pass over every label). */
  private liveSummary(now: number): LabelsSummary {
    let top = this.mismatches.peek();
    while (top && this.contrib.get(top.mac)?.since !== top.since) {
      this.mismatches.pop();
      top = this.mismatches.peek();
    }
    const oldest = top?.since ?? null;
    const t = this.totals;
    return {
      store_id: this.o.storeId,
      labels: this.bindings.size,
      priced: t.priced,
      confirmed_current: t.current,
      share: t.priced === 0 ? 1 : Math.round((t.current / t.priced) * 10_000) / 10_000,
      oldest_mismatch_since: iso(oldest),
      oldest_mismatch_age_s: oldest === null ? null : Math.max(0, Math.round((now - oldest) / 1000)),
      by_state: { ...t.byState },
      problems: t.problems,
      low_battery: t.low,
      lost: t.lost,
      ts: iso(now)!,
    };
  }

  /** Every bound label's integrity; `stale`: only those that do not show the price they should, or cannot be given content. */
  report(opts: { stale?: boolean } = {}): { summary: LabelsSummary; labels: LabelIntegrity[] } {
    const labels: LabelIntegrity[] = [];
    for (const mac of [...this.bindings.keys()].sort()) {
      const i = this.integrity(mac);
      if (!i) continue;
      // stale: not showing the price it should (health conditions alone do not make a label stale)
      if (opts.stale && i.matches && !i.problem) continue;
      labels.push(i);
    }
    return { summary: this.summary(), labels };
  }

  summary(): LabelsSummary {
    const now = this.clock();
    const byState = { pending: 0, sent: 0, confirmed: 0, failed: 0 };
    let priced = 0;
    let current = 0;
    let oldest: number | null = null;
    let lowBattery = 0;
    let lost = 0;
    for (const mac of this.bindings.keys()) {
      const r = this.scheduler.peek(mac);
      if (!r) continue;
      byState[r.state]++;
      let target: ContentInput | undefined;
      for (const p of r.plan) if (p.effectiveAt <= now) target = p;
      if (target) {
        priced++;
        if (r.shown && r.shown.priceKey === target.priceKey) current++;
        else if (r.mismatchSince !== null && (oldest === null || r.mismatchSince < oldest)) oldest = r.mismatchSince;
      }
      const c = this.conditions(r, this.seen.get(mac), now);
      if (c.includes('low_battery')) lowBattery++;
      if (c.includes('lost')) lost++;
    }
    return {
      store_id: this.o.storeId,
      labels: this.bindings.size,
      priced,
      confirmed_current: current,
      share: priced === 0 ? 1 : Math.round((current / priced) * 10_000) / 10_000,
      oldest_mismatch_since: iso(oldest),
      oldest_mismatch_age_s: oldest === null ? null : Math.max(0, Math.round((now - oldest) / 1000)),
      by_state: byState,
      problems: [...this.bindings.keys()].filter((m) => this.problems.has(m)).length,
      low_battery: lowBattery,
      lost,
      ts: iso(now)!,
    };
  }

  status(): Record<string, unknown> {
    const s = this.summary();
    return { labels: s.labels, share: s.share, by_state: s.by_state, access_points: [...this.radios.values()].map((r) => r.status()) };
  }

  private conditions(r: Readonly<LabelRecord>, seen: Seen | undefined, now: number): string[] {
    const out: string[] = [];
    const b = this.bindings.get(r.mac);
    const gtin = b ? this.gtinOf(b) : null;
    // Central sent no product data: the label shows the GTIN in the name's place.
    if (gtin && !this.o.products.get(gtin)) out.push('product_unknown');
    const mv = seen?.health.batteryMv;
    if (mv !== null && mv !== undefined && mv > 0 && mv < this.o.config.low_battery_mv) out.push('low_battery');
    if (r.lastHeardAt === null || now - r.lastHeardAt > this.o.config.lost_after_check_ins * r.checkInMs) out.push('lost');
    return out;
  }

  // ---- inputs ----

  private macsFor(gtin: string): readonly string[] {
    if (!this.gtinIndex) {
      this.gtinIndex = new Map();
      for (const [mac, b] of this.bindings) {
        const g = this.gtinOf(b);
        if (!g) continue;
        const list = this.gtinIndex.get(g);
        if (list) list.push(mac);
        else this.gtinIndex.set(g, [mac]);
      }
    }
    return this.gtinIndex.get(gtin) ?? [];
  }

  private onPrice(p: PriceApplied): void {
    this.prices.set(p.gtin, p);
    const macs = this.macsFor(p.gtin);
    const shared = new Map<string, ContentInput[]>();
    for (const mac of macs) this.render(mac, false, shared);
    if (macs.length === 0) this.stats.pricesUnbound++;
    else this.schedulePump();
  }

  private onAssignment(a: AssignmentChanged): void {
    this.gtinIndex = null;
    for (const [mac, b] of this.bindings) if (b.locationId === a.locationId) this.render(mac);
    // Central binds labels to a slot with the slot assignment (`labels`: MACs).
    if (a.by === 'central' && a.attributes && 'labels' in a.attributes) {
      this.setCentralLabels(a.locationId, a.attributes.labels, true);
      this.reconcileCentral();
    }
    this.schedulePump();
  }

  /**
   * Central's list of labels for a slot (from its slot assignment, committed with the location).
   * The list is the slot's whole set: a label bound to this slot that is no longer in it is unbound
   * (central owns the planogram). `announce`: a new assignment (log it), not the state at start.
   */
  private setCentralLabels(locationId: string, labels: unknown, announce: boolean): void {
    if (labels === undefined) return;
    if (!Array.isArray(labels)) {
      this.limiter.warn('central-labels', { location: locationId }, 'central slot assignment: labels is not a list; ignored');
      return;
    }
    const wanted = new Set<string>();
    for (const m of labels) {
      const mac = typeof m === 'string' ? normalizeMac(m) : null;
      if (!mac) {
        this.limiter.warn('central-labels', { location: locationId, mac: String(m).slice(0, 32) }, 'central slot assignment names a label MAC that is not 12 or 16 hex digits; ignored');
        continue;
      }
      wanted.add(mac);
    }
    for (const [mac, loc] of this.centralWanted) if (loc === locationId && !wanted.has(mac)) this.centralWanted.delete(mac);
    for (const mac of wanted) this.centralWanted.set(mac, locationId);
    for (const [mac, b] of this.bindings) if (b.locationId === locationId && !wanted.has(mac)) this.unbind(mac, 'central');
    if (announce) this.o.log.info({ location: locationId, labels: [...wanted] }, 'central assigned labels to a slot');
  }

  /** Binds the labels central wants where they are not bound yet (a label not heard yet waits: its type comes from the AP). */
  private reconcileCentral(only?: string): void {
    const entries = only === undefined ? this.centralWanted : new Map(this.centralWanted.has(only) ? [[only, this.centralWanted.get(only)!]] : []);
    for (const [mac, locationId] of entries) {
      const cur = this.bindings.get(mac);
      if (cur?.locationId === locationId) continue;
      const loc = this.o.locations.get(locationId);
      if (!loc) continue;
      const hw = this.seen.get(mac)?.health.hwType ?? null;
      if (!cur && (hw === null || !labelTypeForHwType(this.o.types, hw))) continue; // waits for an AP to report its type
      try {
        this.bind({ mac, type: cur?.labelType, shelf: loc.shelfId, slot: loc.slotId }, 'central');
      } catch (e) {
        this.limiter.warn(`central-bind`, { location: locationId, mac, err: (e as Error).message }, 'a label central assigned cannot be bound');
      }
    }
  }

  /** A product's name or net content changed (central's `product` change). */
  productChanged(gtin: string): void {
    const macs = this.macsFor(gtin);
    const shared = new Map<string, ContentInput[]>();
    for (const mac of macs) this.render(mac, false, shared);
    if (macs.length > 0) this.schedulePump();
  }

  private onRadio(ap: string, e: RadioEvent): void {
    this.stats.radioEvents++;
    switch (e.type) {
      case 'heard': {
        if (!this.seen.has(e.mac) && this.seen.size >= MAX_SEEN) {
          this.limiter.warn('seen-full', { max: MAX_SEEN }, 'radios report more labels than the gateway tracks; unbound ones are not listed');
          if (!this.bindings.has(e.mac)) return;
        }
        const prev = this.seen.get(e.mac);
        this.seen.set(e.mac, { ap, at: e.at, health: e.health });
        if (!this.bindings.has(e.mac) && this.centralWanted.has(e.mac)) {
          this.reconcileCentral(e.mac);
          break;
        }
        if (!this.bindings.has(e.mac)) return;
        const r = this.scheduler.peek(e.mac);
        let changed = false;
        if (r && e.health.checkInMs && e.health.checkInMs > 0 && Math.abs(e.health.checkInMs - r.checkInMs) > r.checkInMs * 0.1) {
          this.scheduler.setLabel(e.mac, { checkInMs: e.health.checkInMs });
          changed = true;
        }
        changed = this.scheduler.heard(e.mac, ap, e.at) || changed;
        // A check-in on time changes nothing but `last_seen`: no round, no write, no publish (the
        // health tick refreshes the retained state now and then). A battery that crossed its
        // threshold is a condition change and is published.
        const lowBefore = isLow(prev?.health.batteryMv, this.o.config.low_battery_mv);
        if (!changed && lowBefore === isLow(e.health.batteryMv, this.o.config.low_battery_mv)) return;
        this.toPublish.add(e.mac);
        break;
      }
      case 'ack': {
        if (!this.bindings.has(e.mac)) return;
        const before = this.scheduler.record(e.mac);
        const content = before?.inflight?.content;
        if (this.scheduler.acknowledged(e.mac, e.at, e.hash, ap)) {
          this.stats.acks++;
          const shown = this.scheduler.peek(e.mac)?.shown;
          const c = content && shown && content.seq === shown.seq ? content : before?.plan.find((p) => p.seq === shown?.seq);
          if (c) this.switchDelay.set(e.mac, Math.max(0, e.at - c.effectiveAt));
          this.toPublish.add(e.mac);
        }
        break;
      }
      case 'transferFailed':
        if (!this.bindings.has(e.mac)) return;
        this.scheduler.transferFailed(e.mac, `${ap}: ${e.reason}`);
        this.toPublish.add(e.mac);
        break;
      case 'lost':
        this.o.log.warn({ ap, reason: e.reason }, 'access point lost what it had queued; its transfers go out again');
        this.scheduler.apLost(ap, e.until);
        break;
      case 'status':
        if (e.online) this.o.log.info({ ap }, 'access point online');
        else this.limiter.warn(`ap-offline:${ap}`, { ap, err: e.error }, 'access point offline');
        break;
    }
    this.schedulePump();
  }

  // ---- content ----

  /** The GTIN-14 the label shows (prices and products are keyed by GTIN-14; a slot's may be written shorter). */
  private gtinOf(b: LabelBinding): string | null {
    const g = b.gtin ?? (b.locationId ? (this.o.locations.get(b.locationId)?.gtin ?? null) : null);
    return g && isValidGtin(g) ? toGtin14(g) : g;
  }

  /**
   * Renders the label's plan from current data and hands it to the scheduler if it changed.
   * `shared`: plans already rendered in this pass, by label type, for labels of one product and
   * price (a product with several labels of one type is rendered once; a plan is never changed).
   */
  private render(mac: string, force = false, shared?: Map<string, ContentInput[]>): void {
    const b = this.bindings.get(mac);
    if (!b) return;
    // Missing data (no product at the slot, no price yet) is a state the report shows, not news for
    // the log; content that cannot be made from data that is there (does not fit) is.
    const problem = (why: string, warn = false): void => {
      if (this.problems.get(mac) !== why) {
        this.problems.set(mac, why);
        if (warn) this.limiter.warn('label-content', { mac, problem: why }, 'label content cannot be made');
        else this.o.log.debug({ mac, problem: why }, 'label has nothing to show yet');
        this.toPublish.add(mac);
      }
    };
    const gtin = this.gtinOf(b);
    if (!gtin) return problem(b.locationId ? `slot ${b.locationId} holds no product` : 'bound to no product');
    const price = this.prices.get(gtin);
    if (!price) return problem(`no price for ${gtin} from central yet`);
    const type = this.o.types.get(b.labelType);
    if (!type) return problem(`label type ${b.labelType} is not in devices/labels`, true);
    const product = this.o.products.get(gtin) ?? { gtin, name: gtin };
    const now = this.clock();
    let contents: ContentInput[];
    try {
      const done = shared?.get(type.id);
      if (done) contents = done;
      else {
        const lp: LabelPrice = { price: price.price, currency: price.currency, promotion: (price.promotion as LabelPrice['promotion']) ?? null };
        contents = priceTimeline(lp, now)
          .slice(0, MAX_PLAN)
          .map((t) => contentInput(renderLabel({ product, display: t.display, locale: this.o.config.locale }, type), t.effectiveAt));
        shared?.set(type.id, contents);
      }
    } catch (e) {
      this.stats.renderFailures++;
      if (e instanceof LabelContentError) return problem(`${e.code}: ${e.message}`, true);
      throw e;
    }
    this.stats.rendered++;
    if (this.problems.delete(mac)) this.toPublish.add(mac);
    const r = this.scheduler.peek(mac);
    if (!force && r && samePlan(r.plan, contents, now)) return;
    this.scheduler.submit(mac, contents);
    this.toPublish.add(mac);
  }

  // ---- the pump: dispatch, persist, publish ----

  private schedulePump(): void {
    if (this.pumpScheduled || !this.running) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      if (!this.running) return;
      if (this.pumping) {
        // one round at a time: run again when this one is done
        void this.pumping.then(() => this.schedulePump());
        return;
      }
      this.pumping = this.round().finally(() => {
        this.pumping = null;
      });
    });
  }

  private async round(): Promise<void> {
    const now = this.clock();
    // At most MAX_UPLOADS_PER_AP uploads outstanding per AP: the driver queues few requests and
    // fails the rest with SG_AP_BUSY, which would pause the AP and send its whole batch again.
    const dispatches = this.scheduler.next(now, Infinity, (ap) => MAX_UPLOADS_PER_AP - (this.uploading.get(ap) ?? 0));
    const snapshot = this.snapshotChanged();
    // Durable before acting: the dispatches' `sent` state commits before any goes out.
    try {
      await this.persist();
    } catch (e) {
      // Not committed: hand nothing out (they go back to pending by timeout) and try again later.
      this.limiter.error('persist', { err: (e as Error).message }, 'label delivery state could not be saved');
      for (const d of dispatches) this.scheduler.sendFailed(d.mac, d.seq, `state not saved: ${(e as Error).message}`);
      // what was to be published waits for a round whose commit succeeds
      for (const i of snapshot.labels) this.toPublish.add(i.mac);
      if (snapshot.summary) this.lastSummary = '';
      this.armTimer(now + 1000);
      return;
    }
    for (const d of dispatches) this.dispatch(d);
    this.publishSnapshot(snapshot);
    this.armTimer(this.scheduler.nextWakeAt(this.clock()));
  }

  private dispatch(d: Dispatch): void {
    const radio = this.radios.get(d.ap);
    this.stats.dispatched++;
    // No toPublish here: the round's snapshot is taken after next() (the label is `sent` in it), and
    // whatever changes later (a failure) marks the label dirty in the scheduler.
    if (!radio) {
      this.scheduler.sendFailed(d.mac, d.seq, `no access point ${d.ap} in the config`);
      return;
    }
    this.uploading.set(d.ap, (this.uploading.get(d.ap) ?? 0) + 1);
    const p = radio
      .send(d.mac, d.body)
      .then(
        () => {
          this.stats.stored++;
          this.scheduler.stored(d.mac, d.seq);
        },
        (e: unknown) => {
          this.stats.sendFailures++;
          const err = e instanceof RadioError ? e : new RadioError('SG_AP_BAD_ANSWER', (e as Error)?.message ?? String(e));
          this.limiter.warn(`send:${d.ap}:${err.code}`, { ap: d.ap, mac: d.mac, code: err.code, err: err.message }, 'label content not stored at the access point');
          if (err.code === 'SG_AP_BUSY' || err.code === 'SG_AP_UNREACHABLE') {
            // The AP, not the label: pause the AP and send again later without counting an attempt.
            this.scheduler.apLost(d.ap, this.clock() + (err.retryAfterMs ?? 5000));
          } else {
            this.scheduler.sendFailed(d.mac, d.seq, `${err.code}: ${err.message}`);
          }
        },
      )
      .finally(() => {
        this.inflight.delete(p);
        const n = (this.uploading.get(d.ap) ?? 1) - 1;
        if (n > 0) this.uploading.set(d.ap, n);
        else this.uploading.delete(d.ap);
        // a stored answer changes nothing the integrity shows; a failure marks the label dirty
        this.schedulePump();
      });
    this.inflight.add(p);
  }

  private persist(): Promise<void> {
    return persistChanges(this.scheduler, (mac) => this.bindings.get(mac), this.o.repo).then((r) => {
      if (r.failed.length) {
        this.stats.persistFailures += r.failed.length;
        throw r.failed[0]!.error;
      }
    });
  }

  private armTimer(at: number | null): void {
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    this.wakeTimer = null;
    if (at === null || !this.running) return;
    const delay = Math.max(0, Math.min(at - this.clock(), 60_000));
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = null;
      this.schedulePump();
    }, delay);
    this.wakeTimer.unref();
  }

  private healthTick(): void {
    // `lost` and the summary change with time alone; publish only the labels whose lost state flipped.
    const now = this.clock();
    const limit = this.o.config.lost_after_check_ins;
    for (const mac of this.bindings.keys()) {
      const r = this.scheduler.peek(mac);
      if (!r) continue;
      const lost = r.lastHeardAt === null || now - r.lastHeardAt > limit * r.checkInMs;
      if (lost !== this.lostNow.has(mac)) {
        if (lost) this.lostNow.add(mac);
        else this.lostNow.delete(mac);
        this.toPublish.add(mac);
      } else if (now - (this.publishedAt.get(mac) ?? 0) >= HEALTH_REFRESH_MS) {
        // last_seen, battery and signal on the bus are refreshed at most this often (not per check-in)
        this.toPublish.add(mac);
      }
    }
    if (this.toPublish.size > 0) this.schedulePump();
  }

  /**
   * What to publish for the labels that changed: taken in the same tick as the persist round
   * drains the scheduler's changes (persistChanges reads the records synchronously), so it is
   * exactly the state that round commits. Published only once that commit succeeded: the bus never
   * shows a label confirmed that SQLite does not (a kill -9 would otherwise resend it).
   */
  private snapshotChanged(): { labels: LabelIntegrity[]; summary: LabelsSummary | null } {
    const now = this.clock();
    const labels: LabelIntegrity[] = [];
    // Everything the scheduler changed (a timeout, a failure, a check-in) is in this round's save.
    for (const mac of this.scheduler.pendingDirty()) this.toPublish.add(mac);
    for (const mac of this.toPublish) {
      const x = this.integrityAt(mac, now);
      this.count(mac, x?.integrity, x?.mismatchSince ?? null);
      if (x) labels.push(x.integrity);
    }
    this.toPublish.clear();
    let summary: LabelsSummary | null = null;
    if (now - this.lastSummaryAt >= this.o.config.publish_interval_ms) {
      const s = this.liveSummary(now);
      const { ts: _ts, oldest_mismatch_age_s: _age, ...stable } = s;
      const key = JSON.stringify(stable);
      if (key !== this.lastSummary || now - this.lastSummaryAt >= 60_000) {
        this.lastSummary = key;
        this.lastSummaryAt = now;
        summary = s;
      }
    } else if (!this.summaryTimer) {
      // Too soon for another summary: look again when the interval is up (its own timer: the wake
      // timer may be set far ahead, for the next deadline, and a change must not wait for it).
      this.summaryTimer = setTimeout(() => {
        this.summaryTimer = null;
        this.schedulePump();
      }, Math.max(0, this.lastSummaryAt + this.o.config.publish_interval_ms - now));
      this.summaryTimer.unref();
    }
    return { labels, summary };
  }

  /** Publishes a committed snapshot: per-label integrity (retained), the summary, and outbox events. */
  private publishSnapshot(snap: { labels: LabelIntegrity[]; summary: LabelsSummary | null }): void {
    const now = this.clock();
    for (const i of snap.labels) {
      const mac = i.mac;
      if (!this.bindings.has(mac)) continue; // unbound meanwhile: its retained state was cleared
      const json = JSON.stringify(i);
      if (this.published.get(mac) === json) continue;
      this.published.set(mac, json);
      this.publishedAt.set(mac, now);
      this.publish(topics.featureTopic(this.o.storeId, 'labels', 'label', mac), json, true);
      // To central (compacted per label): a label that now shows its price (with switch_delay_ms),
      // failed, cannot be given content, or whose conditions changed. Not the mismatch while a new
      // price is on its way: central sent that price, and a chain-wide change would otherwise cost
      // two events per label instead of one.
      const conditions = i.conditions.join(',');
      const key = JSON.stringify([i.matches ? [i.shows?.price ?? null, i.shows?.currency ?? null, i.shows?.since ?? null] : null, i.state === 'failed', i.problem, conditions]);
      const prev = this.reported.get(mac);
      const inTransit = !i.matches && (i.state === 'pending' || i.state === 'sent') && !i.problem;
      if (prev?.key !== key && !(inTransit && prev !== undefined && prev.conditions === conditions)) {
        this.reported.set(mac, { key, conditions });
        this.o.store
          .appendEvent({ deviceId: `label:${mac}`, kind: 'label_integrity', priority: Priority.ANOMALY, payload: { store_id: this.o.storeId, ...i }, createdAt: now })
          .catch((e: Error) => this.limiter.error('outbox', { err: e.message }, 'label integrity event could not be written'));
      }
    }
    if (snap.summary) this.publish(topics.featureTopic(this.o.storeId, 'labels', 'summary'), JSON.stringify(snap.summary), true);
  }

  private clearRetained(mac: string): void {
    // An empty retained message removes the label's retained state [MQTT-3.3.1-10].
    this.publish(topics.featureTopic(this.o.storeId, 'labels', 'label', mac), '', true);
  }

  private publish(topic: string, body: string, retain: boolean): void {
    this.o.bus.publish(topic, body, { retain, qos: 1 }).catch((e: Error) => {
      this.stats.publishFailures++;
      this.limiter.warn(`publish:labels`, { topic, err: e.message }, 'label state could not be published');
    });
  }
}

/** Same contents as the label's plan: the entry due now by hash, later ones by hash and time. */
function samePlan(plan: readonly ContentInput[], next: readonly ContentInput[], now: number): boolean {
  const cur = plan.filter((p, i) => p.effectiveAt > now || plan[i + 1] === undefined || plan[i + 1]!.effectiveAt > now);
  if (cur.length !== next.length) return false;
  for (let i = 0; i < next.length; i++) {
    if (cur[i]!.hash !== next[i]!.hash) return false;
    if (i > 0 && cur[i]!.effectiveAt !== next[i]!.effectiveAt) return false;
  }
  return true;
}

function isLow(mv: number | null | undefined, threshold: number): boolean {
  return mv !== null && mv !== undefined && mv > 0 && mv < threshold;
}

/** One label's share of the live summary. */
interface Contribution {
  state: LabelRecord['state'];
  priced: boolean;
  current: boolean;
  /** Its mismatch time when priced and not current. */
  since: number | null;
  low: boolean;
  lost: boolean;
  problem: boolean;
}

interface Totals {
  byState: Record<LabelRecord['state'], number>;
  priced: number;
  current: number;
  low: number;
  lost: number;
  problems: number;
}

function newTotals(): Totals {
  return { byState: { pending: 0, sent: 0, confirmed: 0, failed: 0 }, priced: 0, current: 0, low: 0, lost: 0, problems: 0 };
}

function addContribution(t: Totals, c: Contribution, sign: 1 | -1): void {
  t.byState[c.state] += sign;
  if (c.priced) t.priced += sign;
  if (c.current) t.current += sign;
  if (c.low) t.low += sign;
  if (c.lost) t.lost += sign;
  if (c.problem) t.problems += sign;
}
