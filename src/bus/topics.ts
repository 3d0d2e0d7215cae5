/**
 * The versioned topic tree of the local bus. Every topic string is built and parsed here; no other
 * file concatenates topic strings.
 *
 *   shelfgate/v1/<store>/gateway/status                          retained  GatewayStatus
 *   shelfgate/v1/<store>/device/<deviceId>/availability          retained  DeviceAvailability
 *   shelfgate/v1/<store>/shelf/<shelfId>/slot/<slotId>/stock     retained  stock level
 *   shelfgate/v1/<store>/shelf/<shelfId>/slot/<slotId>/event     not retained: pick/put/anomaly
 *   shelfgate/v1/<store>/shelf/<shelfId>/slot/<slotId>/alert     retained  current condition
 *   shelfgate/v1/<store>/request/<command>                       client -> gateway (BusRequest)
 *   shelfgate/v1/<store>/response/<username>/<command>           gateway -> that user (BusResponse)
 *   shelfgate/v1/<store>/ext/<username>/...                      published by `device` users
 *   shelfgate/v1/<store>/price/...                               published by admins, read by kiosks
 *
 * MQTT 3.1.1 has no response-topic / correlation-data properties (MQTT 5 only), so a request
 * carries a client-chosen `transaction` string and the answer goes to the requesting user's own
 * response topic with the same `transaction`.
 *
 * Topic filter semantics follow MQTT 3.1.1 section 4.7 ([MQTT-4.7.1-2] `#` matches the parent
 * level, [MQTT-4.7.2-1] filters starting with a wildcard do not match topics starting with `$`).
 */
import { ErrorCode, ShelfgateError } from '../errors';

export const TOPIC_ROOT = 'shelfgate';
export const TOPIC_VERSION = 'v1';

// ---- identifiers ----

/** Longest id accepted in a topic level (store, device, shelf, slot, username). */
export const MAX_ID_LENGTH = 128;

