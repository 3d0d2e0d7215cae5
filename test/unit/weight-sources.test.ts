/**
 * The polled weight sources (MT-SICS scale, Modbus load-cell bus) against a scripted device or a
 * simulator on a fake link: which answers they take, which they refuse, and when a device that
 * answers too late goes offline.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { DeviceAvailability } from '../../src/core/sources/types';
import { loadDefinitions } from '../../src/devices/definitions';
import type { ModbusDefinition, MtSicsDefinition } from '../../src/devices/types';
import { ModbusLoadCellSource } from '../../src/features/shelves/modbus-source';
import { MtSicsSource, MtSicsStreamDecoder, MtSicsStreamSource } from '../../src/features/shelves/mtsics-source';
import { createWeightSource } from '../../src/features/shelves/sources';
import type { StreamSink } from '../../src/core/sources/streaming-source';
import { SlotTracker, type SlotEvent } from '../../src/features/shelves/slot';
import type { WeightReading } from '../../src/features/shelves/types';
import { silentLogger } from '../../src/log';
import { ModbusLoadCellBusSimulator } from '../../simulators/modbus-loadcell-sim';
import { MtSicsSimulator } from '../../simulators/mtsics-sim';
import { LoadCellPhysics } from '../../simulators/physics';
import { FakeLink, nextEvent } from '../helpers/fake-link';

const defs = loadDefinitions();
const SICS = defs.get('mettler-toledo-mt-sics') as MtSicsDefinition;
const MB_KG = defs.get('generic-modbus-loadcell-kg') as ModbusDefinition;
const MB = defs.get('generic-modbus-loadcell') as ModbusDefinition;
const SICS_CONT = defs.get('mettler-toledo-mt-sics-continuous') as MtSicsDefinition;
const quiet = { noiseSigmaG: 0, driftGPerHour: 0, driftSigmaGPerSqrtHour: 0 };

const stops: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const s of stops.splice(0).reverse()) await s();
});

/** A scale that answers each SI with the next scripted text (nothing once the script is done). */
function scripted(link: FakeLink, answers: Array<string | ((send: (s: string) => void) => void)>): void {
  let i = 0;
  link.onWrite((chunk) => {
    if (!chunk.toString('latin1').startsWith('SI')) return;
    const a = answers[i++];
    if (typeof a === 'string') link.fromDevice(a);
    else a?.((s) => link.fromDevice(s));
  });
}

function sicsSource(link: FakeLink, o: { timeoutMs?: number; missesToOffline?: number; definition?: MtSicsDefinition } = {}) {
  const src = new MtSicsSource({
    name: 'source:scale',
    busId: 'scale',
    link,
    definition: o.definition ?? SICS,
    pollIntervalMs: 0,
    missesToOffline: o.missesToOffline ?? 3,
    timeoutMs: o.timeoutMs ?? 200,
    log: silentLogger(),
  });
  const readings: WeightReading[] = [];
  const availability: DeviceAvailability[] = [];
  src.on('reading', (r) => readings.push(r));
  src.on('availability', (a) => availability.push(a));
  stops.push(() => src.stop());
  return { src, readings, availability };
}


/** A Modbus source on `link` polling as fast as it can, 100 ms answer timeout, offline after 3 misses. */
function fastModbusSource(link: FakeLink, addresses: number[]): ModbusLoadCellSource {
  return new ModbusLoadCellSource({
    name: 'source:bus',
    busId: 'bus',
    link,
    definition: MB_KG,
    addresses,
    pollIntervalMs: 0,
    missesToOffline: 3,
    timeoutMs: 100,
    baudRate: 19200,
    serialTiming: false,
    log: silentLogger(),
  });
}

