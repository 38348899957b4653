import assert from "node:assert/strict";
import { BridgeMetrics } from "../src/metrics/mod.ts";
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
import { abortableDelay } from "../src/_retry.ts";
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
    const metrics = new BridgeMetrics({
      routes: [],
      kafkaToMqttRoutes: ["0"],
    });
    const running = runBridge(config, { signal: controller.signal, metrics });

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
    assert.equal(stats.toMqtt.deadLettered, 1);
    const counted = metrics.snapshot();
    assert.equal(counted.deadLettered.kafka_to_mqtt["topic-template"], 1);
    assert.equal(counted.delivered.kafka_to_mqtt["0"], count);

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

// An MQTT broker of our own that holds PUBACKs back until the test sends
// them: Mosquitto acknowledges every PUBLISH at once, whoever subscribes. It
// speaks just enough MQTT 3.1.1 and 5 for the bridge: CONNECT, SUBSCRIBE,
// PUBLISH (QoS 1, recorded), PINGREQ and DISCONNECT.

const decoder = new TextDecoder();

interface HeldPublish {
  readonly topic: string;
  readonly packetId: number;
  readonly connection: Deno.TcpConn;
}

class PubackHoldingBroker {
  readonly publishes: HeldPublish[] = [];
  #listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  #connections = new Set<Deno.TcpConn>();
  #acked = new Set<HeldPublish>();

  constructor() {
    this.#accept();
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.#listener.addr.port}`;
  }

  /** Sends the PUBACK of the first publish to `topic`. */
  async puback(topic: string): Promise<void> {
    const publish = this.publishes.find((p) => p.topic === topic);
    assert.ok(publish, `no PUBLISH to ${topic} to acknowledge`);
    await this.#puback(publish);
  }

  /** Acknowledges every publish not acknowledged yet. */
  async pubackAll(): Promise<void> {
    for (const publish of this.publishes) {
      if (!this.#acked.has(publish)) await this.#puback(publish);
    }
  }

  async #puback(publish: HeldPublish): Promise<void> {
    const { packetId } = publish;
    this.#acked.add(publish);
    await publish.connection.write(
      new Uint8Array([0x40, 2, packetId >> 8, packetId & 0xff]),
    );
  }

  close(): void {
    this.#listener.close();
    for (const connection of this.#connections) {
      try {
        connection.close();
      } catch {
        // Closed already by its client.
      }
    }
  }

  async #accept(): Promise<void> {
    try {
      for await (const connection of this.#listener) {
        this.#connections.add(connection);
        this.#serve(connection).catch(() => {
          // The client went away: what it sent is recorded already.
        });
      }
    } catch {
      // The listener was closed.
    }
  }

  async #serve(connection: Deno.TcpConn): Promise<void> {
    let version = 4;
    let buffer = new Uint8Array(0);
    const chunk = new Uint8Array(64 * 1024);
    for (;;) {
      const read = await connection.read(chunk);
      if (read === null) return;
      const joined = new Uint8Array(buffer.length + read);
      joined.set(buffer);
      joined.set(chunk.subarray(0, read), buffer.length);
      buffer = joined;
      for (;;) {
        const packet = nextPacket(buffer);
        if (packet === undefined) break;
        buffer = buffer.subarray(packet.size);
        const { type, flags, body } = packet;
        if (type === 1) { // CONNECT: protocol name (2 + 4 bytes), level
          version = body[6];
          await connection.write(
            version === 5
              ? new Uint8Array([0x20, 3, 0, 0, 0])
              : new Uint8Array([0x20, 2, 0, 0]),
          );
        } else if (type === 8) { // SUBSCRIBE: grant QoS 1 to each filter
          let at = 2;
          if (version === 5) {
            const [length, size] = varint(body, at);
            at += size + length;
          }
          let filters = 0;
          while (at < body.length) {
            at += 2 + ((body[at] << 8) | body[at + 1]) + 1;
            filters++;
          }
          const head = version === 5
            ? [body[0], body[1], 0]
            : [body[0], body[1]];
          const granted = new Array(filters).fill(1);
          await connection.write(
            new Uint8Array([0x90, head.length + filters, ...head, ...granted]),
          );
        } else if (type === 3) { // PUBLISH
          const qos = (flags >> 1) & 3;
          const length = (body[0] << 8) | body[1];
          const topic = decoder.decode(body.subarray(2, 2 + length));
          const packetId = qos > 0
            ? (body[2 + length] << 8) | body[3 + length]
            : 0;
          this.publishes.push({ topic, packetId, connection });
        } else if (type === 12) { // PINGREQ
          await connection.write(new Uint8Array([0xd0, 0]));
        } else if (type === 14) { // DISCONNECT
          connection.close();
          this.#connections.delete(connection);
          return;
        }
      }
    }
  }
}

