/**
 * LLRP 1.0.1 (EPCglobal Low Level Reader Protocol, ratified standard 1.0.1) as a pure binary codec:
 * messages in, bytes out; bytes in, typed messages out. Both sides: the gateway (client) encodes
 * requests and decodes what a reader sends; a reader simulator encodes reader messages and decodes
 * the client's requests with the same module. No I/O here (src/features/rfid/llrp-reader.ts owns
 * the TCP session).
 *
 * Wire format (LLRP 1.0.1, section 4 "LLRP binary encoding"), all big-endian:
 * - message: u16 (3 reserved bits, 3-bit version = 1, 10-bit type), u32 length of the whole
 *   message (header included, so >= 10), u32 message id, then the body;
 * - TLV parameter: u16 (6 reserved bits, 10-bit type), u16 length (header included, >= 4), body;
 * - TV parameter: one byte with the top bit set and a 7-bit type, then a value whose size is fixed
 *   by the type (TV_VALUE_BYTES). A TV type we do not know cannot be skipped (it carries no length),
 *   so it ends the enclosing parameter list: what follows is dropped and counted.
 *
 * Design choices:
 * - Decoding never throws on input: a message that cannot be decoded comes back as
 *   `{ kind: 'invalid' }` with a reason, and every drop is counted in LlrpDecodeStats.
 * - A malformed parameter inside an RO_ACCESS_REPORT makes the whole report invalid: a half-read
 *   TagReportData must never become a tag ("never a phantom tag"). A TagReportData without an EPC
 *   is dropped on its own and counted.
 * - Unknown TLV parameters and vendor Custom parameters (type 1023) are skipped by their length and
 *   counted; they never make a message invalid.
 * - Timestamps are microseconds since the Unix epoch as `number`: exact up to 2^53 us (year 2255).
 * - The stream framer (LlrpFramer) trusts a message's length field only within [10, maxMessageBytes].
 *   A length outside that cannot be resynchronised (LLRP has no sync marker), so the framer drops
 *   its buffer, counts the reason and reports `desync`: the session owner closes the connection.
 */

// ---------------------------------------------------------------------------------------------
// Numbers from the standard

export const LLRP_VERSION_1_0_1 = 1;
export const LLRP_HEADER_BYTES = 10;
/** Default cap on one message (a full RO_ACCESS_REPORT of a busy reader is far below this). */
export const LLRP_DEFAULT_MAX_MESSAGE_BYTES = 1 << 20;

export const MsgType = {
  GET_READER_CAPABILITIES: 1,
  GET_READER_CONFIG: 2,
  SET_READER_CONFIG: 3,
  CLOSE_CONNECTION_RESPONSE: 4,
  GET_READER_CAPABILITIES_RESPONSE: 11,
  GET_READER_CONFIG_RESPONSE: 12,
  SET_READER_CONFIG_RESPONSE: 13,
  CLOSE_CONNECTION: 14,
  ADD_ROSPEC: 20,
  DELETE_ROSPEC: 21,
  START_ROSPEC: 22,
  STOP_ROSPEC: 23,
  ENABLE_ROSPEC: 24,
  DISABLE_ROSPEC: 25,
  GET_ROSPECS: 26,
  ADD_ROSPEC_RESPONSE: 30,
  DELETE_ROSPEC_RESPONSE: 31,
  START_ROSPEC_RESPONSE: 32,
  STOP_ROSPEC_RESPONSE: 33,
  ENABLE_ROSPEC_RESPONSE: 34,
  DISABLE_ROSPEC_RESPONSE: 35,
  GET_ROSPECS_RESPONSE: 36,
  GET_REPORT: 60,
  RO_ACCESS_REPORT: 61,
  KEEPALIVE: 62,
  READER_EVENT_NOTIFICATION: 63,
  ENABLE_EVENTS_AND_REPORTS: 64,
  KEEPALIVE_ACK: 72,
  ERROR_MESSAGE: 100,
  CUSTOM_MESSAGE: 1023,
} as const;

/** Each request's response type (a response carries its request's message id). */
export const RESPONSE_OF: Readonly<Record<number, number>> = {
  [MsgType.GET_READER_CAPABILITIES]: MsgType.GET_READER_CAPABILITIES_RESPONSE,
  [MsgType.GET_READER_CONFIG]: MsgType.GET_READER_CONFIG_RESPONSE,
  [MsgType.SET_READER_CONFIG]: MsgType.SET_READER_CONFIG_RESPONSE,
  [MsgType.CLOSE_CONNECTION]: MsgType.CLOSE_CONNECTION_RESPONSE,
  [MsgType.ADD_ROSPEC]: MsgType.ADD_ROSPEC_RESPONSE,
  [MsgType.DELETE_ROSPEC]: MsgType.DELETE_ROSPEC_RESPONSE,
  [MsgType.START_ROSPEC]: MsgType.START_ROSPEC_RESPONSE,
  [MsgType.STOP_ROSPEC]: MsgType.STOP_ROSPEC_RESPONSE,
  [MsgType.ENABLE_ROSPEC]: MsgType.ENABLE_ROSPEC_RESPONSE,
  [MsgType.DISABLE_ROSPEC]: MsgType.DISABLE_ROSPEC_RESPONSE,
  [MsgType.GET_ROSPECS]: MsgType.GET_ROSPECS_RESPONSE,
};

const RESPONSE_TYPES = new Set(Object.values(RESPONSE_OF));

export const ParamType = {
  UTCTimestamp: 128,
  Uptime: 129,
  GeneralDeviceCapabilities: 137,
  ROSpec: 177,
  ROBoundarySpec: 178,
  ROSpecStartTrigger: 179,
  PeriodicTriggerValue: 180,
  ROSpecStopTrigger: 182,
  AISpec: 183,
  AISpecStopTrigger: 184,
  InventoryParameterSpec: 186,
  KeepaliveSpec: 220,
  EventsAndReports: 226,
  ROReportSpec: 237,
  TagReportContentSelector: 238,
  TagReportData: 240,
  EPCData: 241,
  ReaderEventNotificationSpec: 244,
  EventNotificationState: 245,
  ReaderEventNotificationData: 246,
  HoppingEvent: 247,
  GPIEvent: 248,
  ROSpecEvent: 249,
  ReportBufferLevelWarningEvent: 250,
  ReportBufferOverflowErrorEvent: 251,
  ReaderExceptionEvent: 252,
  RFSurveyEvent: 253,
  AISpecEvent: 254,
  AntennaEvent: 255,
  ConnectionAttemptEvent: 256,
  ConnectionCloseEvent: 257,
  LLRPStatus: 287,
  FieldError: 288,
  ParameterError: 289,
  Custom: 1023,
} as const;

