/**
 * The sink contract ({@linkcode EventSink}) and {@linkcode pipeToSink}, which
 * moves the envelopes of a stream into a sink and settles each one by the
 * outcome of its write. Web APIs only: runs on Deno, Node, Bun and edge.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { CloudEvent } from "../cloudevents/mod.ts";
import type { AnyEnvelope, AnyInvalidEnvelope } from "../envelope.ts";
import { attempt } from "./_attempt.ts";

const logger = getLogger(["dataexchange", "sinks", "pipe"]);

/**
 * Something that takes CloudEvents and resolves each write when the event is
 * safely delivered.
 *
 * A write that resolves means the event is delivered (to a broker that
 * acknowledged it, for instance); a write that rejects means it may not be.
 * Writes may be outstanding concurrently. `close()` (and
 * `[Symbol.asyncDispose]()`, which does the same) settles what is
 * outstanding, then releases the sink; writes after it reject.
 *
 * @example A sink of your own: events into an array, settled at once
 * ```ts
 * import type { CloudEvent } from "@dataexchange/streams/cloudevents";
 * import type { EventSink } from "@dataexchange/streams/sinks";
 *
 * class ArraySink implements EventSink {
 *   readonly events: CloudEvent[] = [];
 *   #closed = false;
 *
 *   write(event: CloudEvent): Promise<void> {
 *     if (this.#closed) return Promise.reject(new Error("sink closed"));
 *     this.events.push(event);
 *     return Promise.resolve();
 *   }
 *
 *   close(): Promise<void> {
 *     this.#closed = true;
 *     return Promise.resolve();
 *   }
 *
 *   [Symbol.asyncDispose](): Promise<void> {
 *     return this.close();
 *   }
 * }
 *
 * await using sink = new ArraySink();
 * await sink.write({ specversion: "1.0", id: "1", source: "/s", type: "t" });
 * console.log(sink.events.length); // 1
 * ```
 */
export interface EventSink extends AsyncDisposable {
  /**
   * Delivers one event.
   *
   * @param event The event to deliver.
   * @returns A promise that resolves once the event is delivered.
   */
  write(event: CloudEvent): Promise<void>;
  /**
   * Waits for outstanding writes to settle, then releases the sink.
   *
   * @returns A promise that resolves once the sink is closed.
   */
  close(): Promise<void>;
}

/**
 * What {@linkcode pipeToSink} does with an envelope that holds no valid
 * CloudEvent:
 *
 * - `"nack"`: nack it with its error, so the source keeps it. Nothing is
 *   lost, but a source that redelivers it (the MQTT stream does) offers it
 *   again and again until someone removes it.
 * - `"ack"`: acknowledge it, so the source forgets it. It is dropped: counted
 *   in `invalid` and logged at warning with its error code.
 * - a function: hand it over (to a dead-letter topic, typically); the
 *   envelope is acked when the promise resolves and nacked when it rejects.
 *   It counts towards `maxConcurrent` like a write.
 *
 * @example Dead-letter invalid envelopes, write the rest
 * ```ts
 * import {
 *   CloudEventError,
 *   createCloudEvent,
 *   deadLetterRecord,
 *   type KafkaRecord,
 * } from "@dataexchange/streams/cloudevents";
 * import {
 *   type AnyEnvelope,
 *   drainingSink,
 *   type InvalidPolicy,
 *   pipeToSink,
 * } from "@dataexchange/streams/sinks";
 *
 * const deadLetters: KafkaRecord[] = [];
 * const invalid: InvalidPolicy = (envelope) => {
 *   const payload = new TextEncoder().encode("{");
 *   deadLetters.push(deadLetterRecord({ payload, error: envelope.error }));
 *   return Promise.resolve();
 * };
 *
 * async function* envelopes(): AsyncGenerator<AnyEnvelope> {
 *   const settle = { ack() {}, nack() {} };
 *   const event = createCloudEvent({ source: "/s", type: "t" });
 *   yield { kind: "event", event, ...settle };
 *   const error = new CloudEventError("malformed-json", "not JSON");
 *   yield { kind: "invalid", error, ...settle };
 * }
 *
 * await using sink = drainingSink();
 * const result = await pipeToSink(envelopes(), sink, { invalid });
 * console.log(result.written, result.invalid, deadLetters.length); // 1 1 1
 * ```
 */
