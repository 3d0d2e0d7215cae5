/**
 * A fixed UHF reader speaking the server side of LLRP 1.0.1 over TCP, over the codec the gateway
 * uses (src/drivers/llrp.ts), for tests and the demo. The tags come from a TagPopulation: antenna
 * `a` (1-based) observes zone `antennaZones[a-1]` (default: zone (a-1) mod zones).
 *
 * What it does (EPCglobal LLRP 1.0.1):
 * - on connect: READER_EVENT_NOTIFICATION with a ConnectionAttemptEvent, Success. While a client
 *   is connected, a second one gets status 2 (a client-initiated connection exists) and is closed;
 *   the connected client is told with status 4 (another connection was attempted), and keeps going.
 * - GET_READER_CAPABILITIES: GeneralDeviceCapabilities (antenna count, UTC clock).
 * - SET_READER_CONFIG: ResetToFactoryDefault (forgets ROSpecs, keepalives off, default report spec),
 *   KeepaliveSpec (KEEPALIVE every period; KEEPALIVE_ACKs are counted, missing ones too), ROReportSpec.
 * - ADD_ROSPEC: validated (id not 0 and not in use, antennas 0 or 1..N, a periodic trigger with a
 *   period); a bad one is refused with an LLRPStatus error naming the field. DELETE (0 = all),
 *   ENABLE, DISABLE, START, STOP_ROSPEC with the standard's state rules (disabled / inactive /
 *   active); an unknown ROSpecID is an M_FieldError.
 * - while a ROSpec is active: an inventory round every `roundMs` per antenna of the ROSpec; each
 *   tag that answers (population misses and RSSI noise) is accumulated per (EPC, antenna) with its
 *   first/last seen, count and peak RSSI, and reported in RO_ACCESS_REPORTs as the ROReportSpec
 *   says: after N tags (N messages of TagReportData), or at the end of the ROSpec's duration
 *   (N = 0), or on GET_REPORT. Reads beyond `readsPerSecond` (a token bucket, at most one second's
 *   worth) are lost and counted, as on a reader whose air time is full.
 * - CLOSE_CONNECTION: the response, then the socket is closed. ENABLE_EVENTS_AND_REPORTS: no
 *   response (as the standard says). GET_READER_CONFIG, GET_ROSPECS: a bare success.
 * - a malformed request of a known type is answered with M_ParameterError naming the problem; an
 *   unknown type or another version gets an ERROR_MESSAGE (M_UnsupportedMessage/Version).
 *
 * Faults (`faults`, settable while running, and methods): `silent` (sends nothing: no responses, no
 * keepalives, no reports), `refuseAddRoSpec` (refuse the next N ADD_ROSPECs, Infinity for all),
 * `customParam` (a vendor Custom parameter in every TagReportData and report), `garbage`
 * (probability per report of a burst of random bytes), reboot(downMs) (closes the socket, forgets
 * every ROSpec and setting, and resets connections for downMs), injectGarbage(bytes).
 *
 * Replay: frames (raw bytes, e.g. captured RO_ACCESS_REPORTs as hex lines) sent in order, one per
 * round while a ROSpec is active, instead of the population's reports; looped.
 *
 * Design choices:
 * - A reboot resets new connections (accept, then RST) instead of closing the listener: the port
 *   stays ours, so a test running beside another cannot lose it to that test's port 0.
 * - One client at a time, as real readers: the sessions state (ROSpecs, keepalive, report spec)
 *   belongs to the reader, not the connection, so it survives a client's reconnect (a client
 *   resets it with SET_READER_CONFIG); a reboot forgets it.
 * - Every timer lives in one TimerSet and every socket is tracked: stop() clears them all.
 */
import { EventEmitter } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import {
  ConnectionAttemptStatus,
  decodeMessage,
  encodeCustomParam,
  encodeErrorMessage,
  encodeGeneralDeviceCapabilities,
  encodeKeepalive,
  encodeMessage,
  encodeReaderEventNotification,
  encodeResponse,
  encodeTagReportData,
  LlrpFramer,
  MsgType,
  newDecodeStats,
  ParamType,
  RESPONSE_OF,
  StatusCode,
  tlv,
  type LlrpDecodeStats,
  type LlrpStatus,
  type LlrpTagReport,
  type RoReportConfig,
  type RoSpecConfig,
} from '../../src/drivers/llrp';
import { mulberry32, randomInt, type Rng } from '../physics';
import { TimerSet } from '../timers';
import type { TagPopulation } from './population';

