/**
 * `shelfgate sim <mt-sics|modbus-loadcell> (--tcp HOST:PORT | --pty PATH | --port DEVICE) [options]`
 * (`shelfgate sim oepl-ap ...`, the label access point, is handed to oepl-ap/cli.ts.)
 * (`shelfgate sim llrp ...`, an LLRP fixed RFID reader, is handed to rfid/llrp-cli.ts.)
 * (`shelfgate sim scanner ...`, a serial barcode scanner, is handed to scanner-cli.ts.)
 *
 * Runs one device simulator until SIGINT/SIGTERM (or `io.signal` aborts). Prints one line telling
 * what it serves, then one line per shopper action. Exit codes: 0 stopped cleanly, 64 usage,
 * 69 cannot serve (port in use, socat or serial device unavailable), 78 invalid device definitions.
 */
import { loadDefinitions } from '../src/devices/definitions';
import type { DeviceDefinition, ModbusDefinition, MtSicsDefinition } from '../src/devices/types';
import { ExitCode, isShelfgateError } from '../src/errors';
import { cliFor, parseCliArgs, parseHostPort as hostPort, parseNumber, serveUntilStopped, UsageError, transportProblem } from './cli-util';
import type { DeviceSimulator } from './io';
import { ModbusLoadCellBusSimulator, type ModbusSlaveFaults } from './modbus-loadcell-sim';
import { MtSicsSimulator, type MtSicsFaults } from './mtsics-sim';
import { forkRng, LoadCellPhysics, mulberry32, type Rng } from './physics';
import { serveAs, type Serving } from './serve';
import { describeAction, ShopperScript, type ShopperSlot } from './shoppers';

export interface SimCliIo {
  stdout?: { write(s: string): unknown };
  stderr?: { write(s: string): unknown };
  /** Stops the simulator when aborted (tests); default: SIGINT/SIGTERM. */
  signal?: AbortSignal;
  /** Called once serving (tests read the URL/port). */
  onServing?: (serving: Serving, sim: DeviceSimulator) => void;
  /** Definitions folder; default the repository's devices/. */
  definitionsDir?: string;
}

export const SIM_USAGE = `usage: shelfgate sim <mt-sics|modbus-loadcell> (--tcp HOST:PORT | --pty PATH | --port DEVICE) [options]
       shelfgate sim oepl-ap --listen HOST:PORT --labels N [options]   (see shelfgate sim oepl-ap --help)
       shelfgate sim r200 (--tcp HOST:PORT | --pty PATH | --port DEVICE) [options]   (see shelfgate sim r200 --help)
       shelfgate sim llrp --listen HOST:PORT [options]   (an LLRP fixed reader; see shelfgate sim llrp --help)
       shelfgate sim scanner (--tcp HOST:PORT | --pty PATH | --port DEVICE) (--code X | --codes FILE | --random) [options]   (see shelfgate sim scanner --help)
  --tcp HOST:PORT         serve like a TCP serial server (ser2net): one client at a time
  --pty PATH              make a pty pair with socat; the gateway opens PATH
  --port DEVICE           use a real serial port (e.g. a USB-serial cable to the gateway)
  --model ID              device definition id (default mettler-toledo-mt-sics / generic-modbus-loadcell)
  --addresses LIST        modbus slave addresses, e.g. 1-16 or 1,3,5-8 (default 1)
  --unit-weight G         grams per item (default 250)
  --items N               items on each slot at the start (default 12)
  --tare G                dead load of the empty slot, grams (default 0)
  --noise G               reading noise sigma, grams (default 0.5)
  --decimals N            modbus: decimals when the model reads them from the status register (default 0)
  --stream-interval-ms MS mt-sics: time between two weights of the continuous output after SIR (default 100)
  --shoppers              random shoppers pick and put items
  --shopper-interval MS   mean time between shopper visits (default 5000)
  --seed N                random seed (default 1)
  --baud N                baud rate (default: the model's)
  --fault-silent-after N  stop answering after N requests
  --fault-garbage         random bytes on the line now and then
  --fault-crc P           modbus: probability of a corrupted CRC per answer
`;

const DEFAULT_MODEL: Record<string, string> = {
  'mt-sics': 'mettler-toledo-mt-sics',
  'modbus-loadcell': 'generic-modbus-loadcell',
};
const PROTOCOL: Record<string, DeviceDefinition['protocol']> = { 'mt-sics': 'mt-sics', 'modbus-loadcell': 'modbus-rtu' };

function parseHostPort(s: string): { host: string; port: number } {
  const hp = hostPort(s);
  if (!hp) throw new UsageError(`--tcp ${JSON.stringify(s)} is not HOST:PORT`);
  return hp;
}

