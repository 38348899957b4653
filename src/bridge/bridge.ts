/**
 * The MQTT → Kafka bridge: reads CloudEvents from MQTT, routes each by its
 * `classification` to a Kafka topic, and acknowledges the MQTT message only
 * after Kafka acknowledged the record it became.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import {
  createRouter,
  deadLetterRecord,
  type KafkaRecord,
  type Router,
  toKafkaRecord,
} from "../cloudevents/mod.ts";
import { DataExchangeError, isDataExchangeError } from "../errors.ts";
import { retryWithBackoff } from "../_retry.ts";
import {
  classifyProduceError,
  createKafka,
  describeError,
} from "../kafka/_kafkajs.ts";
import { connectWithRetry, KafkaSink } from "../kafka/sink.ts";
import { kafkaStream } from "../kafka/stream.ts";
import { MqttSink, topicTemplate } from "../mqtt/sink.ts";
import { type MqttEnvelope, mqttStream, redactUrl } from "../mqtt/stream.ts";
import type { BridgeMetrics } from "../metrics/metrics.ts";
import { pipeToSink } from "../sinks/sink.ts";
import type { KafkaEnvelope } from "../kafka/stream.ts";
import type { BridgeConfig, KafkaToMqttRoute } from "./config.ts";
import {
  kafkaConnection,
  type MqttConnection,
  mqttConnection,
} from "./_connections.ts";
import type { KafkaConnectionOptions } from "../kafka/_kafkajs.ts";

const logger = getLogger(["dataexchange", "bridge"]);

const ACKS = { all: -1, leader: 1, none: 0 } as const;

const LOCAL_BROKERS_HINT =
  " (for local brokers, run `deno task brokers` and point the bridge at the addresses it prints)";

/**
 * How long records may wait for Kafka's acknowledgement, with none coming,
 * before Kafka counts as not answering (readiness fails, one warning). A
 * Kafka that hangs fails no request before `kafka.requestTimeoutMs` (and the
 * client's own retries), which is much longer.
 */
const KAFKA_SILENCE_MS = 10_000;

/** How long a broker may take to answer at start before a warning says so. */
const SLOW_START_MS = 5_000;

/** Largest dead-letter value written when the original is refused as too large. */
const TRUNCATED_DEAD_LETTER_BYTES = 64 * 1024;

/**
 * Counts of what the bridge did, per outcome.
 *
 * @example Print progress while the bridge runs
 * ```ts
 * import {
 *   type BridgeStats,
 *   parseConfig,
 *   runBridge,
 * } from "@dataexchange/streams/bridge";
 *
 * function progress(stats: BridgeStats): string {
 *   return `${stats.delivered} delivered, ${stats.deadLettered} dead-lettered, ` +
 *     `${stats.inFlight} in flight of ${stats.received} received`;
 * }
 *
 * // Needs MQTT and Kafka (`deno task brokers`): runs when this file is run as
 * // a script.
 * if (import.meta.main) {
 *   const stats: BridgeStats = {
 *     received: 0,
 *     delivered: 0,
 *     deadLettered: 0,
 *     failed: 0,
 *     inFlight: 0,
 *     toMqtt: { published: 0, failed: 0, invalid: 0, deadLettered: 0 },
 *   };
 *   const timer = setInterval(() => console.log(progress(stats)), 10_000);
 *   try {
 *     const config = parseConfig({}, Deno.env.toObject());
 *     await runBridge(config, { stats, signal: AbortSignal.timeout(60_000) });
 *   } finally {
 *     clearInterval(timer);
 *   }
 *   console.log(progress(stats));
 * }
 * ```
 */
export interface BridgeStats {
  /** MQTT messages received. */
  received: number;
  /** Messages delivered to their route or default topic. */
  delivered: number;
  /** Messages written to the dead-letter topic. */
  deadLettered: number;
  /** Messages left unacknowledged at the MQTT broker, to be delivered again. */
  failed: number;
  /** Messages received and not yet settled. */
  inFlight: number;
  /**
   * Kafka → MQTT, over the `kafkaToMqtt` routes: records published (PUBACK
   * received), publish attempts that failed (retried, then dead-lettered),
   * records that were not valid CloudEvents, and records written to the
   * dead-letter topic.
   */
  toMqtt: {
    published: number;
    failed: number;
    invalid: number;
    deadLettered: number;
  };
}

