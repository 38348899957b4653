/**
 * Kafka topics as a stream of CloudEvent envelopes, read in a consumer group,
 * with commits that never pass a record still in work.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { Consumer, EachBatchPayload, KafkaMessage } from "kafkajs";
import {
  CloudEventError,
  fromKafkaRecord,
  type KafkaHeaderValue,
  type KafkaRecord,
} from "../cloudevents/mod.ts";
import type { CloudEvent } from "../cloudevents/mod.ts";
import type { Settleable } from "../envelope.ts";
import { DataExchangeError, isDataExchangeError } from "../errors.ts";
import { abortableDelay } from "../_retry.ts";
import {
  CommitTracker,
  type OffsetCommit,
  type PartitionTrack,
} from "./_commit_tracker.ts";
import {
  createKafka,
  describeError,
  type KafkaConnectionOptions,
} from "./_kafkajs.ts";
import { connectWithRetry, KafkaSink } from "./sink.ts";

const logger = getLogger(["dataexchange", "kafka", "consumer"]);
const encoder = new TextEncoder();

/**
 * A record as read from Kafka.
 *
 * @example Where a record came from, for a log line
 * ```ts
 * import type { ConsumedRecord } from "@dataexchange/streams/kafka";
 *
 * function position({ topic, partition, offset }: ConsumedRecord): string {
 *   return `${topic}/${partition}@${offset}`;
 * }
 *
 * const record: ConsumedRecord = {
 *   topic: "dx.telemetry",
 *   partition: 2,
 *   offset: "1042",
 *   key: null,
 *   value: new TextEncoder().encode('{"celsius":20}'),
 *   headers: { "ce_id": "r-1", "content-type": "application/json" },
 *   timestamp: "1735689600000",
 * };
 * console.log(position(record), new Date(Number(record.timestamp)).toISOString()); // dx.telemetry/2@1042 2025-01-01T00:00:00.000Z
 * ```
 */
export interface ConsumedRecord {
  /** Topic it was read from. */
  readonly topic: string;
  /** Partition it was read from. */
  readonly partition: number;
  /** Its offset in the partition, as a decimal string. */
  readonly offset: string;
  /** The record key, or null. */
  readonly key: Uint8Array | null;
  /** The record value, or null (a tombstone). */
  readonly value: Uint8Array | null;
  /** Headers as kafkajs delivers them. */
  readonly headers: Readonly<Record<string, KafkaHeaderValue>>;
  /** The record timestamp, in milliseconds since the epoch, as a string. */
  readonly timestamp: string;
}

/**
 * What both kinds of {@linkcode KafkaEnvelope} have.
 *
 * @example Give up early on records that keep failing
 * ```ts
 * import type {
 *   ConsumedRecord,
 *   KafkaEnvelopeBase,
 * } from "@dataexchange/streams/kafka";
 *
 * function settle(envelope: KafkaEnvelopeBase, error: unknown): void {
 *   const { topic, offset } = envelope.record;
 *   console.log(`${topic}@${offset} failed on attempt ${envelope.attempt}`);
 *   envelope.nack(error);
 * }
 *
 * const record: ConsumedRecord = {
 *   topic: "dx.telemetry",
 *   partition: 2,
 *   offset: "1042",
 *   key: null,
 *   value: new TextEncoder().encode('{"celsius":20}'),
 *   headers: { "ce_id": "r-1", "content-type": "application/json" },
 *   timestamp: "1735689600000",
 * };
 * settle(
 *   { record, attempt: 2, receivedAt: Date.now(), ack() {}, nack() {} },
 *   new Error("database busy"),
 * ); // dx.telemetry@1042 failed on attempt 2
 * ```
 */
export interface KafkaEnvelopeBase extends Settleable {
  /** The record as read. */
  readonly record: ConsumedRecord;
  /** 1 for the first delivery; higher after `nack()` retries. */
  readonly attempt: number;
  /** When the record was handed out, in milliseconds since the epoch. */
  readonly receivedAt: number;
}

/**
 * A record that holds a valid CloudEvent.
 *
 * @example How long an event waited in Kafka
 * ```ts
 * import { createCloudEvent } from "@dataexchange/streams/cloudevents";
 * import type {
 *   ConsumedRecord,
 *   KafkaEventEnvelope,
 * } from "@dataexchange/streams/kafka";
 *
 * function lagMs(envelope: KafkaEventEnvelope): number {
 *   return envelope.receivedAt - Number(envelope.record.timestamp);
 * }
 *
 * const record: ConsumedRecord = {
 *   topic: "dx.telemetry",
 *   partition: 2,
 *   offset: "1042",
 *   key: null,
 *   value: new TextEncoder().encode('{"celsius":20}'),
 *   headers: { "ce_id": "r-1", "content-type": "application/json" },
 *   timestamp: "1735689600000",
 * };
 * const envelope: KafkaEventEnvelope = {
 *   kind: "event",
 *   event: createCloudEvent({ id: "r-1", source: "/s", type: "reading" }),
 *   record,
 *   attempt: 1,
 *   receivedAt: Number(record.timestamp) + 250,
 *   ack() {},
 *   nack() {},
 * };
 * console.log(lagMs(envelope)); // 250
 * ```
 */
