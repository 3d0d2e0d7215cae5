/**
 * The acknowledgement reconciliation of the OEPL radio (OeplReconciler), fed with hand-written tag
 * records and WebSocket frames as the AP firmware prints them (not made by our codec), read by the
 * codec's parsers as the radio reads them.
 */
import { describe, expect, it } from 'vitest';
import { parseTagRecord, parseWsMessage, type OeplTag } from '../../src/drivers/oepl';
import { checkInMsOf, deliveredSince, OeplReconciler } from '../../src/features/labels/oepl-radio';
import type { RadioEvent } from '../../src/features/labels/radio';

const MAC = '0000A1B2C3D4E5F6';
const MAC2 = '7F00112233445566';

type RecFields = { mac?: string; hash?: string; lastseen?: number; nextcheckin?: number; pending?: number; updatecount?: number | null };

/** A record as the firmware's fillNode prints it; only the fields that vary are parameters. */
function recJson(o: RecFields): string {
  const mac = o.mac ?? MAC;
  const hash = o.hash ?? '1d2c3b4a59687766' + '0000000000000000';
  const lastseen = o.lastseen ?? 1764700000;
  const nextcheckin = o.nextcheckin ?? lastseen + 40;
  const pending = o.pending ?? 0;
  const uc = o.updatecount === undefined ? 3 : o.updatecount;
  const text =
    `{"mac":"${mac}","hash":"${hash}","lastseen":${lastseen},"nextupdate":0,"nextcheckin":${nextcheckin},"pending":${pending},` +
    `"alias":"","contentMode":19,"LQI":201,"RSSI":-61,"temperature":21,"batteryMv":2890,"hwType":1,"wakeupReason":0,` +
    `"capabilities":0,"isexternal":false,"apip":"0.0.0.0","rotate":0,"lut":0,"invert":0` +
    (uc === null ? '' : `,"updatecount":${uc},"updatelast":${lastseen}`) +
    `,"ch":11,"ver":38}`;
  return text;
}

function rec(o: RecFields): OeplTag {
  const r = parseTagRecord(JSON.parse(recJson(o)));
  if (!('tag' in r)) throw new Error(r.why);
  return r.tag;
}

/** A WebSocket frame exactly as the AP sends it, through the codec, into the reconciler. */
function frame(r: OeplReconciler, text: string, at: number): RadioEvent[] {
  const ev = parseWsMessage(text);
  if (ev.kind === 'ack') {
    const a = r.wsAck(ev.mac, at);
    return a ? [a] : [];
  }
  if (ev.kind === 'timeout') return [r.wsTimeout(ev.mac)];
  if (ev.kind === 'tags') return ev.tags.flatMap((t) => r.record(t, 'push', at).events);
  return [];
}

const acks = (events: RadioEvent[]): RadioEvent[] => events.filter((e) => e.type === 'ack');

/** A reconciler that knows MAC at updatecount 3 and has one upload for it stored at t=1000. */
function withSend(o: { updatecount?: number | null } = {}): OeplReconciler {
  const r = new OeplReconciler();
  r.record(rec({ updatecount: o.updatecount }), 'push', 500);
  const token = r.beginSend(MAC, 900);
  r.stored(MAC, token, 1000);
  return r;
}

describe('OEPL reconciliation rule', () => {
  it('reads the check-in interval from the AP clock difference, never from the gateway clock', () => {
    expect(checkInMsOf(rec({ lastseen: 1764700000, nextcheckin: 1764700040 }))).toBe(40_000);
    // An AP clock far from ours (the simulator in fast mode) gives the same interval.
    expect(checkInMsOf(rec({ lastseen: 4102444800, nextcheckin: 4102444900 }))).toBe(100_000);
    expect(checkInMsOf(rec({ lastseen: 0, nextcheckin: 0 }))).toBeNull();
  });

  it('needs pending == 0 and a higher updatecount (or another hash without updatecount)', () => {
    const base = { updateCount: 3, hash: 'AA' };
    expect(deliveredSince(base, rec({ pending: 0, updatecount: 4 }))).toBe(true);
    expect(deliveredSince(base, rec({ pending: 1, updatecount: 4 }))).toBe(false);
    expect(deliveredSince(base, rec({ pending: 0, updatecount: 3 }))).toBe(false);
    expect(deliveredSince({ updateCount: null, hash: 'AA00' }, rec({ pending: 0, updatecount: null, hash: 'BB00' }))).toBe(true);
    expect(deliveredSince({ updateCount: null, hash: 'BB00' }, rec({ pending: 0, updatecount: null, hash: 'bb00' }))).toBe(false);
  });
});

