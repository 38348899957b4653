/**
 * What a reader saw, per sequence number: when each message was first read,
 * its latency, and how often it came again.
 *
 * @module
 */

/** Latency percentiles in milliseconds. */
export interface LatencySummary {
  p50: number;
  p95: number;
  p99: number;
  max: number;
  mean: number;
}

/** What was read of one range of sequence numbers. */
export interface RangeReport {
  /** Messages of the range. */
  expected: number;
  /** Distinct messages read. */
  unique: number;
  /** Messages never read: `expected - unique`. */
  lost: number;
  /** Reads beyond the first of a message. */
  duplicates: number;
  /** Epoch milliseconds of the first and the last first read. */
  firstReadAt: number;
  lastReadAt: number;
  /** Latency of the first read of each message, or null when none was read. */
  latency: LatencySummary | null;
}

/** Counts reads by sequence number, for a fixed capacity of numbers. */
export class SeqTracker {
  readonly #readAt: Float64Array;
  readonly #latency: Float64Array;
  readonly #extra: Uint32Array;
  #unique = 0;
  #duplicates = 0;
  #foreign = 0;

  /** @param capacity Sequence numbers 0 to capacity - 1 are tracked. */
  constructor(capacity: number) {
    this.#readAt = new Float64Array(capacity);
    this.#latency = new Float64Array(capacity);
    this.#extra = new Uint32Array(capacity);
  }

  /** Distinct messages read so far. */
  get unique(): number {
    return this.#unique;
  }

  /** Reads beyond the first, so far. */
  get duplicates(): number {
    return this.#duplicates;
  }

  /** Reads whose sequence number is out of range (should stay 0). */
  get foreign(): number {
    return this.#foreign;
  }

  /**
   * Records one read.
   *
   * @param seq The message's sequence number.
   * @param sentAt When it was published, epoch milliseconds.
   * @param now When it was read, epoch milliseconds.
   */
  record(seq: number, sentAt: number, now: number): void {
    if (!(seq >= 0 && seq < this.#readAt.length)) {
      this.#foreign++;
      return;
    }
    if (this.#readAt[seq] !== 0) {
      this.#extra[seq]++;
      this.#duplicates++;
      return;
    }
    this.#readAt[seq] = now;
    this.#latency[seq] = now - sentAt;
    this.#unique++;
  }

  /** Distinct messages read among `from` to `to - 1`. */
  uniqueIn(from: number, to: number): number {
    let count = 0;
    for (let seq = from; seq < to; seq++) if (this.#readAt[seq] !== 0) count++;
    return count;
  }

  /** What was read of `from` to `to - 1`. */
  report(from: number, to: number): RangeReport {
    const latencies: number[] = [];
    let duplicates = 0;
    let firstReadAt = Infinity;
    let lastReadAt = 0;
    for (let seq = from; seq < to; seq++) {
      const at = this.#readAt[seq];
      duplicates += this.#extra[seq];
      if (at === 0) continue;
      latencies.push(this.#latency[seq]);
      if (at < firstReadAt) firstReadAt = at;
      if (at > lastReadAt) lastReadAt = at;
    }
    return {
      expected: to - from,
      unique: latencies.length,
      lost: to - from - latencies.length,
      duplicates,
      firstReadAt: latencies.length > 0 ? firstReadAt : 0,
      lastReadAt,
      latency: summarize(latencies),
    };
  }
}

/** Percentiles (nearest rank) of `values`, or null for none. */
export function summarize(values: number[]): LatencySummary | null {
  if (values.length === 0) return null;
  const sorted = Float64Array.from(values).sort();
  const rank = (p: number) =>
    sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)];
  let sum = 0;
  for (const value of sorted) sum += value;
  return {
    p50: round(rank(0.5)),
    p95: round(rank(0.95)),
    p99: round(rank(0.99)),
    max: round(sorted[sorted.length - 1]),
    mean: round(sum / sorted.length),
  };
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
