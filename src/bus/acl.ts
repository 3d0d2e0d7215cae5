/**
 * Topic ACL of the local bus by role. Pure functions: no I/O, no state.
 *
 * P = `shelfgate/v1/<store>/`. Gateway-owned topics are published by the gateway in-process (not as
 * an MQTT client) and NO client may publish on them, whatever its role:
 *   P/gateway/#   P/device/+/availability   P/shelf/#   P/price/#   P/sync/#   P/response/#
 * (prices come only from central through the version rule: a client retaining an older price on
 * price/<gtin> would make a label show it, so not even an admin may publish there)
 *
 * | role       | may subscribe (filter must stay inside)                         | may publish                                  |
 * |------------|-----------------------------------------------------------------|----------------------------------------------|
 * | kiosk      | P/shelf/#, P/device/+/availability, P/gateway/status, P/price/#, | P/request/<cmd>, read-only cmds (stock.get)  |
 * |            | P/sync/status, P/response/<self>/#                              |                                              |
 * | service    | P/# except other users' P/response/<other>/...                  | P/request/<cmd>, any cmd except calibrate.*  |
 * | technician | P/# except other users' P/response/<other>/...                  | P/request/<cmd>, any cmd incl. calibrate.*   |
 * | admin      | anything (incl. other users' responses, $SYS/#)                 | anything under P except gateway-owned topics |
 * | device     | P/response/<self>/#                                             | P/ext/<self>/#                               |
 *
 * Wildcard subscriptions are checked as sets: a non-admin filter is granted only if every topic
 * it can match lies inside one of the role's readable filters AND it cannot match another user's
 * response topic. So `#`, `shelfgate/#`, `+/v1/<store>/#` or `P/response/+/x` are refused, while
 * `P/shelf/+/slot/+/stock` is fine for a kiosk. Nothing outside P (and no `$SYS/...`) for
 * non-admins. No client may publish to `$...` topics [MQTT-4.7.2-1] or outside P.
 *
 * The functions above are pure. AclDecisionCache (the only state here) lets the broker remember,
 * per connection, the decisions for the concrete topics it keeps using: a connection's role,
 * username and store never change while it is open, so neither do these decisions.
 */
import type { Role } from './auth';
import {
  filterCovers,
  filtersIntersect,
  isValidCommand,
  isValidId,
  isValidTopicFilter,
  isValidTopicName,
  storePrefix,
  topicMatches,
} from './topics';

export type { Role } from './auth';

export const ROLES: readonly Role[] = ['device', 'kiosk', 'service', 'technician', 'admin'];

/** Commands a kiosk may send: they only read. */
export const READ_ONLY_COMMANDS: ReadonlySet<string> = new Set(['stock.get']);

export function isReadOnlyCommand(command: string): boolean {
  return READ_ONLY_COMMANDS.has(command);
}

/** `calibrate.*`: technician and admin only. */
export function isCalibrationCommand(command: string): boolean {
  return command.startsWith('calibrate.');
}

/** Filters of the topics no client may publish on. */
export function gatewayOwnedFilters(store: string): string[] {
  const p = storePrefix(store);
  return [`${p}gateway/#`, `${p}device/+/availability`, `${p}shelf/#`, `${p}price/#`, `${p}sync/#`, `${p}response/#`];
}

export function isGatewayOwned(topic: string, store: string): boolean {
  return gatewayOwnedFilters(store).some((f) => topicMatches(f, topic));
}

/** The command of `P/request/<command>`, or null if `topic` is not exactly a request topic. */
export function requestCommand(topic: string, store: string): string | null {
  const head = `${storePrefix(store)}request/`;
  if (!topic.startsWith(head)) return null;
  const cmd = topic.slice(head.length);
  return isValidCommand(cmd) ? cmd : null;
}

