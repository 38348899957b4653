import assert from "node:assert/strict";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import fc from "fast-check";
import { Kafka, logLevel } from "kafkajs";
import {
  type CloudEvent,
  createCloudEvent,
  type KafkaRecord,
  toKafkaRecord,
} from "../cloudevents/mod.ts";
import { isDataExchangeError } from "../errors.ts";
import { abortableDelay } from "../_retry.ts";
import { testBrokers } from "../../tests/_brokers.ts";
import {
  committedOffsets,
  createTopics,
  header,
  readTopics,
  recordsIn,
  uniqueName,
  withAdmin,
} from "../../tests/_kafka.ts";
import type { OffsetCommit } from "./_commit_tracker.ts";
import { toKafkajsMessage } from "./_kafkajs.ts";
import { KafkaSink } from "./sink.ts";
import {
  type KafkaEnvelope,
  type KafkaStream,
  kafkaStream,
  type KafkaStreamOptions,
  retryDelayMs,
} from "./stream.ts";

const brokers = await testBrokers();
const ignore = brokers === undefined;
const slow = { ignore, sanitizeOps: false, sanitizeResources: false };

function events(count: number, prefix = "e"): CloudEvent[] {
  return Array.from({ length: count }, (_, i) =>
    createCloudEvent({
      id: `${prefix}-${i}`,
      source: "/kafka-stream-test",
      type: "dev.dataexchange.test",
      classification: "telemetry",
      data: { i },
    }));
}

async function produce(
  topic: string,
  list: readonly CloudEvent[],
  mode: "binary" | "structured" = "binary",
): Promise<void> {
  await using sink = await KafkaSink.connect({
    brokers: brokers!.kafkaBrokers,
  });
  await Promise.all(
    list.map((event) => sink.send(topic, toKafkaRecord(event, { mode }))),
  );
}

/** Produces records to chosen partitions, in order. */
async function produceTo(
  topic: string,
  records: ReadonlyArray<{ partition: number; record: KafkaRecord }>,
): Promise<void> {
  const producer = new Kafka({
    brokers: brokers!.kafkaBrokers,
    logLevel: logLevel.NOTHING,
  }).producer();
  await producer.connect();
  try {
    await producer.send({
      topic,
      messages: records.map(({ partition, record }) => ({
        ...toKafkajsMessage(record),
        partition,
      })),
    });
  } finally {
    await producer.disconnect();
  }
}

/** A record that no CloudEvents reader can decode. */
function garbage(): KafkaRecord {
  return {
    key: null,
    value: new TextEncoder().encode("{not an event"),
    headers: {
      "content-type": new TextEncoder().encode("application/cloudevents+json"),
    },
  };
}

/** The group's committed offset of partition 0 of `topic`; -1 for none. */
async function committedOffset(groupId: string, topic: string) {
  return (await committedOffsets(brokers!.kafkaBrokers, groupId, topic))[0];
}

/** A test's own topic, created, its dead-letter topic and consumer group. */
interface FreshTopic {
  readonly topic: string;
  /** `<topic>.dlq`; created only when asked for. */
  readonly deadLetterTopic: string;
  readonly groupId: string;
}

/**
 * Creates a topic named after `prefix` with `partitions` partitions (default
 * 1), and with `deadLetter` (default false) its `<topic>.dlq` too, and names
 * a fresh consumer group.
 */
async function freshTopic(
  prefix: string,
  { partitions = 1, deadLetter = false } = {},
): Promise<FreshTopic> {
  const topic = uniqueName(prefix);
  const deadLetterTopic = `${topic}.dlq`;
  await createTopics(
    brokers!.kafkaBrokers,
    deadLetter ? [topic, deadLetterTopic] : [topic],
    partitions,
  );
  return { topic, deadLetterTopic, groupId: uniqueName("group") };
}

/**
 * Opens a kafkaStream of `groupId` on `topic` alone, from the beginning, on
 * the test brokers; `overrides` add options or replace these.
 */
