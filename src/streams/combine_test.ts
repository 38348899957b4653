import assert from "node:assert/strict";
import fc from "fast-check";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import { isDataExchangeError } from "../errors.ts";
import { ABANDONED_CODE, combine, type CombineOptions } from "./combine.ts";

/** A hand-written async iterator whose reads the test answers one by one. */
interface ManualSource<T> extends AsyncIterable<T> {
  nextCalls: number;
  returnCalls: number;
  reads: PromiseWithResolvers<IteratorResult<T>>[];
}

function manualSource<T>(): ManualSource<T> {
  const source: ManualSource<T> = {
    nextCalls: 0,
    returnCalls: 0,
    reads: [],
    [Symbol.asyncIterator]: () => ({
      next() {
        source.nextCalls++;
        const read = Promise.withResolvers<IteratorResult<T>>();
        source.reads.push(read);
        return read.promise;
      },
      return() {
        source.returnCalls++;
        return Promise.resolve({ done: true, value: undefined });
      },
    }),
  };
  return source;
}

interface TestEnvelope {
  id: number;
  calls: string[];
  reasons: unknown[];
  ack(): void;
  nack(reason: unknown): void;
}

function envelope(id: number): TestEnvelope {
  const calls: string[] = [];
  const reasons: unknown[] = [];
  return {
    id,
    calls,
    reasons,
    ack: () => calls.push("ack"),
    nack: (reason) => {
      calls.push("nack");
      reasons.push(reason);
    },
  };
}

/** An endless generator of 0, 1, 2, ... that records its release. */
function counting(log: string[]): AsyncGenerator<number> {
  return (async function* () {
    try {
      for (let i = 0;; i++) yield i;
    } finally {
      log.push("released");
    }
  })();
}

const never = new Promise<never>(() => {});

Deno.test("combine() yields until the promise resolves, then releases the source", async () => {
  const log: string[] = [];
  const stop = Promise.withResolvers<void>();
  const seen: number[] = [];
  for await (const n of combine(counting(log), stop.promise)) {
    seen.push(n);
    if (n === 2) {
      stop.resolve();
      await stop.promise;
    }
  }
  assert.deepEqual(seen, [0, 1, 2]);
  assert.deepEqual(log, ["released"]);
});

Deno.test("combine() ends normally when the signal aborts", async () => {
  const log: string[] = [];
  const controller = new AbortController();
  const seen: number[] = [];
  for await (const n of combine(counting(log), controller.signal)) {
    seen.push(n);
    if (n === 1) controller.abort(new Error("shutdown"));
  }
  assert.deepEqual(seen, [0, 1]);
  assert.deepEqual(log, ["released"]);
});

Deno.test("combine() throws the signal's reason with rejectOnAbort, after releasing the source", async () => {
  const log: string[] = [];
  const controller = new AbortController();
  const reason = new Error("deadline");
  const seen: number[] = [];
  await assert.rejects(
    async () => {
      const stream = combine(counting(log), controller.signal, {
        rejectOnAbort: true,
      });
      for await (const n of stream) {
        seen.push(n);
        if (n === 0) controller.abort(reason);
      }
    },
    (error: unknown) => {
      assert.equal(error, reason);
      assert.deepEqual(log, ["released"], "released before the error");
      return true;
    },
  );
  assert.deepEqual(seen, [0]);
});

Deno.test("combine() ends with the promise's rejection, after releasing the source", async () => {
  const log: string[] = [];
  const stop = Promise.withResolvers<void>();
  const failure = new Error("broker gone");
  const seen: number[] = [];
  await assert.rejects(
    async () => {
      for await (const n of combine(counting(log), stop.promise)) {
        seen.push(n);
        if (n === 1) {
          stop.reject(failure);
          await stop.promise.catch(() => {});
        }
      }
    },
    (error: unknown) => {
      assert.equal(error, failure);
      assert.deepEqual(log, ["released"]);
      return true;
    },
  );
  assert.deepEqual(seen, [0, 1]);
});

Deno.test("combine() handles a rejection that comes before the first read", async () => {
  const log: string[] = [];
  const failure = new Error("too early");
  const stream = combine(counting(log), Promise.reject(failure));
  // Were the rejection not handled at once, Deno would fail this test here.
  await new Promise((resolve) => setTimeout(resolve, 0));
  await assert.rejects(stream.next(), (error) => error === failure);
  assert.deepEqual(log, [], "a generator never started has nothing to clean");
});