export const TvType = {
  AntennaID: 1,
  FirstSeenTimestampUTC: 2,
  FirstSeenTimestampUptime: 3,
  LastSeenTimestampUTC: 4,
  LastSeenTimestampUptime: 5,
  PeakRSSI: 6,
  ChannelIndex: 7,
  TagSeenCount: 8,
  ROSpecID: 9,
  InventoryParameterSpecID: 10,
  C1G2_CRC: 11,
  C1G2_PC: 12,
  EPC96: 13,
  SpecIndex: 14,
  ClientRequestOpSpecResult: 15,
  AccessSpecID: 16,
  OpSpecID: 17,
  C1G2SingulationDetails: 18,
} as const;

/** Value bytes after the TV type byte, per TV type (LLRP 1.0.1, TV-encoded parameters). */
export const TV_VALUE_BYTES: ReadonlyArray<number | undefined> = [
  undefined, 2, 8, 8, 8, 8, 1, 2, 2, 4, 2, 2, 2, 12, 2, 2, 4, 2, 4,
];

/** LLRPStatus codes (LLRP 1.0.1, "LLRPStatus Parameter"). */
export const StatusCode = {
  M_Success: 0,
  M_ParameterError: 100,
  M_FieldError: 101,
  M_UnexpectedParameter: 102,
  M_MissingParameter: 103,
  M_DuplicateParameter: 104,
  M_OverflowParameter: 105,
  M_OverflowField: 106,
  M_UnknownParameter: 107,
  M_UnknownField: 108,
  M_UnsupportedMessage: 109,
  M_UnsupportedVersion: 110,
  M_UnsupportedParameter: 111,
  P_ParameterError: 200,
  P_FieldError: 201,
  P_UnexpectedParameter: 202,
  P_MissingParameter: 203,
  P_DuplicateParameter: 204,
  P_OverflowParameter: 205,
  P_OverflowField: 206,
  P_UnknownParameter: 207,
  P_UnknownField: 208,
  P_UnsupportedParameter: 209,
  A_Invalid: 300,
  A_OutOfRange: 301,
  R_DeviceError: 401,
} as const;

/** ConnectionAttemptEvent status values. */
export const ConnectionAttemptStatus = {
  Success: 0,
  FailedReaderInitiatedConnectionExists: 1,
  FailedClientInitiatedConnectionExists: 2,
  FailedOtherReason: 3,
  AnotherConnectionAttempted: 4,
} as const;

/** ReaderEventNotificationSpec event types. */
export const ReaderEventType = {
  HoppingToNextChannel: 0,
  GPIEvent: 1,
  ROSpecEvent: 2,
  ReportBufferFillWarning: 3,
  ReaderExceptionEvent: 4,
  RFSurveyEvent: 5,
  AISpecEvent: 6,
  AISpecEventWithDetails: 7,
  AntennaEvent: 8,
} as const;

/** InventoryParameterSpec ProtocolID for EPCglobal Class 1 Gen 2. */
export const PROTOCOL_EPC_C1G2 = 1;

// ---------------------------------------------------------------------------------------------
// Types

export interface LlrpStatus {
  code: number;
  description: string;
  fieldError?: { fieldNum: number; errorCode: number };
  parameterError?: { parameterType: number; errorCode: number; fieldError?: { fieldNum: number; errorCode: number } };
}

export interface LlrpTagReport {
  /** The EPC as lower-case hex (EPC-96 TV or EPCData TLV; EPCData keeps whole bytes). */
  epcHex: string;
  /** EPC length in bits (96 for the EPC-96 TV; EPCData's bit count otherwise). */
  epcBits: number;
  antennaId?: number;
  peakRssi?: number;
  channelIndex?: number;
  rospecId?: number;
  specIndex?: number;
  inventoryParameterSpecId?: number;
  /** Microseconds since the Unix epoch. */
  firstSeenUtcUs?: number;
  lastSeenUtcUs?: number;
  /** Microseconds since the reader booted (readers without a UTC clock). */
  firstSeenUptimeUs?: number;
  lastSeenUptimeUs?: number;
  seenCount?: number;
  pc?: number;
  crc?: number;
  accessSpecId?: number;
}

export type LlrpReaderEvent =
  | { type: 'connection_attempt'; status: number }
  | { type: 'connection_close' }
  | { type: 'antenna'; connected: boolean; antennaId: number }
  | { type: 'rospec'; eventType: number; rospecId: number; preemptingRospecId: number }
  | { type: 'reader_exception'; message: string }
  | { type: 'report_buffer_warning'; fillPercent: number }
  | { type: 'report_buffer_overflow' }
  | { type: 'other'; paramType: number };

export interface LlrpCapabilities {
  maxAntennas: number;
  canSetAntennaProperties: boolean;
  hasUtcClock: boolean;
  manufacturer: number;
  model: number;
  firmware: string;
}

export interface RoSpecConfig {
  rospecId: number;
  priority?: number;
  /**
   * `null`: started only by START_ROSPEC; `immediate`: starts when enabled; `periodic`: starts
   * `offsetMs` after enabling, then every `periodMs`.
   */
  start: { type: 'null' } | { type: 'immediate' } | { type: 'periodic'; offsetMs: number; periodMs: number; utcUs?: number };
  /** Stop trigger: 0 = none (runs until stopped), else a duration in ms. */
  durationMs: number;
  /** Antenna ids; [0] means all antennas. */
  antennas: number[];
  inventoryParameterSpecId?: number;
  report?: RoReportConfig;
}