function openStream(
  { topic, groupId }: Pick<FreshTopic, "topic" | "groupId">,
  overrides: Partial<KafkaStreamOptions> = {},
): KafkaStream {
  return kafkaStream({
    brokers: brokers!.kafkaBrokers,
    groupId,
    topics: [topic],
    fromBeginning: true,
    ...overrides,
  });
}

/**
 * Polls `condition` until it holds; fails after `timeoutMs` with `what` and
 * the last `detail`. The pause between polls paces them; it synchronises
 * nothing.
 */
async function waitUntil(
  what: string,
  condition: () => boolean | Promise<boolean>,
  { timeoutMs = 30_000, detail }: {
    timeoutMs?: number;
    detail?: () => unknown;
  } = {},
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await condition())) {
    if (performance.now() > deadline) {
      const more = detail === undefined
        ? ""
        : `; last seen: ${JSON.stringify(await detail())}`;
      throw new Error(`${what}: not within ${timeoutMs} ms${more}`);
    }
    await abortableDelay(50);
  }
}

/**
 * Checks that `condition` holds at every poll for `forMs`: for what must
 * NOT happen within a period, such as a commit while PUBACKs are held.
 */
async function holdsFor(
  what: string,
  condition: () => boolean | Promise<boolean>,
  forMs: number,
  everyMs = 250,
): Promise<void> {
  const end = performance.now() + forMs;
  for (;;) {
    assert.ok(await condition(), what);
    if (performance.now() >= end) return;
    await abortableDelay(everyMs);
  }
}

function position(envelope: KafkaEnvelope): string {
  return `${envelope.record.partition}@${envelope.record.offset}`;
}

/**
 * Takes `count` envelopes, failing after `timeoutMs` with what was taken,
 * instead of waiting for ever for a lost record. On failure the pending
 * `next()` is left to the stream's signal or `return()`.
 */
