import assert from "node:assert/strict";
import {
  createCloudEvent,
  serializeStructured,
  toKafkaRecord,
} from "../src/cloudevents/mod.ts";
import { KafkaSink } from "../src/kafka/sink.ts";
import { testBrokers } from "./_brokers.ts";
import { prepareSession } from "./_mqtt.ts";
import {
  createTopics,
  header,
  publishAll,
  readTopics,
  uniqueName,
} from "./_kafka.ts";

const brokers = await testBrokers();

Deno.test({
  name: "examples/mqtt_to_kafka.ts routes events and dead-letters the rest",
  ignore: brokers === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // The example's session, created first so nothing published is missed.
    const clientId = "example-mqtt-to-kafka";
    const topic = `devices/example-${Date.now()}`;
    await prepareSession(brokers!.mqttUrl, clientId, topic);
    const classifications = ["telemetry", "alert", undefined];
    const events = classifications.map((classification, i) =>
      createCloudEvent({
        source: "/example-test",
        type: "dev.dataexchange.example",
        classification,
        data: { i },
      })
    );
    await publishAll(brokers!.mqttUrl, [
      ...events.map((event) => ({
        topic,
        payload: serializeStructured(event),
      })),
      { topic, payload: "not an event" },
    ]);

    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-net=127.0.0.1",
        "--allow-env",
        new URL("../examples/mqtt_to_kafka.ts", import.meta.url).pathname,
      ],
      env: {
        MQTT_URL: brokers!.mqttUrl,
        KAFKA_BROKERS: brokers!.kafkaBrokers.join(","),
        MQTT_TOPIC: topic,
        MAX_MESSAGES: "4",
      },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(output.stdout);
    assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
    assert.match(stdout, /handled 4 messages/);

    const records = await readTopics(brokers!.kafkaBrokers, [
      "example.telemetry",
      "example.alerts",
      "example.unclassified",
      "example.deadletter",
    ], {
      until: (read) =>
        events.every((event) =>
          read.some((r) => header(r.message, "ce_id") === event.id)
        ) && read.some((r) => r.topic === "example.deadletter"),
    });
    const topicOf = (id: string) =>
      records.find((r) => header(r.message, "ce_id") === id)?.topic;
    assert.equal(topicOf(events[0].id), "example.telemetry");
    assert.equal(topicOf(events[1].id), "example.alerts");
    assert.equal(topicOf(events[2].id), "example.unclassified");
    const dead = records.find((r) => r.topic === "example.deadletter")!;
    assert.equal(dead.message.value?.toString(), "not an event");
    assert.equal(header(dead.message, "dx-error"), "malformed-json");
  },
});

Deno.test({
  name: "examples/consume_kafka.ts acks, retries and dead-letters as it says",
  ignore: brokers === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const topic = uniqueName("example-consume");
    const deadLetterTopic = `${topic}.dlq`;
    await createTopics(brokers!.kafkaBrokers, [topic, deadLetterTopic]);
    const good = createCloudEvent({ source: "/ex", type: "reading", data: 1 });
    const poison = createCloudEvent({ source: "/ex", type: "reading.poison" });
    {
      await using sink = await KafkaSink.connect({
        brokers: brokers!.kafkaBrokers,
      });
      await sink.send(topic, toKafkaRecord(good));
      await sink.send(topic, toKafkaRecord(poison));
      await sink.send(topic, {
        key: null,
        value: new TextEncoder().encode("plain text"),
        headers: {},
      });
    }
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-net=127.0.0.1",
        "--allow-env",
        new URL("../examples/consume_kafka.ts", import.meta.url).pathname,
      ],
      env: {
        KAFKA_BROKERS: brokers!.kafkaBrokers.join(","),
        TOPIC: topic,
        DEAD_LETTER_TOPIC: deadLetterTopic,
        GROUP_ID: uniqueName("example-group"),
        MAX_RECORDS: "5", // 1 good + 3 attempts of the poison one + 1 invalid
      },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(output.stdout);
    assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
    assert.match(stdout, new RegExp(`reading ${good.id}`));
    assert.match(stdout, /failed, attempt 3/);
    assert.match(stdout, /invalid \(missing-attribute\)/);
    const dead = await readTopics(brokers!.kafkaBrokers, [deadLetterTopic], {
      until: (read) => read.length >= 2,
    });
    assert.deepEqual(
      dead.map((r) => header(r.message, "dx-error")).sort(),
      ["missing-attribute", "processing-failed"],
    );
  },
});
