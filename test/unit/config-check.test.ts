/**
 * Dangerous settings (src/config/check.ts): each refusal and warning, with the key's path.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/bus/auth';
import { checkConfigFileMode, estimateMemory, FD_RESERVE, isLoopbackHost, PUBLISHED_PLACEHOLDER_HASHES, readCgroupMemoryMax, readOpenFileLimit, SIZING, UNIT_LIMITS } from '../../src/config/check';
import { loadConfig, validateConfig, type ConfigIssue } from '../../src/config/load';
import { configSchema } from '../../src/config/schema';
import type { DeviceDefinition } from '../../src/devices/types';
import { BUILTIN_FEATURES } from '../../src/features';

const serial = { baudRate: 9600, dataBits: 8, parity: 'none', stopBits: 1 } as const;
const models = new Map<string, DeviceDefinition>([
  ['mb', { id: 'mb', protocol: 'modbus-rtu', vendor: 't', description: 't', serial, timeoutMs: 100, reads: [{ function: 3, address: 0x50, count: 4 }], fields: { weight: { register: 0x52, type: 'int32be' } }, scaling: { unit: 'g', factor: 1, decimals: 0 }, statusBits: {}, capacityG: 30_000 }],
]);

let dir: string;
let strongHash: string;
let weakHash: string;
/** PEM files made with openssl: a certificate valid 365 days and its key, a second key, a 10-day certificate. */
const pem = { cert: '', key: '', otherKey: '', shortCert: '', shortKey: '' };

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sg-cfgcheck-'));
  const mk = (name: string, days: number): void => {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.crt`), '-days', String(days), '-subj', `/CN=${name}`], { stdio: 'ignore' });
  };
  mk('gw', 365);
  mk('other', 365);
  mk('short', 10);
  Object.assign(pem, { cert: join(dir, 'gw.crt'), key: join(dir, 'gw.key'), otherKey: join(dir, 'other.key'), shortCert: join(dir, 'short.crt'), shortKey: join(dir, 'short.key') });
  [strongHash, weakHash] = await Promise.all([hashPassword('a-real-password'), hashPassword('a-real-password', { N: 1024, r: 4 })]);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function base(over: Record<string, unknown> = {}, mqtt: Record<string, unknown> = {}): any {
  return {
    store_id: 'store-1',
    data_dir: '/var/lib/shelfgate',
    buses: [{ id: 'bus-a', path: 'tcp://127.0.0.1:5020', model: 'mb' }],
    shelves: [{ id: 'sh0', slots: [{ id: 'a', sensor: { bus: 'bus-a', address: 1 }, unit_weight_g: 250 }] }],
    mqtt: { users: [{ username: 'kiosk-1', role: 'kiosk', password_hash: strongHash }], ...mqtt },
    ...over,
  };
}

function check(raw: unknown, opts: Parameters<typeof validateConfig>[3] = {}): { errors: ConfigIssue[]; warnings: ConfigIssue[]; ok: boolean } {
  const r = validateConfig(raw, models, BUILTIN_FEATURES, opts);
  return { errors: r.issues, warnings: r.warnings, ok: r.config !== undefined };
}
const paths = (issues: ConfigIssue[]) => issues.map((i) => i.path);

describe('config check: dangerous settings', () => {
  it('a config with a strong-hash user on loopback and the default bounds has no error and no warning', () => {
    expect(check(base())).toEqual({ errors: [], warnings: [], ok: true });
  });

  describe('plain listener', () => {
    it('refuses a non-loopback mqtt.host, naming the key, mqtt.allow_plain_on_lan and the way out (tls/wss)', () => {
      for (const host of ['0.0.0.0', '192.168.1.10', '::', 'gateway.store.lan']) {
        const r = check(base({}, { host }));
        expect(r.ok, host).toBe(false);
        expect(r.errors).toHaveLength(1);
        expect(r.errors[0]!.path).toBe('mqtt.host');
        expect(r.errors[0]!.message).toContain(host);
        expect(r.errors[0]!.message).toContain('mqtt.allow_plain_on_lan');
        expect(r.errors[0]!.message).toMatch(/mqtt\.tls or mqtt\.wss/);
      }
    });
    it('accepts it with mqtt.allow_plain_on_lan: true, and loopback without it', () => {
      expect(check(base({}, { host: '0.0.0.0', allow_plain_on_lan: true })).errors).toEqual([]);
      for (const host of ['127.0.0.1', '127.3.2.1', '::1', 'localhost']) expect(check(base({}, { host })).errors, host).toEqual([]);
    });
    it('isLoopbackHost: 127.0.0.0/8, ::1 and localhost only', () => {
      expect(['127.0.0.1', '127.255.0.9', '::1', '[::1]', 'LOCALHOST', '::ffff:127.0.0.1'].every(isLoopbackHost)).toBe(true);
      expect(['0.0.0.0', '::', '128.0.0.1', '10.0.0.1', 'localhost.example.com', '1127.0.0.1', 'fe80::1'].some(isLoopbackHost)).toBe(false);
    });
  });

  describe('tls and wss files', () => {
    it('accepts a readable certificate with its key (and a client CA)', () => {
      const r = check(base({}, { tls: { cert_file: pem.cert, key_file: pem.key, client_ca_file: pem.cert }, wss: { cert_file: pem.cert, key_file: pem.key } }));
      expect(r).toEqual({ errors: [], warnings: [], ok: true });
    });
    it('refuses unreadable files with the path of each', () => {
      const r = check(base({}, { tls: { cert_file: join(dir, 'nope.crt'), key_file: join(dir, 'nope.key'), client_ca_file: join(dir, 'nope-ca.pem') } }));
      expect(r.errors.map((e) => `${e.path}: ${e.message}`)).toEqual([
        `mqtt.tls.cert_file: cannot read ${join(dir, 'nope.crt')}: ENOENT`,
        `mqtt.tls.key_file: cannot read ${join(dir, 'nope.key')}: ENOENT`,
        `mqtt.tls.client_ca_file: cannot read ${join(dir, 'nope-ca.pem')}: ENOENT`,
      ]);
    });
    it('refuses a key that is not the certificate\'s, and files that are not PEM', () => {
      expect(check(base({}, { wss: { cert_file: pem.cert, key_file: pem.otherKey } })).errors.map((e) => e.path)).toEqual(['mqtt.wss.key_file']);
      const junk = join(dir, 'junk.pem');
      writeFileSync(junk, 'not a pem\n');
      expect(paths(check(base({}, { tls: { cert_file: junk, key_file: junk } })).errors)).toEqual(['mqtt.tls.cert_file', 'mqtt.tls.key_file']);
    });
    it('warns about a certificate that expires within 30 days or has expired', () => {
      const soon = check(base({}, { wss: { cert_file: pem.shortCert, key_file: pem.shortKey } }));
      expect(soon.ok).toBe(true);
      expect(soon.warnings).toHaveLength(1);
      expect(soon.warnings[0]!.path).toBe('mqtt.wss.cert_file');
      expect(soon.warnings[0]!.message).toMatch(/expires on .* \(in (9|10) days\): renew it/);
      const later = check(base({}, { tls: { cert_file: pem.cert, key_file: pem.key } }), { now: new Date(Date.now() + 400 * 86_400_000) });
      expect(later.ok).toBe(true);
      expect(later.warnings.map((w) => w.path)).toEqual(['mqtt.tls.cert_file']);
      expect(later.warnings[0]!.message).toMatch(/expired on .*clients will refuse it/);
    });
  });

  describe('users and hashes', () => {
    it('warns about weak scrypt parameters (N, r, salt, key) at the hash\'s path', async () => {
      const tiny = `scrypt$16384$8$1$${Buffer.alloc(8, 1).toString('base64')}$${Buffer.alloc(16, 2).toString('base64')}`;
      const raw = base({}, { users: [
        { username: 'a', role: 'kiosk', password_hash: strongHash },
        { username: 'b', role: 'kiosk', password_hash: weakHash },
        { username: 'c', role: 'kiosk', password_hash: tiny },
      ] });
      const r = check(raw);
      expect(r.ok).toBe(true);
      expect(r.warnings.map((w) => `${w.path}: ${w.message}`)).toEqual([
        expect.stringMatching(/^mqtt\.users\[1\]\.password_hash: weak scrypt parameters \(N=1024 < 16384, r=4 < 8\)/),
        expect.stringMatching(/^mqtt\.users\[2\]\.password_hash: weak scrypt parameters \(salt 8 bytes < 16, key 16 bytes < 32\)/),
      ]);
    });
    it("refuses the example config's placeholder hash (its password is public)", () => {
      const r = check(base({}, { users: [{ username: 'k', role: 'kiosk', password_hash: strongHash }, { username: 'kiosk-1', role: 'kiosk', password_hash: PUBLISHED_PLACEHOLDER_HASHES[0] }] }));
      expect(r.ok).toBe(false);
      expect(r.errors).toEqual([{ path: 'mqtt.users[1].password_hash', message: expect.stringContaining("placeholder (its password 'change-me' is public)") }]);
    });
    it('the placeholder list holds the hash config/shelfgate.example.yaml ships', async () => {
      const { readFileSync } = await import('node:fs');
      const text = readFileSync(join(__dirname, '../../config/shelfgate.example.yaml'), 'utf8');
      const shipped = [...text.matchAll(/password_hash: "([^"]+)"/g)].map((m) => m[1]);
      expect(shipped.length).toBeGreaterThan(0);
      for (const h of shipped) expect(PUBLISHED_PLACEHOLDER_HASHES).toContain(h);
    });
    it('refuses a hash the broker could not use (the user could never log in)', () => {
      const r = check(base({}, { users: [{ username: 'k', role: 'kiosk', password_hash: `scrypt$1000$8$1$${Buffer.alloc(16).toString('base64')}$${Buffer.alloc(32).toString('base64')}` }] }));
      expect(paths(r.errors)).toEqual(['mqtt.users[0].password_hash']);
    });
    it('warns when there are no users, saying what that means with and without a LAN listener', () => {
      const none = check(base({}, { users: [] }));
      expect(none.ok).toBe(true);
      expect(none.warnings).toEqual([{ path: 'mqtt.users', message: expect.stringContaining('nobody but the gateway itself can connect') }]);
      const lan = check(base({}, { users: [], tls: { cert_file: pem.cert, key_file: pem.key } }));
      expect(lan.ok).toBe(true);
      expect(lan.warnings).toEqual([{ path: 'mqtt.users', message: expect.stringContaining('the tls/wss listener serves no one') }]);
    });
  });

  describe('bounds', () => {
    it('refuses reserved_connections >= max_connections, lockout_max_s < lockout_s, max_queued_bytes < max_packet_bytes', () => {
      expect(paths(check(base({}, { max_connections: 4, reserved_connections: 4, max_connections_per_user: 1, max_connections_per_address: 1 })).errors)).toEqual(['mqtt.reserved_connections']);
      expect(paths(check(base({}, { lockout_s: 600, lockout_max_s: 300 })).errors)).toEqual(['mqtt.lockout_max_s']);
      expect(paths(check(base({}, { max_packet_bytes: 1024 * 1024, max_queued_bytes: 512 * 1024 })).errors)).toEqual(['mqtt.max_queued_bytes']);
      expect(check(base({}, { max_connections: 5, reserved_connections: 4, max_connections_per_user: 1, max_connections_per_address: 1, lockout_s: 300, lockout_max_s: 300, max_packet_bytes: 512 * 1024 })).errors).toEqual([]);
    });
    it('warns when one user or one address may take every slot non-admins share', () => {
      const r = check(base({}, { max_connections: 20, reserved_connections: 4 }));
      expect(r.ok).toBe(true);
      expect(paths(r.warnings)).toEqual(['mqtt.max_connections_per_user', 'mqtt.max_connections_per_address']);
      expect(r.warnings[0]!.message).toContain('32 is not below the 16 connection slots');
      expect(check(base({}, { max_connections: 20, reserved_connections: 4, max_connections_per_user: 15, max_connections_per_address: 15 })).warnings).toEqual([]);
    });
  });

  describe('open files', () => {
    it("warns when the bus's socket ceiling and the gateway's own files exceed the unit's LimitNOFILE", () => {
      const max = UNIT_LIMITS.LimitNOFILE - 32 - FD_RESERVE;
      expect(check(base({}, { max_connections: max })).warnings.filter((w) => w.path === 'mqtt.max_connections')).toEqual([]);
      const r = check(base({}, { max_connections: max + 1 }));
      expect(r.ok).toBe(true);
      expect(r.warnings.filter((w) => w.path === 'mqtt.max_connections')).toEqual([{ path: 'mqtt.max_connections', message: expect.stringContaining(`LimitNOFILE=${UNIT_LIMITS.LimitNOFILE}`) }]);
    });
    it("refuses them above this process's own limit (what `shelfgate run` passes)", () => {
      const r = check(base({}, { max_connections: 200, max_unauthenticated: 32 }), { openFileLimit: 256 });
      expect(r.errors).toEqual([{ path: 'mqtt.max_connections', message: expect.stringContaining("exceed this process's open-file limit (256") }]);
      expect(check(base({}, { max_connections: 100, max_unauthenticated: 32 }), { openFileLimit: 256 }).errors).toEqual([]);
    });
    it('counts the sockets the mqtts and wss listeners may hold too (each up to max_connections, TLS handshakes included)', () => {
      const files = { cert_file: '/nonexistent/c.pem', key_file: '/nonexistent/k.pem' };
      const over = { max_connections: 100, max_unauthenticated: 32 };
      expect(check(base({}, over), { openFileLimit: 256 }).errors).toEqual([]);
      const r = check(base({}, { ...over, tls: { host: '127.0.0.1', port: 8883, ...files } }), { openFileLimit: 256 });
      expect(r.errors.filter((e) => e.path === 'mqtt.max_connections')).toEqual([{ path: 'mqtt.max_connections', message: expect.stringContaining('(232) plus 64 files') }]);
    });
    it('reads the soft limit from /proc/self/limits (null when it cannot)', () => {
      const f = join(dir, 'limits');
      writeFileSync(f, 'Limit                     Soft Limit           Hard Limit           Units     \nMax processes             63471                63471                processes \nMax open files            1024                 524288               files     \n');
      expect(readOpenFileLimit(f)).toBe(1024);
      expect(readOpenFileLimit(join(dir, 'nope'))).toBeNull();
      if (process.platform === 'linux') expect(readOpenFileLimit()).toBeGreaterThan(0);
    });
  });

  describe('memory', () => {
    it('estimates the worst case of the default bounds from the documented formula, below MemoryMax', () => {
      const m = configSchema.shape.mqtt.parse({});
      const e = estimateMemory(m);
      expect(e.sockets).toBe((200 + 32) * (SIZING.CONNECTION_OVERHEAD + 256 * 1024));
      expect(e.queues).toBe(200 * (512 * 1024 + (64 + 16) * SIZING.MESSAGE_ESTIMATE));
      expect(e.sessions).toBe(200 * 1000 * SIZING.MESSAGE_ESTIMATE);
      expect(e.total).toBe(SIZING.BASELINE_RSS + e.sockets + e.queues + e.sessions);
      expect(e.total).toBeLessThan(UNIT_LIMITS.MemoryHigh);
    });
    it('warns at `mqtt` when the bounds could exceed the unit\'s MemoryMax', () => {
      const r = check(base({}, { max_connections: 1000, max_connections_per_user: 32 }));
      expect(r.ok).toBe(true);
      expect(r.warnings).toEqual([{ path: 'mqtt', message: expect.stringMatching(/^worst-case memory estimate \d+ MiB .* exceeds MemoryMax=768 MiB/) }]);
    });
  });

  describe('memory limit of the running process', () => {
    it("`run` compares with its own cgroup's memory.max instead of the unit's MemoryMax (a drop-in may change it)", () => {
      const r = check(base(), { memoryLimit: 256 * 1024 * 1024 });
      expect(r.ok).toBe(true);
      expect(r.warnings).toEqual([{ path: 'mqtt', message: expect.stringContaining("exceeds this process's memory limit (cgroup memory.max) of 256 MiB") }]);
      expect(check(base({}, { max_connections: 1000 }), { memoryLimit: 4096 * 1024 * 1024 }).warnings).toEqual([]);
    });
    it('reads memory.max of the cgroup in /proc/self/cgroup; null when unlimited or unreadable', () => {
      const root = join(dir, 'cgroup');
      mkdirSync(join(root, 'system.slice', 'shelfgate.service'), { recursive: true });
      const self = join(dir, 'self-cgroup');
      writeFileSync(self, '0::/system.slice/shelfgate.service\n');
      writeFileSync(join(root, 'system.slice', 'shelfgate.service', 'memory.max'), '805306368\n');
      expect(readCgroupMemoryMax(self, root)).toBe(768 * 1024 * 1024);
      writeFileSync(join(root, 'system.slice', 'shelfgate.service', 'memory.max'), 'max\n');
      expect(readCgroupMemoryMax(self, root)).toBeNull();
      expect(readCgroupMemoryMax(join(dir, 'nope'), root)).toBeNull();
    });
  });

  describe('files', () => {
    it('refuses a relative data_dir or storage.path', () => {
      expect(check(base({ data_dir: 'state' })).errors).toEqual([{ path: 'data_dir', message: expect.stringContaining('must be an absolute path') }]);
      expect(paths(check(base({ storage: { path: './shelfgate.db' } })).errors)).toEqual(['storage.path']);
    });
    it('warns (path "") about a config file others can read when it holds password hashes', () => {
      const cfg = check(base());
      expect(cfg.ok).toBe(true);
      const config = validateConfig(base(), models, BUILTIN_FEATURES).config!;
      expect(checkConfigFileMode('/etc/shelfgate/shelfgate.yaml', 0o100644, config)).toEqual({ path: '', message: expect.stringMatching(/readable by every local user \(mode 0644\).*chmod 640/) });
      expect(checkConfigFileMode('/etc/shelfgate/shelfgate.yaml', 0o100640, config)).toBeNull();
      const noHashes = validateConfig(base({}, { users: [{ username: 'c', role: 'kiosk', cert_cn: 'kiosk-c' }] }), models, BUILTIN_FEATURES).config!;
      expect(checkConfigFileMode('/etc/shelfgate/shelfgate.yaml', 0o100644, noHashes)).toBeNull();
    });
    it('loadConfig reports the mode of the real file', () => {
      const file = join(dir, 'shelfgate.yaml');
      writeFileSync(file, stringify(base()));
      chmodSync(file, 0o644);
      expect(loadConfig(file, models, BUILTIN_FEATURES).warnings).toEqual([{ path: '', message: expect.stringContaining('(mode 0644)') }]);
      chmodSync(file, 0o640);
      expect(loadConfig(file, models, BUILTIN_FEATURES).warnings).toEqual([]);
    });
  });

  describe('sync to central', () => {
    it('refuses plain http or mqtt to a non-loopback host (the token or password would cross the network in clear)', () => {
      expect(check(base({ sync: { transport: 'https', https: { url: 'http://central.example.com' } } })).errors).toEqual([{ path: 'sync.https.url', message: expect.stringContaining('bearer token') }]);
      expect(check(base({ sync: { transport: 'mqtt', mqtt: { url: 'mqtt://10.0.0.5:1883' } } })).errors).toEqual([{ path: 'sync.mqtt.url', message: expect.stringContaining('password') }]);
    });
    it('accepts https, mqtts, and plain on loopback (a local proxy, the central simulator)', () => {
      for (const sync of [
        { transport: 'https', https: { url: 'https://central.example.com' } },
        { transport: 'https', https: { url: 'http://127.0.0.1:8080' } },
        { transport: 'mqtt', mqtt: { url: 'mqtts://broker.example.com:8883' } },
        { transport: 'mqtt', mqtt: { url: 'mqtt://localhost:1883' } },
        { transport: 'none', https: { url: 'http://central.example.com' } },
      ]) expect(check(base({ sync })).errors, JSON.stringify(sync)).toEqual([]);
    });
  });
});