export interface RoReportConfig {
  /** 0 none, 1 upon N tags or end of AISpec, 2 upon N tags or end of ROSpec (1.0.1 has no others). */
  trigger: 0 | 1 | 2;
  n: number;
  content: ReportContent;
}

export interface ReportContent {
  rospecId?: boolean;
  specIndex?: boolean;
  inventoryParameterSpecId?: boolean;
  antennaId?: boolean;
  channelIndex?: boolean;
  peakRssi?: boolean;
  firstSeen?: boolean;
  lastSeen?: boolean;
  seenCount?: boolean;
  accessSpecId?: boolean;
}

export interface ReaderConfig {
  resetToFactoryDefault: boolean;
  /** Periodic keepalives every this many ms; 0 turns them off. */
  keepaliveMs?: number;
  /** Event types (ReaderEventType) to switch on or off. */
  events?: { type: number; enabled: boolean }[];
  report?: RoReportConfig;
  /** EventsAndReports: hold events and reports while no client is connected. */
  holdEventsAndReportsUponReconnect?: boolean;
}

/** What decodeMessage() returns. */
export type LlrpMessage =
  | { kind: 'reader_event'; id: number; timestampUs?: number; uptimeUs?: number; events: LlrpReaderEvent[] }
  | { kind: 'response'; type: number; id: number; status: LlrpStatus; capabilities?: LlrpCapabilities }
  | { kind: 'ro_access_report'; id: number; tags: LlrpTagReport[] }
  | { kind: 'keepalive'; id: number }
  | { kind: 'error_message'; id: number; status: LlrpStatus }
  | { kind: 'request'; type: number; id: number; request: LlrpRequest }
  | { kind: 'unknown'; type: number; id: number }
  | { kind: 'invalid'; type: number; id: number; reason: LlrpInvalidReason; detail: string };

/** Client requests as a reader (simulator) sees them. */
export type LlrpRequest =
  | { name: 'GET_READER_CAPABILITIES'; requestedData: number }
  | { name: 'SET_READER_CONFIG'; resetToFactoryDefault: boolean; keepaliveMs?: number; report?: RoReportConfig }
  | { name: 'ADD_ROSPEC'; rospec: RoSpecConfig }
  | { name: 'DELETE_ROSPEC' | 'START_ROSPEC' | 'STOP_ROSPEC' | 'ENABLE_ROSPEC' | 'DISABLE_ROSPEC'; rospecId: number }
  | { name: 'KEEPALIVE_ACK' | 'CLOSE_CONNECTION' | 'GET_REPORT' | 'ENABLE_EVENTS_AND_REPORTS' | 'GET_ROSPECS' | 'GET_READER_CONFIG' };

export type LlrpInvalidReason = 'unsupported_version' | 'malformed';

/** Counters of everything decodeMessage() skipped or dropped. Pass the same object to every call. */
export interface LlrpDecodeStats {
  messages: number;
  customParams: number;
  unknownParams: number;
  /** TV parameters of an unknown type (they end their parameter list). */
  unknownTv: number;
  unknownMessages: number;
  unsupportedVersion: number;
  malformed: number;
  tagsWithoutEpc: number;
}

export function newDecodeStats(): LlrpDecodeStats {
  return { messages: 0, customParams: 0, unknownParams: 0, unknownTv: 0, unknownMessages: 0, unsupportedVersion: 0, malformed: 0, tagsWithoutEpc: 0 };
}

// ---------------------------------------------------------------------------------------------
// Parameter walking

class Malformed extends Error {}

interface Param {
  type: number;
  tv: boolean;
  /** The value (TV) or the body after the 4-byte header (TLV). */
  body: Buffer;
}

/**
 * Splits `buf` into parameters. Throws Malformed (caught by decodeMessage) when a TLV length
 * lies; an unknown TV type ends the list (counted).
 */
function parseParams(buf: Buffer, stats: LlrpDecodeStats): Param[] {
  const out: Param[] = [];
  let off = 0;
  while (off < buf.length) {
    const b0 = buf[off];
    if (b0 & 0x80) {
      const type = b0 & 0x7f;
      const n = TV_VALUE_BYTES[type];
      if (n === undefined) {
        stats.unknownTv++;
        break;
      }
      if (off + 1 + n > buf.length) throw new Malformed(`TV parameter ${type} truncated`);
      out.push({ type, tv: true, body: buf.subarray(off + 1, off + 1 + n) });
      off += 1 + n;
      continue;
    }
    if (off + 4 > buf.length) throw new Malformed(`parameter header truncated at ${off}`);
    const type = buf.readUInt16BE(off) & 0x3ff;
    const len = buf.readUInt16BE(off + 2);
    if (len < 4) throw new Malformed(`parameter ${type} length ${len} < 4`);
    if (off + len > buf.length) throw new Malformed(`parameter ${type} length ${len} runs past its parent`);
    out.push({ type, tv: false, body: buf.subarray(off + 4, off + len) });
    off += len;
  }
  return out;
}

function need(body: Buffer, n: number, what: string): void {
  if (body.length < n) throw new Malformed(`${what}: ${body.length} bytes, needs ${n}`);
}

function u64(body: Buffer, off: number): number {
  return Number(body.readBigUInt64BE(off));
}

function readUtf8(body: Buffer, off: number, what: string): { text: string; end: number } {
  need(body, off + 2, what);
  const n = body.readUInt16BE(off);
  need(body, off + 2 + n, what);
  return { text: body.toString('utf8', off + 2, off + 2 + n), end: off + 2 + n };
}

function fieldError(body: Buffer): { fieldNum: number; errorCode: number } {
  need(body, 4, 'FieldError');
  return { fieldNum: body.readUInt16BE(0), errorCode: body.readUInt16BE(2) };
}

