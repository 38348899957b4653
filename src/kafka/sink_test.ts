import assert from "node:assert/strict";
import {
  CloudEventError,
  createCloudEvent,
  createRouter,
  type KafkaRecord,
  toKafkaRecord,
} from "../cloudevents/mod.ts";
import type { AnyEnvelope } from "../envelope.ts";
import { type DataExchangeError, isDataExchangeError } from "../errors.ts";
import { abortableDelay } from "../_retry.ts";
import { isolatedTestBrokers, testBrokers } from "../../tests/_brokers.ts";
import {
  createTopics,
  header,
  readTopics,
  recordsIn,
  uniqueName,
  withAdmin,
} from "../../tests/_kafka.ts";
import { type BreakerStateChange, KafkaSink } from "./sink.ts";
import { classifyProduceError, MISSING_TOPIC_RETRY_MS } from "./_kafkajs.ts";

const shared = await testBrokers();
const ignore = shared === undefined;
const decoder = new TextDecoder();

/** Polls `condition` until it holds; fails after `timeoutMs`. */
async function waitFor(
  what: string,
  condition: () => boolean,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await abortableDelay(20);
  }
}

Deno.test({
  name:
    "KafkaSink opens its breaker while Kafka is down, buffers up to maxBufferedRecords, and delivers everything once Kafka is back",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using brokers = (await isolatedTestBrokers())!;
    const topic = uniqueName("sink-breaker");
    await createTopics(brokers.kafkaBrokers, [topic]);
    const changes: BreakerStateChange[] = [];
    const pendingSamples: number[] = [];
    await using sink = await KafkaSink.connect({
      brokers: brokers.kafkaBrokers,
      batchSize: 10,
      maxBufferedRecords: 50,
      retryInitialDelayMs: 50,
      breakerThreshold: 3,
      breakerHalfOpenAfterMs: 1000,
      onBreakerStateChange: (change) => changes.push(change),
    });
    assert.equal(sink.breakerState, "closed");

    await brokers.kafka.kill();
    const ids = Array.from({ length: 100 }, (_, i) => `r-${i}`);
    let entered = 0;
    let acknowledged = 0;
    const sends = ids.map((id) => {
      const record = toKafkaRecord(
        createCloudEvent({ id, source: "/sink-test", type: "t", data: {} }),
      );
      const sent = sink.send(topic, record);
      entered++;
      return sent.then(() => acknowledged++);
    });
    await waitFor("the breaker to open", () => sink.breakerState === "open");
    const openedAt = performance.now();
    // Held open for 3 s: at most one probe per second goes out.
    await waitFor("3 s of outage", () => {
      pendingSamples.push(sink.pending);
      return performance.now() - openedAt >= 3000;
    }, 10_000);
    const probes = changes.filter((c) => c.state === "half-open").length;
    assert.ok(probes <= 4, `${probes} probes in 3 s`);
    assert.equal(acknowledged, 0);
    assert.equal(entered, ids.length, "send() returned for every record");
    assert.equal(sink.pending, 50, "the buffer holds maxBufferedRecords");
    assert.ok(pendingSamples.every((pending) => pending <= 50));

    await brokers.kafka.restart();
    await Promise.all(sends);
    assert.equal(acknowledged, ids.length);
    assert.equal(sink.breakerState, "closed");
    const states = changes.map((c) => c.state);
    assert.equal(states[0], "open");
    assert.equal(changes[0].previous, "closed");
    assert.ok(changes[0].error instanceof Error, "the failure that opened it");
    assert.deepEqual(states.slice(-2), ["half-open", "closed"]);

    const records = await readTopics(brokers.kafkaBrokers, [topic], {
      until: (read) => read.length >= ids.length,
    });
    // One request at a time: the order survives the outage.
    assert.deepEqual(
      records.map((r) => header(r.message, "ce_id")),
      ids,
    );
  },
});

Deno.test("KafkaSink.connect() rejects a breaker threshold that is not a positive integer, before connecting", async () => {
  await assert.rejects(
    KafkaSink.connect({ brokers: ["127.0.0.1:1"], breakerThreshold: 0 }),
    { name: "RangeError", message: /breakerThreshold must be a positive/ },
  );
});

