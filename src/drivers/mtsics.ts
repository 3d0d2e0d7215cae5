/**
 * MT-SICS (Mettler Toledo Standard Interface Command Set) as a pure codec: commands in, bytes out;
 * lines in, typed responses out. Both sides: the gateway (client) and the scale
 * simulator (server). Line framing (CR LF) is src/drivers/lines.ts; this module sees whole lines.
 *
 * Response syntax (METTLER TOLEDO MT-SICS Reference Manual, "Response formats"):
 *   `<ID> <Status> [<Value> <Unit>]` or `<ID> A "<text>"`, fields separated by blanks (0x20)
 *   whose count varies between models (values are right-aligned in a 10-character field), so runs
 *   of blanks separate, but only blanks: a TAB or a non-breaking space (0xA0) is not a separator
 *   and makes the line invalid. Errors are the bare lines `ES` (syntax), `ET` (transmission),
 *   `EL` (logical).
 *
 * The grammar is strict on purpose. A scale line is short and has no checksum, so one corrupted
 * byte must make the line invalid rather than change its value: the weight value is an optional
 * minus sign, digits, and optionally a decimal point followed by digits (`-12.34`, `100`); `.345`,
 * `100.`, `+5` and `1e3` are not values. Control bytes anywhere reject the line.
 */
import { ErrorCode, ShelfgateError } from '../errors';

/** `S`/`SI` stable or dynamic weight (`S S|D <v> <u>`), or `T S <tare> <u>`. */
export interface SicsWeight {
  kind: 'weight';
  /**
   * The command answered. A parsed line reports `S` for both S and SI (their answers both start
   * with the id `S`; a `D` status implies SI); `SI` is accepted when formatting.
   */
  cmd: 'S' | 'SI' | 'T';
  stable: boolean;
  value: number;
  unit: string;
  /** Digits after the decimal point as sent (parsed) or to send (formatting; default 2). */
  decimals?: number;
}

/** A status-only answer: `A` done, `I` busy / not executable, `+` overload, `-` underload, `L` logical error. */
export interface SicsStatus {
  kind: 'status';
  cmd: string;
  status: 'A' | 'I' | '+' | '-' | 'L';
}

/** An information answer such as `I4 A "1234567"` (serial number); the quotes are removed. */
export interface SicsInfo {
  kind: 'info';
  cmd: 'I4' | string;
  value: string;
}

/** `ES` syntax error (command not understood), `ET` transmission error, `EL` logical error. */
export interface SicsError {
  kind: 'error';
  code: 'ES' | 'ET' | 'EL';
}

export type SicsResponse = SicsWeight | SicsStatus | SicsInfo | SicsError;

/** Width of the right-aligned weight value field (MT-SICS, response of S/SI: "10 characters"). */
const VALUE_WIDTH = 10;
const ID_RE = /^[A-Z][A-Z0-9]*$/;
/** Weight value: optional minus, digits, optional decimal point followed by at least one digit. */
const NUMBER_RE = /^-?\d+(?:\.\d+)?$/;
/** Unit: printable ASCII without blank or quote (g, kg, mg, lb, oz, ct, custom units), or the micro sign. */
const UNIT_RE = /^[!#-~\u00b5]+$/;
/** C0 controls, DEL and C1 controls: never part of a valid line. */
const CONTROL_RE = /[\x00-\x1f\x7f-\x9f]/;
const STATUSES = new Set(['A', 'I', '+', '-', 'L']);

function invalid(line: string, why: string): ShelfgateError {
  return new ShelfgateError(ErrorCode.FRAME_INVALID, `MT-SICS: ${why}: ${JSON.stringify(line)}`, { line });
}

/**
 * Splits a line into tokens separated by runs of blanks (0x20 only); a double-quoted token may
 * contain blanks and keeps no quotes. Returns null on an unterminated quote, a quote inside an
 * unquoted token, or a control byte anywhere.
 */
function tokenize(line: string): { tokens: string[]; quoted: boolean[] } | null {
  if (CONTROL_RE.test(line)) return null;
  const tokens: string[] = [];
  const quoted: boolean[] = [];
  const re = / *(?:"([^"]*)"|([^ ]+))/y;
  let end = line.length;
  while (end > 0 && line.charCodeAt(end - 1) === 0x20) end--;
  const s = line.slice(0, end);
  let m: RegExpExecArray | null;
  while (re.lastIndex < s.length && (m = re.exec(s)) !== null) {
    if (m[1] !== undefined) {
      // a closing quote must end the token
      if (re.lastIndex < s.length && s[re.lastIndex] !== ' ') return null;
      tokens.push(m[1]);
      quoted.push(true);
    } else {
      if (m[2]!.includes('"')) return null;
      tokens.push(m[2]!);
      quoted.push(false);
    }
  }
  if (re.lastIndex < s.length) return null;
  return { tokens, quoted };
}

// ---------------------------------------------------------------------------------------------
// Client side (gateway)

/** Encodes a command line: `S`, `SI`, `Z`, `T`, `I4`, ... plus CR LF (MT-SICS "Command formats"). */
export function encodeSicsCommand(cmd: 'S' | 'SI' | 'Z' | 'T' | 'I4' | string): Buffer {
  if (cmd.length === 0 || /[\x00-\x1f\x7f]/.test(cmd))
    throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `MT-SICS command must be non-empty printable text: ${JSON.stringify(cmd)}`);
  return Buffer.from(`${cmd}\r\n`, 'latin1');
}

/**
 * Parses one response line (terminator already removed). Throws ShelfgateError(FRAME_INVALID) on
 * anything that is not a well-formed MT-SICS response.
 */
