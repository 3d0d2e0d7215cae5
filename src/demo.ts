/**
 * `shelfgate demo`: the real gateway (the same services `shelfgate run` builds) with a simulated
 * store, in one process, no hardware: two gondolas of 4 shelves x 4 weighed slots, each gondola one
 * RS-485 Modbus load-cell bus served over TCP (as ser2net would), plus an MT-SICS deli scale, and
 * simulated shoppers picking, putting back and leaving foreign objects. Prints a `mosquitto_sub`
 * line to watch live stock, then one line per shopper action and per stock change. A reference
 * central inventory service runs beside it: stock events flow up through the outbox, price changes
 * come back down and appear on the bus. RFID: 40 tagged items moving at random between a back
 * room, a sales-floor rail and a fitting room; the back room and the rail are each watched by a
 * simulated R200 module on TCP, the fitting room by a simulated fixed LLRP reader (two antennas,
 * in process on loopback); a few moves are printed one by one, and the 15 s report sums up the
 * zones. Ctrl-C stops.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import mqtt from 'mqtt';
import { hashPassword } from './bus/auth';
import * as topics from './bus/topics';
import { validateConfig, formatIssues } from './config/load';
import type { Config } from './config/schema';
import { loadDefinitions } from './devices/definitions';
import type { DeviceDefinition, ModbusDefinition, MtSicsDefinition } from './devices/types';
import { buildGateway, type Gateway } from './core/gateway';
import { BUILTIN_FEATURES } from './features';
import { ErrorCode, ExitCode, ShelfgateError } from './errors';
import { declareCommand, handle } from './core/commands';
import { defineFeature } from './core/feature';
import { mountOps, type Ops } from './ops/routes';
import { z } from 'zod';
import { createLogger, silentLogger } from './log';
import { gs1CheckDigit, toGtin14 } from './util/gtin';
import { waitForStop } from './util/signals';
import { ModbusLoadCellBusSimulator } from '../simulators/modbus-loadcell-sim';
import { MtSicsSimulator } from '../simulators/mtsics-sim';
import { LoadCellPhysics, mulberry32 } from '../simulators/physics';
import { serveTcp, type Serving } from '../simulators/serve';
import { CentralSimulator, parseNetContent } from '../simulators/central';
import { ShopperScript, describeAction, type ShopperSlot } from '../simulators/shoppers';
import { OeplApSimulator } from '../simulators/oepl-ap/simulator';
import { serveDemoScanner } from '../simulators/scanner-sim';
import { TagPopulation } from '../simulators/rfid/population';
import { LlrpReaderSimulator } from '../simulators/rfid/llrp-sim';
import { R200Simulator } from '../simulators/rfid/r200-sim';
import { labelsOf } from './features/labels';
import { rfidOf } from './features/rfid';
import type { LabelIntegrity, LabelsSummary } from './features/labels/service';

export interface DemoOptions {
  mqttPort?: number;
  dataDir?: string;
  seed?: number;
  /** Print the gateway's JSON logs (info) instead of only warnings. */
  verbose?: boolean;
  /** Mean ms between shopper visits across the whole store. */
  shopperIntervalMs?: number;
  /** Called with the running demo (tests); the demo then runs until `signal` aborts. */
  signal?: AbortSignal;
  out?: (line: string) => void;
}

export const DEMO_STORE = 'demo-store';
export const DEMO_USER = 'demo';
export const DEMO_PASSWORD = 'demo';
export const DEMO_TECH = 'tech';
export const DEMO_TECH_PASSWORD = 'tech';
/**
 * The demo's price checker (kiosks feature): its page is `/kiosk/<DEMO_KIOSK>` on the gateway's
 * HTTP server, logged in as the kiosk user DEMO_USER. The demo's simulated scanner is bound to it
 * (`scanners[].kiosk`): its scans appear on that page and on `kiosk/<DEMO_KIOSK>/lookup`.
 */
export const DEMO_KIOSK = 'kiosk1';
/** Demo labels check in every 10 s so a price change shows soon (real OpenEPaperLink labels: about 40 s). */
const DEMO_LABEL_CHECKIN_MS = 10_000;

