import assert from "node:assert/strict";
import mqtt from "mqtt";
import { Kafka, logLevel } from "kafkajs";
import {
  type CloudEvent,
  createCloudEvent,
  fromMqttMessage,
  toKafkaRecord,
} from "../src/cloudevents/mod.ts";
import { parseConfig, runBridge } from "../src/bridge/mod.ts";
import { KafkaSink } from "../src/kafka/sink.ts";
import { startBridgeInProcess } from "./_bridge.ts";
import { testBrokers } from "./_brokers.ts";
import { createTopics, header, readTopics, uniqueName } from "./_kafka.ts";

const brokers = await testBrokers();

Deno.test({
  name:
    "bridge delivers Kafka records to MQTT topics built from the event and commits after PUBACK",
  ignore: brokers === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const id = uniqueName("k2m");
    const commands = `${id}.commands`;
    const deadLetterTopic = `${id}.dlq`;
    const groupId = `${id}-group`;
    await createTopics(brokers!.kafkaBrokers, [commands, deadLetterTopic]);

    // A subscriber for the devices, in place before anything is published.
    const received: Array<{ topic: string; event: CloudEvent }> = [];
    const subscriber = await mqtt.connectAsync(brokers!.mqttUrl, {
      clientId: uniqueName("device"),
      protocolVersion: 5,
    });
    await subscriber.subscribeAsync(`${id}/devices/+/commands`, { qos: 1 });
    subscriber.on("message", (topic, payload, packet) => {
      received.push({
        topic,
        event: fromMqttMessage({
          topic,
          payload,
          properties: packet.properties,
        }),
      });
    });

    const config = parseConfig({
      mqtt: {
        url: brokers!.mqttUrl,
        topics: [`${id}/unused/#`],
        clientId: `${id}-bridge`,
      },
      kafka: { brokers: brokers!.kafkaBrokers },
      routes: {},
      defaultTopic: `${id}.default`,
      deadLetterTopic,
      kafkaToMqtt: [{
        topics: [commands],
        mqttTopic: `${id}/devices/{subject}/commands`,
        groupId,
        fromBeginning: true,
      }],
      log: { level: "warning" },
    });
    const controller = new AbortController();
    const running = runBridge(config, { signal: controller.signal });

    const count = 100;
    const events = Array.from({ length: count }, (_, i) =>
      createCloudEvent({
        source: "/k2m-test",
        type: "dev.dataexchange.command",
        subject: `d${i % 5}`,
        data: { i },
      }));
    // No subject: no MQTT topic can be built; it must be dead-lettered.
    const unroutable = createCloudEvent({
      source: "/k2m-test",
      type: "dev.dataexchange.command",
      data: { i: -1 },
    });
    {
      await using sink = await KafkaSink.connect({
        brokers: brokers!.kafkaBrokers,
      });
      await Promise.all(
        [...events, unroutable].map((event) =>
          sink.send(commands, toKafkaRecord(event))
        ),
      );
    }

    const [dead] = await readTopics(brokers!.kafkaBrokers, [deadLetterTopic], {
      until: (read) => read.length >= 1,
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`received ${received.length} of ${count}`)),
        30000,
      );
      const check = setInterval(() => {
        if (received.length < count) return;
        clearTimeout(timer);
        clearInterval(check);
        resolve();
      }, 10);
    });
    controller.abort();
    const stats = await running;
    await subscriber.endAsync();

    assert.equal(received.length, count);
    const byId = new Map(received.map((r) => [r.event.id, r]));
    for (const event of events) {
      const got = byId.get(event.id);
      assert.ok(got, `event ${event.id} reached MQTT`);
      assert.equal(got.topic, `${id}/devices/${event.subject}/commands`);
      assert.deepEqual(got.event, event);
    }
    assert.equal(header(dead.message, "ce_id"), unroutable.id);
    assert.equal(header(dead.message, "dx-error"), "topic-template");
    assert.equal(header(dead.message, "dx-source-topic"), commands);
    assert.equal(stats.toMqtt.published, count);

    // Everything was settled, so the group committed past the last record.
    const admin = new Kafka({
      brokers: brokers!.kafkaBrokers,
      logLevel: logLevel.NOTHING,
    }).admin();
    await admin.connect();
    const [offsets] = await admin.fetchOffsets({ groupId, topics: [commands] });
    await admin.disconnect();
    assert.equal(offsets.partitions[0].offset, String(count + 1));
  },
});

Deno.test({
  name:
    "the source topics of Kafka to MQTT routes are created at start, or named when they are missing",
  ignore: brokers === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // Regression: a missing source topic stopped the bridge with Kafka's
    // "This server does not host this topic-partition", naming no topic.
    const id = uniqueName("k2m-topics");
    const commands = `${id}.commands`;
    const config = (createTopics: boolean) =>
      parseConfig({
        mqtt: {
          url: brokers!.mqttUrl,
          topics: [`${id}/unused/#`],
          clientId: `${id}-bridge`,
        },
        kafka: { brokers: brokers!.kafkaBrokers, createTopics },
        routes: {},
        defaultTopic: `${id}.default`,
        deadLetterTopic: `${id}.dlq`,
        kafkaToMqtt: [{ topics: [commands], mqttTopic: `${id}/out` }],
        log: { level: "error" },
      });

    await assert.rejects(
      runBridge(config(false)),
      (error: Error) =>
        error.message.includes(commands) &&
        error.message.includes("kafka.createTopics"),
    );

    const bridge = await startBridgeInProcess(config(true));
    await bridge.stop();
    const admin = new Kafka({
      clientId: uniqueName("admin"),
      brokers: [...brokers!.kafkaBrokers],
      logLevel: logLevel.NOTHING,
    }).admin();
    await admin.connect();
    try {
      assert.ok((await admin.listTopics()).includes(commands));
    } finally {
      await admin.disconnect();
    }
  },
});