export interface KafkaEventEnvelope extends KafkaEnvelopeBase {
  /** Discriminates the union. */
  readonly kind: "event";
  /** The decoded event. */
  readonly event: CloudEvent;
}

/**
 * A record that is not a valid CloudEvent, with the reason.
 *
 * @example Report an invalid record before it goes to the dead-letter topic
 * ```ts
 * import { CloudEventError } from "@dataexchange/streams/cloudevents";
 * import type {
 *   ConsumedRecord,
 *   KafkaInvalidEnvelope,
 * } from "@dataexchange/streams/kafka";
 *
 * function report(envelope: KafkaInvalidEnvelope): string {
 *   const { topic, offset } = envelope.record;
 *   return `${topic}@${offset} is not a CloudEvent (${envelope.error.code})`;
 * }
 *
 * const record: ConsumedRecord = {
 *   topic: "dx.telemetry",
 *   partition: 2,
 *   offset: "1042",
 *   key: null,
 *   value: new TextEncoder().encode('{"celsius":20}'),
 *   headers: { "ce_id": "r-1", "content-type": "application/json" },
 *   timestamp: "1735689600000",
 * };
 * console.log(report({
 *   kind: "invalid",
 *   error: new CloudEventError("missing-attribute", 'No "source" attribute'),
 *   record,
 *   attempt: 1,
 *   receivedAt: Date.now(),
 *   ack() {},
 *   nack() {},
 * })); // dx.telemetry@1042 is not a CloudEvent (missing-attribute)
 * ```
 */
export interface KafkaInvalidEnvelope extends KafkaEnvelopeBase {
  /** Discriminates the union. */
  readonly kind: "invalid";
  /** What is wrong with it; `error.code` is a stable reason code. */
  readonly error: CloudEventError;
}

/**
 * One item of {@linkcode kafkaStream}.
 *
 * @example Store each event, retry on failure, dead-letter the rest
 * ```ts
 * import type { CloudEvent } from "@dataexchange/streams/cloudevents";
 * import { type KafkaEnvelope, kafkaStream } from "@dataexchange/streams/kafka";
 *
 * async function handle(
 *   envelope: KafkaEnvelope,
 *   store: (event: CloudEvent) => Promise<void>,
 * ): Promise<void> {
 *   if (envelope.kind === "invalid") {
 *     envelope.nack(envelope.error); // never retried: dead-lettered at once
 *     return;
 *   }
 *   try {
 *     await store(envelope.event);
 *     envelope.ack();
 *   } catch (error) {
 *     envelope.nack(error); // retried after a backoff, then dead-lettered
 *   }
 * }
 *
 * // Needs Kafka on 127.0.0.1:9092: runs when this file is run as a script.
 * if (import.meta.main) {
 *   const stream = kafkaStream({
 *     brokers: ["127.0.0.1:9092"],
 *     groupId: "archiver",
 *     topics: ["dx.telemetry"],
 *     deadLetterTopic: "dx.deadletter",
 *   });
 *   for await (const envelope of stream) {
 *     await handle(envelope, (event) => Promise.resolve(console.log(event.id)));
 *   }
 * }
 * ```
 */
export type KafkaEnvelope = KafkaEventEnvelope | KafkaInvalidEnvelope;

/**
 * What a `nack()` leads to.
 *
 * @example Five attempts, then stop rather than dead-letter
 * ```ts
 * import { kafkaStream, type NackPolicy } from "@dataexchange/streams/kafka";
 *
 * const nack: NackPolicy = {
 *   maxAttempts: 5,
 *   initialDelayMs: 500,
 *   maxDelayMs: 30_000,
 *   exhausted: "stop",
 * };
 *
 * // Needs Kafka on 127.0.0.1:9092: runs when this file is run as a script.
 * if (import.meta.main) {
 *   // No deadLetterTopic is needed with exhausted: "stop".
 *   const stream = kafkaStream({
 *     brokers: ["127.0.0.1:9092"],
 *     groupId: "ledger",
 *     topics: ["dx.payments"],
 *     nack,
 *   });
 *   for await (const envelope of stream) envelope.ack();
 * }
 * ```
 */
export interface NackPolicy {
  /**
   * Deliveries in all before giving up, the first included. Default 3.
   * Invalid records are never retried: decoding them again cannot succeed;
   * nor are records nacked with a `DataExchangeError` whose `retriable` is
   * `false`.
   */
  maxAttempts?: number;
  /** Upper bound of the first retry delay, in milliseconds. Default 200. */
  initialDelayMs?: number;
  /** Upper bound of any retry delay, in milliseconds. Default 10000. */
  maxDelayMs?: number;
  /**
   * Where the jitter comes from: returns a number from 0 (included) to 1
   * (excluded), as `Math.random` does, which is the default. A fixed one
   * makes the delays repeatable; see {@linkcode retryDelayMs}.
   */
  random?: () => number;
  /**
   * When attempts run out: write the record to `deadLetterTopic` and move
   * on (`"dead-letter"`, the default), or end the stream with an error
   * (`"stop"`), leaving the record uncommitted.
   */
  exhausted?: "dead-letter" | "stop";
}

