/**
 * Structure rules checked on the source text: no import cycles (a cycle makes start-up order depend
 * on which module is required first), and the core never imports a feature (a new capability must
 * not need a core change).
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(__dirname, '../..');

function tsFiles(dir: string, out: string[] = []): string[] {
  for (const f of readdirSync(dir)) {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) tsFiles(p, out);
    else if (f.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** Relative imports of a file, resolved to files; `import type` and `export type` are left out unless `withTypes`. */
function importsOf(file: string, withTypes: boolean): string[] {
  const src = readFileSync(file, 'utf8');
  const out: string[] = [];
  const re = /^(?:import|export)\s+(type\s+)?[^'";]*?from\s+'(\.{1,2}\/[^']+)'|(?:import|require)\(\s*'(\.{1,2}\/[^']+)'\s*\)/gm;
  for (const m of src.matchAll(re)) {
    if (m[1] && !withTypes) continue;
    const spec = m[2] ?? m[3]!;
    const base = resolve(dirname(file), spec);
    for (const cand of [`${base}.ts`, join(base, 'index.ts')]) {
      try {
        if (statSync(cand).isFile()) {
          out.push(cand);
          break;
        }
      } catch {
        // not this one
      }
    }
  }
  return out;
}

function findCycles(files: string[], withTypes: boolean): string[][] {
  const graph = new Map(files.map((f) => [f, importsOf(f, withTypes)]));
  const cycles: string[][] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: string[] = [];
  const visit = (f: string): void => {
    state.set(f, 'visiting');
    stack.push(f);
    for (const g of graph.get(f) ?? []) {
      if (state.get(g) === 'visiting') cycles.push([...stack.slice(stack.indexOf(g)), g].map((x) => relative(ROOT, x)));
      else if (!state.has(g)) visit(g);
    }
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of files) if (!state.has(f)) visit(f);
  return cycles;
}

describe('architecture', () => {
  const files = [...tsFiles(join(ROOT, 'src')), ...tsFiles(join(ROOT, 'simulators'))];

  it('has no import cycles in src/ and simulators/ (runtime imports and type imports alike)', () => {
    expect(findCycles(files, false)).toEqual([]);
    expect(findCycles(files, true)).toEqual([]);
  });

  it('the core never imports a feature: only the composition root (src/features/index.ts) and entry points list them', () => {
    const entryPoints = new Set(['src/cli.ts', 'src/daemon.ts', 'src/demo.ts'].map((f) => join(ROOT, f)));
    const offenders = files
      .filter((f) => !relative(ROOT, f).startsWith('src/features/') && !relative(ROOT, f).startsWith('simulators/') && !entryPoints.has(f))
      .flatMap((f) => importsOf(f, true).filter((g) => relative(ROOT, g).startsWith('src/features/')).map((g) => `${relative(ROOT, f)} -> ${relative(ROOT, g)}`));
    expect(offenders).toEqual([]);
  });
});