// `+` `#` `/` are MQTT syntax; NUL is forbidden in MQTT strings [MQTT-1.5.3-2]; other control
// characters and a leading `$` (reserved for broker topics) are refused too.
// eslint-disable-next-line no-control-regex
const FORBIDDEN_IN_ID = /[+#/\u0000-\u001f\u007f]/;

/** True if `value` can be used as one topic level. */
export function isValidId(value: unknown): value is string {
  return (
    typeof value === 'string' &&
    value.length >= 1 &&
    value.length <= MAX_ID_LENGTH &&
    !FORBIDDEN_IN_ID.test(value) &&
    !value.startsWith('$') &&
    value.trim() === value
  );
}

/** Returns `value` if it is a safe topic level, else throws REQUEST_INVALID naming `what`. */
export function validateId(value: unknown, what = 'id'): string {
  if (!isValidId(value)) {
    throw new ShelfgateError(
      ErrorCode.REQUEST_INVALID,
      `${what} must be 1-${MAX_ID_LENGTH} characters without '+', '#', '/', control characters, surrounding spaces or a leading '$'`,
      { what, value: typeof value === 'string' ? value.slice(0, MAX_ID_LENGTH + 1) : typeof value },
    );
  }
  return value;
}

/** Command names: dot-separated lowercase words, e.g. `stock.get`, `calibrate.set_unit_weight`. */
const COMMAND_RE = /^[a-z][a-z0-9_]{0,31}(\.[a-z][a-z0-9_]{0,31}){0,3}$/;

export function isValidCommand(value: unknown): value is string {
  return typeof value === 'string' && COMMAND_RE.test(value);
}

export function validateCommand(value: unknown): string {
  if (!isValidCommand(value)) {
    throw new ShelfgateError(ErrorCode.REQUEST_INVALID, 'command must be dot-separated lowercase words like stock.get', {
      value: typeof value === 'string' ? value.slice(0, 200) : typeof value,
    });
  }
  return value;
}

// ---- builders ----

let lastPrefixStore: string | null = null;
let lastPrefix = '';

/** `shelfgate/v1/<store>/` (with the trailing slash). */
export function storePrefix(store: string): string {
  // one-entry memo of a validated store id: a gateway has one store, and the ACL asks for its
  // prefix on every message
  if (typeof store === 'string' && store === lastPrefixStore) return lastPrefix;
  const prefix = `${TOPIC_ROOT}/${TOPIC_VERSION}/${validateId(store, 'store id')}/`;
  lastPrefixStore = store;
  lastPrefix = prefix;
  return prefix;
}

/** `shelfgate/v1/<store>/shelf/+/slot/+/<leaf>`: one kind of message of every slot (a subscription filter). */
export function allSlotsFilter(store: string, leaf: 'stock' | 'event' | 'alert'): string {
  return `${storePrefix(store)}shelf/+/slot/+/${leaf}`;
}

/** `shelfgate/v1/<store>/price/+`: every product's retained price (a subscription filter). */
export function allPricesFilter(store: string): string {
  return `${storePrefix(store)}price/+`;
}

export function gatewayStatus(store: string): string {
  return `${storePrefix(store)}gateway/status`;
}

export function deviceAvailability(store: string, deviceId: string): string {
  return `${storePrefix(store)}device/${validateId(deviceId, 'device id')}/availability`;
}

export interface SlotTopics {
  stock: string;
  event: string;
  alert: string;
}

export function slotTopics(store: string, shelfId: string, slotId: string): SlotTopics {
  const base = `${storePrefix(store)}shelf/${validateId(shelfId, 'shelf id')}/slot/${validateId(slotId, 'slot id')}/`;
  return { stock: `${base}stock`, event: `${base}event`, alert: `${base}alert` };
}

export function slotStock(store: string, shelfId: string, slotId: string): string {
  return slotTopics(store, shelfId, slotId).stock;
}

export function slotEvent(store: string, shelfId: string, slotId: string): string {
  return slotTopics(store, shelfId, slotId).event;
}

export function slotAlert(store: string, shelfId: string, slotId: string): string {
  return slotTopics(store, shelfId, slotId).alert;
}

export function request(store: string, command: string): string {
  return `${storePrefix(store)}request/${validateCommand(command)}`;
}

/** `shelfgate/v1/<store>/request/+`: every request (the gateway's own subscription). */
export function requestFilter(store: string): string {
  return `${storePrefix(store)}request/+`;
}

export function response(store: string, username: string, command: string): string {
  return `${storePrefix(store)}response/${validateId(username, 'username')}/${validateCommand(command)}`;
}

/** `shelfgate/v1/<store>/response/<username>/#`: what a client subscribes to for its answers. */
export function responseFilter(store: string, username: string): string {
  return `${storePrefix(store)}response/${validateId(username, 'username')}/#`;
}

/** `shelfgate/v1/<store>/ext/<username>/#`: the subtree a `device` user may publish in. */
export function extFilter(store: string, username: string): string {
  return `${storePrefix(store)}ext/${validateId(username, 'username')}/#`;
}

/** `shelfgate/v1/<store>/price/<gtin>` (retained): the price in effect, from central (src/sync). */
export function price(store: string, gtin: string): string {
  return `${storePrefix(store)}price/${validateId(gtin, 'gtin')}`;
}

/** `shelfgate/v1/<store>/sync/status` (retained): the central sync state (src/sync). */
export function syncStatus(store: string): string {
  return `${storePrefix(store)}sync/status`;
}

/**
 * `shelfgate/v1/<store>/<area>/<level>/...`: a topic in a feature's own area (the feature declares
 * the area's filter, e.g. `labels/#`, as a TopicArea). Every level is validated like an id.
 */
export function featureTopic(store: string, area: string, ...levels: string[]): string {
  let t = `${storePrefix(store)}${validateId(area, 'topic area')}`;
  for (const l of levels) t += `/${validateId(l, 'topic level')}`;
  return t;
}

// ---- payloads ----

export interface GatewayStatus {
  state: 'online' | 'offline' | 'stopping';
  version: string;
  /** ISO 8601 */
  started_at: string;
  /** ISO 8601 */
  ts: string;
}

export interface DeviceAvailability {
  state: 'online' | 'offline';
  reason?: string;
  /** ISO 8601 */
  since: string;
}

/** What a client publishes on `request/<command>`: JSON with a client-chosen transaction id. */
export interface BusRequest {
  transaction: string;
  [key: string]: unknown;
}

export interface BusResponseError {
  code: string;
  message: string;
}

/** What the gateway publishes on `response/<username>/<command>`. */
export type BusResponse =
  | { transaction: string | null; ok: true; data: unknown }
  | { transaction: string | null; ok: false; error: BusResponseError };

/** Longest accepted transaction id. */
export const MAX_TRANSACTION_LENGTH = 128;

// ---- parsers ----

export type ParsedTopic =
  | { kind: 'gateway-status'; store: string }
  | { kind: 'device-availability'; store: string; deviceId: string }
  | { kind: 'slot-stock' | 'slot-event' | 'slot-alert'; store: string; shelfId: string; slotId: string }
  | { kind: 'request'; store: string; command: string }
  | { kind: 'response'; store: string; username: string; command: string };

/**
 * Parses a concrete topic of the tree into its parts; null for anything else (other versions,
 * wildcards, unknown branches, invalid ids).
 */
export function parseTopic(topic: string): ParsedTopic | null {
  const l = topic.split('/');
  if (l.length < 5 || l[0] !== TOPIC_ROOT || l[1] !== TOPIC_VERSION) return null;
  const store = l[2]!;
  if (!isValidId(store)) return null;
  const rest = l.slice(3);
  switch (rest[0]) {
    case 'gateway':
      return rest.length === 2 && rest[1] === 'status' ? { kind: 'gateway-status', store } : null;
    case 'device':
      return rest.length === 3 && isValidId(rest[1]) && rest[2] === 'availability'
        ? { kind: 'device-availability', store, deviceId: rest[1] }
        : null;
    case 'shelf': {
      if (rest.length !== 5 || rest[2] !== 'slot' || !isValidId(rest[1]) || !isValidId(rest[3])) return null;
      const leaf = rest[4];
      if (leaf !== 'stock' && leaf !== 'event' && leaf !== 'alert') return null;
      return { kind: `slot-${leaf}`, store, shelfId: rest[1], slotId: rest[3] };
    }
    case 'request':
      return rest.length === 2 && isValidCommand(rest[1]) ? { kind: 'request', store, command: rest[1] } : null;
    case 'response':
      return rest.length === 3 && isValidId(rest[1]) && isValidCommand(rest[2])
        ? { kind: 'response', store, username: rest[1], command: rest[2] }
        : null;
    default:
      return null;
  }
}

// ---- MQTT topic name / filter syntax and matching (MQTT 3.1.1 section 4.7) ----

/** A topic name a client may publish to: non-empty, no wildcards, no NUL [MQTT-4.7.3-1, -2]. */
export function isValidTopicName(topic: string): boolean {
  return topic.length > 0 && topic.length <= 65535 && !/[+#\u0000]/.test(topic);
}

/** A well-formed topic filter: `#` only as the whole last level, `+` only as a whole level. */
export function isValidTopicFilter(filter: string): boolean {
  if (filter.length === 0 || filter.length > 65535 || filter.includes('\u0000')) return false;
  const levels = filter.split('/');
  for (let i = 0; i < levels.length; i++) {
    const lv = levels[i]!;
    if (lv.includes('#') && (lv !== '#' || i !== levels.length - 1)) return false; // [MQTT-4.7.1-2]
    if (lv.includes('+') && lv !== '+') return false; // [MQTT-4.7.1-3]
  }
  return true;
}

/**
 * True if the concrete `topic` is matched by `filter`. Walks both strings level by level without
 * splitting them (it runs for every message): same result as comparing `filter.split('/')` with
 * `topic.split('/')` level by level.
 */
export function topicMatches(filter: string, topic: string): boolean {
  const fl = filter.length;
  const tl = topic.length;
  // [MQTT-4.7.2-1]: a first level of exactly `+` or `#` does not match a topic starting with `$`
  if (topic.charCodeAt(0) === 0x24) {
    const c0 = filter.charCodeAt(0);
    if ((c0 === 0x2b || c0 === 0x23) && (fl === 1 || filter.charCodeAt(1) === 0x2f)) return false;
  }
  let fi = 0; // start of the current filter level (fl + 1: no level left)
  let ti = 0; // start of the current topic level (tl + 1: no level left)
  while (fi <= fl) {
    let fe = filter.indexOf('/', fi);
    if (fe === -1) fe = fl;
    const flen = fe - fi;
    const c = flen === 1 ? filter.charCodeAt(fi) : 0;
    if (c === 0x23) return true; // `#` matches this level and below, including the parent [MQTT-4.7.1-2]
    if (ti > tl) return false;
    let te = topic.indexOf('/', ti);
    if (te === -1) te = tl;
    if (c !== 0x2b) {
      if (te - ti !== flen) return false;
      for (let k = 0; k < flen; k++) if (filter.charCodeAt(fi + k) !== topic.charCodeAt(ti + k)) return false;
    }
    fi = fe + 1;
    ti = te + 1;
  }
  return ti > tl; // same number of levels
}

/**
 * True if every topic matched by `inner` is also matched by `outer` (both well-formed filters).
 * Used to check that a subscription stays inside what a role may read.
 */
export function filterCovers(outer: string, inner: string): boolean {
  const o = outer.split('/');
  const n = inner.split('/');
  // `inner` starting with a wildcard never matches `$` topics; `outer` starting with a literal
  // `$...` level cannot cover a wildcard first level anyway, so no special case is needed.
  for (let i = 0; i < n.length; i++) {
    if (i >= o.length) return false;
    const ol = o[i]!;
    const nl = n[i]!;
    if (ol === '#') return true;
    if (nl === '#') return false;
    if (nl === '+') {
      if (ol !== '+') return false;
    } else if (ol !== '+' && ol !== nl) {
      return false;
    }
  }
  // inner exhausted: outer must be exhausted too, or end in a `#` that matches the parent level
  return o.length === n.length || (o.length === n.length + 1 && o[n.length] === '#');
}

/** True if at least one topic is matched by both filters. */
export function filtersIntersect(a: string, b: string): boolean {
  const x = a.split('/');
  const y = b.split('/');
  const dollar = (l: string): boolean => l.startsWith('$');
  if ((dollar(x[0]!) && (y[0] === '+' || y[0] === '#')) || (dollar(y[0]!) && (x[0] === '+' || x[0] === '#'))) return false;
  const n = Math.max(x.length, y.length);
  for (let i = 0; i < n; i++) {
    const xl = x[i];
    const yl = y[i];
    if (xl === '#' || yl === '#') return true;
    if (xl === undefined || yl === undefined) return false;
    if (xl !== '+' && yl !== '+' && xl !== yl) return false;
  }
  return true;
}
