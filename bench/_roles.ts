/**
 * The bench's child processes, one role each, so that every process under
 * test has its own memory to measure and its own event loop:
 *
 * - `reader`: a kafkajs consumer that reads a topic from the beginning and
 *   records, per message, when it was read and its latency from the
 *   publish time stamped in the `ce_benchts` header.
 * - `mqtt-subscriber`: the MQTT limit, a plain MQTT.js subscriber (QoS 1)
 *   that records what it receives the same way, from the payload.
 * - `producer`: the Kafka limit, a plain kafkajs or @platformatic/kafka
 *   producer sending the records the bridge would write, in batches, with
 *   `acks: all`.
 * - `naive-bridge`: the bridge written by hand: an MQTT.js `handleMessage`
 *   that awaits one `producer.send` per message before its PUBACK.
 * - `ack-on-receipt`: this library's `mqttStream` and `KafkaSink`, but each
 *   message acknowledged as soon as it is received (no guarantee).
 * - `bridge-in-process`: `runBridge` as the CLI runs it, answering `memory`
 *   (its `Deno.memoryUsage()` and counts), `gc` (with `--expose-gc`) and
 *   `heap <path>` (a V8 heap snapshot), for profiling.
 *
 * Run by the bench as `deno run ... bench/_roles.ts <role> <options JSON>`.
 * Protocol: see `_child_io.ts`. Every role prints `ready` when it can start,
 * and stops when its stdin closes.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import v8 from "node:v8";
import { configure, type LogRecord } from "@logtape/logtape";
import mqtt from "mqtt";
import type { IPublishPacket } from "mqtt";
import {
  Kafka,
  logLevel,
  type Message,
  Partitioners,
  type Producer,
} from "kafkajs";
import {
  createRouter,
  fromMqttMessage,
  type KafkaRecord,
  toKafkaRecord,
} from "../src/cloudevents/mod.ts";
import { KafkaSink } from "../src/kafka/mod.ts";
import { mqttStream } from "../src/mqtt/mod.ts";
import { commands, emit, sleep } from "./_child_io.ts";
import {
  epochMs,
  kafkaTemplate,
  parseAsciiNumber,
  payloadTemplate,
  SEQ_DIGITS,
  stampedHeaders,
  TS_CHARS,
} from "./_payload.ts";
import { SeqTracker } from "./_track.ts";

/** Options of the `reader` role. */
export interface ReaderOptions {
  brokers: string[];
  topic: string;
  /** Sequence numbers 0 to capacity - 1 are tracked. */
  capacity: number;
}

/** Options of the `mqtt-subscriber` role. */
export interface SubscriberOptions {
  url: string;
  topic: string;
  capacity: number;
  seqOffset: number;
  tsOffset: number;
}

/** Options of the `producer` role. */
export interface ProducerOptions {
  client: "kafkajs" | "platformatic";
  brokers: string[];
  topic: string;
  /** MQTT payload size whose Kafka record is sent. */
  size: number;
  /** Most records per produce request (fewer when they exceed 1 MB). */
  batchSize: number;
}

/** Options of the `naive-bridge` role. */
export interface NaiveBridgeOptions {
  url: string;
  topic: string;
  clientId: string;
  brokers: string[];
  kafkaTopic: string;
}

/** Options of the `ack-on-receipt` role. */
export interface AckOnReceiptOptions {
  url: string;
  topics: string[];
  clientId: string;
  brokers: string[];
  defaultTopic: string;
  deadLetterTopic: string;
  maxInFlight: number;
  batchSize: number;
  lingerMs: number;
  maxBufferedRecords: number;
}

/** Options of the `bridge-in-process` role. */
export interface BridgeInProcessOptions {
  /** The bridge configuration, as in a configuration file. */
  config: Record<string, unknown>;
}

const PROGRESS_MS = 250;
/** The sequence number of a record sent before measuring. */
const WARM_UP_SEQ = 10 ** SEQ_DIGITS - 1;

/**
 * Answers `report <from> <to>` with what `tracker` saw of that range, and
 * reports progress while `running()`; resolves when stdin closes.
 */
async function serveTracker(tracker: SeqTracker): Promise<void> {
  let last = -1;
  const timer = setInterval(() => {
    if (tracker.unique === last) return;
    last = tracker.unique;
    emit("progress", {
      unique: tracker.unique,
      duplicates: tracker.duplicates,
      foreign: tracker.foreign,
    });
  }, PROGRESS_MS);
  try {
    for await (const { name, args } of commands()) {
      if (name === "report") {
        const [from, to] = args.map(Number);
        emit("report", {
          from,
          to,
          foreign: tracker.foreign,
          ...tracker.report(from, to),
        });
      } else if (name === "stop") {
        break;
      }
    }
  } finally {
    clearInterval(timer);
  }
}

