import assert from "node:assert/strict";
import type { Envelope } from "../envelope.ts";
import { drainingSink } from "./draining.ts";
import { type EventSink, pipeToSink } from "./sink.ts";
import {
  eventEnvelope,
  invalidEnvelope,
  manualSink,
  nextMacrotask,
  type RecordingEnvelope,
} from "./_test_helpers.ts";

async function* from(
  envelopes: readonly RecordingEnvelope[],
): AsyncGenerator<Envelope<number>> {
  yield* envelopes;
}

Deno.test("pipeToSink() acks an event only after its write resolved", async () => {
  const sink = manualSink();
  const envelope = eventEnvelope(1);
  const piped = pipeToSink(from([envelope]), sink);

  await sink.whenWrites(1);
  assert.equal(sink.writes[0].event.id, "e1");
  await nextMacrotask();
  assert.deepEqual(envelope.settlements, []);

  sink.writes[0].resolve();
  assert.deepEqual(await piped, { written: 1, failed: 0, invalid: 0 });
  assert.deepEqual(envelope.settlements, ["ack"]);
});

Deno.test("pipeToSink() nacks with the write's error and passes it to onError", async () => {
  const sink = manualSink();
  const envelopes = [eventEnvelope(1), eventEnvelope(2)];
  const reported: Array<[unknown, unknown]> = [];
  const piped = pipeToSink(from(envelopes), sink, {
    onError: (error, envelope) => reported.push([error, envelope]),
  });
  await sink.whenWrites(2);
  const failure = new Error("broker said no");
  sink.writes[0].reject(failure);
  sink.writes[1].resolve();

  assert.deepEqual(await piped, { written: 1, failed: 1, invalid: 0 });
  assert.deepEqual(envelopes[0].settlements, [{ nack: failure }]);
  assert.deepEqual(envelopes[1].settlements, ["ack"]);
  assert.equal(reported.length, 1);
  assert.equal(reported[0][0], failure);
  assert.equal(reported[0][1], envelopes[0]);
});

Deno.test("pipeToSink() nacks an event whose write throws instead of returning a promise", async () => {
  const failure = new TypeError("not even a promise");
  const sink: EventSink = {
    write: () => {
      throw failure;
    },
    close: () => Promise.resolve(),
    [Symbol.asyncDispose]: () => Promise.resolve(),
  };
  const envelope = eventEnvelope(1);
  assert.deepEqual(await pipeToSink(from([envelope]), sink), {
    written: 0,
    failed: 1,
    invalid: 0,
  });
  assert.deepEqual(envelope.settlements, [{ nack: failure }]);
});

Deno.test("pipeToSink() stops pulling the source at maxConcurrent outstanding writes", async () => {
  const cap = 3;
  const total = 12;
  const sink = manualSink();
  let pulled = 0;
  let settled = 0;
  let highest = 0;
  async function* source(): AsyncGenerator<Envelope<number>> {
    for (let n = 0; n < total; n++) {
      pulled++;
      highest = Math.max(highest, pulled - settled);
      yield eventEnvelope(n);
    }
  }
  const piped = pipeToSink(source(), sink, { maxConcurrent: cap });

  for (let n = 0; n < total; n++) {
    await sink.whenWrites(n + 1);
    if (n + 1 >= cap) {
      // At the cap: one more macrotask must not make the pipe pull again.
      await nextMacrotask();
      assert.equal(pulled, Math.min(total, settled + cap));
    }
    // Settle the oldest write.
    settled++;
    sink.writes[n].resolve();
  }

  assert.deepEqual(await piped, { written: total, failed: 0, invalid: 0 });
  assert.equal(highest, cap);
});

Deno.test("pipeToSink() nacks invalid envelopes with their own error by default", async () => {
  const sink = drainingSink();
  const invalid = invalidEnvelope(1);
  const reported: unknown[] = [];
  const counts = await pipeToSink(from([invalid, eventEnvelope(2)]), sink, {
    onError: (error) => reported.push(error),
  });
  assert.deepEqual(counts, { written: 1, failed: 0, invalid: 1 });
  assert.equal(invalid.kind, "invalid");
  const error = invalid.kind === "invalid" ? invalid.error : undefined;
  assert.deepEqual(invalid.settlements, [{ nack: error }]);
  assert.deepEqual(reported, [error]);
  assert.equal(sink.count, 1);
});

