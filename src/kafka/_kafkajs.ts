/**
 * What the Kafka modules share about kafkajs: the client factory that sends
 * kafkajs' own logs to LogTape, the conversion of records, the reading of
 * its errors, and how long a topic Kafka does not know is waited for.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { Buffer } from "node:buffer";
import {
  type Admin,
  type AdminConfig,
  type Consumer,
  type ConsumerConfig,
  Kafka,
  type KafkaConfig,
  logLevel,
  type Message,
  type Producer,
  type ProducerConfig,
  type SASLOptions,
} from "kafkajs";
import type { KafkaRecord } from "../cloudevents/mod.ts";
import { DataExchangeError } from "../errors.ts";
import { TLS_VERIFY_CODES } from "../_tls.ts";

/**
 * Connection settings shared by the Kafka sink and stream.
 *
 * @example One connection setting for a sink and a stream
 * ```ts
 * import {
 *   type KafkaConnectionOptions,
 *   KafkaSink,
 *   kafkaStream,
 * } from "@dataexchange/streams/kafka";
 *
 * const connection: KafkaConnectionOptions = {
 *   brokers: ["127.0.0.1:9092"],
 *   clientId: "sensor-gateway",
 *   requestTimeoutMs: 10_000,
 *   connectionTimeoutMs: 2_000,
 * };
 *
 * // Needs Kafka on 127.0.0.1:9092: runs when this file is run as a script.
 * if (import.meta.main) {
 *   await using sink = await KafkaSink.connect({ ...connection, lingerMs: 10 });
 *   const stream = kafkaStream({
 *     ...connection,
 *     groupId: "gateway",
 *     topics: ["dx.commands"],
 *     deadLetterTopic: "dx.deadletter",
 *   });
 *   for await (const envelope of stream) envelope.ack();
 *   await sink.flush();
 * }
 * ```
 */
export interface KafkaConnectionOptions {
  /** Bootstrap brokers as `host:port`. */
  brokers: readonly string[];
  /** Client id reported to the brokers. Default `dx-bridge`. */
  clientId?: string;
  /** How long a request may take before it fails, in milliseconds. Default 30000. */
  requestTimeoutMs?: number;
  /** How long a connection attempt may take, in milliseconds. Default 3000. */
  connectionTimeoutMs?: number;
  /** TLS: `true` for the system's CAs, or PEM contents to trust and present. */
  tls?: boolean | KafkaTlsOptions;
  /** SASL authentication. */
  sasl?: KafkaSaslOptions;
}

/**
 * PEM contents (not paths) for a TLS connection to Kafka.
 *
 * @example Mutual TLS from PEM files
 * ```ts
 * import { KafkaSink, type KafkaTlsOptions } from "@dataexchange/streams/kafka";
 *
 * async function tlsFrom(dir: string): Promise<KafkaTlsOptions> {
 *   return {
 *     ca: await Deno.readTextFile(`${dir}/ca.pem`),
 *     cert: await Deno.readTextFile(`${dir}/client.pem`),
 *     key: await Deno.readTextFile(`${dir}/client-key.pem`),
 *     rejectUnauthorized: true,
 *   };
 * }
 *
 * // Needs a TLS listener and the PEM files: runs as a script only.
 * if (import.meta.main) {
 *   const tls = await tlsFrom("/etc/dx/kafka");
 *   await using sink = await KafkaSink.connect({ brokers: ["kafka:9093"], tls });
 * }
 * ```
 */
export interface KafkaTlsOptions {
  /** CA certificates to trust. */
  ca?: string;
  /** Client certificate. */
  cert?: string;
  /** Client private key. */
  key?: string;
  /** Refuse brokers whose certificate does not verify. Default true. */
  rejectUnauthorized?: boolean;
}

/**
 * SASL credentials for Kafka.
 *
 * @example SCRAM login with the password from the environment
 * ```ts
 * import { KafkaSink, type KafkaSaslOptions } from "@dataexchange/streams/kafka";
 *
 * // Needs a broker with this SASL user: runs as a script only.
 * if (import.meta.main) {
 *   const sasl: KafkaSaslOptions = {
 *     mechanism: "scram-sha-512",
 *     username: "bridge",
 *     password: Deno.env.get("KAFKA_PASSWORD") ?? "",
 *   };
 *   await using sink = await KafkaSink.connect({
 *     brokers: ["kafka:9093"],
 *     tls: true,
 *     sasl,
 *   });
 * }
 * ```
 */
