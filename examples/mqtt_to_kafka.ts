/**
 * MQTT to Kafka with classification routing, using the library directly.
 *
 * Reads CloudEvents from `devices/#`, routes each by its `classification` to
 * a Kafka topic, and acknowledges the MQTT message once Kafka has the record.
 * Invalid messages go to the dead-letter topic with the reason. It writes to
 * the Kafka topics `example.telemetry`, `example.alerts`,
 * `example.unclassified` and `example.deadletter`.
 *
 * Run against local brokers (`deno task brokers` prints their addresses):
 *
 *   MQTT_URL=mqtt://127.0.0.1:<port> KAFKA_BROKERS=127.0.0.1:<port> \
 *     deno run --allow-net --allow-env examples/mqtt_to_kafka.ts
 *
 * Stops on Ctrl-C, or after MAX_MESSAGES messages when that is set.
 *
 * @module
 */
import {
  createRouter,
  deadLetterRecord,
  toKafkaRecord,
} from "@dataexchange/streams/cloudevents";
import { KafkaSink } from "@dataexchange/streams/kafka";
import { mqttStream } from "@dataexchange/streams/mqtt";

const mqttUrl = Deno.env.get("MQTT_URL") ?? "mqtt://127.0.0.1:1883";
const brokers = (Deno.env.get("KAFKA_BROKERS") ?? "127.0.0.1:9092").split(",");
const topic = Deno.env.get("MQTT_TOPIC") ?? "devices/#";
const maxMessages = Number(Deno.env.get("MAX_MESSAGES") ?? Infinity);

const router = createRouter({
  routes: { telemetry: "example.telemetry", alert: "example.alerts" },
  defaultTopic: "example.unclassified",
  deadLetterTopic: "example.deadletter",
});

const controller = new AbortController();
Deno.addSignalListener("SIGINT", () => controller.abort());

// Local brokers from `deno task brokers` create topics on first use.
await using sink = await KafkaSink.connect({
  brokers,
  allowAutoTopicCreation: true,
});
let handled = 0;
for await (
  const envelope of mqttStream({
    url: mqttUrl,
    topics: [topic],
    clientId: "example-mqtt-to-kafka",
    signal: controller.signal,
  })
) {
  const [kafkaTopic, record] = envelope.kind === "event"
    ? [router.route(envelope.event).topic, toKafkaRecord(envelope.event)]
    : [
      router.deadLetterTopic,
      deadLetterRecord({
        payload: envelope.message.payload,
        error: envelope.error,
        mqttTopic: envelope.message.topic,
      }),
    ];
  // Not awaited: records are batched, and each MQTT message is acknowledged
  // when Kafka has its record.
  sink.send(kafkaTopic, record).then(
    () => envelope.ack(),
    (error) => envelope.nack(error),
  );
  if (++handled >= maxMessages) controller.abort();
}
console.log(`handled ${handled} messages`);