async function take(
  stream: AsyncIterator<KafkaEnvelope>,
  count: number,
  timeoutMs = 30_000,
): Promise<KafkaEnvelope[]> {
  const taken: KafkaEnvelope[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<"expired">((resolve) =>
    timer = setTimeout(() => resolve("expired"), timeoutMs)
  );
  try {
    while (taken.length < count) {
      const next = await Promise.race([stream.next(), expired]);
      if (next === "expired") {
        throw new Error(
          `took ${taken.length} of ${count} records within ${timeoutMs} ms: ${
            JSON.stringify(taken.map(position))
          }`,
        );
      }
      if (next.done) break;
      taken.push(next.value);
    }
  } finally {
    clearTimeout(timer);
  }
  return taken;
}

/** Runs `fn` with the consumer's log records, debug level up, captured. */
async function withLogs<T>(
  fn: (records: readonly LogRecord[]) => Promise<T>,
): Promise<T> {
  const records: LogRecord[] = [];
  await configure({
    reset: true,
    sinks: { memory: (record: LogRecord) => records.push(record) },
    loggers: [
      {
        category: ["dataexchange", "kafka", "consumer"],
        lowestLevel: "debug",
        sinks: ["memory"],
      },
      { category: ["logtape", "meta"], lowestLevel: "error", sinks: [] },
    ],
  });
  try {
    return await fn(records);
  } finally {
    await reset();
  }
}

/** Ends a test's stream whatever state it is in: abort, then return(). */
async function end(
  stream: KafkaStream,
  controller: AbortController,
): Promise<void> {
  controller.abort();
  await stream.return();
}

Deno.test({
  name:
    "kafkaStream commits only the acknowledged prefix when acks come out of order",
  ...slow,
  async fn() {
    const fresh = await freshTopic("ks-order");
    const { topic, groupId } = fresh;
    await produce(topic, events(4));
    const stream = openStream(fresh, { nack: { exhausted: "stop" } });
    const [r0, r1, r2, r3] = await take(stream, 4);
    assert.deepEqual(
      [r0, r1, r2, r3].map((e) => e.record.offset),
      ["0", "1", "2", "3"],
    );
    r0.ack();
    await stream.commit();
    assert.equal(await committedOffset(groupId, topic), 1);
    r2.ack();
    await stream.commit();
    assert.equal(await committedOffset(groupId, topic), 1, "after ack of 2");
    r3.ack();
    await stream.commit();
    assert.equal(await committedOffset(groupId, topic), 1, "after ack of 3");
    r1.ack();
    await stream.commit();
    assert.equal(await committedOffset(groupId, topic), 4, "after ack of 1");
    await stream.return();
  },
});

Deno.test({
  name:
    "kafkaStream stopped with records unacknowledged hands them to the next consumer",
  ...slow,
  async fn() {
    const fresh = await freshTopic("ks-crash");
    const { topic, groupId } = fresh;
    await produce(topic, events(5));
    const options = { nack: { exhausted: "stop" as const } };
    const first = openStream(fresh, options);
    const taken = await take(first, 5);
    taken[0].ack();
    taken[1].ack();
    taken[3].ack(); // after an unacknowledged one: not committed
    await first.return();

    const second = openStream(fresh, options);
    const again = await take(second, 3);
    assert.deepEqual(again.map((e) => e.record.offset), ["2", "3", "4"]);
    for (const envelope of again) envelope.ack();
    await second.return();
    assert.equal(await committedOffset(groupId, topic), 5);
  },
});

Deno.test({
  name:
    "kafkaStream pauses fetching at maxInFlight, keeps its group membership past the session timeout, and resumes on ack",
  ...slow,
  async fn() {
    const fresh = await freshTopic("ks-cap");
    const { topic, groupId } = fresh;
    await produce(topic, events(40));
    const controller = new AbortController();
    const sessionTimeoutMs = 6000;
    const stream = openStream(fresh, {
      maxInFlight: 10,
      sessionTimeoutMs,
      nack: { exhausted: "stop" },
      signal: controller.signal,
    });
    try {
      const first = await take(stream, 10);
      assert.deepEqual(
        first.map((e) => e.record.offset),
        ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
      );
      await waitUntil(
        "the partition is paused in the Kafka client",
        () => stream.paused.some((p) => p.topic === topic && p.partition === 0),
        { detail: () => stream.paused },
      );
      const group = () =>
        withAdmin(brokers!.kafkaBrokers, async (admin) => {
          const { groups: [described] } = await admin.describeGroups([
            groupId,
          ]);
          return {
            state: described.state,
            members: described.members.map((m) => m.memberId),
          };
        });
      const before = await group();
      assert.equal(before.state, "Stable");
      assert.equal(before.members.length, 1);

      // Nothing beyond the cap is handed out while the ten are held, for
      // longer than the session timeout: the consumer must keep sending
      // heartbeats while paused, or the group would drop it and rebalance.
      let pending: IteratorResult<KafkaEnvelope> | undefined;
      const next = stream.next().then((result) => pending = result);
      await holdsFor(
        "paused at the cap, nothing more handed out, the same single member in a Stable group",
        async () => {
          const now = await group();
          return pending === undefined && stream.inFlight === 10 &&
            stream.paused.some((p) => p.topic === topic) &&
            now.state === "Stable" &&
            JSON.stringify(now.members) === JSON.stringify(before.members);
        },
        sessionTimeoutMs + 2000,
        500,
      );

      for (const envelope of first.slice(0, 5)) envelope.ack();
      await waitUntil("a record after the cap", () => pending !== undefined);
      await next;
      assert.equal(pending?.done, false);
      const resumed = pending!.value as KafkaEnvelope;
      assert.equal(resumed.record.offset, "10");
      const more = [resumed, ...await take(stream, 4)];
      assert.ok(stream.inFlight <= 10);
      const seen = new Set([...first, ...more].map((e) => e.record.offset));
      for (const envelope of [...first, ...more]) envelope.ack();
      while (seen.size < 40) {
        const [envelope] = await take(stream, 1);
        assert.ok(stream.inFlight <= 10, `inFlight ${stream.inFlight}`);
        seen.add(envelope.record.offset);
        envelope.ack();
      }
      assert.deepEqual(stream.paused, []);
    } finally {
      await end(stream, controller);
    }
  },
});

Deno.test({
  name:
    "kafkaStream retries a poison record after the computed backoff delays, then dead-letters it and goes on",
  ...slow,
  async fn() {
    const fresh = await freshTopic("ks-poison", { deadLetter: true });
    const { topic, deadLetterTopic, groupId } = fresh;
    const list = events(3);
    await produce(topic, list);
    // A fixed draw makes the delays known: half of each bound.
    const nack = {
      maxAttempts: 3,
      initialDelayMs: 200,
      maxDelayMs: 300,
      random: () => 0.5,
    };
    const expectedDelays = [1, 2].map((attempt) =>
      retryDelayMs(attempt, nack, nack.random)
    );
    assert.deepEqual(expectedDelays.map((d) => d * 2), [200, 300]);
    const stream = openStream(fresh, { deadLetterTopic, nack });
    const attempts: number[] = [];
    const gaps: number[] = [];
    let nackedAt = 0;
    const acked: string[] = [];
    const deadline = setTimeout(() => stream.return(), 30_000);
    try {
      for await (const envelope of stream) {
        assert.equal(envelope.kind, "event");
        if (envelope.record.offset === "1") {
          if (attempts.length > 0) gaps.push(performance.now() - nackedAt);
          attempts.push(envelope.attempt);
          nackedAt = performance.now();
          envelope.nack(new Error("cannot process"));
        } else {
          acked.push(envelope.record.offset);
          envelope.ack();
        }
        if (acked.length === 2 && attempts.length === 3) break;
      }
    } finally {
      clearTimeout(deadline);
    }
    assert.deepEqual(attempts, [1, 2, 3]);
    assert.deepEqual(acked.sort(), ["0", "2"]);
    // Each retry came no sooner than its delay (1 ms of timer slack).
    gaps.forEach((gap, i) =>
      assert.ok(
        gap >= expectedDelays[i] - 1,
        `retry ${i + 1} after ${gap.toFixed(1)} ms, before its ${
          expectedDelays[i]
        } ms delay`,
      )
    );
    const [dead] = await readTopics(brokers!.kafkaBrokers, [deadLetterTopic], {
      until: (read) => read.length >= 1,
    });
    assert.equal(header(dead.message, "ce_id"), list[1].id);
    assert.equal(header(dead.message, "dx-error"), "processing-failed");
    assert.match(header(dead.message, "dx-error-detail")!, /cannot process/);
    assert.equal(header(dead.message, "dx-source-topic"), topic);
    assert.equal(header(dead.message, "dx-source-partition"), "0");
    assert.equal(header(dead.message, "dx-source-offset"), "1");
    // The stream commits past the dead-lettered record once it is written.
    assert.equal(await committedOffset(groupId, topic), 3);
  },
});

Deno.test("retryDelayMs doubles its bound per attempt up to maxDelayMs and scales it by the draw", () => {
  const bounds = { initialDelayMs: 100, maxDelayMs: 1000 };
  const almostOne = () => 1 - Number.EPSILON;
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6].map((n) =>
      Math.round(retryDelayMs(n, bounds, almostOne))
    ),
    [100, 200, 400, 800, 1000, 1000],
  );
  assert.deepEqual(
    [1, 2, 3].map((n) => retryDelayMs(n, bounds, () => 0.25)),
    [25, 50, 100],
  );
  assert.equal(retryDelayMs(3, bounds, () => 0), 0);
  // Far attempts neither overflow nor pass the cap.
  assert.equal(retryDelayMs(5000, bounds, () => 0.5), 500);
  assert.throws(() => retryDelayMs(0, bounds), RangeError);
  assert.throws(() => retryDelayMs(1.5, bounds), RangeError);
});

