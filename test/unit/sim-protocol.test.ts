/**
 * The simulators pinned to reference frames (METTLER TOLEDO MT-SICS Reference Manual; Modbus RTU per
 * the MODBUS specifications, with a common unbranded transmitter's register map),
 * byte for byte, never only to the gateway's own codecs.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadDefinitions } from '../../src/devices/definitions';
import type { ModbusDefinition, MtSicsDefinition } from '../../src/devices/types';
import { crc16, encodeReadRequest, encodeWriteSingleRegister } from '../../src/drivers/modbus';
import { memoryIo, type MemoryIo } from '../../simulators/io';
import { ModbusLoadCellBusSimulator } from '../../simulators/modbus-loadcell-sim';
import { MtSicsSimulator } from '../../simulators/mtsics-sim';
import { LoadCellPhysics, mulberry32 } from '../../simulators/physics';
import { waitFor } from '../helpers/wait';

const defs = loadDefinitions();
const MB = defs.get('generic-modbus-loadcell') as ModbusDefinition;
const MB_KG = defs.get('generic-modbus-loadcell-kg') as ModbusDefinition;
const SICS = defs.get('mettler-toledo-mt-sics') as MtSicsDefinition;
const quiet = { noiseSigmaG: 0, driftGPerHour: 0, driftSigmaGPerSqrtHour: 0 };

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const show = (b: Buffer): string => b.toString('hex').toUpperCase().replace(/(..)(?!$)/g, '$1 ');
const detachers: (() => void)[] = [];
afterEach(() => {
  for (const d of detachers.splice(0)) d();
});

/** Per link: how many requests its simulator has finished with (answered, or dropped on purpose). */
const finished = new WeakMap<MemoryIo, () => number>();

function attach(sim: ModbusLoadCellBusSimulator | MtSicsSimulator): MemoryIo {
  const io = memoryIo();
  detachers.push(sim.attach(io));
  finished.set(io, () => {
    if (sim instanceof MtSicsSimulator) return sim.stats.answered + sim.stats.suppressed;
    const s = sim.stats; // a bad CRC and another address are dropped at once, a fault when handled
    return s.answered + s.suppressed + s.notForUs + s.crcErrors;
  });
  return io;
}

/**
 * Sends `req` (`requests` Modbus frames or MT-SICS command lines in it; 0 when it frames none) and
 * returns everything received once the simulator has finished with all of them. Answers are
 * written whole, so nothing more of them can come later: an empty result is a real silence.
 */
async function exchange(io: MemoryIo, req: Buffer | string, requests = 1): Promise<Buffer> {
  const count = finished.get(io)!;
  const target = count() + requests;
  io.clear();
  io.send(typeof req === 'string' ? Buffer.from(req, 'latin1') : req);
  await waitFor(() => count() >= target, 5000, `the simulator to finish ${requests} request(s)`, 2);
  return io.received();
}

/** Records when the simulator wrote each chunk to `io`. */
function writeTimes(io: MemoryIo): number[] {
  const times: number[] = [];
  const write = io.write.bind(io);
  io.write = (buf) => {
    times.push(Date.now());
    write(buf);
  };
  return times;
}