/** Creates a topic with settings of its own, such as `max.message.bytes`. */
function createTopicWith(
  brokers: readonly string[],
  topic: string,
  { partitions = 1, config = {} }: {
    partitions?: number;
    config?: Record<string, string>;
  },
): Promise<void> {
  return withAdmin(brokers, async (admin) => {
    await admin.createTopics({
      waitForLeaders: true,
      topics: [{
        topic,
        numPartitions: partitions,
        configEntries: Object.entries(config).map(([name, value]) => ({
          name,
          value,
        })),
      }],
    });
  });
}

/** A binary-mode record of an event with this id, and a value this long. */
function recordOf(id: string, valueBytes = 16, key?: string): KafkaRecord {
  return toKafkaRecord(
    createCloudEvent({
      id,
      source: "/sink-test",
      type: "t",
      data: "x".repeat(valueBytes),
      extensions: key === undefined ? {} : { partitionkey: key },
    }),
  );
}

function isRecordRejected(type: string) {
  return (error: unknown): boolean => {
    assert.ok(isDataExchangeError(error), String(error));
    assert.equal(error.code, "record-rejected");
    assert.equal(error.retriable, false);
    assert.match(error.message, new RegExp(type));
    return true;
  };
}

Deno.test({
  name:
    "KafkaSink.send() rejects a record for an invalid topic name with record-rejected, without sending it, and delivers the records around it",
  ignore,
  async fn() {
    const topic = uniqueName("sink-invalid-topic");
    await createTopics(shared!.kafkaBrokers, [topic]);
    await using sink = await KafkaSink.connect({
      brokers: shared!.kafkaBrokers,
      lingerMs: 50,
    });

    const sends = [
      sink.send(topic, recordOf("before")),
      sink.send("bad topic!", recordOf("space")),
      sink.send("x".repeat(250), recordOf("too-long")),
      sink.send("..", recordOf("dots")),
      sink.send(topic, recordOf("after")),
    ];
    const outcomes = await Promise.allSettled(sends);

    assert.deepEqual(outcomes.map((o) => o.status), [
      "fulfilled",
      "rejected",
      "rejected",
      "rejected",
      "fulfilled",
    ]);
    for (const outcome of outcomes.slice(1, 4)) {
      const error = (outcome as PromiseRejectedResult).reason;
      isRecordRejected("not a valid Kafka topic name")(error);
    }
    assert.match(
      (outcomes[1] as PromiseRejectedResult).reason.message,
      /"bad topic!" is not a valid Kafka topic name/,
    );
    assert.equal(await recordsIn(shared!.kafkaBrokers, topic), 2);
    const records = await readTopics(shared!.kafkaBrokers, [topic], {
      until: (read) => read.length >= 2,
    });
    assert.deepEqual(records.map((r) => header(r.message, "ce_id")), [
      "before",
      "after",
    ]);
  },
});

Deno.test({
  name:
    "KafkaSink rejects alone the record over the topic's max.message.bytes; the other records of its request are stored exactly once, in order",
  ignore,
  async fn() {
    const topic = uniqueName("sink-too-large");
    await createTopicWith(shared!.kafkaBrokers, topic, {
      config: { "max.message.bytes": "10000" },
    });
    // One request: every record is queued before the linger time is over.
    await using sink = await KafkaSink.connect({
      brokers: shared!.kafkaBrokers,
      lingerMs: 300,
      batchSize: 100,
    });
    const ids = Array.from({ length: 11 }, (_, n) => `r-${n}`);
    const big = "r-5";
    const outcomes = await Promise.allSettled(
      ids.map((id) => sink.send(topic, recordOf(id, id === big ? 20_000 : 16))),
    );

    const rejected = outcomes.flatMap((outcome, n) =>
      outcome.status === "rejected" ? [[ids[n], outcome.reason]] : []
    );
    assert.equal(rejected.length, 1, String(rejected));
    const [id, error] = rejected[0] as [string, DataExchangeError];
    assert.equal(id, big);
    isRecordRejected("MESSAGE_TOO_LARGE")(error);
    assert.match(error.message, /max\.message\.bytes/);
    assert.equal(
      (error.cause as { type?: string }).type,
      "MESSAGE_TOO_LARGE",
      "the kafkajs error is the cause",
    );

    const stored = ids.filter((each) => each !== big);
    assert.equal(
      await recordsIn(shared!.kafkaBrokers, topic),
      stored.length,
      "each stored exactly once",
    );
    const records = await readTopics(shared!.kafkaBrokers, [topic], {
      until: (read) => read.length >= stored.length,
    });
    assert.deepEqual(records.map((r) => header(r.message, "ce_id")), stored);
  },
});