/** GPIO on the simulated backend: a presence beam at one shelf (its edges poll the shelf) and a light. */
const DEMO_BEAM_SHELF = 'g1-shelf1';
const DEMO_GPIO = {
  backend: 'sim',
  inputs: [{ name: `beam-${DEMO_BEAM_SHELF}`, pin: 17, kind: 'presence', active_low: true, debounce_ms: 30, poll_shelf: DEMO_BEAM_SHELF }],
  outputs: [{ name: 'help-light', pin: 27 }],
};

/** A small grocery range: name and unit weight in grams; GTINs are made valid (GS1 check digit). */
const PRODUCTS: Array<[string, number]> = [
  ['Oat drink 1 l', 1040], ['Tomato passata 500 g', 690], ['Basmati rice 1 kg', 1020], ['Pasta fusilli 500 g', 515],
  ['Chickpeas 400 g', 440], ['Olive oil 0.75 l', 1210], ['Muesli 750 g', 790], ['Coffee beans 500 g', 530],
  ['Tea 20 bags', 62], ['Dark chocolate 100 g', 108], ['Peanut butter 350 g', 480], ['Honey 250 g', 390],
  ['Tuna can 160 g', 185], ['Sparkling water 0.5 l', 540], ['Crispbread 250 g', 265], ['Oat biscuits 300 g', 320],
];

function gtinFor(i: number): string {
  const data = `590123412${String(100 + i).padStart(3, '0')}`;
  return `${data}${gs1CheckDigit(data)}`;
}

/** The demo's scripted scenario, set while a demo runs (one demo per process). */
let runScenario: (() => string) | null = null;
const scenarioTimers: NodeJS.Timeout[] = [];

const DEMO_SCENARIO = declareCommand({
  name: 'demo.scenario',
  permission: 'operate',
  description: 'demo only: start the scripted shopper scenario (a slot emptied item by item, then restocked)',
  payload: z.object({}).strict(),
});

/** A feature only the demo adds: its scenario command, so the technician page starts it through the command registry like any action. */
const demoFeature = defineFeature({
  name: 'demo',
  commands: [DEMO_SCENARIO],
  build: () => ({
    commands: [
      handle(DEMO_SCENARIO, async () => {
        if (!runScenario) throw new ShelfgateError(ErrorCode.STOPPED, 'the demo is not running');
        return { description: runScenario() };
      }),
    ],
  }),
});

