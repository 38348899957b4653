/**
 * The envelope every stream of this package yields: one received message,
 * either decoded into a CloudEvent or marked invalid with the reason, and the
 * two calls that settle it.
 *
 * @module
 */
import type { CloudEvent, CloudEventError } from "./cloudevents/mod.ts";

/** What every envelope has, whatever its content. */
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

/** A message that holds a valid CloudEvent. */
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

/** A message that is not a valid CloudEvent, with the reason. */
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

/** One item of a stream: a CloudEvent or an invalid message, to be settled. */
export type Envelope<M> = EventEnvelope<M> | InvalidEnvelope<M>;

/**
 * What the items of every stream have in common, whichever broker they come
 * from (an MQTT message, a Kafka record): the content and the two calls.
 */
export type AnyEnvelope =
  & Settleable
  & (
    | { readonly kind: "event"; readonly event: CloudEvent }
    | { readonly kind: "invalid"; readonly error: CloudEventError }
  );

/** The invalid case of {@linkcode AnyEnvelope}. */
export type AnyInvalidEnvelope = Extract<AnyEnvelope, { kind: "invalid" }>;
