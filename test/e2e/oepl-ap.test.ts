/**
 * `shelfgate sim oepl-ap` as a process, as the demo and whole-daemon tests will run it: its first
 * stdout line gives the URL; the driver codec walks its get_db pages, uploads content and reads the
 * acknowledgement from /ws; SIGTERM stops it with exit 0.
 */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { buildGetDb, buildJsonUpload, nextGetDbPos, parseCommandResponse, parseGetDbPage, parseWsMessage, type OeplWsEvent } from '../../src/drivers/oepl';
import { CLI, assertBuilt, waitFor } from '../helpers/daemon';

describe('shelfgate sim oepl-ap (process)', () => {
  it('serves 50 labels whose get_db pages the codec walks, acknowledges an upload over /ws, restarts on SIGUSR2, and stops on SIGTERM', async () => {
    assertBuilt();
    const p = spawn(process.execPath, [CLI, 'sim', 'oepl-ap', '--listen', '127.0.0.1:0', '--labels', '50', '--fast'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => p.on('exit', (code) => r(code)));
    let ws: WebSocket | undefined;
    try {
      const first = await waitFor(() => (out.includes('\n') ? out.split('\n')[0] : null), 20_000, 'the first stdout line');
      const url = /^oepl-ap: 50 labels on (http:\/\/127\.0\.0\.1:\d+) /.exec(first!)?.[1];
      expect(url, `${first}\n${err}`).toBeDefined();

      // walk every page as the gateway will
      const macs: string[] = [];
      let pos = 0;
      for (let pages = 0; pages < 50; pages++) {
        const req = buildGetDb(pos);
        const page = parseGetDbPage(await (await fetch(url + req.path)).text());
        expect(page.invalid).toEqual([]);
        macs.push(...page.tags.map((t) => t.mac));
        const next = nextGetDbPos(pos, page);
        if (next === null) break;
        pos = next;
      }
      expect(pos).toBeGreaterThan(0); // more than one page
      expect(new Set(macs).size).toBe(50);

      ws = new WebSocket(`${url!.replace(/^http/, 'ws')}/ws`);
      const events: OeplWsEvent[] = [];
      ws.on('message', (d) => events.push(parseWsMessage(d.toString())));
      ws.on('error', () => undefined);
      await new Promise<void>((resolve, reject) => {
        ws!.once('open', () => resolve());
        ws!.once('error', reject);
      });
      const mac = macs[17]!;
      const req = buildJsonUpload({ mac, json: [{ text: [5, 5, 'EUR 4.99', 'fonts/bahnschrift20', 1] }] });
      const res = await fetch(url + req.path, { method: req.method, headers: req.headers, body: req.body! });
      expect(parseCommandResponse(res.status, await res.text())).toEqual({ kind: 'ok' });
      await waitFor(() => events.some((e) => e.kind === 'ack' && e.mac === mac), 20_000, `xfer complete for ${mac}`);
      await waitFor(() => out.includes(`xfer complete ${mac}`), 20_000, 'the xfer complete line on stdout');
      expect(events.some((e) => e.kind === 'unparseable')).toBe(false);

      // SIGUSR2 power-cycles the AP: the WebSocket drops, it comes back, labels still show what they got
      const closed = new Promise<void>((r) => ws!.once('close', () => r()));
      p.kill('SIGUSR2');
      await closed;
      await waitFor(() => out.includes('oepl-ap: up again'), 20_000, 'the AP up again');
      const after = parseGetDbPage(await (await fetch(`${url}/get_db?mac=${mac}`)).text()).tags[0]!;
      expect(after.updateCount).toBe(1);
      expect(after.pending).toBe(0);
    } finally {
      ws?.terminate();
      p.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(err).toBe('');
  }, 60_000);
});
