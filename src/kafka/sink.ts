/**
 * A Kafka producer that batches records and settles each one only when Kafka
 * has acknowledged it.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type {
  ICustomPartitioner,
  Message,
  Producer,
  TopicMessages,
} from "kafkajs";
import { CompressionTypes, Partitioners } from "kafkajs";
import {
  type CloudEvent,
  isKafkaTopicName,
  type KafkaRecord,
  MAX_TOPIC_LENGTH,
} from "../cloudevents/mod.ts";
import { quote } from "../cloudevents/_describe.ts";
import type { AnyEnvelope } from "../envelope.ts";
import { DataExchangeError, isDataExchangeError } from "../errors.ts";
import {
  type BreakerRetryEvent,
  type BreakerState,
  type BreakerStateChange,
  retryThroughBreaker,
  SendBreaker,
} from "./_breaker.ts";
import {
  abortableDelay,
  type RetryEvent,
  retryWithBackoff,
} from "../_retry.ts";
import {
  adviceFor,
  classifyProduceError,
  createKafka,
  describeError,
  type KafkaConnectionOptions,
  MissingTopics,
  type ProduceFailure,
  toKafkajsMessage,
} from "./_kafkajs.ts";
import type {
  KafkaWriteAllOptions,
  KafkaWriteAllResult,
} from "./event_sink.ts";
import { writeEvents } from "./_write_all.ts";

const logger = getLogger(["dataexchange", "kafka", "producer"]);

/**
 * Most bytes of records in one produce request. Kafka refuses a record batch
 * larger than `message.max.bytes` (1,048,588 by default) as a whole, so a
 * batch of 500 records of 4 KiB would fail and be sent again record by
 * record; batches are cut below that size instead. A single larger record
 * still goes alone.
 */
const MAX_REQUEST_BYTES = 1_000_000;
/** How long `close()` waits for the producer to disconnect, in milliseconds. */
const DISCONNECT_GRACE_MS = 2000;
/** Bytes a record takes in a batch beyond its key, value and headers, at most. */
const RECORD_OVERHEAD_BYTES = 32;

export type { BreakerState, BreakerStateChange } from "./_breaker.ts";

/**
 * Options of {@linkcode KafkaSink.connect}.
 *
 * @example Larger, compressed batches and a watchful breaker
 * ```ts
 * import { KafkaSink, type KafkaSinkOptions } from "@dataexchange/streams/kafka";
 *
 * const options: KafkaSinkOptions = {
 *   brokers: ["127.0.0.1:9092"],
 *   batchSize: 1000,
 *   lingerMs: 20,
 *   compression: "gzip",
 *   breakerThreshold: 3,
 *   onBreakerStateChange: ({ state, previous }) =>
 *     console.log(`Kafka breaker ${previous} -> ${state}`),
 *   onRetry: ({ operation, attempt }) =>
 *     console.log(`retrying ${operation}, attempt ${attempt}`),
 * };
 *
 * // Needs Kafka on 127.0.0.1:9092: runs when this file is run as a script.
 * if (import.meta.main) {
 *   await using sink = await KafkaSink.connect(options);
 *   console.log(sink.breakerState); // closed
 * }
 * ```
 */
export interface KafkaSinkOptions extends KafkaConnectionOptions {
  /** Most records in one produce request. Default 500. */
  batchSize?: number;
  /** How long the first record of an idle sink waits for others, in milliseconds. Default 5. */
  lingerMs?: number;
  /**
   * Most records buffered and not yet acknowledged. `send` waits for room
   * beyond it. Default 10000.
   */
  maxBufferedRecords?: number;
  /** Acknowledgements Kafka must gather: -1 (all in-sync replicas), 1 or 0. Default -1. */
  acks?: -1 | 0 | 1;
  /** Compression of produce requests. Default `none`. */
  compression?: "none" | "gzip";
  /** First wait before retrying a failed request, in milliseconds. Default 100. */
  retryInitialDelayMs?: number;
  /** Longest wait between retries, in milliseconds. Default 30000. */
  retryMaxDelayMs?: number;
  /**
   * Consecutive failed produce requests (broker down, timeout, or a request
   * Kafka refuses as a whole; not records or topics Kafka refuses) that open
   * the circuit breaker. Default 5.
   */
  breakerThreshold?: number;
  /**
   * How long the open breaker waits before it lets one probe request
   * through, in milliseconds. Default 5000.
   */
  breakerHalfOpenAfterMs?: number;
  /**
   * Called on each change of the breaker's state, for readiness and metrics.
   * It must not throw; what it throws is logged and ignored.
   */
  onBreakerStateChange?: (change: BreakerStateChange) => void;
  /** Called before each wait to retry connecting or producing, for metrics. */
  onRetry?: (event: RetryEvent & { operation: "connect" | "produce" }) => void;
  /**
   * Let a send to a missing topic create it, where the brokers allow that
   * (`auto.create.topics.enable`). Default `false`: the topics must exist.
   * Records for a topic Kafka does not know are sent again for about 5 s
   * (a topic just created takes a moment to reach every broker), then
   * rejected with `topic-missing`.
   */
  allowAutoTopicCreation?: boolean;
  /** Aborting it stops the retries: what is still buffered is rejected. */
  signal?: AbortSignal;
}

/**
 * Options of {@linkcode KafkaSink.send}.
 *
 * @example Give up on a record that is not confirmed within 5 s
 * ```ts
 * import {
 *   createCloudEvent,
 *   toKafkaRecord,
 * } from "@dataexchange/streams/cloudevents";
 * import { KafkaSink, type KafkaSendOptions } from "@dataexchange/streams/kafka";
 *
 * const options: KafkaSendOptions = { signal: AbortSignal.timeout(5000) };
 *
 * // Needs Kafka on 127.0.0.1:9092: runs when this file is run as a script.
 * if (import.meta.main) {
 *   await using sink = await KafkaSink.connect({ brokers: ["127.0.0.1:9092"] });
 *   const event = createCloudEvent({ source: "/example", type: "t" });
 *   try {
 *     await sink.send("dx.telemetry", toKafkaRecord(event), options);
 *   } catch (error) {
 *     console.log("not confirmed in time:", error);
 *   }
 * }
 * ```
 */