export interface LlrpSimFaults {
  /** Send nothing at all (a hung reader). */
  silent?: boolean;
  /** Refuse this many of the next ADD_ROSPECs (Infinity: all). */
  refuseAddRoSpec?: number;
  /** A vendor Custom parameter in every TagReportData and at the end of every report. */
  customParam?: boolean;
  /** Probability per report of a burst of 1-32 random bytes after it. */
  garbage?: number;
}

export interface LlrpSimOptions {
  population: TagPopulation;
  /** Default 127.0.0.1 and 0 (any free port). */
  host?: string;
  port?: number;
  /** Antennas of the reader (1..antennas). Default 4. */
  antennas?: number;
  /** Zone observed by antenna i+1; default (i mod zones). -1: an antenna that sees nothing. */
  antennaZones?: number[];
  /** Time between two inventory rounds of an active ROSpec, ms. Default 50. */
  roundMs?: number;
  /** Tag reads per second the reader can make over all antennas. Default 1000. */
  readsPerSecond?: number;
  /** Frames sent instead of the population's reports (one per round, looped). */
  replay?: Buffer[];
  rng?: Rng;
  faults?: LlrpSimFaults;
  /** Firmware string in the capabilities. Default "shelfgate-sim 1.0". */
  firmware?: string;
  /** Serve LLRP over TLS (port 5085 on a real reader) with this PEM certificate and key. */
  tls?: { cert: string | Buffer; key: string | Buffer };
}

export interface LlrpSimStats {
  connections: number;
  /** Second clients refused while one was connected. */
  refusedConnections: number;
  /** Connections reset while rebooting. */
  resetWhileDown: number;
  requests: number;
  /** Requests answered with a non-success status or an ERROR_MESSAGE. */
  errors: number;
  rejectedRoSpecs: number;
  rounds: number;
  reports: number;
  tagReports: number;
  /** Sightings lost to the read rate. */
  overRate: number;
  keepalives: number;
  keepaliveAcks: number;
  /** Messages not sent because of the silent fault. */
  suppressed: number;
  garbageBursts: number;
  replayed: number;
  reboots: number;
}

type RoState = 'disabled' | 'inactive' | 'active';

interface SimRoSpec {
  spec: RoSpecConfig;
  state: RoState;
  /** Periodic start timer, round timer, duration timer. */
  periodic: NodeJS.Timeout | null;
  round: NodeJS.Timeout | null;
  stop: NodeJS.Timeout | null;
  /** Accumulated sightings per `${epcHex}:${antenna}` (bounded by tags x antennas). */
  acc: Map<string, LlrpTagReport>;
}

const DEFAULT_REPORT: RoReportConfig = { trigger: 1, n: 1, content: { antennaId: true, peakRssi: true, firstSeen: true, lastSeen: true, seenCount: true } };
/** Vendor id of the Custom parameter the customParam fault adds (Impinj's IANA number: readers put these in reports). */
const CUSTOM_VENDOR = 25882;
/** Largest number of ROSpecs a client may add (a real reader has a limit too). */
const MAX_ROSPECS = 64;

export class LlrpReaderSimulator extends EventEmitter {
  readonly population: TagPopulation;
  readonly antennas: number;
  readonly antennaZones: readonly number[];
  faults: LlrpSimFaults;
  private readonly opts: { host: string; port: number; roundMs: number; readsPerSecond: number; firmware: string; tls?: { cert: string | Buffer; key: string | Buffer } };
  private readonly replay: Buffer[] | null;
  private replayAt = 0;
  private readonly rng: Rng;
  private readonly timers = new TimerSet();
  private readonly sockets = new Set<Socket>();
  private server: Server | null = null;
  private client: Socket | null = null;
  private address: AddressInfo | null = null;
  private nextId = 1;
  private downUntil = 0;
  private rospecs = new Map<number, SimRoSpec>();
  private report: RoReportConfig = DEFAULT_REPORT;
  private keepaliveMs = 0;
  private keepaliveTimer: NodeJS.Timeout | null = null;
  private unacked = 0;
  private budget = 0;
  private budgetAt = 0;
  /** Counters of the requests it could not decode. */
  readonly decodeStats: LlrpDecodeStats = newDecodeStats();
  private counters: LlrpSimStats = {
    connections: 0, refusedConnections: 0, resetWhileDown: 0, requests: 0, errors: 0, rejectedRoSpecs: 0, rounds: 0, reports: 0, tagReports: 0,
    overRate: 0, keepalives: 0, keepaliveAcks: 0, suppressed: 0, garbageBursts: 0, replayed: 0, reboots: 0,
  };

