/**
 * Hands every publish of an aedes broker to its subscribers in the order publish() was called.
 *
 * Why: aedes 1.2 numbers each message when publish() is called (aedes-packet: brokerCounter =
 * ++broker.counter) and delivers a message to a client only if its number is higher than the
 * last one that client received (lib/client.js `dedupe`, meant to drop the second copy of a
 * message matching two of the client's subscriptions). But a message reaches the subscribers
 * (broker.mq.emit) only after its persistence steps (aedes.js publish: a retained message is
 * stored first, a QoS 1/2 one is queued for offline sessions), each at least one promise
 * resolution later. A publish with fewer steps made at the same moment (a non-retained event
 * beside a retained availability) overtakes it, and every client that receives both silently
 * loses the older-numbered one: a `#` subscriber missed the retained availability that a
 * `device/#` subscriber got. docs/aedes-ordering.md has the details and the reproduction.
 *
 * How: one publish at a time is between its start and its hand-over (mq.emit); the ones made
 * meanwhile wait in a FIFO and start as soon as it is handed over. So messages are numbered and
 * handed over in the same order, and mqemitter delivers in hand-over order. It covers every
 * publisher of the broker: the gateway (LocalBus.publish), clients (wire PUBLISH), wills and
 * aedes's own $SYS messages, since all of them call the broker's publish().
 * The wait ends at the hand-over, not when deliveries are written: a slow subscriber delays no
 * one. With aedes's in-memory persistence it is a few microtasks. Should a publish never reach
 * the hand-over nor call back (aedes emits 'error' on the broker in its one such path, which
 * ends the process as there is no listener), the ones after it would wait for ever.
 */
import type { Aedes, Client, PublishPacket } from 'aedes';

type PublishDone = (this: unknown, error?: Error | null) => void;

interface Waiting {
  packet: PublishPacket;
  client: Client | null;
  done: PublishDone | undefined;
  next: Waiting | null;
}

interface Emitter {
  emit(this: unknown, packet: unknown, cb?: (error?: Error) => void): unknown;
}

type RawPublish = (this: Aedes, packet: PublishPacket, client: Client | null, done?: PublishDone) => void;

export interface PublishOrderStats {
  /** Publishes that had to wait for an earlier one to be handed over. */
  waited: number;
  /** Most publishes waiting at once. */
  maxWaiting: number;
}

/**
 * Installs the ordering on `broker` (call once, right after Aedes.createBroker). Returns live
 * counters.
 */
export function orderPublishes(broker: Aedes): PublishOrderStats {
  const mq = (broker as unknown as { mq: Emitter }).mq;
  const rawPublish = (broker as unknown as { publish: RawPublish }).publish;
  const rawEmit = mq.emit;
  const stats: PublishOrderStats = { waited: 0, maxWaiting: 0 };
  /** Id of the publish started and not yet handed over; 0 when none. */
  let current = 0;
  let lastId = 0;
  let head: Waiting | null = null;
  let tail: Waiting | null = null;
  let waiting = 0;
  let draining = false;

  function start(packet: PublishPacket, client: Client | null, done: PublishDone | undefined): void {
    const id = ++lastId;
    current = id;
    try {
      rawPublish.call(broker, packet, client, function publishDone(this: unknown, err?: Error | null) {
        // failed before its hand-over (e.g. the store step failed): the next may go
        if (current === id) release();
        if (done) done.call(this, err);
      });
    } catch (e) {
      if (current === id) release();
      throw e;
    }
  }

  function release(): void {
    current = 0;
    if (!draining) drain();
  }

  // A loop, not recursion: a publish that is handed over synchronously releases the next one
  // inside start(), and a burst of thousands must not grow the stack.
  function drain(): void {
    draining = true;
    try {
      while (current === 0 && head !== null) {
        const w: Waiting = head;
        head = w.next;
        if (head === null) tail = null;
        waiting--;
        start(w.packet, w.client, w.done);
      }
    } finally {
      draining = false;
    }
  }

  mq.emit = function orderedEmit(this: unknown, packet: unknown, cb?: (error?: Error) => void): unknown {
    // Only the current publish can be handed over now (all others wait or are handed over).
    // Hand it over first, then let the next start: it must not be numbered or handed over before
    // this one. When every subscriber answers synchronously (aedes's own $SYS listeners do), the
    // publish completes inside rawEmit and its callback has already let the next ones start:
    // then `current` is another publish's, still in its store step, and must stay.
    const id = current;
    const r = rawEmit.call(this, packet, cb);
    if (id !== 0 && current === id) release();
    return r;
  };

  (broker as unknown as { publish: RawPublish }).publish = function orderedPublish(
    this: Aedes,
    packet: PublishPacket,
    client: Client | null | PublishDone,
    done?: PublishDone,
  ): void {
    if (typeof client === 'function') {
      done = client;
      client = null;
    }
    if (current === 0 && head === null) return start(packet, client, done);
    const w: Waiting = { packet, client, done, next: null };
    if (tail === null) head = w;
    else tail.next = w;
    tail = w;
    stats.waited++;
    if (++waiting > stats.maxWaiting) stats.maxWaiting = waiting;
    // none in progress (a publish that threw left the queue standing): start the oldest now
    if (current === 0 && !draining) drain();
  };
  return stats;
}