describe('MtSicsSource: only the answer to this request is the weight', () => {
  it('a tare answer (T S) or a zero answer (Z A) during a weight poll is skipped, counted, never read as the weight', async () => {
    const link = new FakeLink();
    scripted(link, [(send) => (send('T S      25.00 g\r\nZ A\r\n'), setTimeout(() => send('S S     100.00 g\r\n'), 5))]);
    const { src } = sicsSource(link);
    const first = nextEvent<WeightReading>(src, 'reading');
    await src.start();
    const r = await first;
    expect(r).toMatchObject({ sensor: 'scale', grams: 100, deviceStable: true });
    expect(src.stats).toMatchObject({ lateAnswers: 2, timeouts: 0, invalidFrames: 0 });
  });

  it('a partial line left after one answer does not spoil the next answer (the framer restarts with each request)', async () => {
    const link = new FakeLink();
    scripted(link, ['S S     100.00 g\r\nS S   1', 'S S     200.00 g\r\n']);
    const { src, readings } = sicsSource(link);
    const second = nextEvent<WeightReading>(src, 'reading', () => readings.length === 2);
    await src.start();
    await second;
    expect(readings.map((r) => r.grams)).toEqual([100, 200]);
    expect(src.stats.timeouts).toBe(0);
  });

  it('a line with a control byte inside is refused, not read as 40000 g; the next good answer is taken', async () => {
    const link = new FakeLink();
    scripted(link, ['S S     400\x0e00 g\r\n', 'S S     400.00 g\r\n']);
    const { src, readings } = sicsSource(link, { timeoutMs: 60 });
    const got = nextEvent<WeightReading>(src, 'reading');
    await src.start();
    expect((await got).grams).toBe(400);
    expect(readings.every((r) => r.grams === 400)).toBe(true);
    expect(src.stats.invalidFrames).toBe(1);
  });
});

describe('late answers: a device slower than its timeout goes offline instead of staying one poll behind', () => {
  it('MT-SICS, scripted: every answer 130 ms after the request, timeout 100 ms -> offline after 3 misses, no reading, late answers counted; in time again -> online', async () => {
    const link = new FakeLink();
    let lateMs = 130;
    link.onWrite((chunk) => {
      if (chunk.toString('latin1') === 'SI\r\n') setTimeout(() => link.fromDevice('S S     100.00 g\r\n'), lateMs);
    });
    const { src, readings, availability } = sicsSource(link, { timeoutMs: 100, missesToOffline: 3 });
    const offline = nextEvent<DeviceAvailability>(src, 'availability', (a) => !a.online);
    await src.start();
    expect(await offline).toMatchObject({ sensor: 'scale', online: false, reason: expect.stringMatching(/^timeout/) });
    // (an answer is taken only up to timeout + guard = 200 ms after its request: 70 ms of margin here)
    expect(readings).toEqual([]);
    expect(availability.filter((a) => a.online)).toEqual([]);
    expect(src.stats.timeouts).toBeGreaterThanOrEqual(3);
    expect(src.stats.lateAnswers).toBeGreaterThanOrEqual(2);

    lateMs = 1;
    const online = nextEvent<DeviceAvailability>(src, 'availability', (a) => a.online, 5000);
    await online;
    const r = await nextEvent<WeightReading>(src, 'reading');
    expect(r.grams).toBe(100);
  });

  it('MT-SICS, through the simulator: slowMs 130 against a 100 ms timeout -> offline, never a reading', async () => {
    const link = new FakeLink();
    const sim = new MtSicsSimulator({ definition: SICS, physics: new LoadCellPhysics({ unitWeightG: 100, items: 3, ...quiet }), faults: { slowMs: 130 } });
    stops.push(sim.attach(link.deviceIo()));
    const { src, readings } = sicsSource(link, { timeoutMs: 100, missesToOffline: 3 });
    const offline = nextEvent<DeviceAvailability>(src, 'availability', (a) => !a.online);
    await src.start();
    await offline;
    expect(readings).toEqual([]);
    expect(src.stats.lateAnswers).toBeGreaterThanOrEqual(2);
    sim.faults = {};
    await nextEvent<DeviceAvailability>(src, 'availability', (a) => a.online, 5000);
    expect((await nextEvent<WeightReading>(src, 'reading')).grams).toBe(300);
  });

  it('Modbus, through the simulator: a one-address bus whose transmitter answers after the timeout goes offline (same address, function and count would otherwise match the next request)', async () => {
    const link = new FakeLink();
    const sim = new ModbusLoadCellBusSimulator({ definition: MB_KG, slaves: { 1: new LoadCellPhysics({ unitWeightG: 100, items: 3, ...quiet }) }, turnaroundMs: 130 });
    stops.push(sim.attach(link.deviceIo()));
    const src = fastModbusSource(link, [1]);
    stops.push(() => src.stop());
    const readings: WeightReading[] = [];
    src.on('reading', (r) => readings.push(r));
    const offline = nextEvent<DeviceAvailability>(src, 'availability', (a) => !a.online);
    await src.start();
    expect(await offline).toMatchObject({ sensor: 'bus.1', online: false });
    expect(readings).toEqual([]);
    expect(src.stats.lateAnswers).toBeGreaterThanOrEqual(2);
  });

  it('Modbus, two addresses: address 1 answering late goes offline (its late answer is not taken by its next poll), address 2 keeps its own readings', async () => {
    const link = new FakeLink();
    const sim = new ModbusLoadCellBusSimulator({
      definition: MB_KG,
      slaves: { 1: new LoadCellPhysics({ unitWeightG: 100, items: 3, ...quiet }), 2: new LoadCellPhysics({ unitWeightG: 100, items: 5, ...quiet }) },
      turnaroundMs: 1,
    });
    // address 1 answers 130 ms late: delay everything the bus sends for address 1
    const io = link.deviceIo();
    const slow = { write: (buf: Buffer) => (buf[0] === 1 ? setTimeout(() => io.write(buf), 130) : io.write(buf)), onData: io.onData };
    stops.push(sim.attach(slow));
    const src = fastModbusSource(link, [1, 2]);
    stops.push(() => src.stop());
    const readings: WeightReading[] = [];
    src.on('reading', (r) => readings.push(r));
    const offline = nextEvent<DeviceAvailability>(src, 'availability', (a) => !a.online);
    await src.start();
    expect(await offline).toMatchObject({ sensor: 'bus.1' });
    expect(readings.length).toBeGreaterThan(0);
    expect(readings.every((r) => r.sensor === 'bus.2' && r.grams === 500)).toBe(true);
  });
});

