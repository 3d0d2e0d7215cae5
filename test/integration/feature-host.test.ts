/**
 * The core hosts a feature it has never heard of. `doors` below is defined only in this file: a
 * door counter at the store entrance. It brings its own config key, source, outbox event kind with
 * a buffer policy, table (migration), command with a permission, and topic area with an ACL; no
 * core file names it. Built into a real gateway (real SQLite file, real MQTT socket, the reference
 * central service over HTTP), it works end to end:
 * - its events reach central through the outbox and the sync service;
 * - its command is answered over MQTT, and refused to a role without the permission;
 * - its topic area is gateway-owned and readable by the roles it declares.
 */
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { MqttClient } from 'mqtt';
import type { Statement } from 'better-sqlite3';
import { hashPassword } from '../../src/bus/auth';
import * as topics from '../../src/bus/topics';
import { declareCommand, handle } from '../../src/core/commands';
import { defineFeature, type FeatureContext } from '../../src/core/feature';
import { buildGateway } from '../../src/core/gateway';
import type { Source, SourceReading } from '../../src/core/sources/types';
import { validateConfig } from '../../src/config/load';
import { loadDefinitions } from '../../src/devices/definitions';
import { ErrorCode, ShelfgateError } from '../../src/errors';
import type { Service } from '../../src/lifecycle';
import type { ChangeApplier } from '../../src/sync/appliers';
import { silentLogger } from '../../src/log';
import { CentralSimulator } from '../../simulators/central';
import { connectClient, tmp, useCleanups, waitFor } from '../helpers/daemon';

// ---------------------------------------------------------------- the feature, as a new folder would hold it

interface Passage extends SourceReading {
  direction: 'in' | 'out';
}

/** A door counter's beam: pushes a passage whenever someone walks through (a streaming source). */
class DoorBeam extends EventEmitter implements Source<Passage> {
  readonly stats = { polls: 0, readings: 0, timeouts: 0, crcErrors: 0, deviceErrors: 0, invalidFrames: 0, noiseBytes: 0, lateAnswers: 0 };
  readonly devices: string[];
  private online = false;
  constructor(readonly name: string) {
    super();
    this.devices = [name];
  }
  async start(): Promise<void> {
    this.online = true;
    this.emit('availability', { sensor: this.name, online: true, ts: Date.now() });
  }
  async stop(): Promise<void> {
    this.online = false;
  }
  isOnline(): boolean {
    return this.online;
  }
  /** The test walks someone through the door. */
  pass(direction: 'in' | 'out'): void {
    this.stats.readings++;
    this.emit('reading', { sensor: this.name, direction, ts: Date.now(), rxMono: 0 });
  }
}

const doorsConfig = { doors: z.array(z.strictObject({ id: z.string().regex(/^[a-z0-9-]+$/) })).default([]) };
type DoorsConfig = { doors: Array<{ id: string }> };

const resetCommand = declareCommand({
  name: 'door.reset',
  permission: 'operate',
  description: 'set a door counter back to zero',
  payload: z.object({ door: z.string() }),
});

class DoorService implements Service {
  readonly name = 'doors';
  readonly counts = new Map<string, number>();
  private readonly save: (r: { door: string; count: number }) => Promise<void>;
  private readonly onPassage = (p: Passage): void => void this.record(p.sensor, p.direction);
  constructor(
    private readonly ctx: FeatureContext,
    private readonly beams: DoorBeam[],
  ) {
    // its own table, its own SQL, batched by the core's one writer
    this.save = ctx.store.defineWrite({
      name: 'doors.save',
      prepare: (db) => {
        const st = db.prepare('INSERT INTO door_counts (door, count) VALUES (?, ?) ON CONFLICT (door) DO UPDATE SET count = excluded.count');
        return (r) => {
          st.run(r.door, r.count);
        };
      },
      coalesce: { key: (r) => r.door },
    });
  }
  async start(): Promise<void> {
    for (const b of this.beams) {
      this.counts.set(b.name, 0);
      b.on('reading', this.onPassage);
    }
  }
  async stop(): Promise<void> {
    for (const b of this.beams) b.off('reading', this.onPassage);
  }
  async record(door: string, direction: 'in' | 'out'): Promise<void> {
    const count = (this.counts.get(door) ?? 0) + (direction === 'in' ? 1 : -1);
    this.counts.set(door, count);
    const [appended] = await Promise.all([
      this.ctx.store.appendEvent({ deviceId: `door/${door}`, kind: 'door_passage', priority: 2, payload: { door, direction, count } }),
      this.save({ door, count }),
    ]);
    await this.ctx.bus.publish(`${topics.storePrefix(this.ctx.storeId)}door/${door}/count`, JSON.stringify({ count, seq: appended.seq }), { retain: true, qos: 1 });
  }
  async reset(door: string): Promise<{ door: string; count: number }> {
    if (!this.counts.has(door)) throw new ShelfgateError(ErrorCode.NOT_FOUND, `no door ${door}`);
    this.counts.set(door, 0);
    await this.save({ door, count: 0 });
    return { door, count: 0 };
  }
}