export interface KafkaSendOptions {
  /**
   * Aborting it gives up on the record: the promise rejects with the
   * signal's reason at once. A record still buffered is withdrawn and never
   * sent; one already in a request on its way to Kafka may still be stored.
   * Default: none.
   */
  signal?: AbortSignal;
}

interface Pending {
  readonly topic: string;
  readonly message: Message;
  readonly signal: AbortSignal | undefined;
  /** Settled already: resolved, rejected, or withdrawn on abort. */
  settled: boolean;
  resolve(): void;
  reject(error: unknown): void;
}

/**
 * Sends records to Kafka in batches and resolves each `send` only when Kafka
 * has acknowledged the record (with `acks: -1`, all in-sync replicas).
 * {@linkcode KafkaSink.writeAll} takes a whole stream of CloudEvents or
 * envelopes through it, acknowledging each envelope on Kafka's ack.
 *
 * One produce request is in flight at a time, so records keep their order
 * per partition; records that arrive while it is in flight form the next
 * batch. A failed request is handled by what kafkajs says of the error (its
 * type and `retriable` flag):
 *
 * - failures that may pass (broker down, leader election, timeout) are
 *   retried with exponential backoff and full jitter for as long as the sink
 *   is open;
 * - a topic Kafka does not know (`UNKNOWN_TOPIC_OR_PARTITION`) is retried
 *   for about 5 s from the first such answer, long enough for a topic just
 *   created to reach every broker; then the records for that topic are
 *   rejected with `topic-missing`, naming it, and the others are sent. Later
 *   records for the same topic are tried once each, without waiting again,
 *   until one gets through. The breaker does not count it (Kafka answers),
 *   and it is logged at warning on every retry, at error on giving up;
 * - a refusal of records (too large, invalid record) is narrowed down to the
 *   records at fault, which are rejected with `record-rejected`; the others
 *   are sent;
 * - a refusal of a topic (invalid name, not authorized) rejects the records
 *   for that topic with `record-rejected`; the others are sent;
 * - any other refusal that no retry fixes (cluster authorization, protocol
 *   version) rejects every record of the request with `produce-refused`,
 *   logged at error; the breaker counts it.
 *
 * Limit: kafkajs reports one error for a whole request, not which
 * partitions Kafka stored. When Kafka refuses the records of one partition,
 * records of the same request for other partitions or topics may already be
 * stored; narrowing down sends them again, so they may be stored twice (at
 * least once, as after any retry). Records of the refused partition are
 * stored once. Under Kafka's default size limit (`max.message.bytes`,
 * 1 MiB) this does not arise for size: a record of more than 1,000,000
 * bytes always travels in a request of its own.
 *
 * The topics must exist, or the sink be connected with
 * `allowAutoTopicCreation: true` (and the brokers allow it, with
 * `auto.create.topics.enable`): by default a send to a missing topic does
 * not create it, and ends in `topic-missing` as above.
 *
 * The sink logs through LogTape, under the categories
 * `["dataexchange", "kafka", "producer"]` (its own lines: retries at
 * warning, records given up at error) and `["dataexchange", "kafka",
 * "kafkajs"]` (the client's own lines, at debug). Like any library that uses
 * LogTape, it logs nothing until the application calls LogTape's
 * `configure()`; without that, the promises and callbacks (`onRetry`,
 * `onBreakerStateChange`) are the only account of what happens.
 *
 * A circuit breaker (cockatiel's, consecutive failures) guards the produce
 * requests: after `breakerThreshold` failed requests in a row it opens, and
 * while it is open the sink sends nothing but one probe request every
 * `breakerHalfOpenAfterMs`; the first probe Kafka answers closes it again.
 * Meanwhile records wait in the buffer, at most `maxBufferedRecords` of
 * them: `send` waits for room beyond that, which is how a producer upstream
 * is held back (the bridge reads no more MQTT messages than its in-flight
 * cap, so the rest stay unacknowledged at the MQTT broker). The state is
 * {@linkcode KafkaSink.breakerState}; changes go to `onBreakerStateChange`.
 *
 * @example Send one record
 * ```ts
 * import {
 *   createCloudEvent,
 *   toKafkaRecord,
 * } from "@dataexchange/streams/cloudevents";
 * import { KafkaSink } from "@dataexchange/streams/kafka";
 *
 * // Needs Kafka on 127.0.0.1:9092: runs when this file is run as a script.
 * if (import.meta.main) {
 *   await using sink = await KafkaSink.connect({ brokers: ["127.0.0.1:9092"] });
 *   const event = createCloudEvent({
 *     source: "/example",
 *     type: "example.created",
 *     data: { n: 1 },
 *   });
 *   await sink.send("dx.telemetry", toKafkaRecord(event)); // resolves on Kafka's ack
 * }
 * ```
 *
 * @example See the sink's logs: configure LogTape in the application
 * ```ts
 * import { configure, getConsoleSink } from "@logtape/logtape";
 * import { KafkaSink } from "@dataexchange/streams/kafka";
 *
 * // Needs Kafka on 127.0.0.1:9092: runs when this file is run as a script.
 * if (import.meta.main) {
 *   await configure({
 *     sinks: { console: getConsoleSink() },
 *     loggers: [
 *       { category: ["dataexchange"], lowestLevel: "info", sinks: ["console"] },
 *       { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["console"] },
 *     ],
 *   });
 *   await using sink = await KafkaSink.connect({ brokers: ["127.0.0.1:9092"] });
 *   console.log(sink.breakerState); // closed, after "Kafka producer connected" on the console
 * }
 * ```
 */
