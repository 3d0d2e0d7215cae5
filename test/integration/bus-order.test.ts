/**
 * Every publish on the local bus reaches every authorised subscriber, in order per topic, also
 * when retained and non-retained publishes interleave (docs/aedes-ordering.md: aedes 1.2 dropped,
 * per client, a retained message overtaken by a live one). Real sockets on 127.0.0.1, port 0; the
 * gateway is put together in process from the real services (store on a real SQLite file, bus,
 * shelf model, sync service), with a source driven by the test and a scripted central.
 */
import { EventEmitter } from 'node:events';
import { connect as tcpConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import mqtt, { type MqttClient } from 'mqtt';
import { generate } from 'mqtt-packet';
import { LocalBus, type PublishOptions } from '../../src/bus/broker';
import * as topics from '../../src/bus/topics';
import { validateConfig } from '../../src/config/load';
import type { Config } from '../../src/config/schema';
import { loadDefinitions } from '../../src/devices/definitions';
import { ShelfService } from '../../src/features/shelves/service';
import { shelvesSlice } from '../../src/features/shelves/config';
import { CalibrationRepository } from '../../src/features/shelves/repository';
import { BUILTIN_FEATURES } from '../../src/features';
import { composeMigrations } from '../../src/core/gateway';
import { CommandRegistry } from '../../src/core/commands';
import { DeviceRegistry } from '../../src/core/devices';
import { EventBus } from '../../src/core/events';
import { Locations } from '../../src/core/locations';
import type { Source } from '../../src/core/sources/types';
import { builtinKinds } from '../helpers/features';
import type { SensorAvailability, WeightReading } from '../../src/features/shelves/types';
import { silentLogger } from '../../src/log';
import { Store } from '../../src/store/store';
import { SyncService } from '../../src/sync/service';
import type { Change, ChangeAck, SyncTransport, UploadEvent, UploadResult } from '../../src/sync/types';
import { gs1CheckDigit } from '../../src/util/gtin';
import { connectClient, tmp, useCleanups, waitFor } from '../helpers/daemon';
import { fastHash, usersWithHash } from '../helpers/users';

const STORE = 'st1';
const P = topics.storePrefix(STORE);
const PW = 'pw-for-order-tests';
const SLOTS = 8;
const UNIT_G = 100;
const defs = loadDefinitions();
const log = silentLogger();
const cleanups = useCleanups();

interface Msg {
  topic: string;
  payload: string;
  retain: boolean;
}

/** GTIN-14 number `i` of a test range, with its check digit. */
function gtin(i: number): string {
  const data = `0400638133${String(i).padStart(3, '0')}`;
  return `${data}${gs1CheckDigit(data)}`;
}
const GTINS = Array.from({ length: 6 }, (_, i) => gtin(100 + i));

function priceChange(g: string, version: number): Change {
  return { change_id: `price/${g}/v${version}`, type: 'price', gtin: g, price: 100 + version, currency: 'EUR', promotion: null, version };
}

/** Central as seen by the sync service: accepts every upload, hands out pages pushed by the test. */
class ScriptedCentral implements SyncTransport {
  readonly name = 'scripted';
  private readonly pages: Array<{ changes: Change[]; nextCursor: string }> = [];
  private wake: (() => void) | null = null;
  private cursor = 0;
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  async upload(_id: string, events: UploadEvent[]): Promise<UploadResult[]> {
    return events.map((e) => ({ event_id: e.event_id, seq: e.seq, status: 'accepted' }));
  }
  async ack(_acks: ChangeAck[]): Promise<void> {}
  push(changes: Change[]): void {
    this.pages.push({ changes, nextCursor: `c${++this.cursor}` });
    this.wake?.();
  }
  async fetchChanges(cursor: string | null, _waitS: number, signal: AbortSignal): Promise<{ changes: Change[]; nextCursor: string | null }> {
    if (this.pages.length === 0 && !signal.aborted) {
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        signal.addEventListener('abort', () => resolve(), { once: true });
      });
      this.wake = null;
    }
    return this.pages.shift() ?? { changes: [], nextCursor: cursor };
  }
}

