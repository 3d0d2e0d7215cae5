/** The RFID feature's commands, declared statically: the ACL and the docs read the permissions. */
import { z } from 'zod';
import { declareCommand } from '../../core/commands';

export const rfidZones = declareCommand({
  name: 'rfid.zones',
  permission: 'read',
  description: 'RFID zones: their location, counts per GTIN and the tags present (EPC, GTIN, since, RSSI), optionally of one zone',
  payload: z.object({
    zone: z.string().optional(),
    /** List the tags present (at most `limit` per zone); default true. */
    tags: z.boolean().optional(),
    limit: z.number().int().min(0).max(100_000).optional(),
  }),
});

export const rfidReaders = declareCommand({
  name: 'rfid.readers',
  permission: 'read',
  description: 'RFID readers: online or not, and their frame counters (reads, checksum/CRC errors, invalid frames, noise bytes, device errors)',
  payload: z.object({}),
});

export const RFID_COMMANDS = [rfidZones, rfidReaders];
