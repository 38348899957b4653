/**
 * Chooses the Kafka topic of an event by its `classification` extension,
 * from topics fixed in configuration, and builds dead-letter records for
 * messages that are not valid events.
 *
 * A topic is never built from message content: an event can only select one
 * of the configured topics, so metric labels stay bounded too.
 *
 * @module
 */
import { describeValue, quote } from "./_describe.ts";
import { encodeUtf8 } from "./_utf8.ts";
import { CLASSIFICATION_EXTENSION, type CloudEvent } from "./event.ts";
import type { KafkaRecord } from "./kafka.ts";

/**
 * Options of {@linkcode createRouter}.
 *
 * @example Routes from a configuration file
 * ```ts
 * import {
 *   createRouter,
 *   type RouterOptions,
 * } from "@dataexchange/streams/cloudevents";
 *
 * const config = JSON.parse(`{
 *   "routes": { "telemetry": "dx.telemetry", "alert": "dx.alerts" },
 *   "defaultTopic": "dx.unclassified",
 *   "deadLetterTopic": "dx.deadletter"
 * }`);
 * const options: RouterOptions = config;
 * console.log(createRouter(options).topics.length); // 4
 * ```
 */
export interface RouterOptions {
  /**
   * Kafka topic by classification, such as `{ telemetry: "dx.telemetry" }`.
   * Keys are matched exactly (case-sensitive); `"default"` and the empty
   * string cannot be keys.
   */
  routes: Readonly<Record<string, string>>;
  /** The topic of events with no, an unknown, or a non-string classification. */
  defaultTopic: string;
  /** The topic of messages that are not valid events; used by the caller. */
  deadLetterTopic: string;
}

/**
 * Where an event goes.
 *
 * @example Count deliveries per route, with a bounded label set
 * ```ts
 * import {
 *   createCloudEvent,
 *   createRouter,
 *   type Route,
 * } from "@dataexchange/streams/cloudevents";
 *
 * const router = createRouter({
 *   routes: { telemetry: "dx.telemetry" },
 *   defaultTopic: "dx.other",
 *   deadLetterTopic: "dx.dead",
 * });
 * const delivered = new Map<string, number>();
 * function count({ route }: Route): void {
 *   delivered.set(route, (delivered.get(route) ?? 0) + 1);
 * }
 * for (const classification of ["telemetry", "made-up", "telemetry"]) {
 *   const event = createCloudEvent({
 *     source: "/s",
 *     type: "t",
 *     classification,
 *   });
 *   count(router.route(event));
 * }
 * console.log(Object.fromEntries(delivered)); // { telemetry: 2, default: 1 }
 * ```
 */
export interface Route {
  /** The Kafka topic, one of the configured ones. */
  readonly topic: string;
  /**
   * The matching classification key from the configuration, or `default`;
   * never message content, so it is safe as a metric label.
   */
  readonly route: string;
}

/**
 * Routes events to the configured Kafka topics.
 *
 * @example Check the topics, then route
 * ```ts
 * import {
 *   createCloudEvent,
 *   createRouter,
 *   type Router,
 * } from "@dataexchange/streams/cloudevents";
 *
 * const router: Router = createRouter({
 *   routes: { alert: "dx.alerts" },
 *   defaultTopic: "dx.other",
 *   deadLetterTopic: "dx.dead",
 * });
 * console.log(router.topics); // [ "dx.other", "dx.alerts", "dx.dead" ]
 * const event = createCloudEvent({
 *   source: "/s",
 *   type: "t",
 *   classification: "alert",
 * });
 * console.log(router.route(event).topic); // dx.alerts
 * ```
 */
export interface Router {
  /** The dead-letter topic from the configuration. */
  readonly deadLetterTopic: string;
  /**
   * Every configured topic once: the default topic, the route topics in
   * configuration order, then the dead-letter topic. For checking at start
   * that they all exist.
   */
  readonly topics: readonly string[];
  /**
   * Chooses the topic of an event.
   *
   * @param event The event.
   * @returns The topic and route label; the same object for the same route.
   */
  route(event: CloudEvent): Route;
}

