import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach } from 'vitest';

export { waitFor, waitForEvent } from './wait';

export const ROOT = resolve(__dirname, '../..');
export const CLI = join(ROOT, 'dist/src/cli.js');

export function tmp(prefix = 'sg-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function assertBuilt(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: whole-daemon tests run the compiled daemon; use \`npm test\` (it builds first)`);
}

export interface RunningDaemon {
  proc: ChildProcess;
  logs: Array<Record<string, unknown>>;
  stderr: string[];
  mqttPort: number;
  /** Port of the mqtts listener (`mqtt.tls`), when configured. */
  mqttsPort?: number;
  /** Port of the wss listener (`mqtt.wss`), when configured. */
  wssPort?: number;
  /** Base URL of the HTTP server (`http`), when configured, e.g. `http://127.0.0.1:40123`. */
  httpUrl?: string;
  /** Resolves with the first log line matching. */
  waitLog(pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  exited: Promise<number | null>;
}

/** Runs `shelfgate` with arguments and collects its output (for exit-code tests). */
export function runCli(args: string[], opts: { timeoutMs?: number; input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  assertBuilt();
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      rej(new Error(`shelfgate ${args.join(' ')} did not exit within ${opts.timeoutMs ?? 15000} ms; stdout: ${stdout} stderr: ${stderr}`));
    }, opts.timeoutMs ?? 15_000);
    p.on('exit', (code) => {
      clearTimeout(timer);
      res({ code, stdout, stderr });
    });
    p.stdin.end(opts.input ?? '');
  });
}

/**
 * Writes the config to `dir/shelfgate.yaml` and starts the compiled daemon; resolves once it logged
 * `gateway ready`. `env` is added to the daemon's environment (e.g. NOTIFY_SOCKET for a test acting as systemd).
 */
export async function startDaemon(config: object, dir: string, readyTimeoutMs = 20_000, env: NodeJS.ProcessEnv = {}): Promise<RunningDaemon> {
  assertBuilt();
  const file = join(dir, 'shelfgate.yaml');
  writeFileSync(file, stringify(config));
  const proc = spawn(process.execPath, [CLI, 'run', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NOTIFY_SOCKET: '', ...env } });
  const logs: Array<Record<string, unknown>> = [];
  const stderr: string[] = [];
  const waiters: Array<{ pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }> = [];
  let buf = '';
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      let obj: Record<string, unknown>;
      try {
        obj = JSON.parse(line) as Record<string, unknown>;
      } catch {
        obj = { msg: line };
      }
      logs.push(obj);
      for (const w of [...waiters]) if (w.pred(obj)) (waiters.splice(waiters.indexOf(w), 1), w.resolve(obj));
    }
  });
  proc.stderr!.on('data', (d: Buffer) => stderr.push(d.toString()));
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  const waitLog = (pred: (l: Record<string, unknown>) => boolean, timeoutMs = 15_000): Promise<Record<string, unknown>> => {
    const hit = logs.find(pred);
    if (hit) return Promise.resolve(hit);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`log line not seen within ${timeoutMs} ms; last logs: ${JSON.stringify(logs.slice(-8))} stderr: ${stderr.join('')}`)), timeoutMs);
      waiters.push({ pred, resolve: (l) => (clearTimeout(t), resolve(l)) });
      void exited.then((code) => {
        clearTimeout(t);
        reject(new Error(`daemon exited (${code}) before the log line; stderr: ${stderr.join('')} logs: ${JSON.stringify(logs.slice(-8))}`));
      });
    });
  };
  const ready = await waitLog((l) => l.msg === 'gateway ready', readyTimeoutMs);
  const mqttPort = (ready.mqtt as { port: number }).port;
  const listeners = (ready.listeners ?? []) as Array<{ kind: string; port: number }>;
  const mqttsPort = listeners.find((l) => l.kind === 'mqtts')?.port;
  const wssPort = listeners.find((l) => l.kind === 'wss')?.port;
  const httpUrl = (ready.http as { url?: string } | undefined)?.url;
  return {
    proc,
    logs,
    stderr,
    mqttPort,
    ...(mqttsPort !== undefined ? { mqttsPort } : {}),
    ...(wssPort !== undefined ? { wssPort } : {}),
    ...(httpUrl !== undefined ? { httpUrl } : {}),
    waitLog,
    exited,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      proc.kill(signal);
      const t = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}

/** An MQTT 3.1.1 client on 127.0.0.1 that records every message. */
export async function connectClient(port: number, username?: string, password?: string): Promise<{ client: MqttClient; messages: Array<{ topic: string; payload: string; retain: boolean }> }> {
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, username, password, reconnectPeriod: 0, connectTimeout: 5_000 });
  const messages: Array<{ topic: string; payload: string; retain: boolean }> = [];
  client.on('message', (topic, payload, packet) => messages.push({ topic, payload: payload.toString(), retain: packet.retain }));
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  return { client, messages };
}

/**
 * A cleanup stack run after each test (last registered first); a failing cleanup does not stop
 * the others. Call at module level: `const cleanups = useCleanups();` then `cleanups.push(fn)`.
 */
export function useCleanups(): Array<() => Promise<void> | void> {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    while (cleanups.length > 0) {
      try {
        await cleanups.pop()!();
      } catch {
        // keep cleaning
      }
    }
  });
  return cleanups;
}