describe('impossible readings: beyond the model capacity is overload/underload, never a count', () => {
  it('MT-SICS: above capacity_g -> overload, below minus capacity_g -> underload, within -> a plain weight', async () => {
    expect(SICS.capacityG).toBe(15000);
    const link = new FakeLink();
    scripted(link, ['S S 99999999.99 g\r\n', 'S S  -20000.00 g\r\n', 'S S   14999.00 g\r\n', 'S D     15.001 kg\r\n', 'S S   -1500.00 g\r\n']);
    const { src, readings } = sicsSource(link);
    const done = nextEvent<WeightReading>(src, 'reading', () => readings.length === 5);
    await src.start();
    await done;
    expect(readings.map((r) => [r.grams, r.overload, r.underload])).toEqual([
      [99999999.99, true, false],
      [-20000, false, true],
      [14999, false, false],
      [15001, true, false],
      [-1500, false, false],
    ]);
  });

  it('Modbus: a value beyond the cell capacity is overload even when the transmitter sets no overflow bit', async () => {
    const link = new FakeLink();
    const sim = new ModbusLoadCellBusSimulator({ definition: MB_KG, slaves: { 1: new LoadCellPhysics({ unitWeightG: 100, items: 3, ...quiet }) }, turnaroundMs: 1 });
    stops.push(sim.attach(link.deviceIo()));
    const src = new ModbusLoadCellSource({ name: 'source:bus', busId: 'bus', link, definition: MB_KG, addresses: [1], pollIntervalMs: 0, missesToOffline: 3, timeoutMs: 100, baudRate: 19200, serialTiming: false, log: silentLogger() });
    stops.push(() => src.stop());
    // gross int32 at 0x00-0x01 in kg x 1000: 0x7fffffff = 2147483.647 kg; status 0x02 = 0 (no overflow bit)
    sim.setRegisters(1, { 0x00: 0x7fff, 0x01: 0xffff, 0x02: 0 });
    const r = nextEvent<WeightReading>(src, 'reading');
    await src.start();
    expect(await r).toMatchObject({ grams: 2147483647, overload: true, underload: false });
    sim.setRegisters(1, { 0x00: 0xffff, 0x01: 0x0000, 0x02: 0 }); // -65.536 kg
    expect(await nextEvent<WeightReading>(src, 'reading', (x) => x.grams < 0)).toMatchObject({ grams: -65536, overload: false, underload: true });
  });

  it('a simulated scale reporting 1000 t under a 250 g product: the slot says overload, never a count of 4 million', async () => {
    const link = new FakeLink();
    const sim = new MtSicsSimulator({ definition: SICS, physics: new LoadCellPhysics({ unitWeightG: 250, items: 4_000_000, ...quiet }) });
    stops.push(sim.attach(link.deviceIo()));
    const { src } = sicsSource(link);
    const tracker = new SlotTracker({
      shelfId: 'deli',
      slotId: 'counter',
      sensor: 'scale',
      params: { unitWeightG: 250, tareG: 0 },
      stability: { window: 3, maxSpreadG: 3, unstableAlarmMs: 60_000 },
    });
    const events: SlotEvent[] = [];
    src.on('reading', (r) => events.push(...tracker.onReading(r)));
    const counted = (): boolean => events.some((e) => e.type === 'count' || e.type === 'pick' || e.type === 'put');
    const settled = nextEvent<WeightReading>(src, 'reading', () => tracker.condition === 'overload' || counted());
    await src.start();
    await settled;
    expect(events).toContainEqual(expect.objectContaining({ type: 'condition', condition: 'overload' }));
    expect(counted()).toBe(false);
    expect(tracker.count).toBeNull();
  });
});

