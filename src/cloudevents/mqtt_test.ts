import { deepStrictEqual, equal, throws } from "node:assert/strict";
import { Buffer } from "node:buffer";
import fc from "fast-check";
import { cloudEvent } from "./_test_arbitraries.ts";
import {
  type CloudEvent,
  type CloudEventErrorCode,
  isCloudEventError,
} from "./event.ts";
import {
  fromMqttMessage,
  type FromMqttOptions,
  type MqttMessage,
  toMqttMessage,
} from "./mqtt.ts";

const encoder = new TextEncoder();
const bytes = (text: string): Uint8Array => encoder.encode(text);
const HEAD = { specversion: "1.0", id: "1", source: "/s", type: "t" } as const;
const STRUCTURED = "application/cloudevents+json; charset=utf-8";

function fails(
  message: MqttMessage,
  code: CloudEventErrorCode,
  options?: FromMqttOptions,
): void {
  throws(
    () => fromMqttMessage(message, options),
    (error: unknown) => isCloudEventError(error) && error.code === code,
  );
}

function structuredPayload(event: Record<string, unknown>): Uint8Array {
  return bytes(JSON.stringify(event));
}

Deno.test("fromMqttMessage() reads MQTT 3.1.1 messages as structured", () => {
  const payload = structuredPayload({ ...HEAD, data: { a: 1 } });
  const event = fromMqttMessage({ topic: "x", payload }, {
    protocolVersion: 4,
  });
  deepStrictEqual(event, { ...HEAD, data: { a: 1 } });
  // MQTT 3.1.1 has no properties: whatever a client reports is not read.
  const withProps = fromMqttMessage({
    topic: "x",
    payload,
    properties: { userProperties: { specversion: "1.0" } },
  }, { protocolVersion: 4 });
  deepStrictEqual(withProps, { ...HEAD, data: { a: 1 } });
  fails({ topic: "x", payload: bytes("21.5") }, "not-an-object", {
    protocolVersion: 4,
  });
});

Deno.test("fromMqttMessage() reads MQTT 5 structured messages by Content Type", () => {
  const payload = structuredPayload({ ...HEAD, data_base64: "AQI=" });
  for (const contentType of [STRUCTURED, "APPLICATION/CLOUDEVENTS+JSON"]) {
    const event = fromMqttMessage({
      topic: "x",
      payload,
      properties: { contentType, userProperties: { specversion: "1.0" } },
    });
    deepStrictEqual(event, { ...HEAD, data: new Uint8Array([1, 2]) });
  }
});

Deno.test("fromMqttMessage() refuses structured formats other than JSON", () => {
  for (
    const contentType of [
      "application/cloudevents+avro",
      "application/cloudevents-batch+json",
    ]
  ) {
    fails(
      { topic: "x", payload: bytes("[]"), properties: { contentType } },
      "unsupported-format",
    );
  }
});

Deno.test("fromMqttMessage() reads MQTT 5 binary messages from user properties", () => {
  const event = fromMqttMessage({
    topic: "sensors/42",
    payload: Buffer.from('{"celsius":21.5}'),
    qos: 1,
    properties: {
      contentType: "application/json",
      userProperties: {
        ...HEAD,
        time: "2024-05-01T12:00:00Z",
        classification: "telemetry",
      },
    },
  });
  deepStrictEqual(event, {
    ...HEAD,
    time: "2024-05-01T12:00:00Z",
    classification: "telemetry",
    datacontenttype: "application/json",
    data: { celsius: 21.5 },
  });
});

Deno.test("fromMqttMessage() decodes binary payloads by content type", () => {
  const message = (contentType: string | undefined, payload: Uint8Array) => ({
    topic: "x",
    payload,
    properties: { contentType, userProperties: { ...HEAD } },
  });
  equal(fromMqttMessage(message("text/plain", bytes("hi"))).data, "hi");
  const raw = new Uint8Array([0, 255]);
  equal(fromMqttMessage(message("application/octet-stream", raw)).data, raw);
  equal(fromMqttMessage(message(undefined, raw)).data, raw);
  equal(
    "data" in fromMqttMessage(message("text/plain", new Uint8Array(0))),
    false,
  );
  fails(message("application/json", bytes("{oops")), "invalid-data");
  fails(message("text/plain", raw), "invalid-encoding");
});

Deno.test("fromMqttMessage() treats a message without Content Type or specversion as structured", () => {
  const payload = structuredPayload({ ...HEAD, data: "x" });
  deepStrictEqual(fromMqttMessage({ topic: "x", payload }), {
    ...HEAD,
    data: "x",
  });
  const typed = fromMqttMessage({
    topic: "x",
    payload,
    properties: {
      contentType: "application/json",
      userProperties: { id: "ignored" },
    },
  });
  deepStrictEqual(typed, { ...HEAD, data: "x" });
  fails(
    { topic: "x", payload: bytes('{"celsius":21.5}') },
    "missing-attribute",
  );
  fails({ topic: "x", payload: new Uint8Array([0xff]) }, "invalid-encoding");
});