/**
 * Options of {@linkcode kafkaStream}.
 *
 * @example A group that reads from the start, in small steps
 * ```ts
 * import {
 *   kafkaStream,
 *   type KafkaStreamOptions,
 * } from "@dataexchange/streams/kafka";
 *
 * const stop = new AbortController();
 * const options: KafkaStreamOptions = {
 *   brokers: ["127.0.0.1:9092"],
 *   groupId: "replay-2025-01",
 *   topics: ["dx.telemetry", "dx.alerts"],
 *   fromBeginning: true,
 *   maxInFlight: 100,
 *   commitEvery: 50,
 *   deadLetterTopic: "dx.deadletter",
 *   signal: stop.signal,
 * };
 *
 * // Needs Kafka on 127.0.0.1:9092: runs when this file is run as a script.
 * if (import.meta.main) {
 *   let seen = 0;
 *   for await (const envelope of kafkaStream(options)) {
 *     envelope.ack();
 *     if (++seen === 1000) stop.abort(); // drains, commits, disconnects
 *   }
 * }
 * ```
 */
export interface KafkaStreamOptions extends KafkaConnectionOptions {
  /** Consumer group id. */
  groupId: string;
  /** Topics to read. */
  topics: readonly string[];
  /** Where a group with no committed offset starts: the earliest record. Default `false` (the latest). */
  fromBeginning?: boolean;
  /**
   * Most records handed out and not yet settled. At the cap fetching pauses
   * (heartbeats go on) until records are settled. Default 1000.
   */
  maxInFlight?: number;
  /**
   * Longest a fetch waits for records, in milliseconds. It also bounds how
   * long stopping takes. Default 1000.
   */
  maxWaitTimeMs?: number;
  /**
   * How long the group waits for a heartbeat of this consumer before it
   * gives its partitions to others, in milliseconds: after a crash, how long
   * until its uncommitted records are read again. Heartbeats are sent every
   * third of it, at most 3 s apart, also while fetching is paused. The
   * broker refuses values outside its `group.min.session.timeout.ms` (6000
   * by default) and `group.max.session.timeout.ms`. Default 30000.
   */
  sessionTimeoutMs?: number;
  /** Commit at least this often while acknowledgements arrive, in ms. Default 1000. */
  commitIntervalMs?: number;
  /** Commit at once after this many acknowledgements. Default 500. */
  commitEvery?: number;
  /** What `nack()` does; see {@linkcode NackPolicy}. */
  nack?: NackPolicy;
  /**
   * Topic for records given up on, with `dx-error`, `dx-error-detail`,
   * `dx-source-topic`, `dx-source-partition` and `dx-source-offset` headers.
   * Required unless `nack.exhausted` is `"stop"`.
   */
  deadLetterTopic?: string;
  /**
   * When `signal` aborts, how long to wait for handed-out envelopes to be
   * settled before the last commit, in milliseconds. Default 10000.
   */
  drainTimeoutMs?: number;
  /** Ends the stream: it stops fetching, drains, commits, disconnects. */
  signal?: AbortSignal;
  /** Called after each successful commit. */
  onCommit?: (commits: readonly OffsetCommit[]) => void;
  /**
   * Called once Kafka has acknowledged a record's copy in `deadLetterTopic`,
   * with the record and its `dx-error` code (to count dead letters, say).
   * What it throws is logged and ignored.
   */
  onDeadLetter?: (deadLetter: DeadLetterEvent) => void;
}

/**
 * A record written to the dead-letter topic by {@linkcode kafkaStream}.
 *
 * @example Count dead letters by code
 * ```ts
 * import type {
 *   DeadLetterEvent,
 *   KafkaStreamOptions,
 * } from "@dataexchange/streams/kafka";
 *
 * const counts = new Map<string, number>();
 * const options: KafkaStreamOptions = {
 *   brokers: ["127.0.0.1:9092"],
 *   groupId: "counting",
 *   topics: ["dx.commands"],
 *   deadLetterTopic: "dx.deadletter",
 *   onDeadLetter: ({ code }: DeadLetterEvent) =>
 *     counts.set(code, (counts.get(code) ?? 0) + 1),
 * };
 * // kafkaStream(options) would count into `counts`; here, by hand:
 * options.onDeadLetter?.({
 *   record: {
 *     topic: "dx.commands",
 *     partition: 0,
 *     offset: "7",
 *     key: null,
 *     value: null,
 *     headers: {},
 *     timestamp: "0",
 *   },
 *   code: "processing-failed",
 * });
 * console.log(counts.get("processing-failed")); // 1
 * ```
 */
export interface DeadLetterEvent {
  /** The record given up on, as it was read. */
  readonly record: ConsumedRecord;
  /** Its `dx-error` code, such as `"processing-failed"`. */
  readonly code: string;
}