export type InvalidPolicy<E extends AnyEnvelope = AnyEnvelope> =
  | "nack"
  | "ack"
  | ((envelope: Extract<E, AnyInvalidEnvelope>) => Promise<void>);

/**
 * Options of {@linkcode pipeToSink}.
 *
 * @example Bounded, stoppable, with every failure reported
 * ```ts
 * import { createCloudEvent } from "@dataexchange/streams/cloudevents";
 * import {
 *   type AnyEnvelope,
 *   type EventSink,
 *   pipeToSink,
 *   type PipeOptions,
 * } from "@dataexchange/streams/sinks";
 *
 * const flaky: EventSink = {
 *   write: (event) =>
 *     event.type === "bad"
 *       ? Promise.reject(new Error("refused"))
 *       : Promise.resolve(),
 *   close: () => Promise.resolve(),
 *   [Symbol.asyncDispose]: () => Promise.resolve(),
 * };
 * const failures: string[] = [];
 * const options: PipeOptions = {
 *   maxConcurrent: 10,
 *   signal: AbortSignal.timeout(10_000),
 *   onError: (error) => failures.push(String(error)),
 *   invalid: "ack",
 * };
 * async function* envelopes(): AsyncGenerator<AnyEnvelope> {
 *   for (const type of ["good", "bad"]) {
 *     const event = createCloudEvent({ source: "/s", type });
 *     yield { kind: "event", event, ack() {}, nack() {} };
 *   }
 * }
 * console.log(await pipeToSink(envelopes(), flaky, options)); // { written: 1, failed: 1, invalid: 0 }
 * console.log(failures); // [ "Error: refused" ]
 * ```
 */
export interface PipeOptions<E extends AnyEnvelope = AnyEnvelope> {
  /**
   * Most writes outstanding at once. At the cap {@linkcode pipeToSink} stops
   * pulling the source until a write settles. Default 1000.
   */
  maxConcurrent?: number;
  /**
   * Stops the pipe: nothing more is pulled, outstanding writes are waited
   * for, and the counts are returned (the pipe does not reject).
   */
  signal?: AbortSignal;
  /**
   * Called for every envelope that is nacked, with the reason: the write's
   * error, or the envelope's own error when it is invalid. Default: none.
   * The pipe itself logs each nack at debug only: the source says at
   * warning what it does with the envelope (`kafkaStream` retries or
   * dead-letters it), and `onError` is the place to report it otherwise.
   */
  onError?: (error: unknown, envelope: E) => void;
  /** What to do with invalid envelopes; see {@linkcode InvalidPolicy}. Default `"nack"`. */
  invalid?: InvalidPolicy<E>;
}

/**
 * What {@linkcode pipeToSink} did, counted per envelope taken from the source.
 *
 * @example Report what a run did
 * ```ts
 * import { createCloudEvent } from "@dataexchange/streams/cloudevents";
 * import {
 *   type AnyEnvelope,
 *   drainingSink,
 *   pipeToSink,
 *   type PipeResult,
 * } from "@dataexchange/streams/sinks";
 *
 * function report({ written, failed, invalid }: PipeResult): string {
 *   return `${written} written, ${failed} failed, ${invalid} invalid`;
 * }
 *
 * async function* one(): AsyncGenerator<AnyEnvelope> {
 *   const event = createCloudEvent({ source: "/s", type: "t" });
 *   yield { kind: "event", event, ack() {}, nack() {} };
 * }
 *
 * await using sink = drainingSink();
 * console.log(report(await pipeToSink(one(), sink))); // 1 written, 0 failed, 0 invalid
 * ```
 */
export interface PipeResult {
  /** Events written and acked. */
  written: number;
  /** Events whose write rejected; they were nacked. */
  failed: number;
  /** Invalid envelopes, however `invalid` handled them. */
  invalid: number;
}

const ABORTED: unique symbol = Symbol("aborted");