/**
 * A change type of central's feed the feature owns: a door's opening time, versioned per door. Its
 * row commits inside the feed page's transaction (Store.transaction joins it), so the version rule
 * reads committed data.
 */
interface DoorHoursIn {
  changeId: string;
  version: number;
  door: string;
  opens: string;
}

class DoorHoursApplier implements ChangeApplier<DoorHoursIn> {
  readonly type = 'door_hours';
  /** What reached apply(), in order (the test checks an older version never does). */
  readonly applied: DoorHoursIn[] = [];
  private st: { get: Statement; put: Statement } | null = null;
  constructor(private readonly ctx: FeatureContext) {
    ctx.store.onOpen((db) => {
      this.st = {
        get: db.prepare('SELECT version, change_id AS changeId FROM door_hours WHERE door = ?'),
        put: db.prepare('INSERT INTO door_hours (door, opens, version, change_id) VALUES (?, ?, ?, ?) ON CONFLICT (door) DO UPDATE SET opens = excluded.opens, version = excluded.version, change_id = excluded.change_id'),
      };
    });
  }
  validate(o: Record<string, unknown>, changeId: string, version: number) {
    if (typeof o.door !== 'string' || typeof o.opens !== 'string' || !/^\d{2}:\d{2}$/.test(o.opens)) return { ok: false as const, detail: 'door and opens (HH:MM) are required' };
    return { ok: true as const, change: { changeId, version, door: o.door, opens: o.opens } };
  }
  key(c: DoorHoursIn): string {
    return c.door;
  }
  current(c: DoorHoursIn): { version: number; changeId: string } | null {
    return (this.st!.get.get(c.door) as { version: number; changeId: string } | undefined) ?? null;
  }
  apply(_tx: unknown, changes: DoorHoursIn[]): DoorHoursIn[] {
    return this.ctx.store.transaction(() => {
      for (const c of changes) this.st!.put.run(c.door, c.opens, c.version, c.changeId);
      this.applied.push(...changes);
      return changes;
    });
  }
}

const doorsFeature = defineFeature({
  name: 'doors',
  config: doorsConfig,
  eventKinds: [{ kind: 'door_passage', priority: 2, droppable: true, description: 'someone walked through a door' }],
  // a version number of its own in the one order (a real feature takes the next free number)
  migrations: [
    {
      version: 100,
      description: 'doors: counts, opening hours',
      up: 'CREATE TABLE door_counts (door TEXT PRIMARY KEY, count INTEGER NOT NULL); CREATE TABLE door_hours (door TEXT PRIMARY KEY, opens TEXT NOT NULL, version INTEGER NOT NULL, change_id TEXT NOT NULL)',
    },
  ],
  commands: [resetCommand],
  topics: [{ filter: 'door/#', gatewayOwned: true, readers: ['kiosk'], description: 'door counts' }],
  build(ctx) {
    const beams = (ctx.config as unknown as DoorsConfig).doors.map((d) => new DoorBeam(d.id));
    for (const b of beams) ctx.devices.track(b, () => ({ kind: 'beam', model: 'test-beam', path: 'memory' }));
    const service = new DoorService(ctx, beams);
    return { services: [service], sources: beams, commands: [handle(resetCommand, (p) => service.reset(p.door))], appliers: [new DoorHoursApplier(ctx)] };
  },
});

// ---------------------------------------------------------------- the test

