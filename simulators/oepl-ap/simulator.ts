/**
 * An OpenEPaperLink access point with N simulated labels, speaking the AP's HTTP and WebSocket API
 * (as the ESP32 AP firmware of the OpenEPaperLink repository does; docs/oepl.md lists the facts):
 *
 * - `POST /jsonupload` (form: mac, json, ttl): 200 `Ok, saved` = stored at the AP, nothing more;
 *   409 `come back later` while booting; 400 for a missing parameter or an unknown MAC.
 * - `GET /get_db[?pos=N|?mac=M]`: `{"tags":[...]}`, a page ends once its JSON passes 5,000 bytes
 *   and then carries `continu`.
 * - `POST /tag_cmd` (form: mac, cmd), `GET /led_flash?mac=&pattern=<24 hex>`.
 * - WebSocket `/ws`: `{"tags":[record]}` on every change of a label, `{"logMsg":"<MAC> reports xfer
 *   complete\r\n"}` when a label has received its content, `{"errMsg":"< <MAC> xfer timeout\n"}`
 *   when the AP gives up on it.
 * - Every HTTP answer carries `Connection: close` and the connection is closed after it, as the
 *   firmware's web server (ESPAsyncWebServer) does. `keepAlive: true` makes it an AP that keeps
 *   connections open (Node's default idle close, 5 s), for the driver's keep-alive mode.
 *
 * The radio: each label wakes every `checkinMs` (phase from the seed) and, if the AP holds content
 * for it that differs from what it shows, receives it at `rateBps` over the AP's one radio
 * (transfers queue behind each other). Content identical to what the label shows is never sent,
 * so no acknowledgement follows it. The queue lives in memory: restart() loses it. An item not
 * delivered within `xferTimeoutMs` ends in `xfer timeout`.
 *
 * Faults, settable at any time (programmatic API below; the CLI sets the initial ones): a fraction
 * of WebSocket messages lost, a fraction of transfers failing, labels lost for good, the AP down
 * (connection refused), 409 for a while (as during boot), answers of HTML or garbage.
 *
 * Lifecycle: the constructor stores options; start() listens; stop() closes every socket and
 * timer and never throws.
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { SeededRng } from '../central/rng';
import { ScaledClock, type ClockHandle } from './clock';

export interface OeplApOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (any free port). */
  port?: number;
  labels: number;
  /** MACs, phases and radio values come from it (default 1). */
  seed?: number;
  /** Virtual ms between two check-ins of a label (default 40,000). */
  checkinMs?: number;
  /** Radio throughput of the AP, bytes per second (default 5,000). */
  rateBps?: number;
  /** Virtual ms until a queued item that was not delivered ends in `xfer timeout` (default 20 min). */
  xferTimeoutMs?: number;
  /** Virtual ms per real ms (default 1; fast mode 1000). */
  timeScale?: number;
  /** Bytes sent over the radio per content: a number (a rendered image), or by default the content's own size. */
  transferBytes?: number;
  /** Answer 409 for this many virtual ms after start() (as during boot; default 0). */
  bootMs?: number;
  faults?: Partial<OeplApFaults>;
  /** Virtual start time, Unix ms (default now). */
  startMs?: number;
  /** Keep HTTP connections open between requests (default false: closed after each answer, as the firmware does). */
  keepAlive?: boolean;
}

export interface OeplApFaults {
  /** Probability that one WebSocket message to one client is lost. */
  wsLoss: number;
  /** Probability that a transfer fails at its end (the label tries again at its next check-in). */
  transferLoss: number;
  /** Every HTTP answer replaced by an HTML error page or by random bytes. */
  answer: 'normal' | 'html' | 'garbage';
  /**
   * This many requests that arrive on a kept-alive connection (its second request or later) are
   * answered with a TCP reset instead, as by a server that closed the idle connection just then.
   * Counts down; only with `keepAlive`.
   */
  resetReused: number;
}