describe('Modbus load-cell bus simulator: reference frames', () => {
  it('answers the reference requests byte-exact from raw register values', async () => {
    const bus = new ModbusLoadCellBusSimulator({ definition: MB, slaves: { 1: new LoadCellPhysics({ unitWeightG: 100, ...quiet }) } });
    bus.setRegisters(1, { 0x50: 0x0000, 0x51: 0x0084, 0x52: 0xffff, 0x53: 0xc1ef });
    const io = attach(bus);
    expect(show(await exchange(io, hex('01 03 00 50 00 02 C4 1A')))).toBe('01 03 04 00 00 00 84 FA 50');
    expect(show(await exchange(io, hex('01 03 00 52 00 02 65 DA')))).toBe('01 03 04 FF FF C1 EF EA 0B');
  });

  it('shows the same frames from the physics: gross 132 g, net -15889 g after a tare', async () => {
    let now = 0;
    const clock = (): number => now;
    // a 15889 g item on a 132 g tray, tared, then taken away
    const p = new LoadCellPhysics({ unitWeightG: 15889, items: 1, tareG: 132, ...quiet, clock });
    p.tare();
    p.pick(1);
    now = 1000; // settled
    const bus = new ModbusLoadCellBusSimulator({ definition: MB, slaves: { 1: p }, clock });
    const io = attach(bus);
    expect(show(await exchange(io, hex('01 03 00 50 00 02 C4 1A')))).toBe('01 03 04 00 00 00 84 FA 50');
    expect(show(await exchange(io, hex('01 03 00 52 00 02 65 DA')))).toBe('01 03 04 FF FF C1 EF EA 0B');
    // status register 0x08: sign (bit 3) set, stable, no overflow, 0 decimals
    const status = await exchange(io, encodeReadRequest(1, 3, 0x08, 1));
    expect(show(status.subarray(0, 5))).toBe('01 03 02 00 08');
  });

  it('reports unstable (bit 5) while settling and overflow (bit 6) on overload', async () => {
    let now = 0;
    const clock = (): number => now;
    const p = new LoadCellPhysics({ unitWeightG: 100, items: 3, ...quiet, clock });
    const bus = new ModbusLoadCellBusSimulator({ definition: MB, slaves: { 7: p }, clock });
    const io = attach(bus);
    p.pick(1);
    now = 50;
    expect((await exchange(io, encodeReadRequest(7, 3, 0x08, 1))).readUInt16BE(3) & 0x20).toBe(0x20);
    now = 1000;
    expect((await exchange(io, encodeReadRequest(7, 3, 0x08, 1))).readUInt16BE(3)).toBe(0);
    p.setOverload(true);
    expect((await exchange(io, encodeReadRequest(7, 3, 0x08, 1))).readUInt16BE(3) & 0x40).toBe(0x40);
  });

  it('follows another register map from its definition alone (input registers, kg x 1000)', async () => {
    const p = new LoadCellPhysics({ unitWeightG: 1234, items: 1, ...quiet });
    const bus = new ModbusLoadCellBusSimulator({ definition: MB_KG, slaves: { 2: p } });
    const io = attach(bus);
    const r = await exchange(io, encodeReadRequest(2, 4, 0x00, 3));
    expect(show(r.subarray(0, 9))).toBe('02 04 06 00 00 04 D2 00 00');
  });

  it('answers an illegal register range with exception 02 and an unused function with 01', async () => {
    const bus = new ModbusLoadCellBusSimulator({ definition: MB, slaves: { 1: new LoadCellPhysics({ unitWeightG: 1, ...quiet }) } });
    const io = attach(bus);
    // a CRC test vector: 10 registers from 0 are not in this transmitter's map
    expect(show(await exchange(io, hex('01 03 00 00 00 0A C5 CD')))).toBe('01 83 02 C0 F1');
    expect(show(await exchange(io, encodeReadRequest(1, 3, 0x51, 4)))).toBe('01 83 02 C0 F1'); // runs past 0x53
    const fn4 = await exchange(io, encodeReadRequest(1, 4, 0x50, 2));
    expect(show(fn4.subarray(0, 3))).toBe('01 84 01');
    expect(crc16(fn4.subarray(0, 3))).toBe(fn4.readUInt16LE(3));
    expect(bus.stats.exceptions).toBe(3);
  });

  it('stays silent for garbage, a wrong CRC and addresses not on the bus', async () => {
    const bus = new ModbusLoadCellBusSimulator({ definition: MB, slaves: { 1: new LoadCellPhysics({ unitWeightG: 1, ...quiet }) } });
    const io = attach(bus);
    expect((await exchange(io, hex('FF FE 00 13 37 42 AA 55 0D 0A'), 0)).length).toBe(0); // the good request below shows nothing came of it later
    // CRC off by one bit: the framer keeps its last byte (a frame could start there) until the next bytes
    expect((await exchange(io, hex('01 03 00 50 00 02 C4 1B'), 0)).length).toBe(0);
    expect((await exchange(io, hex('02 03 00 50 00 02 C4 29'), 2)).length).toBe(0); // that CRC error, and address 2: nobody there
    expect(bus.stats.crcErrors).toBe(1);
    expect(bus.stats.notForUs).toBe(1);
    // and it still answers a good request after all that
    bus.setRegisters(1, { 0x50: 0, 0x51: 132 });
    expect(show(await exchange(io, hex('01 03 00 50 00 02 C4 1A')))).toBe('01 03 04 00 00 00 84 FA 50');
  });

  it('resynchronises: garbage glued before a request, a request split over chunks', async () => {
    const bus = new ModbusLoadCellBusSimulator({ definition: MB, slaves: { 1: new LoadCellPhysics({ unitWeightG: 1, ...quiet }) } });
    bus.setRegisters(1, { 0x50: 0, 0x51: 132 });
    const io = attach(bus);
    expect(show(await exchange(io, Buffer.concat([hex('FF 00 13'), hex('01 03 00 50 00 02 C4 1A')])))).toBe('01 03 04 00 00 00 84 FA 50');
    const requests = bus.stats.requests;
    io.send(hex('01 03 00'));
    expect(bus.stats.requests).toBe(requests); // half a request frames nothing yet
    expect(show(await exchange(io, hex('50 00 02 C4 1A')))).toBe('01 03 04 00 00 00 84 FA 50');
  });

  it('many addresses on one bus: each answers only its own requests', async () => {
    const slaves = new Map([1, 2, 3].map((a) => [a, new LoadCellPhysics({ unitWeightG: 10 * a, items: 1, ...quiet })] as const));
    const bus = new ModbusLoadCellBusSimulator({ definition: MB, slaves });
    const io = attach(bus);
    for (const a of [1, 2, 3]) {
      const r = await exchange(io, encodeReadRequest(a, 3, 0x52, 2));
      expect(r.length).toBe(9);
      expect(r[0]).toBe(a);
      expect(r.readInt32BE(3)).toBe(10 * a);
    }
    expect(bus.addresses).toEqual([1, 2, 3]);
  });

  it('answers after t3.5 + turnaround, not before', async () => {
    const bus = new ModbusLoadCellBusSimulator({ definition: MB, baudRate: 1200, turnaroundMs: 10, slaves: { 1: new LoadCellPhysics({ unitWeightG: 1, ...quiet }) } });
    const io = attach(bus);
    const written = writeTimes(io);
    const t0 = Date.now();
    io.send(hex('01 03 00 50 00 02 C4 1A'));
    await waitFor(() => io.received().length === 9, 5000, 'the answer');
    expect(written[0]! - t0).toBeGreaterThanOrEqual(38); // t3.5 at 1200 baud = 29.2 ms, + 10 ms: no byte before
  });

  it('fn 06 to the tare register tares the slave and echoes the request', async () => {
    let now = 0;
    const clock = (): number => now;
    const p = new LoadCellPhysics({ unitWeightG: 100, items: 5, ...quiet, clock });
    const bus = new ModbusLoadCellBusSimulator({ definition: MB, tareRegister: 0x10, slaves: { 1: p }, clock });
    const io = attach(bus);
    const req = encodeWriteSingleRegister(1, 0x10, 1);
    expect(show(await exchange(io, req))).toBe(show(req));
    expect(p.read(0).grams).toBe(0);
    expect(show((await exchange(io, encodeWriteSingleRegister(1, 0x11, 1))).subarray(0, 3))).toBe('01 86 02');
    const noTare = new ModbusLoadCellBusSimulator({ definition: MB, slaves: { 1: p } });
    const io2 = attach(noTare);
    expect(show((await exchange(io2, req)).subarray(0, 3))).toBe('01 86 01');
  });

  it('fault injection: silent address, dropAfter, corrupted CRC, garbage after answers', async () => {
    const bus = new ModbusLoadCellBusSimulator({
      definition: MB,
      rng: mulberry32(1),
      slaves: { 1: new LoadCellPhysics({ unitWeightG: 1, ...quiet }), 2: new LoadCellPhysics({ unitWeightG: 1, ...quiet }) },
    });
    bus.setRegisters(1, { 0x50: 0, 0x51: 132 });
    const io = attach(bus);
    const req = hex('01 03 00 50 00 02 C4 1A');
    const good = '01 03 04 00 00 00 84 FA 50';

    bus.setFaults(1, { silent: true });
    expect((await exchange(io, req)).length).toBe(0);
    expect((await exchange(io, encodeReadRequest(2, 3, 0x50, 2))).length).toBe(9); // the other one still talks

    bus.setFaults(1, { dropAfter: 2 });
    expect(show(await exchange(io, req))).toBe(good);
    expect(show(await exchange(io, req))).toBe(good);
    expect((await exchange(io, req)).length).toBe(0);

    bus.setFaults(1, { corruptCrc: 1 });
    const bad = await exchange(io, req);
    expect(bad.length).toBe(9);
    expect(show(bad.subarray(0, 7))).toBe('01 03 04 00 00 00 84');
    expect(crc16(bad.subarray(0, 7))).not.toBe(bad.readUInt16LE(7));

    bus.setFaults(1, { garbage: 1 });
    const withJunk = await exchange(io, req);
    expect(show(withJunk.subarray(0, 9))).toBe(good);
    expect(withJunk.length).toBeGreaterThan(9);

    bus.setFaults(1, {});
    expect(show(await exchange(io, req))).toBe(good);
  });

  it('stops answering when detached', async () => {
    const bus = new ModbusLoadCellBusSimulator({ definition: MB, slaves: { 1: new LoadCellPhysics({ unitWeightG: 1, ...quiet }) } });
    const io = memoryIo();
    const detach = bus.attach(io);
    io.send(hex('01 03 00 50 00 02 C4 1A'));
    detach(); // the pending answer is cancelled
    // the same request on a new link: its answer is due after the cancelled one would have been
    expect((await exchange(attach(bus), hex('01 03 00 50 00 02 C4 1A'))).length).toBe(9);
    expect(io.received().length).toBe(0);
    expect(bus.stats.answered).toBe(1);
  });
});