/**
 * The stream, with a way to force a commit.
 *
 * @example Commit before a slow step
 * ```ts
 * import { kafkaStream } from "@dataexchange/streams/kafka";
 *
 * // Needs Kafka on 127.0.0.1:9092: runs when this file is run as a script.
 * if (import.meta.main) {
 *   const stream = kafkaStream({
 *     brokers: ["127.0.0.1:9092"],
 *     groupId: "reporter",
 *     topics: ["dx.telemetry"],
 *     deadLetterTopic: "dx.deadletter",
 *   });
 *   for await (const envelope of stream) {
 *     envelope.ack();
 *     if (stream.inFlight === 0) await stream.commit(); // confirmed by Kafka
 *   }
 * }
 * ```
 */
export interface KafkaStream
  extends AsyncGenerator<KafkaEnvelope, void, undefined> {
  /** Commits what may be committed now; resolves when Kafka confirmed it. */
  commit(): Promise<void>;
  /** Records fetched and not yet settled (queued, handed out or retrying). */
  readonly inFlight: number;
  /**
   * The partitions whose fetching is paused now, as the Kafka client reports
   * them: those that reached `maxInFlight`, or all while the stream drains.
   */
  readonly paused: ReadonlyArray<{ topic: string; partition: number }>;
}

/**
 * Reads Kafka topics in a consumer group and yields each record as a
 * CloudEvent envelope (binary or structured content mode, detected per
 * record) with `ack()` and `nack()`.
 *
 * Commits: offsets are committed only for the contiguous run of
 * acknowledged records of each partition, so acknowledging out of order
 * never commits past a record in work. Commits are batched (`commitEvery`,
 * `commitIntervalMs`) and flushed when the stream ends and when a rebalance
 * starts, before this consumer rejoins the group, so a partition moves with
 * its acknowledged prefix committed. A record whose partition was revoked can
 * still be settled: `ack()` and `nack()` then do nothing (no commit, retry,
 * dead-letter write or stop; logged at debug), a retry waiting for it is
 * cancelled, and the partition's new owner reads it again from the last
 * commit. The outcome is at-least-once: after a crash, what was not committed
 * is read again once `sessionTimeoutMs` has passed.
 *
 * `nack()` retries the record in this stream after a backoff with full
 * jitter, up to `nack.maxAttempts`, then writes it to the dead-letter topic
 * (or ends the stream, as configured). A poison record therefore never
 * blocks its partition for ever, and is never dropped silently.
 *
 * @param options Group, topics, limits and policies.
 * @returns An async generator of envelopes, with `commit()`.
 * @throws {TypeError} When no dead-letter topic is given for the
 *   `"dead-letter"` policy.
 *
 * @example Consume, acknowledge and retry
 * ```ts
 * import { kafkaStream } from "@dataexchange/streams/kafka";
 *
 * // Needs Kafka on 127.0.0.1:9092: runs when this file is run as a script.
 * if (import.meta.main) {
 *   for await (
 *     const envelope of kafkaStream({
 *       brokers: ["127.0.0.1:9092"],
 *       groupId: "example",
 *       topics: ["dx.telemetry"],
 *       deadLetterTopic: "dx.deadletter",
 *     })
 *   ) {
 *     if (envelope.kind === "invalid") envelope.nack(envelope.error);
 *     else envelope.ack();
 *   }
 * }
 * ```
 */
export function kafkaStream(options: KafkaStreamOptions): KafkaStream {
  const policy = {
    maxAttempts: options.nack?.maxAttempts ?? 3,
    initialDelayMs: options.nack?.initialDelayMs ?? 200,
    maxDelayMs: options.nack?.maxDelayMs ?? 10000,
    exhausted: options.nack?.exhausted ?? "dead-letter",
    random: options.nack?.random ?? Math.random,
  };
  if (policy.exhausted === "dead-letter" && !options.deadLetterTopic) {
    throw new TypeError(
      'kafkaStream needs a deadLetterTopic for nack.exhausted "dead-letter" (the default); give one, or set nack.exhausted to "stop"',
    );
  }
  if (options.topics.length === 0) {
    throw new TypeError("kafkaStream needs at least one topic, got none");
  }
  const state = new StreamState(options, policy);
  const generator = state.run();
  return Object.defineProperties(generator, {
    commit: { value: () => state.flushCommits() },
    inFlight: { get: () => state.inFlight },
    paused: { get: () => state.paused },
  }) as KafkaStream;
}

/**
 * The delay before retry number `attempt` of a nacked record: exponential
 * backoff with full jitter, capped. The bound starts at `initialDelayMs`,
 * doubles with each attempt and never exceeds `maxDelayMs`; the delay is a
 * uniformly random point below it, so that records that failed together do
 * not all come back at once. Internal to the package: not exported by
 * `mod.ts`.
 *
 * @param attempt The delivery that failed: 1 for the first.
 * @param bounds The first bound and the cap, in milliseconds.
 * @param random A number from 0 (included) to 1 (excluded).
 * @returns The delay, in milliseconds, from 0 up to (not including) the bound.
 * @throws {RangeError} When `attempt` is not a positive integer.
 *
 * @example The bound doubles, then stays at the cap
 * ```ts
 * import { retryDelayMs } from "./stream.ts";
 *
 * const bounds = { initialDelayMs: 100, maxDelayMs: 300 };
 * const half = () => 0.5;
 * console.log([1, 2, 3].map((n) => retryDelayMs(n, bounds, half))); // [50, 100, 150]
 * ```
 */