export interface SimLabel {
  readonly mac: string;
  readonly hwType: number;
  rssi: number;
  lqi: number;
  batteryMv: number;
  temperature: number;
  /** Virtual Unix ms of the last check-in (0: never). */
  lastSeen: number;
  nextCheckin: number;
  /** What the label shows (null: nothing yet) and its hash (32 hex). */
  shown: string | null;
  shownHash: string;
  updateCount: number;
  updateLast: number;
  /** Contents uploaded for this label (`/jsonupload` answered 200), identical ones included. */
  uploads: number;
  /** Never checks in again. */
  lost: boolean;
  /** Commands (tag_cmd, led_flash) delivered to the label, oldest first (bounded). */
  readonly commands: { cmd: string; at: number }[];
}

interface QueueItem {
  content: string;
  hash: string;
  bytes: number;
  queuedAt: number;
  timeout: ClockHandle;
}

interface LabelState extends SimLabel {
  /** Content waiting for the label's next check-in (only the newest). */
  queue: QueueItem | null;
  /** Content on the radio now. */
  flying: QueueItem | null;
  pendingCommands: string[];
  checkin: ClockHandle | null;
  phaseMs: number;
}

export interface OeplApStats {
  uploads: number;
  /** Uploads whose content the label already showed (nothing sent). */
  identical: number;
  transfers: number;
  /** Bytes put on the radio, and the radio time they took (virtual ms): a lower bound for any schedule. */
  bytesOnAir: number;
  radioMs: number;
  acks: number;
  timeouts: number;
  wsSent: number;
  wsLost: number;
  refused409: number;
  /** TCP connections accepted (HTTP and WebSocket). */
  connections: number;
}

/** Events for the CLI's output and for tests. */
export interface OeplApEvents {
  'xfer-complete': [mac: string, bytes: number, virtualMs: number];
  'xfer-timeout': [mac: string];
  /** The AP answers again after goDown() or restart() (after a restart, uploads get 409 while it boots). */
  up: [];
}

const PAGE_BYTES = 5000;
const MAX_BODY = 256 * 1024;
const MAX_COMMANDS = 32;
const NO_HASH = '0'.repeat(32);
const HW_TYPES = [0x00, 0x01, 0x02, 0x03] as const;

function md5Hash(content: string): string {
  // The AP reports the first 8 bytes of the content's version, then zeros.
  return createHash('md5').update(content).digest('hex').slice(0, 16) + '0'.repeat(16);
}

export class OeplApSimulator extends EventEmitter<OeplApEvents> {
  readonly stats: OeplApStats = { uploads: 0, identical: 0, transfers: 0, bytesOnAir: 0, radioMs: 0, acks: 0, timeouts: 0, wsSent: 0, wsLost: 0, refused409: 0, connections: 0 };
  readonly faults: OeplApFaults = { wsLoss: 0, transferLoss: 0, answer: 'normal', resetReused: 0 };
  /**
   * While true the radio starts no transfer (labels check in as usual, uploads are stored and
   * queued): for benchmarks that measure the hand-off to the AP apart from the acknowledgements.
   */
  holdTransfers = false;
  /** Requests served per connection (keep-alive: the reset fault applies from the second on). */
  private readonly served = new WeakMap<Socket, number>();
  private readonly opts: Required<Omit<OeplApOptions, 'faults' | 'transferBytes'>> & { transferBytes: number | null };
  private clock: ScaledClock | null = null;
  private readonly labels: LabelState[] = [];
  private readonly byMac = new Map<string, LabelState>();
  private readonly rng: SeededRng;
  private server: http.Server | null = null;
  private wss: WebSocketServer | null = null;
  private readonly sockets = new Set<Socket>();
  private radioFreeAt = 0;
  private busyUntil = 0;
  private down = false;
  /** Between restart() and the AP coming up: the radio hears nothing either. */
  private poweredOff = false;
  private boundPort = 0;
  private stopped = false;
  private downTimer: ClockHandle | null = null;
  /** Bumped by restart(): transfers started before it never land. */
  private transferGeneration = 0;

