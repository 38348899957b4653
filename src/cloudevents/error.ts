/**
 * The error raised when a message is not a valid CloudEvent, with a stable
 * reason code per failure.
 *
 * @module
 */
import { DataExchangeError, isDataExchangeError } from "../errors.ts";

/**
 * Why a message or value is not a valid CloudEvent.
 *
 * - `empty-payload`: the message carries nothing at all: a zero-length
 *   structured-mode payload (such as an MQTT retained-message clear), or a
 *   Kafka record with no value and no CloudEvents headers (a tombstone).
 * - `malformed-json`: a structured-mode payload is not JSON text.
 * - `not-an-object`: the JSON text or value is not an object (an array, a
 *   string, `null`, ...).
 * - `missing-attribute`: a REQUIRED attribute (`specversion`, `id`, `source`,
 *   `type`) is absent.
 * - `invalid-attribute`: an attribute has the wrong type or form (an empty
 *   string, a `time` that is not RFC 3339, an extension value that is neither
 *   a string, an int32 integer nor a boolean), or appears more than once.
 * - `unsupported-specversion`: `specversion` is a string other than `"1.0"`.
 * - `invalid-extension-name`: an attribute name that is not made of lower-case
 *   ASCII letters and digits only (upper case, `-`, `_` and the like), or one
 *   that is reserved (`data`). Names are never rewritten to fit.
 * - `invalid-data`: the event data does not fit its content type: `data` and
 *   `data_base64` both present, bad base64, a JSON content type whose bytes are
 *   not JSON, non-string data with a non-JSON content type, or data that
 *   cannot be serialized.
 * - `invalid-encoding`: bytes that had to be UTF-8 (a structured payload, a
 *   header value, text data) are not valid UTF-8.
 * - `unsupported-format`: a structured-mode message uses an event format other
 *   than JSON (`application/cloudevents+avro`, the batch format, ...).
 *
 * @example Count rejected payloads by reason
 * ```ts
 * import {
 *   type CloudEventErrorCode,
 *   fromMqttMessage,
 *   isCloudEventError,
 * } from "@dataexchange/streams/cloudevents";
 *
 * const rejected = new Map<CloudEventErrorCode, number>();
 * for (const text of ["", "{", "[1]", '{"specversion":"1.0"}']) {
 *   try {
 *     const payload = new TextEncoder().encode(text);
 *     fromMqttMessage({ topic: "sensors/7", payload });
 *   } catch (error) {
 *     if (!isCloudEventError(error)) throw error;
 *     rejected.set(error.code, (rejected.get(error.code) ?? 0) + 1);
 *   }
 * }
 * console.log([...rejected.keys()].join(" ")); // empty-payload malformed-json not-an-object missing-attribute
 * ```
 */
export type CloudEventErrorCode =
  | "empty-payload"
  | "malformed-json"
  | "not-an-object"
  | "missing-attribute"
  | "invalid-attribute"
  | "unsupported-specversion"
  | "invalid-extension-name"
  | "invalid-data"
  | "invalid-encoding"
  | "unsupported-format";

const CODES: ReadonlySet<string> = new Set<CloudEventErrorCode>([
  "empty-payload",
  "malformed-json",
  "not-an-object",
  "missing-attribute",
  "invalid-attribute",
  "unsupported-specversion",
  "invalid-extension-name",
  "invalid-data",
  "invalid-encoding",
  "unsupported-format",
]);

/**
 * Options accepted by {@linkcode CloudEventError}.
 *
 * @example Name the attribute at fault and keep the cause
 * ```ts
 * import {
 *   CloudEventError,
 *   type CloudEventErrorOptions,
 * } from "@dataexchange/streams/cloudevents";
 *
 * function checkTime(time: string): void {
 *   if (Number.isNaN(Date.parse(time))) {
 *     const options: CloudEventErrorOptions = {
 *       attribute: "time",
 *       cause: new RangeError(`not a date: ${time}`),
 *     };
 *     throw new CloudEventError(
 *       "invalid-attribute",
 *       `The "time" attribute is not a timestamp: "${time}"`,
 *       options,
 *     );
 *   }
 * }
 *
 * try {
 *   checkTime("yesterday");
 * } catch (error) {
 *   if (!(error instanceof CloudEventError)) throw error;
 *   console.log(error.attribute, error.cause instanceof RangeError); // time true
 * }
 * ```
 */
export interface CloudEventErrorOptions {
  /** The error that caused this one, such as a `SyntaxError` from `JSON.parse`. */
  cause?: unknown;
  /** The name of the attribute at fault, when there is one. */
  attribute?: string;
}

/**
 * A message or value that is not a valid CloudEvent. Never retriable: the
 * same bytes fail the same way every time, so they belong on a dead-letter
 * topic.
 *
 * @example Branch on the reason code
 * ```ts
 * import { CloudEventError, isCloudEventError } from "./error.ts";
 *
 * const error: unknown = new CloudEventError(
 *   "missing-attribute",
 *   'The CloudEvent has no "id" attribute',
 *   { attribute: "id" },
 * );
 * if (isCloudEventError(error) && error.code === "missing-attribute") {
 *   console.log(`bad event: ${error.attribute}`);
 * }
 * ```
 */
export class CloudEventError extends DataExchangeError {
  /** Why the event is invalid; one of {@linkcode CloudEventErrorCode}. */
  override readonly code: CloudEventErrorCode;
  /** The attribute at fault, when the failure concerns one. */
  readonly attribute: string | undefined;

  /**
   * Makes the error for one invalid event or message. It never throws.
   *
   * @param code Why the event is invalid.
   * @param message A readable message naming the attribute, the value given
   * and what is allowed.
   * @param options The cause and the attribute at fault.
   */
  constructor(
    code: CloudEventErrorCode,
    message: string,
    options: CloudEventErrorOptions = {},
  ) {
    super(code, message, { cause: options.cause, retriable: false });
    this.name = "CloudEventError";
    this.code = code;
    this.attribute = options.attribute;
  }
}

/**
 * Tells whether a value is a {@linkcode CloudEventError}, also when it comes
 * from another copy of this module (it checks the name and code, not only the
 * class). It never throws.
 *
 * @param value Any value, typically a caught error.
 * @returns `true` when `value` is a `DataExchangeError` named
 * `CloudEventError` whose code is a {@linkcode CloudEventErrorCode}.
 *
 * @example Tell invalid events from other failures
 * ```ts
 * import { isCloudEventError } from "./error.ts";
 * import { parseStructured } from "./json_format.ts";
 *
 * try {
 *   parseStructured(new TextEncoder().encode("not json"));
 * } catch (error) {
 *   console.log(isCloudEventError(error)); // true
 * }
 * ```
 */
export function isCloudEventError(value: unknown): value is CloudEventError {
  return isDataExchangeError(value) && value.name === "CloudEventError" &&
    CODES.has(value.code);
}
