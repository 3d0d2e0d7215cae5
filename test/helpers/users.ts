/**
 * Bus users for test configs: several users sharing one password hash. Kept free of the bus's
 * own modules so that daemon (e2e) tests can use it without loading the broker.
 */
import { hashPassword } from '../../src/bus/auth';
import type { MqttConfig } from '../../src/config/schema';

export type BusUser = MqttConfig['users'][number];

/** A password hash that is fast to make and check: N=1024 (production hashes use N=16384, shelfgate passwd). */
export function fastHash(password: string): Promise<string> {
  return hashPassword(password, { N: 1024 });
}

/** Users that all have the password hash `hash`, from `username: role` pairs (in that order). */
export function usersWithHash(hash: string, roles: Record<string, BusUser['role']>): BusUser[] {
  return Object.entries(roles).map(([username, role]) => ({ username, password_hash: hash, role }));
}
