/**
 * `shelfgate sim scanner (--tcp HOST:PORT | --pty PATH | --port DEVICE) [options]`
 *
 * Runs a serial barcode scanner simulator (scanner-sim.ts) until SIGINT/SIGTERM (or `io.signal`
 * aborts), served by the same plumbing as the other serial simulators (serve.ts). The first line
 * says where it serves; then one line per scan (`scan <code>`, `scan <code> (invalid)`,
 * `garbage <hex>`). Exit codes: 0 stopped cleanly, 64 usage, 66 cannot read --codes, 69 cannot serve.
 */
import { readFileSync } from 'node:fs';
import type { ScanTerminator } from '../src/drivers/barcode';
import { ExitCode } from '../src/errors';
import { cliFor, parseCliArgs, parseHostPort, parseNumber as num, serveUntilStopped, UsageError, transportProblem } from './cli-util';
import { mulberry32 } from './physics';
import { ScannerSimulator, ScanTicker } from './scanner-sim';
import { serveAs, type Serving } from './serve';

export interface ScannerCliIo {
  stdout?: { write(s: string): unknown };
  stderr?: { write(s: string): unknown };
  signal?: AbortSignal;
  /** Called once serving (tests scan through the simulator). */
  onServing?: (serving: Serving, sim: ScannerSimulator) => void;
}

export const SCANNER_USAGE = `usage: shelfgate sim scanner (--tcp HOST:PORT | --pty PATH | --port DEVICE) (--code X ... | --codes FILE | --random) [options]
  --tcp HOST:PORT         serve like a TCP serial server (ser2net): one client at a time
  --pty PATH              make a pty pair with socat; the gateway opens PATH
  --port DEVICE           use a real serial port
  --code X                a code to scan (repeatable); {GS} or \\x1d stands for GS (FNC1)
  --codes FILE            codes to scan, one per line (# comments and blank lines skipped)
  --random                random codes: from --code/--codes if given, else random EAN-13s
  --valid-ratio R         with --random, the share of valid codes, 0-1 (default 0.8); the others get a wrong check digit
  --interval MS           time between scans (default 2000)
  --count N               stop scanning after N scans (default: never)
  --terminator T          cr, crlf, lf or etx (default cr)
  --aim                   send AIM symbology identifiers (]E0, ]E4, ]C1...)
  --baud N                baud rate with --port (default 9600)
  --seed N                random seed (default 1)
  --fault-garbage P       probability per scan of a line of random bytes instead
`;

export async function runScannerCli(argv: string[], io: ScannerCliIo = {}): Promise<number> {
  const cli = cliFor(io, 'shelfgate sim scanner', SCANNER_USAGE);
  const parsed = parseCliArgs(cli, argv, {
    options: {
      tcp: { type: 'string' },
      pty: { type: 'string' },
      port: { type: 'string' },
      code: { type: 'string', multiple: true },
      codes: { type: 'string' },
      random: { type: 'boolean', default: false },
      'valid-ratio': { type: 'string' },
      interval: { type: 'string' },
      count: { type: 'string' },
      terminator: { type: 'string' },
      aim: { type: 'boolean', default: false },
      baud: { type: 'string' },
      seed: { type: 'string' },
      'fault-garbage': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  const transport = transportProblem(values);
  if (transport) return cli.usage(transport);

  let sim: ScannerSimulator;
  let tcp: { host: string; port: number } | null = null;
  let interval: number;
  let count: number;
  try {
    if (values.tcp !== undefined) {
      tcp = parseHostPort(values.tcp);
      if (!tcp) throw new UsageError(`--tcp ${JSON.stringify(values.tcp)} is not HOST:PORT`);
    }
    const codes = [...(values.code ?? [])];
    if (values.codes !== undefined) {
      let text: string;
      try {
        text = readFileSync(values.codes, 'utf8');
      } catch (e) {
        return cli.fail(`cannot read --codes ${values.codes}: ${(e as Error).message}`, 66); // EX_NOINPUT
      }
      for (const l of text.split(/\r?\n/)) if (l.trim() !== '' && !l.trimStart().startsWith('#')) codes.push(l.trim());
    }
    if (codes.length === 0 && !values.random) throw new UsageError('give --code X, --codes FILE or --random');
    const terminator = (values.terminator ?? 'cr').toLowerCase();
    if (!['cr', 'crlf', 'lf', 'etx'].includes(terminator)) throw new UsageError(`--terminator must be cr, crlf, lf or etx, got ${JSON.stringify(values.terminator)}`);
    if (values['valid-ratio'] !== undefined && !values.random) throw new UsageError('--valid-ratio is for --random');
    interval = num('interval', values.interval, 2000, { min: 1, max: 3_600_000 });
    count = values.count !== undefined ? num('count', values.count, 0, { int: true, min: 1 }) : Infinity;
    sim = new ScannerSimulator({
      codes,
      random: values.random,
      validRatio: num('valid-ratio', values['valid-ratio'], 0.8, { min: 0, max: 1 }),
      terminator: terminator as ScanTerminator,
      aim: values.aim,
      serial: { baudRate: num('baud', values.baud, 9600, { int: true, min: 50 }), dataBits: 8, parity: 'none', stopBits: 1 },
      rng: mulberry32(num('seed', values.seed, 1, { int: true })),
      faults: { garbage: num('fault-garbage', values['fault-garbage'], 0, { min: 0, max: 1 }) },
    });
  } catch (e) {
    if (e instanceof UsageError || e instanceof RangeError) return cli.usage(e.message);
    throw e;
  }

  let serving: Serving;
  try {
    serving = await serveAs(sim, { tcp: tcp, pty: values.pty, port: values.port });
  } catch (e) {
    return cli.fail(`cannot serve scanner: ${(e as Error).message}`, ExitCode.UNAVAILABLE);
  }
  const ticker = new ScanTicker(
    sim,
    interval,
    (s) => cli.out.write(s.garbage ? `garbage ${s.code}\n` : `scan ${JSON.stringify(s.code).slice(1, -1)}${s.valid ? '' : ' (invalid)'}\n`),
    count,
  );
  try {
    const where = tcp ? serving.url : values.pty !== undefined ? `pty ${serving.url}` : `serial ${serving.url}`;
    const what = values.random ? 'random codes' : `${sim.codeCount} code(s)`;
    return await serveUntilStopped(cli.out, `scanner: ${what} every ${interval} ms on ${where} (terminator ${values.terminator ?? 'cr'}${values.aim ? ', AIM ids' : ''})`, io.signal, () => {
      ticker.start();
      io.onServing?.(serving, sim);
    });
  } finally {
    ticker.stop();
    await serving.close();
  }
}
