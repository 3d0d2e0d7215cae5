import { EventEmitter } from 'node:events';
import { ErrorCode, ShelfgateError } from '../errors';
import type { Service } from '../lifecycle';
import { LogLimiter, type Logger } from '../log';
import { Backoff, sleep } from '../util/backoff';
import type { Link, Opener } from './types';

export interface ReconnectingLinkOptions {
  name: string;
  opener: Opener;
  backoff: { initialMs: number; maxMs: number };
  log: Logger;
  /** A link that stayed open this long resets the backoff. Default 10 000 ms. */
  stableMs?: number;
  /** Jitter source for the backoff (tests). */
  random?: () => number;
}

export interface LinkStats {
  opens: number;
  openFailures: number;
  disconnects: number;
  bytesIn: number;
  bytesOut: number;
}

/** stop() waits at most this long for a link's close() (a wedged driver must not block shutdown). */
const CLOSE_TIMEOUT_MS = 2000;

/** Closes a link that may be broken: never throws, never rejects. */
function closeQuietly(link: Link): void {
  Promise.resolve()
    .then(() => link.close())
    .catch(() => undefined);
}

export interface ReconnectingLink {
  on(event: 'online', listener: () => void): this;
  on(event: 'offline', listener: (reason: string) => void): this;
  on(event: 'data', listener: (chunk: Buffer) => void): this;
  off(event: 'online', listener: () => void): this;
  off(event: 'offline', listener: (reason: string) => void): this;
  off(event: 'data', listener: (chunk: Buffer) => void): this;
}

/**
 * Keeps one Link open for as long as it runs (a known failure of other gateways: an unplugged adapter must come back on its
 * own, not by a cron restart as in Zigbee2MQTT #17809). start() returns at once: a USB adapter
 * missing at boot must not hold up the daemon. Every close or failed open waits a capped,
 * jittered backoff and opens again. Events: 'online', 'offline' (reason: string; once per
 * transition, not per failed retry), 'data' (Buffer). Should the loop itself fail (a driver bug),
 * that is logged, the link reported offline, and the loop runs again after the same backoff: it
 * never stops while the link is started.
 */
export class ReconnectingLink extends EventEmitter implements Service {
  readonly name: string;
  readonly stats: LinkStats = { opens: 0, openFailures: 0, disconnects: 0, bytesIn: 0, bytesOut: 0 };
  private readonly opener: Opener;
  private readonly log: Logger;
  private readonly limiter: LogLimiter;
  private readonly backoff: Backoff;
  private readonly stableMs: number;
  private link: Link | null = null;
  private state: 'unknown' | 'online' | 'offline' = 'unknown';
  private abort: AbortController | null = null;
  private loop: Promise<void> | null = null;

  constructor(opts: ReconnectingLinkOptions) {
    super();
    this.name = opts.name;
    this.opener = opts.opener;
    this.log = opts.log;
    this.limiter = new LogLimiter(opts.log);
    this.backoff = new Backoff({ ...opts.backoff, random: opts.random });
    this.stableMs = opts.stableMs ?? 10_000;
  }

  get online(): boolean {
    return this.link !== null;
  }

  async start(): Promise<void> {
    if (this.abort) return;
    const ac = new AbortController();
    this.abort = ac;
    this.backoff.reset();
    this.loop = this.supervise(ac.signal);
  }

  async stop(): Promise<void> {
    const ac = this.abort;
    if (!ac) return;
    this.abort = null;
    const link = this.link;
    ac.abort(); // ends the session or the backoff sleep; an open in flight is closed when it lands
    if (link) await Promise.race([link.close().catch(() => undefined), sleep(CLOSE_TIMEOUT_MS)]);
    await this.loop;
    this.loop = null;
  }

  async write(data: Buffer): Promise<void> {
    const link = this.link;
    if (!link) throw new ShelfgateError(ErrorCode.TRANSPORT_CLOSED, `${this.name}: link offline`);
    await link.write(data);
    this.stats.bytesOut += data.length;
  }

