/**
 * Hostile and malformed input through the real bridge on real brokers: each
 * kind gets its outcome (routed, or dead-lettered with its reason code), and
 * the valid events sent around it all arrive.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import fc from "fast-check";
import { Kafka, logLevel } from "kafkajs";
import mqtt from "mqtt";
import {
  type CloudEvent,
  createCloudEvent,
  fromKafkaRecord,
  fromMqttMessage,
  type MqttMessage,
  serializeStructured,
  toKafkaRecord,
} from "../src/cloudevents/mod.ts";
import { hostilePayload } from "../src/cloudevents/_test_arbitraries.ts";
import {
  type BridgeConfig,
  type BridgeConfigInput,
  parseConfig,
} from "../src/bridge/mod.ts";
import { startBridgeInProcess } from "./_bridge.ts";
import { testBrokers } from "./_brokers.ts";
import {
  createTopics,
  header,
  type Publication,
  publishAll,
  type ReadRecord,
  readTopics,
  uniqueName,
} from "./_kafka.ts";

const brokers = await testBrokers();
const encoder = new TextEncoder();

/**
 * The bridge's configuration for test `id` on the test brokers: MQTT topics
 * under `id/`, dead letters in `id.dlq`, the default topic `id.default`.
 */
function bridgeConfig(id: string, fields: BridgeConfigInput): BridgeConfig {
  return parseConfig({
    mqtt: {
      url: brokers!.mqttUrl,
      topics: [`${id}/#`],
      clientId: `${id}-bridge`,
    },
    kafka: { brokers: brokers!.kafkaBrokers },
    routes: {},
    defaultTopic: `${id}.default`,
    deadLetterTopic: `${id}.dlq`,
    log: { level: "error" },
    ...fields,
  });
}

const BASE = { specversion: "1.0", id: "h-1", source: "/hostile", type: "t" };
const json = (value: unknown) => encoder.encode(JSON.stringify(value));

/** What must become of a hostile message. */
type Expected =
  | { deadLetter: string; truncated?: boolean }
  | { route: "telemetry" | "default"; check?: (event: CloudEvent) => void };

interface Case {
  name: string;
  payload: Uint8Array;
  options?: Publication["options"];
  expected: Expected;
}

function binary(
  userProperties: Record<string, string | string[]>,
  payload: Uint8Array,
  contentType?: string,
): Pick<Case, "payload" | "options"> {
  return {
    payload,
    options: { properties: { userProperties, contentType } },
  };
}

const PNG = new Uint8Array([
  0x89,
  0x50,
  0x4e,
  0x47,
  0x0d,
  0x0a,
  0x1a,
  0x0a,
  ...Array.from({ length: 600 }, (_, i) => (i * 131 + 7) % 256),
]);
let deep = "1";
for (let i = 0; i < 10_000; i++) deep = `[${deep}]`;

