/** The shelves feature's commands, declared statically: the ACL and the docs read the permissions. */
import { z } from 'zod';
import { declareCommand } from '../../core/commands';

const slotRef = { shelf: z.string().min(1), slot: z.string().min(1) };

export const stockGet = declareCommand({
  name: 'stock.get',
  permission: 'read',
  description: 'committed stock of every weighed slot, optionally of one shelf or slot',
  payload: z.object({ shelf: z.string().optional(), slot: z.string().optional() }),
});

export const calibrateTare = declareCommand({
  name: 'calibrate.tare',
  permission: 'calibrate',
  description: 'take the settled weight of the (empty) slot as its tare',
  payload: z.object(slotRef),
});

export const calibrateSetUnitWeight = declareCommand({
  name: 'calibrate.set_unit_weight',
  permission: 'calibrate',
  description: 'set the weight of one item in grams',
  payload: z.object({ ...slotRef, grams: z.number() }),
});

export const calibrateLearn = declareCommand({
  name: 'calibrate.learn',
  permission: 'calibrate',
  description: 'learn the unit weight from the settled weight of a known number of items',
  payload: z.object({ ...slotRef, items: z.number() }),
});

export const SHELVES_COMMANDS = [stockGet, calibrateTare, calibrateSetUnitWeight, calibrateLearn];
