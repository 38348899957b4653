/**
 * The edge-neutral core on its own: mock MQTT payloads are decoded as
 * CloudEvents, routed by their `classification`, and turned into the Kafka
 * records the bridge would produce, dead-letter records included. No broker,
 * no permission and no runtime API beyond the Web platform, so the same file
 * runs on Deno without any `--allow-*` flag and, bundled to JavaScript, on
 * Node.js or an edge worker:
 *
 *   deno run examples/core_route_offline.ts
 *   deno bundle --platform browser -o core.mjs examples/core_route_offline.ts
 *   node core.mjs
 *
 * The output is the same everywhere: one line per Kafka topic with its record
 * count, then a summary line.
 *
 * @module
 */
import {
  createRouter,
  deadLetterRecord,
  fromKafkaRecord,
  fromMqttMessage,
  isCloudEventError,
  type KafkaRecord,
  toKafkaRecord,
} from "@dataexchange/streams/cloudevents";
import {
  combine,
  type MockCloudEventItem,
  mockCloudEvents,
  mockSource,
} from "@dataexchange/streams/streams";

const MESSAGES = 30;

const router = createRouter({
  routes: { telemetry: "dx.telemetry", alert: "dx.alerts" },
  defaultTopic: "dx.unclassified",
  deadLetterTopic: "dx.deadletter",
});

// Seeded payloads, a quarter of them malformed, one per millisecond: the
// rhythm of a device publishing, without the device.
const payloads = mockCloudEvents({ seed: 2024, malformedRatio: 0.25 });
const ticks = mockSource<MockCloudEventItem>({
  intervalMs: 1,
  value: () => payloads.next().value as MockCloudEventItem,
});

const records = new Map<string, KafkaRecord[]>();
const stop = new AbortController();
let seen = 0;
for await (const item of combine(ticks, stop.signal)) {
  const mqttTopic = `devices/d${seen % 4}`;
  let topic: string;
  let record: KafkaRecord;
  try {
    const event = fromMqttMessage({ topic: mqttTopic, payload: item.payload });
    topic = router.route(event).topic;
    record = toKafkaRecord(event, { mode: "binary" });
    // What a consumer of that topic reads back is the same event.
    if (fromKafkaRecord(record).id !== event.id) {
      throw new Error(`event ${event.id} did not survive the Kafka binding`);
    }
  } catch (error) {
    if (!isCloudEventError(error)) throw error;
    if (item.kind !== "malformed" || item.reason !== error.code) {
      throw new Error(`unexpected rejection of item ${seen}: ${error.message}`);
    }
    topic = router.deadLetterTopic;
    record = deadLetterRecord({ payload: item.payload, error, mqttTopic });
  }
  records.set(topic, [...(records.get(topic) ?? []), record]);
  if (++seen === MESSAGES) stop.abort();
}

let bytes = 0;
for (const topic of [...records.keys()].sort()) {
  const list = records.get(topic)!;
  for (const record of list) bytes += record.value?.length ?? 0;
  console.log(`${topic} ${list.length}`);
}
console.log(`routed ${seen} messages, ${bytes} bytes of record values`);
