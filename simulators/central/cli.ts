/**
 * `shelfgate sim central --listen HOST:PORT [--db FILE] [--token T] [--prices-csv FILE]
 *   [--random-prices N/min] [--seed N] [--tls-cert F --tls-key F [--tls-ca F] [--require-client-cert]]`
 *
 * `--prices-csv`: columns gtin,price,currency and optionally was_price,valid_from,valid_to,version,
 * name,net_content (e.g. `500 g`); a row with a name also publishes its product (contract 1.2).
 * `--random-prices`: prices of a demo catalogue; each GTIN's product is published before its first price.
 *
 * Runs the reference central until SIGINT/SIGTERM (or `io.signal` aborts). Prints one line when
 * listening. Exit codes: 0 stopped cleanly, 64 usage, 69 port unavailable, 73 database cannot be
 * created, 78 unreadable or invalid price CSV / TLS files.
 */
import { readFileSync } from 'node:fs';
import { ErrorCode, ExitCode, isShelfgateError } from '../../src/errors';
import { createLogger, type Logger } from '../../src/log';
import { cliFor, parseCliArgs, parseHostPort, serveUntilStopped } from '../cli-util';
import { CentralSimulator, type CentralTlsOptions } from './simulator';

export interface CentralCliIo {
  stdout?: { write(s: string): unknown };
  stderr?: { write(s: string): unknown };
  /** Stops the simulator when aborted (tests); default: SIGINT/SIGTERM. */
  signal?: AbortSignal;
  log?: Logger;
  /** Called once listening (tests read the port). */
  onListening?: (sim: CentralSimulator) => void;
}

const USAGE = `usage: shelfgate sim central --listen HOST:PORT [--db FILE] [--token TOKEN] [--prices-csv FILE]
         [--random-prices N/min] [--seed N] [--tls-cert FILE --tls-key FILE [--tls-ca FILE] [--require-client-cert]]
         [--log-level LEVEL]
`;

export async function runCentralCli(argv: string[], io: CentralCliIo = {}): Promise<number> {
  const cli = cliFor(io, 'shelfgate sim central', USAGE);
  const { out, usage } = cli;
  const parsed = parseCliArgs(cli, argv, {
    allowPositionals: false,
    options: {
      listen: { type: 'string', default: '127.0.0.1:8080' },
      db: { type: 'string', default: ':memory:' },
      token: { type: 'string' },
      'prices-csv': { type: 'string' },
      'random-prices': { type: 'string' },
      seed: { type: 'string', default: '1' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'tls-ca': { type: 'string' },
      'require-client-cert': { type: 'boolean', default: false },
      'log-level': { type: 'string', default: 'info' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  const listen = parseHostPort(values.listen);
  if (!listen) return usage(`--listen ${JSON.stringify(values.listen)} is not HOST:PORT`);
  let perMin = 0;
  if (values['random-prices'] !== undefined) {
    const m = /^(\d+(?:\.\d+)?)(?:\/min)?$/.exec(values['random-prices']);
    if (!m) return usage('--random-prices must be N or N/min');
    perMin = Number(m[1]);
  }
  if (!/^-?\d+$/.test(values.seed)) return usage('--seed must be an integer');
  if ((values['tls-cert'] === undefined) !== (values['tls-key'] === undefined)) return usage('--tls-cert and --tls-key go together');
  if (values['tls-cert'] === undefined && (values['tls-ca'] !== undefined || values['require-client-cert'])) {
    return usage('--tls-ca and --require-client-cert need --tls-cert/--tls-key');
  }
  if (values['require-client-cert'] && values['tls-ca'] === undefined) return usage('--require-client-cert needs --tls-ca');

  let tls: CentralTlsOptions | undefined;
  if (values['tls-cert'] !== undefined && values['tls-key'] !== undefined) {
    try {
      tls = {
        cert: readFileSync(values['tls-cert']),
        key: readFileSync(values['tls-key']),
        ...(values['tls-ca'] !== undefined ? { ca: readFileSync(values['tls-ca']) } : {}),
        requestClientCert: values['require-client-cert'],
      };
    } catch (e) {
      return cli.fail(`cannot read TLS files: ${(e as Error).message}`, ExitCode.CONFIG);
    }
  }

  const log = io.log ?? createLogger(values['log-level']);
  const sim = new CentralSimulator({
    host: listen.host,
    port: listen.port,
    dbPath: values.db,
    ...(values.token !== undefined ? { token: values.token } : {}),
    ...(tls ? { tls } : {}),
    log,
    seed: Number(values.seed),
    randomPricesPerMin: perMin,
  });
  try {
    await sim.start();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
      return cli.fail(`cannot listen on ${values.listen}: ${code}`, ExitCode.UNAVAILABLE);
    }
    if (code !== undefined && /^SQLITE_|^E(NOENT|ACCES|ROFS|ISDIR)/.test(code)) {
      return cli.fail(`cannot open database ${values.db}: ${(e as Error).message}`, ExitCode.CANTCREAT);
    }
    if ((e as Error).message?.includes('directory does not exist')) {
      return cli.fail(`cannot open database ${values.db}: ${(e as Error).message}`, ExitCode.CANTCREAT);
    }
    throw e;
  }
  try {
    if (values['prices-csv'] !== undefined) {
      try {
        sim.loadPricesCsv(values['prices-csv']);
      } catch (e) {
        if (isShelfgateError(e, ErrorCode.CONFIG_INVALID) || isShelfgateError(e, ErrorCode.CONFIG_UNREADABLE)) {
          const issues = Array.isArray(e.details) ? (e.details as { line: number; message: string }[]) : [];
          return cli.fail(`${e.message}\n${issues.map((i) => `  ${Number.isNaN(i.line) ? '' : `line ${i.line}: `}${i.message}`).join('\n')}`, ExitCode.CONFIG);
        }
        throw e;
      }
    }
    const notes = [values.token !== undefined ? 'token required' : 'no token'];
    if (tls?.requestClientCert) notes.push('client certificate required');
    if (perMin > 0) notes.push(`${perMin} random prices/min`);
    return await serveUntilStopped(out, `central: listening on ${sim.url} (${notes.join(', ')}); status page ${sim.url}/_sim/`, io.signal, () => io.onListening?.(sim));
  } finally {
    await sim.stop();
  }
}

