import assert from "node:assert/strict";
import { register as globalRegistry } from "prom-client";
import {
  labelValues,
  parseSamples,
  promtoolCheckMetrics,
  promtoolGate,
  type Sample,
  valueOf,
} from "./_test_helpers.ts";
import {
  BridgeMetrics,
  type BridgeMetricsOptions,
  DEAD_LETTER_REASONS,
  type Direction,
  type FailureReason,
  RETRY_OPERATIONS,
} from "./metrics.ts";

async function samplesOf(metrics: BridgeMetrics): Promise<Sample[]> {
  return parseSamples(await metrics.metrics());
}

/** A BridgeMetrics with something in every metric. */
function populated(options: Partial<BridgeMetricsOptions> = {}) {
  const metrics = new BridgeMetrics({
    routes: ["telemetry", "alert"],
    kafkaToMqttRoutes: ["commands"],
    ...options,
  });
  for (let i = 0; i < 3; i++) metrics.received("mqtt_to_kafka");
  metrics.received("kafka_to_mqtt");
  metrics.delivered("mqtt_to_kafka", "telemetry", 0.003);
  metrics.delivered("mqtt_to_kafka", "default", 0.2);
  metrics.delivered("kafka_to_mqtt", "commands", 0.05);
  metrics.deadLettered("mqtt_to_kafka", "malformed-json");
  metrics.failed("mqtt_to_kafka", "shutdown");
  metrics.failed("mqtt_to_kafka", "from-a-message" as FailureReason);
  metrics.setInFlight("mqtt_to_kafka", 7);
  metrics.setConnected("mqtt", true);
  metrics.setConnected("kafka", true);
  metrics.setBreakerState("half-open");
  metrics.retried("kafka_produce");
  metrics.retried("kafka_produce");
  metrics.retried("mqtt_connect");
  return metrics;
}

Deno.test("BridgeMetrics counts messages per direction, route and reason", async () => {
  const samples = await samplesOf(populated());

  const m2k = { direction: "mqtt_to_kafka" };
  const k2m = { direction: "kafka_to_mqtt" };
  assert.equal(valueOf(samples, "dx_messages_received_total", m2k), 3);
  assert.equal(valueOf(samples, "dx_messages_received_total", k2m), 1);
  assert.equal(
    valueOf(samples, "dx_messages_delivered_total", {
      ...m2k,
      route: "telemetry",
    }),
    1,
  );
  assert.equal(
    valueOf(samples, "dx_messages_delivered_total", {
      ...m2k,
      route: "default",
    }),
    1,
  );
  assert.equal(
    valueOf(samples, "dx_messages_delivered_total", {
      ...k2m,
      route: "commands",
    }),
    1,
  );
  assert.equal(
    valueOf(samples, "dx_messages_dead_lettered_total", {
      ...m2k,
      reason: "malformed-json",
    }),
    1,
  );
  const failed = (labels: Record<string, string>, reason: string) =>
    valueOf(samples, "dx_messages_failed_total", { ...labels, reason });
  assert.equal(failed(m2k, "shutdown"), 1);
  assert.equal(failed(m2k, "other"), 1);
  assert.equal(failed(m2k, "dead-letter-rejected"), 0);
  assert.equal(failed(k2m, "shutdown"), 0);
  assert.equal(valueOf(samples, "dx_messages_in_flight", m2k), 7);
  assert.equal(valueOf(samples, "dx_broker_connected", { broker: "mqtt" }), 1);
  assert.equal(valueOf(samples, "dx_circuit_breaker_state"), 1);
  assert.equal(
    valueOf(samples, "dx_retries_total", { operation: "kafka_produce" }),
    2,
  );
  assert.equal(
    valueOf(samples, "dx_retries_total", { operation: "mqtt_connect" }),
    1,
  );
  assert.equal(valueOf(samples, "dx_delivery_latency_seconds_count", m2k), 2);
  assert.equal(valueOf(samples, "dx_delivery_latency_seconds_sum", m2k), 0.203);
});

