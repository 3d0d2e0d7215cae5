/**
 * An in-process LocalBus for integration tests: users sharing one fast password hash, the mqtt
 * section through the schema (every bound its production default unless the test sets it), and a
 * started bus on 127.0.0.1, port 0. Stopping it is the caller's (each test file has its own cleanup).
 */
import { LocalBus, type LocalBusOptions } from '../../src/bus/broker';
import { coreConfigShape, type MqttConfig } from '../../src/config/schema';
import { BUILTIN_FEATURES } from '../../src/features';
import { silentLogger } from '../../src/log';
import type { BusUser } from './users';

export { fastHash, usersWithHash, type BusUser } from './users';

/** The mqtt config section for a bus on 127.0.0.1, port 0, parsed by the schema. */
export function localMqttConfig(users: BusUser[], over: Partial<MqttConfig> = {}): MqttConfig {
  return coreConfigShape.mqtt.parse({ host: '127.0.0.1', port: 0, users, ...over });
}

export interface StartLocalBusOptions extends Partial<Omit<LocalBusOptions, 'config' | 'storeId'>> {
  /** Declare the built-in features' topic areas (shelf/#) and version 'test', as the daemon's bus does. */
  features?: boolean;
}

/** Starts a LocalBus in process (silent log unless `log` is given). */
export async function startLocalBus(config: MqttConfig, storeId: string, opts: StartLocalBusOptions = {}): Promise<LocalBus> {
  const { features, ...rest } = opts;
  const declared = features ? { version: 'test', topicAreas: BUILTIN_FEATURES.flatMap((f) => f.topics ?? []) } : {};
  const bus = new LocalBus({ config, storeId, log: silentLogger(), ...declared, ...rest });
  await bus.start();
  return bus;
}