export interface KafkaSaslOptions {
  /** The mechanism. */
  mechanism: "plain" | "scram-sha-256" | "scram-sha-512";
  /** User name. */
  username: string;
  /** Password. */
  password: string;
}

const kafkajsLogger = getLogger(["dataexchange", "kafka", "kafkajs"]);

/**
 * Creates a kafkajs client whose logs go to LogTape, and whose producers,
 * consumers and admin clients fail to connect with errors that say what to
 * do (see {@linkcode explainConnectError}).
 */
export function createKafka(options: KafkaConnectionOptions): Kafka {
  if (options.brokers.length === 0) {
    throw new TypeError(
      "Kafka needs at least one bootstrap broker as host:port, got none",
    );
  }
  return new ExplainingKafka(options, {
    clientId: options.clientId ?? "dx-bridge",
    brokers: [...options.brokers],
    requestTimeout: options.requestTimeoutMs ?? 30000,
    connectionTimeout: options.connectionTimeoutMs ?? 3000,
    ssl: options.tls === undefined || typeof options.tls === "boolean"
      ? options.tls
      : {
        ca: options.tls.ca === undefined ? undefined : [options.tls.ca],
        cert: options.tls.cert,
        key: options.tls.key,
        rejectUnauthorized: options.tls.rejectUnauthorized ?? true,
      },
    // kafkajs types SASL as one object per mechanism; ours is the union.
    sasl: options.sasl as SASLOptions | undefined,
    // Our own retry loop decides for how long to keep trying; kafkajs only
    // gets a few quick attempts so a failure surfaces to it.
    retry: { retries: 2, initialRetryTime: 100, maxRetryTime: 1000 },
    logLevel: logLevel.WARN,
    // kafkajs reports every failed attempt as an error, with a stack. The
    // sink and stream log each failure once, at warning, with the attempt
    // and the delay; kafkajs' own lines are kept for debugging.
    logCreator: () => ({ level, log }) => {
      const { message, stack: _stack, ...properties } = log as
        & typeof log
        & { stack?: unknown };
      kafkajsLogger.debug("kafkajs {kafkajsLevel}: {kafkajsMessage}", {
        ...properties,
        kafkajsLevel: logLevel[level],
        kafkajsMessage: message,
      });
    },
  });
}

/**
 * A kafkajs client whose clients' `connect()` rejects with
 * {@linkcode explainConnectError}'s account of a refused login or a TLS
 * failure, the kafkajs error as its `cause`.
 */
class ExplainingKafka extends Kafka {
  readonly #options: KafkaConnectionOptions;

  constructor(options: KafkaConnectionOptions, config: KafkaConfig) {
    super(config);
    this.#options = options;
  }

