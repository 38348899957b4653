import assert from "node:assert/strict";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import mqtt from "mqtt";
import {
  type CloudEvent,
  createCloudEvent,
  fromMqttMessage,
  type MqttMessage,
} from "../cloudevents/mod.ts";
import { isDataExchangeError } from "../errors.ts";
import { uniqueName } from "../../tests/_kafka.ts";
import { testBrokers } from "../../tests/_brokers.ts";
import { freePort, startMosquitto } from "../../tools/brokers/mod.ts";
import type { MqttConnectionState } from "./stream.ts";
import { PubackHoldingBroker } from "./_test_broker.ts";
import { MqttSink, type MqttSinkOptions, topicTemplate } from "./sink.ts";

const brokers = await testBrokers();
const ignore = brokers === undefined;
const decoder = new TextDecoder();

function event(n: number, extra: Partial<Record<string, string>> = {}) {
  return createCloudEvent({
    id: `e${n}`,
    source: "/test/sink",
    type: "com.example.command",
    classification: "command",
    data: { n },
    ...extra,
  });
}

/** A subscriber on the real broker that collects what arrives. */
async function subscribe(filter: string, protocolVersion: 4 | 5 = 5) {
  const client = await mqtt.connectAsync(brokers!.mqttUrl, {
    clientId: uniqueName("sink-sub"),
    protocolVersion,
  });
  const messages: MqttMessage[] = [];
  let onMessage = () => {};
  client.on("message", (topic, payload, packet) => {
    const props = packet.properties;
    messages.push({
      topic,
      payload: new Uint8Array(payload),
      properties: props && {
        contentType: props.contentType,
        userProperties: props.userProperties,
      },
    });
    onMessage();
  });
  await client.subscribeAsync(filter, { qos: 1 });
  return {
    messages,
    /** Resolves once `count` messages arrived; fails after 10 s. */
    received(count: number): Promise<MqttMessage[]> {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(
            new Error(`expected ${count} messages, got ${messages.length}`),
          );
        }, 10000);
        onMessage = () => {
          if (messages.length < count) return;
          clearTimeout(timer);
          onMessage = () => {};
          resolve(messages);
        };
        onMessage();
      });
    },
    close: () => client.endAsync(),
  };
}

function connect(
  options: Partial<MqttSinkOptions> & Pick<MqttSinkOptions, "topic">,
): Promise<MqttSink> {
  return MqttSink.connect({
    url: brokers?.mqttUrl ?? "mqtt://127.0.0.1:1",
    clientId: uniqueName("sink"),
    ...options,
  });
}

/** Waits for `state` among the states a sink reports. */
function stateWatcher() {
  const states: MqttConnectionState[] = [];
  let check = () => {};
  return {
    states,
    onState(state: MqttConnectionState) {
      states.push(state);
      check();
    },
    /** Resolves once `state` was reported `count` times in all. */
    reached(state: MqttConnectionState, count = 1): Promise<void> {
      return new Promise((resolve) => {
        check = () => {
          if (states.filter((s) => s === state).length < count) return;
          check = () => {};
          resolve();
        };
        check();
      });
    },
  };
}

for (const protocolVersion of [4, 5] as const) {
  Deno.test({
    name: `MqttSink on MQTT ${
      protocolVersion === 4 ? "3.1.1" : "5"
    } resolves a QoS 1 write and the subscriber reads back the same structured event`,
    ignore,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const topic = uniqueName("sink/structured");
      const subscriber = await subscribe(topic, protocolVersion);
      try {
        await using sink = await connect({ topic, protocolVersion });
        const sent = event(1, { subject: "pump-7" });
        await sink.write(sent);
        assert.equal(sink.published, 1);
        assert.equal(sink.pending, 0);

        const [message] = await subscriber.received(1);
        assert.equal(message.topic, topic);
        assert.deepEqual(fromMqttMessage(message, { protocolVersion }), sent);
        if (protocolVersion === 5) {
          assert.match(
            message.properties?.contentType ?? "",
            /^application\/cloudevents\+json/,
          );
        } else {
          assert.equal(message.properties?.contentType, undefined);
        }
      } finally {
        await subscriber.close();
      }
    },
  });
}

