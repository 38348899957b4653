/**
 * Interoperability with the `cloudevents` npm package (v10), used here as an
 * oracle only: what we write, its bindings read the same way; and, at the
 * boundary, where it fails on records that kafkajs actually delivers while
 * this module does not.
 */
import {
  deepStrictEqual,
  equal,
  notEqual,
  ok,
  throws,
} from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  CloudEvent as SdkCloudEvent,
  Kafka,
  type KafkaMessage,
  type Message,
  MQTT,
  type MQTTMessage,
} from "cloudevents";
import fc from "fast-check";
import { ceString, extensionName, jsonData } from "./_test_arbitraries.ts";
import { type CloudEvent, validateCloudEvent } from "./event.ts";
import { fromKafkaRecord, type KafkaRecord, toKafkaRecord } from "./kafka.ts";
import { fromMqttMessage, toMqttMessage } from "./mqtt.ts";

const decoder = new TextDecoder();
const HEAD = { specversion: "1.0", id: "1", source: "/s", type: "t" } as const;

/** A record as kafkajs delivers it: every header and the value as a Buffer. */
function asKafkajs(record: KafkaRecord) {
  const headers: Record<string, Buffer> = {};
  for (const [name, value] of Object.entries(record.headers)) {
    headers[name] = Buffer.from(value);
  }
  return {
    key: record.key && Buffer.from(record.key),
    value: record.value && Buffer.from(record.value),
    headers,
  };
}

/** The same record with string headers and key, the only shape the SDK reads. */
function asSdkInput(record: KafkaRecord, value: "buffer" | "string") {
  const headers: Record<string, string> = {};
  for (const [name, v] of Object.entries(record.headers)) {
    headers[name] = decoder.decode(v);
  }
  return {
    key: record.key && decoder.decode(record.key),
    value: record.value === null
      ? null
      : value === "buffer"
      ? Buffer.from(record.value)
      : decoder.decode(record.value),
    headers,
  };
}

function sdkKafka(input: unknown): Record<string, unknown> {
  return { ...Kafka.toEvent(input as KafkaMessage) };
}

/** Events both libraries represent alike: JSON data, string extensions, a UTC millisecond time, a partition key. */
const sharedEvent: fc.Arbitrary<CloudEvent> = fc.record({
  id: ceString(1),
  source: ceString(1),
  type: ceString(1),
  subject: ceString(1),
  time: fc.date({
    min: new Date("1970-01-01T00:00:00Z"),
    max: new Date("9999-12-31T23:59:59Z"),
    noInvalidDate: true,
  }).map((d) => d.toISOString()),
  partitionkey: ceString(1),
  extensions: fc.dictionary(extensionName(), ceString(1), { maxKeys: 3 }),
  data: jsonData(),
}).map(({ extensions, ...attributes }) =>
  ({
    specversion: "1.0",
    ...extensions,
    ...attributes,
    datacontenttype: "application/json",
  }) as CloudEvent
);

Deno.test("the cloudevents SDK reads our binary Kafka records as the same event", () => {
  fc.assert(
    fc.property(sharedEvent, (event: CloudEvent) => {
      const sdk = sdkKafka(asSdkInput(toKafkaRecord(event), "buffer"));
      deepStrictEqual(validateCloudEvent(sdk), event);
    }),
    { numRuns: 200 },
  );
});

Deno.test("the cloudevents SDK reads our structured Kafka records as the same event", () => {
  fc.assert(
    fc.property(sharedEvent, (event: CloudEvent) => {
      const record = toKafkaRecord(event, { mode: "structured" });
      const sdk = sdkKafka(asSdkInput(record, "string"));
      deepStrictEqual(validateCloudEvent(sdk), event);
    }),
    { numRuns: 200 },
  );
});

