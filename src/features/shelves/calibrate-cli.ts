import { ExitCode } from '../../errors';
import { BusClient } from '../../bus/request-client';

/**
 * `shelfgate calibrate <tare|set-unit-weight|learn>`: a technician's calibration goes through the
 * running daemon (which owns the serial ports and the one SQLite writer), as an MQTT request with
 * the technician's own credentials, so the ACL and the audit log apply to the CLI as to any client.
 */
export async function runCalibrateCli(command: string, opts: Record<string, string>): Promise<number> {
  const passwordVar = opts.passwordEnv ?? 'SHELFGATE_PASSWORD';
  const password = process.env[passwordVar];
  if (!password) {
    process.stderr.write(`shelfgate calibrate: set the technician password in $${passwordVar}\n`);
    return ExitCode.USAGE;
  }
  const body: Record<string, unknown> = { shelf: opts.shelf, slot: opts.slot };
  if (opts.grams !== undefined) body.grams = Number(opts.grams);
  if (opts.items !== undefined) body.items = Number(opts.items);
  let client: BusClient | undefined;
  try {
    client = await BusClient.connect({ url: opts.url ?? 'mqtt://127.0.0.1:1883', username: opts.username!, password, store: opts.store! });
    const result = await client.request(command, body);
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return ExitCode.OK;
  } catch (e) {
    process.stderr.write(`shelfgate calibrate: ${(e as Error).message}\n`);
    return ExitCode.FAILURE;
  } finally {
    await client?.close().catch(() => undefined);
  }
}