Deno.test({
  name:
    "MqttSink in binary mode publishes attributes as user properties and data as the payload",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const topic = uniqueName("sink/binary");
    const subscriber = await subscribe(topic);
    try {
      await using sink = await connect({ topic, mode: "binary" });
      const sent = event(2, { subject: "valve-3" });
      await sink.write(sent);

      const [message] = await subscriber.received(1);
      assert.equal(message.properties?.contentType, "application/json");
      const userProperties = message.properties?.userProperties ?? {};
      assert.equal(userProperties.specversion, "1.0");
      assert.equal(userProperties.id, "e2");
      assert.equal(userProperties.subject, "valve-3");
      assert.equal(userProperties.classification, "command");
      assert.deepEqual(JSON.parse(decoder.decode(message.payload)), { n: 2 });
      assert.deepEqual(fromMqttMessage(message), sent);
    } finally {
      await subscriber.close();
    }
  },
});

Deno.test({
  name:
    "MqttSink fills a topic template and refuses attributes that would inject topic levels or wildcards",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const prefix = uniqueName("sink/devices");
    const subscriber = await subscribe(`${prefix}/#`);
    try {
      await using sink = await connect({
        topic: topicTemplate(`${prefix}/{subject}/commands`),
      });
      await sink.write(event(1, { subject: "d1" }));
      for (
        const bad of [
          event(2, { subject: "a/b" }),
          event(3, { subject: "+" }),
          event(4, { subject: "#" }),
          event(5),
        ]
      ) {
        await assert.rejects(sink.write(bad), (error) => {
          assert.ok(isDataExchangeError(error));
          assert.equal(error.code, "topic-template");
          assert.equal(error.retriable, false);
          assert.match(error.message, new RegExp(`"${bad.id}"`));
          return true;
        });
      }
      await sink.write(event(6, { subject: "d2" }));

      // Both valid events arrived, in order, and nothing in between.
      const messages = await subscriber.received(2);
      assert.deepEqual(messages.map((m) => m.topic), [
        `${prefix}/d1/commands`,
        `${prefix}/d2/commands`,
      ]);
      assert.deepEqual(messages.map((m) => fromMqttMessage(m).id), [
        "e1",
        "e6",
      ]);
      assert.equal(sink.published, 2);
    } finally {
      await subscriber.close();
    }
  },
});

Deno.test({
  name: "MqttSink at QoS 0 resolves a write once it is on the socket",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const topic = uniqueName("sink/qos0");
    const subscriber = await subscribe(topic);
    try {
      await using sink = await connect({ topic, qos: 0 });
      await Promise.all([1, 2, 3].map((n) => sink.write(event(n))));
      assert.equal(sink.pending, 0);
      const messages = await subscriber.received(3);
      assert.deepEqual(messages.map((m) => fromMqttMessage(m).id), [
        "e1",
        "e2",
        "e3",
      ]);
    } finally {
      await subscriber.close();
    }
  },
});

Deno.test({
  name: "MqttSink.send() publishes to an explicit topic",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const topic = uniqueName("sink/explicit");
    const subscriber = await subscribe(topic);
    try {
      await using sink = await connect({ topic: "unused/default" });
      await sink.send(topic, event(1));
      const [message] = await subscriber.received(1);
      assert.equal(message.topic, topic);
      await assert.rejects(sink.send(`${topic}/+`, event(2)), RangeError);
    } finally {
      await subscriber.close();
    }
  },
});

