/** The scanners feature's commands, declared statically: the ACL and the docs read the permissions. */
import { z } from 'zod';
import { declareCommand } from '../../core/commands';

export const scannersList = declareCommand({
  name: 'scanners.list',
  permission: 'read',
  description: 'Barcode scanners: kind, path, bound kiosk, online or not, valid reads, misreads by reason, codes without a GTIN, last read time',
  payload: z.object({}),
});

export const SCANNER_COMMANDS = [scannersList];
