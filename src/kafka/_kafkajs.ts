/**
 * What the Kafka modules share about kafkajs: the client factory that sends
 * kafkajs' own logs to LogTape, the conversion of records, and the reading of
 * its errors.
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
 * How a failed produce request is handled:
 *
 * - `transient`: it may pass (broker down, leader moving, timeout): sent
 *   again with backoff, counted by the circuit breaker;
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
    readonly kind: "record" | "topic" | "refused";
    /** The Kafka error type, such as `MESSAGE_TOO_LARGE`, or the error's name. */
    readonly type: string;
  };

const TRANSIENT: ProduceFailure = Object.freeze({ kind: "transient" });

/**
 * Classifies a produce failure by kafkajs' own account of it. Along the
 * `cause` chain (kafkajs wraps the broker's error in
 * `KafkaJSNumberOfRetriesExceeded` or `KafkaJSNonRetriableError`), the first
 * `KafkaJSProtocolError` decides: by its type when that refuses records or a
 * topic, else by its `retriable` flag. Without one, the innermost error
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
