/**
 * A stream combined with a future: the items of an async iterable until a
 * promise settles or a signal aborts, with the source released on every way
 * out and the item in flight handed back (or, if it cannot be, logged)
 * rather than lost silently.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { describeValue } from "../cloudevents/_describe.ts";
import type { Settleable } from "../envelope.ts";
import { DataExchangeError } from "../errors.ts";

const logger = getLogger(["dataexchange", "streams"]);

/**
 * The `code` of the {@linkcode DataExchangeError} that {@linkcode combine}
 * gives as the reason when it hands back (by default, nacks) an item it
 * abandoned.
 *
 * @example Count abandoned items apart from other nacks
 * ```ts
 * import { isDataExchangeError } from "../errors.ts";
 * import { ABANDONED_CODE } from "./combine.ts";
 *
 * let abandoned = 0;
 * function onNack(reason: unknown): void {
 *   if (isDataExchangeError(reason) && reason.code === ABANDONED_CODE) {
 *     abandoned++;
 *   }
 * }
 * onNack(new Error("handler failed"));
 * console.log(abandoned); // 0
 * ```
 */
export const ABANDONED_CODE = "abandoned";

/**
 * Options of {@linkcode combine}.
 *
 * @example Keep abandoned items for the next run instead of nacking them
 * ```ts
 * import {
 *   combine,
 *   type CombineOptions,
 *   mockSource,
 * } from "@dataexchange/streams/streams";
 *
 * const carriedOver: number[] = [];
 * const options: CombineOptions<number> = {
 *   onAbandoned: (item) => carriedOver.push(item),
 * };
 * const stop = new AbortController();
 * const received: number[] = [];
 * setTimeout(() => stop.abort(), 60);
 * // An item every 40 ms: the read pending at the abort loses its item,
 * // which arrives late and goes to `onAbandoned`.
 * for await (
 *   const item of combine(mockSource({ intervalMs: 40 }), stop.signal, options)
 * ) {
 *   received.push(item);
 * }
 * await new Promise((resolve) => setTimeout(resolve, 40));
 * console.log(received, carriedOver); // [ 0 ] [ 1 ]
 * ```
 */
export interface CombineOptions<T> {
  /**
   * Only for an `AbortSignal` as `until`: when `true`, an abort ends the
   * combined stream by throwing `signal.reason`, whatever it is; when
   * `false`, an abort ends it normally, as cancellation usually should.
   * A rejected promise always ends it with the rejection. Default `false`.
   */
  rejectOnAbort?: boolean;
  /**
   * Receives an item that the source produced too late: in answer to a read
   * that was pending when `until` settled, so it was never yielded. The
   * reason is a {@linkcode DataExchangeError} with code `abandoned`,
   * `retriable: true`, and as `cause` the promise's rejection or the signal's
   * reason (`undefined` when the promise resolved). Errors it throws are
   * logged at error level, not thrown.
   *
   * Default: calls `item.nack(reason)` when the item has a `nack` method,
   * as the envelopes of this package do (see `Settleable`), so the broker
   * delivers the message again. An item without `nack()` cannot be handed
   * back: it is dropped and logged at warning level (category
   * `["dataexchange", "streams"]`, with a short description of the item and
   * the reason). Give `onAbandoned` to keep such items instead; nothing is
   * then logged for them.
   */
  onAbandoned?: (item: T, reason: DataExchangeError) => void;
}

