/**
 * The whole daemon with a scale in MT-SICS continuous mode (SIR): the compiled `shelfgate run`, the
 * scale simulator behind a TCP serial server, a real MQTT client. The gateway sends SIR once and then
 * only listens; counts follow the streamed weights; a scale that falls silent goes offline and comes
 * back; on stop the gateway ends the repetition.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { hashPassword } from '../../src/bus/auth';
import { loadDefinitions } from '../../src/devices/definitions';
import type { MtSicsDefinition } from '../../src/devices/types';
import { MtSicsSimulator } from '../../simulators/mtsics-sim';
import { LoadCellPhysics, mulberry32 } from '../../simulators/physics';
import { serveTcp, type TcpServing } from '../../simulators/serve';
import { connectClient, startDaemon, tmp, waitFor, type RunningDaemon } from '../helpers/daemon';

const PW = 'e2e-password';
const STORE = 'e2e-sir';
const stockTopic = `shelfgate/v1/${STORE}/shelf/deli/slot/counter/stock`;
const availabilityTopic = `shelfgate/v1/${STORE}/device/scale/availability`;

describe('shelfgate run with a continuous-mode MT-SICS scale (SIR)', () => {
  const dir = tmp('sg-e2e-sir-');
  const physics = new LoadCellPhysics({ unitWeightG: 500, items: 3, noiseSigmaG: 0.05, settleMs: 80, rng: mulberry32(21) });
  const scale = new MtSicsSimulator({ definition: loadDefinitions().get('mettler-toledo-mt-sics-continuous') as MtSicsDefinition, physics, streamIntervalMs: 25 });
  let tcp: TcpServing;
  let daemon: RunningDaemon | undefined;

  beforeAll(async () => {
    tcp = await serveTcp(scale, '127.0.0.1', 0);
    daemon = await startDaemon(
      {
        store_id: STORE,
        data_dir: join(dir, 'state'),
        log: { level: 'info' },
        mqtt: { port: 0, users: [{ username: 'kiosk', role: 'kiosk', password_hash: await hashPassword(PW) }] },
        storage: { flush_interval_ms: 10 },
        stability: { window: 3, max_spread_g: 3 },
        // silent for timeout_ms x offline_after_misses = 300 ms: offline
        buses: [{ id: 'scale', path: tcp.url, model: 'mettler-toledo-mt-sics-continuous', timeout_ms: 100, offline_after_misses: 3, reconnect: { initial_ms: 100, max_ms: 1000 } }],
        shelves: [{ id: 'deli', slots: [{ id: 'counter', sensor: { bus: 'scale' }, unit_weight_g: 500 }] }],
      },
      dir,
    );
  });

  afterAll(async () => {
    await daemon?.stop();
    await tcp?.close();
  });

  it('counts from the streamed weights, goes offline when the scale falls silent, online again when it speaks, and ends SIR on stop', async () => {
    const { client, messages } = await connectClient(daemon!.mqttPort, 'kiosk', PW);
    await client.subscribeAsync([stockTopic, availabilityTopic], { qos: 1 });
    const count = () => {
      const m = messages.filter((x) => x.topic === stockTopic).at(-1);
      return m ? (JSON.parse(m.payload) as { count: number | null }).count : undefined;
    };
    const availability = () => {
      const m = messages.filter((x) => x.topic === availabilityTopic).at(-1);
      return m ? (JSON.parse(m.payload) as { state: string; reason?: string }) : undefined;
    };

    await waitFor(() => count() === 3 && availability()?.state === 'online', 15_000, 'count 3 and the scale online');
    // one command (SIR) and many weights: the gateway listens, it does not poll
    expect(scale.stats.commands).toBe(1);
    expect(scale.streaming).toBe(true);
    await waitFor(() => scale.stats.streamed >= 20, 5_000, 'a stream of weights');
    expect(scale.stats.commands).toBe(1);

    physics.pick(1);
    await waitFor(() => count() === 2, 15_000, 'count 2 after a pick');

    scale.faults = { silent: true };
    await waitFor(() => availability()?.state === 'offline', 10_000, 'offline while the scale is silent');
    expect(availability()!.reason).toMatch(/^silent: no frame for 300 ms/);
    // while silent the gateway sends SIR again (a scale switched off and on has forgotten it)
    await waitFor(() => scale.stats.commands >= 2, 5_000, 'SIR sent again');
    expect(scale.stats.lastCommand).toBe('SIR');
    physics.put(2); // happens while silent
    scale.faults = {};
    await waitFor(() => availability()?.state === 'online', 10_000, 'online again');
    await waitFor(() => count() === 4, 15_000, 'count 4 after the put');
    const events = messages.filter((m) => m.topic === stockTopic).map((m) => (JSON.parse(m.payload) as { count: number | null }).count);
    expect(events.filter((c) => c !== null && c !== 2 && c !== 3 && c !== 4)).toEqual([]);
    await client.endAsync();

    expect(await daemon!.stop('SIGTERM')).toBe(0);
    await waitFor(() => scale.stats.lastCommand === 'SI', 5_000, 'SI sent on stop, which ends the repetition');
    expect(daemon!.logs.some((l) => l.msg === 'stopped')).toBe(true);
  });
});
