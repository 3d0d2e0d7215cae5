import { ExitCode } from '../../errors';
import { defaultIo, withClient, type CliIo, type ConnOpts } from '../../tools/bus-cli';

/**
 * `shelfgate calibrate <tare|set-unit-weight|learn>`: a technician's calibration goes through the
 * running daemon (which owns the serial ports and the one SQLite writer), as an MQTT request with
 * the technician's own credentials, so the ACL and the audit log apply to the CLI as to any client.
 */
export async function runCalibrateCli(command: string, opts: ConnOpts & Record<string, string | undefined>, io: CliIo = defaultIo()): Promise<number> {
  const body: Record<string, unknown> = { shelf: opts.shelf, slot: opts.slot };
  if (opts.grams !== undefined) body.grams = Number(opts.grams);
  if (opts.items !== undefined) body.items = Number(opts.items);
  const r = await withClient('calibrate', opts, io, (c) => c.request(command, body));
  if (!r.ok) return r.code;
  io.stdout.write(`${JSON.stringify(r.value)}\n`);
  return ExitCode.OK;
}
