/**
 * The one configuration schema (style.md #8). A YAML file is parsed, validated once with every
 * error reported at once (path: message), then frozen and handed to components as slices.
 * Defaults exist for everything except `store_id` and the devices (buses and shelves).
 * Keys are snake_case in YAML and in the typed Config alike, so the docs, the file and the code
 * use the same names.
 */
import { z } from 'zod';
import { isValidGtin } from '../util/gtin';

const id = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, 'must be 1-64 characters of A-Z a-z 0-9 _ - (used in MQTT topics)');

const serialOverride = z
  .strictObject({
    baud_rate: z.number().int().positive().optional(),
    data_bits: z.union([z.literal(5), z.literal(6), z.literal(7), z.literal(8)]).optional(),
    parity: z.enum(['none', 'even', 'odd']).optional(),
    stop_bits: z.union([z.literal(1), z.literal(2)]).optional(),
  })
  .optional();

const backoff = z
  .strictObject({
    initial_ms: z.number().int().min(10).default(500),
    max_ms: z.number().int().min(100).max(3_600_000, 'must be <= 3600000 (1 h)').default(30_000),
  })
  .prefault({});

export const busSchema = z.strictObject({
  id,
  /** `/dev/serial/by-id/...` (recommended), `/dev/ttyUSB0`, `tcp://host:port`, or `mock://name` (tests). */
  path: z.string().min(1, 'must not be empty'),
  /** Device definition id from devices/*.yaml, e.g. `generic-modbus-loadcell` or `mettler-toledo-mt-sics`. */
  model: id,
  serial: serialOverride,
  /** Time between polls of one address (Modbus) or of the scale (MT-SICS). */
  poll_interval_ms: z.number().int().min(0).max(60_000).default(200),
  /** Response timeout; defaults to the device definition's. */
  timeout_ms: z.number().int().min(5).max(10_000).optional(),
  /** Consecutive missed answers before a sensor is reported offline. */
  offline_after_misses: z.number().int().min(1).max(100).default(3),
  reconnect: backoff,
});

const sensorRef = z.strictObject({
  bus: id,
  /** Modbus slave address 1-247; omitted for a single scale (MT-SICS). */
  address: z.number().int().min(1, 'must be >= 1').max(247, 'must be <= 247').optional(),
});

export const slotSchema = z.strictObject({
  id,
  sensor: sensorRef,
  gtin: z
    .string()
    .refine(isValidGtin, 'must be a GTIN-8/12/13/14 with a valid GS1 check digit')
    .optional(),
  unit_weight_g: z.number().gt(0, 'must be > 0').optional(),
  /** Weight of the empty slot (tray, divider) in grams, subtracted from the reading. */
  tare_g: z.number().min(0, 'must be >= 0').default(0),
  /** A settled weight within this distance of a whole number of items counts as that number. Default: 25% of unit weight. */
  tolerance_g: z.number().gt(0, 'must be > 0').optional(),
  /** Above this (net grams) the slot reports overload. */
  max_load_g: z.number().gt(0, 'must be > 0').optional(),
});

export const shelfSchema = z.strictObject({
  id,
  slots: z.array(slotSchema).min(1, 'must have at least one slot'),
});

const userSchema = z.strictObject({
  /** Appears in topics (`response/<username>/...`), so it is topic-safe like every id. */
  username: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/, 'must be 1-64 characters of A-Z a-z 0-9 _ . @ - (used in MQTT topics)'),
  /** `scrypt$N$r$p$<salt b64>$<hash b64>`; make one with `shelfgate passwd`. */
  password_hash: z.string().regex(/^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/, 'must be a scrypt hash from `shelfgate passwd`'),
  role: z.enum(['device', 'kiosk', 'service', 'technician', 'admin']),
});

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

export const configSchema = z.strictObject({
  store_id: id,
  data_dir: z.string().min(1).default('/var/lib/shelfgate'),
  log: z.strictObject({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info') }).prefault({}),
  mqtt: z
    .strictObject({
      /** Loopback by default: kiosks on the LAN need an explicit bind address. */
      host: z.string().min(1).default('127.0.0.1'),
      port: z.number().int().min(0).max(65535).default(1883),
      users: z.array(userSchema).default([]),
      /** Failed logins from one address before it is locked out for `lockout_s`. */
      max_auth_failures: z.number().int().min(1).default(5),
      lockout_s: z.number().int().min(1).default(60),
      max_connections: z.number().int().min(1).default(200),
      /** Largest accepted MQTT packet; bigger ones close the connection. */
      max_packet_bytes: z.number().int().min(1024).max(16 * 1024 * 1024).default(256 * 1024),
    })
    .prefault({}),
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
  stability: z
    .strictObject({
      /** Readings in the window that must agree before a weight counts as settled. */
      window: z.number().int().min(2).max(100).default(4),
      /** Max spread (max - min) in grams within the window for a settled reading. */
      max_spread_g: z.number().gt(0).default(3),
      /** Report a slot unstable after this long without a settled reading. */
      unstable_alarm_s: z.number().gt(0).default(30),
    })
    .prefault({}),
  sync: syncSchema,
  buses: z.array(busSchema).min(1, 'must list at least one bus'),
  shelves: z.array(shelfSchema).min(1, 'must list at least one shelf'),
});

export type Config = z.output<typeof configSchema>;
export type BusConfig = Config['buses'][number];
export type ShelfConfig = Config['shelves'][number];
export type SlotConfig = ShelfConfig['slots'][number];
export type MqttConfig = Config['mqtt'];
export type MqttUser = MqttConfig['users'][number];
export type StorageConfig = Config['storage'];
export type StabilityConfig = Config['stability'];
export type SyncConfig = Config['sync'];