  override producer(config?: ProducerConfig): Producer {
    return explainingConnect(super.producer(config), this.#options);
  }

  override consumer(config: ConsumerConfig): Consumer {
    return explainingConnect(super.consumer(config), this.#options);
  }

  override admin(config?: AdminConfig): Admin {
    return explainingConnect(super.admin(config), this.#options);
  }
}

function explainingConnect<T extends { connect(): Promise<void> }>(
  client: T,
  options: KafkaConnectionOptions,
): T {
  const connect = client.connect.bind(client);
  client.connect = () =>
    connect().catch((error: unknown) => {
      throw explainConnectError(error, options);
    });
  return client;
}

/**
 * Turns a failed connection attempt into an error that says what failed,
 * where, and what to do: a refused SASL login (`kafka-auth-failed`), a broker
 * certificate that does not verify or a handshake the broker refused
 * (`kafka-tls-failed`). Both are not retriable: the same settings fail the
 * same way until someone changes them. Any other error (the broker is down,
 * say) is returned as it is. The password never appears in the message.
 *
 * @param error What `connect()` threw.
 * @param options The connection settings, for the broker list, user and mechanism.
 * @returns The explained error, with `error` as its `cause`, or `error` itself.
 */
export function explainConnectError(
  error: unknown,
  options: KafkaConnectionOptions,
): unknown {
  const brokers = options.brokers.join(",");
  const chain = causes(error);
  const sasl = options.sasl;
  const refused = chain.find((each) =>
    each.name === "KafkaJSSASLAuthenticationError"
  );
  if (refused) {
    const who = sasl
      ? `the SASL ${sasl.mechanism.toUpperCase()} login of user "${sasl.username}"`
      : "the SASL login";
    return new DataExchangeError(
      "kafka-auth-failed",
      `Kafka at ${brokers} refused ${who} (${refused.message}); ` +
        "check the SASL user name and password, and that the broker has this user for this mechanism",
      { cause: error },
    );
  }
  const tlsCode = chain.map((each) => (each as { code?: unknown }).code)
    .find((code) => typeof code === "string" && TLS_VERIFY_CODES.has(code));
  if (tlsCode !== undefined) {
    const failed = chain.find((each) =>
      (each as { code?: unknown }).code === tlsCode
    )!;
    return new DataExchangeError(
      "kafka-tls-failed",
      `The TLS certificate of Kafka at ${brokers} did not verify (${tlsCode}: ${failed.message}); ` +
        "trust the CA that signed it (the TLS ca file), and connect by a host name or IP address the certificate names",
      { cause: error },
    );
  }
  const handshake = chain.find((each) =>
    /before secure TLS connection was established|alert|handshake/i.test(
      each.message,
    )
  );
  if (options.tls && handshake) {
    return new DataExchangeError(
      "kafka-tls-failed",
      `The TLS handshake with Kafka at ${brokers} failed (${handshake.message}); ` +
        "check that this port is a TLS (SSL or SASL_SSL) listener, and that a client certificate is given if the broker requires one",
      { cause: error },
    );
  }
  return error;
}

function causes(error: unknown): Error[] {
  const chain: Error[] = [];
  let current: unknown = error;
  for (let depth = 0; depth < 8 && current instanceof Error; depth++) {
    chain.push(current);
    current = current.cause;
  }
  return chain;
}

/** Views bytes as a Buffer without copying them. */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Converts a neutral record into a kafkajs message, without copying bytes. */
export function toKafkajsMessage(record: KafkaRecord): Message {
  const headers: Record<string, Buffer> = {};
  for (const name in record.headers) {
    headers[name] = asBuffer(record.headers[name]);
  }
  return {
    key: record.key === null ? null : asBuffer(record.key),
    value: record.value === null ? null : asBuffer(record.value),
    headers,
  };
}

/**
 * Kafka error types that refuse records themselves: sending the same record
 * again fails the same way. kafkajs marks `CORRUPT_MESSAGE` retriable (a
 * record damaged on the wire); the bytes this sink sends are the same on
 * every attempt, so here it belongs to the record.
 */
const RECORD_ERRORS: ReadonlySet<string> = new Set([
  "MESSAGE_TOO_LARGE",
  "RECORD_LIST_TOO_LARGE",
  "INVALID_RECORD",
  "CORRUPT_MESSAGE",
  "INVALID_TIMESTAMP",
]);

/**
 * Kafka error types that refuse every record for one topic (its name, its
 * permissions, its configuration), while other topics may take theirs.
 */
const TOPIC_ERRORS: ReadonlySet<string> = new Set([
  "INVALID_TOPIC_EXCEPTION",
  "TOPIC_AUTHORIZATION_FAILED",
  "UNSUPPORTED_COMPRESSION_TYPE",
  "UNSUPPORTED_FOR_MESSAGE_FORMAT",
]);

/** JavaScript errors that kafkajs, too, never retries: a bug, not an outage. */
const UNRECOVERABLE_ERRORS: ReadonlySet<string> = new Set([
  "RangeError",
  "ReferenceError",
  "SyntaxError",
  "TypeError",
]);

/** What to do about a Kafka error type, for error messages. */
const ADVICE: Readonly<Record<string, string>> = {
  MESSAGE_TOO_LARGE:
    "make the record smaller, or raise the topic's max.message.bytes (and the broker's message.max.bytes)",
  RECORD_LIST_TOO_LARGE:
    "make the record smaller, or raise the topic's segment.bytes",
  INVALID_RECORD:
    "Kafka refused the record's content (for example a record without a key on a compacted topic); change the record or the topic's configuration",
  CORRUPT_MESSAGE:
    "the record failed the broker's checks (on older brokers, a record without a key on a compacted topic); change the record or the topic's configuration",
  INVALID_TIMESTAMP:
    "the record's timestamp is too far from the broker's clock for the topic's message.timestamp.difference.max.ms; check the clocks",
  INVALID_TOPIC_EXCEPTION:
    "use a topic name of 1 to 249 characters of a-z A-Z 0-9 . _ -",
  TOPIC_AUTHORIZATION_FAILED:
    "grant this client's principal WRITE and DESCRIBE on the topic, or send to another topic",
  UNSUPPORTED_COMPRESSION_TYPE:
    "the topic's compression.type needs a newer produce request; change the topic's compression.type",
  UNSUPPORTED_FOR_MESSAGE_FORMAT:
    "the topic's message.format.version is too old for record headers; raise it to 0.11 or newer",
  CLUSTER_AUTHORIZATION_FAILED:
    "grant this client's principal the cluster permission the request needs (IDEMPOTENT_WRITE, for instance)",
  UNSUPPORTED_VERSION:
    "the broker does not support the produce request kafkajs sends; use Kafka 0.11 or newer",
};

/**
 * The Kafka error type of a topic (or partition) the broker does not know:
 * the topic does not exist, or it was created a moment ago and its metadata
 * has not reached every broker yet. kafkajs marks it retriable, and throws it
 * both from the metadata request that precedes a produce and from a produce
 * answer.
 */
const UNKNOWN_TOPIC = "UNKNOWN_TOPIC_OR_PARTITION";

/**
 * How a failed produce request is handled:
 *
 * - `transient`: it may pass (broker down, leader moving, timeout): sent
 *   again with backoff, counted by the circuit breaker;
 * - `unknown-topic`: Kafka does not know the topic (yet): a request for one
 *   topic is sent again for at most {@linkcode MISSING_TOPIC_RETRY_MS}, then
 *   its records are rejected with `topic-missing`; a request for several
 *   topics is split by topic first (kafkajs does not say which one is
 *   unknown). The breaker does not count it: Kafka answers;
 * - `record`: Kafka refused a record (too large, invalid): the request is
 *   narrowed down to the records at fault, which are rejected;
 * - `topic`: Kafka refused a topic (invalid name, not authorized): the
 *   records for that topic are rejected, the others sent;
 * - `refused`: Kafka, or kafkajs, refused the request for a reason that is
 *   neither a record's nor a topic's and that no retry fixes (cluster
 *   authorization, protocol version): every record of the request is
 *   rejected, and the breaker counts it.
 */
export type ProduceFailure =
  | { readonly kind: "transient" }
  | {
    readonly kind: "unknown-topic" | "record" | "topic" | "refused";
    /** The Kafka error type, such as `MESSAGE_TOO_LARGE`, or the error's name. */
    readonly type: string;
  };

const TRANSIENT: ProduceFailure = Object.freeze({ kind: "transient" });
const UNKNOWN_TOPIC_FAILURE: ProduceFailure = Object.freeze({
  kind: "unknown-topic",
  type: UNKNOWN_TOPIC,
});

/**
 * Classifies a produce failure by kafkajs' own account of it. Along the
 * `cause` chain (kafkajs wraps the broker's error in
 * `KafkaJSNumberOfRetriesExceeded` or `KafkaJSNonRetriableError`), the first
 * `KafkaJSProtocolError` decides: by its type when that is an unknown topic or
 * refuses records or a topic, else by its `retriable` flag. Without one, the innermost error
 * decides: `retriable: false`, or a `TypeError` and its kind, is `refused`;
 * anything else (connection lost, request timed out, an error kafkajs does
 * not flag) is `transient`.
 *
 * @param error What `sendBatch` rejected with.
 * @returns How the sink handles it.
 */
export function classifyProduceError(error: unknown): ProduceFailure {
  const chain = causes(error);
  for (const each of chain) {
    const type = (each as { type?: unknown }).type;
    if (typeof type !== "string") continue;
    if (type === UNKNOWN_TOPIC) return UNKNOWN_TOPIC_FAILURE;
    if (RECORD_ERRORS.has(type)) return { kind: "record", type };
    if (TOPIC_ERRORS.has(type)) return { kind: "topic", type };
    const retriable = (each as { retriable?: unknown }).retriable;
    return retriable === false ? { kind: "refused", type } : TRANSIENT;
  }
  const innermost = chain.at(-1);
  if (innermost === undefined) return TRANSIENT;
  if (
    (innermost as { retriable?: unknown }).retriable === false ||
    UNRECOVERABLE_ERRORS.has(innermost.name)
  ) {
    return { kind: "refused", type: innermost.name };
  }
  return TRANSIENT;
}

/**
 * How long a request for a topic Kafka does not know
 * (`UNKNOWN_TOPIC_OR_PARTITION`) is sent again, from the first such answer,
 * in milliseconds. A topic created a moment ago takes a while to reach the
 * metadata of every broker (well under a second on a healthy cluster); a
 * topic that does not exist stays unknown, and the records for it are
 * rejected with `topic-missing` after one last attempt at the end of it.
 */
export const MISSING_TOPIC_RETRY_MS = 5_000;

/** Most topics {@linkcode MissingTopics} remembers; beyond, the oldest goes. */
const MAX_MISSING_TOPICS = 1_000;

interface Missing {
  /** When Kafka first said it does not know the topic. */
  readonly since: number;
  /** Whether the producer was renewed to ask about this topic alone. */
  rechecked: boolean;
}

/**
 * The topics Kafka answered `UNKNOWN_TOPIC_OR_PARTITION` for, and since
 * when: each gets `windowMs` of retries from its first such answer, the last
 * wait cut short to end with it; after that, each further request for it is
 * tried once and not retried, until one succeeds and the topic is forgotten.
 * So a stream of records for a topic that does not exist waits `windowMs`
 * once, not once per request. At most 1000 topics are remembered; the one
 * missing longest is forgotten first.
 */
export class MissingTopics {
  readonly #windowMs: number;
  readonly #now: () => number;
  readonly #topics = new Map<string, Missing>();

  /**
   * @param windowMs How long a topic is retried, in milliseconds.
   * @param now The clock, in milliseconds.
   */
  constructor(
    windowMs: number = MISSING_TOPIC_RETRY_MS,
    now: () => number = Date.now,
  ) {
    this.#windowMs = windowMs;
    this.#now = now;
  }

  /** How long a topic is retried, in milliseconds. */
  get windowMs(): number {
    return this.#windowMs;
  }

  /**
   * Notes that Kafka does not know `topic`, and tells how long to wait
   * before sending a request for it again.
   *
   * @param topic The topic of the failed request.
   * @param backoffMs The wait the backoff asks for, in milliseconds.
   * @returns `backoffMs`, cut to what is left of the topic's window; or
   *   `undefined` when the window is over: give up.
   */
  retryDelay(topic: string, backoffMs: number): number | undefined {
    let missing = this.#topics.get(topic);
    if (missing === undefined) {
      missing = { since: this.#now(), rechecked: false };
      this.#topics.set(topic, missing);
      if (this.#topics.size > MAX_MISSING_TOPICS) {
        this.#topics.delete(this.#topics.keys().next().value!);
      }
    }
    const left = missing.since + this.#windowMs - this.#now();
    return left > 0 ? Math.min(backoffMs, left) : undefined;
  }

  /** Milliseconds since Kafka first said it does not know `topic`; 0 if it did not. */
  missingForMs(topic: string): number {
    const missing = this.#topics.get(topic);
    return missing === undefined ? 0 : this.#now() - missing.since;
  }

  /**
   * Whether `topic` is yet to be checked with a fresh producer since it went
   * missing: `true` once, then `false` until it is found again.
   */
  recheck(topic: string): boolean {
    const missing = this.#topics.get(topic);
    if (missing === undefined || missing.rechecked) return false;
    missing.rechecked = true;
    return true;
  }

  /** Forgets `topic`: Kafka took records for it. */
  found(topic: string): void {
    this.#topics.delete(topic);
  }
}

/**
 * What to do about a Kafka error type, as a clause for an error message.
 *
 * @param type A Kafka error type such as `MESSAGE_TOO_LARGE`, or an error name.
 * @returns Advice; a general one for types without their own.
 */
export function adviceFor(type: string): string {
  return ADVICE[type] ??
    "see the Kafka error type: sending the same request again fails the same way until the record, the topic or the cluster's configuration changes";
}

/**
 * A short description of an error and its causes, for logs and headers. A
 * cause whose message the text already holds is not repeated.
 */
export function describeError(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; depth < 4 && current !== undefined; depth++) {
    const text = current instanceof Error ? current.message : String(current);
    if (!parts.some((part) => part.includes(text))) parts.push(text);
    current = current instanceof Error ? current.cause : undefined;
  }
  return parts.join(": ");
}
