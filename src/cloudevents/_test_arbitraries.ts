/**
 * fast-check arbitraries of valid CloudEvents, for the property tests of
 * this folder. Test code only: nothing at run time imports it.
 *
 * @module
 */
import fc from "fast-check";
import { findDisallowedChar, isCoreAttribute } from "./_attributes.ts";
import type { CloudEvent } from "./event.ts";

/** What kind of data an arbitrary event carries. */
export type DataKind = "json" | "text" | "bytes";

/** The content types the arbitraries draw from, by the kind of data they take. */
export const CONTENT_TYPES: Readonly<Record<DataKind, readonly string[]>> = {
  json: [
    "application/json",
    "application/json; charset=utf-8",
    "application/vnd.example.reading+json",
    "text/json",
  ],
  text: [
    "text/plain",
    "text/plain; charset=utf-8",
    "text/csv",
    "application/xml",
    "application/atom+xml",
  ],
  bytes: ["application/octet-stream", "image/png", "application/avro"],
};

/** Strings the CloudEvents `String` type allows, of the given length range. */
export function ceString(minLength = 0, maxLength = 30): fc.Arbitrary<string> {
  return fc.oneof(
    fc.string({ minLength, maxLength }),
    fc.string({ minLength, maxLength, unit: "grapheme" }),
  ).filter((s) => s.length >= minLength && findDisallowedChar(s) === -1);
}

/** RFC 3339 timestamps, in UTC or with an offset. */
export function rfc3339(): fc.Arbitrary<string> {
  const date = fc.date({
    min: new Date("0001-01-01T00:00:00Z"),
    max: new Date("9999-12-31T23:59:59Z"),
    noInvalidDate: true,
  });
  return fc.tuple(
    date,
    fc.constantFrom("Z", "+02:00", "-11:30", "z"),
    fc.boolean(),
  ).map(([d, offset, fraction]) => {
    const iso = d.toISOString(); // 2024-05-01T12:00:00.000Z
    const base = fraction ? iso.slice(0, -1) : iso.slice(0, 19);
    return base + offset;
  });
}

/** Extension names: lower-case letters or digits, not core names. */
export function extensionName(): fc.Arbitrary<string> {
  return fc.stringMatching(/^[a-z0-9]{1,40}$/).filter((name) =>
    !isCoreAttribute(name) && name !== "data"
  );
}

/** Options of {@linkcode cloudEvent}. */
export interface CloudEventArbitraryOptions {
  /** Only string extension values (what binary modes carry). Default false. */
  stringExtensions?: boolean;
  /** Always set `datacontenttype`. Default false. */
  withContentType?: boolean;
  /** Data that fits the content type exactly (JSON, text or bytes). Default true. */
  fittingData?: boolean;
  /** Never empty data (MQTT cannot tell empty from absent). Default false. */
  nonEmptyData?: boolean;
}

/** JSON values that survive `JSON.parse(JSON.stringify(v))` unchanged. */
export function jsonData(): fc.Arbitrary<unknown> {
  return fc.jsonValue({ maxDepth: 3 }).map((value) =>
    JSON.parse(JSON.stringify(value))
  );
}

/**
 * Valid CloudEvents with random attributes, extensions and data.
 *
 * @param options What to restrict.
 * @returns The arbitrary.
 */
export function cloudEvent(
  options: CloudEventArbitraryOptions = {},
): fc.Arbitrary<CloudEvent> {
  const extensionValue: fc.Arbitrary<string | number | boolean> =
    options.stringExtensions ? ceString() : fc.oneof(
      ceString(),
      fc.integer({ min: -2147483648, max: 2147483647 }),
      fc.boolean(),
    );
  const kind = fc.constantFrom<DataKind>("json", "text", "bytes");
  const minLength = options.nonEmptyData ? 1 : 0;

  return fc.record({
    id: ceString(1),
    source: ceString(1),
    type: ceString(1),
    subject: fc.option(ceString(1), { nil: undefined }),
    dataschema: fc.option(
      fc.webUrl().filter((url) => findDisallowedChar(url) === -1),
      { nil: undefined },
    ),
    time: fc.option(rfc3339(), { nil: undefined }),
    extensions: fc.dictionary(extensionName(), extensionValue, { maxKeys: 4 }),
    kind,
    contentTypeIndex: fc.nat(),
    withContentType: options.withContentType ? fc.constant(true) : fc.boolean(),
    withData: fc.boolean(),
    json: jsonData(),
    text: fc.string({ minLength, unit: "grapheme" }),
    bytes: fc.uint8Array({ minLength, maxLength: 64 }),
    unfitting: fc.boolean(),
  }).map((r) => {
    const event: Record<string, unknown> = {
      specversion: "1.0",
      id: r.id,
      source: r.source,
      type: r.type,
    };
    if (r.subject !== undefined) event.subject = r.subject;
    if (r.dataschema !== undefined) event.dataschema = r.dataschema;
    if (r.time !== undefined) event.time = r.time;
    for (const [name, value] of Object.entries(r.extensions)) {
      event[name] = value;
    }
    const types = CONTENT_TYPES[r.kind];
    if (r.withContentType) {
      event.datacontenttype = types[r.contentTypeIndex % types.length];
    }
    if (r.withData) {
      const fitting = options.fittingData ?? true;
      if (!fitting && r.unfitting) {
        // Bytes fit any content type, as long as they hold what it says.
        event.data = !r.withContentType || r.kind === "bytes"
          ? r.bytes
          : new TextEncoder().encode(
            r.kind === "json" ? JSON.stringify(r.json) : r.text,
          );
      } else if (r.kind === "json" || !r.withContentType) {
        event.data = r.json;
      } else if (r.kind === "text") {
        event.data = r.text;
      } else {
        event.data = r.bytes;
      }
    }
    return event as CloudEvent;
  });
}
