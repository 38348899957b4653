/**
 * The bridge against real broker faults: Kafka down for a while, down at
 * start, a record it refuses; Mosquitto restarted with and without
 * persistence; the MQTT connection severed; SIGTERM during an outage.
 *
 * Each test runs the bridge CLI as its own process, as `deno task bridge`
 * does, against brokers of its own (it kills and restarts them), publishes
 * events from `mockCloudEvents`, reads the bridge's JSON log lines, and
 * prints one line of figures: sent, records in Kafka, unique, duplicates,
 * peak RSS.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import mqtt from "mqtt";
import { abortableDelay } from "../src/_retry.ts";
import { mockCloudEvents, type MockEventItem } from "../src/streams/mod.ts";
import { freePort } from "../tools/brokers/mod.ts";
import { isolatedTestBrokers, testBrokers } from "./_brokers.ts";
import { BRIDGE_TASK_FLAGS, BridgeProcess, waitFor } from "./_bridge.ts";
import {
  createTopics,
  eventIdOf,
  header,
  publishAll,
  type ReadRecord,
  readTopics,
  readUntilAll,
  recordsIn,
  uniqueName,
} from "./_kafka.ts";

const ignore = (await testBrokers()) === undefined;
const MiB = 1024 * 1024;
/** How long to wait for every event in Kafka: the bridge may be catching up. */
const READ_TIMEOUT_MS = 90_000;

// ---------------------------------------------------------------------------
// Helpers: the bridge as a process, polling, events, Kafka read-back.

/** A temporary directory with the bridge's config, and the names it uses. */
async function writeConfig(
  id: string,
  mqttUrl: string,
  kafkaBrokers: readonly string[],
  extra: {
    mqtt?: Record<string, unknown>;
    kafka?: Record<string, unknown>;
    drainTimeoutMs?: number;
    metrics?: Record<string, unknown>;
  } = {},
) {
  const dir = await Deno.makeTempDir({ prefix: "dx-faults-" });
  const path = `${dir}/bridge.json`;
  const topic = `${id}.events`;
  const dlq = `${id}.dlq`;
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      mqtt: {
        url: mqttUrl,
        topics: [`${id}/#`],
        clientId: `${id}-bridge`,
        ...extra.mqtt,
      },
      kafka: { brokers: kafkaBrokers, ...extra.kafka },
      routes: {},
      defaultTopic: topic,
      deadLetterTopic: dlq,
      drainTimeoutMs: extra.drainTimeoutMs ?? 10_000,
      ...(extra.metrics ? { metrics: extra.metrics } : {}),
      log: { level: "info" },
    }),
  );
  return {
    path,
    topic,
    dlq,
    mqttTopic: `${id}/d`,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

/**
 * Events from `mockCloudEvents` (ids `mock-<seed>-<n>`, the default mix of
 * classifications, none malformed), each payload exactly `size` bytes.
 */
function* mockEvents(
  seed: number,
  size = 300,
  count = Infinity,
): Generator<MockEventItem, void, undefined> {
  for (
    const item of mockCloudEvents({
      seed,
      count,
      sizes: { min: size, max: size },
      exactSizes: true,
      source: "/faults-test",
    })
  ) {
    if (item.kind === "event") yield item;
  }
}

/** `count` events of {@linkcode mockEvents}. */
function makeEvents(seed: number, count: number, size = 300): MockEventItem[] {
  return [...mockEvents(seed, size, count)];
}

function publications(topic: string, events: readonly MockEventItem[]) {
  return events.map(({ payload }) => ({ topic, payload }));
}

function idsOf(events: readonly MockEventItem[]): string[] {
  return events.map(({ event }) => event.id);
}

/** The status of the bridge's `/readyz`, and the reasons it gives. */
async function readiness(
  port: number,
): Promise<{ status: number; reasons: string[] }> {
  const response = await fetch(`http://127.0.0.1:${port}/readyz`);
  const body = await response.json() as { reasons?: string[] };
  return { status: response.status, reasons: body.reasons ?? [] };
}

/**
 * Polls `condition` until it holds, and resolves with the milliseconds from
 * `since` to then; resolves `undefined` once `timeoutMs` have passed, so the
 * caller can report before it asserts. The pause between polls paces them.
 */
async function timeUntil(
  condition: () => Promise<boolean>,
  since: number,
  timeoutMs: number,
  intervalMs = 100,
): Promise<number | undefined> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() <= deadline) {
    if (await condition()) return performance.now() - since;
    await abortableDelay(intervalMs);
  }
  return undefined;
}

/** A V8 flag's number in the `bridge` task's `--v8-flags`, if it is there. */
function taskV8Flag(name: string): number | undefined {
  const v8Flags = BRIDGE_TASK_FLAGS.find((flag) =>
    flag.startsWith("--v8-flags=")
  );
  const match = v8Flags?.match(new RegExp(`--${name}=(\\d+)`));
  return match ? Number(match[1]) : undefined;
}

/** Reads every record of `topic`, up to its current end. */
async function readAll(
  brokers: readonly string[],
  topic: string,
): Promise<ReadRecord[]> {
  const total = await recordsIn(brokers, topic);
  return readTopics(brokers, [topic], {
    until: (read) => read.length >= total,
    timeoutMs: 60_000,
  });
}