function decodeStatus(body: Buffer, stats: LlrpDecodeStats): LlrpStatus {
  need(body, 2, 'LLRPStatus');
  const code = body.readUInt16BE(0);
  const { text, end } = readUtf8(body, 2, 'LLRPStatus description');
  const status: LlrpStatus = { code, description: text };
  for (const p of parseParams(body.subarray(end), stats)) {
    if (p.type === ParamType.FieldError && !p.tv) status.fieldError = fieldError(p.body);
    else if (p.type === ParamType.ParameterError && !p.tv) {
      need(p.body, 4, 'ParameterError');
      status.parameterError = { parameterType: p.body.readUInt16BE(0), errorCode: p.body.readUInt16BE(2) };
      for (const q of parseParams(p.body.subarray(4), stats)) {
        if (q.type === ParamType.FieldError && !q.tv) status.parameterError.fieldError = fieldError(q.body);
      }
    } else skipped(p, stats);
  }
  return status;
}

function skipped(p: Param, stats: LlrpDecodeStats): void {
  if (!p.tv && p.type === ParamType.Custom) stats.customParams++;
  else stats.unknownParams++;
}

function decodeTagReport(body: Buffer, stats: LlrpDecodeStats): LlrpTagReport | null {
  let tag: Partial<LlrpTagReport> = {};
  for (const p of parseParams(body, stats)) {
    const v = p.body;
    if (p.tv) {
      switch (p.type) {
        case TvType.EPC96: tag.epcHex = v.toString('hex'); tag.epcBits = 96; break;
        case TvType.AntennaID: tag.antennaId = v.readUInt16BE(0); break;
        case TvType.PeakRSSI: tag.peakRssi = v.readInt8(0); break;
        case TvType.ChannelIndex: tag.channelIndex = v.readUInt16BE(0); break;
        case TvType.ROSpecID: tag.rospecId = v.readUInt32BE(0); break;
        case TvType.SpecIndex: tag.specIndex = v.readUInt16BE(0); break;
        case TvType.InventoryParameterSpecID: tag.inventoryParameterSpecId = v.readUInt16BE(0); break;
        case TvType.FirstSeenTimestampUTC: tag.firstSeenUtcUs = u64(v, 0); break;
        case TvType.LastSeenTimestampUTC: tag.lastSeenUtcUs = u64(v, 0); break;
        case TvType.FirstSeenTimestampUptime: tag.firstSeenUptimeUs = u64(v, 0); break;
        case TvType.LastSeenTimestampUptime: tag.lastSeenUptimeUs = u64(v, 0); break;
        case TvType.TagSeenCount: tag.seenCount = v.readUInt16BE(0); break;
        case TvType.C1G2_PC: tag.pc = v.readUInt16BE(0); break;
        case TvType.C1G2_CRC: tag.crc = v.readUInt16BE(0); break;
        case TvType.AccessSpecID: tag.accessSpecId = v.readUInt32BE(0); break;
        default: break; // known TV types we do not report (op spec results, singulation details)
      }
    } else if (p.type === ParamType.EPCData) {
      need(v, 2, 'EPCData');
      const bits = v.readUInt16BE(0);
      const bytes = Math.ceil(bits / 8);
      need(v, 2 + bytes, 'EPCData bits');
      tag.epcHex = v.toString('hex', 2, 2 + bytes);
      tag.epcBits = bits;
    } else skipped(p, stats);
  }
  if (tag.epcHex === undefined) {
    stats.tagsWithoutEpc++;
    return null;
  }
  return tag as LlrpTagReport;
}

function decodeReaderEvents(body: Buffer, stats: LlrpDecodeStats, out: Extract<LlrpMessage, { kind: 'reader_event' }>): void {
  for (const p of parseParams(body, stats)) {
    const v = p.body;
    if (p.tv) {
      stats.unknownParams++;
      continue;
    }
    switch (p.type) {
      case ParamType.UTCTimestamp: need(v, 8, 'UTCTimestamp'); out.timestampUs = u64(v, 0); break;
      case ParamType.Uptime: need(v, 8, 'Uptime'); out.uptimeUs = u64(v, 0); break;
      case ParamType.ConnectionAttemptEvent:
        need(v, 2, 'ConnectionAttemptEvent');
        out.events.push({ type: 'connection_attempt', status: v.readUInt16BE(0) });
        break;
      case ParamType.ConnectionCloseEvent: out.events.push({ type: 'connection_close' }); break;
      case ParamType.AntennaEvent:
        need(v, 3, 'AntennaEvent');
        out.events.push({ type: 'antenna', connected: v[0] === 1, antennaId: v.readUInt16BE(1) });
        break;
      case ParamType.ROSpecEvent:
        need(v, 9, 'ROSpecEvent');
        out.events.push({ type: 'rospec', eventType: v[0], rospecId: v.readUInt32BE(1), preemptingRospecId: v.readUInt32BE(5) });
        break;
      case ParamType.ReaderExceptionEvent:
        out.events.push({ type: 'reader_exception', message: readUtf8(v, 0, 'ReaderExceptionEvent').text });
        break;
      case ParamType.ReportBufferLevelWarningEvent:
        need(v, 1, 'ReportBufferLevelWarningEvent');
        out.events.push({ type: 'report_buffer_warning', fillPercent: v[0] });
        break;
      case ParamType.ReportBufferOverflowErrorEvent: out.events.push({ type: 'report_buffer_overflow' }); break;
      case ParamType.HoppingEvent:
      case ParamType.GPIEvent:
      case ParamType.RFSurveyEvent:
      case ParamType.AISpecEvent:
        out.events.push({ type: 'other', paramType: p.type });
        break;
      default: skipped(p, stats);
    }
  }
}

function decodeCapabilities(params: Param[]): LlrpCapabilities | undefined {
  for (const p of params) {
    if (p.tv || p.type !== ParamType.GeneralDeviceCapabilities) continue;
    const v = p.body;
    need(v, 12, 'GeneralDeviceCapabilities');
    const flags = v.readUInt16BE(2);
    return {
      maxAntennas: v.readUInt16BE(0),
      canSetAntennaProperties: (flags & 0x8000) !== 0,
      hasUtcClock: (flags & 0x4000) !== 0,
      manufacturer: v.readUInt32BE(4),
      model: v.readUInt32BE(8),
      firmware: readUtf8(v, 12, 'ReaderFirmwareVersion').text,
    };
  }
  return undefined;
}

