import assert from "node:assert/strict";
import { Kafka, logLevel } from "kafkajs";
import {
  type CloudEvent,
  createCloudEvent,
  toKafkaRecord,
} from "../cloudevents/mod.ts";
import { testBrokers } from "../../tests/_brokers.ts";
import {
  createTopics,
  header,
  readTopics,
  uniqueName,
} from "../../tests/_kafka.ts";
import { KafkaSink } from "./sink.ts";
import { type KafkaEnvelope, kafkaStream } from "./stream.ts";

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

async function committedOffset(groupId: string, topic: string) {
  const admin = new Kafka({
    brokers: brokers!.kafkaBrokers,
    logLevel: logLevel.NOTHING,
  }).admin();
  await admin.connect();
  try {
    const [result] = await admin.fetchOffsets({ groupId, topics: [topic] });
    return Number(result.partitions[0].offset);
  } finally {
    await admin.disconnect();
  }
}

async function take(
  stream: AsyncIterator<KafkaEnvelope>,
  count: number,
): Promise<KafkaEnvelope[]> {
  const taken: KafkaEnvelope[] = [];
  while (taken.length < count) {
    const next = await stream.next();
    if (next.done) break;
    taken.push(next.value);
  }
  return taken;
}

Deno.test({
  name:
    "kafkaStream commits only the acknowledged prefix when acks come out of order",
  ...slow,
  async fn() {
    const topic = uniqueName("ks-order");
    const groupId = uniqueName("group");
    await createTopics(brokers!.kafkaBrokers, [topic]);
    await produce(topic, events(4));
    const stream = kafkaStream({
      brokers: brokers!.kafkaBrokers,
      groupId,
      topics: [topic],
      fromBeginning: true,
      nack: { exhausted: "stop" },
    });
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
    const topic = uniqueName("ks-crash");
    const groupId = uniqueName("group");
    await createTopics(brokers!.kafkaBrokers, [topic]);
    await produce(topic, events(5));
    const options = {
      brokers: brokers!.kafkaBrokers,
      groupId,
      topics: [topic],
      fromBeginning: true,
      nack: { exhausted: "stop" as const },
    };
    const first = kafkaStream(options);
    const taken = await take(first, 5);
    taken[0].ack();
    taken[1].ack();
    taken[3].ack(); // after an unacknowledged one: not committed
    await first.return();

    const second = kafkaStream(options);
    const again = await take(second, 3);
    assert.deepEqual(again.map((e) => e.record.offset), ["2", "3", "4"]);
    for (const envelope of again) envelope.ack();
    await second.return();
    assert.equal(await committedOffset(groupId, topic), 5);
  },
});

Deno.test({
  name: "kafkaStream pauses fetching at maxInFlight and resumes on ack",
  ...slow,
  async fn() {
    const topic = uniqueName("ks-cap");
    await createTopics(brokers!.kafkaBrokers, [topic]);
    await produce(topic, events(100));
    const stream = kafkaStream({
      brokers: brokers!.kafkaBrokers,
      groupId: uniqueName("group"),
      topics: [topic],
      fromBeginning: true,
      maxInFlight: 10,
      nack: { exhausted: "stop" },
    });
    const first = await take(stream, 10);
    // The whole fetched batch went through the stream's intake before the
    // first envelope was handed out; only ten were taken from it.
    assert.equal(stream.inFlight, 10);
    for (const envelope of first.slice(0, 5)) envelope.ack();
    const more = await take(stream, 5);
    assert.equal(more[0].record.offset, "10");
    assert.ok(stream.inFlight <= 10);
    const seen = new Set([...first, ...more].map((e) => e.record.offset));
    for (const envelope of [...first, ...more]) envelope.ack();
    while (seen.size < 100) {
      const [envelope] = await take(stream, 1);
      assert.ok(stream.inFlight <= 10);
      seen.add(envelope.record.offset);
      envelope.ack();
    }
    await stream.return();
  },
});

Deno.test({
  name:
    "kafkaStream retries a poison record with backoff, then dead-letters it and goes on",
  ...slow,
  async fn() {
    const topic = uniqueName("ks-poison");
    const deadLetterTopic = `${topic}.dlq`;
    const groupId = uniqueName("group");
    await createTopics(brokers!.kafkaBrokers, [topic, deadLetterTopic]);
    const list = events(3);
    await produce(topic, list);
    const stream = kafkaStream({
      brokers: brokers!.kafkaBrokers,
      groupId,
      topics: [topic],
      fromBeginning: true,
      deadLetterTopic,
      nack: { maxAttempts: 3, initialDelayMs: 20, maxDelayMs: 50 },
    });
    const attempts: number[] = [];
    const acked: string[] = [];
    for await (const envelope of stream) {
      assert.equal(envelope.kind, "event");
      if (envelope.record.offset === "1") {
        attempts.push(envelope.attempt);
        envelope.nack(new Error("cannot process"));
      } else {
        acked.push(envelope.record.offset);
        envelope.ack();
      }
      if (acked.length === 2 && attempts.length === 3) break;
    }
    assert.deepEqual(attempts, [1, 2, 3]);
    assert.deepEqual(acked.sort(), ["0", "2"]);
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

Deno.test({
  name:
    "kafkaStream surfaces an invalid record and dead-letters it on nack without retries",
  ...slow,
  async fn() {
    const topic = uniqueName("ks-invalid");
    const deadLetterTopic = `${topic}.dlq`;
    await createTopics(brokers!.kafkaBrokers, [topic, deadLetterTopic]);
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
    const stream = kafkaStream({
      brokers: brokers!.kafkaBrokers,
      groupId: uniqueName("group"),
      topics: [topic],
      fromBeginning: true,
      deadLetterTopic,
    });
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
      const topic = uniqueName(`ks-roundtrip-${mode}`);
      await createTopics(brokers!.kafkaBrokers, [topic]);
      const list = events(20, mode);
      await produce(topic, list, mode);
      const stream = kafkaStream({
        brokers: brokers!.kafkaBrokers,
        groupId: uniqueName("group"),
        topics: [topic],
        fromBeginning: true,
        nack: { exhausted: "stop" },
      });
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
    const topic = uniqueName("ks-rebalance");
    const groupId = uniqueName("group");
    await createTopics(brokers!.kafkaBrokers, [topic], 4);
    const total = 5000;
    const list = events(total);
    await produce(topic, list);
    const processed: string[] = [];
    const unique = new Set<string>();
    const perConsumer: Record<string, number> = { a: 0, b: 0 };
    let joined: Promise<void> | undefined;
    let bStarted!: () => void;
    const bFirst = new Promise<void>((resolve) => bStarted = resolve);
    const controller = new AbortController();
    const consume = async (name: "a" | "b") => {
      const stream = kafkaStream({
        brokers: brokers!.kafkaBrokers,
        groupId,
        topics: [topic],
        fromBeginning: true,
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