export class KafkaSink implements AsyncDisposable {
  #producer: Producer;
  #createProducer: () => Producer;
  #brokers: readonly string[];
  #allowAutoTopicCreation: boolean;
  #missing = new MissingTopics();
  #batchSize: number;
  #lingerMs: number;
  #maxBuffered: number;
  #acks: -1 | 0 | 1;
  #compression: CompressionTypes;
  #queue: Pending[] = [];
  #inFlight = 0;
  #sending = false;
  #linger: ReturnType<typeof setTimeout> | undefined;
  #roomWaiters: Array<() => void> = [];
  #idleWaiters: Array<() => void> = [];
  #closed = false;
  #abort = new AbortController();
  #signal: AbortSignal;
  #onRetry: KafkaSinkOptions["onRetry"];
  #retryInitialDelayMs: number;
  #retryMaxDelayMs: number;
  #breaker: SendBreaker;
  #batch: Pending[] = [];
  /** The partition kafkajs chose for each message, in its last request. */
  #assigned: WeakMap<Message, number>;
  /** The unsettled records of each `send` signal, to withdraw on abort. */
  #bySignal = new Map<AbortSignal, Set<Pending>>();
  #onSendAbort = (event: Event) => this.#withdraw(event.target as AbortSignal);

  private constructor(
    createProducer: () => Producer,
    producer: Producer,
    breaker: SendBreaker,
    assigned: WeakMap<Message, number>,
    options: KafkaSinkOptions,
  ) {
    this.#createProducer = createProducer;
    this.#producer = producer;
    this.#brokers = options.brokers;
    this.#allowAutoTopicCreation = options.allowAutoTopicCreation ?? false;
    this.#breaker = breaker;
    this.#assigned = assigned;
    this.#batchSize = positive("batchSize", options.batchSize ?? 500);
    this.#lingerMs = options.lingerMs ?? 5;
    this.#maxBuffered = positive(
      "maxBufferedRecords",
      options.maxBufferedRecords ?? 10000,
    );
    this.#acks = options.acks ?? -1;
    this.#compression = options.compression === "gzip"
      ? CompressionTypes.GZIP
      : CompressionTypes.None;
    const signal = options.signal
      ? AbortSignal.any([options.signal, this.#abort.signal])
      : this.#abort.signal;
    this.#retryInitialDelayMs = options.retryInitialDelayMs ?? 100;
    this.#retryMaxDelayMs = options.retryMaxDelayMs ?? 30000;
    this.#signal = signal;
    this.#onRetry = options.onRetry;
    // Records still queued when the signal aborts will never be sent; those
    // of a request in flight are not confirmed (should Kafka acknowledge
    // them after all, that comes too late and changes nothing).
    signal.addEventListener("abort", () => {
      for (const item of [...this.#batch, ...this.#queue.splice(0)]) {
        item.reject(closedError(signal.reason));
      }
      for (const wake of this.#roomWaiters.splice(0)) wake();
    }, { once: true });
  }

  /**
   * Connects a producer and returns a sink around it. Connecting retries
   * with backoff until it succeeds or `options.signal` aborts.
   *
   * @param options Brokers, batching, retry and breaker settings.
   * @returns A connected sink.
   * @throws {RangeError} When a size, count or duration is not a positive
   *   integer.
   * @throws The abort reason when `options.signal` aborts first.
   */
  static async connect(options: KafkaSinkOptions): Promise<KafkaSink> {
    positive("batchSize", options.batchSize ?? 500);
    positive("maxBufferedRecords", options.maxBufferedRecords ?? 10000);
    const breaker = createBreaker(options);
    const kafka = createKafka(options);
    const assigned = new WeakMap<Message, number>();
    const createProducer = () =>
      kafka.producer({
        createPartitioner: recordingPartitioner(assigned),
        allowAutoTopicCreation: options.allowAutoTopicCreation ?? false,
      });
    const producer = createProducer();
    await connectWithRetry(() => producer.connect(), options.brokers, {
      signal: options.signal,
      onRetry: (event) => options.onRetry?.({ ...event, operation: "connect" }),
    });
    logger.info("Kafka producer connected to {brokers}", {
      brokers: options.brokers,
    });
    return new KafkaSink(createProducer, producer, breaker, assigned, options);
  }

  /** Records buffered or in flight, not yet settled. */
  get pending(): number {
    return this.#queue.length + this.#inFlight;
  }

  /**
   * The circuit breaker's state: `closed` while Kafka answers, `open` while
   * it is held to be down (nothing is sent), `half-open` while one probe
   * request is on its way.
   */
  get breakerState(): BreakerState {
    return this.#breaker.state;
  }

  /**
   * Queues a record for `topic` and resolves when Kafka has acknowledged it.
   * While `maxBufferedRecords` records are pending, it first waits for room.
   *
   * @param topic The Kafka topic.
   * @param record Key, value and headers.
   * @param options A signal to give up on the record.
   * @returns A promise that resolves on acknowledgement.
   * @throws {TypeError} When `topic` is not a string.
   * @throws {DataExchangeError} `record-rejected` when the topic is not a
   *   valid Kafka topic name (the record is not sent), or when Kafka refuses
   *   the record itself (for example, too large) or its topic (for example,
   *   not authorized); `topic-missing` when Kafka still does not know the
   *   topic after about 5 s of retries (create it, or connect with
   *   `allowAutoTopicCreation: true`); `produce-refused` when Kafka refuses
   *   the request for a reason no retry fixes (cluster authorization,
   *   protocol version); `sink-closed` when the sink closes before the record
   *   was acknowledged. None of them is retriable but `sink-closed`.
   * @throws The reason of `options.signal` when it aborts first.
   */
  async send(
    topic: string,
    record: KafkaRecord,
    options: KafkaSendOptions = {},
  ): Promise<void> {
    if (typeof topic !== "string") {
      throw new TypeError(
        `KafkaSink.send() expects the topic as a string; got ${typeof topic}`,
      );
    }
    if (!isKafkaTopicName(topic)) throw invalidTopicError(topic);
    const { signal } = options;
    signal?.throwIfAborted();
    const message = toKafkajsMessage(record);
    while (
      this.pending >= this.#maxBuffered && !this.#closed &&
      !this.#signal.aborted && !signal?.aborted
    ) {
      await this.#room(signal);
    }
    signal?.throwIfAborted();
    if (this.#closed || this.#signal.aborted) {
      throw closedError(this.#signal.reason);
    }
    return new Promise<void>((resolve, reject) => {
      const item: Pending = {
        topic,
        message,
        signal,
        settled: false,
        resolve: () => {
          this.#settle(item);
          resolve();
        },
        reject: (error: unknown) => {
          this.#settle(item);
          reject(error);
        },
      };
      this.#watch(item);
      this.#queue.push(item);
      if (this.#queue.length >= this.#batchSize) this.#kick();
      else if (!this.#sending && this.#linger === undefined) {
        this.#linger = setTimeout(() => this.#kick(), this.#lingerMs);
      }
    });
  }

  /**
   * Sends CloudEvents, or the events of envelopes, to Kafka until the source
   * ends, and settles each envelope by the outcome: `ack()` only once Kafka
   * has acknowledged its record, `nack(error)` when it was not delivered.
   * Plain CloudEvents have nobody to ack; their failures are counted, logged
   * and passed to `onError`.
   *
   * The topic of each event comes from `options.topic`: a fixed topic, a
   * {@linkcode Router} (by the event's classification) or a function. The
   * record is written in `options.mode` (binary by default). An envelope
   * that holds no valid event goes to the dead-letter topic when there is
   * one (`deadLetterTopic`, else the router's), and is acked once Kafka has
   * it; without one it is nacked with its error. An event whose record Kafka
   * refuses is nacked with the `record-rejected` error: the caller decides
   * (the bridge dead-letters those).
   *
   * Every topic written to must exist, or the sink be connected with
   * `allowAutoTopicCreation: true`. An event for a topic Kafka does not know
   * is nacked (or, for a plain event, counted in `failed` and passed to
   * `onError`) with a `topic-missing` error that names the topic, once
   * Kafka still does not know it after about 5 s of retries; events for the
   * other topics are delivered meanwhile. Later events for that topic fail
   * after one attempt each, so a whole stream for a missing topic ends in
   * seconds, every event failed: check `result.failed`. The reasons are
   * logged under the LogTape category `["dataexchange", "kafka",
   * "producer"]`, which prints nothing until the application configures
   * LogTape.
   *
   * At most `maxConcurrent` events (default `maxBufferedRecords`) are
   * outstanding: the source is not pulled beyond that. It is
   * {@linkcode pipeToSink} over {@linkcode kafkaEventSink}, with their
   * guarantees: envelopes may be settled out of order; aborting
   * `options.signal` stops pulling, gives up on the records not yet
   * acknowledged (buffered ones are withdrawn) and nacks their envelopes
   * with the abort reason, then resolves with the counts.
   *
   * @param source CloudEvents, or envelopes such as those of `mqttStream()`.
   * @param options The topic, content mode, dead-letter topic, bound and
   *   signal.
   * @returns The counts, once the source ended (or the signal aborted) and
   *   every event taken from it was settled.
   * @throws {TypeError} When `source` is not async iterable, or an option
   *   has the wrong type.
   * @throws {RangeError} When a topic option is not a valid Kafka topic
   *   name, or `maxConcurrent` is not a positive integer.
   * @throws What the source throws, once the events taken from it settled.
   *
   * @example Send a stream of events to one topic
   * ```ts
   * import { createCloudEvent } from "@dataexchange/streams/cloudevents";
   * import { KafkaSink } from "@dataexchange/streams/kafka";
   *
   * async function* readings() {
   *   for (let n = 0; n < 3; n++) {
   *     yield createCloudEvent({ source: "/sensors/7", type: "reading", data: { n } });
   *   }
   * }
   *
   * // Needs Kafka on 127.0.0.1:9092: runs when this file is run as a script.
   * if (import.meta.main) {
   *   await using sink = await KafkaSink.connect({ brokers: ["127.0.0.1:9092"] });
   *   const result = await sink.writeAll(readings(), { topic: "dx.telemetry" });
   *   console.log(result); // { written: 3, failed: 0, invalid: 0, deadLettered: 0 }
   * }
   * ```
   */
  writeAll(
    source: AsyncIterable<CloudEvent | AnyEnvelope>,
    options: KafkaWriteAllOptions,
  ): Promise<KafkaWriteAllResult> {
    return writeEvents(this, source, options, this.#maxBuffered);
  }

  /**
   * Sends what is buffered without waiting for the linger time, and waits
   * until every record queued so far is settled.
   *
   * @returns A promise that resolves once nothing is pending. It never
   *   rejects: a record that fails rejects its own `send`.
   */
  flush(): Promise<void> {
    this.#kick();
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /**
   * Sends what is buffered, waits for it to be settled (at most
   * `timeoutMs`), then disconnects. Records still unsettled are rejected
   * with `sink-closed`.
   *
   * @param timeoutMs How long to wait for buffered records. Default 10000.
   * @returns A promise that resolves once the producer is disconnected; a
   *   second call resolves at once.
   * @throws What the producer's disconnect throws, if it fails.
   */
  async close(timeoutMs = 10000): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const wake of this.#roomWaiters.splice(0)) wake();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.flush(),
      new Promise((resolve) => timer = setTimeout(resolve, timeoutMs)),
    ]);
    clearTimeout(timer);
    this.#abort.abort(closedError());
    for (const item of this.#queue.splice(0)) item.reject(closedError());
    // A broker that stopped answering can hold kafkajs's disconnect for its
    // whole request timeout; the caller's drain budget is spent by now.
    let gaveUp = false;
    let graceTimer: ReturnType<typeof setTimeout> | undefined;
    const disconnecting = this.#producer.disconnect();
    // Should it fail after the grace period, nobody awaits it any more.
    disconnecting.catch(() => {});
    await Promise.race([
      disconnecting,
      new Promise<void>((resolve) => {
        graceTimer = setTimeout(() => {
          gaveUp = true;
          resolve();
        }, DISCONNECT_GRACE_MS);
      }),
    ]);
    clearTimeout(graceTimer);
    if (gaveUp) {
      logger.warn(
        "Kafka producer did not disconnect within {graceMs} ms; closed without waiting",
        { graceMs: DISCONNECT_GRACE_MS },
      );
      return;
    }
    logger.info("Kafka producer disconnected");
  }

  /**
   * Same as {@linkcode KafkaSink.close} with its default timeout, for
   * `await using`.
   *
   * @returns A promise that resolves once the producer is disconnected.
   * @throws What the producer's disconnect throws, if it fails.
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Waits until a record settles or leaves the queue, or `signal` aborts. */
  #room(signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve) => {
      const wake = () => {
        signal?.removeEventListener("abort", wake);
        resolve();
      };
      this.#roomWaiters.push(wake);
      signal?.addEventListener("abort", wake, { once: true });
    });
  }

  /** Registers a record under its `send` signal: one listener per signal. */
  #watch(item: Pending): void {
    const signal = item.signal;
    if (signal === undefined) return;
    let items = this.#bySignal.get(signal);
    if (items === undefined) {
      this.#bySignal.set(signal, items = new Set());
      signal.addEventListener("abort", this.#onSendAbort, { once: true });
    }
    items.add(item);
  }

  #settle(item: Pending): void {
    item.settled = true;
    const signal = item.signal;
    const items = signal && this.#bySignal.get(signal);
    if (!items) return;
    items.delete(item);
    if (items.size > 0) return;
    this.#bySignal.delete(signal);
    signal.removeEventListener("abort", this.#onSendAbort);
  }

  /**
   * Gives up on the records of an aborted `send` signal: those still queued
   * leave the queue (in one pass, however many there are), those in flight
   * are no longer waited for; all reject with the signal's reason.
   */
  #withdraw(signal: AbortSignal): void {
    const items = this.#bySignal.get(signal);
    if (items === undefined) return;
    this.#bySignal.delete(signal);
    const queued = this.#queue.length;
    this.#queue = this.#queue.filter((item) => !items.has(item));
    const withdrawn = queued - this.#queue.length;
    for (const item of items) item.reject(signal.reason);
    logger.debug(
      "Send aborted: {withdrawn} buffered records withdrawn, {unconfirmed} in flight not waited for",
      { withdrawn, unconfirmed: items.size - withdrawn },
    );
    for (const wake of this.#roomWaiters.splice(0)) wake();
    if (this.pending === 0) {
      for (const wake of this.#idleWaiters.splice(0)) wake();
    }
  }

  #kick(): void {
    clearTimeout(this.#linger);
    this.#linger = undefined;
    if (this.#sending) return;
    this.#sending = true;
    this.#drainQueue().finally(() => {
      this.#sending = false;
      if (this.#queue.length > 0) this.#kick();
    });
  }

  async #drainQueue(): Promise<void> {
    while (this.#queue.length > 0 && !this.#signal.aborted) {
      const batch = this.#queue.splice(0, this.#batchLength());
      this.#batch = batch;
      this.#inFlight = batch.length;
      for (const wake of this.#roomWaiters.splice(0)) wake();
      await this.#deliver(batch);
      this.#batch = [];
      this.#inFlight = 0;
      if (this.pending === 0) {
        for (const wake of this.#idleWaiters.splice(0)) wake();
      }
    }
  }

  /** How many queued records the next request takes: by count and bytes. */
  #batchLength(): number {
    const queue = this.#queue;
    const most = Math.min(queue.length, this.#batchSize);
    let bytes = 0;
    for (let count = 0; count < most; count++) {
      bytes += recordBytes(queue[count].message);
      if (bytes > MAX_REQUEST_BYTES) return Math.max(1, count);
    }
    return most;
  }

  /**
   * Sends a batch until Kafka takes it or refuses it. A topic Kafka does not
   * know is waited for here, for a while (see {@linkcode MissingTopics}),
   * in a request for that topic alone: kafkajs does not say which topic of
   * a request it does not know, so `#narrow` splits a request for several
   * by topic first.
   */
  async #deliver(batch: Pending[]): Promise<void> {
    const byTopic = groupByTopic(batch);
    const topic = byTopic.length === 1 ? batch[0].topic : undefined;
    const topicMessages = byTopic.map((items) => ({
      topic: items[0].topic,
      messages: items.map((item) => item.message),
    }));
    for (let attempt = 1;; attempt++) {
      let failure: ProduceFailure;
      let error: unknown;
      try {
        await this.#send(topicMessages);
        for (const items of byTopic) this.#missing.found(items[0].topic);
        for (const item of batch) item.resolve();
        return;
      } catch (caught) {
        error = caught;
        failure = classifyProduceError(caught);
      }
      if (this.#signal.aborted || failure.kind === "transient") {
        // Only an abort ends the retries of a transient failure.
        for (const item of batch) item.reject(closedError(error));
        return;
      }
      let again: boolean;
      try {
        again = failure.kind === "unknown-topic" && topic !== undefined &&
          await this.#waitForTopic(topic, attempt, error);
      } catch (caught) {
        for (const item of batch) item.reject(closedError(caught));
        return;
      }
      if (!again) {
        await this.#narrow(batch, failure, error);
        return;
      }
    }
  }

  /**
   * After Kafka said, on attempt `attempt`, that it does not know `topic`:
   * waits before the next attempt while the topic's window lasts, or renews
   * the producer once it is over, and tells whether to try again.
   *
   * @throws The sink's abort reason, when it aborts first.
   */
  async #waitForTopic(
    topic: string,
    attempt: number,
    error: unknown,
  ): Promise<boolean> {
    const backoffMs = Math.random() * Math.min(
      this.#retryMaxDelayMs,
      this.#retryInitialDelayMs * 2 ** (attempt - 1),
    );
    const delayMs = this.#missing.retryDelay(topic, backoffMs);
    if (delayMs !== undefined) {
      this.#logMissingTopicRetry(topic, attempt, delayMs, error);
      this.#onRetry?.({ attempt, delayMs, error, operation: "produce" });
      await abortableDelay(delayMs, this.#signal);
      return true;
    }
    if (!this.#missing.recheck(topic)) return false;
    // A kafkajs producer asks Kafka about every topic it ever wrote to, and
    // after one of them was deleted, fails every request with this error,
    // whatever its topic. A new producer asks about this one alone.
    await this.#renewProducer(topic);
    return true;
  }

  /**
   * Sends one produce request through the breaker, retrying transient
   * failures for as long as the sink is open.
   */
  #send(topicMessages: TopicMessages[]): Promise<unknown> {
    return retryThroughBreaker(
      this.#breaker,
      () =>
        this.#producer.sendBatch({
          acks: this.#acks,
          compression: this.#compression,
          topicMessages,
        }),
      {
        signal: this.#signal,
        initialDelayMs: this.#retryInitialDelayMs,
        maxDelayMs: this.#retryMaxDelayMs,
        shouldRetry: isTransient,
        onRetry: (event) => {
          logProduceRetry(event);
          this.#onRetry?.({ ...event, operation: "produce" });
        },
      },
    );
  }

  /**
   * Replaces the producer by a new one, connected, which knows no topics
   * yet; the old one is disconnected without waiting.
   *
   * @throws The sink's abort reason, when it closes first.
   */
  async #renewProducer(topic: string): Promise<void> {
    logger.info(
      "Kafka does not know topic {topic} after {missingForMs} ms; connecting a new producer to ask about this topic alone",
      { topic, missingForMs: this.#missing.missingForMs(topic) },
    );
    const fresh = this.#createProducer();
    try {
      await connectWithRetry(() => fresh.connect(), this.#brokers, {
        signal: this.#signal,
        onRetry: (event) => this.#onRetry?.({ ...event, operation: "connect" }),
      });
    } catch (error) {
      disconnectQuietly(fresh);
      throw error;
    }
    const old = this.#producer;
    this.#producer = fresh;
    disconnectQuietly(old);
  }