  constructor(o: LlrpSimOptions) {
    super();
    this.population = o.population;
    this.antennas = o.antennas ?? 4;
    if (!Number.isInteger(this.antennas) || this.antennas < 1 || this.antennas > 0xffff) throw new RangeError(`antennas must be 1..65535, got ${this.antennas}`);
    const zones = o.antennaZones ?? Array.from({ length: this.antennas }, (_, i) => i % o.population.zones);
    if (zones.length !== this.antennas || zones.some((z) => !Number.isInteger(z) || z < -1 || z >= o.population.zones))
      throw new RangeError(`antennaZones must give each of the ${this.antennas} antennas a zone 0..${o.population.zones - 1} or -1`);
    this.antennaZones = zones;
    this.opts = { host: o.host ?? '127.0.0.1', port: o.port ?? 0, roundMs: o.roundMs ?? 50, readsPerSecond: o.readsPerSecond ?? 1000, firmware: o.firmware ?? 'shelfgate-sim 1.0', ...(o.tls ? { tls: o.tls } : {}) };
    if (!(this.opts.roundMs > 0)) throw new RangeError(`roundMs must be > 0, got ${this.opts.roundMs}`);
    if (!(this.opts.readsPerSecond > 0)) throw new RangeError(`readsPerSecond must be > 0, got ${this.opts.readsPerSecond}`);
    this.replay = o.replay && o.replay.length > 0 ? o.replay : null;
    this.rng = o.rng ?? mulberry32(7);
    this.faults = { ...o.faults };
  }

  get stats(): LlrpSimStats {
    return { ...this.counters };
  }