/** `1-16` or `1,3,5-8` -> sorted unique addresses 1-247. */
export function parseAddresses(s: string): number[] {
  const out = new Set<number>();
  for (const part of s.split(',')) {
    const m = /^\s*(\d{1,3})\s*(?:-\s*(\d{1,3})\s*)?$/.exec(part);
    const lo = m ? Number(m[1]) : NaN;
    const hi = m ? Number(m[2] ?? m[1]) : NaN;
    if (!m || lo < 1 || hi > 247 || lo > hi) throw new UsageError(`--addresses ${JSON.stringify(s)}: expected a list like 1-16 or 1,3,5-8 of addresses 1-247`);
    for (let a = lo; a <= hi; a++) out.add(a);
  }
  return [...out].sort((a, b) => a - b);
}

export async function runSimCli(argv: string[], io: SimCliIo = {}): Promise<number> {
  if (argv[0] === 'oepl-ap') {
    const { runOeplApCli } = await import('./oepl-ap/cli');
    return runOeplApCli(argv.slice(1), { ...(io.stdout ? { stdout: io.stdout } : {}), ...(io.stderr ? { stderr: io.stderr } : {}), ...(io.signal ? { signal: io.signal } : {}) });
  }
  if (argv[0] === 'llrp') {
    const { runLlrpCli } = await import('./rfid/llrp-cli');
    return runLlrpCli(argv.slice(1), { ...(io.stdout ? { stdout: io.stdout } : {}), ...(io.stderr ? { stderr: io.stderr } : {}), ...(io.signal ? { signal: io.signal } : {}) });
  }
  if (argv[0] === 'r200') {
    const { runR200Cli } = await import('./rfid/r200-cli');
    return runR200Cli(argv.slice(1), { ...(io.stdout ? { stdout: io.stdout } : {}), ...(io.stderr ? { stderr: io.stderr } : {}), ...(io.signal ? { signal: io.signal } : {}) });
  }
  if (argv[0] === 'scanner') {
    const { runScannerCli } = await import('./scanner-cli');
    return runScannerCli(argv.slice(1), { ...(io.stdout ? { stdout: io.stdout } : {}), ...(io.stderr ? { stderr: io.stderr } : {}), ...(io.signal ? { signal: io.signal } : {}) });
  }
  const cli = cliFor(io, 'shelfgate sim', SIM_USAGE);
  const { out, usage } = cli;
  const parsed = parseCliArgs(cli, argv, {
    allowPositionals: true,
    options: {
      tcp: { type: 'string' },
      pty: { type: 'string' },
      port: { type: 'string' },
      model: { type: 'string' },
      addresses: { type: 'string' },
      'unit-weight': { type: 'string' },
      items: { type: 'string' },
      tare: { type: 'string' },
      noise: { type: 'string' },
      decimals: { type: 'string' },
      'stream-interval-ms': { type: 'string' },
      shoppers: { type: 'boolean', default: false },
      'shopper-interval': { type: 'string' },
      seed: { type: 'string' },
      baud: { type: 'string' },
      'fault-silent-after': { type: 'string' },
      'fault-garbage': { type: 'boolean', default: false },
      'fault-crc': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  const device = positionals[0];
  if (device === undefined) return usage('which device? mt-sics, modbus-loadcell, oepl-ap, r200, llrp or scanner');
  if (positionals.length > 1) return usage(`unexpected argument ${JSON.stringify(positionals[1])}`);
  if (!(device in DEFAULT_MODEL)) return usage(`unknown device ${JSON.stringify(device)} (mt-sics, modbus-loadcell, oepl-ap, r200, llrp or scanner)`);
  const transport = transportProblem(values);
  if (transport) return usage(transport);

  let opts: {
    tcp?: { host: string; port: number };
    addresses: number[];
    unitWeight: number;
    items: number;
    tare: number;
    noise: number;
    decimals: number;
    streamIntervalMs: number;
    shopperInterval: number;
    seed: number;
    baud?: number;
    silentAfter?: number;
    crc: number;
  };
  try {
    if (device === 'mt-sics' && values.addresses !== undefined) throw new UsageError('--addresses is for modbus-loadcell');
    if (device === 'mt-sics' && values['fault-crc'] !== undefined) throw new UsageError('--fault-crc is for modbus-loadcell');
    if (device === 'mt-sics' && values.decimals !== undefined) throw new UsageError('--decimals is for modbus-loadcell');
    if (device !== 'mt-sics' && values['stream-interval-ms'] !== undefined) throw new UsageError('--stream-interval-ms is for mt-sics');
    opts = {
      ...(values.tcp !== undefined ? { tcp: parseHostPort(values.tcp) } : {}),
      addresses: values.addresses !== undefined ? parseAddresses(values.addresses) : [1],
      unitWeight: parseNumber('unit-weight', values['unit-weight'], 250, { min: 0 }),
      items: parseNumber('items', values.items, 12, { int: true, min: 0 }),
      tare: parseNumber('tare', values.tare, 0),
      noise: parseNumber('noise', values.noise, 0.5, { min: 0 }),
      decimals: parseNumber('decimals', values.decimals, 0, { int: true, min: 0, max: 9 }),
      streamIntervalMs: parseNumber('stream-interval-ms', values['stream-interval-ms'], 100, { min: 1, max: 60_000 }),
      shopperInterval: parseNumber('shopper-interval', values['shopper-interval'], 5000, { min: 1 }),
      seed: parseNumber('seed', values.seed, 1, { int: true }),
      ...(values.baud !== undefined ? { baud: parseNumber('baud', values.baud, 0, { int: true, min: 50 }) } : {}),
      ...(values['fault-silent-after'] !== undefined ? { silentAfter: parseNumber('fault-silent-after', values['fault-silent-after'], 0, { int: true, min: 0 }) } : {}),
      crc: parseNumber('fault-crc', values['fault-crc'], 0, { min: 0, max: 1 }),
    };
  } catch (e) {
    if (e instanceof UsageError) return usage(e.message);
    throw e;
  }

  let defs: Map<string, DeviceDefinition>;
  try {
    defs = loadDefinitions(io.definitionsDir);
  } catch (e) {
    if (!isShelfgateError(e)) throw e;
    return cli.fail(e.message, ExitCode.CONFIG);
  }
  const modelId = values.model ?? DEFAULT_MODEL[device]!;
  const def = defs.get(modelId);
  if (!def) return usage(`unknown model ${JSON.stringify(modelId)} (known: ${[...defs.keys()].join(', ')})`);
  if (def.protocol !== PROTOCOL[device]) return usage(`model ${modelId} speaks ${def.protocol}, not what ${device} simulates`);
  const serialDef = opts.baud !== undefined ? { ...def, serial: { ...def.serial, baudRate: opts.baud } } : def;

  const rng: Rng = mulberry32(opts.seed);
  const physics = (): LoadCellPhysics =>
    new LoadCellPhysics({ unitWeightG: opts.unitWeight, items: opts.items, tareG: opts.tare, noiseSigmaG: opts.noise, rng: forkRng(rng) });
  const slots: ShopperSlot[] = [];
  let sim: DeviceSimulator;
  let what: string;
  if (serialDef.protocol === 'mt-sics') {
    const p = physics();
    const faults: MtSicsFaults = { ...(opts.silentAfter !== undefined ? { silentAfter: opts.silentAfter } : {}), ...(values['fault-garbage'] ? { garbage: 0.1 } : {}) };
    sim = new MtSicsSimulator({ definition: serialDef as MtSicsDefinition, physics: p, rng: forkRng(rng), faults, streamIntervalMs: opts.streamIntervalMs });
    slots.push({ id: 'scale', physics: p });
    what = 'scale';
  } else {
    const faults: ModbusSlaveFaults = {
      ...(opts.silentAfter !== undefined ? { dropAfter: opts.silentAfter } : {}),
      ...(values['fault-garbage'] ? { garbage: 0.1 } : {}),
      ...(opts.crc > 0 ? { corruptCrc: opts.crc } : {}),
    };
    const bus = new ModbusLoadCellBusSimulator({ definition: serialDef as ModbusDefinition, decimals: opts.decimals, rng: forkRng(rng), faults });
    for (const a of opts.addresses) {
      const p = physics();
      bus.addSlave(a, p);
      slots.push({ id: `${device}:${a}`, physics: p });
    }
    sim = bus;
    what = `${opts.addresses.length} address${opts.addresses.length === 1 ? '' : 'es'}`;
  }

  let serving: Serving;
  try {
    serving = await serveAs(sim, { tcp: opts.tcp, pty: values.pty, port: values.port });
  } catch (e) {
    return cli.fail(`cannot serve ${device}: ${(e as Error).message}`, ExitCode.UNAVAILABLE);
  }
  const shoppers = values.shoppers
    ? new ShopperScript({ slots, rng: forkRng(rng), meanIntervalMs: opts.shopperInterval, onAction: (a) => out.write(`${describeAction(a)}\n`) })
    : null;
  try {
    const where = opts.tcp ? serving.url : values.pty !== undefined ? `pty ${serving.url}` : `serial ${serving.url}`;
    const notes = [`model ${def.id}`, `${opts.items} x ${opts.unitWeight} g`, `${sim.serial.baudRate} baud`];
    if (shoppers) notes.push('shoppers');
    return await serveUntilStopped(out, `${device}: ${what} on ${where} (${notes.join(', ')})`, io.signal, () => {
      shoppers?.start();
      io.onServing?.(serving, sim);
    });
  } finally {
    shoppers?.stop();
    await serving.close();
  }
}