Deno.test("the cloudevents SDK reads our structured MQTT messages as the same event", () => {
  fc.assert(
    fc.property(sharedEvent, (event: CloudEvent) => {
      const message = toMqttMessage(event, "t");
      const sdk = MQTT.toEvent({
        PUBLISH: { "Content Type": message.properties?.contentType },
        body: decoder.decode(message.payload),
        headers: {},
      } as unknown as MQTTMessage);
      deepStrictEqual(validateCloudEvent({ ...sdk }), event);
    }),
    { numRuns: 200 },
  );
});

Deno.test("we read the SDK's own structured Kafka output as the same event", () => {
  fc.assert(
    fc.property(sharedEvent, (event: CloudEvent) => {
      // Not strict: the SDK checks source as a URI-reference, which this
      // module does not (it only requires a non-empty string).
      const sdkEvent = new SdkCloudEvent(event as never, false);
      const sdkMessage = Kafka.structured(sdkEvent) as Message & {
        value: string;
      };
      const back = fromKafkaRecord({
        value: sdkMessage.value,
        headers: sdkMessage.headers as Record<string, string>,
      });
      deepStrictEqual(back, event);
    }),
    { numRuns: 100 },
  );
});

// ---------------------------------------------------------------------------
// The boundary: records that are valid CloudEvents, which the SDK cannot read.

Deno.test("boundary: the SDK's Kafka binding throws on a structured record without time; ours reads it", () => {
  const record = toKafkaRecord(HEAD, { mode: "structured" });
  throws(() => sdkKafka(asSdkInput(record, "string")), RangeError); // "Invalid time value"
  deepStrictEqual(fromKafkaRecord(asKafkajs(record)), HEAD);
});

Deno.test("boundary: the SDK's Kafka binding throws on Buffer header values as kafkajs delivers them; ours reads them", () => {
  const event = {
    ...HEAD,
    datacontenttype: "application/json",
    data: { a: 1 },
  };
  for (const mode of ["binary", "structured"] as const) {
    const record = toKafkaRecord(event, { mode });
    throws(() => sdkKafka(asKafkajs(record)), TypeError); // "….startsWith is not a function"
    deepStrictEqual(fromKafkaRecord(asKafkajs(record)), event);
  }
});

Deno.test("boundary: the SDK's Kafka binding throws on Uint8Array header values; ours reads them", () => {
  const event = { ...HEAD, datacontenttype: "text/plain", data: "hi" };
  const record = toKafkaRecord(event);
  throws(() => sdkKafka(record), TypeError);
  deepStrictEqual(fromKafkaRecord(record), event);
});

Deno.test("boundary: the SDK makes up a time for a binary record that has none; ours leaves it absent", () => {
  const event = {
    ...HEAD,
    datacontenttype: "application/json",
    data: 1,
    partitionkey: "k",
  };
  const sdk = sdkKafka(asSdkInput(toKafkaRecord(event), "buffer"));
  equal(typeof sdk.time, "string"); // the time of parsing, not of the event
  equal("time" in fromKafkaRecord(toKafkaRecord(event)), false);
});

Deno.test("boundary: the SDK rewrites a time with an offset to UTC; ours keeps the attribute as sent", () => {
  const event = {
    ...HEAD,
    time: "2024-05-01T14:00:00+02:00",
    partitionkey: "k",
  };
  const record = toKafkaRecord(event, { mode: "structured" });
  equal(
    sdkKafka(asSdkInput(record, "string")).time,
    "2024-05-01T12:00:00.000Z",
  );
  equal(fromKafkaRecord(record).time, "2024-05-01T14:00:00+02:00");
});

Deno.test("boundary: the SDK refuses a binary record without data (null value, Kafka binding 3.2.2); ours reads it", () => {
  const event = { ...HEAD, time: "2024-05-01T12:00:00.000Z" };
  const record = toKafkaRecord(event);
  equal(record.value, null);
  throws(
    () => sdkKafka(asSdkInput(record, "buffer")),
    /Value is null or undefined/,
  );
  deepStrictEqual(fromKafkaRecord(record), event);
});