const CONTENT_BITS: [keyof ReportContent, number][] = [
  ['rospecId', 15], ['specIndex', 14], ['inventoryParameterSpecId', 13], ['antennaId', 12], ['channelIndex', 11],
  ['peakRssi', 10], ['firstSeen', 9], ['lastSeen', 8], ['seenCount', 7], ['accessSpecId', 6],
];

function decodeReportSpec(v: Buffer, stats: LlrpDecodeStats): RoReportConfig {
  need(v, 3, 'ROReportSpec');
  const content: ReportContent = {};
  for (const q of parseParams(v.subarray(3), stats)) {
    if (!q.tv && q.type === ParamType.TagReportContentSelector) {
      need(q.body, 2, 'TagReportContentSelector');
      const flags = q.body.readUInt16BE(0);
      for (const [k, bit] of CONTENT_BITS) if (flags & (1 << bit)) content[k] = true;
    }
  }
  return { trigger: v[0] as 0 | 1 | 2, n: v.readUInt16BE(1), content };
}

function decodeRoSpec(v: Buffer, stats: LlrpDecodeStats): RoSpecConfig {
  need(v, 6, 'ROSpec');
  const spec: RoSpecConfig = { rospecId: v.readUInt32BE(0), priority: v[4], start: { type: 'null' }, durationMs: 0, antennas: [] };
  for (const p of parseParams(v.subarray(6), stats)) {
    if (p.tv) continue;
    if (p.type === ParamType.ROBoundarySpec) {
      for (const q of parseParams(p.body, stats)) {
        if (q.type === ParamType.ROSpecStartTrigger && !q.tv) {
          need(q.body, 1, 'ROSpecStartTrigger');
          const t = q.body[0];
          if (t === 1) spec.start = { type: 'immediate' };
          else if (t === 2) {
            const per = parseParams(q.body.subarray(1), stats).find((r) => r.type === ParamType.PeriodicTriggerValue && !r.tv);
            if (!per) throw new Malformed('periodic ROSpecStartTrigger without PeriodicTriggerValue');
            need(per.body, 8, 'PeriodicTriggerValue');
            spec.start = { type: 'periodic', offsetMs: per.body.readUInt32BE(0), periodMs: per.body.readUInt32BE(4) };
          }
        } else if (q.type === ParamType.ROSpecStopTrigger && !q.tv) {
          need(q.body, 5, 'ROSpecStopTrigger');
          spec.durationMs = q.body[0] === 1 ? q.body.readUInt32BE(1) : 0;
        }
      }
    } else if (p.type === ParamType.AISpec) {
      need(p.body, 2, 'AISpec');
      const count = p.body.readUInt16BE(0);
      need(p.body, 2 + 2 * count, 'AISpec antennas');
      for (let i = 0; i < count; i++) spec.antennas.push(p.body.readUInt16BE(2 + 2 * i));
      for (const q of parseParams(p.body.subarray(2 + 2 * count), stats)) {
        if (q.type === ParamType.InventoryParameterSpec && !q.tv) {
          need(q.body, 3, 'InventoryParameterSpec');
          spec.inventoryParameterSpecId = q.body.readUInt16BE(0);
        }
      }
    } else if (p.type === ParamType.ROReportSpec) spec.report = decodeReportSpec(p.body, stats);
    else if (p.type === ParamType.Custom) stats.customParams++;
  }
  return spec;
}

function decodeRequest(type: number, body: Buffer, stats: LlrpDecodeStats): LlrpRequest | null {
  switch (type) {
    case MsgType.GET_READER_CAPABILITIES:
      need(body, 1, 'GET_READER_CAPABILITIES');
      return { name: 'GET_READER_CAPABILITIES', requestedData: body[0] };
    case MsgType.SET_READER_CONFIG: {
      need(body, 1, 'SET_READER_CONFIG');
      const r: Extract<LlrpRequest, { name: 'SET_READER_CONFIG' }> = { name: 'SET_READER_CONFIG', resetToFactoryDefault: (body[0] & 0x80) !== 0 };
      for (const p of parseParams(body.subarray(1), stats)) {
        if (p.tv) continue;
        if (p.type === ParamType.KeepaliveSpec) {
          need(p.body, 5, 'KeepaliveSpec');
          r.keepaliveMs = p.body[0] === 1 ? p.body.readUInt32BE(1) : 0;
        } else if (p.type === ParamType.ROReportSpec) r.report = decodeReportSpec(p.body, stats);
        else if (p.type === ParamType.Custom) stats.customParams++;
      }
      return r;
    }
    case MsgType.ADD_ROSPEC: {
      const p = parseParams(body, stats).find((q) => q.type === ParamType.ROSpec && !q.tv);
      if (!p) throw new Malformed('ADD_ROSPEC without ROSpec');
      return { name: 'ADD_ROSPEC', rospec: decodeRoSpec(p.body, stats) };
    }
    case MsgType.DELETE_ROSPEC:
    case MsgType.START_ROSPEC:
    case MsgType.STOP_ROSPEC:
    case MsgType.ENABLE_ROSPEC:
    case MsgType.DISABLE_ROSPEC: {
      need(body, 4, 'ROSpecID');
      const name = ({ 21: 'DELETE_ROSPEC', 22: 'START_ROSPEC', 23: 'STOP_ROSPEC', 24: 'ENABLE_ROSPEC', 25: 'DISABLE_ROSPEC' } as const)[type];
      return { name, rospecId: body.readUInt32BE(0) };
    }
    case MsgType.KEEPALIVE_ACK: return { name: 'KEEPALIVE_ACK' };
    case MsgType.CLOSE_CONNECTION: return { name: 'CLOSE_CONNECTION' };
    case MsgType.GET_REPORT: return { name: 'GET_REPORT' };
    case MsgType.ENABLE_EVENTS_AND_REPORTS: return { name: 'ENABLE_EVENTS_AND_REPORTS' };
    case MsgType.GET_ROSPECS: return { name: 'GET_ROSPECS' };
    case MsgType.GET_READER_CONFIG: return { name: 'GET_READER_CONFIG' };
    default: return null;
  }
}

