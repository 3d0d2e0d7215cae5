/**
 * `shelfgate labels [--stale] [--json]` and `shelfgate label bind|unbind|flash|push`: a technician's
 * view of, and hands on, the labels of the running gateway. Like `shelfgate calibrate`, every
 * command is an MQTT request to the daemon with the technician's own credentials, so the ACL, the
 * permissions and the audit log apply as to any client.
 */
import { ExitCode } from '../../errors';
import { ago, defaultIo, table, withClient, type CliIo, type ConnOpts } from '../../tools/bus-cli';
import type { LabelIntegrity, LabelsSummary } from './service';

const money = (price: number | null | undefined, currency: string | null | undefined): string =>
  price === null || price === undefined ? '-' : `${(price / 100).toFixed(2)} ${currency ?? ''}`.trim();


/** The report as a technician reads it: one summary line, then one line per label. */
export function formatLabelsReport(r: { summary: LabelsSummary; labels: LabelIntegrity[] }, opts: { stale: boolean; now?: number }): string {
  const now = opts.now ?? Date.now();
  const s = r.summary;
  const lines = [
    `labels: ${s.labels}, on the current price: ${s.confirmed_current}/${s.priced} (${(s.share * 100).toFixed(1)} %), ` +
      `oldest mismatch: ${s.oldest_mismatch_since ? ago(s.oldest_mismatch_since, now) : 'none'}; ` +
      `pending ${s.by_state.pending}, sent ${s.by_state.sent}, confirmed ${s.by_state.confirmed}, failed ${s.by_state.failed}; ` +
      `problems ${s.problems}, low battery ${s.low_battery}, lost ${s.lost}`,
  ];
  if (r.labels.length === 0) {
    lines.push(opts.stale ? 'no stale labels' : 'no labels bound');
    return `${lines.join('\n')}\n`;
  }
  const rows = r.labels.map((l) => [
    l.mac,
    l.location ?? l.gtin ?? '-',
    l.state,
    money(l.shows?.price, l.shows?.currency),
    money(l.should_show?.price, l.should_show?.currency),
    l.matches ? 'ok' : `since ${ago(l.mismatch_since, now)}`,
    [...l.conditions, ...(l.problem ? [l.problem] : []), ...(l.last_error && !l.matches ? [l.last_error] : [])].join('; ') || '-',
  ]);
  lines.push(...table(['MAC', 'BOUND TO', 'STATE', 'SHOWS', 'SHOULD SHOW', 'MATCH', 'NOTES'], rows));
  return `${lines.join('\n')}\n`;
}

export async function runLabelsCli(o: ConnOpts & { stale?: boolean; json?: boolean }, io: CliIo = defaultIo()): Promise<number> {
  const r = await withClient('labels', o, io, (c) => c.request<{ summary: LabelsSummary; labels: LabelIntegrity[] }>('labels.list', o.stale ? { stale: true } : {}));
  if (!r.ok) return r.code;
  io.stdout.write(o.json ? `${JSON.stringify(r.value)}\n` : formatLabelsReport(r.value, { stale: !!o.stale }));
  return ExitCode.OK;
}

export async function runLabelCommandCli(command: string, body: Record<string, unknown>, o: ConnOpts & { json?: boolean }, io: CliIo = defaultIo()): Promise<number> {
  const r = await withClient(`label ${command.split('.')[1]}`, o, io, (c) => c.request(command, body));
  if (!r.ok) return r.code;
  io.stdout.write(`${JSON.stringify(r.value)}\n`);
  return ExitCode.OK;
}