Deno.test({
  name:
    "MqttSink.close() waits until every outstanding write is acknowledged, then refuses writes",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const topic = uniqueName("sink/flush");
    const subscriber = await subscribe(topic);
    try {
      const sink = await connect({ topic, maxPending: 50 });
      const count = 300;
      let acknowledged = 0;
      const writes = Array.from(
        { length: count },
        (_, n) => sink.write(event(n)).then(() => acknowledged++),
      );
      assert.equal(sink.pending, 50);
      assert.equal(sink.waiting, count - 50);

      await sink.close();
      assert.equal(acknowledged, count);
      await Promise.all(writes);
      assert.equal(sink.published, count);
      await assert.rejects(sink.write(event(count)), {
        code: "sink-closed",
        retriable: true,
      });

      const messages = await subscriber.received(count);
      assert.deepEqual(
        messages.map((m) => fromMqttMessage(m).id),
        Array.from({ length: count }, (_, n) => `e${n}`),
      );
    } finally {
      await subscriber.close();
    }
  },
});

Deno.test({
  name:
    "MqttSink holds at most maxPending publishes while the broker is down and delivers them when it is back",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using mosquitto = await startMosquitto();
    const watcher = stateWatcher();
    await using sink = await MqttSink.connect({
      url: mosquitto.url,
      clientId: uniqueName("sink-outage"),
      topic: "sink/outage",
      maxPending: 3,
      reconnectPeriodMs: 50,
      onState: watcher.onState,
    });
    await mosquitto.kill();
    await watcher.reached("disconnected");

    let acknowledged = 0;
    const writes = Array.from(
      { length: 8 },
      (_, n) => sink.write(event(n)).then(() => acknowledged++),
    );
    assert.equal(sink.pending, 3);
    assert.equal(sink.waiting, 5);
    // Reconnection attempts fail while the broker is down; nothing moves.
    await watcher.reached("connecting", 3);
    assert.equal(sink.pending, 3);
    assert.equal(sink.waiting, 5);
    assert.equal(acknowledged, 0);

    await mosquitto.restart();
    await Promise.all(writes);
    assert.equal(acknowledged, 8);
    assert.equal(sink.published, 8);
    assert.equal(sink.pending, 0);
  },
});

Deno.test({
  name:
    "MqttSink.connect() retries an unreachable broker until its signal aborts",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const watcher = stateWatcher();
    const controller = new AbortController();
    const connecting = MqttSink.connect({
      url: `mqtt://127.0.0.1:${freePort()}`,
      clientId: uniqueName("sink-unreachable"),
      topic: "t",
      reconnectPeriodMs: 20,
      signal: controller.signal,
      onState: watcher.onState,
    });
    await watcher.reached("connecting", 3);
    const reason = new Error("gave up");
    controller.abort(reason);
    await assert.rejects(connecting, (error) => error === reason);
    assert.equal(watcher.states.at(-1), "disconnected");
  },
});

/**
 * Collects the sink's reconnect warnings while `fn` runs (LogTape is
 * configured for the test only, then reset).
 */
async function withReconnectLog<T>(
  fn: (attempts: LogRecord[]) => Promise<T>,
): Promise<T> {
  const attempts: LogRecord[] = [];
  await configure({
    sinks: {
      memory(record) {
        if (record.properties.attempt !== undefined) attempts.push(record);
      },
    },
    loggers: [
      {
        category: ["dataexchange", "mqtt", "sink"],
        sinks: ["memory"],
        lowestLevel: "warning",
      },
      { category: ["logtape", "meta"], sinks: [] },
    ],
  });
  try {
    return await fn(attempts);
  } finally {
    await reset();
  }
}

/** Resolves once `condition` holds, polling; fails after 10 s with `what`. */
async function eventually(condition: () => boolean, what: () => string) {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what()}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/**
 * Checks reconnect warnings against capped exponential backoff with full
 * jitter from `initialDelayMs` to `maxDelayMs`: numbered from 1, each delay
 * below its doubling bound, each really waited before its attempt
 * (`attemptTimes[i]`: when the sink reported `connecting` for attempt i + 1),
 * and, unlike a fixed period, some later delay above the first bound.
 */
