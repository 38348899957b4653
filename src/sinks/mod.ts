/**
 * Sinks: where CloudEvents go, and how a stream of envelopes gets there.
 * Web APIs only, so this entry runs on Deno, Node, Bun and edge runtimes.
 *
 * - {@linkcode EventSink}: the contract, a `write(event)` that resolves once
 *   the event is delivered, and `close()`;
 * - {@linkcode pipeToSink}: takes envelopes from a stream into a sink with
 *   bounded concurrency, acking each delivered event and nacking failures;
 * - {@linkcode fanOutSink}: every event to several sinks;
 * - {@linkcode loggingSink}: each event's attributes to the log;
 * - {@linkcode drainingSink}: accepts and counts, for dry runs and tests.
 *
 * The MQTT sink lives in the `./mqtt` entry, the Kafka sink in `./kafka`.
 *
 * @example Log every event of a stream and count them elsewhere too
 * ```ts
 * import { createCloudEvent } from "../cloudevents/mod.ts";
 * import type { Envelope } from "../envelope.ts";
 * import { drainingSink, fanOutSink, loggingSink, pipeToSink } from "./mod.ts";
 *
 * async function* envelopes(): AsyncGenerator<Envelope<null>> {
 *   const event = createCloudEvent({ source: "/example", type: "t" });
 *   yield {
 *     kind: "event",
 *     event,
 *     message: null,
 *     receivedAt: Date.now(),
 *     ack: () => {},
 *     nack: () => {},
 *   };
 * }
 *
 * const counter = drainingSink();
 * await using sink = fanOutSink([loggingSink(), counter]);
 * const { written } = await pipeToSink(envelopes(), sink);
 * console.log(written, counter.count); // 1 1
 * ```
 *
 * @module
 */
export type {
  CloudEvent,
  CloudEventError,
  CloudEventErrorCode,
  CloudEventErrorOptions,
} from "../cloudevents/mod.ts";
export type {
  AnyEnvelope,
  AnyInvalidEnvelope,
  Settleable,
} from "../envelope.ts";
export type { DataExchangeError, DataExchangeErrorOptions } from "../errors.ts";
export {
  type DrainingSink,
  drainingSink,
  type DrainingSinkOptions,
} from "./draining.ts";
export { FanOutError, fanOutSink, isFanOutError } from "./fan_out.ts";
export {
  type LoggingSink,
  loggingSink,
  type LoggingSinkOptions,
} from "./logging.ts";
export {
  type EventSink,
  type InvalidPolicy,
  type PipeOptions,
  type PipeResult,
  pipeToSink,
} from "./sink.ts";
