/**
 * The bridge's Prometheus metrics, on a registry of their own, with label
 * sets fixed at construction so that message content can never create a
 * series.
 *
 * @module
 */
import {
  collectDefaultMetrics,
  Counter,
  Gauge,
  Histogram,
  Registry,
} from "prom-client";
import type { CloudEventErrorCode } from "../cloudevents/error.ts";
import type { BreakerState } from "../kafka/_breaker.ts";

/**
 * Which way a message travels through the bridge.
 *
 * @example Count a message in the direction it travels
 * ```ts
 * import { BridgeMetrics, type Direction } from "@dataexchange/streams/metrics";
 *
 * const metrics = new BridgeMetrics({ routes: ["telemetry"] });
 * const direction: Direction = "kafka_to_mqtt";
 * metrics.received(direction);
 * console.log(metrics.snapshot().received); // { mqtt_to_kafka: 0, kafka_to_mqtt: 1 }
 * ```
 */
export type Direction = "mqtt_to_kafka" | "kafka_to_mqtt";

/**
 * A broker the bridge connects to.
 *
 * @example Report each broker's connection
 * ```ts
 * import { BridgeMetrics, type Broker } from "@dataexchange/streams/metrics";
 *
 * const metrics = new BridgeMetrics({ routes: [] });
 * function onConnection(broker: Broker, up: boolean): void {
 *   metrics.setConnected(broker, up);
 * }
 * onConnection("mqtt", true);
 * onConnection("kafka", false);
 * console.log(metrics.readiness().reasons); // [ "kafka disconnected" ]
 * ```
 */
export type Broker = "mqtt" | "kafka";

// One breaker state type for the whole package: the Kafka sink's.
export type { BreakerState };

/**
 * An operation that is retried with backoff.
 *
 * @example Count the retries of a connection
 * ```ts
 * import {
 *   BridgeMetrics,
 *   type RetryOperation,
 * } from "@dataexchange/streams/metrics";
 *
 * const metrics = new BridgeMetrics({ routes: [] });
 * const operation: RetryOperation = "mqtt_connect";
 * metrics.retried(operation);
 * metrics.retried(operation);
 * console.log(metrics.snapshot().retries.mqtt_connect); // 2
 * ```
 */
export type RetryOperation =
  | "kafka_produce"
  | "kafka_connect"
  | "mqtt_connect"
  | "kafka_nack";

/**
 * Why a message was left unacknowledged at its source for redelivery:
 *
 * - `"shutdown"`: the bridge stopped before Kafka or the MQTT broker
 *   confirmed it (the drain timeout ran out);
 * - `"dead-letter-rejected"`: it was bound for the dead-letter topic and
 *   Kafka refused that record too;
 * - `"other"`: any other error; the log line at error level says which.
 *
 * @example Tell shutdown leftovers from real failures
 * ```ts
 * import {
 *   BridgeMetrics,
 *   type FailureReason,
 * } from "@dataexchange/streams/metrics";
 *
 * const metrics = new BridgeMetrics({ routes: [] });
 * const reason: FailureReason = "shutdown";
 * metrics.failed("mqtt_to_kafka", reason);
 * console.log(metrics.snapshot().failed.mqtt_to_kafka); // 1
 * ```
 */
export type FailureReason = "shutdown" | "dead-letter-rejected" | "other";

/**
 * Every failure reason label, `"other"` last.
 *
 * @example List the label values of dx_messages_failed_total
 * ```ts
 * import { FAILURE_REASONS } from "@dataexchange/streams/metrics";
 *
 * console.log(FAILURE_REASONS.join(", ")); // shutdown, dead-letter-rejected, other
 * ```
 */
export const FAILURE_REASONS: readonly FailureReason[] = Object.freeze([
  "shutdown",
  "dead-letter-rejected",
  "other",
]);