function assertBackoff(
  attempts: LogRecord[],
  attemptTimes: number[],
  initialDelayMs: number,
  maxDelayMs: number,
): void {
  const delays = attempts.map((record) => record.properties.delayMs as number);
  assert.deepEqual(
    attempts.map((record) => record.properties.attempt),
    attempts.map((_, i) => i + 1),
  );
  for (const record of attempts) {
    assert.equal(record.level, "warning");
    assert.match(String(record.rawMessage), /reconnect attempt \{attempt\}/);
  }
  delays.forEach((delayMs, i) => {
    const bound = Math.min(maxDelayMs, initialDelayMs * 2 ** i);
    assert.ok(
      delayMs >= 0 && delayMs <= bound,
      `attempt ${i + 1}: ${delayMs} ms, bound ${bound}; delays ${delays}`,
    );
    const at = attemptTimes[i];
    if (at === undefined) return; // The last wait may still run.
    const waited = at - attempts[i].timestamp;
    assert.ok(
      waited >= delayMs - 2 && waited <= delayMs + 500,
      `attempt ${i + 1}: logged ${delayMs} ms, waited ${waited} ms`,
    );
  });
  assert.ok(
    delays.slice(3).some((delayMs) => delayMs > initialDelayMs),
    `the bound grows past ${initialDelayMs} ms: delays ${delays}`,
  );
}

Deno.test({
  name:
    "MqttSink reconnects to a restarted broker with growing, jittered, logged waits, and a write after the restart resolves on PUBACK",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using mosquitto = await startMosquitto();
    await withReconnectLog(async (attempts) => {
      const connecting: number[] = [];
      const watcher = stateWatcher();
      const topic = uniqueName("sink/restart");
      await using sink = await MqttSink.connect({
        url: mosquitto.url,
        clientId: uniqueName("sink-restart"),
        topic,
        reconnectPeriodMs: 20,
        reconnectMaxDelayMs: 320,
        onState(state) {
          if (state === "connecting") connecting.push(Date.now());
          watcher.onState(state);
        },
      });
      await sink.write(event(0));

      await mosquitto.kill();
      await eventually(
        () => attempts.length >= 8,
        () => `8 reconnect attempts, got ${attempts.length}`,
      );
      // The first `connecting` is the initial connection's.
      assertBackoff(attempts.slice(0, 8), connecting.slice(1), 20, 320);
      assert.equal(attempts[0].properties.error, "connection closed");
      for (const record of attempts.slice(1, 8)) {
        assert.match(
          String(record.properties.error),
          /nothing accepts connections there/,
        );
      }

      await mosquitto.restart();
      await watcher.reached("connected", 2);
      const subscriber = await mqtt.connectAsync(mosquitto.url, {
        clientId: uniqueName("sink-restart-sub"),
      });
      try {
        const arrived = new Promise<string>((resolve) =>
          subscriber.on(
            "message",
            (_topic, payload) => resolve(decoder.decode(payload)),
          )
        );
        await subscriber.subscribeAsync(topic, { qos: 1 });
        await sink.write(event(1));
        assert.equal(sink.published, 2);
        assert.equal(sink.pending, 0);
        assert.equal(JSON.parse(await arrived).id, "e1");
      } finally {
        await subscriber.endAsync();
      }
    });
  },
});

Deno.test({
  name:
    "MqttSink.connect() waits longer between attempts at an unreachable broker, logging each with its number and delay",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withReconnectLog(async (attempts) => {
      const connecting: number[] = [];
      const controller = new AbortController();
      const connected = MqttSink.connect({
        url: `mqtt://127.0.0.1:${freePort()}`,
        clientId: uniqueName("sink-backoff"),
        topic: "t",
        reconnectPeriodMs: 10,
        reconnectMaxDelayMs: 160,
        signal: controller.signal,
        onState(state) {
          if (state === "connecting") connecting.push(Date.now());
        },
      });
      try {
        await eventually(
          () => attempts.length >= 8,
          () => `8 reconnect attempts, got ${attempts.length}`,
        );
      } finally {
        controller.abort(new Error("enough"));
        await connected.catch(() => {});
      }
      assertBackoff(attempts.slice(0, 8), connecting.slice(1), 10, 160);
      for (const record of attempts.slice(0, 8)) {
        assert.match(
          String(record.properties.error),
          /nothing accepts connections there/,
        );
      }
    });
  },
});

// The tests below run on a PubackHoldingBroker, which holds PUBACKs back, so
// they can see what the sink puts on the wire while nothing is acknowledged.