  #logMissingTopicRetry(
    topic: string,
    attempt: number,
    delayMs: number,
    error: unknown,
  ): void {
    // The advice is one of two constants, so the template stays constant.
    logger.warn(
      "Kafka topic {topic} does not exist (yet); attempt {attempt}, retrying in {delayMs} ms, for up to {missingTopicRetryMs} ms from the first such answer, then its records are rejected with topic-missing: " +
        (this.#allowAutoTopicCreation
          ? AUTO_CREATION_FAILED_ADVICE
          : CREATE_TOPIC_ADVICE),
      {
        topic,
        attempt,
        delayMs: Math.round(delayMs),
        missingTopicRetryMs: this.#missing.windowMs,
        error: describeError(error),
      },
    );
  }

  /**
   * After Kafka refused a request: rejects what the refusal covers and sends
   * the rest again, in smaller requests: per topic, then per partition (a
   * partition's records are stored or refused together), then halves, until
   * the records at fault stand alone.
   */
  async #narrow(
    batch: Pending[],
    failure: Exclude<ProduceFailure, { kind: "transient" }>,
    error: unknown,
  ): Promise<void> {
    const live = batch.filter((item) => !item.settled);
    if (live.length === 0) return;
    if (failure.kind === "refused") {
      const refused = refusedError(live, failure.type, error);
      logger.error(
        "Kafka refused a produce request of {count} records ({kafkaError}); not retried: {error}",
        {
          count: live.length,
          kafkaError: failure.type,
          topics: topicsOf(live),
          error: describeError(error),
        },
      );
      for (const item of live) item.reject(refused);
      return;
    }
    const byTopic = groupByTopic(live);
    if (byTopic.length > 1) {
      for (const items of byTopic) await this.#deliver(items);
      return;
    }
    if (failure.kind === "unknown-topic") {
      const topic = live[0].topic;
      const missingForMs = this.#missing.missingForMs(topic);
      const missing = topicMissingError(
        live,
        missingForMs,
        this.#allowAutoTopicCreation,
        error,
      );
      // The advice is one of two constants, so the template stays constant.
      logger.error(
        "Kafka topic {topic} does not exist: {count} records for it rejected with topic-missing after {missingForMs} ms of UNKNOWN_TOPIC_OR_PARTITION; " +
          (this.#allowAutoTopicCreation
            ? AUTO_CREATION_FAILED_ADVICE
            : CREATE_TOPIC_ADVICE),
        {
          topic,
          count: live.length,
          missingForMs,
          error: describeError(error),
        },
      );
      for (const item of live) item.reject(missing);
      return;
    }
    if (failure.kind === "topic") {
      const rejected = topicRejectedError(live, failure.type, error);
      logger.warn(
        "Kafka refused {count} records for topic {topic} ({kafkaError}): {error}",
        {
          count: live.length,
          topic: live[0].topic,
          kafkaError: failure.type,
          error: describeError(error),
        },
      );
      for (const item of live) item.reject(rejected);
      return;
    }
    const byPartition = this.#groupByPartition(live);
    if (byPartition.length > 1) {
      for (const items of byPartition) await this.#deliver(items);
      return;
    }
    if (live.length > 1) {
      const half = Math.ceil(live.length / 2);
      await this.#deliver(live.slice(0, half));
      await this.#deliver(live.slice(half));
      return;
    }
    logger.debug(
      "Kafka refused a record for topic {topic} ({kafkaError}): {error}",
      {
        topic: live[0].topic,
        kafkaError: failure.type,
        error: describeError(error),
      },
    );
    live[0].reject(recordRejectedError(live[0], failure.type, error));
  }

  /**
   * Groups records by the partition kafkajs gave them in the failed request,
   * and pins them there, so that sending them again keeps them in the same
   * partition and in order, one partition per request.
   */
  #groupByPartition(batch: Pending[]): Pending[][] {
    const groups = new Map<number | undefined, Pending[]>();
    for (const item of batch) {
      const message = item.message;
      message.partition ??= this.#assigned.get(message);
      let items = groups.get(message.partition);
      if (items === undefined) groups.set(message.partition, items = []);
      items.push(item);
    }
    return [...groups.values()];
  }
}

