/**
 * The technician's commands against the running gateway (src/tools/bus-cli.ts says how they
 * connect): `shelfgate status`, `shelfgate devices`, `shelfgate tail [topic]` and
 * `shelfgate shelf tare <shelf> <slot>`. Each prints a human screen, or JSON with `--json`.
 * Exit codes: 0 ok, 1 the gateway refused or failed, 64 usage.
 */
import type { BusClient } from '../bus/request-client';
import * as topics from '../bus/topics';
import type { DeviceReport } from '../core/gateway-commands';
import { ErrorCode, ExitCode } from '../errors';
import { ago, defaultIo, table, withClient, type CliIo, type ConnOpts } from './bus-cli';

interface GatewayStatusReport {
  store_id: string;
  version: string;
  uptime_s: number;
  devices: { total: number; online: number; offline: Array<{ id: string; state: string; since: string | null; last_error: string | null }> };
  sync: { transport: string; connected: boolean; backlog_count: number; backlog_bytes: number; oldest_event_age_s: number | null; last_success: string | null; last_error: { code: string; message: string; at: string } | null; dropped: number };
  features: Record<string, Record<string, unknown> | undefined>;
}

const duration = (s: number | null): string => (s === null ? '-' : s < 120 ? `${Math.round(s)} s` : s < 7200 ? `${Math.round(s / 60)} min` : s < 172_800 ? `${Math.round(s / 3600)} h` : `${Math.round(s / 86_400)} d`);

/** One screen: the gateway, its devices, the backlog to central, and each feature's status line. */
export function formatStatus(r: GatewayStatusReport, now = Date.now()): string {
  const l: string[] = [];
  l.push(`gateway ${r.store_id} (shelfgate ${r.version}), up ${duration(r.uptime_s)}`);
  l.push(`devices: ${r.devices.online}/${r.devices.total} online${r.devices.offline.length ? '' : ', none offline'}`);
  for (const d of r.devices.offline) l.push(`  ${d.state.toUpperCase()} ${d.id}${d.since ? ` for ${ago(d.since, now)}` : ''}${d.last_error ? `: ${d.last_error}` : ''}`);
  const s = r.sync;
  l.push(
    `central (${s.transport}): ${s.transport === 'none' ? 'not configured' : s.connected ? 'reachable' : 'NOT reachable'}, backlog ${s.backlog_count} event(s)` +
      `${s.oldest_event_age_s !== null ? `, oldest ${duration(s.oldest_event_age_s)}` : ''}, last success ${s.last_success ? `${ago(s.last_success, now)} ago` : 'never'}` +
      `${s.dropped ? `, ${s.dropped} dropped` : ''}`,
  );
  if (s.last_error && !s.connected) l.push(`  last error ${ago(s.last_error.at, now)} ago: ${s.last_error.code}: ${s.last_error.message}`);
  for (const [name, st] of Object.entries(r.features)) {
    if (!st) continue;
    l.push(`${name}: ${featureLine(name, st)}`);
  }
  return `${l.join('\n')}\n`;
}

/** A feature's status object as one line: known shapes get words, the rest key=value. */
function featureLine(name: string, st: Record<string, unknown>): string {
  const summary = st.summary as Record<string, unknown> | undefined;
  if (name === 'labels' && summary && typeof summary.share === 'number') {
    // (the labels summary: LabelsSummary in src/features/labels/service.ts)
    return `${summary.labels as number} label(s), on the current price ${summary.confirmed_current as number}/${summary.priced as number} (${((summary.share as number) * 100).toFixed(1)} %), oldest mismatch ${summary.oldest_mismatch_since ? ago(summary.oldest_mismatch_since as string) : 'none'}, lost ${summary.lost as number}, low battery ${summary.low_battery as number}`;
  }
  return Object.entries(st)
    .map(([k, v]) => `${k}=${typeof v === 'object' && v !== null ? (Array.isArray(v) ? `${v.length} item(s)` : JSON.stringify(v)) : String(v)}`)
    .join(' ');
}

export function formatDevices(rows: DeviceReport[], now = Date.now()): string {
  if (rows.length === 0) return 'no devices configured\n';
  const body = rows.map((d) => [
    d.id,
    d.state,
    d.since ? ago(d.since, now) : '-',
    d.kind ?? '-',
    d.path ?? '-',
    d.counters ? `${d.counters.readings}/${d.counters.timeouts}/${d.counters.crcErrors + d.counters.invalidFrames}` : '-',
    d.state === 'online' ? '-' : (d.last_error ?? '-'),
  ]);
  return `${table(['DEVICE', 'STATE', 'FOR', 'KIND', 'WHERE', 'READ/TIMEOUT/BAD', 'LAST ERROR'], body).join('\n')}\n`;
}

export async function runStatusCli(o: ConnOpts & { json?: boolean }, io: CliIo = defaultIo()): Promise<number> {
  const r = await withClient('status', o, io, (c) => c.request<GatewayStatusReport>('gateway.status', {}));
  if (!r.ok) return r.code;
  io.stdout.write(o.json ? `${JSON.stringify(r.value)}\n` : formatStatus(r.value));
  return ExitCode.OK;
}

