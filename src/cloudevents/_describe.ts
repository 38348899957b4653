/**
 * Renders values for error messages: short, quoted, never the whole payload.
 *
 * @module
 */

/** How many characters of a value an error message shows at most. */
export const MAX_SHOWN_CHARS = 80;

/**
 * Describes a value for an error message: strings quoted and escaped as JSON,
 * cut to {@linkcode MAX_SHOWN_CHARS} characters; other values by their type.
 *
 * @param value Any value.
 * @returns A short description, such as `"yesterday"`, `42`, `null` or `an object`.
 *
 * @example Describe a long string
 * ```ts
 * import { describeValue } from "./_describe.ts";
 *
 * console.log(describeValue("x".repeat(500)).length < 100); // true
 * ```
 */
export function describeValue(value: unknown): string {
  switch (typeof value) {
    case "string":
      return quote(value);
    case "number":
    case "boolean":
    case "bigint":
      return String(value);
    case "undefined":
      return "nothing";
    case "symbol":
      return "a symbol";
    case "function":
      return "a function";
  }
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (value instanceof Uint8Array) return `${value.length} bytes`;
  return "an object";
}

/**
 * Quotes a string as JSON, cut to {@linkcode MAX_SHOWN_CHARS} characters of
 * input, with `…` marking the cut.
 *
 * @param text Any string.
 * @returns The quoted, possibly shortened string.
 *
 * @example Quote a header name
 * ```ts
 * import { quote } from "./_describe.ts";
 *
 * console.log(quote("ce_id")); // "ce_id" with the quotes
 * ```
 */
export function quote(text: string): string {
  if (text.length <= MAX_SHOWN_CHARS) return JSON.stringify(text);
  let end = MAX_SHOWN_CHARS;
  // Do not split a surrogate pair in two.
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end -= 1;
  return `${JSON.stringify(text.slice(0, end))}… (${text.length} chars)`;
}
