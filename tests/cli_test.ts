/**
 * The bridge CLI as an operator meets it: its first log line, its warnings
 * when a broker cannot be reached, exit code 1 for a failure at run time and
 * for a second signal, a JSON configuration named by `DX_CONFIG`, and its own
 * `/healthz`, `/readyz` and `/metrics`.
 *
 * Each test runs the CLI as a child process with only the `DX_` variables it
 * sets, and reads its JSON log lines.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  type CloudEvent,
  createCloudEvent,
  serializeStructured,
} from "../src/cloudevents/mod.ts";
import {
  parseSamples,
  promtoolCheckMetrics,
  promtoolGate,
  valueOf,
} from "../src/metrics/_test_helpers.ts";
import { freePort } from "../tools/brokers/mod.ts";
import { isolatedTestBrokers, testBrokers } from "./_brokers.ts";
import { type LogLine, parseLine, spawnCli, waitFor } from "./_bridge.ts";
import {
  createTopics,
  eventIdOf,
  publishAll,
  readUntilAll,
  uniqueName,
} from "./_kafka.ts";

const brokers = await testBrokers();
const promtool = promtoolGate("the promtool check of the CLI's /metrics");

// ---------------------------------------------------------------------------
// Helpers.

/**
 * The CLI as a child process started by `spawnCli` (only the `DX_` variables
 * given apply), its JSON log lines and its stderr kept in memory. Disposing
 * of it kills a CLI still running, so a failed test leaves no process behind.
 */
class Cli implements AsyncDisposable {
  readonly lines: LogLine[] = [];
  stderr = "";
  readonly #child: Deno.ChildProcess;
  readonly #reading: Promise<unknown>;
  #exit: Deno.CommandStatus | undefined;

  constructor(args: readonly string[], env: Record<string, string>) {
    this.#child = spawnCli(args, env);
    this.#child.status.then((status) => this.#exit = status);
    this.#reading = Promise.all([this.#readLines(), this.#readStderr()]);
  }

  get running(): boolean {
    return this.#exit === undefined;
  }

  /** Log lines whose message contains `text`. */
  find(text: string): LogLine[] {
    return this.lines.filter((line) => line.message.includes(text));
  }

  /** Waits until a log line contains `text`; fails if the CLI exits first. */
  async waitForLog(text: string, timeoutMs = 60_000): Promise<LogLine> {
    await waitFor(`a CLI log line containing "${text}"`, () => {
      if (this.find(text).length > 0) return true;
      if (!this.running) {
        throw new Error(
          `the CLI exited (${
            JSON.stringify(this.#exit)
          }) before logging "${text}":\n${this.tail()}`,
        );
      }
      return false;
    }, timeoutMs);
    return this.find(text)[0];
  }

  /** Sends `signal` and returns at once. */
  signal(signal: Deno.Signal): void {
    this.#child.kill(signal);
  }

  /**
   * Waits for the CLI to exit by itself, or after `signal` when given, and
   * returns its exit code and how long it took; kills it and fails after
   * `timeoutMs`.
   */
  async exit(
    { signal, timeoutMs = 30_000 }: {
      signal?: Deno.Signal;
      timeoutMs?: number;
    } = {},
  ): Promise<{ code: number; ms: number }> {
    const began = performance.now();
    if (signal && this.running) this.#child.kill(signal);
    try {
      await waitFor(
        `the CLI to exit${signal ? ` after ${signal}` : ""}`,
        () => !this.running,
        timeoutMs,
        20,
      );
    } catch (error) {
      throw new Error(`${(error as Error).message}; its log:\n${this.tail()}`);
    }
    const ms = Math.round(performance.now() - began);
    await this.#reading;
    return { code: this.#exit!.code, ms };
  }

  /** The last log lines and stderr, for failure messages. */
  tail(count = 30): string {
    const lines = this.lines.slice(-count).map((line) =>
      `  ${line.level} ${line.message}`
    );
    return [...lines, this.stderr].join("\n");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.running) this.#child.kill("SIGKILL");
    await this.#child.status;
    await this.#reading;
  }