  constructor(options: OeplApOptions) {
    super();
    this.opts = {
      host: options.host ?? '127.0.0.1',
      port: options.port ?? 0,
      labels: options.labels,
      seed: options.seed ?? 1,
      checkinMs: options.checkinMs ?? 40_000,
      rateBps: options.rateBps ?? 5000,
      xferTimeoutMs: options.xferTimeoutMs ?? 20 * 60_000,
      timeScale: options.timeScale ?? 1,
      transferBytes: options.transferBytes ?? null,
      bootMs: options.bootMs ?? 0,
      startMs: options.startMs ?? Date.now(),
      keepAlive: options.keepAlive ?? false,
    };
    Object.assign(this.faults, options.faults ?? {});
    this.rng = new SeededRng(this.opts.seed);
  }

  // ---------------------------------------------------------------- lifecycle

  async start(): Promise<void> {
    if (this.server) return;
    this.stopped = false;
    this.clock = new ScaledClock(this.opts.timeScale, this.opts.startMs);
    this.makeLabels();
    this.busyUntil = this.clock.now() + this.opts.bootMs;
    const server = http.createServer((req, res) => this.handle(req, res));
    server.on('connection', (s) => {
      this.stats.connections++;
      this.sockets.add(s);
      s.on('error', () => undefined);
      s.once('close', () => this.sockets.delete(s));
    });
    server.on('upgrade', (req, socket, head) => this.upgrade(req, socket as Socket, head));
    this.wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
    this.server = server;
    await this.listen(this.opts.port);
    for (const l of this.labels) this.scheduleCheckin(l, this.clock.now() + l.phaseMs);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.clock?.stop();
    await this.closeListener();
    this.wss?.close();
    this.wss = null;
    this.server = null;
  }

  get port(): number {
    return this.boundPort;
  }

  get url(): string {
    const h = this.opts.host.includes(':') ? `[${this.opts.host}]` : this.opts.host;
    return `http://${h}:${this.boundPort}`;
  }

  /** Virtual Unix ms. */
  now(): number {
    return this.clock ? this.clock.now() : this.opts.startMs;
  }

  /** Real ms that `virtualMs` of simulated time take. */
  realMs(virtualMs: number): number {
    return virtualMs / this.opts.timeScale;
  }

  get macs(): string[] {
    return this.labels.map((l) => l.mac);
  }

  label(mac: string): Readonly<SimLabel> | undefined {
    return this.byMac.get(mac.toUpperCase());
  }

  /** Queued content items at the AP (not yet delivered). */
  get queued(): number {
    return this.labels.filter((l) => l.queue !== null || l.flying !== null).length;
  }

  // ---------------------------------------------------------------- faults (programmatic)

  /** These labels never check in again (unknown MACs are ignored); returns the MACs lost. */
  loseLabels(which: number | string[]): string[] {
    const list = typeof which === 'number' ? this.labels.filter((l) => !l.lost).slice(-which) : which.map((m) => this.byMac.get(m.toUpperCase())).filter((l): l is LabelState => !!l);
    for (const l of list) {
      l.lost = true;
      l.checkin?.cancel();
      l.checkin = null;
    }
    return list.map((l) => l.mac);
  }

  /** Answer 409 to uploads for `virtualMs` from now (as the AP does while it is not running). */
  busyFor(virtualMs: number): void {
    this.busyUntil = this.atInput(() => this.now()) + virtualMs;
  }

  get busy(): boolean {
    return this.now() < this.busyUntil;
  }

  /**
   * The AP stops answering: the port is closed (connection refused) and WebSocket clients are
   * dropped. The radio side keeps its queue (a hung web server, a pulled network cable). With
   * `virtualMs`, it comes back by itself after that long.
   */
  async goDown(virtualMs?: number, reset = false): Promise<void> {
    this.downTimer?.cancel();
    this.down = true;
    await this.closeListener(reset);
    if (virtualMs !== undefined) this.downTimer = this.clock!.after(virtualMs, () => void this.comeUp().catch(() => undefined));
  }

  async comeUp(): Promise<void> {
    this.downTimer?.cancel();
    this.downTimer = null;
    if (!this.down || this.stopped) return;
    await this.listen(this.boundPort);
    this.down = false;
    this.poweredOff = false;
    this.emit('up');
  }

  get isDown(): boolean {
    return this.down;
  }

