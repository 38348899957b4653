import assert from "node:assert/strict";
import FakeTimers from "@sinonjs/fake-timers";
import { mockSource } from "./mock_source.ts";

function fakeClock() {
  return FakeTimers.withGlobal(globalThis).install({
    toFake: ["setTimeout", "clearTimeout", "Date"],
  });
}

/** Tracks whether a promise has settled, for checks between clock ticks. */
function watch<T>(promise: Promise<T>): { settled: boolean } {
  const state = { settled: false };
  promise.then(() => state.settled = true, () => state.settled = true);
  return state;
}

Deno.test("mockSource() yields the first item after one interval, not at once", async () => {
  const clock = fakeClock();
  try {
    const source = mockSource({ intervalMs: 100 });
    const first = source.next();
    const state = watch(first);
    await clock.tickAsync(99);
    assert.equal(state.settled, false);
    await clock.tickAsync(1);
    assert.deepEqual(await first, { done: false, value: 0 });
    assert.equal(Date.now(), 100);
    await source.return();
    assert.equal(clock.countTimers(), 0);
  } finally {
    clock.uninstall();
  }
});

Deno.test("mockSource() does not drift over 1,000 ticks with a consumer that takes time", async () => {
  const clock = fakeClock();
  try {
    const start = Date.now();
    const times: number[] = [];
    const consumer = (async () => {
      for await (const _ of mockSource({ intervalMs: 10, count: 1000 })) {
        times.push(Date.now() - start);
        // 7 ms of work per item: a source that waited a full interval after
        // each read would fall 7 ms further behind every time.
        await new Promise((resolve) => setTimeout(resolve, 7));
      }
    })();
    // The last item comes at 10,000 ms; its work ends at 10,007.
    await clock.tickAsync(10_007);
    await consumer;
    assert.equal(times.length, 1000);
    times.forEach((time, n) => assert.equal(time, (n + 1) * 10));
    assert.equal(clock.countTimers(), 0);
  } finally {
    clock.uninstall();
  }
});

Deno.test("mockSource() ends after count items, with values from value()", async () => {
  const clock = fakeClock();
  try {
    const seen: string[] = [];
    const consumer = (async () => {
      const source = mockSource({
        intervalMs: 5,
        count: 3,
        value: (index) => `item-${index}`,
      });
      for await (const item of source) seen.push(item);
    })();
    await clock.tickAsync(15);
    await consumer;
    assert.deepEqual(seen, ["item-0", "item-1", "item-2"]);
    assert.equal(Date.now(), 15);
    assert.equal(clock.countTimers(), 0);
  } finally {
    clock.uninstall();
  }
});

Deno.test("mockSource() with count 0 ends at once", async () => {
  const clock = fakeClock();
  try {
    const source = mockSource({ intervalMs: 5, count: 0 });
    assert.deepEqual(await source.next(), { done: true, value: undefined });
    assert.equal(clock.countTimers(), 0);
  } finally {
    clock.uninstall();
  }
});

Deno.test("mockSource() ends normally when the signal aborts mid-wait, and clears its timer", async () => {
  const clock = fakeClock();
  try {
    const controller = new AbortController();
    const source = mockSource({ intervalMs: 1000, signal: controller.signal });
    const first = source.next();
    await clock.tickAsync(400);
    assert.equal(clock.countTimers(), 1);
    controller.abort(new Error("shutdown"));
    assert.deepEqual(await first, { done: true, value: undefined });
    assert.equal(clock.countTimers(), 0);
    assert.equal(Date.now(), 400, "ended at the abort, not at the tick");
    assert.deepEqual(await source.next(), { done: true, value: undefined });
  } finally {
    clock.uninstall();
  }
});

Deno.test("mockSource() with an aborted signal yields nothing", async () => {
  const clock = fakeClock();
  try {
    const source = mockSource({ intervalMs: 10, signal: AbortSignal.abort() });
    assert.deepEqual(await source.next(), { done: true, value: undefined });
    assert.equal(clock.countTimers(), 0);
  } finally {
    clock.uninstall();
  }
});

Deno.test("mockSource() answers a late read at once and drops missed ticks", async () => {
  const clock = fakeClock();
  try {
    const source = mockSource({ intervalMs: 10 });
    const times: number[] = [];
    // Reads one item, moving the clock 1 ms at a time until it comes.
    const read = async () => {
      const result = source.next();
      const state = watch(result);
      await clock.tickAsync(0);
      for (let waited = 0; !state.settled; waited++) {
        assert.ok(waited < 100, "an item comes within 100 ms");
        await clock.tickAsync(1);
      }
      await result;
      times.push(Date.now());
    };
    await read(); // tick 1, at 10
    await clock.tickAsync(35); // away until 45: ticks 2, 3 and 4 pass
    await read(); // late: answered at once, at 45
    await read(); // the first tick after 45: 50
    await clock.tickAsync(5); // 55: late by less than an interval
    await read(); // tick 6 was due at 60: waits for it
    await clock.tickAsync(12); // 72: tick 7 (70) passed
    await read(); // at once, at 72
    await read(); // tick 8, at 80: the grid is kept
    assert.deepEqual(times, [10, 45, 50, 60, 72, 80]);
    await source.return();
    assert.equal(clock.countTimers(), 0);
  } finally {
    clock.uninstall();
  }
});

Deno.test("mockSource() leaves no timer when the consumer breaks", async () => {
  const clock = fakeClock();
  try {
    const consumer = (async () => {
      for await (const index of mockSource({ intervalMs: 10 })) {
        if (index === 2) break;
      }
    })();
    await clock.tickAsync(30);
    await consumer;
    assert.equal(clock.countTimers(), 0);
  } finally {
    clock.uninstall();
  }
});

Deno.test("mockSource() validates its options", () => {
  const cases: [unknown, string, RegExp][] = [
    [undefined, "TypeError", /expects an options object; got nothing/],
    [{ intervalMs: "10" }, "TypeError", /intervalMs must be a number .*"10"/],
    [
      { intervalMs: 0 },
      "RangeError",
      /intervalMs must be a finite number above 0; got 0/,
    ],
    [{ intervalMs: -5 }, "RangeError", /above 0; got -5/],
    [{ intervalMs: NaN }, "RangeError", /above 0; got NaN/],
    [{ intervalMs: Infinity }, "RangeError", /above 0; got Infinity/],
    [
      { intervalMs: 1, count: 1.5 },
      "RangeError",
      /count must be an integer from 0; got 1.5/,
    ],
    [{ intervalMs: 1, count: -1 }, "RangeError", /got -1/],
    [
      { intervalMs: 1, count: "3" },
      "TypeError",
      /count must be a number; got "3"/,
    ],
    [
      { intervalMs: 1, signal: {} },
      "TypeError",
      /signal must be an AbortSignal; got an object/,
    ],
    [
      { intervalMs: 1, value: 3 },
      "TypeError",
      /value must be a function; got 3/,
    ],
  ];
  for (const [options, name, message] of cases) {
    assert.throws(
      () => mockSource(options as { intervalMs: number }),
      { name, message },
    );
  }
});
