/**
 * Which Kafka offsets may be committed: per partition, only the contiguous
 * run of acknowledged offsets from the oldest one handed out, so that an
 * acknowledgement out of order never commits past a record still in work.
 *
 * @module
 */

/** One partition's bookkeeping; replaced when the partition is reassigned. */
export class PartitionTrack {
  /** Offsets handed out, in order, not yet passed by the commit point. */
  #offsets: bigint[] = [];
  #head = 0;
  #acked = new Set<bigint>();
  /** The offset to commit next (last processed + 1), or -1n for nothing yet. */
  #commitOffset = -1n;
  #committed = -1n;
  /** The highest offset handed out, to skip records fetched twice. */
  #last = -1n;
  #revoked = new AbortController();

  /**
   * Aborts when the partition is revoked, so that work waiting on one of its
   * records (a retry delay) ends at once instead of running for a partition
   * this consumer no longer owns.
   */
  get revoked(): AbortSignal {
    return this.#revoked.signal;
  }

  /** Marks the partition as revoked: aborts {@linkcode revoked}. */
  revoke(): void {
    this.#revoked.abort(
      new Error("The partition was revoked from this consumer"),
    );
  }

  /**
   * Registers an offset handed out. Returns `false` when it was handed out
   * already (a record fetched twice), which the caller skips.
   */
  track(offset: bigint): boolean {
    if (offset <= this.#last) return false;
    this.#last = offset;
    this.#offsets.push(offset);
    return true;
  }

  /** Marks an offset as processed; returns whether the commit point moved. */
  ack(offset: bigint): boolean {
    this.#acked.add(offset);
    let moved = false;
    const offsets = this.#offsets;
    while (
      this.#head < offsets.length && this.#acked.has(offsets[this.#head])
    ) {
      this.#acked.delete(offsets[this.#head]);
      this.#commitOffset = offsets[this.#head] + 1n;
      this.#head++;
      moved = true;
    }
    if (this.#head > 1024 && this.#head * 2 > offsets.length) {
      this.#offsets = offsets.slice(this.#head);
      this.#head = 0;
    }
    return moved;
  }

  /** The offset to commit when it is ahead of the last commit, else undefined. */
  pendingCommit(): bigint | undefined {
    return this.#commitOffset > this.#committed
      ? this.#commitOffset
      : undefined;
  }

  /** Records that `offset` was committed. */
  committed(offset: bigint): void {
    if (offset > this.#committed) this.#committed = offset;
  }

  /** Offsets handed out and not yet passed by the commit point. */
  get outstanding(): number {
    return this.#offsets.length - this.#head;
  }
}

/**
 * A commit to send: Kafka's convention, the next offset to read.
 *
 * @example Log each commit of a stream
 * ```ts
 * import {
 *   kafkaStream,
 *   type OffsetCommit,
 * } from "@dataexchange/streams/kafka";
 *
 * function describe(commits: readonly OffsetCommit[]): string {
 *   return commits
 *     .map(({ topic, partition, offset }) => `${topic}[${partition}]@${offset}`)
 *     .join(", ");
 * }
 * console.log(describe([{ topic: "dx.telemetry", partition: 0, offset: "42" }])); // dx.telemetry[0]@42
 *
 * // Needs Kafka on 127.0.0.1:9092: runs when this file is run as a script.
 * if (import.meta.main) {
 *   const stream = kafkaStream({
 *     brokers: ["127.0.0.1:9092"],
 *     groupId: "audit",
 *     topics: ["dx.telemetry"],
 *     deadLetterTopic: "dx.deadletter",
 *     onCommit: (commits) => console.log(`committed ${describe(commits)}`),
 *   });
 *   for await (const envelope of stream) envelope.ack();
 * }
 * ```
 */
export interface OffsetCommit {
  /** The topic of the partition. */
  topic: string;
  /** The partition number. */
  partition: number;
  /**
   * The offset of the next record to read, as a decimal string: one past the
   * last record acknowledged.
   */
  offset: string;
}

/** The tracks of every partition currently owned. */
export class CommitTracker {
  #tracks = new Map<string, PartitionTrack>();

  /** The current track of a partition, created on first use. */
  track(topic: string, partition: number): PartitionTrack {
    const key = `${partition}:${topic}`;
    let track = this.#tracks.get(key);
    if (track === undefined) {
      this.#tracks.set(key, track = new PartitionTrack());
    }
    return track;
  }

  /** Whether `track` is still the current one of its partition. */
  isCurrent(topic: string, partition: number, track: PartitionTrack): boolean {
    return this.#tracks.get(`${partition}:${topic}`) === track;
  }

  /**
   * Forgets partitions not in `assignment` (revoked in a rebalance) and
   * revokes their tracks. Their later acknowledgements are ignored; nothing
   * is committed for them.
   *
   * @returns The partitions dropped.
   */
  retain(
    assignment: Readonly<Record<string, readonly number[]>>,
  ): Array<{ topic: string; partition: number }> {
    const dropped: Array<{ topic: string; partition: number }> = [];
    for (const key of [...this.#tracks.keys()]) {
      const colon = key.indexOf(":");
      const partition = Number(key.slice(0, colon));
      const topic = key.slice(colon + 1);
      if (!assignment[topic]?.includes(partition)) {
        this.#tracks.get(key)!.revoke();
        this.#tracks.delete(key);
        dropped.push({ topic, partition });
      }
    }
    return dropped;
  }

  /** The commits that would move some partition's committed offset forward. */
  pendingCommits(): OffsetCommit[] {
    const commits: OffsetCommit[] = [];
    for (const [key, track] of this.#tracks) {
      const offset = track.pendingCommit();
      if (offset === undefined) continue;
      const colon = key.indexOf(":");
      commits.push({
        topic: key.slice(colon + 1),
        partition: Number(key.slice(0, colon)),
        offset: String(offset),
      });
    }
    return commits;
  }

  /** Records commits as done, for the partitions still owned. */
  committed(commits: readonly OffsetCommit[]): void {
    for (const commit of commits) {
      this.#tracks.get(`${commit.partition}:${commit.topic}`)
        ?.committed(BigInt(commit.offset));
    }
  }
}