  async #readLines(): Promise<void> {
    let buffered = "";
    for await (
      const chunk of this.#child.stdout.pipeThrough(new TextDecoderStream())
    ) {
      buffered += chunk;
      const parts = buffered.split("\n");
      buffered = parts.pop()!;
      for (const part of parts) this.lines.push(parseLine(part));
    }
    if (buffered !== "") this.lines.push(parseLine(buffered));
  }

  async #readStderr(): Promise<void> {
    for await (
      const chunk of this.#child.stderr.pipeThrough(new TextDecoderStream())
    ) {
      this.stderr += chunk;
    }
  }
}

/** The `DX_` variables of a bridge with names of its own on `brokers`. */
function bridgeEnv(
  id: string,
  mqttUrl: string,
  kafkaBrokers: readonly string[],
): Record<string, string> {
  return {
    DX_MQTT_URL: mqttUrl,
    DX_KAFKA_BROKERS: kafkaBrokers.join(","),
    DX_MQTT_TOPICS: `${id}/#`,
    DX_MQTT_CLIENT_ID: `${id}-bridge`,
    DX_KAFKA_CLIENT_ID: `${id}-bridge`,
    DX_ROUTES: "{}",
    DX_DEFAULT_TOPIC: `${id}.events`,
    DX_DEAD_LETTER_TOPIC: `${id}.dlq`,
  };
}

/** A bridge configuration file of its own, removed on disposal. */
async function configFile(
  config: Record<string, unknown>,
): Promise<{ path: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "dx-cli-" });
  const path = `${dir}/bridge.json`;
  await Deno.writeTextFile(path, JSON.stringify(config, null, 2));
  return {
    path,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

function makeEvents(count: number): CloudEvent[] {
  return Array.from({ length: count }, (_, i) =>
    createCloudEvent({
      source: "/cli-test",
      type: "dev.dataexchange.test",
      data: { i },
    }));
}

function publications(topic: string, events: readonly CloudEvent[]) {
  return events.map((event) => ({
    topic,
    payload: serializeStructured(event),
  }));
}

/** A GET on the CLI's health endpoint; `undefined` while it does not answer. */
async function get(
  port: number,
  path: string,
): Promise<{ status: number; body: string } | undefined> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}${path}`);
    return { status: response.status, body: await response.text() };
  } catch (error) {
    if (error instanceof TypeError) return undefined;
    throw error;
  }
}

/** Polls `path` until it answers with `status`; returns that answer. */
async function getWhen(
  port: number,
  path: string,
  status: number,
  timeoutMs = 60_000,
): Promise<{ status: number; body: string }> {
  let last: { status: number; body: string } | undefined;
  try {
    await waitFor(
      `GET ${path} to answer ${status}`,
      async () => {
        last = await get(port, path);
        return last?.status === status;
      },
      timeoutMs,
      100,
    );
  } catch (error) {
    throw new Error(
      `${(error as Error).message}; last answer ${JSON.stringify(last)}`,
    );
  }
  return last!;
}

/** The CLI's gauge of MQTT → Kafka messages in flight; 0 when unanswered. */
async function inFlight(port: number): Promise<number> {
  const text = (await get(port, "/metrics"))?.body ?? "";
  return valueOf(parseSamples(text), "dx_messages_in_flight", {
    direction: "mqtt_to_kafka",
  }) ?? 0;
}

function figures(name: string, values: Record<string, number>): void {
  const text = Object.entries(values).map(([key, value]) => `${key} ${value}`)
    .join(", ");
  console.log(`[cli] ${name}: ${text}`);
}

// ---------------------------------------------------------------------------
// Start messages.

Deno.test({
  name:
    "without a configuration file, the first log line says the defaults and DX_ variables are used, and where it looks for each broker",
  ignore: brokers === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const id = uniqueName("cli-defaults");
    await using cli = new Cli(
      [],
      bridgeEnv(id, brokers!.mqttUrl, brokers!.kafkaBrokers),
    );
    await cli.waitForLog("MQTT subscribed");

    const [first] = cli.lines;
    assert.equal(first.level, "INFO", cli.tail());
    assert.match(
      first.message,
      /^No configuration file given: using defaults and DX_ variables \(MQTT at .*, Kafka at .*\)$/,
    );
    assert.ok(first.message.includes(brokers!.mqttUrl), first.message);
    for (const broker of brokers!.kafkaBrokers) {
      assert.ok(first.message.includes(broker), first.message);
    }
    assert.equal(first.properties.source, "defaults");
    assert.equal((await cli.exit({ signal: "SIGTERM" })).code, 0);
  },
});

Deno.test({
  name:
    "when Kafka cannot be reached, the warning names Kafka, its address and `deno task brokers`, and /readyz answers 503 naming both brokers",
  ignore: brokers === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const id = uniqueName("cli-no-kafka");
    // Free a moment ago, and nothing listens there: connections are refused.
    const kafka = `127.0.0.1:${freePort()}`;
    const metricsPort = freePort();
    await using cli = new Cli([], {
      ...bridgeEnv(id, brokers!.mqttUrl, [kafka]),
      DX_METRICS_PORT: String(metricsPort),
    });

    const warning = await cli.waitForLog("Kafka not reachable at", 30_000);
    assert.equal(warning.level, "WARN");
    assert.ok(warning.message.includes(kafka), warning.message);
    assert.match(warning.message, /run `deno task brokers`/);

    const live = await getWhen(metricsPort, "/healthz", 200);
    assert.equal(live.body, "ok\n");
    const ready = await get(metricsPort, "/readyz");
    assert.equal(ready?.status, 503);
    assert.deepEqual(JSON.parse(ready!.body), {
      ready: false,
      reasons: ["mqtt disconnected", "kafka disconnected"],
    });

    const stopped = await cli.exit({ signal: "SIGTERM" });
    assert.equal(stopped.code, 0, cli.tail());
    figures("Kafka unreachable", {
      "connect warnings": cli.find("Kafka not reachable at").length,
      "exit ms": stopped.ms,
    });
  },
});

Deno.test({
  name:
    "when MQTT cannot be reached, the warnings name MQTT and its URL, and after 5 s point to `deno task brokers`",
  ignore: brokers === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const id = uniqueName("cli-no-mqtt");
    const mqttUrl = `mqtt://127.0.0.1:${freePort()}`;
    await using cli = new Cli(
      [],
      bridgeEnv(id, mqttUrl, brokers!.kafkaBrokers),
    );

    const attempt = await cli.waitForLog("not connected; reconnect attempt");
    assert.equal(attempt.level, "WARN");
    assert.match(attempt.message, /^MQTT broker at /);
    assert.equal(attempt.properties.url, mqttUrl);
    const hint = await cli.waitForLog("not up after 5 s", 30_000);
    assert.equal(hint.level, "WARN");
    assert.match(hint.message, /^MQTT connection to /);
    assert.equal(hint.properties.url, mqttUrl);
    assert.match(hint.message, /run `deno task brokers`/);

    assert.equal((await cli.exit({ signal: "SIGTERM" })).code, 0, cli.tail());
    figures("MQTT unreachable", {
      "reconnect warnings": cli.find("not connected; reconnect attempt")
        .length,
    });
  },
});

