/**
 * Reading a stream until a deadline, with `combine`.
 *
 * Samples the CloudEvents of an MQTT topic for a time window that opens at
 * the first message: each message read inside the window is acknowledged,
 * and when the window closes the loop ends. A message that was on its way at
 * that moment is nacked, not dropped; it and everything after it stay at the
 * broker, in this client's persistent session, for the next run.
 *
 * Run against local brokers (`deno task brokers` prints their addresses):
 *
 *   MQTT_URL=mqtt://127.0.0.1:<port> WINDOW_MS=5000 \
 *     deno run --allow-net --allow-env examples/combine_deadline.ts
 *
 * Stops when the window closes, or on Ctrl-C.
 *
 * @module
 */
import { mqttStream } from "@dataexchange/streams/mqtt";
import { combine } from "@dataexchange/streams/streams";

const url = Deno.env.get("MQTT_URL") ?? "mqtt://127.0.0.1:1883";
const topic = Deno.env.get("MQTT_TOPIC") ?? "devices/#";
const clientId = Deno.env.get("CLIENT_ID") ?? "example-window";
const windowMs = Number(Deno.env.get("WINDOW_MS") ?? 5000);

// The deadline: a promise, resolved WINDOW_MS after the first message.
const deadline = Promise.withResolvers<void>();
let timer: ReturnType<typeof setTimeout> | undefined;

// The deadline also stops the MQTT stream. `combine` stops yielding at once,
// but a source that is waiting for the network ends its wait only through
// its own signal (see the documentation of `combine`).
const stop = new AbortController();
deadline.promise.then(() => stop.abort());
Deno.addSignalListener("SIGINT", () => stop.abort());

const perClassification = new Map<string, number>();
let read = 0;
const messages = mqttStream({
  url,
  topics: [topic],
  clientId,
  signal: stop.signal,
});
for await (const envelope of combine(messages, deadline.promise)) {
  timer ??= setTimeout(deadline.resolve, windowMs);
  const label = envelope.kind === "event"
    ? String(envelope.event.classification ?? "(none)")
    : `invalid: ${envelope.error.code}`;
  perClassification.set(label, (perClassification.get(label) ?? 0) + 1);
  console.log(
    `read ${envelope.kind === "event" ? envelope.event.id : "-"} (${label})`,
  );
  envelope.ack();
  read++;
}
clearTimeout(timer);
console.log(
  `window closed: ${read} messages acknowledged`,
  Object.fromEntries(perClassification),
);
