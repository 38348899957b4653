import assert from "node:assert/strict";
import { drainingSink } from "./draining.ts";
import { testEvent } from "./_test_helpers.ts";

Deno.test("drainingSink() counts events and keeps none by default", async () => {
  const sink = drainingSink();
  for (let n = 0; n < 5; n++) await sink.write(testEvent(n));
  assert.equal(sink.count, 5);
  assert.deepEqual(sink.events, []);
});

Deno.test("drainingSink() keeps the last `keep` events, dropping the oldest", async () => {
  const sink = drainingSink({ keep: 2 });
  for (let n = 0; n < 5; n++) await sink.write(testEvent(n));
  assert.equal(sink.count, 5);
  assert.deepEqual(sink.events.map((event) => event.id), ["e3", "e4"]);
});

Deno.test("drainingSink() rejects writes after close with sink-closed", async () => {
  const sink = drainingSink();
  await sink.close();
  await assert.rejects(sink.write(testEvent(1)), {
    code: "sink-closed",
    retriable: true,
  });
  assert.equal(sink.count, 0);
});

Deno.test("drainingSink() refuses a keep that is not a non-negative integer", () => {
  for (const keep of [-1, 1.5, NaN]) {
    assert.throws(() => drainingSink({ keep }), {
      name: "RangeError",
      message: new RegExp(`got ${keep}`),
    });
  }
});
