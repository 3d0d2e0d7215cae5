/**
 * The one configuration schema. A YAML file is parsed, validated once with every
 * error reported at once (path: message), then frozen and handed to components as slices.
 * Defaults exist for everything except `store_id` and the devices (buses and shelves).
 * Keys are snake_case in YAML and in the typed Config alike, so the docs, the file and the code
 * use the same names.
 */
import { z } from 'zod';
import { isValidGtin } from '../util/gtin';

export const id = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, 'must be 1-64 characters of A-Z a-z 0-9 _ - (used in MQTT topics)');

export const serialOverride = z
  .strictObject({
    baud_rate: z.number().int().positive().optional(),
    data_bits: z.union([z.literal(5), z.literal(6), z.literal(7), z.literal(8)]).optional(),
    parity: z.enum(['none', 'even', 'odd']).optional(),
    stop_bits: z.union([z.literal(1), z.literal(2)]).optional(),
  })
  .optional();

export const backoff = z
  .strictObject({
    initial_ms: z.number().int().min(10).default(500),
    max_ms: z.number().int().min(100).max(3_600_000, 'must be <= 3600000 (1 h)').default(30_000),
  })
  .prefault({});

/**
 * The keys every slot (location) has, whatever observes it: its id and the product it holds.
 * Features add their own keys to each slot (the shelves feature: `sensor`, `tare_g`, ...), see
 * composeConfigSchema.
 */
export const slotBaseShape = {
  id,
  gtin: z
    .string()
    .refine(isValidGtin, 'must be a GTIN-8/12/13/14 with a valid GS1 check digit')
    .optional(),
  /** Weight of one item in grams (the product's, for this slot); central or calibration may override it. */
  unit_weight_g: z.number().gt(0, 'must be > 0').optional(),
};

export const slotSchema = z.strictObject(slotBaseShape);

export const shelfSchema = z.strictObject({
  id,
  slots: z.array(slotSchema).min(1, 'must have at least one slot'),
});

const userSchema = z
  .strictObject({
    /** Appears in topics (`response/<username>/...`), so it is topic-safe like every id. */
    username: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/, 'must be 1-64 characters of A-Z a-z 0-9 _ . @ - (used in MQTT topics)'),
    /** `scrypt$N$r$p$<salt b64>$<hash b64>`; make one with `shelfgate passwd`. Optional for a user who only logs in with a client certificate (`cert_cn`). */
    password_hash: z.string().regex(/^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/, 'must be a scrypt hash from `shelfgate passwd`').optional(),
    role: z.enum(['device', 'kiosk', 'service', 'technician', 'admin']),
    /**
     * A client certificate whose subject CN is this value, signed by the listener's
     * `client_ca_file`, logs in as this user on a TLS/WSS listener (no password needed).
     */
    cert_cn: z.string().min(1).max(255).optional(),
  })
  .superRefine((u, ctx) => {
    if (u.password_hash === undefined && u.cert_cn === undefined) ctx.addIssue({ code: 'custom', path: ['password_hash'], message: 'is required (or cert_cn, for a user who logs in with a client certificate)' });
  });

/** A TLS listener's files (PEM). */
const listenerTls = {
  /** Server certificate (chain) and its private key. */
  cert_file: z.string().min(1),
  key_file: z.string().min(1),
  /** CA bundle for client certificates. Set: a client may present a certificate (mapped to a user by `cert_cn`); a password still works. */
  client_ca_file: z.string().min(1).optional(),
};

const tlsFiles = {
  /** PEM CA bundle to verify central's certificate (default: the system CAs). */
  ca_file: z.string().min(1).optional(),
  /** PEM client certificate and key for mutual TLS. */
  cert_file: z.string().min(1).optional(),
  key_file: z.string().min(1).optional(),
};