Deno.test("retryDelayMs stays from 0 up to, not including, its bound for any draw (property)", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 100 }),
      fc.integer({ min: 1, max: 10_000 }),
      fc.integer({ min: 1, max: 100_000 }),
      fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
      (attempt, initialDelayMs, maxDelayMs, draw) => {
        const bound = Math.min(maxDelayMs, initialDelayMs * 2 ** (attempt - 1));
        const delay = retryDelayMs(
          attempt,
          { initialDelayMs, maxDelayMs },
          () => draw,
        );
        assert.ok(delay >= 0 && delay < bound, `${delay} of ${bound}`);
        assert.equal(delay, draw * bound);
      },
    ),
  );
});

Deno.test({
  name:
    'kafkaStream with nack.exhausted "stop" retries, then ends with record-failed and commits nothing past the failed record',
  ...slow,
  async fn() {
    const fresh = await freshTopic("ks-stop");
    const { topic, groupId } = fresh;
    await produce(topic, events(3));
    const controller = new AbortController();
    const deadline = setTimeout(() => controller.abort(), 30_000);
    const stream = openStream(fresh, {
      nack: {
        maxAttempts: 3,
        initialDelayMs: 20,
        maxDelayMs: 40,
        exhausted: "stop",
      },
      signal: controller.signal,
    });
    const attempts: number[] = [];
    const reasons: Error[] = [];
    let ended: unknown = "the stream ended without an error";
    try {
      for await (const envelope of stream) {
        if (envelope.record.offset === "1") {
          attempts.push(envelope.attempt);
          const reason = new Error(`cannot process (${envelope.attempt})`);
          reasons.push(reason);
          envelope.nack(reason);
        } else {
          envelope.ack();
        }
      }
    } catch (error) {
      ended = error;
    } finally {
      clearTimeout(deadline);
    }
    assert.ok(!controller.signal.aborted, "ended before the test's deadline");
    assert.deepEqual(attempts, [1, 2, 3]);
    assert.ok(isDataExchangeError(ended), String(ended));
    assert.equal(ended.code, "record-failed");
    assert.equal(ended.cause, reasons[2]);
    assert.match(ended.message, new RegExp(`${topic}/0@1 failed 3 time`));
    // Offset 2 was acknowledged too; the commit stops at the failed record.
    assert.equal(await committedOffset(groupId, topic), 1);
  },
});