function varint(bytes: Uint8Array, at: number): [number, number] {
  let value = 0;
  let multiplier = 1;
  for (let size = 1;; size++) {
    const byte = bytes[at + size - 1];
    value += (byte & 0x7f) * multiplier;
    multiplier *= 128;
    if ((byte & 0x80) === 0) return [value, size];
  }
}

function nextPacket(
  buffer: Uint8Array,
): { type: number; flags: number; body: Uint8Array; size: number } | undefined {
  if (buffer.length < 2) return undefined;
  let length = 0;
  let multiplier = 1;
  let at = 1;
  for (;; at++) {
    if (at >= buffer.length) return undefined;
    length += (buffer[at] & 0x7f) * multiplier;
    multiplier *= 128;
    if ((buffer[at] & 0x80) === 0) break;
  }
  const start = at + 1;
  if (buffer.length < start + length) return undefined;
  return {
    type: buffer[0] >> 4,
    flags: buffer[0] & 0x0f,
    body: buffer.subarray(start, start + length),
    size: start + length,
  };
}

/** Polls `condition` until it holds; fails after `timeoutMs` with `detail`. */
async function waitUntil(
  what: string,
  condition: () => boolean | Promise<boolean>,
  timeoutMs: number,
  detail: () => unknown = () => "",
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await condition())) {
    if (performance.now() > deadline) {
      throw new Error(
        `${what}: not within ${timeoutMs} ms; ${
          JSON.stringify(await detail())
        }`,
      );
    }
    await abortableDelay(50);
  }
}

/** Checks that `condition` holds at every poll for `forMs`. */
async function holdsFor(
  what: string,
  condition: () => Promise<boolean>,
  forMs: number,
): Promise<void> {
  const end = performance.now() + forMs;
  for (;;) {
    assert.ok(await condition(), what);
    if (performance.now() >= end) return;
    await abortableDelay(250);
  }
}

Deno.test({
  name:
    "bridge commits a Kafka record only after the MQTT PUBACK of it and of every record before it",
  ignore: brokers === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const id = uniqueName("k2m-puback");
    const commands = `${id}.commands`;
    const groupId = `${id}-group`;
    await createTopics(brokers!.kafkaBrokers, [commands, `${id}.dlq`]);
    const broker = new PubackHoldingBroker();
    const admin = new Kafka({
      brokers: brokers!.kafkaBrokers,
      logLevel: logLevel.NOTHING,
    }).admin();
    await admin.connect();
    const committed = async () => {
      const [offsets] = await admin.fetchOffsets({
        groupId,
        topics: [commands],
      });
      return Number(offsets.partitions[0].offset);
    };
    const controller = new AbortController();
    let running: ReturnType<typeof runBridge> | undefined;
    try {
      const config = parseConfig({
        mqtt: {
          url: broker.url,
          topics: [`${id}/unused/#`],
          clientId: `${id}-bridge`,
        },
        kafka: { brokers: brokers!.kafkaBrokers },
        routes: {},
        defaultTopic: `${id}.default`,
        deadLetterTopic: `${id}.dlq`,
        kafkaToMqtt: [{
          topics: [commands],
          mqttTopic: `${id}/devices/{subject}/commands`,
          groupId,
          fromBeginning: true,
        }],
        drainTimeoutMs: 2000,
        log: { level: "error" },
      });
      running = runBridge(config, { signal: controller.signal });
      // Offset i carries subject d<i>, so each PUBLISH names its record.
      const count = 5;
      const topicOf = (i: number) => `${id}/devices/d${i}/commands`;
      {
        await using sink = await KafkaSink.connect({
          brokers: brokers!.kafkaBrokers,
        });
        for (let i = 0; i < count; i++) {
          await sink.send(
            commands,
            toKafkaRecord(createCloudEvent({
              source: "/k2m-puback-test",
              type: "dev.dataexchange.command",
              subject: `d${i}`,
              data: { i },
            })),
          );
        }
      }
      const published = () => new Set(broker.publishes.map((p) => p.topic));
      await waitUntil(
        "every record published to MQTT",
        () => published().size === count,
        30_000,
        () => ({
          missing: Array.from({ length: count }, (_, i) => topicOf(i))
            .filter((topic) => !published().has(topic)),
        }),
      );

      // The bridge commits every second (commitIntervalMs): over 2.5 s,
      // a record taken as done on PUBLISH would have been committed.
      await holdsFor(
        "nothing is committed while every PUBACK is held",
        async () => await committed() === -1,
        2500,
      );
      await broker.puback(topicOf(1));
      await holdsFor(
        "nothing is committed while the PUBACK of offset 0 is held",
        async () => await committed() === -1,
        2500,
      );
      await broker.puback(topicOf(0));
      await waitUntil(
        "commit of offsets 0 and 1 after their PUBACKs",
        async () => await committed() === 2,
        10_000,
        committed,
      );
      for (let i = 2; i < count; i++) await broker.puback(topicOf(i));
      await waitUntil(
        "commit of every offset after every PUBACK",
        async () => await committed() === count,
        10_000,
        committed,
      );
      controller.abort();
      const stats = await running;
      assert.equal(stats.toMqtt.published, count);
    } finally {
      // After a failure, PUBACKs may still be held: release them, so that
      // the stop below does not have to wait out the drain budget.
      await broker.pubackAll().catch(() => undefined);
      controller.abort();
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        // On failure, the failure above is the one to report.
        running?.catch(() => undefined),
        new Promise((resolve) => timer = setTimeout(resolve, 30_000)),
      ]);
      clearTimeout(timer);
      await admin.disconnect();
      broker.close();
    }
  },
});

