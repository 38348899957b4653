/**
 * Strict UTF-8 encoding and decoding on Web APIs, with shared encoder and
 * decoders so that no message allocates its own.
 *
 * @module
 */
import { CloudEventError } from "./error.ts";

// `fatal: true` rejects invalid sequences instead of replacing them with
// U+FFFD. The exact decoder keeps a leading U+FEFF as a character; the
// document decoder drops one byte order mark, as JSON readers may (RFC 8259
// section 8.1).
const exactDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const documentDecoder = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

/**
 * Decodes UTF-8 bytes exactly, rejecting invalid sequences. A leading byte
 * order mark is kept as the character U+FEFF.
 *
 * @param bytes The bytes to decode.
 * @param what What the bytes are, for the error message, such as `Kafka header "ce_id"`.
 * @param attribute The attribute the bytes hold, when they hold one.
 * @returns The decoded text.
 * @throws {CloudEventError} `invalid-encoding` when the bytes are not UTF-8.
 *
 * @example Decode a header value
 * ```ts
 * import { decodeUtf8 } from "./_utf8.ts";
 *
 * console.log(decodeUtf8(new Uint8Array([0x31, 0x2e, 0x30]), "header")); // 1.0
 * ```
 */
export function decodeUtf8(
  bytes: Uint8Array,
  what: string,
  attribute?: string,
): string {
  return decodeWith(exactDecoder, bytes, what, attribute);
}

/**
 * Decodes a UTF-8 text document, such as JSON, rejecting invalid sequences
 * and dropping one leading byte order mark.
 *
 * @param bytes The bytes to decode.
 * @param what What the bytes are, for the error message.
 * @returns The decoded text.
 * @throws {CloudEventError} `invalid-encoding` when the bytes are not UTF-8.
 *
 * @example The byte order mark is dropped
 * ```ts
 * import { decodeUtf8Document } from "./_utf8.ts";
 *
 * const bytes = new Uint8Array([0xef, 0xbb, 0xbf, 0x7b, 0x7d]);
 * console.log(decodeUtf8Document(bytes, "payload")); // {}
 * ```
 */
export function decodeUtf8Document(bytes: Uint8Array, what: string): string {
  return decodeWith(documentDecoder, bytes, what, undefined);
}

/**
 * Encodes text as UTF-8.
 *
 * @param text The text to encode.
 * @returns A new byte array.
 *
 * @example Encode an attribute value
 * ```ts
 * import { encodeUtf8 } from "./_utf8.ts";
 *
 * console.log(encodeUtf8("1.0").length); // 3
 * ```
 */
export function encodeUtf8(text: string): Uint8Array {
  return encoder.encode(text);
}

function decodeWith(
  decoder: TextDecoder,
  bytes: Uint8Array,
  what: string,
  attribute: string | undefined,
): string {
  try {
    return decoder.decode(bytes);
  } catch (cause) {
    throw new CloudEventError(
      "invalid-encoding",
      `The ${what} is not valid UTF-8 (${bytes.length} bytes); CloudEvents text must be UTF-8`,
      { cause, attribute },
    );
  }
}
