/**
 * Base64 (RFC 4648 section 4, the standard alphabet) over `Uint8Array`, for
 * the `data_base64` member of the JSON event format. Written here because
 * `btoa`/`atob` work on binary strings (a copy per byte) and
 * `Uint8Array.fromBase64` is not yet on every runtime this core targets.
 *
 * @module
 */

const ALPHABET =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const PAD = 0x3d; // "="

const ENCODE = new Uint8Array(64);
const DECODE = new Int8Array(128).fill(-1);
for (let i = 0; i < 64; i++) {
  ENCODE[i] = ALPHABET.charCodeAt(i);
  DECODE[ALPHABET.charCodeAt(i)] = i;
}

// Base64 text is ASCII, which any UTF-8 decoder reads unchanged.
const asciiDecoder = new TextDecoder();

/**
 * Encodes bytes as base64 with padding.
 *
 * @param bytes The bytes to encode; not modified.
 * @returns The base64 text.
 *
 * @example Encode three bytes
 * ```ts
 * import { encodeBase64 } from "./_base64.ts";
 *
 * console.log(encodeBase64(new Uint8Array([1, 2, 3]))); // AQID
 * ```
 */
export function encodeBase64(bytes: Uint8Array): string {
  const length = bytes.length;
  const out = new Uint8Array(Math.ceil(length / 3) * 4);
  const whole = length - (length % 3);
  let o = 0;
  for (let i = 0; i < whole; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out[o++] = ENCODE[n >>> 18];
    out[o++] = ENCODE[(n >>> 12) & 63];
    out[o++] = ENCODE[(n >>> 6) & 63];
    out[o++] = ENCODE[n & 63];
  }
  if (length - whole === 1) {
    const n = bytes[whole] << 16;
    out[o++] = ENCODE[n >>> 18];
    out[o++] = ENCODE[(n >>> 12) & 63];
    out[o++] = PAD;
    out[o++] = PAD;
  } else if (length - whole === 2) {
    const n = (bytes[whole] << 16) | (bytes[whole + 1] << 8);
    out[o++] = ENCODE[n >>> 18];
    out[o++] = ENCODE[(n >>> 12) & 63];
    out[o++] = ENCODE[(n >>> 6) & 63];
    out[o++] = PAD;
  }
  return asciiDecoder.decode(out);
}

/**
 * Decodes base64 text strictly: only the standard alphabet, no whitespace,
 * padding optional but only at the end, unused trailing bits zero.
 *
 * @param text The base64 text.
 * @returns The bytes, or `undefined` when the text is not valid base64.
 *
 * @example Decode, and reject the URL-safe alphabet
 * ```ts
 * import { decodeBase64 } from "./_base64.ts";
 *
 * console.log(decodeBase64("AQID")); // Uint8Array(3) [ 1, 2, 3 ]
 * console.log(decodeBase64("-_8=")); // undefined
 * ```
 */
export function decodeBase64(text: string): Uint8Array | undefined {
  let length = text.length;
  if (length % 4 === 0 && length > 0) {
    if (text.charCodeAt(length - 1) === PAD) length--;
    if (text.charCodeAt(length - 1) === PAD) length--;
  }
  const tail = length % 4;
  if (tail === 1) return undefined;

  const out = new Uint8Array((length >> 2) * 3 + (tail === 0 ? 0 : tail - 1));
  const whole = length - tail;
  let o = 0;
  for (let i = 0; i < whole; i += 4) {
    const a = sextet(text, i);
    const b = sextet(text, i + 1);
    const c = sextet(text, i + 2);
    const d = sextet(text, i + 3);
    if ((a | b | c | d) < 0) return undefined;
    const n = (a << 18) | (b << 12) | (c << 6) | d;
    out[o++] = n >>> 16;
    out[o++] = (n >>> 8) & 0xff;
    out[o++] = n & 0xff;
  }
  if (tail === 2) {
    const a = sextet(text, whole);
    const b = sextet(text, whole + 1);
    if ((a | b) < 0 || (b & 0x0f) !== 0) return undefined;
    out[o++] = (a << 2) | (b >>> 4);
  } else if (tail === 3) {
    const a = sextet(text, whole);
    const b = sextet(text, whole + 1);
    const c = sextet(text, whole + 2);
    if ((a | b | c) < 0 || (c & 0x03) !== 0) return undefined;
    const n = (a << 18) | (b << 12) | (c << 6);
    out[o++] = n >>> 16;
    out[o++] = (n >>> 8) & 0xff;
  }
  return out;
}

function sextet(text: string, index: number): number {
  const code = text.charCodeAt(index);
  return code < 128 ? DECODE[code] : -1;
}
