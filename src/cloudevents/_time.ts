/**
 * A hand-written check of the RFC 3339 `date-time` grammar, used for the
 * CloudEvents `time` attribute (CloudEvents 1.0.2, "Type System":
 * `Timestamp`).
 *
 * @module
 */

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/**
 * Tells whether a string is an RFC 3339 `date-time` (RFC 3339 section 5.6),
 * such as `2024-05-01T12:00:00Z` or `2024-05-01T14:00:00.123+02:00`. The
 * separators `T` and `Z` may be lower case (section 5.6, note); the day must
 * exist in its month, leap years included; a leap second (`:60`) is allowed.
 *
 * @param text The string to check.
 * @returns `true` when `text` is an RFC 3339 date-time.
 *
 * @example Accept a timestamp, reject a date alone
 * ```ts
 * import { isRfc3339 } from "./_time.ts";
 *
 * console.log(isRfc3339("2024-02-29T23:59:59.5Z")); // true
 * console.log(isRfc3339("2024-02-29")); // false
 * ```
 */
export function isRfc3339(text: string): boolean {
  // full-date "T" partial-time is 19 characters, the offset at least one more.
  if (text.length < 20) return false;

  const year = digits(text, 0, 4);
  const month = digits(text, 5, 2);
  const day = digits(text, 8, 2);
  if (
    year < 0 || month < 1 || month > 12 || day < 1 ||
    text.charCodeAt(4) !== 0x2d || text.charCodeAt(7) !== 0x2d
  ) {
    return false;
  }
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const maxDay = month === 2 && leap ? 29 : DAYS_IN_MONTH[month - 1];
  if (day > maxDay) return false;

  const t = text.charCodeAt(10);
  if (t !== 0x54 && t !== 0x74) return false; // "T" or "t"
  const hour = digits(text, 11, 2);
  const minute = digits(text, 14, 2);
  const second = digits(text, 17, 2);
  if (
    hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 ||
    second > 60 || text.charCodeAt(13) !== 0x3a ||
    text.charCodeAt(16) !== 0x3a
  ) {
    return false;
  }

  let i = 19;
  if (text.charCodeAt(i) === 0x2e) { // "." time-secfrac, one digit or more
    i++;
    const start = i;
    while (i < text.length && isDigit(text.charCodeAt(i))) i++;
    if (i === start) return false;
  }
  return isOffset(text, i);
}

function isOffset(text: string, i: number): boolean {
  const c = text.charCodeAt(i);
  if (c === 0x5a || c === 0x7a) return i + 1 === text.length; // "Z" or "z"
  if (c !== 0x2b && c !== 0x2d) return false; // "+" or "-"
  if (i + 6 !== text.length || text.charCodeAt(i + 3) !== 0x3a) return false;
  const hour = digits(text, i + 1, 2);
  const minute = digits(text, i + 4, 2);
  return hour >= 0 && hour <= 23 && minute >= 0 && minute <= 59;
}

/** Reads `count` ASCII digits at `start`; -1 when one is not a digit. */
function digits(text: string, start: number, count: number): number {
  let value = 0;
  for (let i = start; i < start + count; i++) {
    const c = text.charCodeAt(i);
    if (!isDigit(c)) return -1;
    value = value * 10 + (c - 0x30);
  }
  return value;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}