/**
 * The default partitioner, remembering the partition it chose for each
 * message, so that a request Kafka refused can be narrowed down partition
 * by partition.
 */
function recordingPartitioner(
  assigned: WeakMap<Message, number>,
): ICustomPartitioner {
  return () => {
    const partition = Partitioners.DefaultPartitioner();
    return (args) => {
      const chosen = partition(args);
      assigned.set(args.message, chosen);
      return chosen;
    };
  };
}

/** Whether a produce failure may pass, and is worth another attempt. */
function isTransient(error: unknown): boolean {
  return classifyProduceError(error).kind === "transient";
}

/**
 * Whether a failure counts towards opening the breaker: one that may pass
 * (Kafka is not answering), or a refusal of the whole request (Kafka
 * answers, but takes nothing). Refusals of a record or a topic do not, nor
 * does a topic Kafka does not know: Kafka answers, and other topics may
 * take their records.
 */
function countsForBreaker(error: unknown): boolean {
  const kind = classifyProduceError(error).kind;
  return kind === "transient" || kind === "refused";
}

function createBreaker(options: KafkaSinkOptions): SendBreaker {
  const halfOpenAfterMs = options.breakerHalfOpenAfterMs ?? 5000;
  const threshold = options.breakerThreshold ?? 5;
  positive("breakerThreshold", threshold);
  positive("breakerHalfOpenAfterMs", halfOpenAfterMs);
  return new SendBreaker({
    threshold,
    halfOpenAfterMs,
    counts: countsForBreaker,
    onStateChange: (change) => {
      logBreaker(change, threshold, halfOpenAfterMs);
      try {
        options.onBreakerStateChange?.(change);
      } catch (error) {
        logger.error("onBreakerStateChange threw; ignored: {error}", {
          error,
        });
      }
    },
  });
}

