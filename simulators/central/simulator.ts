/**
 * The reference central inventory service: a real HTTP(S) server implementing
 * docs/central-api.yaml, with its own SQLite database, a price/slot/product feed, fault injection and a
 * status page. Tests and the demo run shelfgate against it; retailers' teams can diff their
 * implementation's behaviour against it.
 *
 * Lifecycle: the constructor stores options only; start() opens the database and
 * listens; stop() closes every socket (long-polls and SSE streams included), every timer and the
 * database, and never throws.
 */
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { createHash, timingSafeEqual } from 'node:crypto';
import { ErrorCode, ShelfgateError } from '../../src/errors';
import type { Service } from '../../src/lifecycle';
import type { Logger } from '../../src/log';
import { isValidGtin } from '../../src/util/gtin';
import { NO_FAULTS, parseFaultsPatch, type Faults, type FaultsPatch } from './faults';
import { BodyError, readJsonBodyRaw, sendJson, sendProblem } from './http-util';
import { renderStatusPage } from './page';
import type { CentralStats, SimState } from './state';
export type { CentralStats, SimState } from './state';
import { isRfc3339, NET_UNITS, parseNetContent, parsePricesCsv, RandomPrices, type PriceInput, type ProductInput } from './prices';
import { SeededRng } from './rng';
import { CentralStore, type ReceivedEvent, type RejectedEvent, type StoreStats, type StoredAck } from './store';
import { TimerSet } from '../timers';
import {
  AckRequestSchema,
  BatchEnvelopeSchema,
  CURRENCY_RE,
  IDEMPOTENCY_TTL_MS,
  LEGACY_EPOCH,
  LIMITS,
  PromotionSchema,
  STORE_ID_RE,
  ProblemCode,
  type AckResponse,
  type BatchResponse,
  type ChangesResponse,
  type FeedChange,
  type OtherChange,
  type PriceChange,
  type ProductChange,
  type SlotAssignment,
} from './types';

export interface CentralTlsOptions {
  /** PEM server certificate (chain). */
  cert: string | Buffer;
  /** PEM private key. */
  key: string | Buffer;
  /** PEM CA bundle used to verify client certificates. */
  ca?: string | Buffer;
  /** Require a client certificate signed by `ca` (mTLS); a client without one is refused at the handshake. */
  requestClientCert?: boolean;
}

export interface CentralSimulatorOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (any free port; read `port` or `url` after start()). */
  port?: number;
  /** The simulator's own SQLite file; default ':memory:'. */
  dbPath?: string;
  /** Bearer token every /v1 request must carry; omitted: no authentication. */
  token?: string;
  /** If set, only these store ids are permitted (others get 403 store_not_permitted). */
  storeIds?: string[];
  /** If set, central knows only these stores (others get 404 unknown_store); omitted: every store is known. */
  knownStores?: string[];
  /** The clock of ingest times and Idempotency-Key expiry (ms since the epoch); default Date.now. Tests move it. */
  now?: () => number;
  /** How long an Idempotency-Key is remembered; default 24 h (the contract's minimum). */
  idempotencyKeyTtlMs?: number;
  tls?: CentralTlsOptions;
  log: Logger;
  /** Initial faults (validated; see faults.ts). */
  faults?: FaultsPatch;
  /** Seed of the fault RNG and the random price generator (default 1). */
  seed?: number;
  /** Override the advertised limits (tests use small ones). */
  limits?: { maxBatchEvents?: number; maxBodyBytes?: number };
  /** Publish this many random price changes per minute while running (0/omitted: none). */
  randomPricesPerMin?: number;
  /** SSE heartbeat comment interval (default 15 s). */
  sseHeartbeatMs?: number;
  /** Event kinds accepted beyond the contract's (a central that knows a newer feature's kinds). */
  extraKinds?: readonly string[];
}

export interface SlotInput {
  storeId: string;
  shelf: string;
  slot: number;
  /** null clears the slot. */
  gtin: string | null;
  unitWeightG: number | null;
  /** Monotonic per (store, shelf, slot); omitted: the next version. */
  version?: number;
  /** Shelf labels (OEPL MACs, 12 or 16 hex digits) that show this slot's product; omitted: none sent. */
  labels?: string[];
}

type Reply =
  | { kind: 'json'; status: number; body: unknown; headers?: Record<string, string> }
  | { kind: 'problem'; status: number; code: ProblemCode; detail: string; headers?: Record<string, string>; ext?: Record<string, unknown> }
  | { kind: 'html'; status: number; body: string }
  | { kind: 'none' };

/** What ingestBatch answers: the batch response, or a problem (status and code as over HTTP). */
export type IngestOutcome =
  | { ok: true; response: BatchResponse }
  | { ok: false; status: number; code: ProblemCode; detail: string; ext?: Record<string, unknown> };

/** A shelf label's MAC on a slot assignment (docs/central-api.yaml SlotAssignment.labels). */
const MAC_RE = /^(?:[0-9A-Fa-f]{12}|[0-9A-Fa-f]{16})$/;

type Route = 'events:batch' | 'changes' | 'changes:ack';

interface FeedListener {
  storeId: string;
  notify(): void;
}

const ROUTE_RE = /^\/v1\/stores\/([^/]+)\/(events(?::|%3A)batch|changes|changes(?::|%3A)ack)$/i;

/** Opaque cursor: base64url of "v1:<feed position>". */
export function encodeCursor(pos: number): string {
  return Buffer.from(`v1:${pos}`).toString('base64url');
}

export function decodeCursor(cursor: string): number | null {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(cursor)) return null;
  const m = /^v1:(\d{1,15})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  return m ? Number(m[1]) : null;
}

export class CentralSimulator implements Service {
  readonly name = 'central-sim';
  private readonly log: Logger;
  private readonly maxBatchEvents: number;
  private readonly maxBodyBytes: number;
  private store: CentralStore | null = null;
  private server: http.Server | https.Server | null = null;
  private readonly sockets = new Set<Socket>();
  private readonly timers = new TimerSet();
  private readonly listeners = new Set<FeedListener>();
  private readonly changeHooks = new Set<(change: FeedChange, cursor: string) => void>();
  private longPolls = 0;
  private sseStreams = 0;
  private randomTimer: NodeJS.Timeout | null = null;
  private running = false;
  private boundPort = 0;
  private currentFaults: Faults = { ...NO_FAULTS };
  private faultRng: SeededRng;
  private readonly priceRng: SeededRng;
  private readonly counters: CentralStats['requests'] = {
    total: 0,
    by_route: {},
    by_status: {},
    faults_injected: { status5xx: 0, status429: 0, timeout: 0, drop_connection: 0, lost_response: 0, slowed: 0, feed_duplicates: 0, feed_reordered_pages: 0 },
  };
  private randomPrices: RandomPrices;