Deno.test({
  name:
    "kafkaStream skips an invalid record that is acknowledged: commits past it and dead-letters nothing",
  ...slow,
  async fn() {
    const fresh = await freshTopic("ks-ack-invalid", { deadLetter: true });
    const { topic, deadLetterTopic, groupId } = fresh;
    await produceTo(topic, [
      { partition: 0, record: garbage() },
      { partition: 0, record: toKafkaRecord(events(1)[0]) },
    ]);
    const controller = new AbortController();
    const stream = openStream(fresh, {
      deadLetterTopic,
      signal: controller.signal,
    });
    try {
      const [invalid, valid] = await take(stream, 2);
      assert.equal(invalid.kind, "invalid");
      assert.equal(valid.kind, "event");
      invalid.ack();
      valid.ack();
      await stream.commit();
      assert.equal(await committedOffset(groupId, topic), 2);
    } finally {
      // Returning waits for dead-letter writes under way: none may exist.
      await end(stream, controller);
    }
    assert.equal(await recordsIn(brokers!.kafkaBrokers, deadLetterTopic), 0);
  },
});

Deno.test({
  name:
    "kafkaStream commits once every commitEvery acknowledgements, and not in between",
  ...slow,
  async fn() {
    const fresh = await freshTopic("ks-every");
    const { topic, groupId } = fresh;
    await produce(topic, events(7));
    const controller = new AbortController();
    const commits: string[] = [];
    const stream = openStream(fresh, {
      commitEvery: 3,
      commitIntervalMs: 600_000, // never within the test
      nack: { exhausted: "stop" },
      onCommit: (done) => commits.push(...done.map((c) => c.offset)),
      signal: controller.signal,
    });
    try {
      const held = await take(stream, 7);
      for (const [i, envelope] of held.slice(0, 6).entries()) {
        envelope.ack();
        const acks = i + 1;
        if (acks % 3 === 0) {
          await waitUntil(
            `commit of offset ${acks} after ${acks} acks`,
            () => commits.at(-1) === String(acks),
            { timeoutMs: 10_000, detail: () => commits },
          );
          assert.equal(await committedOffset(groupId, topic), acks);
        } else {
          // Room for a commit that must not come.
          await holdsFor(
            `no commit after ${acks} acks`,
            () => commits.length === Math.floor(acks / 3),
            500,
          );
        }
      }
      // One commit per three acks: none after the 1st, 2nd, 4th or 5th.
      assert.deepEqual(commits, ["3", "6"]);
    } finally {
      await end(stream, controller);
    }
  },
});