function nextMacrotask(): Promise<void> {
  // Gives the sink the chance to publish too much; not a wait for a result.
  return new Promise((resolve) => setTimeout(resolve, 0));
}

Deno.test({
  name:
    "MqttSink never has more than maxPending PUBLISH packets unacknowledged on the wire",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const broker = new PubackHoldingBroker();
    try {
      await using sink = await connect({
        url: broker.url,
        topic: "wire/bound",
        maxPending: 4,
      });
      const total = 10;
      const cap = 4;
      const writes = Array.from(
        { length: total },
        (_, n) => sink.write(event(n)),
      );
      for (let acked = 0; acked < total; acked++) {
        const expected = Math.min(total, acked + cap);
        await broker.received(expected);
        await nextMacrotask();
        assert.equal(broker.publishes.length, expected);
        assert.equal(sink.pending, expected - acked);
        await broker.puback(broker.publishes[acked]);
        await writes[acked];
      }
      assert.equal(sink.published, total);
      assert.ok(broker.publishes.every((p) => p.qos === 1 && !p.dup));
    } finally {
      broker.close();
    }
  },
});

Deno.test({
  name:
    "MqttSink rejects a write whose PUBACK carries an MQTT 5 error reason code",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const broker = new PubackHoldingBroker();
    try {
      await using sink = await connect({ url: broker.url, topic: "wire/rc" });
      const refused = sink.write(event(1));
      const throttled = sink.write(event(2));
      await broker.received(2);
      await broker.puback(broker.publishes[0], 0x87);
      await broker.puback(broker.publishes[1], 0x97);
      await assert.rejects(refused, {
        code: "publish-rejected",
        retriable: false,
        message: /0x87/,
      });
      await assert.rejects(throttled, {
        code: "publish-rejected",
        retriable: true,
        message: /0x97/,
      });
    } finally {
      broker.close();
    }
  },
});

Deno.test({
  name:
    "MqttSink.close() rejects writes still unacknowledged after closeTimeoutMs with a retriable sink-closed",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const broker = new PubackHoldingBroker();
    try {
      const sink = await connect({
        url: broker.url,
        topic: "wire/close",
        maxPending: 1,
        closeTimeoutMs: 50,
      });
      const inFlight = sink.write(event(1));
      const waiting = sink.write(event(2));
      await broker.received(1);
      const rejected = [inFlight, waiting].map((write) =>
        assert.rejects(write, { code: "sink-closed", retriable: true })
      );
      await sink.close();
      await Promise.all(rejected);
      assert.equal(broker.publishes.length, 1);
    } finally {
      broker.close();
    }
  },
});

Deno.test({
  name:
    "MqttSink closes at once when its signal aborts, rejecting what is unacknowledged",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const broker = new PubackHoldingBroker();
    try {
      const controller = new AbortController();
      const watcher = stateWatcher();
      const sink = await connect({
        url: broker.url,
        topic: "wire/abort",
        signal: controller.signal,
        onState: watcher.onState,
      });
      const write = sink.write(event(1));
      await broker.received(1);
      const reason = new Error("shutdown");
      controller.abort(reason);
      await assert.rejects(write, (error) => {
        assert.ok(isDataExchangeError(error));
        assert.equal(error.code, "sink-closed");
        assert.equal(error.cause, reason);
        return true;
      });
      await watcher.reached("disconnected");
      await sink.close();
      await assert.rejects(sink.write(event(2)), { code: "sink-closed" });
    } finally {
      broker.close();
    }
  },
});

Deno.test({
  name:
    "MqttSink keeps no more QoS 1 publishes in flight than the broker's Receive Maximum",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const broker = new PubackHoldingBroker({ receiveMaximum: 2 });
    try {
      await using sink = await connect({
        url: broker.url,
        topic: "wire/receive-maximum",
        maxPending: 100,
      });
      const writes = [1, 2, 3].map((n) => sink.write(event(n)));
      assert.equal(sink.pending, 2);
      assert.equal(sink.waiting, 1);
      await broker.received(2);
      await nextMacrotask();
      assert.equal(broker.publishes.length, 2);
      await broker.puback(broker.publishes[0]);
      await broker.received(3);
      await broker.puback(broker.publishes[1]);
      await broker.puback(broker.publishes[2]);
      await Promise.all(writes);
    } finally {
      broker.close();
    }
  },
});

