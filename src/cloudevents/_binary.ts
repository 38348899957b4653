/**
 * What the binary content modes of the Kafka and MQTT bindings share: the
 * attributes as canonical strings, and `data` to and from message bytes.
 *
 * @module
 */
import { canonicalString } from "./_attributes.ts";
import {
  IMPLIED_CONTENT_TYPE,
  isJsonContentType,
  isUtf8TextContentType,
} from "./_content_type.ts";
import { describeValue, quote } from "./_describe.ts";
import { decodeUtf8, decodeUtf8Document, encodeUtf8 } from "./_utf8.ts";
import {
  type CloudEvent,
  type ExtensionValue,
  validateCloudEvent,
} from "./event.ts";
import { CloudEventError } from "./error.ts";

/** The data of an event as message bytes, with the content type to send. */
export interface BinaryData {
  /** The payload; `null` when the event has no data. */
  readonly bytes: Uint8Array | null;
  /** The content type to send, when there is one. */
  readonly contentType: string | undefined;
}

/**
 * Lists every attribute of an event except `data` and `datacontenttype`, as
 * canonical strings ("Type System"): what binary mode writes as Kafka headers
 * or MQTT user properties.
 *
 * @param event A validated event.
 * @returns Pairs of attribute name and canonical string value, in key order.
 *
 * @example An integer extension becomes a decimal string
 * ```ts
 * import { attributeStrings } from "./_binary.ts";
 *
 * const event = { specversion: "1.0", id: "1", source: "/s", type: "t", n: 7 } as const;
 * console.log(attributeStrings(event).at(-1)); // [ "n", "7" ]
 * ```
 */
export function attributeStrings(event: CloudEvent): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  for (const name of Object.keys(event)) {
    if (name === "data" || name === "datacontenttype") continue;
    const value = event[name];
    if (value === undefined) continue;
    pairs.push([name, canonicalString(value as ExtensionValue)]);
  }
  return pairs;
}

/**
 * Turns the data of an event into message bytes (Kafka binding 3.2.2, MQTT
 * binding 3.1.2): a `Uint8Array` as it is (not copied); with a JSON content
 * type, or none, the JSON text, and the content type `application/json` when
 * there was none (JSON format 3.1.1: it is implied); otherwise the string as
 * UTF-8.
 *
 * @param event A validated event.
 * @returns The bytes, `null` without data, and the content type to send.
 * @throws {CloudEventError} `invalid-data` when JSON data cannot be serialized.
 *
 * @example An object becomes JSON
 * ```ts
 * import { encodeBinaryData } from "./_binary.ts";
 *
 * const event = { specversion: "1.0", id: "1", source: "/s", type: "t", data: { a: 1 } } as const;
 * console.log(encodeBinaryData(event).contentType); // application/json
 * ```
 */
export function encodeBinaryData(event: CloudEvent): BinaryData {
  const data = event.data;
  const contentType = event.datacontenttype;
  if (data === undefined) return { bytes: null, contentType };
  if (data instanceof Uint8Array) return { bytes: data, contentType };
  if (contentType === undefined || isJsonContentType(contentType)) {
    return {
      bytes: encodeUtf8(stringifyData(data)),
      contentType: contentType ?? IMPLIED_CONTENT_TYPE,
    };
  }
  if (typeof data === "string") return { bytes: encodeUtf8(data), contentType };
  throw new CloudEventError(
    "invalid-data",
    `The CloudEvent data is ${describeValue(data)} but its datacontenttype ${
      quote(contentType)
    } is not JSON; expected a string or a Uint8Array`,
  );
}

/**
 * Serializes JSON data.
 *
 * @param data A JSON value.
 * @returns The JSON text.
 * @throws {CloudEventError} `invalid-data` when the value has no JSON form
 * (a cycle, a bigint, `undefined`, ...).
 *
 * @example Serialize an array
 * ```ts
 * import { stringifyData } from "./_binary.ts";
 *
 * console.log(stringifyData([1, 2])); // [1,2]
 * ```
 */
export function stringifyData(data: unknown): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(data);
  } catch (cause) {
    throw new CloudEventError(
      "invalid-data",
      `The CloudEvent data cannot be written as JSON: ${String(cause)}`,
      { cause },
    );
  }
  if (text === undefined) {
    throw new CloudEventError(
      "invalid-data",
      `The CloudEvent data is ${describeValue(data)}, which has no JSON form`,
    );
  }
  return text;
}

