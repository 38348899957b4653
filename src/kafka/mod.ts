/**
 * Kafka for CloudEvents: a batching sink that settles each record when Kafka
 * has acknowledged it.
 *
 * @module
 */
export { type KafkaConnectionOptions } from "./_kafkajs.ts";
export { connectWithRetry, KafkaSink, type KafkaSinkOptions } from "./sink.ts";