Deno.test("BridgeMetrics snapshot() holds the same values as the exposition", async () => {
  const metrics = populated();
  const snapshot = metrics.snapshot();

  assert.deepEqual(snapshot.received, { mqtt_to_kafka: 3, kafka_to_mqtt: 1 });
  assert.deepEqual(snapshot.delivered, {
    mqtt_to_kafka: { telemetry: 1, alert: 0, default: 1 },
    kafka_to_mqtt: { commands: 1, default: 0 },
  });
  assert.equal(snapshot.deadLettered.mqtt_to_kafka["malformed-json"], 1);
  assert.equal(snapshot.deadLettered.mqtt_to_kafka.other, 0);
  assert.deepEqual(snapshot.failed, { mqtt_to_kafka: 2, kafka_to_mqtt: 0 });
  assert.deepEqual(snapshot.inFlight, { mqtt_to_kafka: 7, kafka_to_mqtt: 0 });
  assert.deepEqual(snapshot.latency.kafka_to_mqtt, {
    count: 1,
    sumSeconds: 0.05,
  });
  assert.deepEqual(snapshot.connected, { mqtt: true, kafka: true });
  assert.equal(snapshot.breakerState, "half-open");
  assert.deepEqual(snapshot.retries, {
    kafka_produce: 2,
    kafka_connect: 0,
    mqtt_connect: 1,
    kafka_nack: 0,
  });

  // Every counter of the exposition agrees with the snapshot. (A second
  // snapshot: the assertions above narrowed the type of the first.)
  const again = metrics.snapshot();
  const samples = await samplesOf(metrics);
  for (const sample of samples) {
    const direction = sample.labels.direction as Direction;
    if (sample.name === "dx_messages_delivered_total") {
      assert.equal(
        again.delivered[direction][sample.labels.route],
        sample.value,
      );
    } else if (sample.name === "dx_messages_dead_lettered_total") {
      assert.equal(
        again.deadLettered[direction][sample.labels.reason],
        sample.value,
      );
    }
  }
});

Deno.test("BridgeMetrics snapshot() is a copy", () => {
  const metrics = new BridgeMetrics({ routes: ["telemetry"] });
  const snapshot = metrics.snapshot();
  snapshot.received.mqtt_to_kafka = 99;
  snapshot.delivered.mqtt_to_kafka.telemetry = 99;
  metrics.received("mqtt_to_kafka");

  assert.equal(metrics.snapshot().received.mqtt_to_kafka, 1);
  assert.equal(metrics.snapshot().delivered.mqtt_to_kafka.telemetry, 0);
});

Deno.test("BridgeMetrics creates every known series at 0", async () => {
  const metrics = new BridgeMetrics({ routes: ["telemetry", "alert"] });
  const samples = await samplesOf(metrics);

  assert.deepEqual(
    labelValues(samples, "dx_messages_received_total", "direction"),
    ["kafka_to_mqtt", "mqtt_to_kafka"],
  );
  assert.equal(
    valueOf(samples, "dx_messages_delivered_total", {
      direction: "mqtt_to_kafka",
      route: "alert",
    }),
    0,
  );
  assert.equal(
    valueOf(samples, "dx_messages_delivered_total", {
      direction: "kafka_to_mqtt",
      route: "default",
    }),
    0,
  );
  assert.deepEqual(
    labelValues(samples, "dx_messages_dead_lettered_total", "reason"),
    [...DEAD_LETTER_REASONS].sort(),
  );
  assert.deepEqual(
    labelValues(samples, "dx_retries_total", "operation"),
    [...RETRY_OPERATIONS].sort(),
  );
  assert.equal(valueOf(samples, "dx_broker_connected", { broker: "kafka" }), 0);
  assert.equal(valueOf(samples, "dx_circuit_breaker_state"), 0);
  assert.equal(
    valueOf(samples, "dx_delivery_latency_seconds_count", {
      direction: "kafka_to_mqtt",
    }),
    0,
  );
  assert.ok(samples.every((sample) => sample.value === 0));
});

Deno.test("BridgeMetrics records a route or reason outside the known sets as other", async () => {
  const metrics = new BridgeMetrics({
    routes: ["telemetry"],
    kafkaToMqttRoutes: ["commands"],
  });
  // Content an event could carry, and labels of the other direction.
  for (
    const route of [
      "../../etc/passwd",
      "__proto__",
      "constructor",
      "Telemetry",
      "",
      "commands",
      'x"} 1\ninjected 2',
    ]
  ) {
    metrics.delivered("mqtt_to_kafka", route);
  }
  metrics.delivered("mqtt_to_kafka", "dead-letter");
  metrics.delivered("kafka_to_mqtt", "telemetry");
  metrics.deadLettered("mqtt_to_kafka", "record-rejected");
  metrics.deadLettered("mqtt_to_kafka", "hasOwnProperty");
  metrics.deadLettered("kafka_to_mqtt", "topic-template");

  const samples = await samplesOf(metrics);
  assert.deepEqual(
    labelValues(samples, "dx_messages_delivered_total", "route"),
    ["commands", "dead-letter", "default", "other", "telemetry"],
  );
  const m2k = { direction: "mqtt_to_kafka" };
  assert.equal(
    valueOf(samples, "dx_messages_delivered_total", { ...m2k, route: "other" }),
    7,
  );
  assert.equal(
    valueOf(samples, "dx_messages_delivered_total", {
      direction: "kafka_to_mqtt",
      route: "other",
    }),
    1,
  );
  assert.equal(
    valueOf(samples, "dx_messages_dead_lettered_total", {
      ...m2k,
      reason: "other",
    }),
    2,
  );
  assert.equal(
    valueOf(samples, "dx_messages_dead_lettered_total", {
      direction: "kafka_to_mqtt",
      reason: "topic-template",
    }),
    1,
  );
  assert.deepEqual(
    labelValues(samples, "dx_messages_dead_lettered_total", "reason"),
    [...DEAD_LETTER_REASONS].sort(),
  );
  assert.equal(metrics.snapshot().delivered.mqtt_to_kafka.other, 7);
});