/**
 * Options of {@linkcode runBridge}.
 *
 * @example Embed the bridge with metrics and a readiness flag
 * ```ts
 * import {
 *   parseConfig,
 *   runBridge,
 *   type RunBridgeOptions,
 * } from "@dataexchange/streams/bridge";
 * import { BridgeMetrics } from "@dataexchange/streams/metrics";
 *
 * const config = parseConfig({});
 * const stop = new AbortController();
 * let ready = false;
 * const options: RunBridgeOptions = {
 *   signal: stop.signal,
 *   onReady: () => ready = true,
 *   metrics: new BridgeMetrics({ routes: Object.keys(config.routes) }),
 * };
 *
 * // Needs MQTT and Kafka (`deno task brokers`): runs when this file is run as
 * // a script.
 * if (import.meta.main) {
 *   Deno.addSignalListener("SIGTERM", () => stop.abort());
 *   const stats = await runBridge(config, options);
 *   console.log(ready, stats.delivered);
 * }
 * ```
 */
export interface RunBridgeOptions {
  /** Stops the bridge: it stops reading, drains what is in flight, disconnects. */
  signal?: AbortSignal;
  /** Called once both brokers are connected and the subscription is active. */
  onReady?: () => void;
  /** Receives the live counters; they are updated in place. */
  stats?: BridgeStats;
  /** Prometheus metrics to update (see `@dataexchange/streams/metrics`). */
  metrics?: BridgeMetrics;
}

/**
 * Runs the bridge until `options.signal` aborts, then drains and returns the
 * final counts.
 *
 * Every MQTT message ends in exactly one of these states: delivered to its
 * Kafka topic and acknowledged; written to the dead-letter topic (with the
 * reason in `dx-error` headers) and acknowledged; or left unacknowledged at
 * the MQTT broker, which delivers it again.
 *
 * @param config A validated configuration (see `parseConfig`).
 * @param options Stop signal, readiness callback and counters.
 * @returns The counts of what was done.
 * @throws {DataExchangeError} `topic-missing` when a topic does not exist and
 *   `kafka.createTopics` is off; errors of the MQTT stream.
 *
 * @example Run until interrupted
 * ```ts
 * import { parseConfig, runBridge } from "@dataexchange/streams/bridge";
 *
 * // Needs MQTT and Kafka (`deno task brokers`): runs when this file is run as
 * // a script.
 * if (import.meta.main) {
 *   const controller = new AbortController();
 *   Deno.addSignalListener("SIGINT", () => controller.abort());
 *   await runBridge(parseConfig({}), { signal: controller.signal });
 * }
 * ```
 */
export async function runBridge(
  config: BridgeConfig,
  options: RunBridgeOptions = {},
): Promise<BridgeStats> {
  const { signal } = options;
  const stats = options.stats ?? {
    received: 0,
    delivered: 0,
    deadLettered: 0,
    failed: 0,
    inFlight: 0,
    toMqtt: { published: 0, failed: 0, invalid: 0, deadLettered: 0 },
  };
  const router = createRouter(config);
  logger.info("Routes loaded", {
    routes: config.routes,
    defaultTopic: config.defaultTopic,
    deadLetterTopic: config.deadLetterTopic,
  });

  const kafka = await kafkaConnection(config);
  const mqtt = await mqttConnection(config);
  await warnWhenSlow(
    prepareTopics(config, kafka, router, signal, options.metrics),
    () =>
      logger.warn(
        "Kafka at {brokers} has not answered within 5 s; still trying" +
          LOCAL_BROKERS_HINT,
        { brokers: config.kafka.brokers },
      ),
  );
  if (signal?.aborted) return stats;

  signal?.addEventListener("abort", () => {
    options.metrics?.setStopping();
    logger.info(
      "Stopping: draining {inFlight} messages in flight for up to {drainTimeoutMs} ms",
      { inFlight: stats.inFlight, drainTimeoutMs: config.drainTimeoutMs },
    );
  }, { once: true });

  // The directions run side by side; when one fails, the others stop too.
  const failure = new AbortController();
  const stop = signal
    ? AbortSignal.any([signal, failure.signal])
    : failure.signal;
  const failFast = (work: Promise<void>) =>
    work.catch((error) => {
      failure.abort(error);
      throw error;
    });
  const results = await Promise.allSettled([
    failFast(
      mqttToKafka(
        config,
        kafka,
        mqtt,
        router,
        stats,
        stop,
        options.onReady,
        options.metrics,
      ),
    ),
    ...config.kafkaToMqtt.map((route, index) =>
      failFast(
        kafkaToMqtt(
          config,
          kafka,
          mqtt,
          route,
          index,
          stats,
          stop,
          options.metrics,
        ),
      )
    ),
  ]);
  const rejected = results.find((r) => r.status === "rejected");
  if (rejected) throw (rejected as PromiseRejectedResult).reason;
  logger.info("Bridge stopped", { ...stats });
  return stats;
}

