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

/** A connected kafkajs admin client, as {@linkcode withAdmin} lends it. */
export type KafkaAdmin = ReturnType<Kafka["admin"]>;

/**
 * Connects an admin client to `brokers`, runs `use` with it and disconnects
 * it, whatever `use` does.
 */
export async function withAdmin<T>(
  brokers: readonly string[],
  use: (admin: KafkaAdmin) => Promise<T>,
): Promise<T> {
  const admin = new Kafka({
    clientId: uniqueName("test-admin"),
    brokers: [...brokers],
    logLevel: logLevel.NOTHING,
  }).admin();
  await admin.connect();
  try {
    return await use(admin);
  } finally {
    await admin.disconnect();
  }
}

/** Creates topics (ignoring those that exist) so consumers can subscribe. */
export function createTopics(
  brokers: readonly string[],
  topics: readonly string[],
  numPartitions = 1,
): Promise<void> {
  return withAdmin(brokers, async (admin) => {
    await admin.createTopics({
      waitForLeaders: true,
      topics: topics.map((topic) => ({ topic, numPartitions })),
    });
  });
}

/** How many records `topic` holds now: its partitions' offset ranges summed. */
export function recordsIn(
  brokers: readonly string[],
  topic: string,
): Promise<number> {
  return withAdmin(
    brokers,
    async (admin) =>
      (await admin.fetchTopicOffsets(topic)).reduce(
        (sum, { high, low }) => sum + Number(high) - Number(low),
        0,
      ),
  );
}

/**
 * The committed offset of `groupId` on each partition of `topic`, in
 * partition order; -1 where the group committed nothing.
 */
export function committedOffsets(
  brokers: readonly string[],
  groupId: string,
  topic: string,
): Promise<number[]> {
  return withAdmin(brokers, async (admin) => {
    const [result] = await admin.fetchOffsets({ groupId, topics: [topic] });
    return [...result.partitions]
      .sort((a, b) => a.partition - b.partition)
      .map((p) => Number(p.offset));
  });
}

/** The `ce_id` header of a record read back, or `""` when it has none. */
export function eventIdOf(record: ReadRecord): string {
  return header(record.message, "ce_id") ?? "";
}

/**
 * Reads `topic` until every id of `ids` (`ce_id` headers) is there, failing
 * after `timeoutMs` (default 60000); returns every record read.
 */
export function readUntilAll(
  brokers: readonly string[],
  topic: string,
  ids: Iterable<string>,
  timeoutMs = 60_000,
): Promise<ReadRecord[]> {
  const missing = new Set(ids);
  return readTopics(brokers, [topic], {
    until: (read) => {
      const last = read.at(-1);
      if (last) missing.delete(eventIdOf(last));
      return missing.size === 0;
    },
    timeoutMs,
  });
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
