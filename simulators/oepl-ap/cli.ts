/**
 * `shelfgate sim oepl-ap --listen HOST:PORT --labels N [options]`
 *
 * Runs an OpenEPaperLink access point simulator until SIGINT/SIGTERM (or `io.signal` aborts). The
 * first line on stdout says where it listens (`oepl-ap: N labels on http://HOST:PORT ...`), so a
 * test that asked for port 0 reads the URL there; then one line per acknowledged or timed-out
 * transfer unless --quiet. SIGUSR2 power-cycles the AP (what it had queued is lost; down for
 * --restart-down-s, then 409 to uploads for --boot-s), for whole-daemon tests of an AP restart.
 * Exit codes: 0 stopped cleanly, 64 usage, 69 cannot listen.
 */
import { ExitCode } from '../../src/errors';
import { cliFor, parseCliArgs, parseHostPort, parseNumber as num, serveUntilStopped, UsageError } from '../cli-util';
import { OeplApSimulator, type OeplApFaults } from './simulator';

export interface OeplApCliIo {
  stdout?: { write(s: string): unknown };
  stderr?: { write(s: string): unknown };
  /** Stops the simulator when aborted (tests); default: SIGINT/SIGTERM. */
  signal?: AbortSignal;
  /** Called once listening (tests drive faults through the programmatic API). */
  onListening?: (sim: OeplApSimulator) => void;
}

export const OEPL_AP_USAGE = `usage: shelfgate sim oepl-ap --listen HOST:PORT --labels N [options]
  (times are simulated seconds: with --fast, 1 s passes in 1 ms)
  --listen HOST:PORT     where to answer HTTP and the WebSocket /ws (port 0: any free port)
  --labels N             simulated labels, 1-100000
  --seed N               MACs, check-in phases and radio values (default 1)
  --checkin-s S          seconds between two check-ins of a label (default 40)
  --rate-bps N           radio throughput of the AP, bytes/s (default 5000)
  --xfer-timeout-s S     seconds until undelivered content ends in "xfer timeout" (default 1200)
  --image-bytes N        bytes per transfer (a rendered image); default: the uploaded content's size
  --fast                 time runs 1000 times faster (check-ins and transfers in ms) for tests
  --time-scale K         time runs K times faster (overrides --fast)
  --boot-s S             answer 409 to uploads for the first S seconds, as an AP that is booting
                         (and after each restart)
  --restart-down-s S     on SIGUSR2 the AP restarts: queue lost, down for S seconds (default 1)
  --ws-loss P            lose this fraction of WebSocket messages (0-1)
  --transfer-loss P      this fraction of transfers fails and is retried at the next check-in (0-1)
  --lose-labels N        N labels never check in
  --answer MODE          normal, html or garbage: what every HTTP request gets
  --quiet                no line per transfer
`;