/**
 * Why a message went to the dead-letter topic: the `dx-error` codes. They
 * are the {@linkcode CloudEventErrorCode} values, then the bridge's own
 * codes; any other code is counted as `"other"`.
 *
 * @example Count dead letters by their dx-error code
 * ```ts
 * import {
 *   BridgeMetrics,
 *   type DeadLetterReason,
 * } from "@dataexchange/streams/metrics";
 *
 * const metrics = new BridgeMetrics({ routes: [] });
 * const reason: DeadLetterReason = "malformed-json";
 * metrics.deadLettered("mqtt_to_kafka", reason);
 * metrics.deadLettered("mqtt_to_kafka", "no-such-reason"); // counted as "other"
 * const counts = metrics.snapshot().deadLettered.mqtt_to_kafka;
 * console.log(counts["malformed-json"], counts.other); // 1 1
 * ```
 */
export type DeadLetterReason =
  | CloudEventErrorCode
  | "kafka-rejected"
  | "topic-missing"
  | "encode-failed"
  | "topic-template"
  | "processing-failed"
  | "message-too-large"
  | "publish-rejected"
  | "publish-failed"
  | "other";

/**
 * Whether the bridge can take traffic, and if not, why.
 *
 * @example Answer a readiness probe
 * ```ts
 * import { BridgeMetrics, type Readiness } from "@dataexchange/streams/metrics";
 *
 * function probe(readiness: Readiness): Response {
 *   return Response.json(readiness, { status: readiness.ready ? 200 : 503 });
 * }
 *
 * const metrics = new BridgeMetrics({ routes: [] });
 * metrics.setConnected("mqtt", true);
 * const response = probe(metrics.readiness());
 * console.log(response.status, await response.json()); // 503 { ready: false, reasons: [ "kafka disconnected" ] }
 * ```
 */
export interface Readiness {
  /** `true` when the bridge can take traffic. */
  ready: boolean;
  /** Why it cannot, such as `"mqtt disconnected"`; empty when ready. */
  reasons: string[];
}

/**
 * The label value of anything outside the known label sets.
 *
 * @example Unknown routes share one series
 * ```ts
 * import { BridgeMetrics, OTHER_LABEL } from "@dataexchange/streams/metrics";
 *
 * const metrics = new BridgeMetrics({ routes: ["telemetry"] });
 * metrics.delivered("mqtt_to_kafka", "from-a-message", 0.01);
 * console.log(metrics.snapshot().delivered.mqtt_to_kafka[OTHER_LABEL]); // 1
 * ```
 */
export const OTHER_LABEL = "other";

/**
 * The route label of events that match no configured classification.
 *
 * @example Deliveries of unclassified events
 * ```ts
 * import { DEFAULT_ROUTE } from "@dataexchange/streams/cloudevents";
 * import {
 *   BridgeMetrics,
 *   DEFAULT_ROUTE_LABEL,
 * } from "@dataexchange/streams/metrics";
 *
 * const metrics = new BridgeMetrics({ routes: ["telemetry"] });
 * metrics.delivered("mqtt_to_kafka", DEFAULT_ROUTE, 0.002); // the router's label
 * console.log(metrics.snapshot().delivered.mqtt_to_kafka[DEFAULT_ROUTE_LABEL]); // 1
 * ```
 */
export const DEFAULT_ROUTE_LABEL = "default";

/**
 * The route label of deliveries to the dead-letter topic, for callers that
 * count those as deliveries too. The bridge does not: it counts them with
 * {@linkcode BridgeMetrics.deadLettered}, so this series is not created at 0.
 *
 * @example Count dead-letter writes as deliveries in your own pipeline
 * ```ts
 * import {
 *   BridgeMetrics,
 *   DEAD_LETTER_ROUTE_LABEL,
 * } from "@dataexchange/streams/metrics";
 *
 * const metrics = new BridgeMetrics({ routes: [] });
 * metrics.delivered("kafka_to_mqtt", DEAD_LETTER_ROUTE_LABEL, 0.005);
 * console.log(metrics.snapshot().delivered.kafka_to_mqtt["dead-letter"]); // 1
 * ```
 */
export const DEAD_LETTER_ROUTE_LABEL = "dead-letter";

/**
 * Every direction, in a stable order.
 *
 * @example Messages in flight, both ways
 * ```ts
 * import { BridgeMetrics, DIRECTIONS } from "@dataexchange/streams/metrics";
 *
 * const metrics = new BridgeMetrics({ routes: [] });
 * metrics.setInFlight("mqtt_to_kafka", 12);
 * const { inFlight } = metrics.snapshot();
 * const total = DIRECTIONS.reduce((sum, direction) => sum + inFlight[direction], 0);
 * console.log(total); // 12
 * ```
 */
