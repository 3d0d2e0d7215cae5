/**
 * Outbox event kinds and their buffer policy, declared by the feature that produces them, read by
 * the sync service's buffer policy (src/sync/buffer.ts) when the outbox is over its byte bound.
 *
 * - `priority`: lower drains first; 0 is stock-critical. One definition (Priority) for every part.
 * - `compaction`: a group name. Within a group, a newer event about the same device supersedes an
 *   older one (every stock-level event carries the absolute count, so only the newest level per
 *   slot matters once central has been unreachable for long).
 * - `droppable`: may be dropped, oldest first, when compaction was not enough. A kind that is
 *   neither compactable nor droppable is kept whatever it costs.
 *
 * A kind found in the outbox that no feature declares (written by another version) is treated as
 * droppable when its priority is >= 1 and kept otherwise: the safe reading of the stored priority.
 */
export const Priority = {
  /** Stock levels: never dropped. */
  STOCK: 0,
  /** Anomalies and other events an operator acts on. */
  ANOMALY: 1,
  /** Sensor conditions and other telemetry (optionally not uploaded: sync.upload_conditions). */
  CONDITION: 2,
} as const;

export interface EventKindPolicy {
  kind: string;
  priority: number;
  /** Compaction group; events of one group about one device supersede each other. */
  compaction?: string;
  droppable: boolean;
  description: string;
}

export class EventKinds {
  private readonly byKind = new Map<string, EventKindPolicy & { owner: string }>();

  register(owner: string, policies: readonly EventKindPolicy[]): void {
    for (const p of policies) {
      const prev = this.byKind.get(p.kind);
      if (prev) throw new Error(`event kind ${p.kind} is declared by both ${prev.owner} and ${owner}`);
      if (!Number.isInteger(p.priority) || p.priority < 0 || p.priority > 9) throw new Error(`event kind ${p.kind}: priority must be an integer 0-9`);
      this.byKind.set(p.kind, { ...p, owner });
    }
  }

  policyOf(kind: string): EventKindPolicy | undefined {
    return this.byKind.get(kind);
  }

  /** Kinds per compaction group. */
  compactionGroups(): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const p of this.byKind.values()) if (p.compaction) out.set(p.compaction, [...(out.get(p.compaction) ?? []), p.kind]);
    return out;
  }


  droppableKinds(): string[] {
    return [...this.byKind.values()].filter((p) => p.droppable).map((p) => p.kind);
  }

  list(): EventKindPolicy[] {
    return [...this.byKind.values()].map(({ owner: _owner, ...p }) => p);
  }
}
