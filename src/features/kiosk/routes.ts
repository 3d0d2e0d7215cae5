/**
 * The kiosk feature's HTTP routes (on the gateway's one HTTP server, src/http/server.ts):
 *
 * | route                              | access | what                                                            |
 * |------------------------------------|--------|-----------------------------------------------------------------|
 * | GET /api/v1/lookup/:code[?kiosk=id] | read   | the lookup answer (JSON); with `kiosk`, also shown on that kiosk |
 * | GET /kiosk/:id                     | read   | the price-checker page (HTML)                                   |
 * | GET /kiosk/:id/events              | read   | the page's server-sent events: `hello`, then `lookup` per show  |
 * | GET /kiosk/assets/:file            | public | the page's CSS and JS (no secrets; fixed list of files)         |
 *
 * Design choice, the page's authentication: HTTP Basic, the browser's own prompt, with a bus user of
 * role kiosk. A kiosk browser runs unattended in kiosk mode: the credentials are typed once (or
 * preset by the kiosk's provisioning) and the browser sends them with every request of the page,
 * the event stream included, with no login page, cookie or session state on the gateway. The
 * lockout and the password check are the bus's (one rule for MQTT and HTTP). On the LAN the server
 * is HTTPS (http.tls), so the password does not cross the network in clear.
 *
 * The page is static files in web/kiosk/ (no build step, no CDN): index.html, kiosk.css, kiosk.js.
 * Web pages live in web/, not under src/: tsc does not copy them to dist/, and an installation
 * copies web/ beside dist/ (docs/INSTALL.md), as it does devices/.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { HttpRoutes } from '../../http/server';
import { ErrorCode, ShelfgateError } from '../../errors';
import { repoRoot } from '../../util/paths';
import type { KioskService } from './service';

/** The page's assets: name -> content type. */
const ASSETS: Record<string, string> = { 'kiosk.css': 'text/css; charset=utf-8', 'kiosk.js': 'text/javascript; charset=utf-8' };

export function pageDir(): string {
  return join(repoRoot(), 'web/kiosk');
}

export function registerKioskRoutes(http: HttpRoutes, kiosk: KioskService): void {
  // read on first use (build() does no I/O), then kept: three small files
  let files: { html: Buffer; assets: Map<string, { type: string; body: Buffer }> } | null = null;
  const page = (): NonNullable<typeof files> => {
    if (files) return files;
    const dir = pageDir();
    files = { html: readFileSync(join(dir, 'index.html')), assets: new Map(Object.entries(ASSETS).map(([name, type]) => [name, { type, body: readFileSync(join(dir, name)) }])) };
    return files;
  };
  const knownKiosk = (id: string): void => {
    if (!kiosk.kiosk(id)) throw new ShelfgateError(ErrorCode.NOT_FOUND, `no kiosk ${JSON.stringify(id.slice(0, 64))} is configured`);
  };

  http.route({
    method: 'GET',
    url: '/api/v1/lookup/:code',
    access: 'read',
    handler: (req: FastifyRequest, reply: FastifyReply) => {
      const { code } = req.params as { code: string };
      const k = (req.query as { kiosk?: unknown }).kiosk;
      reply.header('cache-control', 'no-store');
      if (k !== undefined) {
        if (typeof k !== 'string') throw new ShelfgateError(ErrorCode.REQUEST_INVALID, 'kiosk must be given once');
        return kiosk.lookupFor(k, code);
      }
      return kiosk.lookup(code);
    },
  });

  http.route({
    method: 'GET',
    url: '/kiosk/:id',
    access: 'read',
    handler: (req, reply) => {
      knownKiosk((req.params as { id: string }).id);
      return reply.type('text/html; charset=utf-8').header('cache-control', 'no-store').header('content-security-policy', "default-src 'self'; style-src 'self'; script-src 'self'").send(page().html);
    },
  });

  http.route({
    method: 'GET',
    url: '/kiosk/:id/events',
    access: 'read',
    handler: (req, reply) => {
      const id = (req.params as { id: string }).id;
      knownKiosk(id);
      kiosk.attachPage(id, http.openEventStream(req, reply));
      return reply;
    },
  });

  http.route({
    method: 'GET',
    url: '/kiosk/assets/:file',
    access: 'public',
    handler: (req, reply) => {
      const a = page().assets.get((req.params as { file: string }).file);
      if (!a) throw new ShelfgateError(ErrorCode.NOT_FOUND, 'no such file');
      return reply.type(a.type).header('cache-control', 'max-age=300').send(a.body);
    },
  });
}
