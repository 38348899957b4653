/**
 * The CloudEvent type, strict validation, and a constructor for new events,
 * after the CloudEvents 1.0.2 core specification.
 *
 * An event is a plain object flattened like the JSON event format: the
 * context attributes, the extension attributes as further keys, and `data`.
 *
 * @module
 */
import {
  ATTRIBUTE_NAME_RULE,
  findDisallowedChar,
  INT32_MAX,
  INT32_MIN,
  isAttributeName,
  isCoreAttribute,
  isInt32,
} from "./_attributes.ts";
import {
  isJsonContentType,
  isMediaType,
  isUtf8TextContentType,
} from "./_content_type.ts";
import { describeValue, quote } from "./_describe.ts";
import { isRfc3339 } from "./_time.ts";
import { CloudEventError } from "./error.ts";

export { CloudEventError, isCloudEventError } from "./error.ts";
export type { CloudEventErrorCode, CloudEventErrorOptions } from "./error.ts";

/**
 * The only CloudEvents specification version this module reads and writes.
 *
 * @example Refuse an event of another version before reading it
 * ```ts
 * import { SPEC_VERSION } from "@dataexchange/streams/cloudevents";
 *
 * const incoming = JSON.parse('{"specversion":"0.3","id":"1"}');
 * if (incoming.specversion !== SPEC_VERSION) {
 *   console.log(`cannot read CloudEvents ${incoming.specversion}`); // cannot read CloudEvents 0.3
 * }
 * ```
 */
export const SPEC_VERSION = "1.0";

/**
 * The extension attribute that carries an event's classification, which the
 * router reads to choose a Kafka topic.
 *
 * @example Read the classification of an event
 * ```ts
 * import {
 *   CLASSIFICATION_EXTENSION,
 *   createCloudEvent,
 * } from "@dataexchange/streams/cloudevents";
 *
 * const event = createCloudEvent({
 *   source: "/sensors/7",
 *   type: "com.example.alarm",
 *   classification: "alert",
 * });
 * console.log(event[CLASSIFICATION_EXTENSION]); // alert
 * ```
 */
export const CLASSIFICATION_EXTENSION = "classification";

/**
 * The value of an extension attribute: a string, an int32 integer or a boolean.
 *
 * @example Extensions of each allowed kind
 * ```ts
 * import {
 *   createCloudEvent,
 *   type ExtensionValue,
 * } from "@dataexchange/streams/cloudevents";
 *
 * const extensions: Record<string, ExtensionValue> = {
 *   region: "eu-west",
 *   firmware: 42,
 *   calibrated: true,
 * };
 * const event = createCloudEvent({
 *   source: "/sensors/7",
 *   type: "com.example.reading",
 *   extensions,
 * });
 * console.log(event.region, event.firmware, event.calibrated); // eu-west 42 true
 * ```
 */
export type ExtensionValue = string | number | boolean;

/**
 * A CloudEvent (CloudEvents 1.0.2), flattened like the JSON event format:
 * extension attributes are further keys next to the core attributes.
 *
 * A key whose value is `undefined` counts as absent. `data` holds a JSON
 * value when the content type is JSON (or absent), a `Uint8Array` for binary
 * data, and a string for text.
 *
 * @example Describe an event whatever its data
 * ```ts
 * import {
 *   type CloudEvent,
 *   parseStructured,
 * } from "@dataexchange/streams/cloudevents";
 *
 * function describe(event: CloudEvent): string {
 *   const data = event.data instanceof Uint8Array
 *     ? `${event.data.length} bytes`
 *     : JSON.stringify(event.data);
 *   return `${event.type} from ${event.source}: ${data}`;
 * }
 *
 * const event = parseStructured(new TextEncoder().encode(JSON.stringify({
 *   specversion: "1.0",
 *   id: "r-1",
 *   source: "/sensors/7",
 *   type: "com.example.reading",
 *   data: { celsius: 20 },
 * })));
 * console.log(describe(event)); // com.example.reading from /sensors/7: {"celsius":20}
 * ```
 */