function headerNumber(value: unknown): number {
  const bytes = Array.isArray(value) ? value[0] : value;
  if (bytes instanceof Uint8Array) {
    return parseAsciiNumber(bytes, 0, bytes.byteLength);
  }
  return typeof bytes === "string" ? Number(bytes) : NaN;
}

async function reader(options: ReaderOptions): Promise<void> {
  const tracker = new SeqTracker(options.capacity);
  const kafka = new Kafka({
    clientId: `bench-reader-${crypto.randomUUID().slice(0, 8)}`,
    brokers: options.brokers,
    // Its retries (coordinator not ready yet) are no news; a crash is.
    logLevel: logLevel.NOTHING,
  });
  const consumer = kafka.consumer({
    groupId: `bench-reader-${crypto.randomUUID()}`,
    maxWaitTimeInMs: 100,
    maxBytesPerPartition: 16 * 1024 * 1024,
    maxBytes: 64 * 1024 * 1024,
  });
  await consumer.connect();
  await consumer.subscribe({ topics: [options.topic], fromBeginning: true });
  let joined = false;
  let ready = false;
  consumer.on(consumer.events.GROUP_JOIN, () => joined = true);
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    console.error(
      `bench reader: consumer crashed (restart: ${payload.restart}): ${payload.error}`,
    );
  });
  consumer.on(consumer.events.FETCH, () => {
    if (joined && !ready) {
      ready = true;
      emit("ready");
    }
  });
  await consumer.run({
    eachBatchAutoResolve: true,
    eachBatch: ({ batch }) => {
      const now = epochMs();
      for (const message of batch.messages) {
        const headers = message.headers ?? {};
        tracker.record(
          headerNumber(headers.ce_id),
          headerNumber(headers.ce_benchts),
          now,
        );
      }
      return Promise.resolve();
    },
  });
  await serveTracker(tracker);
  await consumer.disconnect();
}

async function mqttSubscriber(options: SubscriberOptions): Promise<void> {
  const tracker = new SeqTracker(options.capacity);
  const client = await mqtt.connectAsync(options.url, {
    clientId: `bench-sub-${crypto.randomUUID().slice(0, 8)}`,
    protocolVersion: 5,
    reconnectPeriod: 0,
  });
  client.on("message", (_topic, payload) => {
    tracker.record(
      parseAsciiNumber(payload, options.seqOffset, SEQ_DIGITS),
      parseAsciiNumber(payload, options.tsOffset, TS_CHARS),
      epochMs(),
    );
  });
  await client.subscribeAsync(options.topic, { qos: 1 });
  emit("ready");
  await serveTracker(tracker);
  await client.endAsync();
}

/** Sends records; resolves when Kafka acknowledged them all (acks: all). */
type SendBatch = (records: Message[]) => Promise<void>;

async function producer(options: ProducerOptions): Promise<void> {
  const template = kafkaTemplate(payloadTemplate(options.size));
  const { send, close } = options.client === "kafkajs"
    ? await kafkajsProducer(options)
    : await platformaticProducer(options);
  // Kafka refuses a record batch above message.max.bytes (1 MiB by
  // default): requests are cut below it, as KafkaSink cuts them.
  let recordBytes = 32 + (template.value?.byteLength ?? 0);
  for (const [name, value] of Object.entries(template.headers)) {
    recordBytes += name.length + 8 + value.byteLength;
  }
  const batchLength = Math.max(
    1,
    Math.min(options.batchSize, Math.floor(1_000_000 / recordBytes)),
  );
  // One produce request before the clock starts: connections and metadata.
  // Its sequence number is out of every range, so readers count it apart.
  await send([toMessage(template, WARM_UP_SEQ)]);
  emit("ready");
  for await (const { name, args } of commands()) {
    if (name === "stop") break;
    if (name !== "run") continue;
    const [seqBase, count, rate] = args.map(Number);
    emit(
      "ran",
      await produce(send, template, batchLength, seqBase, count, rate),
    );
  }
  await close();
}

function toMessage(template: KafkaRecord, seq: number): Message {
  return {
    key: null,
    value: Buffer.from(
      template.value!.buffer,
      template.value!.byteOffset,
      template.value!.byteLength,
    ),
    headers: stampedHeaders(template, seq),
  };
}

/**
 * Sends `count` records, one produce request at a time. With `rate` 0 each
 * batch is made when the previous one is acknowledged; otherwise records are
 * made at `rate` per second and each request takes what has been made.
 */