function logBreaker(
  change: BreakerStateChange,
  threshold: number,
  halfOpenAfterMs: number,
): void {
  const properties = { breakerState: change.state, previous: change.previous };
  if (change.state === "open" && change.previous === "half-open") {
    // The failed probe itself is logged at warning as a produce retry.
    logger.debug(
      "Kafka circuit breaker open again: the probe failed; next probe in {halfOpenAfterMs} ms",
      { ...properties, halfOpenAfterMs },
    );
  } else if (change.state === "open") {
    logger.warn(
      "Kafka circuit breaker open after {threshold} failed requests in a row; sending one probe every {halfOpenAfterMs} ms until Kafka answers: {error}",
      {
        ...properties,
        threshold,
        halfOpenAfterMs,
        error: describeError(change.error),
      },
    );
  } else if (change.state === "half-open") {
    logger.debug(
      "Kafka circuit breaker half-open: sending a probe",
      properties,
    );
  } else {
    logger.info(
      "Kafka circuit breaker closed: Kafka answers again",
      properties,
    );
  }
}

/** Records by topic, in the order each topic first appears. */
function groupByTopic(batch: Pending[]): Pending[][] {
  const byTopic = new Map<string, Pending[]>();
  for (const item of batch) {
    let items = byTopic.get(item.topic);
    if (items === undefined) byTopic.set(item.topic, items = []);
    items.push(item);
  }
  return [...byTopic.values()];
}

