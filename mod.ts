/**
 * `@dataexchange/streams`: move events between MQTT and Apache Kafka as
 * CloudEvents, at least once.
 *
 * The entry points by area (import only what runs where you are):
 * - `@dataexchange/streams/cloudevents`: CloudEvent creation, validation,
 *   the MQTT and Kafka protocol bindings, routing and dead-letter records,
 *   and the error family.
 * - `@dataexchange/streams/streams`: `combine`, `mockSource`,
 *   `mockCloudEvents` and the envelope types every stream yields.
 * - `@dataexchange/streams/sinks`: `pipeToSink` and the sinks that need no
 *   broker (fan-out, logging, draining).
 * - `@dataexchange/streams/mqtt`: the MQTT stream with explicit ack/nack,
 *   and the MQTT sink.
 * - `@dataexchange/streams/kafka`: the Kafka sink and the consumer-group
 *   stream.
 * - `@dataexchange/streams/metrics`: Prometheus metrics and the health
 *   endpoint.
 * - `@dataexchange/streams/bridge`: the bridge and its configuration.
 *
 * The first three are edge-neutral: they use Web APIs only (no `node:*`, no
 * `Deno.*`, no socket), so they run unchanged on Deno without permissions,
 * on Node.js, Bun, browsers and edge workers; `tests/edge_neutral_test.ts`
 * holds them to it. This entry re-exports them all, so it needs what the
 * broker clients need.
 *
 * Examples that need a running broker are wrapped in
 * `if (import.meta.main)`: `deno test --doc` type-checks them without running
 * them, and saved as a script of their own they run.
 *
 * @example Route an MQTT message to its Kafka topic, no broker involved
 * ```ts
 * import {
 *   createRouter,
 *   fromMqttMessage,
 *   toKafkaRecord,
 * } from "@dataexchange/streams";
 *
 * const router = createRouter({
 *   routes: { alert: "dx.alerts" },
 *   defaultTopic: "dx.other",
 *   deadLetterTopic: "dx.dead",
 * });
 * const payload = new TextEncoder().encode(JSON.stringify({
 *   specversion: "1.0",
 *   id: "a-1",
 *   source: "/pumps/7",
 *   type: "com.example.overheat",
 *   classification: "alert",
 * }));
 * const event = fromMqttMessage({ topic: "pumps/7", payload });
 * const record = toKafkaRecord(event);
 * console.log(router.route(event).topic, record.value); // dx.alerts null
 * ```
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
  type MockEventItem,
  type MockMalformedItem,
  type MockPayloadSizes,
  mockSource,
  type MockSourceOptions,
} from "./src/streams/mod.ts";
export * from "./src/bridge/mod.ts";
