/**
 * A sink that accepts every event and discards it, counting them: for
 * benchmarks, dry runs and tests.
 *
 * @module
 */
import type { CloudEvent } from "../cloudevents/mod.ts";
import { sinkClosedError } from "./_errors.ts";
import type { EventSink } from "./sink.ts";

/**
 * Options of {@linkcode drainingSink}.
 *
 * @example Keep the last three events for a test to inspect
 * ```ts
 * import { createCloudEvent } from "@dataexchange/streams/cloudevents";
 * import {
 *   drainingSink,
 *   type DrainingSinkOptions,
 * } from "@dataexchange/streams/sinks";
 *
 * const options: DrainingSinkOptions = { keep: 3 };
 * await using sink = drainingSink(options);
 * for (let i = 0; i < 5; i++) {
 *   await sink.write(createCloudEvent({ id: `e${i}`, source: "/s", type: "t" }));
 * }
 * console.log(sink.events.map((event) => event.id)); // [ "e2", "e3", "e4" ]
 * ```
 */
export interface DrainingSinkOptions {
  /**
   * How many of the most recent events to keep in `events`. When more
   * arrive, the oldest kept one is let go (policy: drop oldest). Default 0:
   * none is kept.
   */
  keep?: number;
}

/**
 * The sink returned by {@linkcode drainingSink}.
 *
 * @example A dry run of a pipeline
 * ```ts
 * import { createCloudEvent } from "@dataexchange/streams/cloudevents";
 * import {
 *   type DrainingSink,
 *   drainingSink,
 *   pipeToSink,
 * } from "@dataexchange/streams/sinks";
 * import type { Envelope } from "@dataexchange/streams/streams";
 *
 * async function* envelopes(): AsyncGenerator<Envelope<string>> {
 *   for (const topic of ["a", "b"]) {
 *     const event = createCloudEvent({ source: `/${topic}`, type: "t" });
 *     const settle = { receivedAt: Date.now(), ack() {}, nack() {} };
 *     yield { kind: "event", event, message: topic, ...settle };
 *   }
 * }
 *
 * const sink: DrainingSink = drainingSink();
 * await pipeToSink(envelopes(), sink);
 * await sink.close();
 * console.log(sink.count); // 2
 * ```
 */
export interface DrainingSink extends EventSink {
  /** Events written so far. */
  readonly count: number;
  /** The last `keep` events written, oldest first. */
  readonly events: readonly CloudEvent[];
}

/**
 * Creates a sink that resolves every write at once and keeps nothing but a
 * count (and, if asked, the last few events). Writes after `close()` reject
 * with a `sink-closed` error.
 *
 * @param options How many events to keep.
 * @returns The sink.
 * @throws {RangeError} When `keep` is not a non-negative integer.
 *
 * @example Count events and keep the last one
 * ```ts
 * import { createCloudEvent } from "../cloudevents/mod.ts";
 * import { drainingSink } from "./draining.ts";
 *
 * await using sink = drainingSink({ keep: 1 });
 * await sink.write(createCloudEvent({ source: "/s", type: "first" }));
 * await sink.write(createCloudEvent({ source: "/s", type: "second" }));
 * console.log(sink.count, sink.events[0].type); // 2 second
 * ```
 */
export function drainingSink(options: DrainingSinkOptions = {}): DrainingSink {
  const keep = options.keep ?? 0;
  if (!Number.isInteger(keep) || keep < 0) {
    throw new RangeError(
      `drainingSink() option keep must be a non-negative integer; got ${keep}`,
    );
  }

  const events: CloudEvent[] = [];
  let count = 0;
  let closed = false;
  const close = () => {
    closed = true;
    return Promise.resolve();
  };
  return {
    get count() {
      return count;
    },
    get events() {
      return events;
    },
    write(event: CloudEvent): Promise<void> {
      if (closed) return Promise.reject(sinkClosedError("The draining sink"));
      count++;
      if (keep > 0) {
        if (events.length === keep) events.shift();
        events.push(event);
      }
      return Promise.resolve();
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