async function gatewayConfig(dir: string): Promise<Config> {
  const hash = await fastHash(PW);
  const raw = {
    store_id: STORE,
    data_dir: dir,
    mqtt: {
      port: 0,
      users: usersWithHash(hash, { adm: 'admin', svc: 'service', kiosk: 'kiosk', dev1: 'device' }),
    },
    storage: { flush_interval_ms: 5 },
    stability: { window: 3, max_spread_g: 3 },
    sync: { transport: 'https', https: { url: 'https://central.invalid' }, backoff: { initial_ms: 10, max_ms: 100 }, long_poll_s: 1 },
    buses: [{ id: 'bus1', path: 'mock://order-unused', model: 'generic-modbus-loadcell' }],
    shelves: [
      {
        id: 'sh1',
        slots: Array.from({ length: SLOTS }, (_, i) => ({ id: `s${i + 1}`, sensor: { bus: 'bus1', address: i + 1 }, gtin: GTINS[0], unit_weight_g: UNIT_G })),
      },
    ],
  };
  const { config, issues } = validateConfig(raw, defs, BUILTIN_FEATURES);
  expect(issues).toEqual([]);
  return config!;
}

/**
 * The gateway's services in process, each started by the test (so subscribers can be connected
 * before the shelves republish at start). Every LocalBus.publish is recorded in `published`.
 */
function gatewayParts(config: Config) {
  const store = new Store({ path: join(config.data_dir, 'shelfgate.db'), synchronous: 'normal', flushIntervalMs: 5, storeId: STORE, log, migrations: composeMigrations(BUILTIN_FEATURES) });
  const commands = new CommandRegistry();
  for (const f of BUILTIN_FEATURES) commands.declare(f.name, f.commands ?? []);
  const bus = new LocalBus({ config: config.mqtt, storeId: STORE, log, version: 'test', commands, topicAreas: BUILTIN_FEATURES.flatMap((f) => f.topics ?? []) });
  const published: Array<Msg & { qos: number }> = [];
  const publish = bus.publish.bind(bus);
  bus.publish = (topic: string, payload: string | Buffer, opts: PublishOptions = {}) => {
    published.push({ topic, payload: String(payload), retain: opts.retain === true, qos: opts.qos ?? 0 });
    return publish(topic, payload, opts);
  };
  const source = new EventEmitter();
  const events = new EventBus(log);
  const locations = new Locations({ shelves: config.shelves, store, events, log });
  const devices = new DeviceRegistry({ storeId: STORE, store, bus, events, log });
  devices.track(source as unknown as Source, () => ({ kind: 'modbus-rtu', model: 'generic-modbus-loadcell', path: 'mock://order-unused' }));
  const shelves = new ShelfService({
    storeId: STORE,
    config: shelvesSlice(config),
    store,
    bus,
    events,
    locations,
    calibration: new CalibrationRepository(store),
    sources: [source as unknown as Source<WeightReading>],
    log,
  });
  const central = new ScriptedCentral();
  const sync = new SyncService({ storeId: STORE, config: config.sync, store, bus, events, kinds: builtinKinds(), locations, transport: central, log, idlePollMs: 20, statusIntervalMs: 60_000 });
  const started: Array<{ stop(): Promise<void> }> = [];
  const start = async (s: { start(): Promise<void>; stop(): Promise<void> }): Promise<void> => {
    await s.start();
    started.push(s);
  };
  const stop = async (): Promise<void> => {
    while (started.length > 0) await started.pop()!.stop();
  };
  cleanups.push(stop);
  let t = Date.now();
  /** `window` readings of `grams` (a settled weight), each 10 ms of sensor time after the last. */
  const weigh = (address: number, grams: number): void => {
    for (let i = 0; i < 3; i++) {
      t += 10;
      const r: WeightReading = { sensor: `bus1.${address}`, grams, deviceStable: null, overload: false, underload: false, ts: t, rxMono: performance.now() };
      source.emit('reading', r);
    }
  };
  const availability = (address: number, online: boolean): void => {
    t += 10;
    const a: SensorAvailability = { sensor: `bus1.${address}`, online, reason: online ? undefined : 'timeout', ts: t };
    source.emit('availability', a);
  };
  return { store, bus, locations, devices, shelves, sync, central, published, start, stop, weigh, availability, now: () => t };
}