  /**
   * A power cycle: what was queued is lost (the AP keeps it in memory), transfers in flight are
   * abandoned, pending counts drop to 0. The tag database (what each label shows) survives, as the
   * firmware saves it to flash. The AP is unreachable for `downMs`, then answers 409 to uploads for
   * `bootMs` (virtual ms).
   */
  async restart(o: { downMs?: number; bootMs?: number } = {}): Promise<void> {
    if (!this.clock || this.stopped) return;
    for (const l of this.labels) {
      this.dropQueue(l);
      l.flying?.timeout.cancel();
      l.flying = null;
      l.pendingCommands = [];
    }
    this.radioFreeAt = 0;
    this.transferGeneration++;
    this.poweredOff = true;
    await this.goDown(undefined, true);
    const up = async (): Promise<void> => {
      this.busyFor(o.bootMs ?? 0);
      await this.comeUp();
    };
    if (o.downMs && o.downMs > 0) this.downTimer = this.clock!.after(o.downMs, () => void up().catch(() => undefined));
    else await up();
  }

  /** Makes a label check in now (tests that run the clock slowly). */
  checkinNow(mac: string): void {
    const l = this.byMac.get(mac.toUpperCase());
    if (!l || l.lost || !this.clock) return;
    this.atInput(() => this.scheduleCheckin(l, this.clock!.now()));
  }

  // ---------------------------------------------------------------- labels and radio

  private makeLabels(): void {
    if (this.labels.length > 0) return;
    const hex = (bytes: number): string => {
      let s = '';
      for (let i = 0; i < bytes; i++) s += this.rng.int(0, 255).toString(16).padStart(2, '0');
      return s.toUpperCase();
    };
    while (this.labels.length < this.opts.labels) {
      const i = this.labels.length;
      // Half the labels have a 6-byte MAC (shown with 0000 in front), half a full 8-byte one.
      const mac = i % 2 === 0 ? `0000${hex(6)}` : `${(0x10 + this.rng.int(0, 0xef)).toString(16).toUpperCase()}${hex(7)}`;
      if (this.byMac.has(mac)) continue;
      const l: LabelState = {
        mac,
        hwType: HW_TYPES[i % HW_TYPES.length]!,
        rssi: -this.rng.int(45, 88),
        lqi: this.rng.int(120, 255),
        batteryMv: this.rng.int(2500, 3050),
        temperature: this.rng.int(17, 24),
        lastSeen: 0,
        nextCheckin: 0,
        shown: null,
        shownHash: NO_HASH,
        updateCount: 0,
        uploads: 0,
        updateLast: 0,
        lost: false,
        commands: [],
        queue: null,
        flying: null,
        pendingCommands: [],
        checkin: null,
        phaseMs: Math.floor(this.rng.next() * this.opts.checkinMs),
      };
      this.labels.push(l);
      this.byMac.set(mac, l);
    }
  }

  private scheduleCheckin(l: LabelState, t: number): void {
    l.checkin?.cancel();
    l.nextCheckin = t;
    l.checkin = this.clock!.at(t, () => this.onCheckin(l));
  }

  private onCheckin(l: LabelState): void {
    if (l.lost) return;
    const now = this.clock!.now();
    if (this.poweredOff) {
      // Nobody hears the label; it tries again after its interval.
      this.scheduleCheckin(l, now + this.opts.checkinMs);
      return;
    }
    l.lastSeen = now;
    l.nextCheckin = now + this.opts.checkinMs;
    if (l.pendingCommands.length > 0) {
      for (const cmd of l.pendingCommands) {
        l.commands.push({ cmd, at: now });
        if (l.commands.length > MAX_COMMANDS) l.commands.shift();
      }
      l.pendingCommands = [];
    }
    if (l.queue && !l.flying && !this.holdTransfers) this.startTransfer(l, l.queue, now);
    this.pushTag(l);
    this.scheduleCheckin(l, l.nextCheckin);
  }