/**
 * Yields the items of `source` until `until` settles: a promise resolves or
 * rejects, or a signal aborts.
 *
 * How it ends:
 * - `until` resolves, or the signal aborts (without `rejectOnAbort`): the
 *   source is released (its `return()` is called and awaited) and the
 *   combined stream ends normally.
 * - `until` rejects, or the signal aborts with `rejectOnAbort`: the source is
 *   released, then the combined stream throws the rejection (the signal's
 *   reason).
 * - The source ends: the combined stream ends. The source throws: the
 *   combined stream throws that error. Either way the source is finished,
 *   so `return()` is not called.
 * - The consumer leaves early (`break`, `return()`, `throw()`): the source is
 *   released.
 * - Releasing fails: `return()`'s error is thrown; if the stream was already
 *   ending with an error, an `AggregateError` of both (that error first).
 *
 * `until` is observed between items and while a read is pending, never while
 * the consumer holds an item: an item already yielded is never touched.
 *
 * Items in flight: at most one read of the source is pending at a time
 * (nothing is read ahead or buffered). If `until` settles during that read,
 * the combined stream stops waiting for it, and the read's item, if it ever
 * comes, is never yielded. It is handed on, exactly one of:
 * - to `options.onAbandoned(item, reason)`, when that option is given;
 * - else to `item.nack(reason)`, when the item has a `nack` method, so its
 *   broker delivers it again;
 * - else, as it cannot be handed back, it is dropped and logged at warning
 *   level.
 *
 * A read that ends the source (`done`) hands on nothing; a read that fails
 * after the stop is logged at warning level; an error thrown by
 * `onAbandoned` or `nack()` is logged at error level. Nothing is thrown to
 * the consumer for them, who has already seen the stream end.
 *
 * A limit of JavaScript: an async generator (and the async iterator of a
 * `ReadableStream`) runs `return()` only after its pending step settles. So
 * when such a source is waiting for its next item, releasing it, and with it
 * the end of the combined stream, waits for that item (which is then
 * abandoned as above, before the source's cleanup runs): for a source that
 * waits for ever, the combined stream never ends. A source that waits on the
 * network should therefore take the same `AbortSignal` as `until` and end
 * its wait on abort, as `mqttStream` does with its `signal` option. A
 * hand-written iterator whose `return()` does not wait is released at once.
 *
 * The combined stream is an async generator too: a `return()` called while
 * its own `next()` is pending waits for that read; settle `until` instead.
 *
 * A promise as `until` keeps a small callback until it settles; for a
 * long-lived trigger shared by many streams, prefer an `AbortSignal`, whose
 * listener is removed when the combined stream ends.
 *
 * @typeParam T The type of the items.
 * @param source Any async iterable; its iterator is taken at the first read.
 * @param until A promise, or an `AbortSignal`, that ends the stream.
 * @param options The abort rule and the handler of abandoned items.
 * @returns An async generator of the source's items.
 * @throws {TypeError} When `source` is not async iterable, `until` is neither
 * a promise nor an `AbortSignal`, or an option has the wrong type.
 *
 * @example Read a stream until a deadline passes
 * ```ts
 * import { combine } from "./combine.ts";
 *
 * async function* ticks(): AsyncGenerator<number> {
 *   try {
 *     for (let i = 0;; i++) {
 *       await new Promise((resolve) => setTimeout(resolve, 5));
 *       yield i;
 *     }
 *   } finally {
 *     console.log("ticks released");
 *   }
 * }
 *
 * const signal = AbortSignal.timeout(100);
 * let seen = 0;
 * for await (const _tick of combine(ticks(), signal)) seen++;
 * console.log(seen > 0, signal.aborted); // true true
 * ```
 *
 * @example Nack an envelope that arrives after the stop
 * ```ts
 * import { combine } from "./combine.ts";
 *
 * const nacked: unknown[] = [];
 * const envelope = {
 *   ack() {},
 *   nack(reason: unknown) {
 *     nacked.push(reason);
 *   },
 * };
 * // A source whose only read answers 10 ms after the stop.
 * const source: AsyncIterable<typeof envelope> = {
 *   [Symbol.asyncIterator]: () => ({
 *     next: () =>
 *       new Promise((resolve) =>
 *         setTimeout(() => resolve({ done: false, value: envelope }), 10)
 *       ),
 *   }),
 * };
 * for await (const _ of combine(source, Promise.resolve())) {
 *   throw new Error("never reached");
 * }
 * await new Promise((resolve) => setTimeout(resolve, 20));
 * console.log(nacked.length); // 1
 * ```
 */
export function combine<T>(
  source: AsyncIterable<T>,
  until: PromiseLike<unknown> | AbortSignal,
  options: CombineOptions<T> = {},
): AsyncGenerator<T, void, undefined> {
  if (
    (typeof source !== "object" && typeof source !== "function") ||
    source === null ||
    typeof (source as Partial<AsyncIterable<T>>)[Symbol.asyncIterator] !==
      "function"
  ) {
    throw new TypeError(
      `combine() expects an AsyncIterable source; got ${describeValue(source)}`,
    );
  }
  if (!(until instanceof AbortSignal) && !isThenable(until)) {
    throw new TypeError(
      `combine() expects until to be a Promise or an AbortSignal; got ${
        describeValue(until)
      }`,
    );
  }
  const { rejectOnAbort = false, onAbandoned = nackAbandoned } = checkOptions(
    options,
  );

  const trigger = new Trigger();
  if (!(until instanceof AbortSignal)) {
    // Watched from the start, so a rejection is handled even before the
    // first read.
    Promise.resolve(until).then(
      () => trigger.fire(false, undefined),
      (error: unknown) => trigger.fire(true, error),
    );
  }
  const signal = until instanceof AbortSignal ? until : undefined;
  return run(source, trigger, signal, rejectOnAbort, onAbandoned);
}