describe('MT-SICS continuous weight (SIR) on the streaming base', () => {
  /** Collects what the decoder reports, as the StreamingSource's sink would. */
  function sink() {
    const got: Array<{ kind: string; value?: unknown }> = [];
    const k: StreamSink<WeightReading> = {
      ts: 1000,
      rxMono: 5,
      reading: (r) => got.push({ kind: 'reading', value: r }),
      alive: (d) => got.push({ kind: 'alive', value: d }),
      invalid: () => got.push({ kind: 'invalid' }),
      crcError: () => got.push({ kind: 'crc' }),
      deviceError: (_d, m) => got.push({ kind: 'device-error', value: m }),
      noise: (n) => got.push({ kind: 'noise', value: n }),
    };
    return { got, k };
  }
  const at = { ts: 1000, rxMono: 5, sensor: 'scale' };

  it('decodes the reference SI/SIR lines byte-exact, whatever the chunking', () => {
    const d = new MtSicsStreamDecoder('scale', 15000);
    const { got, k } = sink();
    const wire = Buffer.from('S S     100.00 g\r\nS D      12.34 g\r\nS +\r\nS -\r\nS I\r\nS S      -0.50 kg\r\n', 'latin1');
    for (const byte of wire) d.decode(Buffer.from([byte]), k);
    expect(got).toEqual([
      { kind: 'reading', value: { ...at, grams: 100, deviceStable: true, overload: false, underload: false } },
      { kind: 'reading', value: { ...at, grams: 12.34, deviceStable: false, overload: false, underload: false } },
      { kind: 'reading', value: { ...at, grams: Number.NaN, deviceStable: false, overload: true, underload: false } },
      { kind: 'reading', value: { ...at, grams: Number.NaN, deviceStable: false, overload: false, underload: true } },
      { kind: 'reading', value: { ...at, grams: Number.NaN, deviceStable: false, overload: false, underload: false } },
      { kind: 'reading', value: { ...at, grams: -500, deviceStable: true, overload: false, underload: false } },
    ]);
  });

  it('refuses corrupted lines, keeps the scale alive on answers to other commands, counts ES as a device error, flags capacity', () => {
    const d = new MtSicsStreamDecoder('scale', 15000);
    const { got, k } = sink();
    d.decode(Buffer.from('S S     400\x0e00 g\r\nS S       .345 g\r\nS\tS 1.00 g\r\nS S 1.00 ct\r\nT S      25.00 g\r\nI4 A "1234567"\r\nES\r\nS S  99999.00 g\r\n', 'latin1'), k);
    expect(got.map((g) => g.kind)).toEqual(['invalid', 'invalid', 'invalid', 'invalid', 'alive', 'alive', 'device-error', 'reading']);
    expect(got.at(-1)!.value).toMatchObject({ grams: 99999, overload: true });
  });

  it('a partial line before a reset is not glued to the next', () => {
    const d = new MtSicsStreamDecoder('scale', 15000);
    const { got, k } = sink();
    d.decode(Buffer.from('S S   4', 'latin1'), k);
    d.reset();
    d.decode(Buffer.from('00.00 g\r\nS S     100.00 g\r\n', 'latin1'), k);
    expect(got.map((g) => g.kind)).toEqual(['invalid', 'reading']);
    expect(got[1]!.value).toMatchObject({ grams: 100 });
  });

  it('with the simulator: SIR on start (byte-exact), readings flow, silent -> offline, back -> online, stop sends SI and the stream ends', async () => {
    const link = new FakeLink();
    const physics = new LoadCellPhysics({ unitWeightG: 250, items: 4, ...quiet });
    const sim = new MtSicsSimulator({ definition: SICS_CONT, physics, streamIntervalMs: 10 });
    stops.push(sim.attach(link.deviceIo()));
    const src = new MtSicsStreamSource({ name: 'source:scale', busId: 'scale', link, definition: SICS_CONT, silenceMs: 100, log: silentLogger() });
    stops.push(() => src.stop());
    const readings: WeightReading[] = [];
    src.on('reading', (r) => readings.push(r));
    const online = nextEvent<DeviceAvailability>(src, 'availability', (a) => a.online);
    const fiveReadings = nextEvent<WeightReading>(src, 'reading', () => readings.length >= 5);
    await src.start();
    expect(link.written.map((b) => b.toString('hex'))).toEqual(['5349520d0a']); // "SIR" CR LF
    await online;
    await fiveReadings;
    expect(readings.slice(0, 5).every((r) => r.sensor === 'scale' && r.grams === 1000 && r.deviceStable === true)).toBe(true);
    expect(src.stats.polls).toBe(0);

    sim.faults = { silent: true };
    expect(await nextEvent<DeviceAvailability>(src, 'availability', (a) => !a.online)).toMatchObject({ sensor: 'scale', reason: 'silent: no frame for 100 ms' });
    expect(src.isOnline('scale')).toBe(false);
    sim.faults = {};
    await nextEvent<DeviceAvailability>(src, 'availability', (a) => a.online);

    // the scale's answer to the stop command is the first line it sends once its stream has ended
    const answerToStop = nextEvent<Buffer>(link, 'data', () => !sim.streaming);
    const readingsAtStop = readings.length;
    await src.stop();
    expect(link.writtenText().endsWith('SI\r\n')).toBe(true);
    expect((await answerToStop).toString('latin1')).toBe('S S    1000.00 g\r\n');
    expect(readings.length).toBe(readingsAtStop);
    for (const e of ['data', 'online', 'offline']) expect(link.listenerCount(e)).toBe(0);
  });

  it('createWeightSource picks the source the definition calls for', () => {
    const link = new FakeLink();
    const common = { name: 's', busId: 'b', link, pollIntervalMs: 100, missesToOffline: 3, timeoutMs: 200, log: silentLogger(), addresses: [1, 2], baudRate: 9600, serialTiming: false };
    const stream = createWeightSource(SICS_CONT, common);
    expect(stream).toBeInstanceOf(MtSicsStreamSource);
    expect(stream.devices).toEqual(['b']);
    expect(createWeightSource(SICS, common)).toBeInstanceOf(MtSicsSource);
    const bus = createWeightSource(MB, common);
    expect(bus).toBeInstanceOf(ModbusLoadCellSource);
    expect(bus.devices).toEqual(['b.1', 'b.2']);
  });
});
