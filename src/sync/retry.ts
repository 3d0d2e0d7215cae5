/**
 * How long to wait after a failed exchange with central, one rule for every direction.
 */
import { MAX_BACKOFF_MS, type Backoff } from '../util/backoff';
import { failureOf } from './failure';

export interface RetryConfig {
  initial_ms: number;
  max_ms: number;
}

/**
 * Retryable: the next step of `b`, or Retry-After if central asks for longer. Anything else
 * (refused, fatal) needs an operator: the maximum backoff.
 */
export function retryDelay(e: unknown, b: Backoff, cfg: RetryConfig): number {
  const f = failureOf(e);
  if (f.kind !== 'retryable') return Math.min(cfg.max_ms, MAX_BACKOFF_MS);
  return retryAfterDelay(f.retryAfterMs, b);
}

/**
 * Retry-After is honoured as a minimum, not as the delay: the backoff steps (and grows) either
 * way, so a central that keeps answering "Retry-After: 0" cannot drive a tight loop. Capped at
 * MAX_BACKOFF_MS.
 */
export function retryAfterDelay(retryAfterMs: number | undefined, b: Backoff): number {
  return Math.min(MAX_BACKOFF_MS, Math.max(retryAfterMs ?? 0, b.next()));
}
