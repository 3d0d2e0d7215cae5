/**
 * Topic ACL of the local bus by role, built from declarations: the topic areas the core and each
 * feature declare (which are gateway-owned, which roles beyond service/technician/admin may read
 * them) and the permission each command declares (core/commands.ts). Nothing here names a feature
 * or a command.
 *
 * P = `shelfgate/v1/<store>/`. Gateway-owned topics are published by the gateway in-process (not
 * as an MQTT client) and NO client may publish on them, whatever its role. The core's areas:
 *   P/gateway/#   P/device/+/availability   P/price/#   P/sync/#   P/response/#   (gateway-owned)
 * (prices come only from central through the version rule: a client retaining an older price on
 * price/<gtin> would make a label show it, so not even an admin may publish there); features add
 * theirs (the shelves feature: P/shelf/#).
 *
 * | role       | may subscribe (filter must stay inside)                          | may publish                                |
 * |------------|------------------------------------------------------------------|--------------------------------------------|
 * | kiosk      | areas declaring `readers: ['kiosk']`, P/response/<self>/#        | P/request/<cmd> for `read` commands        |
 * | service    | P/# except other users' P/response/<other>/...                   | P/request/<cmd> for `read`/`operate` cmds  |
 * | technician | P/# except other users' P/response/<other>/...                   | P/request/<cmd>, also `calibrate` cmds     |
 * | admin      | anything (incl. other users' responses, $SYS/#)                  | anything under P except gateway-owned areas |
 * | device     | areas declaring `readers: ['device']`, P/response/<self>/#       | P/ext/<self>/#                             |
 *
 * Wildcard subscriptions are checked as sets: a non-admin filter is granted only if every topic
 * it can match lies inside one of the role's readable filters AND it cannot match another user's
 * response topic. So `#`, `shelfgate/#`, `+/v1/<store>/#` or `P/response/+/x` are refused, while
 * `P/shelf/+/slot/+/stock` is fine for a kiosk. Nothing outside P (and no `$SYS/...`) for
 * non-admins. No client may publish to `$...` topics [MQTT-4.7.2-1] or outside P.
 *
 * AclDecisionCache (the only mutable state here) lets the broker remember, per connection, the
 * decisions for the concrete topics it keeps using: a connection's role, username and store never
 * change while it is open, and the declarations are fixed once the gateway is built.
 */
import type { Role } from './auth';
import { roleHas, type Permission } from '../core/commands';
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

/** A topic area under P, declared by the core or a feature. */
export interface TopicArea {
  /** Relative to P, e.g. `shelf/#` or `device/+/availability`. */
  filter: string;
  /** Published only by the gateway itself: no client may publish there. */
  gatewayOwned: boolean;
  /** Roles other than service/technician/admin (who read all of P) that may read this area. */
  readers?: readonly Role[];
  /** One line for the docs. */
  description: string;
}

/** The core's topic areas. */
export const CORE_TOPIC_AREAS: readonly TopicArea[] = [
  { filter: 'gateway/#', gatewayOwned: true, description: 'gateway status and metadata' },
  { filter: 'gateway/status', gatewayOwned: true, readers: ['kiosk'], description: 'retained online/offline status' },
  { filter: 'device/+/availability', gatewayOwned: true, readers: ['kiosk'], description: 'retained availability of every device' },
  { filter: 'price/#', gatewayOwned: true, readers: ['kiosk'], description: 'retained prices from central (version rule)' },
  { filter: 'sync/#', gatewayOwned: true, description: 'central sync' },
  { filter: 'sync/status', gatewayOwned: true, readers: ['kiosk'], description: 'retained sync status' },
  { filter: 'response/#', gatewayOwned: true, description: 'answers to requests, per user' },
];

/** The ACL's inputs: the store, the declared topic areas, and the commands' permissions. */
export class AclRules {
  readonly prefix: string;
  readonly ownedFilters: readonly string[];
  private readonly readable = new Map<Role, string[]>();