export const DIRECTIONS: readonly Direction[] = Object.freeze([
  "mqtt_to_kafka",
  "kafka_to_mqtt",
]);

/**
 * Every broker, in a stable order.
 *
 * @example Mark every broker down at shutdown
 * ```ts
 * import { BridgeMetrics, BROKERS } from "@dataexchange/streams/metrics";
 *
 * const metrics = new BridgeMetrics({ routes: [] });
 * for (const broker of BROKERS) metrics.setConnected(broker, false);
 * console.log(metrics.snapshot().connected); // { mqtt: false, kafka: false }
 * ```
 */
export const BROKERS: readonly Broker[] = Object.freeze(["mqtt", "kafka"]);

/**
 * Every retried operation, in a stable order.
 *
 * @example The total of retries
 * ```ts
 * import {
 *   BridgeMetrics,
 *   RETRY_OPERATIONS,
 * } from "@dataexchange/streams/metrics";
 *
 * const metrics = new BridgeMetrics({ routes: [] });
 * metrics.retried("kafka_produce");
 * const { retries } = metrics.snapshot();
 * console.log(RETRY_OPERATIONS.reduce((sum, op) => sum + retries[op], 0)); // 1
 * ```
 */
export const RETRY_OPERATIONS: readonly RetryOperation[] = Object.freeze([
  "kafka_produce",
  "kafka_connect",
  "mqtt_connect",
  "kafka_nack",
]);

// Fails to compile when a CloudEventErrorCode is added and not made a reason.
type Unlisted = Exclude<CloudEventErrorCode, DeadLetterReason>;
const everyCodeListed: [Unlisted] extends [never] ? true : false = true;
void everyCodeListed;

// A record, so that the compiler checks every reason is listed once.
const REASONS: Readonly<Record<DeadLetterReason, true>> = {
  "empty-payload": true,
  "malformed-json": true,
  "not-an-object": true,
  "missing-attribute": true,
  "invalid-attribute": true,
  "unsupported-specversion": true,
  "invalid-extension-name": true,
  "invalid-data": true,
  "invalid-encoding": true,
  "unsupported-format": true,
  "kafka-rejected": true,
  "topic-missing": true,
  "encode-failed": true,
  "topic-template": true,
  "processing-failed": true,
  "message-too-large": true,
  "publish-rejected": true,
  "publish-failed": true,
  "other": true,
};

/**
 * Every dead-letter reason label, `"other"` last.
 *
 * @example Tell a known dx-error code from an unknown one
 * ```ts
 * import {
 *   DEAD_LETTER_REASONS,
 *   type DeadLetterReason,
 * } from "@dataexchange/streams/metrics";
 *
 * function isKnownReason(code: string): code is DeadLetterReason {
 *   return (DEAD_LETTER_REASONS as readonly string[]).includes(code);
 * }
 * console.log(isKnownReason("kafka-rejected"), isKnownReason("oops")); // true false
 * ```
 */
export const DEAD_LETTER_REASONS: readonly DeadLetterReason[] = Object.freeze(
  Object.keys(REASONS) as DeadLetterReason[],
);

/**
 * The buckets of `dx_delivery_latency_seconds`, in seconds: 1 ms to 10 s in
 * 1-2.5-5 steps.
 *
 * @example The bucket a latency falls in
 * ```ts
 * import { LATENCY_BUCKETS_SECONDS } from "@dataexchange/streams/metrics";
 *
 * const latency = 0.03;
 * const bucket = LATENCY_BUCKETS_SECONDS.find((bound) => latency <= bound);
 * console.log(bucket); // 0.05
 * ```
 */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = Object.freeze([
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
]);

const BREAKER_VALUES: Readonly<Record<BreakerState, number>> = Object.freeze({
  closed: 0,
  "half-open": 1,
  open: 2,
});

/**
 * prom-client's default metrics that promtool rejects ("non-counter metrics
 * should not have _total suffix"); each repeats the sum of the gauge of the
 * same name without `_total`.
 */
const LINT_FAILING_DEFAULTS = [
  "nodejs_active_handles_total",
  "nodejs_active_requests_total",
  "nodejs_active_resources_total",
];