/** Counts records per id and checks every expected id is among them. */
function tally(records: readonly ReadRecord[], expected: Iterable<string>) {
  const ids = records.map(eventIdOf);
  const unique = new Set(ids);
  const missing = [...expected].filter((id) => !unique.has(id));
  return {
    records: records.length,
    unique: unique.size,
    duplicates: records.length - unique.size,
    missing,
  };
}

function figures(
  name: string,
  values: Record<string, number | string>,
): void {
  const text = Object.entries(values).map(([key, value]) =>
    `${key} ${typeof value === "number" ? Math.round(value * 10) / 10 : value}`
  ).join(", ");
  console.log(`[faults] ${name}: ${text}`);
}

// ---------------------------------------------------------------------------
// Tests.

Deno.test({
  name:
    "Kafka down for 15 s while 2,000 messages arrive: all delivered, no crash, /readyz 503 then 200, peak RSS bounded by maxInFlight",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const began = performance.now();
    await using brokers = (await isolatedTestBrokers())!;
    const id = uniqueName("outage");
    const maxInFlight = 50;
    const size = 32 * 1024;
    const metricsPort = freePort();
    await using config = await writeConfig(
      id,
      brokers.mqttUrl,
      brokers.kafkaBrokers,
      { mqtt: { maxInFlight }, metrics: { port: metricsPort } },
    );
    await createTopics(brokers.kafkaBrokers, [config.topic, config.dlq]);
    const bridge = new BridgeProcess(config.path);
    await bridge.waitForLog("MQTT subscribed");
    const atReady = await bridge.memory();
    const readyAtStart = await readiness(metricsPort);

    await brokers.kafka.kill();
    const killedAt = performance.now();
    const events = makeEvents(1, 2000, size);
    const payloadMb = events.length * size / MiB;
    await publishAll(brokers.mqttUrl, publications(config.mqttTopic, events));
    // Hold the outage for 15 s, sampling the bridge's memory and readiness.
    let outagePeakRssMb = atReady.rssMb;
    let notReadyAfterMs: number | undefined;
    let notReadyReasons: string[] = [];
    await waitFor(
      "the end of the 15 s outage",
      async () => {
        assert.ok(bridge.running, `the bridge exited:\n${bridge.tail()}`);
        const { rssMb } = await bridge.memory();
        outagePeakRssMb = Math.max(outagePeakRssMb, rssMb);
        if (notReadyAfterMs === undefined) {
          const { status, reasons } = await readiness(metricsPort);
          if (status === 503) {
            notReadyAfterMs = performance.now() - killedAt;
            notReadyReasons = reasons;
          }
        }
        return performance.now() - killedAt >= 15_000;
      },
      20_000,
      100,
    );
    const readyAtEndOfOutage = await readiness(metricsPort);
    const produceRetries = bridge.find("Kafka produce failed").length;
    const openedDuringOutage = bridge.find("Kafka circuit breaker open").length;
    await brokers.kafka.restart();
    const backAt = performance.now();

    const readyAgain = timeUntil(
      async () => (await readiness(metricsPort)).status === 200,
      backAt,
      90_000,
    );
    await readUntilAll(
      brokers.kafkaBrokers,
      config.topic,
      idsOf(events),
      READ_TIMEOUT_MS,
    );
    const recoveryS = (performance.now() - backAt) / 1000;
    const readyAgainAfterMs = await readyAgain;
    await bridge.waitForLog("Kafka circuit breaker closed");
    assert.ok(bridge.running, "the bridge is still running");
    // VmHWM: the peak over the whole run, outage and recovery included.
    const { peakMb } = await bridge.memory();
    const stopped = await bridge.stop();
    assert.equal(stopped.code, 0, `exit code after SIGTERM:\n${bridge.tail()}`);
    const counts = tally(
      await readAll(brokers.kafkaBrokers, config.topic),
      idsOf(events),
    );

    // The bound of the peak: the baseline at ready, which V8 may let grow by
    // heap-growing-percent before a major GC; what the bridge holds, at most
    // maxInFlight messages in about four copies each (MQTT payload, decoded
    // text, the event's data, the Kafka record's value); and what V8 leaves
    // to collect under load: a young generation of three semi-spaces, and
    // the 64 MB of external (Buffer) memory it lets accumulate before it
    // forces a GC. The flags are those of `deno task bridge`.
    const growingPercent = taskV8Flag("heap-growing-percent");
    const semiSpaceMb = taskV8Flag("max-semi-space-size");
    assert.ok(
      growingPercent !== undefined && semiSpaceMb !== undefined,
      `the bound assumes the bridge task's V8 heap flags; got ${
        BRIDGE_TASK_FLAGS.join(" ")
      }`,
    );
    const heldMb = maxInFlight * size * 4 / MiB;
    const gcSlackMb = 3 * semiSpaceMb + 64;
    const peakBoundMb = atReady.rssMb * (1 + growingPercent / 100) + heldMb +
      gcSlackMb;
    // Holding all 2,000 messages as the bridge holds the in-flight ones.
    const allHeldMb = payloadMb * 4;
    const seconds = (ms: number | undefined) =>
      ms === undefined ? "never" : ms / 1000;
    figures("Kafka outage 15 s", {
      sent: events.length,
      received: counts.records,
      unique: counts.unique,
      duplicates: counts.duplicates,
      "peak RSS MB": peakMb,
      "peak RSS bound MB": peakBoundMb,
      "RSS at ready MB": atReady.rssMb,
      "outage growth MB": outagePeakRssMb - atReady.rssMb,
      "payload MB": payloadMb,
      "in-flight held MB": heldMb,
      "all 2,000 held MB": allHeldMb,
      "/readyz 503 after Kafka stopped s": seconds(notReadyAfterMs),
      "503 reasons": notReadyReasons.join("+") || "none",
      "/readyz 200 after Kafka is back s": seconds(readyAgainAfterMs),
      "produce retries logged": produceRetries,
      "recovery after Kafka is back s": recoveryS,
      "run s": (performance.now() - began) / 1000,
    });
    assert.deepEqual(counts.missing, []);
    assert.equal(readyAtStart.status, 200, "ready before the outage");
    assert.ok(
      notReadyAfterMs !== undefined,
      `/readyz never answered 503 during the outage (at its end: ${
        JSON.stringify(readyAtEndOfOutage)
      })`,
    );
    assert.equal(
      readyAtEndOfOutage.status,
      503,
      "not ready until Kafka is back",
    );
    assert.ok(
      readyAgainAfterMs !== undefined,
      `/readyz did not answer 200 within 90 s of Kafka's restart`,
    );
    assert.ok(produceRetries >= 1, "the outage was seen by the producer");
    // The breaker opened during the outage, and while open the producer
    // sent one probe per breakerHalfOpenAfterMs (5 s), no more.
    assert.ok(openedDuringOutage >= 1, "the breaker opened");
    const whileOpen = bridge.find(
      "Kafka produce failed",
      (line) => line.properties.breakerState === "open",
    ).map((line) => Date.parse(line.time));
    assert.ok(whileOpen.length >= 2, `${whileOpen.length} failures while open`);
    for (let i = 1; i < whileOpen.length; i++) {
      assert.ok(
        whileOpen[i] - whileOpen[i - 1] >= 4900,
        `probes ${whileOpen[i] - whileOpen[i - 1]} ms apart while open`,
      );
    }
    // Bounded: the bridge holds at most maxInFlight messages during the
    // outage; the rest wait at the broker. Had it read all 2,000, it would
    // hold the whole payload volume (and more, in copies).
    assert.ok(
      outagePeakRssMb - atReady.rssMb < payloadMb / 2,
      `memory grew by ${
        outagePeakRssMb - atReady.rssMb
      } MB during the outage, ` +
        `payload volume ${payloadMb} MB`,
    );
    // And over the whole run. The bound is below what holding all 2,000
    // messages the way the in-flight ones are held would take.
    assert.ok(
      allHeldMb > peakBoundMb - atReady.rssMb,
      "the bound would catch the bridge holding every message",
    );
    assert.ok(
      peakMb < peakBoundMb,
      `peak RSS ${peakMb} MB over the bound ${peakBoundMb} MB (RSS at ready ${atReady.rssMb} MB)`,
    );
  },
});

