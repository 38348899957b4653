/**
 * The Kafka protocol binding for CloudEvents 1.0.2: events to Kafka records
 * and back, in binary and structured content mode, over a neutral record
 * shape that kafkajs messages map onto.
 *
 * @module
 */
import { ATTRIBUTE_NAME_RULE, isAttributeName } from "./_attributes.ts";
import {
  assembleBinaryEvent,
  attributeStrings,
  encodeBinaryData,
} from "./_binary.ts";
import {
  isCloudEventsContentType,
  JSON_EVENT_FORMAT,
  mediaTypeOf,
  STRUCTURED_CONTENT_TYPE,
} from "./_content_type.ts";
import { describeValue, quote } from "./_describe.ts";
import { decodeUtf8, encodeUtf8 } from "./_utf8.ts";
import { type CloudEvent, validateCloudEvent } from "./event.ts";
import { CloudEventError } from "./error.ts";
import { parseStructured, serializeStructured } from "./json_format.ts";

/**
 * A Kafka record as this module writes it: bytes only.
 *
 * @example Hand a record to any Kafka client
 * ```ts
 * import {
 *   createCloudEvent,
 *   type KafkaRecord,
 *   toKafkaRecord,
 * } from "@dataexchange/streams/cloudevents";
 *
 * // The shape most clients take: header values as bytes, key and value too.
 * function describe(record: KafkaRecord): string {
 *   const names = Object.keys(record.headers).sort().join(",");
 *   return `${record.value?.length ?? 0} bytes, headers ${names}`;
 * }
 *
 * const event = createCloudEvent({
 *   id: "r-1",
 *   source: "/sensors/7",
 *   type: "com.example.reading",
 *   data: { celsius: 20 },
 * });
 * console.log(describe(toKafkaRecord(event))); // 14 bytes, headers ce_id,ce_source,ce_specversion,ce_time,ce_type,content-type
 * ```
 */
export interface KafkaRecord {
  /** The record key; `null` for none. */
  readonly key: Uint8Array | null;
  /** The record value; `null` for none (a binary-mode event without data). */
  readonly value: Uint8Array | null;
  /** The headers, by name. */
  readonly headers: Readonly<Record<string, Uint8Array>>;
}

/**
 * A header value as Kafka clients hand it over: bytes (kafkajs gives a
 * `Buffer`, a `Uint8Array` subclass), a string, an array for a repeated
 * header, or `undefined`.
 *
 * @example Read a header whichever way the client delivered it
 * ```ts
 * import type { KafkaHeaderValue } from "@dataexchange/streams/cloudevents";
 *
 * function headerText(value: KafkaHeaderValue): string | undefined {
 *   const last = Array.isArray(value) ? value.at(-1) : value;
 *   if (last === undefined) return undefined;
 *   return typeof last === "string" ? last : new TextDecoder().decode(last);
 * }
 *
 * console.log(headerText(new TextEncoder().encode("e-1"))); // e-1
 * console.log(headerText(["first", "second"])); // second
 * ```
 */
export type KafkaHeaderValue =
  | Uint8Array
  | string
  | ReadonlyArray<Uint8Array | string>
  | undefined;

/**
 * A Kafka record as clients such as kafkajs deliver it.
 *
 * @example Decode a record as a consumer received it
 * ```ts
 * import {
 *   fromKafkaRecord,
 *   type IncomingKafkaRecord,
 * } from "@dataexchange/streams/cloudevents";
 *
 * const record: IncomingKafkaRecord = {
 *   key: null,
 *   value: '{"celsius":20}',
 *   headers: {
 *     "ce_specversion": "1.0",
 *     "ce_id": "r-1",
 *     "ce_source": "/sensors/7",
 *     "ce_type": "com.example.reading",
 *     "content-type": "application/json",
 *   },
 * };
 * console.log(fromKafkaRecord(record).data); // { celsius: 20 }
 * ```
 */
export interface IncomingKafkaRecord {
  /** The record key; not read (see {@linkcode fromKafkaRecord}). */
  readonly key?: Uint8Array | string | null;
  /** The record value. */
  readonly value: Uint8Array | string | null;
  /** The headers, by name in any letter case. */
  readonly headers?: Readonly<Record<string, KafkaHeaderValue>>;
}

