/**
 * The acknowledgements of processed changes, to central: read from pending_acks (written with the
 * page that decided them, so they survive a crash), sent in batches of at most 1000 (the
 * contract's limit), retried with backoff until central answers, then removed.
 */
import { LogLimiter } from '../log';
import { Backoff, sleep } from '../util/backoff';
import type { ExchangeOptions } from './status';
import { Wakeup } from './wakeup';

/** The contract's limit on acknowledgements per request. */
const MAX_ACKS = 1000;

export interface AckSenderOptions extends ExchangeOptions {
  /** How long to wait for new acks when none are pending; default 5000 ms. */
  idleMs?: number;
}

export class AckSender {
  private readonly limiter: LogLimiter;
  private readonly backoff: Backoff;
  private readonly wakeup = new Wakeup();

  constructor(private readonly o: AckSenderOptions) {
    this.limiter = new LogLimiter(o.log);
    this.backoff = new Backoff({ initialMs: o.backoff.initial_ms, maxMs: o.backoff.max_ms });
  }

  /** New acks are pending: send them now rather than at the next idle check. */
  wake(): void {
    this.wakeup.wake();
  }

  /** Runs until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    const { transport, repo } = this.o;
    while (!signal.aborted) {
      let acks;
      try {
        acks = repo.pendingAcks(MAX_ACKS);
      } catch (e) {
        if (signal.aborted) break;
        this.limiter.error('ack-read', { err: (e as Error).message }, 'reading pending acks failed');
        await sleep(this.o.backoff.max_ms, signal);
        continue;
      }
      if (acks.length === 0) {
        await this.wakeup.wait(this.o.idleMs ?? 5000, signal);
        continue;
      }
      try {
        await transport.ack(acks);
      } catch (e) {
        if (signal.aborted) break;
        this.o.failed(e, 'ack');
        await sleep(this.o.delayFor(e, this.backoff), signal);
        continue;
      }
      this.o.succeeded('ack');
      this.backoff.reset();
      this.o.counters.acksSent += acks.length;
      try {
        repo.clearAcks(acks);
      } catch (e) {
        this.limiter.error('ack-clear', { err: (e as Error).message }, 'could not forget sent acks (they will be sent again)');
      }
    }
  }
}