Deno.test("BridgeMetrics observes latency in the 1 ms to 10 s buckets", async () => {
  const metrics = new BridgeMetrics({ routes: [] });
  metrics.delivered("mqtt_to_kafka", "default", 0.003);
  metrics.delivered("mqtt_to_kafka", "default", 12);
  metrics.delivered("mqtt_to_kafka", "default", -0.5); // clock stepped back
  metrics.delivered("mqtt_to_kafka", "default"); // no latency known

  const samples = await samplesOf(metrics);
  const bucket = (le: string) =>
    valueOf(samples, "dx_delivery_latency_seconds_bucket", {
      direction: "mqtt_to_kafka",
      le,
    });
  assert.equal(bucket("0.001"), 1);
  assert.equal(bucket("0.0025"), 1);
  assert.equal(bucket("0.005"), 2);
  assert.equal(bucket("10"), 2);
  assert.equal(bucket("+Inf"), 3);
  assert.equal(
    valueOf(samples, "dx_messages_delivered_total", {
      direction: "mqtt_to_kafka",
      route: "default",
    }),
    4,
  );
  assert.deepEqual(metrics.snapshot().latency.mqtt_to_kafka, {
    count: 3,
    sumSeconds: 12.003,
  });
});

Deno.test("BridgeMetrics rejects a latency that is not a finite number, counting nothing", () => {
  const metrics = new BridgeMetrics({ routes: [] });
  for (const latency of [NaN, Infinity]) {
    assert.throws(
      () => metrics.delivered("mqtt_to_kafka", "default", latency),
      (error: unknown) =>
        error instanceof RangeError &&
        error.message.includes("latencySeconds") &&
        error.message.includes(String(latency)),
    );
  }
  assert.equal(metrics.snapshot().delivered.mqtt_to_kafka.default, 0);
  assert.equal(metrics.snapshot().latency.mqtt_to_kafka.count, 0);
});

Deno.test("BridgeMetrics rejects a direction, broker, operation or state outside its type", () => {
  const metrics = new BridgeMetrics({ routes: [] });
  const calls: Array<[string, () => void]> = [
    ["direction", () => metrics.received("sideways" as Direction)],
    ["direction", () => metrics.failed("" as Direction)],
    ["direction", () => metrics.deadLettered("up" as Direction, "x")],
    ["broker", () => metrics.setConnected("redis" as "mqtt", true)],
    ["kafka_produce", () => metrics.retried("sleep" as "kafka_nack")],
    ["half-open", () => metrics.setBreakerState("ajar" as "open")],
    ["half-open", () => metrics.setBreakerState("toString" as "open")],
  ];
  for (const [mention, call] of calls) {
    assert.throws(
      call,
      (error: unknown) =>
        error instanceof TypeError && error.message.includes(mention),
    );
  }
  assert.throws(
    () => metrics.setInFlight("mqtt_to_kafka", -1),
    RangeError,
  );
  assert.throws(
    () => metrics.setInFlight("mqtt_to_kafka", 1.5),
    RangeError,
  );
  const snapshot = metrics.snapshot();
  assert.equal(snapshot.breakerState, "closed");
  assert.deepEqual(snapshot.received, { mqtt_to_kafka: 0, kafka_to_mqtt: 0 });
});

Deno.test("BridgeMetrics rejects route lists that are not arrays of non-empty strings", () => {
  for (
    const options of [
      undefined,
      {},
      { routes: "telemetry" },
      { routes: [""] },
      { routes: [1] },
      { routes: [], kafkaToMqttRoutes: [null] },
    ]
  ) {
    assert.throws(
      () => new BridgeMetrics(options as unknown as BridgeMetricsOptions),
      (error: unknown) =>
        error instanceof TypeError &&
        error.message.includes("array of non-empty route labels"),
      JSON.stringify(options),
    );
  }
});

