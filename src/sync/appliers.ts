/**
 * One applier per change type of central's feed. The feed (feed.ts) validates the fields every
 * change has, finds the applier registered for the change's `type`, and applies the version rule
 * per the applier's key; the applier knows its type's fields, where its versions are stored and
 * what applying means. A feature that adds a change type (label templates, planograms) registers
 * its applier; nothing else in the sync service changes. A change whose type no applier knows is
 * acknowledged `invalid` (`unknown change type "<t>"`) and the feed moves on.
 */
import type { Validated } from './prices';
import type { SyncRepository } from './repository';

/** What the version rule needs of a change. */
export interface VersionedChange {
  changeId: string;
  version: number;
}

export interface ChangeApplier<C extends VersionedChange = VersionedChange> {
  /** The wire `type` it handles. */
  readonly type: string;
  /** Other wire names of the same type (e.g. `slot` for `slot_assignment`). */
  readonly aliases?: readonly string[];
  /** Checks the change's own fields (change_id and version are checked already); unknown fields are ignored. */
  validate(o: Record<string, unknown>, changeId: string, version: number): Validated<C>;
  /** The scope of the version rule: versions increase per key (a GTIN; a shelf and slot). */
  key(c: C): string;
  /** The version applied for the change's key, or null if none. */
  current(c: C): { version: number; changeId: string | null; appliedAt?: number | null } | null;
  /**
   * The change's effect outside the page's transaction, if it has one (assigning a location):
   * `ok`, or a reason to acknowledge it `invalid`. Throwing fails the page (it is fetched again).
   */
  effect?(c: C): Promise<{ ok: true } | { ok: false; detail: string }>;
  /**
   * Inside the page's transaction (one with the acks and the cursor): writes the changes the page
   * applies, re-checking the version rule, and returns the ones written.
   */
  apply(tx: SyncRepository, changes: C[], appliedAt: number): C[];
  /** After the page committed: hands the written changes on (publish, emit). Must not throw. */
  committed?(written: C[], appliedAt: number): Promise<void>;
  /** When the sync service starts: hands on what is stored (e.g. republishes retained prices). */
  start?(): Promise<void>;
}

/** The appliers by wire type. */
export class ChangeAppliers {
  private readonly byType = new Map<string, ChangeApplier>();
  private readonly all: ChangeApplier[] = [];

  register<C extends VersionedChange>(applier: ChangeApplier<C>): void {
    const a = applier as unknown as ChangeApplier;
    for (const t of [a.type, ...(a.aliases ?? [])]) {
      if (this.byType.has(t)) throw new Error(`change type ${t} has two appliers`);
    }
    for (const t of [a.type, ...(a.aliases ?? [])]) this.byType.set(t, a);
    this.all.push(a);
  }

  of(type: unknown): ChangeApplier | undefined {
    return typeof type === 'string' ? this.byType.get(type) : undefined;
  }

  list(): readonly ChangeApplier[] {
    return this.all;
  }
}
