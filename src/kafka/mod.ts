/**
 * Kafka for CloudEvents: a batching sink that settles each record when Kafka
 * has acknowledged it, and a consumer-group stream with ordered commits.
 *
 * @example Copy the alerts of one topic to another, at least once
 * ```ts
 * import { toKafkaRecord } from "@dataexchange/streams/cloudevents";
 * import { KafkaSink, kafkaStream } from "@dataexchange/streams/kafka";
 *
 * // Needs Kafka on 127.0.0.1:9092: runs when this file is run as a script.
 * if (import.meta.main) {
 *   const brokers = ["127.0.0.1:9092"];
 *   await using sink = await KafkaSink.connect({ brokers });
 *   const stream = kafkaStream({
 *     brokers,
 *     groupId: "alert-copier",
 *     topics: ["dx.telemetry"],
 *     deadLetterTopic: "dx.deadletter",
 *   });
 *   for await (const envelope of stream) {
 *     if (envelope.kind === "invalid") {
 *       envelope.nack(envelope.error);
 *     } else if (envelope.event.classification !== "alert") {
 *       envelope.ack();
 *     } else {
 *       sink.send("dx.alerts", toKafkaRecord(envelope.event))
 *         .then(() => envelope.ack(), (error) => envelope.nack(error));
 *     }
 *   }
 * }
 * ```
 *
 * @module
 */
export type {
  CloudEvent,
  CloudEventError,
  CloudEventErrorCode,
  CloudEventErrorOptions,
  KafkaHeaderValue,
  KafkaRecord,
  Route,
  Router,
} from "../cloudevents/mod.ts";
export type {
  AnyEnvelope,
  AnyInvalidEnvelope,
  Settleable,
} from "../envelope.ts";
export type { EventSink, PipeResult } from "../sinks/mod.ts";
export type { DataExchangeError, DataExchangeErrorOptions } from "../errors.ts";
export type { RetryEvent } from "../_retry.ts";
export {
  type KafkaConnectionOptions,
  type KafkaSaslOptions,
  type KafkaTlsOptions,
} from "./_kafkajs.ts";
export { type OffsetCommit } from "./_commit_tracker.ts";
export {
  type BreakerState,
  type BreakerStateChange,
  type ConnectRetryOptions,
  connectWithRetry,
  type KafkaSendOptions,
  KafkaSink,
  type KafkaSinkOptions,
} from "./sink.ts";
export {
  type KafkaEventSink,
  kafkaEventSink,
  type KafkaEventSinkOptions,
  type KafkaWriteAllOptions,
  type KafkaWriteAllResult,
} from "./event_sink.ts";
export {
  type ConsumedRecord,
  type DeadLetterEvent,
  deadLetterFromKafka,
  type KafkaEnvelope,
  type KafkaEnvelopeBase,
  type KafkaEventEnvelope,
  type KafkaInvalidEnvelope,
  type KafkaStream,
  kafkaStream,
  type KafkaStreamOptions,
  type NackPolicy,
} from "./stream.ts";
