/**
 * Runtime fault injection for the reference central (set through `CentralSimulator.faults` or
 * `POST /_sim/faults`). Faults apply to /v1 requests only, never to the /_sim admin pages.
 * Every draw comes from one seeded RNG, so a run with the same seed and the same request
 * sequence injects the same faults.
 */
import { z } from 'zod';

const rate = z.number().min(0).max(1);

export const FaultsSchema = z
  .object({
    /** Seed for the fault RNG; setting it restarts the sequence. */
    seed: z.number().int().optional(),
    /** Probability of answering 503 (with Retry-After) without processing. */
    status5xxRate: rate,
    /** Probability of answering 429 (with Retry-After) without processing. */
    status429Rate: rate,
    /** Seconds put in Retry-After on injected 429/503. */
    retryAfterS: z.number().int().min(0).max(3600),
    /** Probability of accepting the request and never answering (the socket stays open until the client gives up). */
    timeoutRate: rate,
    /** Delay before answering any request, in ms. */
    slowMs: z.number().int().min(0).max(600_000),
    /** Probability of destroying the socket before the request is processed. */
    dropConnectionRate: rate,
    /**
     * Probability of processing the request (events stored, acks recorded) and then destroying the
     * socket instead of answering: the client never learns it succeeded, so it must retry and get
     * `duplicate`. The worst case for an outbox, and the reason for event_id dedup.
     */
    lostResponseRate: rate,
    /** Changes feed: probability of sending each change twice. */
    duplicateRate: rate,
    /** Changes feed: shuffle each page (so a newer version can arrive before an older one). */
    reorder: z.boolean(),
  })
  .strict();

export type Faults = z.infer<typeof FaultsSchema>;
export type FaultsPatch = Partial<Faults>;

export const NO_FAULTS: Readonly<Faults> = Object.freeze({
  status5xxRate: 0,
  status429Rate: 0,
  retryAfterS: 1,
  timeoutRate: 0,
  slowMs: 0,
  dropConnectionRate: 0,
  lostResponseRate: 0,
  duplicateRate: 0,
  reorder: false,
});

/** Validates a partial update, reporting every invalid field at once. */
export function parseFaultsPatch(input: unknown): { ok: true; patch: FaultsPatch } | { ok: false; issues: string[] } {
  const r = FaultsSchema.partial().safeParse(input);
  if (r.success) return { ok: true, patch: r.data };
  return { ok: false, issues: r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`) };
}
