/**
 * Kafka for CloudEvents: a batching sink that settles each record when Kafka
 * has acknowledged it, and a consumer-group stream with ordered commits.
 *
 * @module
 */
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
  KafkaSink,
  type KafkaSinkOptions,
} from "./sink.ts";
export {
  type ConsumedRecord,
  deadLetterFromKafka,
  type KafkaEnvelope,
  type KafkaEventEnvelope,
  type KafkaInvalidEnvelope,
  type KafkaStream,
  kafkaStream,
  type KafkaStreamOptions,
  type NackPolicy,
} from "./stream.ts";
