/**
 * One tag-read source per configured reader, by reader kind. Every kind yields the same reading
 * (`TagRead` of ./m100-source.ts: reader id, 1-based antenna, EPC hex, RSSI) and reports the
 * availability of one device, the reader id, so the service and the device registry never look at
 * the kind.
 *
 * Adding a kind: its config schema in ./config.ts `readerSchema`, and one `case` below that
 * builds its source (and the Services it needs started before it, e.g. its own connection).
 *
 * An LLRP reader is one LlrpSource (its session connects and reconnects by itself: no link
 * Service) with one ROSpec per zone that uses it, laid out by llrpZonePlans() in ./config.ts.
 */
import type { Source } from '../../core/sources/types';
import { M100_FRAMING_AADD, M100_FRAMING_BB7E } from '../../drivers/m100';
import type { Service } from '../../lifecycle';
import type { Logger } from '../../log';
import { openerFor } from '../../transport/opener';
import { ReconnectingLink } from '../../transport/reconnecting';
import { llrpEndpoint, llrpZonePlans, type RfidReaderConfig, type RfidZoneConfig } from './config';
import { LlrpSource } from './llrp-source';
import { M100_SERIAL, M100Source, type TagRead } from './m100-source';

export interface BuiltReader {
  source: Source<TagRead>;
  /** Started before the sources (links, connections); stopped after them. */
  services: Service[];
  /** For the device registry: what kind of device the reader is. */
  info: { kind: string; model: string; path: string };
}

/** `zones`: the config's zones (an LLRP reader's ROSpecs come from the zones that use it). */
export function createRfidSource(r: RfidReaderConfig, log: Logger, zones: readonly RfidZoneConfig[] = []): BuiltReader {
  switch (r.kind) {
    case 'm100': {
      const link = new ReconnectingLink({
        name: r.id,
        opener: openerFor(r.path, { ...M100_SERIAL, baudRate: r.baud_rate }),
        backoff: { initialMs: r.reconnect.initial_ms, maxMs: r.reconnect.max_ms },
        log: log.child({ module: 'link', reader: r.id }),
      });
      const source = new M100Source({
        name: `source:${r.id}`,
        reader: r.id,
        link,
        log: log.child({ module: 'm100', reader: r.id }),
        framing: r.framing === 'aadd' ? M100_FRAMING_AADD : M100_FRAMING_BB7E,
        ...(r.tx_power_dbm !== undefined ? { txPowerDbm: r.tx_power_dbm } : {}),
        probeMs: r.probe_ms,
        rearmMs: Math.max(r.probe_ms + 1, Math.round(r.probe_ms * 1.5)),
        silenceMs: r.offline_after_ms ?? 3 * r.probe_ms,
      });
      return { source, services: [link], info: { kind: 'm100', model: 'magicrf-m100', path: r.path } };
    }
    case 'llrp': {
      const source = new LlrpSource({
        name: `source:${r.id}`,
        reader: r.id,
        address: llrpEndpoint(r.address, r.tls !== undefined),
        ...(r.tls ? { tls: { caFile: r.tls.ca_file, certFile: r.tls.cert_file, keyFile: r.tls.key_file, serverName: r.tls.server_name } } : {}),
        zones: llrpZonePlans(r, zones).map((p) => ({ rospecId: p.rospecId, antennas: p.antennas, trigger: p.trigger })),
        log: log.child({ module: 'llrp' }), // the session puts `reader` on its lines itself
        keepaliveMs: r.keepalive_ms,
        missedKeepalives: r.missed_keepalives,
        backoff: { initialMs: r.reconnect.initial_ms, maxMs: r.reconnect.max_ms },
      });
      return { source, services: [], info: { kind: 'llrp', model: 'llrp-1.0.1', path: r.tls ? llrpEndpoint(r.address, true).replace('tcp://', 'tls://') : r.address } };
    }
  }
}
