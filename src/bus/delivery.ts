/**
 * Online delivery path of the local bus: no client can hold up delivery to the others, and what
 * the broker queues for one client is bounded.
 *
 * Root cause in aedes 1.2 (measured, see test/e2e/bus-slow-consumer.test.ts): a subscriber's
 * delivery function (client.deliver0 / client.deliverQoS, registered as its mqemitter listener)
 * calls the emitter back only once the message is written AND, when the socket buffer is over its
 * high-water mark, once the socket drained (lib/write.js -> client.waitForDrain). mqemitter runs
 * at most `concurrency` (100) messages at once and a message is done only when every subscriber
 * called back. So 100 messages stuck on one non-reading subscriber stop the emitter for everyone
 * until aedes's drain timeout closes that subscriber; meanwhile every publish waits in
 * mqemitter's unbounded queue (the memory growth of issue #8).
 *
 * Fix, per client, with aedes's own objects (nothing in aedes is patched globally):
 * - deliver0/deliverQoS of each client are wrapped: the emitter is called back as soon as the
 *   message has been handed to the client's write path, never after a drain. The wait for the
 *   drain stays inside that client (aedes still calls our per-delivery completion after it),
 *   which is how we count the messages still queued for it.
 * - Per delivery, before aedes sees it, the bound is checked (`max_queued_bytes`:
 *   socket.writableLength, plus admitted bytes aedes has not written yet, plus held messages;
 *   `max_queued_messages`: deliveries handed to aedes and not completed plus held ones): over it
 *   a QoS 0 message is dropped and counted. authorizeForward (LocalBus) calls admit(), which
 *   counts what aedes is about to write. A client over twice
 *   the bound (QoS 1/2 cannot be dropped), or over the bound for `slow_consumer_timeout_s`, is
 *   disconnected; a sweep timer catches clients that stay over without new deliveries.
 * - Outbound in flight: at most `max_inflight` QoS 1/2 messages sent to a client and not yet
 *   acknowledged (PUBACK, or PUBCOMP for QoS 2: aedes emits 'ack' for both). Further live
 *   deliveries to it are held back here in order (QoS 0 ones behind them too, so aedes's
 *   per-client counter check, lib/client.js dedupe, still sees them in order) and sent as
 *   acknowledgements come in. Held messages count in the bound above. For a persistent session
 *   the QoS 1/2 ones are also in its aedes-persistence outgoing queue, so a disconnect loses none.
 * Retained messages sent on SUBSCRIBE (the only deliveries without a brokerId) keep aedes's own
 * flow control: that stream belongs to the one client and waits for its drains.
 */
import type { AedesPublishPacket, Client } from 'aedes';
import type { MqttConfig } from '../config/schema';
import type { LogLimiter } from '../log';

type DeliverFn = (packet: AedesPublishPacket, cb: () => void) => void;

interface DeliveringClient {
  deliver0: DeliverFn;
  deliverQoS: DeliverFn;
  conn: { writableLength: number; destroyed: boolean; destroy(err?: Error): void };
  id: string | null;
  closed: boolean;
}

/** What the wrapped deliver function is doing while aedes calls authorizeForward. */
const NONE = 0;
const LIVE_QOS0 = 1;
const LIVE_QOS = 2;

export interface DeliveryStats {
  /** QoS 0 messages not sent to a client because its delivery queue was over the bound. */
  slowConsumerDrops: number;
  /** Clients disconnected for staying over the queue bound or going past twice the bound. */
  slowConsumerDisconnects: number;
  /** Live deliveries held back because the client had `max_inflight` QoS 1/2 messages unacknowledged. */
  inflightHeld: number;
  /** Clients disconnected for holding more than `max_inbound_qos2` QoS 2 messages without PUBREL. */
  inboundQos2Disconnects: number;
}

interface Held {
  packet: AedesPublishPacket;
  bytes: number;
}

class ClientDelivery {
  /** Live deliveries handed to aedes's write path and not completed (completion waits for drains). */
  queued = 0;
  /** QoS 1/2 messages sent and not acknowledged. */
  inflight = 0;
  /** Live deliveries waiting for in-flight room, oldest first. */
  held: Held[] = [];
  heldHead = 0;
  heldBytes = 0;
  /**
   * Bytes of admitted deliveries aedes has not written to the socket yet (it writes each from a
   * setImmediate): not in writableLength yet, so counted here until a flush after their write.
   */
  unwritten = 0;
  /** Of `unwritten`, the bytes written before the next flush runs. */
  flushable = 0;
  /** Bytes of the delivery being admitted (set by send). */
  pendingBytes = 0;
  /** When the client was first seen over the bound (0: under it). */
  overSince = 0;
  mode = NONE;
  gone = false;
  /** aedes's completion of a live delivery: written, and the socket drained if it had to wait. */
  readonly done: () => void;
  orig0!: DeliverFn;
  origQ!: DeliverFn;