async function* run<T>(
  source: AsyncIterable<T>,
  trigger: Trigger,
  signal: AbortSignal | undefined,
  rejectOnAbort: boolean,
  onAbandoned: (item: T, reason: DataExchangeError) => void,
): AsyncGenerator<T, void, undefined> {
  const onAbort = () => trigger.fire(rejectOnAbort, signal!.reason);
  if (signal?.aborted) onAbort();
  else signal?.addEventListener("abort", onAbort, { once: true });

  const iterator = source[Symbol.asyncIterator]();
  let open = true;
  let failure: { error: unknown } | undefined;
  try {
    while (trigger.stop === undefined) {
      let step: Promise<IteratorResult<T>>;
      try {
        step = Promise.resolve(iterator.next());
      } catch (error) {
        open = false;
        throw error;
      }
      const outcome = await trigger.race(step);
      if (outcome === STOPPED) {
        abandonLate(step, trigger.stop!.cause, onAbandoned);
        break;
      }
      if ("error" in outcome) {
        open = false;
        throw outcome.error;
      }
      if (outcome.result.done) {
        open = false;
        return;
      }
      yield outcome.result.value;
    }
    if (trigger.stop!.failed) throw trigger.stop!.cause;
  } catch (error) {
    failure = { error };
    throw error;
  } finally {
    signal?.removeEventListener("abort", onAbort);
    if (open) await release(iterator, failure);
  }
}

async function release<T>(
  iterator: AsyncIterator<T>,
  failure: { error: unknown } | undefined,
): Promise<void> {
  try {
    await iterator.return?.();
  } catch (releaseError) {
    if (failure === undefined) throw releaseError;
    throw new AggregateError(
      [failure.error, releaseError],
      "combine() failed, and releasing its source failed too",
    );
  }
}

// The read was pending when the stop came: whatever it produces is no
// longer awaited, but is handed on so that nothing is lost silently.
function abandonLate<T>(
  step: Promise<IteratorResult<T>>,
  cause: unknown,
  onAbandoned: (item: T, reason: DataExchangeError) => void,
): void {
  step.then((result) => {
    if (result.done) return;
    const reason = new DataExchangeError(
      ABANDONED_CODE,
      "combine() stopped while this item was being read; it was never yielded",
      { cause, retriable: true },
    );
    try {
      onAbandoned(result.value, reason);
    } catch (error) {
      logger.error("combine() could not hand back an abandoned item: {error}", {
        error,
      });
    }
  }, (error: unknown) => {
    logger.warning("combine() source failed after it was abandoned: {error}", {
      error,
    });
  });
}

function nackAbandoned(item: unknown, reason: DataExchangeError): void {
  if (
    typeof item === "object" && item !== null &&
    typeof (item as Partial<Settleable>).nack === "function"
  ) {
    (item as Settleable).nack(reason);
    return;
  }
  logger.warning(
    "combine() dropped an abandoned item that has no nack() (give onAbandoned to keep such items): {item}",
    { item: describeValue(item), reason },
  );
}

const STOPPED: unique symbol = Symbol("stopped");

type Outcome<T> =
  | typeof STOPPED
  | { result: IteratorResult<T> }
  | { error: unknown };

interface Stop {
  /** Whether the combined stream ends by throwing `cause`. */
  readonly failed: boolean;
  readonly cause: unknown;
}

// The stop state, and the one waiter that a stop wakes. A fresh
// Promise.race against a long-lived promise would add a reaction to it on
// every read, which grows without bound on a long stream.
class Trigger {
  stop: Stop | undefined;
  #wake: (() => void) | undefined;

  fire(failed: boolean, cause: unknown): void {
    if (this.stop !== undefined) return;
    this.stop = { failed, cause };
    this.#wake?.();
  }

  async race<T>(step: Promise<IteratorResult<T>>): Promise<Outcome<T>> {
    try {
      return await new Promise<Outcome<T>>((resolve) => {
        // A stop may have come while the source's next() ran: it can abort
        // the signal itself, or run pending callbacks.
        if (this.stop !== undefined) return resolve(STOPPED);
        this.#wake = () => resolve(STOPPED);
        step.then(
          (result) => resolve({ result }),
          (error: unknown) => resolve({ error }),
        );
      });
    } finally {
      this.#wake = undefined;
    }
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === "object" || typeof value === "function") &&
    value !== null &&
    typeof (value as Partial<PromiseLike<unknown>>).then === "function";
}

function checkOptions<T>(options: CombineOptions<T>): CombineOptions<T> {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `combine() expects an options object; got ${describeValue(options)}`,
    );
  }
  const { rejectOnAbort, onAbandoned } = options;
  if (rejectOnAbort !== undefined && typeof rejectOnAbort !== "boolean") {
    throw new TypeError(
      `combine() option rejectOnAbort must be a boolean; got ${
        describeValue(rejectOnAbort)
      }`,
    );
  }
  if (onAbandoned !== undefined && typeof onAbandoned !== "function") {
    throw new TypeError(
      `combine() option onAbandoned must be a function; got ${
        describeValue(onAbandoned)
      }`,
    );
  }
  return options;
}
