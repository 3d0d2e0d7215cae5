/**
 * The scanners feature's slice of the one config: `scanners: [...]`, one entry per barcode scanner
 * (absent or empty = no scanners).
 *
 * Design choices:
 * - A union discriminated by `kind`: `serial` (RS-232 or USB-CDC scanners, one read per line, on
 *   a serial device, a TCP serial server or a mock) and `hid` (USB keyboard-wedge scanners read as
 *   Linux input events from `/dev/input/by-id/...-event-kbd`). The keys they share mean the same.
 * - `terminator` is the scanner's suffix: `cr` (the factory default of most), `crlf`, `lf` or `etx`
 *   for serial; `enter` or `tab` for HID.
 * - An AIM identifier at the front of a read is always recognised and stripped. `aim_prefix: true`
 *   says the scanner is set to send one; then a read without one is a misread (the scanner's settings and the gateway's disagree, or a byte was
 *   lost). Recommended: it tells EAN-8 from a truncated EAN-13 and GS1 data from plain Code 128.
 * - `kiosk` binds the scanner to a kiosk id: its reads carry that id (`BarcodeScanned.kioskId`) and
 *   the kiosk feature answers on that kiosk's topic and page. The kiosk ids live in the kiosk
 *   feature's config, which this feature cannot see: the id's form is checked here, its existence
 *   there.
 * - `non_gtin`: a code that is fine but carries no GTIN (a loyalty card in Code 128, an SSCC) is
 *   counted and dropped (`ignore`, the default: a price checker has nothing to show for it) or
 *   emitted with `gtin: null` (`emit`).
 * - A scanner id is a device id (availability on `device/<id>/availability`): it must not collide
 *   with a weight bus's or an RFID reader's.
 */
import { z } from 'zod';
import { backoff, id, type Config } from '../../config/schema';
import type { ConfigIssue } from '../../config/load';

const common = {
  id,
  /** Reads carry this kiosk id (the kiosk feature answers on that kiosk's topic and page). */
  kiosk: id.optional(),
  /** The scanner is set to send AIM symbology identifiers (`]E0`, `]C1`, ...). */
  aim_prefix: z.boolean().default(false),
  /** Longest read accepted; longer ones are dropped and counted (GS1 DataMatrix can carry a few hundred characters). */
  max_line: z.number().int().min(16).max(4096).default(512),
  /** A code without a GTIN: `ignore` (count and drop) or `emit` (with gtin null). */
  non_gtin: z.enum(['ignore', 'emit']).default('ignore'),
  reconnect: backoff,
};

export const serialScannerSchema = z.strictObject({
  ...common,
  kind: z.literal('serial'),
  /** `/dev/serial/by-id/...` (recommended), `/dev/ttyACM0`, `tcp://host:port` (a TCP serial server) or `mock://name` (tests). */
  port: z.string().min(1, 'must not be empty'),
  /** The scanner's suffix after each read. */
  terminator: z.enum(['cr', 'crlf', 'lf', 'etx']).default('cr'),
  /** Ignored by USB-CDC scanners and tcp://; RS-232 scanners ship at 9600 8N1. */
  baud_rate: z.number().int().positive().default(9600),
});

export const hidScannerSchema = z.strictObject({
  ...common,
  kind: z.literal('hid'),
  /** `/dev/input/by-id/usb-...-event-kbd`: the by-id path survives re-plugging into another port. */
  device: z.string().min(1, 'must not be empty'),
  /** The key the scanner sends after each read. */
  terminator: z.enum(['enter', 'tab']).default('enter'),
  /** struct input_event size: 24 on 64-bit, 16 on 32-bit userspace; default from the running Node (process.arch). */
  record_size: z.union([z.literal(16), z.literal(24)]).optional(),
  /** The device is read without blocking, every this many ms (docs/scanners.md: why). */
  poll_ms: z.number().int().min(1).max(100).default(8),
});

export const scannerSchema = z.discriminatedUnion('kind', [serialScannerSchema, hidScannerSchema]);
export const scannersSchema = z.array(scannerSchema);

export type ScannerConfig = z.output<typeof scannerSchema>;
export type SerialScannerConfig = z.output<typeof serialScannerSchema>;
export type HidScannerConfig = z.output<typeof hidScannerSchema>;

export const scannersConfigShape = { scanners: scannersSchema.optional() };

/** The configured scanners ([] when none). */
export function scannersSlice(config: Config): ScannerConfig[] {
  return (config as unknown as { scanners?: ScannerConfig[] }).scanners ?? [];
}

/** Where the scanner is reached (its `port` or `device`). */
export function scannerPath(s: ScannerConfig): string {
  return s.kind === 'serial' ? s.port : s.device;
}

const PORT_RE = /^(tcp:\/\/[^:/]+:\d{1,5}|tcp:\/\/\[[0-9A-Fa-f:.]+\]:\d{1,5}|mock:\/\/.+|\/.+)$/;

/** Duplicate ids and paths, ids that are another device's, paths of the wrong form. */
export function validateScanners(config: Config): ConfigIssue[] {
  const list = scannersSlice(config);
  const issues: ConfigIssue[] = [];
  const other = config as unknown as { buses?: Array<{ id: string }>; rfid?: { readers?: Array<{ id: string }> } };
  const busIds = (other.buses ?? []).map((b) => b.id);
  const readerIds = new Set((other.rfid?.readers ?? []).map((r) => r.id));
  const ids = new Set<string>();
  const paths = new Map<string, string>();
  list.forEach((s, i) => {
    const at = `scanners[${i}]`;
    if (ids.has(s.id)) issues.push({ path: `${at}.id`, message: `duplicate scanner id "${s.id}"` });
    ids.add(s.id);
    if (busIds.some((b) => s.id === b || s.id.startsWith(`${b}.`))) issues.push({ path: `${at}.id`, message: `"${s.id}" is already a weight bus's device id` });
    if (readerIds.has(s.id)) issues.push({ path: `${at}.id`, message: `"${s.id}" is already an RFID reader's device id` });
    const key = s.kind === 'serial' ? 'port' : 'device';
    const path = scannerPath(s);
    if (s.kind === 'serial' && !PORT_RE.test(path)) issues.push({ path: `${at}.port`, message: 'must be an absolute device path (/dev/serial/by-id/...), tcp://host:port or mock://name' });
    if (s.kind === 'hid' && !path.startsWith('/')) issues.push({ path: `${at}.device`, message: 'must be an absolute path of an input event device (/dev/input/by-id/...-event-kbd)' });
    const norm = path.startsWith('tcp://') ? path.toLowerCase() : path;
    const owner = paths.get(norm);
    if (owner !== undefined) issues.push({ path: `${at}.${key}`, message: `the same device as scanner "${owner}"` });
    else paths.set(norm, s.id);
  });
  return issues;
}