/** The header fields of a complete message. */
export function messageHeader(frame: Buffer): { version: number; type: number; length: number; id: number } {
  const h = frame.readUInt16BE(0);
  return { version: (h >> 10) & 7, type: h & 0x3ff, length: frame.readUInt32BE(2), id: frame.readUInt32BE(6) };
}

/**
 * Decodes one complete message (as LlrpFramer hands them out: exactly `length` bytes). Never
 * throws on its input; drops are counted in `stats`.
 */
export function decodeMessage(frame: Buffer, stats: LlrpDecodeStats = newDecodeStats()): LlrpMessage {
  if (frame.length < LLRP_HEADER_BYTES) {
    stats.malformed++;
    return { kind: 'invalid', type: -1, id: -1, reason: 'malformed', detail: `${frame.length} bytes, shorter than a header` };
  }
  const { version, type, length, id } = messageHeader(frame);
  if (length !== frame.length) {
    stats.malformed++;
    return { kind: 'invalid', type, id, reason: 'malformed', detail: `length field ${length} but ${frame.length} bytes` };
  }
  if (version !== LLRP_VERSION_1_0_1) {
    stats.unsupportedVersion++;
    return { kind: 'invalid', type, id, reason: 'unsupported_version', detail: `version ${version}` };
  }
  stats.messages++;
  const body = frame.subarray(LLRP_HEADER_BYTES);
  try {
    switch (type) {
      case MsgType.KEEPALIVE:
        return { kind: 'keepalive', id };
      case MsgType.RO_ACCESS_REPORT: {
        const tags: LlrpTagReport[] = [];
        for (const p of parseParams(body, stats)) {
          if (!p.tv && p.type === ParamType.TagReportData) {
            const tag = decodeTagReport(p.body, stats);
            if (tag) tags.push(tag);
          } else skipped(p, stats);
        }
        return { kind: 'ro_access_report', id, tags };
      }
      case MsgType.READER_EVENT_NOTIFICATION: {
        const msg: Extract<LlrpMessage, { kind: 'reader_event' }> = { kind: 'reader_event', id, events: [] };
        for (const p of parseParams(body, stats)) {
          if (!p.tv && p.type === ParamType.ReaderEventNotificationData) decodeReaderEvents(p.body, stats, msg);
          else skipped(p, stats);
        }
        return msg;
      }
      case MsgType.ERROR_MESSAGE: {
        const params = parseParams(body, stats);
        const st = params.find((p) => !p.tv && p.type === ParamType.LLRPStatus);
        if (!st) throw new Malformed('ERROR_MESSAGE without LLRPStatus');
        for (const p of params) if (p !== st) skipped(p, stats);
        return { kind: 'error_message', id, status: decodeStatus(st.body, stats) };
      }
      default:
        break;
    }
    if (RESPONSE_TYPES.has(type)) {
      const params = parseParams(body, stats);
      const st = params.find((p) => !p.tv && p.type === ParamType.LLRPStatus);
      if (!st) throw new Malformed(`response type ${type} without LLRPStatus`);
      for (const p of params) {
        if (p === st || (!p.tv && p.type === ParamType.GeneralDeviceCapabilities)) continue;
        if (!p.tv && p.type === ParamType.Custom) stats.customParams++;
        // the rest of a response (capabilities, configuration) is not used by the client: not counted as unknown
      }
      const msg: LlrpMessage = { kind: 'response', type, id, status: decodeStatus(st.body, stats) };
      if (type === MsgType.GET_READER_CAPABILITIES_RESPONSE) {
        const caps = decodeCapabilities(params);
        if (caps) msg.capabilities = caps;
      }
      return msg;
    }
    const request = decodeRequest(type, body, stats);
    if (request) return { kind: 'request', type, id, request };
    stats.unknownMessages++;
    return { kind: 'unknown', type, id };
  } catch (err) {
    if (!(err instanceof Malformed)) throw err;
    stats.malformed++;
    return { kind: 'invalid', type, id, reason: 'malformed', detail: err.message };
  }
}

// ---------------------------------------------------------------------------------------------
// Stream framing

export type LlrpFrameRejectReason = 'length_too_small' | 'length_too_large';

export interface LlrpFramerStats {
  frames: number;
  bytes: number;
  rejects: Record<LlrpFrameRejectReason, number>;
}

/**
 * Cuts a TCP byte stream into whole messages: one chunk may hold part of a message or several.
 * A length field outside [10, maxMessageBytes] is a lie the stream cannot recover from: push()
 * counts it, drops everything buffered and returns `desync` (the owner closes the connection).
 */
export class LlrpFramer {
  readonly stats: LlrpFramerStats = { frames: 0, bytes: 0, rejects: { length_too_small: 0, length_too_large: 0 } };
  private buf: Buffer = Buffer.alloc(0);
  private readonly max: number;

  constructor(opts: { maxMessageBytes?: number } = {}) {
    this.max = opts.maxMessageBytes ?? LLRP_DEFAULT_MAX_MESSAGE_BYTES;
  }

  /** Bytes held for an incomplete message. */
  get pending(): number {
    return this.buf.length;
  }

  /** Drops a partial message (e.g. when the connection closed): returns how many bytes were dropped. */
  reset(): number {
    const n = this.buf.length;
    this.buf = Buffer.alloc(0);
    return n;
  }

  push(chunk: Buffer): { frames: Buffer[]; desync?: { reason: LlrpFrameRejectReason; length: number } } {
    this.stats.bytes += chunk.length;
    let buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const frames: Buffer[] = [];
    while (buf.length >= 6) {
      const len = buf.readUInt32BE(2);
      const reason: LlrpFrameRejectReason | null = len < LLRP_HEADER_BYTES ? 'length_too_small' : len > this.max ? 'length_too_large' : null;
      if (reason) {
        this.stats.rejects[reason]++;
        this.buf = Buffer.alloc(0);
        return { frames, desync: { reason, length: len } };
      }
      if (buf.length < len) break;
      frames.push(buf.subarray(0, len));
      this.stats.frames++;
      buf = buf.subarray(len);
    }
    // copy a small remainder so a large chunk is not kept alive by it
    this.buf = buf.length === 0 ? Buffer.alloc(0) : Buffer.from(buf);
    return { frames };
  }
}

