/**
 * The loop behind {@linkcode KafkaSink.writeAll}: {@linkcode pipeToSink}
 * from the source, plain events wrapped in envelopes, into a
 * {@linkcode kafkaEventSink}, invalid envelopes to the dead-letter topic.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import {
  type CloudEvent,
  deadLetterRecord,
  type KafkaRecord,
} from "../cloudevents/mod.ts";
import { describeValue } from "../cloudevents/_describe.ts";
import type { AnyEnvelope, AnyInvalidEnvelope } from "../envelope.ts";
import { type InvalidPolicy, pipeToSink } from "../sinks/sink.ts";
import {
  kafkaEventSink,
  type KafkaWriteAllOptions,
  type KafkaWriteAllResult,
} from "./event_sink.ts";
import {
  checkFunction,
  checkOptions,
  checkTopicName,
  isRouter,
} from "./_options.ts";
import type { KafkaSink } from "./sink.ts";
import { type ConsumedRecord, deadLetterFromKafka } from "./stream.ts";

const logger = getLogger(["dataexchange", "kafka", "producer"]);

/**
 * The work of {@linkcode KafkaSink.writeAll}: {@linkcode pipeToSink} from
 * the source, plain events wrapped in envelopes, into a
 * {@linkcode kafkaEventSink}.
 *
 * @param sink Where the records go.
 * @param source CloudEvents or envelopes.
 * @param options See {@linkcode KafkaWriteAllOptions}.
 * @param maxBuffered The default of `maxConcurrent`.
 * @returns The counts.
 */
export async function writeEvents(
  sink: Pick<KafkaSink, "send">,
  source: AsyncIterable<CloudEvent | AnyEnvelope>,
  options: KafkaWriteAllOptions,
  maxBuffered: number,
): Promise<KafkaWriteAllResult> {
  const where = "KafkaSink.writeAll()";
  if (
    typeof (source as Partial<AsyncIterable<unknown>>)?.[
      Symbol.asyncIterator
    ] !== "function"
  ) {
    throw new TypeError(
      `${where} expects an async iterable of CloudEvents or envelopes; got ${
        describeValue(source)
      }`,
    );
  }
  checkOptions(options, where);
  const { topic, signal, onError } = options;
  const maxConcurrent = options.maxConcurrent ?? maxBuffered;
  if (!Number.isInteger(maxConcurrent) || maxConcurrent < 1) {
    throw new RangeError(
      `${where} option maxConcurrent must be a positive integer; got ${
        describeValue(maxConcurrent)
      }`,
    );
  }
  const deadLetterTopic = options.deadLetterTopic ??
    (isRouter(topic) ? topic.deadLetterTopic : undefined);
  if (deadLetterTopic !== undefined) {
    checkTopicName(deadLetterTopic, `${where} option deadLetterTopic`);
  }
  const toDeadLetter = options.deadLetterRecord ?? defaultDeadLetterRecord;
  checkFunction(toDeadLetter, `${where} option deadLetterRecord`);
  if (onError !== undefined) checkFunction(onError, `${where} option onError`);

  await using events = kafkaEventSink(sink, {
    topic,
    mode: options.mode,
    signal,
  });
  let deadLettered = 0;
  const invalid: InvalidPolicy = deadLetterTopic === undefined
    ? "nack"
    : async (envelope) => {
      await sink.send(deadLetterTopic, toDeadLetter(envelope), { signal });
      deadLettered++;
      logger.warn("Invalid envelope dead-lettered to {topic}: {code}", {
        topic: deadLetterTopic,
        code: envelope.error.code,
      });
    };
  // Plain events get an envelope that settles nothing; callbacks see the event.
  const plain = new WeakMap<AnyEnvelope, CloudEvent>();
  const counts = await pipeToSink(asEnvelopes(source, plain), events, {
    maxConcurrent,
    signal,
    invalid,
    onError: onError &&
      ((error, envelope) => onError(error, plain.get(envelope) ?? envelope)),
  });
  const result = { ...counts, deadLettered };
  const properties = { ...result, aborted: signal?.aborted ?? false };
  if (result.failed > 0) {
    logger.warn(
      "Kafka writeAll ended with {failed} events not delivered: {written} written, {failed} failed, {invalid} invalid, {deadLettered} dead-lettered",
      properties,
    );
  } else {
    logger.info(
      "Kafka writeAll ended: {written} written, {failed} failed, {invalid} invalid, {deadLettered} dead-lettered",
      properties,
    );
  }
  return result;
}

/**
 * The source as envelopes. A hand-written iterator rather than a generator:
 * `return()` reaches the source at once, even while a `next()` is pending
 * (a generator would queue it behind that `next()`, which may never come).
 */
function asEnvelopes(
  source: AsyncIterable<CloudEvent | AnyEnvelope>,
  plain: WeakMap<AnyEnvelope, CloudEvent>,
): AsyncIterable<AnyEnvelope> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<AnyEnvelope> {
      const inner = source[Symbol.asyncIterator]();
      return {
        async next(): Promise<IteratorResult<AnyEnvelope>> {
          const result = await inner.next();
          if (result.done) return { done: true, value: undefined };
          const item = result.value;
          if (isEnvelope(item)) return { done: false, value: item };
          const envelope: AnyEnvelope = {
            kind: "event",
            event: item,
            ack() {},
            nack() {},
          };
          plain.set(envelope, item);
          return { done: false, value: envelope };
        },
        async return(): Promise<IteratorResult<AnyEnvelope>> {
          await inner.return?.();
          return { done: true, value: undefined };
        },
      };
    },
  };
}

/** An envelope has `ack` and `nack`; a CloudEvent cannot hold functions. */
function isEnvelope(item: CloudEvent | AnyEnvelope): item is AnyEnvelope {
  if (typeof item !== "object" || item === null) return false;
  const { ack, nack, kind } = item as Partial<AnyEnvelope>;
  return typeof ack === "function" && typeof nack === "function" &&
    (kind === "event" || kind === "invalid");
}

function defaultDeadLetterRecord(envelope: AnyInvalidEnvelope): KafkaRecord {
  const { message, record } = envelope as {
    message?: unknown;
    record?: unknown;
  };
  const error = envelope.error;
  if (isMqttMessage(message)) {
    return deadLetterRecord({
      payload: message.payload,
      error,
      mqttTopic: message.topic,
    });
  }
  if (isConsumedRecord(record)) {
    return deadLetterFromKafka(record, error.code, error.message);
  }
  return deadLetterRecord({ payload: new Uint8Array(0), error });
}

function isMqttMessage(
  value: unknown,
): value is { topic: string; payload: Uint8Array } {
  const message = value as { topic?: unknown; payload?: unknown } | null;
  return typeof message === "object" && message !== null &&
    typeof message.topic === "string" &&
    message.payload instanceof Uint8Array;
}

function isConsumedRecord(value: unknown): value is ConsumedRecord {
  const record = value as Partial<Record<keyof ConsumedRecord, unknown>>;
  return typeof record === "object" && record !== null &&
    typeof record.topic === "string" &&
    typeof record.partition === "number" &&
    typeof record.offset === "string" &&
    (record.value === null || record.value instanceof Uint8Array) &&
    typeof record.headers === "object" && record.headers !== null;
}
