/**
 * The labels feature's commands, declared statically (the ACL and the docs read the permissions).
 * Binding changes how the store is set up (technician: `calibrate`); flashing and pushing content
 * are store operations (`operate`); reading the integrity report changes nothing (`read`). A kiosk
 * (read only) can therefore neither bind, flash nor push.
 */
import { z } from 'zod';
import { declareCommand } from '../../core/commands';

const mac = z.string().min(12).max(23);

export const labelBind = declareCommand({
  name: 'label.bind',
  permission: 'calibrate',
  description: 'bind a label (MAC) to a slot (shelf, slot) or a product (gtin); type from devices/labels, or from what the AP reports',
  payload: z.strictObject({ mac, type: z.string().min(1).max(64).optional(), gtin: z.string().regex(/^\d{8,14}$/, 'must be 8-14 digits').optional(), shelf: z.string().min(1).optional(), slot: z.string().min(1).optional() }),
});

export const labelUnbind = declareCommand({
  name: 'label.unbind',
  permission: 'calibrate',
  description: 'remove a label from the registry (its delivery state goes with it)',
  payload: z.strictObject({ mac }),
});

export const labelFlash = declareCommand({
  name: 'label.flash',
  permission: 'operate',
  description: "find-this-label: flash the label's LED",
  payload: z.strictObject({ mac, pattern: z.string().regex(/^[0-9A-Fa-f]{24}$/, 'must be 24 hex digits').optional() }),
});

export const labelPush = declareCommand({
  name: 'label.push',
  permission: 'operate',
  description: "render the label's content again from the current price and product data and deliver what changed",
  payload: z.strictObject({ mac }),
});

/**
 * Only commands that leave the label showing what the report says it shows: `clear`, `del`,
 * `reset` and `deepsleep` would make the integrity report lie (a cleared label shows no price), so
 * they are not offered.
 */
export const LABEL_MAINTENANCE_COMMANDS = ['refresh', 'reboot', 'scan'] as const;

export const labelCommand = declareCommand({
  name: 'label.command',
  permission: 'calibrate',
  description: `a maintenance command for the label at its next check-in: ${LABEL_MAINTENANCE_COMMANDS.join(', ')}`,
  payload: z.strictObject({ mac, cmd: z.enum(LABEL_MAINTENANCE_COMMANDS) }),
});

export const labelsList = declareCommand({
  name: 'labels.list',
  permission: 'read',
  description: 'price integrity of every bound label (or only the stale ones) and the store summary',
  payload: z.strictObject({ stale: z.boolean().optional() }),
});

export const LABELS_COMMANDS = [labelBind, labelUnbind, labelFlash, labelPush, labelCommand, labelsList];
