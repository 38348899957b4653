/**
 * fast-check arbitraries of valid CloudEvents, for the property tests of
 * this folder. Test code only: nothing at run time imports it.
 *
 * @module
 */
import fc from "fast-check";
import { findDisallowedChar, isCoreAttribute } from "./_attributes.ts";
import type { CloudEvent } from "./event.ts";
import { serializeStructured } from "./json_format.ts";

const encoder = new TextEncoder();

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

// Mutations of serialized bytes: flips, cuts, insertions and repeats.
export type ByteEdit =
  | { op: "flip"; at: number; value: number }
  | { op: "cut"; at: number; length: number }
  | { op: "insert"; at: number; bytes: Uint8Array }
  | { op: "repeat"; at: number; length: number };

/** One edit of serialized bytes. */
export const byteEdit: fc.Arbitrary<ByteEdit> = fc.oneof(
  fc.record({
    op: fc.constant("flip" as const),
    at: fc.nat(),
    value: fc.integer({ min: 0, max: 255 }),
  }),
  fc.record({
    op: fc.constant("cut" as const),
    at: fc.nat(),
    length: fc.integer({ min: 1, max: 16 }),
  }),
  fc.record({
    op: fc.constant("insert" as const),
    at: fc.nat(),
    bytes: fc.oneof(
      fc.uint8Array({ minLength: 1, maxLength: 8 }),
      fc.constantFrom(
        ...["{", "}", '"', "\\", ",", ":", "[", "\uFEFF", "\u0000", "null"]
          .map((s) => encoder.encode(s)),
      ),
    ),
  }),
  fc.record({
    op: fc.constant("repeat" as const),
    at: fc.nat(),
    length: fc.integer({ min: 1, max: 32 }),
  }),
);

/** Applies byte edits in order; positions wrap around the current length. */
export function applyEdits(
  bytes: Uint8Array,
  edits: readonly ByteEdit[],
): Uint8Array {
  let out = bytes;
  for (const edit of edits) {
    const at = out.length === 0 ? 0 : edit.at % (out.length + 1);
    switch (edit.op) {
      case "flip":
        if (out.length === 0) break;
        out = out.slice();
        out[at % out.length] = edit.value;
        break;
      case "cut":
        out = concat(out.subarray(0, at), out.subarray(at + edit.length));
        break;
      case "insert":
        out = concat(out.subarray(0, at), edit.bytes, out.subarray(at));
        break;
      case "repeat":
        out = concat(out.subarray(0, at + edit.length), out.subarray(at));
        break;
    }
  }
  return out;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Attribute names that hostile producers send. */
export const hostileName = fc.oneof(
  fc.constantFrom(
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "datacontenttype",
    "dataschema",
    "subject",
    "data",
    "data_base64",
    "classification",
    "partitionkey",
    "__proto__",
    "constructor",
    "Classification",
    "trace-id",
    "trace_id",
    "averyveryverylongextensionname",
    "",
  ),
  fc.string({ maxLength: 24 }),
);
/** Attribute values that hostile producers send. */
export const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom(
    "",
    "telemetry",
    "Telemetry",
    "../../etc",
    "a/b",
    "tele metry",
    "tele\u0001metry",
    "\uD800",
    "x".repeat(5000),
    "1.0",
    "0.3",
    "2.0",
    1,
    1.5,
    2 ** 31,
    "2024-13-45T99:00:00Z",
    "2024-05-01T12:00:00Z",
    "!!notbase64",
    "AQID",
    "application/json",
    "application/octet-stream",
    "text/plain; charset=latin1",
  ),
);

/**
 * A JSON object made from a valid event with hostile attributes set or
 * removed (byte data dropped, so that the object is plain JSON).
 */
export function hostileEventJson(): fc.Arbitrary<Record<string, unknown>> {
  return fc.tuple(
    cloudEvent({ fittingData: false }),
    fc.array(fc.tuple(hostileName, hostileValue), { maxLength: 4 }),
    fc.array(hostileName, { maxLength: 2 }),
  ).map(([event, changes, removals]) => {
    const json: Record<string, unknown> = { ...event };
    if (json.data instanceof Uint8Array) delete json.data;
    for (const name of removals) delete json[name];
    for (const [name, value] of changes) {
      // defineProperty, so that "__proto__" becomes an own key.
      Object.defineProperty(json, name, {
        value,
        enumerable: true,
        configurable: true,
        writable: true,
      });
    }
    return json;
  });
}

/**
 * MQTT payloads a hostile or broken producer sends: random bytes, valid
 * structured events with bytes flipped, cut or inserted, and events with
 * hostile attributes.
 */
export function hostilePayload(): fc.Arbitrary<Uint8Array> {
  return fc.oneof(
    fc.uint8Array({ maxLength: 256 }),
    fc.string({ unit: "binary", maxLength: 256 }).map((s) => encoder.encode(s)),
    fc.tuple(
      cloudEvent({ fittingData: false }),
      fc.array(byteEdit, { minLength: 1, maxLength: 4 }),
    ).map(([event, edits]) => {
      let bytes: Uint8Array;
      try {
        bytes = serializeStructured(event);
      } catch {
        bytes = encoder.encode(JSON.stringify({ ...event, data: null }));
      }
      return applyEdits(bytes, edits);
    }),
    hostileEventJson().map((json) => encoder.encode(JSON.stringify(json))),
  );
}