export function retryDelayMs(
  attempt: number,
  bounds: { readonly initialDelayMs: number; readonly maxDelayMs: number },
  random: () => number = Math.random,
): number {
  if (!Number.isInteger(attempt) || attempt < 1) {
    throw new RangeError(
      `retryDelayMs needs an attempt number from 1, got ${attempt}`,
    );
  }
  const bound = Math.min(
    bounds.maxDelayMs,
    bounds.initialDelayMs * 2 ** (attempt - 1),
  );
  return random() * bound;
}

type Policy = Required<NackPolicy>;

class StreamState {
  #options: KafkaStreamOptions;
  #policy: Policy;
  #maxInFlight: number;
  #sessionTimeoutMs: number;
  #tracker = new CommitTracker();
  #queue: KafkaEnvelope[] = [];
  #inFlight = 0;
  #unsettled = 0;
  #acksSinceCommit = 0;
  #paused: Array<() => void> = [];
  #wake: (() => void) | undefined;
  #settledWaiters: Array<() => void> = [];
  #fatal: unknown;
  #committing: Promise<void> = Promise.resolve();
  #consumer: Consumer | undefined;
  #deadLetters: Promise<KafkaSink> | undefined;
  #deadLettering = new Set<Promise<void>>();
  #stop = new AbortController();
  /** Ends retry waits when the stream drains: nobody would take the retry. */
  #retryWaits = new AbortController();

  constructor(options: KafkaStreamOptions, policy: Policy) {
    this.#options = options;
    this.#policy = policy;
    this.#maxInFlight = options.maxInFlight ?? 1000;
    if (!Number.isInteger(this.#maxInFlight) || this.#maxInFlight < 1) {
      throw new RangeError(
        `kafkaStream maxInFlight must be a positive integer, got ${this.#maxInFlight}`,
      );
    }
    this.#sessionTimeoutMs = options.sessionTimeoutMs ?? 30000;
    if (
      !Number.isInteger(this.#sessionTimeoutMs) || this.#sessionTimeoutMs < 3
    ) {
      throw new RangeError(
        `kafkaStream sessionTimeoutMs must be an integer of at least 3 (ms), got ${this.#sessionTimeoutMs}`,
      );
    }
  }

  async *run(): AsyncGenerator<KafkaEnvelope, void, undefined> {
    const options = this.#options;
    const signal = options.signal;
    const onAbort = () => this.#notify();
    signal?.addEventListener("abort", onAbort, { once: true });
    const kafka = createKafka(options);
    const consumer = kafka.consumer({
      groupId: options.groupId,
      allowAutoTopicCreation: false,
      maxWaitTimeInMs: options.maxWaitTimeMs ?? 1000,
      sessionTimeout: this.#sessionTimeoutMs,
      heartbeatInterval: Math.min(
        3000,
        Math.floor(this.#sessionTimeoutMs / 3),
      ),
    });
    this.#consumer = consumer;
    const timer = setInterval(
      () => this.#flushInBackground("interval"),
      options.commitIntervalMs ?? 1000,
    );
    try {
      try {
        await connectWithRetry(() => consumer.connect(), options.brokers, {
          signal,
        });
      } catch (error) {
        if (signal?.aborted) return;
        throw error;
      }
      consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
        this.#onAssignment(payload.memberAssignment);
      });
      // A rebalance takes partitions away when this consumer rejoins the
      // group. kafkajs emits REBALANCING just before it rejoins and offers no
      // hook to wait in, so the commit is sent from here at once, ahead of
      // any commit under way. Rejoining first asks for the group coordinator
      // (a round trip) and only then sends JoinGroup, on the coordinator
      // connection where this commit already is; Kafka answers the requests
      // of a connection in order, and takes commits of the current
      // generation while the group prepares to rebalance. So the acknowledged
      // prefix is committed before the partitions can move.
      consumer.on(consumer.events.REBALANCING, () => {
        // It never rejects: a failure is logged there.
        void this.#commitBeforeRejoin();
      });
      await consumer.subscribe({
        topics: [...options.topics],
        fromBeginning: options.fromBeginning ?? false,
      });
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        eachBatch: (payload) => this.#take(payload),
      });
      logger.info("Kafka consumer started for {topics}", {
        topics: options.topics,
        groupId: options.groupId,
      });
      while (!signal?.aborted) {
        if (this.#fatal !== undefined) throw this.#fatal;
        const envelope = this.#queue.shift();
        if (envelope !== undefined) {
          this.#unsettled++;
          yield envelope;
          continue;
        }
        await new Promise<void>((resolve) => this.#wake = resolve);
      }
      await this.#drain(options.drainTimeoutMs ?? 10000);
    } finally {
      signal?.removeEventListener("abort", onAbort);
      clearInterval(timer);
      // Dead-letter writes under way are let finish (within the drain
      // timeout), so their records can be committed; retry waits are not.
      await settleWithin(
        Promise.allSettled(this.#deadLettering),
        options.drainTimeoutMs ?? 10000,
      );
      const closed = new DataExchangeError(
        "stream-closed",
        "The Kafka stream ended",
      );
      this.#retryWaits.abort(closed);
      this.#stop.abort(closed);
      await this.flushCommits().catch((error) =>
        logger.warn("Final Kafka commit failed: {error}", {
          error: describeError(error),
        })
      );
      await consumer.disconnect().catch(() => {});
      await this.#deadLetters?.then((sink) => sink.close(), () => {});
      logger.info("Kafka consumer stopped", { groupId: options.groupId });
    }
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  get paused(): Array<{ topic: string; partition: number }> {
    return (this.#consumer?.paused() ?? []).flatMap(({ topic, partitions }) =>
      partitions.map((partition) => ({ topic, partition }))
    );
  }

  /** Commits what may be committed; one commit request at a time. */
  flushCommits(): Promise<void> {
    const next = this.#committing.then(() => this.#commit());
    // The caller gets the failure; the chain only orders the requests.
    this.#committing = next.catch(() => {});
    return next;
  }

  /** A commit nobody waits for (interval, count): a failure is logged. */
  #flushInBackground(trigger: "interval" | "count"): void {
    this.flushCommits().catch((error) =>
      logger.warn(
        "Kafka commit ({trigger}) failed; the next one commits the same offsets: {error}",
        {
          trigger,
          groupId: this.#options.groupId,
          error: describeError(error),
        },
      )
    );
  }

  /**
   * Commits at once, without waiting for a commit under way: the request
   * must be on its way before kafkajs rejoins the group (see the REBALANCING
   * handler). Kafka handles both requests in the order they were sent, and
   * this one carries offsets at least as far along.
   */
  #commitBeforeRejoin(): Promise<void> {
    const now = this.#commit().catch((error) => {
      logger.warn(
        "Kafka commit before a rebalance failed; the next owners of the partitions read again from the last commit: {error}",
        { groupId: this.#options.groupId, error: describeError(error) },
      );
    });
    const previous = this.#committing;
    this.#committing = Promise.all([previous, now]).then(() => {});
    return now;
  }