Deno.test("combine() ends when the source ends, without calling return()", async () => {
  const source = manualSource<number>();
  const stream = combine(source, never);
  const first = stream.next();
  source.reads[0].resolve({ done: false, value: 1 });
  assert.deepEqual(await first, { done: false, value: 1 });
  const second = stream.next();
  source.reads[1].resolve({ done: true, value: undefined });
  assert.deepEqual(await second, { done: true, value: undefined });
  assert.equal(source.returnCalls, 0);
});

Deno.test("combine() throws the source's error, without calling return()", async () => {
  const source = manualSource<number>();
  const failure = new Error("connection reset");
  const stream = combine(source, never);
  const read = stream.next();
  source.reads[0].reject(failure);
  await assert.rejects(read, (error) => error === failure);
  assert.equal(source.returnCalls, 0);
  assert.deepEqual(await stream.next(), { done: true, value: undefined });
});

Deno.test("combine() throws an error that next() throws synchronously", async () => {
  const failure = new Error("not connected");
  let returned = false;
  const source: AsyncIterable<number> = {
    [Symbol.asyncIterator]: () => ({
      next: () => {
        throw failure;
      },
      return: () => {
        returned = true;
        return Promise.resolve({ done: true, value: undefined });
      },
    }),
  };
  await assert.rejects(combine(source, never).next(), (e) => e === failure);
  assert.equal(returned, false);
});

Deno.test("combine() releases the source when the consumer breaks", async () => {
  const log: string[] = [];
  const seen: number[] = [];
  for await (const n of combine(counting(log), never)) {
    seen.push(n);
    if (n === 3) break;
  }
  assert.deepEqual(seen, [0, 1, 2, 3]);
  assert.deepEqual(log, ["released"]);
});

Deno.test("combine() releases the source when the consumer throws into it", async () => {
  const source = manualSource<number>();
  const stream = combine(source, never);
  const read = stream.next();
  source.reads[0].resolve({ done: false, value: 1 });
  await read;
  const failure = new Error("consumer failed");
  await assert.rejects(stream.throw(failure), (error) => error === failure);
  assert.equal(source.returnCalls, 1);
});

Deno.test("combine() stops waiting for a pending read and nacks its late item", async () => {
  const source = manualSource<TestEnvelope>();
  const stop = Promise.withResolvers<void>();
  const stream = combine(source, stop.promise);

  const first = envelope(1);
  const read1 = stream.next();
  source.reads[0].resolve({ done: false, value: first });
  assert.equal((await read1).value, first);

  const read2 = stream.next();
  assert.equal(source.nextCalls, 2, "the second read is pending");
  stop.resolve();
  assert.deepEqual(await read2, { done: true, value: undefined });
  assert.equal(source.returnCalls, 1);

  const late = envelope(2);
  source.reads[1].resolve({ done: false, value: late });
  await source.reads[1].promise;
  await Promise.resolve();
  assert.deepEqual(late.calls, ["nack"]);
  const [reason] = late.reasons;
  assert.ok(isDataExchangeError(reason));
  assert.equal(reason.code, ABANDONED_CODE);
  assert.equal(reason.retriable, true);
  assert.equal(reason.cause, undefined);
  assert.deepEqual(first.calls, [], "a yielded item is not touched");
  assert.equal(source.nextCalls, 2);
});

Deno.test("combine() nacks the late item of a generator before the generator's cleanup", async () => {
  const order: string[] = [];
  const arrival = Promise.withResolvers<TestEnvelope>();
  async function* envelopes(): AsyncGenerator<TestEnvelope> {
    try {
      yield await arrival.promise;
    } finally {
      order.push("source released");
    }
  }
  const late = envelope(1);
  late.nack = () => order.push("nack");
  const controller = new AbortController();
  const reason = new Error("shutdown");
  const stream = combine(envelopes(), controller.signal, {
    onAbandoned: (item, why) => {
      assert.equal(why.cause, reason);
      item.nack(why);
    },
  });

  const read = stream.next().then((result) => {
    order.push("combined ended");
    return result;
  });
  controller.abort(reason);
  // A generator runs return() only after its pending step: see the JSDoc.
  arrival.resolve(late);
  assert.deepEqual(await read, { done: true, value: undefined });
  assert.deepEqual(order, ["nack", "source released", "combined ended"]);
});

Deno.test("combine() hands a late item to onAbandoned, with the rejection as cause", async () => {
  const source = manualSource<number>();
  const stop = Promise.withResolvers<void>();
  const failure = new Error("stop");
  const abandoned: [number, unknown][] = [];
  const stream = combine(source, stop.promise, {
    onAbandoned: (item, reason) => abandoned.push([item, reason.cause]),
  });
  const read = stream.next();
  stop.reject(failure);
  await assert.rejects(read, (error) => error === failure);
  source.reads[0].resolve({ done: false, value: 7 });
  await source.reads[0].promise;
  await Promise.resolve();
  assert.deepEqual(abandoned, [[7, failure]]);
});

