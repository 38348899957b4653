/**
 * 100,000 random and mutated messages through the conversion and routing
 * functions, in the order the bridge applies them: every input ends routed to
 * a configured topic or dead-lettered with a reason code, and no exception
 * other than a `CloudEventError` ever escapes.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  applyEdits,
  byteEdit,
  cloudEvent,
  hostileEventJson,
  hostileName,
  hostilePayload,
  hostileValue,
} from "./_test_arbitraries.ts";
import { type CloudEvent, isCloudEventError } from "./event.ts";
import type { CloudEventErrorCode } from "./error.ts";
import {
  fromKafkaRecord,
  type IncomingKafkaRecord,
  type KafkaHeaderValue,
  type KafkaRecord,
  toKafkaRecord,
} from "./kafka.ts";
import { fromMqttMessage, type MqttMessage, toMqttMessage } from "./mqtt.ts";
import { createRouter, deadLetterRecord } from "./router.ts";

const RUNS_PER_PROPERTY = 25_000;

const router = createRouter({
  routes: { telemetry: "dx.telemetry", alerts: "dx.alerts" },
  defaultTopic: "dx.events",
  deadLetterTopic: "dx.deadletter",
});
const EVENT_TOPICS = new Set(
  router.topics.filter((t) => t !== "dx.deadletter"),
);
const encoder = new TextEncoder();

type Outcome =
  | { kind: "routed"; topic: string; route: string; record: KafkaRecord }
  | { kind: "dead-letter"; code: CloudEventErrorCode; record: KafkaRecord };

/** What the bridge does with one message once it has an event or an error. */
function routeOrDeadLetter(
  read: () => CloudEvent,
  payload: Uint8Array,
  mode: "binary" | "structured",
): Outcome {
  let event: CloudEvent;
  try {
    event = read();
  } catch (error) {
    if (!isCloudEventError(error)) throw error;
    return deadLetter(payload, error.code, error.message);
  }
  const { topic, route } = router.route(event);
  let record: KafkaRecord;
  try {
    record = toKafkaRecord(event, { mode });
  } catch (error) {
    if (!isCloudEventError(error)) throw error;
    return deadLetter(payload, error.code, error.message);
  }
  return { kind: "routed", topic, route, record };
}

function deadLetter(
  payload: Uint8Array,
  code: CloudEventErrorCode,
  message: string,
): Outcome {
  const record = deadLetterRecord({
    payload,
    error: { code, message },
    mqttTopic: "fuzz/in",
  });
  return { kind: "dead-letter", code, record };
}

/** The invariants every outcome keeps. */
function check(outcome: Outcome, payload: Uint8Array): void {
  if (outcome.kind === "dead-letter") {
    assert.deepEqual(outcome.record.value, payload, "payload kept unchanged");
    assert.equal(
      new TextDecoder().decode(outcome.record.headers["dx-error"]),
      outcome.code,
    );
    return;
  }
  assert.ok(EVENT_TOPICS.has(outcome.topic), `unknown topic ${outcome.topic}`);
  assert.ok(
    outcome.route === "default" || outcome.route === "telemetry" ||
      outcome.route === "alerts",
    `route label ${outcome.route}`,
  );
  // What the bridge writes, Kafka consumers can read back as an event.
  const back = fromKafkaRecord(outcome.record);
  assert.equal(typeof back.id, "string");
}

const validEvent = cloudEvent({ fittingData: false });

Deno.test("fuzz: random and mutated MQTT payloads are routed or dead-lettered", () => {
  fc.assert(
    fc.property(
      hostilePayload(),
      fc.constantFrom<4 | 5>(4, 5),
      (payload, protocolVersion) => {
        const outcome = routeOrDeadLetter(
          () =>
            fromMqttMessage({ topic: "fuzz/in", payload }, { protocolVersion }),
          payload,
          "binary",
        );
        check(outcome, payload);
      },
    ),
    { numRuns: RUNS_PER_PROPERTY },
  );
});

