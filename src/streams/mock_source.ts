/**
 * A source of items at a steady rate, for tests, examples, benchmarks and
 * demos: the rhythm of a device that publishes every so many milliseconds,
 * without a broker.
 *
 * @module
 */
import { describeValue } from "../cloudevents/_describe.ts";
import { abortableDelay } from "../_retry.ts";

/**
 * Options of {@linkcode mockSource}.
 *
 * @example A sensor reading every 10 ms, five times
 * ```ts
 * import {
 *   mockSource,
 *   type MockSourceOptions,
 * } from "@dataexchange/streams/streams";
 *
 * const options = {
 *   intervalMs: 10,
 *   count: 5,
 *   value: (index: number) => ({ celsius: 20 + index / 10 }),
 * } satisfies MockSourceOptions<{ celsius: number }>;
 * const readings: number[] = [];
 * for await (const reading of mockSource(options)) {
 *   readings.push(reading.celsius);
 * }
 * console.log(readings); // [ 20, 20.1, 20.2, 20.3, 20.4 ]
 * ```
 */
export interface MockSourceOptions<T> {
  /** Milliseconds between items: a finite number above 0. Required. */
  intervalMs: number;
  /**
   * How many items to yield before ending: an integer from 0. Default: no
   * end.
   */
  count?: number;
  /**
   * Ends the source, at once, also during a wait; the source then ends
   * normally (`done: true`), it does not throw the signal's reason.
   * Default: none.
   */
  signal?: AbortSignal;
  /**
   * Makes the item of each index, 0 for the first. Default: the index
   * itself.
   */
  value?: (index: number) => T;
}

/**
 * Yields an item every `intervalMs` milliseconds on a fixed schedule.
 *
 * The schedule starts when the first item is asked for (the first
 * `next()`), at a time `start`; tick k falls at `start + k × intervalMs`, so
 * the first item comes after one interval, not at once. Items follow the
 * ticks without drift: a consumer that takes time between reads, or a timer
 * that fires a little late, does not push later ticks back.
 *
 * A slow consumer: a read that comes after its tick is answered at once, and
 * the next item waits for the first tick after that answer. Ticks that
 * passed while the consumer was away are dropped, not owed: a late consumer
 * gets one item at once, never a burst of the missed ones, so there is no
 * backlog to hold or to drain. Indexes count yielded items, so `count` items
 * are yielded in all and none of their indexes is skipped.
 *
 * Time is read with `Date.now()`, so a jump of the wall clock moves the
 * schedule. A `return()` during a wait takes effect when that wait's item
 * is produced (an async generator serves its calls in order); to end a wait
 * at once, abort `signal`, which clears the timer.
 *
 * @param options The interval, and optionally count, signal and values.
 * @returns An async generator of the items.
 * @throws {TypeError} When an option has the wrong type.
 * @throws {RangeError} When `intervalMs` is not above 0 or `count` is not an
 * integer from 0.
 *
 * @example Three readings, 10 ms apart
 * ```ts
 * import { mockSource } from "./mock_source.ts";
 *
 * const readings = mockSource({
 *   intervalMs: 10,
 *   count: 3,
 *   value: (index) => ({ sensor: "s1", celsius: 20 + index }),
 * });
 * for await (const reading of readings) console.log(reading.celsius); // 20, 21, 22
 * ```
 *
 * @example Stop with a signal
 * ```ts
 * import { mockSource } from "./mock_source.ts";
 *
 * const controller = new AbortController();
 * let seen = 0;
 * for await (const index of mockSource({ intervalMs: 5, signal: controller.signal })) {
 *   seen = index + 1;
 *   if (seen === 4) controller.abort();
 * }
 * console.log(seen); // 4
 * ```
 */
export function mockSource(
  options: MockSourceOptions<number>,
): AsyncGenerator<number, void, undefined>;
/**
 * Yields `options.value(index)` every `intervalMs` milliseconds; see the
 * first signature for the schedule.
 *
 * @typeParam T The type of the items.
 * @param options The interval and the value of each index, and optionally
 * count and signal.
 * @returns An async generator of the items.
 * @throws {TypeError} When an option has the wrong type.
 * @throws {RangeError} When `intervalMs` is not above 0 or `count` is not an
 * integer from 0.
 *
 * @example Timestamped items
 * ```ts
 * import { mockSource } from "@dataexchange/streams/streams";
 *
 * const start = Date.now();
 * const ticks = mockSource({
 *   intervalMs: 5,
 *   count: 2,
 *   value: (index) => ({ index, at: Date.now() - start }),
 * });
 * for await (const tick of ticks) console.log(tick.index, tick.at >= 5); // 0 true, 1 true
 * ```
 */
export function mockSource<T>(
  options: MockSourceOptions<T> & { value: (index: number) => T },
): AsyncGenerator<T, void, undefined>;
export function mockSource<T>(
  options: MockSourceOptions<T>,
): AsyncGenerator<T | number, void, undefined> {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `mockSource() expects an options object; got ${describeValue(options)}`,
    );
  }
  const { intervalMs, count = Infinity, signal, value } = options;
  checkInterval(intervalMs);
  checkCount(count);
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError(
      `mockSource() option signal must be an AbortSignal; got ${
        describeValue(signal)
      }`,
    );
  }
  if (value !== undefined && typeof value !== "function") {
    throw new TypeError(
      `mockSource() option value must be a function; got ${
        describeValue(value)
      }`,
    );
  }

  return ticks<T | number>(intervalMs, count, signal, value ?? identity);
}

async function* ticks<T>(
  intervalMs: number,
  count: number,
  signal: AbortSignal | undefined,
  value: (index: number) => T,
): AsyncGenerator<T, void, undefined> {
  const start = Date.now();
  let tick = 1;
  for (let index = 0; index < count; index++) {
    if (signal?.aborted) return;
    const due = start + tick * intervalMs;
    const now = Date.now();
    if (now < due) {
      try {
        await abortableDelay(due - now, signal);
      } catch (error) {
        if (signal?.aborted) return;
        throw error;
      }
    }
    // The next tick is the one after this answer: the following one when on
    // time, the first still ahead when the consumer came late. Counting in
    // whole ticks keeps rounding from shifting the schedule.
    const answeredAt = Math.max(Date.now(), due);
    tick = Math.max(
      tick + 1,
      Math.floor((answeredAt - start) / intervalMs) + 1,
    );
    yield value(index);
  }
}

function identity(index: number): number {
  return index;
}

function checkInterval(intervalMs: unknown): asserts intervalMs is number {
  if (typeof intervalMs !== "number") {
    throw new TypeError(
      `mockSource() option intervalMs must be a number of milliseconds; got ${
        describeValue(intervalMs)
      }`,
    );
  }
  if (!(intervalMs > 0 && intervalMs < Infinity)) {
    throw new RangeError(
      `mockSource() option intervalMs must be a finite number above 0; got ${intervalMs}`,
    );
  }
}

function checkCount(count: unknown): asserts count is number {
  if (typeof count !== "number") {
    throw new TypeError(
      `mockSource() option count must be a number; got ${describeValue(count)}`,
    );
  }
  if (count !== Infinity && !(Number.isSafeInteger(count) && count >= 0)) {
    throw new RangeError(
      `mockSource() option count must be an integer from 0; got ${count}`,
    );
  }
}