Deno.test({
  name:
    "SIGTERM during a Kafka outage exits within the drain timeout; a restarted bridge delivers everything",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const began = performance.now();
    await using brokers = (await isolatedTestBrokers())!;
    const id = uniqueName("term");
    const drainTimeoutMs = 3000;
    await using config = await writeConfig(
      id,
      brokers.mqttUrl,
      brokers.kafkaBrokers,
      // MQTT 3.1.1 has no Receive Maximum: the broker sends up to its own
      // in-flight limit (1000), far more than the bridge takes (100), so
      // messages lie unread in the socket when it shuts down. Regression: a
      // paused gate then kept the disconnect from completing, for ever.
      { drainTimeoutMs, mqtt: { maxInFlight: 100, protocolVersion: 4 } },
    );
    await createTopics(brokers.kafkaBrokers, [config.topic, config.dlq]);
    const first = new BridgeProcess(config.path);
    await first.waitForLog("MQTT subscribed");

    await brokers.kafka.kill();
    const events = makeEvents(2, 3000, 1024);
    await publishAll(brokers.mqttUrl, publications(config.mqttTopic, events));
    await first.waitForLog("Kafka produce failed", { count: 2 });
    const stopped = await first.stop();

    await brokers.kafka.restart();
    const second = new BridgeProcess(config.path);
    await second.waitForLog("MQTT subscribed");
    await readUntilAll(
      brokers.kafkaBrokers,
      config.topic,
      idsOf(events),
      READ_TIMEOUT_MS,
    );
    const { peakMb } = await second.memory();
    const secondStop = await second.stop();
    const counts = tally(
      await readAll(brokers.kafkaBrokers, config.topic),
      idsOf(events),
    );
    figures("SIGTERM during Kafka outage", {
      sent: events.length,
      received: counts.records,
      unique: counts.unique,
      duplicates: counts.duplicates,
      "exit ms": stopped.ms,
      "drain timeout ms": drainTimeoutMs,
      "peak RSS MB (second bridge)": peakMb,
      "run s": (performance.now() - began) / 1000,
    });
    assert.equal(stopped.code, 0, `exit code after SIGTERM:\n${first.tail()}`);
    assert.ok(
      stopped.ms <= drainTimeoutMs + 1500,
      `SIGTERM took ${stopped.ms} ms with a drain timeout of ${drainTimeoutMs} ms:\n${first.tail()}`,
    );
    assert.equal(secondStop.code, 0);
    assert.deepEqual(counts.missing, []);
  },
});