Deno.test("boundary: the SDK loses datacontenttype when the header is spelled Content-Type; ours does not", () => {
  const event = {
    ...HEAD,
    time: "2024-05-01T12:00:00.000Z",
    datacontenttype: "application/json",
    data: { a: 1 },
  };
  const input = asSdkInput(toKafkaRecord(event), "buffer");
  const headers: Record<string, string> = {
    ...input.headers,
    "Content-Type": input.headers["content-type"],
  };
  delete headers["content-type"];
  const sdk = sdkKafka({ ...input, headers });
  equal(sdk.datacontenttype, undefined);
  notEqual(JSON.stringify(sdk.data), '{"a":1}'); // left as bytes, not parsed
  deepStrictEqual(fromKafkaRecord({ ...input, headers }), event);
});

Deno.test("boundary: the SDK replaces partitionkey with the record key, null included; ours keeps the attribute", () => {
  const event = {
    ...HEAD,
    time: "2024-05-01T12:00:00.000Z",
    partitionkey: "sensor-42",
  };
  const record = toKafkaRecord(event, { mode: "structured" });
  const rekeyed = { ...asSdkInput(record, "string"), key: null };
  equal(sdkKafka(rekeyed).partitionkey, null);
  equal(fromKafkaRecord(rekeyed).partitionkey, "sensor-42");
});

Deno.test("boundary: the SDK's MQTT binding ignores the Content Type of binary messages; ours maps it to datacontenttype", () => {
  const event = {
    ...HEAD,
    time: "2024-05-01T12:00:00.000Z",
    datacontenttype: "application/json",
    data: { a: 1 },
  };
  const message = toMqttMessage(event, "t", { mode: "binary" });
  const sdk = MQTT.toEvent({
    PUBLISH: { "Content Type": message.properties?.contentType },
    body: decoder.decode(message.payload),
    headers: message.properties?.userProperties,
  } as unknown as MQTTMessage) as unknown as Record<string, unknown>;
  equal(sdk.datacontenttype, undefined);
  equal(sdk.data, '{"a":1}'); // a string, not the JSON value
  const ours = fromMqttMessage(message);
  deepStrictEqual(ours, event);
  ok(typeof ours.data === "object");
});

Deno.test('boundary: the SDK\'s Kafka structured serializer writes "[object Object]" for a plain event object; ours writes JSON', () => {
  const event = { ...HEAD, time: "2024-05-01T12:00:00.000Z" };
  const sdkMessage = Kafka.structured(event as never) as Message & {
    value: string;
  };
  equal(sdkMessage.value, "[object Object]");
  const ours = toKafkaRecord(event, { mode: "structured" });
  deepStrictEqual(fromKafkaRecord(ours), event);
});

Deno.test("boundary: the SDK's Kafka binary serializer leaves JSON data as an object, not bytes; ours writes JSON bytes", () => {
  const event = {
    ...HEAD,
    datacontenttype: "application/json",
    data: { a: 1 },
  };
  const sdkMessage = Kafka.binary(new SdkCloudEvent(event)) as Message & {
    value: unknown;
  };
  deepStrictEqual(sdkMessage.value, { a: 1 }); // what kafkajs cannot send
  const ours = toKafkaRecord(event);
  equal(decoder.decode(ours.value!), '{"a":1}');
});

Deno.test("boundary: the SDK's Kafka binary serializer writes a JSON string datum unquoted, which is not JSON; ours quotes it", () => {
  const event = { ...HEAD, datacontenttype: "application/json", data: "hi" };
  const sdkMessage = Kafka.binary(new SdkCloudEvent(event)) as Message & {
    value: unknown;
  };
  equal(sdkMessage.value, "hi");
  throws(() => JSON.parse(sdkMessage.value as string), SyntaxError);
  const ours = toKafkaRecord(event);
  equal(decoder.decode(ours.value!), '"hi"');
  deepStrictEqual(fromKafkaRecord(ours), event);
});