export async function runDevicesCli(o: ConnOpts & { json?: boolean }, io: CliIo = defaultIo()): Promise<number> {
  const r = await withClient('devices', o, io, (c) => c.request<DeviceReport[]>('devices.list', {}));
  if (!r.ok) return r.code;
  io.stdout.write(o.json ? `${JSON.stringify(r.value)}\n` : formatDevices(r.value));
  return ExitCode.OK;
}

/**
 * `shelfgate tail [topic]`: the bus's messages under the store's prefix as they come (retained
 * ones first, marked), until Ctrl-C, or `--count N` messages, or `--seconds S`. `topic` is
 * relative to `shelfgate/v1/<store>/` and may use + and # (default `#`); the gateway's ACL decides
 * what this user may read, and a refused subscription is an error, not silence.
 */
export async function runTailCli(topic: string | undefined, o: ConnOpts & { json?: boolean; count?: number; seconds?: number; signal?: AbortSignal }, io: CliIo = defaultIo()): Promise<number> {
  const rel = topic ?? '#';
  if (rel.startsWith('/') || rel.startsWith('shelfgate/')) {
    io.stderr.write(`shelfgate tail: give the topic relative to shelfgate/v1/<store>/, e.g. shelf/# or device/+/availability\n`);
    return ExitCode.USAGE;
  }
  const r = await withClient('tail', o, io, (c) => tail(c, rel, o, io));
  return r.ok ? r.value : r.code;
}

async function tail(c: BusClient, rel: string, o: { json?: boolean; count?: number; seconds?: number; signal?: AbortSignal }, io: CliIo): Promise<number> {
  const prefix = topics.storePrefix(c.store);
  const filter = `${prefix}${rel}`;
  let seen = 0;
  let finish: (code: number) => void = () => undefined;
  const done = new Promise<number>((resolve) => (finish = resolve));
  const onMessage = (t: string, payload: Buffer, packet: { retain?: boolean }): void => {
    if (!t.startsWith(prefix) || t.startsWith(`${prefix}response/`)) return;
    const text = payload.toString('utf8');
    if (o.json) {
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        /* not JSON: the text */
      }
      io.stdout.write(`${JSON.stringify({ ts: new Date().toISOString(), topic: t.slice(prefix.length), retained: !!packet.retain, payload: body })}\n`);
    } else io.stdout.write(`${new Date().toISOString().slice(11, 23)} ${packet.retain ? '(retained) ' : ''}${t.slice(prefix.length)} ${text}\n`);
    if (o.count !== undefined && ++seen >= o.count) finish(ExitCode.OK);
  };
  c.client.on('message', onMessage);
  const onClose = (): void => {
    io.stderr.write('shelfgate tail: the gateway closed the connection\n');
    finish(ExitCode.FAILURE);
  };
  c.client.on('close', onClose);
  const onAbort = (): void => finish(ExitCode.OK);
  const signal = o.signal ?? signalOnInterrupt();
  signal.addEventListener('abort', onAbort, { once: true });
  const timer = o.seconds !== undefined ? setTimeout(() => finish(ExitCode.OK), o.seconds * 1000) : undefined;
  try {
    const granted = await c.client.subscribeAsync(filter, { qos: 0 });
    if (granted.some((g) => g.qos === 128)) {
      io.stderr.write(`shelfgate tail: the gateway refused the subscription to ${rel} for this user\n`);
      return ExitCode.FAILURE;
    }
    if (!o.json && io.stderr.isTTY) io.stderr.write(`watching ${filter} (Ctrl-C stops)\n`);
    return await done;
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', onAbort);
    c.client.off('message', onMessage);
    c.client.off('close', onClose);
  }
}

function signalOnInterrupt(): AbortSignal {
  const ac = new AbortController();
  const stop = (): void => ac.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  ac.signal.addEventListener('abort', () => {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  });
  return ac.signal;
}

/**
 * `shelfgate shelf tare <shelf> <slot>`: takes the slot's settled (empty) weight as its tare. A
 * shelf still moving has no settled weight; the command then waits for it, showing how long, up
 * to `--timeout` seconds (default 30), asking again every second.
 */
export async function runShelfTareCli(shelf: string, slot: string, o: ConnOpts & { json?: boolean; timeout?: number }, io: CliIo = defaultIo()): Promise<number> {
  const timeoutS = o.timeout ?? 30;
  const r = await withClient('shelf tare', o, io, async (c) => {
    const t0 = Date.now();
    for (;;) {
      try {
        return await c.request<Record<string, unknown>>('calibrate.tare', { shelf, slot });
      } catch (e) {
        const code = ((e as { details?: { code?: string } }).details ?? {}).code;
        const waited = (Date.now() - t0) / 1000;
        if (code !== ErrorCode.NOT_SETTLED || waited >= timeoutS) throw e;
        io.stderr.write(`${io.stderr.isTTY ? '\r' : ''}waiting for ${shelf}/${slot} to settle (${Math.round(waited)} s of ${timeoutS} s)${io.stderr.isTTY ? '' : '\n'}`);
        await new Promise((res) => setTimeout(res, 1000));
      }
    }
  });
  if (io.stderr.isTTY) io.stderr.write('\n');
  if (!r.ok) return r.code;
  const v = r.value;
  io.stdout.write(o.json ? `${JSON.stringify(v)}\n` : `tared ${shelf}/${slot}: tare ${String(v.tare_g ?? '?')} g, count now ${String(v.count ?? '?')}\n`);
  return ExitCode.OK;
}
