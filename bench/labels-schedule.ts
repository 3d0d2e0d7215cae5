/**
 * The gateway's own work for a chain-wide price change to N labels, without I/O: render every
 * label's content (content.ts), submit it to the delivery scheduler and hand it out within the APs'
 * radio budgets until every label is confirmed. The radio is a model here: each AP carries its
 * dispatches one after another at 5,000 B/s and the label acknowledges when its transfer ends
 * (no check-in wait, no loss), on a virtual clock. Reports the CPU time of the gateway's part and
 * the virtual time until 99% / 100% are confirmed beside the radio's theoretical minimum
 * (the busiest AP's bytes / rate).
 *
 *   npm run build && node dist/bench/labels-schedule.js [--labels 10000] [--aps 10]
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { contentInput, renderLabel } from '../src/features/labels/content';
import { loadLabelTypes } from '../src/features/labels/label-types';
import { DeliveryScheduler } from '../src/features/labels/scheduler';

const RATE = 5000;

function main(): void {
  const { values } = parseArgs({ options: { labels: { type: 'string', default: '10000' }, aps: { type: 'string', default: '10' } } });
  const n = Number(values.labels);
  const aps = Number(values.aps);
  const type = loadLabelTypes().get('oepl-m2-2.9-bwr')!;
  const T0 = Date.parse('2026-03-02T12:00:00Z');
  let now = T0;
  const s = new DeliveryScheduler({ clock: () => now, apBytesPerSecond: RATE });
  const macs: string[] = [];
  for (let i = 0; i < n; i++) {
    const mac = i.toString(16).toUpperCase().padStart(16, '0');
    macs.push(mac);
    s.setLabel(mac, { checkInMs: 40_000 });
    s.heard(mac, `ap${i % aps}`, now);
  }

  const cpu0 = process.cpuUsage();
  const wall0 = performance.now();
  for (let i = 0; i < n; i++) {
    const r = renderLabel(
      { product: { gtin: '04006381333931', name: `Product number ${i} with a fairly long name`, netContent: { amount: 500, unit: 'g' } }, display: { price: 100 + (i % 500), currency: 'EUR', wasPrice: null }, locale: 'de-DE' },
      type,
    );
    s.submit(macs[i]!, [contentInput(r, now)]);
  }
  const cpuRender = process.cpuUsage(cpu0);
  const wallRender = performance.now() - wall0;

  // the radio model: per AP, the time its current queue is carried until
  const busyUntil = new Map<string, number>();
  // per AP, acks come in dispatch order (one transfer after another)
  const acks = new Map<string, Array<{ at: number; mac: string }>>();
  const firstAck = (): { ap: string; at: number } | null => {
    let best: { ap: string; at: number } | null = null;
    for (const [ap, q] of acks) if (q.length && (!best || q[0]!.at < best.at)) best = { ap, at: q[0]!.at };
    return best;
  };
  let schedulerCpuUs = 0;
  const bytesPerAp = new Map<string, number>();
  let confirmed = 0;
  let t99: number | null = null;
  let handedOutAt = 0;
  let dispatched = 0;
  let nextCalls = 0;
  while (confirmed < n) {
    const c0 = process.cpuUsage();
    const out = s.next(now);
    nextCalls++;
    for (const d of out) {
      const start = Math.max(now, busyUntil.get(d.ap) ?? now);
      const end = start + (d.bytes * 1000) / RATE;
      busyUntil.set(d.ap, end);
      bytesPerAp.set(d.ap, (bytesPerAp.get(d.ap) ?? 0) + d.bytes);
      let q = acks.get(d.ap);
      if (!q) acks.set(d.ap, (q = []));
      q.push({ at: end, mac: d.mac });
      dispatched++;
      if (dispatched === n) handedOutAt = now;
    }
    const wake = s.nextWakeAt(now);
    let cu = process.cpuUsage(c0);
    schedulerCpuUs += cu.user + cu.system;
    const nextAck = firstAck()?.at ?? Infinity;
    const t = Math.min(wake ?? Infinity, nextAck);
    if (t === Infinity) throw new Error(`stuck with ${n - confirmed} unconfirmed`);
    now = Math.max(now, Math.ceil(t));
    for (let f = firstAck(); f && f.at <= now; f = firstAck()) {
      const a = acks.get(f.ap)!.shift()!;
      const c1 = process.cpuUsage();
      s.acknowledged(a.mac, now);
      cu = process.cpuUsage(c1);
      schedulerCpuUs += cu.user + cu.system;
      confirmed++;
      if (t99 === null && confirmed >= Math.ceil(n * 0.99)) t99 = now - T0;
    }
  }
  const cpuAll = process.cpuUsage(cpu0);
  const theoretical = (Math.max(...bytesPerAp.values()) * 1000) / RATE;
  const ms = (u: NodeJS.CpuUsage) => ((u.user + u.system) / 1000).toFixed(0);
  const out = {
    labels: n,
    aps,
    radio_bytes_per_label: contentInput(renderLabel({ product: { gtin: '1', name: 'x' }, display: { price: 1, currency: 'EUR', wasPrice: null }, locale: 'de-DE' }, type), 0).bytes,
    render_and_submit_cpu_ms: Number(ms(cpuRender)),
    render_and_submit_wall_ms: Math.round(wallRender),
    scheduling_cpu_ms: Math.round(schedulerCpuUs / 1000),
    total_cpu_ms_with_radio_model: Number(ms(cpuAll)),
    next_calls: nextCalls,
    all_handed_to_aps_virtual_s: (handedOutAt - T0) / 1000,
    confirmed_99pct_virtual_s: (t99 ?? 0) / 1000,
    confirmed_all_virtual_s: (now - T0) / 1000,
    theoretical_min_s: theoretical / 1000,
  };
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}

main();