Deno.test({
  name:
    "kafkaStream commits acknowledgements every commitIntervalMs below the commitEvery count",
  ...slow,
  async fn() {
    const fresh = await freshTopic("ks-interval");
    const { topic, groupId } = fresh;
    await produce(topic, events(3));
    const controller = new AbortController();
    const commits: number[] = [];
    const stream = openStream(fresh, {
      commitEvery: 1000, // never within the test
      commitIntervalMs: 300,
      nack: { exhausted: "stop" },
      onCommit: () => commits.push(performance.now()),
      signal: controller.signal,
    });
    try {
      const held = await take(stream, 3);
      const ackedAt = performance.now();
      held[0].ack();
      await waitUntil(
        "interval commit of offset 1",
        async () => await committedOffset(groupId, topic) === 1,
        { timeoutMs: 5_000 },
      );
      // The next tick of the interval did it, with no other trigger.
      assert.equal(commits.length, 1);
      assert.ok(commits[0] - ackedAt < 300 + 200, `${commits[0] - ackedAt}`);
      held[1].ack();
      held[2].ack();
      await waitUntil(
        "interval commit of offset 3",
        async () => await committedOffset(groupId, topic) === 3,
        { timeoutMs: 5_000 },
      );
      assert.equal(commits.length, 2);
    } finally {
      await end(stream, controller);
    }
  },
});

Deno.test({
  name:
    "kafkaStream commits the acknowledged prefix of a revoked partition before it moves to another consumer",
  ...slow,
  async fn() {
    const fresh = await freshTopic("ks-revoke-flush", { partitions: 2 });
    const { topic, groupId } = fresh;
    const list = events(8);
    await produceTo(
      topic,
      list.map((event, i) => ({
        partition: i % 2,
        record: toKafkaRecord(event),
      })),
    );
    const stopA = new AbortController();
    const stopB = new AbortController();
    const options = {
      // Neither the count nor the interval commits within the test: only
      // the rebalance can.
      commitEvery: 10_000,
      commitIntervalMs: 600_000,
      nack: { exhausted: "stop" as const },
    };
    const commitsOfA: OffsetCommit[] = [];
    const a = openStream(fresh, {
      ...options,
      signal: stopA.signal,
      onCommit: (done) => commitsOfA.push(...done),
    });
    const b = openStream(fresh, { ...options, signal: stopB.signal });
    try {
      const held = await take(a, 8);
      // Offsets 0 and 1 of each partition acked, and 3 out of order: the
      // prefix to commit is 2 on both.
      for (const envelope of held) {
        if (envelope.record.offset !== "2") envelope.ack();
      }
      assert.deepEqual(
        await committedOffsets(brokers!.kafkaBrokers, groupId, topic),
        [-1, -1],
      );

      const [first] = await take(b, 1);
      const moved = first.record.partition;
      assert.equal(
        first.record.offset,
        "2",
        `the second consumer started partition ${moved} at ${first.record.offset}, not after the acknowledged prefix`,
      );
      assert.deepEqual(
        commitsOfA.filter((c) => c.partition === moved).map((c) => c.offset),
        ["2"],
      );
    } finally {
      await Promise.all([end(a, stopA), end(b, stopB)]);
    }
  },
});

