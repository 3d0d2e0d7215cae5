import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/errors';
import { UNIT_LIMITS } from '../../src/config/check';
import { unitRuntime } from '../../bench/harness';

// No skip when systemd-analyze is missing: CI installs it (Debian package `systemd`, see
// scripts/setup.sh --test), and a hardening check that silently skips protects nothing.
const unitPath = path.resolve(__dirname, '../../systemd/shelfgate.service');
const MAX_EXPOSURE = 1.5;

function systemdAnalyze(args: string[]): { stdout: string; stderr: string; status: number | null } {
  const r = spawnSync('systemd-analyze', args, {
    encoding: 'utf8',
    env: { ...process.env, SYSTEMD_COLORS: '0', SYSTEMD_PAGER: 'cat', LC_ALL: 'C.UTF-8' },
    timeout: 20_000,
  });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    throw new Error(
      code === 'ENOENT'
        ? 'systemd-analyze not found: install the Debian package `systemd` (scripts/setup.sh --test does) to check systemd/shelfgate.service'
        : `systemd-analyze failed to run: ${r.error.message}`,
    );
  }
  return { stdout: r.stdout, stderr: r.stderr, status: r.status };
}

/** `Key=value` lines of the unit (comments and blank lines dropped). */
function unitLines(): string[] {
  return fs
    .readFileSync(unitPath, 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#') && !l.startsWith(';'));
}

describe('systemd/shelfgate.service', () => {
  it(`has an overall exposure level <= ${MAX_EXPOSURE} (systemd-analyze security --offline=yes)`, () => {
    const r = systemdAnalyze(['security', '--offline=yes', unitPath]);
    const m = /Overall exposure level for \S+: (\d+(?:\.\d+)?)/.exec(r.stdout);
    if (!m) throw new Error(`no "Overall exposure level" line in systemd-analyze output (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
    const exposure = Number(m[1]);
    expect(exposure, r.stdout).toBeLessThanOrEqual(MAX_EXPOSURE);
  });

  it('parses cleanly with systemd-analyze verify (no unknown keys or bad values)', () => {
    const r = systemdAnalyze(['verify', '--man=no', unitPath]);
    // Offline, verify may also mention things of this machine (a missing /usr/bin/node, no
    // network-online.target provider); only parse errors in the unit itself are failures here.
    const problems = `${r.stdout}\n${r.stderr}`
      .split('\n')
      .filter((l) => /Unknown (key|section)|Failed to parse|Invalid|Unknown lvalue|bad-setting|Missing '='/i.test(l));
    expect(problems).toEqual([]);
  });

  it('is Type=notify with main-process notifications and a watchdog', () => {
    const lines = unitLines();
    expect(lines).toContain('Type=notify');
    expect(lines).toContain('NotifyAccess=main');
    const wd = lines.find((l) => l.startsWith('WatchdogSec='));
    expect(wd, 'WatchdogSec= missing').toBeDefined();
    expect(Number(wd!.slice('WatchdogSec='.length))).toBeGreaterThan(0);
  });

  it('does not restart on EX_CONFIG (78), the code the daemon exits with on a bad config', () => {
    expect(ExitCode.CONFIG).toBe(78);
    const lines = unitLines();
    const rpes = lines.find((l) => l.startsWith('RestartPreventExitStatus='));
    expect(rpes, 'RestartPreventExitStatus= missing').toBeDefined();
    expect(rpes!.slice('RestartPreventExitStatus='.length).split(/\s+/)).toContain(String(ExitCode.CONFIG));
    expect(lines).toContain('Restart=on-failure');
  });

  it('sets LimitNOFILE, MemoryHigh and MemoryMax to the values config check compares the bus bounds with (UNIT_LIMITS)', () => {
    const lines = unitLines();
    const value = (key: string): string => {
      const l = lines.filter((x) => x.startsWith(`${key}=`));
      expect(l, `${key}= must appear exactly once`).toHaveLength(1);
      return l[0]!.slice(key.length + 1);
    };
    const bytes = (v: string): number => {
      const m = /^(\d+)([KMG]?)$/.exec(v);
      if (!m) throw new Error(`unexpected size ${v}`);
      return Number(m[1]) * { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2] as '' | 'K' | 'M' | 'G'];
    };
    expect(Number(value('LimitNOFILE'))).toBe(UNIT_LIMITS.LimitNOFILE);
    expect(bytes(value('MemoryHigh'))).toBe(UNIT_LIMITS.MemoryHigh);
    expect(bytes(value('MemoryMax'))).toBe(UNIT_LIMITS.MemoryMax);
    expect(UNIT_LIMITS.MemoryHigh).toBeLessThan(UNIT_LIMITS.MemoryMax);
  });

  it('keeps the state directory private (0700), as the daemon makes it itself outside systemd', () => {
    expect(unitLines()).toContain('StateDirectoryMode=0700');
  });

  it('does not set MemoryDenyWriteExecute=yes (it breaks the V8 JIT)', () => {
    expect(unitLines().filter((l) => /^MemoryDenyWriteExecute=(yes|true|1|on)$/i.test(l))).toEqual([]);
  });

  it('starts node with flags and an environment node accepts (as bench/harness.ts reads them)', () => {
    const unit = unitRuntime(fs.readFileSync(unitPath, 'utf8'));
    expect(unit.nodeArgs).toContain('--heap-growing-percent=20');
    expect(unit.env.NODE_OPTIONS).toBe('--max-semi-space-size=4');
    // node exits 9 ("bad option") on a flag it does not know, and refuses a V8 flag in NODE_OPTIONS it does not allow there.
    const r = spawnSync(process.execPath, [...unit.nodeArgs, '-e', 'process.stdout.write("ok")'], { env: { ...process.env, ...unit.env }, encoding: 'utf8', timeout: 30_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('ok');
  });
});
