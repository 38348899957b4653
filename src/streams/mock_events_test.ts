import assert from "node:assert/strict";
import fc from "fast-check";
import {
  fromMqttMessage,
  isCloudEventError,
  parseStructured,
  serializeStructured,
} from "../cloudevents/mod.ts";
import {
  MALFORMED_DEFECTS,
  type MalformedDefect,
  type MockCloudEventItem,
  mockCloudEvents,
  type MockCloudEventsOptions,
} from "./mock_events.ts";

function take(
  options: MockCloudEventsOptions,
  count: number,
): MockCloudEventItem[] {
  return [...mockCloudEvents({ ...options, count })];
}

/** Decodes like the bridge does, and returns the error code or "event". */
function decode(payload: Uint8Array, protocolVersion: 4 | 5): string {
  try {
    fromMqttMessage({ topic: "mock/1", payload }, { protocolVersion });
    return "event";
  } catch (error) {
    if (!isCloudEventError(error)) throw error;
    return error.code;
  }
}

Deno.test("mockCloudEvents() gives the same items for the same seed", () => {
  const options = { seed: 1234, malformedRatio: 0.3 };
  const a = take(options, 300);
  const b = take(options, 300);
  assert.deepEqual(a, b);
  const other = take({ ...options, seed: 1235 }, 300);
  assert.notDeepEqual(
    a.map((item) => item.payload.length),
    other.map((item) => item.payload.length),
  );
});

Deno.test("mockCloudEvents() malformed payloads fail to decode with their stated reason", () => {
  const items = take({ seed: 5, malformedRatio: 0.5 }, 2000);
  const defects = new Set<MalformedDefect>();
  for (const item of items) {
    if (item.kind !== "malformed") continue;
    defects.add(item.defect);
    assert.equal(item.reason, MALFORMED_DEFECTS[item.defect]);
    assert.equal(decode(item.payload, 5), item.reason, item.defect);
    assert.equal(decode(item.payload, 4), item.reason, item.defect);
  }
  assert.deepEqual(
    [...defects].sort(),
    Object.keys(MALFORMED_DEFECTS).sort(),
    "every defect appears",
  );
});

Deno.test("mockCloudEvents() event payloads decode to their event", () => {
  for (const item of take({ seed: 9, malformedRatio: 0.2 }, 500)) {
    if (item.kind !== "event") continue;
    assert.deepEqual(parseStructured(item.payload), item.event);
    assert.deepEqual(
      fromMqttMessage({ topic: "mock/1", payload: item.payload }),
      item.event,
    );
    assert.deepEqual(item.payload, serializeStructured(item.event));
  }
});

Deno.test("mockCloudEvents() numbers the events and spaces them one second apart", () => {
  const items = take({ seed: 3 }, 5);
  assert.deepEqual(
    items.map((item) => item.kind === "event" && item.event.id),
    ["mock-3-0", "mock-3-1", "mock-3-2", "mock-3-3", "mock-3-4"],
  );
  assert.deepEqual(
    items.map((item) => item.kind === "event" && item.event.time),
    [0, 1, 2, 3, 4].map((s) => `2025-01-01T00:00:0${s}.000Z`),
  );
  for (const [n, item] of items.entries()) {
    assert.ok(item.kind === "event");
    assert.equal((item.event.data as { seq: number }).seq, n);
  }
});

Deno.test("mockCloudEvents() pads events to the drawn size", () => {
  const sizes = { min: 300, max: 5000 };
  const items = take({ seed: 11, sizes, malformedRatio: 0.3 }, 1000);
  for (const item of items) {
    const length = item.payload.length;
    if (item.kind === "event") {
      assert.ok(length >= sizes.min && length <= sizes.max, `${length}`);
    } else {
      assert.ok(length >= sizes.min - 30 && length <= sizes.max + 30);
    }
  }
  const exact = take({ seed: 2, sizes: { min: 777, max: 777 } }, 50);
  assert.ok(exact.every((item) => item.payload.length === 777));
});

