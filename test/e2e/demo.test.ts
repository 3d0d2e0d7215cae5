/**
 * The README's main job: `shelfgate demo` prints a mosquitto_sub line among its first lines; pasted
 * into a shell it shows live stock; Ctrl-C (SIGINT) stops everything with exit 0.
 */
import { spawn, execFile } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { CLI, assertBuilt, tmp, waitFor } from '../helpers/daemon';

describe('shelfgate demo', () => {
  it('prints a working mosquitto_sub line, shows stock reaching central and prices coming back, stops on Ctrl-C', async () => {
    assertBuilt();
    // --mqtt-port 0: a port the OS picks, so two test runs at once never collide on 1883
    const p = spawn(process.execPath, [CLI, 'demo', '--mqtt-port', '0', '--seed', '7', '--data-dir', tmp('sg-demo-')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => p.on('exit', (code) => r(code)));
    try {
      const line = await waitFor(() => out.split('\n').slice(0, 5).find((l) => l.startsWith('mosquitto_sub ')), 20_000, 'the mosquitto_sub line');
      // the price checker's URL and login, among the first lines: the page answers with them
      const checker = /^price checker: (http:\/\/\S+\/kiosk\/\S+) \(browser login: (\S+) \/ (\S+),/m.exec(out.split('\n').slice(0, 5).join('\n'));
      expect(checker, out).not.toBeNull();
      const page = await fetch(checker![1]!, { headers: { authorization: `Basic ${Buffer.from(`${checker![2]}:${checker![3]}`).toString('base64')}` } });
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('Price checker');
      // the demo's simulated scanner at that kiosk: a scan answered with the product's price and shelf
      await waitFor(() => /^  kiosk  kiosk1: scan .+: \d+\.\d\d EUR, \d+ on the shelf at g\d-shelf\d\/slot\d/m.test(out), 30_000, 'a scan answered on the price checker');
      // run the printed line as a user would paste it, asking for 3 messages
      const got = await new Promise<string>((resolve, reject) =>
        execFile('bash', ['-c', `${line} -C 3 -W 20`], { timeout: 25_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout))),
      );
      const msgs = got.trim().split('\n');
      expect(msgs).toHaveLength(3);
      for (const m of msgs) {
        const [topic, ...rest] = m.split(' ');
        expect(topic).toMatch(/^shelfgate\/v1\/demo-store\/shelf\/[^/]+\/slot\/[^/]+\/stock$/);
        expect(JSON.parse(rest.join(' '))).toMatchObject({ count: expect.any(Number), gtin: expect.stringMatching(/^\d{13,14}$/) });
      }
      await waitFor(() => out.includes('  price  '), 20_000, 'a price from central on the bus');
      await waitFor(() => /central has received [1-9]\d* stock events/.test(out), 30_000, 'stock events at central');
      // the shelf labels: every label confirms its price, then a price change from central reaches one
      await waitFor(() => /labels (\d+)\/\1 labels confirmed showing their price/.test(out), 40_000, 'all labels confirmed');
      await waitFor(() => /  label  \S+ .*: shows \d+\.\d\d EUR \(confirmed by the label/.test(out), 40_000, 'a price change shown on a label');
    } finally {
      p.kill('SIGINT');
    }
    expect(await exited).toBe(0);
    expect(out).toContain('demo: stopped');
  }, 90_000);
});
