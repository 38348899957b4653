/**
 * The envelope every stream of this package yields: one received message,
 * either decoded into a CloudEvent or marked invalid with the reason, and the
 * two calls that settle it.
 *
 * @module
 */
import type { CloudEvent, CloudEventError } from "./cloudevents/mod.ts";

/**
 * What every envelope has, whatever its content.
 *
 * @example Settle by the outcome of the work
 * ```ts
 * import type { Settleable } from "@dataexchange/streams/streams";
 *
 * async function handle(
 *   item: Settleable,
 *   work: () => Promise<void>,
 * ): Promise<void> {
 *   try {
 *     await work();
 *     item.ack();
 *   } catch (error) {
 *     item.nack(error);
 *   }
 * }
 *
 * const outcomes: string[] = [];
 * const item: Settleable = {
 *   ack: () => outcomes.push("ack"),
 *   nack: () => outcomes.push("nack"),
 * };
 * await handle(item, () => Promise.resolve());
 * await handle(item, () => Promise.reject(new Error("disk full")));
 * console.log(outcomes); // [ "ack", "nack" ]
 * ```
 */
export interface Settleable {
  /**
   * Confirms the message is handled. The source may then forget it (MQTT:
   * PUBACK; Kafka: commit). Calling it again, or after `nack`, does nothing.
   */
  ack(): void;
  /**
   * Reports that the message could not be handled. The source keeps it for
   * redelivery. Calling it again, or after `ack`, does nothing.
   *
   * @param reason Why it failed; logged and counted, never sent anywhere.
   */
  nack(reason: unknown): void;
}

/**
 * A message that holds a valid CloudEvent.
 *
 * @example A test double for a handler of MQTT envelopes
 * ```ts
 * import {
 *   createCloudEvent,
 *   type MqttMessage,
 * } from "@dataexchange/streams/cloudevents";
 * import type { EventEnvelope } from "@dataexchange/streams/streams";
 *
 * const settled: string[] = [];
 * const envelope: EventEnvelope<MqttMessage> = {
 *   kind: "event",
 *   event: createCloudEvent({ source: "/sensors/7", type: "reading" }),
 *   message: { topic: "sensors/7", payload: new Uint8Array(0) },
 *   receivedAt: Date.now(),
 *   ack: () => settled.push("ack"),
 *   nack: () => settled.push("nack"),
 * };
 * console.log(envelope.message.topic, envelope.event.source); // sensors/7 /sensors/7
 * envelope.ack();
 * console.log(settled); // [ "ack" ]
 * ```
 */
export interface EventEnvelope<M> extends Settleable {
  /** Discriminates the union. */
  readonly kind: "event";
  /** The decoded event. */
  readonly event: CloudEvent;
  /** The message as received. */
  readonly message: M;
  /** When it was received, in milliseconds since the epoch. */
  readonly receivedAt: number;
}

/**
 * A message that is not a valid CloudEvent, with the reason.
 *
 * @example Turn an invalid MQTT message into a dead-letter record
 * ```ts
 * import {
 *   CloudEventError,
 *   deadLetterRecord,
 *   type KafkaRecord,
 *   type MqttMessage,
 * } from "@dataexchange/streams/cloudevents";
 * import type { InvalidEnvelope } from "@dataexchange/streams/streams";
 *
 * function deadLetter(envelope: InvalidEnvelope<MqttMessage>): KafkaRecord {
 *   const { payload, topic } = envelope.message;
 *   return deadLetterRecord({ payload, error: envelope.error, mqttTopic: topic });
 * }
 *
 * const record = deadLetter({
 *   kind: "invalid",
 *   error: new CloudEventError("malformed-json", "The payload is not JSON"),
 *   message: { topic: "sensors/7", payload: new TextEncoder().encode("{") },
 *   receivedAt: Date.now(),
 *   ack: () => {},
 *   nack: () => {},
 * });
 * console.log(new TextDecoder().decode(record.headers["dx-error"])); // malformed-json
 * ```
 */
export interface InvalidEnvelope<M> extends Settleable {
  /** Discriminates the union. */
  readonly kind: "invalid";
  /** What is wrong with it; `error.code` is a stable reason code. */
  readonly error: CloudEventError;
  /** The message as received, its bytes unchanged. */
  readonly message: M;
  /** When it was received, in milliseconds since the epoch. */
  readonly receivedAt: number;
}

/**
 * One item of a stream: a CloudEvent or an invalid message, to be settled.
 *
 * @example Wrap the messages of a source of your own
 * ```ts
 * import {
 *   fromMqttMessage,
 *   isCloudEventError,
 *   type MqttMessage,
 * } from "@dataexchange/streams/cloudevents";
 * import type { Envelope } from "@dataexchange/streams/streams";
 *
 * function envelopeOf(message: MqttMessage): Envelope<MqttMessage> {
 *   const settle = { receivedAt: Date.now(), ack() {}, nack() {} };
 *   try {
 *     return { kind: "event", event: fromMqttMessage(message), message, ...settle };
 *   } catch (error) {
 *     if (!isCloudEventError(error)) throw error;
 *     return { kind: "invalid", error, message, ...settle };
 *   }
 * }
 *
 * const payload = new TextEncoder().encode("{");
 * const envelope = envelopeOf({ topic: "sensors/7", payload });
 * console.log(envelope.kind === "invalid" && envelope.error.code); // malformed-json
 * ```
 */
export type Envelope<M> = EventEnvelope<M> | InvalidEnvelope<M>;

/**
 * What the items of every stream have in common, whichever broker they come
 * from (an MQTT message, a Kafka record): the content and the two calls.
 *
 * @example Count the kinds of envelopes from any source
 * ```ts
 * import { createCloudEvent } from "@dataexchange/streams/cloudevents";
 * import type { AnyEnvelope } from "@dataexchange/streams/sinks";
 *
 * function tally(envelopes: Iterable<AnyEnvelope>): Record<string, number> {
 *   const counts: Record<string, number> = { event: 0, invalid: 0 };
 *   for (const envelope of envelopes) counts[envelope.kind]++;
 *   return counts;
 * }
 *
 * const event = createCloudEvent({ source: "/s", type: "t" });
 * const envelope: AnyEnvelope = { kind: "event", event, ack() {}, nack() {} };
 * console.log(tally([envelope, envelope])); // { event: 2, invalid: 0 }
 * ```
 */
export type AnyEnvelope =
  & Settleable
  & (
    | { readonly kind: "event"; readonly event: CloudEvent }
    | { readonly kind: "invalid"; readonly error: CloudEventError }
  );

/**
 * The invalid case of {@linkcode AnyEnvelope}.
 *
 * @example Log the reason, whichever broker the envelope came from
 * ```ts
 * import { CloudEventError } from "@dataexchange/streams/cloudevents";
 * import type { AnyInvalidEnvelope } from "@dataexchange/streams/sinks";
 *
 * function reason(envelope: AnyInvalidEnvelope): string {
 *   return `${envelope.error.code}: ${envelope.error.message}`;
 * }
 *
 * console.log(reason({
 *   kind: "invalid",
 *   error: new CloudEventError("not-an-object", "The payload is a JSON array"),
 *   ack() {},
 *   nack() {},
 * })); // not-an-object: The payload is a JSON array
 * ```
 */
export type AnyInvalidEnvelope = Extract<AnyEnvelope, { kind: "invalid" }>;