for (const exhausted of ["dead-letter", "stop"] as const) {
  Deno.test({
    name:
      `kafkaStream ignores acks, nacks and retry waits of a revoked partition and goes on (nack.exhausted "${exhausted}")`,
    ...slow,
    async fn() {
      const fresh = await freshTopic("ks-revoked", {
        partitions: 2,
        deadLetter: true,
      });
      const { topic, deadLetterTopic, groupId } = fresh;
      // Per partition: an invalid record (a nack would dead-letter it at
      // once, or stop the stream), then two valid ones.
      const list = events(4);
      await produceTo(
        topic,
        [0, 1].flatMap((partition) => [
          { partition, record: garbage() },
          { partition, record: toKafkaRecord(list[partition * 2]) },
          { partition, record: toKafkaRecord(list[partition * 2 + 1]) },
        ]),
      );
      const clientA = uniqueName("a");
      const stopA = new AbortController();
      const stopB = new AbortController();
      const commitsOfA: OffsetCommit[] = [];
      const options = { drainTimeoutMs: 1000 };
      let revoked = -1;
      let kept = -1;
      await withLogs(async (logs) => {
        const a = openStream(fresh, {
          ...options,
          clientId: clientA,
          deadLetterTopic: exhausted === "dead-letter"
            ? deadLetterTopic
            : undefined,
          // A retry waits about a minute: the revocation must end it.
          nack: {
            maxAttempts: 2,
            initialDelayMs: 60_000,
            maxDelayMs: 60_000,
            random: () => 0.99,
            exhausted,
          },
          onCommit: (done) => commitsOfA.push(...done),
          signal: stopA.signal,
        });
        const b = openStream(fresh, {
          ...options,
          nack: { exhausted: "stop" },
          signal: stopB.signal,
        });
        try {
          const held = new Map<number, KafkaEnvelope[]>([[0, []], [1, []]]);
          for (const envelope of await take(a, 6)) {
            held.get(envelope.record.partition)!.push(envelope);
          }
          for (const [, [, , third]] of held) {
            third.nack(new Error("busy"));
          }
          assert.equal(a.inFlight, 6);

          // The second consumer joins and takes one partition.
          const [first] = await take(b, 1);
          revoked = first.record.partition;
          kept = 1 - revoked;
          await waitUntil(
            "the first consumer sees its partition revoked",
            () =>
              logs.some((r) =>
                r.properties.clientId === clientA &&
                JSON.stringify(r.properties.partitions) ===
                  JSON.stringify([{ topic, partition: revoked }])
              ),
          );
          // The retry wait of the revoked partition ended with it.
          await waitUntil(
            "the revoked retry wait to end",
            () => a.inFlight === 5,
            { detail: () => a.inFlight },
          );

          const [invalid, valid] = held.get(revoked)!;
          assert.equal(invalid.kind, "invalid");
          valid.ack();
          invalid.nack(invalid.kind === "invalid" ? invalid.error : undefined);
          assert.equal(a.inFlight, 3);

          // The first consumer goes on with the partition it kept.
          const [keptInvalid, keptValid] = held.get(kept)!;
          keptInvalid.ack();
          keptValid.ack();
          await produceTo(topic, [{
            partition: kept,
            record: toKafkaRecord(events(1, "later")[0]),
          }]);
          const [later] = await take(a, 1);
          assert.equal(position(later), `${kept}@3`);
          later.ack();
          await a.commit();
          assert.equal(a.inFlight, 1, "only the kept partition's retry waits");
        } finally {
          await Promise.all([end(a, stopA), end(b, stopB)]);
        }

        assert.deepEqual(
          commitsOfA.filter((c) => c.partition === revoked),
          [],
          "the first consumer committed nothing for the revoked partition",
        );
        const committed = await committedOffsets(
          brokers!.kafkaBrokers,
          groupId,
          topic,
        );
        assert.equal(committed[revoked], -1);
        assert.equal(committed[kept], 2, "the kept partition's acked prefix");
        assert.equal(
          await recordsIn(brokers!.kafkaBrokers, deadLetterTopic),
          0,
        );
        const ignored = logs
          .filter((r) =>
            r.properties.clientId === clientA &&
            r.properties.partition === revoked && r.level === "debug" &&
            typeof r.properties.what === "string"
          )
          .map((r) => `${r.properties.what} ${r.properties.offset}`)
          .sort();
        assert.deepEqual(ignored, ["Ack 1", "Nack 0", "Retry 2"]);
      });
    },
  });
}

