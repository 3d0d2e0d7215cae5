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
 * Retryable: Retry-After when central sent one (capped, never below the initial backoff), else
 * the next step of `b`. Anything else (refused, fatal) needs an operator: the maximum backoff.
 */
export function retryDelay(e: unknown, b: Backoff, cfg: RetryConfig): number {
  const f = failureOf(e);
  if (f.kind !== 'retryable') return Math.min(cfg.max_ms, MAX_BACKOFF_MS);
  if (f.retryAfterMs !== undefined) return retryAfterDelay(f.retryAfterMs, cfg);
  return b.next();
}

/** Honours Retry-After, capped at MAX_BACKOFF_MS and never below the initial backoff (a "Retry-After: 0" must not become a tight loop). */
export function retryAfterDelay(ra: number, cfg: RetryConfig): number {
  return Math.max(cfg.initial_ms, Math.min(ra, MAX_BACKOFF_MS));
}