describe('MT-SICS simulator: MT-SICS Reference Manual lines', () => {
  const scale = (load: { unitWeightG: number; items?: number }, more: Partial<ConstructorParameters<typeof MtSicsSimulator>[0]> = {}, clock?: () => number) => {
    const physics = new LoadCellPhysics({ ...load, ...quiet, ...(clock ? { clock } : {}) });
    const sim = new MtSicsSimulator({ definition: SICS, physics, ...(clock ? { clock } : {}), ...more });
    return { sim, physics, io: attach(sim) };
  };

  it('S with a stable 100 g load -> "S S     100.00 g"', async () => {
    const { io } = scale({ unitWeightG: 100, items: 1 });
    expect((await exchange(io, 'S\r\n')).toString('latin1')).toBe('S S     100.00 g\r\n');
  });

  it('SI answers at once: S while stable, D while settling', async () => {
    let now = 0;
    const { io, physics } = scale({ unitWeightG: 100, items: 3 }, {}, () => now);
    expect((await exchange(io, 'SI\r\n')).toString('latin1')).toBe('S S     300.00 g\r\n');
    physics.pick(1);
    now = 400; // exactly settled
    expect((await exchange(io, 'SI\r\n')).toString('latin1')).toBe('S S     200.00 g\r\n');
    physics.put(1);
    now = 410;
    expect((await exchange(io, 'SI\r\n')).toString('latin1')).toMatch(/^S D +\d+\.\d\d g\r\n$/);
  });

  it('S waits for stability: S I when it does not settle in time', async () => {
    let now = 0;
    const { io, physics, sim } = scale({ unitWeightG: 100, items: 3 }, { stableTimeoutMs: 30 }, () => now);
    physics.pick(1); // and the clock does not move: never settles
    expect((await exchange(io, 'S\r\n')).toString('latin1')).toBe('S I\r\n');
    const commands = sim.stats.commands;
    io.clear();
    io.send(Buffer.from('S\r\n'));
    expect(sim.stats.commands).toBe(commands + 1); // taken, and not answered: the scale waits
    expect(io.received().length).toBe(0);
    now = 1000; // settles while the scale waits
    await waitFor(() => io.received().length > 0, 5000, 'the answer to S');
    expect(io.received().toString('latin1')).toBe('S S     200.00 g\r\n');
  });

  it('overload -> S +, Z +, T +', async () => {
    const { io, physics } = scale({ unitWeightG: 100, items: 1 });
    physics.setOverload(true);
    expect((await exchange(io, 'S\r\nSI\r\nZ\r\nT\r\n', 4)).toString('latin1')).toBe('S +\r\nS +\r\nZ +\r\nT +\r\n');
  });

  it('Z zeroes, T tares and reports the tare, I4 gives the serial number', async () => {
    const { io } = scale({ unitWeightG: 100, items: 2 }, { serialNumber: '0123456789' });
    expect((await exchange(io, 'I4\r\n')).toString('latin1')).toBe('I4 A "0123456789"\r\n');
    expect((await exchange(io, 'T\r\n')).toString('latin1')).toBe('T S     200.00 g\r\n');
    expect((await exchange(io, 'S\r\n')).toString('latin1')).toBe('S S       0.00 g\r\n');
    expect((await exchange(io, 'Z\r\n')).toString('latin1')).toBe('Z A\r\n');
  });

  it('an unknown or malformed command -> ES; answers stay in order', async () => {
    const { io } = scale({ unitWeightG: 100, items: 1 });
    expect((await exchange(io, 'XYZ\r\nS 5\r\n"q\r\nS\r\n', 4)).toString('latin1')).toBe('ES\r\nES\r\nES\r\nS S     100.00 g\r\n');
  });

  it('a command split over chunks, with bare-LF terminators, is still one command', async () => {
    const { io, sim } = scale({ unitWeightG: 100, items: 1 });
    io.send(Buffer.from('S'));
    expect(sim.stats.commands).toBe(0); // half a command: nothing taken yet
    expect((await exchange(io, 'I\n')).toString('latin1')).toBe('S S     100.00 g\r\n');
  });

  it('faults: silent, silentAfter, garbage, slowMs', async () => {
    const { io, sim } = scale({ unitWeightG: 100, items: 1 }, { rng: mulberry32(1) });
    sim.faults = { silent: true };
    expect((await exchange(io, 'S\r\n')).length).toBe(0);
    sim.faults = { silentAfter: sim.stats.answered + 1 };
    expect((await exchange(io, 'S\r\n')).toString('latin1')).toBe('S S     100.00 g\r\n');
    expect((await exchange(io, 'S\r\n')).length).toBe(0);
    sim.faults = { garbage: 1 };
    const g = await exchange(io, 'S\r\n');
    expect(g.subarray(0, 18).toString('latin1')).toBe('S S     100.00 g\r\n');
    expect(g.length).toBeGreaterThan(18);
    sim.faults = { slowMs: 60 };
    const written = writeTimes(io);
    const t0 = Date.now();
    expect((await exchange(io, 'S\r\n')).toString('latin1')).toBe('S S     100.00 g\r\n');
    expect(written[0]! - t0).toBeGreaterThanOrEqual(50); // held back slowMs: nothing within the first 30 ms, nor 50
  });
});

