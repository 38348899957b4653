/**
 * {@linkcode kafkaEventSink}: the {@linkcode EventSink} that writes each
 * CloudEvent to its topic through a {@linkcode KafkaSink}, and the options
 * and result of {@linkcode KafkaSink.writeAll}, which is
 * {@linkcode pipeToSink} over it.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import {
  type CloudEvent,
  type KafkaRecord,
  type Router,
  toKafkaRecord,
} from "../cloudevents/mod.ts";
import { describeValue } from "../cloudevents/_describe.ts";
import type { AnyEnvelope, AnyInvalidEnvelope } from "../envelope.ts";
import type { DataExchangeError } from "../errors.ts";
import type { EventSink, PipeResult } from "../sinks/sink.ts";
import { sinkClosedError } from "../sinks/_errors.ts";
import { checkOptions, topicChooser } from "./_options.ts";
import type { KafkaSink } from "./sink.ts";

const logger = getLogger(["dataexchange", "kafka", "producer"]);

/**
 * Options of {@linkcode kafkaEventSink}.
 *
 * @example Route by classification, structured records, stoppable
 * ```ts
 * import { createRouter } from "@dataexchange/streams/cloudevents";
 * import type { KafkaEventSinkOptions } from "@dataexchange/streams/kafka";
 *
 * const options: KafkaEventSinkOptions = {
 *   topic: createRouter({
 *     routes: { alert: "dx.alerts" },
 *     defaultTopic: "dx.telemetry",
 *     deadLetterTopic: "dx.deadletter",
 *   }),
 *   mode: "structured",
 *   signal: AbortSignal.timeout(60_000),
 *   closeTimeoutMs: 2_000,
 * };
 * console.log(typeof options.topic); // object
 * ```
 */
export interface KafkaEventSinkOptions {
  /**
   * The topic of each event: a fixed topic name; a {@linkcode Router}, which
   * picks one of its configured topics by the event's classification; or a
   * function of the event. A name the function returns that is not a valid
   * Kafka topic name fails that write with `record-rejected`.
   */
  topic: string | Router | ((event: CloudEvent) => string);
  /**
   * The CloudEvents content mode of the records: `binary` (attributes in
   * `ce_` headers, data in the value) or `structured` (the JSON event
   * format in the value). Default `binary`.
   */
  mode?: "binary" | "structured";
  /**
   * Aborting it fails the writes not yet acknowledged, at once, with its
   * reason: their records still buffered in the Kafka sink are withdrawn,
   * those already on their way may still be stored. Later writes reject with
   * the reason too. Default: none.
   */
  signal?: AbortSignal;
  /**
   * How long `close()` waits for outstanding writes, in milliseconds, before
   * it fails them with `sink-closed`. Default 10000.
   */
  closeTimeoutMs?: number;
}

/**
 * An {@linkcode EventSink} that writes each event to Kafka through a
 * {@linkcode KafkaSink}, made by {@linkcode kafkaEventSink}.
 *
 * @example Watch the writes in flight
 * ```ts
 * import { createCloudEvent } from "@dataexchange/streams/cloudevents";
 * import {
 *   type KafkaEventSink,
 *   kafkaEventSink,
 *   type KafkaRecord,
 * } from "@dataexchange/streams/kafka";
 *
 * // A stand-in for a connected KafkaSink that acknowledges every record.
 * const kafka = {
 *   send: (_topic: string, _record: KafkaRecord) => Promise.resolve(),
 * };
 * await using sink: KafkaEventSink = kafkaEventSink(kafka, { topic: "dx.t" });
 * const written = sink.write(createCloudEvent({ source: "/s", type: "t" }));
 * console.log(sink.pending); // 1
 * await written;
 * console.log(sink.pending); // 0
 * ```
 */
export interface KafkaEventSink extends EventSink {
  /** Writes handed to the Kafka sink and not yet settled. */
  readonly pending: number;
}