/**
 * Options of {@linkcode toKafkaRecord}.
 *
 * @example The same event in both content modes
 * ```ts
 * import {
 *   createCloudEvent,
 *   toKafkaRecord,
 *   type ToKafkaOptions,
 * } from "@dataexchange/streams/cloudevents";
 *
 * const event = createCloudEvent({
 *   source: "/sensors/7",
 *   type: "com.example.reading",
 *   data: { celsius: 20 },
 * });
 * for (const mode of ["binary", "structured"] as const) {
 *   const options: ToKafkaOptions = { mode };
 *   const record = toKafkaRecord(event, options);
 *   const contentType = record.headers["content-type"];
 *   console.log(mode, new TextDecoder().decode(contentType));
 * }
 * // binary application/json
 * // structured application/cloudevents+json; charset=utf-8
 * ```
 */
export interface ToKafkaOptions {
  /**
   * The content mode: `binary` puts the data in the value and the attributes
   * in `ce_` headers; `structured` puts the whole event, in the JSON event
   * format, in the value. Default `binary`.
   */
  mode?: "binary" | "structured";
}

/**
 * The header that carries the content type (Kafka binding 3.2.1, 3.3.1).
 *
 * @example Tell a structured record from a binary one
 * ```ts
 * import {
 *   CONTENT_TYPE_HEADER,
 *   createCloudEvent,
 *   toKafkaRecord,
 * } from "@dataexchange/streams/cloudevents";
 *
 * const event = createCloudEvent({ source: "/sensors/7", type: "reading" });
 * const record = toKafkaRecord(event, { mode: "structured" });
 * const type = new TextDecoder().decode(record.headers[CONTENT_TYPE_HEADER]);
 * console.log(type.startsWith("application/cloudevents+json")); // true
 * ```
 */
export const CONTENT_TYPE_HEADER = "content-type";
/**
 * The prefix of attribute headers in binary mode (Kafka binding 3.2.3.1).
 *
 * @example List the attributes of a binary-mode record
 * ```ts
 * import {
 *   ATTRIBUTE_HEADER_PREFIX,
 *   createCloudEvent,
 *   toKafkaRecord,
 * } from "@dataexchange/streams/cloudevents";
 *
 * const event = createCloudEvent({
 *   source: "/sensors/7",
 *   type: "reading",
 *   classification: "telemetry",
 * });
 * const attributes = Object.keys(toKafkaRecord(event).headers)
 *   .filter((name) => name.startsWith(ATTRIBUTE_HEADER_PREFIX))
 *   .map((name) => name.slice(ATTRIBUTE_HEADER_PREFIX.length));
 * console.log(attributes.includes("classification")); // true
 * ```
 */
export const ATTRIBUTE_HEADER_PREFIX = "ce_";
/**
 * The extension that maps to the record key (Kafka binding 3.1).
 *
 * @example Keep the events of one device on one partition
 * ```ts
 * import {
 *   createCloudEvent,
 *   PARTITION_KEY_EXTENSION,
 *   toKafkaRecord,
 * } from "@dataexchange/streams/cloudevents";
 *
 * const event = createCloudEvent({
 *   source: "/sensors/7",
 *   type: "reading",
 *   extensions: { [PARTITION_KEY_EXTENSION]: "sensor-7" },
 * });
 * const key = toKafkaRecord(event).key;
 * console.log(key && new TextDecoder().decode(key)); // sensor-7
 * ```
 */
export const PARTITION_KEY_EXTENSION = "partitionkey";