Deno.test("combine() sees a stop that comes while the source's next() runs", async () => {
  // Regression: the stop was missed when it came after the check before a
  // read but before combine() waited on it, so the read's item was yielded.
  const controller = new AbortController();
  const late = envelope(1);
  let answer: (() => void) | undefined;
  const source: AsyncIterable<TestEnvelope> = {
    [Symbol.asyncIterator]: () => ({
      next: () => {
        controller.abort();
        return new Promise((resolve) => {
          answer = () => resolve({ done: false, value: late });
        });
      },
    }),
  };
  const stream = combine(source, controller.signal);
  assert.deepEqual(await stream.next(), { done: true, value: undefined });
  answer!();
  await Promise.resolve();
  await Promise.resolve();
  assert.deepEqual(late.calls, ["nack"]);
});

Deno.test("combine() logs a pending read that fails after the stop", async () => {
  const records: LogRecord[] = [];
  await configure({
    sinks: { memory: (record) => records.push(record) },
    loggers: [
      { category: ["dataexchange"], sinks: ["memory"], lowestLevel: "debug" },
      { category: ["logtape", "meta"], sinks: [] },
    ],
  });
  try {
    const source = manualSource<number>();
    const controller = new AbortController();
    const stream = combine(source, controller.signal);
    const read = stream.next();
    controller.abort();
    assert.deepEqual(await read, { done: true, value: undefined });
    const failure = new Error("late failure");
    source.reads[0].reject(failure);
    await source.reads[0].promise.catch(() => {});
    await Promise.resolve();
    assert.equal(records.length, 1);
    assert.equal(records[0].level, "warning");
    assert.equal(records[0].properties.error, failure);
  } finally {
    await reset();
  }
});

/** Runs `fn` with the `dataexchange` loggers writing into `records`. */
async function withLogs(
  fn: (records: LogRecord[]) => Promise<void>,
): Promise<void> {
  const records: LogRecord[] = [];
  await configure({
    sinks: { memory: (record) => records.push(record) },
    loggers: [
      { category: ["dataexchange"], sinks: ["memory"], lowestLevel: "debug" },
      { category: ["logtape", "meta"], sinks: [] },
    ],
  });
  try {
    await fn(records);
  } finally {
    await reset();
  }
}

/** Stops a combined stream while its read is pending, then answers it. */
async function abandon<T>(
  item: T,
  options: CombineOptions<T> = {},
): Promise<void> {
  const source = manualSource<T>();
  const controller = new AbortController();
  const stream = combine(source, controller.signal, options);
  const read = stream.next();
  controller.abort(new Error("stopping"));
  assert.deepEqual(await read, { done: true, value: undefined });
  source.reads[0].resolve({ done: false, value: item });
  await source.reads[0].promise;
  await Promise.resolve();
}

Deno.test("combine() logs at warning an abandoned item it cannot nack, with the reason", async () => {
  await withLogs(async (records) => {
    await abandon({ payload: "no nack here" });
    await abandon(42);
    assert.equal(records.length, 2);
    for (const record of records) {
      assert.equal(record.level, "warning");
      assert.deepEqual(record.category, ["dataexchange", "streams"]);
      const reason = record.properties.reason;
      assert.ok(isDataExchangeError(reason));
      assert.equal(reason.code, ABANDONED_CODE);
      assert.equal((reason.cause as Error).message, "stopping");
    }
    assert.equal(records[0].properties.item, "an object");
    assert.equal(records[1].properties.item, "42");
  });
});

Deno.test("combine() logs nothing for an abandoned item it nacks or gives to onAbandoned", async () => {
  await withLogs(async (records) => {
    const nackable = envelope(1);
    await abandon(nackable);
    assert.deepEqual(nackable.calls, ["nack"]);
    const kept: number[] = [];
    await abandon(7, { onAbandoned: (item) => kept.push(item) });
    assert.deepEqual(kept, [7]);
    assert.deepEqual(records, []);
  });
});

Deno.test("combine() logs at error an onAbandoned that throws, and does not throw it", async () => {
  await withLogs(async (records) => {
    const failure = new Error("cannot keep it");
    await abandon(7, {
      onAbandoned: () => {
        throw failure;
      },
    });
    assert.equal(records.length, 1);
    assert.equal(records[0].level, "error");
    assert.equal(records[0].properties.error, failure);
  });
});

