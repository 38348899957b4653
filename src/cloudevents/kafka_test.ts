import { deepStrictEqual, equal, match, ok, throws } from "node:assert/strict";
import { Buffer } from "node:buffer";
import fc from "fast-check";
import { cloudEvent } from "./_test_arbitraries.ts";
import {
  type CloudEvent,
  type CloudEventError,
  type CloudEventErrorCode,
  createCloudEvent,
  isCloudEventError,
} from "./event.ts";
import {
  fromKafkaRecord,
  type IncomingKafkaRecord,
  type KafkaRecord,
  toKafkaRecord,
} from "./kafka.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytes = (text: string): Uint8Array => encoder.encode(text);
const text = (value: Uint8Array | null | undefined): string | undefined =>
  value == null ? undefined : decoder.decode(value);

const HEAD = { specversion: "1.0", id: "1", source: "/s", type: "t" } as const;

function headerTexts(record: KafkaRecord): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(record.headers)) {
    out[name] = decoder.decode(value);
  }
  return out;
}

function fails(
  record: IncomingKafkaRecord,
  code: CloudEventErrorCode,
): CloudEventError {
  try {
    fromKafkaRecord(record);
  } catch (error) {
    ok(isCloudEventError(error), `not a CloudEventError: ${error}`);
    equal(error.code, code, error.message);
    return error;
  }
  throw new Error(`fromKafkaRecord() accepted a record that is ${code}`);
}

/** A binary-mode record with kafkajs-style Buffer headers. */
function kafkajsRecord(
  headers: Record<string, string>,
  value: string | null,
): IncomingKafkaRecord {
  const buffers: Record<string, Buffer> = {};
  for (const [name, v] of Object.entries(headers)) {
    buffers[name] = Buffer.from(v);
  }
  return {
    key: null,
    value: value === null ? null : Buffer.from(value),
    headers: buffers,
  };
}

const BINARY_HEADERS = {
  ce_specversion: "1.0",
  ce_id: "1",
  ce_source: "/s",
  ce_type: "t",
};

Deno.test("toKafkaRecord() binary mode writes ce_ headers, content-type and JSON data", () => {
  const event = createCloudEvent({
    ...HEAD,
    time: "2024-05-01T12:00:00Z",
    subject: "room-1",
    data: { celsius: 21.5 },
    extensions: { count: 3, sampled: true },
  });
  const record = toKafkaRecord(event);
  deepStrictEqual(headerTexts(record), {
    ce_specversion: "1.0",
    ce_id: "1",
    ce_source: "/s",
    ce_type: "t",
    ce_time: "2024-05-01T12:00:00Z",
    ce_subject: "room-1",
    ce_count: "3",
    ce_sampled: "true",
    "content-type": "application/json",
  });
  equal(text(record.value), '{"celsius":21.5}');
  equal(record.key, null);
});

Deno.test("toKafkaRecord() binary mode puts bytes in the value as they are", () => {
  const data = new Uint8Array([1, 2, 3]);
  const record = toKafkaRecord({ ...HEAD, datacontenttype: "image/png", data });
  equal(record.value, data); // the same array, not a copy, never "1,2,3"
  equal(text(record.headers["content-type"]), "image/png");
  const untyped = toKafkaRecord({ ...HEAD, data });
  equal(untyped.value, data);
  equal(untyped.headers["content-type"], undefined);
});

Deno.test("toKafkaRecord() binary mode writes text as UTF-8 and JSON strings quoted", () => {
  const textRecord = toKafkaRecord({
    ...HEAD,
    datacontenttype: "text/plain",
    data: "grüße",
  });
  deepStrictEqual(textRecord.value, bytes("grüße"));
  const jsonRecord = toKafkaRecord({
    ...HEAD,
    datacontenttype: "application/json",
    data: "grüße",
  });
  equal(text(jsonRecord.value), '"grüße"');
});

Deno.test("toKafkaRecord() binary mode writes untyped data as application/json", () => {
  for (const data of [{ a: 1 }, [1], "s", 0, false, null]) {
    const record = toKafkaRecord({ ...HEAD, data });
    equal(text(record.headers["content-type"]), "application/json");
    equal(text(record.value), JSON.stringify(data)); // never "[object Object]"
  }
});

Deno.test("toKafkaRecord() binary mode writes an event without data as a null value", () => {
  const record = toKafkaRecord({
    ...HEAD,
    datacontenttype: "application/json",
  });
  equal(record.value, null);
  equal(text(record.headers["content-type"]), "application/json");
});