  constructor(
    readonly client: DeliveringClient,
    readonly who: () => { client_id: string | null; username?: string; address?: string },
  ) {
    this.done = () => {
      this.queued--;
    };
  }

  get heldCount(): number {
    return this.held.length - this.heldHead;
  }
}

export interface DeliveryGuardOptions {
  config: Pick<MqttConfig, 'max_queued_bytes' | 'max_queued_messages' | 'slow_consumer_timeout_s' | 'max_inflight' | 'max_inbound_qos2'>;
  limiter: LogLimiter;
  now: () => number;
  /** Who the client is, for logs (username and address come from the bus's identity). */
  describe: (client: Client) => { username?: string; address?: string };
  /** Sweep period; default 1 s (or a quarter of the timeout if shorter). */
  sweepMs?: number;
}

/** Overhead of an MQTT PUBLISH beside its topic and payload (fixed header, lengths, packet id). */
const PUBLISH_OVERHEAD = 9;

export class DeliveryGuard {
  private readonly states = new Map<Client, ClientDelivery>();
  private readonly maxBytes: number;
  private readonly maxMessages: number;
  private readonly timeoutMs: number;
  private readonly maxInflight: number;
  private sweepTimer: NodeJS.Timeout | null = null;
  /** Clients with unwritten bytes, and whether a flush is scheduled. */
  private readonly dirty = new Set<ClientDelivery>();
  private flushScheduled = false;
  private readonly flush = (): void => this.flushUnwritten();
  readonly counters: DeliveryStats = { slowConsumerDrops: 0, slowConsumerDisconnects: 0, inflightHeld: 0, inboundQos2Disconnects: 0 };

  constructor(private readonly o: DeliveryGuardOptions) {
    this.maxBytes = o.config.max_queued_bytes;
    this.maxMessages = o.config.max_queued_messages;
    this.timeoutMs = o.config.slow_consumer_timeout_s * 1000;
    this.maxInflight = o.config.max_inflight;
  }

  /** aedes option: inbound QoS 2 messages awaiting PUBREL per client (lib/handlers/publish.js). */
  get maxInflightInbound(): number {
    return this.o.config.max_inbound_qos2;
  }

  start(): void {
    if (this.sweepTimer) return;
    const period = this.o.sweepMs ?? Math.max(100, Math.min(1000, this.timeoutMs / 4));
    this.sweepTimer = setInterval(() => this.sweep(), period);
    this.sweepTimer.unref();
  }

  stop(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    this.dirty.clear();
    for (const st of this.states.values()) this.release(st);
    this.states.clear();
  }

  /** Per-client setup, right after broker.handle() created the aedes client (before any SUBSCRIBE). */
  attach(client: Client): void {
    const c = client as unknown as DeliveringClient;
    const st = new ClientDelivery(c, () => ({ client_id: c.id, ...this.o.describe(client) }));
    st.orig0 = c.deliver0;
    st.origQ = c.deliverQoS;
    // aedes registers client.deliver0 / client.deliverQoS as the subscription's listener at
    // SUBSCRIBE time (lib/handlers/subscribe.js addSubs), so replacing them here covers them all.
    c.deliver0 = (packet, cb) => {
      if (!packet.brokerId) return st.orig0(packet, cb); // retained on SUBSCRIBE: aedes's own per-client flow control
      if (st.gone) return cb(); // disconnected as a slow consumer, closing
      if (st.heldCount > 0) this.hold(st, packet);
      else this.send(st, packet);
      cb(); // the shared emitter never waits for this client's socket
    };
    c.deliverQoS = (packet, cb) => {
      if (!packet.brokerId) return st.origQ(packet, cb);
      if (st.gone) return cb();
      if (packet.qos === 0) return c.deliver0(packet, cb); // as aedes does
      if (st.heldCount > 0 || st.inflight >= this.maxInflight) this.hold(st, packet);
      else this.send(st, packet);
      cb();
    };
    this.states.set(client, st);
  }

  /** The client's connection closed. */
  detach(client: Client): void {
    const st = this.states.get(client);
    if (!st) return;
    this.release(st);
    this.states.delete(client);
  }