/**
 * Writes an event as a Kafka record.
 *
 * - Binary mode (Kafka binding 3.2): a `ce_<name>` header for every
 *   attribute and extension except `datacontenttype`, as its canonical
 *   string in UTF-8; the `content-type` header from `datacontenttype`; the
 *   data as the value: a `Uint8Array` as it is (not copied), JSON content as
 *   JSON text, text as UTF-8; no data gives a `null` value. Data that is not
 *   bytes and has no `datacontenttype` is written as JSON with
 *   `content-type: application/json`, the type the JSON format implies.
 * - Structured mode (Kafka binding 3.3): `content-type:
 *   application/cloudevents+json; charset=utf-8` and the event in the JSON
 *   event format as the value.
 *
 * In both modes the key is the `partitionkey` extension as UTF-8 when the
 * event has one (Kafka binding 3.1, the key mapper the binding recommends),
 * else `null`; the extension stays in the event too.
 *
 * @param event The event; validated first.
 * @param options The content mode.
 * @returns The record.
 * @throws {CloudEventError} When the event is invalid or its data cannot be
 * written.
 * @throws {TypeError} When `options.mode` is not `binary` or `structured`.
 *
 * @example Write an event in binary mode
 * ```ts
 * import { createCloudEvent } from "./event.ts";
 * import { toKafkaRecord } from "./kafka.ts";
 *
 * const event = createCloudEvent({
 *   source: "/sensors/42",
 *   type: "com.example.reading",
 *   data: { celsius: 21.5 },
 *   extensions: { partitionkey: "sensor-42" },
 * });
 * const record = toKafkaRecord(event);
 * const text = (bytes: Uint8Array | null) => new TextDecoder().decode(bytes!);
 * console.log(text(record.headers["content-type"])); // application/json
 * console.log(text(record.key)); // sensor-42
 * console.log(text(record.value)); // {"celsius":21.5}
 * ```
 */
export function toKafkaRecord(
  event: CloudEvent,
  options: ToKafkaOptions = {},
): KafkaRecord {
  const mode = options.mode ?? "binary";
  if (mode !== "binary" && mode !== "structured") {
    throw new TypeError(
      `toKafkaRecord() option mode must be "binary" or "structured"; got ${
        describeValue(mode)
      }`,
    );
  }

  if (mode === "structured") {
    const value = serializeStructured(event);
    return {
      key: keyOf(event),
      value,
      headers: { [CONTENT_TYPE_HEADER]: encodeUtf8(STRUCTURED_CONTENT_TYPE) },
    };
  }

  const valid = validateCloudEvent(event);
  const headers: Record<string, Uint8Array> = {};
  for (const [name, text] of attributeStrings(valid)) {
    headers[ATTRIBUTE_HEADER_PREFIX + name] = encodeUtf8(text);
  }
  const { bytes, contentType } = encodeBinaryData(valid);
  if (contentType !== undefined) {
    headers[CONTENT_TYPE_HEADER] = encodeUtf8(contentType);
  }
  return { key: keyOf(valid), value: bytes, headers };
}

/**
 * Reads an event from a Kafka record.
 *
 * The mode follows the `content-type` header (Kafka binding 3): when it
 * starts with `application/cloudevents` (any letter case) the record is
 * structured, and only the JSON format `application/cloudevents+json` is
 * read (others, the batch format included, are `unsupported-format`);
 * otherwise it is binary: attributes from the `ce_` headers,
 * `datacontenttype` from `content-type`, data from the value, decoded by
 * content type: JSON content types parsed, UTF-8 text (`text/*`, XML) as a
 * string, anything else (or no content type) as the bytes; a `null` value is
 * an event without data. A missing `time` is fine: it is OPTIONAL, and no
 * time is made up.
 *
 * Header names: `content-type` and the `ce_` prefix match in any letter case
 * (`Content-Type`, `CE_id`); the attribute name after the prefix does not:
 * it must follow the naming rule (lower-case ASCII letters and digits), so
 * `ce_Classification` or `ce_trace-id` is `invalid-extension-name`. Names are
 * never rewritten to fit, because a rewritten name is a different attribute.
 * Header values may be bytes (a kafkajs `Buffer`), strings, or arrays. An
 * attribute header must appear once: an array of more than one value, or the
 * same attribute under two prefixes (`ce_id`, `CE_id`), is
 * `invalid-attribute` (core spec: each attribute appears at most once), while an empty array or `undefined` counts
 * as absent. Header bytes must be UTF-8 (Kafka binding 3.2.3) or the record
 * is `invalid-encoding`. Headers without the `ce_` prefix are not read. In
 * structured mode only `content-type` is read.
 *
 * The record key is not read: `partitionkey` is an attribute only when a
 * `ce_partitionkey` header (or the JSON event) carries it.
 *
 * @param record The record as received.
 * @returns The event.
 * @throws {CloudEventError} With the reason as `code`.
 * @throws {TypeError} When `record` is not an object.
 *
 * @example Read a kafkajs-style binary record
 * ```ts
 * import { fromKafkaRecord } from "./kafka.ts";
 *
 * const bytes = (text: string) => new TextEncoder().encode(text);
 * const event = fromKafkaRecord({
 *   key: null,
 *   value: bytes("21.5"),
 *   headers: {
 *     "Content-Type": "application/json",
 *     ce_specversion: bytes("1.0"),
 *     ce_id: bytes("1"),
 *     ce_source: "/sensors/42",
 *     ce_type: ["com.example.reading"],
 *   },
 * });
 * console.log(event.data, event.time); // 21.5 undefined
 * ```
 */