for (const mode of ["structured", "binary"] as const) {
  Deno.test({
    name:
      `MqttSink in ${mode} mode refuses a packet over the broker's Maximum Packet Size, to the byte`,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const fits = event(1, { subject: "größe" });
      const tooLarge = { ...fits, id: "e10" };
      // What MQTT.js puts on the wire for `fits`, measured on a broker
      // without a limit.
      const measure = new PubackHoldingBroker();
      let bytes: number;
      try {
        await using sink = await connect({
          url: measure.url,
          topic: "wire/size",
          mode,
        });
        const write = sink.write(fits);
        await measure.received(1);
        bytes = measure.publishes[0].bytes;
        await measure.puback(measure.publishes[0]);
        await write;
      } finally {
        measure.close();
      }

      const broker = new PubackHoldingBroker({ maximumPacketSize: bytes });
      try {
        await using sink = await connect({
          url: broker.url,
          topic: "wire/size",
          mode,
        });
        await assert.rejects(sink.write(tooLarge), (error) => {
          assert.ok(isDataExchangeError(error));
          assert.equal(error.code, "message-too-large");
          assert.equal(error.retriable, false);
          assert.match(
            error.message,
            new RegExp(`${bytes + 1} bytes .* at most ${bytes}`),
          );
          return true;
        });
        const write = sink.write(fits);
        await broker.received(1);
        assert.equal(broker.publishes[0].bytes, bytes);
        await broker.puback(broker.publishes[0]);
        await write;
        assert.equal(broker.publishes.length, 1);
      } finally {
        broker.close();
      }
    },
  });
}

Deno.test({
  name:
    "MqttSink.connect() rejects with connect-refused when the broker refuses",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const broker = new PubackHoldingBroker({ connackCode: 0x87 }); // Not authorized.
    try {
      await assert.rejects(
        connect({ url: broker.url, topic: "wire/refused" }),
        (error) => {
          assert.ok(isDataExchangeError(error));
          assert.equal(error.code, "connect-refused");
          assert.equal(error.retriable, false);
          assert.match(error.message, /reason code 135/);
          return true;
        },
      );
    } finally {
      broker.close();
    }
  },
});

Deno.test("MqttSink.connect() refuses bad options before connecting", async () => {
  const cases: Array<[Partial<MqttSinkOptions>, string, RegExp]> = [
    [{ url: "" }, "TypeError", /broker url/],
    [{ clientId: "" }, "TypeError", /non-empty clientId/],
    [{ protocolVersion: 3 as 4 }, "RangeError", /4 \(MQTT 3.1.1\) or 5; got 3/],
    [{ mode: "binary", protocolVersion: 4 }, "TypeError", /binary mode/],
    [{ mode: "json" as "binary" }, "TypeError", /"structured" or "binary"/],
    [{ qos: 2 as 1 }, "RangeError", /0 or 1; got 2/],
    [{ maxPending: 0 }, "RangeError", /1 to 65535; got 0/],
    [{ maxPending: 70000 }, "RangeError", /got 70000/],
    [{ topic: "a/#" }, "RangeError", /without wildcards/],
    [{ topic: "devices/{subject}" }, "TypeError", /topicTemplate/],
    [{ topic: 7 as unknown as string }, "TypeError", /got 7/],
    [{ closeTimeoutMs: -1 }, "RangeError", /closeTimeoutMs/],
    [{ reconnectPeriodMs: 0 }, "RangeError", /reconnectPeriodMs must be/],
    [{ reconnectMaxDelayMs: 1.5 }, "RangeError", /got 1.5/],
    [
      { reconnectMaxDelayMs: 25 * 3600_000 },
      "RangeError",
      /from 1 to 86400000 \(24 hours\); got 90000000/,
    ],
    [
      { reconnectPeriodMs: 500, reconnectMaxDelayMs: 100 },
      "RangeError",
      /reconnectPeriodMs \(500\) must not exceed reconnectMaxDelayMs \(100\)/,
    ],
  ];
  for (const [options, name, message] of cases) {
    await assert.rejects(
      MqttSink.connect({
        url: "mqtt://127.0.0.1:1",
        clientId: "c",
        topic: "t",
        ...options,
      }),
      { name, message },
      JSON.stringify(options),
    );
  }
});

