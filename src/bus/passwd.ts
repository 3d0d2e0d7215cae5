/**
 * `shelfgate passwd`: turns a password into the `password_hash` of an mqtt.users[] entry.
 * Reading the password (stdin, no echo) is the CLI's job; this only hashes.
 */
import { ErrorCode, ShelfgateError } from '../errors';
import { hashPassword } from './auth';

/** Hashes `password` with the default scrypt parameters; refuses an empty password. */
export async function hashForCli(password: string): Promise<string> {
  if (password.length === 0) throw new ShelfgateError(ErrorCode.REQUEST_INVALID, 'empty password');
  return hashPassword(password);
}