/** MQTT → Kafka: runs until `signal` aborts, then drains. */
async function mqttToKafka(
  config: BridgeConfig,
  kafka: KafkaConnectionOptions,
  mqtt: MqttConnection,
  router: Router,
  stats: BridgeStats,
  signal: AbortSignal,
  onReady: (() => void) | undefined,
  metrics: BridgeMetrics | undefined,
): Promise<void> {
  let abortedAt: number | undefined;
  signal.addEventListener("abort", () => abortedAt = Date.now(), {
    once: true,
  });
  // Kafka counts as connected from the producer's connect until a produce
  // fails, and again from the next record it acknowledges.
  let kafkaConnected = false;
  let lastAckAt = Date.now();
  const kafkaUp = (up: boolean) => {
    if (up === kafkaConnected) return;
    kafkaConnected = up;
    metrics?.setConnected("kafka", up);
  };
  const sink = await KafkaSink.connect({
    ...kafka,
    batchSize: config.kafka.batchSize,
    lingerMs: config.kafka.lingerMs,
    acks: ACKS[config.kafka.acks],
    compression: config.kafka.compression,
    breakerThreshold: config.kafka.breakerThreshold,
    breakerHalfOpenAfterMs: config.kafka.breakerHalfOpenAfterMs,
    onBreakerStateChange: ({ state }) => metrics?.setBreakerState(state),
    onRetry: ({ operation, ...event }) => {
      metrics?.retried(
        operation === "connect" ? "kafka_connect" : "kafka_produce",
      );
      // A produce that failed for want of Kafka: not ready until one passes.
      // (A topic Kafka does not know is not Kafka being away.)
      if (
        operation === "produce" &&
        classifyProduceError(event.error).kind !== "unknown-topic"
      ) {
        kafkaUp(false);
      }
    },
    maxBufferedRecords: Math.max(config.mqtt.maxInFlight * 2, 1),
  });
  try {
    kafkaUp(true);
    const deliver = createDelivery(
      config,
      router,
      sink,
      stats,
      metrics,
      () => {
        lastAckAt = Date.now();
        kafkaUp(true);
      },
    );
    const stream = mqttStream({
      url: config.mqtt.url,
      topics: mqtt.topics,
      clientOptions: mqtt.clientOptions,
      clientId: config.mqtt.clientId,
      protocolVersion: config.mqtt.protocolVersion,
      qos: config.mqtt.qos,
      maxInFlight: config.mqtt.maxInFlight,
      maxInFlightBytes: config.mqtt.maxInFlightBytes,
      sessionExpirySeconds: config.mqtt.sessionExpirySeconds,
      reconnectPeriodMs: config.mqtt.reconnectPeriodMs,
      reconnectMaxDelayMs: config.mqtt.reconnectMaxDelayMs,
      drainTimeoutMs: config.drainTimeoutMs,
      signal,
      onState: (state) => {
        metrics?.setConnected("mqtt", state === "connected");
        if (state === "connecting" && ready) metrics?.retried("mqtt_connect");
        if (state === "connected" && !ready) {
          ready = true;
          onReady?.();
        }
      },
    });
    let ready = false;
    const unreachable = setTimeout(() => {
      if (!ready) {
        logger.warn(
          "MQTT connection to {url} not up after 5 s; still trying (the warnings above say why)" +
            LOCAL_BROKERS_HINT,
          { url: redactUrl(config.mqtt.url) },
        );
      }
    }, SLOW_START_MS);
    const silence = watchKafkaSilence(
      sink,
      kafkaUp,
      () => lastAckAt,
      signal,
    );
    try {
      for await (const envelope of stream) deliver(envelope);
    } finally {
      clearTimeout(unreachable);
      clearInterval(silence);
    }
    logger.info("MQTT to Kafka stopped: {inFlight} messages left in flight", {
      inFlight: stats.inFlight,
    });
  } finally {
    // One drain budget for the whole shutdown: what the MQTT stream used of
    // it is not given to the sink again.
    const left = abortedAt === undefined
      ? config.drainTimeoutMs
      : Math.max(0, abortedAt + config.drainTimeoutMs - Date.now());
    await sink.close(left);
    kafkaUp(false);
  }
}