describe('OeplReconciler', () => {
  it('acks once from a pushed record when the WebSocket ack line was lost, and drops the later line', () => {
    const r = withSend();
    // The upload's own push: queued, nothing delivered.
    expect(frame(r, `{"tags":[${recJson({ pending: 1 })}]}`, 1100)).toEqual([]);
    const ev = r.record(rec({ pending: 0, updatecount: 4 }), 'push', 2000);
    expect(acks(ev.events)).toEqual([{ type: 'ack', mac: MAC, at: 2000 }]);
    expect(ev.reconciledAcks).toBe(1);
    expect(r.outstandingCount).toBe(0);
    // The same state again, and the log line arriving late: no second ack for the one send.
    expect(acks(r.record(rec({ pending: 0, updatecount: 4 }), 'poll', 2100).events)).toEqual([]);
    expect(frame(r, '{"logMsg":"0000A1B2C3D4E5F6 reports xfer complete\\r\\n"}', 2200)).toEqual([]);
  });

  it('acks once from the WebSocket line, and the record that follows adds nothing', () => {
    const r = withSend();
    expect(frame(r, '{"logMsg":"0000A1B2C3D4E5F6 reports xfer complete\\r\\n"}', 1500)).toEqual([{ type: 'ack', mac: MAC, at: 1500 }]);
    expect(acks(r.record(rec({ pending: 0, updatecount: 4 }), 'push', 1501).events)).toEqual([]);
    expect(r.outstandingCount).toBe(0);
  });

  it('reads the older firmware line (LF, "< " and a 12-digit MAC) as the same label', () => {
    const r = withSend();
    expect(frame(r, '{"logMsg":"< A1B2C3D4E5F6 reports xfer complete\\n"}', 1500)).toEqual([{ type: 'ack', mac: MAC, at: 1500 }]);
  });

  it('never acks on pending 0 alone: content identical to what the label shows, or a queue a restart dropped', () => {
    const r = withSend();
    expect(acks(r.record(rec({ pending: 0, updatecount: 3 }), 'push', 2000).events)).toEqual([]);
    expect(r.outstandingCount).toBe(1);
  });

  it('does not ack while newer content is still queued after an older transfer landed', () => {
    const r = withSend();
    expect(acks(r.record(rec({ pending: 1, updatecount: 4 }), 'push', 2000).events)).toEqual([]);
    expect(acks(r.record(rec({ pending: 0, updatecount: 5 }), 'push', 3000).events)).toEqual([{ type: 'ack', mac: MAC, at: 3000 }]);
  });

  it('uses the hash when the firmware reports no updatecount', () => {
    const r = withSend({ updatecount: null });
    expect(acks(r.record(rec({ pending: 0, updatecount: null }), 'push', 2000).events)).toEqual([]);
    const changed = rec({ pending: 0, updatecount: null, hash: '99887766554433220000000000000000' });
    expect(acks(r.record(changed, 'push', 2100).events)).toEqual([{ type: 'ack', mac: MAC, at: 2100 }]);
  });

  it('turns xfer timeout into transferFailed and forgets the send', () => {
    const r = withSend();
    expect(frame(r, '{"errMsg":"< 0000A1B2C3D4E5F6 xfer timeout\\n"}', 5000)).toEqual([{ type: 'transferFailed', mac: MAC, reason: expect.stringContaining('xfer timeout') }]);
    expect(r.outstandingCount).toBe(0);
    expect(acks(r.record(rec({ pending: 0, updatecount: 4 }), 'push', 5100).events)).toEqual([]);
  });

  it('forgets every outstanding send when the AP lost its queue', () => {
    const r = withSend();
    r.lost();
    expect(r.outstandingCount).toBe(0);
    expect(acks(r.record(rec({ pending: 0, updatecount: 4 }), 'push', 5100).events)).toEqual([]);
  });

  it('does not recreate a send that was acknowledged while its upload was still in flight', () => {
    const r = new OeplReconciler();
    r.record(rec({}), 'push', 500);
    const token = r.beginSend(MAC, 900);
    expect(frame(r, '{"logMsg":"0000A1B2C3D4E5F6 reports xfer complete\\r\\n"}', 950)).toHaveLength(1);
    r.stored(MAC, token, 1000);
    expect(r.outstandingCount).toBe(0);
    // A failed upload removes only its own entry.
    const t2 = r.beginSend(MAC, 1100);
    r.abandon(MAC, {});
    expect(r.outstandingCount).toBe(1);
    r.abandon(MAC, t2);
    expect(r.outstandingCount).toBe(0);
  });

  it('passes on a WebSocket ack for a send it never saw (the gateway restarted meanwhile)', () => {
    const r = new OeplReconciler();
    expect(frame(r, '{"logMsg":"7F00112233445566 reports xfer complete\\r\\n"}', 10)).toEqual([{ type: 'ack', mac: MAC2, at: 10 }]);
  });

  it('without a baseline (label never seen) only the WebSocket line acks', () => {
    const r = new OeplReconciler();
    const token = r.beginSend(MAC2, 100);
    r.stored(MAC2, token, 200);
    expect(acks(r.record(rec({ mac: MAC2, pending: 0, updatecount: 9 }), 'push', 300).events)).toEqual([]);
    expect(frame(r, '{"logMsg":"7F00112233445566 reports xfer complete\\r\\n"}', 400)).toHaveLength(1);
  });
});

