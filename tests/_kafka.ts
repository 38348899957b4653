/**
 * Test helpers that read Kafka topics and publish MQTT messages on the real
 * brokers.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { Kafka, type KafkaMessage, logLevel } from "kafkajs";
import mqtt from "mqtt";
import type { IClientPublishOptions } from "mqtt";

let counter = 0;

/** A name unique to this test run, for topics, groups and client ids. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${
    Math.random().toString(36).slice(2, 6)
  }-${counter++}`;
}

/** A record read back from Kafka, with its topic. */
export interface ReadRecord {
  topic: string;
  partition: number;
  message: KafkaMessage;
}

/** Options of {@linkcode readTopics}. */
export interface ReadTopicsOptions {
  /** Stop reading once this returns true for what was read so far. */
  until: (records: readonly ReadRecord[]) => boolean;
  /** Fail when `until` is not met in time. Default 30000 ms. */
  timeoutMs?: number;
  /** Called after each record, for progress-based actions. */
  onRecord?: (records: readonly ReadRecord[]) => void;
}

/**
 * Reads `topics` from the beginning with a fresh consumer group until
 * `options.until` is satisfied, then returns every record read.
 */
export async function readTopics(
  brokers: readonly string[],
  topics: readonly string[],
  options: ReadTopicsOptions,
): Promise<ReadRecord[]> {
  const kafka = new Kafka({
    clientId: uniqueName("test-reader"),
    brokers: [...brokers],
    logLevel: logLevel.NOTHING,
  });
  const consumer = kafka.consumer({
    groupId: uniqueName("test-group"),
    maxWaitTimeInMs: 100,
  });
  const records: ReadRecord[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [...topics], fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new Error(
            `readTopics: condition not met within ${
              options.timeoutMs ?? 30000
            } ms; read ${records.length} records from ${topics.join(", ")}`,
          ),
        );
      }, options.timeoutMs ?? 30000);
      if (options.until(records)) {
        clearTimeout(timer);
        resolve();
        return;
      }
      consumer.run({
        eachMessage: ({ topic, partition, message }) => {
          records.push({ topic, partition, message });
          options.onRecord?.(records);
          if (options.until(records)) {
            clearTimeout(timer);
            resolve();
          }
          return Promise.resolve();
        },
      }).catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
  return records;
}

/** Creates topics (ignoring those that exist) so consumers can subscribe. */
export async function createTopics(
  brokers: readonly string[],
  topics: readonly string[],
  numPartitions = 1,
): Promise<void> {
  const admin = new Kafka({
    clientId: uniqueName("test-admin"),
    brokers: [...brokers],
    logLevel: logLevel.NOTHING,
  }).admin();
  await admin.connect();
  try {
    await admin.createTopics({
      waitForLeaders: true,
      topics: topics.map((topic) => ({ topic, numPartitions })),
    });
  } finally {
    await admin.disconnect();
  }
}

/** One MQTT message to publish. */
export interface Publication {
  topic: string;
  payload: Uint8Array | string;
  options?: IClientPublishOptions;
}

/**
 * Publishes messages at QoS 1 (unless told otherwise) with up to `window`
 * unacknowledged at a time, and resolves when the broker acknowledged all.
 */
export async function publishAll(
  url: string,
  messages: Iterable<Publication>,
  { protocolVersion = 5, window = 200 }: {
    protocolVersion?: 4 | 5;
    window?: number;
  } = {},
): Promise<void> {
  const client = await mqtt.connectAsync(url, {
    clientId: uniqueName("test-publisher"),
    protocolVersion,
  });
  try {
    const pending = new Set<Promise<unknown>>();
    for (const message of messages) {
      const sent = client.publishAsync(
        message.topic,
        typeof message.payload === "string" ? message.payload : Buffer.from(
          message.payload.buffer,
          message.payload.byteOffset,
          message.payload.byteLength,
        ),
        { qos: 1, ...message.options },
      );
      pending.add(sent);
      sent.finally(() => pending.delete(sent));
      if (pending.size >= window) await Promise.race(pending);
    }
    await Promise.all(pending);
  } finally {
    await client.endAsync();
  }
}

/** Reads a header of a Kafka message as text. */
export function header(
  message: KafkaMessage,
  name: string,
): string | undefined {
  const value = message.headers?.[name];
  if (value === undefined) return undefined;
  const first = Array.isArray(value) ? value[0] : value;
  return typeof first === "string" ? first : first?.toString("utf8");
}