Deno.test("toKafkaRecord() keys the record by the partitionkey extension and keeps it", () => {
  const event = { ...HEAD, partitionkey: "sensor-42" };
  for (const mode of ["binary", "structured"] as const) {
    const record = toKafkaRecord(event, { mode });
    equal(text(record.key), "sensor-42");
  }
  equal(text(toKafkaRecord(event).headers.ce_partitionkey), "sensor-42");
  equal(text(toKafkaRecord({ ...HEAD, partitionkey: 7 }).key), "7");
});

Deno.test("toKafkaRecord() structured mode writes the JSON format", () => {
  const record = toKafkaRecord({ ...HEAD, data: new Uint8Array([1]) }, {
    mode: "structured",
  });
  deepStrictEqual(headerTexts(record), {
    "content-type": "application/cloudevents+json; charset=utf-8",
  });
  deepStrictEqual(JSON.parse(text(record.value)!), {
    ...HEAD,
    data_base64: "AQ==",
  });
  equal(record.key, null);
});

Deno.test("toKafkaRecord() validates the event and the mode", () => {
  throws(
    () => toKafkaRecord({ ...HEAD, id: "" }),
    (error: unknown) =>
      isCloudEventError(error) && error.code === "invalid-attribute",
  );
  throws(
    () => toKafkaRecord({ ...HEAD, ext: { a: 1 } }),
    (error: unknown) =>
      isCloudEventError(error) && error.code === "invalid-attribute",
  );
  throws(
    () => toKafkaRecord(HEAD, { mode: "batch" as "binary" }),
    TypeError,
  );
});

Deno.test("fromKafkaRecord() reads a binary record with kafkajs Buffer headers", () => {
  const event = fromKafkaRecord(kafkajsRecord(
    { ...BINARY_HEADERS, "content-type": "application/json", ce_ext: "x" },
    '{"a":[1,2]}',
  ));
  deepStrictEqual(event, {
    ...HEAD,
    datacontenttype: "application/json",
    ext: "x",
    data: { a: [1, 2] },
  });
  equal("time" in event, false); // time is OPTIONAL; none is made up
});

Deno.test("fromKafkaRecord() accepts string and one-element array header values", () => {
  const event = fromKafkaRecord({
    value: "plain text",
    headers: {
      ce_specversion: "1.0",
      ce_id: ["1"],
      ce_source: [Buffer.from("/s")],
      ce_type: "t",
      "content-type": ["text/plain"],
      ce_skipped: [],
      ce_missing: undefined,
    },
  });
  deepStrictEqual(event, {
    ...HEAD,
    datacontenttype: "text/plain",
    data: "plain text",
  });
});

Deno.test("fromKafkaRecord() matches content-type and the ce_ prefix in any letter case", () => {
  const event = fromKafkaRecord({
    value: bytes("<a/>"),
    headers: {
      CE_specversion: "1.0",
      Ce_id: "1",
      ce_source: "/s",
      cE_type: "t",
      "Content-Type": "application/xml",
    },
  });
  deepStrictEqual(event, {
    ...HEAD,
    datacontenttype: "application/xml",
    data: "<a/>",
  });
});

Deno.test("fromKafkaRecord() refuses repeated attribute headers", () => {
  fails(
    { value: null, headers: { ...BINARY_HEADERS, ce_id: ["1", "2"] } },
    "invalid-attribute",
  );
  fails(
    { value: null, headers: { ...BINARY_HEADERS, ce_id: ["1", "1"] } },
    "invalid-attribute",
  );
  fails(
    { value: null, headers: { ...BINARY_HEADERS, CE_id: "1" } },
    "invalid-attribute",
  );
  fails(
    {
      value: null,
      headers: {
        ...BINARY_HEADERS,
        "content-type": "a/b",
        "Content-Type": "a/b",
      },
    },
    "invalid-attribute",
  );
  fails(
    {
      value: null,
      headers: { ...BINARY_HEADERS, "content-type": ["a/b", "c/d"] },
    },
    "invalid-attribute",
  );
});

