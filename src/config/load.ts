import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { ErrorCode, ShelfgateError } from '../errors';
import type { DeviceDefinition } from '../devices/types';
import { composeConfigSchema, type Config, type FeatureConfigSlice } from './schema';
import { checkConfigFileMode, checkDangerousSettings, type CheckOptions } from './check';

import type { ConfigIssue } from './issue';

export type { ConfigIssue } from './issue';

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

/** What config validation needs of a feature (src/core/feature.ts). */
export interface ConfigFeature extends FeatureConfigSlice {
  name: string;
  validate?(config: Config, ctx: { models: ReadonlyMap<string, DeviceDefinition> }): ConfigIssue[];
}

/** `issues` refuse the config (exit 78); `warnings` are reported and the config is still used. */
export interface ValidationResult {
  config?: Config;
  issues: ConfigIssue[];
  warnings: ConfigIssue[];
}

/**
 * Validates an already-parsed document against the core's schema and the features' slices.
 * Returns every problem at once: schema errors first, then cross-references (duplicate ids, files
 * that cannot be read, then each feature's: unknown bus or model, a sensor used twice...), then
 * dangerous settings (src/config/check.ts), which may also be warnings.
 */
export function validateConfig(raw: unknown, models: ReadonlyMap<string, DeviceDefinition>, features: readonly ConfigFeature[], opts: CheckOptions = {}): ValidationResult {
  const parsed = composeConfigSchema(features).safeParse(raw, { reportInput: true });
  if (!parsed.success) {
    return { issues: parsed.error.issues.map((i) => ({ path: formatPath(i.path), message: zodIssueMessage(i) })), warnings: [] };
  }
  const cfg = parsed.data;
  const issues: ConfigIssue[] = [];
  const usernames = new Set<string>();
  cfg.mqtt.users.forEach((u, i) => {
    if (usernames.has(u.username)) issues.push({ path: `mqtt.users[${i}].username`, message: `duplicate username "${u.username}"` });
    usernames.add(u.username);
  });
  const shelfIds = new Set<string>();
  cfg.shelves.forEach((s, si) => {
    if (shelfIds.has(s.id)) issues.push({ path: `shelves[${si}].id`, message: `duplicate shelf id "${s.id}"` });
    shelfIds.add(s.id);
    const slotIds = new Set<string>();
    s.slots.forEach((slot, li) => {
      const at = `shelves[${si}].slots[${li}]`;
      if (slotIds.has(slot.id)) issues.push({ path: `${at}.id`, message: `duplicate slot id "${slot.id}" in shelf "${s.id}"` });
      // `<shelf>/<slot>` is the device id of the slot's events at central: at most 128 characters (docs/central-api.yaml)
      if (s.id.length + 1 + slot.id.length > 128) issues.push({ path: `${at}.id`, message: `shelf id and slot id together must be at most 127 characters (the event device id "<shelf>/<slot>" is limited to 128)` });
      slotIds.add(slot.id);
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
  for (const f of features) if (f.validate) issues.push(...f.validate(cfg, { models }));
  const danger = checkDangerousSettings(cfg, opts);
  issues.push(...danger.errors);
  return issues.length ? { issues, warnings: danger.warnings } : { config: deepFreeze(cfg), issues, warnings: danger.warnings };
}

/** A refused config (CONFIG_INVALID): every error in `details`, and the warnings found beside them. */
export class ConfigInvalidError extends ShelfgateError {
  constructor(
    message: string,
    issues: ConfigIssue[],
    readonly warnings: ConfigIssue[],
  ) {
    super(ErrorCode.CONFIG_INVALID, message, issues);
  }
}

/**
 * Reads, parses and validates a YAML config file; returns the config and its warnings (a config
 * readable by others that holds password hashes is one of them). Throws ShelfgateError(CONFIG_*)
 * with every issue in `details` (ConfigInvalidError, with the warnings too, once the YAML parsed).
 */
export function loadConfig(file: string, models: ReadonlyMap<string, DeviceDefinition>, features: readonly ConfigFeature[], opts: CheckOptions = {}): { config: Config; warnings: ConfigIssue[] } {
  let text: string;
  let mode: number;
  try {
    text = readFileSync(file, 'utf8');
    mode = statSync(file).mode;
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
  const { config, issues, warnings } = validateConfig(doc.toJS(), models, features, opts);
  if (!config) throw new ConfigInvalidError(`config ${file} is invalid`, issues, warnings);
  const modeWarning = checkConfigFileMode(file, mode, config);
  return { config, warnings: modeWarning ? [modeWarning, ...warnings] : warnings };
}

export function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o as object)) deepFreeze(v);
  }
  return o;
}