  /**
   * Called by authorizeForward for a delivery the ACL allows (false refuses it): counts what aedes
   * is about to write for a live delivery (its bytes; a QoS 1/2 one is in flight from now on).
   */
  admit(client: Client, packet: AedesPublishPacket): boolean {
    const st = this.states.get(client);
    if (!st || st.mode === NONE) return true;
    if (st.gone) return false;
    // aedes sends it at QoS 0 (no PUBACK will come) when the client also holds a QoS 0
    // subscription to exactly this topic (lib/client.js deliverQoS): not in flight then
    if (st.mode === LIVE_QOS && !sentAtQos0(client, packet)) st.inflight++;
    st.unwritten += st.pendingBytes;
    this.dirty.add(st);
    return true;
  }

  private drop(st: ClientDelivery): void {
    // [MQTT-3.3.5-1] says deliver to every matching subscription: over the bound a QoS 0
    // message (at most once) is not, as with Mosquitto's max_queued_messages.
    this.counters.slowConsumerDrops++;
    // once per drop during a flood: the log fields are made only when the limiter writes the line
    this.o.limiter.warn(
      `slow-drop:${st.client.id ?? ''}`,
      () => ({ ...st.who(), max_queued_bytes: this.maxBytes, max_queued_messages: this.maxMessages, slow_consumer_drops: this.counters.slowConsumerDrops }),
      'slow consumer: QoS 0 messages to it dropped while its delivery queue is over the bound',
    );
  }

  /** PUBACK or PUBCOMP from `client` (aedes 'ack' event): room for one more in flight. */
  onAck(client: Client): void {
    const st = this.states.get(client);
    if (!st) return;
    // An acknowledgement for an id we did not count (a message re-sent from the persistent
    // session on reconnect, or a stray one) must not push the count below zero.
    if (st.inflight > 0) st.inflight--;
    this.drainHeld(st);
  }

  /**
   * An aedes client error that is ours to count; returns true when it was. aedes closes the
   * connection of a client sending a QoS 2 PUBLISH while `maxInflightInbound` others await PUBREL
   * (lib/handlers/publish.js): no PUBREC for it, a departure from [MQTT-4.3.3-2] (MQTT 3.1.1 has
   * no receive window to announce) that bounds what one connection can make the broker keep.
   */
  onClientError(client: Client, err: Error): boolean {
    if (!err.message.startsWith('maxInflightInbound exceeded')) return false;
    this.counters.inboundQos2Disconnects++;
    const c = client as unknown as DeliveringClient;
    const who = { client_id: c.id, ...this.o.describe(client) };
    this.o.limiter.warn(
      `qos2-inbound:${who.username ?? who.address ?? ''}`,
      { ...who, max_inbound_qos2: this.maxInflightInbound },
      'client holds more QoS 2 messages without PUBREL than max_inbound_qos2: disconnected',
    );
    return true;
  }

  stats(): DeliveryStats {
    return { ...this.counters };
  }

  // ---- internals ----

  /**
   * The bound is checked here, before aedes sees the delivery: a delivery handed to aedes calls
   * back (and leaves `queued`) only a loop turn later, so one refused in authorizeForward would
   * still count meanwhile.
   */
  private send(st: ClientDelivery, packet: AedesPublishPacket, bytes = packetBytes(packet)): void {
    const qos0 = packet.qos === 0;
    const over = this.check(st);
    if (over === 2) return; // disconnected
    if (over === 1 && qos0) return this.drop(st); // QoS 1/2 is not dropped: it waits, up to the hard cap
    st.queued++;
    st.mode = qos0 ? LIVE_QOS0 : LIVE_QOS;
    st.pendingBytes = bytes;
    try {
      if (qos0) st.orig0(packet, st.done);
      else st.origQ(packet, st.done);
    } finally {
      st.mode = NONE;
    }
    this.scheduleFlush();
  }

  /**
   * aedes has queued the write of each admitted delivery (setImmediate) before this is called,
   * so a flush scheduled now runs after those writes: the bytes admitted so far may then leave
   * `unwritten` (they are in writableLength). One setImmediate per loop turn, not per message.
   */
  private scheduleFlush(): void {
    if (this.flushScheduled || this.dirty.size === 0) return;
    for (const st of this.dirty) st.flushable = st.unwritten;
    this.flushScheduled = true;
    setImmediate(this.flush);
  }

