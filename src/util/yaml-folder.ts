/**
 * A folder of YAML files, one record per file, validated with every problem of every file
 * reported at once as `file: path: message`: what the device definitions (src/devices/definitions.ts)
 * and the label types (src/features/labels/label-types.ts) are loaded with.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { deepFreeze, formatPath } from '../config/load';
import { ErrorCode, ShelfgateError } from '../errors';

export interface DefinitionIssue {
  /** The YAML file, as given to the loader. */
  file: string;
  /** e.g. `fields.weight.register`; empty for the whole file. */
  path: string;
  message: string;
}

/** One zod issue as a line a person editing the YAML understands. */
export function zodIssueMessage(issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') return `unknown key(s) ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`;
  if (issue.code === 'invalid_type' && (issue as { input?: unknown }).input === undefined) return 'is required';
  return issue.message;
}

/** A failed zod parse of `file` as issues. */
export function zodIssues(file: string, error: z.ZodError): DefinitionIssue[] {
  return error.issues.map((i) => ({ file, path: formatPath(i.path), message: zodIssueMessage(i) }));
}

export interface YamlFolderOptions<T extends { id: string }> {
  /** What the files hold, in the error messages: `device definitions: cannot read DIR`, `invalid device definitions:`. */
  what: string;
  /** The issue when the folder holds no `*.yaml` / `*.yml`. */
  emptyMessage: string;
  /** Validates one parsed document; `value` only when it is valid. */
  validate(raw: unknown, file: string): { value?: T | undefined; issues: DefinitionIssue[] };
  /** Checks a valid record with a new id against the ones before it (issues it reports do not drop the record). */
  check?(value: T, file: string, issues: DefinitionIssue[]): void;
}

/**
 * Loads and validates every `*.yaml` / `*.yml` in `dir` in name order, keyed by id and frozen; an id
 * in two files is an issue. Throws ShelfgateError(DEVICE_DEFINITION_INVALID) listing every issue,
 * with the DefinitionIssue[] in `details`.
 */
export function loadYamlFolder<T extends { id: string }>(dir: string, opts: YamlFolderOptions<T>): Map<string, T> {
  const root = resolve(dir);
  let names: string[];
  try {
    names = readdirSync(root).filter((n) => /\.ya?ml$/.test(n)).sort();
  } catch (e) {
    const issues = [{ file: root, path: '', message: `cannot read folder: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` }];
    throw new ShelfgateError(ErrorCode.DEVICE_DEFINITION_INVALID, `${opts.what}: cannot read ${root}`, issues);
  }
  const issues: DefinitionIssue[] = [];
  const out = new Map<string, T>();
  const fileOf = new Map<string, string>();
  if (names.length === 0) issues.push({ file: root, path: '', message: opts.emptyMessage });
  for (const name of names) {
    const file = join(root, name);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      issues.push({ file, path: '', message: `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` });
      continue;
    }
    const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
    if (doc.errors.length) {
      for (const e of doc.errors) issues.push({ file, path: '', message: `YAML: ${e.message.split('\n')[0]}` });
      continue;
    }
    const r = opts.validate(doc.toJS(), file);
    issues.push(...r.issues);
    if (!r.value) continue;
    const prev = fileOf.get(r.value.id);
    if (prev) {
      issues.push({ file, path: 'id', message: `duplicate id "${r.value.id}" (also in ${prev})` });
      continue;
    }
    opts.check?.(r.value, file, issues);
    fileOf.set(r.value.id, file);
    out.set(r.value.id, deepFreeze(r.value));
  }
  if (issues.length) {
    const lines = issues.map((i) => `${i.file}: ${i.path ? `${i.path}: ` : ''}${i.message}`);
    throw new ShelfgateError(ErrorCode.DEVICE_DEFINITION_INVALID, `invalid ${opts.what}:\n${lines.join('\n')}`, issues);
  }
  return out;
}