describe('OeplReconciler heard events', () => {
  it('a walk reports labels seen within one check-in of the newest record, at the receipt time', () => {
    const r = new OeplReconciler();
    const newest = 4102444800; // the AP's clock: far from ours, as in the simulator's fast mode
    const ev = r.walk(
      [
        rec({ mac: MAC, lastseen: newest - 30, nextcheckin: newest + 10 }),
        rec({ mac: MAC2, lastseen: newest - 4000, nextcheckin: newest - 3960 }),
        rec({ mac: '0000000000000001', lastseen: newest }),
        rec({ mac: '0000000000000002', lastseen: 0, nextcheckin: 0 }),
      ],
      77_000,
    );
    const heard = ev.events.filter((e) => e.type === 'heard');
    expect(heard.map((e) => e.type === 'heard' && e.mac)).toEqual([MAC, '0000000000000001']);
    expect(heard[0]).toEqual({
      type: 'heard',
      mac: MAC,
      at: 77_000,
      health: { batteryMv: 2890, rssi: -61, lqi: 201, temperature: 21, hwType: 1, checkInMs: 40_000, nextCheckInAt: 117_000 },
    });
    expect(r.labels).toBe(4);
  });

  it('a push is a check-in only when lastseen moved on (uploads and transfers push too)', () => {
    const r = new OeplReconciler();
    expect(frame(r, `{"tags":[${recJson({ lastseen: 1764700000 })}]}`, 1)).toHaveLength(1);
    expect(frame(r, `{"tags":[${recJson({ lastseen: 1764700000, pending: 1 })}]}`, 2)).toHaveLength(0);
    expect(frame(r, `{"tags":[${recJson({ lastseen: 1764700040 })}]}`, 3)).toEqual([expect.objectContaining({ type: 'heard', at: 3 })]);
  });
});

describe('OeplReconciler bounds', () => {
  it('polls the oldest stored sends first, at most max, once old enough, and expires abandoned ones', () => {
    const r = new OeplReconciler({ maxLabels: 100, outstandingMaxMs: 60_000 });
    const macs = ['0000000000000001', '0000000000000002', '0000000000000003', '0000000000000004'];
    for (const m of macs) r.record(rec({ mac: m }), 'push', 0);
    const stored = [4000, 1000, 3000];
    macs.slice(0, 3).forEach((m, i) => r.stored(m, r.beginSend(m, stored[i]! - 10), stored[i]!));
    r.beginSend(macs[3]!, 500); // upload still in flight: nothing to poll yet
    expect(r.due(5000, 0, 2)).toEqual([macs[1], macs[2]]);
    // Default: one check-in of the label (40 s from its record).
    expect(r.due(41_500, null, 10)).toEqual([macs[1]]);
    expect(r.due(44_000, null, 10)).toEqual([macs[1], macs[2], macs[0]]);
    expect(r.due(70_000, 0, 10)).toEqual([]);
    expect(r.outstandingCount).toBe(0);
    expect(r.counters.expired).toBe(4);
  });

  it('keeps at most maxLabels labels and outstanding sends', () => {
    const r = new OeplReconciler({ maxLabels: 2, outstandingMaxMs: 60_000 });
    for (const m of ['0000000000000001', '0000000000000002', '0000000000000003']) {
      r.record(rec({ mac: m }), 'push', 0);
      r.stored(m, r.beginSend(m, 1), 2);
    }
    expect(r.labels).toBe(2);
    expect(r.counters.labelsOverCap).toBe(1);
    expect(r.outstandingCount).toBe(2);
    expect(r.counters.expired).toBe(1);
  });
});
