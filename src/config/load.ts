import { accessSync, constants, readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { ErrorCode, ShelfgateError } from '../errors';
import type { DeviceDefinition } from '../devices/types';
import { configSchema, type Config } from './schema';

export interface ConfigIssue {
  /** e.g. `shelves[3].slots[1].unit_weight_g`; empty for the whole file. */
  path: string;
  message: string;
}

/** Formats a zod path as `a.b[3].c`. */
export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out;
}

export function formatIssues(issues: ConfigIssue[]): string {
  return issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('\n');
}

function zodIssueMessage(issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') return `unknown key(s) ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`;
  if (issue.code === 'invalid_type' && (issue as { input?: unknown }).input === undefined) return 'is required';
  return issue.message;
}

/**
 * Validates an already-parsed document. Returns every problem at once: schema errors first, then
 * cross-references (unknown bus or model, duplicate ids, a sensor used twice).
 */
export function validateConfig(raw: unknown, models: ReadonlyMap<string, DeviceDefinition>): { config?: Config; issues: ConfigIssue[] } {
  const parsed = configSchema.safeParse(raw, { reportInput: true });
  if (!parsed.success) {
    return { issues: parsed.error.issues.map((i) => ({ path: formatPath(i.path), message: zodIssueMessage(i) })) };
  }
  const cfg = parsed.data;
  const issues: ConfigIssue[] = [];
  const buses = new Map<string, { protocol?: string; index: number }>();
  cfg.buses.forEach((b, i) => {
    if (buses.has(b.id)) issues.push({ path: `buses[${i}].id`, message: `duplicate bus id "${b.id}"` });
    const def = models.get(b.model);
    if (!def) issues.push({ path: `buses[${i}].model`, message: `unknown device model "${b.model}" (known: ${[...models.keys()].sort().join(', ')})` });
    if (!/^(tcp:\/\/[^:/]+:\d{1,5}|mock:\/\/.+|\/.+)$/.test(b.path))
      issues.push({ path: `buses[${i}].path`, message: 'must be an absolute device path (/dev/serial/by-id/...), tcp://host:port or mock://name' });
    if (!buses.has(b.id)) buses.set(b.id, { protocol: def?.protocol, index: i });
  });
  const usernames = new Set<string>();
  cfg.mqtt.users.forEach((u, i) => {
    if (usernames.has(u.username)) issues.push({ path: `mqtt.users[${i}].username`, message: `duplicate username "${u.username}"` });
    usernames.add(u.username);
  });
  const shelfIds = new Set<string>();
  const sensors = new Map<string, string>();
  cfg.shelves.forEach((s, si) => {
    if (shelfIds.has(s.id)) issues.push({ path: `shelves[${si}].id`, message: `duplicate shelf id "${s.id}"` });
    shelfIds.add(s.id);
    const slotIds = new Set<string>();
    s.slots.forEach((slot, li) => {
      const at = `shelves[${si}].slots[${li}]`;
      if (slotIds.has(slot.id)) issues.push({ path: `${at}.id`, message: `duplicate slot id "${slot.id}" in shelf "${s.id}"` });
      slotIds.add(slot.id);
      const bus = buses.get(slot.sensor.bus);
      if (!bus) {
        issues.push({ path: `${at}.sensor.bus`, message: `unknown bus "${slot.sensor.bus}"` });
      } else if (bus.protocol === 'modbus-rtu' && slot.sensor.address === undefined) {
        issues.push({ path: `${at}.sensor.address`, message: 'is required on a Modbus bus (1-247)' });
      } else if (bus.protocol === 'mt-sics' && slot.sensor.address !== undefined) {
        issues.push({ path: `${at}.sensor.address`, message: 'must be omitted: an MT-SICS scale has no bus address' });
      }
      const key = `${slot.sensor.bus}/${slot.sensor.address ?? 0}`;
      const owner = sensors.get(key);
      if (owner) issues.push({ path: `${at}.sensor`, message: `sensor already used by ${owner}` });
      else sensors.set(key, `${s.id}/${slot.id}`);
      if (slot.gtin !== undefined && slot.unit_weight_g === undefined)
        issues.push({ path: `${at}.unit_weight_g`, message: 'is required when gtin is set (or learn it: shelfgate calibrate learn)' });
    });
  });
  // Files the sync transports read at start: a missing one is a config error now, not a crash loop later.
  for (const t of ['https', 'mqtt'] as const) {
    const slice = cfg.sync[t] as Record<string, unknown> | undefined;
    if (!slice || cfg.sync.transport !== t) continue;
    for (const key of ['token_file', 'password_file', 'ca_file', 'cert_file', 'key_file']) {
      const file = slice[key];
      if (typeof file !== 'string') continue;
      try {
        accessSync(file, constants.R_OK);
      } catch (e) {
        issues.push({ path: `sync.${t}.${key}`, message: `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` });
      }
    }
  }
  return issues.length ? { issues } : { config: deepFreeze(cfg), issues };
}

/** Reads, parses and validates a YAML config file. Throws ShelfgateError(CONFIG_*) with every issue in `details`. */
export function loadConfigFile(file: string, models: ReadonlyMap<string, DeviceDefinition>): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ShelfgateError(ErrorCode.CONFIG_UNREADABLE, `cannot read config ${file}: ${(e as Error).message}`, [
      { path: '', message: `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` },
    ]);
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length) {
    const issues = doc.errors.map((e) => ({ path: '', message: `YAML: ${e.message.split('\n')[0]}` }));
    throw new ShelfgateError(ErrorCode.CONFIG_INVALID, `config ${file} is not valid YAML`, issues);
  }
  const { config, issues } = validateConfig(doc.toJS(), models);
  if (!config) throw new ShelfgateError(ErrorCode.CONFIG_INVALID, `config ${file} is invalid`, issues);
  return config;
}

export function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o as object)) deepFreeze(v);
  }
  return o;
}
