import { ErrorCode, ShelfgateError } from '../errors';
import { mockOpener } from './mock';
import { serialOpener } from './serial';
import { tcpOpener } from './tcp';
import type { Opener, SerialSettings } from './types';

/**
 * Picks the transport from a bus `path` (after zwave-js's bindings: the path alone decides):
 * - `tcp://host:port` (ser2net raw mode, Ethernet RS-485 gateways; `[v6addr]` allowed) -> TCP;
 * - `mock://name` -> the MockDevice registered under that name (tests, demo);
 * - an absolute path (`/dev/serial/by-id/...`, `/dev/ttyUSB0`) -> serial; `settings` apply only here.
 * Throws TRANSPORT_PATH_INVALID for anything else. Nothing is opened here.
 */
export function openerFor(path: string, settings: SerialSettings): Opener {
  if (path.startsWith('tcp://')) {
    const m = /^tcp:\/\/(\[[0-9a-fA-F:.]+\]|[^:/[\]]+):(\d{1,5})\/?$/.exec(path);
    const port = m ? Number(m[2]) : 0;
    if (!m || port < 1 || port > 65535) throw invalid(path, 'expected tcp://host:port with a port 1-65535');
    return tcpOpener(m[1]!.replace(/^\[|\]$/g, ''), port);
  }
  if (path.startsWith('mock://')) {
    const name = path.slice('mock://'.length);
    if (!name) throw invalid(path, 'expected mock://name');
    return mockOpener(name);
  }
  if (path.startsWith('/')) return serialOpener(path, settings);
  throw invalid(path, 'expected an absolute device path (/dev/serial/by-id/...), tcp://host:port or mock://name');
}

function invalid(path: string, why: string): ShelfgateError {
  return new ShelfgateError(ErrorCode.TRANSPORT_PATH_INVALID, `invalid transport path "${path}": ${why}`, { path });
}