  /** Where it listens: `tcp://host:port`, or `tls://host:port` over TLS (after start()). */
  get url(): string {
    const a = this.address;
    if (!a) throw new Error('the LLRP simulator is not listening');
    return `${this.opts.tls ? 'tls' : 'tcp'}://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  }

  get port(): number {
    return this.address?.port ?? 0;
  }

  /** True while a client is connected. */
  get connected(): boolean {
    return this.client !== null;
  }

  /** ROSpec ids and states (for tests and the CLI). */
  roSpecs(): { id: number; state: RoState; antennas: number[] }[] {
    return [...this.rospecs.values()].map((r) => ({ id: r.spec.rospecId, state: r.state, antennas: [...r.spec.antennas] }));
  }

  async start(): Promise<void> {
    if (this.server) return;
    // over TLS the session starts once the handshake is done; a failed handshake never reaches accept()
    const server = this.opts.tls ? createTlsServer({ cert: this.opts.tls.cert, key: this.opts.tls.key }, (s) => this.accept(s)) : createServer((s) => this.accept(s));
    if (this.opts.tls) server.on('tlsClientError', () => undefined);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', () => undefined);
    this.server = server;
    this.address = server.address() as AddressInfo;
  }

  /** Closes the listener and every connection, clears every timer. Never throws. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    this.forget();
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    this.client = null;
    this.timers.clear();
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }

  /**
   * Power-cycles the reader: the connection drops without a goodbye, every ROSpec and setting is
   * forgotten, and connections are reset for `downMs`.
   */
  reboot(downMs = 1000): void {
    this.counters.reboots++;
    this.downUntil = Date.now() + downMs;
    this.forget();
    this.client?.resetAndDestroy();
    this.client = null;
    this.emit('reboot', downMs);
    this.timers.after(downMs, () => this.emit('up'));
  }

  /** Writes these bytes to the client now (default: 1-32 random bytes). */
  injectGarbage(bytes?: Buffer): void {
    let b = bytes;
    if (!b) {
      b = Buffer.alloc(randomInt(this.rng, 1, 32));
      for (let i = 0; i < b.length; i++) b[i] = randomInt(this.rng, 0, 255);
    }
    this.counters.garbageBursts++;
    this.send(b);
  }

  private accept(sock: Socket): void {
    sock.on('error', () => undefined);
    sock.setNoDelay(true);
    if (Date.now() < this.downUntil) {
      this.counters.resetWhileDown++;
      sock.resetAndDestroy();
      return;
    }
    this.sockets.add(sock);
    sock.once('close', () => this.sockets.delete(sock));
    if (this.client) {
      this.counters.refusedConnections++;
      const refusal = encodeReaderEventNotification(this.nextId++, Date.now() * 1000, [{ type: 'connection_attempt', status: ConnectionAttemptStatus.FailedClientInitiatedConnectionExists }]);
      if (!this.faults.silent) sock.end(refusal);
      else sock.end();
      this.send(encodeReaderEventNotification(this.nextId++, Date.now() * 1000, [{ type: 'connection_attempt', status: ConnectionAttemptStatus.AnotherConnectionAttempted }]));
      this.emit('refused');
      return;
    }
    this.counters.connections++;
    this.client = sock;
    const framer = new LlrpFramer();
    sock.on('data', (chunk: Buffer) => {
      if (this.client !== sock) return;
      const { frames, desync } = framer.push(chunk);
      for (const f of frames) {
        if (this.client !== sock) return;
        this.handle(f);
      }
      if (desync) {
        this.counters.errors++;
        sock.destroy();
      }
    });
    sock.once('close', () => {
      if (this.client !== sock) return;
      this.client = null;
      this.stopKeepalives(); // nobody to keep alive; ROSpecs stay (a reader keeps its state)
      this.emit('disconnect');
    });
    this.send(encodeReaderEventNotification(this.nextId++, Date.now() * 1000, [{ type: 'connection_attempt', status: ConnectionAttemptStatus.Success }]));
    this.emit('connect');
  }

  private send(buf: Buffer): void {
    const c = this.client;
    if (!c || c.destroyed) return;
    if (this.faults.silent) {
      this.counters.suppressed++;
      return;
    }
    c.write(buf);
  }

  private respond(type: number, id: number, status?: LlrpStatus, ...extra: Buffer[]): void {
    if (status && status.code !== StatusCode.M_Success) this.counters.errors++;
    this.send(encodeResponse(RESPONSE_OF[type]!, id, status, ...extra));
  }

  private handle(frame: Buffer): void {
    const m = decodeMessage(frame, this.decodeStats);
    if (m.kind === 'invalid') {
      if (m.reason === 'unsupported_version') {
        this.counters.errors++;
        this.send(encodeErrorMessage(m.id, { code: StatusCode.M_UnsupportedVersion, description: `${m.detail}: this reader speaks LLRP 1.0.1 (version 1)` }));
      } else if (RESPONSE_OF[m.type] !== undefined) this.respond(m.type, m.id, { code: StatusCode.M_ParameterError, description: m.detail });
      else {
        this.counters.errors++;
        this.send(encodeErrorMessage(m.id, { code: StatusCode.M_ParameterError, description: m.detail }));
      }
      return;
    }
    if (m.kind !== 'request') {
      this.counters.errors++;
      this.send(encodeErrorMessage(m.id, { code: StatusCode.M_UnsupportedMessage, description: `message type ${'type' in m ? m.type : m.kind} is not supported` }));
      return;
    }
    this.counters.requests++;
    const r = m.request;
    this.emit('request', r.name);
    switch (r.name) {
      case 'GET_READER_CAPABILITIES':
        return this.respond(m.type, m.id, undefined, encodeGeneralDeviceCapabilities({ maxAntennas: this.antennas, canSetAntennaProperties: false, hasUtcClock: true, manufacturer: 0, model: 1, firmware: this.opts.firmware }));
      case 'SET_READER_CONFIG':
        if (r.resetToFactoryDefault) this.forget();
        if (r.report) this.report = r.report;
        if (r.keepaliveMs !== undefined) {
          this.keepaliveMs = r.keepaliveMs;
          this.startKeepalives();
        }
        return this.respond(m.type, m.id);
      case 'ADD_ROSPEC': {
        const why = this.validate(r.rospec);
        if (why) {
          this.counters.rejectedRoSpecs++;
          return this.respond(m.type, m.id, why);
        }
        const refuse = this.faults.refuseAddRoSpec ?? 0;
        if (refuse > 0) {
          this.faults.refuseAddRoSpec = refuse - 1;
          this.counters.rejectedRoSpecs++;
          return this.respond(m.type, m.id, { code: StatusCode.M_ParameterError, description: 'ROSpec refused (simulated fault)', parameterError: { parameterType: ParamType.ROSpec, errorCode: StatusCode.P_ParameterError } });
        }
        this.rospecs.set(r.rospec.rospecId, { spec: r.rospec, state: 'disabled', periodic: null, round: null, stop: null, acc: new Map() });
        return this.respond(m.type, m.id);
      }
      case 'DELETE_ROSPEC':
        if (r.rospecId === 0) {
          for (const id of [...this.rospecs.keys()]) this.deleteRoSpec(id);
          return this.respond(m.type, m.id);
        }
        if (!this.rospecs.has(r.rospecId)) return this.respond(m.type, m.id, unknownRoSpec(r.rospecId));
        this.deleteRoSpec(r.rospecId);
        return this.respond(m.type, m.id);
      case 'ENABLE_ROSPEC':
      case 'DISABLE_ROSPEC':
      case 'START_ROSPEC':
      case 'STOP_ROSPEC':
        return this.respond(m.type, m.id, this.roSpecOp(r.name, r.rospecId));
      case 'KEEPALIVE_ACK':
        this.counters.keepaliveAcks++;
        this.unacked = 0;
        return;
      case 'CLOSE_CONNECTION': {
        this.respond(m.type, m.id);
        const c = this.client;
        this.client = null;
        this.stopKeepalives();
        c?.end();
        return;
      }
      case 'GET_REPORT':
        for (const rs of this.rospecs.values()) this.flush(rs, true);
        return;
      case 'ENABLE_EVENTS_AND_REPORTS':
        return; // no response, by the standard
      case 'GET_ROSPECS':
      case 'GET_READER_CONFIG':
        return this.respond(m.type, m.id);
    }
  }

  private validate(s: RoSpecConfig): LlrpStatus | null {
    const field = (fieldNum: number, description: string, parameterType: number): LlrpStatus => ({
      code: StatusCode.M_ParameterError,
      description,
      parameterError: { parameterType, errorCode: StatusCode.P_FieldError, fieldError: { fieldNum, errorCode: StatusCode.A_OutOfRange } },
    });
    if (s.rospecId === 0) return field(0, 'ROSpecID 0 is reserved', ParamType.ROSpec);
    if (this.rospecs.has(s.rospecId)) return field(0, `ROSpecID ${s.rospecId} already exists`, ParamType.ROSpec);
    if (this.rospecs.size >= MAX_ROSPECS) return { code: StatusCode.M_ParameterError, description: `at most ${MAX_ROSPECS} ROSpecs` };
    if (s.antennas.length === 0) return { code: StatusCode.M_MissingParameter, description: 'ROSpec without an AISpec (or with no antenna)', parameterError: { parameterType: ParamType.AISpec, errorCode: StatusCode.P_MissingParameter } };
    const bad = s.antennas.find((a) => a !== 0 && (a < 1 || a > this.antennas));
    if (bad !== undefined) return field(1, `antenna ${bad} does not exist (this reader has 1..${this.antennas})`, ParamType.AISpec);
    if (s.start.type === 'periodic' && s.start.periodMs <= 0) return field(1, 'periodic start trigger with period 0', ParamType.PeriodicTriggerValue);
    if (s.report && s.report.trigger > 2) return field(0, `ROReportTrigger ${s.report.trigger} is not LLRP 1.0.1`, ParamType.ROReportSpec);
    return null;
  }

  private roSpecOp(op: 'ENABLE_ROSPEC' | 'DISABLE_ROSPEC' | 'START_ROSPEC' | 'STOP_ROSPEC', id: number): LlrpStatus | undefined {
    if (id === 0 && (op === 'ENABLE_ROSPEC' || op === 'DISABLE_ROSPEC')) {
      for (const k of this.rospecs.keys()) this.roSpecOp(op, k);
      return undefined;
    }
    const rs = this.rospecs.get(id);
    if (!rs) return unknownRoSpec(id);
    switch (op) {
      case 'ENABLE_ROSPEC':
        if (rs.state !== 'disabled') return undefined;
        rs.state = 'inactive';
        if (rs.spec.start.type === 'immediate') this.activate(rs);
        else if (rs.spec.start.type === 'periodic') {
          const { offsetMs, periodMs } = rs.spec.start;
          const tick = (): void => {
            rs.periodic = this.timers.after(periodMs, tick);
            if (rs.state === 'inactive') this.activate(rs);
          };
          rs.periodic = this.timers.after(offsetMs, tick);
        }
        return undefined;
      case 'DISABLE_ROSPEC':
        this.deactivate(rs);
        rs.state = 'disabled';
        this.clearTimer(rs, 'periodic');
        return undefined;
      case 'START_ROSPEC':
        if (rs.state === 'disabled') return { code: StatusCode.M_FieldError, description: `ROSpec ${id} is disabled`, fieldError: { fieldNum: 0, errorCode: StatusCode.A_Invalid } };
        if (rs.state === 'active') return { code: StatusCode.M_FieldError, description: `ROSpec ${id} is already active`, fieldError: { fieldNum: 0, errorCode: StatusCode.A_Invalid } };
        this.activate(rs);
        return undefined;
      case 'STOP_ROSPEC':
        if (rs.state !== 'active') return { code: StatusCode.M_FieldError, description: `ROSpec ${id} is not active`, fieldError: { fieldNum: 0, errorCode: StatusCode.A_Invalid } };
        this.deactivate(rs);
        return undefined;
    }
  }

  private clearTimer(rs: SimRoSpec, k: 'periodic' | 'round' | 'stop'): void {
    const t = rs[k];
    if (t) this.timers.cancel(t);
    rs[k] = null;
  }

  private activate(rs: SimRoSpec): void {
    rs.state = 'active';
    const every = this.opts.roundMs;
    const tick = (): void => {
      rs.round = this.timers.after(every, tick);
      this.round(rs);
    };
    rs.round = this.timers.after(every, tick);
    if (rs.spec.durationMs > 0) rs.stop = this.timers.after(rs.spec.durationMs, () => this.deactivate(rs));
  }

  /** Ends a run: the accumulated tags are reported (end of the ROSpec), timers of the run cleared. */
  private deactivate(rs: SimRoSpec): void {
    if (rs.state !== 'active') return;
    rs.state = 'inactive';
    this.clearTimer(rs, 'round');
    this.clearTimer(rs, 'stop');
    this.flush(rs, true);
  }

  private deleteRoSpec(id: number): void {
    const rs = this.rospecs.get(id);
    if (!rs) return;
    this.clearTimer(rs, 'periodic');
    this.clearTimer(rs, 'round');
    this.clearTimer(rs, 'stop');
    this.rospecs.delete(id);
  }

  /** Forgets every ROSpec and setting (factory reset, reboot). */
  private forget(): void {
    for (const id of [...this.rospecs.keys()]) this.deleteRoSpec(id);
    this.report = DEFAULT_REPORT;
    this.keepaliveMs = 0;
    this.stopKeepalives();
  }

  private startKeepalives(): void {
    this.stopKeepalives();
    if (this.keepaliveMs <= 0 || !this.client) return;
    const every = this.keepaliveMs;
    const tick = (): void => {
      this.keepaliveTimer = this.timers.after(every, tick);
      if (this.faults.silent || !this.client) return;
      this.counters.keepalives++;
      this.unacked++;
      this.send(encodeKeepalive(this.nextId++));
    };
    this.keepaliveTimer = this.timers.after(every, tick);
  }

  private stopKeepalives(): void {
    if (this.keepaliveTimer) this.timers.cancel(this.keepaliveTimer);
    this.keepaliveTimer = null;
    this.unacked = 0;
  }

  /** KEEPALIVEs sent since the last KEEPALIVE_ACK. */
  get unackedKeepalives(): number {
    return this.unacked;
  }

  /** Sightings the read rate still allows now (token bucket, at most one second's worth). */
  private takeRead(): boolean {
    const now = performance.now();
    const rate = this.opts.readsPerSecond / 1000;
    this.budget = Math.min(this.opts.readsPerSecond, this.budget + (now - this.budgetAt) * rate);
    this.budgetAt = now;
    if (this.budget < 1) return false;
    this.budget -= 1;
    return true;
  }

  private round(rs: SimRoSpec): void {
    this.counters.rounds++;
    if (!this.client) return; // no client: a real reader would buffer; this one does not
    if (this.replay) {
      const f = this.replay[this.replayAt]!;
      this.replayAt = (this.replayAt + 1) % this.replay.length;
      this.counters.replayed++;
      this.send(f);
      return;
    }
    const ants = rs.spec.antennas.includes(0) ? Array.from({ length: this.antennas }, (_, i) => i + 1) : rs.spec.antennas;
    const nowUs = Date.now() * 1000;
    for (const a of ants) {
      const zone = this.antennaZones[a - 1];
      if (zone === undefined || zone < 0) continue;
      for (const s of this.population.round(zone)) {
        if (!this.takeRead()) {
          this.counters.overRate++;
          continue;
        }
        const key = `${s.tag.epcHex}:${a}`;
        const t = rs.acc.get(key);
        if (t) {
          t.lastSeenUtcUs = nowUs;
          t.seenCount = (t.seenCount ?? 1) + 1;
          t.peakRssi = Math.max(t.peakRssi ?? -128, s.rssi);
        } else rs.acc.set(key, { epcHex: s.tag.epc.toString('hex'), epcBits: 96, antennaId: a, peakRssi: s.rssi, firstSeenUtcUs: nowUs, lastSeenUtcUs: nowUs, seenCount: 1, rospecId: rs.spec.rospecId });
      }
    }
    this.flush(rs, false);
  }

  /** Sends what the report trigger says is due (`end`: end of the ROSpec or GET_REPORT: everything). */
  private flush(rs: SimRoSpec, end: boolean): void {
    if (rs.acc.size === 0) return;
    const spec = rs.spec.report ?? this.report;
    const n = spec.n;
    if (!end && (spec.trigger === 0 || n === 0 || rs.acc.size < n)) return;
    const all = [...rs.acc.values()];
    const per = n > 0 ? n : all.length;
    const take = end ? all.length : all.length - (all.length % per);
    for (let i = 0; i < take; i += per) this.sendReport(all.slice(i, Math.min(take, i + per)), spec);
    if (take === all.length) rs.acc.clear();
    else {
      const keep = all.slice(take);
      rs.acc.clear();
      for (const t of keep) rs.acc.set(`${t.epcHex.toUpperCase()}:${t.antennaId}`, t);
    }
  }

  private sendReport(tags: LlrpTagReport[], spec: RoReportConfig): void {
    const c = spec.content;
    const parts = tags.map((t) => {
      const shown: LlrpTagReport = { epcHex: t.epcHex, epcBits: t.epcBits };
      if (c.rospecId) shown.rospecId = t.rospecId;
      if (c.antennaId) shown.antennaId = t.antennaId;
      if (c.peakRssi) shown.peakRssi = t.peakRssi;
      if (c.firstSeen) shown.firstSeenUtcUs = t.firstSeenUtcUs;
      if (c.lastSeen) shown.lastSeenUtcUs = t.lastSeenUtcUs;
      if (c.seenCount) shown.seenCount = t.seenCount;
      const p = encodeTagReportData(shown);
      return this.faults.customParam ? tlv(ParamType.TagReportData, p.subarray(4), encodeCustomParam(CUSTOM_VENDOR, 56, Buffer.from([0xff, 0xc8]))) : p;
    });
    if (this.faults.customParam) parts.push(encodeCustomParam(CUSTOM_VENDOR, 1, Buffer.from('sim', 'ascii')));
    this.counters.reports++;
    this.counters.tagReports += tags.length;
    this.send(encodeMessage(MsgType.RO_ACCESS_REPORT, this.nextId++, ...parts));
    const g = this.faults.garbage;
    if (g && this.rng() < g) this.injectGarbage();
  }
}

function unknownRoSpec(id: number): LlrpStatus {
  return { code: StatusCode.M_FieldError, description: `no ROSpec ${id}`, fieldError: { fieldNum: 0, errorCode: StatusCode.A_Invalid } };
}