/**
 * Options of the {@linkcode BridgeMetrics} constructor.
 *
 * @example Labels from the bridge's configuration
 * ```ts
 * import { parseConfig } from "@dataexchange/streams/bridge";
 * import {
 *   BridgeMetrics,
 *   type BridgeMetricsOptions,
 * } from "@dataexchange/streams/metrics";
 *
 * const config = parseConfig({});
 * const options: BridgeMetricsOptions = {
 *   routes: Object.keys(config.routes),
 *   kafkaToMqttRoutes: config.kafkaToMqtt.map((_, index) => `route-${index}`),
 * };
 * const metrics = new BridgeMetrics(options);
 * console.log(Object.keys(metrics.snapshot().delivered.mqtt_to_kafka)); // [ "telemetry", "alert", "default" ]
 * ```
 */
export interface BridgeMetricsOptions {
  /**
   * Route labels of MQTT → Kafka deliveries: the classification keys of the
   * configuration (`Object.keys(config.routes)`). `"default"` and
   * `"dead-letter"` are always known. A key named `"other"` works, but shares
   * its series with unknown labels.
   */
  routes: readonly string[];
  /**
   * Route labels of Kafka → MQTT deliveries, such as one per `kafkaToMqtt`
   * route. `"default"` and `"dead-letter"` are always known. Default none.
   */
  kafkaToMqttRoutes?: readonly string[];
  /**
   * Also register prom-client's default process metrics (`process_*`,
   * `nodejs_*`) on this registry. Under Deno, the ones read from `/proc`
   * (memory, open file descriptors) read 0 unless the process runs with
   * `--allow-all`. Enable it on one instance per process only: each
   * instance starts its own event-loop monitor. Default `false`.
   */
  processMetrics?: boolean;
}

/**
 * The values of a {@linkcode BridgeMetrics}, as plain data.
 *
 * @example Log a summary line every minute, without Prometheus
 * ```ts
 * import {
 *   BridgeMetrics,
 *   type BridgeMetricsSnapshot,
 * } from "@dataexchange/streams/metrics";
 *
 * function summary(snapshot: BridgeMetricsSnapshot): string {
 *   const { received, failed, connected } = snapshot;
 *   return `received ${received.mqtt_to_kafka}, failed ${failed.mqtt_to_kafka}, ` +
 *     `mqtt ${connected.mqtt ? "up" : "down"}`;
 * }
 *
 * const metrics = new BridgeMetrics({ routes: [] });
 * metrics.received("mqtt_to_kafka");
 * console.log(summary(metrics.snapshot())); // received 1, failed 0, mqtt down
 * ```
 */
export interface BridgeMetricsSnapshot {
  /** Messages received, per direction. */
  received: Record<Direction, number>;
  /** Messages delivered, per direction and route label. */
  delivered: Record<Direction, Record<string, number>>;
  /** Messages written to the dead-letter topic, per direction and reason. */
  deadLettered: Record<Direction, Record<string, number>>;
  /** Messages left unacknowledged for redelivery, per direction. */
  failed: Record<Direction, number>;
  /** Messages received and not yet settled, per direction. */
  inFlight: Record<Direction, number>;
  /** Delivery latencies observed, per direction: how many and their sum. */
  latency: Record<Direction, { count: number; sumSeconds: number }>;
  /** Whether each broker is connected. */
  connected: Record<Broker, boolean>;
  /** The circuit breaker's state. */
  breakerState: BreakerState;
  /** Retries, per operation. */
  retries: Record<RetryOperation, number>;
}

