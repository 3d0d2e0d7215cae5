/**
 * Dangerous settings: checks that run after the schema has accepted a config (validateConfig).
 * Each finding names the key's path. An ERROR refuses the config (`config check` and `run` exit
 * 78): the setting exposes a secret or breaks a guarantee the gateway gives. A WARNING is printed
 * by `config check` and logged by the daemon at start, and the config is used: the setting is
 * legitimate in some stores, or the check can only predict (the systemd unit may be overridden).
 * docs/INSTALL.md lists them; docs/SIZING.md explains the memory and file-descriptor estimates.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { isIP } from 'node:net';
import { parseHash } from '../bus/auth';
import type { ConfigIssue } from './issue';
import type { Config, MqttConfig } from './schema';

/**
 * The limits systemd/shelfgate.service sets (test/integration/systemd-unit.test.ts checks the
 * unit file says the same). Change both together.
 */
export const UNIT_LIMITS = {
  /** `LimitNOFILE=`: open files (sockets included) of the daemon. */
  LimitNOFILE: 8192,
  /** `MemoryHigh=`: above it the kernel reclaims and throttles the service (bytes). */
  MemoryHigh: 640 * 1024 * 1024,
  /** `MemoryMax=`: above it the kernel's OOM killer ends the service, then Restart=on-failure (bytes). */
  MemoryMax: 768 * 1024 * 1024,
} as const;

/**
 * File descriptors the gateway holds besides bus sockets: stdio, the SQLite file and its -wal and
 * -shm, libuv's epoll/eventfd/signal pipes and thread pool, the listeners, the sd_notify socket,
 * serial ports or TCP links of the device buses, the sync connections (pipeline + long poll).
 * A round, generous figure (docs/SIZING.md).
 */
export const FD_RESERVE = 64;

/**
 * Worst-case memory model of the gateway (docs/SIZING.md has the formula and the measurements).
 * BASELINE_RSS: the gateway with no bus clients, measured as the peak RSS of `shelfgate demo`
 * (which also runs the simulated shelves and central service in the same process: an upper bound).
 */
export const SIZING = {
  BASELINE_RSS: 140 * 1024 * 1024,
  /** Per socket (TLS state, parser, aedes client, stream buffers); issue #8 measured 120 KB per idle connection. */
  CONNECTION_OVERHEAD: 128 * 1024,
  /** A message held by count (session queue, in flight, unreleased QoS 2): payload, topic and the packet object. */
  MESSAGE_ESTIMATE: 1024,
} as const;

/** Certificates that expire sooner than this get a warning. */
const CERT_EXPIRY_WARN_MS = 30 * 24 * 3600 * 1000;

/**
 * Hashes published in this repository (config/shelfgate.example.yaml, password 'change-me').
 * Compared literally: free, deterministic, and exactly the risk (a hash copied from a public file,
 * so its password is public). Verifying 'change-me' against every user's hash would cost one
 * scrypt (16 MiB, tens of ms; more on a Pi) per user at every start and only find one weak
 * password among many; choosing a strong password is the operator's job.
 */
export const PUBLISHED_PLACEHOLDER_HASHES: readonly string[] = ['scrypt$16384$8$1$e6HqK9rPMh5y1rWe5//NJA==$AT634ZMcbQLXEBB6jdme9+O2wa3QCwk7rkO3ZKN31P0='];

/** The scrypt parameters `shelfgate passwd` uses (src/bus/auth.ts, the OWASP minimum): weaker ones get a warning. */
const SCRYPT_MIN = { N: 16384, r: 8, saltBytes: 16, keyBytes: 32 } as const;

export interface CheckOptions {
  /**
   * The open-file limit (RLIMIT_NOFILE) of the process that will serve the bus, when it is this
   * process (`shelfgate run`): the bus's socket ceiling above it is an error. `config check` runs in
   * another process than the daemon, so it leaves this out and compares with the unit's limit only.
   */
  openFileLimit?: number | null;
  /**
   * The memory limit (cgroup v2 memory.max) of the process that will serve the bus, when it is
   * this process and it has one: compared instead of the unit's MemoryMax (a drop-in may change it).
   */
  memoryLimit?: number | null;
  /** For tests: the time certificate expiry is measured from. */
  now?: Date;
}