Deno.test("mockCloudEvents() with exactSizes makes every payload, malformed ones too, exactly its size", () => {
  for (const size of [256, 1000, 4096]) {
    const items = take({
      seed: size,
      sizes: { min: size, max: size },
      exactSizes: true,
      malformedRatio: 0.5,
      source: "/b",
      type: "t",
    }, 700);
    const defects = new Set<string>();
    for (const item of items) {
      assert.equal(item.payload.length, size, `${item.kind} at ${size}`);
      if (item.kind === "malformed") {
        defects.add(item.defect);
        assert.equal(decode(item.payload, 5), item.reason, item.defect);
      } else {
        assert.deepEqual(parseStructured(item.payload), item.event);
      }
    }
    assert.equal(defects.size, Object.keys(MALFORMED_DEFECTS).length);
  }
  const ranged = take({
    seed: 5,
    sizes: { min: 300, max: 9000 },
    exactSizes: true,
    malformedRatio: 0.3,
  }, 300);
  const drawn = take({ seed: 5, sizes: { min: 300, max: 9000 } }, 300);
  ranged.forEach((item, n) => {
    if (item.kind === "event") assert.deepEqual(item, drawn[n]);
    else {assert.ok(
        Math.abs(item.payload.length - drawn[n].payload.length) <= 30,
      );}
  });
});

Deno.test("mockCloudEvents() with exactSizes throws for an item that cannot be that small", () => {
  const items = mockCloudEvents({
    seed: 1,
    sizes: { min: 100, max: 100 },
    exactSizes: true,
  });
  assert.throws(() => items.next(), {
    name: "RangeError",
    message: /item 0 needs \d+ bytes, more than its size 100/,
  });
  // Without it, the event comes out larger than its size.
  const [loose] = take({ seed: 1, sizes: { min: 100, max: 100 } }, 1);
  assert.ok(loose.payload.length > 100);
});

Deno.test("mockCloudEvents() takes ids and extensions, in events and malformed payloads", () => {
  const items = take({
    seed: 12,
    malformedRatio: 0.5,
    id: (index) => `device-7/${index}`,
    extensions: { tenant: "acme", firmware: 42, calibrated: true },
  }, 200);
  for (const [n, item] of items.entries()) {
    if (item.kind === "event") {
      assert.equal(item.event.id, `device-7/${n}`);
      assert.equal(item.event.tenant, "acme");
      assert.equal(item.event.firmware, 42);
      assert.equal(item.event.calibrated, true);
    } else if (item.defect === "specversion-0.3") {
      const json = JSON.parse(new TextDecoder().decode(item.payload));
      assert.equal(json.id, `device-7/${n}`);
      assert.equal(json.tenant, "acme");
    }
  }
  const defaults = take({ seed: 12, malformedRatio: 0.5 }, 200);
  assert.deepEqual(
    items.map((item) => item.kind),
    defaults.map((item) => item.kind),
    "the options change no draw",
  );
});

Deno.test("mockCloudEvents() throws from next() when id gives an invalid id", () => {
  const items = mockCloudEvents({ seed: 1, id: () => "" });
  assert.throws(() => items.next(), {
    name: "RangeError",
    message: /option id gave an invalid id for item 0/,
  });
});

Deno.test("mockCloudEvents() never pads below what an event needs", () => {
  const items = take({ seed: 4, sizes: { min: 0, max: 0 } }, 20);
  for (const item of items) {
    assert.ok(item.kind === "event");
    const data = item.event.data as { padding: string };
    assert.equal(data.padding, "");
    assert.ok(item.payload.length < 300);
  }
});

