/**
 * The rules of the central contract 1.3 (docs/central-api.yaml), each exercised against the
 * reference central (simulators/central) over real HTTP on 127.0.0.1 with port 0, with responses
 * validated by a real JSON Schema validator (ajv, 2020-12) against the YAML's schemas; and the
 * event payload schemas (docs/events/*.schema.json) checked against the examples and against the
 * payloads the real gateway code produces (an in-process gateway syncing to the reference central;
 * for the shelf-label kinds of 1.3 with an OpenEPaperLink access-point simulator on a real socket).
 */
import { afterEach, describe, expect, it } from 'vitest';
import Ajv2020, { type ValidateFunction } from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { parse as parseYaml } from 'yaml';
import { validateConfig } from '../../src/config/load';
import { buildGateway, type Gateway } from '../../src/core/gateway';
import { loadDefinitions } from '../../src/devices/definitions';
import type { ModbusDefinition } from '../../src/devices/types';
import { ErrorCode } from '../../src/errors';
import { BUILTIN_FEATURES } from '../../src/features';
import { labelsOf } from '../../src/features/labels';
import { silentLogger } from '../../src/log';
import { HttpsTransport } from '../../src/sync/https';
import { registerMock, unregisterMock } from '../../src/transport/mock';
import { CentralSimulator, type CentralSimulatorOptions } from '../../simulators/central/simulator';
import { EVENT_KINDS, LIMITS } from '../../simulators/central/types';
import { mockDeviceIo } from '../../simulators/io';
import { ModbusLoadCellBusSimulator } from '../../simulators/modbus-loadcell-sim';
import { OeplApSimulator } from '../../simulators/oepl-ap/simulator';
import { LoadCellPhysics, mulberry32 } from '../../simulators/physics';
import { tmp, useCleanups, waitFor } from '../helpers/daemon';

const ROOT = join(__dirname, '..', '..');
const DOCS = join(ROOT, 'docs');
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;
const spec = parseYaml(readFileSync(join(DOCS, 'central-api.yaml'), 'utf8')) as Any;

// ------------------------------------------------------------------ validators

const SPEC_ID = 'https://shelfgate.dev/schemas/central/v1/central-api.yaml';
const EVENTS_DIR = join(DOCS, 'events');
const payloadSchemaFiles = readdirSync(EVENTS_DIR).filter((f) => f.endsWith('.schema.json'));
const payloadSchemas = payloadSchemaFiles.map((f) => JSON.parse(readFileSync(join(EVENTS_DIR, f), 'utf8')) as Any);

/** The YAML's components as JSON Schema 2020-12 (OpenAPI 3.1 keywords such as `discriminator` are annotations here). */
const specAjv = new Ajv2020({ strict: false, allErrors: true });
addFormats(specAjv);
specAjv.addSchema({ ...spec, $id: SPEC_ID });

/** The payload schemas, strict: an unknown keyword or a typo in them fails to compile. */
const eventsAjv = new Ajv2020({ strict: true, strictRequired: false, allErrors: true });
addFormats(eventsAjv);
for (const s of payloadSchemas) eventsAjv.addSchema(s);

function specSchema(name: string): ValidateFunction {
  const v = specAjv.getSchema(`${SPEC_ID}#/components/schemas/${name}`);
  if (!v) throw new Error(`no schema ${name}`);
  return v;
}

function expectConforms(name: string, value: unknown): void {
  const v = specSchema(name);
  expect(v(value) ? [] : v.errors, `${name}: ${JSON.stringify(value).slice(0, 300)}`).toEqual([]);
}

/** The payload schema of a kind, by the YAML's `x-payload-schemas` link. */
function payloadValidator(kind: string): ValidateFunction {
  const file = spec.components.schemas.EventKind['x-payload-schemas'][kind] as string;
  const schema = JSON.parse(readFileSync(join(DOCS, file), 'utf8')) as { $id: string };
  const v = eventsAjv.getSchema(schema.$id);
  if (!v) throw new Error(`no payload schema for ${kind}`);
  return v;
}

function expectPayloadConforms(kind: string, payload: unknown): void {
  const v = payloadValidator(kind);
  expect(v(payload) ? [] : v.errors, `${kind} payload ${JSON.stringify(payload)}`).toEqual([]);
}

// ------------------------------------------------------------------ helpers

const TOKEN = 'contract-token';
const auth = { authorization: `Bearer ${TOKEN}` };
const cleanups = useCleanups();
const json = (r: Response): Promise<Any> => r.json() as Promise<Any>;

async function startSim(opts: Partial<CentralSimulatorOptions> = {}): Promise<CentralSimulator> {
  const sim = new CentralSimulator({ host: '127.0.0.1', port: 0, dbPath: ':memory:', token: TOKEN, log: silentLogger(), ...opts });
  await sim.start();
  cleanups.push(() => sim.stop());
  return sim;
}

let counter = 0;
function ev(seq: number, over: Record<string, unknown> = {}): Record<string, unknown> {
  counter++;
  return {
    event_id: randomUUID(),
    seq,
    device_id: 'g1-s2/3',
    kind: 'count',
    priority: 0,
    created_at: new Date(1_740_000_000_000 + counter).toISOString(),
    payload: { store_id: 's1', shelf_id: 'g1-s2', slot_id: '3', gtin: '04006381333931', kind: 'count', count: counter, weight_g: 12.5 },
    ...over,
  };
}

