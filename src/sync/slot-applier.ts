/**
 * Slot assignments: what a location holds (GTIN, unit weight), per (shelf, slot) with the version
 * rule. Applying one assigns the location (core Locations, its own table and events) before the
 * page commits; the version is stored with the page. An unknown slot or values the location
 * refuses are acknowledged `invalid`; any other failure fails the page, which is fetched again
 * (the assignment is idempotent). Fields of the change the core does not interpret (e.g. `labels`)
 * ride along as the assignment's `attributes` (prices.ts slotAttributes).
 */
import type { Locations } from '../core/locations';
import { ErrorCode, isShelfgateError } from '../errors';
import type { ChangeApplier } from './appliers';
import { validateSlotAssignment, type SlotChangeIn } from './prices';
import type { SyncRepository } from './repository';

export class SlotAssignmentApplier implements ChangeApplier<SlotChangeIn> {
  readonly type = 'slot_assignment';
  readonly aliases = ['slot'] as const;

  constructor(
    private readonly repo: SyncRepository,
    private readonly locations: Pick<Locations, 'assign'>,
  ) {}

  validate(o: Record<string, unknown>, changeId: string, version: number) {
    return validateSlotAssignment(o, changeId, version);
  }

  key(c: SlotChangeIn): string {
    return `${c.shelf}\u0000${c.slot}`;
  }

  current(c: SlotChangeIn) {
    return this.repo.slot(c.shelf, c.slot);
  }

  async effect(c: SlotChangeIn): Promise<{ ok: true } | { ok: false; detail: string }> {
    try {
      await this.locations.assign(c.shelf, c.slot, { gtin: c.gtin, unitWeightG: c.unitWeightG }, 'central', c.attributes);
      return { ok: true };
    } catch (e) {
      if (isShelfgateError(e, ErrorCode.NOT_FOUND)) return { ok: false, detail: `unknown slot ${c.shelf}/${c.slot}` };
      if (isShelfgateError(e, ErrorCode.REQUEST_INVALID)) return { ok: false, detail: (e as Error).message };
      throw e;
    }
  }

  apply(tx: SyncRepository, changes: SlotChangeIn[], appliedAt: number): SlotChangeIn[] {
    return changes.filter((c) => tx.putSlotVersionIfNewer({ shelf: c.shelf, slot: c.slot, version: c.version, changeId: c.changeId, appliedAt }));
  }
}
