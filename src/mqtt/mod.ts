/**
 * MQTT as a stream of CloudEvents: a persistent, at-least-once subscription
 * whose messages are acknowledged to the broker only when the application
 * says so.
 *
 * @module
 */
export {
  type MqttConnectionState,
  type MqttEnvelope,
  mqttStream,
  type MqttStreamOptions,
  redactUrl,
} from "./stream.ts";
export { MqttSink, type MqttSinkOptions, topicTemplate } from "./sink.ts";
