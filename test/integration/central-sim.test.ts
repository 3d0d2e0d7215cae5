/**
 * The central API contract (docs/central-api.yaml) and its reference implementation
 * (simulators/central), over real HTTP/HTTPS on 127.0.0.1 with port 0. Responses of the simulator
 * are validated against the YAML's schemas, so the contract and the simulator are pinned to each
 * other, and the contract is checked structurally on its own.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { parse as parseYaml } from 'yaml';
import { ErrorCode, isShelfgateError } from '../../src/errors';
import { silentLogger } from '../../src/log';
import { CentralSimulator, type CentralSimulatorOptions } from '../../simulators/central/simulator';
import { runCentralCli } from '../../simulators/central/cli';
import { AckRequestSchema, EVENT_KINDS, EventSchema, LIMITS, ProblemCode, type Change, type PriceChange } from '../../simulators/central/types';
import { waitFor } from '../helpers/wait';

const ROOT = join(__dirname, '..', '..');
type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
const spec = parseYaml(readFileSync(join(ROOT, 'docs', 'central-api.yaml'), 'utf8')) as { [k: string]: Json };

// ------------------------------------------------------------------ a small JSON Schema checker

function resolvePointer(ref: string): Json {
  expect(ref.startsWith('#/'), `only local refs: ${ref}`).toBe(true);
  let cur: Json = spec as Json;
  for (const raw of ref.slice(2).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur) || !(key in cur)) throw new Error(`unresolved $ref ${ref}`);
    cur = cur[key] as Json;
  }
  return cur;
}

/** Validates `v` against a schema of the spec; returns error paths (subset: what the spec uses). */
function validate(schema: Json, v: unknown, path = '$'): string[] {
  if (schema === null || typeof schema !== 'object' || Array.isArray(schema)) return [];
  const s = schema as { [k: string]: Json };
  if (typeof s['$ref'] === 'string') return validate(resolvePointer(s['$ref']), v, path);
  const errs: string[] = [];
  if (Array.isArray(s['oneOf'])) {
    const ok = s['oneOf'].filter((alt) => validate(alt, v, path).length === 0).length;
    if (ok !== 1) errs.push(`${path}: matches ${ok} of oneOf`);
  }
  if (Array.isArray(s['anyOf']) && !s['anyOf'].some((alt) => validate(alt, v, path).length === 0)) errs.push(`${path}: matches none of anyOf`);
  if (s['not'] !== undefined && validate(s['not'], v, path).length === 0) errs.push(`${path}: matches not`);
  if ('const' in s && v !== s['const']) errs.push(`${path}: not ${JSON.stringify(s['const'])}`);
  if (Array.isArray(s['enum']) && !s['enum'].includes(v as Json)) errs.push(`${path}: ${JSON.stringify(v)} not in enum`);
  const types = s['type'] === undefined ? null : ([] as Json[]).concat(s['type']);
  if (types) {
    const actual = v === null ? 'null' : Array.isArray(v) ? 'array' : Number.isInteger(v) ? 'integer' : typeof v;
    const fits = types.some((t) => t === actual || (t === 'number' && actual === 'integer'));
    if (!fits) return [...errs, `${path}: ${actual} is not ${types.join('|')}`];
  }
  if (typeof v === 'string') {
    if (typeof s['pattern'] === 'string' && !new RegExp(s['pattern'], 'u').test(v)) errs.push(`${path}: does not match ${s['pattern']}`);
    if (typeof s['minLength'] === 'number' && v.length < s['minLength']) errs.push(`${path}: too short`);
    if (typeof s['maxLength'] === 'number' && v.length > s['maxLength']) errs.push(`${path}: too long`);
    if (s['format'] === 'date-time' && !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/.test(v)) errs.push(`${path}: not RFC 3339`);
    if (s['format'] === 'uuid' && !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(v)) errs.push(`${path}: not a uuid`);
  }
  if (typeof v === 'number') {
    if (typeof s['minimum'] === 'number' && v < s['minimum']) errs.push(`${path}: < minimum`);
    if (typeof s['maximum'] === 'number' && v > s['maximum']) errs.push(`${path}: > maximum`);
    if (typeof s['exclusiveMinimum'] === 'number' && v <= s['exclusiveMinimum']) errs.push(`${path}: <= exclusiveMinimum`);
  }
  if (Array.isArray(v)) {
    if (typeof s['minItems'] === 'number' && v.length < s['minItems']) errs.push(`${path}: too few items`);
    if (typeof s['maxItems'] === 'number' && v.length > s['maxItems']) errs.push(`${path}: too many items`);
    if (s['items'] !== undefined) v.forEach((item, i) => errs.push(...validate(s['items'] as Json, item, `${path}[${i}]`)));
  }
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    for (const r of (s['required'] as string[] | undefined) ?? []) if (!(r in o)) errs.push(`${path}: missing ${r}`);
    const props = (s['properties'] ?? {}) as { [k: string]: Json };
    for (const [k, sub] of Object.entries(props)) if (k in o) errs.push(...validate(sub, o[k], `${path}.${k}`));
    if (s['additionalProperties'] === false) for (const k of Object.keys(o)) if (!(k in props)) errs.push(`${path}: unexpected ${k}`);
  }
  return errs;
}

const schema = (name: string): Json => ({ $ref: `#/components/schemas/${name}` });
function expectConforms(name: string, v: unknown): void {
  expect(validate(schema(name), v), `${name}: ${JSON.stringify(v).slice(0, 300)}`).toEqual([]);
}

