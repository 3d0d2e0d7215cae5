/**
 * A raw MQTT 3.1.1 connection (mqtt-packet on a net socket) for bus tests that must decide what a
 * client reads and answers: stall, never acknowledge, never release. Every wait is bounded; the
 * helper asserts nothing, it returns what the bus answered for the test to check.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { once } from 'node:events';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { waitFor } from './wait';

export interface RawConnectOptions {
  username: string;
  password: string;
  clientId: string;
  clean?: boolean;
  keepalive?: number;
}

export class RawMqttClient {
  readonly packets: Packet[] = [];
  closed = false;
  private readonly parser = mqttPacket.parser({ protocolVersion: 4 });
  private readonly onData = (d: Buffer): void => void this.parser.parse(d);

  private constructor(readonly socket: Socket) {
    this.parser.on('packet', (p: Packet) => this.packets.push(p));
    socket.on('error', () => {});
    socket.on('close', () => (this.closed = true));
    socket.on('data', this.onData);
  }

  /** A TCP connection to 127.0.0.1:`port` (from `localAddress`, a 127/8 address, if given); nothing sent yet. */
  static async open(port: number, localAddress?: string): Promise<RawMqttClient> {
    const c = new RawMqttClient(netConnect({ host: '127.0.0.1', port, ...(localAddress ? { localAddress } : {}) }));
    await once(c.socket, 'connect');
    return c;
  }

  /** Opens a connection and sends CONNECT (clean session and keepalive 0 unless given); does not wait for CONNACK. */
  static async connect(port: number, opts: RawConnectOptions, localAddress?: string): Promise<RawMqttClient> {
    const c = await RawMqttClient.open(port, localAddress);
    c.sendConnect(opts);
    return c;
  }

  /** Writes one packet; false when the socket buffer is full (wait for 'drain'). */
  send(p: Packet): boolean {
    return this.socket.write(mqttPacket.generate(p));
  }

  sendConnect(o: RawConnectOptions): boolean {
    return this.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: o.clean ?? true, clientId: o.clientId, keepalive: o.keepalive ?? 0, username: o.username, password: Buffer.from(o.password) } as Packet);
  }

  /** The first packet of kind `cmd` received, waiting up to `ms`. */
  next<C extends Packet['cmd']>(cmd: C, ms = 10_000, what: string = cmd.toUpperCase()): Promise<Packet & { cmd: C }> {
    return waitFor(() => this.packets.find((p): p is Packet & { cmd: C } => p.cmd === cmd), ms, what);
  }

  /** The return code of the CONNACK, waiting up to `ms`. */
  async connack(ms = 10_000): Promise<number> {
    return ((await this.next('connack', ms, 'CONNACK')) as { returnCode?: number }).returnCode ?? -1;
  }

  /** Subscribes to one filter and resolves with the SUBACK's granted codes, waiting up to `ms`. */
  async subscribe(topic: string, qos: 0 | 1 | 2, ms = 10_000): Promise<number[]> {
    this.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos }] } as Packet);
    return ((await this.next('suback', ms, 'SUBACK')) as { granted: number[] }).granted;
  }

  publishes(): Array<Packet & { cmd: 'publish' }> {
    return this.packets.filter((p): p is Packet & { cmd: 'publish' } => p.cmd === 'publish');
  }

  /** Stops reading: no more packets are parsed, and the socket is paused (the bus's writes pile up). */
  stopReading(): void {
    this.socket.off('data', this.onData);
    this.socket.pause();
  }

  close(): void {
    this.socket.destroy();
  }
}
