/**
 * One ScannerSource per configured scanner, by kind, each on its own ReconnectingLink:
 * - `serial`: the transport the port names (serial device, tcp://, mock://) and a ScanFramer with
 *   the scanner's terminator;
 * - `hid`: the input event device (src/transport/evdev.ts) and a KeyboardWedgeDecoder (US keymap).
 */
import { ScanFramer } from '../../drivers/barcode';
import { KeyboardWedgeDecoder } from '../../drivers/evdev';
import type { Logger } from '../../log';
import { evdevOpener } from '../../transport/evdev';
import { openerFor } from '../../transport/opener';
import { ReconnectingLink } from '../../transport/reconnecting';
import type { SerialSettings } from '../../transport/types';
import { scannerPath, type ScannerConfig } from './config';
import { ScannerSource, type ScanLineDecoder } from './source';

export interface BuiltScanner {
  source: ScannerSource;
  link: ReconnectingLink;
  /** For the device registry. */
  info: { kind: string; model: string; path: string };
}

/** 8N1: what RS-232 scanners ship with (the baud rate is configured). */
export function scannerSerial(baudRate: number): SerialSettings {
  return { baudRate, dataBits: 8, parity: 'none', stopBits: 1 };
}

export function createScanner(s: ScannerConfig, log: Logger): BuiltScanner {
  const path = scannerPath(s);
  let decoder: ScanLineDecoder;
  let opener;
  if (s.kind === 'serial') {
    opener = openerFor(s.port, scannerSerial(s.baud_rate));
    const framer = new ScanFramer({ terminator: s.terminator, maxLineBytes: s.max_line });
    decoder = framer;
  } else {
    opener = evdevOpener(s.device, { pollMs: s.poll_ms });
    decoder = new KeyboardWedgeDecoder({ terminator: s.terminator, maxLineChars: s.max_line, ...(s.record_size !== undefined ? { recordSize: s.record_size } : {}) });
  }
  const link = new ReconnectingLink({
    name: s.id,
    opener,
    backoff: { initialMs: s.reconnect.initial_ms, maxMs: s.reconnect.max_ms },
    log: log.child({ module: 'link', scanner: s.id }),
  });
  const source = new ScannerSource({
    scanner: s.id,
    link,
    decoder,
    aimPrefix: s.aim_prefix,
    emitNonGtin: s.non_gtin === 'emit',
    log: log.child({ module: 'scanner', scanner: s.id }),
  });
  return { source, link, info: { kind: s.kind === 'serial' ? 'scanner-serial' : 'scanner-hid', model: 'barcode-scanner', path } };
}