async function produce(
  send: SendBatch,
  template: KafkaRecord,
  batchLength: number,
  seqBase: number,
  count: number,
  rate: number,
): Promise<Record<string, number>> {
  const startedAt = epochMs();
  let made = 0;
  let acked = 0;
  let failed = 0;
  const queue: Message[] = [];
  let wake: (() => void) | undefined;
  const making = rate > 0
    ? (async () => {
      while (made < count) {
        const due = Math.min(
          count,
          Math.floor((epochMs() - startedAt) * rate / 1000) + 1,
        );
        while (made < due) queue.push(toMessage(template, seqBase + made++));
        wake?.();
        wake = undefined;
        await sleep(1);
      }
    })()
    : Promise.resolve();
  while (acked + failed < count) {
    if (rate === 0) {
      const size = Math.min(batchLength, count - made);
      for (let i = 0; i < size; i++) {
        queue.push(toMessage(template, seqBase + made++));
      }
    } else if (queue.length === 0) {
      await new Promise<void>((resolve) => wake = resolve);
    }
    const batch = queue.splice(0, batchLength);
    try {
      await send(batch);
      acked += batch.length;
    } catch (error) {
      failed += batch.length;
      console.error(`bench producer: a batch failed: ${error}`);
    }
  }
  await making;
  return { seqBase, count, startedAt, endedAt: epochMs(), acked, failed };
}

/** A connected kafkajs producer as both kafkajs roles use it. */
async function connectedProducer(
  clientId: string,
  brokers: string[],
): Promise<Producer> {
  const producer = new Kafka({ clientId, brokers, logLevel: logLevel.ERROR })
    .producer({
      createPartitioner: Partitioners.DefaultPartitioner,
      allowAutoTopicCreation: false,
    });
  await producer.connect();
  return producer;
}

async function kafkajsProducer(
  options: ProducerOptions,
): Promise<{ send: SendBatch; close: () => Promise<void> }> {
  const client = await connectedProducer("bench-kafkajs", options.brokers);
  return {
    send: async (messages) => {
      await client.send({ topic: options.topic, acks: -1, messages });
    },
    close: () => client.disconnect(),
  };
}

async function platformaticProducer(
  options: ProducerOptions,
): Promise<{ send: SendBatch; close: () => Promise<void> }> {
  const { Producer, ProduceAcks } = await import("@platformatic/kafka");
  const client = new Producer({
    clientId: "bench-platformatic",
    bootstrapBrokers: options.brokers,
    autocreateTopics: false,
  });
  return {
    send: async (messages) => {
      await client.send({
        acks: ProduceAcks.ALL,
        messages: messages.map((message) => ({
          topic: options.topic,
          value: message.value as Buffer,
          // Without serializers, header names are bytes too.
          headers: new Map(
            Object.entries(message.headers as Record<string, Buffer>).map((
              [name, value],
            ) => [Buffer.from(name), value]),
          ),
        })),
      });
    },
    close: () => client.close(),
  };
}

async function naiveBridge(options: NaiveBridgeOptions): Promise<void> {
  const producer = await connectedProducer("bench-naive", options.brokers);
  const client = mqtt.connect(options.url, {
    clientId: options.clientId,
    clean: false,
    protocolVersion: 5,
    properties: { sessionExpiryInterval: 600 },
    reconnectPeriod: 1000,
  });
  // MQTT.js calls this for one message at a time and sends the PUBACK when
  // the callback is called: here, after Kafka acknowledged the record.
  client.handleMessage = (packet: IPublishPacket, callback) => {
    let record: KafkaRecord;
    try {
      const payload = packet.payload as Buffer;
      record = toKafkaRecord(
        fromMqttMessage({
          topic: packet.topic,
          payload: new Uint8Array(
            payload.buffer,
            payload.byteOffset,
            payload.byteLength,
          ),
          qos: 1,
          retain: packet.retain,
          dup: packet.dup,
        }, { protocolVersion: 5 }),
      );
    } catch (error) {
      console.error(`naive bridge: not a CloudEvent, dropped: ${error}`);
      callback();
      return;
    }
    producer.send({
      topic: options.kafkaTopic,
      acks: -1,
      messages: [{
        key: null,
        value: Buffer.from(record.value!),
        headers: Object.fromEntries(
          Object.entries(record.headers).map((
            [name, value],
          ) => [name, Buffer.from(value)]),
        ),
      }],
    }).then(
      () => callback(),
      (error) => {
        // No PUBACK: the broker delivers it again after a reconnect.
        console.error(`naive bridge: send failed: ${error}`);
        client.end(true, () => client.reconnect());
      },
    );
  };
  await new Promise<void>((resolve, reject) => {
    client.once("connect", () => resolve());
    client.once("error", reject);
  });
  await client.subscribeAsync(options.topic, { qos: 1 });
  emit("ready");
  for await (const { name } of commands()) if (name === "stop") break;
  await client.endAsync();
  await producer.disconnect();
}

