/**
 * Counts per key (open sockets per address, connections per user, ...). A key whose count falls
 * to zero is removed, so the map only holds keys that something currently counts: its size is
 * bounded by what is counted, not by every key ever seen.
 */
export class Tally<K> {
  private readonly counts = new Map<K, number>();

  get(key: K): number {
    return this.counts.get(key) ?? 0;
  }

  add(key: K): void {
    this.counts.set(key, this.get(key) + 1);
  }

  remove(key: K): void {
    const n = this.get(key) - 1;
    if (n <= 0) this.counts.delete(key);
    else this.counts.set(key, n);
  }

  clear(): void {
    this.counts.clear();
  }

  /** Keys counted now. */
  get size(): number {
    return this.counts.size;
  }
}
