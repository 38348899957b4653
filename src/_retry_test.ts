import assert from "node:assert/strict";
import FakeTimers from "@sinonjs/fake-timers";
import { abortableDelay, type RetryEvent, retryWithBackoff } from "./_retry.ts";
import { Prng } from "./streams/_prng.ts";

function fakeClock() {
  return FakeTimers.withGlobal(globalThis).install({
    toFake: ["setTimeout", "clearTimeout", "Date"],
  });
}

/** The largest number below 1 that `Math.random()` can return. */
const TOP_DRAW = 1 - 2 ** -53;

/**
 * The delays `retryWithBackoff` waits before retries 1 to `retries`, on
 * fake time, with `Math.random` (which cockatiel's jitter draws from)
 * replaced by `random`.
 */
async function retryDelays(
  retries: number,
  random: () => number,
  options: { initialDelayMs: number; maxDelayMs: number },
): Promise<number[]> {
  const original = Math.random;
  Math.random = random;
  const clock = fakeClock();
  try {
    const delays: number[] = [];
    const result = retryWithBackoff((attempt) => {
      if (attempt < retries) return Promise.reject(new Error("down"));
      return Promise.resolve();
    }, { ...options, onRetry: (event) => delays.push(event.delayMs) });
    await clock.runAllAsync();
    await result;
    return delays;
  } finally {
    clock.uninstall();
    Math.random = original;
  }
}

/** The bound of retry n (from 1): the first delay bound, doubled n-1 times. */
function bound(n: number, initialDelayMs: number, maxDelayMs: number): number {
  return Math.min(maxDelayMs, initialDelayMs * 2 ** (n - 1));
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
    // Full jitter: each delay lies from 0 up to (not at) the bound.
    events.forEach((e) => {
      assert.ok(
        e.delayMs >= 0 && e.delayMs < bound(e.attempt, 100, 1000),
        `retry ${e.attempt} waited ${e.delayMs} ms`,
      );
    });
  } finally {
    clock.uninstall();
  }
});

Deno.test("retryWithBackoff() waits just under a bound that doubles per retry, up to maxDelayMs, at the top random draw", async () => {
  const options = { initialDelayMs: 100, maxDelayMs: 1000 };
  const delays = await retryDelays(7, () => TOP_DRAW, options);
  // Bounds 100, 200, 400, 800, then 1000: a wrong exponent misses them, and
  // a delay at the bound itself would be a backoff without jitter.
  delays.forEach((delayMs, i) => {
    const limit = bound(i + 1, 100, 1000);
    assert.ok(
      delayMs >= limit - 1 && delayMs < limit,
      `retry ${i + 1} waited ${delayMs} ms; expected just under ${limit}`,
    );
  });
  assert.deepEqual(delays, [99, 199, 399, 799, 999, 999, 999]);
});

Deno.test("retryWithBackoff() does not wait at the lowest random draw", async () => {
  const options = { initialDelayMs: 100, maxDelayMs: 1000 };
  assert.deepEqual(
    await retryDelays(6, () => 0, options),
    [0, 0, 0, 0, 0, 0],
  );
});

Deno.test("retryWithBackoff() spreads each retry's delay evenly below its bound (full jitter)", async () => {
  const prng = new Prng(2024);
  const initialDelayMs = 1000;
  const maxDelayMs = 1_000_000;
  const retries = 5;
  const runs = 200;
  // Delay divided by the retry's bound, per retry.
  const shares: number[][] = Array.from({ length: retries }, () => []);
  for (let run = 0; run < runs; run++) {
    const delays = await retryDelays(retries, () => prng.next(), {
      initialDelayMs,
      maxDelayMs,
    });
    delays.forEach((delayMs, i) => {
      shares[i].push(delayMs / bound(i + 1, initialDelayMs, maxDelayMs));
    });
  }
  shares.forEach((of, i) => {
    const mean = of.reduce((sum, share) => sum + share, 0) / of.length;
    const low = of.filter((share) => share < 0.25).length / of.length;
    const high = of.filter((share) => share >= 0.75).length / of.length;
    const where = `retry ${i + 1}: mean ${mean}, below a quarter ${low}, ` +
      `above three quarters ${high}`;
    assert.ok(of.every((share) => share >= 0 && share < 1), where);
    // Uniform on [0, 1): mean 1/2, a quarter of the draws in each end.
    assert.ok(mean > 0.43 && mean < 0.57, where);
    assert.ok(low > 0.15 && low < 0.35, where);
    assert.ok(high > 0.15 && high < 0.35, where);
  });
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