Deno.test({
  name:
    "KafkaSink narrows a refused request down partition by partition: the records of the refused partition are stored once and in order, every other record at least once",
  ignore,
  async fn() {
    const topic = uniqueName("sink-too-large-partitions");
    await createTopicWith(shared!.kafkaBrokers, topic, {
      partitions: 3,
      config: { "max.message.bytes": "10000" },
    });
    await using sink = await KafkaSink.connect({
      brokers: shared!.kafkaBrokers,
      lingerMs: 300,
      batchSize: 100,
    });
    // Keyed records: each key always lands in the same partition.
    const ids = Array.from({ length: 24 }, (_, n) => `r-${n}`);
    const big = "r-11";
    const outcomes = await Promise.allSettled(
      ids.map((id) =>
        sink.send(topic, recordOf(id, id === big ? 20_000 : 16, `key-${id}`))
      ),
    );
    assert.deepEqual(
      ids.filter((_, n) => outcomes[n].status === "rejected"),
      [big],
    );

    // A small record with the big one's key shows which partition refused it.
    await sink.send(topic, recordOf("probe", 16, `key-${big}`));

    const stored = ids.filter((each) => each !== big);
    const records = await readTopics(shared!.kafkaBrokers, [topic], {
      until: (read) =>
        [...stored, "probe"].every((id) =>
          read.some((r) => header(r.message, "ce_id") === id)
        ),
    });
    const idsIn = (partition: number) =>
      records.filter((r) => r.partition === partition)
        .map((r) => header(r.message, "ce_id")!)
        .filter((id) => id !== "probe");
    const partitionOf = new Map(
      records.map((r) => [header(r.message, "ce_id"), r.partition]),
    );
    const refused = partitionOf.get("probe");
    for (let partition = 0; partition < 3; partition++) {
      const sent = stored.filter((id) => partitionOf.get(id) === partition);
      const inPartition = idsIn(partition);
      assert.deepEqual(
        [...new Set(inPartition)],
        sent,
        `partition ${partition}: every record, first copies in order`,
      );
      if (partition === refused) {
        assert.deepEqual(inPartition, sent, "the refused partition: once each");
      }
    }
  },
});

Deno.test({
  name:
    "KafkaSink.send() withdraws a buffered record when its signal aborts: the send rejects with the reason and the record is never stored",
  ignore,
  async fn() {
    const topic = uniqueName("sink-withdraw");
    await createTopics(shared!.kafkaBrokers, [topic]);
    await using sink = await KafkaSink.connect({
      brokers: shared!.kafkaBrokers,
      lingerMs: 500,
    });
    const stop = new AbortController();
    const withdrawn = sink.send(topic, recordOf("withdrawn"), {
      signal: stop.signal,
    });
    const reason = new Error("no longer wanted");
    stop.abort(reason);
    await assert.rejects(withdrawn, (error) => error === reason);
    assert.equal(sink.pending, 0);
    await assert.rejects(
      sink.send(topic, recordOf("late"), { signal: stop.signal }),
      (error) => error === reason,
    );

    await sink.send(topic, recordOf("kept"));
    assert.equal(await recordsIn(shared!.kafkaBrokers, topic), 1);
    const records = await readTopics(shared!.kafkaBrokers, [topic], {
      until: (read) => read.length >= 1,
    });
    assert.equal(header(records[0].message, "ce_id"), "kept");
  },
});

Deno.test({
  name:
    "KafkaSink.writeAll() sends an async iterable of plain CloudEvents and resolves with the counts once Kafka has every record",
  ignore,
  async fn() {
    const topic = uniqueName("sink-write-all");
    await createTopics(shared!.kafkaBrokers, [topic]);
    await using sink = await KafkaSink.connect({
      brokers: shared!.kafkaBrokers,
      batchSize: 7,
    });
    const ids = Array.from({ length: 50 }, (_, n) => `e-${n}`);
    async function* events() {
      for (const id of ids) {
        yield createCloudEvent({ id, source: "/sink-test", type: "t" });
      }
    }

    const result = await sink.writeAll(events(), { topic, mode: "structured" });

    assert.deepEqual(result, {
      written: 50,
      failed: 0,
      invalid: 0,
      deadLettered: 0,
    });
    assert.equal(sink.pending, 0);
    assert.equal(await recordsIn(shared!.kafkaBrokers, topic), 50);
    const records = await readTopics(shared!.kafkaBrokers, [topic], {
      until: (read) => read.length >= 50,
    });
    const stored = records.map((r) => JSON.parse(r.message.value!.toString()));
    assert.deepEqual(stored.map((event) => event.id), ids);
  },
});