  /** Sends the pending commits; the request is written before any I/O wait. */
  async #commit(): Promise<void> {
    const consumer = this.#consumer;
    const commits = this.#tracker.pendingCommits();
    if (consumer === undefined || commits.length === 0) return;
    this.#acksSinceCommit = 0;
    await consumer.commitOffsets(commits);
    this.#tracker.committed(commits);
    logger.debug("Committed {count} partition offsets", {
      count: commits.length,
      commits,
    });
    this.#options.onCommit?.(commits);
  }

  async #take(payload: EachBatchPayload): Promise<void> {
    const { batch } = payload;
    const track = this.#tracker.track(batch.topic, batch.partition);
    for (const message of batch.messages) {
      if (
        !payload.isRunning() || payload.isStale() || this.#stop.signal.aborted
      ) {
        break;
      }
      if (this.#inFlight >= this.#maxInFlight) {
        // Fetching of this partition resumes when records are settled; the
        // rest of the batch is fetched again from the last resolved offset.
        this.#paused.push(payload.pause());
        break;
      }
      const offset = BigInt(message.offset);
      if (track.track(offset)) {
        this.#inFlight++;
        this.#queue.push(
          this.#envelope(
            toRecord(batch.topic, batch.partition, message),
            track,
            1,
          ),
        );
        this.#notify();
      }
      payload.resolveOffset(message.offset);
    }
    try {
      await payload.heartbeat();
    } catch (error) {
      // The group is rebalancing and kafkajs rejoins once this throws: commit
      // first, and wait for it, while this member's generation is current.
      if ((error as { type?: unknown }).type === "REBALANCE_IN_PROGRESS") {
        await this.#commitBeforeRejoin();
      }
      throw error;
    }
  }

  #envelope(
    record: ConsumedRecord,
    track: PartitionTrack,
    attempt: number,
  ): KafkaEnvelope {
    let settled = false;
    const base = {
      record,
      attempt,
      receivedAt: Date.now(),
      ack: () => {
        if (settled) return;
        settled = true;
        if (track.revoked.aborted) this.#logRevoked("Ack", record);
        this.#settle(record, track);
      },
      nack: (reason: unknown) => {
        if (settled) return;
        settled = true;
        if (track.revoked.aborted) {
          // Neither retried, dead-lettered nor fatal: the partition's new
          // owner reads the record again from the last commit.
          this.#logRevoked("Nack", record);
          this.#settle(record, track);
          return;
        }
        this.#unsettled--;
        this.#nack(record, track, attempt, reason, envelope.kind === "invalid");
      },
    };
    let envelope: KafkaEnvelope;
    try {
      envelope = { kind: "event", event: fromKafkaRecord(record), ...base };
    } catch (error) {
      const cause = error instanceof CloudEventError
        ? error
        : new CloudEventError(
          "invalid-encoding",
          `Record ${record.topic}/${record.partition}@${record.offset} could not be decoded`,
          { cause: error },
        );
      envelope = { kind: "invalid", error: cause, ...base };
    }
    return envelope;
  }

  /** A record is done: count it, move the commit point, resume fetching. */
  #settle(
    record: ConsumedRecord,
    track: PartitionTrack,
    handedOut = true,
  ): void {
    if (handedOut) this.#unsettled--;
    this.#inFlight--;
    if (this.#tracker.isCurrent(record.topic, record.partition, track)) {
      if (track.ack(BigInt(record.offset))) {
        this.#acksSinceCommit++;
        if (this.#acksSinceCommit >= (this.#options.commitEvery ?? 500)) {
          this.#flushInBackground("count");
        }
      }
    }
    this.#resumeBelowCap();
    if (this.#unsettled === 0) {
      for (const resolve of this.#settledWaiters.splice(0)) resolve();
    }
  }

  #resumeBelowCap(): void {
    if (this.#inFlight < this.#maxInFlight && this.#paused.length > 0) {
      for (const resume of this.#paused.splice(0)) resume();
    }
  }

  #logRevoked(what: "Ack" | "Nack" | "Retry", record: ConsumedRecord): void {
    logger.debug(
      "{what} of {topic}/{partition}@{offset} ignored: the partition was revoked",
      {
        what,
        topic: record.topic,
        partition: record.partition,
        offset: record.offset,
        groupId: this.#options.groupId,
        clientId: this.#options.clientId,
      },
    );
  }

  #nack(
    record: ConsumedRecord,
    track: PartitionTrack,
    attempt: number,
    reason: unknown,
    invalid: boolean,
  ): void {
    const policy = this.#policy;
    const where = {
      topic: record.topic,
      partition: record.partition,
      offset: record.offset,
    };
    // A failure that says it cannot pass (such as an MQTT topic that cannot
    // be built from the event) is not retried either.
    const permanent = isDataExchangeError(reason) && !reason.retriable;
    if (!invalid && !permanent && attempt < policy.maxAttempts) {
      const delayMs = retryDelayMs(attempt, policy, policy.random);
      logger.warn(
        "Record nacked; attempt {attempt} of {maxAttempts}, retrying in {delayMs} ms: {error}",
        {
          ...where,
          attempt,
          maxAttempts: policy.maxAttempts,
          delayMs: Math.round(delayMs),
          error: describeError(reason),
        },
      );
      const waiting = abortableDelay(
        delayMs,
        AbortSignal.any([this.#retryWaits.signal, track.revoked]),
      ).then(() => {
        this.#queue.push(this.#envelope(record, track, attempt + 1));
        this.#notify();
      }, () => {
        if (this.#retryWaits.signal.aborted) {
          // Ending: the record stays uncommitted and is read again later.
          return;
        }
        // Revoked while waiting: the record is no longer this consumer's.
        this.#logRevoked("Retry", record);
        this.#settle(record, track, false);
      });
      this.#unsettledWhileWaiting(waiting, record);
      return;
    }
    if (policy.exhausted === "stop") {
      this.#fatal = new DataExchangeError(
        "record-failed",
        `Record ${record.topic}/${record.partition}@${record.offset} failed ${attempt} time(s); stopping as configured (nack.exhausted "stop"): ${
          describeError(reason)
        }`,
        { cause: reason },
      );
      this.#notify();
      return;
    }
    const writing = this.#deadLetter(record, reason).then(() =>
      this.#settle(record, track, false)
    );
    this.#deadLettering.add(writing);
    writing.catch(() => {}).finally(() => this.#deadLettering.delete(writing));
    this.#unsettledWhileWaiting(writing, record);
  }

  /** Keeps the stream's drain waiting for a retry or a dead-letter write. */
  #unsettledWhileWaiting(work: Promise<void>, record: ConsumedRecord) {
    this.#unsettled++;
    work.catch((error) => {
      if (this.#stop.signal.aborted) {
        // Ending: the record stays uncommitted and is read again later.
        return;
      }
      logger.error(
        "Record {topic}/{partition}@{offset} could not be dead-lettered; it stays uncommitted: {error}",
        {
          topic: record.topic,
          partition: record.partition,
          offset: record.offset,
          error: describeError(error),
        },
      );
      this.#fatal = error;
      this.#notify();
    }).finally(() => {
      this.#unsettled--;
      if (this.#unsettled === 0) {
        for (const resolve of this.#settledWaiters.splice(0)) resolve();
      }
    });
  }

  async #deadLetter(record: ConsumedRecord, reason: unknown): Promise<void> {
    const options = this.#options;
    // The consumer's own connection settings (TLS, SASL, timeouts) apply.
    this.#deadLetters ??= KafkaSink.connect({
      brokers: options.brokers,
      clientId: options.clientId,
      requestTimeoutMs: options.requestTimeoutMs,
      connectionTimeoutMs: options.connectionTimeoutMs,
      tls: options.tls,
      sasl: options.sasl,
      signal: this.#stop.signal,
    });
    const sink = await this.#deadLetters;
    const code = reason instanceof DataExchangeError
      ? reason.code
      : "processing-failed";
    await sink.send(
      options.deadLetterTopic!,
      deadLetterFromKafka(record, code, describeError(reason)),
    );
    logger.warn(
      "Record dead-lettered from {topic}/{partition}@{offset}: {code}",
      {
        topic: record.topic,
        partition: record.partition,
        offset: record.offset,
        code,
      },
    );
    try {
      options.onDeadLetter?.({ record, code });
    } catch (error) {
      logger.error("onDeadLetter threw; ignored: {error}", {
        error: describeError(error),
      });
    }
  }

  #onAssignment(assignment: Record<string, number[]>): void {
    const dropped = this.#tracker.retain(assignment);
    if (dropped.length === 0) return;
    const revoked = new Set(dropped.map((p) => `${p.partition}:${p.topic}`));
    const kept = this.#queue.filter((e) =>
      !revoked.has(`${e.record.partition}:${e.record.topic}`)
    );
    this.#inFlight -= this.#queue.length - kept.length;
    this.#queue = kept;
    logger.info("Partitions revoked: {partitions}", {
      partitions: dropped,
      groupId: this.#options.groupId,
      clientId: this.#options.clientId,
    });
    // Records dropped from the queue may bring the count below the cap with
    // nothing left to settle: resume the partitions still owned now.
    this.#resumeBelowCap();
  }

  async #drain(timeoutMs: number): Promise<void> {
    // Pause rather than stop: commits need the consumer's group membership,
    // and heartbeats go on while paused.
    this.#paused.length = 0;
    this.#consumer?.pause(this.#options.topics.map((topic) => ({ topic })));
    // What waits for a retry is left uncommitted rather than waited for: the
    // retry would come after the stream stopped handing records out.
    this.#retryWaits.abort(
      new DataExchangeError("stream-closed", "The Kafka stream is draining"),
    );
    if (this.#unsettled === 0) return;
    await settleWithin(
      new Promise<void>((resolve) => this.#settledWaiters.push(resolve)),
      timeoutMs,
    );
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

/** Waits for `promise`, or `timeoutMs`, whichever comes first. */
async function settleWithin(
  promise: Promise<unknown>,
  timeoutMs: number,
): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    promise,
    new Promise((resolve) => timer = setTimeout(resolve, timeoutMs)),
  ]);
  clearTimeout(timer);
}