/** Kafka → MQTT for one route: commits a record once its PUBACK arrived. */
async function kafkaToMqtt(
  config: BridgeConfig,
  kafka: KafkaConnectionOptions,
  mqtt: MqttConnection,
  route: KafkaToMqttRoute,
  index: number,
  stats: BridgeStats,
  signal: AbortSignal,
  metrics: BridgeMetrics | undefined,
): Promise<void> {
  // Connecting may be cut short by the stop signal; once connected, the sink
  // is closed only after the stream has drained into it.
  const connecting = new AbortController();
  const onStop = () => connecting.abort(signal.reason);
  signal.addEventListener("abort", onStop, { once: true });
  let sink: MqttSink;
  try {
    // A refused login (wrong password, access rules) may be fixed at the
    // broker while the bridge runs, as the MQTT stream also assumes: keep
    // trying with backoff rather than stop the whole bridge.
    sink = await retryWithBackoff(
      () =>
        MqttSink.connect({
          url: config.mqtt.url,
          clientId: `${config.mqtt.clientId}-out-${index}`,
          clientOptions: mqtt.clientOptions,
          protocolVersion: config.mqtt.protocolVersion,
          mode: route.mode,
          topic: topicTemplate(route.mqttTopic),
          reconnectPeriodMs: config.mqtt.reconnectPeriodMs,
          reconnectMaxDelayMs: config.mqtt.reconnectMaxDelayMs,
          closeTimeoutMs: config.drainTimeoutMs,
          signal: connecting.signal,
        }),
      {
        signal: connecting.signal,
        initialDelayMs: config.mqtt.reconnectPeriodMs,
        maxDelayMs: config.mqtt.reconnectMaxDelayMs,
        shouldRetry: (error) =>
          isDataExchangeError(error) && error.code === "connect-refused",
        onRetry: ({ attempt, delayMs, error }) => {
          metrics?.retried("mqtt_connect");
          logger.warn(
            "Kafka to MQTT route {route} cannot connect; attempt {attempt}, next in {delayMs} ms: {error}",
            {
              route: index,
              attempt,
              delayMs: Math.round(delayMs),
              error: describeError(error),
            },
          );
        },
      },
    );
  } catch (error) {
    if (signal.aborted) return;
    throw error;
  } finally {
    signal.removeEventListener("abort", onStop);
  }
  const groupId = route.groupId;
  logger.info("Kafka to MQTT route started: {topics} to {mqttTopic}", {
    topics: route.topics,
    mqttTopic: route.mqttTopic,
    groupId,
  });
  // At the stop, publishes still waiting for their PUBACK get the drain
  // budget; after it they fail, and their records stay uncommitted.
  const closeOnStop = () => void sink.close();
  signal.addEventListener("abort", closeOnStop, { once: true });
  try {
    const stream = kafkaStream({
      ...kafka,
      groupId,
      topics: route.topics,
      fromBeginning: route.fromBeginning,
      deadLetterTopic: config.deadLetterTopic,
      drainTimeoutMs: config.drainTimeoutMs,
      signal,
      onDeadLetter: ({ code }) => {
        stats.toMqtt.deadLettered++;
        metrics?.deadLettered("kafka_to_mqtt", code);
      },
    });
    const result = await pipeToSink(
      metrics ? measured(stream, String(index), metrics) : stream,
      sink,
    );
    stats.toMqtt.published += result.written;
    stats.toMqtt.failed += result.failed;
    stats.toMqtt.invalid += result.invalid;
  } finally {
    signal.removeEventListener("abort", closeOnStop);
    await sink.close();
  }
}