export const syncSchema = z
  .strictObject({
    /** How events reach central: `https` (REST, docs/central-api.yaml), `mqtt` (bridge to a central broker), or `none` (buffer only). */
    transport: z.enum(['none', 'https', 'mqtt']).default('none'),
    https: z
      .strictObject({
        /** Base URL, e.g. https://central.example.com (paths from docs/central-api.yaml are appended). */
        url: z.string().url('must be a URL'),
        /** File holding the bearer token (kept out of the config file). */
        token_file: z.string().min(1).optional(),
        ...tlsFiles,
        request_timeout_ms: z.number().int().min(100).max(120_000).default(15_000),
      })
      .optional(),
    mqtt: z
      .strictObject({
        /** mqtts://host:8883 (or mqtt:// for a test broker). */
        url: z.string().regex(/^mqtts?:\/\/[^/]+$/, 'must be mqtt://host:port or mqtts://host:port'),
        username: z.string().min(1).optional(),
        password_file: z.string().min(1).optional(),
        /** Persistent-session client id; default shelfgate-<store_id>. */
        client_id: z.string().min(1).max(128).optional(),
        /** Topic prefix on the central broker. */
        topic_prefix: z.string().min(1).default('shelfgate/central/v1'),
        ...tlsFiles,
      })
      .optional(),
    /** Events per upload batch. */
    batch_max_events: z.number().int().min(1).max(500).default(500),
    /** Upload batches in flight at once. */
    pipeline: z.number().int().min(1).max(16).default(4),
    backoff: backoff,
    /** Bound on the outbox size in bytes: when full, compact stock levels, then drop the oldest low-priority events. */
    buffer_max_bytes: z.number().int().min(1024 * 1024).default(100 * 1024 * 1024),
    /** Long-poll wait for the change feed, seconds. */
    long_poll_s: z.number().int().min(1).max(30).default(25),
    /** Upload sensor-condition events (priority 2) too, not only stock events. */
    upload_conditions: z.boolean().default(true),
  })
  .prefault({})
  .superRefine((s, ctx) => {
    if (s.transport === 'https' && !s.https) ctx.addIssue({ code: 'custom', path: ['https'], message: 'is required when transport is https' });
    if (s.transport === 'mqtt' && !s.mqtt) ctx.addIssue({ code: 'custom', path: ['mqtt'], message: 'is required when transport is mqtt' });
    for (const k of ['https', 'mqtt'] as const) {
      const t = s[k];
      if (t && (t.cert_file === undefined) !== (t.key_file === undefined))
        ctx.addIssue({ code: 'custom', path: [k, t.cert_file === undefined ? 'cert_file' : 'key_file'], message: 'cert_file and key_file go together (mutual TLS)' });
    }
  });