export interface CloudEvent {
  /** The CloudEvents version; always `"1.0"`. */
  readonly specversion: "1.0";
  /** Identifies the event; `source` + `id` is unique per distinct event. */
  readonly id: string;
  /** The context in which the event happened, a URI-reference. */
  readonly source: string;
  /** The kind of event, such as `com.example.sensor.reading`. */
  readonly type: string;
  /** The RFC 2046 media type of `data`. */
  readonly datacontenttype?: string;
  /** The URI of the schema that `data` adheres to. */
  readonly dataschema?: string;
  /** The subject of the event in the context of its source. */
  readonly subject?: string;
  /** When the occurrence happened, an RFC 3339 timestamp. */
  readonly time?: string;
  /** The event payload: a JSON value, a `Uint8Array` or a string. */
  readonly data?: unknown;
  /** An extension attribute: a string, an int32 integer or a boolean. */
  readonly [extension: string]: unknown;
}

/**
 * Options of {@linkcode createCloudEvent}.
 *
 * @example Build the options in one place, create the events in another
 * ```ts
 * import {
 *   createCloudEvent,
 *   type CreateCloudEventOptions,
 * } from "@dataexchange/streams/cloudevents";
 *
 * function reading(sensor: number, celsius: number): CreateCloudEventOptions {
 *   return {
 *     source: `/sensors/${sensor}`,
 *     type: "com.example.reading",
 *     classification: "telemetry",
 *     time: new Date(Date.UTC(2025, 0, 1)),
 *     data: { celsius },
 *   };
 * }
 *
 * const event = createCloudEvent(reading(7, 21.5));
 * console.log(event.source, event.time); // /sensors/7 2025-01-01T00:00:00.000Z
 * ```
 */
export interface CreateCloudEventOptions {
  /** The `source` attribute, a non-empty URI-reference such as `/sensors/42`. */
  source: string;
  /** The `type` attribute, such as `com.example.sensor.reading`. */
  type: string;
  /** The `classification` extension, which the router reads. Default: none. */
  classification?: string;
  /** The payload. Default: none. */
  data?: unknown;
  /**
   * The media type of `data`. Default, when `data` is given: inferred from
   * it: `application/octet-stream` for a `Uint8Array`,
   * `text/plain; charset=utf-8` for a string, `application/json` otherwise.
   */
  datacontenttype?: string;
  /** The `dataschema` attribute, a URI. Default: none. */
  dataschema?: string;
  /** The `subject` attribute. Default: none. */
  subject?: string;
  /** The `id` attribute. Default: `crypto.randomUUID()`. */
  id?: string;
  /** The `time` attribute, an RFC 3339 string or a `Date`. Default: now. */
  time?: string | Date;
  /**
   * Further extension attributes, by name (lower-case ASCII letters or
   * digits; the specification advises at most 20 of them). Core attribute names are refused. Default: none.
   */
  extensions?: Readonly<Record<string, ExtensionValue>>;
}

/**
 * Creates a new, valid CloudEvent.
 *
 * @param options The attributes and data of the event.
 * @returns The event, validated by {@linkcode validateCloudEvent}.
 * @throws {CloudEventError} When an attribute or extension is invalid, or
 * an extension reuses a core attribute name (`invalid-extension-name`).
 * @throws {TypeError} When `options` is not an object.
 *
 * @example Create a classified event with JSON data
 * ```ts
 * import { createCloudEvent } from "./event.ts";
 *
 * const event = createCloudEvent({
 *   source: "/sensors/42",
 *   type: "com.example.sensor.reading",
 *   classification: "telemetry",
 *   data: { celsius: 21.5 },
 * });
 * console.log(event.datacontenttype); // application/json
 * console.log(event.classification); // telemetry
 * ```
 */
