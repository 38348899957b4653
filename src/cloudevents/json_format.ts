/**
 * The JSON event format for CloudEvents 1.0.2 (media type
 * `application/cloudevents+json`): an event as one JSON object, used by the
 * structured content mode of every binding.
 *
 * @module
 */
import { decodeBase64, encodeBase64 } from "./_base64.ts";
import { stringifyData } from "./_binary.ts";
import { isJsonContentType } from "./_content_type.ts";
import { describeValue } from "./_describe.ts";
import { decodeUtf8Document, encodeUtf8 } from "./_utf8.ts";
import { type CloudEvent, validateCloudEvent } from "./event.ts";
import { CloudEventError } from "./error.ts";

/**
 * Parses an event in the JSON event format.
 *
 * - The bytes must be UTF-8; one leading byte order mark is dropped.
 * - Attributes whose value is `null` count as absent (section 2.2).
 * - `data_base64` becomes a `Uint8Array` (section 3.1.2); `data` and
 *   `data_base64` together are refused (section 3.1.1: mutually exclusive).
 * - With a JSON content type, or none, `data` is kept as the JSON value,
 *   `null` included; with another content type it must be a string, and a
 *   `null` there counts as no data (section 3.1.2).
 * - The result is validated with {@linkcode validateCloudEvent}.
 *
 * `JSON.parse` reads any nesting depth without recursion on the stack; this
 * function does not walk `data`.
 *
 * @param bytes The payload of a structured-mode message.
 * @returns The event.
 * @throws {CloudEventError} `invalid-encoding` (not UTF-8), `malformed-json`
 * (not JSON, or empty), `not-an-object` (JSON but not an object),
 * `invalid-data` (`data` with `data_base64`, bad base64, non-string data with
 * a non-JSON content type), or any code of {@linkcode validateCloudEvent}.
 *
 * @example Parse an event with binary data
 * ```ts
 * import { parseStructured } from "./json_format.ts";
 *
 * const event = parseStructured(new TextEncoder().encode(JSON.stringify({
 *   specversion: "1.0",
 *   id: "1",
 *   source: "/sensors/42",
 *   type: "com.example.reading",
 *   data_base64: "AQID",
 * })));
 * console.log(event.data); // Uint8Array(3) [ 1, 2, 3 ]
 * ```
 */
export function parseStructured(bytes: Uint8Array): CloudEvent {
  if (!(bytes instanceof Uint8Array)) {
    throw new TypeError(
      `parseStructured() expects a Uint8Array; got ${describeValue(bytes)}`,
    );
  }
  if (bytes.length === 0) {
    throw new CloudEventError(
      "empty-payload",
      "The structured-mode payload is empty (0 bytes), so it holds no CloudEvent; an MQTT retained-message clear looks like this. Publish a CloudEvent in JSON, or binary mode with attributes in user properties",
    );
  }
  const text = decodeUtf8Document(bytes, "structured-mode payload");

  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (cause) {
    throw new CloudEventError(
      "malformed-json",
      `The structured-mode payload (${bytes.length} bytes) is not JSON: ${
        String(cause)
      }`,
      { cause },
    );
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new CloudEventError(
      "not-an-object",
      `The structured-mode payload is ${
        describeValue(parsed)
      } in JSON; a CloudEvent is a JSON object`,
    );
  }
  return fromJsonObject(parsed as Record<string, unknown>);
}

function fromJsonObject(json: Record<string, unknown>): CloudEvent {
  // Section 2.2: a null attribute is the same as an absent one. JSON.parse
  // makes "__proto__" an own key; it is left out of the copy (assigning it
  // would set the prototype) and refused as a name below.
  const event: Record<string, unknown> = {};
  for (const name of Object.keys(json)) {
    if (name === "__proto__") {
      throw new CloudEventError(
        "invalid-extension-name",
        'The CloudEvent attribute name "__proto__" is invalid; names are lower-case ASCII letters or digits',
        { attribute: name },
      );
    }
    const value = json[name];
    if (name !== "data" && name !== "data_base64" && value !== null) {
      event[name] = value;
    }
  }

  const hasData = Object.hasOwn(json, "data");
  const base64 = json.data_base64 ?? undefined;
  if (base64 !== undefined) {
    if (hasData && json.data !== null) {
      throw new CloudEventError(
        "invalid-data",
        "The CloudEvent has both data and data_base64; they are mutually exclusive",
      );
    }
    event.data = readBase64(base64);
  } else if (hasData) {
    const data = json.data;
    const contentType = event.datacontenttype;
    const isJson = typeof contentType !== "string" ||
      isJsonContentType(contentType);
    if (isJson || data !== null) event.data = data;
  }
  return validateCloudEvent(event);
}

// Section 3.1.2: data_base64 MUST be decoded into binary.
function readBase64(value: unknown): Uint8Array {
  const bytes = typeof value === "string" ? decodeBase64(value) : undefined;
  if (bytes === undefined) {
    throw new CloudEventError(
      "invalid-data",
      `The CloudEvent data_base64 is ${
        describeValue(value)
      }; expected a base64 string (RFC 4648, standard alphabet)`,
    );
  }
  return bytes;
}

/**
 * Writes an event in the JSON event format, as UTF-8 bytes. A `Uint8Array`
 * in `data` is written as `data_base64` (section 3.1.1); other data as the
 * `data` member: a JSON value with a JSON content type (or none), a string
 * otherwise. The event is validated first.
 *
 * @param event The event to write.
 * @returns The JSON text as UTF-8.
 * @throws {CloudEventError} Any code of {@linkcode validateCloudEvent}, or
 * `invalid-data` when the data has no JSON form (a cycle, a bigint deep
 * inside, ...).
 *
 * @example Write bytes as data_base64
 * ```ts
 * import { createCloudEvent } from "./event.ts";
 * import { serializeStructured } from "./json_format.ts";
 *
 * const event = createCloudEvent({
 *   source: "/s",
 *   type: "t",
 *   data: new Uint8Array([1, 2, 3]),
 * });
 * const json = JSON.parse(new TextDecoder().decode(serializeStructured(event)));
 * console.log(json.data_base64); // AQID
 * ```
 */
export function serializeStructured(event: CloudEvent): Uint8Array {
  const valid = validateCloudEvent(event);
  const data = valid.data;
  if (!(data instanceof Uint8Array)) {
    return encodeUtf8(stringifyData(valid));
  }
  const json: Record<string, unknown> = {};
  for (const name of Object.keys(valid)) {
    if (name !== "data") json[name] = valid[name];
  }
  json.data_base64 = encodeBase64(data);
  return encodeUtf8(stringifyData(json));
}