Deno.test("fuzz: byte-mutated structured events are routed or dead-lettered", () => {
  fc.assert(
    fc.property(
      validEvent,
      fc.array(byteEdit, { minLength: 0, maxLength: 4 }),
      fc.constantFrom<"binary" | "structured">("binary", "structured"),
      (event, edits, mode) => {
        let serialized: Uint8Array;
        try {
          serialized = toMqttMessage(event, "fuzz/in").payload;
        } catch (error) {
          // Data that does not fit its content type is refused on the way
          // out, with a code, before it reaches a broker.
          assert.ok(isCloudEventError(error), String(error));
          return;
        }
        const payload = applyEdits(serialized, edits);
        const outcome = routeOrDeadLetter(
          () => fromMqttMessage({ topic: "fuzz/in", payload }),
          payload,
          mode,
        );
        check(outcome, payload);
        if (edits.length === 0) assert.equal(outcome.kind, "routed");
      },
    ),
    { numRuns: RUNS_PER_PROPERTY },
  );
});

Deno.test("fuzz: events with hostile attributes are routed or dead-lettered", () => {
  fc.assert(
    fc.property(
      hostileEventJson(),
      (json) => {
        const payload = encoder.encode(JSON.stringify(json));
        const outcome = routeOrDeadLetter(
          () => fromMqttMessage({ topic: "fuzz/in", payload }),
          payload,
          "binary",
        );
        check(outcome, payload);
        if (outcome.kind === "routed") {
          const classification = JSON.parse(new TextDecoder().decode(payload))
            .classification;
          // Only an exact route key picks a route topic.
          assert.equal(
            outcome.route,
            classification === "telemetry" || classification === "alerts"
              ? classification
              : "default",
          );
        }
      },
    ),
    { numRuns: RUNS_PER_PROPERTY },
  );
});

const headerValue: fc.Arbitrary<KafkaHeaderValue> = fc.oneof(
  hostileValue.map((v) => typeof v === "string" ? v : JSON.stringify(v) ?? ""),
  fc.uint8Array({ maxLength: 16 }),
  fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 }),
  fc.constant(undefined),
);

Deno.test("fuzz: binary-mode MQTT messages and Kafka records with hostile headers are routed or dead-lettered", () => {
  fc.assert(
    fc.property(
      validEvent,
      fc.array(fc.tuple(hostileName, headerValue), { maxLength: 4 }),
      fc.option(fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.constant(null)), {
        nil: undefined,
      }),
      fc.boolean(),
      (event, changes, value, viaKafka) => {
        let record: KafkaRecord;
        try {
          record = toKafkaRecord(event);
        } catch (error) {
          assert.ok(isCloudEventError(error), String(error));
          return;
        }
        const headers: Record<string, KafkaHeaderValue> = { ...record.headers };
        for (const [name, header] of changes) {
          const key = name === "content-type" ? name : `ce_${name}`;
          Object.defineProperty(headers, key, {
            value: header,
            enumerable: true,
            configurable: true,
            writable: true,
          });
        }
        const body = value === undefined ? record.value : value;
        const payload = body ?? new Uint8Array(0);
        if (viaKafka) {
          const incoming: IncomingKafkaRecord = { value: body, headers };
          check(
            routeOrDeadLetter(
              () => fromKafkaRecord(incoming),
              payload,
              "binary",
            ),
            payload,
          );
          return;
        }
        const userProperties: Record<string, string | string[]> = {};
        let contentType: string | undefined;
        for (const [key, header] of Object.entries(headers)) {
          if (header === undefined) continue;
          const text = header instanceof Uint8Array
            ? new TextDecoder().decode(header)
            : header as string | string[];
          if (key === "content-type") {
            contentType = Array.isArray(text) ? text[0] : text;
          } else {
            Object.defineProperty(userProperties, key.slice(3), {
              value: text,
              enumerable: true,
              configurable: true,
              writable: true,
            });
          }
        }
        const message: MqttMessage = {
          topic: "fuzz/in",
          payload,
          properties: { contentType, userProperties },
        };
        check(
          routeOrDeadLetter(() => fromMqttMessage(message), payload, "binary"),
          payload,
        );
      },
    ),
    { numRuns: RUNS_PER_PROPERTY },
  );
});
