/**
 * Every long-lived part of shelfgate is a Service (after Zigbee2MQTT's extensions):
 * - the constructor only stores its dependencies: no I/O, no timers, no listeners;
 * - start() acquires everything (ports, sockets, timers) and resolves when the service is usable;
 * - stop() releases everything start() acquired, removes every listener, and never throws.
 * The daemon starts services in order and stops them in reverse order.
 */
export interface Service {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}
