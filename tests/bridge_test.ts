import assert from "node:assert/strict";
import {
  createCloudEvent,
  fromKafkaRecord,
  serializeStructured,
} from "../src/cloudevents/mod.ts";
import { parseConfig } from "../src/bridge/mod.ts";
import { kafkaStream } from "../src/kafka/stream.ts";
import { startBridgeInProcess } from "./_bridge.ts";
import { testBrokers } from "./_brokers.ts";
import {
  createTopics,
  header,
  type Publication,
  publishAll,
  readTopics,
  uniqueName,
  withAdmin,
} from "./_kafka.ts";

const brokers = await testBrokers();
const encoder = new TextEncoder();

/** Malformed payloads and the dead-letter reason each must get. */
const MALFORMED: ReadonlyArray<[string, Uint8Array]> = [
  ["malformed-json", encoder.encode("{not json")],
  ["not-an-object", encoder.encode("[1,2,3]")],
  [
    "missing-attribute",
    encoder.encode(
      '{"specversion":"1.0","source":"/s","type":"t","classification":"alert"}',
    ),
  ],
  [
    "unsupported-specversion",
    encoder.encode('{"specversion":"0.3","id":"1","source":"/s","type":"t"}'),
  ],
  ["invalid-encoding", new Uint8Array([0xff, 0xfe, 0x00, 0x7b])],
];

Deno.test({
  name:
    "bridge routes 1,000 events by classification and dead-letters malformed payloads unchanged",
  ignore: brokers === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const id = uniqueName("routing");
    const topics = {
      telemetry: `${id}.telemetry`,
      alert: `${id}.alert`,
      audit: `${id}.audit`,
    };
    const defaultTopic = `${id}.default`;
    const deadLetterTopic = `${id}.dlq`;
    const mqttPrefix = `${id}/devices`;
    const config = parseConfig({
      mqtt: {
        url: brokers!.mqttUrl,
        topics: [`${mqttPrefix}/#`],
        clientId: `${id}-bridge`,
      },
      kafka: { brokers: brokers!.kafkaBrokers },
      routes: topics,
      defaultTopic,
      deadLetterTopic,
      log: { level: "warning" },
    });
    const { controller, running } = await startBridgeInProcess(config);

    // 200 events of each kind; half structured, half binary (MQTT 5).
    const kinds = ["telemetry", "alert", "audit", "unknown", undefined];
    const events = Array.from({ length: 1000 }, (_, i) =>
      createCloudEvent({
        source: `/test/${id}`,
        type: "dev.dataexchange.test",
        subject: `device-${i % 7}`,
        classification: kinds[i % kinds.length],
        data: { i, reading: i * 0.5 },
      }));
    const publications: Publication[] = events.map((event, i) =>
      i % 2 === 0
        ? {
          topic: `${mqttPrefix}/${i % 7}`,
          payload: serializeStructured(event),
          options: {
            properties: { contentType: "application/cloudevents+json" },
          },
        }
        : binaryPublication(`${mqttPrefix}/${i % 7}`, event)
    );
    for (const [, payload] of MALFORMED) {
      publications.push({ topic: `${mqttPrefix}/bad`, payload });
    }
    await publishAll(brokers!.mqttUrl, publications);

    const all = [...Object.values(topics), defaultTopic, deadLetterTopic];
    await createTopics(brokers!.kafkaBrokers, all);
    const records = await readTopics(brokers!.kafkaBrokers, all, {
      until: (read) => read.length >= 1005,
    });
    controller.abort();
    const stats = await running;

    assert.equal(records.length, 1005);
    assert.equal(stats.received, 1005);
    assert.equal(stats.delivered, 1000);
    assert.equal(stats.deadLettered, 5);
    assert.equal(stats.failed, 0);

    const byId = new Map(events.map((event) => [event.id, event]));
    const expectedTopic = (classification: unknown) =>
      topics[classification as keyof typeof topics] ?? defaultTopic;
    const deadLetters = records.filter((r) => r.topic === deadLetterTopic);
    for (const record of records) {
      if (record.topic === deadLetterTopic) continue;
      const event = fromKafkaRecord({
        key: record.message.key,
        value: record.message.value,
        headers: record.message.headers,
      });
      const sent = byId.get(event.id);
      assert.ok(sent, `unexpected event ${event.id}`);
      assert.equal(record.topic, expectedTopic(sent.classification));
      assert.deepEqual(event, sent);
      byId.delete(event.id);
    }
    assert.equal(byId.size, 0, "every event arrived once");

    assert.equal(deadLetters.length, MALFORMED.length);
    for (const [code, payload] of MALFORMED) {
      const match = deadLetters.find((r) =>
        bytesEqual(r.message.value!, payload)
      );
      assert.ok(match, `dead letter for ${code} keeps its bytes`);
      assert.equal(header(match.message, "dx-error"), code);
      assert.equal(header(match.message, "dx-mqtt-topic"), `${mqttPrefix}/bad`);
      assert.ok(header(match.message, "dx-error-detail"));
    }
  },
});