Deno.test({
  name:
    "DX_CONFIG naming a JSON file: the bridge says it loaded that file and delivers an event to Kafka",
  ignore: brokers === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const id = uniqueName("cli-json");
    const topic = `${id}.events`;
    await using config = await configFile({
      mqtt: {
        url: brokers!.mqttUrl,
        topics: [`${id}/#`],
        clientId: `${id}-bridge`,
      },
      kafka: { brokers: brokers!.kafkaBrokers, clientId: `${id}-bridge` },
      routes: {},
      defaultTopic: topic,
      deadLetterTopic: `${id}.dlq`,
    });
    await using cli = new Cli([], { DX_CONFIG: config.path });
    await cli.waitForLog("MQTT subscribed");

    const [first] = cli.lines;
    // LogTape writes string values quoted, and lists as JSON.
    const kafkaList = JSON.stringify(brokers!.kafkaBrokers);
    assert.equal(
      first.message,
      `Configuration loaded from "${config.path}" (MQTT at "${
        brokers!.mqttUrl
      }", Kafka at ${kafkaList})`,
    );
    assert.equal(first.properties.source, config.path);
    const events = makeEvents(1);
    await publishAll(brokers!.mqttUrl, publications(`${id}/d`, events));
    const records = await readUntilAll(
      brokers!.kafkaBrokers,
      topic,
      events.map((event) => event.id),
    );
    assert.equal(records.length, 1);
    assert.equal((await cli.exit({ signal: "SIGTERM" })).code, 0, cli.tail());
  },
});