Deno.test({
  name:
    "kafkaStream surfaces an invalid record and dead-letters it on nack without retries",
  ...slow,
  async fn() {
    const fresh = await freshTopic("ks-invalid", { deadLetter: true });
    const { topic, deadLetterTopic } = fresh;
    await using sink = await KafkaSink.connect({
      brokers: brokers!.kafkaBrokers,
    });
    const garbage = new TextEncoder().encode("{not an event");
    await sink.send(topic, {
      key: null,
      value: garbage,
      headers: {
        "content-type": new TextEncoder().encode(
          "application/cloudevents+json",
        ),
      },
    });
    await sink.send(topic, toKafkaRecord(events(1)[0]));
    const stream = openStream(fresh, { deadLetterTopic });
    const [invalid, valid] = await take(stream, 2);
    assert.equal(invalid.kind, "invalid");
    assert.equal(
      invalid.kind === "invalid" && invalid.error.code,
      "malformed-json",
    );
    assert.equal(invalid.attempt, 1);
    invalid.nack(invalid.kind === "invalid" ? invalid.error : undefined);
    assert.equal(valid.kind, "event");
    valid.ack();
    const [dead] = await readTopics(brokers!.kafkaBrokers, [deadLetterTopic], {
      until: (read) => read.length >= 1,
    });
    assert.deepEqual(new Uint8Array(dead.message.value!), garbage);
    assert.equal(header(dead.message, "dx-error"), "malformed-json");
    await stream.return();
  },
});

Deno.test({
  name:
    "kafkaStream reads back what the Kafka sink wrote, in both content modes",
  ...slow,
  async fn() {
    for (const mode of ["binary", "structured"] as const) {
      const fresh = await freshTopic(`ks-roundtrip-${mode}`);
      const list = events(20, mode);
      await produce(fresh.topic, list, mode);
      const stream = openStream(fresh, { nack: { exhausted: "stop" } });
      const read = await take(stream, 20);
      for (const envelope of read) envelope.ack();
      await stream.return();
      assert.deepEqual(
        read.map((e) => e.kind === "event" ? e.event : e.error),
        list,
        `${mode} mode`,
      );
    }
  },
});

Deno.test({
  name:
    "kafkaStream processes every record at least once when a second consumer joins mid-stream",
  ...slow,
  async fn() {
    const fresh = await freshTopic("ks-rebalance", { partitions: 4 });
    const total = 5000;
    const list = events(total);
    await produce(fresh.topic, list);
    const processed: string[] = [];
    const unique = new Set<string>();
    const perConsumer: Record<string, number> = { a: 0, b: 0 };
    let joined: Promise<void> | undefined;
    let bStarted!: () => void;
    const bFirst = new Promise<void>((resolve) => bStarted = resolve);
    const controller = new AbortController();
    const consume = async (name: "a" | "b") => {
      const stream = openStream(fresh, {
        maxInFlight: 200,
        commitEvery: 100,
        signal: controller.signal,
        nack: { exhausted: "stop" },
      });
      for await (const envelope of stream) {
        assert.equal(envelope.kind, "event");
        const id = envelope.kind === "event" ? envelope.event.id : "";
        processed.push(id);
        unique.add(id);
        perConsumer[name]++;
        envelope.ack();
        if (name === "b" && perConsumer.b === 1) bStarted();
        if (name === "a" && perConsumer.a === 1000) {
          // Hold "a" mid-stream until "b" has joined and been given records:
          // the rebalance happens with records of "a" in flight.
          joined = consume("b");
          await bFirst;
        }
        if (unique.size === total) controller.abort();
      }
    };
    await consume("a");
    await joined;
    assert.equal(unique.size, total);
    assert.ok(perConsumer.b > 0, "the second consumer was given partitions");
    console.log(
      `rebalance test: ${total} records, processed ${processed.length} (a ${perConsumer.a}, b ${perConsumer.b}), duplicates ${
        processed.length - unique.size
      }`,
    );
  },
});