Deno.test({
  name:
    "KafkaSink.writeAll() acks each envelope only after Kafka acknowledged its record, routes events, and dead-letters invalid envelopes",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const telemetry = uniqueName("sink-env-telemetry");
    const alerts = uniqueName("sink-env-alerts"); // created later
    const dead = uniqueName("sink-env-dead");
    await createTopics(shared!.kafkaBrokers, [telemetry, dead]);
    const router = createRouter({
      routes: { alert: alerts },
      defaultTopic: telemetry,
      deadLetterTopic: dead,
    });
    // The alerts topic does not exist yet: it is created once Kafka said so.
    let created: Promise<void> | undefined;
    let settledBeforeCreated: boolean | undefined;
    await using sink = await KafkaSink.connect({
      brokers: shared!.kafkaBrokers,
      retryInitialDelayMs: 50,
      retryMaxDelayMs: 200,
      breakerHalfOpenAfterMs: 200,
      onRetry: ({ operation }) => {
        if (operation !== "produce" || created !== undefined) return;
        settledBeforeCreated = settled.has("a-1");
        created = createTopics(shared!.kafkaBrokers, [alerts]);
      },
    });
    // What Kafka acknowledged, by event id or MQTT topic of a dead letter.
    const acknowledged = new Set<string>();
    const send = sink.send.bind(sink);
    sink.send = async (topic, record, options) => {
      await send(topic, record, options);
      const id = record.headers["ce_id"] ?? record.headers["dx-mqtt-topic"];
      acknowledged.add(decoder.decode(id));
    };
    const settled = new Map<string, "ack after Kafka" | "early ack" | "nack">();
    const envelope = (id: string, classification?: string): AnyEnvelope => ({
      kind: "event",
      event: createCloudEvent({ id, source: "/s", type: "t", classification }),
      ack: () =>
        settled.set(id, acknowledged.has(id) ? "ack after Kafka" : "early ack"),
      nack: () => settled.set(id, "nack"),
    });
    const invalid = (
      mqttTopic: string,
    ): AnyEnvelope & { message: unknown } => ({
      kind: "invalid",
      error: new CloudEventError("malformed-json", "The payload is not JSON"),
      message: { topic: mqttTopic, payload: new TextEncoder().encode("{") },
      ack: () =>
        settled.set(
          mqttTopic,
          acknowledged.has(mqttTopic) ? "ack after Kafka" : "early ack",
        ),
      nack: () => settled.set(mqttTopic, "nack"),
    });
    async function* envelopes(): AsyncGenerator<AnyEnvelope> {
      yield envelope("t-1");
      yield envelope("a-1", "alert");
      yield invalid("sensors/7");
      yield envelope("t-2");
    }

    const result = await sink.writeAll(envelopes(), { topic: router });
    await created;

    assert.equal(
      settledBeforeCreated,
      false,
      "not settled before Kafka has it",
    );

    assert.deepEqual(result, {
      written: 3,
      failed: 0,
      invalid: 1,
      deadLettered: 1,
    });
    assert.deepEqual(Object.fromEntries(settled), {
      "t-1": "ack after Kafka",
      "a-1": "ack after Kafka",
      "sensors/7": "ack after Kafka",
      "t-2": "ack after Kafka",
    });
    const records = await readTopics(
      shared!.kafkaBrokers,
      [telemetry, alerts, dead],
      { until: (read) => read.length >= 4 },
    );
    const where = (topic: string) =>
      records.filter((r) => r.topic === topic).map((r) =>
        header(r.message, "ce_id") ?? decoder.decode(r.message.value!)
      );
    assert.deepEqual(where(telemetry), ["t-1", "t-2"]);
    assert.deepEqual(where(alerts), ["a-1"]);
    assert.deepEqual(where(dead), ["{"]);
    const letter = records.find((r) => r.topic === dead)!.message;
    assert.equal(header(letter, "dx-error"), "malformed-json");
    assert.equal(header(letter, "dx-mqtt-topic"), "sensors/7");
  },
});

