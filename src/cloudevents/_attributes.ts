/**
 * Attribute names and values as the CloudEvents 1.0.2 core specification
 * defines them ("Context Attributes": "Naming Conventions" and "Type System").
 *
 * @module
 */

/**
 * The rule for attribute names, as error messages state it. Names longer than
 * the 20 characters that the specification says they SHOULD NOT exceed are
 * accepted: the limit is advice to producers, and refusing such events would
 * only dead-letter what other implementations pass on.
 */
export const ATTRIBUTE_NAME_RULE =
  'attribute names are one or more lower-case ASCII letters (a-z) or digits (0-9), and "data" is reserved';

/** The smallest and largest CloudEvents `Integer` ("Type System"). */
export const INT32_MIN = -2_147_483_648;
/** The largest CloudEvents `Integer` ("Type System"). */
export const INT32_MAX = 2_147_483_647;

/**
 * Tells whether a name is one of the context attributes that the core
 * specification defines (REQUIRED and OPTIONAL attributes).
 *
 * @param name An attribute name.
 * @returns `true` for `specversion`, `id`, `source`, `type`,
 * `datacontenttype`, `dataschema`, `subject` and `time`.
 *
 * @example Extensions are not core attributes
 * ```ts
 * import { isCoreAttribute } from "./_attributes.ts";
 *
 * console.log(isCoreAttribute("time"), isCoreAttribute("partitionkey")); // true false
 * ```
 */
export function isCoreAttribute(name: string): boolean {
  switch (name) {
    case "specversion":
    case "id":
    case "source":
    case "type":
    case "datacontenttype":
    case "dataschema":
    case "subject":
    case "time":
      return true;
    default:
      return false;
  }
}

/**
 * Tells whether a name is a valid attribute name: one or more lower-case
 * ASCII letters or digits ("Naming Conventions": a MUST), and not the reserved
 * name `data`. Any length is accepted (see {@linkcode ATTRIBUTE_NAME_RULE}).
 *
 * @param name A candidate attribute name.
 * @returns `true` when the name may be used for an attribute.
 *
 * @example Upper case, dashes and underscores are not allowed
 * ```ts
 * import { isAttributeName } from "./_attributes.ts";
 *
 * console.log(isAttributeName("traceparent"), isAttributeName("trace-id")); // true false
 * ```
 */
export function isAttributeName(name: string): boolean {
  const length = name.length;
  if (length === 0 || name === "data") return false;
  for (let i = 0; i < length; i++) {
    const c = name.charCodeAt(i);
    if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39))) return false;
  }
  return true;
}

/**
 * Tells whether a value is a CloudEvents `Integer`: a whole number within
 * the signed 32-bit range ("Type System").
 *
 * @param value Any value.
 * @returns `true` for an integer from {@linkcode INT32_MIN} to {@linkcode INT32_MAX}.
 *
 * @example Floats and large numbers are not integers here
 * ```ts
 * import { isInt32 } from "./_attributes.ts";
 *
 * console.log(isInt32(42), isInt32(1.5), isInt32(2 ** 31)); // true false false
 * ```
 */
export function isInt32(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) &&
    value >= INT32_MIN && value <= INT32_MAX;
}

/**
 * Returns the canonical string encoding of an attribute value ("Type
 * System"): strings as they are, integers in decimal, booleans as `true` or
 * `false`. Used for Kafka headers and MQTT user properties.
 *
 * @param value A validated attribute value.
 * @returns Its canonical string.
 *
 * @example Encode an integer extension
 * ```ts
 * import { canonicalString } from "./_attributes.ts";
 *
 * console.log(canonicalString(-5)); // -5
 * ```
 */
export function canonicalString(value: string | number | boolean): string {
  return typeof value === "string" ? value : String(value);
}

/**
 * Finds the first character that the CloudEvents `String` type disallows
 * ("Type System"): a control character (U+0000 to U+001F, U+007F to U+009F),
 * a Unicode noncharacter, or a surrogate that is not part of a pair.
 *
 * @param text The string to check.
 * @returns The index of the first disallowed UTF-16 unit, or -1 when there is none.
 *
 * @example A newline is not allowed
 * ```ts
 * import { findDisallowedChar } from "./_attributes.ts";
 *
 * console.log(findDisallowedChar("ok"), findDisallowedChar("a\nb")); // -1 1
 * ```
 */
export function findDisallowedChar(text: string): number {
  const length = text.length;
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x20 && c < 0x7f) continue; // printable ASCII, the common case
    if (c < 0x20 || c <= 0x9f) return i; // C0 controls, DEL and C1 controls
    if (c >= 0xd800 && c <= 0xdbff) {
      const low = text.charCodeAt(i + 1);
      if (!(low >= 0xdc00 && low <= 0xdfff)) return i;
      // Noncharacters U+1FFFE, U+1FFFF, ... U+10FFFE, U+10FFFF.
      if ((c & 0x3f) === 0x3f && (low & 0x3fe) === 0x3fe) return i;
      i++;
      continue;
    }
    if (c >= 0xdc00 && c <= 0xdfff) return i;
    if ((c >= 0xfdd0 && c <= 0xfdef) || c >= 0xfffe) return i;
  }
  return -1;
}
