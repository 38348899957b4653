import assert from "node:assert/strict";
import FakeTimers from "@sinonjs/fake-timers";
import {
  type BreakerRetryEvent,
  type BreakerStateChange,
  retryThroughBreaker,
  SendBreaker,
} from "./_breaker.ts";

function fakeClock() {
  return FakeTimers.withGlobal(globalThis).install({
    toFake: ["setTimeout", "clearTimeout", "Date"],
  });
}

class Down extends Error {
  override name = "Down";
}
class Refused extends Error {
  override name = "Refused";
}

function breaker(changes: BreakerStateChange[] = []) {
  return new SendBreaker({
    threshold: 3,
    halfOpenAfterMs: 1000,
    counts: (error) => error instanceof Down,
    onStateChange: (change) => changes.push(change),
  });
}

Deno.test("retryThroughBreaker() opens after 3 failures, then probes once per halfOpenAfterMs until Kafka is back", async () => {
  const clock = fakeClock();
  try {
    const changes: BreakerStateChange[] = [];
    const sendBreaker = breaker(changes);
    const calls: number[] = [];
    const retries: BreakerRetryEvent[] = [];
    const backAt = 10_000;
    const result = retryThroughBreaker(sendBreaker, () => {
      calls.push(Date.now());
      return Date.now() >= backAt
        ? Promise.resolve("acked")
        : Promise.reject(new Down("connection refused"));
    }, {
      initialDelayMs: 100,
      maxDelayMs: 30_000,
      onRetry: (event) => retries.push(event),
    });
    await clock.runAllAsync();

    assert.equal(await result, "acked");
    assert.equal(sendBreaker.state, "closed");
    // Closed: three quick attempts with backoff (at most 100 + 200 ms).
    assert.ok(calls[2] <= 300, `third attempt at ${calls[2]} ms`);
    assert.deepEqual(
      retries.slice(0, 3).map((e) => e.breakerState),
      ["closed", "closed", "open"],
    );
    // Open: one probe per second, never more often.
    const probes = calls.slice(3);
    for (let i = 1; i < probes.length; i++) {
      assert.ok(
        probes[i] - probes[i - 1] >= 1000,
        `probes ${probes[i - 1]} and ${probes[i]} are less than 1000 ms apart`,
      );
    }
    assert.ok(probes.length <= (backAt - calls[2]) / 1000 + 1);
    assert.ok(probes.at(-1)! - backAt < 1000, "recovers within one period");
    // Every probe goes through half-open; the last one closes the breaker.
    const states = changes.map((change) => change.state);
    assert.equal(states[0], "open");
    assert.deepEqual(states.slice(-2), ["half-open", "closed"]);
    assert.equal(
      states.filter((state) => state === "half-open").length,
      probes.length,
    );
    assert.ok(changes[0].error instanceof Down);
    assert.equal(changes[0].previous, "closed");
  } finally {
    clock.uninstall();
  }
});

Deno.test("SendBreaker does not count failures it is told not to count", async () => {
  const changes: BreakerStateChange[] = [];
  const sendBreaker = breaker(changes);
  for (let i = 0; i < 10; i++) {
    await assert.rejects(
      sendBreaker.execute(() => Promise.reject(new Refused("too large"))),
      Refused,
    );
  }
  assert.equal(sendBreaker.state, "closed");
  assert.deepEqual(changes, []);
});

Deno.test("retryThroughBreaker() gives up at once on an error it must not retry", async () => {
  let calls = 0;
  const refused = new Refused("too large");
  await assert.rejects(
    retryThroughBreaker(breaker(), () => {
      calls++;
      return Promise.reject(refused);
    }, {
      initialDelayMs: 100,
      maxDelayMs: 1000,
      shouldRetry: (error) => !(error instanceof Refused),
    }),
    (error) => error === refused,
  );
  assert.equal(calls, 1);
});

Deno.test("SendBreaker closes when a half-open probe gets an answer, even a refusal", async () => {
  const clock = fakeClock();
  try {
    const changes: BreakerStateChange[] = [];
    const sendBreaker = breaker(changes);
    for (let i = 0; i < 3; i++) {
      await assert.rejects(
        sendBreaker.execute(() => Promise.reject(new Down("down"))),
      );
    }
    assert.equal(sendBreaker.state, "open");
    assert.equal(sendBreaker.msUntilHalfOpen, 1000);
    const probe = sendBreaker.execute(() =>
      Promise.reject(new Refused("too large"))
    );
    const outcome = assert.rejects(probe, Refused);
    await clock.tickAsync(1000);
    await outcome;
    assert.equal(sendBreaker.state, "closed");
    assert.deepEqual(changes.map((c) => c.state), [
      "open",
      "half-open",
      "closed",
    ]);
  } finally {
    clock.uninstall();
  }
});

Deno.test("retryThroughBreaker() stops waiting for half-open as soon as the signal aborts", async () => {
  const clock = fakeClock();
  try {
    const controller = new AbortController();
    const sendBreaker = breaker();
    let calls = 0;
    const result = retryThroughBreaker(sendBreaker, () => {
      calls++;
      return Promise.reject(new Down("down"));
    }, {
      signal: controller.signal,
      initialDelayMs: 1,
      maxDelayMs: 1,
      onRetry: (event) => {
        if (event.breakerState === "open") {
          controller.abort(new Error("shutting down"));
        }
      },
    });
    const outcome = assert.rejects(result, { message: "shutting down" });
    await clock.tickAsync(10);
    await outcome;
    assert.equal(calls, 3);
    assert.equal(sendBreaker.state, "open");
    assert.equal(clock.countTimers(), 0, "no wait is left behind");
  } finally {
    clock.uninstall();
  }
});

Deno.test("SendBreaker rejects a threshold that is not a positive integer", () => {
  assert.throws(
    () =>
      new SendBreaker({ threshold: 0, halfOpenAfterMs: 1, counts: () => true }),
    { name: "RangeError", message: /threshold must be a positive integer/ },
  );
});