export function createCloudEvent(options: CreateCloudEventOptions): CloudEvent {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `createCloudEvent() expects an options object; got ${
        describeValue(options)
      }`,
    );
  }

  const event: Record<string, unknown> = {
    specversion: SPEC_VERSION,
    id: options.id ?? crypto.randomUUID(),
    source: options.source,
    type: options.type,
    time: toTimestamp(options.time),
  };
  const datacontenttype = options.datacontenttype ??
    (options.data === undefined ? undefined : inferContentType(options.data));
  if (datacontenttype !== undefined) event.datacontenttype = datacontenttype;
  if (options.dataschema !== undefined) event.dataschema = options.dataschema;
  if (options.subject !== undefined) event.subject = options.subject;

  for (const name of Object.keys(options.extensions ?? {})) {
    if (isCoreAttribute(name)) {
      throw new CloudEventError(
        "invalid-extension-name",
        `The extension ${
          quote(name)
        } is a core CloudEvents attribute; set it through its own option, not extensions`,
        { attribute: name },
      );
    }
    if (!isAttributeName(name)) throw badName(name);
    event[name] = options.extensions![name];
  }
  if (options.classification !== undefined) {
    const given = event[CLASSIFICATION_EXTENSION];
    if (given !== undefined && given !== options.classification) {
      throw new CloudEventError(
        "invalid-attribute",
        `The classification is given twice, as ${
          quote(options.classification)
        } and as extensions.classification ${
          describeValue(given)
        }; give it once`,
        { attribute: CLASSIFICATION_EXTENSION },
      );
    }
    event[CLASSIFICATION_EXTENSION] = options.classification;
  }
  if (options.data !== undefined) event.data = options.data;

  return validateCloudEvent(event);
}

/**
 * Checks that a value is a valid CloudEvent 1.0 and returns it as a new
 * plain object without `undefined`-valued keys. The rules:
 *
 * - `specversion` is exactly the string `"1.0"` (a number is
 *   `invalid-attribute`, another string `unsupported-specversion`);
 * - `id`, `source` and `type` are non-empty strings (REQUIRED attributes);
 * - `datacontenttype`, `dataschema`, `subject` and `time`, when present, are
 *   non-empty strings; `time` is an RFC 3339 timestamp and `datacontenttype`
 *   has the shape `type/subtype`;
 * - every string attribute value is free of the characters the `String`
 *   type disallows: control characters, noncharacters and lone surrogates;
 * - every other key except `data` is an extension: its name is one or more
 *   lower-case ASCII letters or digits (longer than 20 is accepted), its value a string, an integer from
 *   -2147483648 to 2147483647, or a boolean (`null`, objects and floats are
 *   refused);
 * - `data` is not a function, symbol, bigint or non-finite number; with a
 *   content type that is not JSON it is a string or a `Uint8Array`; a
 *   `Uint8Array` under a JSON content type holds UTF-8 JSON text
 *   (`invalid-data`), one under a UTF-8 text content type valid UTF-8
 *   (`invalid-encoding`); typed
 *   arrays other than `Uint8Array` are refused. Nested values of JSON data
 *   are not walked: what `JSON.stringify` cannot write fails when the event
 *   is serialized.
 *
 * `null` is a wrong type here; the JSON event format turns `null`
 * attributes into absent ones before it validates.
 *
 * @param value Any value, such as a parsed JSON object.
 * @returns The event.
 * @throws {CloudEventError} With a code that says what is wrong and a message
 * naming the attribute, the value given (cut to 80 characters) and what is
 * allowed.
 *
 * @example Reject an event with a bad time
 * ```ts
 * import { isCloudEventError, validateCloudEvent } from "./event.ts";
 *
 * try {
 *   validateCloudEvent({
 *     specversion: "1.0",
 *     id: "1",
 *     source: "/s",
 *     type: "t",
 *     time: "yesterday",
 *   });
 * } catch (error) {
 *   if (isCloudEventError(error)) console.log(error.code); // invalid-attribute
 * }
 * ```
 */
