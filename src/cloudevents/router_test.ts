import { deepStrictEqual, equal, match, ok, throws } from "node:assert/strict";
import fc from "fast-check";
import type { CloudEvent } from "./event.ts";
import {
  createRouter,
  deadLetterRecord,
  isKafkaTopicName,
  MAX_ERROR_DETAIL_CHARS,
  type RouterOptions,
} from "./router.ts";

const decoder = new TextDecoder();
const HEAD = { specversion: "1.0", id: "1", source: "/s", type: "t" } as const;
const OPTIONS: RouterOptions = {
  routes: { telemetry: "dx.telemetry", alarm: "dx.alarms" },
  defaultTopic: "dx.other",
  deadLetterTopic: "dx.dead-letter",
};

function withClassification(classification: unknown): CloudEvent {
  return { ...HEAD, classification };
}

Deno.test("route() sends a configured classification to its topic", () => {
  const router = createRouter(OPTIONS);
  deepStrictEqual(router.route(withClassification("telemetry")), {
    topic: "dx.telemetry",
    route: "telemetry",
  });
  deepStrictEqual(router.route(withClassification("alarm")), {
    topic: "dx.alarms",
    route: "alarm",
  });
});

Deno.test("route() sends missing, unknown and non-string classifications to the default topic", () => {
  const router = createRouter(OPTIONS);
  const fallback = { topic: "dx.other", route: "default" };
  deepStrictEqual(router.route(HEAD), fallback);
  for (
    const classification of [
      "unknown",
      "Telemetry",
      "TELEMETRY",
      " telemetry",
      "../x",
      "dx.telemetry",
      "constructor",
      "__proto__",
      "toString",
      "",
      1,
      true,
      ["telemetry"],
      { telemetry: 1 },
      null,
    ]
  ) {
    deepStrictEqual(
      router.route(withClassification(classification)),
      fallback,
      String(classification),
    );
  }
});

Deno.test("route() only ever returns configured topics and route labels", () => {
  const router = createRouter(OPTIONS);
  const labels = new Set(["telemetry", "alarm", "default"]);
  fc.assert(
    fc.property(
      fc.oneof(fc.string(), fc.anything()),
      (classification: unknown) => {
        const { topic, route } = router.route(
          withClassification(classification),
        );
        ok(router.topics.includes(topic));
        ok(labels.has(route));
        ok(topic !== router.deadLetterTopic);
      },
    ),
  );
});

Deno.test("route() returns the same frozen object for the same route", () => {
  const router = createRouter(OPTIONS);
  const first = router.route(withClassification("alarm"));
  equal(router.route(withClassification("alarm")), first);
  ok(Object.isFrozen(first));
});

Deno.test("createRouter() lists every topic once, dead letters last", () => {
  const router = createRouter({
    routes: { a: "dx.one", b: "dx.one", c: "dx.other" },
    defaultTopic: "dx.other",
    deadLetterTopic: "dx.dlq",
  });
  deepStrictEqual(router.topics, ["dx.other", "dx.one", "dx.dlq"]);
  equal(router.deadLetterTopic, "dx.dlq");
});

Deno.test("createRouter() validates topic names by the Kafka rules", () => {
  for (
    const topic of ["", ".", "..", "a/b", "../x", "a b", "ü", "x".repeat(250)]
  ) {
    const error = throwsError(
      () => createRouter({ ...OPTIONS, defaultTopic: topic }),
      RangeError,
    );
    match(error.message, /defaultTopic/);
    throwsError(
      () => createRouter({ ...OPTIONS, routes: { a: topic } }),
      RangeError,
    );
    throwsError(
      () => createRouter({ ...OPTIONS, deadLetterTopic: topic }),
      RangeError,
    );
  }
  ok(createRouter({ ...OPTIONS, defaultTopic: "x".repeat(249) }));
  ok(createRouter({ ...OPTIONS, defaultTopic: "A-z_0.9" }));
  throwsError(
    () => createRouter({ ...OPTIONS, defaultTopic: 5 as unknown as string }),
    TypeError,
  );
  throwsError(
    () =>
      createRouter({ ...OPTIONS, routes: { a: null as unknown as string } }),
    TypeError,
  );
  throwsError(
    () =>
      createRouter({
        ...OPTIONS,
        routes: null as unknown as Record<string, string>,
      }),
    TypeError,
  );
  throwsError(
    () => createRouter(undefined as unknown as RouterOptions),
    TypeError,
  );
});

