/**
 * Bounded waits for tests. A test never sleeps a fixed time and hopes: it waits for the state or
 * the event it needs, and a wait that runs out fails with the name of what it waited for. Kept free
 * of heavy imports so that unit tests can use it too (test/helpers/daemon.ts re-exports waitFor).
 */
import type { EventEmitter } from 'node:events';

/**
 * Polls `cond` (which may be async) every `everyMs` until it returns a truthy value, and resolves
 * with that value; rejects once `timeoutMs` is up. A throw from `cond` ends the wait with it.
 */
export async function waitFor<T>(
  cond: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  timeoutMs = 10_000,
  what = 'condition',
  everyMs = 25,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * Resolves with the arguments of the next `event` that `emitter` emits, or rejects after
 * `timeoutMs`. Subscribe before doing what causes the event.
 */
export function waitForEvent(emitter: EventEmitter, event: string, timeoutMs = 5_000, what = `'${event}'`): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const onEvent = (...args: unknown[]): void => {
      clearTimeout(timer);
      resolve(args);
    };
    const timer = setTimeout(() => {
      emitter.off(event, onEvent);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    emitter.once(event, onEvent);
  });
}
