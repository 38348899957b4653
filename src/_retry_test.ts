import assert from "node:assert/strict";
import FakeTimers from "@sinonjs/fake-timers";
import { abortableDelay, type RetryEvent, retryWithBackoff } from "./_retry.ts";

function fakeClock() {
  return FakeTimers.withGlobal(globalThis).install({
    toFake: ["setTimeout", "clearTimeout", "Date"],
  });
}

Deno.test("retryWithBackoff() retries until the operation succeeds", async () => {
  const clock = fakeClock();
  try {
    const events: RetryEvent[] = [];
    const result = retryWithBackoff((attempt) => {
      if (attempt < 3) return Promise.reject(new Error(`failure ${attempt}`));
      return Promise.resolve("done");
    }, {
      initialDelayMs: 100,
      maxDelayMs: 1000,
      onRetry: (e) => events.push(e),
    });
    await clock.runAllAsync();
    assert.equal(await result, "done");
    assert.deepEqual(events.map((e) => e.attempt), [1, 2, 3]);
    assert.deepEqual(
      events.map((e) => (e.error as Error).message),
      ["failure 0", "failure 1", "failure 2"],
    );
    // Full jitter: each delay lies between 0 and the exponential bound.
    events.forEach((e, i) => {
      assert.ok(
        e.delayMs >= 0 && e.delayMs <= Math.min(1000, 100 * 2 ** (i + 1)),
      );
    });
  } finally {
    clock.uninstall();
  }
});

Deno.test("retryWithBackoff() stops waiting as soon as the signal aborts", async () => {
  const clock = fakeClock();
  try {
    const controller = new AbortController();
    let calls = 0;
    const result = retryWithBackoff(() => {
      calls++;
      return Promise.reject(new Error("down"));
    }, {
      signal: controller.signal,
      initialDelayMs: 60_000,
      maxDelayMs: 60_000,
      onRetry: () => controller.abort(new Error("shutting down")),
    });
    await assert.rejects(result, { message: "shutting down" });
    assert.equal(calls, 1);
    assert.equal(clock.countTimers(), 0, "the delay's timer is cleared");
  } finally {
    clock.uninstall();
  }
});

Deno.test("retryWithBackoff() gives up on errors it must not retry", async () => {
  let calls = 0;
  const fatal = new Error("record too large");
  await assert.rejects(
    retryWithBackoff(() => {
      calls++;
      return Promise.reject(fatal);
    }, { shouldRetry: (error) => error !== fatal }),
    (error) => error === fatal,
  );
  assert.equal(calls, 1);
});

Deno.test("retryWithBackoff() stops after maxAttempts with the last error", async () => {
  const clock = fakeClock();
  try {
    let calls = 0;
    const result = retryWithBackoff(() => {
      calls++;
      return Promise.reject(new Error(`attempt ${calls}`));
    }, { maxAttempts: 3 });
    const rejected = assert.rejects(result, { message: "attempt 3" });
    await clock.runAllAsync();
    await rejected;
    assert.equal(calls, 3);
  } finally {
    clock.uninstall();
  }
});

Deno.test("abortableDelay() rejects at once for an aborted signal", async () => {
  const reason = new Error("already stopped");
  await assert.rejects(abortableDelay(1000, AbortSignal.abort(reason)), reason);
});