/** Whether `error` is `topic-missing` for `topic`, with kafkajs' error as cause. */
function isTopicMissing(topic: string) {
  return (error: unknown): boolean => {
    assert.ok(isDataExchangeError(error), String(error));
    assert.equal(error.code, "topic-missing", error.message);
    assert.equal(error.retriable, false);
    assert.match(error.message, new RegExp(`topic "${topic}" does not exist`));
    assert.match(error.message, /create the topic/);
    assert.match(error.message, /allowAutoTopicCreation: true/);
    assert.deepEqual(classifyProduceError(error.cause), {
      kind: "unknown-topic",
      type: "UNKNOWN_TOPIC_OR_PARTITION",
    });
    return true;
  };
}

/** The time `work` took to settle, in milliseconds, and how it settled. */
async function timed<T>(
  work: Promise<T>,
): Promise<{ ms: number; outcome: PromiseSettledResult<T> }> {
  const start = performance.now();
  const [outcome] = await Promise.allSettled([work]);
  return { ms: performance.now() - start, outcome };
}

/** The longest a request for a missing topic may take to be rejected. */
const MISSING_TOPIC_BOUND_MS = MISSING_TOPIC_RETRY_MS + 4_000;

Deno.test({
  name:
    "KafkaSink rejects the records for a missing topic with topic-missing, naming it, within the bound, while the records for an existing topic of the same request are delivered; the breaker does not count it",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // Regression: UNKNOWN_TOPIC_OR_PARTITION, retriable for kafkajs, was
    // retried forever, and the records for every other topic waited behind.
    const existing = uniqueName("sink-exists");
    const missing = uniqueName("sink-missing");
    await createTopics(shared!.kafkaBrokers, [existing]);
    const changes: BreakerStateChange[] = [];
    const retries: string[] = [];
    await using sink = await KafkaSink.connect({
      brokers: shared!.kafkaBrokers,
      lingerMs: 300, // one request for the three records
      breakerThreshold: 2,
      onBreakerStateChange: (change) => changes.push(change),
      onRetry: ({ operation }) => retries.push(operation),
    });

    const start = performance.now();
    const delivered: Array<Promise<number>> = [];
    const sends = [
      sink.send(existing, recordOf("e-1")),
      sink.send(missing, recordOf("m-1")),
      sink.send(existing, recordOf("e-2")),
    ];
    for (const sent of [sends[0], sends[2]]) {
      delivered.push(sent.then(() => performance.now() - start));
    }
    const rejected = await timed(sends[1]);

    assert.equal(rejected.outcome.status, "rejected");
    isTopicMissing(missing)((rejected.outcome as PromiseRejectedResult).reason);
    assert.ok(
      rejected.ms < MISSING_TOPIC_BOUND_MS,
      `rejected after ${Math.round(rejected.ms)} ms`,
    );
    assert.ok(
      rejected.ms >= MISSING_TOPIC_RETRY_MS,
      `retried for ${Math.round(rejected.ms)} ms`,
    );
    const [first, second] = await Promise.all(delivered);
    assert.ok(first < rejected.ms && second < rejected.ms, "delivered first");
    assert.ok(retries.includes("produce"), "the missing topic was retried");
    assert.deepEqual(changes, [], "the breaker stayed closed");
    assert.equal(sink.breakerState, "closed");

    // Later records for it: one attempt, no second wait.
    const again = await timed(sink.send(missing, recordOf("m-2")));
    assert.equal(again.outcome.status, "rejected");
    isTopicMissing(missing)((again.outcome as PromiseRejectedResult).reason);
    assert.ok(again.ms < 3_000, `rejected again after ${again.ms} ms`);

    assert.equal(await recordsIn(shared!.kafkaBrokers, existing), 2);
    const records = await readTopics(shared!.kafkaBrokers, [existing], {
      until: (read) => read.length >= 2,
    });
    assert.deepEqual(records.map((r) => header(r.message, "ce_id")), [
      "e-1",
      "e-2",
    ]);
  },
});