function binaryPublication(
  topic: string,
  event: ReturnType<typeof createCloudEvent>,
): Publication {
  const userProperties: Record<string, string> = {};
  for (const [name, value] of Object.entries(event)) {
    if (name === "data" || name === "datacontenttype") continue;
    userProperties[name] = String(value);
  }
  return {
    topic,
    payload: JSON.stringify(event.data),
    options: {
      properties: {
        contentType: event.datacontenttype,
        userProperties,
      },
    },
  };
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && a.every((byte, i) => byte === b[i]);
}

Deno.test({
  name:
    "the bridge's Kafka output reads back through kafkaStream as the same CloudEvents, in both content modes",
  ignore: brokers === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    for (const mode of ["binary", "structured"] as const) {
      const id = uniqueName(`roundtrip-${mode}`);
      const topic = `${id}.events`;
      const config = parseConfig({
        mqtt: {
          url: brokers!.mqttUrl,
          topics: [`${id}/#`],
          clientId: `${id}-bridge`,
        },
        kafka: { brokers: brokers!.kafkaBrokers, mode },
        routes: { telemetry: topic },
        defaultTopic: `${id}.default`,
        deadLetterTopic: `${id}.dlq`,
        log: { level: "warning" },
      });
      const { controller, running } = await startBridgeInProcess(config);
      const events = Array.from({ length: 20 }, (_, i) =>
        createCloudEvent({
          source: `/roundtrip/${mode}`,
          type: "dev.dataexchange.test",
          subject: `s${i}`,
          classification: "telemetry",
          data: i % 2 === 0 ? { i } : new Uint8Array([i, 0, 255]),
        }));
      await publishAll(
        brokers!.mqttUrl,
        events.map((event) => ({
          topic: `${id}/d`,
          payload: serializeStructured(event),
        })),
      );
      const stream = kafkaStream({
        brokers: brokers!.kafkaBrokers,
        groupId: `${id}-reader`,
        topics: [topic],
        fromBeginning: true,
        nack: { exhausted: "stop" },
      });
      const read = [];
      for await (const envelope of stream) {
        assert.equal(envelope.kind, "event", `${mode}: a valid event`);
        read.push(envelope.kind === "event" ? envelope.event : undefined);
        envelope.ack();
        if (read.length === events.length) break;
      }
      controller.abort();
      await running;
      assert.deepEqual(read, events, `${mode} mode`);
    }
  },
});

Deno.test({
  name:
    "a route topic deleted while the bridge runs: its events go to the dead-letter topic as topic-missing, the other routes go on",
  ignore: brokers === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const id = uniqueName("deleted-topic");
    const kept = `${id}.kept`;
    const deleted = `${id}.deleted`;
    const deadLetterTopic = `${id}.dlq`;
    const mqttTopic = `${id}/devices/d1`;
    const bridge = await startBridgeInProcess(parseConfig({
      mqtt: {
        url: brokers!.mqttUrl,
        topics: [`${id}/devices/#`],
        clientId: `${id}-bridge`,
      },
      kafka: { brokers: brokers!.kafkaBrokers },
      routes: { kept, deleted },
      defaultTopic: `${id}.default`,
      deadLetterTopic,
      log: { level: "error" },
    }));
    try {
      const event = (classification: string) =>
        createCloudEvent({
          source: "/deleted-topic-test",
          type: "dev.dataexchange.test",
          classification,
        });
      // The bridge writes to both routes once, then one is deleted.
      const before = [event("kept"), event("deleted")];
      await publishAll(
        brokers!.mqttUrl,
        before.map((e) => ({
          topic: mqttTopic,
          payload: serializeStructured(e),
        })),
      );
      await readTopics(brokers!.kafkaBrokers, [kept, deleted], {
        until: (read) => read.length >= 2,
      });
      await withAdmin(
        brokers!.kafkaBrokers,
        (admin) => admin.deleteTopics({ topics: [deleted] }),
      );

      const after = [event("deleted"), event("kept")];
      await publishAll(
        brokers!.mqttUrl,
        after.map((e) => ({
          topic: mqttTopic,
          payload: serializeStructured(e),
        })),
      );
      const [dead] = await readTopics(
        brokers!.kafkaBrokers,
        [deadLetterTopic],
        {
          until: (read) => read.length >= 1,
          timeoutMs: 60_000,
        },
      );
      assert.equal(header(dead.message, "dx-error"), "topic-missing");
      assert.match(
        header(dead.message, "dx-error-detail") ?? "",
        new RegExp(deleted.replaceAll(".", "\\.")),
      );
      // The original bytes, unchanged.
      assert.equal(
        new TextDecoder().decode(dead.message.value!),
        new TextDecoder().decode(serializeStructured(after[0])),
      );
      const keptRecords = await readTopics(brokers!.kafkaBrokers, [kept], {
        until: (read) => read.length >= 2,
        timeoutMs: 60_000,
      });
      assert.equal(keptRecords.length, 2);
    } finally {
      const stats = await bridge.stop();
      assert.equal(stats.failed, 0, "nothing left unacknowledged");
    }
  },
});