  /** Link.send() on the current link (the per-request path); bytesOut counts what was handed to it. */
  send(data: Buffer, onError: (err: Error) => void): void {
    const link = this.link;
    if (!link) return onError(new ShelfgateError(ErrorCode.TRANSPORT_CLOSED, `${this.name}: link offline`));
    this.stats.bytesOut += data.length;
    link.send(data, onError);
  }

  private async supervise(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await this.run(signal);
        return;
      } catch (err) {
        if (signal.aborted) return;
        this.link = null;
        const delayMs = this.backoff.next();
        this.log.error({ err, delayMs }, 'reconnect loop failed; reopening after backoff');
        this.setOffline(`reconnect loop failed: ${err instanceof Error ? err.message : String(err)}`);
        await sleep(delayMs, signal);
      }
    }
  }

  private async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const link = await this.open(signal);
      if (link && signal.aborted) {
        closeQuietly(link); // stop() came between the open and this line
        break;
      }
      if (link) {
        try {
          await this.session(link, signal);
        } catch (err) {
          closeQuietly(link);
          throw err;
        }
      }
      if (signal.aborted) break;
      const delayMs = this.backoff.next();
      this.log.debug({ delayMs, attempt: this.backoff.attempt }, 'reopening after backoff');
      await sleep(delayMs, signal);
    }
  }

  /** One open attempt; null if it failed or stop() came first. */
  private async open(signal: AbortSignal): Promise<Link | null> {
    const opening = Promise.resolve().then(() => this.opener());
    let onAbort = (): void => {};
    const aborted = new Promise<'aborted'>((resolve) => {
      onAbort = () => resolve('aborted');
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      const result = await Promise.race([opening, aborted]);
      if (result !== 'aborted') return result;
      // stop() did not wait for this open; close the link if it still arrives.
      opening.then((l) => l.close(), () => undefined).catch(() => undefined);
      return null;
    } catch (err) {
      this.stats.openFailures++;
      const message = (err as Error).message;
      this.limiter.warn(`${this.name}:open`, { err: message, failures: this.stats.openFailures }, 'link open failed; retrying with backoff');
      this.setOffline(`open failed: ${message}`);
      return null;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  /** Serves one open link; resolves when it closes or stop() is called. */
  private session(link: Link, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const onData = (chunk: Buffer): void => {
        this.stats.bytesIn += chunk.length;
        this.backoff.reset(); // the device answers: this link works
        // safeEmit inlined: no rest-args array per answer on the read path
        try {
          this.emit('data', chunk);
        } catch (err) {
          this.log.error({ err, event: 'data' }, 'link listener threw');
        }
      };
      const end = (reason: string, err?: Error): void => {
        link.off('data', onData);
        link.off('close', onClose);
        signal.removeEventListener('abort', onAbort);
        clearTimeout(stable);
        this.link = null;
        if (!signal.aborted) {
          this.stats.disconnects++;
          this.limiter.warn(`${this.name}:disconnect`, { err: err?.message, link: link.description }, 'link closed; reopening with backoff');
        }
        this.setOffline(reason);
        resolve();
      };
      const onClose = (err?: Error): void => end(err ? err.message : 'closed', err);
      const onAbort = (): void => end('stopped');
      link.on('data', onData);
      link.on('close', onClose);
      // armed only once the link is really served: a session that fails to start must not reset the backoff
      const stable = setTimeout(() => this.backoff.reset(), this.stableMs);
      stable.unref();
      signal.addEventListener('abort', onAbort, { once: true });
      this.link = link;
      this.stats.opens++;
      this.state = 'online';
      this.log.info({ link: link.description, openFailures: this.stats.openFailures }, 'link online');
      this.safeEmit('online');
    });
  }

  private setOffline(reason: string): void {
    if (this.state === 'offline') return;
    this.state = 'offline';
    this.safeEmit('offline', reason);
  }

  /** A throwing listener must not break the link's read path or the reconnect loop. */
  private safeEmit(event: string, ...args: unknown[]): void {
    try {
      this.emit(event, ...args);
    } catch (err) {
      this.log.error({ err, event }, 'link listener threw');
    }
  }
}