export interface CheckResult {
  errors: ConfigIssue[];
  warnings: ConfigIssue[];
}

/** True for a loopback address or name: 127.0.0.0/8, ::1 (and ::ffff:127.x), localhost. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || h === '0:0:0:0:0:0:0:1' || /^::ffff:127\./.test(h);
  return false;
}

/** The soft RLIMIT_NOFILE of this process (Linux /proc/self/limits); null where it cannot be read. */
export function readOpenFileLimit(limitsFile = '/proc/self/limits'): number | null {
  let text: string;
  try {
    text = readFileSync(limitsFile, 'utf8');
  } catch {
    return null;
  }
  const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(text);
  if (!m) return null;
  return m[1] === 'unlimited' ? Number.POSITIVE_INFINITY : Number(m[1]);
}

/**
 * This process's cgroup v2 memory limit (memory.max of the cgroup in /proc/self/cgroup, e.g. the
 * unit's MemoryMax under systemd); null when unlimited or unreadable.
 */
export function readCgroupMemoryMax(cgroupFile = '/proc/self/cgroup', root = '/sys/fs/cgroup'): number | null {
  try {
    const m = /^0::(\/.*)$/m.exec(readFileSync(cgroupFile, 'utf8'));
    if (!m) return null;
    const v = readFileSync(`${root}${m[1] === '/' ? '' : m[1]}/memory.max`, 'utf8').trim();
    return /^\d+$/.test(v) ? Number(v) : null;
  } catch {
    return null;
  }
}

/** Sockets the bus may hold at once (src/bus/admission.ts: authenticated plus still logging in). */
function busSocketCeiling(m: MqttConfig): number {
  // the plain listener's ceiling (broker.ts), plus the mqtts and wss listeners' own (listeners.ts
  // sets each one's maxConnections to max_connections: a TLS handshake holds a socket before the
  // broker's caps see it)
  return m.max_connections + m.max_unauthenticated + (m.tls ? m.max_connections : 0) + (m.wss ? m.max_connections : 0);
}

/** The worst-case memory estimate of docs/SIZING.md, in bytes, with its parts. */
export function estimateMemory(m: MqttConfig): { total: number; baseline: number; sockets: number; queues: number; sessions: number } {
  const baseline = SIZING.BASELINE_RSS;
  // Every socket, logged in or not, may hold its state and one partly received packet.
  const sockets = busSocketCeiling(m) * (SIZING.CONNECTION_OVERHEAD + m.max_packet_bytes);
  // Each logged-in client: its delivery queue (bounded in bytes) plus its in-flight and unreleased QoS 2 messages (bounded in count).
  const queues = m.max_connections * (m.max_queued_bytes + (m.max_inflight + m.max_inbound_qos2) * SIZING.MESSAGE_ESTIMATE);
  // Offline persistent sessions: not bounded in number by the config; estimated as one per connection slot.
  const sessions = m.max_connections * m.max_session_queue * SIZING.MESSAGE_ESTIMATE;
  return { total: baseline + sockets + queues + sessions, baseline, sockets, queues, sessions };
}

const mib = (n: number): string => `${Math.round(n / (1024 * 1024))} MiB`;
const errCode = (e: unknown): string => (e as NodeJS.ErrnoException).code ?? (e as Error).message;