/** POSTs a batch body (an object, or exact bytes) to events:batch. */
async function post(
  sim: CentralSimulator,
  store: string,
  body: object | string | Buffer,
  opts: { key?: string; headers?: Record<string, string> } = {},
): Promise<Response> {
  return fetch(`${sim.url}/v1/stores/${store}/events:batch`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': opts.key ?? randomUUID(), ...auth, ...opts.headers },
    body: typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
}

/** A 200 batch answer, checked against EventBatchResult. */
async function batch(sim: CentralSimulator, store: string, body: object | string | Buffer, opts: { key?: string; headers?: Record<string, string> } = {}): Promise<Any> {
  const r = await post(sim, store, body, opts);
  const text = await r.text();
  expect(r.status, text).toBe(200);
  const b = JSON.parse(text) as Any;
  expectConforms('EventBatchResult', b);
  return b;
}

async function expectProblem(r: Response, status: number, code: string): Promise<Any> {
  expect(r.status).toBe(status);
  expect(r.headers.get('content-type')).toBe('application/problem+json');
  const body = await json(r);
  expect(body.code).toBe(code);
  expectConforms('Problem', body);
  return body;
}

const codes = (b: Any): string[] => b.results.map((r: Any) => r.error?.code ?? r.status);
const EPOCH_A = 'a0a0a0a0-1111-4222-8333-444455556666';
const EPOCH_B = 'b0b0b0b0-1111-4222-8333-444455556666';

// ------------------------------------------------------------------ the documents

describe('contract documents', () => {
  it('is version 1.3.0 with a changelog, and agrees with the simulator on the new codes, kinds and limits', () => {
    expect(spec.info.version).toBe('1.3.0');
    expect(spec.info.description).toContain('## Changes in 1.3.0');
    expect(spec.info.description).toContain('## Changes in 1.2.0');
    expect(spec.info.description).toContain('## Changes in 1.1.0');
    expect(spec.components.schemas.Change.discriminator.mapping.product).toBe('#/components/schemas/ProductChange');
    expect(spec.components.schemas.EventError.properties.code.enum).toContain('event_id_conflict');
    expect(spec.components.schemas.Problem.properties.code.enum).toContain('unknown_store');
    expect(spec.components.schemas.SeqGap.properties.reason.enum).toEqual(['dropped_buffer_full', 'compacted', 'parked']);
    expect(spec.info['x-limits'].max_response_bytes).toBe(LIMITS.maxResponseBytes);
    // the 1.3 kinds: in the enum the simulator accepts, with their device id forms and priority in the prose
    expect(spec.components.schemas.EventKind.enum).toEqual([...EVENT_KINDS]);
    for (const k of ['label_integrity', 'pick_report']) expect(EVENT_KINDS as readonly string[]).toContain(k);
    expect(spec.info.description).toContain('| `label:<mac>` | label_integrity');
    expect(spec.info.description).toContain('| `orders/<order_id>` | pick_report');
    expect(spec.info.description).toContain('| 1 | label_integrity, pick_report (1.3) | never dropped');
    for (const op of ['/v1/stores/{storeId}/events:batch', '/v1/stores/{storeId}/changes', '/v1/stores/{storeId}/changes:ack']) {
      const m = Object.values(spec.paths[op]).find((x: Any) => x && x.responses) as Any;
      expect(m.responses['404'], op).toEqual({ $ref: '#/components/responses/UnknownStore' });
    }
  });

  it('links one payload schema per event kind; every schema compiles strictly and has its own $id', () => {
    const links = spec.components.schemas.EventKind['x-payload-schemas'] as Record<string, string>;
    expect(Object.keys(links).sort()).toEqual([...EVENT_KINDS].sort());
    for (const [kind, file] of Object.entries(links)) {
      expect(file).toBe(`events/${kind}.schema.json`);
      expect(existsSync(join(DOCS, file)), file).toBe(true);
      expect(spec.info.description).toContain(`(${file})`);
      expect(payloadValidator(kind)).toBeTypeOf('function');
    }
    for (const [i, s] of payloadSchemas.entries()) {
      expect(s.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
      expect(s.$id).toBe(`https://shelfgate.dev/schemas/central/v1/events/${payloadSchemaFiles[i]}`);
    }
  });

  it('the YAML examples validate against the YAML schemas, and their payloads against the kind schemas', () => {
    const ex = spec.components.examples;
    expectConforms('EventBatch', ex.EventBatch.value);
    expectConforms('EventBatch', ex.GapsOnlyBatch.value);
    expectConforms('EventBatchResult', ex.EventBatchResult.value);
    expectConforms('ChangesPage', ex.ChangesPage.value);
    expectConforms('AckRequest', ex.AckRequest.value);
    for (const e of ex.EventBatch.value.events) expectPayloadConforms(e.kind, e.payload);
    // and the validators do reject
    expect(specSchema('EventBatch')({ events: [] })).toBe(false);
    expect(specSchema('EventBatch')({ ...ex.EventBatch.value, epoch: EPOCH_A.toUpperCase() })).toBe(false);
    expect(payloadValidator('pick')({ ...ex.EventBatch.value.events[0].payload, delta: 1 })).toBe(false);
    expect(payloadValidator('count')({ store_id: 's', shelf_id: 'a', slot_id: 'b', gtin: null, kind: 'count', count: null, weight_g: null })).toBe(false);
  });
});

// ------------------------------------------------------------------ the rules, against the reference central

describe('events:batch rules', () => {
  it('gaps with no event left to send: events [] is valid, results [], contiguous_seq advances; an empty batch is 400', async () => {
    const sim = await startSim();
    const b1 = await batch(sim, 's1', { epoch: EPOCH_A, events: [ev(1), ev(2)] });
    expect(b1.contiguous_seq).toBe(2);
    const b2 = await batch(sim, 's1', { epoch: EPOCH_A, events: [], gaps: [{ from_seq: 3, to_seq: 5, reason: 'parked' }] });
    expect(b2).toMatchObject({ epoch: EPOCH_A, results: [], counts: { accepted: 0, duplicate: 0, rejected: 0 }, contiguous_seq: 5 });
    await expectProblem(await post(sim, 's1', { epoch: EPOCH_A, events: [] }), 400, 'invalid_request');
    await expectProblem(await post(sim, 's1', { epoch: EPOCH_A, events: [], gaps: [] }), 400, 'invalid_request');
  });

  it('every gap reason settles its seqs; a gap over stored seqs or before its events is harmless; an unknown reason is 400', async () => {
    const sim = await startSim();
    const b1 = await batch(sim, 's1', { events: [ev(1), ev(4)], gaps: [{ from_seq: 2, to_seq: 2, reason: 'dropped_buffer_full' }, { from_seq: 1, to_seq: 1, reason: 'compacted' }] });
    expect(b1.contiguous_seq).toBe(2);
    // seq 3 declared parked, and an event arriving later for a declared seq is still processed
    const b2 = await batch(sim, 's1', { events: [ev(2)], gaps: [{ from_seq: 3, to_seq: 3, reason: 'parked' }] });
    expect(codes(b2)).toEqual(['accepted']);
    expect(b2.contiguous_seq).toBe(4);
    await expectProblem(await post(sim, 's1', { events: [], gaps: [{ from_seq: 5, to_seq: 5, reason: 'lost' }] }), 400, 'invalid_request');
    await expectProblem(await post(sim, 's1', { events: [], gaps: [{ from_seq: 6, to_seq: 5, reason: 'parked' }] }), 400, 'invalid_request');
  });

  it('a resent rejected event gets the same rejection, whatever it holds now and even after central learnt its kind; its seq stays covered', async () => {
    const dir = tmp('sg-contract-');
    const dbPath = join(dir, 'central.db');
    let sim = await startSim({ dbPath });
    const bad = ev(1, { created_at: 'yesterday' });
    const future = ev(2, { kind: 'shelf_temperature', priority: 2 });
    const b1 = await batch(sim, 's1', { events: [bad, future, ev(3)] });
    expect(codes(b1)).toEqual(['invalid_event', 'unknown_kind', 'accepted']);
    expect(b1.contiguous_seq).toBe(3);
    const conflict = ev(3);
    expect(codes(await batch(sim, 's1', { events: [conflict] }))).toEqual(['seq_conflict']);

    // resent (new batch ids), the invalid one even "repaired": the stored rejections, unchanged
    const b2 = await batch(sim, 's1', { events: [{ ...bad, created_at: new Date().toISOString() }, future, conflict] });
    expect(b2.results.map((r: Any) => r.error)).toEqual([b1.results[0].error, b1.results[1].error, expect.objectContaining({ code: 'seq_conflict' })]);
    expect(b2.contiguous_seq).toBe(3);

    // a central that learnt the kind since still answers the stored rejection
    await sim.stop();
    sim = await startSim({ dbPath, extraKinds: ['shelf_temperature'] });
    const b3 = await batch(sim, 's1', { events: [future, ev(4, { kind: 'shelf_temperature', priority: 2 })] });
    expect(codes(b3)).toEqual(['unknown_kind', 'accepted']);
    expect(b3.results[0].error).toEqual(b1.results[1].error);
    expect(sim.rejectedEvents('s1').map((r) => [r.code, r.times])).toEqual([
      ['invalid_event', 2],
      ['unknown_kind', 3],
      ['seq_conflict', 2],
    ]);
  });

  it('the same event_id: same seq and payload (as JSON) is duplicate; another seq or payload is event_id_conflict and the first version stays', async () => {
    const sim = await startSim();
    const e = ev(1, { payload: { store_id: 's1', shelf_id: 'g1-s2', slot_id: '3', gtin: null, kind: 'count', count: 5, weight_g: 100 } });
    await batch(sim, 's1', { events: [e] });
    // the same JSON value with members in another order, other whitespace and another number spelling
    const reordered = `{"events":[{"payload":{"weight_g":100.0,"count":5,"kind":"count","gtin":null,"slot_id":"3","shelf_id":"g1-s2","store_id":"s1"},
      "seq":1,"event_id":"${e['event_id'] as string}","device_id":"g1-s2/3","kind":"count","priority":0,"created_at":"${e['created_at'] as string}"}]}`;
    expect(codes(await batch(sim, 's1', reordered))).toEqual(['duplicate']);
    const other = await batch(sim, 's1', { events: [{ ...e, payload: { ...(e['payload'] as object), count: 6 } }, { ...e, seq: 2 }] });
    expect(codes(other)).toEqual(['event_id_conflict', 'event_id_conflict']);
    expect(other.results[1].error.detail).toContain('seq 1');
    expect(other.contiguous_seq).toBe(1); // seq 2 is not covered by a conflicting copy
    // a broken copy of a stored event is rejected, but not remembered under the stored event's id
    expect(codes(await batch(sim, 's1', { events: [{ ...e, created_at: 'later' }] }))).toEqual(['invalid_event']);
    // the first stored version stays, and its own resends stay duplicate
    expect(sim.receivedEvents('s1').map((x) => [x.seq, x.payload['count']])).toEqual([[1, 5]]);
    expect(codes(await batch(sim, 's1', { events: [e] }))).toEqual(['duplicate']);
  });

  it('Idempotency-Key: the same request within 24 h gets the stored response (current contiguous_seq); another body is 422; a non-200 leaves the key unused; after 24 h it may be new', async () => {
    let nowMs = Date.parse('2025-03-01T10:00:00Z');
    const sim = await startSim({ now: () => nowMs });
    const body = JSON.stringify({ epoch: EPOCH_A, events: [ev(1), ev(2)] });
    const first = await batch(sim, 's1', body, { key: 'k1' });
    expect(codes(first)).toEqual(['accepted', 'accepted']);
    await batch(sim, 's1', { epoch: EPOCH_A, events: [ev(3)] }, { key: 'k2' });

    // same key, same body (here gzip-compressed: the fingerprint is the decompressed body)
    nowMs += 23 * 3600_000;
    const replay = await batch(sim, 's1', gzipSync(body), { key: 'k1', headers: { 'content-encoding': 'gzip' } });
    expect(replay).toEqual({ ...first, contiguous_seq: 3 }); // stored results, current contiguous_seq
    expect(sim.receivedEvents('s1')).toHaveLength(3);
    expect(sim.stats().stores['s1']).toMatchObject({ retried_batches: 1, duplicates: 2 });

    // same key, another body: other gaps, another epoch, other events
    const withGap = JSON.stringify({ ...JSON.parse(body), gaps: [{ from_seq: 9, to_seq: 9, reason: 'parked' }] });
    await expectProblem(await post(sim, 's1', withGap, { key: 'k1' }), 422, 'idempotency_key_reused');
    await expectProblem(await post(sim, 's1', { ...JSON.parse(body), epoch: EPOCH_B }, { key: 'k1' }), 422, 'idempotency_key_reused');
    expect(sim.receivedEvents('s1', { epoch: EPOCH_B })).toEqual([]);

    // a request answered 400 does not use its key
    await expectProblem(await post(sim, 's1', { epoch: 'not-a-uuid', events: [ev(4)] }, { key: 'k3' }), 400, 'invalid_request');
    expect(codes(await batch(sim, 's1', { epoch: EPOCH_A, events: [ev(4)] }, { key: 'k3' }))).toEqual(['accepted']);

    // after 24 h the key may be forgotten: a new body under it is processed, events still deduplicated
    nowMs += 2 * 3600_000;
    const late = await batch(sim, 's1', withGap, { key: 'k1' });
    expect(codes(late)).toEqual(['duplicate', 'duplicate']);
    expect(late.contiguous_seq).toBe(4);
  });

  it('contiguous_seq never decreases for an epoch, whatever order batches and replays arrive in', async () => {
    const sim = await startSim();
    const seen: number[] = [];
    const bodies = [[5, 6], [1, 2], [3], [4], [8]].map((seqs) => JSON.stringify({ epoch: EPOCH_A, events: seqs.map((s) => ev(s)) }));
    for (const [i, b] of bodies.entries()) seen.push((await batch(sim, 's1', b, { key: `b${i}` })).contiguous_seq);
    for (const [i, b] of bodies.entries()) seen.push((await batch(sim, 's1', b, { key: `b${i}` })).contiguous_seq);
    seen.push((await batch(sim, 's1', { epoch: EPOCH_A, events: [], gaps: [{ from_seq: 7, to_seq: 7, reason: 'compacted' }] })).contiguous_seq);
    expect(seen).toEqual([0, 2, 3, 6, 6, 6, 6, 6, 6, 6, 8]);
  });
});

describe('epochs', () => {
  it('two epochs with overlapping seqs are both accepted, each with its own contiguous_seq; the epoch is echoed', async () => {
    const sim = await startSim();
    const a = await batch(sim, 's1', { epoch: EPOCH_A, events: [ev(1), ev(2), ev(3)] });
    expect(a).toMatchObject({ epoch: EPOCH_A, contiguous_seq: 3 });
    // a replaced gateway (new database, new epoch) starts at seq 1 again
    const b = await batch(sim, 's1', { epoch: EPOCH_B, events: [ev(1), ev(2)] });
    expect(codes(b)).toEqual(['accepted', 'accepted']);
    expect(b).toMatchObject({ epoch: EPOCH_B, contiguous_seq: 2 });
    // the old gateway still draining: its own seq space goes on
    expect(await batch(sim, 's1', { epoch: EPOCH_A, events: [ev(5)], gaps: [{ from_seq: 4, to_seq: 4, reason: 'dropped_buffer_full' }] })).toMatchObject({
      epoch: EPOCH_A,
      contiguous_seq: 5,
    });
    expect(sim.receivedEvents('s1', { epoch: EPOCH_A }).map((e) => e.seq)).toEqual([1, 2, 3, 5]);
    expect(sim.receivedEvents('s1', { epoch: EPOCH_B }).map((e) => e.seq)).toEqual([1, 2]);
    expect(sim.receivedEvents('s1', { orderBy: 'seq' }).map((e) => `${e.epoch[0]}${e.seq}`)).toEqual(['a1', 'a2', 'a3', 'a5', 'b1', 'b2']);
    const st = sim.stats().stores['s1']!;
    expect(st.epochs.map((x) => [x.epoch, x.contiguous_seq, x.max_seq, x.events])).toEqual([
      [EPOCH_A, 5, 5, 4],
      [EPOCH_B, 2, 2, 2],
    ]);
    expect(st).toMatchObject({ epoch: EPOCH_A, contiguous_seq: 5, events: 6 });
  });

  it('a batch without epoch is the legacy epoch "" (1.0 gateways keep working); "" is the same epoch', async () => {
    const sim = await startSim();
    const legacy = await batch(sim, 's1', { events: [ev(1), ev(2)] });
    expect(legacy).toMatchObject({ epoch: '', contiguous_seq: 2 });
    expect(await batch(sim, 's1', { epoch: '', events: [ev(3)] })).toMatchObject({ epoch: '', contiguous_seq: 3 });
    expect(await batch(sim, 's1', { epoch: EPOCH_A, events: [ev(1)] })).toMatchObject({ epoch: EPOCH_A, contiguous_seq: 1 });
    for (const bad of [EPOCH_A.toUpperCase(), 'epoch-1', 42]) await expectProblem(await post(sim, 's1', { epoch: bad, events: [ev(9)] }), 400, 'invalid_request');
  });

  it('within one epoch a taken seq is still seq_conflict; an event_id is unique across the epochs of a store', async () => {
    const sim = await startSim();
    const first = ev(1);
    await batch(sim, 's1', { epoch: EPOCH_A, events: [first] });
    const again = await batch(sim, 's1', { epoch: EPOCH_A, events: [ev(1)] });
    expect(codes(again)).toEqual(['seq_conflict']);
    expect(await batch(sim, 's1', { events: [ev(1)] })).toMatchObject({ epoch: '', results: [{ status: 'accepted' }] });
    const moved = await batch(sim, 's1', { epoch: EPOCH_B, events: [first] });
    expect(codes(moved)).toEqual(['event_id_conflict']);
    expect(moved.results[0].error.detail).toContain(`epoch "${EPOCH_A}"`);
    expect(moved.contiguous_seq).toBe(0);
  });
});

describe('errors, feed and limits', () => {
  it('answers 404 unknown_store for a store it does not know, after 401 and 403, on every operation', async () => {
    const sim = await startSim({ knownStores: ['s1', 's2'], storeIds: ['s1', 's3'] });
    await expectProblem(await post(sim, 's9', { events: [ev(1)] }, { headers: { authorization: 'Bearer wrong' } }), 401, 'invalid_token');
    await expectProblem(await post(sim, 's2', { events: [ev(1)] }), 403, 'store_not_permitted');
    const p = await expectProblem(await post(sim, 's3', { events: [ev(1)] }), 404, 'unknown_store');
    expect(p.type).toBe('https://shelfgate.dev/problems/unknown-store');
    await expectProblem(await fetch(`${sim.url}/v1/stores/s3/changes`, { headers: auth }), 404, 'unknown_store');
    const ack = await fetch(`${sim.url}/v1/stores/s3/changes:ack`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth },
      body: JSON.stringify({ acks: [{ change_id: 'x', status: 'applied', applied_at: '2025-03-01T07:00:05Z' }] }),
    });
    await expectProblem(ack, 404, 'unknown_store');
    expect(sim.ingestBatch('s3', 'k', { events: [ev(1)] })).toMatchObject({ ok: false, status: 404, code: 'unknown_store' }); // the MQTT path
    expect((await batch(sim, 's1', { events: [ev(1)] })).counts.accepted).toBe(1);
    expect(sim.stats().stores['s3']).toBeUndefined();
  });

  it('never redirects a /v1 request; a gateway does not follow a redirect (its token never reaches the Location)', async () => {
    const sim = await startSim();
    for (const path of ['/v1/stores/s1/events:batch/', '/v1/stores/s1/', '/v1/stores/s1/changes/', '/v1', '/v1/stores/s1/Changes']) {
      const r = await fetch(`${sim.url}${path}`, { headers: auth, redirect: 'manual' });
      expect(r.status >= 300 && r.status < 400, `${path} answered ${r.status}`).toBe(false);
      expect(r.headers.get('location'), path).toBeNull();
    }
    const before = sim.stats().requests.total;
    // a captive portal in front of central
    const portal = http.createServer((req, res) => {
      req.resume();
      res.writeHead(307, { location: `${sim.url}${req.url ?? '/'}` }).end();
    });
    await new Promise<void>((resolve) => portal.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => portal.close(() => resolve())));
    const port = (portal.address() as { port: number }).port;
    const transport = new HttpsTransport({ config: { url: `http://127.0.0.1:${port}`, request_timeout_ms: 2000 }, storeId: 's1', log: silentLogger() });
    await transport.start();
    cleanups.push(() => transport.stop());
    const ev1 = ev(1) as Any;
    await expect(transport.upload('k1', [ev1])).rejects.toMatchObject({ code: ErrorCode.SYNC_FATAL, details: { status: 307 } });
    expect(sim.stats().requests.total).toBe(before);
  });

  it('product changes and a slot assignment with labels, as the simulator serves them, conform to Change (1.2)', async () => {
    const sim = await startSim();
    const named = sim.publishProduct({ gtin: '4006381333931', name: 'Whole milk 3.5 %', netContent: { amount: 1, unit: 'l' } });
    const plain = sim.publishProduct({ gtin: '96385074', name: 'Free-range eggs, 10 pack' });
    const slot = sim.assignSlot({ storeId: 's1', shelf: 'g1-s2', slot: 3, gtin: '4006381333931', unitWeightG: 1040, labels: ['0000021EC9AB1234', 'a1b2c3d4e5f6'] });
    const page = await json(await fetch(`${sim.url}/v1/stores/s1/changes?limit=500`, { headers: auth }));
    expectConforms('ChangesPage', page);
    for (const c of page.changes) expectConforms('Change', c);
    expect(page.changes.map((c: Any) => c.change_id)).toEqual([named.change_id, plain.change_id, slot.change_id]);
    expect(page.changes[1]).toMatchObject({ type: 'product', gtin: '00000096385074', net_content: null, version: 1 });
    expect(page.changes[2].labels).toEqual(['0000021EC9AB1234', 'A1B2C3D4E5F6']);
    // a product without a name, or a label that is not a MAC, does not conform
    expect(() => expectConforms('Change', { ...named, name: '' })).toThrow();
    expect(() => expectConforms('Change', { ...slot, labels: ['not-a-mac'] })).toThrow();
  });

  it('a change of a type the store does not know: delivered in order, acknowledged invalid, and the feed goes on', async () => {
    const sim = await startSim();
    const p1 = sim.publishPrice({ gtin: '04006381333931', price: 249, currency: 'EUR' });
    const label = sim.publishOtherChange({ type: 'label', storeId: 's1', body: { template: 'promo-a' } });
    sim.publishOtherChange({ type: 'label', storeId: 's2' });
    const p2 = sim.publishPrice({ gtin: '04006381333931', price: 199, currency: 'EUR' });
    const page = await json(await fetch(`${sim.url}/v1/stores/s1/changes?limit=500`, { headers: auth }));
    expectConforms('ChangesPage', page);
    expect(page.changes.map((c: Any) => c.change_id)).toEqual([p1.change_id, label.change_id, p2.change_id]);
    const at = '2025-03-01T07:00:05Z';
    const acks = await fetch(`${sim.url}/v1/stores/s1/changes:ack`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth },
      body: JSON.stringify({
        acks: [
          { change_id: label.change_id, status: 'invalid', applied_at: at, detail: 'unknown change type "label"' },
          { change_id: p2.change_id, status: 'applied', applied_at: at },
        ],
      }),
    });
    expect((await json(acks)).results.map((r: Any) => r.result)).toEqual(['recorded', 'recorded']);
    expect(sim.acks('s1').find((a) => a.change_id === label.change_id)).toMatchObject({ status: 'invalid', detail: 'unknown change type "label"' });
    const p3 = sim.publishPrice({ gtin: '04006381333931', price: 179, currency: 'EUR' });
    const next = await json(await fetch(`${sim.url}/v1/stores/s1/changes?cursor=${page.next_cursor as string}`, { headers: auth }));
    expect(next.changes.map((c: Any) => c.change_id)).toEqual([p3.change_id]);
  });

  it('keeps every answer under 1 MiB: 500 rejected events with long ids and details, and a page of 500 changes', async () => {
    const sim = await startSim();
    const events = Array.from({ length: 500 }, (_, i) => ({ event_id: `x${'y'.repeat(300)}${i}`, seq: i + 1, device_id: '', kind: 'k'.repeat(400), created_at: 'never', payload: [] }));
    const r = await post(sim, 's1', { events });
    const text = await r.text();
    expect(r.status).toBe(200);
    expect(Buffer.byteLength(text)).toBeLessThan(LIMITS.maxResponseBytes);
    const b = JSON.parse(text) as Any;
    expectConforms('EventBatchResult', b);
    expect(b.results.every((x: Any) => x.event_id === null && x.error.code === 'invalid_event' && x.error.detail.length <= 500)).toBe(true);
    const longDetail = await post(sim, 's1', { events: [], gaps: Array.from({ length: 1000 }, () => ({ from_seq: 'one', to_seq: -1, reason: 'x'.repeat(500) })) });
    expect((await expectProblem(longDetail, 400, 'invalid_request')).detail.length).toBeLessThanOrEqual(LIMITS.maxProblemDetail);
    for (let v = 1; v <= 500; v++) sim.publishPrice({ gtin: '04006381333931', price: v, currency: 'EUR', promotion: { was_price: 999, valid_from: '2025-03-01T00:00:00Z', valid_to: '2025-03-08T00:00:00Z' } });
    const page = await fetch(`${sim.url}/v1/stores/s1/changes?limit=500`, { headers: auth });
    const pageText = await page.text();
    expect(JSON.parse(pageText).changes).toHaveLength(500);
    expect(Buffer.byteLength(pageText)).toBeLessThan(LIMITS.maxResponseBytes);
  });

  it('accepts any device id of 1-128 characters and any priority 0-9 (it never rejects an event for them)', async () => {
    const sim = await startSim();
    const b = await batch(sim, 's1', { events: [ev(1, { device_id: 'Regal 7 · Fach 3' }), ev(2, { device_id: 'd'.repeat(128), priority: 9 }), ev(3, { device_id: 'bus-a.3', priority: 5 })] });
    expect(codes(b)).toEqual(['accepted', 'accepted', 'accepted']);
  });
});

