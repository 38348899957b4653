import assert from "node:assert/strict";
import {
  createCloudEvent,
  parseStructured,
  serializeStructured,
  toKafkaRecord,
} from "../src/cloudevents/mod.ts";
import { KafkaSink } from "../src/kafka/sink.ts";
import { mockCloudEvents } from "../src/streams/mod.ts";
import { waitFor } from "./_bridge.ts";
import { testBrokers } from "./_brokers.ts";
import { leftInSession, prepareSession } from "./_mqtt.ts";
import {
  createTopics,
  header,
  publishAll,
  readTopics,
  uniqueName,
} from "./_kafka.ts";
import {
  bridgeEnv,
  collect,
  type Collected,
  type CommandResult,
  runCommand,
} from "./_process.ts";

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

/** Runs an example with the given environment and returns its output. */
function runExample(
  file: string,
  env: Record<string, string>,
): Promise<CommandResult> {
  return runCommand(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      "--allow-env",
      new URL(`../examples/${file}`, import.meta.url).pathname,
    ],
    env,
    stdin: "inherit",
  });
}

Deno.test({
  name:
    "examples/combine_deadline.ts acknowledges what it read in the window and leaves the rest at the broker",
  ignore: brokers === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const clientId = uniqueName("example-window");
    const topic = `devices/${uniqueName("example-window")}`;
    await prepareSession(brokers!.mqttUrl, clientId, topic);
    const events = Array.from({ length: 5 }, (_, i) =>
      createCloudEvent({
        source: "/example-test",
        type: "dev.dataexchange.example",
        classification: i % 2 === 0 ? "telemetry" : "alert",
        data: { i },
      }));
    await publishAll(
      brokers!.mqttUrl,
      events.map((event) => ({ topic, payload: serializeStructured(event) })),
    );

    const run = await runExample("combine_deadline.ts", {
      MQTT_URL: brokers!.mqttUrl,
      MQTT_TOPIC: topic,
      CLIENT_ID: clientId,
      WINDOW_MS: "500",
    });
    assert.equal(run.code, 0, run.stderr);
    const acknowledged = [...run.stdout.matchAll(/^read (\S+) /gm)].map((m) =>
      m[1]
    );
    // The window opens at the first message, so at least that one is in it.
    assert.ok(acknowledged.length >= 1, run.stdout);
    assert.match(
      run.stdout,
      new RegExp(`window closed: ${acknowledged.length} messages acknowledged`),
    );

    // Nothing is lost: what the window did not acknowledge is still stored
    // in the session (an acknowledged one may come again: at least once).
    const left = (await leftInSession(brokers!.mqttUrl, clientId, topic)).map(
      (payload) => parseStructured(new TextEncoder().encode(payload)).id,
    );
    const seen = new Set([...acknowledged, ...left]);
    for (const event of events) {
      assert.ok(
        seen.has(event.id),
        `${event.id} neither acknowledged nor left at the broker; acknowledged ${acknowledged}, left ${left}`,
      );
    }
  },
});

Deno.test({
  name:
    "examples/mock_to_mqtt.ts publishes the seeded mock events, each acknowledged by the broker",
  ignore: brokers === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // A session subscribed before the example runs keeps every publish.
    const prefix = `devices/${uniqueName("example-mock")}`;
    const reader = uniqueName("example-mock-reader");
    await prepareSession(brokers!.mqttUrl, reader, `${prefix}/#`);

    const run = await runExample("mock_to_mqtt.ts", {
      MQTT_URL: brokers!.mqttUrl,
      TOPIC_PREFIX: prefix,
      CLIENT_ID: uniqueName("example-mock-publisher"),
      COUNT: "6",
      RATE: "50",
      SEED: "7",
    });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /published 6 events/);

    const expected = [...mockCloudEvents({
      seed: 7,
      classifications: { telemetry: 6, alert: 1, none: 1 },
      sizes: { min: 200, max: 1024 },
      count: 6,
    })].map((item) => item.kind === "event" ? item.event : undefined);
    const received = (await leftInSession(brokers!.mqttUrl, reader, prefix))
      .map((payload) => parseStructured(new TextEncoder().encode(payload)));
    assert.deepEqual(
      received.map((event) => event.id).sort(),
      expected.map((event) => event!.id).sort(),
    );
    for (const event of expected) {
      assert.match(
        run.stdout,
        new RegExp(
          `published ${event!.id} to ${prefix}/${
            event!.classification ?? "unclassified"
          }\n`,
        ),
      );
    }
  },
});

Deno.test({
  name:
    "examples/embed_bridge.ts runs the bridge in-process and serves its metrics from the application",
  ignore: brokers === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const clientId = uniqueName("example-embedded");
    const topic = `devices/${uniqueName("example-embedded")}`;
    const telemetryTopic = uniqueName("example-embedded-telemetry");
    await prepareSession(brokers!.mqttUrl, clientId, topic);
    const event = createCloudEvent({
      source: "/example-test",
      type: "dev.dataexchange.example",
      classification: "telemetry",
      data: { t: 21.5 },
    });
    await publishAll(brokers!.mqttUrl, [{
      topic,
      payload: serializeStructured(event),
    }]);

    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-net=127.0.0.1",
        "--allow-env",
        new URL("../examples/embed_bridge.ts", import.meta.url).pathname,
      ],
      env: {
        PORT: "0",
        NO_COLOR: "1",
        // The CLI's variables override the example's configuration.
        ...bridgeEnv({
          mqttUrl: brokers!.mqttUrl,
          kafkaBrokers: brokers!.kafkaBrokers,
          clientId,
          mqttTopic: topic,
          kafkaTopic: telemetryTopic,
        }),
      },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const output = collect(child.stdout);
    const errors = collect(child.stderr);
    try {
      const url = await waitForMatch(
        output,
        /listening on (http:\S+)/,
        () => errors.text,
      );
      await waitFor("the event delivered, as /status shows", async () => {
        const status = await (await fetch(new URL("/status", url))).json();
        return status.delivered.mqtt_to_kafka.telemetry === 1;
      });
      const metrics = await fetch(new URL("/metrics", url));
      assert.equal(metrics.status, 200);
      assert.match(
        await metrics.text(),
        /^dx_messages_delivered_total\{direction="mqtt_to_kafka",route="telemetry"\} 1$/m,
      );
      const ready = await fetch(new URL("/readyz", url));
      assert.deepEqual(
        [ready.status, await ready.json()],
        [200, { ready: true, reasons: [] }],
      );
      assert.match(output.text, /bridge ready/);
    } finally {
      child.kill("SIGTERM");
    }
    const status = await child.status;
    await Promise.all([output.done, errors.done]);
    assert.equal(status.code, 0, errors.text);
    assert.match(output.text, /bridge stopped: 1 delivered, 0 dead-lettered/);

    const records = await readTopics(brokers!.kafkaBrokers, [telemetryTopic], {
      until: (read) => read.length >= 1,
    });
    assert.equal(header(records[0].message, "ce_id"), event.id);
  },
});

/** Waits until the collected output matches, and returns the first group. */
async function waitForMatch(
  output: Collected,
  pattern: RegExp,
  diagnostics: () => string,
): Promise<string> {
  let match: RegExpMatchArray | null = null;
  await waitFor(`output matching ${pattern}`, () => {
    match = output.text.match(pattern);
    return match !== null;
  }).catch((error) => {
    throw new Error(
      `${error.message}\nstdout:\n${output.text}\nstderr:\n${diagnostics()}`,
    );
  });
  return match![1];
}
