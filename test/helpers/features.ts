import { EventKinds } from '../../src/core/event-kinds';
import { BUILTIN_FEATURES } from '../../src/features';

/** The outbox event kinds the built-in features declare (what the daemon's buffer policy reads). */
export function builtinKinds(): EventKinds {
  const kinds = new EventKinds();
  for (const f of BUILTIN_FEATURES) kinds.register(f.name, f.eventKinds ?? []);
  return kinds;
}