// ------------------------------------------------------------------ helpers

const TOKEN = 'test-token-1';
/** Response bodies are checked against the YAML schemas (expectConforms) before fields are read. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const json = (r: Response): Promise<any> => r.json() as Promise<any>;
const sims: CentralSimulator[] = [];
const tmpDirs: string[] = [];

afterEach(async () => {
  await Promise.all(sims.splice(0).map((s) => s.stop()));
  for (const d of tmpDirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'central-sim-'));
  tmpDirs.push(d);
  return d;
}

async function startSim(opts: Partial<CentralSimulatorOptions> = {}): Promise<CentralSimulator> {
  const sim = new CentralSimulator({ host: '127.0.0.1', port: 0, dbPath: ':memory:', token: TOKEN, log: silentLogger(), ...opts });
  await sim.start();
  sims.push(sim);
  return sim;
}

let seqCounter = 0;
function ev(seq: number, device = 'bus-a/3', kind: string = 'pick'): Record<string, unknown> {
  seqCounter++;
  return {
    event_id: randomUUID(),
    seq,
    device_id: device,
    kind,
    priority: kind === 'condition' ? 5 : 0,
    created_at: new Date(1_740_000_000_000 + seqCounter).toISOString(),
    payload: { units: 1, n: seqCounter },
  };
}

const auth = { authorization: `Bearer ${TOKEN}` };

async function postBatch(
  sim: CentralSimulator,
  store: string,
  events: unknown[],
  opts: { key?: string; headers?: Record<string, string>; gaps?: unknown[]; signal?: AbortSignal } = {},
): Promise<Response> {
  return fetch(`${sim.url}/v1/stores/${store}/events:batch`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': opts.key ?? randomUUID(), ...auth, ...opts.headers },
    body: JSON.stringify({ events, ...(opts.gaps ? { gaps: opts.gaps } : {}) }),
    signal: opts.signal ?? AbortSignal.timeout(10_000),
  });
}

async function getChanges(sim: CentralSimulator, store: string, query: string): Promise<{ status: number; body: any; ms: number }> {
  const t0 = Date.now();
  const r = await fetch(`${sim.url}/v1/stores/${store}/changes?${query}`, { headers: auth, signal: AbortSignal.timeout(15_000) });
  return { status: r.status, body: await json(r), ms: Date.now() - t0 };
}

async function expectProblem(r: Response, status: number, code: string): Promise<any> {
  expect(r.status).toBe(status);
  expect(r.headers.get('content-type')).toBe('application/problem+json');
  const body = await json(r);
  expect(body.code).toBe(code);
  expectConforms('Problem', body);
  return body;
}

async function readAllChanges(sim: CentralSimulator, store: string, limit: number): Promise<{ changes: Change[]; cursors: string[] }> {
  const changes: Change[] = [];
  const cursors: string[] = [];
  let cursor = '';
  for (let page = 0; page < 100; page++) {
    const r = await getChanges(sim, store, `cursor=${encodeURIComponent(cursor)}&limit=${limit}`);
    expect(r.status).toBe(200);
    expectConforms('ChangesPage', r.body);
    cursors.push(r.body.next_cursor);
    if (r.body.changes.length === 0) break;
    changes.push(...r.body.changes);
    cursor = r.body.next_cursor;
  }
  return { changes, cursors };
}

// ------------------------------------------------------------------ the contract on its own

describe('docs/central-api.yaml', () => {
  const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'];
  const ops = (): { path: string; method: string; op: { [k: string]: Json }; pathItem: { [k: string]: Json } }[] =>
    Object.entries(spec['paths'] as { [k: string]: { [k: string]: Json } }).flatMap(([path, item]) =>
      METHODS.filter((m) => m in item).map((method) => ({ path, method, op: item[method] as { [k: string]: Json }, pathItem: item })),
    );
  const deref = (x: Json): { [k: string]: Json } => {
    let cur = x as { [k: string]: Json };
    while (typeof cur['$ref'] === 'string') cur = resolvePointer(cur['$ref']) as { [k: string]: Json };
    return cur;
  };

  it('is OpenAPI 3.x with info, paths and components', () => {
    expect(String(spec['openapi'])).toMatch(/^3\.(0|1)\.\d+$/);
    expect((spec['info'] as { [k: string]: Json })['title']).toBeTruthy();
    expect((spec['info'] as { [k: string]: Json })['version']).toBeTruthy();
    expect(Object.keys(spec['paths'] as object).sort()).toEqual([
      '/v1/stores/{storeId}/changes',
      '/v1/stores/{storeId}/changes:ack',
      '/v1/stores/{storeId}/events:batch',
    ]);
  });

  it('every $ref resolves', () => {
    const refs: string[] = [];
    const walk = (n: Json): void => {
      if (Array.isArray(n)) n.forEach(walk);
      else if (n && typeof n === 'object') for (const [k, v] of Object.entries(n)) (k === '$ref' && typeof v === 'string' ? refs.push(v) : walk(v));
    };
    walk(spec as Json);
    expect(refs.length).toBeGreaterThan(40);
    for (const r of refs) expect(() => resolvePointer(r), r).not.toThrow();
  });

  it('every operation has a unique operationId, a 2xx response, problem+json errors and declared path parameters', () => {
    const ids = new Set<string>();
    for (const { path, method, op, pathItem } of ops()) {
      const where = `${method.toUpperCase()} ${path}`;
      expect(typeof op['operationId'], where).toBe('string');
      expect(ids.has(op['operationId'] as string), where).toBe(false);
      ids.add(op['operationId'] as string);
      const responses = op['responses'] as { [k: string]: Json };
      expect(Object.keys(responses).length, where).toBeGreaterThan(0);
      expect(Object.keys(responses).some((c) => /^2\d\d$/.test(c)), where).toBe(true);
      for (const [code, resp] of Object.entries(responses)) {
        const r = deref(resp);
        expect(typeof r['description'], `${where} ${code}`).toBe('string');
        if (!/^2/.test(code)) {
          const content = r['content'] as { [k: string]: { [k: string]: Json } };
          expect(Object.keys(content), `${where} ${code}`).toEqual(['application/problem+json']);
          expect(content['application/problem+json']?.['schema']).toEqual({ $ref: '#/components/schemas/Problem' });
        }
      }
      for (const code of ['401', '429', '500']) expect(code in responses, `${where} ${code}`).toBe(true);
      const params = [...((pathItem['parameters'] as Json[]) ?? []), ...((op['parameters'] as Json[]) ?? [])].map(deref);
      for (const name of [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1])) {
        const p = params.find((x) => x['in'] === 'path' && x['name'] === name);
        expect(p, `${where}: path parameter ${name}`).toBeDefined();
        expect(p?.['required']).toBe(true);
      }
      for (const p of params) expect(p['schema'], `${where} ${String(p['name'])}`).toBeDefined();
      if (method === 'post') expect((op['requestBody'] as { [k: string]: Json })?.['required'], where).toBe(true);
    }
    expect(ids.size).toBe(3);
  });

  it('429 and 503 declare Retry-After; 401 declares WWW-Authenticate', () => {
    const responses = (spec['components'] as { [k: string]: { [k: string]: { [k: string]: Json } } })['responses'] as {
      [k: string]: { [k: string]: Json };
    };
    expect(Object.keys((responses['TooManyRequests'] as { [k: string]: Json })['headers'] as object)).toContain('Retry-After');
    expect(Object.keys((responses['Unavailable'] as { [k: string]: Json })['headers'] as object)).toContain('Retry-After');
    expect(Object.keys((responses['Unauthorized'] as { [k: string]: Json })['headers'] as object)).toContain('WWW-Authenticate');
  });

  it('schemas list only existing properties as required, and security names defined schemes', () => {
    const components = spec['components'] as { [k: string]: { [k: string]: Json } };
    const check = (s: Json, where: string): void => {
      if (!s || typeof s !== 'object' || Array.isArray(s)) return;
      const o = s as { [k: string]: Json };
      if (Array.isArray(o['required']) && o['properties']) {
        for (const r of o['required']) expect(Object.keys(o['properties'] as object), `${where}.required ${String(r)}`).toContain(r);
      }
      for (const [k, v] of Object.entries(o)) if (k !== 'example' && k !== 'examples') check(v, `${where}.${k}`);
    };
    for (const [name, s] of Object.entries(components['schemas'] as object)) check(s as Json, name);
    const schemes = components['securitySchemes'] as { [k: string]: { [k: string]: Json } };
    expect(schemes['bearerAuth']).toMatchObject({ type: 'http', scheme: 'bearer' });
    for (const req of spec['security'] as { [k: string]: Json }[]) for (const k of Object.keys(req)) expect(Object.keys(schemes)).toContain(k);
    if (String(spec['openapi']).startsWith('3.0')) expect(Object.values(schemes).some((s) => s['type'] === 'mutualTLS')).toBe(false);
  });

  it('examples conform to their schemas', () => {
    const ex = (spec['components'] as { [k: string]: { [k: string]: { [k: string]: Json } } })['examples'] as {
      [k: string]: { value: Json };
    };
    expectConforms('EventBatch', ex['EventBatch']?.value);
    expectConforms('EventBatchResult', ex['EventBatchResult']?.value);
    expectConforms('ChangesPage', ex['ChangesPage']?.value);
    expectConforms('AckRequest', ex['AckRequest']?.value);
    // and the simulator accepts them
    for (const e of (ex['EventBatch']?.value as { events: Json[] }).events) expect(EventSchema.safeParse(e).success).toBe(true);
    expect(AckRequestSchema.safeParse(ex['AckRequest']?.value).success).toBe(true);
    // a wrong one is caught by the checker
    expect(validate(schema('Event'), { ...(ex['EventBatch']?.value as { events: { [k: string]: Json }[] }).events[0], seq: 0 })).not.toEqual([]);
  });

  it('agrees with the simulator on kinds, problem codes and limits', () => {
    const schemas = (spec['components'] as { [k: string]: { [k: string]: { [k: string]: Json } } })['schemas'] as {
      [k: string]: { [k: string]: Json };
    };
    expect(schemas['EventKind']?.['enum']).toEqual([...EVENT_KINDS]);
    expect([...((schemas['Problem']?.['properties'] as { [k: string]: { [k: string]: Json } })['code']?.['enum'] as string[])].sort()).toEqual(
      Object.values(ProblemCode).sort(),
    );
    expect((spec['info'] as { [k: string]: Json })['x-limits']).toEqual({
      max_batch_events: LIMITS.maxBatchEvents,
      max_body_bytes: LIMITS.maxBodyBytes,
      max_wait_seconds: LIMITS.maxWaitSeconds,
      max_feed_limit: LIMITS.maxFeedLimit,
      max_acks: LIMITS.maxAcks,
      max_response_bytes: LIMITS.maxResponseBytes,
    });
  });
});

// ------------------------------------------------------------------ uplink

describe('events:batch', () => {
  it('accepts a batch; the same request again gets the stored response; stored once', async () => {
    const sim = await startSim();
    const events = [ev(1), ev(2, 'bus-a/4'), ev(3, 'g1-s2/3', 'count')];
    const key = randomUUID();
    const r1 = await postBatch(sim, 'store-1', events, { key });
    expect(r1.status).toBe(200);
    const b1 = await json(r1);
    expectConforms('EventBatchResult', b1);
    expect(b1.batch_id).toBe(key);
    expect(b1.results.map((r: { status: string }) => r.status)).toEqual(['accepted', 'accepted', 'accepted']);
    expect(b1.results.map((r: { event_id: string }) => r.event_id)).toEqual(events.map((e) => e['event_id']));
    expect(b1.contiguous_seq).toBe(3);

    // the same key and body: the stored response, nothing processed again (central-api.yaml: Idempotency-Key)
    const r2 = await postBatch(sim, 'store-1', events, { key });
    const b2 = await json(r2);
    expectConforms('EventBatchResult', b2);
    expect(b2).toEqual(b1);

    // a different batch id carrying one old and one new event
    const b3 = await json(await postBatch(sim, 'store-1', [events[2], ev(4)]));
    expect(b3.results.map((r: { status: string }) => r.status)).toEqual(['duplicate', 'accepted']);

    const got = sim.receivedEvents('store-1');
    expect(got.map((e) => e.seq)).toEqual([1, 2, 3, 4]);
    expect(got[0]?.payload).toEqual(events[0]?.['payload']);
    const st = sim.stats().stores['store-1'];
    expect(st).toMatchObject({ events: 4, duplicates: 4, batches: 3, retried_batches: 1, contiguous_seq: 4, by_kind: { pick: 3, count: 1 } });
    expect(sim.receivedEvents('store-2')).toEqual([]);
  });

  it('rejects a permanently invalid event per event, not the batch; gaps and rejections advance contiguous_seq', async () => {
    const sim = await startSim();
    const good = ev(1);
    const conflict = { ...ev(1), event_id: randomUUID() };
    const r = await postBatch(sim, 's1', [good, { ...ev(2), created_at: 'yesterday' }, ev(3, 'x', 'teleport'), conflict, { seq: 4 }, ev(10)], {
      gaps: [{ from_seq: 5, to_seq: 9, reason: 'dropped_buffer_full' }],
    });
    expect(r.status).toBe(200);
    const b = await json(r);
    expectConforms('EventBatchResult', b);
    expect(b.results.map((x: { status: string; error?: { code: string } }) => x.error?.code ?? x.status)).toEqual([
      'accepted',
      'invalid_event',
      'unknown_kind',
      'seq_conflict',
      'invalid_event',
      'accepted',
    ]);
    expect(b.results[4]).toMatchObject({ index: 4, event_id: null, seq: 4 });
    expect(b.contiguous_seq).toBe(10);
    expect(sim.rejectedEvents('s1').map((x) => x.code)).toEqual(['invalid_event', 'unknown_kind', 'seq_conflict', 'invalid_event']);
    // without the gap declaration the contiguous seq stops before the hole
    const b2 = await json(await postBatch(sim, 's2', [ev(1), ev(2), ev(4)]));
    expect(b2.contiguous_seq).toBe(2);
  });

  it('reports devices whose seqs arrived out of order', async () => {
    const sim = await startSim();
    await postBatch(sim, 's1', [ev(1, 'bus-a/1'), ev(3, 'bus-a/1'), ev(4, 'bus-a/2')]);
    await postBatch(sim, 's1', [ev(2, 'bus-a/1'), ev(5, 'bus-a/2')]);
    const st = sim.stats().stores['s1'];
    expect(st?.out_of_order_devices).toEqual([{ device_id: 'bus-a/1', epoch: '', out_of_order: 1, last_seq: 3, last: 'seq 2 after 3' }]);
    expect(sim.receivedEvents('s1', { orderBy: 'seq' }).map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
  });

  it('answers 401 problem+json without or with a wrong token, 403 for a store not permitted', async () => {
    const sim = await startSim({ storeIds: ['s1'] });
    const none = await fetch(`${sim.url}/v1/stores/s1/events:batch`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': 'k1' },
      body: JSON.stringify({ events: [ev(1)] }),
    });
    await expectProblem(none, 401, 'unauthorized');
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer /);
    const wrong = await postBatch(sim, 's1', [ev(1)], { headers: { authorization: 'Bearer nope' } });
    await expectProblem(wrong, 401, 'invalid_token');
    expect(wrong.headers.get('www-authenticate')).toContain('invalid_token');
    const feed = await fetch(`${sim.url}/v1/stores/s1/changes`, { headers: { authorization: 'Basic eDp5' } });
    await expectProblem(feed, 401, 'invalid_token');
    await expectProblem(await postBatch(sim, 's9', [ev(1)]), 403, 'store_not_permitted');
    expect(sim.stats().totals.events).toBe(0);
  });

  it('answers 400, 413, 415 and 422 for requests that will never succeed as sent', async () => {
    const sim = await startSim({ limits: { maxBatchEvents: 3, maxBodyBytes: 4096 } });
    const noKey = await fetch(`${sim.url}/v1/stores/s1/events:batch`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth },
      body: JSON.stringify({ events: [ev(1)] }),
    });
    await expectProblem(noKey, 400, 'idempotency_key_missing');
    const tooMany = await expectProblem(await postBatch(sim, 's1', [ev(1), ev(2), ev(3), ev(4)]), 413, 'payload_too_large');
    expect(tooMany.max_events).toBe(3);
    const big = await postBatch(sim, 's1', [{ ...ev(1), payload: { blob: 'x'.repeat(5000) } }]);
    await expectProblem(big, 413, 'payload_too_large');
    const notJson = await fetch(`${sim.url}/v1/stores/s1/events:batch`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain', 'idempotency-key': 'k', ...auth },
      body: 'hi',
    });
    await expectProblem(notJson, 415, 'unsupported_media_type');
    const broken = await fetch(`${sim.url}/v1/stores/s1/events:batch`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': 'k', ...auth },
      body: '{"events": [',
    });
    await expectProblem(broken, 400, 'invalid_request');
    await expectProblem(await postBatch(sim, 's1', []), 400, 'invalid_request');
    await postBatch(sim, 's1', [ev(1)], { key: 'batch-7' });
    await expectProblem(await postBatch(sim, 's1', [ev(2)], { key: 'batch-7' }), 422, 'idempotency_key_reused');
    await expectProblem(await fetch(`${sim.url}/v1/stores/s1/nothing`, { headers: auth }), 404, 'not_found');
    await expectProblem(await fetch(`${sim.url}/v1/stores/s1/events:batch`, { headers: auth }), 405, 'method_not_allowed');
  });

  it('accepts a gzip body', async () => {
    const sim = await startSim();
    const r = await fetch(`${sim.url}/v1/stores/s1/events:batch`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-encoding': 'gzip', 'idempotency-key': 'gz', ...auth },
      body: gzipSync(JSON.stringify({ events: [ev(1), ev(2)] })),
    });
    expect(r.status).toBe(200);
    expect((await json(r)).counts.accepted).toBe(2);
  });
});

// ------------------------------------------------------------------ downlink

describe('changes feed', () => {
  it('long-poll returns at once when changes exist, after about `wait` when not, and on a publish', async () => {
    const sim = await startSim();
    sim.publishPrice({ gtin: '4006381333931', price: 249, currency: 'EUR' });
    const first = await getChanges(sim, 's1', 'wait=5');
    expect(first.status).toBe(200);
    expect(first.ms).toBeLessThan(1000);
    expect(first.body.changes).toHaveLength(1);
    expectConforms('ChangesPage', first.body);

    const idle = await getChanges(sim, 's1', `cursor=${first.body.next_cursor}&wait=1`);
    expect(idle.body).toEqual({ changes: [], next_cursor: first.body.next_cursor });
    expect(idle.ms).toBeGreaterThanOrEqual(900);
    expect(idle.ms).toBeLessThan(3000);

    const waking = getChanges(sim, 's1', `cursor=${first.body.next_cursor}&wait=10`);
    await waitFor(() => sim.stats().connections.long_polls === 1, 5000, 'the long-poll to be parked');
    sim.publishPrice({ gtin: '4006381333931', price: 199, currency: 'EUR' });
    const woke = await waking;
    expect(woke.ms).toBeLessThan(3000);
    expect(woke.body.changes.map((c: PriceChange) => c.version)).toEqual([2]);
    expect(sim.stats().connections.long_polls).toBe(0);
  });

  it('delivers prices in version order with cursor continuation; only newer versions can be published', async () => {
    const sim = await startSim();
    const a = '04006381333931';
    const b = '00012345678905';
    for (let v = 1; v <= 5; v++) {
      sim.publishPrice({ gtin: a, price: 100 + v, currency: 'EUR', version: v * 10 });
      if (v <= 3) sim.publishPrice({ gtin: b, price: 200 + v, currency: 'EUR', promotion: v === 2 ? { was_price: 300, valid_from: '2025-03-01T00:00:00Z', valid_to: '2025-03-08T00:00:00Z' } : null });
    }
    sim.publishPrice({ gtin: a, price: 1, currency: 'EUR', storeId: 'other-store' });
    sim.assignSlot({ storeId: 's1', shelf: 'g1-s2', slot: 3, gtin: b, unitWeightG: 251.5 });
    sim.assignSlot({ storeId: 's1', shelf: 'g1-s2', slot: 3, gtin: null, unitWeightG: null });
    expect(() => sim.publishPrice({ gtin: a, price: 1, currency: 'EUR', version: 50 })).toThrow(/not newer/);
    try {
      sim.publishPrice({ gtin: '123', price: 1.5, currency: 'eur' });
    } catch (e) {
      expect(isShelfgateError(e, ErrorCode.REQUEST_INVALID)).toBe(true);
      expect((e as { details: string[] }).details).toHaveLength(3);
    }

    const { changes, cursors } = await readAllChanges(sim, 's1', 3);
    expect(changes).toHaveLength(10);
    const versions = (gtin: string): number[] => changes.filter((c): c is PriceChange => c.type === 'price' && c.gtin === gtin).map((c) => c.version);
    expect(versions(a)).toEqual([10, 20, 30, 40, 50]);
    expect(versions(b)).toEqual([1, 2, 3]);
    expect(new Set(changes.map((c) => c.change_id)).size).toBe(10);
    expect(changes.filter((c) => c.type === 'slot').map((c) => [c.version, c.gtin])).toEqual([
      [1, b],
      [2, null],
    ]);
    // the other store's price is not in s1's feed but is in other-store's
    const other = await readAllChanges(sim, 'other-store', 100);
    expect(other.changes.filter((c) => c.store_id === 'other-store')).toHaveLength(1);
    expect(other.changes.filter((c) => c.type === 'slot')).toHaveLength(0);
    // the last (empty) page keeps the cursor usable
    const last = cursors[cursors.length - 1] as string;
    const after = await getChanges(sim, 's1', `cursor=${last}`);
    expect(after.body.changes).toEqual([]);
    sim.publishPrice({ gtin: b, price: 5, currency: 'EUR' });
    expect((await getChanges(sim, 's1', `cursor=${last}`)).body.changes.map((c: PriceChange) => c.version)).toEqual([4]);
    // cursor errors
    await expectProblem(await fetch(`${sim.url}/v1/stores/s1/changes?cursor=garbage!`, { headers: auth }), 400, 'invalid_cursor');
    await expectProblem(await fetch(`${sim.url}/v1/stores/s1/changes?cursor=${Buffer.from('v1:999').toString('base64url')}`, { headers: auth }), 410, 'cursor_expired');
    await expectProblem(await fetch(`${sim.url}/v1/stores/s1/changes?wait=31`, { headers: auth }), 400, 'invalid_request');
  });

  it('the duplicate fault sends changes twice and the reorder fault delivers out of order', async () => {
    const sim = await startSim({ seed: 7 });
    const gtin = '04006381333931';
    for (let v = 1; v <= 12; v++) sim.publishPrice({ gtin, price: v, currency: 'EUR' });
    const set = await fetch(`${sim.url}/_sim/faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ duplicateRate: 1, seed: 42 }),
    });
    expect(set.status).toBe(200);
    expect((await json(set)).duplicateRate).toBe(1);
    const dup = await getChanges(sim, 's1', 'limit=500');
    expect(dup.body.changes.map((c: PriceChange) => c.version)).toEqual([1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12]);

    sim.setFaults({ duplicateRate: 0, reorder: true });
    const re = await getChanges(sim, 's1', 'limit=500');
    const vs = re.body.changes.map((c: PriceChange) => c.version);
    expect([...vs].sort((x: number, y: number) => x - y)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    expect(vs).not.toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    expect(sim.stats().requests.faults_injected).toMatchObject({ feed_duplicates: 12, feed_reordered_pages: 1 });

    const bad = await fetch(`${sim.url}/_sim/faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ duplicateRate: 2, bogus: true }),
    });
    expect(bad.status).toBe(400);
  });

  it('records acknowledgements', async () => {
    const sim = await startSim();
    const c1 = sim.publishPrice({ gtin: '04006381333931', price: 249, currency: 'EUR' });
    const c2 = sim.publishPrice({ gtin: '04006381333931', price: 199, currency: 'EUR' });
    const post = (acks: unknown[]): Promise<Response> =>
      fetch(`${sim.url}/v1/stores/s1/changes:ack`, { method: 'POST', headers: { 'content-type': 'application/json', ...auth }, body: JSON.stringify({ acks }) });
    const at = '2025-03-01T07:00:05Z';
    const r = await post([
      { change_id: c2.change_id, status: 'applied', applied_at: at },
      { change_id: c1.change_id, status: 'stale', applied_at: at },
      { change_id: 'price/nope/v1', status: 'applied', applied_at: at },
    ]);
    expect(r.status).toBe(200);
    const body = await json(r);
    expectConforms('AckResult', body);
    expect(body.results.map((x: { result: string }) => x.result)).toEqual(['recorded', 'recorded', 'unknown_change']);
    await post([{ change_id: c2.change_id, status: 'applied', applied_at: at }]);
    expect(sim.acks('s1').map((a) => [a.change_id, a.status, a.times])).toEqual([
      [c2.change_id, 'applied', 2],
      [c1.change_id, 'stale', 1],
    ]);
    expect(sim.stats().stores['s1']?.acks).toEqual({ applied: 1, stale: 1, invalid: 0 });
    await expectProblem(await post([{ change_id: c1.change_id, status: 'done', applied_at: at }]), 400, 'invalid_request');
  });

  it('streams changes as server-sent events and resumes from Last-Event-ID', async () => {
    const sim = await startSim();
    sim.publishPrice({ gtin: '04006381333931', price: 1, currency: 'EUR' });
    const read = (headers: Record<string, string>, want: number): Promise<{ id: string; data: Change }[]> =>
      new Promise((resolve, reject) => {
        const events: { id: string; data: Change }[] = [];
        const req = http.get(`${sim.url}/v1/stores/s1/changes`, { headers: { accept: 'text/event-stream', ...auth, ...headers } }, (res) => {
          expect(res.headers['content-type']).toBe('text/event-stream');
          let buf = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            buf += chunk;
            let i: number;
            while ((i = buf.indexOf('\n\n')) >= 0) {
              const block = buf.slice(0, i);
              buf = buf.slice(i + 2);
              const id = /^id: (.*)$/m.exec(block)?.[1];
              const data = /^data: (.*)$/m.exec(block)?.[1];
              if (id && data && /^event: change$/m.test(block)) events.push({ id, data: JSON.parse(data) as Change });
              if (events.length === want) {
                req.destroy();
                resolve(events);
              }
            }
          });
        });
        req.on('error', (e) => (events.length === want ? undefined : reject(e)));
        req.setTimeout(5000, () => req.destroy(new Error('SSE timeout')));
      });
    const p = read({}, 2);
    await waitFor(() => sim.stats().connections.sse === 1, 5000, 'the SSE stream to be open');
    sim.publishPrice({ gtin: '04006381333931', price: 2, currency: 'EUR' });
    const got = await p;
    expect(got.map((e) => (e.data as PriceChange).version)).toEqual([1, 2]);
    for (const e of got) expectConforms('Change', e.data);
    sim.publishPrice({ gtin: '04006381333931', price: 3, currency: 'EUR' });
    const resumed = await read({ 'last-event-id': got[1]?.id as string }, 1);
    expect((resumed[0]?.data as PriceChange).version).toBe(3);
  });

  it('loads prices from CSV, reporting every bad row at once', async () => {
    const sim = await startSim();
    const dir = tmp();
    const good = join(dir, 'prices.csv');
    writeFileSync(
      good,
      'gtin,price,currency,was_price,valid_from,valid_to,version\n' +
        '4006381333931,249,EUR,,,,3\n' +
        '4006381333931,199,EUR,249,2025-03-01T00:00:00Z,2025-03-08T00:00:00Z,4\n' +
        '012345678905,99,EUR,,,,\n',
    );
    expect(sim.loadPricesCsv(good)).toBe(3);
    const prices = sim.changes() as PriceChange[];
    expect(prices.map((c) => [c.gtin, c.version, c.price])).toEqual([
      ['04006381333931', 3, 249],
      ['04006381333931', 4, 199],
      ['00012345678905', 1, 99],
    ]);
    expect(prices[1]?.promotion).toEqual({ was_price: 249, valid_from: '2025-03-01T00:00:00Z', valid_to: '2025-03-08T00:00:00Z' });
    const bad = join(dir, 'bad.csv');
    writeFileSync(bad, 'gtin,price,currency,version\n4006381333932,249,EUR,1\n4006381333931,2.49,euro,1\n4006381333931,249,EUR,2\n');
    try {
      sim.loadPricesCsv(bad);
      expect.unreachable();
    } catch (e) {
      expect(isShelfgateError(e, ErrorCode.CONFIG_INVALID)).toBe(true);
      const issues = (e as { details: { line: number; message: string }[] }).details;
      expect(issues.map((i) => i.line)).toEqual([2, 3, 3, NaN]);
    }
    expect(sim.changes()).toHaveLength(3); // nothing published from the bad file
    expect(() => sim.loadPricesCsv(join(dir, 'missing.csv'))).toThrow(/cannot read/);
    const rnd = sim.publishRandomPrice();
    expectConforms('PriceChange', rnd);
  });
});

// ------------------------------------------------------------------ faults and lifecycle

describe('faults', () => {
  it('status5xxRate 1 answers 503 with Retry-After and stores nothing', async () => {
    const sim = await startSim({ faults: { status5xxRate: 1, retryAfterS: 2 } });
    const r = await postBatch(sim, 's1', [ev(1)]);
    await expectProblem(r, 503, 'unavailable');
    expect(r.headers.get('retry-after')).toBe('2');
    sim.setFaults({ status5xxRate: 0, status429Rate: 1 });
    await expectProblem(await postBatch(sim, 's1', [ev(1)]), 429, 'rate_limited');
    expect(sim.stats().totals.events).toBe(0);
    expect(sim.stats().requests.faults_injected).toMatchObject({ status5xx: 1, status429: 1 });
  });

  it('a lost response stores the events but the client gets no answer; the retry gets the stored response', async () => {
    const sim = await startSim({ faults: { lostResponseRate: 1 } });
    const events = [ev(1), ev(2)];
    await expect(postBatch(sim, 's1', events, { key: 'b1' })).rejects.toThrow();
    expect(sim.receivedEvents('s1')).toHaveLength(2);
    sim.setFaults({ lostResponseRate: 0 });
    const b = await json(await postBatch(sim, 's1', events, { key: 'b1' }));
    expect(b.counts).toEqual({ accepted: 2, duplicate: 0, rejected: 0 });
    expect(sim.receivedEvents('s1')).toHaveLength(2);
    expect(sim.stats().stores['s1']).toMatchObject({ duplicates: 2, retried_batches: 1 });
  });

  it('dropConnection resets without storing; timeout never answers; slowMs delays', async () => {
    const sim = await startSim({ faults: { dropConnectionRate: 1 } });
    await expect(postBatch(sim, 's1', [ev(1)])).rejects.toThrow();
    sim.setFaults({ dropConnectionRate: 0, timeoutRate: 1 });
    await expect(postBatch(sim, 's1', [ev(1)], { signal: AbortSignal.timeout(300) })).rejects.toThrow();
    expect(sim.stats().totals.events).toBe(0);
    sim.setFaults({ timeoutRate: 0, slowMs: 400 });
    const t0 = Date.now();
    expect((await postBatch(sim, 's1', [ev(1)])).status).toBe(200);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(380);
    expect(sim.stats().requests.faults_injected).toMatchObject({ drop_connection: 1, timeout: 1, slowed: 1 });
  });

  it('stop() closes hung requests and long-polls promptly', async () => {
    const sim = await startSim({ faults: { timeoutRate: 1 } });
    const hung = postBatch(sim, 's1', [ev(1)]).then(
      () => 'answered',
      () => 'closed',
    );
    await waitFor(() => sim.stats().requests.faults_injected.timeout === 1, 5000, 'the request to hang');
    sim.setFaults({ timeoutRate: 0 });
    const poll = fetch(`${sim.url}/v1/stores/s1/changes?wait=30`, { headers: auth }).then(
      async (r) => `answered ${r.status} ${await r.text()}`,
      () => 'closed',
    );
    await waitFor(() => sim.stats().connections.long_polls > 0, 5000, 'the long-poll to be parked');
    expect(sim.stats().connections.long_polls).toBe(1);
    const t0 = Date.now();
    await sim.stop();
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(await hung).toBe('closed');
    expect(await poll).toBe('closed');
  });
});

describe('status page, CLI', () => {
  it('shows what was received at /_sim/ and /_sim/state', async () => {
    const sim = await startSim();
    await postBatch(sim, 'store-<b>', [ev(1)]).then((r) => expect(r.status).toBe(400)); // invalid store id
    await postBatch(sim, 'store-9', [ev(1, 'bus-a/1', 'condition')]);
    sim.publishPrice({ gtin: '04006381333931', price: 249, currency: 'EUR' });
    const page = await fetch(`${sim.url}/_sim/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    const html = await page.text();
    expect(html).toContain('store-9');
    expect(html).toContain('condition');
    expect(html).toContain('04006381333931');
    const state = await json(await fetch(`${sim.url}/_sim/state`));
    expect(state.stats.stores['store-9'].events).toBe(1);
    expect(state.lastChanges).toHaveLength(1);
  });

  it('runCentralCli prints one line and stops on abort; bad flags exit 64', async () => {
    const out: string[] = [];
    const ac = new AbortController();
    let url = '';
    const run = runCentralCli(['--listen', '127.0.0.1:0', '--token', 'tok'], {
      stdout: { write: (s: string) => out.push(s) },
      stderr: { write: (s: string) => out.push(s) },
      signal: ac.signal,
      log: silentLogger(),
      onListening: (s) => {
        url = s.url;
      },
    });
    await waitFor(() => url, 5000, 'the central CLI to listen');
    expect(out.join('')).toMatch(/^central: listening on http:\/\/127\.0\.0\.1:\d+ \(token required\); status page http:\/\/127\.0\.0\.1:\d+\/_sim\/\n$/);
    expect((await fetch(`${url}/v1/stores/s1/changes`)).status).toBe(401);
    ac.abort();
    expect(await run).toBe(0);
    const err: string[] = [];
    expect(await runCentralCli(['--listen', 'nope'], { stderr: { write: (s: string) => err.push(s) } })).toBe(64);
    expect(await runCentralCli(['--bogus'], { stderr: { write: (s: string) => err.push(s) } })).toBe(64);
    expect(err.join('')).toContain('usage:');
  });
});

// ------------------------------------------------------------------ TLS and mTLS

describe('TLS', () => {
  let pki: { ca: Buffer; serverCert: Buffer; serverKey: Buffer; clientCert: Buffer; clientKey: Buffer; rogueCert: Buffer; rogueKey: Buffer };

  beforeAll(() => {
    const dir = mkdtempSync(join(tmpdir(), 'central-pki-'));
    tmpDirs.push(dir);
    const f = (n: string): string => join(dir, n);
    const ssl = (...args: string[]): void => {
      execFileSync('openssl', args, { stdio: 'pipe', timeout: 20_000 });
    };
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    ssl('req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '2', '-subj', '/CN=shelfgate test CA',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
    const leaf = (name: string, cn: string, ext: string, signer: 'ca' | 'self'): void => {
      writeFileSync(f(`${name}.ext`), ext);
      if (signer === 'self') {
        ssl('req', '-x509', ...ec, '-keyout', f(`${name}.key`), '-out', f(`${name}.crt`), '-days', '2', '-subj', `/CN=${cn}`);
        return;
      }
      ssl('req', ...ec, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=${cn}`);
      ssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-set_serial', String(Date.now()),
        '-days', '2', '-out', f(`${name}.crt`), '-extfile', f(`${name}.ext`));
    };
    leaf('server', '127.0.0.1', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n', 'ca');
    leaf('client', 'store-1', 'extendedKeyUsage=clientAuth\n', 'ca');
    leaf('rogue', 'store-1', '', 'self');
    const r = (n: string): Buffer => readFileSync(f(n));
    pki = {
      ca: r('ca.crt'),
      serverCert: r('server.crt'),
      serverKey: r('server.key'),
      clientCert: r('client.crt'),
      clientKey: r('client.key'),
      rogueCert: r('rogue.crt'),
      rogueKey: r('rogue.key'),
    };
    // afterEach removes tmpDirs; the PEMs are in memory now
  });

  function get(url: string, opts: https.RequestOptions): Promise<number> {
    return new Promise((resolve, reject) => {
      const req = https.get(`${url}/v1/stores/store-1/changes`, { ...opts, headers: auth, agent: false, timeout: 5000 }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
    });
  }

  it('serves https that verifies against the test CA', async () => {
    const sim = await startSim({ tls: { cert: pki.serverCert, key: pki.serverKey } });
    expect(sim.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(await get(sim.url, { ca: pki.ca })).toBe(200);
    await expect(get(sim.url, {})).rejects.toThrow(); // not trusted without the CA
  });

  it('with requestClientCert refuses a client without a certificate or with a foreign one, accepts one signed by the CA', async () => {
    const sim = await startSim({ tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.ca, requestClientCert: true } });
    await expect(get(sim.url, { ca: pki.ca })).rejects.toThrow();
    await expect(get(sim.url, { ca: pki.ca, cert: pki.rogueCert, key: pki.rogueKey })).rejects.toThrow();
    expect(await get(sim.url, { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey })).toBe(200);
    expect(sim.stats().totals.events).toBe(0);
  });
});
