import type { DeviceAvailability } from './types';

/**
 * Tracks whether each sensor on a link answers. A sensor goes offline after `missesToOffline`
 * consecutive misses (timeouts, CRC errors, exception or error responses) or at once when its link
 * drops, and back online on its first good answer. Only transitions are reported.
 */
export class SensorHealth {
  private readonly state = new Map<string, { online: boolean | null; misses: number; nextProbe: number }>();

  constructor(
    keys: readonly string[],
    private readonly missesToOffline: number,
    private readonly offlineProbeMs: number,
    private readonly report: (a: DeviceAvailability) => void,
  ) {
    for (const k of keys) this.state.set(k, { online: null, misses: 0, nextProbe: 0 });
  }

  ok(key: string, ts: number): void {
    const s = this.state.get(key)!;
    s.misses = 0;
    if (s.online !== true) {
      s.online = true;
      this.report({ sensor: key, online: true, ts });
    }
  }

  miss(key: string, reason: string, ts: number, nowMono: number): void {
    const s = this.state.get(key)!;
    s.misses++;
    if (s.online !== false && s.misses >= this.missesToOffline) {
      s.online = false;
      this.report({ sensor: key, online: false, reason, ts });
    }
    if (s.online === false) s.nextProbe = nowMono + this.offlineProbeMs;
  }

  /** An offline sensor is only probed every `offlineProbeMs`, so dead addresses do not stall a bus with timeouts. */
  due(key: string, nowMono: number): boolean {
    const s = this.state.get(key)!;
    return s.online !== false || nowMono >= s.nextProbe;
  }

  /** Time until the next sensor is due (0 if one is due now; Infinity with no sensors). */
  msUntilDue(nowMono: number): number {
    let min = Infinity;
    for (const s of this.state.values()) {
      const left = s.online === false ? s.nextProbe - nowMono : 0;
      if (left < min) min = left;
    }
    return Math.max(0, min);
  }

  linkDown(reason: string, ts: number): void {
    for (const [key, s] of this.state) {
      s.misses = 0;
      s.nextProbe = 0;
      if (s.online !== false) {
        s.online = false;
        this.report({ sensor: key, online: false, reason, ts });
      }
    }
  }

  isOnline(key: string): boolean {
    return this.state.get(key)?.online === true;
  }
}
