/**
 * Dangerous settings through the compiled CLI: every refusal makes both `shelfgate run` and
 * `shelfgate config check` exit 78 naming the key; a config with warnings starts and logs them;
 * the store's files are private under the usual umask 022.
 */
import { execFileSync, spawn } from 'node:child_process';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/bus/auth';
import { PUBLISHED_PLACEHOLDER_HASHES } from '../../src/config/check';
import { CLI, connectClient, runCli, startDaemon, tmp, useCleanups } from '../helpers/daemon';

const cleanups = useCleanups();
const dir = tmp('sg-cfgcheck-e2e-');
let hash: string;
let weakHash: string;
let oldUmask: number;

beforeAll(async () => {
  // The usual shell umask: before issue #8 the database came out 0644 under it.
  // (vitest runs each file in its own forked process, so this does not leak into other files.)
  oldUmask = process.umask(0o022);
  [hash, weakHash] = await Promise.all([hashPassword('pw-strong'), hashPassword('pw-weak', { N: 1024 })]);
  for (const name of ['gw', 'other']) {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.crt`), '-days', '365', '-subj', `/CN=${name}`], { stdio: 'ignore' });
  }
});
afterAll(() => {
  process.umask(oldUmask);
});

function config(name: string, over: Record<string, unknown> = {}, mqtt: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    store_id: 'cfg-e2e',
    data_dir: join(dir, name, 'state'),
    mqtt: { host: '127.0.0.1', port: 0, users: [{ username: 'kiosk', role: 'kiosk', password_hash: hash }], ...mqtt },
    // nothing listens on port 1: the bus stays offline and retries, which is all these tests need
    buses: [{ id: 'b1', path: 'tcp://127.0.0.1:1', model: 'generic-modbus-loadcell', reconnect: { initial_ms: 1000, max_ms: 5000 } }],
    shelves: [{ id: 'sh', slots: [{ id: 'a', sensor: { bus: 'b1', address: 1 }, unit_weight_g: 100 }] }],
    ...over,
  };
}

function write(name: string, cfg: object): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, stringify(cfg), { mode: 0o640 });
  return file;
}

const REFUSALS: Array<[string, () => Record<string, unknown>, string]> = [
  ['plain listener on the LAN', () => config('r1', {}, { host: '0.0.0.0' }), 'mqtt.host: plain MQTT listener on non-loopback address 0.0.0.0'],
  ['unreadable TLS certificate', () => config('r2', {}, { tls: { host: '127.0.0.1', port: 0, cert_file: join(dir, 'missing.crt'), key_file: join(dir, 'gw.key') } }), `mqtt.tls.cert_file: cannot read ${join(dir, 'missing.crt')}: ENOENT`],
  ['TLS key not the certificate\'s', () => config('r3', {}, { wss: { host: '127.0.0.1', port: 0, cert_file: join(dir, 'gw.crt'), key_file: join(dir, 'other.key') } }), 'mqtt.wss.key_file: '],
  ["the example's placeholder hash", () => config('r4', {}, { users: [{ username: 'kiosk-1', role: 'kiosk', password_hash: PUBLISHED_PLACEHOLDER_HASHES[0] }] }), 'mqtt.users[0].password_hash: is the example config\'s placeholder'],
  ['a hash the broker cannot use', () => config('r4b', {}, { users: [{ username: 'k', role: 'kiosk', password_hash: `scrypt$1000$8$1$${Buffer.alloc(16).toString('base64')}$${Buffer.alloc(32).toString('base64')}` }] }), 'mqtt.users[0].password_hash: is not a usable scrypt hash'],
  ['relative data_dir', () => config('r5', { data_dir: 'state' }), 'data_dir: must be an absolute path'],
  ['relative storage.path', () => config('r6', { storage: { path: 'shelfgate.db' } }), 'storage.path: must be an absolute path'],
  ['sync over plain http to a LAN host', () => config('r7', { sync: { transport: 'https', https: { url: 'http://192.0.2.20:8080' } } }), 'sync.https.url: plain http to 192.0.2.20'],
  ['sync over plain mqtt to a LAN host', () => config('r8', { sync: { transport: 'mqtt', mqtt: { url: 'mqtt://central.example.com:1883' } } }), 'sync.mqtt.url: plain mqtt to central.example.com'],
  ['every slot reserved', () => config('r9', {}, { max_connections: 4, reserved_connections: 4, max_connections_per_user: 1, max_connections_per_address: 1 }), 'mqtt.reserved_connections: must be less than mqtt.max_connections (4)'],
  ['lockout_max_s below lockout_s', () => config('r10', {}, { lockout_s: 600, lockout_max_s: 60 }), 'mqtt.lockout_max_s: must be at least mqtt.lockout_s (600)'],
  ['queue smaller than a packet', () => config('r11', {}, { max_packet_bytes: 1048576, max_queued_bytes: 65536 }), 'mqtt.max_queued_bytes: must be at least mqtt.max_packet_bytes (1048576)'],
];

describe('refusals: `run` and `config check` exit 78 and name the key', () => {
  for (const [what, make, expected] of REFUSALS) {
    it(what, async () => {
      const file = write(what.replace(/\W+/g, '-'), make());
      for (const args of [['config', 'check', file], ['run', '--config', file]]) {
        const r = await runCli(args);
        expect(r.code, `${args[0]}: ${r.stderr}`).toBe(78);
        expect(r.stderr).toContain(`${file}: invalid configuration (1 error)\n${expected}`);
        expect(r.stdout).not.toContain('gateway ready');
      }
    });
  }

  it("`run` refuses bus bounds above its own open-file limit; `config check` (another process) does not", async () => {
    const file = write('nofile', config('nofile', {}, { max_connections: 200, max_unauthenticated: 32 }));
    const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      // `ulimit -n` sets the soft and the hard limit, so node cannot raise it at start.
      const p = spawn('sh', ['-c', 'ulimit -n 256 && exec "$0" "$@"', process.execPath, CLI, 'run', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NOTIFY_SOCKET: '' } });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const t = setTimeout(() => (p.kill('SIGKILL'), reject(new Error(`no exit within 15 s: ${stdout} ${stderr}`))), 15_000);
      p.on('exit', (code) => (clearTimeout(t), resolve({ code, stdout, stderr })));
    });
    expect(r.code, r.stderr).toBe(78);
    expect(r.stderr).toContain("mqtt.max_connections: mqtt.max_connections + mqtt.max_unauthenticated (232) plus 64 files for the gateway itself exceed this process's open-file limit (256, RLIMIT_NOFILE)");
    const c = await runCli(['config', 'check', file]);
    expect(c.code).toBe(0);
    expect(c.stderr).toBe('');
  });
});

describe('warnings', () => {
  it('a valid config with warnings: config check prints them and exits 0; the daemon starts, logs each with its path, and serves', async () => {
    const name = 'warn';
    const cfg = config(name, {}, { users: [{ username: 'kiosk', role: 'kiosk', password_hash: weakHash }] });
    // startDaemon writes dir/shelfgate.yaml under umask 022: 0644, readable by others, with a hash in it
    const d = tmp('sg-cfgwarn-');
    const daemon = await startDaemon(cfg, d);
    cleanups.push(async () => void (await daemon.stop()));
    const file = join(d, 'shelfgate.yaml');
    expect(statSync(file).mode & 0o777).toBe(0o644);
    const warned = daemon.logs.filter((l) => String(l.msg).startsWith('configuration warning'));
    expect(warned.map((l) => [l.level, l.path])).toEqual([
      [40, ''],
      [40, 'mqtt.users[0].password_hash'],
    ]);
    expect(String(warned[0]!.warning)).toContain('(mode 0644)');
    expect(String(warned[1]!.warning)).toContain('weak scrypt parameters (N=1024 < 16384)');
    // it serves: the user with the weak hash still logs in
    const { client } = await connectClient(daemon.mqttPort, 'kiosk', 'pw-weak');
    await client.endAsync();

    const r = await runCli(['config', 'check', file]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: ok \\(store cfg-e2e`));
    expect(r.stderr.split('\n').filter(Boolean)).toEqual([
      expect.stringMatching(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: warning: .*readable by every local user \\(mode 0644\\).*chmod 640`)),
      `${file}: warning: mqtt.users[0].password_hash: weak scrypt parameters (N=1024 < 16384): a copy of this file is cheap to crack; make a new hash with \`shelfgate passwd\``,
    ]);
  });
});

describe('store files under umask 022', () => {
  it('the daemon creates its data directory 0700 and the database, -wal and -shm 0600', async () => {
    const cfg = config('umask');
    cfg.data_dir = join(dir, 'umask', 'new', 'state');
    const daemon = await startDaemon(cfg, tmp('sg-cfgumask-'));
    cleanups.push(async () => void (await daemon.stop()));
    const db = join(cfg.data_dir as string, 'shelfgate.db');
    await daemon.waitLog((l) => l.msg === 'database open');
    expect(statSync(cfg.data_dir as string).mode & 0o777).toBe(0o700);
    for (const f of [db, `${db}-wal`, `${db}-shm`]) expect(statSync(f).mode & 0o777, f).toBe(0o600);
    // and it works: a client logs in
    const { client } = await connectClient(daemon.mqttPort, 'kiosk', 'pw-strong');
    await client.endAsync();
  });
});