const CASES: Case[] = [
  // Extension names
  {
    name: "ext-uppercase",
    payload: json({ ...BASE, Trace: "x" }),
    expected: { deadLetter: "invalid-extension-name" },
  },
  {
    name: "ext-dash-user-property",
    ...binary({ ...BASE, "trace-id": "x" }, encoder.encode("hi"), "text/plain"),
    expected: { deadLetter: "invalid-extension-name" },
  },
  {
    name: "ext-underscore",
    payload: json({ ...BASE, trace_id: "x" }),
    expected: { deadLetter: "invalid-extension-name" },
  },
  {
    name: "ext-longer-than-20",
    payload: json({ ...BASE, averyveryverylongextensionname: "kept" }),
    expected: {
      route: "default",
      check: (e) => assert.equal(e.averyveryverylongextensionname, "kept"),
    },
  },
  // specversion and the required attributes
  ...[
    [
      "specversion-missing",
      { ...BASE, specversion: undefined },
      "missing-attribute",
    ],
    [
      "specversion-0.3",
      { ...BASE, specversion: "0.3" },
      "unsupported-specversion",
    ],
    [
      "specversion-2.0",
      { ...BASE, specversion: "2.0" },
      "unsupported-specversion",
    ],
    ["specversion-number", { ...BASE, specversion: 1 }, "invalid-attribute"],
    ["id-missing", { ...BASE, id: undefined }, "missing-attribute"],
    ["id-empty", { ...BASE, id: "" }, "invalid-attribute"],
    ["id-number", { ...BASE, id: 7 }, "invalid-attribute"],
    ["source-missing", { ...BASE, source: undefined }, "missing-attribute"],
    ["source-object", { ...BASE, source: {} }, "invalid-attribute"],
    ["type-empty", { ...BASE, type: "" }, "invalid-attribute"],
    ["time-not-rfc3339", { ...BASE, time: "yesterday" }, "invalid-attribute"],
    [
      "data-and-data-base64",
      { ...BASE, data: 1, data_base64: "AQ==" },
      "invalid-data",
    ],
    ["data-base64-invalid", { ...BASE, data_base64: "!!" }, "invalid-data"],
    [
      "classification-control-char",
      { ...BASE, classification: "tele\u0007metry" },
      "invalid-attribute",
    ],
  ].map(([name, event, code]): Case => ({
    name: name as string,
    payload: json(event),
    expected: { deadLetter: code as string },
  })),
  {
    name: "time-missing",
    payload: json(BASE),
    expected: {
      route: "default",
      check: (e) => assert.equal(e.time, undefined),
    },
  },
  {
    name: "json-content-type-not-json",
    ...binary(BASE, encoder.encode("{oops"), "application/json"),
    expected: { deadLetter: "invalid-data" },
  },
  {
    name: "json-content-type-base64-not-json",
    payload: json({
      ...BASE,
      datacontenttype: "application/json",
      data_base64: "AAEC",
    }),
    expected: { deadLetter: "invalid-data" },
  },
  // Classification values: only an exact route key picks a route.
  ...[
    ["classification-empty", ""],
    ["classification-long", "t".repeat(20_000)],
    ["classification-number", 42],
    ["classification-slash", "telemetry/../alerts"],
    ["classification-dotdot", ".."],
    ["classification-spaces", " telemetry "],
    ["classification-case", "Telemetry"],
  ].map(([name, classification]): Case => ({
    name: name as string,
    payload: json({ ...BASE, classification }),
    expected: {
      route: "default",
      // Binary mode carries an integer extension as its decimal string.
      check: (e) => assert.equal(e.classification, String(classification)),
    },
  })),
  {
    name: "classification-exact",
    payload: json({ ...BASE, classification: "telemetry" }),
    expected: { route: "telemetry" },
  },
  // Encoding
  {
    name: "binary-image-bytes",
    ...binary({ ...BASE, classification: "telemetry" }, PNG, "image/png"),
    expected: {
      route: "telemetry",
      // Byte for byte (kafkajs hands out a Buffer: compare the bytes).
      check: (e) => assert.deepEqual(new Uint8Array(e.data as Uint8Array), PNG),
    },
  },
  {
    name: "structured-not-utf8",
    payload: new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]),
    expected: { deadLetter: "invalid-encoding" },
  },
  {
    name: "text-data-not-utf8",
    ...binary(BASE, new Uint8Array([0x63, 0x61, 0x66, 0xe9]), "text/plain"),
    expected: { deadLetter: "invalid-encoding" },
  },
  {
    name: "structured-with-bom",
    payload: new Uint8Array([
      0xef,
      0xbb,
      0xbf,
      ...json({ ...BASE, data: { a: 1 } }),
    ]),
    expected: {
      route: "default",
      check: (e) => assert.deepEqual(e.data, { a: 1 }),
    },
  },
  {
    name: "binary-json-with-bom",
    ...binary(
      BASE,
      new Uint8Array([0xef, 0xbb, 0xbf, ...json({ a: 2 })]),
      "application/json",
    ),
    expected: {
      route: "default",
      check: (e) => assert.deepEqual(e.data, { a: 2 }),
    },
  },
  // MQTT 5 user properties
  {
    name: "user-property-repeated",
    ...binary({ ...BASE, region: ["eu", "us"] }, new Uint8Array(0)),
    expected: { deadLetter: "invalid-attribute" },
  },
  {
    name: "user-property-empty-extension",
    ...binary({ ...BASE, region: "" }, new Uint8Array(0)),
    expected: { route: "default", check: (e) => assert.equal(e.region, "") },
  },
  {
    name: "user-property-empty-id",
    ...binary({ ...BASE, id: "" }, new Uint8Array(0)),
    expected: { deadLetter: "invalid-attribute" },
  },
  // Sizes and shapes
  {
    name: "empty-payload",
    payload: new Uint8Array(0),
    expected: { deadLetter: "empty-payload" },
  },
  {
    name: "empty-payload-retained-clear",
    payload: new Uint8Array(0),
    options: { retain: true },
    expected: { deadLetter: "empty-payload" },
  },
  {
    name: "zero-length-text-data",
    payload: json({ ...BASE, datacontenttype: "text/plain", data: "" }),
    expected: { route: "default", check: (e) => assert.equal(e.data, "") },
  },
  {
    name: "json-nested-10000-deep",
    payload: encoder.encode(
      `{"specversion":"1.0","id":"h-1","source":"/s","type":"t","data":${deep}}`,
    ),
    expected: {
      route: "default",
      check: (e) => assert.ok(Array.isArray(e.data)),
    },
  },
  {
    // Larger than Kafka's message.max.bytes (1 MiB by default).
    name: "payload-10-mb",
    payload: json({ ...BASE, data: "x".repeat(10 * 1024 * 1024) }),
    expected: { deadLetter: "kafka-rejected", truncated: true },
  },
];

