/**
 * PolledSource.pollNow(): cuts the rest of a long poll interval short (a presence edge wants the
 * shelf read now), serves a request that came during a cycle with the next cycle at once, is rate
 * limited (one early cycle per pollNowMinIntervalMs, refusals counted), and is refused when stopped.
 * Polls are counted, nothing is timed: the poll interval is a minute, so any second poll within the
 * test's bounded wait came from pollNow.
 */
import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { PolledSource, type PolledSourceOptions } from '../../src/core/sources/polled-source';
import type { SourceReading } from '../../src/core/sources/types';
import { silentLogger } from '../../src/log';
import { waitFor } from '../helpers/wait';

class UpLink extends EventEmitter {
  readonly online = true;
  send(): void {}
}

/** Answers after one turn, or holds a poll until release() when `hold` is set. */
class CountingSource extends PolledSource {
  hold = false;
  private release: (() => void) | null = null;
  constructor(opts: Partial<PolledSourceOptions> = {}) {
    super({ name: 'count', link: new UpLink() as never, sensors: ['bus.1'], pollIntervalMs: 60_000, missesToOffline: 3, gapMs: 0, log: silentLogger(), ...opts });
  }
  get holding(): boolean {
    return this.release !== null;
  }
  releaseHeld(): void {
    const r = this.release;
    this.release = null;
    r?.();
  }
  protected async pollSensor(sensor: string): Promise<SourceReading> {
    if (this.hold) await new Promise<void>((r) => (this.release = r));
    else await new Promise((r) => setImmediate(r));
    return { sensor, ts: Date.now(), rxMono: performance.now() };
  }
}

const sources: CountingSource[] = [];
afterEach(async () => {
  for (const s of sources.splice(0)) {
    s.releaseHeld();
    await s.stop();
  }
});

describe('PolledSource.pollNow', () => {
  it('starts the next cycle now instead of a minute later; a second request within the limit is refused and counted', async () => {
    const s = new CountingSource();
    sources.push(s);
    expect(s.pollNow()).toBe(false); // not started
    await s.start();
    await waitFor(() => s.stats.polls === 1, 5000, 'the first cycle');
    expect(s.pollNow()).toBe(true);
    expect(s.pollNow()).toBe(false); // within pollNowMinIntervalMs (1 s)
    await waitFor(() => s.stats.polls === 2, 5000, 'the early cycle');
    expect(s.pollNowStats).toEqual({ accepted: 1, limited: 2 });
  });

  it('a request during a cycle: that cycle finishes, the next starts at once (one extra cycle, not two)', async () => {
    const s = new CountingSource({ pollNowMinIntervalMs: 0 });
    sources.push(s);
    s.hold = true;
    await s.start();
    await waitFor(() => s.holding, 5000, 'the first poll in flight');
    expect(s.pollNow()).toBe(true);
    expect(s.pollNow()).toBe(true); // two requests during one cycle are served by one early cycle
    s.hold = false;
    s.releaseHeld();
    await waitFor(() => s.stats.polls === 2, 5000, 'the early cycle');
    // the barrier: one more request now is a third cycle; had the two above made two cycles, polls would reach 4
    expect(s.pollNow()).toBe(true);
    await waitFor(() => s.stats.polls >= 3, 5000, 'the third cycle');
    s.hold = true;
    expect(s.stats.polls).toBe(3);
  });
});
