import assert from "node:assert/strict";
import fc from "fast-check";
import { CommitTracker, PartitionTrack } from "./_commit_tracker.ts";

Deno.test("PartitionTrack commits only the contiguous acknowledged prefix", () => {
  const track = new PartitionTrack();
  for (const offset of [0n, 1n, 2n, 3n]) assert.ok(track.track(offset));
  assert.equal(track.ack(0n), true);
  assert.equal(track.pendingCommit(), 1n);
  track.committed(1n);
  assert.equal(track.ack(2n), false, "offset 1 is still in work");
  assert.equal(track.ack(3n), false);
  assert.equal(track.pendingCommit(), undefined);
  assert.equal(track.ack(1n), true);
  assert.equal(track.pendingCommit(), 4n);
  assert.equal(track.outstanding, 0);
});

Deno.test("PartitionTrack skips offsets handed out twice", () => {
  const track = new PartitionTrack();
  assert.ok(track.track(5n));
  assert.ok(track.track(6n));
  assert.equal(track.track(6n), false);
  assert.equal(track.track(4n), false);
  assert.equal(track.outstanding, 2);
});

Deno.test("PartitionTrack never commits past an unacknowledged offset (property)", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 60 }).chain((n) =>
        fc.tuple(
          fc.constant(n),
          fc.shuffledSubarray([...Array(n).keys()], {
            minLength: 0,
            maxLength: n,
          }),
        )
      ),
      ([n, acked]) => {
        const track = new PartitionTrack();
        for (let i = 0; i < n; i++) track.track(BigInt(100 + i));
        for (const i of acked) track.ack(BigInt(100 + i));
        const ackedSet = new Set(acked);
        let prefix = 0;
        while (prefix < n && ackedSet.has(prefix)) prefix++;
        const expected = prefix === 0 ? undefined : BigInt(100 + prefix);
        assert.equal(track.pendingCommit(), expected);
      },
    ),
  );
});

Deno.test("CommitTracker drops revoked partitions and ignores their acks", () => {
  const tracker = new CommitTracker();
  const a0 = tracker.track("a", 0);
  const a1 = tracker.track("a", 1);
  a0.track(0n);
  a1.track(0n);
  a0.ack(0n);
  a1.ack(0n);
  assert.deepEqual(
    tracker.retain({ a: [1] }),
    [{ topic: "a", partition: 0 }],
  );
  assert.equal(tracker.isCurrent("a", 0, a0), false);
  assert.equal(tracker.isCurrent("a", 1, a1), true);
  assert.deepEqual(tracker.pendingCommits(), [
    { topic: "a", partition: 1, offset: "1" },
  ]);
  // Reassigned later: a fresh track, the old one stays detached.
  assert.notEqual(tracker.track("a", 0), a0);
  tracker.committed([{ topic: "a", partition: 1, offset: "1" }]);
  assert.deepEqual(tracker.pendingCommits(), []);
});

Deno.test("CommitTracker aborts the revoked signal of dropped tracks only", () => {
  const tracker = new CommitTracker();
  const a0 = tracker.track("a", 0);
  const a1 = tracker.track("a", 1);
  const aborted: string[] = [];
  a0.revoked.addEventListener("abort", () => aborted.push("a0"));
  a1.revoked.addEventListener("abort", () => aborted.push("a1"));
  tracker.retain({ a: [1] });
  assert.deepEqual(aborted, ["a0"]);
  assert.equal(a0.revoked.aborted, true);
  assert.equal(a1.revoked.aborted, false);
  // A track given again after reassignment starts unrevoked.
  assert.equal(tracker.track("a", 0).revoked.aborted, false);
});