Deno.test({
  name: "Kafka unreachable at start: the bridge retries, then works",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const began = performance.now();
    await using brokers = (await isolatedTestBrokers())!;
    const id = uniqueName("late-kafka");
    await using config = await writeConfig(
      id,
      brokers.mqttUrl,
      brokers.kafkaBrokers,
    );
    await brokers.kafka.kill();
    const bridge = new BridgeProcess(config.path);
    const retries = await bridge.waitForLog("Kafka not reachable", {
      count: 3,
    });
    await brokers.kafka.restart();
    await bridge.waitForLog("MQTT subscribed", { timeoutMs: 90_000 });

    const events = makeEvents(3, 200);
    await publishAll(brokers.mqttUrl, publications(config.mqttTopic, events));
    await readUntilAll(
      brokers.kafkaBrokers,
      config.topic,
      idsOf(events),
      READ_TIMEOUT_MS,
    );
    const { peakMb } = await bridge.memory();
    const stopped = await bridge.stop();
    const counts = tally(
      await readAll(brokers.kafkaBrokers, config.topic),
      idsOf(events),
    );
    const attempts = bridge.find("Kafka not reachable");
    figures("Kafka unreachable at start", {
      sent: events.length,
      received: counts.records,
      unique: counts.unique,
      duplicates: counts.duplicates,
      "retry warnings": attempts.length,
      "peak RSS MB": peakMb,
      "run s": (performance.now() - began) / 1000,
    });
    assert.equal(stopped.code, 0);
    assert.deepEqual(counts.missing, []);
    assert.equal(counts.duplicates, 0);
    // Each warning names its attempt (1, 2, 3, ...) and a delay.
    retries.forEach((line, i) => {
      assert.equal(line.level, "WARN");
      assert.equal(line.properties.attempt, i + 1);
      assert.equal(typeof line.properties.delayMs, "number");
    });
  },
});

Deno.test({
  name:
    "a 2 MiB event Kafka refuses is dead-lettered truncated with its reason; later messages arrive",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const began = performance.now();
    await using brokers = (await isolatedTestBrokers())!;
    const id = uniqueName("large");
    await using config = await writeConfig(
      id,
      brokers.mqttUrl,
      brokers.kafkaBrokers,
    );
    await createTopics(brokers.kafkaBrokers, [config.topic, config.dlq]);
    const bridge = new BridgeProcess(config.path);
    await bridge.waitForLog("MQTT subscribed");

    const before = makeEvents(4, 10);
    const [large] = makeEvents(5, 1, 2 * MiB);
    const after = makeEvents(6, 10);
    const largePayload = large.payload;
    assert.equal(largePayload.byteLength, 2 * MiB);
    await publishAll(brokers.mqttUrl, [
      ...publications(config.mqttTopic, before),
      { topic: config.mqttTopic, payload: largePayload },
      ...publications(config.mqttTopic, after),
    ], { window: 1 });
    const small = idsOf([...before, ...after]);
    await readUntilAll(
      brokers.kafkaBrokers,
      config.topic,
      small,
      READ_TIMEOUT_MS,
    );
    const [dead] = await readTopics(brokers.kafkaBrokers, [config.dlq], {
      until: (read) => read.length >= 1,
    });
    const { peakMb } = await bridge.memory();
    const stopped = await bridge.stop();
    const counts = tally(
      await readAll(brokers.kafkaBrokers, config.topic),
      small,
    );
    const dlqRecords = await readAll(brokers.kafkaBrokers, config.dlq);
    figures("2 MiB record", {
      sent: before.length + 1 + after.length,
      received: counts.records,
      unique: counts.unique,
      duplicates: counts.duplicates,
      "dead-lettered": dlqRecords.length,
      "dead-letter value bytes": dead.message.value?.byteLength ?? 0,
      "peak RSS MB": peakMb,
      "run s": (performance.now() - began) / 1000,
    });
    assert.equal(stopped.code, 0);
    assert.deepEqual(counts.missing, []);
    // At least once: duplicates are allowed (and counted above), the large
    // event itself must not be in the topic.
    assert.equal(counts.unique, small.length, "the large one is not there");
    if (counts.duplicates > 0) {
      console.log(
        `[faults] 2 MiB record: bridge warnings and errors:\n${
          bridge.lines.filter((l) => l.level === "WARN" || l.level === "ERROR")
            .map((l) => `  ${l.level} ${l.message}`).join("\n")
        }`,
      );
    }
    assert.equal(dlqRecords.length, 1);
    assert.equal(header(dead.message, "dx-error"), "kafka-rejected");
    assert.match(
      header(dead.message, "dx-error-detail") ?? "",
      /MESSAGE_TOO_LARGE/,
    );
    assert.equal(
      header(dead.message, "dx-original-size"),
      String(largePayload.byteLength),
    );
    const kept = Number(header(dead.message, "dx-truncated"));
    assert.ok(kept > 0 && kept < MiB, `dx-truncated ${kept}`);
    assert.equal(dead.message.value?.byteLength, kept);
    // What is kept is the start of the original bytes.
    assert.deepEqual(
      new Uint8Array(dead.message.value!),
      largePayload.subarray(0, kept),
    );
  },
});

// ---------------------------------------------------------------------------
// Mosquitto restarts.

/**
 * Publishes one event of {@linkcode mockEvents} every `intervalMs` at QoS 1
 * over a client that reconnects by itself, keeping the ids the broker
 * acknowledged in order.
 */
