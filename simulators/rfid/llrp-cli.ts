/**
 * `shelfgate sim llrp --listen HOST:PORT [options]`
 *
 * Runs an LLRP 1.0.1 fixed-reader simulator (llrp-sim.ts) over a tag population (population.ts)
 * until SIGINT/SIGTERM (or `io.signal` aborts). The first stdout line says where it listens
 * (`llrp: N tags of M GTINs, A antennas on tcp://HOST:PORT ...`), so a test that asked for port 0
 * reads the port there; then one line per client connect/disconnect/refusal and per population
 * move. SIGUSR2 reboots the reader (--reboot-down-ms). Exit codes: 0 stopped cleanly, 64 usage,
 * 66 cannot read --script/--replay/--tls-cert/--tls-key, 69 cannot listen.
 */
import { readFileSync } from 'node:fs';
import { ExitCode } from '../../src/errors';
import { cliFor, parseCliArgs, parseHostPort, parseNumber as num, serveUntilStopped, UsageError } from '../cli-util';
import { forkRng, mulberry32 } from '../physics';
import { TimerSet } from '../timers';
import { LlrpReaderSimulator } from './llrp-sim';
import { type ScriptMove } from './population';
import { populationFromCli } from './population-cli';

export interface LlrpCliIo {
  stdout?: { write(s: string): unknown };
  stderr?: { write(s: string): unknown };
  /** Stops the simulator when aborted (tests); default: SIGINT/SIGTERM. */
  signal?: AbortSignal;
  /** Called once listening (tests drive faults through the simulator). */
  onListening?: (sim: LlrpReaderSimulator) => void;
}

export const LLRP_USAGE = `usage: shelfgate sim llrp --listen HOST:PORT [options]
  A fixed UHF reader speaking the reader side of LLRP 1.0.1 (one client at a time).
  --listen HOST:PORT      where to accept the client (port 0: any free port; real readers use 5084)
  --tags N                tags in the population (default 200)
  --gtins M               GTINs they are spread over (default 20)
  --antennas A            reader antennas 1..A (default 4)
  --zones Z               zones the tags are spread over (default: A); antenna a observes zone (a-1) mod Z
  --miss P                probability a tag misses a round, 0-1 (default 0.1)
  --rssi-sigma DB         RSSI noise (default 2)
  --round-ms MS           time between two inventory rounds of an active ROSpec (default 50)
  --reads-per-s R         tag reads per second the reader can make (default 1000)
  --move-interval MS      move a random tag every MS (default: never)
  --script FILE           population moves: lines "<ms> move <count> [gtin <g>] from <zone|out> to <zone|out>"
  --replay FILE           send these frames (hex lines, e.g. captured RO_ACCESS_REPORTs) in order,
                          one per round while a ROSpec is active, instead of the population
  --seed S                random seed (default 1)
  --fault-silent          answer nothing, send no keepalives (a hung reader)
  --fault-refuse-rospec N refuse the first N ADD_ROSPECs with an LLRPStatus error
  --fault-custom          put a vendor Custom parameter in every report
  --fault-garbage P       probability per report of a burst of random bytes
  --tls-cert FILE         serve LLRP over TLS (a real reader's port 5085) with this PEM certificate
  --tls-key FILE          ... and its PEM private key (both or neither)
  --reboot-down-ms MS     on SIGUSR2 the reader reboots: connection dropped, ROSpecs forgotten,
                          connections reset for MS (default 2000)
`;

