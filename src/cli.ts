#!/usr/bin/env node
/**
 * The `shelfgate` command. The entry point owns signals and exit codes; everything
 * else is built by src/daemon.ts. Exit codes: 0 ok, 1 failure, 64 usage, 69 unavailable,
 * 70 internal error, 73 cannot create state, 78 invalid configuration (systemd does not restart on 78).
 */
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { ExitCode } from './errors';
import { reportConfigError } from './config/report';
import { withConnOptions } from './tools/bus-cli';

async function main(argv: string[]): Promise<number> {
  // Simulators parse their own flags (node:util parseArgs): hand them the rest of the line untouched.
  if (argv[0] === 'sim') {
    if (argv[1] === 'central') return (await import('../simulators/central/cli')).runCentralCli(argv.slice(2));
    return (await import('../simulators/cli')).runSimCli(argv.slice(1));
  }

  let exit: number = ExitCode.OK;
  const program = new Command('shelfgate')
    .description('In-store edge gateway: smart shelves to a local MQTT bus and the central inventory service')
    .exitOverride()
    .showHelpAfterError();

  program
    .command('run')
    .description('run the gateway daemon')
    .requiredOption('-c, --config <file>', 'configuration file (YAML)')
    .action(async (opts: { config: string }) => {
      const { runDaemon } = await import('./daemon');
      exit = await runDaemon(opts.config);
    });

  const config = program.command('config').description('configuration tools');
  config
    .command('check')
    .description('validate a configuration file and report every error and warning (dangerous settings); exit 78 if invalid, 0 with warnings')
    .argument('<file>', 'configuration file (YAML)')
    .action(async (file: string) => {
      exit = checkConfig(file);
    });

  program
    .command('demo')
    .description('run the gateway with a simulated store (no hardware): 2 gondolas x 4 shelves x 4 slots and shoppers')
    .option('--mqtt-port <port>', 'local MQTT port (default 1883, or a free port if 1883 is taken)')
    .option('--data-dir <dir>', 'state directory (default: a new temporary directory)')
    .option('--seed <n>', 'random seed for the simulated shoppers')
    .action(async (opts: { mqttPort?: string; dataDir?: string; seed?: string }) => {
      const { runDemo } = await import('./demo');
      exit = await runDemo({
        mqttPort: opts.mqttPort === undefined ? undefined : Number(opts.mqttPort),
        dataDir: opts.dataDir,
        seed: opts.seed === undefined ? undefined : Number(opts.seed),
      });
    });

  program
    .command('passwd')
    .description('read a password on stdin and print its scrypt hash for mqtt.users[].password_hash')
    .action(async () => {
      const { hashForCli } = await import('./bus/passwd');
      const password = (await readStdin()).replace(/\r?\n$/, '');
      if (!password) {
        process.stderr.write('shelfgate passwd: empty password on stdin\n');
        exit = ExitCode.USAGE;
        return;
      }
      process.stdout.write(`${await hashForCli(password)}\n`);
    });

  const calibrate = program
    .command('calibrate')
    .description('technician calibration through the running gateway (MQTT, technician role)');
  const conn = (c: Command): Command =>
    c
      .requiredOption('--shelf <id>', 'shelf id')
      .requiredOption('--slot <id>', 'slot id')
      .option('--url <url>', 'local bus URL', 'mqtt://127.0.0.1:1883')
      .requiredOption('--store <id>', 'store id (store_id in the gateway config)')
      .requiredOption('-u, --username <name>', 'technician user')
      .option('--password-env <var>', 'environment variable holding the password', 'SHELFGATE_PASSWORD');
  for (const [name, command, extra] of [
    ['tare', 'calibrate.tare', null],
    ['set-unit-weight', 'calibrate.set_unit_weight', '--grams <g>'],
    ['learn', 'calibrate.learn', '--items <n>'],
  ] as const) {
    const c = conn(calibrate.command(name));
    if (extra) c.requiredOption(extra, extra.startsWith('--grams') ? 'unit weight in grams' : 'number of items now on the slot');
    c.action(async (opts: Record<string, string>) => {
      const { runCalibrateCli } = await import('./features/shelves/calibrate-cli');
      exit = await runCalibrateCli(command, opts);
    });
  }

  const withConn = withConnOptions;
  withConn(program.command('status').description('one screen of the running gateway: devices, the backlog to central, labels and the other features (MQTT, technician)')).action(
    async (opts: { json?: boolean }) => {
      const { runStatusCli } = await import('./tools/technician-cli');
      exit = await runStatusCli(opts);
    },
  );
  withConn(program.command('devices').description('every device: online or offline, for how long, where, its counters and its last error')).action(async (opts: { json?: boolean }) => {
    const { runDevicesCli } = await import('./tools/technician-cli');
    exit = await runDevicesCli(opts);
  });
  withConn(program.command('tail').description('print the bus messages of the store as they come (retained ones first), until Ctrl-C').argument('[topic]', 'topic filter under shelfgate/v1/<store>/, e.g. shelf/# (default: #)'))
    .option('--count <n>', 'stop after n messages', (v) => positiveInt('--count', v))
    .option('--seconds <s>', 'stop after s seconds', (v) => positiveInt('--seconds', v))
    .action(async (topic: string | undefined, opts: { json?: boolean; count?: number; seconds?: number }) => {
      const { runTailCli } = await import('./tools/technician-cli');
      exit = await runTailCli(topic, opts);
    });
  const shelf = program.command('shelf').description('a shelf slot, through the running gateway (MQTT, technician role)');
  withConn(shelf.command('tare').description("take the slot's settled (empty) weight as its tare; waits for the shelf to settle").argument('<shelf>', 'shelf id').argument('<slot>', 'slot id'))
    .option('--timeout <s>', 'wait at most s seconds for a settled weight (default 30)', (v) => positiveInt('--timeout', v))
    .action(async (shelfId: string, slotId: string, opts: { json?: boolean; timeout?: number }) => {
      const { runShelfTareCli } = await import('./tools/technician-cli');
      exit = await runShelfTareCli(shelfId, slotId, opts);
    });
  withConn(program.command('labels').description('price integrity of the shelf labels: what each shows against what it should (running gateway, MQTT)'))
    .option('--stale', 'only labels that do not show their current price, or cannot be given content')
    .action(async (opts: { url?: string; store?: string; username?: string; passwordEnv: string; stale?: boolean; json?: boolean }) => {
      const { runLabelsCli } = await import('./features/labels/labels-cli');
      exit = await runLabelsCli(opts);
    });
  const label = program.command('label').description('one shelf label, through the running gateway (MQTT, technician role)');
  withConn(label.command('bind').description('bind a label to a slot or a product').argument('<mac>', 'label MAC (12 or 16 hex digits)'))
    .option('--shelf <id>', 'shelf id')
    .option('--slot <id>', 'slot id')
    .option('--gtin <gtin>', 'product instead of a slot')
    .option('--type <id>', 'label type from devices/labels (default: from the hardware type the AP reports)')
    .action(async (mac: string, opts: Record<string, string> & { json?: boolean }) => {
      const { runLabelCommandCli } = await import('./features/labels/labels-cli');
      const body: Record<string, unknown> = { mac };
      for (const k of ['shelf', 'slot', 'gtin', 'type']) if (opts[k] !== undefined) body[k] = opts[k];
      exit = await runLabelCommandCli('label.bind', body, opts);
    });
  withConn(label.command('command').description('a maintenance command for the label at its next check-in').argument('<mac>', 'label MAC').argument('<cmd>', 'refresh, reboot or scan')).action(
    async (mac: string, cmd: string, opts: { json?: boolean }) => {
      const { runLabelCommandCli } = await import('./features/labels/labels-cli');
      exit = await runLabelCommandCli('label.command', { mac, cmd }, opts);
    },
  );
  for (const [name, command, what] of [
    ['unbind', 'label.unbind', 'remove a label from the registry'],
    ['flash', 'label.flash', "flash the label's LED (find this label)"],
    ['push', 'label.push', 'render and deliver the label content again'],
  ] as const) {
    withConn(label.command(name).description(what).argument('<mac>', 'label MAC (12 or 16 hex digits)')).action(
      async (mac: string, opts: { json?: boolean }) => {
        const { runLabelCommandCli } = await import('./features/labels/labels-cli');
        exit = await runLabelCommandCli(command, { mac }, opts);
      },
    );
  }

  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) {
      return e.exitCode === 0 ? ExitCode.OK : ExitCode.USAGE;
    }
    throw e;
  }
  return exit;
}

