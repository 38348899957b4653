/**
 * `@dataexchange/streams`: move events between MQTT and Apache Kafka as
 * CloudEvents, at least once.
 *
 * The entry points by area (import only what runs where you are):
 * - `@dataexchange/streams/cloudevents`: CloudEvent creation, validation,
 *   the MQTT and Kafka protocol bindings and routing; Web APIs only.
 * - `@dataexchange/streams/mqtt`: the MQTT stream with explicit ack/nack.
 * - `@dataexchange/streams/kafka`: the Kafka sink.
 * - `@dataexchange/streams/bridge`: the bridge and its configuration.
 *
 * @module
 */
export * from "./src/cloudevents/mod.ts";
export {
  type Envelope,
  type EventEnvelope,
  type InvalidEnvelope,
  type Settleable,
} from "./src/envelope.ts";
export {
  DataExchangeError,
  type DataExchangeErrorOptions,
  isDataExchangeError,
} from "./src/errors.ts";
export * from "./src/mqtt/mod.ts";
export * from "./src/kafka/mod.ts";
export * from "./src/sinks/mod.ts";
export {
  ABANDONED_CODE,
  combine,
  type CombineOptions,
  MALFORMED_DEFECTS,
  type MalformedDefect,
  type MockCloudEventItem,
  mockCloudEvents,
  type MockCloudEventsOptions,
  mockSource,
  type MockSourceOptions,
} from "./src/streams/mod.ts";
export * from "./src/bridge/mod.ts";
