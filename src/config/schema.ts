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

/** The core's top-level keys. Features add theirs (Feature.config) in composeConfigSchema. */
export const coreConfigShape = {
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
