/**
 * systemd readiness, status and watchdog over the sd_notify protocol.
 * Protocol: https://www.freedesktop.org/software/systemd/man/latest/sd_notify.html
 * Idea after Zigbee2MQTT's lib/util/sd-notify.ts; reshaped as a Service with an injected env.
 *
 * Not under systemd (NOTIFY_SOCKET unset), or without the optional native `unix-dgram`, every
 * method is a no-op: readiness reporting is never a reason for the daemon to fail. Nothing here
 * throws; send errors are logged, rate-limited.
 */
import type { Service } from '../lifecycle';
import { LogLimiter, type Logger } from '../log';

/** The part of unix-dgram (no published types) that we use. */
export interface UnixDgramSocket {
  send(buf: Buffer, offset: number, length: number, path: string, callback: (err?: Error) => void): void;
  close(): void;
  on(event: 'error', listener: (err: Error) => void): unknown;
  removeListener(event: 'error', listener: (err: Error) => void): unknown;
}
export interface UnixDgramModule {
  createSocket(type: 'unix_dgram'): UnixDgramSocket;
}

export interface SystemdNotifierOptions {
  log: Logger;
  /** Environment to read NOTIFY_SOCKET / WATCHDOG_USEC / WATCHDOG_PID from. */
  env?: NodeJS.ProcessEnv;
  /** How unix-dgram is loaded; tests replace it to simulate a missing native module. */
  loadDgram?: () => UnixDgramModule;
  /** The pid compared with WATCHDOG_PID. */
  pid?: number;
}

/** Health check consulted before each watchdog ping; false (or a throw) withholds the ping. */
export type HealthCheck = () => boolean;

/**
 * The socket address named by NOTIFY_SOCKET: a filesystem path, or an abstract name given as
 * '@name' and sent as '\0name' (sd_notify(3)). undefined when unset or unusable.
 */
export function notifySocketAddress(env: NodeJS.ProcessEnv): string | undefined {
  const v = env.NOTIFY_SOCKET;
  if (!v) return undefined;
  if (v.startsWith('@')) return v.length > 1 ? `\0${v.slice(1)}` : undefined;
  if (v.startsWith('/')) return v;
  return undefined; // sd_notify ignores relative paths (and vsock: addresses, systemd >= 253)
}

/**
 * Watchdog ping interval in ms: half of WATCHDOG_USEC (sd_watchdog_enabled(3)), or undefined
 * when the watchdog is off, WATCHDOG_USEC is invalid, or WATCHDOG_PID names another process.
 */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv, pid: number): number | undefined {
  const usecText = env.WATCHDOG_USEC;
  if (usecText === undefined || !/^\d+$/.test(usecText)) return undefined;
  const usec = Number(usecText);
  if (!Number.isSafeInteger(usec) || usec <= 0) return undefined;
  const pidText = env.WATCHDOG_PID;
  if (pidText !== undefined && pidText !== '' && Number(pidText) !== pid) return undefined;
  return Math.max(1, Math.floor(usec / 2 / 1000));
}

function defaultLoadDgram(): UnixDgramModule {
  // optionalDependency with a native addon: absent or unbuilt on some installs.
  return require('unix-dgram') as UnixDgramModule;
}

export class SystemdNotifier implements Service {
  readonly name = 'systemd';
  private readonly log: Logger;
  private readonly env: NodeJS.ProcessEnv;
  private readonly loadDgram: () => UnixDgramModule;
  private readonly pid: number;
  private readonly limited: LogLimiter;
  private socket: UnixDgramSocket | undefined;
  private address: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private healthCheck: HealthCheck | undefined;
  private intervalMs = 0;
  private lastTick = 0;

  constructor(opts: SystemdNotifierOptions) {
    this.log = opts.log;
    this.env = opts.env ?? process.env;
    this.loadDgram = opts.loadDgram ?? defaultLoadDgram;
    this.pid = opts.pid ?? process.pid;
    this.limited = new LogLimiter(this.log, 60_000);
  }

  /** True once start() found a notify socket and could open a datagram socket. */
  get active(): boolean {
    return this.socket !== undefined;
  }

  /**
   * Watchdog pings are sent only while `fn` returns true. The ping timer itself only fires while
   * the event loop turns, so a wedged loop or a failing health check both stop the pings, and
   * systemd restarts the daemon after WatchdogSec. May be called before or after start().
   */
  setHealthCheck(fn: HealthCheck): void {
    this.healthCheck = fn;
  }