export async function runOeplApCli(argv: string[], io: OeplApCliIo = {}): Promise<number> {
  const cli = cliFor(io, 'shelfgate sim oepl-ap', OEPL_AP_USAGE);
  const { out, err, usage } = cli;
  const parsed = parseCliArgs(cli, argv, {
    allowPositionals: false,
    options: {
      listen: { type: 'string' },
      labels: { type: 'string' },
      seed: { type: 'string' },
      'checkin-s': { type: 'string' },
      'rate-bps': { type: 'string' },
      'xfer-timeout-s': { type: 'string' },
      'image-bytes': { type: 'string' },
      fast: { type: 'boolean', default: false },
      'time-scale': { type: 'string' },
      'boot-s': { type: 'string' },
      'restart-down-s': { type: 'string' },
      'ws-loss': { type: 'string' },
      'transfer-loss': { type: 'string' },
      'lose-labels': { type: 'string' },
      answer: { type: 'string' },
      quiet: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  if (values.listen === undefined) return usage('--listen HOST:PORT is required');
  const listen = parseHostPort(values.listen);
  if (!listen) return usage(`--listen ${JSON.stringify(values.listen)} is not HOST:PORT`);
  if (values.labels === undefined) return usage('--labels N is required');
  let sim: OeplApSimulator;
  let lose: number;
  let bootMs: number;
  let restartDownMs: number;
  try {
    const labels = num('labels', values.labels, 0, { int: true, min: 1, max: 100_000 });
    lose = num('lose-labels', values['lose-labels'], 0, { int: true, min: 0, max: labels });
    const answer = values.answer ?? 'normal';
    if (!['normal', 'html', 'garbage'].includes(answer)) throw new UsageError(`--answer must be normal, html or garbage, got ${JSON.stringify(answer)}`);
    const timeScale = num('time-scale', values['time-scale'], values.fast ? 1000 : 1, { min: 0.001, max: 1e6 });
    bootMs = num('boot-s', values['boot-s'], 0, { min: 0 }) * 1000;
    restartDownMs = num('restart-down-s', values['restart-down-s'], 1, { min: 0 }) * 1000;
    const imageBytes = values['image-bytes'] !== undefined ? num('image-bytes', values['image-bytes'], 0, { int: true, min: 1, max: 10_000_000 }) : undefined;
    sim = new OeplApSimulator({
      host: listen.host,
      port: listen.port,
      labels,
      seed: num('seed', values.seed, 1, { int: true }),
      checkinMs: num('checkin-s', values['checkin-s'], 40, { min: 0.001, max: 86_400 }) * 1000,
      rateBps: num('rate-bps', values['rate-bps'], 5000, { min: 1 }),
      xferTimeoutMs: num('xfer-timeout-s', values['xfer-timeout-s'], 1200, { min: 0.001 }) * 1000,
      timeScale,
      ...(imageBytes !== undefined ? { transferBytes: imageBytes } : {}),
      bootMs,
      faults: {
        wsLoss: num('ws-loss', values['ws-loss'], 0, { min: 0, max: 1 }),
        transferLoss: num('transfer-loss', values['transfer-loss'], 0, { min: 0, max: 1 }),
        answer: answer as OeplApFaults['answer'],
      },
    });
  } catch (e) {
    if (e instanceof UsageError) return usage(e.message);
    throw e;
  }

  try {
    await sim.start();
  } catch (e) {
    await sim.stop();
    return cli.fail(`cannot listen on ${values.listen}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, ExitCode.UNAVAILABLE);
  }
  try {
    const lost = lose > 0 ? sim.loseLabels(lose) : [];
    const notes = [`checkin ${values['checkin-s'] ?? 40} s`, `${values['rate-bps'] ?? 5000} B/s`];
    if (sim.realMs(1000) !== 1000) notes.push(`time x${1000 / sim.realMs(1000)}`);
    if (lost.length > 0) notes.push(`${lost.length} lost`);
    if (!values.quiet) {
      sim.on('xfer-complete', (mac, bytes, ms) => out.write(`xfer complete ${mac} (${bytes} bytes, ${(ms / 1000).toFixed(1)} s after upload)\n`));
      sim.on('xfer-timeout', (mac) => out.write(`xfer timeout ${mac}\n`));
    }
    sim.on('up', () => out.write(`oepl-ap: up again on ${sim.url} (uploads answered 409 for ${bootMs / 1000} s)\n`));
    const onRestart = (): void => {
      out.write('oepl-ap: restarting: queued content lost\n');
      sim.restart({ downMs: restartDownMs, bootMs }).catch((e: Error) => err.write(`shelfgate sim oepl-ap: restart failed: ${e.message}\n`));
    };
    process.on('SIGUSR2', onRestart);
    try {
      const line = `oepl-ap: ${sim.macs.length} labels on ${sim.url} (ws ${sim.url.replace(/^http/, 'ws')}/ws; ${notes.join(', ')})`;
      return await serveUntilStopped(out, line, io.signal, () => io.onListening?.(sim));
    } finally {
      process.off('SIGUSR2', onRestart);
    }
  } finally {
    sim.removeAllListeners();
    await sim.stop();
  }
}