Deno.test("mockCloudEvents() draws classifications by weight, none meaning no attribute", () => {
  const counts = new Map<string, number>();
  const items = take({
    seed: 21,
    classifications: { telemetry: 3, alert: 0, none: 1 },
  }, 4000);
  for (const item of items) {
    assert.ok(item.kind === "event");
    const has = Object.hasOwn(item.event, "classification");
    const name = has ? String(item.event.classification) : "(absent)";
    counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  assert.deepEqual([...counts.keys()].sort(), ["(absent)", "telemetry"]);
  const share = counts.get("telemetry")! / items.length;
  assert.ok(share > 0.72 && share < 0.78, `telemetry share ${share}`);
});

Deno.test("mockCloudEvents() mixes in malformed items at the given ratio", () => {
  const share = (ratio: number) =>
    take({ seed: 8, malformedRatio: ratio }, 4000)
      .filter((item) => item.kind === "malformed").length / 4000;
  assert.equal(share(0), 0);
  assert.equal(share(1), 1);
  const quarter = share(0.25);
  assert.ok(quarter > 0.22 && quarter < 0.28, `share ${quarter}`);
});

Deno.test("mockCloudEvents() goes on without a count", () => {
  const items = mockCloudEvents({ seed: 6, sizes: { min: 0, max: 0 } });
  for (let n = 0; n < 10_000; n++) assert.equal(items.next().done, false);
  items.return();
  assert.equal(items.next().done, true);
});

Deno.test("mockCloudEvents() keeps its draws aligned whatever the kinds (property)", () => {
  fc.assert(
    fc.property(
      fc.integer(),
      fc.double({ min: 0, max: 1, noNaN: true }),
      (seed, ratio) => {
        const mixed = take({ seed, malformedRatio: ratio }, 40);
        const plain = take({ seed, malformedRatio: 0 }, 40);
        mixed.forEach((item, n) => {
          const code = decode(item.payload, 5);
          if (item.kind === "event") {
            assert.equal(code, "event");
            assert.deepEqual(item, plain[n], "events do not depend on ratio");
          } else {
            assert.equal(code, item.reason);
          }
        });
      },
    ),
    { numRuns: 50 },
  );
});

Deno.test("mockCloudEvents() validates its options", () => {
  const cases: [unknown, string, RegExp][] = [
    [null, "TypeError", /expects an options object; got null/],
    [{}, "TypeError", /seed must be a number; got nothing/],
    [{ seed: 1.5 }, "RangeError", /seed must be a safe integer; got 1.5/],
    [
      { seed: 1, classifications: [] },
      "RangeError",
      /positive, finite sum; got 0/,
    ],
    [
      { seed: 1, classifications: { a: -1 } },
      "RangeError",
      /classifications.a must be a finite weight from 0; got -1/,
    ],
    [
      { seed: 1, classifications: { "line\nbreak": 1 } },
      "RangeError",
      /make invalid events: .*"classification"/,
    ],
    [{ seed: 1, source: "" }, "RangeError", /make invalid events: .*"source"/],
    [{ seed: 1, type: 5 }, "TypeError", /type must be a string; got 5/],
    [
      { seed: 1, sizes: { min: 10, max: 5 } },
      "RangeError",
      /0 <= min <= max <= 268435455; got min 10, max 5/,
    ],
    [
      { seed: 1, sizes: { min: 1 } },
      "TypeError",
      /min and max; got 1 and nothing/,
    ],
    [{ seed: 1, malformedRatio: 1.5 }, "RangeError", /from 0 to 1; got 1.5/],
    [
      { seed: 1, exactSizes: "yes" },
      "TypeError",
      /exactSizes must be a boolean; got "yes"/,
    ],
    [{ seed: 1, id: "x" }, "TypeError", /id must be a function of the index/],
    [
      { seed: 1, extensions: [] },
      "TypeError",
      /extensions must be an object of attributes; got an array/,
    ],
    [
      { seed: 1, extensions: { classification: "alert" } },
      "RangeError",
      /must not set classification/,
    ],
    [
      { seed: 1, extensions: { "Bad-Name": "x" } },
      "RangeError",
      /make invalid events: .*Bad-Name/,
    ],
    [
      { seed: 1, count: -2 },
      "RangeError",
      /count must be an integer from 0; got -2/,
    ],
  ];
  for (const [options, name, message] of cases) {
    assert.throws(
      () => mockCloudEvents(options as MockCloudEventsOptions),
      { name, message },
      JSON.stringify(options),
    );
  }
});
