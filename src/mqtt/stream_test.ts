import assert from "node:assert/strict";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import mqtt from "mqtt";
import { createCloudEvent, serializeStructured } from "../cloudevents/mod.ts";
import { publishAll, uniqueName } from "../../tests/_kafka.ts";
import { testBrokers } from "../../tests/_brokers.ts";
import { leftInSession, prepareSession } from "../../tests/_mqtt.ts";
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

Deno.test({
  name:
    "mqttStream yields events in both modes and invalid messages without ending",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const topic = uniqueName("stream/modes");
    const clientId = uniqueName("stream");
    await prepareSession(brokers!.mqttUrl, clientId, topic);
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
    await prepareSession(brokers!.mqttUrl, clientId, topic);
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
    assert.deepEqual(
      await leftInSession(brokers!.mqttUrl, clientId, topic),
      [],
    );
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
    await prepareSession(brokers!.mqttUrl, clientId, topic);
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
    assert.deepEqual(
      await leftInSession(brokers!.mqttUrl, clientId, topic),
      [],
    );
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
    await prepareSession(brokers!.mqttUrl, clientId, topic);
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
    assert.deepEqual(await leftInSession(brokers!.mqttUrl, clientId, topic), [
      "m2",
      "m3",
    ]);
  },
});

/**
 * A TCP proxy to the broker that cuts the first connection as soon as the
 * client sends SUBSCRIBE, before the broker can answer, and relays the
 * later connections untouched.
 */
