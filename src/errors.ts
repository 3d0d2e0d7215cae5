/**
 * One catalogue of error codes (after fastify's lib/errors.js).
 * Callers branch on `code`, never on message text.
 */
export const ErrorCode = {
  CONFIG_INVALID: 'SG_CONFIG_INVALID',
  CONFIG_UNREADABLE: 'SG_CONFIG_UNREADABLE',
  DEVICE_MODEL_UNKNOWN: 'SG_DEVICE_MODEL_UNKNOWN',
  DEVICE_DEFINITION_INVALID: 'SG_DEVICE_DEFINITION_INVALID',
  TRANSPORT_CLOSED: 'SG_TRANSPORT_CLOSED',
  TRANSPORT_OPEN_FAILED: 'SG_TRANSPORT_OPEN_FAILED',
  TRANSPORT_PATH_INVALID: 'SG_TRANSPORT_PATH_INVALID',
  DEVICE_TIMEOUT: 'SG_DEVICE_TIMEOUT',
  FRAME_CRC: 'SG_FRAME_CRC',
  FRAME_INVALID: 'SG_FRAME_INVALID',
  DEVICE_ERROR_RESPONSE: 'SG_DEVICE_ERROR_RESPONSE',
  STORAGE_INTEGRITY: 'SG_STORAGE_INTEGRITY',
  STORAGE_MIGRATION: 'SG_STORAGE_MIGRATION',
  BUS_AUTH_FAILED: 'SG_BUS_AUTH_FAILED',
  BUS_NOT_AUTHORIZED: 'SG_BUS_NOT_AUTHORIZED',
  REQUEST_INVALID: 'SG_REQUEST_INVALID',
  NOT_FOUND: 'SG_NOT_FOUND',
  STOPPED: 'SG_STOPPED',
  STORAGE_WRITE_FAILED: 'SG_STORAGE_WRITE_FAILED',
  INTERNAL: 'SG_INTERNAL',
  /** Upstream failure worth retrying (network, timeout, 5xx, 429). */
  SYNC_RETRYABLE: 'SG_SYNC_RETRYABLE',
  /** Upstream refused us for good (401/403, contract violation): needs an operator. */
  SYNC_FATAL: 'SG_SYNC_FATAL',
  /** Too much in progress for this client (e.g. requests on one MQTT connection): retry later. */
  BUSY: 'SG_BUSY',
  /** A device the request needs (an access point, a reader) cannot be reached now: retry later. */
  DEVICE_UNREACHABLE: 'SG_DEVICE_UNREACHABLE',
  /** A calibration needs a settled weight and the shelf is still moving: retry when it is still. */
  NOT_SETTLED: 'SG_NOT_SETTLED',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class ShelfgateError extends Error {
  readonly code: ErrorCode;
  readonly details?: unknown;
  constructor(code: ErrorCode, message: string, details?: unknown, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ShelfgateError';
    this.code = code;
    this.details = details;
  }
}

export function isShelfgateError(e: unknown, code?: ErrorCode): e is ShelfgateError {
  return e instanceof ShelfgateError && (code === undefined || e.code === code);
}

/** Process exit codes (sysexits.h where one fits). systemd's unit does not restart on 78. */
export const ExitCode = {
  OK: 0,
  FAILURE: 1,
  USAGE: 64, // EX_USAGE: bad command line
  UNAVAILABLE: 69, // EX_UNAVAILABLE: a required resource (port, database) could not be had
  SOFTWARE: 70, // EX_SOFTWARE: internal error
  CANTCREAT: 73, // EX_CANTCREAT: cannot create the state directory or database
  CONFIG: 78, // EX_CONFIG: the configuration is invalid; do not restart
} as const;
