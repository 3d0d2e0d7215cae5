/**
 * `shelfgate sim r200 (--tcp HOST:PORT | --pty PATH | --port DEVICE) [options]`
 *
 * Runs a MagicRF M100 / R200 serial UHF module simulator (r200-sim.ts) over a tag population
 * (population.ts) until SIGINT/SIGTERM (or `io.signal` aborts). Served by the same plumbing as
 * the other serial simulators (serve.ts). The first line says where it serves; then, with
 * --move-interval, one line per random move. Exit codes: 0 stopped cleanly, 64 usage, 66 cannot
 * read --script/--replay, 69 cannot serve.
 */
import { ExitCode } from '../../src/errors';
import { M100_FRAMING_AADD, M100_FRAMING_BB7E } from '../../src/drivers/m100';
import { M100_SERIAL } from '../../src/features/rfid/m100-source';
import { cliFor, parseCliArgs, parseHostPort, parseNumber as num, serveUntilStopped, UsageError, transportProblem } from '../cli-util';
import { forkRng, mulberry32 } from '../physics';
import { serveAs, type Serving } from '../serve';
import { TimerSet } from '../timers';
import { type ScriptMove } from './population';
import { populationFromCli } from './population-cli';
import { R200Simulator } from './r200-sim';

export interface R200CliIo {
  stdout?: { write(s: string): unknown };
  stderr?: { write(s: string): unknown };
  signal?: AbortSignal;
  /** Called once serving (tests drive faults through the simulator). */
  onServing?: (serving: Serving, sim: R200Simulator) => void;
}

export const R200_USAGE = `usage: shelfgate sim r200 (--tcp HOST:PORT | --pty PATH | --port DEVICE) [options]
  --tcp HOST:PORT         serve like a TCP serial server (ser2net): one client at a time
  --pty PATH              make a pty pair with socat; the gateway opens PATH
  --port DEVICE           use a real serial port
  --tags N                tags in the population (default 200)
  --gtins N               GTINs they are spread over (default 20)
  --zones N               zones the tags are spread over (default 4)
  --zone Z                zone this module's antenna observes (default 0)
  --miss P                probability a tag misses a round, 0-1 (default 0.1)
  --rssi-sigma DB         RSSI noise (default 2)
  --round-ms MS           time between two multi-poll rounds (default 20)
  --notify-cmd 22|27      command byte of multi-poll notifications (default 22)
  --framing BB7E|AADD     header/trailer bytes (default BB7E)
  --baud N                baud rate; also paces the output (default 115200: about 480 reads/s)
  --move-interval MS      move a random tag every MS (default: never)
  --script FILE           population moves: lines "<ms> move <count> [gtin <g>] from <zone|out> to <zone|out>"
  --replay FILE           send these captured frames (hex lines) during multi-poll instead
  --seed N                random seed (default 1)
  --fault-garbage P       probability per round of a burst of random bytes
  --fault-crc P           probability per notification of a wrong tag CRC
`;