Deno.test({
  name:
    "every kind of hostile MQTT message is routed or dead-lettered with its reason, and the events around it arrive",
  ignore: brokers === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const id = uniqueName("hostile");
    const telemetry = `${id}.telemetry`;
    const defaultTopic = `${id}.default`;
    const deadLetterTopic = `${id}.dlq`;
    const bridge = await startBridgeInProcess(
      bridgeConfig(id, { routes: { telemetry }, defaultTopic }),
    );

    // Each case on its own MQTT topic, between two valid events.
    const valid: CloudEvent[] = [];
    const publications: Publication[] = [];
    const around = (name: string, position: string) => {
      const event = createCloudEvent({
        source: `/hostile/${name}`,
        type: "dev.dataexchange.valid",
        classification: "telemetry",
        data: { position },
      });
      valid.push(event);
      publications.push({
        topic: `${id}/valid`,
        payload: serializeStructured(event),
      });
    };
    for (const c of CASES) {
      around(c.name, "before");
      publications.push({
        topic: `${id}/case/${c.name}`,
        payload: c.payload,
        options: c.options,
      });
      around(c.name, "after");
    }
    await publishAll(brokers!.mqttUrl, publications, { window: 20 });

    const topics = [telemetry, defaultTopic, deadLetterTopic];
    await createTopics(brokers!.kafkaBrokers, topics);
    const total = publications.length;
    const records = await readTopics(brokers!.kafkaBrokers, topics, {
      until: (read) => read.length >= total,
      timeoutMs: 60_000,
    });
    const stats = await bridge.stop();
    assert.equal(stats.received, total);
    assert.equal(stats.failed, 0);
    // Not one more: a record Kafka refuses is sent on its own, so the
    // records batched around it are never sent twice.
    assert.equal(records.length, total, "one record per message");

    // The valid events, all of them, unchanged.
    const events = records.filter((r) => r.topic !== deadLetterTopic)
      .map((r) => ({ topic: r.topic, event: readEvent(r) }));
    for (const sent of valid) {
      const got = events.find((e) => e.event.id === sent.id);
      assert.ok(got, `valid event ${sent.source} arrived`);
      assert.equal(got.topic, telemetry);
      assert.deepEqual(got.event, sent);
    }

    // Each case: its outcome.
    for (const c of CASES) {
      const source = `${id}/case/${c.name}`;
      const expected = c.expected;
      if ("deadLetter" in expected) {
        const dead = records.filter((r) =>
          r.topic === deadLetterTopic &&
          header(r.message, "dx-mqtt-topic") === source
        );
        assert.equal(dead.length, 1, `${c.name}: one dead letter`);
        const message = dead[0].message;
        assert.equal(
          header(message, "dx-error"),
          expected.deadLetter,
          `${c.name}: ${header(message, "dx-error-detail")}`,
        );
        assert.ok(header(message, "dx-error-detail"), `${c.name}: a detail`);
        if (expected.truncated) {
          assert.equal(
            header(message, "dx-original-size"),
            String(c.payload.length),
          );
          assert.deepEqual(
            new Uint8Array(message.value!),
            c.payload.subarray(0, message.value!.length),
          );
        } else {
          assert.deepEqual(new Uint8Array(message.value!), c.payload);
        }
      } else {
        const topic = expected.route === "telemetry" ? telemetry : defaultTopic;
        const found = events.filter((e) =>
          e.topic === topic && e.event.source !== undefined &&
          !valid.some((v) => v.id === e.event.id) &&
          matchesCase(e.event, c)
        );
        assert.equal(found.length, 1, `${c.name}: routed to ${topic}`);
        expected.check?.(found[0].event);
      }
    }
  },
});