export function fromKafkaRecord(record: IncomingKafkaRecord): CloudEvent {
  if (typeof record !== "object" || record === null) {
    throw new TypeError(
      `fromKafkaRecord() expects a record object; got ${describeValue(record)}`,
    );
  }

  const attributes: Record<string, string> = Object.create(null);
  let contentType: string | undefined;
  let contentTypeHeader: string | undefined;
  const headers = record.headers ?? {};
  for (const header of Object.keys(headers)) {
    const lower = header.toLowerCase();
    if (lower === CONTENT_TYPE_HEADER) {
      const text = headerText(header, headers[header]);
      if (text === undefined) continue;
      if (contentTypeHeader !== undefined) throw repeated(header, 2);
      contentTypeHeader = header;
      contentType = text;
    } else if (lower.startsWith(ATTRIBUTE_HEADER_PREFIX)) {
      const name = header.slice(ATTRIBUTE_HEADER_PREFIX.length);
      const text = headerText(header, headers[header], name);
      if (text === undefined) continue;
      if (!isAttributeName(name)) {
        throw new CloudEventError(
          "invalid-extension-name",
          `The Kafka header ${quote(header)} names the attribute ${
            quote(name)
          }, which is invalid; ${ATTRIBUTE_NAME_RULE}. Only the ce_ prefix is matched in any letter case`,
          { attribute: name },
        );
      }
      if (name in attributes) throw repeated(header, 2, name);
      attributes[name] = text;
    }
  }

  if (contentType !== undefined && isCloudEventsContentType(contentType)) {
    return fromStructuredValue(record.value, contentType);
  }
  if (
    (record.value === null || record.value === undefined) &&
    contentType === undefined && Object.keys(attributes).length === 0
  ) {
    throw new CloudEventError(
      "empty-payload",
      "The Kafka record has no value and no ce_ headers (a tombstone of a compacted topic), so it holds no CloudEvent",
    );
  }
  return assembleBinaryEvent(
    attributes,
    contentType,
    record.value ?? null,
    "Kafka record value",
  );
}

// Kafka binding 3.3: the value holds the event in the format that the
// content type names; this module reads the JSON format only.
function fromStructuredValue(
  value: Uint8Array | string | null,
  contentType: string,
): CloudEvent {
  if (mediaTypeOf(contentType) !== JSON_EVENT_FORMAT) {
    throw new CloudEventError(
      "unsupported-format",
      `The Kafka record has content type ${
        quote(contentType)
      }; of the structured formats only ${JSON_EVENT_FORMAT} is supported`,
    );
  }
  if (value === null || value === undefined) {
    throw new CloudEventError(
      "empty-payload",
      "The structured-mode Kafka record has no value; expected a CloudEvent in JSON",
    );
  }
  return parseStructured(typeof value === "string" ? encodeUtf8(value) : value);
}

function headerText(
  header: string,
  value: KafkaHeaderValue,
  attribute?: string,
): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string") return value;
  if (value instanceof Uint8Array) {
    return decodeUtf8(value, `Kafka header ${quote(header)}`, attribute);
  }
  if (Array.isArray(value)) {
    if (value.length === 0) return undefined;
    if (value.length > 1) throw repeated(header, value.length, attribute);
    return headerText(header, value[0], attribute);
  }
  throw new CloudEventError(
    "invalid-attribute",
    `The Kafka header ${quote(header)} is ${
      describeValue(value)
    }; expected bytes, a string or an array of them`,
    { attribute },
  );
}

function repeated(
  header: string,
  count: number,
  attribute?: string,
): CloudEventError {
  return new CloudEventError(
    "invalid-attribute",
    `The Kafka header ${
      quote(header)
    } appears ${count} times (the ce_ prefix matches in any letter case); a CloudEvents attribute appears at most once`,
    { attribute },
  );
}

function keyOf(event: CloudEvent): Uint8Array | null {
  const key = event[PARTITION_KEY_EXTENSION];
  if (key === undefined) return null;
  return encodeUtf8(String(key));
}