/**
 * Makes an {@linkcode EventSink} of a {@linkcode KafkaSink}: `write(event)`
 * chooses the event's topic, turns it into a record in the content mode,
 * and resolves once Kafka has acknowledged the record. That makes every
 * helper of the `./sinks` entry work with Kafka: {@linkcode pipeToSink},
 * `fanOutSink`.
 *
 * The Kafka sink stays the caller's: `close()` waits for this sink's own
 * writes (at most `closeTimeoutMs`), fails what is left with a retriable
 * `sink-closed` error, and leaves the Kafka sink open. A write rejects with
 * what {@linkcode KafkaSink.send} rejects with; with a `CloudEventError`
 * when the event cannot be written as a record; with `topic-failed` when
 * the topic function throws.
 *
 * @param sink The Kafka sink, or anything with its `send` method.
 * @param options The topic, the content mode, a signal.
 * @returns The event sink.
 * @throws {TypeError} When an option has the wrong type.
 * @throws {RangeError} When a fixed topic is not a valid Kafka topic name,
 *   or `closeTimeoutMs` is not a non-negative integer.
 *
 * @example Pipe envelopes into Kafka
 * ```ts
 * import { createCloudEvent } from "@dataexchange/streams/cloudevents";
 * import { kafkaEventSink, type KafkaRecord } from "@dataexchange/streams/kafka";
 * import { type AnyEnvelope, pipeToSink } from "@dataexchange/streams/sinks";
 *
 * // A stand-in for a connected KafkaSink, which resolves on Kafka's ack.
 * const sent: string[] = [];
 * const kafka = {
 *   send(topic: string, _record: KafkaRecord): Promise<void> {
 *     sent.push(topic);
 *     return Promise.resolve();
 *   },
 * };
 *
 * async function* envelopes(): AsyncGenerator<AnyEnvelope> {
 *   for (const type of ["a", "b"]) {
 *     const event = createCloudEvent({ source: "/s", type });
 *     yield { kind: "event", event, ack: () => console.log("acked", type), nack() {} };
 *   }
 * }
 *
 * await using sink = kafkaEventSink(kafka, { topic: (event) => `dx.${event.type}` });
 * console.log(await pipeToSink(envelopes(), sink)); // { written: 2, failed: 0, invalid: 0 }
 * console.log(sent); // [ "dx.a", "dx.b" ]
 * ```
 */
export function kafkaEventSink(
  sink: Pick<KafkaSink, "send">,
  options: KafkaEventSinkOptions,
): KafkaEventSink {
  if (typeof sink?.send !== "function") {
    throw new TypeError(
      `kafkaEventSink() expects a KafkaSink; got ${describeValue(sink)}`,
    );
  }
  checkOptions(options, "kafkaEventSink()");
  const topicOf = topicChooser(options.topic, "kafkaEventSink()");
  const mode = options.mode ?? "binary";
  const closeTimeoutMs = options.closeTimeoutMs ?? 10000;
  if (!Number.isInteger(closeTimeoutMs) || closeTimeoutMs < 0) {
    throw new RangeError(
      `kafkaEventSink() option closeTimeoutMs must be a non-negative integer; got ${
        describeValue(closeTimeoutMs)
      }`,
    );
  }

  const stop = new AbortController();
  const signal = options.signal
    ? AbortSignal.any([options.signal, stop.signal])
    : stop.signal;
  let pending = 0;
  let closed = false;
  let idle: (() => void) | undefined;
  const settled = () => {
    if (--pending === 0) idle?.();
  };
  const write = (event: CloudEvent): Promise<void> => {
    if (closed) return Promise.reject(closedError());
    if (signal.aborted) return Promise.reject(signal.reason);
    let topic: string;
    let record: KafkaRecord;
    try {
      topic = topicOf(event);
      record = toKafkaRecord(event, { mode });
    } catch (error) {
      return Promise.reject(error);
    }
    pending++;
    return sink.send(topic, record, { signal }).finally(settled);
  };
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    if (pending > 0) {
      await new Promise<void>((resolve) => {
        idle = resolve;
        timer = setTimeout(resolve, closeTimeoutMs);
      });
    }
    clearTimeout(timer);
    if (pending > 0) {
      logger.warn(
        "Kafka event sink closed with {pending} writes not acknowledged within {closeTimeoutMs} ms; they fail with sink-closed",
        { pending, closeTimeoutMs },
      );
    }
    // Fails, and withdraws from the Kafka sink, what is still outstanding.
    stop.abort(closedError());
  };
  return {
    get pending() {
      return pending;
    },
    write,
    close,
    [Symbol.asyncDispose]: close,
  };
}

