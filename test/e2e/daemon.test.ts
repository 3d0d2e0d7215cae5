/**
 * The whole daemon: the compiled `shelfgate run` process, simulators on real pseudo-terminals
 * (socat) and on TCP, a real MQTT client asserting what is published, the real SQLite file.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { hashPassword } from '../../src/bus/auth';
import { loadDefinitions } from '../../src/devices/definitions';
import type { ModbusDefinition, MtSicsDefinition } from '../../src/devices/types';
import { BusClient } from '../../src/bus/request-client';
import * as topics from '../../src/bus/topics';
import { ModbusLoadCellBusSimulator } from '../../simulators/modbus-loadcell-sim';
import { MtSicsSimulator } from '../../simulators/mtsics-sim';
import { LoadCellPhysics, mulberry32 } from '../../simulators/physics';
import { servePty, serveTcp, type PtyServing, type TcpServing } from '../../simulators/serve';
import { connectClient, runCli, startDaemon, tmp, waitFor, type RunningDaemon } from '../helpers/daemon';
import { usersWithHash } from '../helpers/users';

const defs = loadDefinitions();
const PW = 'e2e-password';
const STORE = 'e2e';
const stockTopic = (shelf: string, slot: string) => `shelfgate/v1/${STORE}/shelf/${shelf}/slot/${slot}/stock`;

describe('shelfgate run (whole daemon)', () => {
  const dir = tmp('sg-e2e-');
  const phys = {
    a1: new LoadCellPhysics({ unitWeightG: 250, items: 12, tareG: 80, noiseSigmaG: 0.3, settleMs: 80, rng: mulberry32(11) }),
    a2: new LoadCellPhysics({ unitWeightG: 400, items: 6, noiseSigmaG: 0.3, settleMs: 80, rng: mulberry32(12) }),
    b1: new LoadCellPhysics({ unitWeightG: 120, items: 20, noiseSigmaG: 0.3, settleMs: 80, rng: mulberry32(13) }),
    scale: new LoadCellPhysics({ unitWeightG: 500, items: 3, noiseSigmaG: 0.05, settleMs: 80, rng: mulberry32(14) }),
  };
  const loadcell = defs.get('generic-modbus-loadcell') as ModbusDefinition;
  const busA = new ModbusLoadCellBusSimulator({ definition: loadcell, slaves: new Map([[1, phys.a1], [2, phys.a2]]), turnaroundMs: 1 });
  const busB = new ModbusLoadCellBusSimulator({ definition: loadcell, slaves: new Map([[1, phys.b1]]), turnaroundMs: 1 });
  const scale = new MtSicsSimulator({ definition: defs.get('mettler-toledo-mt-sics') as MtSicsDefinition, physics: phys.scale });
  let tcpA: TcpServing;
  let ptyB: PtyServing | undefined;
  let ptyScale: PtyServing;
  let daemon: RunningDaemon | undefined;
  let config: Record<string, unknown>;
  const ptyBPath = join(dir, 'ttyBusB');

  beforeAll(async () => {
    tcpA = await serveTcp(busA, '127.0.0.1', 0);
    ptyB = await servePty(busB, ptyBPath);
    ptyScale = await servePty(scale, join(dir, 'ttyScale'));
    const hash = await hashPassword(PW);
    config = {
      store_id: STORE,
      data_dir: join(dir, 'state'),
      log: { level: 'info' },
      mqtt: {
        port: 0,
        users: usersWithHash(hash, { kiosk: 'kiosk', tech: 'technician' }),
      },
      storage: { flush_interval_ms: 10 },
      stability: { window: 3, max_spread_g: 3 },
      buses: [
        { id: 'busa', path: tcpA.url, model: 'generic-modbus-loadcell', poll_interval_ms: 50, timeout_ms: 150, reconnect: { initial_ms: 100, max_ms: 1000 } },
        { id: 'busb', path: ptyBPath, model: 'generic-modbus-loadcell', poll_interval_ms: 50, timeout_ms: 150, reconnect: { initial_ms: 100, max_ms: 1000 } },
        { id: 'scale', path: ptyScale.path, model: 'mettler-toledo-mt-sics', poll_interval_ms: 50, reconnect: { initial_ms: 100, max_ms: 1000 } },
      ],
      shelves: [
        {
          id: 'shelf1',
          slots: [
            { id: 'a', sensor: { bus: 'busa', address: 1 }, gtin: '04006381333931', unit_weight_g: 250, tare_g: 80 },
            { id: 'b', sensor: { bus: 'busa', address: 2 }, gtin: '5901234123457', unit_weight_g: 400 },
          ],
        },
        { id: 'shelf2', slots: [{ id: 'a', sensor: { bus: 'busb', address: 1 }, gtin: '96385074', unit_weight_g: 120 }] },
        { id: 'deli', slots: [{ id: 'counter', sensor: { bus: 'scale' }, unit_weight_g: 500 }] },
      ],
    };
    daemon = await startDaemon(config, dir);
  });

  afterAll(async () => {
    await daemon?.stop();
    await Promise.all([tcpA?.close(), ptyB?.close(), ptyScale?.close()]);
  });

  const latestCount = (messages: Array<{ topic: string; payload: string }>, topic: string) => {
    const m = messages.filter((x) => x.topic === topic).at(-1);
    return m ? (JSON.parse(m.payload) as { count: number | null }).count : undefined;
  };

  it('publishes counts from TCP, pty Modbus and MT-SICS sensors, and the counts after scripted picks and puts', async () => {
    const { client, messages } = await connectClient(daemon!.mqttPort, 'kiosk', PW);
    await client.subscribeAsync(`shelfgate/v1/${STORE}/shelf/#`, { qos: 1 });
    await waitFor(
      () =>
        latestCount(messages, stockTopic('shelf1', 'a')) === 12 &&
        latestCount(messages, stockTopic('shelf1', 'b')) === 6 &&
        latestCount(messages, stockTopic('shelf2', 'a')) === 20 &&
        latestCount(messages, stockTopic('deli', 'counter')) === 3,
      15_000,
      'initial counts',
    );
    phys.a1.pick(2);
    phys.b1.pick(5);
    phys.scale.put(1);
    await waitFor(
      () =>
        latestCount(messages, stockTopic('shelf1', 'a')) === 10 && latestCount(messages, stockTopic('shelf2', 'a')) === 15 && latestCount(messages, stockTopic('deli', 'counter')) === 4,
      15_000,
      'counts after picks',
    );
    const picks = messages.filter((m) => m.topic.endsWith('/event')).map((m) => JSON.parse(m.payload) as Record<string, unknown>);
    expect(picks).toEqual(expect.arrayContaining([expect.objectContaining({ kind: 'pick', shelf_id: 'shelf1', slot_id: 'a', delta: -2, count: 10 })]));
    expect(picks).toEqual(expect.arrayContaining([expect.objectContaining({ kind: 'put', shelf_id: 'deli', slot_id: 'counter', delta: 1, count: 4 })]));
    // no wrong count was ever published for slot a: only 12 then 10
    const seen = new Set(messages.filter((m) => m.topic === stockTopic('shelf1', 'a')).map((m) => JSON.parse(m.payload).count));
    expect([...seen].sort()).toEqual([10, 12]);
    await client.endAsync();
  });

  it('garbage and CRC errors on a bus are counted, never a wrong count', async () => {
    const { client, messages } = await connectClient(daemon!.mqttPort, 'kiosk', PW);
    await client.subscribeAsync(stockTopic('shelf1', 'b'), { qos: 1 });
    busA.faults = { garbage: 0.3, corruptCrc: 0.2 };
    // 60 answers under the faults before the pick (that none of them was hit: 0.56^60, nil)
    const answered = busA.stats.answered;
    await waitFor(() => busA.stats.answered >= answered + 60, 15_000, '60 answers under faults');
    phys.a2.pick(1);
    await waitFor(() => latestCount(messages, stockTopic('shelf1', 'b')) === 5, 15_000, 'count through garbage');
    busA.faults = {};
    const counts = messages.filter((m) => m.topic === stockTopic('shelf1', 'b')).map((m) => JSON.parse(m.payload).count as number);
    expect(counts.every((c) => c === 6 || c === 5)).toBe(true);
    expect(daemon!.proc.exitCode).toBeNull();
    expect(daemon!.proc.signalCode).toBeNull(); // not killed by a signal either
    await client.endAsync();
  });

  it('refuses anonymous and wrong-role clients', async () => {
    await expect(connectClient(daemon!.mqttPort)).rejects.toThrow(/Not authorized|Bad username|refused/i);
    await expect(connectClient(daemon!.mqttPort, 'kiosk', 'wrong')).rejects.toThrow(/Bad username|refused|Not authorized/i);
    const watcher = await connectClient(daemon!.mqttPort, 'kiosk', PW);
    await watcher.client.subscribeAsync(stockTopic('shelf1', 'a'), { qos: 1 });
    await waitFor(() => watcher.messages.length > 0, 5_000, 'retained stock');
    // a kiosk publishing a fake stock level is disconnected; nobody sees the fake
    const spoofer = await connectClient(daemon!.mqttPort, 'kiosk', PW);
    const closed = new Promise<void>((r) => spoofer.client.once('close', () => r()));
    spoofer.client.publish(stockTopic('shelf1', 'a'), JSON.stringify({ count: 999 }), { qos: 0, retain: true });
    await closed;
    spoofer.client.end(true);
    // the broker has moved past the spoofed publish once it answers a request sent after it, on the
    // watcher's own connection (where a forwarded fake would have arrived first)
    const answerTopic = topics.response(STORE, 'kiosk', 'stock.get');
    await watcher.client.subscribeAsync(answerTopic, { qos: 1 });
    await watcher.client.publishAsync(topics.request(STORE, 'stock.get'), JSON.stringify({ transaction: 'after-spoof' }), { qos: 1 });
    await waitFor(() => watcher.messages.some((m) => m.topic === answerTopic && (JSON.parse(m.payload) as { transaction?: string }).transaction === 'after-spoof'), 5_000, 'the answer to stock.get');
    expect(watcher.messages.some((m) => m.topic === stockTopic('shelf1', 'a') && (JSON.parse(m.payload) as { count?: number }).count === 999)).toBe(false);
    // a kiosk may not calibrate
    const kioskReq = await BusClient.connect({ url: `mqtt://127.0.0.1:${daemon!.mqttPort}`, username: 'kiosk', password: PW, store: STORE });
    await expect(kioskReq.request('calibrate.tare', { shelf: 'shelf1', slot: 'a' }, 1500)).rejects.toThrow();
    await kioskReq.client.endAsync(true);
    await watcher.client.endAsync();
  });

  it('technician calibration over MQTT and through the CLI', async () => {
    const tech = await BusClient.connect({ url: `mqtt://127.0.0.1:${daemon!.mqttPort}`, username: 'tech', password: PW, store: STORE });
    // the deli counter has 4 x 500 g; learning from 4 items gives 500 g again
    const learned = await tech.request<{ unit_weight_g: number; count: number }>('calibrate.learn', { shelf: 'deli', slot: 'counter', items: 4 });
    expect(learned.unit_weight_g).toBeGreaterThan(495);
    expect(learned.unit_weight_g).toBeLessThan(505);
    expect(learned.count).toBe(4);
    await expect(tech.request('calibrate.set_unit_weight', { shelf: 'nope', slot: 'x', grams: 10 })).rejects.toThrow(/SG_NOT_FOUND/);
    await tech.close();
    const cli = await runCli(['calibrate', 'set-unit-weight', '--url', `mqtt://127.0.0.1:${daemon!.mqttPort}`, '--store', STORE, '--shelf', 'deli', '--slot', 'counter', '--grams', '250', '-u', 'tech'], {
      env: { SHELFGATE_PASSWORD: PW },
    });
    expect(cli.stderr).toBe('');
    expect(cli.code).toBe(0);
    expect(JSON.parse(cli.stdout)).toMatchObject({ unit_weight_g: 250, count: 8 });
    // and back, so the count is 4 again
    const back = await runCli(['calibrate', 'set-unit-weight', '--url', `mqtt://127.0.0.1:${daemon!.mqttPort}`, '--store', STORE, '--shelf', 'deli', '--slot', 'counter', '--grams', '500', '-u', 'tech'], {
      env: { SHELFGATE_PASSWORD: PW },
    });
    expect(JSON.parse(back.stdout)).toMatchObject({ count: 4 });
  });

  it('unplug and replug of a serial adapter (pty torn down and recreated) recovers by itself', async () => {
    const { client, messages } = await connectClient(daemon!.mqttPort, 'kiosk', PW);
    await client.subscribeAsync(`shelfgate/v1/${STORE}/device/busb.1/availability`, { qos: 1 });
    await client.subscribeAsync(stockTopic('shelf2', 'a'), { qos: 1 });
    const state = () => messages.filter((m) => m.topic.endsWith('/availability')).map((m) => JSON.parse(m.payload).state as string).at(-1);
    await waitFor(() => state() === 'online', 5_000, 'busb online');
    await ptyB!.close();
    ptyB = undefined;
    await waitFor(() => state() === 'offline', 10_000, 'busb offline after unplug');
    phys.b1.pick(3); // happens while unplugged
    ptyB = await servePty(busB, ptyBPath);
    await waitFor(() => state() === 'online', 15_000, 'busb online after replug');
    await waitFor(() => latestCount(messages, stockTopic('shelf2', 'a')) === 12, 15_000, 'count after replug');
    expect(daemon!.proc.exitCode).toBeNull();
    expect(daemon!.proc.signalCode).toBeNull(); // not killed by a signal either
    await client.endAsync();
  });

  it('a restart keeps state: last known stock republished, no spurious events; SIGTERM exits 0', async () => {
    const code = await daemon!.stop('SIGTERM');
    expect(code).toBe(0);
    expect(daemon!.logs.some((l) => l.msg === 'stopped')).toBe(true);
    const db = new Database(join(dir, 'state', 'shelfgate.db'), { readonly: true });
    const before = (db.prepare('SELECT COUNT(*) AS n, MAX(seq) AS s FROM outbox').get() as { n: number; s: number });
    db.close();
    daemon = await startDaemon(config, dir);
    const { client, messages } = await connectClient(daemon.mqttPort, 'kiosk', PW);
    await client.subscribeAsync(`shelfgate/v1/${STORE}/shelf/+/slot/+/stock`, { qos: 1 });
    await waitFor(() => messages.filter((m) => m.retain).length >= 4, 5_000, 'retained stock after restart');
    expect(latestCount(messages, stockTopic('shelf1', 'a'))).toBe(10);
    expect(latestCount(messages, stockTopic('shelf2', 'a'))).toBe(12);
    // Every sensor answers 10 more polls (busa has two sensors) after the restart; a poll loop asks
    // again only once it has handled the previous answer. That is far past the 3-reading stability
    // window, so each slot has met its restored count with settled readings by then.
    const polls = { a: busA.stats.requests, b: busB.stats.requests, scale: scale.stats.commands };
    await waitFor(
      () => busA.stats.requests >= polls.a + 20 && busB.stats.requests >= polls.b + 10 && scale.stats.commands >= polls.scale + 10,
      15_000,
      'ten polls of every sensor after the restart',
    );
    const db2 = new Database(join(dir, 'state', 'shelfgate.db'), { readonly: true });
    const after = db2.prepare("SELECT COUNT(*) AS n FROM outbox WHERE kind IN ('pick','put','count') AND seq > ?").get(before.s) as { n: number };
    db2.close();
    expect(after.n).toBe(0);
    await client.endAsync();
  });
});

describe('shelfgate config', () => {
  it('an invalid config: every error with its path, nothing started, exit 78', async () => {
    const dir = tmp('sg-cfg-');
    const file = join(dir, 'bad.yaml');
    writeFileSync(
      file,
      [
        'store_id: s1',
        'mqtt: { port: 1883, colour: red }',
        'buses: [{ id: b1, path: /dev/ttyUSB0, model: generic-modbus-loadcell }]',
        'shelves:',
        '  - { id: sh0, slots: [{ id: a, sensor: { bus: b1, address: 1 }, unit_weight_g: 10 }] }',
        '  - { id: sh1, slots: [{ id: a, sensor: { bus: b1, address: 2 }, unit_weight_g: 10 }] }',
        '  - { id: sh2, slots: [{ id: a, sensor: { bus: b1, address: 3 }, unit_weight_g: 10 }] }',
        '  - { id: sh3, slots: [{ id: a, sensor: { bus: b1, address: 4 }, unit_weight_g: 10 }, { id: b, sensor: { bus: b1, address: 5 }, unit_weight_g: 0 }] }',
      ].join('\n'),
    );
    for (const args of [['run', '--config', file], ['config', 'check', file]]) {
      const r = await runCli(args);
      expect(r.code).toBe(78);
      expect(r.stderr).toContain('shelves[3].slots[1].unit_weight_g: must be > 0');
      expect(r.stderr).toContain('mqtt: unknown key(s) "colour"');
      expect(r.stdout).not.toContain('gateway ready');
    }
    const missing = await runCli(['config', 'check', join(dir, 'nope.yaml')]);
    expect(missing.code).toBe(78);
    expect(missing.stderr).toMatch(/cannot read .*nope\.yaml: ENOENT/);
    const notYaml = join(dir, 'broken.yaml');
    writeFileSync(notYaml, 'store_id: [unclosed\n');
    const y = await runCli(['config', 'check', notYaml]);
    expect(y.code).toBe(78);
    expect(y.stderr).toContain('YAML:');
  });

  it('the example config is refused only for its placeholder password hash, and valid once that is replaced', async () => {
    const example = join(__dirname, '../../config/shelfgate.example.yaml');
    const shipped = await runCli(['config', 'check', example]);
    expect(shipped.code).toBe(78);
    expect(shipped.stdout).toBe('');
    expect(shipped.stderr).toBe(
      `${example}: invalid configuration (1 error)\nmqtt.users[0].password_hash: is the example config's placeholder (its password 'change-me' is public): make a hash of a real password with \`shelfgate passwd\`\n`,
    );
    const edited = join(tmp('sg-cfg-'), 'example-edited.yaml');
    const text = readFileSync(example, 'utf8');
    const hashLine = /password_hash: "scrypt\$[^"]+"/;
    expect(text).toMatch(hashLine);
    writeFileSync(edited, text.replace(hashLine, `password_hash: "${await hashPassword('a-real-password')}"`), { mode: 0o640 });
    chmodSync(edited, 0o640);
    const r = await runCli(['config', 'check', edited]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/ok \(store store-0042/);
  });

  it('a bad command line exits 64', async () => {
    expect((await runCli(['frobnicate'])).code).toBe(64);
    expect((await runCli(['run'])).code).toBe(64);
  });
});