/**
 * Pipes envelopes from a source into a sink: for each event, `write(event)`
 * then `ack()`, or `nack(error)` when the write rejects. Invalid envelopes go
 * by `options.invalid` (default: nacked with their error, never dropped).
 *
 * Backpressure: at most `maxConcurrent` writes are outstanding; at the cap
 * the source is not pulled until one settles. Writes run concurrently, so
 * envelopes may be settled out of order; sources that need order keep it
 * themselves (the MQTT stream releases acknowledgements in arrival order).
 *
 * Ending: when the source ends, or `signal` aborts, the pipe waits for the
 * outstanding writes to settle and returns the counts. On abort, a pending
 * pull from the source is abandoned: the source's `return()` is called
 * without waiting for it, and an envelope it still yields is nacked with the
 * abort reason. The sink is not closed: it belongs to the caller.
 *
 * @param source The envelopes, such as an `mqttStream()`.
 * @param sink Where the events go.
 * @param options Concurrency, cancellation, error callback and the policy
 *   for invalid envelopes.
 * @returns The counts, once the source ended or the signal aborted and every
 *   outstanding write settled.
 * @throws {TypeError} When `source` is not async iterable, `sink` has no
 *   `write` method, or `invalid` is not a known policy.
 * @throws {RangeError} When `maxConcurrent` is not a positive integer.
 * @throws What the source throws, once outstanding writes have settled.
 *
 * @example Pipe two envelopes into a sink that counts
 * ```ts
 * import { createCloudEvent } from "../cloudevents/mod.ts";
 * import type { Envelope } from "../envelope.ts";
 * import { drainingSink } from "./draining.ts";
 * import { pipeToSink } from "./sink.ts";
 *
 * async function* source(): AsyncGenerator<Envelope<string>> {
 *   for (const n of [1, 2]) {
 *     const event = createCloudEvent({ source: "/example", type: "t", data: n });
 *     yield {
 *       kind: "event",
 *       event,
 *       message: `message ${n}`,
 *       receivedAt: Date.now(),
 *       ack: () => console.log("acked", n),
 *       nack: () => console.log("nacked", n),
 *     };
 *   }
 * }
 *
 * await using sink = drainingSink();
 * const counts = await pipeToSink(source(), sink);
 * console.log(counts); // { written: 2, failed: 0, invalid: 0 }
 * ```
 */
export async function pipeToSink<E extends AnyEnvelope>(
  source: AsyncIterable<E>,
  sink: EventSink,
  options: PipeOptions<E> = {},
): Promise<PipeResult> {
  const maxConcurrent = options.maxConcurrent ?? 1000;
  // The callbacks receive the caller's own envelope type; inside, the pipe
  // only needs what every envelope has.
  const invalidPolicy = (options.invalid ?? "nack") as InvalidPolicy;
  const onError = options.onError as PipeOptions["onError"];
  validate(source, sink, maxConcurrent, invalidPolicy);
  const { signal } = options;

  const counts: PipeResult = { written: 0, failed: 0, invalid: 0 };
  let outstanding = 0;
  let wake: (() => void) | undefined;
  const settled = () => {
    outstanding--;
    const resolve = wake;
    wake = undefined;
    resolve?.();
  };
  const room = () => new Promise<void>((resolve) => wake = resolve);
  const nack = (envelope: AnyEnvelope, error: unknown) => {
    envelope.nack(error);
    report(onError, error, envelope);
  };
  const settle = (envelope: AnyEnvelope, work: Promise<void>) => {
    outstanding++;
    work.then(
      () => {
        if (envelope.kind === "event") counts.written++;
        envelope.ack();
      },
      (error: unknown) => {
        if (envelope.kind === "event") counts.failed++;
        nack(envelope, error);
      },
    ).catch((error: unknown) =>
      logger.error("Settling an envelope failed: {error}", { error })
    ).finally(settled);
  };
  const take = (envelope: AnyEnvelope) => {
    if (envelope.kind === "event") {
      settle(envelope, attempt(() => sink.write(envelope.event)));
      return;
    }
    counts.invalid++;
    if (typeof invalidPolicy === "function") {
      settle(envelope, attempt(() => invalidPolicy(envelope)));
    } else if (invalidPolicy === "ack") {
      logger.warn("Invalid envelope acknowledged and dropped: {code}", {
        code: envelope.error.code,
      });
      envelope.ack();
    } else {
      nack(envelope, envelope.error);
    }
  };

  const iterator = source[Symbol.asyncIterator]();
  let abandoned: Promise<IteratorResult<AnyEnvelope>> | undefined;
  let done = false;
  try {
    while (!signal?.aborted) {
      if (outstanding >= maxConcurrent) {
        await untilAborted(room(), signal);
        continue;
      }
      const next = iterator.next();
      let result: IteratorResult<AnyEnvelope> | typeof ABORTED;
      try {
        result = await untilAborted(next, signal);
      } catch (error) {
        done = true; // A source that threw is finished; no return() is due.
        throw error;
      }
      if (result === ABORTED) {
        abandoned = next;
        break;
      }
      if (result.done) {
        done = true;
        break;
      }
      take(result.value);
    }
  } finally {
    if (abandoned !== undefined) {
      abandon(abandoned, iterator, signal?.reason);
    } else if (!done) {
      await iterator.return?.();
    }
    while (outstanding > 0) await room();
  }
  return counts;
}