Deno.test("Two BridgeMetrics do not share series, nor touch the global registry", async () => {
  const before = await globalRegistry.metrics();
  const first = new BridgeMetrics({ routes: ["telemetry"] });
  const second = new BridgeMetrics({ routes: ["alert"] });
  first.received("mqtt_to_kafka");
  first.delivered("mqtt_to_kafka", "telemetry", 0.01);

  const firstSamples = await samplesOf(first);
  const secondSamples = await samplesOf(second);
  assert.notEqual(first.registry, second.registry);
  assert.equal(
    valueOf(firstSamples, "dx_messages_received_total", {
      direction: "mqtt_to_kafka",
    }),
    1,
  );
  assert.ok(secondSamples.every((sample) => sample.value === 0));
  assert.deepEqual(
    labelValues(secondSamples, "dx_messages_delivered_total", "route"),
    ["alert", "default"],
  );
  assert.equal(await globalRegistry.metrics(), before);
  assert.equal(
    globalRegistry.getSingleMetric("dx_messages_received_total"),
    undefined,
  );
});

Deno.test("BridgeMetrics readiness() names a stop, the disconnected brokers and a breaker that is not closed", () => {
  const metrics = new BridgeMetrics({ routes: [] });
  assert.deepEqual(metrics.readiness(), {
    ready: false,
    reasons: ["mqtt disconnected", "kafka disconnected"],
  });

  metrics.setConnected("mqtt", true);
  metrics.setConnected("kafka", true);
  assert.deepEqual(metrics.readiness(), { ready: true, reasons: [] });

  metrics.setBreakerState("half-open");
  assert.deepEqual(metrics.readiness(), {
    ready: false,
    reasons: ["circuit breaker half-open"],
  });
  metrics.setBreakerState("closed");
  assert.deepEqual(metrics.readiness(), { ready: true, reasons: [] });
  metrics.setBreakerState("open");
  metrics.setConnected("kafka", false);
  assert.deepEqual(metrics.readiness(), {
    ready: false,
    reasons: ["kafka disconnected", "circuit breaker open"],
  });
  metrics.setStopping();
  assert.deepEqual(metrics.readiness().reasons, [
    "stopping",
    "kafka disconnected",
    "circuit breaker open",
  ]);
});

Deno.test("dx_circuit_breaker_state says what its values mean", async () => {
  const metrics = new BridgeMetrics({ routes: [] });
  const text = await metrics.metrics();
  assert.match(
    text,
    /^# HELP dx_circuit_breaker_state .*0 closed, 1 half-open, 2 open/m,
  );
  for (
    const [state, value] of [["open", 2], ["half-open", 1], [
      "closed",
      0,
    ]] as const
  ) {
    metrics.setBreakerState(state);
    assert.equal(
      valueOf(await samplesOf(metrics), "dx_circuit_breaker_state"),
      value,
    );
  }
});

Deno.test("BridgeMetrics adds process metrics only when asked", async () => {
  const plain = await samplesOf(new BridgeMetrics({ routes: [] }));
  assert.ok(plain.every((sample) => sample.name.startsWith("dx_")));

  const metrics = new BridgeMetrics({ routes: [], processMetrics: true });
  const samples = await samplesOf(metrics);
  const names = new Set(samples.map((sample) => sample.name));
  for (
    const name of [
      "process_cpu_user_seconds_total",
      "process_start_time_seconds",
      "process_resident_memory_bytes",
      "nodejs_heap_size_used_bytes",
    ]
  ) {
    assert.ok(names.has(name), `${name} is exposed`);
  }
  // promtool rejects these gauges for their _total suffix.
  assert.ok(!names.has("nodejs_active_handles_total"));
  assert.ok(!names.has("nodejs_active_resources_total"));
  // CPU is counted from construction on, so it may still read 0 here; the
  // values read from /proc read 0 unless the process runs with --allow-all.
  // The start time is rounded to the second, so it may be up to 0.5 s ahead.
  const started = valueOf(samples, "process_start_time_seconds")!;
  assert.ok(started > 0 && started <= Date.now() / 1000 + 1, String(started));
  assert.ok(valueOf(samples, "nodejs_heap_size_used_bytes")! > 0);
});

const promtool = promtoolGate("the promtool checks of the exposition");

for (const processMetrics of [false, true]) {
  Deno.test({
    name: `promtool check metrics is silent on a populated BridgeMetrics${
      processMetrics ? " with process metrics" : ""
    }`,
    ignore: promtool.ignore,
    fn: async () => {
      promtool.assertAvailable();
      const text = await populated({ processMetrics }).metrics();
      const result = await promtoolCheckMetrics(text);
      assert.equal(result.output, "", "promtool says nothing");
      assert.equal(result.code, 0);
    },
  });
}

Deno.test({
  name: "promtool check metrics finds fault with a misnamed counter",
  ignore: promtool.ignore,
  fn: async () => {
    promtool.assertAvailable();
    const result = await promtoolCheckMetrics(
      "# HELP dx_messages counted\n# TYPE dx_messages counter\ndx_messages 1\n",
    );
    assert.notEqual(result.code, 0);
    assert.match(result.output, /_total/);
  },
});