export async function runDemo(opts: DemoOptions = {}): Promise<number> {
  const out = opts.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  const defs = loadDefinitions();
  const loadcell = defs.get('generic-modbus-loadcell') as ModbusDefinition;
  const scaleDef = defs.get('mettler-toledo-mt-sics') as MtSicsDefinition;
  const rng = mulberry32(opts.seed ?? Date.now() % 2 ** 31);
  // absolute: `config check` refuses a relative data_dir (it would depend on the working directory)
  const dataDir = opts.dataDir !== undefined ? resolve(opts.dataDir) : mkdtempSync(join(tmpdir(), 'shelfgate-demo-'));

  // --- the simulated store: devices on TCP ports the OS picks ---
  const servings: Serving[] = [];
  const shopperSlots: ShopperSlot[] = [];
  const shelves: Array<{ id: string; slots: object[] }> = [];
  const buses: object[] = [];
  for (let g = 1; g <= 2; g++) {
    const slaves = new Map<number, LoadCellPhysics>();
    for (let s = 1; s <= 4; s++) {
      const shelfId = `g${g}-shelf${s}`;
      const slots: object[] = [];
      for (let k = 1; k <= 4; k++) {
        const address = (s - 1) * 4 + k;
        const p = ((g - 1) * 16 + address - 1) % PRODUCTS.length;
        const [name, unit] = PRODUCTS[p]!;
        const items = 6 + Math.floor(rng() * 10);
        const physics = new LoadCellPhysics({ unitWeightG: unit, items, tareG: 150, noiseSigmaG: 0.4, settleMs: 500, rng: mulberry32(Math.floor(rng() * 2 ** 31)) });
        slaves.set(address, physics);
        const gtin = gtinFor(p);
        slots.push({ id: `slot${k}`, sensor: { bus: `gondola${g}`, address }, gtin, unit_weight_g: unit, tare_g: 150 });
        shopperSlots.push({ id: `${shelfId}/slot${k} (${name})`, gtin, physics, capacity: items + 4 });
      }
      shelves.push({ id: shelfId, slots });
    }
    const sim = new ModbusLoadCellBusSimulator({ definition: loadcell, slaves, turnaroundMs: 2 });
    const serving = await serveTcp(sim, '127.0.0.1', 0);
    servings.push(serving);
    buses.push({ id: `gondola${g}`, path: serving.url, model: loadcell.id, poll_interval_ms: 250 });
  }
  const deli = new LoadCellPhysics({ unitWeightG: 100, items: 0, noiseSigmaG: 0.05, settleMs: 800, rng: mulberry32(7) });
  const scale = new MtSicsSimulator({ definition: scaleDef, physics: deli });
  const scaleServing = await serveTcp(scale, '127.0.0.1', 0);
  servings.push(scaleServing);
  buses.push({ id: 'deli-scale', path: scaleServing.url, model: scaleDef.id, poll_interval_ms: 300 });
  shelves.push({ id: 'deli', slots: [{ id: 'counter', sensor: { bus: 'deli-scale' } }] });

  // --- RFID: tagged apparel in the back room (zone 0) and on a sales-floor rail (zone 1), each
  // watched by a simulated R200 module on a TCP serial server (an M100 module has one antenna), and
  // in a fitting room (zone 2) watched by both antennas of a simulated fixed LLRP reader ---
  const tags = new TagPopulation({ tags: 40, gtins: 4, zones: 3, seed: opts.seed ?? 1, missProbability: 0.1, outShare: 0.2 });
  const rfidReaders: object[] = [];
  for (const [zone, name] of [[0, 'r200-back'], [1, 'r200-floor']] as const) {
    const serving = await serveTcp(new R200Simulator({ population: tags, zone, roundMs: 50, rng: mulberry32(zone + 21) }), '127.0.0.1', 0);
    servings.push(serving);
    rfidReaders.push({ id: name, kind: 'm100', path: serving.url });
  }
  const llrpSim = new LlrpReaderSimulator({ population: tags, antennas: 2, antennaZones: [2, 2], roundMs: 100, rng: mulberry32(23) });
  await llrpSim.start();
  servings.push({ url: llrpSim.url, close: () => llrpSim.stop() });
  rfidReaders.push({ id: 'llrp-fitting', kind: 'llrp', address: `127.0.0.1:${llrpSim.port}`, antenna_ports: 2 });
  // location-only slots (no scale): the back room, and the rail whose product is the first tagged GTIN
  shelves.push({ id: 'backroom', slots: [{ id: 'stock' }] });
  shelves.push({ id: 'apparel', slots: [{ id: 'rail1', gtin: tags.gtins[0] }] });
  shelves.push({ id: 'fitting', slots: [{ id: 'room1' }] });
  const rfid = {
    readers: rfidReaders,
    zones: [
      { id: 'backroom', location: 'backroom/stock', antennas: [{ reader: 'r200-back' }], depart_after_ms: 8000 },
      { id: 'floor', location: 'apparel/rail1', antennas: [{ reader: 'r200-floor' }], depart_after_ms: 8000 },
      { id: 'fitting-room', location: 'fitting/room1', antennas: [{ reader: 'llrp-fitting', antenna: 1 }, { reader: 'llrp-fitting', antenna: 2 }], depart_after_ms: 8000 },
    ],
  };

  // --- the retailer's central inventory service (reference simulator, HTTP on loopback) ---
  const central = new CentralSimulator({ host: '127.0.0.1', port: 0, token: 'demo-central-token', storeIds: [DEMO_STORE], log: silentLogger(), seed: opts.seed ?? 1 });
  await central.start();
  writeFileSync(join(dataDir, 'central-token'), 'demo-central-token\n', { mode: 0o600 });
  const productByGtin = new Map<string, string>();
  PRODUCTS.forEach(([name, unit], i) => {
    productByGtin.set(toGtin14(gtinFor(i)), name);
    // the product's name and net content (from the name, e.g. `500 g`) for the shelf labels, then its price
    central.publishProduct({ gtin: gtinFor(i), name, netContent: parseNetContent(/\S+\s*\S+$/.exec(name)?.[0] ?? '') });
    central.publishPrice({ gtin: gtinFor(i), price: 99 + Math.round(unit / 3) * 2, currency: 'EUR' });
  });

  // --- a barcode scanner at the price checker (simulated serial scanner on TCP, bound to the demo
  // kiosk): scans one of the products, or a code sold nowhere, every 7 s ---
  const demoScanner = await serveDemoScanner({ codes: [...PRODUCTS.map((_, i) => gtinFor(i)), '96385074'], intervalMs: 7000, seed: opts.seed ?? 1 });
  servings.push({ url: demoScanner.url, close: () => demoScanner.close() });

  // --- electronic shelf labels: one OpenEPaperLink access point (simulated), a label per slot ---
  const labelSlots = shopperSlots.map((s) => s.id);
  const ap = new OeplApSimulator({ host: '127.0.0.1', port: 0, labels: labelSlots.length, seed: opts.seed ?? 1, checkinMs: DEMO_LABEL_CHECKIN_MS });
  await ap.start();

  const [demoHash, techHash] = await Promise.all([hashPassword(DEMO_PASSWORD), hashPassword(DEMO_TECH_PASSWORD)]);
  const raw = (port: number, httpPort: number) => ({
    store_id: DEMO_STORE,
    data_dir: dataDir,
    log: { level: opts.verbose ? 'info' : 'warn' },
    mqtt: {
      host: '127.0.0.1',
      port,
      users: [
        { username: DEMO_USER, role: 'kiosk', password_hash: demoHash },
        { username: DEMO_TECH, role: 'technician', password_hash: techHash },
      ],
    },
    sync: {
      transport: 'https',
      // plain http is accepted for loopback only (the simulator); a store uses https://
      https: { url: central.url, token_file: join(dataDir, 'central-token') },
      long_poll_s: 10,
    },
    // the HTTP server (price-checker page, lookups): loopback only
    http: { host: '127.0.0.1', port: httpPort },
    kiosks: [{ id: DEMO_KIOSK, name: 'Price checker (demo)' }],
    scanners: [{ id: 'checker-scanner', kind: 'serial', port: demoScanner.url, kiosk: DEMO_KIOSK }],
    buses,
    shelves,
    rfid,
    gpio: DEMO_GPIO,
    labels: {
      locale: 'de-DE',
      access_points: [{ id: 'ap-demo', url: ap.url, poll_interval_ms: DEMO_LABEL_CHECKIN_MS }],
      default_check_in_s: DEMO_LABEL_CHECKIN_MS / 1000,
    },
  });

  // --- the gateway: 1883 if free, else a port the OS picks ---
  const log = createLogger(opts.verbose ? 'info' : 'warn');
  let gateway: Gateway | undefined;
  let ops: Ops | undefined;
  // the built-in features and the demo's own (its scripted scenario, started from the technician page)
  const demoFeatures = [...BUILTIN_FEATURES, demoFeature];
  // (and the HTTP server on 8080 if free, else a port the OS picks; with --mqtt-port, always the OS's)
  for (const [port, httpPort] of opts.mqttPort !== undefined ? [[opts.mqttPort, 0] as const] : ([[1883, 8080], [0, 0]] as const)) {
    const { config, issues } = validateConfig(raw(port, httpPort), defs as ReadonlyMap<string, DeviceDefinition>, BUILTIN_FEATURES);
    if (!config) {
      out(`demo: generated config is invalid:\n${formatIssues(issues)}`);
      return ExitCode.SOFTWARE;
    }
    const gw = buildGateway(config as Config, { log, definitions: defs, features: demoFeatures });
    const o = mountOps({ gateway: gw, features: demoFeatures, config: config as Config, log });
    try {
      await gw.start();
      await o.start();
      gateway = gw;
      ops = o;
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EADDRINUSE' && opts.mqttPort === undefined) continue;
      out(`demo: the gateway could not start: ${(e as Error).message}`);
      await Promise.all(servings.map((s) => s.close()));
      await ap.stop();
      return ExitCode.UNAVAILABLE;
    }
  }
  const gw = gateway!;
  const { port } = gw.bus.address();
  out(`shelfgate demo: store "${DEMO_STORE}", 2 gondolas x 4 shelves x 4 slots + a deli scale, data in ${dataDir}`);
  out(`mosquitto_sub -h 127.0.0.1 -p ${port} -u ${DEMO_USER} -P ${DEMO_PASSWORD} -V mqttv311 -t '${topics.allSlotsFilter(DEMO_STORE, 'stock')}' -v`);
  out(`price checker: ${gw.http.url()}/kiosk/${DEMO_KIOSK} (browser login: ${DEMO_USER} / ${DEMO_PASSWORD}, the kiosk user; a simulated scanner scans there every 7 s)`);
  out(`technician page: ${gw.http.url()}/tech/ (log in as ${DEMO_TECH} / ${DEMO_TECH_PASSWORD}, the technician)`);
  out(`metrics: ${gw.http.url()}/metrics (Prometheus; /healthz and /readyz beside it)`);
  out(`central inventory service (simulated): ${central.url}/_sim/ shows the events it received and the prices it sent`);
  out(`local MQTT bus on 127.0.0.1:${port} (MQTT 3.1.1; users ${DEMO_USER}/${DEMO_PASSWORD} kiosk, ${DEMO_TECH}/${DEMO_TECH_PASSWORD} technician). Ctrl-C stops.`);

  // --- bind one label per slot (as a technician does with `shelfgate label bind`) ---
  const labels = labelsOf(gw);
  const slotOfMac = new Map<string, string>();
  ap.macs.forEach((mac, i) => {
    const [where] = labelSlots[i]!.split(' ');
    const [shelf, slot] = where!.split('/');
    labels.bind({ mac, shelf: shelf!, slot: slot!, type: 'oepl-m2-2.9-bwr' }, 'demo');
    slotOfMac.set(mac, labelSlots[i]!);
  });
  out(`shelf labels: ${ap.macs.length} labels on a simulated OpenEPaperLink access point (${ap.url}), checking in every ${DEMO_LABEL_CHECKIN_MS / 1000} s; a price from central is shown on them once each label confirms it`);

  // --- a technician-role client that narrates what the labels show ---
  const labelWatcher = mqtt.connect(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, username: DEMO_TECH, password: DEMO_TECH_PASSWORD, reconnectPeriod: 1000 });
  labelWatcher.on('connect', () => void labelWatcher.subscribeAsync(`${topics.storePrefix(DEMO_STORE)}labels/#`, { qos: 1 }).catch(() => undefined));
  labelWatcher.on('error', () => undefined);
  const shownVersion = new Map<string, string>();
  let firstWave = true;
  labelWatcher.on('message', (topic, payload) => {
    if (payload.length === 0) return;
    try {
      if (topic.endsWith('/labels/summary')) {
        const s = JSON.parse(payload.toString()) as LabelsSummary;
        if (firstWave && s.labels > 0 && s.priced === s.labels && s.confirmed_current === s.priced) {
          firstWave = false;
          out(`  labels ${s.confirmed_current}/${s.priced} labels confirmed showing their price from central`);
        }
        return;
      }
      const l = JSON.parse(payload.toString()) as LabelIntegrity;
      if (!l.matches || !l.shows) return;
      const key = `${l.shows.price} ${l.shows.currency} ${l.shows.since}`;
      if (shownVersion.get(l.mac) === key) return;
      shownVersion.set(l.mac, key);
      if (firstWave) return;
      const delay = l.switch_delay_ms === null ? '' : `, ${(l.switch_delay_ms / 1000).toFixed(1)} s after the price applied`;
      out(`  label  ${slotOfMac.get(l.mac) ?? l.mac}: shows ${((l.shows.price ?? 0) / 100).toFixed(2)} ${l.shows.currency ?? ''} (confirmed by the label${delay})`);
    } catch {
      /* not ours */
    }
  });

  // the shopper's arm breaks the beam at the shelf (a bouncing edge), then clears it
  const beamTimers = new Set<NodeJS.Timeout>();
  const admin = { username: 'demo', role: 'admin' as const, via: 'internal' as const };
  const driveBeam = (levels: number[]) => void gw.commands.execute('gpio.simulate', { name: DEMO_GPIO.inputs[0]!.name, levels }, admin).catch((e: Error) => out(`demo: gpio.simulate failed: ${e.message}`));
  const breakBeam = (): void => {
    driveBeam([0, 1, 0]);
    const t = setTimeout(() => (beamTimers.delete(t), driveBeam([1])), 1500);
    beamTimers.add(t);
  };
  out(`gpio: a presence beam at ${DEMO_BEAM_SHELF} (simulated backend): a shopper there breaks it and the shelf is polled at once; watch ${topics.storePrefix(DEMO_STORE)}gpio/#`);
  out(`rfid: ${tags.tags.length} tagged items of ${tags.gtins.length} products moving between the back room, the sales floor and a fitting room (2 simulated R200 modules, 1 simulated LLRP reader); watch ${topics.storePrefix(DEMO_STORE)}rfid/#`);

  // --- a kiosk-role client that narrates stock changes ---
  const rfidSeen = { arrival: 0, departure: 0 };
  const rfidSince = Date.now();
  let rfidLines = 0;
  const watcher = mqtt.connect(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, username: DEMO_USER, password: DEMO_PASSWORD, reconnectPeriod: 1000 });
  watcher.on('connect', () =>
    void watcher
      .subscribeAsync([topics.allSlotsFilter(DEMO_STORE, 'event'), topics.allPricesFilter(DEMO_STORE), `${topics.storePrefix(DEMO_STORE)}rfid/zone/+/event`, `${topics.storePrefix(DEMO_STORE)}kiosk/+/lookup`], { qos: 1 })
      .catch(() => undefined),
  );
  watcher.on('error', () => undefined);
  watcher.on('message', (_topic, payload) => {
    try {
      const e = JSON.parse(payload.toString()) as Record<string, unknown>;
      if (topics.topicMatches(topics.allPricesFilter(DEMO_STORE), _topic)) {
        const promo = e.promotion as { was_price?: number } | null | undefined;
        out(`  price  ${productByGtin.get(String(e.gtin)) ?? String(e.gtin)}: ${(Number(e.price) / 100).toFixed(2)} ${String(e.currency)}${promo?.was_price ? ` (was ${(promo.was_price / 100).toFixed(2)})` : ''}, version ${String(e.version)}, from central`);
        return;
      }
      if (topics.topicMatches(`${topics.storePrefix(DEMO_STORE)}kiosk/+/lookup`, _topic)) {
        const a = e.answer as { found: boolean; code: string; gtin: string | null; price: { amount: number; currency: string } | null; stock: { on_shelf: number | null; locations: Array<{ location: string }> } };
        out(
          a.found
            ? `  kiosk  ${String(e.kiosk)}: ${String(e.reason)} ${productByGtin.get(String(a.gtin)) ?? a.code}: ${a.price ? `${(a.price.amount / 100).toFixed(2)} ${a.price.currency}` : 'no price'}, ${a.stock.on_shelf ?? '?'} on the shelf at ${a.stock.locations.map((l) => l.location).join(', ') || '-'}`
            : `  kiosk  ${String(e.kiosk)}: ${String(e.reason)} ${a.code}: not found`,
        );
        return;
      }
      if (e.kind === 'arrival' || e.kind === 'departure') {
        // the first arrivals are the initial inventory; after that, a few moves individually (the 15 s report sums up)
        rfidSeen[e.kind]++;
        if (Date.now() - rfidSince > 15_000 && rfidLines < 8) {
          rfidLines++;
          const what = `${String(e.gtin ?? 'unknown product')} serial ${String(e.serial ?? '?')}`;
          out(`  rfid   ${String(e.zone_id)}: ${e.kind === 'arrival' ? `arrived ${what}${e.from_zone ? ` (from ${String(e.from_zone)})` : ''}` : `departed ${what}${e.to_zone ? ` (to ${String(e.to_zone)})` : ''}`}`);
        }
        return;
      }
      const where = `${String(e.shelf_id)}/${String(e.slot_id)}`;
      if (e.kind === 'pick' || e.kind === 'put') out(`  stock  ${where}: ${String(e.kind)} ${Math.abs(Number(e.delta))} -> ${String(e.count)} on the shelf (seq ${String(e.seq)}, committed)`);
      else if (e.kind === 'count') out(`  stock  ${where}: counted ${String(e.count)}`);
      else if (e.kind === 'anomaly') out(`  ALERT  ${where}: weight is not a whole number of items (net ${String(e.net_g)} g): misplaced item or foreign object`);
      else if (e.kind === 'condition') out(`  status ${where}: ${String(e.previous)} -> ${String(e.condition)}`);
    } catch {
      /* not ours */
    }
  });

  // --- the scripted scenario the technician page can start (command demo.scenario): a shopper
  // empties one slot item by item, then an associate restocks it ---
  runScenario = () => {
    const slot = shopperSlots[Math.floor(rng() * shopperSlots.length)]!;
    const items = slot.physics.items;
    const restock = slot.capacity ?? items + 4;
    const steps: NodeJS.Timeout[] = [];
    for (let i = 0; i < items; i++) steps.push(setTimeout(() => slot.physics.pick(1), 1500 * (i + 1)));
    steps.push(setTimeout(() => slot.physics.put(restock), 1500 * (items + 4)));
    for (const t of steps) t.unref();
    scenarioTimers.push(...steps);
    const description = `a shopper takes the ${items} items of ${slot.id} one by one, then an associate restocks ${restock}`;
    out(`demo scenario: ${description}`);
    return description;
  };

  // --- shoppers ---
  const shoppers = new ShopperScript({
    slots: shopperSlots,
    rng,
    meanIntervalMs: opts.shopperIntervalMs ?? 2500,
    onAction: (a) => {
      out(describeAction(a));
      if (a.slot.startsWith(`${DEMO_BEAM_SHELF}/`)) breakBeam();
    },
  });
  setTimeout(() => shoppers.start(100), 3000).unref(); // let the first counts settle
  // tagged items carried between the back room, the floor and out of the store, one every few seconds
  const tagTimer = setInterval(() => tags.randomMoves(1), 4_000);

  // central: a price change now and then (sometimes a promotion), and a report of what arrived
  const priceTimer = setInterval(() => {
    const i = Math.floor(rng() * PRODUCTS.length);
    const base = 99 + Math.round(PRODUCTS[i]![1] / 3) * 2;
    const promo = rng() < 0.4;
    central.publishPrice({ gtin: gtinFor(i), price: promo ? Math.round(base * 0.8) : base + Math.round(rng() * 40) - 20, currency: 'EUR', promotion: promo ? { was_price: base, valid_from: new Date().toISOString(), valid_to: new Date(Date.now() + 7 * 86_400_000).toISOString() } : null });
  }, 8_000);
  const reportTimer = setInterval(() => {
    const st = central.stats().stores[DEMO_STORE];
    const backlog = gw.store.outboxStats();
    out(`central has received ${st?.events ?? 0} stock events from the store; ${backlog.count} waiting in the store's outbox`);
    const ls = labels.summary();
    const zones = rfidOf(gw).zonesReport({ tags: false }) as Array<{ zone_id: string; tags_present: number }>;
    out(`rfid: ${zones.map((z) => `${z.zone_id} ${z.tags_present} tags`).join(', ')}; ${rfidSeen.arrival} arrivals, ${rfidSeen.departure} departures so far`);
    out(`labels: ${ls.confirmed_current}/${ls.priced} show their current price (${(ls.share * 100).toFixed(1)} %)${ls.oldest_mismatch_age_s !== null ? `, oldest mismatch ${ls.oldest_mismatch_age_s} s` : ''}`);
  }, 15_000);

  await waitForStop(opts.signal);
  out('demo: stopping');
  shoppers.stop();
  clearInterval(priceTimer);
  clearInterval(reportTimer);
  clearInterval(tagTimer);
  for (const t of beamTimers) clearTimeout(t);
  for (const t of scenarioTimers) clearTimeout(t);
  runScenario = null;
  await watcher.endAsync().catch(() => undefined);
  await labelWatcher.endAsync().catch(() => undefined);
  await ops?.stop();
  await gw.stop();
  await ap.stop();
  await Promise.all(servings.map((s) => s.close()));
  await central.stop();
  out('demo: stopped');
  return ExitCode.OK;
}