  constructor(
    readonly store: string,
    areas: readonly TopicArea[],
    readonly permissionOf: (command: string) => Permission,
  ) {
    const p = storePrefix(store);
    this.prefix = p;
    this.ownedFilters = areas.filter((a) => a.gatewayOwned).map((a) => p + a.filter);
    for (const a of areas) for (const r of a.readers ?? []) this.readable.set(r, [...(this.readable.get(r) ?? []), p + a.filter]);
  }

  isGatewayOwned(topic: string): boolean {
    return this.ownedFilters.some((f) => topicMatches(f, topic));
  }

  /** The filters whose topics a (non-admin) role may read; a subscription must fit inside one. */
  readableFilters(role: Role, username: string): string[] {
    const own = `${this.prefix}response/${username}/#`;
    switch (role) {
      case 'service':
      case 'technician':
        return [`${this.prefix}#`];
      case 'kiosk':
      case 'device':
        return [...(this.readable.get(role) ?? []), own];
      default:
        return [];
    }
  }
}

/** The command of `P/request/<command>`, or null if `topic` is not exactly a request topic. */
export function requestCommand(topic: string, store: string): string | null {
  const head = `${storePrefix(store)}request/`;
  if (!topic.startsWith(head)) return null;
  const cmd = topic.slice(head.length);
  return isValidCommand(cmd) ? cmd : null;
}

/** Whether a client with `role`/`username` may publish on the concrete `topic`. */
export function canPublish(role: Role, username: string, topic: string, rules: AclRules): boolean {
  const store = rules.store;
  if (!isValidId(username) || !isValidId(store) || !isValidTopicName(topic)) return false;
  const p = rules.prefix;
  if (!topic.startsWith(p) || topic.length === p.length) return false; // also refuses `$SYS/...`
  if (rules.isGatewayOwned(topic)) return false;
  if (role === 'admin') return true;
  if (role === 'device') return topicMatches(`${p}ext/${username}/#`, topic);
  const cmd = requestCommand(topic, store);
  return cmd !== null && roleHas(role, rules.permissionOf(cmd));
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
export function canSubscribe(role: Role, username: string, topicFilter: string, rules: AclRules): boolean {
  if (!isValidId(username) || !isValidId(rules.store) || !isValidTopicFilter(topicFilter)) return false;
  if (role === 'admin') return true;
  if (matchesOtherUsersResponses(topicFilter, username, rules.store)) return false;
  return rules.readableFilters(role, username).some((allowed) => filterCovers(allowed, topicFilter));
}

/**
 * Whether a message on the concrete `topic` may be delivered to this client: defence in depth
 * behind canSubscribe (checked again at delivery, for retained messages and restored sessions).
 */
export function canReceive(role: Role, username: string, topic: string, rules: AclRules): boolean {
  if (role === 'admin') return true;
  if (!isValidId(username) || !isValidId(rules.store)) return false;
  const parts = topic.split('/');
  if (topic.startsWith(`${rules.prefix}response/`) && parts[4] !== username) return false;
  return rules.readableFilters(role, username).some((f) => topicMatches(f, topic));
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
  /** Made on the first decision: most connections never publish, and an idle one neither receives (bench/mqtt-bus.ts, idle). */
  private map: Map<string, V> | null = null;

  constructor(
    readonly maxEntries = ACL_CACHE_MAX_ENTRIES,
    readonly maxTopicLength = ACL_CACHE_MAX_TOPIC_LENGTH,
  ) {}

  get(topic: string): V | undefined {
    return this.map?.get(topic);
  }

  /** Remembers `value` for `topic` (unless the topic is too long to cache); returns `value`. */
  set(topic: string, value: V): V {
    if (topic.length > this.maxTopicLength || this.maxEntries <= 0) return value;
    const map = (this.map ??= new Map<string, V>());
    if (map.size >= this.maxEntries && !map.has(topic)) {
      map.delete(map.keys().next().value as string);
    }
    map.set(topic, value);
    return value;
  }

  get size(): number {
    return this.map?.size ?? 0;
  }
}