/** Counts the records of a Kafka → MQTT route as they are read and settled. */
async function* measured(
  stream: AsyncIterable<KafkaEnvelope>,
  route: string,
  metrics: BridgeMetrics,
): AsyncGenerator<KafkaEnvelope, void, undefined> {
  const direction = "kafka_to_mqtt";
  let inFlight = 0;
  for await (const envelope of stream) {
    if (envelope.attempt === 1) metrics.received(direction);
    else metrics.retried("kafka_nack");
    metrics.setInFlight(direction, ++inFlight);
    let settled = false;
    const done = () => {
      if (settled) return false;
      settled = true;
      metrics.setInFlight(direction, --inFlight);
      return true;
    };
    const ack = envelope.ack;
    const nack = envelope.nack;
    yield {
      ...envelope,
      ack: () => {
        if (done()) {
          metrics.delivered(
            direction,
            route,
            (Date.now() - envelope.receivedAt) / 1000,
          );
        }
        ack();
      },
      nack: (reason: unknown) => {
        // A publish cut short by the stop leaves its record uncommitted, to
        // be read again; other failures are retried, then dead-lettered.
        if (
          done() && isDataExchangeError(reason) && reason.code === "sink-closed"
        ) {
          metrics.failed(direction, "shutdown");
        }
        nack(reason);
      },
    } as KafkaEnvelope;
  }
}

/** Makes the function that takes one envelope to Kafka and settles it. */
function createDelivery(
  config: BridgeConfig,
  router: Router,
  sink: KafkaSink,
  stats: BridgeStats,
  metrics: BridgeMetrics | undefined,
  onKafkaAck: () => void,
): (envelope: MqttEnvelope) => void {
  const direction = "mqtt_to_kafka";
  const mode = config.kafka.mode;
  const dlq = config.deadLetterTopic;

  const deadLetter = (
    envelope: MqttEnvelope,
    error: { code: string; message: string },
  ): Promise<void> => {
    const record = deadLetterRecord({
      payload: envelope.message.payload,
      error,
      mqttTopic: envelope.message.topic,
    });
    return sink.send(dlq, record).catch((failure) => {
      if (!isRejected(failure)) throw failure;
      // The original bytes do not fit: keep the start and say so.
      const payload = envelope.message.payload;
      return sink.send(dlq, truncated(record, payload.byteLength));
    }).then(() => {
      stats.deadLettered++;
      metrics?.deadLettered(direction, error.code);
      logger.warn("Message dead-lettered from {mqttTopic}: {code}", {
        mqttTopic: envelope.message.topic,
        code: error.code,
        bytes: envelope.message.payload.byteLength,
      });
    });
  };

  const settle = (envelope: MqttEnvelope, work: Promise<void>) => {
    work.then(
      () => {
        onKafkaAck();
        stats.inFlight--;
        metrics?.setInFlight(direction, stats.inFlight);
        envelope.ack();
      },
      (error) => {
        stats.inFlight--;
        stats.failed++;
        metrics?.setInFlight(direction, stats.inFlight);
        const shutdown = isDataExchangeError(error) &&
          error.code === "sink-closed";
        metrics?.failed(
          direction,
          shutdown
            ? "shutdown"
            : isRejected(error)
            ? "dead-letter-rejected"
            : "other",
        );
        if (shutdown) {
          // Shutting down with records unconfirmed: the drain's summary
          // says how many; one line each would flood the log.
          logger.debug(
            "Message from {mqttTopic} not confirmed before shutdown; left unacknowledged for redelivery",
            { mqttTopic: envelope.message.topic },
          );
        } else {
          logger.error(
            "Message from {mqttTopic} not delivered; left unacknowledged for redelivery: {error}",
            { mqttTopic: envelope.message.topic, error: describeError(error) },
          );
        }
        envelope.nack(error);
      },
    );
  };

  return (envelope) => {
    stats.received++;
    stats.inFlight++;
    metrics?.received(direction);
    metrics?.setInFlight(direction, stats.inFlight);
    if (envelope.kind === "invalid") {
      settle(envelope, deadLetter(envelope, envelope.error));
      return;
    }
    let topic: string;
    let route: string;
    let record: KafkaRecord;
    try {
      ({ topic, route } = router.route(envelope.event));
      record = toKafkaRecord(envelope.event, { mode });
    } catch (error) {
      settle(
        envelope,
        deadLetter(envelope, {
          code: "encode-failed",
          message: describeError(error),
        }),
      );
      return;
    }
    settle(
      envelope,
      sink.send(topic, record).then(
        () => {
          stats.delivered++;
          metrics?.delivered(
            direction,
            route,
            (Date.now() - envelope.receivedAt) / 1000,
          );
          // Lazy properties: no object per message unless debug is on.
          logger.debug("Delivered {id} from {mqttTopic} to {topic}", () => ({
            id: envelope.event.id,
            mqttTopic: envelope.message.topic,
            topic,
          }));
        },
        (error) => {
          const missing = isTopicMissing(error);
          if (!isRejected(error) && !missing) throw error;
          return deadLetter(envelope, {
            code: missing ? "topic-missing" : "kafka-rejected",
            message: describeError(error),
          });
        },
      ),
    );
  };
}