class SteadyPublisher {
  readonly acked: string[] = [];
  readonly failed: unknown[] = [];
  published = 0;
  readonly #client: mqtt.MqttClient;
  readonly #topic: string;
  readonly #events: Generator<MockEventItem, void, undefined>;
  readonly #stop = new AbortController();
  readonly #running: Promise<void>;
  #outstanding = 0;

  private constructor(
    client: mqtt.MqttClient,
    topic: string,
    seed: number,
    intervalMs: number,
  ) {
    this.#client = client;
    this.#topic = topic;
    this.#events = mockEvents(seed);
    this.#running = this.#run(intervalMs);
  }

  static async start(
    url: string,
    topic: string,
    seed: number,
    intervalMs = 5,
  ): Promise<SteadyPublisher> {
    const client = await mqtt.connectAsync(url, {
      clientId: uniqueName("steady-publisher"),
      protocolVersion: 5,
      reconnectPeriod: 100,
    });
    // Connection errors during a broker restart are expected; MQTT.js
    // reconnects and resends what was not acknowledged.
    client.on("error", () => {});
    return new SteadyPublisher(client, topic, seed, intervalMs);
  }

  /** Stops publishing and waits until everything published is acknowledged. */
  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#running;
    await waitFor(
      "the publisher's last acknowledgements",
      () => this.#outstanding === 0,
      30_000,
    );
    await this.#client.endAsync();
    assert.deepEqual(this.failed, [], "every publication was acknowledged");
  }

  async #run(intervalMs: number): Promise<void> {
    while (!this.#stop.signal.aborted) {
      const { event, payload } = this.#events.next().value!;
      this.published++;
      this.#outstanding++;
      this.#client.publishAsync(this.#topic, Buffer.from(payload), { qos: 1 })
        .then(
          () => this.acked.push(event.id),
          (error) => this.failed.push(error),
        ).finally(() => this.#outstanding--);
      // Aborting the pause ends the loop at its condition.
      await abortableDelay(intervalMs, this.#stop.signal).catch(() => {});
    }
  }
}

Deno.test({
  name:
    "Mosquitto (no persistence) killed and restarted mid-stream: the bridge reconnects, resubscribes, and everything published afterwards arrives",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const began = performance.now();
    await using brokers = (await isolatedTestBrokers())!;
    const id = uniqueName("mqtt-restart");
    await using config = await writeConfig(
      id,
      brokers.mqttUrl,
      brokers.kafkaBrokers,
    );
    await createTopics(brokers.kafkaBrokers, [config.topic, config.dlq]);
    const bridge = new BridgeProcess(config.path);
    await bridge.waitForLog("MQTT subscribed");

    const publisher = await SteadyPublisher.start(
      brokers.mqttUrl,
      config.mqttTopic,
      9,
    );
    await waitFor(
      "500 acknowledged publications",
      () => publisher.acked.length >= 500,
    );
    await brokers.mosquitto.kill();
    const ackedBeforeKill = publisher.acked.length;
    await brokers.mosquitto.restart();
    // The broker lost the session: the bridge must subscribe again.
    await bridge.waitForLog("MQTT subscribed", { count: 2 });
    const cutoff = publisher.acked.length;
    await waitFor(
      "500 more acknowledged publications",
      () => publisher.acked.length >= cutoff + 500,
    );
    await publisher.stop();

    const afterwards = publisher.acked.slice(cutoff);
    await readUntilAll(
      brokers.kafkaBrokers,
      config.topic,
      afterwards,
      READ_TIMEOUT_MS,
    );
    const { peakMb } = await bridge.memory();
    const stopped = await bridge.stop();
    const records = await readAll(brokers.kafkaBrokers, config.topic);
    const counts = tally(records, afterwards);
    // What the broker lost: stored for the bridge when it was killed, or
    // published after its restart but before the bridge subscribed again
    // (MQTT drops a message nobody subscribes to).
    const lostStored = tally(records, publisher.acked.slice(0, ackedBeforeKill))
      .missing.length;
    const lostUnsubscribed = tally(
      records,
      publisher.acked.slice(ackedBeforeKill, cutoff),
    ).missing.length;
    figures("Mosquitto kill+restart, no persistence", {
      sent: publisher.acked.length,
      "sent after resubscribe": afterwards.length,
      received: counts.records,
      unique: counts.unique,
      duplicates: counts.duplicates,
      "acked before kill": ackedBeforeKill,
      "lost by the broker: stored at the kill": lostStored,
      "lost by the broker: before the resubscription": lostUnsubscribed,
      "peak RSS MB": peakMb,
      "run s": (performance.now() - began) / 1000,
    });
    assert.equal(stopped.code, 0);
    assert.deepEqual(counts.missing, []);
    const connects = bridge.find("MQTT connected");
    assert.equal(connects.length, 2);
    assert.equal(connects[1].properties.sessionPresent, false);
    assert.equal(bridge.find("has no session").length, 1);
    const attempts = bridge.find("reconnect attempt");
    assert.ok(attempts.length >= 1);
    assert.equal(attempts[0].level, "WARN");
    assert.equal(attempts[0].properties.attempt, 1);
  },
});

/**
 * A Mosquitto of this test's own, with persistence on, so that a restart
 * keeps sessions and the messages queued for them. Runs as a child process
 * on 127.0.0.1; stopped by its pid.
 */