  constructor(private readonly opts: CentralSimulatorOptions) {
    this.log = opts.log.child({ module: 'central-sim' });
    this.maxBatchEvents = opts.limits?.maxBatchEvents ?? LIMITS.maxBatchEvents;
    this.maxBodyBytes = opts.limits?.maxBodyBytes ?? LIMITS.maxBodyBytes;
    this.faultRng = new SeededRng(opts.seed ?? 1);
    this.priceRng = new SeededRng((opts.seed ?? 1) ^ 0x5eed);
    this.randomPrices = new RandomPrices(this.priceRng);
  }

  // ---------------------------------------------------------------- lifecycle

  async start(): Promise<void> {
    if (this.running) return;
    if (this.opts.faults) this.setFaults(this.opts.faults);
    const store = new CentralStore(this.opts.dbPath ?? ':memory:', this.opts.extraKinds);
    store.open();
    this.store = store;
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      this.handle(req, res).catch((e: unknown) => {
        this.log.error({ err: e, url: req.url }, 'central-sim: request handler failed');
        sendProblem(res, 500, ProblemCode.INTERNAL, 'internal error');
      });
    };
    const tls = this.opts.tls;
    const server = tls
      ? https.createServer(
          {
            cert: tls.cert,
            key: tls.key,
            ...(tls.ca ? { ca: tls.ca } : {}),
            requestCert: tls.requestClientCert === true,
            rejectUnauthorized: tls.requestClientCert === true,
          },
          handler,
        )
      : http.createServer(handler);
    server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.once('close', () => this.sockets.delete(s));
    });
    server.on('tlsClientError', (e: Error) => this.log.debug({ err: e.message }, 'central-sim: TLS handshake refused'));
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.opts.port ?? 0, this.opts.host ?? '127.0.0.1', () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (e) {
      store.close();
      this.store = null;
      throw e;
    }
    server.on('error', (e: Error) => this.log.error({ err: e }, 'central-sim: server error'));
    this.server = server;
    const addr = server.address();
    this.boundPort = typeof addr === 'object' && addr ? addr.port : 0;
    this.running = true;
    if (this.opts.randomPricesPerMin) this.startRandomPrices(this.opts.randomPricesPerMin);
    this.log.info({ url: this.url, db: this.opts.dbPath ?? ':memory:', token: this.opts.token !== undefined, mtls: tls?.requestClientCert === true }, 'central-sim: listening');
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.stopRandomPrices();
    this.timers.clear();
    this.listeners.clear();
    const server = this.server;
    this.server = null;
    if (server) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of this.sockets) s.destroy();
      this.sockets.clear();
      await closed;
    }
    try {
      this.store?.close();
    } catch (e) {
      this.log.warn({ err: e }, 'central-sim: closing the database failed');
    }
    this.store = null;
    this.log.info('central-sim: stopped');
  }

  get port(): number {
    return this.boundPort;
  }

  /** Base URL, e.g. http://127.0.0.1:8080 (valid after start()). */
  get url(): string {
    const host = this.opts.host ?? '127.0.0.1';
    const h = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
    return `${this.opts.tls ? 'https' : 'http'}://${h}:${this.boundPort}`;
  }

  // ---------------------------------------------------------------- faults

  /** The live fault settings. Mutating fields takes effect on the next request (unvalidated; prefer setFaults). */
  get faults(): Faults {
    return this.currentFaults;
  }

  /** Validates and merges a partial fault setting; a `seed` restarts the fault RNG. Throws REQUEST_INVALID listing every bad field. */
  setFaults(patch: unknown): Faults {
    const r = parseFaultsPatch(patch);
    if (!r.ok) throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `invalid faults: ${r.issues.join('; ')}`, r.issues);
    const { seed, ...rest } = r.patch;
    if (seed !== undefined) this.faultRng = new SeededRng(seed);
    this.currentFaults = { ...this.currentFaults, ...rest, ...(seed !== undefined ? { seed } : {}) };
    this.log.info({ faults: this.currentFaults }, 'central-sim: faults set');
    return this.currentFaults;
  }

  resetFaults(): void {
    this.currentFaults = { ...NO_FAULTS };
  }

  // ---------------------------------------------------------------- queries for tests and the page

  /** `orderBy: 'seq'` orders by epoch (first seen first), then seq; `epoch` keeps one epoch only. */
  receivedEvents(storeId: string, opts: { orderBy?: 'arrival' | 'seq'; epoch?: string } = {}): ReceivedEvent[] {
    return this.db().receivedEvents(storeId, opts.orderBy, opts.epoch);
  }

  rejectedEvents(storeId: string): RejectedEvent[] {
    return this.db().rejectedEvents(storeId);
  }

  acks(storeId?: string): (StoredAck & { store_id: string })[] {
    return this.db().acks(storeId);
  }

  /** Every change published, in feed order. */
  changes(): FeedChange[] {
    return this.db().allChanges();
  }

  stats(): CentralStats {
    const db = this.db();
    const stores: Record<string, StoreStats> = {};
    const totals = { events: 0, duplicates: 0, rejected: 0, batches: 0, retried_batches: 0, out_of_order_devices: 0 };
    for (const id of db.storeIds()) {
      const s = db.storeStats(id);
      stores[id] = s;
      totals.events += s.events;
      totals.duplicates += s.duplicates;
      totals.rejected += s.rejected;
      totals.batches += s.batches;
      totals.retried_batches += s.retried_batches;
      totals.out_of_order_devices += s.out_of_order_devices.length;
    }
    return {
      stores,
      totals,
      changes: { ...db.changeCounts(), head: db.feedHead() },
      requests: structuredClone(this.counters),
      connections: { open: this.sockets.size, long_polls: this.longPolls, sse: this.sseStreams },
    };
  }

  state(): SimState {
    const db = this.db();
    const changes = db.allChanges();
    return {
      url: this.url,
      stats: this.stats(),
      faults: { ...this.currentFaults },
      lastEvents: db.lastEvents(50),
      lastChanges: changes.slice(-50).reverse(),
      lastAcks: db.acks().slice(-50).reverse(),
    };
  }

  // ---------------------------------------------------------------- the feed

  /**
   * Publishes a price change (to every store, or to `storeId` only). `version` must be greater than
   * every version published for this GTIN; omitted, it is the next one. Throws REQUEST_INVALID.
   */
  publishPrice(input: PriceInput): PriceChange {
    const db = this.db();
    const issues: string[] = [];
    if (!isValidGtin(input.gtin)) issues.push(`gtin ${JSON.stringify(input.gtin)} is not a valid GTIN`);
    if (!Number.isSafeInteger(input.price) || input.price < 0) issues.push('price must be a non-negative integer (minor units)');
    if (!CURRENCY_RE.test(input.currency)) issues.push('currency must be an ISO 4217 code');
    if (input.promotion && !PromotionSchema.safeParse(input.promotion).success) issues.push('promotion must have integer was_price and RFC 3339 valid_from < valid_to');
    if (input.storeId !== undefined && !STORE_ID_RE.test(input.storeId)) issues.push('storeId is invalid');
    if (issues.length > 0) throw new ShelfgateError(ErrorCode.REQUEST_INVALID, issues.join('; '), issues);
    const gtin = input.gtin.padStart(14, '0');
    const latest = db.latestVersion('price', gtin);
    const version = input.version ?? latest + 1;
    if (!Number.isSafeInteger(version) || version <= latest)
      throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `version ${version} of ${gtin} is not newer than ${latest}`, { latest });
    const change: PriceChange = {
      change_id: `price/${gtin}/v${version}`,
      type: 'price',
      gtin,
      price: input.price,
      currency: input.currency,
      promotion: input.promotion ?? null,
      version,
      store_id: input.storeId ?? null,
      published_at: new Date().toISOString(),
    };
    this.published(change, db.appendChange(change, gtin));
    return change;
  }

  /**
   * Publishes a product's master data (name, net content) to every store, or to `storeId` only.
   * `version` must be greater than every version published for this GTIN; omitted, it is the next
   * one. Throws REQUEST_INVALID.
   */
  publishProduct(input: ProductInput): ProductChange {
    const db = this.db();
    const issues: string[] = [];
    if (typeof input.gtin !== 'string' || !isValidGtin(input.gtin)) issues.push(`gtin ${JSON.stringify(input.gtin)} is not a valid GTIN`);
    const chars = typeof input.name === 'string' ? [...input.name].length : 0;
    if (typeof input.name !== 'string' || chars < 1 || chars > 200 || input.name.trim() === '' || /\p{Cc}/u.test(input.name))
      issues.push('name must be 1-200 characters, not blank, without control characters');
    const n = input.netContent ?? null;
    if (n !== null && (typeof n !== 'object' || !(typeof n.amount === 'number' && Number.isFinite(n.amount) && n.amount > 0) || !(NET_UNITS as readonly string[]).includes(n.unit)))
      issues.push(`netContent must be {amount > 0, unit: ${NET_UNITS.join('|')}} or null`);
    if (input.storeId !== undefined && !STORE_ID_RE.test(input.storeId)) issues.push('storeId is invalid');
    if (issues.length > 0) throw new ShelfgateError(ErrorCode.REQUEST_INVALID, issues.join('; '), issues);
    const gtin = input.gtin.padStart(14, '0');
    const latest = db.latestVersion('product', gtin);
    const version = input.version ?? latest + 1;
    if (!Number.isSafeInteger(version) || version <= latest)
      throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `version ${version} of product ${gtin} is not newer than ${latest}`, { latest });
    const change: ProductChange = {
      change_id: `product/${gtin}/v${version}`,
      type: 'product',
      gtin,
      name: input.name,
      net_content: n === null ? null : { amount: n.amount, unit: n.unit },
      version,
      store_id: input.storeId ?? null,
      published_at: new Date().toISOString(),
    };
    this.published(change, db.appendChange(change, gtin));
    return change;
  }

  /** Publishes a slot assignment for one store. Throws REQUEST_INVALID. */
  assignSlot(input: SlotInput): SlotAssignment {
    const db = this.db();
    const issues: string[] = [];
    if (!STORE_ID_RE.test(input.storeId)) issues.push('storeId is invalid');
    if (typeof input.shelf !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(input.shelf)) issues.push('shelf must be 1-64 of [A-Za-z0-9._-]');
    if (!Number.isSafeInteger(input.slot) || input.slot < 1) issues.push('slot must be a positive integer');
    if (input.gtin !== null && !isValidGtin(input.gtin)) issues.push(`gtin ${JSON.stringify(input.gtin)} is not a valid GTIN`);
    if (input.gtin !== null && (typeof input.unitWeightG !== 'number' || !(input.unitWeightG > 0) || !Number.isFinite(input.unitWeightG)))
      issues.push('unitWeightG must be a positive number when gtin is set');
    if (input.gtin === null && input.unitWeightG !== null) issues.push('unitWeightG must be null when the slot is cleared');
    if (input.labels !== undefined && (!Array.isArray(input.labels) || input.labels.length > 16 || !input.labels.every((m) => typeof m === 'string' && MAC_RE.test(m))))
      issues.push('labels must be at most 16 MACs of 12 or 16 hex digits');
    if (issues.length > 0) throw new ShelfgateError(ErrorCode.REQUEST_INVALID, issues.join('; '), issues);
    const key = `${input.storeId}/${input.shelf}/${input.slot}`;
    const latest = db.latestVersion('slot', key);
    const version = input.version ?? latest + 1;
    if (!Number.isSafeInteger(version) || version <= latest)
      throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `version ${version} of slot ${key} is not newer than ${latest}`, { latest });
    const change: SlotAssignment = {
      change_id: `slot/${key}/v${version}`,
      type: 'slot',
      store_id: input.storeId,
      shelf: input.shelf,
      slot: input.slot,
      gtin: input.gtin === null ? null : input.gtin.padStart(14, '0'),
      unit_weight_g: input.unitWeightG,
      ...(input.labels !== undefined ? { labels: input.labels.map((m) => m.toUpperCase()) } : {}),
      version,
      published_at: new Date().toISOString(),
    };
    this.published(change, db.appendChange(change, key));
    return change;
  }

  /**
   * Publishes a change of a type this contract version does not define (as a central of a later
   * minor version would), for one store or (storeId omitted) for every store. Stores must
   * acknowledge it `invalid` and carry on; the feed never waits for it (a store whose feature owns
   * the type applies it). `version` omitted: the next one for (store, type); given: used as it is,
   * even an older one, so a test can check a store's version rule. Throws REQUEST_INVALID.
   */
  publishOtherChange(input: { type: string; storeId?: string; body?: Record<string, unknown>; version?: number }): OtherChange {
    const db = this.db();
    if (!/^[a-z][a-z0-9_]{0,31}$/.test(input.type) || input.type === 'price' || input.type === 'slot' || input.type === 'product') {
      throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `type ${JSON.stringify(input.type)} must be a lower-case name other than price, slot and product`);
    }
    if (input.storeId !== undefined && !STORE_ID_RE.test(input.storeId)) throw new ShelfgateError(ErrorCode.REQUEST_INVALID, 'storeId is invalid');
    const key = `${input.storeId ?? '*'}/${input.type}`;
    if (input.version !== undefined && !(Number.isSafeInteger(input.version) && input.version >= 1)) throw new ShelfgateError(ErrorCode.REQUEST_INVALID, 'version must be a positive integer');
    const version = input.version ?? db.latestVersion(input.type, key) + 1;
    const change: OtherChange = {
      ...input.body,
      change_id: `${input.type}/${key}/v${version}`,
      type: input.type,
      store_id: input.storeId ?? null,
      version,
      published_at: new Date(this.now()).toISOString(),
    };
    let feedSeq: number;
    try {
      feedSeq = db.appendChange(change, key);
    } catch (e) {
      if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `change ${change.change_id} was published already`);
      throw e;
    }
    this.published(change, feedSeq);
    return change;
  }

  /**
   * Loads a price CSV (gtin,price,currency,was_price,valid_from,valid_to,version) and publishes every
   * row, in file order. Every issue is reported at once (CONFIG_INVALID, details = issues) and then
   * nothing is published. Returns the number of changes published.
   */
  loadPricesCsv(path: string): number {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      throw new ShelfgateError(ErrorCode.CONFIG_UNREADABLE, `cannot read ${path}: ${(e as Error).message}`, undefined, { cause: e });
    }
    const { prices, products, issues } = parsePricesCsv(text);
    const db = this.db();
    const latest = new Map<string, number>();
    prices.forEach((p, i) => {
      const prev = latest.get(p.gtin) ?? db.latestVersion('price', p.gtin);
      const v = p.version ?? prev + 1;
      if (v <= prev) issues.push({ line: NaN, message: `row ${i + 1}: version ${v} of ${p.gtin} is not newer than ${prev}` });
      latest.set(p.gtin, v);
    });
    if (issues.length > 0) {
      throw new ShelfgateError(ErrorCode.CONFIG_INVALID, `${path}: ${issues.length} invalid price row(s)`, issues);
    }
    // names first: a store shows a product's name from the first price on
    let named = 0;
    for (const p of products) {
      const cur = db.latestProduct(p.gtin);
      if (cur && cur.name === p.name && sameNet(cur.net_content, p.netContent ?? null)) continue; // unchanged: no new version
      this.publishProduct(p);
      named++;
    }
    for (const p of prices) this.publishPrice(p);
    this.log.info({ path, count: prices.length, products: named }, 'central-sim: prices loaded');
    return prices.length;
  }

  /**
   * Publishes one random price change (seeded). Before the first price of a GTIN of the demo
   * catalogue, its product (name, net content) is published once.
   */
  publishRandomPrice(): PriceChange {
    const price = this.randomPrices.next(new Date());
    const product = this.randomPrices.product(price.gtin);
    if (product && this.db().latestVersion('product', price.gtin) === 0) this.publishProduct(product);
    return this.publishPrice(price);
  }

  /** Publishes `perMinute` random price changes per minute until stopRandomPrices() or stop(). */
  startRandomPrices(perMinute: number): void {
    this.stopRandomPrices();
    if (!(perMinute > 0)) return;
    const every = Math.max(10, Math.round(60_000 / perMinute));
    this.randomTimer = setInterval(() => {
      try {
        this.publishRandomPrice();
      } catch (e) {
        this.log.warn({ err: e }, 'central-sim: random price failed');
      }
    }, every);
    this.randomTimer.unref();
  }

  stopRandomPrices(): void {
    if (this.randomTimer) clearInterval(this.randomTimer);
    this.randomTimer = null;
  }

  // ---------------------------------------------------------------- transport-neutral API (HTTP and the MQTT adapter)

  /**
   * Calls `fn` after every change appended to the feed, with the cursor just after it (the MQTT
   * adapter publishes changes live through this). Returns the unsubscribe function; stop() does not
   * remove hooks (the adapter that added one removes it).
   */
  onChange(fn: (change: FeedChange, cursor: string) => void): () => void {
    this.changeHooks.add(fn);
    return () => this.changeHooks.delete(fn);
  }

  /**
   * One batch upload, as `POST /v1/stores/{storeId}/events:batch` processes it after the HTTP layer:
   * the store check, envelope validation, the batch size limit, the Idempotency-Key (remembered
   * with the request's fingerprint: the route and `raw`, the decompressed body, or the body
   * re-serialised when a transport has no bytes), epochs, dedup by event_id, per-device order.
   */
  ingestBatch(storeId: string, batchId: string, body: unknown, raw?: Buffer): IngestOutcome {
    if (!STORE_ID_RE.test(storeId)) return { ok: false, status: 400, code: ProblemCode.INVALID_REQUEST, detail: `storeId ${JSON.stringify(storeId)} is invalid` };
    const unknown = this.unknownStore(storeId);
    if (unknown) return unknown;
    if (!/^[\x21-\x7e]{1,128}$/.test(batchId)) {
      return { ok: false, status: 400, code: ProblemCode.IDEMPOTENCY_KEY_MISSING, detail: 'the batch id must be 1-128 visible ASCII characters' };
    }
    const b = body as { events?: unknown };
    if (b && typeof b === 'object' && Array.isArray(b.events) && b.events.length > this.maxBatchEvents) {
      return { ok: false, status: 413, code: ProblemCode.PAYLOAD_TOO_LARGE, detail: `a batch holds at most ${this.maxBatchEvents} events`, ext: { max_events: this.maxBatchEvents } };
    }
    const env = BatchEnvelopeSchema.safeParse(body);
    if (!env.success) {
      return { ok: false, status: 400, code: ProblemCode.INVALID_REQUEST, detail: env.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; ') };
    }
    const badGap = (env.data.gaps ?? []).find((g) => g.from_seq > g.to_seq);
    if (badGap) return { ok: false, status: 400, code: ProblemCode.INVALID_REQUEST, detail: `gap ${badGap.from_seq}..${badGap.to_seq}: from_seq is after to_seq` };
    const epoch = env.data.epoch ?? LEGACY_EPOCH;
    const digest = createHash('sha256')
      .update(`POST /v1/stores/${storeId}/events:batch\n`)
      .update(raw ?? JSON.stringify(body))
      .digest('hex');
    const out = this.db().storeBatch({
      storeId,
      batchId,
      digest,
      epoch,
      events: env.data.events,
      gaps: env.data.gaps ?? [],
      nowMs: this.now(),
      keyTtlMs: this.opts.idempotencyKeyTtlMs ?? IDEMPOTENCY_TTL_MS,
    });
    if (!out.ok) {
      return { ok: false, status: 422, code: ProblemCode.IDEMPOTENCY_KEY_REUSED, detail: `Idempotency-Key ${batchId} was used before for another request body` };
    }
    const counts = { accepted: 0, duplicate: 0, rejected: 0 };
    for (const r of out.results) counts[r.status]++;
    this.log.debug({ storeId, epoch, batch: batchId, ...counts, contiguous_seq: out.contiguous_seq, retried: out.retried, replayed: out.replayed }, 'central-sim: batch');
    return { ok: true, response: { batch_id: batchId, epoch, results: out.results, counts, contiguous_seq: out.contiguous_seq } };
  }

  /** Records a `changes:ack` request body for a store. */
  ingestAcks(storeId: string, body: unknown): { ok: true; response: AckResponse } | { ok: false; status: number; code: ProblemCode; detail: string } {
    const unknown = this.unknownStore(storeId);
    if (unknown) return unknown;
    const parsed = AckRequestSchema.safeParse(body);
    if (!parsed.success) {
      return { ok: false, status: 400, code: ProblemCode.INVALID_REQUEST, detail: parsed.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; ') };
    }
    const results = this.db().recordAcks(storeId, parsed.data.acks, new Date().toISOString());
    return { ok: true, response: { results: parsed.data.acks.map((a, i) => ({ change_id: a.change_id, result: results[i] as 'recorded' | 'unknown_change' })) } };
  }

  /**
   * Every change a store sees after `cursor` (null: from the beginning), each with the cursor just
   * after it, with the feed faults (duplicate, reorder) applied per page, and the feed head as
   * `next_cursor`. Invalid or expired cursors answer as the HTTP feed does (400 / 410).
   */
  feedAfter(
    storeId: string,
    cursor: string | null,
  ): { ok: true; changes: { change: FeedChange; cursor: string }[]; next_cursor: string } | { ok: false; status: number; code: ProblemCode; detail: string } {
    const unknown = this.unknownStore(storeId);
    if (unknown) return unknown;
    let after = 0;
    if (cursor !== null && cursor !== '') {
      const pos = decodeCursor(cursor);
      if (pos === null) return { ok: false, status: 400, code: ProblemCode.INVALID_CURSOR, detail: 'cursor is not one this service issued' };
      if (pos > this.db().feedHead()) return { ok: false, status: 410, code: ProblemCode.CURSOR_EXPIRED, detail: 'cursor is ahead of this feed (the feed was reset); resynchronise without a cursor' };
      after = pos;
    }
    const out: { change: FeedChange; cursor: string }[] = [];
    for (let pos = after; ; ) {
      const rows = this.db().changesAfter(storeId, pos, LIMITS.maxFeedLimit);
      if (rows.length === 0) break;
      pos = (rows[rows.length - 1] as { feedSeq: number }).feedSeq;
      for (const r of this.faultPage(rows)) out.push({ change: r.change, cursor: encodeCursor(r.feedSeq) });
    }
    return { ok: true, changes: out, next_cursor: encodeCursor(Math.max(after, this.db().feedHead())) };
  }

  /**
   * Draws the request faults for a non-HTTP transport (the MQTT adapter), in the HTTP order, and
   * counts them: `drop` and `timeout` mean ignore the request, `status` means answer with that
   * problem status unprocessed, `lose` means process it but send no answer, `slowMs` a delay first.
   */
  drawRequestFaults(): { drop: boolean; timeout: boolean; slowMs: number; status: 429 | 503 | null; retryAfterS: number; lose: boolean } {
    const f = this.currentFaults;
    const c = this.counters.faults_injected;
    const none = { drop: false, timeout: false, slowMs: 0, status: null, retryAfterS: f.retryAfterS, lose: false };
    if (this.faultRng.chance(f.dropConnectionRate)) return (c.drop_connection++, { ...none, drop: true });
    if (this.faultRng.chance(f.timeoutRate)) return (c.timeout++, { ...none, timeout: true });
    if (f.slowMs > 0) c.slowed++;
    if (this.faultRng.chance(f.status429Rate)) return (c.status429++, { ...none, slowMs: f.slowMs, status: 429 });
    if (this.faultRng.chance(f.status5xxRate)) return (c.status5xx++, { ...none, slowMs: f.slowMs, status: 503 });
    const lose = this.faultRng.chance(f.lostResponseRate);
    if (lose) c.lost_response++;
    return { ...none, slowMs: f.slowMs, lose };
  }

  /** Feed fault for a live change: true = deliver it twice (counted). */
  drawDuplicateChange(): boolean {
    if (!this.faultRng.chance(this.currentFaults.duplicateRate)) return false;
    this.counters.faults_injected.feed_duplicates++;
    return true;
  }

  /** Counts a request handled by another transport under `route` in stats().requests. */
  countRequest(route: string): void {
    this.counters.total++;
    this.count(route);
  }

  // ---------------------------------------------------------------- HTTP

  /** 404 unknown_store for a store this central does not know (only with `knownStores`). */
  private unknownStore(storeId: string): { ok: false; status: 404; code: ProblemCode; detail: string } | null {
    const known = this.opts.knownStores;
    if (!known || known.includes(storeId)) return null;
    return { ok: false, status: 404, code: ProblemCode.UNKNOWN_STORE, detail: `store ${storeId} is not known to this central` };
  }

  private now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  private db(): CentralStore {
    if (!this.store) throw new ShelfgateError(ErrorCode.STOPPED, 'central simulator is not running');
    return this.store;
  }

  private published(change: FeedChange, feedSeq: number): void {
    this.notify(change.store_id);
    const cursor = encodeCursor(feedSeq);
    for (const fn of [...this.changeHooks]) {
      try {
        fn(change, cursor);
      } catch (e) {
        this.log.warn({ err: e }, 'central-sim: change hook failed');
      }
    }
  }

  private notify(storeId: string | null): void {
    for (const l of [...this.listeners]) if (storeId === null || l.storeId === storeId) l.notify();
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    this.counters.total++;
    res.once('finish', () => {
      const k = String(res.statusCode);
      this.counters.by_status[k] = (this.counters.by_status[k] ?? 0) + 1;
    });
    const url = new URL(req.url ?? '/', 'http://central.invalid');
    if (url.pathname === '/_sim' || url.pathname.startsWith('/_sim/')) {
      this.count('_sim');
      this.write(res, await this.handleAdmin(req, url));
      return;
    }
    const m = ROUTE_RE.exec(url.pathname);
    if (!m) {
      this.count('not_found');
      sendProblem(res, 404, ProblemCode.NOT_FOUND, `no such resource: ${url.pathname}`);
      return;
    }
    const storeId = decodeURIComponent(m[1] as string);
    const route = (m[2] as string).replace(/%3A/i, ':').toLowerCase() as Route;
    this.count(route);

    // Faults, in the order a real path would fail: network, stuck server, slow server, overload.
    const f = this.currentFaults;
    if (this.faultRng.chance(f.dropConnectionRate)) {
      this.counters.faults_injected.drop_connection++;
      req.socket.destroy();
      return;
    }
    if (this.faultRng.chance(f.timeoutRate)) {
      this.counters.faults_injected.timeout++;
      return; // never answered; the socket closes when the client gives up or on stop()
    }
    if (f.slowMs > 0) {
      this.counters.faults_injected.slowed++;
      await this.timers.delay(f.slowMs);
      if (!this.running) return;
    }
    const retryAfter = { 'retry-after': String(f.retryAfterS) };
    if (this.faultRng.chance(f.status429Rate)) {
      this.counters.faults_injected.status429++;
      sendProblem(res, 429, ProblemCode.RATE_LIMITED, 'rate limited (injected fault)', { headers: retryAfter });
      return;
    }
    if (this.faultRng.chance(f.status5xxRate)) {
      this.counters.faults_injected.status5xx++;
      sendProblem(res, 503, ProblemCode.UNAVAILABLE, 'temporarily unavailable (injected fault)', { headers: retryAfter });
      return;
    }
    const lose = this.faultRng.chance(f.lostResponseRate);

    const denied = this.authorize(req, storeId);
    if (denied) {
      this.write(res, denied);
      return;
    }
    let reply: Reply;
    switch (route) {
      case 'events:batch':
        reply = await this.handleBatch(req, storeId);
        break;
      case 'changes':
        reply = await this.handleChanges(req, res, url, storeId);
        break;
      case 'changes:ack':
        reply = await this.handleAck(req, storeId);
        break;
    }
    if (lose && reply.kind !== 'none') {
      this.counters.faults_injected.lost_response++;
      req.socket.destroy();
      return;
    }
    this.write(res, reply, LIMITS.maxResponseBytes);
  }

  private count(route: string): void {
    this.counters.by_route[route] = (this.counters.by_route[route] ?? 0) + 1;
  }

  /** `maxBytes`: a JSON answer over it is this simulator's bug: logged and answered 500 instead (the contract caps /v1 answers at 1 MiB). */
  private write(res: http.ServerResponse, reply: Reply, maxBytes?: number): void {
    if (!this.running || res.destroyed) return;
    if (reply.kind === 'json') {
      if (!sendJson(res, reply.status, reply.body, reply.headers, maxBytes)) {
        this.log.error({ maxBytes }, 'central-sim: an answer exceeded the response size limit');
        sendProblem(res, 500, ProblemCode.INTERNAL, 'the answer would exceed the response size limit');
      }
    }
    else if (reply.kind === 'problem') sendProblem(res, reply.status, reply.code, reply.detail, { headers: reply.headers, ext: reply.ext });
    else if (reply.kind === 'html') {
      res.writeHead(reply.status, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(reply.body), 'cache-control': 'no-store' });
      res.end(reply.body);
    }
  }

  /** Bearer token (RFC 6750), the store allow-list (403), then whether the store is known (404). */
  private authorize(req: http.IncomingMessage, storeId: string): Reply | null {
    if (!STORE_ID_RE.test(storeId)) return problem(400, ProblemCode.INVALID_REQUEST, `storeId ${JSON.stringify(storeId)} is invalid`);
    const token = this.opts.token;
    if (token !== undefined) {
      const header = req.headers.authorization;
      if (!header) {
        return problem(401, ProblemCode.UNAUTHORIZED, 'a bearer token is required', { 'www-authenticate': 'Bearer realm="shelfgate-central"' });
      }
      const m = /^Bearer ([A-Za-z0-9._~+/=-]+)$/i.exec(header);
      const given = Buffer.from(m?.[1] ?? '');
      const want = Buffer.from(token);
      if (!m || given.length !== want.length || !timingSafeEqual(given, want)) {
        return problem(401, ProblemCode.INVALID_TOKEN, 'the bearer token is not valid', {
          'www-authenticate': 'Bearer realm="shelfgate-central", error="invalid_token"',
        });
      }
    }
    if (this.opts.storeIds && !this.opts.storeIds.includes(storeId)) {
      return problem(403, ProblemCode.STORE_NOT_PERMITTED, `these credentials may not act for store ${storeId}`);
    }
    const unknown = this.unknownStore(storeId);
    if (unknown) return problem(unknown.status, unknown.code, unknown.detail);
    return null;
  }

  private async readBody(req: http.IncomingMessage): Promise<{ ok: true; body: unknown; raw: Buffer } | { ok: false; reply: Reply }> {
    try {
      const { value, raw } = await readJsonBodyRaw(req, this.maxBodyBytes);
      return { ok: true, body: value, raw };
    } catch (e) {
      if (e instanceof BodyError) {
        return {
          ok: false,
          reply: problem(e.status, e.code as ProblemCode, e.message, e.status === 413 ? { connection: 'close' } : undefined, e.status === 413 ? { max_bytes: this.maxBodyBytes } : undefined),
        };
      }
      throw e;
    }
  }

  private async handleBatch(req: http.IncomingMessage, storeId: string): Promise<Reply> {
    if (req.method !== 'POST') return problem(405, ProblemCode.METHOD_NOT_ALLOWED, 'use POST', { allow: 'POST' });
    const key = req.headers['idempotency-key'];
    if (typeof key !== 'string' || !/^[\x21-\x7e]{1,128}$/.test(key)) {
      return problem(400, ProblemCode.IDEMPOTENCY_KEY_MISSING, 'an Idempotency-Key header (1-128 visible ASCII characters, the batch id) is required');
    }
    const read = await this.readBody(req);
    if (!read.ok) return read.reply;
    if (!this.running) return { kind: 'none' };
    const out = this.ingestBatch(storeId, key, read.body, read.raw);
    if (!out.ok) return problem(out.status, out.code, out.detail, undefined, out.ext);
    return { kind: 'json', status: 200, body: out.response };
  }

  private async handleAck(req: http.IncomingMessage, storeId: string): Promise<Reply> {
    if (req.method !== 'POST') return problem(405, ProblemCode.METHOD_NOT_ALLOWED, 'use POST', { allow: 'POST' });
    const read = await this.readBody(req);
    if (!read.ok) return read.reply;
    if (!this.running) return { kind: 'none' };
    const out = this.ingestAcks(storeId, read.body);
    if (!out.ok) return problem(out.status, out.code, out.detail);
    return { kind: 'json', status: 200, body: out.response };
  }

  /** Applies the feed faults (duplicate, reorder) to one page. */
  private faultPage(page: { feedSeq: number; change: FeedChange }[]): { feedSeq: number; change: FeedChange }[] {
    const f = this.currentFaults;
    let out = page;
    if (f.duplicateRate > 0) {
      out = [];
      for (const item of page) {
        out.push(item);
        if (this.faultRng.chance(f.duplicateRate)) {
          out.push(item);
          this.counters.faults_injected.feed_duplicates++;
        }
      }
    }
    if (f.reorder && out.length > 1) {
      out = this.faultRng.shuffle([...out]);
      this.counters.faults_injected.feed_reordered_pages++;
    }
    return out;
  }

  private async handleChanges(req: http.IncomingMessage, res: http.ServerResponse, url: URL, storeId: string): Promise<Reply> {
    if (req.method !== 'GET') return problem(405, ProblemCode.METHOD_NOT_ALLOWED, 'use GET', { allow: 'GET' });
    const sse = (req.headers.accept ?? '').toLowerCase().includes('text/event-stream');
    const lastEventId = req.headers['last-event-id'];
    const cursorText = url.searchParams.get('cursor') ?? (sse && typeof lastEventId === 'string' ? lastEventId : null);
    let after = 0;
    if (cursorText !== null && cursorText !== '') {
      const pos = decodeCursor(cursorText);
      if (pos === null) return problem(400, ProblemCode.INVALID_CURSOR, 'cursor is not one this service issued');
      if (pos > this.db().feedHead()) {
        return problem(410, ProblemCode.CURSOR_EXPIRED, 'cursor is ahead of this feed (the feed was reset); resynchronise without a cursor');
      }
      after = pos;
    }
    const waitText = url.searchParams.get('wait') ?? '0';
    if (!/^\d{1,2}$/.test(waitText) || Number(waitText) > LIMITS.maxWaitSeconds) {
      return problem(400, ProblemCode.INVALID_REQUEST, `wait must be an integer 0..${LIMITS.maxWaitSeconds}`);
    }
    const limitText = url.searchParams.get('limit') ?? String(LIMITS.defaultFeedLimit);
    if (!/^\d{1,4}$/.test(limitText) || Number(limitText) < 1 || Number(limitText) > LIMITS.maxFeedLimit) {
      return problem(400, ProblemCode.INVALID_REQUEST, `limit must be an integer 1..${LIMITS.maxFeedLimit}`);
    }
    const limit = Number(limitText);
    if (sse) {
      this.streamChanges(req, res, storeId, after);
      return { kind: 'none' };
    }

    const page = (): ChangesResponse | null => {
      const rows = this.db().changesAfter(storeId, after, limit);
      if (rows.length === 0) return null;
      return { changes: this.faultPage(rows).map((r) => r.change), next_cursor: encodeCursor((rows[rows.length - 1] as { feedSeq: number }).feedSeq) };
    };
    const empty = (): ChangesResponse => ({ changes: [], next_cursor: encodeCursor(Math.max(after, this.db().feedHead())) });
    const now = page();
    const waitMs = Number(waitText) * 1000;
    if (now || waitMs === 0) return { kind: 'json', status: 200, body: now ?? empty() };

    // Long-poll: answer on the first publish for this store, or with an empty page after `wait`.
    this.longPolls++;
    return new Promise<Reply>((resolve) => {
      let done = false;
      const finish = (reply: Reply): void => {
        if (done) return;
        done = true;
        this.longPolls--;
        this.timers.cancel(timer);
        this.listeners.delete(listener);
        res.off('close', onClose);
        resolve(reply);
      };
      const listener: FeedListener = {
        storeId,
        notify: () => {
          const p = page();
          if (p) finish({ kind: 'json', status: 200, body: p });
        },
      };
      const onClose = (): void => finish({ kind: 'none' });
      const timer = this.timers.after(waitMs, () => finish(this.running ? { kind: 'json', status: 200, body: empty() } : { kind: 'none' }));
      this.listeners.add(listener);
      res.once('close', onClose);
    });
  }

  /** SSE mode (optional in the contract): one `change` event per change, `id` = the cursor after it. */
  private streamChanges(req: http.IncomingMessage, res: http.ServerResponse, storeId: string, from: number): void {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', 'x-accel-buffering': 'no' });
    res.write('retry: 2000\n\n');
    req.socket.setNoDelay(true);
    this.sseStreams++;
    let pos = from;
    const flush = (): void => {
      if (!this.running || res.destroyed) return;
      for (;;) {
        const rows = this.db().changesAfter(storeId, pos, LIMITS.maxFeedLimit);
        if (rows.length === 0) return;
        pos = (rows[rows.length - 1] as { feedSeq: number }).feedSeq;
        for (const r of this.faultPage(rows)) {
          res.write(`id: ${encodeCursor(r.feedSeq)}\nevent: change\ndata: ${JSON.stringify(r.change)}\n\n`);
        }
      }
    };
    const listener: FeedListener = { storeId, notify: flush };
    const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), this.opts.sseHeartbeatMs ?? 15_000);
    this.listeners.add(listener);
    res.once('close', () => {
      this.sseStreams--;
      clearInterval(heartbeat);
      this.listeners.delete(listener);
    });
    flush();
  }

  // ---------------------------------------------------------------- admin (/_sim)

  private async handleAdmin(req: http.IncomingMessage, url: URL): Promise<Reply> {
    const p = url.pathname.replace(/\/+$/, '') || '/';
    if (p === '/_sim' && req.method === 'GET') return { kind: 'html', status: 200, body: renderStatusPage(this.state()) };
    if (p === '/_sim/state' && req.method === 'GET') return { kind: 'json', status: 200, body: this.state() };
    if (p === '/_sim/faults') {
      if (req.method === 'GET') return { kind: 'json', status: 200, body: this.currentFaults };
      if (req.method !== 'POST') return problem(405, ProblemCode.METHOD_NOT_ALLOWED, 'use GET or POST', { allow: 'GET, POST' });
      const read = await this.readBody(req);
      if (!read.ok) return read.reply;
      const r = parseFaultsPatch(read.body);
      if (!r.ok) return problem(400, ProblemCode.INVALID_REQUEST, r.issues.join('; '), undefined, { issues: r.issues });
      return { kind: 'json', status: 200, body: this.setFaults(r.patch) };
    }
    if ((p === '/_sim/prices' || p === '/_sim/slots' || p === '/_sim/products') && req.method === 'POST') {
      const read = await this.readBody(req);
      if (!read.ok) return read.reply;
      const items = Array.isArray(read.body) ? read.body : [read.body];
      try {
        const published = items.map((it) =>
          p === '/_sim/prices' ? this.publishPrice(adminPrice(it)) : p === '/_sim/products' ? this.publishProduct(adminProduct(it)) : this.assignSlot(adminSlot(it)),
        );
        return { kind: 'json', status: 201, body: { changes: published } };
      } catch (e) {
        if (e instanceof ShelfgateError) return problem(400, ProblemCode.INVALID_REQUEST, e.message);
        throw e;
      }
    }
    return problem(404, ProblemCode.NOT_FOUND, `no such admin resource: ${p} (${req.method ?? ''})`);
  }
}

