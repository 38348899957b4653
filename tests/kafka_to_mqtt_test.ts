import assert from "node:assert/strict";
import { BridgeMetrics } from "../src/metrics/mod.ts";
import mqtt from "mqtt";
import {
  type CloudEvent,
  createCloudEvent,
  fromMqttMessage,
  toKafkaRecord,
} from "../src/cloudevents/mod.ts";
import { parseConfig, runBridge } from "../src/bridge/mod.ts";
import { KafkaSink } from "../src/kafka/sink.ts";
import { PubackHoldingBroker } from "../src/mqtt/_test_broker.ts";
import { abortableDelay } from "../src/_retry.ts";
import { startBridgeInProcess } from "./_bridge.ts";
import { testBrokers } from "./_brokers.ts";
import {
  committedOffsets,
  createTopics,
  header,
  readTopics,
  uniqueName,
  withAdmin,
} from "./_kafka.ts";

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
    const [committed] = await committedOffsets(
      brokers!.kafkaBrokers,
      groupId,
      commands,
    );
    assert.equal(committed, count + 1);
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
    const topics = await withAdmin(
      brokers!.kafkaBrokers,
      (admin) => admin.listTopics(),
    );
    assert.ok(topics.includes(commands));
  },
});

/** Options of {@linkcode heldPubackBridge}. */
interface HeldPubackBridgeOptions {
  /** The bridge's `drainTimeoutMs`. */
  drainTimeoutMs: number;
  /**
   * How long disposing waits for the bridge to stop before it leaves it:
   * a bridge that hangs is the test's failure to report, not a hang.
   */
  stopWaitMs: number;
  /** Where the bridge counts. Default: no metrics. */
  metrics?: BridgeMetrics;
}

/** A bridge running a Kafka to MQTT route to a {@linkcode PubackHoldingBroker}. */
interface HeldPubackBridge extends AsyncDisposable {
  readonly broker: PubackHoldingBroker;
  /** The bridge's run: its stats once `controller` aborts. */
  readonly running: ReturnType<typeof runBridge>;
  readonly controller: AbortController;
  /** The MQTT topic of the record at offset `i`, sent by `send`. */
  topicOf(i: number): string;
  /** Sends `count` records; offset i carries subject d<i>. */
  send(count: number): Promise<void>;
  /** The route's group's committed offset; -1 for none. */
  committed(): Promise<number>;
}

/**
 * Starts a bridge whose Kafka to MQTT route reads a fresh topic named after
 * `prefix` (created, with its dead-letter topic) from the beginning and
 * publishes to a new {@linkcode PubackHoldingBroker}. Disposing of it
 * releases every PUBACK still held, stops the bridge, waits for it at most
 * `stopWaitMs`, and closes the broker.
 */
async function heldPubackBridge(
  prefix: string,
  { drainTimeoutMs, stopWaitMs, metrics }: HeldPubackBridgeOptions,
): Promise<HeldPubackBridge> {
  const id = uniqueName(prefix);
  const commands = `${id}.commands`;
  const groupId = `${id}-group`;
  await createTopics(brokers!.kafkaBrokers, [commands, `${id}.dlq`]);

  const broker = new PubackHoldingBroker();
  const controller = new AbortController();
  const topicOf = (i: number) => `${id}/devices/d${i}/commands`;
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
    drainTimeoutMs,
    log: { level: "error" },
  });
  const running = runBridge(config, { signal: controller.signal, metrics });

  return {
    broker,
    running,
    controller,
    topicOf,
    async send(count) {
      await using sink = await KafkaSink.connect({
        brokers: brokers!.kafkaBrokers,
      });
      for (let i = 0; i < count; i++) {
        await sink.send(
          commands,
          toKafkaRecord(createCloudEvent({
            source: `/${prefix}-test`,
            type: "dev.dataexchange.command",
            subject: `d${i}`,
            data: { i },
          })),
        );
      }
    },
    async committed() {
      const [offset] = await committedOffsets(
        brokers!.kafkaBrokers,
        groupId,
        commands,
      );
      return offset;
    },
    async [Symbol.asyncDispose]() {
      // After a failure, PUBACKs may still be held: release them, so that
      // the stop does not have to wait out the drain budget.
      await broker.pubackAll().catch(() => undefined);
      controller.abort();
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        // On failure, the test's failure is the one to report.
        running.catch(() => undefined),
        new Promise((resolve) => timer = setTimeout(resolve, stopWaitMs)),
      ]);
      clearTimeout(timer);
      broker.close();
    },
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
    await using bridge = await heldPubackBridge("k2m-puback", {
      drainTimeoutMs: 2000,
      stopWaitMs: 30_000,
    });
    const { broker, committed, topicOf } = bridge;
    const count = 5;
    await bridge.send(count);
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
    await broker.pubackTopic(topicOf(1));
    await holdsFor(
      "nothing is committed while the PUBACK of offset 0 is held",
      async () => await committed() === -1,
      2500,
    );
    await broker.pubackTopic(topicOf(0));
    await waitUntil(
      "commit of offsets 0 and 1 after their PUBACKs",
      async () => await committed() === 2,
      10_000,
      committed,
    );
    for (let i = 2; i < count; i++) await broker.pubackTopic(topicOf(i));
    await waitUntil(
      "commit of every offset after every PUBACK",
      async () => await committed() === count,
      10_000,
      committed,
    );
    bridge.controller.abort();
    const stats = await bridge.running;
    assert.equal(stats.toMqtt.published, count);
  },
});

Deno.test({
  name:
    "bridge stops within its drain budget while the MQTT broker holds PUBACKs, and leaves those records uncommitted",
  ignore: brokers === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const metrics = new BridgeMetrics({
      routes: [],
      kafkaToMqttRoutes: ["0"],
    });
    const drainTimeoutMs = 1000;
    // A bridge that hangs is the failure reported below: disposing releases
    // the PUBACKs and gives it a while, rather than hang the test run.
    await using bridge = await heldPubackBridge("k2m-held-stop", {
      drainTimeoutMs,
      stopWaitMs: 10_000,
      metrics,
    });
    const { broker } = bridge;
    const count = 3;
    await bridge.send(count);
    await waitUntil(
      "every record published to MQTT",
      () => broker.publishes.length >= count,
      30_000,
      () => broker.publishes.map((p) => p.topic),
    );

    // No PUBACK ever comes: the stop must not wait for one beyond the
    // drain budget (the limit below only turns a hang into a failure).
    const stoppedAt = performance.now();
    bridge.controller.abort();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stats = await Promise.race([
      bridge.running,
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
    assert.equal(
      await bridge.committed(),
      -1,
      "records whose PUBACK never came must stay uncommitted",
    );
    console.log(
      `[k2m] stop with ${count} PUBACKs held: stopped after ${stopMs} ms (drain budget ${drainTimeoutMs} ms), committed none`,
    );
  },
});