Deno.test("createRouter() says what was given", () => {
  const error = throwsError(
    () => createRouter({ ...OPTIONS, routes: { a: "../x" } }),
    RangeError,
  );
  match(error.message, /routes\["a"\]/);
  match(error.message, /"\.\.\/x"/);
});

Deno.test("createRouter() refuses the route keys default and empty, and a shared dead-letter topic", () => {
  throwsError(
    () => createRouter({ ...OPTIONS, routes: { default: "dx.x" } }),
    RangeError,
  );
  throwsError(
    () => createRouter({ ...OPTIONS, routes: { "": "dx.x" } }),
    RangeError,
  );
  throwsError(
    () => createRouter({ ...OPTIONS, deadLetterTopic: "dx.other" }),
    RangeError,
  );
  throwsError(
    () => createRouter({ ...OPTIONS, deadLetterTopic: "dx.alarms" }),
    RangeError,
  );
});

Deno.test("isKafkaTopicName() follows the Kafka rules", () => {
  ok(isKafkaTopicName("dx.telemetry_v2-eu"));
  equal(isKafkaTopicName("dx/telemetry"), false);
});

Deno.test("deadLetterRecord() keeps the payload bytes unchanged", () => {
  const payload = new Uint8Array([0xff, 0x00, 0x7b, 0xfe]);
  const copy = payload.slice();
  const record = deadLetterRecord({
    payload,
    error: {
      code: "invalid-encoding",
      message: "The payload is not valid UTF-8",
    },
    mqttTopic: "sensors/42",
    headers: { "dx-source-partition": "3" },
  });
  equal(record.value, payload);
  deepStrictEqual(payload, copy);
  equal(record.key, null);
  const headers = Object.fromEntries(
    Object.entries(record.headers).map((
      [name, value],
    ) => [name, decoder.decode(value)]),
  );
  deepStrictEqual(headers, {
    "dx-source-partition": "3",
    "dx-error": "invalid-encoding",
    "dx-error-detail": "The payload is not valid UTF-8",
    "dx-mqtt-topic": "sensors/42",
  });
});

Deno.test("deadLetterRecord() caps the detail and lets dx- headers win", () => {
  const record = deadLetterRecord({
    payload: new Uint8Array(0),
    error: { code: "c", message: "😀".repeat(MAX_ERROR_DETAIL_CHARS) },
    headers: { "dx-error": "forged" },
  });
  const detail = decoder.decode(record.headers["dx-error-detail"]);
  ok(detail.length <= MAX_ERROR_DETAIL_CHARS);
  ok(detail.endsWith("…"));
  ok(!detail.includes("\ufffd"));
  equal(decoder.decode(record.headers["dx-error"]), "c");
  equal(record.headers["dx-mqtt-topic"], undefined);
});

Deno.test("deadLetterRecord() checks its input", () => {
  const error = { code: "c", message: "m" };
  throwsError(
    () => deadLetterRecord({ payload: "x" as unknown as Uint8Array, error }),
    TypeError,
  );
  throwsError(
    () =>
      deadLetterRecord({
        payload: new Uint8Array(0),
        error: { code: 1 } as unknown as typeof error,
      }),
    TypeError,
  );
  throwsError(
    () =>
      deadLetterRecord({
        payload: new Uint8Array(0),
        error,
        headers: { a: 1 as unknown as string },
      }),
    TypeError,
  );
  throwsError(
    () =>
      deadLetterRecord({
        payload: new Uint8Array(0),
        error,
        mqttTopic: 1 as unknown as string,
      }),
    TypeError,
  );
});

function throwsError<E extends Error>(
  fn: () => unknown,
  type: new (...args: never[]) => E,
): E {
  let caught: unknown;
  throws(() => {
    try {
      fn();
    } catch (error) {
      caught = error;
      throw error;
    }
  }, type);
  return caught as E;
}
