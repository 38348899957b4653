/**
 * A Kafka producer that batches records and settles each one only when Kafka
 * has acknowledged it.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { Message, Producer } from "kafkajs";
import { CompressionTypes, Partitioners } from "kafkajs";
import type { KafkaRecord } from "../cloudevents/mod.ts";
import { DataExchangeError, isDataExchangeError } from "../errors.ts";
import {
  type BreakerRetryEvent,
  type BreakerState,
  type BreakerStateChange,
  retryThroughBreaker,
  SendBreaker,
} from "./_breaker.ts";
import { type RetryEvent, retryWithBackoff } from "../_retry.ts";
import {
  createKafka,
  describeError,
  type KafkaConnectionOptions,
  recordErrorType,
  toKafkajsMessage,
} from "./_kafkajs.ts";

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
   * Consecutive failed produce requests (broker down, timeout; not records
   * Kafka refuses) that open the circuit breaker. Default 5.
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
   * (`auto.create.topics.enable`). Default `false`: a missing topic is an
   * error that is retried until the topic exists.
   */
  allowAutoTopicCreation?: boolean;
  /** Aborting it stops the retries: what is still buffered is rejected. */
  signal?: AbortSignal;
}

interface Pending {
  readonly topic: string;
  readonly message: Message;
  resolve(): void;
  reject(error: unknown): void;
}

/**
 * Sends records to Kafka in batches and resolves each `send` only when Kafka
 * has acknowledged the record (with `acks: -1`, all in-sync replicas).
 *
 * One produce request is in flight at a time, so records keep their order
 * per partition; records that arrive while it is in flight form the next
 * batch. Failures that may pass (broker down, leader election, timeout) are
 * retried with exponential backoff and full jitter for as long as the sink is
 * open. A failure that belongs to the records themselves (too large, invalid
 * topic) is narrowed down to the records at fault, which are rejected with a
 * `record-rejected` error; the others are sent.
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
 */
export class KafkaSink implements AsyncDisposable {
  #producer: Producer;
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

  private constructor(
    producer: Producer,
    breaker: SendBreaker,
    options: KafkaSinkOptions,
  ) {
    this.#producer = producer;
    this.#breaker = breaker;
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
    const producer = kafka.producer({
      createPartitioner: Partitioners.DefaultPartitioner,
      allowAutoTopicCreation: options.allowAutoTopicCreation ?? false,
    });
    await connectWithRetry(() => producer.connect(), options.brokers, {
      signal: options.signal,
      onRetry: (event) => options.onRetry?.({ ...event, operation: "connect" }),
    });
    logger.info("Kafka producer connected to {brokers}", {
      brokers: options.brokers,
    });
    return new KafkaSink(producer, breaker, options);
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
   *
   * @param topic The Kafka topic.
   * @param record Key, value and headers.
   * @returns A promise that resolves on acknowledgement.
   * @throws {DataExchangeError} `record-rejected` when Kafka refuses the record
   *   itself (for example, too large); `sink-closed` when the sink closes
   *   before the record was acknowledged.
   */
  async send(topic: string, record: KafkaRecord): Promise<void> {
    const message = toKafkajsMessage(record);
    while (
      this.pending >= this.#maxBuffered && !this.#closed &&
      !this.#signal.aborted
    ) {
      await new Promise<void>((resolve) => this.#roomWaiters.push(resolve));
    }
    if (this.#closed || this.#signal.aborted) {
      throw closedError(this.#signal.reason);
    }
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ topic, message, resolve, reject });
      if (this.#queue.length >= this.#batchSize) this.#kick();
      else if (!this.#sending && this.#linger === undefined) {
        this.#linger = setTimeout(() => this.#kick(), this.#lingerMs);
      }
    });
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

  async #deliver(batch: Pending[]): Promise<void> {
    try {
      const topicMessages = groupByTopic(batch);
      await retryThroughBreaker(
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
      for (const item of batch) item.resolve();
    } catch (error) {
      if (this.#signal.aborted) {
        for (const item of batch) item.reject(closedError(error));
        return;
      }
      if (batch.length > 1) {
        // Find the records at fault: send the others on their own.
        for (const item of batch) await this.#deliver([item]);
        return;
      }
      const type = recordErrorType(error) ?? "unknown";
      batch[0].reject(
        new DataExchangeError(
          "record-rejected",
          `Kafka rejected a record for topic "${batch[0].topic}" (${type}, ${
            byteLength(batch[0].message)
          } bytes): ${describeError(error)}`,
          { cause: error },
        ),
      );
    }
  }
}

/** Whether a produce failure may pass, as opposed to one of the records. */
function isTransient(error: unknown): boolean {
  return recordErrorType(error) === undefined;
}

function createBreaker(options: KafkaSinkOptions): SendBreaker {
  const halfOpenAfterMs = options.breakerHalfOpenAfterMs ?? 5000;
  const threshold = options.breakerThreshold ?? 5;
  positive("breakerThreshold", threshold);
  positive("breakerHalfOpenAfterMs", halfOpenAfterMs);
  return new SendBreaker({
    threshold,
    halfOpenAfterMs,
    counts: isTransient,
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

function groupByTopic(
  batch: Pending[],
): Array<{ topic: string; messages: Message[] }> {
  const byTopic = new Map<string, Message[]>();
  for (const item of batch) {
    let messages = byTopic.get(item.topic);
    if (messages === undefined) byTopic.set(item.topic, messages = []);
    messages.push(item.message);
  }
  return Array.from(byTopic, ([topic, messages]) => ({ topic, messages }));
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
