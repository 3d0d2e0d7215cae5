/** Small helpers shared by the benchmarks: machine description, child processes, RSS, number format. */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpus, totalmem } from 'node:os';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve as resolvePath } from 'node:path';
import { stringify } from 'yaml';
import type { LoadCellPhysics } from '../simulators/physics';

export function machine(): string {
  const c = cpus();
  let kernel = '';
  try {
    kernel = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  } catch {
    /* not linux */
  }
  return `${c.length} x ${c[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, Linux ${kernel}, Node ${process.version}`;
}

export async function stopProcess(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const done = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  const t = setTimeout(() => p.kill('SIGKILL'), 5_000);
  await done;
  clearTimeout(t);
}

/** CPU time (user + system) a process has used so far, in ms (Linux /proc; 0 elsewhere). */
export function processCpuMs(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime + stime, USER_HZ = 100
  } catch {
    return 0;
  }
}

/** Resident set size of a process, in MB (Linux /proc; 0 elsewhere). */
export function processRssMb(pid: number | undefined): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

export function rssMb(): number {
  return process.memoryUsage().rss / 2 ** 20;
}

export function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

/**
 * Simulated shoppers in a benchmark's simulator process: every slot is picked (1-2 items) or, when
 * nearly empty, restocked about `perSlotPerMin` times a minute, in 50 ms steps.
 */
export function startShoppers(physics: readonly LoadCellPhysics[], rng: () => number, perSlotPerMin: number): NodeJS.Timeout {
  const actionEveryMs = 60_000 / (perSlotPerMin * physics.length);
  return setInterval(() => {
    for (let n = Math.max(1, Math.round(50 / actionEveryMs)); n > 0; n--) {
      const p = physics[Math.floor(rng() * physics.length)]!;
      if (p.items > 5) p.pick(1 + Math.floor(rng() * 2));
      else p.put(20);
    }
  }, 50);
}

export interface BenchDaemon {
  proc: ChildProcess;
  mqttPort: number;
  /** The daemon's `gateway ready` log line (its listeners, the HTTP URL when configured). */
  ready: Record<string, unknown>;
  stop(): Promise<void>;
}

/** How the shipped systemd unit runs node: the flags before the script in ExecStart and the unit's Environment= lines. */
export interface UnitRuntime {
  nodeArgs: string[];
  env: Record<string, string>;
}

/**
 * Reads systemd/shelfgate.service so a bench measures the daemon as a store runs it (its V8 heap
 * flags and malloc setting change RSS and CPU), not as a bare `node` would. Tested in
 * test/integration/systemd-unit.test.ts against the real unit file.
 */
export function unitRuntime(unitText = readFileSync(resolvePath(__dirname, '../../systemd/shelfgate.service'), 'utf8')): UnitRuntime {
  // (__dirname is dist/bench when run: the default path is for the built bench.)
  const nodeArgs: string[] = [];
  const env: Record<string, string> = {};
  let sawExec = false;
  for (const raw of unitText.split('\n')) {
    const line = raw.trim();
    const exec = /^ExecStart=(\S+)\s+(.*)$/.exec(line);
    if (exec) {
      sawExec = true;
      if (!/(^|\/)node$/.test(exec[1]!)) throw new Error(`ExecStart does not start node: ${line}`);
      for (const word of exec[2]!.split(/\s+/)) {
        if (!word.startsWith('-')) break; // the script: flags end here
        nodeArgs.push(word);
      }
      continue;
    }
    const e = /^Environment=([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (e) env[e[1]!] = e[2]!;
  }
  if (!sawExec) throw new Error('no ExecStart= in the unit');
  return { nodeArgs, env };
}

/** The node flags and environment startBenchDaemon gives the daemon, for a bench's report header. */
export function daemonRuntimeLine(): string {
  const unit = process.env.BENCH_DAEMON_BARE === '1' ? { nodeArgs: [], env: {} } : unitRuntime();
  const extra = process.env.BENCH_DAEMON_NODE_ARGS ?? '';
  const env = Object.entries(unit.env).map(([k, v]) => `${k}=${v}`).join(' ');
  return `daemon: node ${[...unit.nodeArgs, extra].filter((a) => a !== '').join(' ') || '(no flags)'}; ${process.env.BENCH_DAEMON_BARE === '1' ? 'bare (BENCH_DAEMON_BARE=1), not the unit' : `as systemd/shelfgate.service runs it (${env})`}`;
}

/**
 * The real daemon, `node dist/src/cli.js run --config <dir>/shelfgate.yaml`, started with the
 * node flags and environment of the shipped unit (unitRuntime; BENCH_DAEMON_BARE=1 for a bare
 * node) plus BENCH_DAEMON_NODE_ARGS for it alone (e.g. --cpu-prof or a heap limit); resolves at
 * its `gateway ready` line with its MQTT port. Its stdout is drained, not parsed, after that.
 */
export async function startBenchDaemon(config: object, dir: string, timeoutMs = 60_000): Promise<BenchDaemon> {
  const file = join(dir, 'shelfgate.yaml');
  writeFileSync(file, stringify(config), { mode: 0o600 });
  const unit = process.env.BENCH_DAEMON_BARE === '1' ? { nodeArgs: [], env: {} } : unitRuntime();
  const nodeArgs = [...unit.nodeArgs, ...(process.env.BENCH_DAEMON_NODE_ARGS ?? '').split(' ').filter((a) => a !== '')];
  const proc = spawn(process.execPath, [...nodeArgs, resolvePath(__dirname, '../src/cli.js'), 'run', '--config', file], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...unit.env, NOTIFY_SOCKET: '' },
  });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    let buf = '';
    let ready = false;
    const timer = setTimeout(() => reject(new Error(`daemon not ready within ${timeoutMs} ms: ${buf.slice(-2000)} ${stderr}`)), timeoutMs);
    proc.stdout!.on('data', (d: Buffer) => {
      if (ready) return;
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (!line.includes('"gateway ready"')) continue;
        ready = true;
        clearTimeout(timer);
        resolve(JSON.parse(line) as Record<string, unknown>);
        return;
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      if (!ready) reject(new Error(`daemon exited ${code}: ${buf.slice(-2000)} ${stderr}`));
    });
  });
  return { proc, ready, mqttPort: (ready as { mqtt: { port: number } }).mqtt.port, stop: () => stopProcess(proc) };
}
