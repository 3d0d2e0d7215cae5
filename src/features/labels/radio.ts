/**
 * What the labels service needs of a way to reach labels: an OpenEPaperLink access point today
 * (oepl-radio.ts), a vendor's base-station API or a serially attached radio tomorrow. One LabelRadio
 * is one access point (one radio, one queue, one byte budget in the scheduler), named by the `id`
 * of its config entry.
 *
 * Contract, whatever the radio:
 * - `send()` resolves when the radio STORED the content for the label (OEPL: HTTP 200 `Ok, saved`).
 *   That is never a confirmation: only an `ack` event confirms, and only for the label it names.
 * - Events are facts the radio observed; it never invents an ack. Where the radio can lose its
 *   event stream (the OEPL WebSocket), the radio reconciles against its database when it comes
 *   back and reports what it learnt as the same events.
 * - A radio that restarted or went down says so with `lost`: everything it had queued is gone.
 * - Errors are RadioError with a code, so the service can tell "try later" from "never".
 */
import type { Service } from '../../lifecycle';

/** What a label reported about itself at a check-in. Null: the radio does not report it. */
export interface LabelHealth {
  batteryMv: number | null;
  rssi: number | null;
  lqi: number | null;
  temperature: number | null;
  /** Radio hardware type (picks the label type from devices/labels). */
  hwType: number | null;
  /** ms epoch (gateway clock) of the next check-in the radio expects; null: unknown. */
  nextCheckInAt: number | null;
  /**
   * The label's check-in interval in ms as the radio reports it (OEPL: `nextcheckin - lastseen` of
   * the tag record, both on the AP's clock, so the difference holds even when that clock is off).
   * Null: unknown.
   */
  checkInMs: number | null;
}

export type RadioEvent =
  /** The label checked in (or the radio's database says it was seen) at `at` (gateway clock, ms). */
  | { type: 'heard'; mac: string; at: number; health: LabelHealth }
  /**
   * The label received the content the radio last stored for it. `hash`: the service's content
   * hash it confirms, when the radio knows it; absent: "the newest content stored for it".
   */
  | { type: 'ack'; mac: string; at: number; hash?: string }
  /** The radio gave up on the label's queued content (OEPL: `xfer timeout`). */
  | { type: 'transferFailed'; mac: string; reason: string }
  /** The radio lost what it had queued (restart, down). `until`: send nothing before this (ms epoch). */
  | { type: 'lost'; reason: string; until?: number }
  /** Reachability of the radio itself changed. */
  | { type: 'status'; online: boolean; error: string | null };

export type RadioErrorCode =
  /** Busy (OEPL 409 while booting): try again after `retryAfterMs`. */
  | 'SG_AP_BUSY'
  /** No answer, connection refused, timeout. */
  | 'SG_AP_UNREACHABLE'
  /** The radio does not know this label. */
  | 'SG_AP_UNKNOWN_LABEL'
  /** An answer that is not the protocol's (HTML, garbage, an unexpected status). */
  | 'SG_AP_BAD_ANSWER'
  /** The request itself is invalid (bad MAC, bad LED pattern): retrying does not help. */
  | 'SG_AP_REQUEST_INVALID';

export class RadioError extends Error {
  constructor(
    readonly code: RadioErrorCode,
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'RadioError';
  }
}

export interface RadioStatus {
  id: string;
  online: boolean;
  lastError: string | null;
  /** Labels the radio knows. */
  labels: number;
}

export interface LabelRadio extends Service {
  /** The access point's id from the config. */
  readonly id: string;
  /** Stores `body` (the rendered content: OEPL JSON template) for the label; see the contract above. */
  send(mac: string, body: string): Promise<void>;
  /** Flashes the label's LED: `pattern` is the radio's pattern (OEPL: 24 hex digits). */
  flash(mac: string, pattern: string): Promise<void>;
  /** A label maintenance command (OEPL `/tag_cmd`: refresh, reboot, scan), delivered at the label's next check-in. */
  tagCommand?(mac: string, cmd: string): Promise<void>;
  /** Subscribes to the radio's events; returns the unsubscribe function. */
  subscribe(listener: (e: RadioEvent) => void): () => void;
  status(): RadioStatus;
}