  private startTransfer(l: LabelState, item: QueueItem, now: number): void {
    l.queue = null;
    l.flying = item;
    const start = Math.max(now, this.radioFreeAt);
    const end = start + (item.bytes * 1000) / this.opts.rateBps;
    this.radioFreeAt = end;
    this.stats.transfers++;
    this.stats.bytesOnAir += item.bytes;
    this.stats.radioMs += end - start;
    const gen = this.transferGeneration;
    this.clock!.at(end, () => {
      if (gen !== this.transferGeneration || l.flying !== item) return; // abandoned by a restart
      l.flying = null;
      if (l.lost || this.rng.chance(this.faults.transferLoss)) {
        // Failed: tried again at the next check-in, unless newer content replaced it meanwhile.
        if (this.clock!.now() >= item.queuedAt + this.opts.xferTimeoutMs) this.timeout(l, item);
        else if (l.queue === null) l.queue = item;
        else item.timeout.cancel();
        return;
      }
      this.complete(l, item);
    });
  }

  private complete(l: LabelState, item: QueueItem): void {
    const now = this.clock!.now();
    item.timeout.cancel();
    l.shown = item.content;
    l.shownHash = item.hash;
    l.updateCount++;
    l.updateLast = now;
    this.stats.acks++;
    this.broadcast(JSON.stringify({ logMsg: `${l.mac} reports xfer complete\r\n` }));
    this.pushTag(l);
    this.emit('xfer-complete', l.mac, item.bytes, now - item.queuedAt);
    // Newer content arrived during the transfer: it goes out at once (the label is still awake).
    const next = l.queue;
    if (next) {
      if (next.hash === l.shownHash) this.dropQueue(l);
      else this.startTransfer(l, next, now);
    }
  }

  private timeout(l: LabelState, item: QueueItem): void {
    if (l.queue === item) l.queue = null;
    this.stats.timeouts++;
    this.broadcast(JSON.stringify({ errMsg: `< ${l.mac} xfer timeout\n` }));
    this.pushTag(l);
    this.emit('xfer-timeout', l.mac);
  }

  private dropQueue(l: LabelState): void {
    l.queue?.timeout.cancel();
    l.queue = null;
  }

  private enqueue(l: LabelState, content: string): void {
    const hash = md5Hash(content);
    const now = this.clock!.now();
    this.dropQueue(l); // only the newest content per label is kept
    // Compared with what the label will show once the transfer on the radio (if any) lands.
    if (hash === (l.flying?.hash ?? l.shownHash)) {
      // The label shows this already: nothing is sent, and no acknowledgement follows.
      this.stats.identical++;
      return;
    }
    const item: QueueItem = {
      content,
      hash,
      bytes: this.opts.transferBytes ?? Buffer.byteLength(content),
      queuedAt: now,
      timeout: { cancel: () => undefined },
    };
    item.timeout = this.clock!.at(now + this.opts.xferTimeoutMs, () => {
      if (l.queue === item) this.timeout(l, item);
    });
    l.queue = item;
  }

  private pending(l: LabelState): number {
    return (l.queue ? 1 : 0) + (l.flying ? 1 : 0) + l.pendingCommands.length;
  }

  /** The record as the firmware's fillNode writes it (same fields, same order). */
  private record(l: LabelState): Record<string, unknown> {
    const s = (ms: number): number => Math.floor(ms / 1000);
    return {
      mac: l.mac,
      hash: l.shownHash,
      lastseen: s(l.lastSeen),
      nextupdate: 0,
      nextcheckin: s(l.nextCheckin),
      pending: this.pending(l),
      alias: '',
      contentMode: l.shown === null ? 0 : 19,
      LQI: l.lqi,
      RSSI: l.rssi,
      temperature: l.temperature,
      batteryMv: l.batteryMv,
      hwType: l.hwType,
      wakeupReason: 0,
      capabilities: 0,
      modecfgjson: l.shown === null ? '' : `{"filename":"/current/${l.mac}.json","interval":"0"}`,
      isexternal: false,
      apip: '0.0.0.0',
      rotate: 0,
      lut: 0,
      invert: 0,
      updatecount: l.updateCount,
      updatelast: s(l.updateLast),
      ch: 11,
      ver: 38,
    };
  }

  private pushTag(l: LabelState): void {
    if (!this.wss || this.wss.clients.size === 0) return;
    this.broadcast(JSON.stringify({ tags: [this.record(l)] }));
  }