Deno.test({
  name:
    "KafkaSink.writeAll() of a stream for a missing topic ends within seconds with every event failed with topic-missing, each passed to onError",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // Regression: a library user's writeAll to a topic that did not exist
    // printed nothing and did not end: the sink retried it forever.
    const missing = uniqueName("sink-write-all-missing");
    await using sink = await KafkaSink.connect({
      brokers: shared!.kafkaBrokers,
      batchSize: 100,
    });
    const count = 1000;
    async function* events() {
      for (let n = 0; n < count; n++) {
        yield createCloudEvent({
          id: `e-${n}`,
          source: "/sink-test",
          type: "t",
        });
      }
    }
    const errors: unknown[] = [];

    const { ms, outcome } = await timed(
      sink.writeAll(events(), {
        topic: missing,
        onError: (error) => errors.push(error),
      }),
    );

    assert.equal(outcome.status, "fulfilled");
    assert.deepEqual((outcome as PromiseFulfilledResult<unknown>).value, {
      written: 0,
      failed: count,
      invalid: 0,
      deadLettered: 0,
    });
    assert.equal(errors.length, count);
    for (const error of errors) isTopicMissing(missing)(error);
    // One wait for the topic, then one quick attempt per request of 100.
    assert.ok(
      ms < MISSING_TOPIC_BOUND_MS + 10 * 1_000,
      `ended after ${Math.round(ms)} ms`,
    );
    assert.equal(sink.pending, 0);
  },
});

Deno.test({
  name:
    "KafkaSink delivers the records for a topic created shortly after the first attempt failed for want of it",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const topic = uniqueName("sink-created-late");
    let created: Promise<void> | undefined;
    let retriesBeforeCreated = 0;
    await using sink = await KafkaSink.connect({
      brokers: shared!.kafkaBrokers,
      onRetry: ({ operation, error }) => {
        if (operation !== "produce" || created !== undefined) return;
        retriesBeforeCreated++;
        assert.equal(
          classifyProduceError(error).kind,
          "unknown-topic",
          String(error),
        );
        created = createTopics(shared!.kafkaBrokers, [topic]);
      },
    });

    await sink.send(topic, recordOf("late"));
    await created;

    assert.equal(retriesBeforeCreated, 1, "created from the first retry");
    assert.ok(created !== undefined, "the first attempt failed");
    assert.equal(await recordsIn(shared!.kafkaBrokers, topic), 1);
    const records = await readTopics(shared!.kafkaBrokers, [topic], {
      until: (read) => read.length >= 1,
    });
    assert.equal(header(records[0].message, "ce_id"), "late");
  },
});

Deno.test({
  name:
    "KafkaSink delivers to an existing topic after a topic it wrote to was deleted, and rejects the deleted topic's records with topic-missing",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // Regression: a kafkajs producer asks for the metadata of every topic it
    // ever wrote to, so once one is deleted every request fails with
    // UNKNOWN_TOPIC_OR_PARTITION; the sink then renews its producer.
    const kept = uniqueName("sink-kept");
    const deleted = uniqueName("sink-deleted");
    const later = uniqueName("sink-later");
    await createTopics(shared!.kafkaBrokers, [kept, deleted, later]);
    const retries: string[] = [];
    await using sink = await KafkaSink.connect({
      brokers: shared!.kafkaBrokers,
      onRetry: ({ operation }) => retries.push(operation),
    });
    await sink.send(kept, recordOf("k-1"));
    await sink.send(deleted, recordOf("d-1"));
    await withAdmin(shared!.kafkaBrokers, async (admin) => {
      await admin.deleteTopics({ topics: [deleted] });
      const deadline = performance.now() + 30_000;
      while ((await admin.listTopics()).includes(deleted)) {
        assert.ok(performance.now() < deadline, "the topic is not deleted");
        await abortableDelay(50);
      }
    });

    const { ms, outcome } = await timed(sink.send(later, recordOf("l-1")));

    assert.equal(outcome.status, "fulfilled", String(outcome));
    assert.ok(retries.includes("produce"), "kafkajs failed it at first");
    assert.ok(ms < MISSING_TOPIC_BOUND_MS, `delivered after ${ms} ms`);
    await sink.send(kept, recordOf("k-2"));
    await assert.rejects(
      sink.send(deleted, recordOf("d-2")),
      isTopicMissing(deleted),
    );
    assert.equal(await recordsIn(shared!.kafkaBrokers, later), 1);
    assert.equal(await recordsIn(shared!.kafkaBrokers, kept), 2);
  },
});