  async start(): Promise<void> {
    if (this.socket) return;
    const raw = this.env.NOTIFY_SOCKET;
    if (!raw) {
      this.log.debug('NOTIFY_SOCKET unset: not under systemd Type=notify; sd_notify disabled');
      return;
    }
    const address = notifySocketAddress(this.env);
    if (!address) {
      this.log.warn({ notifySocket: raw }, 'NOTIFY_SOCKET is not an absolute path or @abstract name; sd_notify disabled');
      return;
    }
    if (address.startsWith('\0')) {
      // unix-dgram 2.0.7 copies the address with strncpy (stops at the leading NUL) and passes
      // sizeof(sockaddr_un) as its length, so no abstract name can be reached through it (verified:
      // ECONNREFUSED). Refuse rather than send to the wrong (all-zero) abstract address.
      this.log.warn({ notifySocket: raw }, 'abstract NOTIFY_SOCKET is not reachable through unix-dgram; sd_notify disabled');
      return;
    }
    let socket: UnixDgramSocket;
    try {
      socket = this.loadDgram().createSocket('unix_dgram');
    } catch (e) {
      this.log.info({ err: (e as Error).message }, 'unix-dgram unavailable: sd_notify disabled (readiness and watchdog not reported)');
      return;
    }
    socket.on('error', this.onSocketError);
    this.socket = socket;
    this.address = address;

    const intervalMs = watchdogIntervalMs(this.env, this.pid);
    if (intervalMs !== undefined) {
      this.intervalMs = intervalMs;
      this.lastTick = Date.now();
      this.timer = setInterval(this.onWatchdogTick, intervalMs);
      this.timer.unref(); // the watchdog never keeps the process alive on its own
      this.log.info({ intervalMs }, 'systemd watchdog enabled');
    } else if (this.env.WATCHDOG_USEC !== undefined) {
      this.log.debug({ usec: this.env.WATCHDOG_USEC, watchdogPid: this.env.WATCHDOG_PID }, 'systemd watchdog not for this process or invalid');
    }
  }

  /** READY=1, optionally with a STATUS= line. */
  ready(status?: string): void {
    this.send(status === undefined ? 'READY=1' : `READY=1\nSTATUS=${oneLine(status)}`);
  }

  /** STATUS=: free text shown by `systemctl status`. */
  status(text: string): void {
    this.send(`STATUS=${oneLine(text)}`);
  }

  /** STOPPING=1: the daemon has begun its clean shutdown. */
  stopping(status?: string): void {
    this.send(status === undefined ? 'STOPPING=1' : `STOPPING=1\nSTATUS=${oneLine(status)}`);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    const socket = this.socket;
    this.socket = undefined;
    this.address = undefined;
    if (!socket) return;
    try {
      socket.close();
    } catch (e) {
      this.log.debug({ err: (e as Error).message }, 'closing the notify socket failed');
    }
    socket.removeListener('error', this.onSocketError);
  }

  private readonly onWatchdogTick = (): void => {
    const now = Date.now();
    const lateMs = now - this.lastTick - this.intervalMs;
    this.lastTick = now;
    // A tick this late means the event loop was blocked for most of the watchdog period: say so
    // in the journal before systemd's kill (WatchdogSec) makes it hard to tell why.
    if (lateMs > this.intervalMs / 2) this.limited.warn('lag', { lateMs, intervalMs: this.intervalMs }, 'event loop blocked: watchdog ping late');
    let healthy = true;
    if (this.healthCheck) {
      try {
        healthy = this.healthCheck() === true;
      } catch (e) {
        healthy = false;
        this.limited.warn('health-throw', { err: (e as Error).message }, 'health check threw: withholding watchdog ping');
      }
    }
    if (healthy) this.send('WATCHDOG=1');
    else this.limited.warn('unhealthy', {}, 'health check failing: withholding watchdog ping (systemd restarts us after WatchdogSec)');
  };

  private readonly onSocketError = (err: Error): void => {
    this.limited.warn('socket', { err: err.message }, 'notify socket error');
  };

  private send(message: string): void {
    const socket = this.socket;
    const address = this.address;
    if (!socket || !address) return;
    const buf = Buffer.from(message, 'utf8');
    const kind = message.slice(0, message.indexOf('='));
    try {
      socket.send(buf, 0, buf.length, address, (err) => {
        if (err) this.limited.warn(`send:${kind}`, { err: err.message, message: kind }, 'sd_notify send failed');
      });
    } catch (e) {
      this.limited.warn(`send:${kind}`, { err: (e as Error).message, message: kind }, 'sd_notify send failed');
    }
  }
}

/** sd_notify is newline-separated KEY=VALUE: a status must stay on one line. */
function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ');
}
