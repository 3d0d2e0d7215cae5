/**
 * What every technician command shares: it talks to the RUNNING gateway over its local MQTT bus
 * with the technician's own credentials (so the ACL, the permissions and the audit log apply as to
 * any client), never to its SQLite file or serial ports, which the daemon owns.
 *
 * Where to connect comes from the flags, else the environment, so a technician sets it once per
 * shell: `--url` / $SHELFGATE_URL (default mqtt://127.0.0.1:1883), `--store` / $SHELFGATE_STORE,
 * `-u` / $SHELFGATE_USER, and the password only from the environment ($SHELFGATE_PASSWORD, or the
 * variable `--password-env` names): a password on the command line would be in `ps` and the shell
 * history.
 */
import type { Command } from 'commander';
import type { BusClient } from '../bus/request-client';
import { ExitCode } from '../errors';

export interface CliIo {
  stdout: { write(s: string): unknown; isTTY?: boolean };
  stderr: { write(s: string): unknown; isTTY?: boolean };
  env: NodeJS.ProcessEnv;
}

export const defaultIo = (): CliIo => ({ stdout: process.stdout, stderr: process.stderr, env: process.env });

export interface ConnOpts {
  url?: string;
  store?: string;
  username?: string;
  passwordEnv?: string;
}

/** The connection flags, on a commander command. */
export function withConnOptions(c: Command, opts: { json?: boolean } = { json: true }): Command {
  c.option('--url <url>', 'local bus URL (default: $SHELFGATE_URL, else mqtt://127.0.0.1:1883)')
    .option('--store <id>', 'store id, store_id in the gateway config (default: $SHELFGATE_STORE)')
    .option('-u, --username <name>', 'technician user (default: $SHELFGATE_USER)')
    .option('--password-env <var>', 'environment variable holding the password', 'SHELFGATE_PASSWORD');
  if (opts.json) c.option('--json', 'print JSON for scripts');
  return c;
}

export type Connected<T> = { ok: true; value: T } | { ok: false; code: number };

/**
 * Connects, runs `fn`, closes. Errors are written as `shelfgate <what>: <message>` on stderr:
 * exit 64 for a missing setting, 1 for a refused or failed request.
 */
export async function withClient<T>(what: string, o: ConnOpts, io: CliIo, fn: (c: BusClient) => Promise<T>): Promise<Connected<T>> {
  const url = o.url ?? io.env.SHELFGATE_URL ?? 'mqtt://127.0.0.1:1883';
  const store = o.store ?? io.env.SHELFGATE_STORE;
  const username = o.username ?? io.env.SHELFGATE_USER;
  const passwordVar = o.passwordEnv ?? 'SHELFGATE_PASSWORD';
  const password = io.env[passwordVar];
  const missing = [!store && '--store (or $SHELFGATE_STORE)', !username && '-u (or $SHELFGATE_USER)', !password && `the technician password in $${passwordVar}`].filter(Boolean);
  if (missing.length) {
    io.stderr.write(`shelfgate ${what}: set ${missing.join(', ')}\n`);
    return { ok: false, code: ExitCode.USAGE };
  }
  let client: BusClient | undefined;
  try {
    // loaded here, not at the top: `shelfgate --help` on a Pi should not load the MQTT client
    const { BusClient } = await import('../bus/request-client');
    client = await BusClient.connect({ url, username: username!, password: password!, store: store! });
    return { ok: true, value: await fn(client) };
  } catch (e) {
    io.stderr.write(`shelfgate ${what}: ${(e as Error).message}\n`);
    return { ok: false, code: ExitCode.FAILURE };
  } finally {
    await client?.close().catch(() => undefined);
  }
}

/** Left-aligned columns, the last one unpadded. */
export function table(head: string[], rows: string[][]): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  return [fmt(head), ...rows.map(fmt)];
}

/** `12 s`, `5 min`, `3 h`, `2 d` since an RFC 3339 time; `-` for none. */
export function ago(isoTime: string | null | undefined, now = Date.now()): string {
  if (!isoTime) return '-';
  const s = Math.max(0, Math.round((now - Date.parse(isoTime)) / 1000));
  return s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : s < 172_800 ? `${Math.round(s / 3600)} h` : `${Math.round(s / 86_400)} d`;
}
