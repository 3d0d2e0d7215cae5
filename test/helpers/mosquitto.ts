/**
 * A real mosquitto (2.x) for integration tests, on 127.0.0.1 only.
 *
 * - Ports: a free one is found by binding port 0 with `net` and closing it, then mosquitto is started
 *   on it; if mosquitto loses the race ("Address already in use") another port is tried (5 times).
 * - Everything lives in a fresh mkdtemp dir (config, password file, ACL, persistence, TLS files), so
 *   concurrent test runs never collide. `user <current user>` is always in the config, so a root
 *   mosquitto does not drop to `mosquitto` and can still read files in the 0700 dir.
 * - start() resolves once mosquitto logged that it is running and a TCP connect to every listener
 *   succeeded; every wait is bounded.
 * - kill() (SIGKILL) and restart() keep the dir and the ports, so a persistent session survives when
 *   `persistence` is on (the default: autosave every second, and on SIGTERM).
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { waitFor } from './wait';

export const MOSQUITTO = '/usr/sbin/mosquitto';
export const MOSQUITTO_PASSWD = '/usr/bin/mosquitto_passwd';

export interface MosquittoTlsOptions {
  /** PEM files (paths). */
  caFile: string;
  certFile: string;
  keyFile: string;
  /** Require a client certificate signed by caFile (mTLS). Default false. */
  requireCertificate?: boolean;
}

export interface MosquittoOptions {
  /** username -> password; when set, anonymous access is off and a password file is written. */
  users?: Record<string, string>;
  /** mosquitto acl_file text (`user X` / `topic read|write|readwrite T` / `pattern ...`). */
  acl?: string;
  /** Adds a TLS listener on a second free port. */
  tls?: MosquittoTlsOptions;
  /** Default true (persistence_location in the tmp dir, autosave every second). */
  persistence?: boolean;
  /** Appended to mosquitto.conf verbatim. */
  extraConfig?: string;
  /** Bound on start(); default 10 s. */
  startTimeoutMs?: number;
}