/**
 * Options of {@linkcode KafkaSink.writeAll}.
 *
 * @example Route envelopes, dead-letter the invalid ones, report failures
 * ```ts
 * import { createRouter } from "@dataexchange/streams/cloudevents";
 * import type { KafkaWriteAllOptions } from "@dataexchange/streams/kafka";
 *
 * const failures: string[] = [];
 * const options: KafkaWriteAllOptions = {
 *   topic: createRouter({
 *     routes: { alert: "dx.alerts" },
 *     defaultTopic: "dx.telemetry",
 *     deadLetterTopic: "dx.deadletter", // invalid envelopes go here
 *   }),
 *   mode: "binary",
 *   maxConcurrent: 500,
 *   onError: (error) => failures.push(String(error)),
 *   signal: AbortSignal.timeout(60_000),
 * };
 * console.log(options.maxConcurrent); // 500
 * ```
 */
export interface KafkaWriteAllOptions
  extends Omit<KafkaEventSinkOptions, "closeTimeoutMs"> {
  /**
   * Most events outstanding (taken from the source and not yet settled); at
   * the cap the source is not pulled. Default the sink's
   * `maxBufferedRecords`.
   */
  maxConcurrent?: number;
  /**
   * Where envelopes that hold no valid event go. Default: the router's
   * dead-letter topic when `topic` is a {@linkcode Router}, else none, and
   * such envelopes are nacked with their error.
   */
  deadLetterTopic?: string;
  /**
   * Builds the dead-letter record of an invalid envelope. Default: the
   * message's bytes as they were received with the reason in `dx-error`
   * headers ({@linkcode deadLetterRecord} for an MQTT envelope,
   * {@linkcode deadLetterFromKafka} for a Kafka one); an envelope of
   * another kind keeps the reason only, with an empty value.
   */
  deadLetterRecord?: (envelope: AnyInvalidEnvelope) => KafkaRecord;
  /**
   * Called for every item not delivered (the envelope, or the plain
   * CloudEvent), with the reason, such as a `topic-missing` error. Default:
   * none: failures are counted in `failed`, and the Kafka sink logs why it
   * gave up on records (per request, under the LogTape category
   * `["dataexchange", "kafka", "producer"]`, once the application has
   * configured LogTape).
   */
  onError?: (error: unknown, item: CloudEvent | AnyEnvelope) => void;
}

/**
 * What {@linkcode KafkaSink.writeAll} did, per item taken from the source.
 *
 * @example Tell whether everything got through
 * ```ts
 * import type { KafkaWriteAllResult } from "@dataexchange/streams/kafka";
 *
 * function complete(result: KafkaWriteAllResult): boolean {
 *   return result.failed === 0 && result.invalid === result.deadLettered;
 * }
 * console.log(complete({ written: 9, failed: 0, invalid: 1, deadLettered: 1 })); // true
 * ```
 */
export interface KafkaWriteAllResult extends PipeResult {
  /** Invalid envelopes written to the dead-letter topic and acked; counted in `invalid` too. */
  deadLettered: number;
}

function closedError(): DataExchangeError {
  return sinkClosedError("The Kafka event sink");
}