function topicsOf(batch: Pending[]): string[] {
  return [...new Set(batch.map((item) => item.topic))];
}

function recordBytes(message: Message): number {
  let bytes = RECORD_OVERHEAD_BYTES + byteLength(message) +
    (message.key?.length ?? 0);
  const headers = message.headers ?? {};
  for (const name in headers) {
    const value = headers[name];
    bytes += name.length + 8;
    for (const item of Array.isArray(value) ? value : [value]) {
      bytes += item?.length ?? 0;
    }
  }
  return bytes;
}

function byteLength(message: Message): number {
  const value = message.value;
  return value === null
    ? 0
    : typeof value === "string"
    ? value.length
    : value.byteLength;
}

function positive(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(
      `KafkaSink ${name} must be a positive integer, got ${value}`,
    );
  }
  return value;
}

function closedError(cause?: unknown): DataExchangeError {
  return new DataExchangeError(
    "sink-closed",
    "The Kafka sink closed before the record was acknowledged; it was not confirmed as delivered",
    { cause, retriable: true },
  );
}

function invalidTopicError(topic: string): DataExchangeError {
  return new DataExchangeError(
    "record-rejected",
    `The topic ${
      quote(topic)
    } is not a valid Kafka topic name (1 to ${MAX_TOPIC_LENGTH} characters of a-z A-Z 0-9 . _ -, not "." or ".."); the record was not sent: fix the topic, or the route that chose it`,
  );
}

function recordRejectedError(
  item: Pending,
  type: string,
  cause: unknown,
): DataExchangeError {
  return new DataExchangeError(
    "record-rejected",
    `Kafka refused a record for topic "${item.topic}" (${type}, ${
      byteLength(item.message)
    } bytes): ${describeError(cause)}; ${adviceFor(type)}`,
    { cause },
  );
}