/**
 * The route label of events that match no configured classification.
 *
 * @example Notice events that no route claims
 * ```ts
 * import {
 *   createCloudEvent,
 *   createRouter,
 *   DEFAULT_ROUTE,
 * } from "@dataexchange/streams/cloudevents";
 *
 * const router = createRouter({
 *   routes: { telemetry: "dx.telemetry" },
 *   defaultTopic: "dx.other",
 *   deadLetterTopic: "dx.dead",
 * });
 * const event = createCloudEvent({ source: "/s", type: "t" });
 * if (router.route(event).route === DEFAULT_ROUTE) {
 *   console.log(`unclassified event from ${event.source}`); // unclassified event from /s
 * }
 * ```
 */
export const DEFAULT_ROUTE = "default";

/**
 * The longest Kafka topic name.
 *
 * @example Make a topic name from user input
 * ```ts
 * import {
 *   isKafkaTopicName,
 *   MAX_TOPIC_LENGTH,
 * } from "@dataexchange/streams/cloudevents";
 *
 * const tenant = "acme corp/eu".repeat(30);
 * const topic = `dx.${tenant.replace(/[^A-Za-z0-9._-]/g, "_")}`
 *   .slice(0, MAX_TOPIC_LENGTH);
 * console.log(topic.length, isKafkaTopicName(topic)); // 249 true
 * ```
 */
export const MAX_TOPIC_LENGTH = 249;

/**
 * Creates a router. The classification is the `classification` extension:
 * when it is a string equal to a key of `routes`, the event goes to that
 * route's topic; otherwise (absent, unknown, in another letter case, or not
 * a string) to `defaultTopic`.
 *
 * Every topic is checked against the Kafka rules: 1 to 249 characters of
 * `a-z A-Z 0-9 . _ -`, and not `.` or `..`. The dead-letter topic must differ
 * from the event topics, so that bad messages never mix with good ones.
 *
 * @param options The routes, default topic and dead-letter topic.
 * @returns The router.
 * @throws {TypeError} When an option has the wrong type.
 * @throws {RangeError} When a topic name breaks the Kafka rules, a route key
 * is empty or `default`, or the dead-letter topic is also an event topic.
 *
 * @example Route by classification
 * ```ts
 * import { createCloudEvent } from "./event.ts";
 * import { createRouter } from "./router.ts";
 *
 * const router = createRouter({
 *   routes: { telemetry: "dx.telemetry", alarm: "dx.alarms" },
 *   defaultTopic: "dx.other",
 *   deadLetterTopic: "dx.dead-letter",
 * });
 * const alarm = createCloudEvent({ source: "/s", type: "t", classification: "alarm" });
 * console.log(router.route(alarm)); // { topic: "dx.alarms", route: "alarm" }
 * const other = createCloudEvent({ source: "/s", type: "t", classification: "ALARM" });
 * console.log(router.route(other)); // { topic: "dx.other", route: "default" }
 * ```
 */
export function createRouter(options: RouterOptions): Router {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `createRouter() expects an options object; got ${describeValue(options)}`,
    );
  }
  const defaultTopic = checkTopic(options.defaultTopic, "defaultTopic");
  const deadLetterTopic = checkTopic(
    options.deadLetterTopic,
    "deadLetterTopic",
  );
  const routes = options.routes;
  if (typeof routes !== "object" || routes === null || Array.isArray(routes)) {
    throw new TypeError(
      `createRouter() option routes must be an object of classification to topic; got ${
        describeValue(routes)
      }`,
    );
  }

  // A Map, not the object itself: a lookup must never reach Object.prototype
  // ("constructor", "__proto__").
  const table = new Map<string, Route>();
  const topics = [defaultTopic];
  for (const key of Object.keys(routes)) {
    if (key.length === 0 || key === DEFAULT_ROUTE) {
      throw new RangeError(
        `createRouter() route keys must be non-empty and not "${DEFAULT_ROUTE}" (the label of the default route); got ${
          quote(key)
        }`,
      );
    }
    const topic = checkTopic(routes[key], `routes[${quote(key)}]`);
    table.set(key, Object.freeze({ topic, route: key }));
    if (!topics.includes(topic)) topics.push(topic);
  }
  if (topics.includes(deadLetterTopic)) {
    throw new RangeError(
      `createRouter() option deadLetterTopic ${
        quote(deadLetterTopic)
      } is also an event topic; give dead letters a topic of their own`,
    );
  }
  topics.push(deadLetterTopic);

  const fallback: Route = Object.freeze({
    topic: defaultTopic,
    route: DEFAULT_ROUTE,
  });
  return Object.freeze({
    deadLetterTopic,
    topics: Object.freeze(topics),
    route(event: CloudEvent): Route {
      const classification = event[CLASSIFICATION_EXTENSION];
      if (typeof classification !== "string") return fallback;
      return table.get(classification) ?? fallback;
    },
  });
}

