/**
 * Operations on the gateway's HTTP server: `/metrics` (Prometheus text format, ./metrics.ts),
 * `/healthz` (alive) and `/readyz` (ready), from ./health.ts, the same readiness the systemd
 * watchdog and STATUS= line follow. 200 when ok, 503 otherwise, with the checks as JSON.
 *
 * Who may call them: anyone on loopback (the gateway itself, a local node exporter, the technician
 * on the Pi); from another host only with `Authorization: Bearer <token>`, the token read from
 * `http.ops_token_file` at start. Without that file they are refused from the LAN (403), so a
 * gateway exposed with `http.host: 0.0.0.0` for its pages never hands its metrics to anyone by
 * accident. A Prometheus scrape config sends the token with `authorization: { credentials_file }`.
 */
import { readFileSync } from 'node:fs';
import { timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { normalizeAddress } from '../bus/admission';
import type { Config } from '../config/schema';
import type { Feature } from '../core/feature';
import type { Gateway } from '../core/gateway';
import { ErrorCode, ShelfgateError } from '../errors';
import type { Service } from '../lifecycle';
import type { Logger } from '../log';
import { GatewayHealth } from './health';
import { GatewayMetrics } from './metrics';

export interface Ops extends Service {
  health: GatewayHealth;
  metrics: GatewayMetrics;
}

const isLoopback = (a: string): boolean => a === '127.0.0.1' || a === '::1' || a.startsWith('127.');

/**
 * Why a request for /metrics, /healthz or /readyz is refused, or null when it may have them:
 * loopback always; another host only with `Bearer <token>` equal to the configured token.
 */
export function opsRefusal(token: Buffer | null, remoteAddress: string | undefined, authorization: string | undefined): string | null {
  if (isLoopback(normalizeAddress(remoteAddress))) return null;
  const m = /^Bearer +(\S+)$/.exec(authorization ?? '');
  const given = m ? Buffer.from(m[1]!) : null;
  if (token && given && given.length === token.length && timingSafeEqual(given, token)) return null;
  return token ? 'a bearer token (http.ops_token_file) is needed from another host' : 'only from loopback: set http.ops_token_file to allow other hosts with a token';
}

/** Builds health and metrics for `gateway` and registers their routes (before gateway.start()). */
export function mountOps(o: { gateway: Gateway; features: readonly Feature[]; config: Config; log: Logger }): Ops {
  const health = new GatewayHealth({ gateway: o.gateway });
  const metrics = new GatewayMetrics({ gateway: o.gateway, features: o.features, dataDir: o.config.data_dir, log: o.log.child({ module: 'metrics' }), health });
  let token: Buffer | null = null;
  const file = o.config.http?.ops_token_file;
  if (file !== undefined) {
    try {
      token = Buffer.from(readFileSync(file, 'utf8').trim());
    } catch (e) {
      const message = `cannot read ${file}: ${(e as Error).message}`;
      throw new ShelfgateError(ErrorCode.CONFIG_UNREADABLE, `http.ops_token_file: ${message}`, [{ path: 'http.ops_token_file', message }]);
    }
    if (token.length < 16) {
      const message = `the token in ${file} is shorter than 16 characters`;
      throw new ShelfgateError(ErrorCode.CONFIG_INVALID, `http.ops_token_file: ${message}`, [{ path: 'http.ops_token_file', message }]);
    }
  }
  const allowed = (req: FastifyRequest): void => {
    const refused = opsRefusal(token, req.socket.remoteAddress, req.headers.authorization);
    if (refused) throw new ShelfgateError(ErrorCode.BUS_NOT_AUTHORIZED, refused);
  };
  const report = (r: { ok: boolean }, reply: FastifyReply) => reply.code(r.ok ? 200 : 503).header('cache-control', 'no-store').send(r);
  o.gateway.http.route({
    method: 'GET',
    url: '/metrics',
    access: 'public',
    handler: async (req, reply) => {
      allowed(req);
      const r = await metrics.render();
      return reply.type(r.contentType).header('cache-control', 'no-store').send(r.body);
    },
  });
  o.gateway.http.route({ method: 'GET', url: '/healthz', access: 'public', handler: (req, reply) => (allowed(req), report(health.liveness(), reply)) });
  o.gateway.http.route({ method: 'GET', url: '/readyz', access: 'public', handler: (req, reply) => (allowed(req), report(health.readiness(), reply)) });
  return {
    name: 'ops',
    health,
    metrics,
    async start() {
      await health.start();
      await metrics.start();
    },
    async stop() {
      await metrics.stop();
      await health.stop();
    },
  };
}
