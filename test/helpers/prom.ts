/**
 * A small parser of the Prometheus text exposition format (0.0.4), written for the tests apart from
 * the exporter (prom-client formats, this reads), so a test checks what a scraper would see.
 */
export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Exposition {
  samples: PromSample[];
  /** `# TYPE` by metric family name. */
  types: Map<string, string>;
  help: Map<string, string>;
  /** The one sample with this name whose labels include `labels`; undefined when none; throws when several. */
  value(name: string, labels?: Record<string, string>): number | undefined;
  /** Every sample name (for histograms: _bucket, _sum, _count). */
  names(): Set<string>;
}

function unescapeLabel(v: string): string {
  return v.replace(/\\(n|\\|")/g, (_, c: string) => (c === 'n' ? '\n' : c));
}

function parseValue(v: string): number {
  // Prometheus reads these case-insensitively (Go's ParseFloat); prom-client writes `Nan`.
  const lower = v.toLowerCase();
  if (lower === '+inf' || lower === 'inf') return Infinity;
  if (lower === '-inf') return -Infinity;
  if (lower === 'nan') return NaN;
  const n = Number(v);
  if (Number.isNaN(n)) throw new Error(`not a sample value: ${v}`);
  return n;
}

export function parseExposition(text: string): Exposition {
  const samples: PromSample[] = [];
  const types = new Map<string, string>();
  const help = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
      if (m) (m[1] === 'TYPE' ? types : help).set(m[2]!, m[3]!);
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$/.exec(line);
    if (!m) throw new Error(`not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    if (m[3]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g;
      let consumed = 0;
      for (const lm of m[3].matchAll(re)) {
        labels[lm[1]!] = unescapeLabel(lm[2]!);
        consumed += lm[0].length;
      }
      if (consumed !== m[3].length) throw new Error(`bad label set: ${m[3]}`);
    }
    samples.push({ name: m[1]!, labels, value: parseValue(m[4]!) });
  }
  return {
    samples,
    types,
    help,
    value(name, want = {}) {
      const found = samples.filter((s) => s.name === name && Object.entries(want).every(([k, v]) => s.labels[k] === v));
      if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(want)}`);
      return found[0]?.value;
    },
    names() {
      return new Set(samples.map((s) => s.name));
    },
  };
}
