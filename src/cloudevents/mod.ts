/**
 * CloudEvents 1.0.2 for the MQTT-to-Kafka bridge, as pure functions on Web
 * APIs only (no `node:*`, `Deno.*` or `Buffer`), so it runs on Deno, Node,
 * Bun and edge runtimes:
 *
 * - {@linkcode createCloudEvent} and {@linkcode validateCloudEvent}: the event
 *   type and its strict rules;
 * - {@linkcode parseStructured} and {@linkcode serializeStructured}: the JSON
 *   event format;
 * - {@linkcode fromMqttMessage} and {@linkcode toMqttMessage}: the MQTT
 *   binding, MQTT 3.1.1 and 5, structured and binary mode;
 * - {@linkcode fromKafkaRecord} and {@linkcode toKafkaRecord}: the Kafka
 *   binding, binary and structured mode;
 * - {@linkcode createRouter} and {@linkcode deadLetterRecord}: the topic of
 *   each event, and what to keep of messages that are not events.
 *
 * Every failure to read an event is a {@linkcode CloudEventError} with a
 * stable `code`. It extends {@linkcode DataExchangeError}, the base of every
 * error of this package, exported here with {@linkcode isDataExchangeError}.
 *
 * @example Bridge one MQTT message to a Kafka record
 * ```ts
 * import {
 *   createRouter,
 *   deadLetterRecord,
 *   fromMqttMessage,
 *   isCloudEventError,
 *   toKafkaRecord,
 * } from "./mod.ts";
 *
 * const router = createRouter({
 *   routes: { telemetry: "dx.telemetry" },
 *   defaultTopic: "dx.other",
 *   deadLetterTopic: "dx.dead-letter",
 * });
 * const payload = new TextEncoder().encode(JSON.stringify({
 *   specversion: "1.0",
 *   id: "42",
 *   source: "/sensors/7",
 *   type: "com.example.reading",
 *   classification: "telemetry",
 *   data: { celsius: 21.5 },
 * }));
 * try {
 *   const event = fromMqttMessage({ topic: "sensors/7", payload });
 *   const { topic } = router.route(event);
 *   const record = toKafkaRecord(event);
 *   console.log(topic, record.value?.length); // dx.telemetry 16
 * } catch (error) {
 *   if (!isCloudEventError(error)) throw error;
 *   const record = deadLetterRecord({ payload, error, mqttTopic: "sensors/7" });
 *   console.log(router.deadLetterTopic, record.headers["dx-error"]);
 * }
 * ```
 *
 * @module
 */
export {
  CLASSIFICATION_EXTENSION,
  type CloudEvent,
  CloudEventError,
  type CloudEventErrorCode,
  type CloudEventErrorOptions,
  createCloudEvent,
  type CreateCloudEventOptions,
  type ExtensionValue,
  isCloudEventError,
  SPEC_VERSION,
  validateCloudEvent,
} from "./event.ts";
export {
  DataExchangeError,
  type DataExchangeErrorOptions,
  isDataExchangeError,
} from "../errors.ts";
export { parseStructured, serializeStructured } from "./json_format.ts";
export {
  ATTRIBUTE_HEADER_PREFIX,
  CONTENT_TYPE_HEADER,
  fromKafkaRecord,
  type IncomingKafkaRecord,
  type KafkaHeaderValue,
  type KafkaRecord,
  PARTITION_KEY_EXTENSION,
  type ToKafkaOptions,
  toKafkaRecord,
} from "./kafka.ts";
export {
  fromMqttMessage,
  type FromMqttOptions,
  type MqttMessage,
  toMqttMessage,
  type ToMqttOptions,
} from "./mqtt.ts";
export {
  createRouter,
  DEAD_LETTER_HEADERS,
  type DeadLetterInput,
  deadLetterRecord,
  DEFAULT_ROUTE,
  isKafkaTopicName,
  MAX_ERROR_DETAIL_CHARS,
  MAX_TOPIC_LENGTH,
  type Route,
  type Router,
  type RouterOptions,
} from "./router.ts";
