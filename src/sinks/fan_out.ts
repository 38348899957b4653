/**
 * A sink that delivers every event to several sinks at once.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { CloudEvent } from "../cloudevents/mod.ts";
import { DataExchangeError, isDataExchangeError } from "../errors.ts";
import { sinkClosedError } from "./_errors.ts";
import { attempt } from "./_attempt.ts";
import type { EventSink } from "./sink.ts";

const logger = getLogger(["dataexchange", "sinks", "fan-out"]);

/**
 * The error of a fan-out write or close that failed in one of its sinks,
 * with `code` `fan-out-failed`, the failing sink's position in `index`, and
 * that sink's error as `cause`. It is retriable when the cause is.
 *
 * @example Tell which sink failed
 * ```ts
 * import { FanOutError } from "./fan_out.ts";
 *
 * const error = new FanOutError(1, 2, "writing event 7", new Error("down"));
 * console.log(error.code, error.index); // fan-out-failed 1
 * ```
 */
export class FanOutError extends DataExchangeError {
  /** The position of the failing sink in the array given to {@linkcode fanOutSink}. */
  readonly index: number;

  /**
   * Creates the error for the sink at `index`. It never throws.
   *
   * @param index The position of the failing sink.
   * @param count How many sinks the fan-out has, for the message.
   * @param action What failed, for the message, such as `writing event 7`.
   * @param cause The failing sink's error.
   */
  constructor(index: number, count: number, action: string, cause: unknown) {
    super(
      "fan-out-failed",
      `Sink ${index} of ${count} in the fan-out failed ${action}: ${
        cause instanceof Error ? cause.message : String(cause)
      }`,
      {
        cause,
        retriable: isDataExchangeError(cause) && cause.retriable,
      },
    );
    this.name = "FanOutError";
    this.index = index;
  }
}

/**
 * Tells whether a value is a {@linkcode FanOutError}, also across copies of
 * this module (it checks the shape, not only the class). It never throws.
 *
 * @param value Any value, typically a caught error.
 * @returns `true` for a `fan-out-failed` error with a numeric `index`.
 *
 * @example Branch on a failed fan-out
 * ```ts
 * import { FanOutError, isFanOutError } from "./fan_out.ts";
 *
 * const error: unknown = new FanOutError(0, 2, "closing", new Error("x"));
 * if (isFanOutError(error)) console.log(error.index); // 0
 * ```
 */
export function isFanOutError(value: unknown): value is FanOutError {
  return isDataExchangeError(value) && value.code === "fan-out-failed" &&
    typeof (value as { index?: unknown }).index === "number";
}

/**
 * Creates a sink that writes each event to every one of `sinks`
 * concurrently.
 *
 * A write resolves when all sinks resolved, and rejects as soon as one
 * rejects (fail fast) with a {@linkcode FanOutError} naming that sink's
 * index. The other sinks' writes go on; should they fail too, that is logged
 * at warning. Since some sinks may have the event and others not, writing it
 * again after a failure delivers it twice to some: at least once, not
 * exactly once.
 *
 * `close()` closes every sink concurrently and rejects with a
 * {@linkcode FanOutError} for the first (lowest index) that failed to close,
 * once all have settled; later writes reject with `sink-closed`.
 *
 * @param sinks The sinks, at least one. The array is copied.
 * @returns The fan-out sink.
 * @throws {TypeError} When `sinks` is not an array of objects with `write`
 *   and `close` methods.
 * @throws {RangeError} When `sinks` is empty.
 *
 * @example Deliver to two sinks
 * ```ts
 * import { createCloudEvent } from "../cloudevents/mod.ts";
 * import { drainingSink } from "./draining.ts";
 * import { fanOutSink } from "./fan_out.ts";
 *
 * const first = drainingSink();
 * const second = drainingSink();
 * await using both = fanOutSink([first, second]);
 * await both.write(createCloudEvent({ source: "/s", type: "t" }));
 * console.log(first.count, second.count); // 1 1
 * ```
 */
export function fanOutSink(sinks: readonly EventSink[]): EventSink {
  if (!Array.isArray(sinks)) {
    throw new TypeError(
      `fanOutSink() expects an array of sinks; got ${typeof sinks}`,
    );
  }
  if (sinks.length === 0) {
    throw new RangeError(
      "fanOutSink() expects at least one sink; got an empty array, which would drop every event",
    );
  }
  sinks.forEach((sink, index) => {
    if (
      typeof sink?.write !== "function" || typeof sink?.close !== "function"
    ) {
      throw new TypeError(
        `fanOutSink() expects every sink to have write() and close() methods; sink ${index} does not`,
      );
    }
  });

  const targets = [...sinks];
  let closed = false;
  const close = async () => {
    closed = true;
    const results = await Promise.allSettled(
      targets.map((sink) => attempt(() => sink.close())),
    );
    let first: FanOutError | undefined;
    results.forEach((result, index) => {
      if (result.status === "fulfilled") return;
      const error = new FanOutError(
        index,
        targets.length,
        "closing",
        result.reason,
      );
      if (first === undefined) first = error;
      else {
        logger.warn("Sink {index} of a fan-out also failed to close: {error}", {
          index,
          error: result.reason,
        });
      }
    });
    if (first !== undefined) throw first;
  };
  return {
    write(event: CloudEvent): Promise<void> {
      if (closed) return Promise.reject(sinkClosedError("The fan-out sink"));
      return new Promise((resolve, reject) => {
        let remaining = targets.length;
        let failed = false;
        targets.forEach((sink, index) => {
          attempt(() => sink.write(event)).then(() => {
            if (--remaining === 0 && !failed) resolve();
          }, (error: unknown) => {
            if (!failed) {
              failed = true;
              const action = `writing event ${JSON.stringify(event.id)}`;
              reject(new FanOutError(index, targets.length, action, error));
              return;
            }
            logger.warn(
              "Sink {index} of a fan-out also failed to write event {id}: {error}",
              { index, id: event.id, error },
            );
          });
        });
      });
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