// ---------------------------------------------------------------------------
// Exit code 1: failures at run time.

Deno.test({
  name:
    "a Kafka topic that is missing with kafka.createTopics off: exit 1, with a fatal line naming the topic and the two fixes",
  ignore: brokers === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const id = uniqueName("cli-topic-missing");
    await createTopics(brokers!.kafkaBrokers, [`${id}.dlq`]);
    await using cli = new Cli([], {
      ...bridgeEnv(id, brokers!.mqttUrl, brokers!.kafkaBrokers),
      DX_KAFKA_CREATE_TOPICS: "false",
    });

    const exited = await cli.exit({ timeoutMs: 60_000 });
    assert.equal(exited.code, 1, cli.tail());
    const [fatal] = cli.find("Bridge failed");
    assert.equal(fatal?.level, "FATAL", cli.tail());
    assert.match(fatal.message, /^Bridge failed: /);
    assert.equal(
      fatal.properties.message,
      `Kafka topics ${id}.events do not exist; create them, or set kafka.createTopics: true`,
    );
    assert.equal(cli.find("MQTT subscribed").length, 0, "failed before MQTT");
  },
});

Deno.test({
  name:
    "a metrics port already in use: exit 1, with a fatal line naming the address and what to do",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = taken.addr.port;
    // Unreachable brokers: were the port not refused, the CLI would keep
    // trying to connect and this test would time out.
    await using cli = new Cli([], {
      DX_MQTT_URL: `mqtt://127.0.0.1:${freePort([port])}`,
      DX_KAFKA_BROKERS: `127.0.0.1:${freePort([port])}`,
      DX_METRICS_PORT: String(port),
    });

    const exited = await cli.exit();
    assert.equal(exited.code, 1, cli.tail());
    const [fatal] = cli.find("Bridge failed");
    assert.equal(fatal?.level, "FATAL", cli.tail());
    assert.match(fatal.message, /^Bridge failed: /);
    const message = String(fatal.properties.message);
    assert.ok(
      message.startsWith(
        `The health endpoint cannot listen on 127.0.0.1:${port}: `,
      ),
      message,
    );
    assert.match(message, /choose another port \(or 0 for any free one\)/);
  },
});

// ---------------------------------------------------------------------------
// Signals.

