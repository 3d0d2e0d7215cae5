/**
 * Resolves on SIGINT or SIGTERM (Ctrl-C, systemctl stop), or when `signal` aborts (tests run the
 * CLIs in process). The signal listeners are removed once it resolves.
 */
export function waitForStop(signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal) {
      if (signal.aborted) resolve();
      else signal.addEventListener('abort', () => resolve(), { once: true });
      return;
    }
    const done = (): void => {
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      resolve();
    };
    process.on('SIGINT', done);
    process.on('SIGTERM', done);
  });
}