  private flushUnwritten(): void {
    this.flushScheduled = false;
    for (const st of this.dirty) {
      st.unwritten -= st.flushable;
      st.flushable = 0;
      if (st.unwritten <= 0 || st.gone) {
        st.unwritten = 0;
        this.dirty.delete(st);
      }
    }
    // deliveries admitted while this flush was pending: their writes are queued by now
    this.scheduleFlush();
  }

  private hold(st: ClientDelivery, packet: AedesPublishPacket): void {
    const bytes = packetBytes(packet);
    st.held.push({ packet, bytes });
    st.heldBytes += bytes;
    this.counters.inflightHeld++;
    const over = this.check(st);
    if (over === 1 && packet.qos === 0) {
      // keep the QoS 0 bound: the newest QoS 0 goes (QoS 1/2 ones wait, up to the hard cap)
      st.held.pop();
      st.heldBytes -= bytes;
      this.drop(st);
    }
  }

  /** Sends held messages while there is in-flight room, in order. */
  private drainHeld(st: ClientDelivery): void {
    while (st.heldHead < st.held.length && !st.gone) {
      const h = st.held[st.heldHead]!;
      if (h.packet.qos > 0 && st.inflight >= this.maxInflight) break;
      st.held[st.heldHead] = undefined as unknown as Held;
      st.heldHead++;
      st.heldBytes -= h.bytes;
      this.send(st, h.packet, h.bytes);
    }
    if (st.heldHead === st.held.length) {
      st.held = [];
      st.heldHead = 0;
    } else if (st.heldHead > 1024 && st.heldHead * 2 > st.held.length) {
      st.held = st.held.slice(st.heldHead);
      st.heldHead = 0;
    }
  }

  /** 0 under the bound, 1 over it, 2 over the hard cap or for too long (then disconnected). */
  private check(st: ClientDelivery): 0 | 1 | 2 {
    if (st.gone) return 2;
    const writable = st.client.conn.writableLength;
    // Between aedes's write and the next flush a delivery is in both writableLength and
    // `unwritten`: the sum (for the bound) may count it twice for one loop turn, the larger
    // of the two (for the hard cap) never does.
    const bytes = writable + st.unwritten + st.heldBytes;
    const messages = st.queued + st.heldCount;
    if (bytes <= this.maxBytes && messages <= this.maxMessages) {
      st.overSince = 0;
      return 0;
    }
    const t = this.o.now();
    if (st.overSince === 0) st.overSince = t;
    if (Math.max(writable, st.unwritten) + st.heldBytes > 2 * this.maxBytes || messages > 2 * this.maxMessages) {
      this.disconnect(st, bytes, messages, 'delivery queue over twice the bound');
      return 2;
    }
    if (t - st.overSince >= this.timeoutMs) {
      this.disconnect(st, bytes, messages, `delivery queue over the bound for ${this.timeoutMs / 1000} s`);
      return 2;
    }
    return 1;
  }

  private sweep(): void {
    for (const st of this.states.values()) {
      if (st.gone) continue;
      if (st.client.closed) continue;
      this.check(st);
    }
  }

  private disconnect(st: ClientDelivery, bytes: number, messages: number, reason: string): void {
    if (st.gone) return;
    this.counters.slowConsumerDisconnects++;
    const who = st.who();
    this.o.limiter.warn(
      `slow-disconnect:${who.username ?? who.client_id ?? ''}`,
      { ...who, queued_bytes: bytes, queued_messages: messages, max_queued_bytes: this.maxBytes, max_queued_messages: this.maxMessages, reason, slow_consumer_drops: this.counters.slowConsumerDrops },
      'slow consumer disconnected',
    );
    this.release(st);
    // aedes closes the client on the socket's close (a will is published: this is not a DISCONNECT)
    if (!st.client.conn.destroyed) st.client.conn.destroy();
  }

  private release(st: ClientDelivery): void {
    st.gone = true;
    st.held = [];
    st.heldHead = 0;
    st.heldBytes = 0;
    this.dirty.delete(st);
  }
}

/** aedes 1.2 downgrades a delivery to the QoS of the client's subscription whose filter equals the topic, if lower. */
function sentAtQos0(client: Client, packet: AedesPublishPacket): boolean {
  const sub = (client as unknown as { subscriptions?: Record<string, { qos?: number } | undefined> }).subscriptions?.[packet.topic];
  return sub !== undefined && (sub.qos ?? 0) === 0;
}

function packetBytes(packet: AedesPublishPacket): number {
  const payload = packet.payload;
  return PUBLISH_OVERHEAD + packet.topic.length + (typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length);
}