// ---------------------------------------------------------------------------------------------
// Encoding

function header(type: number, id: number, bodyLen: number): Buffer {
  const b = Buffer.alloc(LLRP_HEADER_BYTES);
  b.writeUInt16BE((LLRP_VERSION_1_0_1 << 10) | (type & 0x3ff), 0);
  b.writeUInt32BE(LLRP_HEADER_BYTES + bodyLen, 2);
  b.writeUInt32BE(id >>> 0, 6);
  return b;
}

/** A whole message: header plus body parts. */
export function encodeMessage(type: number, id: number, ...body: Buffer[]): Buffer {
  const b = Buffer.concat(body);
  return Buffer.concat([header(type, id, b.length), b]);
}

/** A TLV parameter. */
export function tlv(type: number, ...body: Buffer[]): Buffer {
  const b = Buffer.concat(body);
  if (b.length + 4 > 0xffff) throw new RangeError(`parameter ${type} too long: ${b.length + 4} bytes`);
  const h = Buffer.alloc(4);
  h.writeUInt16BE(type & 0x3ff, 0);
  h.writeUInt16BE(b.length + 4, 2);
  return Buffer.concat([h, b]);
}

function u8(v: number): Buffer {
  return Buffer.from([v & 0xff]);
}
function u16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v, 0);
  return b;
}
function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0, 0);
  return b;
}
function u64b(v: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(Math.trunc(v)), 0);
  return b;
}
function utf8(s: string): Buffer {
  const t = Buffer.from(s, 'utf8');
  return Buffer.concat([u16(t.length), t]);
}
function tv(type: number, value: Buffer): Buffer {
  return Buffer.concat([u8(0x80 | type), value]);
}

function reportSpec(r: RoReportConfig): Buffer {
  let flags = 0;
  for (const [k, bit] of CONTENT_BITS) if (r.content[k]) flags |= 1 << bit;
  return tlv(ParamType.ROReportSpec, u8(r.trigger), u16(r.n), tlv(ParamType.TagReportContentSelector, u16(flags)));
}

export function encodeGetReaderCapabilities(id: number, requestedData = 0): Buffer {
  return encodeMessage(MsgType.GET_READER_CAPABILITIES, id, u8(requestedData));
}

export function encodeSetReaderConfig(id: number, c: ReaderConfig): Buffer {
  const parts: Buffer[] = [u8(c.resetToFactoryDefault ? 0x80 : 0)];
  if (c.events && c.events.length > 0) {
    parts.push(tlv(ParamType.ReaderEventNotificationSpec, ...c.events.map((e) => tlv(ParamType.EventNotificationState, u16(e.type), u8(e.enabled ? 0x80 : 0)))));
  }
  if (c.report) parts.push(reportSpec(c.report));
  if (c.keepaliveMs !== undefined) parts.push(tlv(ParamType.KeepaliveSpec, u8(c.keepaliveMs > 0 ? 1 : 0), u32(c.keepaliveMs)));
  if (c.holdEventsAndReportsUponReconnect !== undefined) parts.push(tlv(ParamType.EventsAndReports, u8(c.holdEventsAndReportsUponReconnect ? 0x80 : 0)));
  return encodeMessage(MsgType.SET_READER_CONFIG, id, ...parts);
}

export function encodeAddRoSpec(id: number, s: RoSpecConfig): Buffer {
  let start: Buffer;
  if (s.start.type === 'periodic') {
    const per = [u32(s.start.offsetMs), u32(s.start.periodMs)];
    if (s.start.utcUs !== undefined) per.push(tlv(ParamType.UTCTimestamp, u64b(s.start.utcUs)));
    start = tlv(ParamType.ROSpecStartTrigger, u8(2), tlv(ParamType.PeriodicTriggerValue, ...per));
  } else start = tlv(ParamType.ROSpecStartTrigger, u8(s.start.type === 'immediate' ? 1 : 0));
  const stop = tlv(ParamType.ROSpecStopTrigger, u8(s.durationMs > 0 ? 1 : 0), u32(s.durationMs));
  const boundary = tlv(ParamType.ROBoundarySpec, start, stop);
  const aiStop = tlv(ParamType.AISpecStopTrigger, u8(s.durationMs > 0 ? 1 : 0), u32(s.durationMs));
  const inv = tlv(ParamType.InventoryParameterSpec, u16(s.inventoryParameterSpecId ?? 1), u8(PROTOCOL_EPC_C1G2));
  const ai = tlv(ParamType.AISpec, u16(s.antennas.length), ...s.antennas.map(u16), aiStop, inv);
  const parts = [u32(s.rospecId), u8(s.priority ?? 0), u8(0 /* Disabled */), boundary, ai];
  if (s.report) parts.push(reportSpec(s.report));
  return encodeMessage(MsgType.ADD_ROSPEC, id, tlv(ParamType.ROSpec, ...parts));
}

/** DELETE_ROSPEC, ENABLE_ROSPEC, START_ROSPEC, STOP_ROSPEC, DISABLE_ROSPEC (ROSpecID 0 = all, where allowed). */
export function encodeRoSpecOp(type: 21 | 22 | 23 | 24 | 25, id: number, rospecId: number): Buffer {
  return encodeMessage(type, id, u32(rospecId));
}

export function encodeKeepaliveAck(id: number): Buffer {
  return encodeMessage(MsgType.KEEPALIVE_ACK, id);
}

export function encodeCloseConnection(id: number): Buffer {
  return encodeMessage(MsgType.CLOSE_CONNECTION, id);
}

// --- reader side (for a simulator) ---

function statusParam(s: LlrpStatus): Buffer {
  const parts = [u16(s.code), utf8(s.description)];
  if (s.fieldError) parts.push(tlv(ParamType.FieldError, u16(s.fieldError.fieldNum), u16(s.fieldError.errorCode)));
  if (s.parameterError) {
    const pe = [u16(s.parameterError.parameterType), u16(s.parameterError.errorCode)];
    if (s.parameterError.fieldError) pe.push(tlv(ParamType.FieldError, u16(s.parameterError.fieldError.fieldNum), u16(s.parameterError.fieldError.errorCode)));
    parts.push(tlv(ParamType.ParameterError, ...pe));
  }
  return tlv(ParamType.LLRPStatus, ...parts);
}