/** The config's dangerous settings (see the file comment). `cfg` has passed the schema. */
export function checkDangerousSettings(cfg: Config, opts: CheckOptions = {}): CheckResult {
  const errors: ConfigIssue[] = [];
  const warnings: ConfigIssue[] = [];
  const m = cfg.mqtt;

  // --- listeners ---
  // A plain listener on the LAN carries every password (and every message) in clear: anyone on the
  // store network can read them. The operator must say so explicitly, or use tls/wss.
  if (!isLoopbackHost(m.host) && !m.allow_plain_on_lan) {
    errors.push({
      path: 'mqtt.host',
      message: `plain MQTT listener on non-loopback address ${m.host} sends passwords in clear on the store network: serve LAN clients with mqtt.tls or mqtt.wss and keep mqtt.host on loopback (127.0.0.1), or set mqtt.allow_plain_on_lan: true to accept the risk`,
    });
  }
  for (const kind of ['tls', 'wss'] as const) {
    const l = m[kind];
    if (l) checkListenerFiles(`mqtt.${kind}`, l, opts.now ?? new Date(), errors, warnings);
  }
  // The HTTP server's Basic auth carries the same passwords: the same rule as the plain MQTT listener.
  const h = cfg.http;
  if (h && !h.tls && !isLoopbackHost(h.host) && !h.allow_plain_on_lan) {
    errors.push({
      path: 'http.host',
      message: `plain HTTP on non-loopback address ${h.host} sends passwords (Basic auth) in clear on the store network: set http.tls (cert_file, key_file, as for mqtt.tls) to serve HTTPS, or keep http.host on loopback (127.0.0.1), or set http.allow_plain_on_lan: true to accept the risk`,
    });
  }
  if (h?.tls) checkListenerFiles('http.tls', h.tls, opts.now ?? new Date(), errors, warnings);

  // --- users ---
  if (m.users.length === 0) {
    warnings.push({
      path: 'mqtt.users',
      message:
        m.tls || m.wss
          ? 'no users: nobody but the gateway itself can log in, so the tls/wss listener serves no one (add users with `shelfgate passwd`)'
          : 'no users: nobody but the gateway itself can connect to the bus (add users with `shelfgate passwd`)',
    });
  }
  m.users.forEach((u, i) => {
    if (u.password_hash === undefined) return;
    const at = `mqtt.users[${i}].password_hash`;
    // Refused: the password of a published hash is public, so anyone can log in as this user.
    if (PUBLISHED_PLACEHOLDER_HASHES.includes(u.password_hash)) {
      errors.push({ path: at, message: "is the example config's placeholder (its password 'change-me' is public): make a hash of a real password with `shelfgate passwd`" });
      return;
    }
    const h = parseHash(u.password_hash);
    // Refused: the broker cannot use it, so the user could never log in (a silent lockout).
    if (!h) {
      errors.push({ path: at, message: 'is not a usable scrypt hash (N a power of two up to 2^20, r <= 32, p <= 16, salt >= 8 bytes, key 16-128 bytes): make one with `shelfgate passwd`' });
      return;
    }
    const weak: string[] = [];
    if (h.N < SCRYPT_MIN.N) weak.push(`N=${h.N} < ${SCRYPT_MIN.N}`);
    if (h.r < SCRYPT_MIN.r) weak.push(`r=${h.r} < ${SCRYPT_MIN.r}`);
    if (h.salt.length < SCRYPT_MIN.saltBytes) weak.push(`salt ${h.salt.length} bytes < ${SCRYPT_MIN.saltBytes}`);
    if (h.key.length < SCRYPT_MIN.keyBytes) weak.push(`key ${h.key.length} bytes < ${SCRYPT_MIN.keyBytes}`);
    // A warning: the login still works and is still salted; a stolen config is cheaper to crack.
    if (weak.length) warnings.push({ path: at, message: `weak scrypt parameters (${weak.join(', ')}): a copy of this file is cheap to crack; make a new hash with \`shelfgate passwd\`` });
  });

  // --- bounds that contradict each other ---
  // Refused: with every slot reserved, no kiosk or device could ever log in.
  if (m.reserved_connections >= m.max_connections) {
    errors.push({ path: 'mqtt.reserved_connections', message: `must be less than mqtt.max_connections (${m.max_connections}): otherwise only admin and technician users can ever connect` });
  }
  // Refused: the back-off would shrink instead of grow.
  if (m.lockout_max_s < m.lockout_s) {
    errors.push({ path: 'mqtt.lockout_max_s', message: `must be at least mqtt.lockout_s (${m.lockout_s})` });
  }
  // Refused: one packet of the accepted size would fill a client's whole delivery queue, so large
  // messages would always be dropped or the client cut off as a slow consumer.
  if (m.max_queued_bytes < m.max_packet_bytes) {
    errors.push({ path: 'mqtt.max_queued_bytes', message: `must be at least mqtt.max_packet_bytes (${m.max_packet_bytes}): a client's queue must hold the largest message it may be sent` });
  }
  // Warnings: a per-user or per-address cap that reaches the slots non-admins share lets one
  // kiosk (or one NAT address) take them all, which these caps exist to prevent. Not refused: in a
  // store with one client machine it is what the operator wants.
  const shared = m.max_connections - m.reserved_connections;
  for (const key of ['max_connections_per_user', 'max_connections_per_address'] as const) {
    if (m[key] >= shared && shared > 0) {
      warnings.push({ path: `mqtt.${key}`, message: `${m[key]} is not below the ${shared} connection slots non-admin users share (mqtt.max_connections - mqtt.reserved_connections): one ${key.endsWith('user') ? 'user' : 'address'} can take them all` });
    }
  }

  // --- open files ---
  const sockets = busSocketCeiling(m);
  const needFiles = sockets + FD_RESERVE;
  if (opts.openFileLimit != null && needFiles > opts.openFileLimit) {
    // Refused: past the limit accept() fails, and so do the store, the device links and sync,
    // which then fail because of bus clients.
    errors.push({
      path: 'mqtt.max_connections',
      message: `mqtt.max_connections + mqtt.max_unauthenticated${m.tls || m.wss ? ' (+ mqtt.max_connections for each of mqtt.tls, mqtt.wss)' : ''} (${sockets}) plus ${FD_RESERVE} files for the gateway itself exceed this process's open-file limit (${opts.openFileLimit}, RLIMIT_NOFILE): lower them or raise the limit (LimitNOFILE= in the unit)`,
    });
  } else if (needFiles > UNIT_LIMITS.LimitNOFILE) {
    // A warning: a drop-in may raise LimitNOFILE; the daemon itself refuses if its real limit is too low.
    warnings.push({
      path: 'mqtt.max_connections',
      message: `mqtt.max_connections + mqtt.max_unauthenticated${m.tls || m.wss ? ' (+ mqtt.max_connections for each of mqtt.tls, mqtt.wss)' : ''} (${sockets}) plus ${FD_RESERVE} files for the gateway itself exceed LimitNOFILE=${UNIT_LIMITS.LimitNOFILE} of systemd/shelfgate.service: raise it in a drop-in (systemctl edit shelfgate)`,
    });
  }

  // --- memory ---
  // A warning: an estimate of the worst case (docs/SIZING.md), and MemoryMax may be raised in a drop-in.
  const mem = estimateMemory(m);
  const limit = opts.memoryLimit ?? UNIT_LIMITS.MemoryMax;
  if (mem.total > limit) {
    warnings.push({
      path: 'mqtt',
      message: `worst-case memory estimate ${mib(mem.total)} (gateway ${mib(mem.baseline)} + sockets ${mib(mem.sockets)} + delivery queues ${mib(mem.queues)} + offline sessions ${mib(mem.sessions)}, docs/SIZING.md) exceeds ${opts.memoryLimit != null ? `this process's memory limit (cgroup memory.max) of ${mib(limit)}` : `MemoryMax=${mib(limit)} of systemd/shelfgate.service`}: lower the mqtt bounds or raise MemoryMax in a drop-in`,
    });
  }

  // --- files ---
  // Refused: the working directory differs between systemd (WorkingDirectory=) and a shell, so a
  // relative path would open a different, empty store, and the unsent events would seem lost.
  if (!isAbsolute(cfg.data_dir)) errors.push({ path: 'data_dir', message: 'must be an absolute path (a relative one depends on the directory the daemon is started from)' });
  if (cfg.storage.path !== undefined && !isAbsolute(cfg.storage.path)) errors.push({ path: 'storage.path', message: 'must be an absolute path (a relative one depends on the directory the daemon is started from)' });

  // --- sync ---
  // Refused: the bearer token (https) or password (mqtt) would cross the network in clear.
  // Loopback stays allowed (a local proxy or the central simulator).
  if (cfg.sync.transport === 'https' && cfg.sync.https) {
    const u = safeUrl(cfg.sync.https.url);
    if (u && u.protocol === 'http:' && !isLoopbackHost(u.hostname)) {
      errors.push({ path: 'sync.https.url', message: `plain http to ${u.hostname} sends the bearer token and the store's events in clear: use https://` });
    }
  }
  if (cfg.sync.transport === 'mqtt' && cfg.sync.mqtt) {
    const u = safeUrl(cfg.sync.mqtt.url);
    if (u && u.protocol === 'mqtt:' && !isLoopbackHost(u.hostname)) {
      errors.push({ path: 'sync.mqtt.url', message: `plain mqtt to ${u.hostname} sends the password and the store's events in clear: use mqtts://` });
    }
  }
  return { errors, warnings };
}