/** Reads a routed record back the way a Kafka consumer would. */
function readEvent(record: ReadRecord): CloudEvent {
  return fromKafkaRecord({
    key: record.message.key,
    value: record.message.value,
    headers: record.message.headers,
  });
}

/**
 * Whether a routed event is the one a case sent (all share id "h-1"),
 * compared as binary-mode records: Kafka headers carry integer extensions as
 * their canonical strings.
 */
function matchesCase(event: CloudEvent, c: Case): boolean {
  const sent = fromMqttMessage({
    topic: "x",
    payload: c.payload,
    properties: c.options?.properties as MqttMessage["properties"],
  });
  const a = toKafkaRecord(event);
  const b = toKafkaRecord(sent);
  const names = Object.keys(a.headers);
  return bytesEqual(a.value, b.value) &&
    names.length === Object.keys(b.headers).length &&
    names.every((name) => bytesEqual(a.headers[name], b.headers[name]));
}

function bytesEqual(
  a: Uint8Array | null | undefined,
  b: Uint8Array | null | undefined,
): boolean {
  if (!a || !b) return a === b;
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

Deno.test({
  name:
    "the bridge stays up under 10,000 random and mutated payloads, and every valid event mixed in arrives",
  ignore: brokers === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const id = uniqueName("fuzz");
    const events = `${id}.events`;
    const deadLetterTopic = `${id}.dlq`;
    const bridge = await startBridgeInProcess(
      bridgeConfig(id, { defaultTopic: events }),
    );

    const hostile = fc.sample(hostilePayload(), { numRuns: 10_000, seed: 42 });
    const valid: CloudEvent[] = [];
    const publications: Publication[] = [];
    hostile.forEach((payload, i) => {
      publications.push({ topic: `${id}/fuzz`, payload });
      if (i % 10 === 0) {
        const event = createCloudEvent({
          source: "/fuzz/valid",
          type: "dev.dataexchange.valid",
          data: { i },
        });
        valid.push(event);
        publications.push({
          topic: `${id}/valid`,
          payload: serializeStructured(event),
        });
      }
    });
    await publishAll(brokers!.mqttUrl, publications);

    const topics = [events, deadLetterTopic];
    await createTopics(brokers!.kafkaBrokers, topics);
    const records = await readTopics(brokers!.kafkaBrokers, topics, {
      until: (read) => read.length >= publications.length,
      timeoutMs: 120_000,
    });
    const stats = await bridge.stop();
    assert.equal(stats.received, publications.length);
    assert.equal(stats.failed, 0);
    assert.equal(records.length, publications.length, "one record each");
    assert.equal(stats.delivered + stats.deadLettered, publications.length);

    const arrived = new Set(
      records.filter((r) =>
        r.topic === events && header(r.message, "ce_source") === "/fuzz/valid"
      ).map((r) => header(r.message, "ce_id")),
    );
    for (const event of valid) {
      assert.ok(arrived.has(event.id), `valid event ${event.id} arrived`);
    }
    // Every dead letter names a reason the bridge knows.
    for (const r of records.filter((r) => r.topic === deadLetterTopic)) {
      assert.match(header(r.message, "dx-error") ?? "", /^[a-z-]+$/);
    }
    console.log(
      `fuzz through the bridge: ${publications.length} messages, ${stats.delivered} routed, ${stats.deadLettered} dead-lettered`,
    );
  },
});