/** A *_RESPONSE (type from RESPONSE_OF) with its LLRPStatus; `extra` are further encoded parameters. */
export function encodeResponse(type: number, id: number, status: LlrpStatus = { code: 0, description: '' }, ...extra: Buffer[]): Buffer {
  return encodeMessage(type, id, statusParam(status), ...extra);
}

/** GeneralDeviceCapabilities as a parameter for a GET_READER_CAPABILITIES_RESPONSE (minimal: no sensitivity table). */
export function encodeGeneralDeviceCapabilities(c: LlrpCapabilities): Buffer {
  const flags = (c.canSetAntennaProperties ? 0x8000 : 0) | (c.hasUtcClock ? 0x4000 : 0);
  return tlv(ParamType.GeneralDeviceCapabilities, u16(c.maxAntennas), u16(flags), u32(c.manufacturer), u32(c.model), utf8(c.firmware));
}

export function encodeErrorMessage(id: number, status: LlrpStatus): Buffer {
  return encodeMessage(MsgType.ERROR_MESSAGE, id, statusParam(status));
}

export function encodeKeepalive(id: number): Buffer {
  return encodeMessage(MsgType.KEEPALIVE, id);
}

function eventParam(e: LlrpReaderEvent): Buffer {
  switch (e.type) {
    case 'connection_attempt': return tlv(ParamType.ConnectionAttemptEvent, u16(e.status));
    case 'connection_close': return tlv(ParamType.ConnectionCloseEvent);
    case 'antenna': return tlv(ParamType.AntennaEvent, u8(e.connected ? 1 : 0), u16(e.antennaId));
    case 'rospec': return tlv(ParamType.ROSpecEvent, u8(e.eventType), u32(e.rospecId), u32(e.preemptingRospecId));
    case 'reader_exception': return tlv(ParamType.ReaderExceptionEvent, utf8(e.message));
    case 'report_buffer_warning': return tlv(ParamType.ReportBufferLevelWarningEvent, u8(e.fillPercent));
    case 'report_buffer_overflow': return tlv(ParamType.ReportBufferOverflowErrorEvent);
    case 'other': throw new RangeError(`cannot encode reader event parameter ${e.paramType}`);
  }
}

export function encodeReaderEventNotification(id: number, timestampUs: number, events: LlrpReaderEvent[]): Buffer {
  return encodeMessage(MsgType.READER_EVENT_NOTIFICATION, id, tlv(ParamType.ReaderEventNotificationData, tlv(ParamType.UTCTimestamp, u64b(timestampUs)), ...events.map(eventParam)));
}

/** One TagReportData, in the order the standard lists its fields; a 96-bit EPC goes as the EPC-96 TV. */
export function encodeTagReportData(t: LlrpTagReport): Buffer {
  const epc = Buffer.from(t.epcHex, 'hex');
  const bits = t.epcBits ?? epc.length * 8;
  const parts: Buffer[] = [bits === 96 && epc.length === 12 ? tv(TvType.EPC96, epc) : tlv(ParamType.EPCData, u16(bits), epc)];
  if (t.rospecId !== undefined) parts.push(tv(TvType.ROSpecID, u32(t.rospecId)));
  if (t.specIndex !== undefined) parts.push(tv(TvType.SpecIndex, u16(t.specIndex)));
  if (t.inventoryParameterSpecId !== undefined) parts.push(tv(TvType.InventoryParameterSpecID, u16(t.inventoryParameterSpecId)));
  if (t.antennaId !== undefined) parts.push(tv(TvType.AntennaID, u16(t.antennaId)));
  if (t.peakRssi !== undefined) {
    const b = Buffer.alloc(1);
    b.writeInt8(Math.max(-128, Math.min(127, Math.round(t.peakRssi))), 0);
    parts.push(tv(TvType.PeakRSSI, b));
  }
  if (t.channelIndex !== undefined) parts.push(tv(TvType.ChannelIndex, u16(t.channelIndex)));
  if (t.firstSeenUtcUs !== undefined) parts.push(tv(TvType.FirstSeenTimestampUTC, u64b(t.firstSeenUtcUs)));
  if (t.firstSeenUptimeUs !== undefined) parts.push(tv(TvType.FirstSeenTimestampUptime, u64b(t.firstSeenUptimeUs)));
  if (t.lastSeenUtcUs !== undefined) parts.push(tv(TvType.LastSeenTimestampUTC, u64b(t.lastSeenUtcUs)));
  if (t.lastSeenUptimeUs !== undefined) parts.push(tv(TvType.LastSeenTimestampUptime, u64b(t.lastSeenUptimeUs)));
  if (t.seenCount !== undefined) parts.push(tv(TvType.TagSeenCount, u16(t.seenCount)));
  if (t.pc !== undefined) parts.push(tv(TvType.C1G2_PC, u16(t.pc)));
  if (t.crc !== undefined) parts.push(tv(TvType.C1G2_CRC, u16(t.crc)));
  if (t.accessSpecId !== undefined) parts.push(tv(TvType.AccessSpecID, u32(t.accessSpecId)));
  return tlv(ParamType.TagReportData, ...parts);
}

export function encodeRoAccessReport(id: number, tags: LlrpTagReport[]): Buffer {
  return encodeMessage(MsgType.RO_ACCESS_REPORT, id, ...tags.map(encodeTagReportData));
}

/** A vendor Custom parameter (type 1023): vendor IANA enterprise number, subtype, payload. */
export function encodeCustomParam(vendorId: number, subtype: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  return tlv(ParamType.Custom, u32(vendorId), u32(subtype), payload);
}

/** The name of a message type, for logs ('type 77' when unknown). */
export function messageTypeName(type: number): string {
  for (const [k, v] of Object.entries(MsgType)) if (v === type) return k;
  return `type ${type}`;
}