export async function runLlrpCli(argv: string[], io: LlrpCliIo = {}): Promise<number> {
  const cli = cliFor(io, 'shelfgate sim llrp', LLRP_USAGE);
  const { out, usage } = cli;
  const parsed = parseCliArgs(cli, argv, {
    options: {
      listen: { type: 'string' },
      tags: { type: 'string' },
      gtins: { type: 'string' },
      antennas: { type: 'string' },
      zones: { type: 'string' },
      miss: { type: 'string' },
      'rssi-sigma': { type: 'string' },
      'round-ms': { type: 'string' },
      'reads-per-s': { type: 'string' },
      'move-interval': { type: 'string' },
      script: { type: 'string' },
      replay: { type: 'string' },
      seed: { type: 'string' },
      'fault-silent': { type: 'boolean', default: false },
      'fault-refuse-rospec': { type: 'string' },
      'fault-custom': { type: 'boolean', default: false },
      'fault-garbage': { type: 'string' },
      'reboot-down-ms': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  if (values.listen === undefined) return usage('--listen HOST:PORT is required');
  const listen = parseHostPort(values.listen);
  if (!listen) return usage(`--listen ${JSON.stringify(values.listen)} is not HOST:PORT`);

  if ((values['tls-cert'] === undefined) !== (values['tls-key'] === undefined)) return usage('--tls-cert and --tls-key go together');
  let tls: { cert: Buffer; key: Buffer } | undefined;
  if (values['tls-cert'] !== undefined && values['tls-key'] !== undefined) {
    try {
      tls = { cert: readFileSync(values['tls-cert']), key: readFileSync(values['tls-key']) };
    } catch (e) {
      return cli.fail(`cannot read the TLS certificate or key: ${(e as Error).message}`, 66); // EX_NOINPUT
    }
  }

  let sim: LlrpReaderSimulator;
  let script: ScriptMove[] = [];
  let moveInterval: number | null;
  let rebootDownMs: number;
  try {
    const antennas = num('antennas', values.antennas, 4, { int: true, min: 1, max: 64 });
    const zones = num('zones', values.zones, antennas, { int: true, min: 1, max: 1000 });
    const seed = num('seed', values.seed, 1, { int: true });
    moveInterval = values['move-interval'] !== undefined ? num('move-interval', values['move-interval'], 0, { min: 1 }) : null;
    rebootDownMs = num('reboot-down-ms', values['reboot-down-ms'], 2000, { min: 0, max: 3_600_000 });
    const rng = mulberry32(seed);
    const tagged = populationFromCli(values, zones, seed);
    if ('unreadable' in tagged) return cli.fail(tagged.unreadable, 66); // EX_NOINPUT
    const { population, replay } = tagged;
    script = tagged.script;
    sim = new LlrpReaderSimulator({
      population,
      host: listen.host,
      port: listen.port,
      antennas,
      roundMs: num('round-ms', values['round-ms'], 50, { min: 1, max: 60_000 }),
      readsPerSecond: num('reads-per-s', values['reads-per-s'], 1000, { min: 1, max: 1_000_000 }),
      ...(replay ? { replay } : {}),
      ...(tls ? { tls } : {}),
      rng: forkRng(rng),
      faults: {
        silent: values['fault-silent'],
        refuseAddRoSpec: num('fault-refuse-rospec', values['fault-refuse-rospec'], 0, { int: true, min: 0 }),
        customParam: values['fault-custom'],
        garbage: num('fault-garbage', values['fault-garbage'], 0, { min: 0, max: 1 }),
      },
    });
  } catch (e) {
    if (e instanceof UsageError || e instanceof RangeError) return usage(e.message);
    throw e;
  }

  try {
    await sim.start();
  } catch (e) {
    await sim.stop();
    return cli.fail(`cannot listen on ${values.listen}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, ExitCode.UNAVAILABLE);
  }
  const timers = new TimerSet();
  const pop = sim.population;
  const onRestart = (): void => {
    out.write(`llrp: rebooting (down ${rebootDownMs} ms, ROSpecs forgotten)\n`);
    sim.reboot(rebootDownMs);
  };
  sim.on('connect', () => out.write('llrp: client connected\n'));
  sim.on('disconnect', () => out.write('llrp: client disconnected\n'));
  sim.on('refused', () => out.write('llrp: second client refused (a client is already connected)\n'));
  sim.on('up', () => out.write('llrp: up again\n'));
  const start = (): void => {
    for (const m of script)
      timers.after(m.atMs, () => {
        const moved = pop.move(m);
        out.write(`moved ${moved.length} tag(s) from ${m.from ?? 'out'} to ${m.to ?? 'out'}\n`);
      });
    if (moveInterval !== null) {
      const every = moveInterval;
      const tick = (): void => {
        for (const t of pop.randomMoves(1)) out.write(`tag ${t.epcHex} (GTIN ${pop.gtins[t.gtin]}) now in ${t.zone ?? 'out'}\n`);
        timers.after(every, tick);
      };
      timers.after(every, tick);
    }
    process.on('SIGUSR2', onRestart);
    io.onListening?.(sim);
  };
  try {
    const zoneOf = sim.antennaZones.map((z, i) => `${i + 1}:${z}`).join(' ');
    const line = `llrp: ${pop.tags.length} tags of ${pop.gtins.length} GTINs, ${sim.antennas} antennas on ${sim.url} (antenna:zone ${zoneOf})`;
    return await serveUntilStopped(out, line, io.signal, start);
  } finally {
    process.off('SIGUSR2', onRestart);
    timers.clear();
    sim.removeAllListeners();
    await sim.stop();
  }
}
