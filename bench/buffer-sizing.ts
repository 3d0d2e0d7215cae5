/**
 * How many hours of a busy store's traffic fit in the outbox buffer while central is unreachable.
 * Writes simulated stock events through the real Store (same payloads as the shelf service) and
 * measures both what the buffer bound counts (outbox payload bytes) and the SQLite file on disk.
 *
 * Assumed traffic ("a busy supermarket, Saturday peak"): 1,500 weighed slots, each picked or
 * restocked 12 times an hour -> 18,000 stock events/h, plus 5 % anomaly/condition events.
 *
 *   npm run build && node dist/bench/buffer-sizing.js [--slots 1500] [--per-slot-hour 12] [--hours 2]
 */
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Store } from '../src/store/store';
import { silentLogger } from '../src/log';
import { fmt, machine } from './harness';

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { slots: { type: 'string', default: '1500' }, 'per-slot-hour': { type: 'string', default: '12' }, hours: { type: 'string', default: '2' } } });
  const slots = Number(values.slots);
  const perSlotHour = Number(values['per-slot-hour']);
  const hours = Number(values.hours);
  const dir = mkdtempSync(join(tmpdir(), 'sg-bench-size-'));
  const path = join(dir, 'shelfgate.db');
  const store = new Store({ path, synchronous: 'normal', flushIntervalMs: 20, storeId: 'store-0042', log: silentLogger() });
  await store.start();
  const perHour = slots * perSlotHour;
  const total = Math.round(perHour * hours * 1.05);
  const t0 = Date.parse('2026-11-21T08:00:00Z');
  const counts = new Array<number>(slots).fill(24);
  const pending: Promise<unknown>[] = [];
  for (let i = 0; i < total; i++) {
    const s = i % slots;
    const shelf = `g${Math.floor(s / 64) + 1}-shelf${Math.floor((s % 64) / 16) + 1}`;
    const slot = `slot${(s % 16) + 1}`;
    const ts = t0 + Math.floor((i / total) * hours * 3_600_000);
    let kind: string;
    let payload: Record<string, unknown>;
    if (i % 20 === 19) {
      kind = 'condition';
      payload = { store_id: 'store-0042', shelf_id: shelf, slot_id: slot, gtin: '05901234123457', kind, condition: 'unstable', previous: 'ok', detail: 'not settled for 30 s' };
    } else {
      const previous = counts[s]!;
      const delta = previous > 3 ? -1 - (i % 2) : 20;
      counts[s] = previous + delta;
      kind = delta < 0 ? 'pick' : 'put';
      payload = { store_id: 'store-0042', shelf_id: shelf, slot_id: slot, gtin: '05901234123457', kind, delta, count: counts[s], previous_count: previous, weight_g: counts[s]! * 410.2 };
    }
    pending.push(store.appendEvent({ deviceId: `${shelf}/${slot}`, kind, priority: kind === 'condition' ? 2 : 0, payload, createdAt: ts }));
    if (pending.length >= 5000) await Promise.all(pending.splice(0));
  }
  await Promise.all(pending);
  const st = store.outboxStats();
  await store.stop(); // checkpoints the WAL into the file
  const fileBytes = statSync(path).size;
  const mb = 1024 * 1024;
  console.log(`machine: ${machine()}`);
  console.log(`traffic: ${fmt(slots)} slots x ${perSlotHour} stock events/h + 5 % conditions = ${fmt(perHour * 1.05)} events/h; wrote ${fmt(total)} (${hours} h)`);
  console.log(`per event: ${fmt(st.bytes / st.count, 0)} payload bytes (what buffer_max_bytes counts), ${fmt(fileBytes / st.count, 0)} bytes of SQLite file`);
  console.log(`100 MB of buffer_max_bytes holds ${fmt((100 * mb) / (st.bytes / total) / (perHour * 1.05), 1)} h; a 100 MB SQLite file holds ${fmt((100 * mb) / (fileBytes / total) / (perHour * 1.05), 1)} h`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