class PersistentMosquitto implements AsyncDisposable {
  readonly port = freePort();
  readonly #dir: string;
  #child: Deno.ChildProcess | undefined;
  #log = "";

  private constructor(dir: string) {
    this.#dir = dir;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  static async start(): Promise<PersistentMosquitto> {
    const dir = await Deno.makeTempDir({ prefix: "dx-faults-mosquitto-" });
    const broker = new PersistentMosquitto(dir);
    // Mosquitto drops from root to its own user, which must write the db.
    await Deno.mkdir(`${dir}/data`);
    await Deno.chmod(dir, 0o755);
    await Deno.chmod(`${dir}/data`, 0o777);
    await Deno.writeTextFile(
      `${dir}/mosquitto.conf`,
      [
        `listener ${broker.port} 127.0.0.1`,
        "allow_anonymous true",
        "persistence true",
        `persistence_location ${dir}/data/`,
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "max_queued_messages 1000000",
        "max_queued_bytes 1073741824",
        "max_inflight_messages 1000",
        "",
      ].join("\n"),
    );
    await broker.#start();
    return broker;
  }

  /** SIGTERM (Mosquitto then saves its db), then starts again. */
  async restart(): Promise<void> {
    await this.#terminate();
    await this.#start();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#terminate();
    await Deno.remove(this.#dir, { recursive: true });
  }

  async #start(): Promise<void> {
    const child = new Deno.Command("mosquitto", {
      args: ["-c", `${this.#dir}/mosquitto.conf`],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    this.#child = child;
    // Keep reading its log so it never blocks on a full pipe.
    (async () => {
      const decoder = new TextDecoderStream();
      for await (const chunk of child.stderr.pipeThrough(decoder)) {
        this.#log = (this.#log + chunk).slice(-20_000);
      }
    })();
    await waitFor(`Mosquitto on ${this.port} to accept MQTT`, async () => {
      try {
        const probe = await mqtt.connectAsync(this.url, {
          clientId: uniqueName("probe"),
          connectTimeout: 1000,
          reconnectPeriod: 0,
        });
        await probe.endAsync();
        return true;
      } catch {
        return false; // Not listening yet.
      }
    }, 10_000);
  }

  async #terminate(): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    this.#child = undefined;
    child.kill("SIGTERM");
    const status = await child.status;
    assert.equal(status.code, 0, `Mosquitto exited badly:\n${this.#log}`);
  }
}

Deno.test({
  name: "Mosquitto with persistence restarted mid-stream: nothing is lost",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const began = performance.now();
    await using brokers = (await isolatedTestBrokers())!;
    await using mosquitto = await PersistentMosquitto.start();
    const id = uniqueName("mqtt-persist");
    await using config = await writeConfig(
      id,
      mosquitto.url,
      brokers.kafkaBrokers,
      // Small, so that messages queue at the broker for the bridge's session.
      { mqtt: { maxInFlight: 20 } },
    );
    await createTopics(brokers.kafkaBrokers, [config.topic, config.dlq]);
    const bridge = new BridgeProcess(config.path);
    await bridge.waitForLog("MQTT subscribed");

    const publisher = await SteadyPublisher.start(
      mosquitto.url,
      config.mqttTopic,
      10,
      2,
    );
    await waitFor(
      "1000 acknowledged publications",
      () => publisher.acked.length >= 1000,
    );
    await mosquitto.restart();
    await bridge.waitForLog("MQTT connected", { count: 2 });
    const restartedAt = publisher.acked.length;
    await waitFor(
      "1000 more acknowledged publications",
      () => publisher.acked.length >= restartedAt + 1000,
    );
    await publisher.stop();

    await readUntilAll(
      brokers.kafkaBrokers,
      config.topic,
      publisher.acked,
      READ_TIMEOUT_MS,
    );
    const { peakMb } = await bridge.memory();
    const stopped = await bridge.stop();
    const counts = tally(
      await readAll(brokers.kafkaBrokers, config.topic),
      publisher.acked,
    );
    figures("Mosquitto restart with persistence", {
      sent: publisher.acked.length,
      "acked before restart": restartedAt,
      received: counts.records,
      unique: counts.unique,
      duplicates: counts.duplicates,
      "peak RSS MB": peakMb,
      "run s": (performance.now() - began) / 1000,
    });
    assert.equal(stopped.code, 0);
    assert.deepEqual(counts.missing, []);
    const connects = bridge.find("MQTT connected");
    assert.equal(connects[1].properties.sessionPresent, true);
  },
});

// ---------------------------------------------------------------------------
// A dropped MQTT connection.

/**
 * A TCP relay on 127.0.0.1 in front of a broker, whose connections can be
 * cut and whose port can refuse connections for a while.
 */
class TcpProxy implements AsyncDisposable {
  readonly port: number;
  readonly #target: number;
  readonly #conns = new Set<Deno.Conn>();
  #listener: Deno.Listener | undefined;
  accepted = 0;