function problem(status: number, code: ProblemCode, detail: string, headers?: Record<string, string>, ext?: Record<string, unknown>): Reply {
  return { kind: 'problem', status, code, detail, ...(headers ? { headers } : {}), ...(ext ? { ext } : {}) };
}

/** POST /_sim/prices body: the wire field names of a PriceChange (store_id optional). */
function adminPrice(it: unknown): PriceInput {
  const o = (typeof it === 'object' && it !== null ? it : {}) as Record<string, unknown>;
  const promo = o['promotion'] as PriceInput['promotion'];
  if (promo && (!isRfc3339(String(promo.valid_from)) || !isRfc3339(String(promo.valid_to)))) {
    throw new ShelfgateError(ErrorCode.REQUEST_INVALID, 'promotion dates must be RFC 3339');
  }
  return {
    gtin: String(o['gtin'] ?? ''),
    price: o['price'] as number,
    currency: String(o['currency'] ?? ''),
    promotion: promo ?? null,
    ...(o['version'] !== undefined ? { version: o['version'] as number } : {}),
    ...(typeof o['store_id'] === 'string' ? { storeId: o['store_id'] } : {}),
  };
}

/** POST /_sim/products body: the wire field names of a ProductChange (net_content also as text, e.g. "500 g"). */
function adminProduct(it: unknown): ProductInput {
  const o = (typeof it === 'object' && it !== null ? it : {}) as Record<string, unknown>;
  const net = o['net_content'];
  const parsed = typeof net === 'string' ? parseNetContent(net) : undefined;
  if (parsed === null) throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `net_content ${JSON.stringify(net)} is not an amount > 0 in g, kg, ml, cl or l (e.g. "500 g")`);
  return {
    gtin: String(o['gtin'] ?? ''),
    name: o['name'] as string,
    netContent: parsed ?? ((net ?? null) as ProductInput['netContent']),
    ...(o['version'] !== undefined ? { version: o['version'] as number } : {}),
    ...(o['store_id'] !== undefined && o['store_id'] !== null ? { storeId: String(o['store_id']) } : {}),
  };
}

function sameNet(a: { amount: number; unit: string } | null, b: { amount: number; unit: string } | null): boolean {
  return a === null || b === null ? a === b : a.amount === b.amount && a.unit === b.unit;
}

/** POST /_sim/slots body: the wire field names of a SlotAssignment. */
function adminSlot(it: unknown): SlotInput {
  const o = (typeof it === 'object' && it !== null ? it : {}) as Record<string, unknown>;
  return {
    storeId: String(o['store_id'] ?? ''),
    shelf: String(o['shelf'] ?? ''),
    slot: o['slot'] as number,
    gtin: (o['gtin'] ?? null) as string | null,
    unitWeightG: (o['unit_weight_g'] ?? null) as number | null,
    ...(o['version'] !== undefined ? { version: o['version'] as number } : {}),
    ...(o['labels'] !== undefined ? { labels: o['labels'] as string[] } : {}),
  };
}
