/**
 * MQTT as a stream of CloudEvents: a persistent, at-least-once subscription
 * whose messages are acknowledged to the broker only when the application
 * says so; and a sink that publishes CloudEvents and resolves on the
 * broker's acknowledgement.
 *
 * @example Answer each request on its device's reply topic
 * ```ts
 * import { createCloudEvent } from "@dataexchange/streams/cloudevents";
 * import {
 *   MqttSink,
 *   mqttStream,
 *   topicTemplate,
 * } from "@dataexchange/streams/mqtt";
 *
 * // Needs an MQTT broker on 127.0.0.1:1883: runs when this file is run as a
 * // script.
 * if (import.meta.main) {
 *   const url = "mqtt://127.0.0.1:1883";
 *   await using replies = await MqttSink.connect({
 *     url,
 *     clientId: "responder-out",
 *     topic: topicTemplate("devices/{subject}/replies"),
 *   });
 *   for await (
 *     const envelope of mqttStream({
 *       url,
 *       topics: ["requests/#"],
 *       clientId: "responder-in",
 *     })
 *   ) {
 *     if (envelope.kind === "invalid") {
 *       envelope.ack(); // nothing to answer
 *       continue;
 *     }
 *     const { subject } = envelope.event;
 *     await replies.write(
 *       createCloudEvent({ source: "/responder", type: "reply", subject }),
 *     );
 *     envelope.ack();
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
  MqttMessage,
} from "../cloudevents/mod.ts";
export type {
  Envelope,
  EventEnvelope,
  InvalidEnvelope,
  Settleable,
} from "../envelope.ts";
export type { DataExchangeError, DataExchangeErrorOptions } from "../errors.ts";
export type { EventSink } from "../sinks/mod.ts";
export {
  type MqttConnectionState,
  type MqttEnvelope,
  mqttStream,
  type MqttStreamOptions,
  redactUrl,
} from "./stream.ts";
export { MqttSink, type MqttSinkOptions, topicTemplate } from "./sink.ts";
