import { randomUUID } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { ErrorCode, ShelfgateError } from '../errors';
import * as topics from './topics';

export interface BusClientOptions {
  url: string;
  username: string;
  password: string;
  /** Store id (store_id of the gateway's config). */
  store: string;
  connectTimeoutMs?: number;
}

/**
 * A request/response client for the local bus (MQTT 3.1.1: aedes refuses v5, so no response-topic
 * property): subscribe to our own `response/<username>/<command>`, publish `request/<command>`
 * with a transaction id, wait for the answer carrying the same id. Used by the CLI and the tests.
 */
export class BusClient {
  private constructor(
    readonly client: MqttClient,
    readonly store: string,
    private readonly username: string,
  ) {}

  static async connect(o: BusClientOptions): Promise<BusClient> {
    const client = mqtt.connect(o.url, {
      protocolVersion: 4,
      username: o.username,
      password: o.password,
      reconnectPeriod: 0,
      connectTimeout: o.connectTimeoutMs ?? 5_000,
      clean: true,
    });
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', (e) => reject(new ShelfgateError(ErrorCode.BUS_AUTH_FAILED, `cannot connect to ${o.url} as ${o.username}: ${e.message}`)));
      client.once('close', () => reject(new ShelfgateError(ErrorCode.TRANSPORT_CLOSED, `connection to ${o.url} closed`)));
    });
    return new BusClient(client, o.store, o.username);
  }

  async request<T = unknown>(command: string, body: object, timeoutMs = 10_000): Promise<T> {
    const transaction = randomUUID();
    const respTopic = topics.response(this.store, this.username, command);
    await this.client.subscribeAsync(respTopic, { qos: 1 });
    let timer: NodeJS.Timeout | undefined;
    let onMessage: ((topic: string, payload: Buffer) => void) | undefined;
    let onClose: (() => void) | undefined;
    try {
      const answer = new Promise<topics.BusResponse>((resolve, reject) => {
        timer = setTimeout(() => reject(new ShelfgateError(ErrorCode.DEVICE_TIMEOUT, `no answer to ${command} within ${timeoutMs} ms`)), timeoutMs);
        onMessage = (topic: string, payload: Buffer): void => {
          if (topic !== respTopic) return;
          let msg: topics.BusResponse;
          try {
            msg = JSON.parse(payload.toString('utf8')) as topics.BusResponse;
          } catch {
            return;
          }
          if (msg.transaction === transaction) resolve(msg);
        };
        this.client.on('message', onMessage);
      });
      // A denied publish closes the connection (MQTT-3.3.5-2): fail at once rather than wait for the timeout.
      const closed = new Promise<never>((_, reject) => {
        onClose = () => reject(new ShelfgateError(ErrorCode.BUS_NOT_AUTHORIZED, `connection closed by the gateway (not allowed to send ${command}?)`));
        this.client.once('close', onClose);
      });
      closed.catch(() => undefined);
      await Promise.race([this.client.publishAsync(topics.request(this.store, command), JSON.stringify({ ...body, transaction }), { qos: 1 }), closed]);
      const msg = await Promise.race([answer, closed]);
      if (!msg.ok) throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `${msg.error.code}: ${msg.error.message}`, msg.error);
      return msg.data as T;
    } finally {
      clearTimeout(timer);
      if (onMessage) this.client.off('message', onMessage);
      if (onClose) this.client.off('close', onClose);
      if (this.client.connected) await this.client.unsubscribeAsync(respTopic).catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    // A connection the gateway closed (a refused publish) has nothing to flush: end it at once,
    // or mqtt.js waits for a reconnect that never comes (reconnectPeriod 0) and close() hangs.
    await this.client.endAsync(!this.client.connected);
  }
}
