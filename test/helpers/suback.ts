/** SUBACK return codes through mqtt.js, for tests of what the bus grants or refuses. */
import type { MqttClient } from 'mqtt';

/**
 * Subscribes to one filter at QoS 1 and resolves with the SUBACK return code: the granted QoS, or
 * 0x80 (mqtt.js reports a SUBACK of 0x80 as an error carrying the packet). Rejects on other errors.
 */
export function subackCode(c: MqttClient, filter: string): Promise<number> {
  return new Promise((resolve, reject) => {
    c.subscribe(filter, { qos: 1 }, (err, granted) => {
      const refused = (err as { packet?: { granted?: number[] } } | null | undefined)?.packet?.granted?.[0];
      if (refused !== undefined) resolve(refused);
      else if (err) reject(err);
      else resolve(granted![0]!.qos);
    });
  });
}