  private broadcast(text: string): void {
    if (!this.wss || this.down) return;
    for (const c of this.wss.clients) {
      if (c.readyState !== c.OPEN) continue;
      if (this.rng.chance(this.faults.wsLoss)) {
        this.stats.wsLost++;
        continue;
      }
      this.stats.wsSent++;
      c.send(text);
    }
  }

  // ---------------------------------------------------------------- HTTP

  private listen(port: number): Promise<void> {
    const server = this.server!;
    return new Promise((resolve, reject) => {
      const onError = (e: Error): void => reject(e);
      server.once('error', onError);
      server.listen(port, this.opts.host, () => {
        server.off('error', onError);
        this.boundPort = (server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  /**
   * Closes the port and every connection. `reset`: as after a power cut, the connections end in a
   * TCP reset rather than a close (a rebooted AP has no state for them and answers the gateway's
   * next packet, at the latest its next ping, with RST; this sends it at once).
   */
  private async closeListener(reset = false): Promise<void> {
    const server = this.server;
    if (!server) return;
    if (!reset) for (const c of this.wss?.clients ?? []) c.terminate();
    const closed = server.listening ? new Promise<void>((r) => server.close(() => r())) : Promise.resolve();
    for (const s of this.sockets) (reset ? s.resetAndDestroy() : s.destroy());
    this.sockets.clear();
    await closed;
  }

  private upgrade(req: http.IncomingMessage, socket: Socket, head: Buffer): void {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/ws' || !this.wss || this.down) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      ws.on('error', () => undefined);
      this.wss?.emit('connection', ws, req);
    });
  }

  /** Runs an outside input at one virtual instant, after everything that was due (see ScaledClock.input). */
  private atInput<T>(fn: () => T): T {
    return this.clock ? this.clock.input(fn) : fn();
  }

  private send(res: http.ServerResponse, status: number, body: string, type = 'text/plain'): void {
    if (this.faults.answer === 'html') {
      status = 200;
      type = 'text/html';
      body = '<!DOCTYPE html><html><head><title>Error</title></head><body><h1>Internal error</h1></body></html>';
    } else if (this.faults.answer === 'garbage') {
      const bytes = Buffer.alloc(64);
      for (let i = 0; i < bytes.length; i++) bytes[i] = this.rng.int(0, 255);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': bytes.length });
      res.end(bytes);
      return;
    }
    res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'access-control-allow-origin': '*' });
    res.end(body);
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (!this.opts.keepAlive) res.setHeader('connection', 'close');
    else {
      const n = (this.served.get(req.socket) ?? 0) + 1;
      this.served.set(req.socket, n);
      if (n > 1 && this.faults.resetReused > 0) {
        this.faults.resetReused--;
        req.socket.resetAndDestroy();
        return;
      }
    }
    try {
      this.atInput(() => this.route(req, res));
    } catch {
      if (!res.headersSent) this.send(res, 400, 'bad request');
      else res.destroy();
    }
  }

  private route(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://ap');
    const route = `${req.method} ${url.pathname}`;
    if (route === 'GET /get_db') return this.getDb(url, res);
    if (route === 'GET /led_flash') return this.ledFlash(url, res);
    if (route === 'POST /jsonupload' || route === 'POST /tag_cmd') {
      this.readForm(req)
        .then((form) => {
          if (form === null) return this.send(res, 413, 'payload too large');
          this.atInput(() => (route === 'POST /jsonupload' ? this.jsonUpload(form, res) : this.tagCmd(form, res)));
        })
        .catch(() => {
          if (!res.headersSent) this.send(res, 400, 'bad request');
        });
      return;
    }
    this.send(res, 404, '');
  }

  private readForm(req: http.IncomingMessage): Promise<URLSearchParams | null> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let tooBig = false;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY) tooBig = true;
        else chunks.push(c);
      });
      req.on('end', () => resolve(tooBig ? null : new URLSearchParams(Buffer.concat(chunks).toString('utf8'))));
      req.on('error', reject);
    });
  }

  /** The AP's hex2mac: 12 or 16 hex digits; a 12-digit MAC is stored with 0000 on top. */
  private findMac(s: string | null): { ok: false } | { ok: true; label: LabelState | undefined } {
    if (s === null || !/^(?:[0-9A-Fa-f]{12}|[0-9A-Fa-f]{16})$/.test(s)) return { ok: false };
    const mac = s.length === 12 ? `0000${s.toUpperCase()}` : s.toUpperCase();
    return { ok: true, label: this.byMac.get(mac) };
  }

  private jsonUpload(form: URLSearchParams, res: http.ServerResponse): void {
    if (this.busy) {
      this.stats.refused409++;
      return this.send(res, 409, 'come back later');
    }
    if (!form.has('mac') || !form.has('json')) return this.send(res, 400, 'Missing parameters');
    const found = this.findMac(form.get('mac'));
    if (!found.ok) return this.send(res, 400, 'Missing parameters');
    if (!found.label) return this.send(res, 400, 'mac not found in tagDB');
    this.stats.uploads++;
    found.label.uploads++;
    this.enqueue(found.label, form.get('json')!);
    this.pushTag(found.label);
    this.send(res, 200, 'Ok, saved');
  }

  private tagCmd(form: URLSearchParams, res: http.ServerResponse): void {
    if (!form.has('mac') || !form.has('cmd')) return this.send(res, 500, 'param error');
    const found = this.findMac(form.get('mac'));
    if (!found.ok) return this.send(res, 500, 'param error');
    const l = found.label;
    if (!l) return this.send(res, 400, 'Error: mac not found');
    const cmd = form.get('cmd')!;
    if (cmd === 'clear') {
      this.dropQueue(l);
      l.pendingCommands = [];
    } else if (['reboot', 'scan', 'reset', 'deepsleep', 'ledflash', 'ledflash_long', 'ledflash_stop'].includes(cmd)) {
      if (l.pendingCommands.length < MAX_COMMANDS) l.pendingCommands.push(cmd);
    }
    // 'refresh' re-renders the same content: identical, so nothing is sent. Unknown commands are
    // answered 'Ok, done' and do nothing, as the firmware does.
    this.pushTag(l);
    this.send(res, 200, 'Ok, done');
  }

  private ledFlash(url: URL, res: http.ServerResponse): void {
    const found = this.findMac(url.searchParams.get('mac'));
    if (!found.ok || !found.label) return this.send(res, 400, 'parameters are missing');
    const pattern = url.searchParams.get('pattern');
    if (pattern !== null && !/^[0-9A-Fa-f]{24}/.test(pattern)) return this.send(res, 400, 'Error: expects 12 hex bytes in pattern');
    if (found.label.pendingCommands.length < MAX_COMMANDS) found.label.pendingCommands.push(`led_flash:${(pattern ?? '0'.repeat(24)).slice(0, 24).toUpperCase()}`);
    this.pushTag(found.label);
    this.send(res, 200, 'ok, request transmitted');
  }

  private getDb(url: URL, res: http.ServerResponse): void {
    if (url.searchParams.has('mac')) {
      const found = this.findMac(url.searchParams.get('mac'));
      if (!found.ok) return this.send(res, 200, '{"error": "malformatted parameter"}', 'application/json');
      return this.send(res, 200, JSON.stringify({ tags: found.label ? [this.record(found.label)] : [] }), 'application/json');
    }
    // atoi: leading digits, anything else 0
    const pos = Number.parseInt(url.searchParams.get('pos') ?? '0', 10);
    const start = Number.isFinite(pos) && pos > 0 ? pos : 0;
    const parts: string[] = [];
    let size = '{"tags":[]}'.length;
    let continu: number | null = null;
    for (let c = start; c < this.labels.length; c++) {
      const rec = JSON.stringify(this.record(this.labels[c]!));
      parts.push(rec);
      size += rec.length + (parts.length > 1 ? 1 : 0);
      // As the firmware: the record that passes the limit is kept, and the page ends after it.
      // (So a full last page is followed by an empty one.)
      if (size > PAGE_BYTES) {
        continu = c + 1;
        break;
      }
    }
    const body = `{"tags":[${parts.join(',')}]${continu !== null ? `,"continu":${continu}` : ''}}`;
    this.send(res, 200, body, 'application/json');
  }
}
