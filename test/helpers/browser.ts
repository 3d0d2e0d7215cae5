/**
 * Debian's chromium (the `chromium` package; scripts/setup.sh --test installs it), headless, driven
 * by playwright-core: never a downloaded browser. One per test file, launched in beforeAll and
 * closed in afterAll by useChromium().
 */
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll } from 'vitest';

export const CHROMIUM = '/usr/bin/chromium';

/** Registers the file's browser; call the returned function inside a test to get it. */
export function useChromium(): () => Browser {
  let browser: Browser | undefined;
  beforeAll(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], timeout: 30_000 });
  }, 40_000);
  afterAll(async () => {
    await browser?.close();
  });
  return () => {
    if (!browser) throw new Error(`chromium did not start (${CHROMIUM}; apt-get install chromium)`);
    return browser;
  };
}