export function validateCloudEvent(value: unknown): CloudEvent {
  if (
    typeof value !== "object" || value === null || Array.isArray(value) ||
    ArrayBuffer.isView(value)
  ) {
    throw new CloudEventError(
      "not-an-object",
      `A CloudEvent must be an object; got ${describeValue(value)}`,
    );
  }
  const input = value as Readonly<Record<string, unknown>>;

  checkSpecversion(input.specversion);
  const event: Record<string, unknown> = {
    specversion: SPEC_VERSION,
    id: requiredString(input, "id"),
    source: requiredString(input, "source"),
    type: requiredString(input, "type"),
  };

  const datacontenttype = optionalString(input, "datacontenttype");
  if (datacontenttype !== undefined) {
    if (!isMediaType(datacontenttype)) {
      throw invalid(
        "datacontenttype",
        datacontenttype,
        "an RFC 2046 media type such as application/json",
      );
    }
    event.datacontenttype = datacontenttype;
  }
  const dataschema = optionalString(input, "dataschema");
  if (dataschema !== undefined) event.dataschema = dataschema;
  const subject = optionalString(input, "subject");
  if (subject !== undefined) event.subject = subject;
  const time = optionalString(input, "time");
  if (time !== undefined) {
    if (!isRfc3339(time)) {
      throw invalid(
        "time",
        time,
        'an RFC 3339 timestamp such as "2024-05-01T12:00:00Z"',
      );
    }
    event.time = time;
  }

  for (const name of Object.keys(input)) {
    if (name === "data" || isCoreAttribute(name)) continue;
    const extension = input[name];
    if (extension === undefined) continue;
    if (!isAttributeName(name)) throw badName(name);
    checkExtensionValue(name, extension);
    event[name] = extension;
  }

  const data = input.data;
  if (data !== undefined) {
    checkData(data, datacontenttype);
    event.data = data;
  }
  return event as unknown as CloudEvent;
}

// "REQUIRED Attributes": specversion; this module implements version 1.0.
function checkSpecversion(specversion: unknown): void {
  if (specversion === undefined) {
    throw new CloudEventError(
      "missing-attribute",
      'The CloudEvent has no "specversion" attribute; it is REQUIRED and must be "1.0"',
      { attribute: "specversion" },
    );
  }
  if (typeof specversion !== "string") {
    throw invalid("specversion", specversion, 'the string "1.0"');
  }
  if (specversion !== SPEC_VERSION) {
    throw new CloudEventError(
      "unsupported-specversion",
      `The CloudEvent attribute "specversion" is ${
        quote(specversion)
      }; only "1.0" is supported`,
      { attribute: "specversion" },
    );
  }
}

// "REQUIRED Attributes": id, source and type MUST be non-empty strings.
function requiredString(
  input: Readonly<Record<string, unknown>>,
  name: string,
): string {
  const value = input[name];
  if (value === undefined) {
    throw new CloudEventError(
      "missing-attribute",
      `The CloudEvent has no ${
        quote(name)
      } attribute; it is REQUIRED and must be a non-empty string`,
      { attribute: name },
    );
  }
  return checkString(name, value);
}

// "OPTIONAL Attributes": if present, MUST be a non-empty string.
function optionalString(
  input: Readonly<Record<string, unknown>>,
  name: string,
): string | undefined {
  const value = input[name];
  return value === undefined ? undefined : checkString(name, value);
}

function checkString(name: string, value: unknown): string {
  if (typeof value !== "string" || value.length === 0) {
    throw invalid(name, value, "a non-empty string");
  }
  checkStringChars(name, value);
  return value;
}

// "Type System", String: no control characters, noncharacters or lone
// surrogates.
function checkStringChars(name: string, value: string): void {
  const at = findDisallowedChar(value);
  if (at >= 0) {
    const code = value.charCodeAt(at).toString(16).toUpperCase().padStart(
      4,
      "0",
    );
    throw new CloudEventError(
      "invalid-attribute",
      `The CloudEvent attribute ${quote(name)} is ${
        quote(value)
      }, which has U+${code} at index ${at}; strings must not contain control characters, noncharacters or lone surrogates`,
      { attribute: name },
    );
  }
}