function toRecord(
  topic: string,
  partition: number,
  message: KafkaMessage,
): ConsumedRecord {
  return {
    topic,
    partition,
    offset: message.offset,
    key: plainBytes(message.key),
    value: plainBytes(message.value),
    headers: message.headers ?? {},
    timestamp: message.timestamp,
  };
}

/**
 * kafkajs hands out Node `Buffer`s; the stream's public types promise plain
 * `Uint8Array`s (a view of the same memory, not a copy).
 */
function plainBytes(bytes: Uint8Array | null | undefined): Uint8Array | null {
  return bytes == null
    ? null
    : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * The dead-letter record of a Kafka record: its key, value and headers
 * unchanged (the first value of a repeated header), plus the reason and where
 * it came from: `dx-error`, `dx-error-detail` (cut to 1024 characters),
 * `dx-source-topic`, `dx-source-partition` and `dx-source-offset`. It never
 * throws for a record as {@linkcode kafkaStream} hands it out.
 *
 * @param record The record as read.
 * @param code Why it is dead-lettered: a stable code, such as a
 *   {@linkcode CloudEventErrorCode}.
 * @param detail A readable account of the failure.
 * @returns The record to produce to the dead-letter topic.
 *
 * @example Dead-letter a record your own handler cannot take
 * ```ts
 * import {
 *   type ConsumedRecord,
 *   deadLetterFromKafka,
 * } from "@dataexchange/streams/kafka";
 *
 * const record: ConsumedRecord = {
 *   topic: "dx.telemetry",
 *   partition: 2,
 *   offset: "1042",
 *   key: null,
 *   value: new TextEncoder().encode('{"celsius":20}'),
 *   headers: { "ce_id": "r-1", "content-type": "application/json" },
 *   timestamp: "1735689600000",
 * };
 * const dead = deadLetterFromKafka(record, "schema-mismatch", "no unit given");
 * const header = (name: string) => new TextDecoder().decode(dead.headers[name]);
 * console.log(header("dx-error"), header("dx-source-offset")); // schema-mismatch 1042
 * console.log(dead.value === record.value); // true
 * ```
 */
export function deadLetterFromKafka(
  record: ConsumedRecord,
  code: string,
  detail: string,
): KafkaRecord {
  const headers: Record<string, Uint8Array> = {};
  for (const [name, value] of Object.entries(record.headers)) {
    const first = Array.isArray(value) ? value[0] : value;
    if (first === undefined) continue;
    headers[name] = typeof first === "string" ? encoder.encode(first) : first;
  }
  headers["dx-error"] = encoder.encode(code);
  headers["dx-error-detail"] = encoder.encode(detail.slice(0, 1024));
  headers["dx-source-topic"] = encoder.encode(record.topic);
  headers["dx-source-partition"] = encoder.encode(String(record.partition));
  headers["dx-source-offset"] = encoder.encode(record.offset);
  return { key: record.key, value: record.value, headers };
}