Deno.test("fromMqttMessage() refuses repeated user properties, accepts one-element arrays", () => {
  const event = fromMqttMessage({
    topic: "x",
    payload: new Uint8Array(0),
    properties: { userProperties: { ...HEAD, id: ["1"], empty: [] } },
  });
  deepStrictEqual(event, HEAD);
  fails({
    topic: "x",
    payload: new Uint8Array(0),
    properties: { userProperties: { ...HEAD, id: ["1", "2"] } },
  }, "invalid-attribute");
});

Deno.test("fromMqttMessage() refuses user properties that cannot be attribute names in binary mode", () => {
  for (const name of ["x-device", "x_device", "Trace", "data", ""]) {
    fails({
      topic: "x",
      payload: new Uint8Array(0),
      properties: { userProperties: { ...HEAD, [name]: "v" } },
    }, "invalid-extension-name");
  }
});

Deno.test("fromMqttMessage() checks a datacontenttype user property against Content Type", () => {
  const agree = fromMqttMessage({
    topic: "x",
    payload: bytes("hi"),
    properties: {
      contentType: "text/plain",
      userProperties: { ...HEAD, datacontenttype: "text/plain" },
    },
  });
  equal(agree.data, "hi");
  const alone = fromMqttMessage({
    topic: "x",
    payload: bytes("hi"),
    properties: { userProperties: { ...HEAD, datacontenttype: "text/plain" } },
  });
  equal(alone.data, "hi");
  fails({
    topic: "x",
    payload: bytes("hi"),
    properties: {
      contentType: "text/csv",
      userProperties: { ...HEAD, datacontenttype: "text/plain" },
    },
  }, "invalid-attribute");
});

Deno.test("fromMqttMessage() checks its arguments", () => {
  throws(
    () =>
      fromMqttMessage({ topic: "x", payload: "{}" as unknown as Uint8Array }),
    TypeError,
  );
  throws(
    () =>
      fromMqttMessage({ topic: "x", payload: new Uint8Array(0) }, {
        protocolVersion: 3 as 4,
      }),
    RangeError,
  );
});

Deno.test("toMqttMessage() writes structured mode for MQTT 3.1.1 and 5", () => {
  const event = { ...HEAD, data: { a: 1 } };
  const v4 = toMqttMessage(event, "events/t", { protocolVersion: 4 });
  deepStrictEqual(v4, { topic: "events/t", payload: structuredPayload(event) });
  const v5 = toMqttMessage(event, "events/t");
  deepStrictEqual(v5, {
    topic: "events/t",
    payload: structuredPayload(event),
    properties: { contentType: STRUCTURED },
  });
});

Deno.test("toMqttMessage() writes binary mode with user properties and Content Type", () => {
  const message = toMqttMessage(
    {
      ...HEAD,
      datacontenttype: "text/plain",
      data: "hi",
      count: 2,
      on: false,
    },
    "events/t",
    { mode: "binary" },
  );
  deepStrictEqual(message, {
    topic: "events/t",
    payload: bytes("hi"),
    properties: {
      contentType: "text/plain",
      userProperties: { ...HEAD, count: "2", on: "false" },
    },
  });
  const untyped = toMqttMessage({ ...HEAD, data: [1] }, "t", {
    mode: "binary",
  });
  equal(untyped.properties?.contentType, "application/json");
  deepStrictEqual(untyped.payload, bytes("[1]"));
  const empty = toMqttMessage(HEAD, "t", { mode: "binary" });
  deepStrictEqual(empty.payload, new Uint8Array(0));
  equal(empty.properties?.contentType, undefined);
  const raw = new Uint8Array([9]);
  equal(
    toMqttMessage({ ...HEAD, data: raw }, "t", { mode: "binary" }).payload,
    raw,
  );
});

Deno.test("toMqttMessage() refuses binary mode on MQTT 3.1.1 and bad topics", () => {
  throws(
    () => toMqttMessage(HEAD, "t", { mode: "binary", protocolVersion: 4 }),
    TypeError,
  );
  throws(
    () => toMqttMessage(HEAD, "t", { mode: "raw" as "binary" }),
    TypeError,
  );
  for (const topic of ["", "a/+/b", "a/#"]) {
    throws(() => toMqttMessage(HEAD, topic), RangeError);
  }
  throws(() => toMqttMessage(HEAD, 5 as unknown as string), TypeError);
  throws(
    () => toMqttMessage({ ...HEAD, type: "" }, "t"),
    (error: unknown) =>
      isCloudEventError(error) && error.code === "invalid-attribute",
  );
});

Deno.test("fromMqttMessage(toMqttMessage(e)) deep-equals e in structured mode, MQTT 3.1.1 and 5", () => {
  fc.assert(
    fc.property(
      cloudEvent({ fittingData: false }),
      fc.constantFrom<4 | 5>(4, 5),
      (event: CloudEvent, protocolVersion: 4 | 5) => {
        const message = toMqttMessage(event, "t", { protocolVersion });
        deepStrictEqual(fromMqttMessage(message, { protocolVersion }), event);
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("fromMqttMessage(toMqttMessage(e)) deep-equals e in binary mode", () => {
  fc.assert(
    fc.property(
      cloudEvent({
        stringExtensions: true,
        withContentType: true,
        nonEmptyData: true,
      }),
      (event: CloudEvent) => {
        const message = toMqttMessage(event, "t", { mode: "binary" });
        deepStrictEqual(fromMqttMessage(message), event);
      },
    ),
    { numRuns: 300 },
  );
});