function validate(
  source: AsyncIterable<AnyEnvelope>,
  sink: EventSink,
  maxConcurrent: number,
  invalid: InvalidPolicy,
): void {
  if (
    typeof (source as Partial<AsyncIterable<unknown>>)?.[
      Symbol.asyncIterator
    ] !== "function"
  ) {
    throw new TypeError(
      `pipeToSink() expects an async iterable source of envelopes; got ${typeof source}`,
    );
  }
  if (typeof (sink as Partial<EventSink>)?.write !== "function") {
    throw new TypeError(
      `pipeToSink() expects a sink with a write() method; got ${typeof sink}`,
    );
  }
  if (!Number.isInteger(maxConcurrent) || maxConcurrent < 1) {
    throw new RangeError(
      `pipeToSink() option maxConcurrent must be a positive integer; got ${maxConcurrent}`,
    );
  }
  if (
    invalid !== "nack" && invalid !== "ack" && typeof invalid !== "function"
  ) {
    throw new TypeError(
      `pipeToSink() option invalid must be "nack", "ack" or a function; got ${
        JSON.stringify(invalid)
      }`,
    );
  }
}

function report(
  onError: PipeOptions["onError"],
  error: unknown,
  envelope: AnyEnvelope,
): void {
  // An invalid message's own error may quote its bytes: log only its code.
  const own = envelope.kind === "invalid" && error === envelope.error;
  const code = (error as { code?: unknown })?.code;
  // The source says what it does with a nacked envelope (retry, dead-letter
  // or redeliver), at warning; here it is detail.
  logger.debug("Envelope nacked: {code}", {
    kind: envelope.kind,
    code: typeof code === "string" ? code : "unknown",
    ...(own ? {} : { error }),
  });
  if (onError === undefined) return;
  try {
    onError(error, envelope);
  } catch (thrown) {
    logger.error("pipeToSink onError callback threw: {error}", {
      error: thrown,
    });
  }
}

/**
 * Settles like `promise`, or resolves with {@linkcode ABORTED} as soon as
 * `signal` aborts. The listener lives only as long as this one wait, so a
 * long pipe does not pile up reactions on a promise that never settles.
 */
function untilAborted<T>(
  promise: Promise<T>,
  signal: AbortSignal | undefined,
): Promise<T | typeof ABORTED> {
  if (signal === undefined) return promise;
  if (signal.aborted) return Promise.resolve(ABORTED);
  return new Promise((resolve, reject) => {
    const onAbort = () => resolve(ABORTED);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() =>
      signal.removeEventListener("abort", onAbort)
    );
  });
}

/**
 * Gives up on a pull that was still pending at abort: whatever it yields is
 * nacked, and the source is asked to end without waiting for it (a running
 * generator would only end once that pull is answered).
 */
function abandon(
  next: Promise<IteratorResult<AnyEnvelope>>,
  iterator: AsyncIterator<AnyEnvelope>,
  reason: unknown,
): void {
  next.then((result) => {
    if (result.done) return;
    logger.debug("Envelope yielded after the pipe was aborted; nacked", {
      kind: result.value.kind,
    });
    result.value.nack(reason);
  }).catch((error: unknown) =>
    logger.warn("The source failed after the pipe was aborted: {error}", {
      error,
    })
  );
  Promise.resolve(iterator.return?.()).catch((error: unknown) =>
    logger.warn(
      "Ending the source after the pipe was aborted failed: {error}",
      {
        error,
      },
    )
  );
}
