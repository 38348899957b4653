import assert from "node:assert/strict";
import { DataExchangeError } from "../errors.ts";
import { drainingSink } from "./draining.ts";
import { FanOutError, fanOutSink, isFanOutError } from "./fan_out.ts";
import type { EventSink } from "./sink.ts";
import { manualSink, nextMacrotask, testEvent } from "./_test_helpers.ts";

Deno.test("fanOutSink() writes every event to every sink and resolves when all did", async () => {
  const first = manualSink();
  const second = manualSink();
  const sink = fanOutSink([first, second]);
  let resolved = false;
  const written = sink.write(testEvent(1)).then(() => resolved = true);

  assert.equal(first.writes[0].event.id, "e1");
  assert.equal(second.writes[0].event.id, "e1");
  first.writes[0].resolve();
  await nextMacrotask();
  assert.equal(resolved, false, "resolved before the second sink did");
  second.writes[0].resolve();
  await written;
  assert.equal(resolved, true);
});

Deno.test("fanOutSink() rejects as soon as one sink rejects, naming its index", async () => {
  const sinks = [manualSink(), manualSink(), manualSink()];
  const sink = fanOutSink(sinks);
  const written = sink.write(testEvent(7));
  const failure = new DataExchangeError("record-rejected", "too large", {
    retriable: false,
  });
  sinks[1].writes[0].reject(failure);

  // The other two are still pending: the rejection does not wait for them.
  await assert.rejects(written, (error) => {
    assert.ok(isFanOutError(error));
    assert.equal(error.code, "fan-out-failed");
    assert.equal(error.index, 1);
    assert.equal(error.cause, failure);
    assert.equal(error.retriable, false);
    assert.match(error.message, /Sink 1 of 3 .*"e7".*too large/);
    return true;
  });
  sinks[0].writes[0].reject(new Error("also down")); // Logged, not thrown.
  sinks[2].writes[0].resolve();
});

Deno.test("fanOutSink() errors are retriable when the failing sink's error is", async () => {
  const failing: EventSink = {
    write: () =>
      Promise.reject(
        new DataExchangeError("sink-closed", "closed", { retriable: true }),
      ),
    close: () => Promise.resolve(),
    [Symbol.asyncDispose]: () => Promise.resolve(),
  };
  const sink = fanOutSink([drainingSink(), failing]);
  await assert.rejects(sink.write(testEvent(1)), (error) => {
    assert.ok(error instanceof FanOutError);
    assert.equal(error.index, 1);
    assert.equal(error.retriable, true);
    return true;
  });
});

Deno.test("fanOutSink() turns a write that throws synchronously into a rejection", async () => {
  const failure = new TypeError("boom");
  const throwing: EventSink = {
    write: () => {
      throw failure;
    },
    close: () => Promise.resolve(),
    [Symbol.asyncDispose]: () => Promise.resolve(),
  };
  const sink = fanOutSink([throwing]);
  await assert.rejects(sink.write(testEvent(1)), (error) => {
    assert.ok(isFanOutError(error));
    assert.equal(error.index, 0);
    assert.equal(error.cause, failure);
    return true;
  });
});

Deno.test("fanOutSink() close() closes every sink and reports the first that failed", async () => {
  const first = manualSink();
  const closeFailure = new Error("cannot flush");
  let thirdClosed = false;
  const failing = (then: () => void): EventSink => ({
    write: () => Promise.resolve(),
    close: () => {
      then();
      return Promise.reject(closeFailure);
    },
    [Symbol.asyncDispose]: () => Promise.resolve(),
  });
  const sink = fanOutSink([
    first,
    failing(() => {}),
    failing(() => thirdClosed = true),
  ]);
  await assert.rejects(sink.close(), (error) => {
    assert.ok(isFanOutError(error));
    assert.equal(error.index, 1);
    assert.equal(error.cause, closeFailure);
    return true;
  });
  assert.equal(first.closed, true);
  assert.equal(thirdClosed, true);
  await assert.rejects(sink.write(testEvent(1)), { code: "sink-closed" });
});

Deno.test("fanOutSink() with await using closes its sinks", async () => {
  const inner = drainingSink();
  {
    await using sink = fanOutSink([inner]);
    await sink.write(testEvent(1));
  }
  assert.equal(inner.count, 1);
  await assert.rejects(inner.write(testEvent(2)), { code: "sink-closed" });
});

Deno.test("fanOutSink() refuses an empty or malformed list of sinks", () => {
  assert.throws(() => fanOutSink([]), {
    name: "RangeError",
    message: /at least one sink/,
  });
  assert.throws(() => fanOutSink("sinks" as unknown as EventSink[]), {
    name: "TypeError",
    message: /array of sinks; got string/,
  });
  assert.throws(
    () => fanOutSink([drainingSink(), {} as EventSink]),
    { name: "TypeError", message: /sink 1 does not/ },
  );
});