Deno.test("fromKafkaRecord() refuses header values that are not UTF-8", () => {
  const record = {
    value: null,
    headers: { ...BINARY_HEADERS, ce_subject: new Uint8Array([0x61, 0xff]) },
  };
  throws(
    () => fromKafkaRecord(record),
    (error: unknown) =>
      isCloudEventError(error) && error.code === "invalid-encoding" &&
      error.attribute === "subject" && /ce_subject/.test(error.message),
  );
  fails(
    {
      value: null,
      headers: { ...BINARY_HEADERS, "content-type": new Uint8Array([0xc3]) },
    },
    "invalid-encoding",
  );
});

Deno.test("fromKafkaRecord() refuses invalid attribute names and wrong header types", () => {
  for (
    const header of [
      "ce_my-ext",
      "ce_my_ext",
      "ce_Classification",
      "CE_ID",
      "ce_",
    ]
  ) {
    fails(
      { value: null, headers: { ...BINARY_HEADERS, [header]: "x" } },
      "invalid-extension-name",
    );
  }
  fails(
    { value: null, headers: { ...BINARY_HEADERS, ce_data: "x" } },
    "invalid-extension-name",
  );
  fails(
    {
      value: null,
      headers: { ...BINARY_HEADERS, ce_ext: 5 as unknown as string },
    },
    "invalid-attribute",
  );
});

Deno.test("fromKafkaRecord() leaves headers without the ce_ prefix alone", () => {
  const event = fromKafkaRecord({
    value: null,
    headers: {
      ...BINARY_HEADERS,
      traceparent: "00-x",
      "x-Bad Name": new Uint8Array([0xff]),
    },
  });
  deepStrictEqual(event, HEAD);
});

Deno.test("fromKafkaRecord() calls a record without value or CloudEvents headers a tombstone", () => {
  for (const headers of [undefined, {}, { traceparent: "00-x" }]) {
    const error = fails({ value: null, headers }, "empty-payload");
    match(error.message, /tombstone/);
  }
  // A binary-mode event without data is not a tombstone.
  deepStrictEqual(
    fromKafkaRecord({ value: null, headers: BINARY_HEADERS }),
    HEAD,
  );
  // Headers that name attributes make it an event with something missing.
  fails({ value: null, headers: { ce_id: "1" } }, "missing-attribute");
});

Deno.test("fromKafkaRecord() reports the missing attribute of a plain record", () => {
  fails({ value: bytes("hello") }, "missing-attribute");
  fails(
    { value: null, headers: { ...BINARY_HEADERS, ce_specversion: "0.3" } },
    "unsupported-specversion",
  );
  fails(
    { value: null, headers: { ...BINARY_HEADERS, ce_time: "soon" } },
    "invalid-attribute",
  );
});

Deno.test("fromKafkaRecord() refuses JSON content types whose value is not JSON", () => {
  fails(
    kafkajsRecord(
      { ...BINARY_HEADERS, "content-type": "application/json" },
      "{oops",
    ),
    "invalid-data",
  );
  fails(
    kafkajsRecord({
      ...BINARY_HEADERS,
      "content-type": "application/vnd.x+json",
    }, ""),
    "invalid-data",
  );
  fails(
    {
      value: new Uint8Array([0xff]),
      headers: { ...BINARY_HEADERS, "content-type": "text/plain" },
    },
    "invalid-encoding",
  );
});

Deno.test("fromKafkaRecord() keeps bytes of other content types as they are", () => {
  const value = new Uint8Array([0, 255]);
  const event = fromKafkaRecord({
    value,
    headers: { ...BINARY_HEADERS, "content-type": "image/png" },
  });
  equal(event.data, value);
  const latin1 = fromKafkaRecord({
    value,
    headers: {
      ...BINARY_HEADERS,
      "content-type": "text/plain; charset=iso-8859-1",
    },
  });
  equal(latin1.data, value);
  const untyped = fromKafkaRecord({ value, headers: BINARY_HEADERS });
  equal(untyped.data, value);
});

Deno.test("fromKafkaRecord() checks a ce_datacontenttype header against content-type", () => {
  const same = fromKafkaRecord({
    value: null,
    headers: {
      ...BINARY_HEADERS,
      ce_datacontenttype: "text/plain",
      "content-type": "text/plain",
    },
  });
  equal(same.datacontenttype, "text/plain");
  const alone = fromKafkaRecord({
    value: bytes("x"),
    headers: { ...BINARY_HEADERS, ce_datacontenttype: "text/plain" },
  });
  equal(alone.data, "x");
  fails(
    {
      value: null,
      headers: {
        ...BINARY_HEADERS,
        ce_datacontenttype: "text/plain",
        "content-type": "text/csv",
      },
    },
    "invalid-attribute",
  );
});