function topicRejectedError(
  batch: Pending[],
  type: string,
  cause: unknown,
): DataExchangeError {
  return new DataExchangeError(
    "record-rejected",
    `Kafka refused the records for topic "${batch[0].topic}" (${type}): ${
      describeError(cause)
    }; ${adviceFor(type)}`,
    { cause },
  );
}

/** What to do about a missing topic, when the sink may not create topics. */
const CREATE_TOPIC_ADVICE =
  "create the topic, or connect the KafkaSink with allowAutoTopicCreation: true where the brokers have auto.create.topics.enable";
/** What to do about a missing topic, when the brokers did not create it. */
const AUTO_CREATION_FAILED_ADVICE =
  "create the topic: the brokers did not create it although allowAutoTopicCreation is on (is their auto.create.topics.enable false?)";

function topicMissingError(
  batch: Pending[],
  missingForMs: number,
  allowAutoTopicCreation: boolean,
  cause: unknown,
): DataExchangeError {
  return new DataExchangeError(
    "topic-missing",
    `Kafka topic "${
      batch[0].topic
    }" does not exist: Kafka answered UNKNOWN_TOPIC_OR_PARTITION for ${missingForMs} ms (${
      describeError(cause)
    }), so ${batch.length} records for it were not sent; ${
      allowAutoTopicCreation ? AUTO_CREATION_FAILED_ADVICE : CREATE_TOPIC_ADVICE
    }`,
    { cause },
  );
}

function refusedError(
  batch: Pending[],
  type: string,
  cause: unknown,
): DataExchangeError {
  return new DataExchangeError(
    "produce-refused",
    `Kafka refused a produce request of ${batch.length} records for topics ${
      topicsOf(batch).join(", ")
    } (${type}): ${describeError(cause)}; ${
      adviceFor(type)
    }. The records were not confirmed as stored; sending them again fails the same way until that changes`,
    { cause },
  );
}

/**
 * Options of {@linkcode connectWithRetry}.
 *
 * @example Give up connecting after a deadline
 * ```ts
 * import {
 *   connectWithRetry,
 *   type ConnectRetryOptions,
 * } from "@dataexchange/streams/kafka";
 *
 * let retries = 0;
 * const options: ConnectRetryOptions = {
 *   signal: AbortSignal.timeout(300),
 *   hint: "; start one with `deno task brokers`",
 *   onRetry: () => retries++,
 * };
 * try {
 *   await connectWithRetry(
 *     () => Promise.reject(new Error("connection refused")),
 *     ["127.0.0.1:9092"],
 *     options,
 *   );
 * } catch (error) {
 *   console.log((error as Error).name, retries > 0); // TimeoutError true
 * }
 * ```
 */
export interface ConnectRetryOptions {
  /** Stops the attempts; the promise then rejects with its reason. */
  signal?: AbortSignal;
  /**
   * Advice appended to the text of each warning, such as how to start a
   * broker: a constant, without `{` or `}` (it becomes part of the log
   * message template).
   */
  hint?: string;
  /** Called before each wait, for metrics. */
  onRetry?: (event: RetryEvent) => void;
}

/**
 * Runs `connect` until it succeeds, waiting with exponential backoff and full
 * jitter between attempts, logging each failure at warning.
 *
 * @param connect The connection attempt.
 * @param brokers Where it connects to, for the log.
 * @param options The stop signal, advice for the warnings, a retry callback.
 * @returns A promise that resolves once `connect` has succeeded.
 * @throws The signal's reason, when `options.signal` aborts first; there is
 *   no limit of attempts otherwise.
 *
 * @example Connect an admin client of your own with the same patience
 * ```ts
 * import { connectWithRetry } from "@dataexchange/streams/kafka";
 *
 * let attempts = 0;
 * async function connect(): Promise<void> {
 *   if (++attempts < 3) throw new Error("connection refused");
 * }
 * await connectWithRetry(connect, ["127.0.0.1:9092"]);
 * console.log(attempts); // 3
 * ```
 */
export async function connectWithRetry(
  connect: () => Promise<void>,
  brokers: readonly string[],
  options: ConnectRetryOptions = {},
): Promise<void> {
  const { signal, hint = "" } = options;
  await retryWithBackoff(() => connect(), {
    signal,
    initialDelayMs: 250,
    maxDelayMs: 30000,
    onRetry: (event) => {
      const { attempt, delayMs, error } = event;
      options.onRetry?.(event);
      const properties = {
        brokers,
        attempt,
        delayMs: Math.round(delayMs),
        error: describeError(error),
      };
      if (isRefusal(error)) {
        // Kafka answered and said no: its error says what to do, and the
        // hint about starting local brokers does not apply.
        logger.warn(
          "Kafka at {brokers} refused the connection; attempt {attempt}, next in {delayMs} ms: {error}",
          properties,
        );
        return;
      }
      // The hint is a constant of the caller, so the template stays constant
      // per call site; as a property it would be quoted like a value.
      logger.warn(
        "Kafka not reachable at {brokers}; attempt {attempt}, next in {delayMs} ms: {error}" +
          hint,
        properties,
      );
    },
  });
}

/** A refused login or TLS handshake, as opposed to no answer at all. */
function isRefusal(error: unknown): boolean {
  return isDataExchangeError(error) &&
    (error.code === "kafka-auth-failed" || error.code === "kafka-tls-failed");
}

function logProduceRetry(
  { attempt, delayMs, error, breakerState }: BreakerRetryEvent,
): void {
  logger.warn(
    "Kafka produce failed; attempt {attempt}, retrying in {delayMs} ms: {error}",
    {
      attempt,
      delayMs: Math.round(delayMs),
      breakerState,
      error: describeError(error),
    },
  );
}

/** Disconnects a producer that is no longer used; a failure is only logged. */
function disconnectQuietly(producer: Producer): void {
  producer.disconnect().catch((error: unknown) => {
    logger.debug("A replaced Kafka producer failed to disconnect: {error}", {
      error: describeError(error),
    });
  });
}
