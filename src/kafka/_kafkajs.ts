/**
 * What the Kafka modules share about kafkajs: the client factory that sends
 * kafkajs' own logs to LogTape, the conversion of records, and the reading of
 * its errors.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { Buffer } from "node:buffer";
import { Kafka, logLevel, type Message, type SASLOptions } from "kafkajs";
import type { KafkaRecord } from "../cloudevents/mod.ts";

/** Connection settings shared by the Kafka sink and stream. */
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

/** PEM contents (not paths) for a TLS connection to Kafka. */
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

/** SASL credentials for Kafka. */
export interface KafkaSaslOptions {
  /** The mechanism. */
  mechanism: "plain" | "scram-sha-256" | "scram-sha-512";
  /** User name. */
  username: string;
  /** Password. */
  password: string;
}

const kafkajsLogger = getLogger(["dataexchange", "kafka", "kafkajs"]);

/** Creates a kafkajs client whose logs go to LogTape. */
export function createKafka(options: KafkaConnectionOptions): Kafka {
  if (options.brokers.length === 0) {
    throw new TypeError(
      "Kafka needs at least one bootstrap broker as host:port, got none",
    );
  }
  return new Kafka({
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

/** Kafka error types that a retry of the same record cannot fix. */
const RECORD_ERRORS = new Set([
  "MESSAGE_TOO_LARGE",
  "RECORD_LIST_TOO_LARGE",
  "INVALID_RECORD",
  "CORRUPT_MESSAGE",
  "INVALID_TOPIC_EXCEPTION",
  "UNSUPPORTED_COMPRESSION_TYPE",
  "INVALID_TIMESTAMP",
]);

/**
 * Finds, along an error's `cause` chain, a Kafka error that rejects the
 * records themselves (too large, invalid topic, ...). Returns its type, or
 * `undefined` when the failure may pass (broker down, leader moving, timeout).
 */
export function recordErrorType(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 8 && current instanceof Error; depth++) {
    const type = (current as { type?: unknown }).type;
    if (typeof type === "string" && RECORD_ERRORS.has(type)) return type;
    current = current.cause;
  }
  return undefined;
}

/** A short description of an error and its causes, for logs and headers. */
export function describeError(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; depth < 4 && current !== undefined; depth++) {
    const text = current instanceof Error ? current.message : String(current);
    if (!parts.includes(text)) parts.push(text);
    current = current instanceof Error ? current.cause : undefined;
  }
  return parts.join(": ");
}
