/**
 * Media-type checks shared by the event format and the protocol bindings.
 *
 * @module
 */

/** The media type of the JSON event format (JSON format 1.0.2, section 3). */
export const JSON_EVENT_FORMAT = "application/cloudevents+json";

/** The content type written for structured-mode messages. */
export const STRUCTURED_CONTENT_TYPE =
  "application/cloudevents+json; charset=utf-8";

/** The content type implied for data when an event has none (JSON format, 3.1.1). */
export const IMPLIED_CONTENT_TYPE = "application/json";

const CLOUDEVENTS_PREFIX = "application/cloudevents";

/**
 * Returns the media type of a content type: `type/subtype`, lower case,
 * without parameters or surrounding spaces.
 *
 * @param contentType A content type such as `Application/JSON; charset=utf-8`.
 * @returns The media type, such as `application/json`.
 *
 * @example Strip the parameters
 * ```ts
 * import { mediaTypeOf } from "./_content_type.ts";
 *
 * console.log(mediaTypeOf("Text/Plain; charset=utf-8")); // text/plain
 * ```
 */
export function mediaTypeOf(contentType: string): string {
  const semicolon = contentType.indexOf(";");
  const bare = semicolon < 0 ? contentType : contentType.slice(0, semicolon);
  return bare.trim().toLowerCase();
}

/**
 * Tells whether a content type declares JSON data: its media type has the
 * form `*\/json` or `*\/*+json` (JSON format 1.0.2, section 3.1.1).
 *
 * @param contentType A content type.
 * @returns `true` for JSON content.
 *
 * @example A structured-syntax suffix counts
 * ```ts
 * import { isJsonContentType } from "./_content_type.ts";
 *
 * console.log(isJsonContentType("application/vnd.api+json")); // true
 * console.log(isJsonContentType("application/xml")); // false
 * ```
 */
export function isJsonContentType(contentType: string): boolean {
  const subtype = subtypeOf(mediaTypeOf(contentType));
  return subtype === "json" || subtype.endsWith("+json");
}

/**
 * Tells whether a content type declares UTF-8 text that this module keeps as
 * a string: `text/*`, `*\/xml` or `*\/*+xml`, with no `charset` or a
 * `charset` of `utf-8` or `us-ascii`. Text in any other charset stays bytes.
 *
 * @param contentType A content type.
 * @returns `true` when the data is read as a UTF-8 string.
 *
 * @example Latin-1 text stays bytes
 * ```ts
 * import { isUtf8TextContentType } from "./_content_type.ts";
 *
 * console.log(isUtf8TextContentType("text/plain; charset=utf-8")); // true
 * console.log(isUtf8TextContentType("text/plain; charset=iso-8859-1")); // false
 * ```
 */
export function isUtf8TextContentType(contentType: string): boolean {
  const mediaType = mediaTypeOf(contentType);
  const subtype = subtypeOf(mediaType);
  const text = mediaType.startsWith("text/") || subtype === "xml" ||
    subtype.endsWith("+xml");
  if (!text) return false;
  const charset = charsetOf(contentType);
  return charset === undefined || charset === "utf-8" || charset === "utf8" ||
    charset === "us-ascii";
}

/**
 * Tells whether a content type names a CloudEvents event format: it starts
 * with `application/cloudevents`, matched case-insensitively (Kafka binding
 * 1.0.2 section 3, MQTT binding 1.0.2 section 3).
 *
 * @param contentType A content type.
 * @returns `true` for a structured-mode (or batch) message.
 *
 * @example Any event format counts
 * ```ts
 * import { isCloudEventsContentType } from "./_content_type.ts";
 *
 * console.log(isCloudEventsContentType("application/cloudevents+avro")); // true
 * ```
 */
export function isCloudEventsContentType(contentType: string): boolean {
  return contentType.length >= CLOUDEVENTS_PREFIX.length &&
    contentType.slice(0, CLOUDEVENTS_PREFIX.length).toLowerCase() ===
      CLOUDEVENTS_PREFIX;
}

/**
 * Tells whether a string has the shape of an RFC 2046 media type: a type and
 * a subtype made of RFC 2045 token characters, optionally followed by `;` and
 * parameters (which are not checked).
 *
 * @param contentType The string to check.
 * @returns `true` when it looks like `type/subtype[; parameters]`.
 *
 * @example Reject a bare word
 * ```ts
 * import { isMediaType } from "./_content_type.ts";
 *
 * console.log(isMediaType("application/json; charset=utf-8")); // true
 * console.log(isMediaType("json")); // false
 * ```
 */
export function isMediaType(contentType: string): boolean {
  let i = 0;
  const end = contentType.length;
  while (i < end && contentType.charCodeAt(i) === 0x20) i++;
  const typeStart = i;
  while (i < end && isTokenChar(contentType.charCodeAt(i))) i++;
  if (i === typeStart || contentType.charCodeAt(i) !== 0x2f) return false;
  i++;
  const subtypeStart = i;
  while (i < end && isTokenChar(contentType.charCodeAt(i))) i++;
  if (i === subtypeStart) return false;
  while (i < end && contentType.charCodeAt(i) === 0x20) i++;
  return i === end || contentType.charCodeAt(i) === 0x3b;
}

function subtypeOf(mediaType: string): string {
  const slash = mediaType.indexOf("/");
  return slash < 0 ? "" : mediaType.slice(slash + 1);
}

function charsetOf(contentType: string): string | undefined {
  let start = contentType.indexOf(";");
  while (start >= 0) {
    const next = contentType.indexOf(";", start + 1);
    const parameter = contentType.slice(start + 1, next < 0 ? undefined : next);
    const equals = parameter.indexOf("=");
    if (
      equals > 0 &&
      parameter.slice(0, equals).trim().toLowerCase() === "charset"
    ) {
      let value = parameter.slice(equals + 1).trim();
      if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) {
        value = value.slice(1, -1);
      }
      return value.toLowerCase();
    }
    start = next;
  }
  return undefined;
}

// RFC 2045 section 5.1: a token character is any printable ASCII character
// except SPACE and the tspecials ( ) < > @ , ; : \ " / [ ] ? =
const TOKEN_CHARS = new Uint8Array(128);
for (let c = 0x21; c < 0x7f; c++) TOKEN_CHARS[c] = 1;
for (const special of '()<>@,;:\\"/[]?=') {
  TOKEN_CHARS[special.charCodeAt(0)] = 0;
}

function isTokenChar(c: number): boolean {
  return c < 128 && TOKEN_CHARS[c] === 1;
}