export interface Mosquitto {
  readonly dir: string;
  readonly port: number;
  /** The running mosquitto's pid (benchmarks read its CPU time), or undefined when stopped. */
  readonly pid: number | undefined;
  readonly tlsPort: number | null;
  /** mqtt://127.0.0.1:port */
  readonly url: string;
  /** mqtts://127.0.0.1:tlsPort, or null. */
  readonly tlsUrl: string | null;
  /** mosquitto's log (stderr and stdout) of the current and previous runs. */
  log(): string;
  /** SIGKILL (no final persistence save); resolves when the process exited. */
  kill(): Promise<void>;
  /** SIGTERM (saves persistence); resolves when exited, SIGKILL after 5 s. */
  stop(): Promise<void>;
  /** Starts again on the same ports with the same dir. */
  restart(): Promise<void>;
  /** stop() and remove the dir. */
  dispose(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (bind 0, read, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(500, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

class PortTaken extends Error {}

export async function startMosquitto(opts: MosquittoOptions = {}): Promise<Mosquitto> {
  const dir = mkdtempSync(join(tmpdir(), 'sg-mosq-'));
  const persistDir = join(dir, 'persist');
  mkdirSync(persistDir);
  const passwd = join(dir, 'passwd');
  const aclFile = join(dir, 'acl');
  if (opts.users) {
    let first = true;
    for (const [u, p] of Object.entries(opts.users)) {
      execFileSync(MOSQUITTO_PASSWD, first ? ['-b', '-c', passwd, u, p] : ['-b', passwd, u, p], { stdio: 'pipe' });
      first = false;
    }
  }
  if (opts.acl !== undefined) writeFileSync(aclFile, opts.acl.endsWith('\n') ? opts.acl : `${opts.acl}\n`);

  let logText = '';
  let proc: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  let port = 0;
  let tlsPort: number | null = null;
  const timeoutMs = opts.startTimeoutMs ?? 10_000;

  const writeConfig = (): string => {
    const lines = [
      `user ${userInfo().username}`,
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      'log_type notice',
      'log_type information',
      'connection_messages true',
      'log_timestamp true',
      `listener ${port} 127.0.0.1`,
    ];
    if (opts.tls && tlsPort !== null) {
      lines.push(
        `listener ${tlsPort} 127.0.0.1`,
        `cafile ${opts.tls.caFile}`,
        `certfile ${opts.tls.certFile}`,
        `keyfile ${opts.tls.keyFile}`,
        `require_certificate ${opts.tls.requireCertificate === true}`,
      );
    }
    if (opts.users) lines.push('allow_anonymous false', `password_file ${passwd}`);
    else lines.push('allow_anonymous true');
    if (opts.acl !== undefined) lines.push(`acl_file ${aclFile}`);
    if (opts.persistence !== false) lines.push('persistence true', `persistence_location ${persistDir}/`, 'autosave_interval 1');
    if (opts.extraConfig) lines.push(opts.extraConfig);
    const file = join(dir, 'mosquitto.conf');
    writeFileSync(file, `${lines.join('\n')}\n`);
    return file;
  };

  const launch = async (): Promise<void> => {
    const conf = writeConfig();
    const p = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
    proc = p;
    let out = '';
    const onData = (d: Buffer): void => {
      out += d.toString();
      logText += d.toString();
    };
    p.stdout!.on('data', onData);
    p.stderr!.on('data', onData);
    let hasExited = false;
    exited = new Promise<void>((r) =>
      p.once('exit', () => {
        hasExited = true;
        r();
      }),
    );
    try {
      await waitFor(
        async () => {
          if (hasExited) {
            if (/Address already in use/i.test(out)) throw new PortTaken(out);
            throw new Error(`mosquitto exited during start:\n${out}`);
          }
          return /running/.test(out) && (await canConnect(port)) && (tlsPort === null || (await canConnect(tlsPort)));
        },
        timeoutMs,
        'mosquitto to start',
      );
    } catch (e) {
      if (hasExited) throw e;
      p.kill('SIGKILL');
      await exited;
      throw new Error(`mosquitto did not start within ${timeoutMs} ms:\n${out}`);
    }
  };

  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    tlsPort = opts.tls ? await freePort() : null;
    if (tlsPort === port) continue;
    try {
      await launch();
      break;
    } catch (e) {
      if (!(e instanceof PortTaken) || attempt >= 5) {
        rmSync(dir, { recursive: true, force: true });
        throw e;
      }
    }
  }

  const signal = async (sig: NodeJS.Signals, graceMs: number): Promise<void> => {
    const p = proc as ChildProcess | null;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    p.kill(sig);
    const t = setTimeout(() => p.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(t);
  };

  const m: Mosquitto = {
    dir,
    get port() {
      return port;
    },
    get pid() {
      const p = proc as ChildProcess | null;
      return p && p.exitCode === null && p.signalCode === null ? p.pid : undefined;
    },
    get tlsPort() {
      return tlsPort;
    },
    get url() {
      return `mqtt://127.0.0.1:${port}`;
    },
    get tlsUrl() {
      return tlsPort === null ? null : `mqtts://127.0.0.1:${tlsPort}`;
    },
    log: () => logText,
    kill: () => signal('SIGKILL', 0),
    stop: () => signal('SIGTERM', 5_000),
    restart: async () => {
      await signal('SIGTERM', 5_000);
      // Same ports: the clients are configured with them. A port grabbed meanwhile fails the test.
      await launch();
    },
    dispose: async () => {
      await signal('SIGTERM', 5_000);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return m;
}

// ------------------------------------------------------------------ a test PKI with openssl

export interface TestCa {
  certFile: string;
  keyFile: string;
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: 'pipe', timeout: 20_000 });
}

/** A self-signed CA (EC P-256) in `dir`, files `<name>.crt` / `<name>.key`. */
export function makeTestCa(dir: string, name: string): TestCa {
  const keyFile = join(dir, `${name}.key`);
  const certFile = join(dir, `${name}.crt`);
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', keyFile]);
  openssl([
    'req', '-x509', '-new', '-key', keyFile, '-sha256', '-days', '2', '-subj', `/CN=${name}`, '-out', certFile,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  return { certFile, keyFile };
}

/**
 * A leaf certificate signed by `ca`: a server certificate for 127.0.0.1/localhost, or a client
 * certificate (`client: true`) with CN = name.
 */
export function makeLeafCert(dir: string, ca: TestCa, name: string, opts: { client?: boolean } = {}): TestCa {
  const keyFile = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const certFile = join(dir, `${name}.crt`);
  const ext = join(dir, `${name}.ext`);
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', keyFile]);
  openssl(['req', '-new', '-key', keyFile, '-subj', `/CN=${name}`, '-out', csr]);
  writeFileSync(
    ext,
    opts.client
      ? 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n'
      : 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n',
  );
  openssl(['x509', '-req', '-in', csr, '-CA', ca.certFile, '-CAkey', ca.keyFile, '-CAcreateserial', '-days', '2', '-sha256', '-extfile', ext, '-out', certFile]);
  return { certFile, keyFile };
}

/**
 * The ACL of a central broker for the MQTT bridge (docs/central-mqtt.md): the central consumer
 * reads and writes every store's topics, each store user only its own.
 */
export function centralBrokerAcl(prefix: string, stores: readonly string[]): string {
  const store = (id: string): string => `
user ${id}
topic write ${prefix}/stores/${id}/events/+
topic write ${prefix}/stores/${id}/changes-sync
topic write ${prefix}/stores/${id}/changes-ack
topic read ${prefix}/stores/${id}/events-result/+
topic read ${prefix}/stores/${id}/changes
`;
  return `
user central
topic readwrite ${prefix}/stores/#
${stores.map(store).join('')}`;
}
