import { deepStrictEqual, equal, match, ok, throws } from "node:assert/strict";
import fc from "fast-check";
import { DataExchangeError } from "../errors.ts";
import { cloudEvent } from "./_test_arbitraries.ts";
import {
  type CloudEvent,
  CloudEventError,
  type CloudEventErrorCode,
  createCloudEvent,
  isCloudEventError,
  validateCloudEvent,
} from "./event.ts";

const VALID = Object.freeze({
  specversion: "1.0",
  id: "A234-1234-1234",
  source: "/mycontext",
  type: "com.example.someevent",
});

/** Asserts that `fn` throws a CloudEventError with `code` and returns it. */
function throwsCode(
  fn: () => unknown,
  code: CloudEventErrorCode,
): CloudEventError {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  ok(isCloudEventError(caught), `expected a CloudEventError, got ${caught}`);
  equal(caught.code, code, caught.message);
  return caught;
}

function withAttribute(name: string, value: unknown): Record<string, unknown> {
  return { ...VALID, [name]: value };
}

function without(name: string): Record<string, unknown> {
  const event: Record<string, unknown> = { ...VALID };
  delete event[name];
  return event;
}

Deno.test("createCloudEvent() fills in specversion, a UUID id and the current time", () => {
  const before = Date.now();
  const event = createCloudEvent({ source: "/s", type: "t" });
  equal(event.specversion, "1.0");
  match(
    event.id,
    /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
  );
  const time = Date.parse(event.time!);
  ok(time >= before - 1 && time <= Date.now() + 1);
  equal("datacontenttype" in event, false);
  equal("data" in event, false);
});

Deno.test("createCloudEvent() infers datacontenttype from the data", () => {
  const cases: Array<[unknown, string]> = [
    [{ a: 1 }, "application/json"],
    [[1, 2], "application/json"],
    [42, "application/json"],
    [false, "application/json"],
    [null, "application/json"],
    ["hello", "text/plain; charset=utf-8"],
    [new Uint8Array([1]), "application/octet-stream"],
  ];
  for (const [data, expected] of cases) {
    const event = createCloudEvent({ source: "/s", type: "t", data });
    equal(event.datacontenttype, expected, `for ${JSON.stringify(data)}`);
    deepStrictEqual(event.data, data);
  }
});

Deno.test("createCloudEvent() keeps the options it is given", () => {
  const event = createCloudEvent({
    source: "/sensors/42",
    type: "com.example.reading",
    id: "id-1",
    time: new Date("2024-05-01T12:00:00Z"),
    subject: "room-1",
    dataschema: "https://example.com/schema.json",
    datacontenttype: "application/xml",
    data: "<a/>",
    classification: "telemetry",
    extensions: { partitionkey: "k", count: 3, sampled: true },
  });
  deepStrictEqual(event, {
    specversion: "1.0",
    id: "id-1",
    source: "/sensors/42",
    type: "com.example.reading",
    time: "2024-05-01T12:00:00.000Z",
    subject: "room-1",
    dataschema: "https://example.com/schema.json",
    datacontenttype: "application/xml",
    data: "<a/>",
    classification: "telemetry",
    partitionkey: "k",
    count: 3,
    sampled: true,
  });
});

Deno.test("createCloudEvent() refuses core attribute names among the extensions", () => {
  const error = throwsCode(
    () =>
      createCloudEvent({
        source: "/s",
        type: "t",
        extensions: { id: "x" },
      }),
    "invalid-extension-name",
  );
  equal(error.attribute, "id");
});

Deno.test("createCloudEvent() refuses two different classifications", () => {
  throwsCode(
    () =>
      createCloudEvent({
        source: "/s",
        type: "t",
        classification: "a",
        extensions: { classification: "b" },
      }),
    "invalid-attribute",
  );
});

Deno.test("createCloudEvent() refuses an invalid Date and validates the rest", () => {
  throwsCode(
    () => createCloudEvent({ source: "/s", type: "t", time: new Date(NaN) }),
    "invalid-attribute",
  );
  throwsCode(
    () => createCloudEvent({ source: "", type: "t" }),
    "invalid-attribute",
  );
  throwsCode(
    () => createCloudEvent({ source: "/s", type: "t", time: "today" }),
    "invalid-attribute",
  );
  throwsCode(
    () =>
      createCloudEvent({
        source: "/s",
        type: "t",
        extensions: { "Bad-Name": 1 },
      }),
    "invalid-extension-name",
  );
  throws(
    () => createCloudEvent(null as unknown as { source: string; type: string }),
    TypeError,
  );
});

Deno.test("validateCloudEvent() accepts a minimal event and returns a plain copy", () => {
  const input = { ...VALID, subject: undefined };
  const event = validateCloudEvent(input);
  deepStrictEqual(event, VALID);
  ok(event !== (input as unknown));
});

