/**
 * What the simulator CLIs (cli.ts, oepl-ap/cli.ts, central/cli.ts) share: the usage error and its
 * exit code 64, -h/--help, HOST:PORT and number flags, a failure line with its exit code, and
 * serving until SIGINT/SIGTERM (or `signal` aborts) after the one line that says what is served.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ExitCode } from '../src/errors';
import { waitForStop } from '../src/util/signals';

export interface Writer {
  write(s: string): unknown;
}

/** A bad flag value, found while building the options: reported like any usage error. */
export class UsageError extends Error {}

export interface Cli {
  out: Writer;
  err: Writer;
  /** Writes `PREFIX: msg` and the usage text to stderr; returns 64. */
  usage(msg: string): number;
  /** Writes `PREFIX: msg` to stderr; returns `code`. */
  fail(msg: string, code: number): number;
}

/** `prefix` starts every error line (`shelfgate sim oepl-ap`); stdout/stderr default to the process's. */
export function cliFor(io: { stdout?: Writer; stderr?: Writer }, prefix: string, usageText: string): Cli & { usageText: string } {
  const out = io.stdout ?? process.stdout;
  const err = io.stderr ?? process.stderr;
  return {
    out,
    err,
    usageText,
    usage: (msg) => {
      err.write(`${prefix}: ${msg}\n${usageText}`);
      return ExitCode.USAGE;
    },
    fail: (msg, code) => {
      err.write(`${prefix}: ${msg}\n`);
      return code;
    },
  };
}

/**
 * parseArgs, strict, with `argv` as the arguments. Returns an exit code instead when done: 64 after
 * reporting a parse error, 0 after printing the usage text for -h/--help (the config must declare `help`).
 */
export function parseCliArgs<T extends Omit<ParseArgsConfig, 'args' | 'strict'>>(
  cli: Cli & { usageText: string },
  argv: string[],
  config: T,
): ReturnType<typeof parseArgs<T & { args: string[]; strict: true }>> | number {
  let parsed: ReturnType<typeof parseArgs<T & { args: string[]; strict: true }>>;
  try {
    parsed = parseArgs({ ...config, args: argv, strict: true });
  } catch (e) {
    return cli.usage((e as Error).message);
  }
  if ((parsed.values as { help?: boolean }).help) {
    cli.out.write(cli.usageText);
    return ExitCode.OK;
  }
  return parsed;
}

/** `HOST:PORT` or `[IPv6]:PORT`, port 0-65535; null if not. */
export function parseHostPort(s: string): { host: string; port: number } | null {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:]+)):(\d{1,5})$/.exec(s);
  if (!m || Number(m[3]) > 65535) return null;
  return { host: (m[1] ?? m[2]) as string, port: Number(m[3]) };
}

/** The number flag `--name` (`dflt` if not given); a UsageError if it is no number or out of range. */
export function parseNumber(name: string, s: string | undefined, dflt: number, o: { int?: boolean; min?: number; max?: number } = {}): number {
  if (s === undefined) return dflt;
  const v = Number(s);
  if (s.trim() === '' || !Number.isFinite(v) || (o.int && !Number.isInteger(v)) || (o.min !== undefined && v < o.min) || (o.max !== undefined && v > o.max)) {
    const range = o.min !== undefined || o.max !== undefined ? ` in ${o.min ?? '-inf'}..${o.max ?? 'inf'}` : '';
    throw new UsageError(`--${name} must be ${o.int ? 'an integer' : 'a number'}${range}, got ${JSON.stringify(s)}`);
  }
  return v;
}

/**
 * Prints the line that says what is served (tests read the address there), runs `ready` (the
 * caller's start-up hooks), then waits for SIGINT/SIGTERM or `signal`; returns 0.
 */
export async function serveUntilStopped(out: Writer, line: string, signal: AbortSignal | undefined, ready?: () => void): Promise<number> {
  out.write(`${line}\n`);
  ready?.();
  await waitForStop(signal);
  return ExitCode.OK;
}

/** Why a serial simulator's command line names no transport or several (null when exactly one of --tcp, --pty, --port). */
export function transportProblem(values: { tcp?: string | undefined; pty?: string | undefined; port?: string | undefined }): string | null {
  const given = [values.tcp, values.pty, values.port].filter((v) => v !== undefined).length;
  return given === 1 ? null : 'give exactly one of --tcp HOST:PORT, --pty PATH, --port DEVICE';
}