  constructor(target: number) {
    this.#target = target;
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.port = (listener.addr as Deno.NetAddr).port;
    this.#serve(listener);
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  /** Closes every relayed connection and refuses new ones. */
  cut(): void {
    this.#listener?.close();
    this.#listener = undefined;
    for (const conn of this.#conns) closeQuietly(conn);
    this.#conns.clear();
  }

  /** Accepts connections again, on the same port. */
  resume(): void {
    this.#serve(Deno.listen({ hostname: "127.0.0.1", port: this.port }));
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.cut();
    return Promise.resolve();
  }

  #serve(listener: Deno.Listener): void {
    this.#listener = listener;
    (async () => {
      for await (const inbound of listener) {
        this.accepted++;
        const outbound = await Deno.connect({
          hostname: "127.0.0.1",
          port: this.#target,
        });
        this.#conns.add(inbound);
        this.#conns.add(outbound);
        this.#relay(inbound, outbound);
        this.#relay(outbound, inbound);
      }
    })().catch((error) => {
      // A closed listener ends the loop; anything else is a test failure.
      if (!(error instanceof Deno.errors.BadResource)) throw error;
    });
  }

  async #relay(from: Deno.Conn, to: Deno.Conn): Promise<void> {
    const buffer = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await from.read(buffer);
        if (n === null) break;
        let written = 0;
        while (written < n) {
          written += await to.write(buffer.subarray(written, n));
        }
      }
    } catch {
      // Cut: the other direction or cut() closed the connection.
    }
    for (const conn of [from, to]) {
      this.#conns.delete(conn);
      closeQuietly(conn);
    }
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch (error) {
    // Already closed by the other direction of the relay.
    if (!(error instanceof Deno.errors.BadResource)) throw error;
  }
}

Deno.test({
  name:
    "a dropped MQTT connection is re-established with backoff, and the broker redelivers what was unacknowledged",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const began = performance.now();
    await using brokers = (await isolatedTestBrokers())!;
    await using proxy = new TcpProxy(brokers.mosquitto.port);
    const id = uniqueName("mqtt-drop");
    const initialDelayMs = 200;
    await using config = await writeConfig(
      id,
      proxy.url,
      brokers.kafkaBrokers,
      { mqtt: { maxInFlight: 200, reconnectPeriodMs: initialDelayMs } },
    );
    await createTopics(brokers.kafkaBrokers, [config.topic, config.dlq]);
    const bridge = new BridgeProcess(config.path);
    await bridge.waitForLog("MQTT subscribed");

    // With Kafka down, every message stays unacknowledged in the bridge.
    await brokers.kafka.kill();
    const events = makeEvents(7, 50);
    await publishAll(brokers.mqttUrl, publications(config.mqttTopic, events));
    await bridge.waitForLog("Kafka produce failed", { count: 2 });

    proxy.cut();
    const attempts = await bridge.waitForLog("reconnect attempt", {
      count: 4,
    });
    proxy.resume();
    const [, reconnected] = await bridge.waitForLog("MQTT connected", {
      count: 2,
    });
    await brokers.kafka.restart();
    await readUntilAll(
      brokers.kafkaBrokers,
      config.topic,
      idsOf(events),
      READ_TIMEOUT_MS,
    );
    const { peakMb } = await bridge.memory();
    const stopped = await bridge.stop();
    const counts = tally(
      await readAll(brokers.kafkaBrokers, config.topic),
      idsOf(events),
    );
    figures("MQTT connection dropped", {
      sent: events.length,
      received: counts.records,
      unique: counts.unique,
      duplicates: counts.duplicates,
      "reconnect attempts": bridge.find("reconnect attempt").length,
      "delays ms": attempts.map((a) => a.properties.delayMs).join("/"),
      "peak RSS MB": peakMb,
      "run s": (performance.now() - began) / 1000,
    });
    assert.equal(stopped.code, 0);
    assert.deepEqual(counts.missing, []);
    // The session survived the drop, and the broker sent the unacknowledged
    // messages again: each arrives twice (once from each connection).
    assert.equal(reconnected.properties.sessionPresent, true);
    assert.ok(counts.duplicates >= 1, "the broker redelivered");
    assert.equal(bridge.find("has no session").length, 0);
    // Attempts 1, 2, 3, ... each waits below a bound that doubles.
    attempts.forEach((line, i) => {
      assert.equal(line.level, "WARN");
      assert.equal(line.properties.attempt, i + 1);
      const delayMs = line.properties.delayMs as number;
      assert.ok(
        delayMs >= 0 && delayMs <= initialDelayMs * 2 ** i,
        `attempt ${i + 1} waited ${delayMs} ms`,
      );
    });
  },
});