/** The core's top-level keys. Features add theirs (Feature.config) in composeConfigSchema. */
export const coreConfigShape = {
  store_id: id,
  data_dir: z.string().min(1).default('/var/lib/shelfgate'),
  log: z.strictObject({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info') }).prefault({}),
  mqtt: z
    .strictObject({
      /** Plain MQTT listener. Loopback by default: LAN clients use `tls` or `wss`. */
      host: z.string().min(1).default('127.0.0.1'),
      port: z.number().int().min(0).max(65535).default(1883),
      /** A plain listener on a non-loopback address sends passwords in clear: refused unless this is true. */
      allow_plain_on_lan: z.boolean().default(false),
      /** MQTT over TLS (mqtts) for kiosks and store systems on the LAN. */
      tls: z
        .strictObject({
          host: z.string().min(1).default('0.0.0.0'),
          port: z.number().int().min(0).max(65535).default(8883),
          ...listenerTls,
        })
        .optional(),
      /** MQTT over secure WebSockets (wss) for browsers. */
      wss: z
        .strictObject({
          host: z.string().min(1).default('0.0.0.0'),
          port: z.number().int().min(0).max(65535).default(8884),
          /** HTTP path of the WebSocket endpoint. */
          path: z.string().regex(/^\/[A-Za-z0-9._~/-]*$/, 'must be an absolute URL path such as /mqtt').default('/mqtt'),
          ...listenerTls,
        })
        .optional(),
      users: z.array(userSchema).default([]),
      /** Failed logins for one username from one address before that pair is locked out. */
      max_auth_failures: z.number().int().min(1).default(5),
      /** First lockout; each further lockout of the same pair doubles it, up to `lockout_max_s`. */
      lockout_s: z.number().int().min(1).default(60),
      lockout_max_s: z.number().int().min(1).default(3600),
      /** Logged-in connections (sockets still logging in count against `max_unauthenticated` instead, so they can never take the reserved slots). */
      max_connections: z.number().int().min(1).default(200),
      /** Connections from one remote address. */
      max_connections_per_address: z.number().int().min(1).default(32),
      /** Connections of one username. */
      max_connections_per_user: z.number().int().min(1).default(32),
      /** Sockets that have not completed CONNECT and login yet. */
      max_unauthenticated: z.number().int().min(1).default(32),
      /** Of `max_connections`, slots only admin and technician users may take. */
      reserved_connections: z.number().int().min(0).default(4),
      /** Time a socket may take from accept to a completed CONNECT. */
      connect_timeout_s: z.number().int().min(1).max(300).default(10),
      /** Largest accepted MQTT packet; bigger ones close the connection. */
      max_packet_bytes: z.number().int().min(1024).max(16 * 1024 * 1024).default(256 * 1024),
      /** Bytes queued for delivery to one client (not yet taken by its socket); over it, QoS 0 to it is dropped. */
      max_queued_bytes: z.number().int().min(16 * 1024).default(512 * 1024),
      /** Messages queued for delivery to one client; over it, QoS 0 to it is dropped. */
      max_queued_messages: z.number().int().min(1).default(1000),
      /** A client that stays over its queue bound this long is disconnected. */
      slow_consumer_timeout_s: z.number().int().min(1).max(600).default(10),
      /** Outbound QoS 1/2 messages sent to one client and not yet acknowledged. */
      max_inflight: z.number().int().min(1).max(65535).default(64),
      /** Inbound QoS 2 messages from one client received and not yet released (PUBREL). */
      max_inbound_qos2: z.number().int().min(1).max(65535).default(16),
      /** Messages kept for one offline persistent session (clean session 0); beyond it, the oldest are dropped and counted. */
      max_session_queue: z.number().int().min(1).default(1000),
      /** A persistent session offline this long is deleted (its subscriptions and queued messages). */
      session_expiry_s: z.number().int().min(60).default(7 * 24 * 3600),
      /** Subscriptions one client may hold. */
      max_subscriptions: z.number().int().min(1).default(64),
      /** Longest topic filter accepted in a SUBSCRIBE, in bytes. */
      max_filter_length: z.number().int().min(16).max(65535).default(512),
    })
    .prefault({}),
  /**
   * The gateway's one HTTP server (src/http/server.ts): lookups, pages, later metrics and health.
   * Absent: no HTTP server. Loopback by default; on any other address it serves HTTPS with `tls`
   * (the same files as the bus's `mqtt.tls`), plain HTTP there only with `allow_plain_on_lan`.
   */
  http: z
    .strictObject({
      host: z.string().min(1).default('127.0.0.1'),
      port: z.number().int().min(0).max(65535).default(8080),
      /** Plain HTTP on a non-loopback address sends Basic-auth passwords in clear: refused unless this is true. */
      allow_plain_on_lan: z.boolean().default(false),
      /** HTTPS: certificate (chain) and private key, PEM, as for `mqtt.tls`. */
      tls: z.strictObject({ cert_file: z.string().min(1), key_file: z.string().min(1) }).optional(),
      /** Largest request body accepted; bigger ones get 413. */
      body_limit_bytes: z.number().int().min(256).max(1024 * 1024).default(16 * 1024),
      /** Time a client may take to send a whole request. */
      request_timeout_ms: z.number().int().min(1000).max(120_000).default(10_000),
      /** Sockets open at once; further ones are refused by the kernel listener. */
      max_connections: z.number().int().min(1).max(10_000).default(128),
      /** Server-sent event streams open at once (kiosk pages); further ones get 503. */
      max_event_streams: z.number().int().min(1).max(1000).default(32),
      /** Web-page login sessions (the technician page): idle time and maximum age, and how many at once (the oldest goes first). */
      session_idle_s: z.number().int().min(60).max(86_400).default(1800),
      session_max_s: z.number().int().min(300).max(7 * 86_400).default(12 * 3600),
      max_sessions: z.number().int().min(1).max(1000).default(64),
      /**
       * File holding the bearer token Prometheus sends for /metrics, /healthz and /readyz from
       * another host. From loopback they need none; from the LAN, without this file, they are refused.
       */
      ops_token_file: z.string().min(1).optional(),
    })
    .optional(),
  storage: z
    .strictObject({
      /** Default `<data_dir>/shelfgate.db`. */
      path: z.string().min(1).optional(),
      /** Writer batches are committed at most this long after the first queued write. */
      flush_interval_ms: z.number().int().min(1).max(5_000).default(20),
      /**
       * FULL (default): each committed batch is fsynced, surviving kill -9 and power loss.
       * NORMAL: survives kill -9; a power cut may lose the last batches (never corrupts).
       */
      synchronous: z.enum(['full', 'normal']).default('full'),
    })
    .prefault({}),
  sync: syncSchema,
  shelves: z.array(shelfSchema).min(1, 'must list at least one shelf'),
};

/** The core schema alone (features' keys are refused by it); the daemon uses composeConfigSchema. */
export const configSchema = z.strictObject(coreConfigShape);



export type Config = z.output<typeof configSchema>;
export type ShelfConfig = Config['shelves'][number];
export type SlotConfig = ShelfConfig['slots'][number];
export type MqttConfig = Config['mqtt'];
export type MqttUser = MqttConfig['users'][number];
export type StorageConfig = Config['storage'];
export type SyncConfig = Config['sync'];
export type HttpConfig = NonNullable<Config['http']>;

/** What a feature adds to the configuration. */
export interface FeatureConfigSlice {
  /** Top-level keys. */
  config?: z.ZodRawShape;
  /** Keys added to every `shelves[].slots[]` entry. */
  slotConfig?: z.ZodRawShape;
}

/**
 * The one schema of a gateway made of these features: the core's keys plus each feature's, still
 * strict (an unknown key anywhere is an error). Two features may not declare the same key.
 */
export function composeConfigSchema(features: ReadonlyArray<{ name: string } & FeatureConfigSlice>): z.ZodType<Config> {
  const top: Record<string, z.core.$ZodType> = { ...coreConfigShape };
  const slot: Record<string, z.core.$ZodType> = { ...slotBaseShape };
  const owner = new Map<string, string>();
  for (const f of features) {
    for (const [k, v] of Object.entries(f.config ?? {})) {
      if (k in top) throw new Error(`config key ${k} of feature ${f.name} is already declared by ${owner.get(k) ?? 'the core'}`);
      top[k] = v;
      owner.set(k, f.name);
    }
    for (const [k, v] of Object.entries(f.slotConfig ?? {})) {
      if (k in slot) throw new Error(`slot key ${k} of feature ${f.name} is already declared by ${owner.get(`slot.${k}`) ?? 'the core'}`);
      slot[k] = v;
      owner.set(`slot.${k}`, f.name);
    }
  }
  const shelf = z.strictObject({ id, slots: z.array(z.strictObject(slot)).min(1, 'must have at least one slot') });
  top.shelves = z.array(shelf).min(1, 'must list at least one shelf');
  return z.strictObject(top) as unknown as z.ZodType<Config>;
}