/**
 * Reads message bytes as event data by their content type (Kafka binding
 * 3.2.2, MQTT binding 3.1.2; JSON format 3.1 for what is JSON):
 *
 * - a JSON content type (`*\/json`, `*\/*+json`): parsed JSON; the bytes must
 *   be UTF-8 JSON text (one leading byte order mark is dropped);
 * - UTF-8 text (`text/*`, `*\/xml`, `*\/*+xml` with no charset or UTF-8):
 *   a string;
 * - anything else, or no content type: the bytes, not copied (a string
 *   payload is encoded as UTF-8).
 *
 * @param payload The message bytes, or the text a client already decoded.
 * @param contentType The content type of the data, if any.
 * @param where What the payload is, for error messages, such as `Kafka record value`.
 * @returns The data.
 * @throws {CloudEventError} `invalid-data` when a JSON content type holds
 * no JSON; `invalid-encoding` when text or JSON is not UTF-8.
 *
 * @example JSON bytes become a value
 * ```ts
 * import { decodeBinaryData } from "./_binary.ts";
 *
 * const bytes = new TextEncoder().encode('{"a":1}');
 * console.log(decodeBinaryData(bytes, "application/json", "value")); // { a: 1 }
 * ```
 */
export function decodeBinaryData(
  payload: Uint8Array | string,
  contentType: string | undefined,
  where: string,
): unknown {
  if (contentType === undefined) {
    return typeof payload === "string" ? encodeUtf8(payload) : payload;
  }
  if (isJsonContentType(contentType)) {
    const text = typeof payload === "string"
      ? payload
      : decodeUtf8Document(payload, where);
    try {
      return JSON.parse(text);
    } catch (cause) {
      throw new CloudEventError(
        "invalid-data",
        `The ${where} is not JSON although its content type is ${
          quote(contentType)
        }: ${String(cause)}`,
        { cause },
      );
    }
  }
  if (isUtf8TextContentType(contentType)) {
    return typeof payload === "string" ? payload : decodeUtf8(payload, where);
  }
  return typeof payload === "string" ? encodeUtf8(payload) : payload;
}

/**
 * Builds and validates an event from binary-mode parts. The content type of
 * the message is the `datacontenttype` (Kafka binding 3.2.1, MQTT binding
 * 3.1.1); a `datacontenttype` attribute sent as well must agree with it.
 *
 * @param attributes The attributes read from headers or user properties, by
 * name, in an object without prototype.
 * @param contentType The message content type, if any.
 * @param payload The data bytes; `null` for none.
 * @param where What the payload is, for error messages.
 * @returns The validated event.
 * @throws {CloudEventError} When the parts do not make a valid event.
 *
 * @example Assemble an event from headers
 * ```ts
 * import { assembleBinaryEvent } from "./_binary.ts";
 *
 * const attributes = Object.assign(Object.create(null), {
 *   specversion: "1.0", id: "1", source: "/s", type: "t",
 * });
 * const event = assembleBinaryEvent(attributes, "text/plain", new TextEncoder().encode("hi"), "value");
 * console.log(event.data); // hi
 * ```
 */
export function assembleBinaryEvent(
  attributes: Record<string, string>,
  contentType: string | undefined,
  payload: Uint8Array | string | null,
  where: string,
): CloudEvent {
  const sent = attributes.datacontenttype;
  if (contentType !== undefined) {
    if (sent !== undefined && sent !== contentType) {
      throw new CloudEventError(
        "invalid-attribute",
        `The ${where} has content type ${
          quote(contentType)
        } but a datacontenttype attribute ${quote(sent)}; they must agree`,
        { attribute: "datacontenttype" },
      );
    }
    attributes.datacontenttype = contentType;
  }
  // Attributes first, so that a message that is no CloudEvent at all says so
  // rather than failing on its payload.
  const event = validateCloudEvent(attributes);
  if (payload === null) return event;
  const data = decodeBinaryData(payload, event.datacontenttype, where);
  (event as Record<string, unknown>).data = data;
  return event;
}