Deno.test("combine() never reads ahead of the consumer", async () => {
  const source = manualSource<number>();
  const stream = combine(source, never);
  const read = stream.next();
  source.reads[0].resolve({ done: false, value: 1 });
  await read;
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(source.nextCalls, 1, "no read while the consumer holds an item");
  await stream.return();
  assert.equal(source.returnCalls, 1);
});

Deno.test("combine() with an aborted signal reads nothing and releases the source", async () => {
  const source = manualSource<number>();
  const stream = combine(source, AbortSignal.abort());
  assert.deepEqual(await stream.next(), { done: true, value: undefined });
  assert.equal(source.nextCalls, 0);
  assert.equal(source.returnCalls, 1);
});

Deno.test("combine() removes its abort listener when it ends", async () => {
  const controller = new AbortController();
  const signal = controller.signal;
  let added = 0;
  let removed = 0;
  const add = signal.addEventListener.bind(signal);
  const remove = signal.removeEventListener.bind(signal);
  signal.addEventListener = (...args: Parameters<typeof add>) => {
    added++;
    add(...args);
  };
  signal.removeEventListener = (...args: Parameters<typeof remove>) => {
    removed++;
    remove(...args);
  };
  for await (const n of combine(counting([]), signal)) if (n === 2) break;
  assert.equal(added, 1);
  assert.equal(removed, 1);
});

Deno.test("combine() throws both errors when releasing fails after a rejection", async () => {
  const failure = new Error("stop");
  const releaseFailure = new Error("cannot disconnect");
  const source: AsyncIterable<number> = {
    [Symbol.asyncIterator]: () => ({
      next: () => Promise.resolve({ done: false, value: 1 }),
      return: () => Promise.reject(releaseFailure),
    }),
  };
  const stop = Promise.withResolvers<void>();
  const stream = combine(source, stop.promise);
  await stream.next();
  stop.reject(failure);
  await stop.promise.catch(() => {});
  await assert.rejects(stream.next(), (error: unknown) => {
    assert.ok(error instanceof AggregateError);
    assert.deepEqual(error.errors, [failure, releaseFailure]);
    return true;
  });
});

Deno.test("combine() throws the release error when the consumer breaks", async () => {
  const releaseFailure = new Error("cannot disconnect");
  const source: AsyncIterable<number> = {
    [Symbol.asyncIterator]: () => ({
      next: () => Promise.resolve({ done: false, value: 1 }),
      return: () => Promise.reject(releaseFailure),
    }),
  };
  await assert.rejects(
    async () => {
      for await (const _ of combine(source, never)) break;
    },
    (error) => error === releaseFailure,
  );
});

Deno.test("combine() reads a ReadableStream", async () => {
  const seen: number[] = [];
  for await (const n of combine(ReadableStream.from([1, 2, 3]), never)) {
    seen.push(n);
  }
  assert.deepEqual(seen, [1, 2, 3]);
});

Deno.test("combine() yields exactly the items read before the stop (property)", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 0, max: 20 }),
      fc.integer({ min: 0, max: 25 }),
      async (length, stopAfter) => {
        let released = false;
        async function* finite(): AsyncGenerator<number> {
          try {
            for (let i = 0; i < length; i++) yield i;
          } finally {
            released = true;
          }
        }
        const controller = new AbortController();
        if (stopAfter === 0) controller.abort();
        const seen: number[] = [];
        for await (const n of combine(finite(), controller.signal)) {
          seen.push(n);
          if (seen.length === stopAfter) controller.abort();
        }
        const expected = Math.min(length, stopAfter);
        assert.deepEqual(seen, Array.from({ length: expected }, (_, i) => i));
        // Ended or released: the source's cleanup ran, unless it never
        // started (a signal aborted before the first read).
        assert.equal(released, stopAfter > 0);
      },
    ),
  );
});

Deno.test("combine() validates its arguments", () => {
  const source = manualSource<number>();
  assert.throws(
    () => combine(42 as unknown as AsyncIterable<number>, never),
    { name: "TypeError", message: /AsyncIterable source; got 42/ },
  );
  assert.throws(
    () => combine(source, "soon" as unknown as Promise<void>),
    { name: "TypeError", message: /Promise or an AbortSignal; got "soon"/ },
  );
  assert.throws(
    () =>
      combine(source, never, { rejectOnAbort: "yes" as unknown as boolean }),
    {
      name: "TypeError",
      message: /rejectOnAbort must be a boolean; got "yes"/,
    },
  );
  assert.throws(
    () =>
      combine(source, never, {
        onAbandoned: 1 as unknown as (item: number) => void,
      }),
    { name: "TypeError", message: /onAbandoned must be a function; got 1/ },
  );
  assert.equal(source.nextCalls, 0);
});