Deno.test({
  name:
    "Kafka to MQTT dead-letters tombstones and broken headers, and publishes the events around them",
  ignore: brokers === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const id = uniqueName("k2m-hostile");
    const commands = `${id}.commands`;
    const deadLetterTopic = `${id}.dlq`;
    await createTopics(brokers!.kafkaBrokers, [commands, deadLetterTopic]);

    const received: CloudEvent[] = [];
    let allReceived!: () => void;
    const gotAll = new Promise<void>((resolve) => allReceived = resolve);
    const subscriber = await mqtt.connectAsync(brokers!.mqttUrl, {
      clientId: uniqueName("device"),
      protocolVersion: 5,
    });
    await subscriber.subscribeAsync(`${id}/out/#`, { qos: 1 });
    subscriber.on("message", (topic, payload, packet) => {
      received.push(
        fromMqttMessage({ topic, payload, properties: packet.properties }),
      );
      if (received.length === goods.length) allReceived();
    });
    const bridge = await startBridgeInProcess(bridgeConfig(id, {
      // Not the route's output topics: what it publishes must not come back.
      mqtt: {
        url: brokers!.mqttUrl,
        topics: [`${id}/unused/#`],
        clientId: `${id}-bridge`,
      },
      kafkaToMqtt: [{
        topics: [commands],
        mqttTopic: `${id}/out/{subject}`,
        fromBeginning: true,
      }],
      log: { level: "error" },
    }));

    const good = (n: number, data: unknown = { n }) =>
      createCloudEvent({
        source: "/k2m",
        type: "dev.dataexchange.command",
        subject: `s${n}`,
        data,
      });
    // The third carries an image: it must reach MQTT byte for byte.
    const goods = [good(0), good(1), good(2, PNG)];
    const asBuffers = (record: ReturnType<typeof toKafkaRecord>) => ({
      key: record.key ? Buffer.from(record.key) : null,
      value: record.value ? Buffer.from(record.value) : null,
      headers: Object.fromEntries(
        Object.entries(record.headers).map(([k, v]) => [k, Buffer.from(v)]),
      ),
    });
    const base = asBuffers(toKafkaRecord(good(9)));
    const hostile: Array<{ name: string; code: string; message: unknown }> = [
      {
        name: "tombstone",
        code: "empty-payload",
        message: { key: "k", value: null },
      },
      {
        name: "header-not-utf8",
        code: "invalid-encoding",
        message: {
          ...base,
          headers: { ...base.headers, ce_region: Buffer.from([0xff, 0xfe]) },
        },
      },
      {
        name: "header-name-uppercase",
        code: "invalid-extension-name",
        message: { ...base, headers: { ...base.headers, ce_Region: "eu" } },
      },
    ];
    const producer = new Kafka({
      clientId: uniqueName("producer"),
      brokers: [...brokers!.kafkaBrokers],
      logLevel: logLevel.NOTHING,
    }).producer();
    await producer.connect();
    await producer.send({
      topic: commands,
      messages: [
        asBuffers(toKafkaRecord(goods[0])),
        ...hostile.slice(0, 2).map((h) => h.message as never),
        mixedCaseContentType(asBuffers(toKafkaRecord(goods[1]))),
        hostile[2].message as never,
        asBuffers(toKafkaRecord(goods[2])),
      ],
    });
    await producer.disconnect();

    const dead = await readTopics(brokers!.kafkaBrokers, [deadLetterTopic], {
      until: (read) => read.length >= hostile.length,
    });
    await withDeadline(gotAll, 30_000, "3 events on MQTT");
    await bridge.stop();
    await subscriber.endAsync();

    assert.deepEqual(
      received.map((e) => e.id).sort(),
      goods.map((e) => e.id).sort(),
    );
    const image = received.find((e) => e.id === goods[2].id)!;
    assert.equal(image.datacontenttype, "application/octet-stream");
    assert.deepEqual(new Uint8Array(image.data as Uint8Array), PNG);
    assert.deepEqual(
      dead.map((r) => header(r.message, "dx-error")),
      hostile.map((h) => h.code),
    );
  },
});

/** The same record with its content type under the header name `Content-Type`. */
function mixedCaseContentType<T extends { headers: Record<string, Buffer> }>(
  record: T,
): T {
  const headers: Record<string, Buffer> = {};
  for (const [name, value] of Object.entries(record.headers)) {
    headers[name === "content-type" ? "Content-Type" : name] = value;
  }
  return { ...record, headers };
}

/** Resolves with `promise`, or fails after `ms` saying what it waited for. */
function withDeadline<T>(promise: Promise<T>, ms: number, what: string) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)),
      ms,
    );
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