Deno.test({
  name:
    "SIGTERM while Kafka does not answer: exits 0 soon after the drain budget, with one summary line, and loses nothing",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // Regression: the disconnect waited for kafkajs's request timeout (26 s
    // in all with a 10 s drain) and logged one error line per message.
    await using brokers = (await isolatedTestBrokers())!;
    const id = uniqueName("frozen");
    const metricsPort = await freePort();
    const drainTimeoutMs = 2000;
    await using config = await writeConfig(
      id,
      brokers.mqttUrl,
      brokers.kafkaBrokers,
      { drainTimeoutMs, metrics: { port: metricsPort } },
    );
    await createTopics(brokers.kafkaBrokers, [config.topic, config.dlq]);
    const bridge = new BridgeProcess(config.path);
    await bridge.waitForLog("MQTT subscribed");

    const kafkaPid = brokers.kafka.pid;
    Deno.kill(kafkaPid, "SIGSTOP");
    let stopped: { code: number; ms: number };
    const events = makeEvents(8, 200);
    try {
      await publishAll(brokers.mqttUrl, publications(config.mqttTopic, events));
      await waitFor(
        "200 messages in flight in the bridge",
        async () => {
          const text = await (await fetch(
            `http://127.0.0.1:${metricsPort}/metrics`,
          )).text();
          const match = text.match(
            /^dx_messages_in_flight\{direction="mqtt_to_kafka"\} (\d+)/m,
          );
          return Number(match?.[1] ?? 0) >= events.length;
        },
        30_000,
        100,
      );
      stopped = await bridge.stop("SIGTERM");
    } finally {
      Deno.kill(kafkaPid, "SIGCONT");
    }
    assert.equal(stopped.code, 0, bridge.tail());
    // The drain budget, the producer's disconnect grace (2 s), and room for
    // a loaded machine; far below kafkajs's 30 s request timeout.
    assert.ok(
      stopped.ms < drainTimeoutMs + 2000 + 8000,
      `stopped after ${stopped.ms} ms`,
    );
    assert.equal(
      bridge.find("not delivered; left unacknowledged").length,
      0,
      "no error line per message",
    );
    assert.equal(bridge.find("were not settled within").length, 1);
    figures("SIGTERM with Kafka frozen", {
      "in flight": events.length,
      "exit ms": stopped.ms,
    });

    // Nothing lost: a new bridge takes the redelivered messages.
    const again = new BridgeProcess(config.path);
    await again.waitForLog("MQTT subscribed");
    await readUntilAll(
      brokers.kafkaBrokers,
      config.topic,
      idsOf(events),
      READ_TIMEOUT_MS,
    );
    assert.equal((await again.stop()).code, 0);
  },
});

Deno.test({
  name:
    "a Kafka that accepts connections but does not answer is named at start and, under traffic, turns /readyz to 503 until it answers again; nothing lost",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using brokers = (await isolatedTestBrokers())!;
    const id = uniqueName("silent");
    const metricsPort = await freePort();
    await using config = await writeConfig(
      id,
      brokers.mqttUrl,
      brokers.kafkaBrokers,
      // Short requests: the first ones at start fail within seconds.
      { metrics: { port: metricsPort }, kafka: { requestTimeoutMs: 2000 } },
    );
    await createTopics(brokers.kafkaBrokers, [config.topic, config.dlq]);
    const kafkaPid = brokers.kafka.pid;
    const events = makeEvents(11, 100);
    let frozen = false;
    const freeze = (stop: boolean) => {
      Deno.kill(kafkaPid, stop ? "SIGSTOP" : "SIGCONT");
      frozen = stop;
    };
    let bridge: BridgeProcess | undefined;
    try {
      // At start: the connection is accepted, the answer never comes.
      freeze(true);
      bridge = new BridgeProcess(config.path);
      const [startWarning] = await bridge.waitForLog(
        "has not answered within 5 s",
        { timeoutMs: 30_000 },
      );
      assert.equal(startWarning.level, "WARN");
      assert.match(startWarning.message, /deno task brokers/);
      // Regression: a request that timed out at start stopped the bridge
      // ("Broker not connected", exit 1); it must be retried like a refused
      // connection.
      const [retry] = await bridge.waitForLog("Kafka not reachable", {
        timeoutMs: 60_000,
      });
      assert.equal(retry.properties.attempt, 1);
      assert.ok(bridge.running, "the bridge keeps trying");
      freeze(false);
      await bridge.waitForLog("MQTT subscribed");
      assert.equal((await readiness(metricsPort)).status, 200);

      // Under traffic: records wait, Kafka says nothing.
      freeze(true);
      const frozenAt = performance.now();
      await publishAll(
        brokers.mqttUrl,
        publications(config.mqttTopic, events.slice(0, 50)),
      );
      const notReadyMs = await timeUntil(
        async () => (await readiness(metricsPort)).status === 503,
        frozenAt,
        60_000,
      );
      const { reasons } = await readiness(metricsPort);
      assert.ok(
        notReadyMs !== undefined,
        `/readyz stayed 200 with Kafka not answering; log:\n${bridge.tail()}`,
      );
      assert.deepEqual(reasons, ["kafka disconnected"]);
      const [silence] = await bridge.waitForLog(
        "Kafka has acknowledged nothing",
      );
      assert.equal(silence.level, "WARN");

      const thawedAt = performance.now();
      freeze(false);
      await publishAll(
        brokers.mqttUrl,
        publications(config.mqttTopic, events.slice(50)),
      );
      const readyAgainMs = await timeUntil(
        async () => (await readiness(metricsPort)).status === 200,
        thawedAt,
        60_000,
      );
      assert.ok(
        readyAgainMs !== undefined,
        `/readyz did not answer 200 again; log:\n${bridge.tail()}`,
      );
      await bridge.waitForLog("Kafka answers again");
      const records = await readUntilAll(
        brokers.kafkaBrokers,
        config.topic,
        idsOf(events),
        READ_TIMEOUT_MS,
      );
      const { missing, ...counted } = tally(records, idsOf(events));
      assert.deepEqual(missing, []);
      const stopped = await bridge.stop("SIGTERM");
      assert.equal(stopped.code, 0, bridge.tail());
      figures("Kafka not answering", {
        sent: events.length,
        ...counted,
        "/readyz 503 after s": notReadyMs! / 1000,
        "/readyz 200 after Kafka answers s": readyAgainMs! / 1000,
      });
    } finally {
      if (frozen) freeze(false);
      if (bridge?.running) await bridge.stop("SIGKILL");
    }
  },
});