const STORE = 'st-doors';
const PW = 'door-test-pw';

describe('feature host', () => {
  const cleanups = useCleanups();

  it('a feature defined only in a test file works end to end: events to central, a command over MQTT, its ACL', async () => {
    const dir = tmp();
    const central = new CentralSimulator({ host: '127.0.0.1', port: 0, token: 'tok', log: silentLogger(), extraKinds: ['door_passage'] });
    await central.start();
    cleanups.push(() => central.stop());
    writeFileSync(join(dir, 'token'), 'tok');
    const hash = await hashPassword(PW);
    const raw = {
      store_id: STORE,
      data_dir: dir,
      mqtt: {
        port: 0,
        users: [
          { username: 'kiosk', role: 'kiosk', password_hash: hash },
          { username: 'ops', role: 'service', password_hash: hash },
        ],
      },
      storage: { flush_interval_ms: 5 },
      sync: { transport: 'https', https: { url: central.url, token_file: join(dir, 'token') }, backoff: { initial_ms: 50, max_ms: 500 } },
      shelves: [{ id: 'entrance', slots: [{ id: 'mat' }] }], // a location nothing weighs
      doors: [{ id: 'front' }],
    };
    const { config, issues } = validateConfig(raw, loadDefinitions(), [doorsFeature]);
    expect(issues).toEqual([]);
    const gw = buildGateway(config!, { log: silentLogger(), definitions: loadDefinitions(), features: [doorsFeature] });
    await gw.start();
    cleanups.push(() => gw.stop());
    const port = gw.bus.address().port;
    const beam = gw.sources[0] as DoorBeam;

    // the feature's topic area: readable by a kiosk, as it declared
    const kiosk = await connectClient(port, 'kiosk', PW);
    cleanups.push(() => kiosk.client.endAsync());
    await kiosk.client.subscribeAsync(`${topics.storePrefix(STORE)}door/#`, { qos: 1 });

    beam.pass('in');
    beam.pass('in');
    beam.pass('out');
    await waitFor(() => kiosk.messages.some((m) => m.topic.endsWith('door/front/count') && JSON.parse(m.payload).count === 1), 5_000, 'door count on the bus');

    // events reach the reference central through the outbox
    await waitFor(() => central.receivedEvents(STORE).length === 3, 10_000, 'door events at central');
    const got = central.receivedEvents(STORE, { orderBy: 'seq' });
    expect(got.map((e) => [e.kind, e.device_id, (e.payload as { direction: string }).direction])).toEqual([
      ['door_passage', 'door/front', 'in'],
      ['door_passage', 'door/front', 'in'],
      ['door_passage', 'door/front', 'out'],
    ]);
    expect(gw.kinds.policyOf('door_passage')).toMatchObject({ priority: 2, droppable: true });

    // the command, over MQTT, for a role with the permission it declared
    const ops = await connectClient(port, 'ops', PW);
    cleanups.push(() => ops.client.endAsync());
    await ops.client.subscribeAsync(topics.responseFilter(STORE, 'ops'), { qos: 1 });
    ops.client.publish(topics.request(STORE, 'door.reset'), JSON.stringify({ transaction: 't1', door: 'front' }), { qos: 1 });
    const answer = await waitFor(() => ops.messages.find((m) => m.topic === topics.response(STORE, 'ops', 'door.reset')), 5_000, 'door.reset answer');
    expect(JSON.parse(answer.payload)).toEqual({ transaction: 't1', ok: true, data: { door: 'front', count: 0 } });
    // its payload schema applies
    ops.client.publish(topics.request(STORE, 'door.reset'), JSON.stringify({ transaction: 't2' }), { qos: 1 });
    const bad = await waitFor(() => ops.messages.map((m) => JSON.parse(m.payload) as { transaction: string }).find((b) => b.transaction === 't2'), 5_000, 'invalid payload answer');
    expect(bad).toMatchObject({ ok: false, error: { code: ErrorCode.REQUEST_INVALID } });
    // its table, written through the core's writer
    expect(gw.store.connection!.prepare('SELECT door, count FROM door_counts').all()).toEqual([{ door: 'front', count: 0 }]);

    // the ACL: a kiosk lacks `operate` (its publish closes the connection) and nobody publishes on a gateway-owned area
    const closed = (c: MqttClient) => new Promise<void>((r) => c.once('close', () => r()));
    const k2 = await connectClient(port, 'kiosk', PW);
    const k2closed = closed(k2.client);
    k2.client.publish(topics.request(STORE, 'door.reset'), JSON.stringify({ transaction: 'k', door: 'front' }), { qos: 1 });
    await k2closed;
    k2.client.end(true);
    const o2 = await connectClient(port, 'ops', PW);
    const o2closed = closed(o2.client);
    o2.client.publish(`${topics.storePrefix(STORE)}door/front/count`, JSON.stringify({ count: 999 }), { qos: 1, retain: true });
    await o2closed;
    o2.client.end(true);
    // the kiosk's subscription proves the fake never arrived: a fresh retained read shows the gateway's value
    const k3 = await connectClient(port, 'kiosk', PW);
    cleanups.push(() => k3.client.endAsync());
    await k3.client.subscribeAsync(`${topics.storePrefix(STORE)}door/front/count`, { qos: 1 });
    const retained = await waitFor(() => k3.messages.find((m) => m.retain), 5_000, 'retained door count');
    expect(JSON.parse(retained.payload).count).toBe(1);
    // and its device is in the core's registry like any other
    await waitFor(() => gw.store.loadDevices().some((d) => d.id === 'front' && d.online), 5_000, 'door beam in the device registry');

    // stop removes every listener the gateway registered: on the event bus and on the sources
    await gw.stop();
    expect(gw.events.listenerCount()).toBe(0);
    expect(beam.listenerCount('reading') + beam.listenerCount('availability')).toBe(0);
  });

  it("a feature's change applier gets its change type from central's feed, with the version rule", async () => {
    const dir = tmp();
    const central = new CentralSimulator({ host: '127.0.0.1', port: 0, token: 'tok', log: silentLogger() });
    await central.start();
    cleanups.push(() => central.stop());
    writeFileSync(join(dir, 'token'), 'tok');
    const raw = {
      store_id: STORE,
      data_dir: dir,
      mqtt: { port: 0 },
      storage: { flush_interval_ms: 5 },
      sync: { transport: 'https', https: { url: central.url, token_file: join(dir, 'token') }, backoff: { initial_ms: 50, max_ms: 500 } },
      shelves: [{ id: 'entrance', slots: [{ id: 'mat' }] }],
      doors: [{ id: 'front' }],
    };
    const { config, issues } = validateConfig(raw, loadDefinitions(), [doorsFeature]);
    expect(issues).toEqual([]);
    const gw = buildGateway(config!, { log: silentLogger(), definitions: loadDefinitions(), features: [doorsFeature] });
    await gw.start();
    cleanups.push(() => gw.stop());
    const applier = gw.features.get('doors')!.appliers![0] as DoorHoursApplier;
    const ackOf = (changeId: string) => waitFor(() => central.acks(STORE).find((a) => a.change_id === changeId), 10_000, `ack of ${changeId}`);
    const row = () => gw.store.connection!.prepare('SELECT door, opens, version FROM door_hours').all();

    const v2 = central.publishOtherChange({ type: 'door_hours', storeId: STORE, body: { door: 'front', opens: '09:00' }, version: 2 });
    expect((await ackOf(v2.change_id)).status).toBe('applied');
    expect(row()).toEqual([{ door: 'front', opens: '09:00', version: 2 }]);

    // an older version of the same door: acknowledged stale, never handed to apply()
    const v1 = central.publishOtherChange({ type: 'door_hours', storeId: STORE, body: { door: 'front', opens: '07:00' }, version: 1 });
    expect((await ackOf(v1.change_id)).status).toBe('stale');
    // a newer one after it is applied: the feed moved past the stale one
    const v3 = central.publishOtherChange({ type: 'door_hours', storeId: STORE, body: { door: 'front', opens: '10:00' }, version: 3 });
    expect((await ackOf(v3.change_id)).status).toBe('applied');
    expect(applier.applied.map((c) => [c.version, c.opens])).toEqual([
      [2, '09:00'],
      [3, '10:00'],
    ]);
    expect(row()).toEqual([{ door: 'front', opens: '10:00', version: 3 }]);
  });
});