/**
 * The bridge's metrics on a prom-client `Registry` of their own (never the
 * global one, so an application that embeds the bridge keeps its own
 * metrics apart):
 *
 * - `dx_messages_received_total{direction}`
 * - `dx_messages_delivered_total{direction, route}`
 * - `dx_messages_dead_lettered_total{direction, reason}`
 * - `dx_messages_failed_total{direction, reason}`
 * - `dx_delivery_latency_seconds{direction}` (histogram, 1 ms to 10 s)
 * - `dx_messages_in_flight{direction}`
 * - `dx_broker_connected{broker}` (0 or 1)
 * - `dx_circuit_breaker_state` (0 closed, 1 half-open, 2 open)
 * - `dx_retries_total{operation}`
 *
 * Label sets are bounded: routes are fixed at construction from the
 * configuration, reasons are the `dx-error` codes, and any other route or
 * reason is recorded as `"other"`. Every known series exists from the start
 * with the value 0, so rates and alerts work before the first message.
 *
 * The recording methods are cheap and synchronous. Those that take a closed
 * set (direction, broker, operation, breaker state) throw `TypeError` for a
 * value outside it, which only a cast can produce.
 *
 * @example Count a delivery and read it back
 * ```ts
 * import { BridgeMetrics } from "./metrics.ts";
 *
 * const metrics = new BridgeMetrics({ routes: ["telemetry", "alert"] });
 * metrics.received("mqtt_to_kafka");
 * metrics.delivered("mqtt_to_kafka", "telemetry", 0.004);
 * metrics.deadLettered("mqtt_to_kafka", "malformed-json");
 * console.log(metrics.snapshot().delivered.mqtt_to_kafka.telemetry); // 1
 * console.log((await metrics.metrics()).includes("dx_messages_received_total")); // true
 * ```
 */
export class BridgeMetrics {
  /**
   * The prom-client `Registry` that holds these metrics, and nothing else
   * unless the application adds to it; serve it yourself with
   * `registry.metrics()` if {@linkcode serveHealth} does not fit.
   *
   * @internal This is public API, not an internal field: the tag only stops
   * `deno doc --lint` from requiring this package to document `Registry`,
   * which belongs to the `prom-client` package.
   */
  readonly registry: Registry;

  #routes: Readonly<Record<Direction, ReadonlySet<string>>>;
  #reasons: ReadonlySet<string> = new Set(DEAD_LETTER_REASONS);

  #receivedTotal: Counter<"direction">;
  #deliveredTotal: Counter<"direction" | "route">;
  #deadLetteredTotal: Counter<"direction" | "reason">;
  #failedTotal: Counter<"direction" | "reason">;
  #latency: Histogram<"direction">;
  #inFlightGauge: Gauge<"direction">;
  #connectedGauge: Gauge<"broker">;
  #breakerGauge: Gauge;
  #retriesTotal: Counter<"operation">;