function isRejected(error: unknown): boolean {
  return isDataExchangeError(error) && error.code === "record-rejected";
}

function isTopicMissing(error: unknown): boolean {
  return isDataExchangeError(error) && error.code === "topic-missing";
}

function truncated(record: KafkaRecord, size: number): KafkaRecord {
  const encoder = new TextEncoder();
  return {
    key: record.key,
    value: record.value?.subarray(0, TRUNCATED_DEAD_LETTER_BYTES) ?? null,
    headers: {
      ...record.headers,
      "dx-truncated": encoder.encode(String(TRUNCATED_DEAD_LETTER_BYTES)),
      "dx-original-size": encoder.encode(String(size)),
    },
  };
}

/** Checks that every topic exists, creating the missing ones if allowed. */
async function prepareTopics(
  config: BridgeConfig,
  kafka: KafkaConnectionOptions,
  router: Router,
  signal: AbortSignal | undefined,
  metrics: BridgeMetrics | undefined,
): Promise<void> {
  const admin = createKafka(kafka).admin();
  // Connecting and the first request are retried together: a Kafka that
  // accepts the connection and then does not answer fails only the request.
  let existing = new Set<string>();
  try {
    await connectWithRetry(
      async () => {
        await admin.connect();
        try {
          existing = new Set(await admin.listTopics());
        } catch (error) {
          await admin.disconnect().catch(() => {});
          throw error;
        }
      },
      config.kafka.brokers,
      {
        signal,
        hint: LOCAL_BROKERS_HINT,
        onRetry: () => metrics?.retried("kafka_connect"),
      },
    );
  } catch (error) {
    if (signal?.aborted) return;
    throw error;
  }
  try {
    // The topics written to, and those the Kafka → MQTT routes read from.
    const wanted = new Set([
      ...router.topics,
      ...config.kafkaToMqtt.flatMap((route) => route.topics),
    ]);
    const missing = [...wanted].filter((topic) => !existing.has(topic));
    if (missing.length === 0) return;
    if (!config.kafka.createTopics) {
      throw new DataExchangeError(
        "topic-missing",
        `Kafka topics ${
          missing.join(", ")
        } do not exist; create them, or set kafka.createTopics: true`,
      );
    }
    await admin.createTopics({
      waitForLeaders: true,
      topics: missing.map((topic) => ({ topic })),
    });
    logger.info("Kafka topics created: {topics}", { topics: missing });
  } finally {
    await admin.disconnect();
  }
}

/** Runs `work`; calls `warn` once if it has not settled after 5 s. */
async function warnWhenSlow<T>(work: Promise<T>, warn: () => void): Promise<T> {
  const timer = setTimeout(warn, SLOW_START_MS);
  try {
    return await work;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Marks Kafka as not answering when records have waited
 * {@linkcode KAFKA_SILENCE_MS} with no acknowledgement, and says so once;
 * the next acknowledgement marks it answering again (see `kafkaUp`).
 */
function watchKafkaSilence(
  sink: KafkaSink,
  kafkaUp: (up: boolean) => void,
  lastAckAt: () => number,
  stopping: AbortSignal,
): ReturnType<typeof setInterval> {
  let quietSince = Date.now();
  let warned = false;
  return setInterval(() => {
    const now = Date.now();
    if (sink.pending === 0) {
      // Nothing waits: the silence counts from the next record sent.
      quietSince = now;
      if (warned) {
        warned = false;
        logger.info("Kafka answers again");
      }
      return;
    }
    const waitedMs = now - Math.max(quietSince, lastAckAt());
    if (waitedMs < KAFKA_SILENCE_MS) {
      if (warned) {
        warned = false;
        logger.info("Kafka answers again");
      }
      return;
    }
    kafkaUp(false);
    // While stopping, the drain's own summary says what was not confirmed.
    if (warned || stopping.aborted) return;
    warned = true;
    logger.warn(
      "Kafka has acknowledged nothing for {waitedMs} ms while {pending} records wait; reading from MQTT stops at the in-flight cap until it answers",
      { waitedMs, pending: sink.pending },
    );
  }, 1000);
}