function safeUrl(s: string): URL | null {
  try {
    return new URL(s);
  } catch {
    return null;
  }
}

/**
 * A TLS listener's files: each must be readable and parse (refused: the listener would fail at
 * start, or later on a restart); the key must match the certificate (refused: every handshake
 * would fail); a certificate that has expired or expires within 30 days gets a warning (clients
 * refuse it, but the operator may be about to replace it).
 */
function checkListenerFiles(at: string, l: { cert_file: string; key_file: string; client_ca_file?: string }, now: Date, errors: ConfigIssue[], warnings: ConfigIssue[]): void {
  const read = (key: 'cert_file' | 'key_file' | 'client_ca_file', file: string): string | null => {
    try {
      return readFileSync(file, 'utf8');
    } catch (e) {
      errors.push({ path: `${at}.${key}`, message: `cannot read ${file}: ${errCode(e)}` });
      return null;
    }
  };
  const certPem = read('cert_file', l.cert_file);
  const keyPem = read('key_file', l.key_file);
  let cert: X509Certificate | null = null;
  if (certPem !== null) {
    try {
      cert = new X509Certificate(certPem);
    } catch (e) {
      errors.push({ path: `${at}.cert_file`, message: `${l.cert_file} is not a PEM certificate: ${(e as Error).message}` });
    }
  }
  let key: KeyObject | null = null;
  if (keyPem !== null) {
    try {
      key = createPrivateKey(keyPem);
    } catch (e) {
      errors.push({ path: `${at}.key_file`, message: `${l.key_file} is not an unencrypted PEM private key: ${(e as Error).message}` });
    }
  }
  if (cert && key && !cert.checkPrivateKey(key)) {
    errors.push({ path: `${at}.key_file`, message: `${l.key_file} is not the private key of the certificate in ${l.cert_file}` });
  }
  if (cert) {
    const notAfter = new Date(cert.validTo);
    const left = notAfter.getTime() - now.getTime();
    if (left <= 0) warnings.push({ path: `${at}.cert_file`, message: `certificate ${l.cert_file} expired on ${notAfter.toISOString()}: clients will refuse it` });
    else if (left < CERT_EXPIRY_WARN_MS) warnings.push({ path: `${at}.cert_file`, message: `certificate ${l.cert_file} expires on ${notAfter.toISOString()} (in ${Math.ceil(left / 86_400_000)} days): renew it` });
  }
  if (l.client_ca_file !== undefined) {
    const caPem = read('client_ca_file', l.client_ca_file);
    if (caPem !== null) {
      try {
        new X509Certificate(caPem);
      } catch (e) {
        errors.push({ path: `${at}.client_ca_file`, message: `${l.client_ca_file} is not a PEM certificate bundle: ${(e as Error).message}` });
      }
    }
  }
}

/**
 * A config file that other users may read (mode & 0o004) and that holds password hashes: any
 * local account can copy the hashes and crack them offline. A warning, not an error: the hashes
 * are salted scrypt, and the file's mode is the installer's to fix.
 */
export function checkConfigFileMode(file: string, mode: number, cfg: Config): ConfigIssue | null {
  if ((mode & 0o004) === 0) return null;
  if (!cfg.mqtt.users.some((u) => u.password_hash !== undefined)) return null;
  const m = (mode & 0o777).toString(8).padStart(4, '0');
  return { path: '', message: `${file} is readable by every local user (mode ${m}) and holds password hashes (mqtt.users[].password_hash): chmod 640 ${file} (owner root, group shelfgate)` };
}