function checkTopic(topic: unknown, option: string): string {
  if (typeof topic !== "string") {
    throw new TypeError(
      `createRouter() option ${option} must be a Kafka topic name; got ${
        describeValue(topic)
      }`,
    );
  }
  if (!isKafkaTopicName(topic)) {
    throw new RangeError(
      `createRouter() option ${option} must be a Kafka topic name: 1 to ${MAX_TOPIC_LENGTH} characters of a-z A-Z 0-9 . _ -, not "." or ".."; got ${
        quote(topic)
      }`,
    );
  }
  return topic;
}

/**
 * Tells whether a string is a legal Kafka topic name: 1 to 249 characters of
 * ASCII letters, digits, `.`, `_` and `-`, and not `.` or `..`. It never
 * throws for a string.
 *
 * @param name The candidate name.
 * @returns `true` when Kafka accepts the name.
 *
 * @example Paths are not topics
 * ```ts
 * import { isKafkaTopicName } from "./router.ts";
 *
 * console.log(isKafkaTopicName("dx.telemetry"), isKafkaTopicName("../x")); // true false
 * ```
 */
export function isKafkaTopicName(name: string): boolean {
  const length = name.length;
  if (length === 0 || length > MAX_TOPIC_LENGTH) return false;
  if (name === "." || name === "..") return false;
  for (let i = 0; i < length; i++) {
    const c = name.charCodeAt(i);
    const ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) ||
      (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x5f || c === 0x2d;
    if (!ok) return false;
  }
  return true;
}

/**
 * What {@linkcode deadLetterRecord} needs to know of a failed message.
 *
 * @example Dead-letter a Kafka record, keeping where it came from
 * ```ts
 * import {
 *   deadLetterRecord,
 *   type DeadLetterInput,
 * } from "@dataexchange/streams/cloudevents";
 *
 * const input: DeadLetterInput = {
 *   payload: new TextEncoder().encode("{oops"),
 *   error: { code: "malformed-json", message: "not JSON" },
 *   headers: { "dx-source-topic": "dx.commands", "dx-source-offset": "42" },
 * };
 * const record = deadLetterRecord(input);
 * console.log(Object.keys(record.headers).join(" ")); // dx-source-topic dx-source-offset dx-error dx-error-detail
 * ```
 */
export interface DeadLetterInput {
  /** The message bytes exactly as received. */
  readonly payload: Uint8Array;
  /** Why the message failed: a stable code and a readable message. */
  readonly error: { code: string; message: string };
  /** The MQTT topic the message came from, when it came from MQTT. */
  readonly mqttTopic?: string;
  /** Further headers to add, such as the source partition and offset. */
  readonly headers?: Readonly<Record<string, string>>;
}

/**
 * The header names of dead-letter records.
 *
 * @example Read why a record was dead-lettered
 * ```ts
 * import {
 *   DEAD_LETTER_HEADERS,
 *   deadLetterRecord,
 * } from "@dataexchange/streams/cloudevents";
 *
 * const record = deadLetterRecord({
 *   payload: new Uint8Array([0xff]),
 *   error: { code: "invalid-encoding", message: "not UTF-8" },
 *   mqttTopic: "sensors/7",
 * });
 * const text = (name: string) =>
 *   new TextDecoder().decode(record.headers[name]);
 * console.log(text(DEAD_LETTER_HEADERS.error)); // invalid-encoding
 * console.log(text(DEAD_LETTER_HEADERS.mqttTopic)); // sensors/7
 * ```
 */
export const DEAD_LETTER_HEADERS: {
  readonly error: "dx-error";
  readonly detail: "dx-error-detail";
  readonly mqttTopic: "dx-mqtt-topic";
} = Object.freeze({
  error: "dx-error",
  detail: "dx-error-detail",
  mqttTopic: "dx-mqtt-topic",
});

