/**
 * Tests of the local broker tooling against real Mosquitto and Kafka
 * processes: MQTT and Kafka round trips, the raised Mosquitto limits, the
 * consumer group coordinator, kill and restart, the `deno task brokers`
 * contract, and the errors for missing tools.
 *
 * Checks that a pid is gone with `ps`.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { Kafka, type KafkaMessage, logLevel, Partitioners } from "kafkajs";
import mqtt from "mqtt";
import {
  BrokerStartError,
  BrokerUnavailableError,
  freePort,
  resolveKafkaJars,
  startKafka,
  startMosquitto,
} from "../tools/brokers/mod.ts";
import { testBrokers } from "./_brokers.ts";

const brokers = await testBrokers();
const REPO_ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);

for (const protocolVersion of [5, 4] as const) {
  const label = protocolVersion === 5 ? "MQTT 5" : "MQTT 3.1.1";
  Deno.test({
    name: `Mosquitto delivers a QoS 1 message to an ${label} subscriber`,
    ignore: !brokers,
    fn: async () => {
      const topic = `dx/test/${crypto.randomUUID()}`;
      const subscriber = await mqtt.connectAsync(brokers!.mqttUrl, {
        protocolVersion,
        reconnectPeriod: 0,
      });
      try {
        const received = nextMessage(subscriber);
        await subscriber.subscribeAsync(topic, { qos: 1 });
        await subscriber.publishAsync(topic, "hello", { qos: 1 });
        const message = await within(5_000, "the QoS 1 message", received);
        assert.equal(message.topic, topic);
        assert.equal(new TextDecoder().decode(message.payload), "hello");
        assert.equal(message.qos, 1);
      } finally {
        await subscriber.endAsync();
      }
    },
  });
}

Deno.test({
  name:
    "Mosquitto keeps 5000 QoS 1 messages for an offline persistent session (stock limits keep 1000)",
  ignore: !brokers,
  fn: async () => {
    const topic = `dx/test/${crypto.randomUUID()}`;
    const clientId = `dx-offline-${crypto.randomUUID().slice(0, 8)}`;
    const count = 5_000;
    const options = {
      clientId,
      clean: false,
      protocolVersion: 4 as const,
      reconnectPeriod: 0,
    };

    const first = await mqtt.connectAsync(brokers!.mqttUrl, options);
    await first.subscribeAsync(topic, { qos: 1 });
    await first.endAsync();

    const publisher = await mqtt.connectAsync(brokers!.mqttUrl, {
      reconnectPeriod: 0,
    });
    try {
      const sends: Promise<unknown>[] = [];
      for (let i = 0; i < count; i++) {
        sends.push(publisher.publishAsync(topic, String(i), { qos: 1 }));
      }
      await within(30_000, `PUBACKs for ${count} messages`, Promise.all(sends));
    } finally {
      await publisher.endAsync();
    }

    // Listen before CONNACK: the queued messages follow it at once.
    const seen = new Set<string>();
    const all = Promise.withResolvers<void>();
    const second = mqtt.connect(brokers!.mqttUrl, options);
    second.on("message", (_topic, payload) => {
      seen.add(new TextDecoder().decode(payload));
      if (seen.size === count) all.resolve();
    });
    try {
      await within(10_000, `${count} queued messages`, all.promise).catch(
        (error) => {
          throw new Error(
            `received ${seen.size} of ${count} queued messages: Mosquitto's queue limit drops the rest`,
            { cause: error },
          );
        },
      );
    } finally {
      // Remove the persistent session so it does not outlive the test.
      await second.endAsync();
      const cleanup = await mqtt.connectAsync(brokers!.mqttUrl, {
        ...options,
        clean: true,
      });
      await cleanup.endAsync();
    }
  },
});

Deno.test({
  name: "Mosquitto accepts and delivers a 16 MiB payload",
  ignore: !brokers,
  fn: async () => {
    const topic = `dx/test/${crypto.randomUUID()}`;
    const payload = new Uint8Array(16 * 1024 * 1024);
    for (let i = 0; i < payload.length; i += 4096) payload[i] = i % 251;
    const client = await mqtt.connectAsync(brokers!.mqttUrl, {
      protocolVersion: 5,
      reconnectPeriod: 0,
    });
    try {
      const received = nextMessage(client);
      await client.subscribeAsync(topic, { qos: 1 });
      await client.publishAsync(topic, Buffer.from(payload), { qos: 1 });
      const message = await within(20_000, "the 16 MiB message", received);
      assert.equal(message.payload.length, payload.length);
      assert.deepEqual(new Uint8Array(message.payload), payload);
    } finally {
      await client.endAsync();
    }
  },
});

Deno.test({
  name: "Kafka stores a record on a new topic and a fresh group consumes it",
  ignore: !brokers,
  fn: async () => {
    const kafka = kafkaClient(brokers!.kafkaBrokers);
    const topic = `dx-test-${crypto.randomUUID()}`;
    await produceOne(kafka, topic, "k1", "v1");
    const message = await consumeOne(
      kafka,
      topic,
      `dx-test-${crypto.randomUUID()}`,
    );
    assert.equal(message.key?.toString(), "k1");
    assert.equal(message.value?.toString(), "v1");
  },
});

Deno.test({
  name:
    "Kafka's group coordinator stores committed offsets (needs replication factor 1 for __consumer_offsets)",
  ignore: !brokers,
  fn: async () => {
    const kafka = kafkaClient(brokers!.kafkaBrokers);
    const topic = `dx-test-${crypto.randomUUID()}`;
    const groupId = `dx-test-${crypto.randomUUID()}`;
    await produceOne(kafka, topic, "k", "v");
    await consumeOne(kafka, topic, groupId);

    const admin = kafka.admin();
    await admin.connect();
    try {
      const offsets = await admin.fetchOffsets({ groupId, topics: [topic] });
      assert.deepEqual(
        offsets.map((t) => ({
          topic: t.topic,
          offsets: t.partitions.map((p) => p.offset),
        })),
        [{ topic, offsets: ["1"] }],
      );
      const { groups } = await admin.describeGroups([groupId]);
      assert.equal(groups[0].state, "Empty");
    } finally {
      await admin.disconnect();
    }
  },
});

Deno.test({
  name:
    "Kafka commits a transaction (needs replication factor 1 for __transaction_state)",
  ignore: !brokers,
  fn: async () => {
    const kafka = kafkaClient(brokers!.kafkaBrokers);
    const topic = `dx-test-${crypto.randomUUID()}`;
    const producer = kafka.producer({
      transactionalId: `dx-test-${crypto.randomUUID()}`,
      idempotent: true,
      maxInFlightRequests: 1,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    await producer.connect();
    try {
      const transaction = await producer.transaction();
      await transaction.send({
        topic,
        messages: [{ key: "tx", value: "committed" }],
      });
      await transaction.commit();
    } finally {
      await producer.disconnect();
    }
    const message = await consumeOne(
      kafka,
      topic,
      `dx-test-${crypto.randomUUID()}`,
    );
    assert.equal(message.value?.toString(), "committed");
  },
});

Deno.test({
  name: "Kafka restart() after kill() serves the same port with the same data",
  ignore: !brokers,
  fn: async () => {
    await using kafka = await startKafka();
    const client = kafkaClient(kafka.brokers);
    const topic = `dx-test-${crypto.randomUUID()}`;
    await produceOne(client, topic, "before", "kill");

    const firstPid = kafka.pid;
    await kafka.kill();
    assert.equal(kafka.running, false);
    assert.equal(await pidAlive(firstPid), false);
    await assert.rejects(
      Deno.connect({ hostname: "127.0.0.1", port: kafka.port }),
      Deno.errors.ConnectionRefused,
    );

    await kafka.restart();
    assert.notEqual(kafka.pid, firstPid);
    assert.deepEqual(kafka.brokers, [`127.0.0.1:${kafka.port}`]);
    const message = await consumeOne(
      client,
      topic,
      `dx-test-${crypto.randomUUID()}`,
    );
    assert.equal(message.value?.toString(), "kill");

    const { dataDir } = kafka;
    const secondPid = kafka.pid;
    await kafka.stop();
    assert.equal(await pidAlive(secondPid), false);
    assert.equal(await exists(dataDir), false);
    await kafka.stop(); // idempotent
  },
});

Deno.test({
  name: "Mosquitto restart() after kill() serves the same port",
  ignore: !brokers,
  fn: async () => {
    const mosquitto = await startMosquitto();
    try {
      const firstPid = mosquitto.pid;
      await mosquitto.kill();
      assert.equal(await pidAlive(firstPid), false);
      assert.equal(await exists(mosquitto.dataDir), true);

      await mosquitto.restart();
      assert.notEqual(mosquitto.pid, firstPid);
      const client = await mqtt.connectAsync(mosquitto.url, {
        reconnectPeriod: 0,
      });
      await client.endAsync();
    } finally {
      await mosquitto.stop();
    }
    assert.equal(await exists(mosquitto.dataDir), false);
    await assert.rejects(mosquitto.restart(), /stopped and its data deleted/);
  },
});

Deno.test({
  name:
    "startMosquitto() and startKafka() refuse a port in use instead of reporting another program as ready",
  ignore: !brokers,
  fn: async () => {
    // Regression: the readiness check spoke MQTT to whatever answered on
    // the port, so a system Mosquitto there passed for ours.
    const port = freePort();
    using _taken = Deno.listen({ hostname: "127.0.0.1", port });
    for (
      const start of [
        () => startMosquitto({ port }),
        () => startKafka({ port }),
      ]
    ) {
      const error = await start().then(
        () => assert.fail("a broker started on a taken port"),
        (error: unknown) => error,
      );
      assert.ok(error instanceof BrokerStartError, String(error));
      assert.equal(error.code, "broker-start-failed");
      assert.match(
        error.message,
        new RegExp(`port ${port} on 127.0.0.1 is already in use`),
      );
      assert.match(String((error.cause as Error).message), /in use/i);
    }
  },
});

Deno.test({
  name: "deno task brokers prints both addresses, and SIGTERM stops everything",
  ignore: !brokers,
  fn: async () => {
    const mqttPort = freePort();
    const kafkaPort = freePort();
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-run",
        "--allow-net=127.0.0.1",
        "--allow-env",
        "--allow-read",
        "--allow-write",
        `${REPO_ROOT}tools/brokers/main.ts`,
      ],
      env: { MQTT_PORT: String(mqttPort), KAFKA_PORT: String(kafkaPort) },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stdout = collectLines(child.stdout);
    const stderr = collectLines(child.stderr);
    let status: Deno.CommandStatus | undefined;
    try {
      await within(
        90_000,
        "both address lines on stdout",
        stdout.until((lines) => lines.length >= 2),
      );
      assert.deepEqual(stdout.lines, [
        `MQTT_URL=mqtt://127.0.0.1:${mqttPort}`,
        `KAFKA_BROKERS=127.0.0.1:${kafkaPort}`,
      ]);
      const started = stderr.lines.find((line) =>
        line.startsWith("BROKERS_STARTED ")
      );
      assert.ok(
        started,
        `no BROKERS_STARTED line in:\n${stderr.lines.join("\n")}`,
      );
      const state = JSON.parse(started.slice("BROKERS_STARTED ".length)) as {
        mosquitto: { pid: number; dataDir: string };
        kafka: { pid: number; dataDir: string };
      };
      const processes = [state.mosquitto, state.kafka];
      for (const { pid, dataDir } of processes) {
        assert.equal(await pidAlive(pid), true, `pid ${pid} should run`);
        assert.equal(await exists(dataDir), true, `${dataDir} should exist`);
      }

      child.kill("SIGTERM");
      status = await within(30_000, "the CLI's exit", child.status);
      await Promise.all([stdout.done, stderr.done]);
      assert.equal(status.code, 0, stderr.lines.join("\n"));
      assert.equal(stdout.lines.length, 2, "nothing else on stdout");
      for (const { pid, dataDir } of processes) {
        assert.equal(await pidAlive(pid), false, `pid ${pid} still runs`);
        assert.equal(await exists(dataDir), false, `${dataDir} still exists`);
      }
    } finally {
      if (!status) {
        // Let the CLI stop its brokers; SIGKILL would leave them running.
        child.kill("SIGTERM");
        await within(30_000, "the CLI's exit", child.status).catch(() => {
          child.kill("SIGKILL");
        });
        await Promise.all([stdout.done, stderr.done]);
      }
    }
  },
});

Deno.test("deno task brokers --help prints the usage and exits 0", async () => {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-env",
      "--allow-read",
      `${REPO_ROOT}tools/brokers/main.ts`,
      "--help",
    ],
    stdin: "null",
  }).output();
  assert.equal(output.code, 0);
  const text = new TextDecoder().decode(output.stdout);
  assert.match(text, /^Usage: deno task brokers/);
  assert.match(text, /MQTT_URL=mqtt:\/\/127\.0\.0\.1:<port>/);
});

Deno.test("startMosquitto() names the missing program and how to install it", async () => {
  const error = await startMosquitto({ executable: "/nonexistent/mosquitto" })
    .then(() => assert.fail("started a missing program"), (e: unknown) => e);
  assert.ok(error instanceof BrokerUnavailableError, String(error));
  assert.equal(error.code, "broker-unavailable");
  assert.match(error.message, /\/nonexistent\/mosquitto/);
  assert.match(error.message, /apt-get install mosquitto/);
  assert.ok(error.cause instanceof Deno.errors.NotFound, String(error.cause));
});

Deno.test({
  name: "startKafka() names a missing java and how to install it",
  ignore: !brokers,
  fn: async () => {
    const error = await startKafka({ java: "/nonexistent/java" })
      .then(() => assert.fail("started a missing java"), (e: unknown) => e);
    assert.ok(error instanceof BrokerUnavailableError, String(error));
    assert.equal(error.code, "broker-unavailable");
    assert.match(error.message, /openjdk-17-jre-headless/);
    assert.ok(error.cause instanceof Deno.errors.NotFound, String(error.cause));
  },
});

Deno.test("resolveKafkaJars() names a missing mvn and how to install it", async () => {
  const version = "0.0.1-dxtest";
  try {
    const error = await resolveKafkaJars(version, { mvn: "/nonexistent/mvn" })
      .then(() => assert.fail("resolved without Maven"), (e: unknown) => e);
    assert.ok(error instanceof BrokerUnavailableError, String(error));
    assert.match(error.message, /apt-get install maven/);
    assert.ok(error.cause instanceof Deno.errors.NotFound, String(error.cause));
  } finally {
    await Deno.remove(`${REPO_ROOT}.cache/kafka/${version}`, {
      recursive: true,
    });
  }
});

Deno.test("resolveKafkaJars() rejects a version that is not a release", async () => {
  await assert.rejects(resolveKafkaJars("../../etc"), RangeError);
});

// ---------------------------------------------------------------- helpers

interface ReceivedMessage {
  topic: string;
  payload: Uint8Array;
  qos: number;
}

function nextMessage(client: mqtt.MqttClient): Promise<ReceivedMessage> {
  return new Promise((resolve) => {
    client.once("message", (topic, payload, packet) => {
      resolve({ topic, payload, qos: packet.qos });
    });
  });
}

function kafkaClient(brokerList: string[]): Kafka {
  return new Kafka({
    clientId: "dx-brokers-test",
    brokers: brokerList,
    logLevel: logLevel.NOTHING,
  });
}

async function produceOne(
  kafka: Kafka,
  topic: string,
  key: string,
  value: string,
): Promise<void> {
  const producer = kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
  });
  await producer.connect();
  try {
    await producer.send({ topic, acks: -1, messages: [{ key, value }] });
  } finally {
    await producer.disconnect();
  }
}

async function consumeOne(
  kafka: Kafka,
  topic: string,
  groupId: string,
): Promise<KafkaMessage> {
  const consumer = kafka.consumer({ groupId });
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    const received = Promise.withResolvers<KafkaMessage>();
    await consumer.run({
      eachMessage: ({ message }) => {
        received.resolve(message);
        return Promise.resolve();
      },
    });
    return await within(30_000, `a record from ${topic}`, received.promise);
  } finally {
    await consumer.disconnect();
  }
}

/** Rejects when `promise` has not settled within `ms`; clears its timer. */
async function within<T>(
  ms: number,
  what: string,
  promise: Promise<T>,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what} did not arrive within ${ms} ms`)),
      ms,
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

interface LineCollector {
  /** The complete lines so far. */
  readonly lines: string[];
  /** Resolves when the stream has ended. */
  readonly done: Promise<void>;
  /** Resolves once `test(lines)` holds; rejects if the stream ends first. */
  until(test: (lines: string[]) => boolean): Promise<void>;
}

function collectLines(stream: ReadableStream<Uint8Array>): LineCollector {
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  let ended = false;
  const done = (async () => {
    let rest = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      const parts = rest.split("\n");
      rest = parts.pop() ?? "";
      lines.push(...parts);
      for (const wake of waiters) wake();
    }
    if (rest !== "") lines.push(rest);
    ended = true;
    for (const wake of waiters) wake();
  })();
  return {
    lines,
    done,
    until(test) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (test(lines)) {
            waiters.delete(check);
            resolve();
          } else if (ended) {
            waiters.delete(check);
            reject(new Error(`the stream ended; it had:\n${lines.join("\n")}`));
          }
        };
        waiters.add(check);
        check();
      });
    },
  };
}

/**
 * Whether a process exists and is not a zombie. Asks `ps`: Deno allows
 * reading /proc only with --allow-all.
 */
async function pidAlive(pid: number): Promise<boolean> {
  const output = await new Deno.Command("ps", {
    args: ["-o", "stat=", "-p", String(pid)],
    stdin: "null",
    stderr: "null",
  }).output();
  const state = new TextDecoder().decode(output.stdout).trim();
  return output.success && state !== "" && !state.startsWith("Z");
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}