Deno.test("topicTemplate() fills placeholders from attributes and extensions", () => {
  const fill = topicTemplate(
    "t/{subject}/{priority}/{urgent}/{classification}",
  );
  const withExtensions = createCloudEvent({
    source: "/s",
    type: "t",
    subject: "dev-1",
    classification: "alert",
    extensions: { priority: 3, urgent: true },
  });
  assert.equal(fill(withExtensions), "t/dev-1/3/true/alert");
  assert.equal(topicTemplate("fixed/topic")(withExtensions), "fixed/topic");
  assert.equal(
    topicTemplate("{subject}-{id}")(event(9, { subject: "a" })),
    "a-e9",
  );
});

Deno.test("topicTemplate() refuses attribute values that would change the topic's shape", () => {
  const topicOf = topicTemplate("devices/{subject}/commands");
  const bad: Array<[CloudEvent, RegExp]> = [
    [event(1, { subject: "a/b" }), /"a\/b", which contains \/, \+ or #/],
    [event(2, { subject: "+" }), /contains \/, \+ or #/],
    [event(3, { subject: "#" }), /contains \/, \+ or #/],
    [event(4), /attribute "subject" is missing/],
    [{ ...event(5), subject: "" }, /is "", which is empty/],
    [{ ...event(6), subject: "a\u0000b" }, /control character/],
    [{ ...event(7), subject: "a\nb" }, /control character/],
    [{ ...event(8), subject: "a\ud800" }, /malformed UTF-16/],
    [
      { ...event(9), subject: { nested: 1 } } as unknown as CloudEvent,
      /expected a string/,
    ],
  ];
  for (const [each, message] of bad) {
    assert.throws(() => topicOf(each), (error) => {
      assert.ok(isDataExchangeError(error));
      assert.equal(error.code, "topic-template");
      assert.equal(error.retriable, false);
      assert.match(error.message, message);
      return true;
    }, String(each.subject));
  }
  assert.throws(() => topicTemplate("sources/{source}")(event(1)), {
    code: "topic-template",
    message: /"\/test\/sink", which contains \/, \+ or #/,
  });
  const leading = topicTemplate("{subject}/commands");
  assert.throws(() => leading(event(1, { subject: "$SYS" })), {
    code: "topic-template",
    message: /starts with \$/,
  });
  assert.equal(topicOf(event(1, { subject: "$ok" })), "devices/$ok/commands");
  const long = topicTemplate("{subject}");
  assert.throws(() => long({ ...event(1), subject: "é".repeat(40000) }), {
    code: "topic-template",
    message: /80000 bytes long/,
  });
});

Deno.test("topicTemplate() refuses a malformed template when it is made", () => {
  const cases: Array<[unknown, RegExp]> = [
    ["", /non-empty template/],
    [42, /got 42/],
    ["devices/{subject", /a \{ without a matching \}/],
    ["devices/subject}", /a \} without a matching \{/],
    ["devices/{}", /the placeholder "\{\}"/],
    ["devices/{Subject}", /the placeholder "\{Subject\}"/],
    ["devices/{data}", /the placeholder "\{data\}"/],
    ["devices/{{subject}}", /the placeholder "\{\{subject\}"/],
    ["devices/+/{subject}", /wildcard/],
    ["devices/{subject}/#", /wildcard/],
    ["devices/\n/{subject}", /control character/],
  ];
  for (const [template, message] of cases) {
    assert.throws(() => topicTemplate(template as string), {
      name: "TypeError",
      message,
    }, String(template));
  }
});