  // Plain copies of the values, for snapshot() without an async collect.
  #received = { mqtt_to_kafka: 0, kafka_to_mqtt: 0 };
  #delivered = {
    mqtt_to_kafka: new Map<string, number>(),
    kafka_to_mqtt: new Map<string, number>(),
  };
  #deadLettered = {
    mqtt_to_kafka: new Map<string, number>(),
    kafka_to_mqtt: new Map<string, number>(),
  };
  #failed = { mqtt_to_kafka: 0, kafka_to_mqtt: 0 };
  #inFlight = { mqtt_to_kafka: 0, kafka_to_mqtt: 0 };
  #latencySums = {
    mqtt_to_kafka: { count: 0, sumSeconds: 0 },
    kafka_to_mqtt: { count: 0, sumSeconds: 0 },
  };
  #connected = { mqtt: false, kafka: false };
  #stopping = false;
  #breaker: BreakerState = "closed";
  #retries = {
    kafka_produce: 0,
    kafka_connect: 0,
    mqtt_connect: 0,
    kafka_nack: 0,
  };

  /**
   * Creates the metrics on a new registry, every known series at 0.
   *
   * @param options The route labels, and whether to add process metrics.
   * @throws {TypeError} When `routes` or `kafkaToMqttRoutes` is not an array
   *   of non-empty strings.
   */
  constructor(options: BridgeMetricsOptions) {
    const mqttRoutes = routeList(options?.routes, "routes");
    const kafkaRoutes = routeList(
      options.kafkaToMqttRoutes ?? [],
      "kafkaToMqttRoutes",
    );
    this.#routes = {
      mqtt_to_kafka: knownRoutes(mqttRoutes),
      kafka_to_mqtt: knownRoutes(kafkaRoutes),
    };

    this.registry = new Registry();
    const registers = [this.registry];
    this.#receivedTotal = new Counter({
      name: "dx_messages_received_total",
      help: "Messages received by the bridge, per direction.",
      labelNames: ["direction"],
      registers,
    });
    this.#deliveredTotal = new Counter({
      name: "dx_messages_delivered_total",
      help:
        "Messages delivered and acknowledged by the destination broker, per direction and route (a configured classification key, default, or other).",
      labelNames: ["direction", "route"],
      registers,
    });
    this.#deadLetteredTotal = new Counter({
      name: "dx_messages_dead_lettered_total",
      help:
        "Messages written to the dead-letter topic, per direction and reason (the dx-error code, or other).",
      labelNames: ["direction", "reason"],
      registers,
    });
    this.#failedTotal = new Counter({
      name: "dx_messages_failed_total",
      help:
        "Messages not delivered and left unacknowledged at the source broker, which delivers them again, per direction and reason (shutdown, dead-letter-rejected, other).",
      labelNames: ["direction", "reason"],
      registers,
    });
    this.#latency = new Histogram({
      name: "dx_delivery_latency_seconds",
      help:
        "Seconds from receiving a message to its acknowledgement by the destination broker (MQTT receipt to Kafka ack; Kafka read to MQTT PUBACK).",
      labelNames: ["direction"],
      buckets: [...LATENCY_BUCKETS_SECONDS],
      registers,
    });
    this.#inFlightGauge = new Gauge({
      name: "dx_messages_in_flight",
      help: "Messages received and not yet settled, per direction.",
      labelNames: ["direction"],
      registers,
    });
    this.#connectedGauge = new Gauge({
      name: "dx_broker_connected",
      help:
        "Whether the bridge is connected to the broker: 1 connected, 0 not.",
      labelNames: ["broker"],
      registers,
    });
    this.#breakerGauge = new Gauge({
      name: "dx_circuit_breaker_state",
      help: "State of the circuit breaker: 0 closed, 1 half-open, 2 open.",
      registers,
    });
    this.#retriesTotal = new Counter({
      name: "dx_retries_total",
      help: "Retries after a failed attempt, per operation.",
      labelNames: ["operation"],
      registers,
    });

    this.#initialize(mqttRoutes, kafkaRoutes);
    if (options.processMetrics === true) {
      collectDefaultMetrics({ register: this.registry });
      for (const name of LINT_FAILING_DEFAULTS) {
        this.registry.removeSingleMetric(name);
      }
    }
  }

  /**
   * Counts a message received.
   *
   * @param direction Which way it travels.
   * @throws {TypeError} When `direction` is not a {@linkcode Direction}.
   */
  received(direction: Direction): void {
    checkDirection(direction, "received");
    this.#received[direction]++;
    this.#receivedTotal.inc({ direction });
  }

  /**
   * Counts a message delivered and acknowledged by the destination broker,
   * and observes its latency when given.
   *
   * @param direction Which way it travelled.
   * @param route Its route label; one not known for `direction` counts as
   *   `"other"`.
   * @param latencySeconds Seconds from receipt to acknowledgement. A
   *   negative value (the wall clock stepped back) counts as 0.
   * @throws {TypeError} When `direction` is not a {@linkcode Direction}.
   * @throws {RangeError} When `latencySeconds` is given and not a finite
   *   number.
   */
  delivered(
    direction: Direction,
    route: string,
    latencySeconds?: number,
  ): void {
    checkDirection(direction, "delivered");
    if (latencySeconds !== undefined && !Number.isFinite(latencySeconds)) {
      throw new RangeError(
        `BridgeMetrics.delivered() expects latencySeconds as a finite number of seconds; got ${latencySeconds}`,
      );
    }
    const label = this.#routes[direction].has(route) ? route : OTHER_LABEL;
    increment(this.#delivered[direction], label);
    this.#deliveredTotal.inc({ direction, route: label });
    if (latencySeconds === undefined) return;
    const seconds = Math.max(0, latencySeconds);
    this.#latencySums[direction].count++;
    this.#latencySums[direction].sumSeconds += seconds;
    this.#latency.observe({ direction }, seconds);
  }

  /**
   * Counts a message written to the dead-letter topic.
   *
   * @param direction Which way it travelled.
   * @param reason The `dx-error` code; one outside
   *   {@linkcode DEAD_LETTER_REASONS} counts as `"other"`.
   * @throws {TypeError} When `direction` is not a {@linkcode Direction}.
   */
  deadLettered(direction: Direction, reason: string): void {
    checkDirection(direction, "deadLettered");
    const label = this.#reasons.has(reason) ? reason : OTHER_LABEL;
    increment(this.#deadLettered[direction], label);
    this.#deadLetteredTotal.inc({ direction, reason: label });
  }

  /**
   * Counts a message left unacknowledged at its source for redelivery.
   *
   * @param direction Which way it travelled.
   * @param reason Why; one outside {@linkcode FAILURE_REASONS} counts as
   *   `"other"`.
   * @throws {TypeError} When `direction` is not a {@linkcode Direction}.
   */
  failed(direction: Direction, reason: FailureReason = OTHER_LABEL): void {
    checkDirection(direction, "failed");
    const label = FAILURE_REASONS.includes(reason) ? reason : OTHER_LABEL;
    this.#failed[direction]++;
    this.#failedTotal.inc({ direction, reason: label });
  }

  /**
   * Sets how many messages are received and not yet settled.
   *
   * @param direction Which way they travel.
   * @param count The number in flight.
   * @throws {TypeError} When `direction` is not a {@linkcode Direction}.
   * @throws {RangeError} When `count` is not a non-negative integer.
   */
  setInFlight(direction: Direction, count: number): void {
    checkDirection(direction, "setInFlight");
    if (!Number.isSafeInteger(count) || count < 0) {
      throw new RangeError(
        `BridgeMetrics.setInFlight() expects count as a non-negative integer; got ${count}`,
      );
    }
    this.#inFlight[direction] = count;
    this.#inFlightGauge.set({ direction }, count);
  }

  /**
   * Records whether a broker is connected.
   *
   * @param broker The broker.
   * @param connected `true` once connected, `false` when the connection is lost.
   * @throws {TypeError} When `broker` is not a {@linkcode Broker}.
   */
  setConnected(broker: Broker, connected: boolean): void {
    if (!BROKERS.includes(broker)) {
      throw new TypeError(
        `BridgeMetrics.setConnected() expects broker "mqtt" or "kafka"; got ${
          JSON.stringify(broker)
        }`,
      );
    }
    this.#connected[broker] = connected === true;
    this.#connectedGauge.set({ broker }, connected === true ? 1 : 0);
  }

  /**
   * Records the circuit breaker's state.
   *
   * @param state `"closed"`, `"half-open"` or `"open"`.
   * @throws {TypeError} When `state` is not a {@linkcode BreakerState}.
   */
  setBreakerState(state: BreakerState): void {
    if (!Object.hasOwn(BREAKER_VALUES, state)) {
      throw new TypeError(
        `BridgeMetrics.setBreakerState() expects "closed", "half-open" or "open"; got ${
          JSON.stringify(state)
        }`,
      );
    }
    this.#breaker = state;
    this.#breakerGauge.set(BREAKER_VALUES[state]);
  }

  /**
   * Counts one retry of an operation.
   *
   * @param operation What is retried.
   * @throws {TypeError} When `operation` is not a {@linkcode RetryOperation}.
   */
  retried(operation: RetryOperation): void {
    if (!RETRY_OPERATIONS.includes(operation)) {
      throw new TypeError(
        `BridgeMetrics.retried() expects one of ${
          RETRY_OPERATIONS.join(", ")
        }; got ${JSON.stringify(operation)}`,
      );
    }
    this.#retries[operation]++;
    this.#retriesTotal.inc({ operation });
  }

  /**
   * Records that the bridge is stopping: from now on it is not ready.
   */
  setStopping(): void {
    this.#stopping = true;
  }

  /**
   * Tells whether the bridge can take traffic: not stopping, both brokers
   * connected and the circuit breaker closed (while half-open, one probe is testing
   * whether Kafka is back, and nothing else is sent).
   *
   * @returns Readiness, with reasons such as `"stopping"`, `"mqtt disconnected"`,
   *   `"kafka disconnected"`, `"circuit breaker open"` and
   *   `"circuit breaker half-open"`. It never throws.
   */
  readiness(): Readiness {
    const reasons: string[] = [];
    if (this.#stopping) reasons.push("stopping");
    for (const broker of BROKERS) {
      if (!this.#connected[broker]) reasons.push(`${broker} disconnected`);
    }
    if (this.#breaker !== "closed") {
      reasons.push(`circuit breaker ${this.#breaker}`);
    }
    return { ready: reasons.length === 0, reasons };
  }

  /**
   * Renders the registry in the Prometheus text format, version 0.0.4.
   *
   * @returns The exposition text.
   * @throws What a collect callback of a metric added to the registry by the
   *   application throws (as a rejection); the bridge's own never throw.
   */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  /**
   * The current values as plain data, for applications that want the
   * counts without scraping.
   *
   * @returns A new object; changing it changes nothing here. It never
   *   throws.
   */
  snapshot(): BridgeMetricsSnapshot {
    const perDirection = <T>(make: (direction: Direction) => T) => ({
      mqtt_to_kafka: make("mqtt_to_kafka"),
      kafka_to_mqtt: make("kafka_to_mqtt"),
    });
    return {
      received: { ...this.#received },
      delivered: perDirection((d) => Object.fromEntries(this.#delivered[d])),
      deadLettered: perDirection((d) =>
        Object.fromEntries(this.#deadLettered[d])
      ),
      failed: { ...this.#failed },
      inFlight: { ...this.#inFlight },
      latency: perDirection((d) => ({ ...this.#latencySums[d] })),
      connected: { ...this.#connected },
      breakerState: this.#breaker,
      retries: { ...this.#retries },
    };
  }

  /** Creates every known series at 0. */
  #initialize(
    mqttRoutes: readonly string[],
    kafkaRoutes: readonly string[],
  ): void {
    const initialRoutes: Record<Direction, readonly string[]> = {
      mqtt_to_kafka: [...mqttRoutes, DEFAULT_ROUTE_LABEL],
      kafka_to_mqtt: [...kafkaRoutes, DEFAULT_ROUTE_LABEL],
    };
    for (const direction of DIRECTIONS) {
      this.#receivedTotal.inc({ direction }, 0);
      for (const reason of FAILURE_REASONS) {
        this.#failedTotal.inc({ direction, reason }, 0);
      }
      this.#inFlightGauge.set({ direction }, 0);
      this.#latency.zero({ direction });
      for (const route of initialRoutes[direction]) {
        this.#delivered[direction].set(route, 0);
        this.#deliveredTotal.inc({ direction, route }, 0);
      }
      for (const reason of DEAD_LETTER_REASONS) {
        this.#deadLettered[direction].set(reason, 0);
        this.#deadLetteredTotal.inc({ direction, reason }, 0);
      }
    }
    for (const broker of BROKERS) this.#connectedGauge.set({ broker }, 0);
    this.#breakerGauge.set(0);
    for (const operation of RETRY_OPERATIONS) {
      this.#retriesTotal.inc({ operation }, 0);
    }
  }
}

function routeList(value: unknown, option: string): readonly string[] {
  if (
    !Array.isArray(value) ||
    !value.every((route) => typeof route === "string" && route !== "")
  ) {
    throw new TypeError(
      `BridgeMetrics option ${option} must be an array of non-empty route labels, such as Object.keys(config.routes); got ${
        describe(value)
      }`,
    );
  }
  return [...new Set(value as string[])];
}

function knownRoutes(routes: readonly string[]): ReadonlySet<string> {
  return new Set([...routes, DEFAULT_ROUTE_LABEL, DEAD_LETTER_ROUTE_LABEL]);
}

function checkDirection(direction: unknown, method: string): void {
  if (direction !== "mqtt_to_kafka" && direction !== "kafka_to_mqtt") {
    throw new TypeError(
      `BridgeMetrics.${method}() expects direction "mqtt_to_kafka" or "kafka_to_mqtt"; got ${
        describe(direction)
      }`,
    );
  }
}

function increment(counts: Map<string, number>, label: string): void {
  counts.set(label, (counts.get(label) ?? 0) + 1);
}

function describe(value: unknown): string {
  if (value === undefined) return "undefined";
  try {
    const text = JSON.stringify(value) ?? String(value);
    return text.length > 80 ? `${text.slice(0, 77)}...` : text;
  } catch {
    return typeof value;
  }
}