export async function runR200Cli(argv: string[], io: R200CliIo = {}): Promise<number> {
  const cli = cliFor(io, 'shelfgate sim r200', R200_USAGE);
  const parsed = parseCliArgs(cli, argv, {
    options: {
      tcp: { type: 'string' },
      pty: { type: 'string' },
      port: { type: 'string' },
      tags: { type: 'string' },
      gtins: { type: 'string' },
      zones: { type: 'string' },
      zone: { type: 'string' },
      miss: { type: 'string' },
      'rssi-sigma': { type: 'string' },
      'round-ms': { type: 'string' },
      'notify-cmd': { type: 'string' },
      framing: { type: 'string' },
      baud: { type: 'string' },
      'move-interval': { type: 'string' },
      script: { type: 'string' },
      replay: { type: 'string' },
      seed: { type: 'string' },
      'fault-garbage': { type: 'string' },
      'fault-crc': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  const transport = transportProblem(values);
  if (transport) return cli.usage(transport);

  let sim: R200Simulator;
  let script: ScriptMove[] = [];
  let moveInterval: number | null;
  let tcp: { host: string; port: number } | null = null;
  try {
    if (values.tcp !== undefined) {
      tcp = parseHostPort(values.tcp);
      if (!tcp) throw new UsageError(`--tcp ${JSON.stringify(values.tcp)} is not HOST:PORT`);
    }
    const zones = num('zones', values.zones, 4, { int: true, min: 1, max: 1000 });
    const seed = num('seed', values.seed, 1, { int: true });
    const framing = values.framing === undefined || values.framing.toUpperCase() === 'BB7E' ? M100_FRAMING_BB7E : values.framing.toUpperCase() === 'AADD' ? M100_FRAMING_AADD : null;
    if (!framing) throw new UsageError(`--framing must be BB7E or AADD, got ${JSON.stringify(values.framing)}`);
    const notify = values['notify-cmd'] ?? '22';
    if (notify !== '22' && notify !== '27') throw new UsageError(`--notify-cmd must be 22 or 27, got ${JSON.stringify(notify)}`);
    moveInterval = values['move-interval'] !== undefined ? num('move-interval', values['move-interval'], 0, { min: 1 }) : null;
    const rng = mulberry32(seed);
    const tagged = populationFromCli(values, zones, seed);
    if ('unreadable' in tagged) return cli.fail(tagged.unreadable, 66); // EX_NOINPUT
    const { population, replay } = tagged;
    script = tagged.script;
    sim = new R200Simulator({
      population,
      zone: num('zone', values.zone, 0, { int: true, min: 0, max: zones - 1 }),
      framing,
      serial: { ...M100_SERIAL, baudRate: num('baud', values.baud, M100_SERIAL.baudRate, { int: true, min: 1200 }) },
      roundMs: num('round-ms', values['round-ms'], 20, { min: 1, max: 60_000 }),
      notifyCmd: notify === '27' ? 0x27 : 0x22,
      ...(replay ? { replay } : {}),
      rng: forkRng(rng),
      faults: { garbage: num('fault-garbage', values['fault-garbage'], 0, { min: 0, max: 1 }), corruptCrc: num('fault-crc', values['fault-crc'], 0, { min: 0, max: 1 }) },
    });
  } catch (e) {
    if (e instanceof UsageError || e instanceof RangeError) return cli.usage(e.message);
    throw e;
  }

  let serving: Serving;
  try {
    serving = await serveAs(sim, { tcp: tcp, pty: values.pty, port: values.port });
  } catch (e) {
    return cli.fail(`cannot serve r200: ${(e as Error).message}`, ExitCode.UNAVAILABLE);
  }
  const timers = new TimerSet();
  const pop = sim.population;
  const start = (): void => {
    for (const m of script)
      timers.after(m.atMs, () => {
        const moved = pop.move(m);
        cli.out.write(`moved ${moved.length} tag(s) from ${m.from ?? 'out'} to ${m.to ?? 'out'}\n`);
      });
    if (moveInterval !== null) {
      const every = moveInterval;
      const tick = (): void => {
        for (const t of pop.randomMoves(1)) cli.out.write(`tag ${t.epcHex} (GTIN ${pop.gtins[t.gtin]}) now in ${t.zone ?? 'out'}\n`);
        timers.after(every, tick);
      };
      timers.after(every, tick);
    }
    io.onServing?.(serving, sim);
  };
  try {
    const where = tcp ? serving.url : values.pty !== undefined ? `pty ${serving.url}` : `serial ${serving.url}`;
    const inZone = pop.inZone(sim.zone).length;
    return await serveUntilStopped(cli.out, `r200: ${pop.tags.length} tags of ${pop.gtins.length} GTINs, ${inZone} in zone ${sim.zone}, on ${where} (${sim.serial.baudRate} baud)`, io.signal, start);
  } finally {
    timers.clear();
    await serving.close();
  }
}
