/**
 * The technician page: one page served by the gateway (`/tech/`) for a technician's phone or
 * laptop, behind a login with the bus's users (a session cookie, src/http/sessions.ts; HTTPS on
 * the LAN with `http.tls`). It shows devices, shelves with counts and weights, RFID zones, labels
 * (what each shows against what it should) and the sync backlog, live over server-sent events,
 * and acts only through the command registry with the user's own role: tare, learn a unit weight,
 * bind and flash a label, and in the demo start a shopper scenario. Needs the `calibrate`
 * permission (technician, admin): a kiosk or service user is refused.
 *
 * | route                  | access    | what                                                     |
 * |------------------------|-----------|----------------------------------------------------------|
 * | GET /tech/             | public    | the page (HTML, no data in it)                           |
 * | GET /tech/assets/:file | public    | its CSS and JS (web/technician/)                         |
 * | GET /tech/api/state    | calibrate | the state (./page-service.ts) with the session's CSRF    |
 * | GET /tech/api/events   | calibrate | server-sent `state` events while the page is open        |
 *
 * Actions go to the core route `POST /api/v1/commands/<name>` (src/http/server.ts). Logging in and
 * out: `POST`/`DELETE /api/v1/session`.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { defineFeature } from '../../core/feature';
import type { Config } from '../../config/schema';
import { ErrorCode, ShelfgateError } from '../../errors';
import { repoRoot } from '../../util/paths';
import { TechnicianPage } from './page-service';

const technicianShape = {
  /** The technician page (on the HTTP server when `http` is configured). */
  technician: z
    .strictObject({
      /** How often an open page's state is rebuilt when no event asked for it sooner. */
      refresh_ms: z.number().int().min(250).max(60_000).default(2000),
      /** Labels listed on the page at most (those off their current price first); the CLI lists all. */
      max_labels: z.number().int().min(10).max(10_000).default(500),
    })
    .prefault({}),
};

type TechnicianConfig = { refresh_ms: number; max_labels: number };

const ASSETS: Record<string, string> = { 'tech.css': 'text/css; charset=utf-8', 'tech.js': 'text/javascript; charset=utf-8' };
const CSP = "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

export const technicianFeature = defineFeature({
  name: 'technician',
  config: technicianShape,
  build(ctx) {
    const cfg = (ctx.config as Config & { technician: TechnicianConfig }).technician;
    const page = new TechnicianPage({ commands: ctx.commands, events: ctx.events, log: ctx.log, refreshMs: cfg.refresh_ms, debounceMs: 150, maxLabels: cfg.max_labels });
    // read on first request (build() does no I/O), then kept
    let files: Map<string, { type: string; body: Buffer }> | null = null;
    const file = (name: string): { type: string; body: Buffer } | undefined => {
      if (!files) {
        const dir = join(repoRoot(), 'web/technician');
        files = new Map([['index.html', { type: 'text/html; charset=utf-8', body: readFileSync(join(dir, 'index.html')) }], ...Object.entries(ASSETS).map(([n, type]) => [n, { type, body: readFileSync(join(dir, n)) }] as const)]);
      }
      return files.get(name);
    };
    const html = (_req: unknown, reply: import('fastify').FastifyReply) =>
      reply.type('text/html; charset=utf-8').header('cache-control', 'no-store').header('content-security-policy', CSP).header('x-frame-options', 'DENY').send(file('index.html')!.body);
    ctx.http.route({ method: 'GET', url: '/tech', access: 'public', handler: html });
    ctx.http.route({
      method: 'GET',
      url: '/tech/assets/:file',
      access: 'public',
      handler: (req, reply) => {
        const a = file((req.params as { file: string }).file);
        if (!a || (req.params as { file: string }).file === 'index.html') throw new ShelfgateError(ErrorCode.NOT_FOUND, 'no such file');
        return reply.type(a.type).header('cache-control', 'no-cache').send(a.body);
      },
    });
    ctx.http.route({
      method: 'GET',
      url: '/tech/api/state',
      access: 'calibrate',
      handler: async (req, reply, user) => {
        reply.header('cache-control', 'no-store');
        return { ok: true, data: await page.state(user!, ctx.http.csrfOf(req) ?? '') };
      },
    });
    ctx.http.route({
      method: 'GET',
      url: '/tech/api/events',
      access: 'calibrate',
      handler: (req, reply, user) => {
        page.attach(ctx.http.openEventStream(req, reply), user!, ctx.http.csrfOf(req) ?? '');
        return reply;
      },
    });
    return {
      services: [page],
      status: () => ({ pages_open: page.open, ...page.counters }),
    };
  },
});
