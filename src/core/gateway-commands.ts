/**
 * The core's own commands, for the technician tools (`shelfgate status`, `shelfgate devices`) and
 * any store system with the `read` permission. They report what the core knows without naming a
 * feature: every device the registry has committed (whatever feature built its source), the
 * sync's backlog, and each feature's own `status()` under its name.
 *
 * - `gateway.status`: store, version, uptime, device counts and the offline ones with their last
 *   error, the sync backlog and last success, and `features.<name>` = that feature's status().
 * - `devices.list`: one row per device: committed availability (state, since, last error, last
 *   seen) and the live counters of the source that reads it. Counters are per source: the devices
 *   on one Modbus bus share their bus's counters, shown once per device with the source named.
 */
import { z } from 'zod';
import type { Store } from '../store/store';
import type { SyncService } from '../sync/service';
import { declareCommand, handle, type CommandDecl, type CommandHandler } from './commands';
import type { FeatureParts } from './feature';
import type { Source, SourceStats } from './sources/types';

export const gatewayStatus = declareCommand({
  name: 'gateway.status',
  permission: 'read',
  description: 'one screen of the running gateway: devices online/offline with their last error, the sync backlog and last success, and each feature\'s status',
  payload: z.object({}).strict(),
});

export const devicesList = declareCommand({
  name: 'devices.list',
  permission: 'read',
  description: 'every device: online or offline, since when, the last error, and its source\'s frame counters',
  payload: z.object({}).strict(),
});

export const GATEWAY_COMMANDS: readonly CommandDecl[] = [gatewayStatus, devicesList];

export interface DeviceReport {
  id: string;
  kind: string | null;
  model: string | null;
  path: string | null;
  state: 'online' | 'offline' | 'unknown';
  /** RFC 3339 of the last availability change, or null. */
  since: string | null;
  /** The reason of the last offline report (kept after the device came back, as the last error). */
  last_error: string | null;
  last_seen: string | null;
  /** The source that reads it, and that source's counters (null when no source of this run reads it: a device removed from the config). */
  source: string | null;
  counters: SourceStats | null;
}

export interface GatewayCommandDeps {
  storeId: string;
  version: string;
  store: Pick<Store, 'loadDevices'>;
  sync: Pick<SyncService, 'status'>;
  sources: readonly Source[];
  features: ReadonlyMap<string, FeatureParts>;
  now?: () => number;
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

export function deviceReports(d: Pick<GatewayCommandDeps, 'store' | 'sources'>): DeviceReport[] {
  const sourceOf = new Map<string, Source>();
  for (const s of d.sources) for (const id of s.devices) sourceOf.set(id, s);
  const rows = new Map(d.store.loadDevices().map((r) => [r.id, r]));
  const ids = [...new Set([...sourceOf.keys(), ...rows.keys()])].sort();
  return ids.map((id) => {
    const r = rows.get(id);
    const s = sourceOf.get(id);
    // the registry commits every transition; a device of this run that never reported yet is unknown
    const state: DeviceReport['state'] = r ? (r.online ? 'online' : 'offline') : 'unknown';
    return {
      id,
      kind: r?.kind ?? null,
      model: r?.model ?? null,
      path: r?.path ?? null,
      state,
      since: iso(r?.updatedAt ?? null),
      last_error: r?.reason ?? null,
      last_seen: iso(r?.lastSeen ?? null),
      source: s?.name ?? null,
      counters: s ? { ...s.stats } : null,
    };
  });
}

export function gatewayCommandHandlers(d: GatewayCommandDeps): Array<{ decl: CommandDecl; handler: CommandHandler }> {
  const now = d.now ?? Date.now;
  const startedAt = now();
  return [
    handle(devicesList, async () => deviceReports(d)),
    handle(gatewayStatus, async () => {
      const devices = deviceReports(d);
      const sync = d.sync.status();
      const features: Record<string, unknown> = {};
      for (const [name, parts] of d.features) if (parts.status) features[name] = parts.status();
      return {
        store_id: d.storeId,
        version: d.version,
        uptime_s: Math.round((now() - startedAt) / 1000),
        devices: {
          total: devices.length,
          online: devices.filter((x) => x.state === 'online').length,
          offline: devices.filter((x) => x.state !== 'online').map((x) => ({ id: x.id, state: x.state, since: x.since, last_error: x.last_error })),
        },
        sync: {
          transport: sync.transport,
          connected: sync.connected,
          backlog_count: sync.backlog_count,
          backlog_bytes: sync.backlog_bytes,
          oldest_event_age_s: sync.oldest_event_age_s,
          last_success: sync.last_success,
          last_error: sync.last_error,
          dropped: sync.dropped,
        },
        features,
      };
    }),
  ];
}