Deno.test('pipeToSink() acks (drops) invalid envelopes with invalid: "ack"', async () => {
  const invalid = invalidEnvelope(1);
  const counts = await pipeToSink(from([invalid]), drainingSink(), {
    invalid: "ack",
  });
  assert.deepEqual(counts, { written: 0, failed: 0, invalid: 1 });
  assert.deepEqual(invalid.settlements, ["ack"]);
});

Deno.test("pipeToSink() hands invalid envelopes to an invalid function and settles by its outcome", async () => {
  const refused = new Error("dead-letter topic full");
  const handed: unknown[] = [];
  const envelopes = [invalidEnvelope(1), invalidEnvelope(2)];
  const counts = await pipeToSink(from(envelopes), drainingSink(), {
    invalid: (envelope) => {
      handed.push(envelope.message);
      return envelope.message === 1
        ? Promise.resolve()
        : Promise.reject(refused);
    },
  });
  assert.deepEqual(counts, { written: 0, failed: 0, invalid: 2 });
  assert.deepEqual(handed, [1, 2]);
  assert.deepEqual(envelopes[0].settlements, ["ack"]);
  assert.deepEqual(envelopes[1].settlements, [{ nack: refused }]);
});

Deno.test("pipeToSink() returns on abort once outstanding writes settle, and nacks what the source yields late", async () => {
  const sink = manualSink();
  const first = eventEnvelope(1);
  const late = eventEnvelope(2);
  const release = Promise.withResolvers<void>();
  const sourceEnded = Promise.withResolvers<void>();
  async function* source(): AsyncGenerator<Envelope<number>> {
    try {
      yield first;
      await release.promise; // An idle source, such as a quiet topic.
      yield late;
    } finally {
      sourceEnded.resolve();
    }
  }
  const controller = new AbortController();
  let returned = false;
  const piped = pipeToSink(source(), sink, { signal: controller.signal })
    .finally(() => returned = true);
  await sink.whenWrites(1);

  const reason = new Error("shutting down");
  controller.abort(reason);
  await nextMacrotask();
  assert.equal(returned, false, "returned with a write outstanding");

  sink.writes[0].resolve();
  assert.deepEqual(await piped, { written: 1, failed: 0, invalid: 0 });
  assert.deepEqual(first.settlements, ["ack"]);

  release.resolve();
  await sourceEnded.promise; // return() was called: the generator ends.
  assert.deepEqual(late.settlements, [{ nack: reason }]);
  assert.equal(sink.writes.length, 1);
});

Deno.test("pipeToSink() ends the source with return() when aborted between envelopes", async () => {
  let sourceEnded = false;
  const controller = new AbortController();
  async function* source(): AsyncGenerator<Envelope<number>> {
    try {
      for (let n = 0;; n++) {
        if (n === 2) controller.abort();
        yield eventEnvelope(n);
      }
    } finally {
      sourceEnded = true;
    }
  }
  const sink = drainingSink();
  const counts = await pipeToSink(source(), sink, {
    signal: controller.signal,
  });
  assert.equal(sourceEnded, true);
  assert.deepEqual(counts, { written: 2, failed: 0, invalid: 0 });
});

Deno.test("pipeToSink() rethrows a source error once outstanding writes settle", async () => {
  const sink = manualSink();
  const failure = new Error("subscription refused");
  const thrown = Promise.withResolvers<void>();
  async function* source(): AsyncGenerator<Envelope<number>> {
    yield eventEnvelope(1);
    thrown.resolve();
    throw failure;
  }
  let settled = false;
  const piped = pipeToSink(source(), sink).finally(() => settled = true);
  await thrown.promise;
  await nextMacrotask();
  assert.equal(settled, false, "settled with a write outstanding");
  sink.writes[0].resolve();
  await assert.rejects(piped, (error) => error === failure);
});

Deno.test("pipeToSink() refuses bad arguments with what it expected", async () => {
  const sink = drainingSink();
  await assert.rejects(
    pipeToSink(from([]), sink, { maxConcurrent: 0 }),
    { name: "RangeError", message: /maxConcurrent .* got 0/ },
  );
  await assert.rejects(
    pipeToSink([] as unknown as AsyncIterable<Envelope<unknown>>, sink),
    { name: "TypeError", message: /async iterable/ },
  );
  await assert.rejects(
    pipeToSink(from([]), {} as EventSink),
    { name: "TypeError", message: /write\(\)/ },
  );
  await assert.rejects(
    pipeToSink(from([]), sink, { invalid: "drop" as "ack" }),
    { name: "TypeError", message: /got "drop"/ },
  );
});