export function parseSicsResponse(line: string): SicsResponse {
  const t = tokenize(line);
  if (!t || t.tokens.length === 0) throw invalid(line, 'malformed line');
  const { tokens, quoted } = t;
  const id = tokens[0]!;
  if (quoted[0] || !ID_RE.test(id)) throw invalid(line, 'bad response id');

  // Error responses are the id alone (MT-SICS "Error messages").
  if (id === 'ES' || id === 'ET' || id === 'EL') {
    if (tokens.length !== 1) throw invalid(line, `unexpected data after ${id}`);
    return { kind: 'error', code: id };
  }
  if (tokens.length < 2 || quoted[1]) throw invalid(line, 'missing status');
  const status = tokens[1]!;

  // S / SI (level 0): `S S <v> <u>` stable, `S D <v> <u>` dynamic. T (level 1): `T S <tare> <u>`.
  if ((id === 'S' && (status === 'S' || status === 'D')) || (id === 'T' && status === 'S')) {
    if (tokens.length !== 4 || quoted[2] || quoted[3]) throw invalid(line, 'weight response needs value and unit');
    const v = tokens[2]!;
    if (!NUMBER_RE.test(v)) throw invalid(line, 'weight value is not a number');
    if (!UNIT_RE.test(tokens[3]!)) throw invalid(line, 'bad unit');
    const dot = v.indexOf('.');
    return {
      kind: 'weight',
      cmd: id,
      stable: status === 'S',
      value: Number(v),
      unit: tokens[3]!,
      decimals: dot < 0 ? 0 : v.length - dot - 1,
    };
  }

  // I4 (level 0, serial number) and the other I<n> identification commands: `I4 A "<text>"`.
  if (/^I\d+$/.test(id) && status === 'A' && tokens.length === 3 && quoted[2]) {
    return { kind: 'info', cmd: id, value: tokens[2]! };
  }

  // Status-only answers: `S I`, `S +`, `S -`, `Z A`, `Z I`, `Z +`, `Z -`, `T I`, `T +`, `T -`, `<id> L`.
  if (tokens.length === 2 && STATUSES.has(status)) {
    return { kind: 'status', cmd: id, status: status as SicsStatus['status'] };
  }
  throw invalid(line, 'unknown response');
}

/**
 * True when `r` can be the answer to command `cmd`: the response id must be the command's (S and
 * SI, and the continuous SIR, all answer with id `S`; a dynamic `S D` weight answers SI/SIR only,
 * since S waits for a stable weight). The error lines ES/ET/EL carry no id and may answer any
 * command. Without this check a late `T S 25.00 g` would be read as the weight.
 */
export function answersCommand(cmd: string, r: SicsResponse): boolean {
  if (r.kind === 'error') return true;
  const id = cmd === 'SI' || cmd === 'SIR' ? 'S' : cmd;
  if (r.kind === 'weight') {
    const rid = r.cmd === 'T' ? 'T' : 'S';
    if (rid !== id) return false;
    return r.stable || cmd === 'SI' || cmd === 'SIR';
  }
  return r.cmd === id;
}

const GRAMS_PER_UNIT: Readonly<Record<string, number>> = {
  g: 1,
  kg: 1000,
  mg: 0.001,
  lb: 453.59237, // international avoirdupois pound (1959)
  oz: 28.349523125, // 1/16 lb
};

/** Converts a weight in a scale unit (g, kg, mg, lb, oz) to grams. Throws FRAME_INVALID on another unit. */
export function toGrams(value: number, unit: string): number {
  const f = GRAMS_PER_UNIT[unit];
  if (f === undefined)
    throw new ShelfgateError(ErrorCode.FRAME_INVALID, `MT-SICS: unsupported weight unit ${JSON.stringify(unit)} (known: g, kg, mg, lb, oz)`, { unit });
  // Round away binary noise (0.1 kg must be 100 g, not 100.00000000000001).
  return Math.round(value * f * 1e6) / 1e6;
}

// ---------------------------------------------------------------------------------------------
// Server side (simulators)

/** Parses a received command line (terminator removed): `SI` -> { cmd: 'SI', args: [] }. Quotes are removed from args. */
export function parseSicsCommand(line: string): { cmd: string; args: string[] } {
  const t = tokenize(line);
  if (!t || t.tokens.length === 0 || t.quoted[0] || !ID_RE.test(t.tokens[0]!)) throw invalid(line, 'malformed command');
  return { cmd: t.tokens[0]!, args: t.tokens.slice(1) };
}

/**
 * Formats a response line as a scale sends it, without CR LF: `S S     100.00 g` (value
 * right-aligned in 10 characters), `Z A`, `I4 A "1234567"`, `ES`.
 */
export function formatSicsResponse(r: SicsResponse): string {
  switch (r.kind) {
    case 'weight': {
      if (!Number.isFinite(r.value)) throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `MT-SICS: weight must be finite, got ${r.value}`);
      // The answer to S and SI both carry the id S (MT-SICS level 0).
      const id = r.cmd === 'T' ? 'T' : 'S';
      const value = r.value.toFixed(r.decimals ?? 2).padStart(VALUE_WIDTH, ' ');
      return `${id} ${r.stable ? 'S' : 'D'} ${value} ${r.unit}`;
    }
    case 'status':
      return `${r.cmd === 'SI' ? 'S' : r.cmd} ${r.status}`;
    case 'info':
      if (r.value.includes('"')) throw new ShelfgateError(ErrorCode.REQUEST_INVALID, 'MT-SICS: info text must not contain a double quote');
      return `${r.cmd} A "${r.value}"`;
    case 'error':
      return r.code;
  }
}