async function ackOnReceipt(options: AckOnReceiptOptions): Promise<void> {
  let subscribed!: () => void;
  const isSubscribed = new Promise<void>((resolve) => subscribed = resolve);
  await configure({
    sinks: {
      watch: (record: LogRecord) => {
        if (String(record.rawMessage).startsWith("MQTT subscribed")) {
          subscribed();
        }
        if (record.level === "error" || record.level === "warning") {
          console.error(`ack-on-receipt: ${record.message.join("")}`);
        }
      },
    },
    loggers: [
      { category: ["dataexchange"], lowestLevel: "info", sinks: ["watch"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: [] },
    ],
  });
  const router = createRouter({
    routes: {},
    defaultTopic: options.defaultTopic,
    deadLetterTopic: options.deadLetterTopic,
  });
  const stop = new AbortController();
  const sink = await KafkaSink.connect({
    brokers: options.brokers,
    clientId: "bench-ack-on-receipt",
    batchSize: options.batchSize,
    lingerMs: options.lingerMs,
    maxBufferedRecords: options.maxBufferedRecords,
    acks: -1,
  });
  const stream = mqttStream({
    url: options.url,
    topics: options.topics,
    clientId: options.clientId,
    maxInFlight: options.maxInFlight,
    signal: stop.signal,
  });
  (async () => {
    await isSubscribed;
    emit("ready");
    for await (const { name } of commands()) if (name === "stop") break;
    stop.abort();
  })();
  let outstanding = 0;
  let lost = 0;
  for await (const envelope of stream) {
    envelope.ack(); // On receipt: before Kafka has the record.
    if (envelope.kind === "invalid") {
      lost++;
      continue;
    }
    const { topic } = router.route(envelope.event);
    outstanding++;
    const sent = sink.send(topic, toKafkaRecord(envelope.event))
      .catch(() => lost++)
      .finally(() => outstanding--);
    // Bounded all the same: wait once as many are out as the sink buffers.
    if (outstanding >= options.maxBufferedRecords) await sent;
  }
  await sink.close();
  if (lost > 0) console.error(`ack-on-receipt: ${lost} messages lost`);
}

async function bridgeInProcess(options: BridgeInProcessOptions): Promise<void> {
  const { parseConfig, runBridge } = await import("../src/bridge/mod.ts");
  await configure({
    sinks: {
      watch: (record: LogRecord) => {
        if (String(record.rawMessage).startsWith("MQTT subscribed")) {
          emit("ready");
        }
        if (record.level === "error" || record.level === "warning") {
          console.error(`bridge: ${record.message.join("")}`);
        }
      },
    },
    loggers: [
      { category: ["dataexchange"], lowestLevel: "info", sinks: ["watch"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: [] },
    ],
  });
  const stop = new AbortController();
  const stats = {
    received: 0,
    delivered: 0,
    deadLettered: 0,
    failed: 0,
    inFlight: 0,
    toMqtt: { published: 0, failed: 0, invalid: 0, deadLettered: 0 },
  };
  const running = runBridge(parseConfig(options.config), {
    signal: stop.signal,
    stats,
  });
  const gc = (globalThis as { gc?: () => void }).gc;
  for await (const { name, args } of commands()) {
    if (name === "stop") break;
    if (name === "memory") {
      emit("memory", { ...Deno.memoryUsage(), ...stats, toMqtt: undefined });
    } else if (name === "gc") {
      gc?.();
      emit("gc", { done: gc !== undefined });
    } else if (name === "heap") {
      emit("heap", { path: v8.writeHeapSnapshot(args[0]) });
    }
  }
  stop.abort();
  await running;
}

if (import.meta.main) {
  const [role, json] = Deno.args;
  const options = JSON.parse(json ?? "{}");
  const roles: Record<string, (options: never) => Promise<void>> = {
    "reader": reader,
    "mqtt-subscriber": mqttSubscriber,
    "producer": producer,
    "naive-bridge": naiveBridge,
    "ack-on-receipt": ackOnReceipt,
    "bridge-in-process": bridgeInProcess,
  };
  const run = roles[role];
  if (run === undefined) {
    console.error(`unknown role ${role}; one of ${Object.keys(roles)}`);
    Deno.exit(2);
  }
  await run(options as never);
  Deno.exit(0);
}