Deno.test("fromKafkaRecord() reads structured records by content type, in any letter case", () => {
  const payload = JSON.stringify({ ...HEAD, data: { a: 1 } });
  for (
    const contentType of [
      "application/cloudevents+json",
      "Application/CloudEvents+JSON; charset=UTF-8",
    ]
  ) {
    const event = fromKafkaRecord({
      value: Buffer.from(payload),
      headers: { "Content-Type": Buffer.from(contentType) },
    });
    deepStrictEqual(event, { ...HEAD, data: { a: 1 } });
  }
  deepStrictEqual(
    fromKafkaRecord({
      value: payload,
      headers: { "content-type": "application/cloudevents+json" },
    }),
    { ...HEAD, data: { a: 1 } },
  );
});

Deno.test("fromKafkaRecord() reads a structured record without time", () => {
  const event = fromKafkaRecord({
    value: bytes(JSON.stringify(HEAD)),
    headers: { "content-type": "application/cloudevents+json" },
  });
  deepStrictEqual(event, HEAD);
});

Deno.test("fromKafkaRecord() ignores ce_ headers of a structured record", () => {
  const event = fromKafkaRecord({
    value: bytes(JSON.stringify(HEAD)),
    headers: { "content-type": "application/cloudevents+json", ce_id: "other" },
  });
  equal(event.id, "1");
});

Deno.test("fromKafkaRecord() refuses structured formats other than JSON", () => {
  fails({
    value: bytes("x"),
    headers: { "content-type": "application/cloudevents+avro" },
  }, "unsupported-format");
  fails({
    value: bytes("[]"),
    headers: { "content-type": "application/cloudevents-batch+json" },
  }, "unsupported-format");
  fails({
    value: null,
    headers: { "content-type": "application/cloudevents+json" },
  }, "empty-payload");
  fails({
    value: bytes("nope"),
    headers: { "content-type": "application/cloudevents+json" },
  }, "malformed-json");
  throws(
    () => fromKafkaRecord(null as unknown as IncomingKafkaRecord),
    TypeError,
  );
});

Deno.test("fromKafkaRecord(toKafkaRecord(e)) deep-equals e in binary mode", () => {
  fc.assert(
    fc.property(
      cloudEvent({ stringExtensions: true, withContentType: true }),
      (event: CloudEvent) => {
        deepStrictEqual(
          fromKafkaRecord(toKafkaRecord(event, { mode: "binary" })),
          event,
        );
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("fromKafkaRecord(toKafkaRecord(e)) deep-equals e in structured mode", () => {
  fc.assert(
    fc.property(cloudEvent({ fittingData: false }), (event: CloudEvent) => {
      deepStrictEqual(
        fromKafkaRecord(toKafkaRecord(event, { mode: "structured" })),
        event,
      );
    }),
    { numRuns: 500 },
  );
});

Deno.test("binary mode carries integer and boolean extensions as their canonical strings", () => {
  fc.assert(
    fc.property(
      cloudEvent({ withContentType: true }),
      (event: CloudEvent) => {
        const expected: Record<string, unknown> = {};
        for (const [name, value] of Object.entries(event)) {
          const scalar = typeof value === "number" ||
            typeof value === "boolean";
          expected[name] = name !== "data" && scalar ? String(value) : value;
        }
        deepStrictEqual(fromKafkaRecord(toKafkaRecord(event)), expected);
      },
    ),
  );
});

Deno.test("a record read the kafkajs way (Buffers everywhere) round-trips", () => {
  fc.assert(
    fc.property(
      cloudEvent({ stringExtensions: true, withContentType: true }),
      (event: CloudEvent) => {
        const record = toKafkaRecord(event);
        const headers: Record<string, Buffer> = {};
        for (const [name, value] of Object.entries(record.headers)) {
          headers[name] = Buffer.from(value);
        }
        const incoming = {
          key: record.key && Buffer.from(record.key),
          value: record.value && Buffer.from(record.value),
          headers,
        };
        const back = fromKafkaRecord(incoming);
        if (back.data instanceof Uint8Array) {
          ok(event.data instanceof Uint8Array);
          deepStrictEqual(new Uint8Array(back.data), event.data);
          deepStrictEqual({ ...back, data: undefined }, {
            ...event,
            data: undefined,
          });
        } else {
          deepStrictEqual(back, event);
        }
      },
    ),
  );
});
