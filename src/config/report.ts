import { ErrorCode, ExitCode, isShelfgateError } from '../errors';
import { ConfigInvalidError, formatIssues, type ConfigIssue } from './load';

/** `FILE: warning: <path>: <message>` lines (no path: `FILE: warning: <message>`), for stderr. */
export function formatWarnings(file: string, warnings: readonly ConfigIssue[]): string {
  return warnings.map((w) => `${file}: warning: ${w.path ? `${w.path}: ` : ''}${w.message}\n`).join('');
}

/** Prints every config issue, one per line, to stderr and returns EX_CONFIG (78); rethrows anything else. */
export function reportConfigError(file: string, e: unknown): number {
  if (isShelfgateError(e) && (e.code === ErrorCode.CONFIG_INVALID || e.code === ErrorCode.CONFIG_UNREADABLE)) {
    const issues = (e.details as ConfigIssue[]) ?? [];
    if (e instanceof ConfigInvalidError) process.stderr.write(formatWarnings(file, e.warnings));
    process.stderr.write(`${file}: invalid configuration (${issues.length} error${issues.length === 1 ? '' : 's'})\n${formatIssues(issues)}\n`);
    return ExitCode.CONFIG;
  }
  if (isShelfgateError(e) && e.code === ErrorCode.DEVICE_DEFINITION_INVALID) {
    process.stderr.write(`device definitions invalid: ${e.message}\n${JSON.stringify(e.details ?? '')}\n`);
    return ExitCode.CONFIG;
  }
  throw e;
}