/**
 * The most characters of an error message a dead-letter record carries.
 *
 * @example A long message is cut
 * ```ts
 * import {
 *   deadLetterRecord,
 *   MAX_ERROR_DETAIL_CHARS,
 * } from "@dataexchange/streams/cloudevents";
 *
 * const record = deadLetterRecord({
 *   payload: new Uint8Array(0),
 *   error: { code: "kafka-rejected", message: "x".repeat(5000) },
 * });
 * const detail = new TextDecoder().decode(record.headers["dx-error-detail"]);
 * console.log(detail.length <= MAX_ERROR_DETAIL_CHARS); // true
 * ```
 */
export const MAX_ERROR_DETAIL_CHARS = 1024;

/**
 * Builds the Kafka record that keeps a message that could not be handled.
 * The value is the payload itself, not copied and unchanged; the key is
 * `null`. Headers: the extra `headers` first, then `dx-error` (the code),
 * `dx-error-detail` (the message, cut to {@linkcode MAX_ERROR_DETAIL_CHARS}
 * characters), and `dx-mqtt-topic` when given; the `dx-` headers win over
 * extra headers of the same name.
 *
 * @param input The payload, the error, and where the message came from.
 * @returns The record, for the dead-letter topic.
 * @throws {TypeError} When the payload is not a `Uint8Array`, the error has
 * no string code and message, or `mqttTopic` or a header value is not a
 * string.
 *
 * @example Keep an unreadable payload
 * ```ts
 * import { deadLetterRecord } from "./router.ts";
 *
 * const payload = new Uint8Array([0xff, 0xfe]);
 * const record = deadLetterRecord({
 *   payload,
 *   error: { code: "invalid-encoding", message: "not UTF-8" },
 *   mqttTopic: "sensors/42",
 * });
 * console.log(record.value === payload); // true
 * console.log(new TextDecoder().decode(record.headers["dx-error"])); // invalid-encoding
 * ```
 */
export function deadLetterRecord(input: DeadLetterInput): KafkaRecord {
  if (typeof input !== "object" || input === null) {
    throw new TypeError(
      `deadLetterRecord() expects an input object; got ${describeValue(input)}`,
    );
  }
  if (!(input.payload instanceof Uint8Array)) {
    throw new TypeError(
      `deadLetterRecord() expects the payload as a Uint8Array; got ${
        describeValue(input.payload)
      }`,
    );
  }
  const error = input.error;
  if (
    typeof error !== "object" || error === null ||
    typeof error.code !== "string" || typeof error.message !== "string"
  ) {
    throw new TypeError(
      `deadLetterRecord() expects error to have a string code and message; got ${
        describeValue(error)
      }`,
    );
  }

  const mqttTopic = input.mqttTopic;
  if (mqttTopic !== undefined && typeof mqttTopic !== "string") {
    throw new TypeError(
      `deadLetterRecord() expects mqttTopic as a string; got ${
        describeValue(mqttTopic)
      }`,
    );
  }

  const headers: Record<string, Uint8Array> = {};
  const extra = input.headers ?? {};
  for (const name of Object.keys(extra)) {
    const value = extra[name];
    if (typeof value !== "string" || name === "__proto__") {
      throw new TypeError(
        `deadLetterRecord() header ${quote(name)} must be a string; got ${
          describeValue(value)
        }`,
      );
    }
    headers[name] = encodeUtf8(value);
  }
  headers[DEAD_LETTER_HEADERS.error] = encodeUtf8(error.code);
  headers[DEAD_LETTER_HEADERS.detail] = encodeUtf8(capDetail(error.message));
  if (mqttTopic !== undefined) {
    headers[DEAD_LETTER_HEADERS.mqttTopic] = encodeUtf8(mqttTopic);
  }
  return { key: null, value: input.payload, headers };
}

function capDetail(message: string): string {
  if (message.length <= MAX_ERROR_DETAIL_CHARS) return message;
  let end = MAX_ERROR_DETAIL_CHARS - 1;
  const last = message.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end -= 1; // keep surrogate pairs whole
  return `${message.slice(0, end)}…`;
}
