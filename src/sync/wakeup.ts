/**
 * A wait the sync loops share: resolves after `ms`, on wake(), or when the signal aborts, and
 * leaves no timer or listener behind (a loop that idles for months must not leak one per turn).
 */
export class Wakeup {
  private readonly waiters = new Set<() => void>();

  wake(): void {
    for (const w of [...this.waiters]) w();
  }

  wait(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      if (signal.aborted) return resolve();
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, Math.min(ms, 2 ** 31 - 1)));
      signal.addEventListener('abort', done, { once: true });
      this.waiters.add(done);
    });
  }
}