Deno.test("validateCloudEvent() checks specversion", () => {
  throwsCode(
    () => validateCloudEvent(without("specversion")),
    "missing-attribute",
  );
  throwsCode(
    () => validateCloudEvent(withAttribute("specversion", "0.3")),
    "unsupported-specversion",
  );
  throwsCode(
    () => validateCloudEvent(withAttribute("specversion", "2.0")),
    "unsupported-specversion",
  );
  throwsCode(
    () => validateCloudEvent(withAttribute("specversion", 1)),
    "invalid-attribute",
  );
  throwsCode(
    () => validateCloudEvent(withAttribute("specversion", 1.0)),
    "invalid-attribute",
  );
});

Deno.test("validateCloudEvent() requires id, source and type as non-empty strings", () => {
  for (const name of ["id", "source", "type"]) {
    const missing = throwsCode(
      () => validateCloudEvent(without(name)),
      "missing-attribute",
    );
    equal(missing.attribute, name);
    match(missing.message, new RegExp(`"${name}"`));
    throwsCode(
      () => validateCloudEvent(withAttribute(name, "")),
      "invalid-attribute",
    );
    throwsCode(
      () => validateCloudEvent(withAttribute(name, 42)),
      "invalid-attribute",
    );
    throwsCode(
      () => validateCloudEvent(withAttribute(name, null)),
      "invalid-attribute",
    );
    throwsCode(
      () => validateCloudEvent(withAttribute(name, ["x"])),
      "invalid-attribute",
    );
  }
});

Deno.test("validateCloudEvent() requires optional attributes to be non-empty strings", () => {
  for (const name of ["datacontenttype", "dataschema", "subject", "time"]) {
    throwsCode(
      () => validateCloudEvent(withAttribute(name, "")),
      "invalid-attribute",
    );
    throwsCode(
      () => validateCloudEvent(withAttribute(name, 1)),
      "invalid-attribute",
    );
    throwsCode(
      () => validateCloudEvent(withAttribute(name, null)),
      "invalid-attribute",
    );
  }
  throwsCode(
    () => validateCloudEvent(withAttribute("datacontenttype", "json")),
    "invalid-attribute",
  );
});

Deno.test("validateCloudEvent() accepts RFC 3339 times only", () => {
  for (
    const time of [
      "2018-04-05T17:31:00Z",
      "2018-04-05t17:31:00z",
      "2024-02-29T23:59:60.123456789+14:00",
      "0001-01-01T00:00:00-00:00",
    ]
  ) {
    equal(validateCloudEvent(withAttribute("time", time)).time, time);
  }
  for (
    const time of [
      "yesterday",
      "2018-04-05",
      "2018-04-05T17:31:00",
      "2018-04-05 17:31:00Z",
      "2023-02-29T00:00:00Z",
      "2018-13-05T17:31:00Z",
      "2018-04-05T24:00:00Z",
      "2018-04-05T17:31:00.Z",
      "2018-04-05T17:31:00+0200",
      "1712338260",
    ]
  ) {
    const error = throwsCode(
      () => validateCloudEvent(withAttribute("time", time)),
      "invalid-attribute",
    );
    equal(error.attribute, "time");
    match(error.message, /RFC 3339/);
  }
});

Deno.test("validateCloudEvent() checks extension names: lower-case letters or digits, longer than 20 accepted", () => {
  equal(
    validateCloudEvent(withAttribute("a".repeat(21), "x"))["a".repeat(21)],
    "x",
  );
  equal(
    validateCloudEvent(withAttribute("z9".repeat(100), "x"))["z9".repeat(100)],
    "x",
  );
  equal(validateCloudEvent(withAttribute("ext0", "x")).ext0, "x");
  for (
    const name of [
      "",
      "Upper",
      "UPPER",
      "with-dash",
      "with_underscore",
      "data_base64",
      "émoji",
      "sp ace",
    ]
  ) {
    const error = throwsCode(
      () => validateCloudEvent(withAttribute(name, "x")),
      "invalid-extension-name",
    );
    equal(error.attribute, name);
  }
});

Deno.test("validateCloudEvent() refuses bytes under a JSON content type that are not JSON text", () => {
  const bytes = (text: string) => new TextEncoder().encode(text);
  const json = { ...VALID, datacontenttype: "application/json" };
  deepStrictEqual(
    validateCloudEvent({ ...json, data: bytes('{"a":1}') }).data,
    bytes('{"a":1}'),
  );
  for (const data of [new Uint8Array(0), bytes("{"), new Uint8Array([0xff])]) {
    const error = throwsCode(
      () => validateCloudEvent({ ...json, data }),
      "invalid-data",
    );
    match(error.message, /not UTF-8 JSON text.*application\/octet-stream/);
  }
  throwsCode(
    () =>
      validateCloudEvent({
        ...VALID,
        datacontenttype: "application/vnd.x+json",
        data: bytes("x"),
      }),
    "invalid-data",
  );
});