/** Whether a client with `role`/`username` may publish on the concrete `topic`. */
export function canPublish(role: Role, username: string, topic: string, store: string): boolean {
  if (!isValidId(username) || !isValidId(store) || !isValidTopicName(topic)) return false;
  const p = storePrefix(store);
  if (!topic.startsWith(p) || topic.length === p.length) return false; // also refuses `$SYS/...`
  if (isGatewayOwned(topic, store)) return false;
  switch (role) {
    case 'admin':
      return true;
    case 'technician': {
      return requestCommand(topic, store) !== null;
    }
    case 'service': {
      const cmd = requestCommand(topic, store);
      return cmd !== null && !isCalibrationCommand(cmd);
    }
    case 'kiosk': {
      const cmd = requestCommand(topic, store);
      return cmd !== null && isReadOnlyCommand(cmd);
    }
    case 'device':
      return topicMatches(`${p}ext/${username}/#`, topic);
    default:
      return false; // an unknown role gets nothing
  }
}

/** The filters whose topics a (non-admin) role may read; a subscription must fit inside one. */
export function readableFilters(role: Role, username: string, store: string): string[] {
  const p = storePrefix(store);
  const own = `${p}response/${username}/#`;
  switch (role) {
    case 'kiosk':
      return [`${p}shelf/#`, `${p}device/+/availability`, `${p}gateway/status`, `${p}price/#`, `${p}sync/status`, own];
    case 'service':
    case 'technician':
      return [`${p}#`];
    case 'device':
      return [own];
    default:
      return [];
  }
}

/** True if `filter` could match a response topic of a user other than `username`. */
export function matchesOtherUsersResponses(filter: string, username: string, store: string): boolean {
  const p = storePrefix(store);
  if (!filtersIntersect(filter, `${p}response/+/#`)) return false;
  // It reaches response topics; it is safe only if its user level is exactly `username`.
  const userLevel = filter.split('/')[4];
  return userLevel !== username;
}

/** Whether a client with `role`/`username` may subscribe to `topicFilter`. */
export function canSubscribe(role: Role, username: string, topicFilter: string, store: string): boolean {
  if (!isValidId(username) || !isValidId(store) || !isValidTopicFilter(topicFilter)) return false;
  if (role === 'admin') return true;
  if (matchesOtherUsersResponses(topicFilter, username, store)) return false;
  return readableFilters(role, username, store).some((allowed) => filterCovers(allowed, topicFilter));
}

/**
 * Whether a message on the concrete `topic` may be delivered to this client: defence in depth
 * behind canSubscribe (checked again at delivery, for retained messages and restored sessions).
 */
export function canReceive(role: Role, username: string, topic: string, store: string): boolean {
  if (role === 'admin') return true;
  if (!isValidId(username) || !isValidId(store)) return false;
  const parts = topic.split('/');
  const p = storePrefix(store);
  if (topic.startsWith(`${p}response/`) && parts[4] !== username) return false;
  return readableFilters(role, username, store).some((f) => topicMatches(f, topic));
}

/** Entries an AclDecisionCache keeps by default. */
export const ACL_CACHE_MAX_ENTRIES = 128;
/** Longest topic an AclDecisionCache remembers by default; longer topics are always re-checked. */
export const ACL_CACHE_MAX_TOPIC_LENGTH = 256;

/**
 * A bounded map from concrete topic to an ACL decision, for ONE connection (never share one
 * between clients: decisions depend on the role and username). At most `maxEntries` topics of at
 * most `maxTopicLength` characters (so at most maxEntries * maxTopicLength characters are kept);
 * when full, the oldest entry is dropped first.
 */
export class AclDecisionCache<V> {
  private readonly map = new Map<string, V>();

  constructor(
    readonly maxEntries = ACL_CACHE_MAX_ENTRIES,
    readonly maxTopicLength = ACL_CACHE_MAX_TOPIC_LENGTH,
  ) {}

  get(topic: string): V | undefined {
    return this.map.get(topic);
  }

  /** Remembers `value` for `topic` (unless the topic is too long to cache); returns `value`. */
  set(topic: string, value: V): V {
    if (topic.length > this.maxTopicLength || this.maxEntries <= 0) return value;
    if (this.map.size >= this.maxEntries && !this.map.has(topic)) {
      this.map.delete(this.map.keys().next().value as string);
    }
    this.map.set(topic, value);
    return value;
  }

  get size(): number {
    return this.map.size;
  }
}