Deno.test({
  name:
    "a second signal a second after the first exits at once with code 1 while the drain waits for Kafka; one within the second counts as the first",
  ignore: brokers === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using isolated = (await isolatedTestBrokers())!;
    const id = uniqueName("cli-second-signal");
    const topic = `${id}.events`;
    const metricsPort = freePort();
    // A drain budget far longer than the test waits: only the second signal
    // can end the process in time.
    const drainTimeoutMs = 120_000;
    await using config = await configFile({
      mqtt: {
        url: isolated.mqttUrl,
        topics: [`${id}/#`],
        clientId: `${id}-bridge`,
      },
      kafka: { brokers: isolated.kafkaBrokers },
      routes: {},
      defaultTopic: topic,
      deadLetterTopic: `${id}.dlq`,
      drainTimeoutMs,
      metrics: { port: metricsPort },
    });
    await createTopics(isolated.kafkaBrokers, [topic, `${id}.dlq`]);
    await using cli = new Cli(["--config", config.path], {});
    await cli.waitForLog("MQTT subscribed");

    const events = makeEvents(100);
    const kafkaPid = isolated.kafka.pid;
    Deno.kill(kafkaPid, "SIGSTOP");
    let exited: { code: number; ms: number };
    let draining: number;
    try {
      await publishAll(isolated.mqttUrl, publications(`${id}/d`, events));
      await waitFor(
        `${events.length} messages in flight in the bridge`,
        async () => (await inFlight(metricsPort)) >= events.length,
        30_000,
        100,
      );

      cli.signal("SIGTERM");
      const first = await cli.waitForLog("received: draining");
      assert.equal(first.properties.signal, "SIGTERM");
      const drainingSince = performance.now();
      // At once, as a terminal and `deno task` both pass on one Ctrl-C.
      cli.signal("SIGINT");
      // The window is a second from the first signal; give it some more.
      // The pause spaces two signals apart; it waits for nothing.
      await waitFor(
        "1.2 s after the first signal",
        () => performance.now() - drainingSince > 1200,
        5000,
      );
      assert.ok(cli.running, `the repeated signal ended it:\n${cli.tail()}`);
      assert.equal(cli.find("exiting at once").length, 0, "no second signal");
      const [repeated] = cli.find("taken as the same one");
      assert.equal(repeated?.properties.signal, "SIGINT", cli.tail());

      exited = await cli.exit({ signal: "SIGINT", timeoutMs: 10_000 });
      draining = Math.round(performance.now() - drainingSince);
    } finally {
      Deno.kill(kafkaPid, "SIGCONT");
    }
    assert.equal(exited.code, 1, cli.tail());
    assert.ok(exited.ms < 5000, `exited ${exited.ms} ms after the second`);
    const [second] = cli.find("exiting at once");
    assert.equal(second?.level, "WARN", cli.tail());
    assert.match(second.message, /^Second /);
    assert.equal(second.properties.signal, "SIGINT");
    assert.equal(cli.find("Bridge stopped").length, 0, "no drain finished");

    // Exiting at once loses nothing: the broker delivers again what was not
    // acknowledged.
    await using again = new Cli(["--config", config.path], {});
    await again.waitForLog("MQTT subscribed");
    const records = await readUntilAll(
      isolated.kafkaBrokers,
      topic,
      events.map((event) => event.id),
    );
    assert.equal((await again.exit({ signal: "SIGTERM" })).code, 0);
    const unique = new Set(records.map(eventIdOf)).size;
    figures("second signal", {
      sent: events.length,
      "in flight": events.length,
      "exit code": exited.code,
      "exit ms after the second signal": exited.ms,
      "ms from the first signal": draining,
      received: records.length,
      unique,
      duplicates: records.length - unique,
    });
  },
});

// ---------------------------------------------------------------------------
// The health endpoint.

Deno.test({
  name:
    "the CLI serves /healthz, /readyz once both brokers are connected, and a live /metrics that counts a received message and passes promtool",
  ignore: brokers === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const id = uniqueName("cli-health");
    const metricsPort = freePort();
    await using cli = new Cli([], {
      ...bridgeEnv(id, brokers!.mqttUrl, brokers!.kafkaBrokers),
      DX_METRICS_PORT: String(metricsPort),
    });

    const live = await getWhen(metricsPort, "/healthz", 200);
    assert.equal(live.body, "ok\n");
    const ready = await getWhen(metricsPort, "/readyz", 200);
    assert.deepEqual(JSON.parse(ready.body), { ready: true, reasons: [] });
    const listening = await cli.waitForLog("Health endpoint listening on");
    assert.equal(listening.properties.url, `http://127.0.0.1:${metricsPort}/`);

    const events = makeEvents(1);
    await publishAll(brokers!.mqttUrl, publications(`${id}/d`, events));
    let text = "";
    await waitFor(
      "dx_messages_received_total to count the message",
      async () => {
        text = (await get(metricsPort, "/metrics"))?.body ?? "";
        return valueOf(parseSamples(text), "dx_messages_received_total", {
          direction: "mqtt_to_kafka",
        }) === 1;
      },
    );
    const samples = parseSamples(text);
    for (const broker of ["mqtt", "kafka"]) {
      assert.equal(valueOf(samples, "dx_broker_connected", { broker }), 1);
    }

    await t.step({
      name: "promtool check metrics accepts the live exposition",
      ignore: promtool.ignore,
      async fn() {
        promtool.assertAvailable();
        const checked = await promtoolCheckMetrics(text);
        assert.equal(checked.code, 0, checked.output);
        assert.equal(checked.output, "");
      },
    });

    const stopped = await cli.exit({ signal: "SIGTERM" });
    assert.equal(stopped.code, 0, cli.tail());
    figures("health endpoint", {
      "metrics bytes": text.length,
      samples: samples.length,
    });
  },
});
