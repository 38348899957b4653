/**
 * The mock source feeding a sink: test CloudEvents published to MQTT at a
 * steady rate, as a device fleet would, for trying the bridge without one.
 *
 * `mockCloudEvents` makes the events (the same ones for the same seed: ids
 * `mock-<seed>-<n>`, a mix of classifications and sizes); `mockSource` sets
 * the pace; an `MqttSink` publishes each to `<prefix>/<classification>` at
 * QoS 1. Each write resolves when the broker acknowledged it, and the loop
 * waits for that, so a slow broker slows the publisher down rather than
 * piling events up (`mockSource` skips the ticks it missed).
 *
 * Run against local brokers (`deno task brokers` prints their addresses),
 * with `deno task bridge` running to see the events arrive in Kafka:
 *
 *   MQTT_URL=mqtt://127.0.0.1:<port> RATE=10 COUNT=100 \
 *     deno run --allow-net --allow-env examples/mock_to_mqtt.ts
 *
 * Stops after COUNT events (no end when unset), or on Ctrl-C.
 *
 * @module
 */
import type { CloudEvent } from "@dataexchange/streams/cloudevents";
import { MqttSink } from "@dataexchange/streams/mqtt";
import { mockCloudEvents, mockSource } from "@dataexchange/streams/streams";

const url = Deno.env.get("MQTT_URL") ?? "mqtt://127.0.0.1:1883";
const prefix = Deno.env.get("TOPIC_PREFIX") ?? "devices/mock";
const rate = Number(Deno.env.get("RATE") ?? 10); // events per second
const count = Number(Deno.env.get("COUNT") ?? Infinity);
const seed = Number(Deno.env.get("SEED") ?? 1);

const stop = new AbortController();
Deno.addSignalListener("SIGINT", () => stop.abort());

const items = mockCloudEvents({
  seed,
  classifications: { telemetry: 6, alert: 1, none: 1 },
  sizes: { min: 200, max: 1024 },
});
const ticks = mockSource({
  intervalMs: 1000 / rate,
  count,
  signal: stop.signal,
  value: () => items.next().value!,
});

const topicOf = (event: CloudEvent) =>
  `${prefix}/${event.classification ?? "unclassified"}`;
await using sink = await MqttSink.connect({
  url,
  clientId: Deno.env.get("CLIENT_ID") ?? "example-mock-publisher",
  topic: topicOf,
});
for await (const item of ticks) {
  // Without `malformedRatio`, every item is a valid event.
  if (item.kind !== "event") continue;
  await sink.write(item.event);
  console.log(`published ${item.event.id} to ${topicOf(item.event)}`);
}
console.log(`published ${sink.published} events`);