Deno.test({
  name:
    "bridge stops within its drain budget while the MQTT broker holds PUBACKs, and leaves those records uncommitted",
  ignore: brokers === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const id = uniqueName("k2m-held-stop");
    const commands = `${id}.commands`;
    const groupId = `${id}-group`;
    await createTopics(brokers!.kafkaBrokers, [commands, `${id}.dlq`]);
    const broker = new PubackHoldingBroker();
    const admin = new Kafka({
      brokers: brokers!.kafkaBrokers,
      logLevel: logLevel.NOTHING,
    }).admin();
    await admin.connect();
    const controller = new AbortController();
    const metrics = new BridgeMetrics({
      routes: [],
      kafkaToMqttRoutes: ["0"],
    });
    const drainTimeoutMs = 1000;
    let running: ReturnType<typeof runBridge> | undefined;
    try {
      running = runBridge(
        parseConfig({
          mqtt: {
            url: broker.url,
            topics: [`${id}/unused/#`],
            clientId: `${id}-bridge`,
          },
          kafka: { brokers: brokers!.kafkaBrokers },
          routes: {},
          defaultTopic: `${id}.default`,
          deadLetterTopic: `${id}.dlq`,
          kafkaToMqtt: [{
            topics: [commands],
            mqttTopic: `${id}/devices/{subject}/commands`,
            groupId,
            fromBeginning: true,
          }],
          drainTimeoutMs,
          log: { level: "error" },
        }),
        { signal: controller.signal, metrics },
      );
      const count = 3;
      {
        await using sink = await KafkaSink.connect({
          brokers: brokers!.kafkaBrokers,
        });
        for (let i = 0; i < count; i++) {
          await sink.send(
            commands,
            toKafkaRecord(createCloudEvent({
              source: "/k2m-held-stop-test",
              type: "dev.dataexchange.command",
              subject: `d${i}`,
            })),
          );
        }
      }
      await waitUntil(
        "every record published to MQTT",
        () => broker.publishes.length >= count,
        30_000,
        () => broker.publishes.map((p) => p.topic),
      );

      // No PUBACK ever comes: the stop must not wait for one beyond the
      // drain budget (the limit below only turns a hang into a failure).
      const stoppedAt = performance.now();
      controller.abort();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stats = await Promise.race([
        running,
        new Promise<never>((_, reject) =>
          timer = setTimeout(
            () =>
              reject(
                new Error(
                  `the bridge did not stop within 30 s of the stop signal (drain budget ${drainTimeoutMs} ms) while PUBACKs were held`,
                ),
              ),
            30_000,
          )
        ),
      ]).finally(() => clearTimeout(timer));
      const stopMs = Math.round(performance.now() - stoppedAt);
      assert.equal(stats.toMqtt.published, 0);
      assert.equal(stats.toMqtt.failed, count);
      assert.equal(metrics.snapshot().failed.kafka_to_mqtt, count);
      const [offsets] = await admin.fetchOffsets({
        groupId,
        topics: [commands],
      });
      assert.equal(
        Number(offsets.partitions[0].offset),
        -1,
        "records whose PUBACK never came must stay uncommitted",
      );
      console.log(
        `[k2m] stop with ${count} PUBACKs held: stopped after ${stopMs} ms (drain budget ${drainTimeoutMs} ms), committed none`,
      );
    } finally {
      controller.abort();
      // A bridge that hangs here is the failure reported above: release the
      // PUBACKs and give it a while, rather than hang the test run.
      await broker.pubackAll().catch(() => undefined);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        running?.catch(() => undefined),
        new Promise((resolve) => timer = setTimeout(resolve, 10_000)),
      ]);
      clearTimeout(timer);
      await admin.disconnect();
      broker.close();
    }
  },
});