// "Type System": extension values are String, Integer or Boolean here (the
// other types, URI and Timestamp among them, travel as strings).
function checkExtensionValue(name: string, value: unknown): void {
  if (typeof value === "string") {
    checkStringChars(name, value);
  } else if (typeof value !== "boolean" && !isInt32(value)) {
    throw invalid(
      name,
      value,
      `a string, an integer from ${INT32_MIN} to ${INT32_MAX}, or a boolean`,
    );
  }
}

// JSON format 3.1: JSON content types (or none, which implies
// application/json) take any JSON value; other content types take a string
// (text) or bytes.
function checkData(data: unknown, datacontenttype: string | undefined): void {
  if (data instanceof Uint8Array) {
    // Bytes go out as they are (binary modes put them in the message body),
    // so under a JSON or UTF-8 text content type they must hold JSON or
    // UTF-8 text, or what the bridge writes could not be read back.
    if (datacontenttype === undefined) return;
    if (isUtf8TextContentType(datacontenttype) && !isUtf8(data)) {
      throw new CloudEventError(
        "invalid-encoding",
        `The CloudEvent data is ${data.length} bytes that are not valid UTF-8, but its datacontenttype ${
          quote(datacontenttype)
        } is UTF-8 text; send UTF-8, name the charset, or use a binary content type such as application/octet-stream`,
      );
    }
    if (isJsonContentType(datacontenttype) && !isJsonText(data)) {
      throw new CloudEventError(
        "invalid-data",
        `The CloudEvent data is ${data.length} bytes that are not UTF-8 JSON text, but its datacontenttype ${
          quote(datacontenttype)
        } says JSON; send JSON data, or give the bytes a non-JSON content type such as application/octet-stream`,
      );
    }
    return;
  }
  const kind = typeof data;
  if (
    kind === "function" || kind === "symbol" || kind === "bigint" ||
    (kind === "number" && !Number.isFinite(data)) ||
    ArrayBuffer.isView(data) || data instanceof ArrayBuffer
  ) {
    throw new CloudEventError(
      "invalid-data",
      `The CloudEvent data is ${
        describeValue(data)
      }; expected a JSON value, a string or a Uint8Array`,
    );
  }
  if (
    datacontenttype !== undefined && kind !== "string" &&
    !isJsonContentType(datacontenttype)
  ) {
    throw new CloudEventError(
      "invalid-data",
      `The CloudEvent data is ${describeValue(data)} but its datacontenttype ${
        quote(datacontenttype)
      } is not JSON; expected a string or a Uint8Array`,
    );
  }
}

function isJsonText(bytes: Uint8Array): boolean {
  try {
    JSON.parse(strictDecoder.decode(bytes));
    return true;
  } catch {
    return false;
  }
}

function isUtf8(bytes: Uint8Array): boolean {
  try {
    strictDecoder.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

const strictDecoder = new TextDecoder("utf-8", { fatal: true });

function invalid(
  name: string,
  value: unknown,
  expected: string,
): CloudEventError {
  return new CloudEventError(
    "invalid-attribute",
    `The CloudEvent attribute ${quote(name)} is ${
      describeValue(value)
    }; expected ${expected}`,
    { attribute: name },
  );
}

function badName(name: string): CloudEventError {
  return new CloudEventError(
    "invalid-extension-name",
    `The CloudEvent attribute name ${
      quote(name)
    } is invalid; ${ATTRIBUTE_NAME_RULE}`,
    { attribute: name },
  );
}

function toTimestamp(time: string | Date | undefined): unknown {
  if (time === undefined) return new Date().toISOString();
  if (!(time instanceof Date)) return time;
  if (Number.isNaN(time.getTime())) {
    throw new CloudEventError(
      "invalid-attribute",
      'The CloudEvent attribute "time" is an invalid Date; expected a valid Date or an RFC 3339 string',
      { attribute: "time" },
    );
  }
  return time.toISOString();
}

function inferContentType(data: unknown): string {
  if (data instanceof Uint8Array) return "application/octet-stream";
  if (typeof data === "string") return "text/plain; charset=utf-8";
  return "application/json";
}