/** Messages as delivered live: without the retained copies a SUBSCRIBE brings (those have the retain flag). */
function live(msgs: readonly Msg[]): Msg[] {
  return msgs.filter((m) => !m.retain);
}

/** Payloads per topic, in order. */
function byTopic(msgs: readonly Msg[], keep: (topic: string) => boolean = () => true): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const m of msgs) {
    if (!keep(m.topic)) continue;
    let list = out.get(m.topic);
    if (!list) out.set(m.topic, (list = []));
    list.push(m.payload);
  }
  return out;
}

function sorted(m: Map<string, string[]>): Array<[string, string[]]> {
  return [...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

async function subscriber(port: number, username: string, filter: string): Promise<{ client: MqttClient; messages: Msg[] }> {
  const c = await connectClient(port, username, PW);
  cleanups.push(() => c.client.endAsync(true));
  const granted = await c.client.subscribeAsync(filter, { qos: 1 });
  expect(granted[0]!.qos).toBe(1);
  return c;
}

function last(msgs: readonly Msg[], topic: string): Record<string, unknown> | undefined {
  for (let i = msgs.length - 1; i >= 0; i--) if (msgs[i]!.topic === topic) return JSON.parse(msgs[i]!.payload) as Record<string, unknown>;
  return undefined;
}

describe('local bus: every publish reaches every subscriber, in order per topic', () => {
  it('a shelfgate/v1/<store>/# subscriber gets every availability, stock, event, alert and price a per-topic subscriber gets, across a restart and a burst', async () => {
    const dir = tmp('sg-order-');
    const config = await gatewayConfig(dir);

    // First run: counts, one sensor left offline, prices: state the next start republishes.
    const first = gatewayParts(config);
    for (const s of [first.store, first.bus, first.locations, first.devices, first.shelves, first.sync]) await first.start(s);
    for (let a = 1; a <= SLOTS; a++) first.weigh(a, 10 * UNIT_G);
    first.availability(SLOTS, false);
    first.central.push(GTINS.map((g) => priceChange(g, 1)));
    const stockTopic = (a: number) => topics.slotStock(STORE, 'sh1', `s${a}`);
    await waitFor(
      () => first.published.filter((m) => m.topic.endsWith('/stock')).length >= SLOTS && GTINS.every((g) => first.published.some((m) => m.topic === topics.price(STORE, g))),
      10_000,
      'first run: counts and prices published',
    );
    await waitFor(() => last(first.published, stockTopic(SLOTS))?.condition === 'offline', 10_000, 'first run: sensor 8 offline');
    await first.stop();

    // Second run: subscribers are on the bus before the shelves and sync republish at start.
    const gw = gatewayParts(config);
    await gw.start(gw.store);
    await gw.start(gw.bus);
    const port = gw.bus.address().port;
    const all = await subscriber(port, 'adm', `${P}#`);
    const refs = {
      device: await subscriber(port, 'svc', `${P}device/#`),
      stock: await subscriber(port, 'kiosk', topics.allSlotsFilter(STORE, 'stock')),
      event: await subscriber(port, 'kiosk', topics.allSlotsFilter(STORE, 'event')),
      alert: await subscriber(port, 'kiosk', topics.allSlotsFilter(STORE, 'alert')),
      price: await subscriber(port, 'kiosk', topics.allPricesFilter(STORE)),
    };
    gw.published.length = 0;
    await gw.start(gw.locations);
    await gw.start(gw.devices);
    await gw.start(gw.shelves);
    await gw.start(gw.sync);

    // Bursts right after start: in each round, in one tick, sensors go offline or come back and
    // settle on a new count, one slot flips between a foreign object and a whole count, and
    // central sends new prices. Retained (availability, stock, alert, price) and non-retained
    // (event) publishes interleave.
    const online = new Map(Array.from({ length: SLOTS }, (_, i) => [i + 1, i + 1 !== SLOTS]));
    const rounds = 4;
    for (let r = 1; r <= rounds; r++) {
      const expectations: Array<() => boolean> = [];
      for (let a = 1; a <= SLOTS; a++) {
        const goOffline = a < SLOTS && (a + r) % 2 === 0;
        if (goOffline) {
          gw.availability(a, false);
          online.set(a, false);
          expectations.push(() => last(refs.device.messages, topics.deviceAvailability(STORE, `bus1.${a}`))?.state === 'offline');
          expectations.push(() => last(refs.alert.messages, topics.slotAlert(STORE, 'sh1', `s${a}`))?.condition === 'offline');
          continue;
        }
        if (!online.get(a)) {
          gw.availability(a, true);
          online.set(a, true);
          expectations.push(() => last(refs.device.messages, topics.deviceAvailability(STORE, `bus1.${a}`))?.state === 'online');
        }
        const count = 10 - r;
        const foreign = a === SLOTS && r % 2 === 1;
        gw.weigh(a, count * UNIT_G + (foreign ? 40 : 0));
        if (foreign) expectations.push(() => last(refs.alert.messages, topics.slotAlert(STORE, 'sh1', `s${a}`))?.condition === 'mismatch');
        else expectations.push(() => last(refs.stock.messages, stockTopic(a))?.count === count && last(refs.stock.messages, stockTopic(a))?.condition === 'ok');
      }
      gw.central.push(GTINS.map((g) => priceChange(g, r + 1)));
      for (const g of GTINS) expectations.push(() => last(refs.price.messages, topics.price(STORE, g))?.version === r + 1);
      await waitFor(() => expectations.every((e) => e()), 10_000, `round ${r} delivered to the per-topic subscribers`);
    }

    // The admin's own request, made after all the above: its answer reaching the admin proves that
    // everything published before it was handed to the admin's connection first.
    const marker = topics.response(STORE, 'adm', 'stock.get');
    await all.client.publishAsync(topics.request(STORE, 'stock.get'), JSON.stringify({ transaction: 'marker' }), { qos: 1 });
    await waitFor(() => all.messages.some((m) => m.topic === marker), 5_000, 'answer to the marker request');
    const upTo = gw.published.findIndex((m) => m.topic === marker);
    expect(upTo).toBeGreaterThan(0);
    const sent = gw.published.slice(0, upTo + 1);
    const beforeMarker = all.messages.slice(0, all.messages.findIndex((m) => m.topic === marker) + 1);

    // the burst did interleave retained and non-retained publishes
    expect(sent.some((m, i) => m.retain && sent[i + 1] !== undefined && !sent[i + 1]!.retain && sent[i + 1]!.topic.endsWith('/event'))).toBe(true);
    expect(sent.some((m) => m.retain && m.payload.includes('"last_known":true'))).toBe(true); // republished at start

    const ofKind = (kind: string) => (t: string) =>
      kind === 'device' ? t.startsWith(`${P}device/`) : kind === 'price' ? t.startsWith(`${P}price/`) : t.startsWith(`${P}shelf/`) && t.endsWith(`/${kind}`);
    for (const [kind, ref] of Object.entries(refs)) {
      // each per-topic subscriber got every publish of its topics, in order
      const expected = sorted(byTopic(sent, ofKind(kind)));
      expect(expected.length, kind).toBeGreaterThan(0);
      await waitFor(() => JSON.stringify(sorted(byTopic(live(ref.messages)))) === JSON.stringify(expected), 5_000, `${kind} subscriber complete`);
    }
    // and so did the `#` subscriber: every topic, every message, in order per topic (besides the
    // gateway's, it gets its own marker request)
    const fromGateway = (t: string) => t !== topics.request(STORE, 'stock.get');
    expect(sorted(byTopic(live(beforeMarker), fromGateway))).toEqual(sorted(byTopic(sent)));
  }, 60_000);

  it('a burst of gateway publishes, retained and not, QoS 0 and 1, reaches a # subscriber whole and in call order', async () => {
    const config = await gatewayConfig(tmp('sg-order-bus-'));
    const gw = gatewayParts(config);
    await gw.start(gw.bus);
    const port = gw.bus.address().port;
    const all = await subscriber(port, 'adm', `${P}#`);
    const device = await subscriber(port, 'svc', `${P}device/#`);
    gw.published.length = 0;
    const kinds = [
      { topic: topics.deviceAvailability(STORE, 'bus1.1'), retain: true },
      { topic: topics.slotEvent(STORE, 'sh1', 's1'), retain: false },
      { topic: topics.slotStock(STORE, 'sh1', 's1'), retain: true },
      { topic: topics.response(STORE, 'adm', 'stock.get'), retain: false },
      { topic: topics.price(STORE, GTINS[0]!), retain: true },
    ];
    const calls: Promise<void>[] = [];
    for (let i = 0; i < 200; i++) {
      const k = kinds[i % kinds.length]!;
      calls.push(gw.bus.publish(k.topic, JSON.stringify({ i }), { retain: k.retain, qos: i % 3 === 0 ? 0 : 1 }));
    }
    await Promise.all(calls);
    // published after all the others completed: nothing can overtake it
    await gw.bus.publish(kinds[0]!.topic, 'end', { retain: true, qos: 1 });
    await waitFor(() => all.messages.some((m) => m.payload === 'end'), 5_000, 'end marker at the # subscriber');
    await waitFor(() => device.messages.some((m) => m.payload === 'end'), 5_000, 'end marker at the device/# subscriber');
    // in call order, across topics too: one publish at a time reaches the subscribers
    expect(live(all.messages).map((m) => m.topic + m.payload)).toEqual(gw.published.map((m) => m.topic + m.payload));
    expect(device.messages.map((m) => m.payload)).toEqual(gw.published.filter((m) => m.topic.includes('/device/')).map((m) => m.payload));
    expect(gw.bus.stats().publishesWaited).toBeGreaterThan(0);
  });

  it("a client's retained and live PUBLISHes in one TCP segment all reach a # subscriber (client publishes take the same path)", async () => {
    const config = await gatewayConfig(tmp('sg-order-client-'));
    const gw = gatewayParts(config);
    await gw.start(gw.bus);
    const port = gw.bus.address().port;
    const all = await subscriber(port, 'adm', `${P}#`);
    const state = await subscriber(port, 'svc', `${P}ext/dev1/state`);
    const sock = await rawClient(port, 'dev1');
    const packets: Buffer[] = [];
    for (let i = 0; i < 20; i++) {
      packets.push(generate({ cmd: 'publish', topic: `${P}ext/dev1/state`, payload: `s${i}`, qos: 0, retain: true, dup: false }));
      packets.push(generate({ cmd: 'publish', topic: `${P}ext/dev1/reading`, payload: `r${i}`, qos: 0, retain: false, dup: false }));
    }
    sock.write(Buffer.concat(packets));
    await waitFor(() => all.messages.filter((m) => m.topic === `${P}ext/dev1/reading`).length === 20, 5_000, 'client readings');
    await waitFor(() => live(state.messages).length === 20, 5_000, 'state subscriber');
    // a gateway publish made after them reaches the `#` subscriber after all of them
    await gw.bus.publishStatus('online');
    await waitFor(() => all.messages.some((m) => m.topic === topics.gatewayStatus(STORE) && !m.retain), 5_000, 'marker');
    const got = live(all.messages);
    expect(got.filter((m) => m.topic.endsWith('/state')).map((m) => m.payload)).toEqual(Array.from({ length: 20 }, (_, i) => `s${i}`));
    expect(got.filter((m) => m.topic.endsWith('/reading')).map((m) => m.payload)).toEqual(Array.from({ length: 20 }, (_, i) => `r${i}`));
    sock.destroy();
  });

  it("a client's retained will reaches a subscriber of # and $SYS/# (aedes publishes the disconnect notice right after it)", async () => {
    const config = await gatewayConfig(tmp('sg-order-will-'));
    const gw = gatewayParts(config);
    await gw.start(gw.bus);
    const port = gw.bus.address().port;
    const all = await subscriber(port, 'adm', `${P}#`);
    expect((await all.client.subscribeAsync('$SYS/+/disconnect/clients', { qos: 0 }))[0]!.qos).toBe(0);
    const status = await subscriber(port, 'svc', `${P}ext/dev1/status`);
    const willTopic = `${P}ext/dev1/status`;
    const dev = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
      protocolVersion: 4,
      username: 'dev1',
      password: PW,
      clientId: 'dev1-will',
      reconnectPeriod: 0,
      will: { topic: willTopic, payload: Buffer.from('gone'), retain: true, qos: 0 },
    });
    cleanups.push(() => dev.endAsync(true));
    await new Promise<void>((resolve, reject) => {
      dev.once('connect', () => resolve());
      dev.once('error', reject);
    });
    (dev.stream as Socket).destroy(); // no DISCONNECT: the broker publishes the will
    await waitFor(() => all.messages.some((m) => m.topic.endsWith('/disconnect/clients') && m.payload === 'dev1-will'), 5_000, 'disconnect notice');
    await waitFor(() => status.messages.some((m) => m.payload === 'gone'), 5_000, 'will at the per-topic subscriber');
    const notice = all.messages.findIndex((m) => m.topic.endsWith('/disconnect/clients') && m.payload === 'dev1-will');
    expect(all.messages.slice(0, notice).filter((m) => m.topic === willTopic).map((m) => m.payload)).toEqual(['gone']);
  });

  it("a slot's stock and alert keep event order when a condition and a pick are published at the same time", async () => {
    const config = await gatewayConfig(tmp('sg-order-slot-'));
    const gw = gatewayParts(config);
    for (const s of [gw.store, gw.bus, gw.locations, gw.devices, gw.shelves]) await gw.start(s);
    const port = gw.bus.address().port;
    const stock = await subscriber(port, 'kiosk', topics.slotStock(STORE, 'sh1', 's1'));
    const alert = await subscriber(port, 'kiosk', topics.slotAlert(STORE, 'sh1', 's1'));
    const event = await subscriber(port, 'kiosk', topics.slotEvent(STORE, 'sh1', 's1'));
    gw.weigh(1, 10 * UNIT_G);
    await waitFor(() => last(stock.messages, topics.slotStock(STORE, 'sh1', 's1'))?.count === 10, 5_000, 'first count');
    stock.messages.length = 0;
    alert.messages.length = 0;
    event.messages.length = 0;
    // One tick, one batch: a foreign object (condition mismatch + anomaly, each with an alert),
    // then it is gone and one item was taken (condition ok with an alert, and a pick without).
    gw.weigh(1, 10 * UNIT_G + 40);
    const tForeign = gw.now();
    gw.weigh(1, 9 * UNIT_G);
    const tPick = gw.now();
    await waitFor(() => event.messages.filter((m) => JSON.parse(m.payload).kind === 'pick').length === 1, 5_000, 'pick event');
    await waitFor(() => last(stock.messages, topics.slotStock(STORE, 'sh1', 's1'))?.ts === new Date(tPick).toISOString() && stock.messages.length === 4, 5_000, 'stock messages');
    const kinds = event.messages.map((m) => JSON.parse(m.payload) as { kind: string; ts: string; seq: number });
    expect(kinds.map((e) => e.kind)).toEqual(['condition', 'anomaly', 'condition', 'pick']);
    // every slot topic in event order: the stock and alert of an earlier event never come after a later one's
    const ts = (msgs: Msg[]) => msgs.map((m) => (JSON.parse(m.payload) as { ts: string }).ts);
    const iso = (t: number) => new Date(t).toISOString();
    expect(ts(stock.messages)).toEqual([iso(tForeign), iso(tForeign), iso(tPick), iso(tPick)]);
    expect(ts(alert.messages)).toEqual([iso(tForeign), iso(tForeign), iso(tPick)]);
    expect(last(stock.messages, topics.slotStock(STORE, 'sh1', 's1'))).toMatchObject({ count: 9, condition: 'ok' });
  });
});

/** A raw MQTT 3.1.1 connection (CONNECT sent, CONNACK 0 awaited), for writing packets in one segment. */
function rawClient(port: number, username: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = tcpConnect({ host: '127.0.0.1', port }, () => {
      s.write(generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: `${username}-raw`, clean: true, keepalive: 0, username, password: Buffer.from(PW) }));
    });
    cleanups.push(() => void s.destroy());
    const timer = setTimeout(() => reject(new Error('no CONNACK within 5 s')), 5_000);
    s.once('data', (d: Buffer) => {
      clearTimeout(timer);
      if (d[0] === 0x20 && d[3] === 0) resolve(s);
      else reject(new Error(`CONNACK refused: ${d.toString('hex')}`));
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}