// ------------------------------------------------------------------ what the real gateway sends

describe('payloads of the real gateway', () => {
  let gw: Gateway | undefined;
  let mockName = '';
  afterEach(async () => {
    await gw?.stop();
    gw = undefined;
    if (mockName) unregisterMock(mockName);
  });

  it('every event the gateway uploads validates against its kind schema, with the documented device id form and priority', async () => {
    const central = await startSim({ token: undefined });
    const label = central.publishOtherChange({ type: 'label', storeId: 'st1' });
    const price = central.publishPrice({ gtin: '04006381333931', price: 249, currency: 'EUR' });
    const defs = loadDefinitions();
    mockName = `contract-${process.pid}-${Date.now()}`;
    const { config, issues } = validateConfig(
      {
        store_id: 'st1',
        data_dir: tmp('sg-contract-gw-'),
        mqtt: { port: 0, users: [] },
        storage: { flush_interval_ms: 5 },
        stability: { window: 3, max_spread_g: 3 },
        buses: [{ id: 'bus1', path: `mock://${mockName}`, model: 'generic-modbus-loadcell', poll_interval_ms: 20, timeout_ms: 100, reconnect: { initial_ms: 20, max_ms: 200 } }],
        shelves: [
          {
            id: 'sh1',
            slots: [
              { id: 'a', sensor: { bus: 'bus1', address: 1 }, gtin: '04006381333931', unit_weight_g: 250 },
              { id: 'b', sensor: { bus: 'bus1', address: 2 }, gtin: '5901234123457', unit_weight_g: 100 },
            ],
          },
        ],
        sync: { transport: 'https', https: { url: central.url, request_timeout_ms: 2000 }, batch_max_events: 20, backoff: { initial_ms: 20, max_ms: 200 }, long_poll_s: 1 },
      },
      defs,
      BUILTIN_FEATURES,
    );
    expect(issues).toEqual([]);
    const physics = new Map([
      [1, new LoadCellPhysics({ unitWeightG: 250, items: 10, noiseSigmaG: 0.3, settleMs: 60, rng: mulberry32(1) })],
      [2, new LoadCellPhysics({ unitWeightG: 100, items: 5, noiseSigmaG: 0.3, settleMs: 60, rng: mulberry32(2) })],
    ]);
    const bus = new ModbusLoadCellBusSimulator({ definition: defs.get('generic-modbus-loadcell') as ModbusDefinition, slaves: physics, turnaroundMs: 0 });
    bus.attach(mockDeviceIo(registerMock(mockName)));
    gw = buildGateway(config!, { log: silentLogger(), definitions: defs, features: BUILTIN_FEATURES });
    await gw.start();

    const got = (kind: string, pred: (p: Any) => boolean = () => true) => central.receivedEvents('st1').find((e) => e.kind === kind && pred(e.payload));
    await waitFor(() => got('count', (p) => p.slot_id === 'a') && got('count', (p) => p.slot_id === 'b'), 10_000, 'first counts at central');
    physics.get(1)!.pick(3);
    await waitFor(() => got('pick'), 10_000, 'a pick at central');
    physics.get(1)!.put(1);
    await waitFor(() => got('put'), 10_000, 'a put at central');
    physics.get(2)!.placeForeign(40);
    await waitFor(() => got('anomaly') && got('condition', (p) => p.condition === 'mismatch'), 10_000, 'an anomaly at central');
    physics.get(2)!.removeForeign();
    await waitFor(() => got('condition', (p) => p.condition === 'ok' && p.previous === 'mismatch'), 10_000, 'ok again at central');
    await gw.locations.assign('sh1', 'a', { unitWeightG: 125 }, 'test');
    await waitFor(() => got('count', (p) => p.reason === 'recount'), 10_000, 'a recount at central');
    bus.setFaults(2, { silent: true });
    await waitFor(() => got('condition', (p) => p.condition === 'offline'), 10_000, 'offline at central');
    await waitFor(() => gw!.store.outboxStats().count === 0, 10_000, 'the outbox drained');

    const priorities: Record<string, number> = { pick: 0, put: 0, count: 0, anomaly: 1, condition: 2 };
    const received = central.receivedEvents('st1');
    expect(new Set(received.map((e) => e.kind))).toEqual(new Set(Object.keys(priorities)));
    for (const e of received) {
      const { epoch: _epoch, received_at: _r, batch_id: _b, ...event } = e;
      expectConforms('Event', event);
      expectPayloadConforms(e.kind, e.payload);
      expect(e.device_id).toMatch(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\/[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/);
      expect(e.device_id).toBe(`${e.payload['shelf_id'] as string}/${e.payload['slot_id'] as string}`);
      expect(e.priority, e.kind).toBe(priorities[e.kind]);
    }

    // the feed: the unknown change type is acknowledged invalid with the documented detail, the price applied
    await waitFor(() => central.acks('st1').length === 2, 10_000, 'both changes acknowledged');
    expect(central.acks('st1').map((a) => [a.change_id, a.status, a.detail ?? null])).toEqual([
      [label.change_id, 'invalid', 'unknown change type "label"'],
      [price.change_id, 'applied', null],
    ]);
  }, 60_000);

  it('the shelf-label kinds of 1.3 (label_integrity, pick_report): accepted by the reference central as they are sent, each payload valid against its schema', async () => {
    const MILK = '04006381333931';
    const BREAD = '5901234123457'; // GTIN-13 in the config: the gateway sends GTIN-14
    const SOAP = '00012345678905'; // a slot nobody weighs and no label shows
    const GHOST = '96385074'; // no slot holds it
    const central = await startSim({ token: undefined }); // the contract's kinds only: no extraKinds
    const ap = new OeplApSimulator({ labels: 3, seed: 7, checkinMs: 300, rateBps: 20_000 });
    await ap.start();
    cleanups.push(() => ap.stop());
    const defs = loadDefinitions();
    mockName = `contract-labels-${process.pid}-${Date.now()}`;
    const { config, issues } = validateConfig(
      {
        store_id: 'st1',
        data_dir: tmp('sg-contract-labels-'),
        mqtt: { port: 0, users: [] },
        storage: { flush_interval_ms: 5 },
        stability: { window: 3, max_spread_g: 3 },
        buses: [{ id: 'bus1', path: `mock://${mockName}`, model: 'generic-modbus-loadcell', poll_interval_ms: 20, timeout_ms: 100, reconnect: { initial_ms: 20, max_ms: 200 } }],
        shelves: [
          {
            id: 'sh1',
            slots: [
              { id: 'a', sensor: { bus: 'bus1', address: 1 }, gtin: MILK, unit_weight_g: 250 },
              { id: 'b', sensor: { bus: 'bus1', address: 2 }, gtin: BREAD, unit_weight_g: 100 },
              { id: 'c', gtin: SOAP },
            ],
          },
        ],
        sync: { transport: 'https', https: { url: central.url, request_timeout_ms: 2000 }, batch_max_events: 20, backoff: { initial_ms: 20, max_ms: 200 }, long_poll_s: 1 },
        labels: { locale: 'de-DE', access_points: [{ id: 'ap1', url: ap.url, request_timeout_ms: 2000, poll_interval_ms: 300 }], default_check_in_s: 0.3, publish_interval_ms: 50 },
      },
      defs,
      BUILTIN_FEATURES,
    );
    expect(issues).toEqual([]);
    const physics = new Map([
      [1, new LoadCellPhysics({ unitWeightG: 250, items: 10, noiseSigmaG: 0.3, settleMs: 60, rng: mulberry32(1) })],
      [2, new LoadCellPhysics({ unitWeightG: 100, items: 5, noiseSigmaG: 0.3, settleMs: 60, rng: mulberry32(2) })],
    ]);
    const bus = new ModbusLoadCellBusSimulator({ definition: defs.get('generic-modbus-loadcell') as ModbusDefinition, slaves: physics, turnaroundMs: 0 });
    bus.attach(mockDeviceIo(registerMock(mockName)));
    gw = buildGateway(config!, { log: silentLogger(), definitions: defs, features: BUILTIN_FEATURES });
    await gw.start();
    const caller = { username: 'contract', role: 'admin' as const, via: 'internal' as const };
    const run = (cmd: string, payload: unknown): Promise<Any> => gw!.commands.execute(cmd, payload, caller);
    const got = (kind: string, pred: (p: Any) => boolean = () => true) => central.receivedEvents('st1').find((e) => e.kind === kind && pred(e.payload));

    // labels: two on slots (delivered and confirmed), one bound to a product central has no price for (a problem)
    const [onMilk, onBread, unpriced] = ap.macs as [string, string, string];
    await run('label.bind', { mac: onMilk, shelf: 'sh1', slot: 'a', type: 'oepl-m2-2.9-bwr' });
    await run('label.bind', { mac: onBread, shelf: 'sh1', slot: 'b', type: 'oepl-m2-2.9-bwr' });
    await run('label.bind', { mac: unpriced.toLowerCase(), gtin: GHOST, type: 'oepl-m2-2.9-bwr' });
    central.publishPrice({ gtin: MILK, price: 249, currency: 'EUR' });
    central.publishPrice({ gtin: '0' + BREAD, price: 1999, currency: 'EUR', promotion: { was_price: 2299, valid_from: '2025-03-01T00:00:00Z', valid_to: '2099-03-08T00:00:00Z' } });
    await waitFor(() => got('label_integrity', (p) => p.mac === onMilk && p.matches) && got('label_integrity', (p) => p.mac === onBread && p.matches), 30_000, 'both slot labels confirmed at central');
    await waitFor(() => got('label_integrity', (p) => p.mac === unpriced && p.problem !== null), 10_000, 'the unpriced label reported with its problem');
    expect(labelsOf(gw).integrity(onMilk)).toMatchObject({ matches: true, state: 'confirmed' });

    // pick-to-light: one order picked by the weight shelf, one ended short (a GTIN nobody holds, a line half confirmed by hand), one cancelled
    await waitFor(() => got('count', (p) => p.slot_id === 'a'), 10_000, 'the first count of the weighed slot');
    await run('order.pick', { order_id: 'web-4711', lines: [{ gtin: MILK, qty: 2 }] });
    physics.get(1)!.pick(2);
    await waitFor(() => got('pick_report', (p) => p.order_id === 'web-4711'), 10_000, 'the picked order at central');
    await run('order.pick', { order_id: 'web-4712', lines: [{ gtin: GHOST, qty: 1 }, { gtin: SOAP, qty: 2 }] });
    await run('order.confirm', { order_id: 'web-4712', gtin: SOAP, qty: 1 });
    await run('order.done', { order_id: 'web-4712' });
    const oddId = 'Bestellung 4713 · Müller'; // an order id as an order system may write it: spaces, non-ASCII
    await run('order.pick', { order_id: oddId, lines: [{ gtin: BREAD, qty: 1 }], colour: 'blue' });
    await run('order.cancel', { order_id: oddId });
    await waitFor(() => central.receivedEvents('st1').filter((e) => e.kind === 'pick_report').length === 3, 10_000, 'three pick reports at central');
    await waitFor(() => gw!.store.outboxStats().count === 0, 10_000, 'the outbox drained');
    // nothing of ours was rejected: the reference central knows both kinds without being told
    expect(central.rejectedEvents('st1')).toEqual([]);

    const received = central.receivedEvents('st1').filter((e) => e.kind === 'label_integrity' || e.kind === 'pick_report');
    for (const e of received) {
      const { epoch: _epoch, received_at: _r, batch_id: _b, ...event } = e;
      expectConforms('Event', event);
      expectPayloadConforms(e.kind, e.payload);
      expect(e.priority, e.kind).toBe(1);
      if (e.kind === 'label_integrity') expect(e.device_id).toBe(`label:${e.payload['mac'] as string}`);
      else expect(e.device_id).toBe(`orders/${e.payload['order_id'] as string}`);
    }
    // what was validated covers the shapes the schemas describe
    const integrity = received.filter((e) => e.kind === 'label_integrity').map((e) => e.payload as Any);
    expect(integrity.find((p) => p.mac === onBread && p.matches)).toMatchObject({ location: 'sh1/b', gtin: '05901234123457', state: 'confirmed', shows: { price: 1999, currency: 'EUR' }, ap: 'ap1' });
    expect(integrity.find((p) => p.mac === unpriced && p.problem)).toMatchObject({ location: null, gtin: '00000096385074', shows: null, should_show: null, matches: false });
    const reports = new Map(received.filter((e) => e.kind === 'pick_report').map((e) => [e.payload['order_id'] as string, e.payload as Any]));
    expect(reports.get('web-4711')).toMatchObject({ kind: 'pick_report', state: 'picked', first_pick_at: expect.any(String), lines: [{ gtin: MILK, picked: 2, by_weight: 2, state: 'picked', locations: ['sh1/a'], unlocated: null }] });
    expect(reports.get('web-4712')).toMatchObject({
      state: 'short',
      lines: [
        { gtin: '00000096385074', short: 1, state: 'short', locations: [], unlocated: 'no-location' },
        { gtin: SOAP, picked: 1, by_hand: 1, short: 1, state: 'short', locations: ['sh1/c'], unlocated: 'no-label' },
      ],
      unlocated: ['00000096385074', SOAP],
    });
    expect(reports.get(oddId)).toMatchObject({ state: 'cancelled', colour: 'blue', lines: [{ state: 'cancelled', short: 0 }] });

    // and the schemas are not vacuous: what the code would send wrongly is refused
    const li = payloadValidator('label_integrity');
    const okIntegrity = integrity.find((p) => p.mac === onMilk && p.matches);
    for (const bad of [
      { ...okIntegrity, mac: okIntegrity.mac.toLowerCase() },
      { ...okIntegrity, state: 'stored' },
      { ...okIntegrity, shows: { price: 2.49, currency: 'EUR', since: okIntegrity.shows.since } },
      { ...okIntegrity, conditions: ['sleepy'] },
      { ...okIntegrity, matches: undefined },
    ])
      expect(li(JSON.parse(JSON.stringify(bad))), JSON.stringify(bad)).toBe(false);
    const pr = payloadValidator('pick_report');
    const okReport = reports.get('web-4711');
    for (const bad of [
      { ...okReport, state: 'open' },
      { ...okReport, ended_at: null },
      { ...okReport, order_id: 'a/b' },
      { ...okReport, lines: [{ ...okReport.lines[0], state: 'open' }] },
      { ...okReport, lines: [{ ...okReport.lines[0], unlocated: 'nowhere' }] },
      { ...okReport, colour: 'white' },
    ])
      expect(pr(bad), JSON.stringify(bad)).toBe(false);
  }, 90_000);
});