function checkConfig(file: string): number {
  // Imported lazily so `shelfgate --help` stays fast on a Pi.
  const { loadDefinitions } = require('./devices/definitions') as typeof import('./devices/definitions');
  const { loadConfig } = require('./config/load') as typeof import('./config/load');
  const { formatWarnings } = require('./config/report') as typeof import('./config/report');
  const { BUILTIN_FEATURES } = require('./features') as typeof import('./features');
  try {
    // The daemon's open-file limit is not this process's (systemd sets LimitNOFILE): config check
    // compares with the unit's limit only, as a warning; `run` checks its own limit.
    const { config: cfg, warnings } = loadConfig(file, loadDefinitions(), BUILTIN_FEATURES);
    process.stderr.write(formatWarnings(file, warnings));
    const parts = [`store ${cfg.store_id}`, ...BUILTIN_FEATURES.flatMap((f) => (f.summary ? [f.summary(cfg)] : [])), `${cfg.shelves.reduce((n, s) => n + s.slots.length, 0)} slot(s)`];
    process.stdout.write(`${file}: ok (${parts.join(', ')})\n`);
    return ExitCode.OK;
  } catch (e) {
    return reportConfigError(file, e);
  }
}

function positiveInt(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${flag} takes a whole number of at least 1, not ${JSON.stringify(v)}`);
  return n;
}

function readStdin(): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (c: string) => (data += c));
    process.stdin.on('end', () => resolve(data));
    process.stdin.on('error', reject);
  });
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`shelfgate: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
      process.exitCode = ExitCode.SOFTWARE;
    },
  );
}