Deno.test("validateCloudEvent() refuses non-UTF-8 bytes under a UTF-8 text content type", () => {
  const latin1 = new Uint8Array([0x63, 0x61, 0x66, 0xe9]); // "café" in Latin-1
  for (const datacontenttype of ["text/plain", "application/xml"]) {
    const error = throwsCode(
      () => validateCloudEvent({ ...VALID, datacontenttype, data: latin1 }),
      "invalid-encoding",
    );
    match(error.message, /not valid UTF-8/);
  }
  // The same bytes are fine where the charset is named or nothing is text.
  for (
    const datacontenttype of [
      "text/plain; charset=iso-8859-1",
      "application/octet-stream",
    ]
  ) {
    deepStrictEqual(
      validateCloudEvent({ ...VALID, datacontenttype, data: latin1 }).data,
      latin1,
    );
  }
});

Deno.test("validateCloudEvent() allows string, int32 and boolean extension values only", () => {
  for (const value of ["", "x", 0, -2147483648, 2147483647, true, false]) {
    equal(validateCloudEvent(withAttribute("ext", value)).ext, value);
  }
  for (
    const value of [
      null,
      {},
      [],
      1.5,
      2147483648,
      -2147483649,
      NaN,
      10n,
      new Date(),
    ]
  ) {
    throwsCode(
      () => validateCloudEvent(withAttribute("ext", value)),
      "invalid-attribute",
    );
  }
});

Deno.test("validateCloudEvent() refuses characters the String type disallows", () => {
  for (
    const bad of [
      "a\nb",
      "tab\there",
      "\u0085",
      "\ud800",
      "x\udc00",
      "\ufdd0",
      "\uffff",
    ]
  ) {
    throwsCode(
      () => validateCloudEvent(withAttribute("subject", bad)),
      "invalid-attribute",
    );
    throwsCode(
      () => validateCloudEvent(withAttribute("ext", bad)),
      "invalid-attribute",
    );
  }
  equal(validateCloudEvent(withAttribute("subject", "😀 ü")).subject, "😀 ü");
});

Deno.test("validateCloudEvent() refuses what is not an object", () => {
  for (const value of [null, undefined, "{}", 1, [], new Uint8Array(2)]) {
    throwsCode(() => validateCloudEvent(value), "not-an-object");
  }
});

Deno.test("validateCloudEvent() checks that data fits its content type", () => {
  const ok1 = validateCloudEvent({
    ...VALID,
    datacontenttype: "text/plain",
    data: "hi",
  });
  equal(ok1.data, "hi");
  const bytes = new Uint8Array([1, 2]);
  equal(
    validateCloudEvent({ ...VALID, datacontenttype: "image/png", data: bytes })
      .data,
    bytes,
  );
  equal(validateCloudEvent({ ...VALID, data: null }).data, null);
  throwsCode(
    () =>
      validateCloudEvent({
        ...VALID,
        datacontenttype: "text/plain",
        data: { a: 1 },
      }),
    "invalid-data",
  );
  for (
    const data of [
      () => 1,
      Symbol("x"),
      1n,
      NaN,
      Infinity,
      new Uint16Array(1),
      new ArrayBuffer(1),
    ]
  ) {
    throwsCode(() => validateCloudEvent({ ...VALID, data }), "invalid-data");
  }
});

Deno.test("validateCloudEvent() names the attribute, the value cut to 80 characters, and what is allowed", () => {
  const long = "x".repeat(1000);
  const error = throwsCode(
    () => validateCloudEvent(withAttribute("time", long)),
    "invalid-attribute",
  );
  match(error.message, /"time"/);
  match(error.message, /"x{80}"… \(1000 chars\)/);
  match(error.message, /expected an RFC 3339 timestamp/);
  ok(error.message.length < 250, error.message);
});

Deno.test("validateCloudEvent() keeps every valid generated event as it is", () => {
  fc.assert(
    fc.property(cloudEvent({ fittingData: false }), (event: CloudEvent) => {
      deepStrictEqual(validateCloudEvent(event), event);
    }),
  );
});

Deno.test("CloudEventError is a DataExchangeError that is never retriable", () => {
  const cause = new SyntaxError("x");
  const error = new CloudEventError("malformed-json", "bad", {
    cause,
    attribute: "id",
  });
  ok(error instanceof DataExchangeError);
  equal(error.name, "CloudEventError");
  equal(error.code, "malformed-json");
  equal(error.retriable, false);
  equal(error.cause, cause);
  equal(error.attribute, "id");
});

Deno.test("isCloudEventError() checks the shape, not only the class", () => {
  ok(isCloudEventError(new CloudEventError("invalid-data", "x")));
  const copy = Object.assign(new Error("x"), {
    name: "CloudEventError",
    code: "invalid-data",
    retriable: false,
  });
  ok(isCloudEventError(copy));
  equal(isCloudEventError(new Error("x")), false);
  equal(
    isCloudEventError(new DataExchangeError("broker-unreachable", "x")),
    false,
  );
  equal(
    isCloudEventError({
      name: "CloudEventError",
      code: "invalid-data",
      retriable: false,
    }),
    false,
  );
  equal(isCloudEventError(Object.assign(copy, { code: "other" })), false);
});
