import { deepStrictEqual, equal, ok, throws } from "node:assert/strict";
import fc from "fast-check";
import { cloudEvent } from "./_test_arbitraries.ts";
import {
  type CloudEvent,
  type CloudEventErrorCode,
  isCloudEventError,
} from "./event.ts";
import { parseStructured, serializeStructured } from "./json_format.ts";

const encoder = new TextEncoder();
const HEAD = { specversion: "1.0", id: "1", source: "/s", type: "t" } as const;

function json(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

function parseFails(bytes: Uint8Array, code: CloudEventErrorCode): void {
  throws(
    () => parseStructured(bytes),
    (error: unknown) => isCloudEventError(error) && error.code === code,
  );
}

function decodeJson(bytes: Uint8Array): Record<string, unknown> {
  return JSON.parse(new TextDecoder().decode(bytes));
}

Deno.test("parseStructured() reads the JSON format example event", () => {
  const event = parseStructured(json({
    specversion: "1.0",
    type: "com.example.someevent",
    source: "/mycontext",
    subject: null,
    id: "C234-1234-1234",
    time: "2018-04-05T17:31:00Z",
    comexampleextension1: "value",
    comexampleothervalue: 5,
    unsetextension: null,
    datacontenttype: "application/json",
    data: { appinfoA: "abc", appinfoB: 123, appinfoC: true },
  }));
  deepStrictEqual(event, {
    specversion: "1.0",
    type: "com.example.someevent",
    source: "/mycontext",
    id: "C234-1234-1234",
    time: "2018-04-05T17:31:00Z",
    comexampleextension1: "value",
    comexampleothervalue: 5,
    datacontenttype: "application/json",
    data: { appinfoA: "abc", appinfoB: 123, appinfoC: true },
  });
});

Deno.test("parseStructured() decodes data_base64 into bytes", () => {
  const event = parseStructured(json({
    ...HEAD,
    datacontenttype: "application/octet-stream",
    data_base64: "AAEC/w==",
  }));
  deepStrictEqual(event.data, new Uint8Array([0, 1, 2, 255]));
  equal("data_base64" in event, false);
  deepStrictEqual(
    parseStructured(json({ ...HEAD, data_base64: "" })).data,
    new Uint8Array(0),
  );
});

Deno.test("parseStructured() refuses data together with data_base64", () => {
  parseFails(json({ ...HEAD, data: "x", data_base64: "AQID" }), "invalid-data");
  // A null member is an absent one (section 2.2).
  deepStrictEqual(
    parseStructured(json({ ...HEAD, data: null, data_base64: "AQID" })).data,
    new Uint8Array([1, 2, 3]),
  );
});

Deno.test("parseStructured() refuses bad base64", () => {
  for (
    const bad of [
      "A",
      "AQIDA",
      "AQ=D",
      "AQID====",
      "A-_B",
      "AQ ID",
      "AQ\nID",
      "AR==",
      "ü===",
      42,
      true,
    ]
  ) {
    parseFails(json({ ...HEAD, data_base64: bad }), "invalid-data");
  }
  // Padding may be left out.
  deepStrictEqual(
    parseStructured(json({ ...HEAD, data_base64: "AQI" })).data,
    new Uint8Array([1, 2]),
  );
  deepStrictEqual(
    parseStructured(json({ ...HEAD, data_base64: "AQ" })).data,
    new Uint8Array([1]),
  );
});

Deno.test("parseStructured() tolerates a UTF-8 byte order mark", () => {
  const body = json({ ...HEAD, data: "ü" });
  const withBom = new Uint8Array([0xef, 0xbb, 0xbf, ...body]);
  equal(parseStructured(withBom).data, "ü");
});

Deno.test("parseStructured() refuses invalid UTF-8 as invalid-encoding", () => {
  const body = encoder.encode(JSON.stringify({ ...HEAD, subject: "XX" }));
  const at = body.indexOf(0x58); // the first "X"
  body[at] = 0xc3; // a lead byte
  body[at + 1] = 0x28; // not a continuation byte
  parseFails(body, "invalid-encoding");
  parseFails(new Uint8Array([0xff]), "invalid-encoding");
});

Deno.test("parseStructured() refuses what is not a JSON object", () => {
  parseFails(encoder.encode("{not json"), "malformed-json");
  parseFails(new Uint8Array(0), "empty-payload");
  parseFails(encoder.encode(" "), "malformed-json");
  parseFails(encoder.encode("[]"), "not-an-object");
  parseFails(encoder.encode("null"), "not-an-object");
  parseFails(encoder.encode('"event"'), "not-an-object");
  throws(() => parseStructured("{}" as unknown as Uint8Array), TypeError);
});

Deno.test("parseStructured() treats null attributes as absent", () => {
  const event = parseStructured(
    json({ ...HEAD, subject: null, time: null, ext: null }),
  );
  deepStrictEqual(event, HEAD);
  parseFails(json({ ...HEAD, id: null }), "missing-attribute");
});

Deno.test("parseStructured() keeps a null JSON payload and drops a null text payload", () => {
  const jsonNull = parseStructured(json({ ...HEAD, data: null }));
  ok("data" in jsonNull);
  equal(jsonNull.data, null);
  const textNull = parseStructured(
    json({ ...HEAD, datacontenttype: "text/plain", data: null }),
  );
  equal("data" in textNull, false);
});

Deno.test("parseStructured() keeps a JSON string as a string, never parsing it again", () => {
  const event = parseStructured(
    json({ ...HEAD, datacontenttype: "application/json", data: '{"a":1}' }),
  );
  equal(event.data, '{"a":1}');
});

Deno.test("parseStructured() refuses non-string data with a non-JSON content type", () => {
  parseFails(
    json({ ...HEAD, datacontenttype: "application/xml", data: { a: 1 } }),
    "invalid-data",
  );
  equal(
    parseStructured(
      json({ ...HEAD, datacontenttype: "application/xml", data: "<a/>" }),
    ).data,
    "<a/>",
  );
});

Deno.test("parseStructured() runs the validation rules", () => {
  parseFails(json({ ...HEAD, specversion: "0.3" }), "unsupported-specversion");
  parseFails(json({ ...HEAD, specversion: 1 }), "invalid-attribute");
  parseFails(json({ ...HEAD, time: "now" }), "invalid-attribute");
  parseFails(json({ ...HEAD, "Bad": 1 }), "invalid-extension-name");
  parseFails(json({ ...HEAD, ext: 1.5 }), "invalid-attribute");
  parseFails(json({ ...HEAD, ext: { a: 1 } }), "invalid-attribute");
});

Deno.test("parseStructured() refuses a __proto__ member without touching prototypes", () => {
  parseFails(
    encoder.encode(
      '{"specversion":"1.0","id":"1","source":"/s","type":"t","__proto__":{"polluted":1}}',
    ),
    "invalid-extension-name",
  );
  equal(({} as Record<string, unknown>).polluted, undefined);
});

Deno.test("parseStructured() and serializeStructured() handle 100,000 levels of nested data", () => {
  const depth = 100_000;
  const text = `{"specversion":"1.0","id":"1","source":"/s","type":"t","data":${
    "[".repeat(depth)
  }${"]".repeat(depth)}}`;
  const event = parseStructured(encoder.encode(text));
  ok(Array.isArray(event.data));
  const bytes = serializeStructured(event);
  equal(bytes.length, text.length);
});

Deno.test("serializeStructured() writes bytes as data_base64 and other data as data", () => {
  const bytes = decodeJson(
    serializeStructured({ ...HEAD, data: new Uint8Array([1, 2, 3]) }),
  );
  deepStrictEqual(bytes, { ...HEAD, data_base64: "AQID" });
  const text = decodeJson(
    serializeStructured({ ...HEAD, datacontenttype: "text/plain", data: "hi" }),
  );
  deepStrictEqual(text, { ...HEAD, datacontenttype: "text/plain", data: "hi" });
  const value = decodeJson(
    serializeStructured({ ...HEAD, data: { a: [1, null] } }),
  );
  deepStrictEqual(value, { ...HEAD, data: { a: [1, null] } });
  const none = decodeJson(serializeStructured(HEAD as CloudEvent));
  deepStrictEqual(none, HEAD);
});

Deno.test("serializeStructured() validates first and reports data without JSON form", () => {
  throws(
    () => serializeStructured({ ...HEAD, id: "" }),
    (error: unknown) =>
      isCloudEventError(error) && error.code === "invalid-attribute",
  );
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  throws(
    () => serializeStructured({ ...HEAD, data: cyclic }),
    (error: unknown) =>
      isCloudEventError(error) && error.code === "invalid-data" &&
      error.cause instanceof TypeError,
  );
});

Deno.test("parseStructured(serializeStructured(e)) deep-equals e", () => {
  fc.assert(
    fc.property(cloudEvent({ fittingData: false }), (event: CloudEvent) => {
      deepStrictEqual(parseStructured(serializeStructured(event)), event);
    }),
    { numRuns: 500 },
  );
});

Deno.test("base64 in data_base64 matches btoa for any bytes", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 100 }), (bytes: Uint8Array) => {
      const written = decodeJson(serializeStructured({ ...HEAD, data: bytes }));
      equal(written.data_base64, btoa(String.fromCharCode(...bytes)));
    }),
  );
});