describe('MT-SICS simulator: continuous output (SIR), MT-SICS Reference Manual lines', () => {
  const CONT = defs.get('mettler-toledo-mt-sics-continuous') as MtSicsDefinition;
  const flush = async (): Promise<void> => {
    for (let i = 0; i < 10; i++) await Promise.resolve();
  };
  const text = (io: MemoryIo): string => io.received().toString('latin1');
  const lines = (io: MemoryIo): string[] => text(io).split('\r\n').slice(0, -1);

  afterEach(() => {
    vi.useRealTimers();
  });

  function streamingScale(load: { unitWeightG: number; items: number }, more: Partial<ConstructorParameters<typeof MtSicsSimulator>[0]> = {}) {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    vi.setSystemTime(0);
    const physics = new LoadCellPhysics({ ...load, ...quiet });
    const sim = new MtSicsSimulator({ definition: CONT, physics, streamIntervalMs: 50, ...more });
    return { sim, physics, io: attach(sim) };
  }

  it('SIR: the first "S S     100.00 g" at once, then one line every streamIntervalMs until another command; SI ends it and is answered', async () => {
    const { sim, io } = streamingScale({ unitWeightG: 100, items: 1 });
    io.send(Buffer.from('SIR\r\n'));
    await flush();
    expect(text(io)).toBe('S S     100.00 g\r\n');
    expect(sim.streaming).toBe(true);
    await vi.advanceTimersByTimeAsync(49);
    expect(lines(io)).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    await vi.advanceTimersByTimeAsync(100);
    expect(text(io)).toBe('S S     100.00 g\r\n'.repeat(4));
    io.clear();
    io.send(Buffer.from('SI\r\n'));
    await flush();
    expect(text(io)).toBe('S S     100.00 g\r\n');
    expect(sim.streaming).toBe(false);
    await vi.advanceTimersByTimeAsync(500);
    expect(text(io)).toBe('S S     100.00 g\r\n'); // no more streamed lines
    expect(sim.stats).toMatchObject({ streamed: 3, commands: 2, answered: 5 });
  });

  it('SIR reports what SI reports: "S D" while settling, "S +" on overload', async () => {
    const { io, physics } = streamingScale({ unitWeightG: 100, items: 3 });
    io.send(Buffer.from('SIR\r\n'));
    await flush();
    physics.pick(1);
    await vi.advanceTimersByTimeAsync(50);
    expect(lines(io)[1]).toMatch(/^S D +\d+\.\d\d g$/);
    await vi.advanceTimersByTimeAsync(500); // settled
    expect(lines(io).at(-1)).toBe('S S     200.00 g');
    physics.setOverload(true);
    await vi.advanceTimersByTimeAsync(50);
    expect(lines(io).at(-1)).toBe('S +');
  });

  it('@ (reset) ends SIR and answers with the serial number, like I4', async () => {
    const { sim, io } = streamingScale({ unitWeightG: 100, items: 1 }, { serialNumber: '0123456789' });
    io.send(Buffer.from('SIR\r\n'));
    await flush();
    io.clear();
    io.send(Buffer.from('@\r\n'));
    await flush();
    expect(text(io)).toBe('I4 A "0123456789"\r\n');
    expect(sim.streaming).toBe(false);
    await vi.advanceTimersByTimeAsync(500);
    expect(text(io)).toBe('I4 A "0123456789"\r\n');
  });

  it('the silent fault mutes the stream; lifted, the stream goes on', async () => {
    const { sim, io } = streamingScale({ unitWeightG: 100, items: 1 });
    io.send(Buffer.from('SIR\r\n'));
    await flush();
    sim.faults = { silent: true };
    io.clear();
    await vi.advanceTimersByTimeAsync(500);
    expect(text(io)).toBe('');
    expect(sim.stats.suppressed).toBe(10);
    sim.faults = {};
    await vi.advanceTimersByTimeAsync(50);
    expect(text(io)).toBe('S S     100.00 g\r\n');
  });

  it('detach() ends the stream', async () => {
    const { sim, io } = streamingScale({ unitWeightG: 100, items: 1 });
    io.send(Buffer.from('SIR\r\n'));
    await flush();
    sim.detach();
    expect(sim.streaming).toBe(false);
    expect(vi.getTimerCount()).toBe(0);
  });
});