function cutFirstSubscribe(target: URL) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let connections = 0;
  const relay = async (
    from: Deno.Conn,
    to: Deno.Conn,
    cutOnSubscribe: boolean,
  ) => {
    const buffer = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await from.read(buffer);
        if (n === null) break;
        // 0x82 is the first byte of a SUBSCRIBE packet.
        if (cutOnSubscribe && buffer.subarray(0, n).includes(0x82)) break;
        await to.write(buffer.subarray(0, n));
      }
    } catch { /* the other side closed */ }
    try {
      from.close();
    } catch { /* already closed */ }
    try {
      to.close();
    } catch { /* already closed */ }
  };
  (async () => {
    for await (const client of listener) {
      const first = connections++ === 0;
      const server = await Deno.connect({
        hostname: target.hostname,
        port: Number(target.port),
      });
      relay(client, server, first);
      relay(server, client, false);
    }
  })().catch(() => {});
  return {
    url: `mqtt://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    connections: () => connections,
    close: () => listener.close(),
  };
}

Deno.test({
  name:
    "mqttStream subscribes again when the connection drops before the SUBACK",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // Regression: a connection lost between CONNACK and SUBACK ended the
    // stream with subscribe-failed instead of reconnecting.
    const proxy = cutFirstSubscribe(new URL(brokers!.mqttUrl));
    const topic = uniqueName("stream/resubscribe");
    const controller = new AbortController();
    const stream = mqttStream({
      url: proxy.url,
      topics: [topic],
      clientId: uniqueName("stream"),
      reconnectPeriodMs: 100,
      signal: controller.signal,
    });
    const first = stream.next();
    // Publish until the stream has a working subscription.
    let received: MqttEnvelope | undefined;
    first.then((result) => received = result.value as MqttEnvelope);
    for (let i = 0; received === undefined && i < 200; i++) {
      await publishAll(brokers!.mqttUrl, [{ topic, payload: `p${i}` }]);
    }
    const envelope = received ?? (await first).value as MqttEnvelope;
    assert.ok(envelope, "a message arrived");
    assert.ok(proxy.connections() >= 2, "the first connection was cut");
    envelope.ack();
    controller.abort();
    await stream.next();
    proxy.close();
  },
});

Deno.test({
  name:
    "mqttStream does not take retained messages again on a resumed session (MQTT 5)",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // Regression: every restart re-subscribed and the broker sent the
    // retained message again, a duplicate in Kafka each time.
    const topic = uniqueName("stream/retained");
    const clientId = uniqueName("stream");
    await publishAll(brokers!.mqttUrl, [{
      topic,
      payload: "retained",
      options: { retain: true },
    }]);
    const open = () =>
      mqttStream({ url: brokers!.mqttUrl, topics: [topic], clientId });
    const first = open();
    const retained = (await first.next()).value as MqttEnvelope;
    assert.equal(
      new TextDecoder().decode(retained.message.payload),
      "retained",
    );
    retained.ack();
    await first.return();

    const second = open();
    const next = second.next();
    await publishAll(brokers!.mqttUrl, [{ topic, payload: "fresh" }]);
    const envelope = (await next).value as MqttEnvelope;
    assert.equal(new TextDecoder().decode(envelope.message.payload), "fresh");
    envelope.ack();
    await second.return();
    await publishAll(brokers!.mqttUrl, [{
      topic,
      payload: "",
      options: { retain: true },
    }]);
  },
});

Deno.test({
  name: "mqttStream on abort does not wait for messages it never handed out",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // Regression: queued envelopes counted as unsettled, so every stop with
    // a backlog waited the whole drain timeout.
    const topic = uniqueName("stream/backlog");
    const clientId = uniqueName("stream");
    await prepareSession(brokers!.mqttUrl, clientId, topic);
    await publishAll(
      brokers!.mqttUrl,
      Array.from({ length: 50 }, (_, i) => ({ topic, payload: `m${i}` })),
    );
    const controller = new AbortController();
    const stream = mqttStream({
      url: brokers!.mqttUrl,
      topics: [topic],
      clientId,
      drainTimeoutMs: 60_000,
      signal: controller.signal,
    });
    const [first] = await take(stream, 1);
    first.ack();
    controller.abort();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const outcome = await Promise.race([
      stream.next().then(() => "ended"),
      new Promise((resolve) => timer = setTimeout(resolve, 5000, "waiting")),
    ]);
    clearTimeout(timer);
    assert.equal(outcome, "ended");
    const left = await leftInSession(brokers!.mqttUrl, clientId, topic);
    assert.equal(left.length, 49, "all but the acknowledged one stay");
  },
});

Deno.test({
  name:
    "mqttStream, when another client with its client id takes the session over, names that client id in its warning",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const topic = uniqueName("stream/takeover");
    const clientId = uniqueName("takeover");
    const warnings: LogRecord[] = [];
    await configure({
      sinks: { memory: (record) => warnings.push(record) },
      loggers: [
        {
          category: ["dataexchange", "mqtt"],
          sinks: ["memory"],
          lowestLevel: "warning",
        },
        { category: ["logtape", "meta"], sinks: [] },
      ],
    });
    const controller = new AbortController();
    let connected!: () => void;
    const up = new Promise<void>((resolve) => connected = resolve);
    const stream = mqttStream({
      url: brokers!.mqttUrl,
      topics: [topic],
      clientId,
      signal: controller.signal,
      onState: (state) => state === "connected" && connected(),
    });
    const pending = stream.next();
    let intruder: mqtt.MqttClient | undefined;
    try {
      await up;
      // A second connection under the same id: the broker closes the first
      // (with DISCONNECT reason 0x8E, session taken over, or, as Mosquitto
      // 2.0 does, without a word).
      intruder = await mqtt.connectAsync(brokers!.mqttUrl, {
        clientId,
        clean: false,
        protocolVersion: 5,
        reconnectPeriod: 0,
      });
      const deadline = Date.now() + 10_000;
      const takeover = () =>
        warnings.find((record) =>
          /took the session over|another client may be connecting/.test(
            record.rawMessage.toString(),
          )
        );
      while (!takeover()) {
        assert.ok(
          Date.now() < deadline,
          `no take-over warning within 10 s; got ${
            JSON.stringify(warnings.map((r) => r.rawMessage))
          }`,
        );
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.equal(takeover()!.properties.clientId, clientId);
    } finally {
      await intruder?.endAsync();
      controller.abort();
      await pending;
      await stream.return(undefined);
      await reset();
    }
  },
});
