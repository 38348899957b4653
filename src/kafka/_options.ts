/**
 * Checks of the options shared by {@linkcode kafkaEventSink} and
 * {@linkcode KafkaSink.writeAll}.
 *
 * @module
 */
import {
  type CloudEvent,
  isKafkaTopicName,
  MAX_TOPIC_LENGTH,
  type Router,
} from "../cloudevents/mod.ts";
import { describeValue } from "../cloudevents/_describe.ts";
import { DataExchangeError } from "../errors.ts";
import { describeError } from "./_kafkajs.ts";

/** The options both take. */
export interface TopicOptions {
  topic: string | Router | ((event: CloudEvent) => string);
  mode?: "binary" | "structured";
  signal?: AbortSignal;
}

/** Whether a value is a {@linkcode Router}: it has a `route` method. */
export function isRouter(value: unknown): value is Router {
  return typeof value === "object" && value !== null &&
    typeof (value as Partial<Router>).route === "function";
}

/**
 * Checks that `options` is an object with a known `mode` and an
 * `AbortSignal`, if any.
 *
 * @throws {TypeError} Naming `where` and what was given.
 */
export function checkOptions(
  options: TopicOptions,
  where: string,
): void {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `${where} expects an options object with a topic; got ${
        describeValue(options)
      }`,
    );
  }
  const { mode, signal } = options;
  if (mode !== undefined && mode !== "binary" && mode !== "structured") {
    throw new TypeError(
      `${where} option mode must be "binary" or "structured"; got ${
        describeValue(mode)
      }`,
    );
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError(
      `${where} option signal must be an AbortSignal; got ${
        describeValue(signal)
      }`,
    );
  }
}

/**
 * Turns the `topic` option into a function of the event. A function of the
 * caller's that throws makes it throw `topic-failed`, with the cause.
 *
 * @throws {TypeError} When `topic` is of none of the three kinds.
 * @throws {RangeError} When a fixed topic is not a Kafka topic name.
 */
export function topicChooser(
  topic: TopicOptions["topic"],
  where: string,
): (event: CloudEvent) => string {
  if (typeof topic === "string") {
    checkTopicName(topic, `${where} option topic`);
    return () => topic;
  }
  if (isRouter(topic)) return (event) => topic.route(event).topic;
  if (typeof topic !== "function") {
    throw new TypeError(
      `${where} option topic must be a topic name, a Router or a function of the event; got ${
        describeValue(topic)
      }`,
    );
  }
  return (event) => {
    try {
      return topic(event);
    } catch (error) {
      throw new DataExchangeError(
        "topic-failed",
        `The topic function threw for the event with id ${
          describeValue(event.id)
        }: ${describeError(error)}; make it return a topic for every event`,
        { cause: error },
      );
    }
  };
}

/**
 * Checks a topic name against Kafka's rules.
 *
 * @throws {TypeError} When it is not a string.
 * @throws {RangeError} When Kafka would refuse it.
 */
export function checkTopicName(topic: string, what: string): void {
  if (typeof topic !== "string") {
    throw new TypeError(
      `${what} must be a Kafka topic name; got ${describeValue(topic)}`,
    );
  }
  if (!isKafkaTopicName(topic)) {
    throw new RangeError(
      `${what} must be a Kafka topic name: 1 to ${MAX_TOPIC_LENGTH} characters of a-z A-Z 0-9 . _ -, not "." or ".."; got ${
        describeValue(topic)
      }`,
    );
  }
}

/** @throws {TypeError} When `value` is not a function. */
export function checkFunction(value: unknown, what: string): void {
  if (typeof value !== "function") {
    throw new TypeError(
      `${what} must be a function; got ${describeValue(value)}`,
    );
  }
}
