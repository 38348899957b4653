import assert from "node:assert/strict";
import mqtt from "mqtt";
import { createCloudEvent, serializeStructured } from "../cloudevents/mod.ts";
import { publishAll, uniqueName } from "../../tests/_kafka.ts";
import { testBrokers } from "../../tests/_brokers.ts";
import { type MqttEnvelope, mqttStream } from "./stream.ts";

const brokers = await testBrokers();
const ignore = brokers === undefined;

/** Takes `count` envelopes from a stream, then returns them (does not end it). */
async function take(
  iterator: AsyncIterator<MqttEnvelope>,
  count: number,
): Promise<MqttEnvelope[]> {
  const taken: MqttEnvelope[] = [];
  while (taken.length < count) {
    const next = await iterator.next();
    if (next.done) break;
    taken.push(next.value);
  }
  return taken;
}

/**
 * Creates a persistent session subscribed to `topic`, so that messages
 * published from now on wait for `clientId` whatever the timing.
 */
async function prepareSession(clientId: string, topic: string) {
  const session = await mqtt.connectAsync(brokers!.mqttUrl, {
    clientId,
    clean: false,
    protocolVersion: 5,
    properties: { sessionExpiryInterval: 300 },
  });
  await session.subscribeAsync(topic, { qos: 1 });
  await session.endAsync();
}

/** Messages a fresh client of the session receives before a marker. */
async function leftInSession(clientId: string, topic: string) {
  // The handler must be in place before the CONNACK: the broker redelivers
  // right after it.
  const client = mqtt.connect(brokers!.mqttUrl, {
    clientId,
    clean: false,
    protocolVersion: 5,
    properties: { sessionExpiryInterval: 0 },
  });
  const payloads: string[] = [];
  const marker = `marker-${clientId}`;
  const done = new Promise<void>((resolve) => {
    client.on("message", (_topic, payload) => {
      const text = payload.toString();
      if (text === marker) resolve();
      else payloads.push(text);
    });
  });
  await new Promise<void>((resolve) => client.once("connect", () => resolve()));
  await publishAll(brokers!.mqttUrl, [{ topic, payload: marker }]);
  await done;
  await client.endAsync();
  return payloads;
}

Deno.test({
  name:
    "mqttStream yields events in both modes and invalid messages without ending",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const topic = uniqueName("stream/modes");
    const clientId = uniqueName("stream");
    await prepareSession(clientId, topic);
    const controller = new AbortController();
    const stream = mqttStream({
      url: brokers!.mqttUrl,
      topics: [topic],
      clientId,
      signal: controller.signal,
    });
    const first = stream.next();
    const event = createCloudEvent({
      source: "/test",
      type: "t",
      classification: "alert",
      data: { ok: true },
    });
    await publishAll(brokers!.mqttUrl, [
      { topic, payload: serializeStructured(event) },
      { topic, payload: "{broken" },
      {
        topic,
        payload: "hello",
        options: {
          properties: {
            contentType: "text/plain",
            userProperties: {
              specversion: "1.0",
              id: "b-1",
              source: "/bin",
              type: "t.bin",
            },
          },
        },
      },
    ]);
    const envelopes = [(await first).value as MqttEnvelope];
    envelopes.push(...await take(stream, 2));
    assert.deepEqual(envelopes.map((e) => e.kind), [
      "event",
      "invalid",
      "event",
    ]);
    const [structured, invalid, binary] = envelopes;
    assert.equal(structured.kind === "event" && structured.event.id, event.id);
    assert.equal(
      invalid.kind === "invalid" && invalid.error.code,
      "malformed-json",
    );
    assert.equal(new TextDecoder().decode(invalid.message.payload), "{broken");
    assert.ok(binary.kind === "event");
    assert.equal(binary.event.data, "hello");
    assert.equal(binary.event.datacontenttype, "text/plain");
    for (const envelope of envelopes) envelope.ack();
    controller.abort();
    assert.equal((await stream.next()).done, true);
  },
});

Deno.test({
  name:
    "mqttStream takes a resumed session's stored messages before its SUBACK",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // Regression: awaiting the SUBACK before reading deadlocked when the
    // broker sent more stored messages than the in-flight cap first.
    const topic = uniqueName("stream/resume");
    const clientId = uniqueName("stream");
    await prepareSession(clientId, topic);
    const count = 500;
    await publishAll(
      brokers!.mqttUrl,
      Array.from({ length: count }, (_, i) => ({ topic, payload: `m${i}` })),
    );

    const controller = new AbortController();
    const stream = mqttStream({
      url: brokers!.mqttUrl,
      topics: [topic],
      clientId,
      maxInFlight: 10,
      signal: controller.signal,
    });
    const seen = new Set<string>();
    for await (const envelope of stream) {
      seen.add(new TextDecoder().decode(envelope.message.payload));
      envelope.ack();
      if (seen.size === count) controller.abort();
    }
    assert.equal(seen.size, count);
    assert.deepEqual(await leftInSession(clientId, topic), []);
  },
});

Deno.test({
  name:
    "mqttStream on abort waits for handed-out envelopes, then releases their acks",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const topic = uniqueName("stream/drain");
    const clientId = uniqueName("stream");
    await prepareSession(clientId, topic);
    const controller = new AbortController();
    const stream = mqttStream({
      url: brokers!.mqttUrl,
      topics: [topic],
      clientId,
      signal: controller.signal,
    });
    const first = stream.next();
    await publishAll(
      brokers!.mqttUrl,
      Array.from({ length: 5 }, (_, i) => ({ topic, payload: `m${i}` })),
    );
    const envelopes = [(await first).value as MqttEnvelope];
    envelopes.push(...await take(stream, 4));
    controller.abort();
    const ended = stream.next();
    // Settled after the abort: the stream is still draining, so these count.
    for (const envelope of envelopes) envelope.ack();
    assert.equal((await ended).done, true);
    assert.deepEqual(await leftInSession(clientId, topic), []);
  },
});

Deno.test({
  name: "mqttStream left early keeps unacknowledged messages at the broker",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const topic = uniqueName("stream/break");
    const clientId = uniqueName("stream");
    await prepareSession(clientId, topic);
    const stream = mqttStream({
      url: brokers!.mqttUrl,
      topics: [topic],
      clientId,
    });
    const first = stream.next();
    await publishAll(
      brokers!.mqttUrl,
      Array.from({ length: 4 }, (_, i) => ({ topic, payload: `m${i}` })),
    );
    const envelopes = [(await first).value as MqttEnvelope];
    envelopes.push(...await take(stream, 3));
    envelopes[0].ack();
    envelopes[1].ack();
    await stream.return();
    assert.deepEqual(await leftInSession(clientId, topic), ["m2", "m3"]);
  },
});
