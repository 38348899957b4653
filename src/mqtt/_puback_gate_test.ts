import assert from "node:assert/strict";
import mqtt from "mqtt";
import type { IPublishPacket, MqttClient } from "mqtt";
import { testBrokers } from "../../tests/_brokers.ts";
import { leftInSession } from "../../tests/_mqtt.ts";
import { type AckTicket, mqttVersion, PubackGate } from "./_puback_gate.ts";

const brokers = await testBrokers();
const ignore = brokers === undefined;
let nextId = 0;

function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${nextId++}`;
}

interface Received {
  packet: IPublishPacket;
  ticket: AckTicket;
}

/** A gated subscriber with a persistent session; collects what arrives. */
async function gatedSubscriber(
  clientId: string,
  topic: string,
  capacity: number,
  protocolVersion: 4 | 5 = 5,
  capacityBytes?: number,
) {
  const client = mqtt.connect(brokers!.mqttUrl, {
    clientId,
    clean: false,
    manualConnect: true,
    protocolVersion,
    reconnectPeriod: 100,
    properties: protocolVersion === 5
      ? { sessionExpiryInterval: 300 }
      : undefined,
  });
  const received: Received[] = [];
  const fatal: Error[] = [];
  let onChange = () => {};
  const gate = new PubackGate(client, {
    capacity,
    capacityBytes,
    onMessage(packet, ticket) {
      received.push({ packet, ticket });
      onChange();
    },
    onBlocked() {},
    onFatal(error) {
      fatal.push(error);
      onChange();
    },
  });
  // Waits for a condition, checked on each message and every few
  // milliseconds (some states, such as a packet waiting for room, change
  // without a message being handed out). A fatal error of the gate ends the
  // wait at once, with that error in the message.
  const until = (condition: () => boolean, what: string) =>
    new Promise<void>((resolve, reject) => {
      const stop = () => {
        clearTimeout(deadline);
        clearInterval(poll);
        onChange = () => {};
      };
      const deadline = setTimeout(() => {
        stop();
        reject(
          new Error(
            `timed out after 10 s waiting for ${what}; the gate reported ${
              fatal.length === 0
                ? "no fatal error"
                : fatal.map((error) => error.message).join("; ")
            }`,
          ),
        );
      }, 10000);
      const check = () => {
        if (fatal.length > 0) {
          stop();
          reject(
            new Error(
              `the gate failed while waiting for ${what}: ${fatal[0].message}`,
              { cause: fatal[0] },
            ),
          );
          return;
        }
        if (!condition()) return;
        stop();
        resolve();
      };
      const poll = setInterval(check, 5);
      onChange = check;
      check();
    });
  client.connect();
  await new Promise<void>((resolve) => client.once("connect", () => resolve()));
  await client.subscribeAsync(topic, { qos: 1 });
  return { client, gate, received, fatal, until };
}

async function publish(
  topic: string,
  count: number,
  size = 0,
): Promise<void> {
  const publisher = await mqtt.connectAsync(brokers!.mqttUrl, {
    clientId: uniqueName("pub"),
  });
  for (let i = 0; i < count; i++) {
    await publisher.publishAsync(topic, String(i).padEnd(size, "."), {
      qos: 1,
    });
  }
  await publisher.endAsync();
}

Deno.test({
  name: "PubackGate hands out messages before any is acknowledged",
  ignore,
  async fn() {
    const topic = uniqueName("gate/pipelined");
    const clientId = uniqueName("gate");
    const sub = await gatedSubscriber(clientId, topic, 100);
    await publish(topic, 50);
    await sub.until(() => sub.received.length === 50, "50 messages");
    assert.equal(sub.gate.released, 0);
    assert.equal(sub.gate.unsettled, 50);
    assert.deepEqual(sub.fatal, []);
    await sub.client.endAsync(true);
    const again = await leftInSession(brokers!.mqttUrl, clientId, topic);
    assert.deepEqual(
      again.sort(),
      sub.received.map((r) => String(r.packet.payload)).sort(),
    );
  },
});

Deno.test({
  name: "PubackGate releases only the acknowledged prefix, in order",
  ignore,
  async fn() {
    const topic = uniqueName("gate/order");
    const clientId = uniqueName("gate");
    const sub = await gatedSubscriber(clientId, topic, 100);
    await publish(topic, 5);
    await sub.until(() => sub.received.length === 5, "5 messages");
    const [m0, m1, m2] = sub.received;
    m1.ticket.ack();
    m2.ticket.ack();
    assert.equal(sub.gate.released, 0, "acks after an unacked one wait");
    m0.ticket.ack();
    assert.equal(sub.gate.released, 3);
    m0.ticket.ack(); // a second ack changes nothing
    assert.equal(sub.gate.released, 3);
    await sub.client.endAsync();
    const again = await leftInSession(brokers!.mqttUrl, clientId, topic);
    assert.deepEqual(again, ["3", "4"]);
  },
});

Deno.test({
  name: "PubackGate never lets a nacked message be acknowledged",
  ignore,
  async fn() {
    const topic = uniqueName("gate/nack");
    const clientId = uniqueName("gate");
    const sub = await gatedSubscriber(clientId, topic, 100);
    await publish(topic, 3);
    await sub.until(() => sub.received.length === 3, "3 messages");
    sub.received[0].ticket.ack();
    sub.received[1].ticket.nack();
    sub.received[2].ticket.ack();
    assert.equal(sub.gate.released, 1);
    await sub.client.endAsync();
    const again = await leftInSession(brokers!.mqttUrl, clientId, topic);
    assert.deepEqual(again, ["1", "2"]);
  },
});

Deno.test({
  name: "PubackGate stops reading at its capacity and resumes on ack",
  ignore,
  async fn() {
    const topic = uniqueName("gate/cap");
    const clientId = uniqueName("gate");
    // MQTT 3.1.1: no Receive Maximum, so only the gate holds the broker back.
    const sub = await gatedSubscriber(clientId, topic, 10, 4);
    await publish(topic, 30);
    await sub.until(() => sub.gate.waiting, "a message waiting for room");
    assert.equal(sub.received.length, 10);
    sub.received[0].ticket.ack();
    await sub.until(() => sub.gate.waiting, "the next one waiting");
    assert.equal(sub.received.length, 11);
    // Acknowledge whatever has arrived until all 30 have.
    await sub.until(() => {
      for (const r of sub.received) r.ticket.ack();
      return sub.received.length === 30;
    }, "all 30 messages");
    assert.equal(sub.gate.released, 30);
    await sub.client.endAsync();
  },
});

Deno.test({
  name:
    "PubackGate stops reading at its byte capacity and always lets one message through",
  ignore,
  async fn() {
    const topic = uniqueName("gate/bytes");
    const clientId = uniqueName("gate");
    // 1000-byte payloads against a 2500-byte budget: three fit (the third
    // starts below the budget), the fourth waits.
    const sub = await gatedSubscriber(clientId, topic, 100, 4, 2500);
    await publish(topic, 6, 1000);
    await sub.until(() => sub.gate.waiting, "a message waiting for bytes");
    assert.equal(sub.received.length, 3);
    assert.equal(sub.gate.unsettledBytes, 3000);
    sub.received[0].ticket.ack();
    await sub.until(() => sub.received.length === 4, "a fourth message");
    await sub.until(() => sub.gate.waiting, "the fifth waiting");
    for (const r of sub.received) r.ticket.ack();
    await sub.until(() => {
      for (const r of sub.received) r.ticket.ack();
      return sub.received.length === 6;
    }, "all 6 messages");
    assert.equal(sub.gate.unsettledBytes, 0);

    // One message larger than the whole budget still passes alone.
    await publish(topic, 2, 6000);
    await sub.until(() => sub.received.length === 7, "the large message");
    await sub.until(() => sub.gate.waiting, "the second large one waiting");
    assert.equal(sub.gate.unsettledBytes, 6000);
    sub.received[6].ticket.ack();
    await sub.until(() => sub.received.length === 8, "the second large one");
    sub.received[7].ticket.ack();
    assert.equal(sub.gate.released, 8);
    await sub.client.endAsync();
  },
});

Deno.test({
  name: "PubackGate drops acknowledgements of a previous connection",
  ignore,
  async fn() {
    const topic = uniqueName("gate/reconnect");
    const clientId = uniqueName("gate");
    const sub = await gatedSubscriber(clientId, topic, 100);
    await publish(topic, 4);
    await sub.until(() => sub.received.length === 4, "4 messages");
    const first = sub.received.splice(0);
    // Drop the connection; the session redelivers the 4 messages.
    (sub.client as unknown as { stream: { destroy(): void } }).stream.destroy();
    await sub.until(() => sub.received.length === 4, "4 redelivered messages");
    for (const r of first) r.ticket.ack();
    assert.equal(sub.gate.discarded, 4, "acks of the old connection dropped");
    assert.equal(sub.gate.released, 0, "old acks wait behind nothing new");
    for (const r of sub.received) {
      assert.equal(
        r.packet.dup,
        true,
        `redelivery ${r.packet.payload} has DUP`,
      );
      r.ticket.ack();
    }
    assert.equal(sub.gate.released, 4, "acks of the new connection sent");
    await sub.client.endAsync();
    assert.deepEqual(
      await leftInSession(brokers!.mqttUrl, clientId, topic),
      [],
    );
  },
});

// MQTT.js behaviour the gate relies on: the PUBACK of a QoS 1 message is
// written from inside the handleMessage callback. If a release of MQTT.js
// changes that, this must fail rather than let messages be acknowledged on
// receipt.
Deno.test("PubackGate fails loudly when MQTT.js sends no PUBACK from the callback", () => {
  const listeners: Record<string, () => void> = {};
  let ended: boolean | undefined;
  const fake = {
    connected: true,
    end(force: boolean) {
      ended = force;
    },
    _sendPacket() {},
    handleMessage(_packet: IPublishPacket, callback: () => void) {
      callback();
    },
    on(event: string, listener: () => void) {
      listeners[event] = listener;
    },
  };
  const fatal: Error[] = [];
  const received: unknown[] = [];
  new PubackGate(fake as unknown as MqttClient, {
    capacity: 10,
    onMessage: (packet) => received.push(packet),
    onBlocked() {},
    onFatal: (error) => fatal.push(error),
  });
  const packet = { cmd: "publish", qos: 1, messageId: 7, topic: "t" };
  // MQTT.js' own flow would call _sendPacket here; this version does not.
  fake.handleMessage(packet as IPublishPacket, () => {});
  assert.equal(fatal.length, 1);
  assert.equal((fatal[0] as { code?: string }).code, "mqtt-client-unsupported");
  assert.deepEqual(received, [], "the message is not handed out");
  assert.equal(ended, true, "the connection is dropped at once");
});

/**
 * Stands in for an MQTT.js client of a given version whose `handleMessage`
 * the gate replaces; `deliver()` plays MQTT.js's part for a QoS 1 PUBLISH:
 * hand it over, and write its PUBACK from inside the callback.
 */
class FakeMqttClient {
  static VERSION = "9.9.9";
  connected = true;
  ended: boolean | undefined;
  readonly written: { cmd: string; messageId?: number }[] = [];
  end(force: boolean): void {
    this.ended = force;
    this.connected = false;
  }
  _sendPacket(packet: { cmd: string; messageId?: number }): void {
    this.written.push(packet);
  }
  handleMessage(_packet: IPublishPacket, callback: () => void): void {
    callback();
  }
  on(): void {}

  /** Returns whether the callback ran. */
  deliver(messageId: number): { ran: boolean } {
    const result = { ran: false };
    const packet = { cmd: "publish", qos: 1, messageId, topic: "t" };
    this.handleMessage(packet as IPublishPacket, () => {
      result.ran = true;
      this._sendPacket({ cmd: "puback", messageId });
    });
    return result;
  }
}

// The other MQTT.js behaviour the gate relies on: on one connection,
// handleMessage is not called again before the previous callback ran. If it
// were, the message waiting for room would be overwritten and never
// acknowledged nor handed out: the stream would stall without a word.
Deno.test("PubackGate fails loudly when MQTT.js calls handleMessage again before the previous callback ran", () => {
  const fake = new FakeMqttClient();
  const fatal: Error[] = [];
  const received: IPublishPacket[] = [];
  const gate = new PubackGate(fake as unknown as MqttClient, {
    capacity: 1,
    onMessage: (packet) => received.push(packet),
    onBlocked() {},
    onFatal: (error) => fatal.push(error),
  });
  assert.equal(fake.deliver(1).ran, true);
  const waiting = fake.deliver(2);
  assert.equal(waiting.ran, false, "no room: message 2 waits");
  assert.equal(gate.waiting, true);

  const overtaking = fake.deliver(3);
  assert.equal(fatal.length, 1);
  assert.equal((fatal[0] as { code?: string }).code, "mqtt-client-unsupported");
  assert.match(
    fatal[0].message,
    /^MQTT\.js 9\.9\.9 called handleMessage for message 3 while the callback of message 2 had not run yet/,
  );
  assert.match(fatal[0].message, /Pin mqtt to a 5\.x version known to work/);
  assert.equal(overtaking.ran, false, "message 3 is not acknowledged");
  assert.equal(waiting.ran, false, "message 2 is not acknowledged");
  assert.deepEqual(received.map((packet) => packet.messageId), [1]);
  assert.equal(gate.waiting, false);
  assert.equal(fake.ended, true, "the connection is dropped at once");

  // Nothing is taken after the failure.
  assert.deepEqual(fake.written, [], "message 1's PUBACK is still held");
  assert.equal(fake.deliver(4).ran, false);
  assert.equal(fatal.length, 1, "reported once");
});

Deno.test({
  name:
    "MQTT.js behaves as PubackGate relies on: the PUBACK is written inside the handleMessage callback, and handleMessage waits for that callback",
  ignore,
  async fn() {
    // The real client, without the gate: these are the two behaviours the
    // gate is built on (see _puback_gate.ts). An MQTT.js upgrade that changes
    // either must fail here, with what changed, not stall a test elsewhere.
    const topic = uniqueName("gate/mqttjs");
    const client = mqtt.connect(brokers!.mqttUrl, {
      clientId: uniqueName("gate-mqttjs"),
      protocolVersion: 5,
      reconnectPeriod: 0,
      manualConnect: true,
    });
    const version = mqttVersion(client);
    const changed = (what: string) =>
      `MQTT.js behaviour changed: ${what} (MQTT.js ${version}); the PUBACK gate in src/mqtt/_puback_gate.ts relies on it`;
    const hooked = client as unknown as {
      handleMessage(packet: IPublishPacket, callback: () => void): void;
      _sendPacket(packet: { cmd: string; messageId?: number }): void;
      stream: {
        on(event: "data", listener: (chunk: Uint8Array) => void): unknown;
      };
    };
    const send = hooked._sendPacket.bind(client) as (
      ...args: unknown[]
    ) => void;
    assert.equal(typeof send, "function", changed("_sendPacket is gone"));
    let inCallback: number | undefined;
    const pubacksInCallback: number[] = [];
    hooked._sendPacket = (...args: unknown[]) => {
      const packet = args[0] as { cmd: string; messageId?: number };
      if (packet.cmd === "puback" && packet.messageId === inCallback) {
        pubacksInCallback.push(packet.messageId!);
      }
      send(...args);
    };
    const calls: { packet: IPublishPacket; callback: () => void }[] = [];
    hooked.handleMessage = (packet, callback) => {
      calls.push({ packet, callback });
    };

    try {
      client.connect();
      await new Promise<void>((resolve, reject) => {
        client.once("connect", () => resolve());
        client.once("error", reject);
      });
      let bytes = "";
      hooked.stream.on("data", (chunk) => {
        bytes += new TextDecoder("latin1").decode(chunk);
      });
      await client.subscribeAsync(topic, { qos: 1 });
      const count = 5;
      await publishPayloads(
        topic,
        Array.from({ length: count }, (_, i) => `mqttjs-check-${i}`),
      );

      // Every PUBLISH reached the client's socket while the first callback
      // is held; then a few turns of the event loop for MQTT.js to act.
      await waitFor(
        () => bytes.includes(`mqttjs-check-${count - 1}`) || calls.length > 1,
        "the last PUBLISH on the socket",
      );
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(
        calls.length,
        1,
        changed(
          `handleMessage was called ${calls.length} times while the callback of the first message had not run`,
        ),
      );

      // Each callback writes its PUBACK before it returns, and only then
      // does the next message come.
      for (let i = 0; i < count; i++) {
        await waitFor(
          () => calls.length > i,
          `message ${i} after the callback of message ${i - 1} ran`,
        );
        assert.equal(
          calls.length,
          i + 1,
          changed(
            `handleMessage was called again before the callback of message ${i} ran`,
          ),
        );
        const { packet, callback } = calls[i];
        assert.equal(String(packet.payload), `mqttjs-check-${i}`);
        inCallback = packet.messageId;
        callback();
        inCallback = undefined;
        assert.deepEqual(
          pubacksInCallback.slice(-1),
          [packet.messageId],
          changed(
            `the PUBACK of message ${packet.messageId} was not written from inside the handleMessage callback`,
          ),
        );
      }
    } finally {
      await client.endAsync(true);
    }
  },
});

Deno.test({
  name:
    "PubackGate, when MQTT.js breaks its rules, drops the connection at once and the broker keeps what was not acknowledged",
  ignore,
  async fn() {
    const topic = uniqueName("gate/broken");
    const clientId = uniqueName("gate");
    const sub = await gatedSubscriber(clientId, topic, 2, 4);
    await publish(topic, 5);
    await sub.until(() => sub.gate.waiting, "a message waiting for room");
    assert.equal(sub.received.length, 2);
    const closed = new Promise<void>((resolve) =>
      sub.client.once("close", () => resolve())
    );

    // What a changed MQTT.js would do: hand over the next message while the
    // callback of the waiting one has not run.
    const client = sub.client as unknown as {
      handleMessage(packet: IPublishPacket, callback: () => void): void;
    };
    client.handleMessage(
      { cmd: "publish", qos: 1, messageId: 999, topic } as IPublishPacket,
      () => assert.fail("the overtaking message must not be acknowledged"),
    );
    assert.equal(sub.fatal.length, 1);
    assert.match(
      sub.fatal[0].message,
      /MQTT\.js 5\.\d+\.\d+ called handleMessage/,
    );
    let timer: ReturnType<typeof setTimeout> | undefined;
    const outcome = await Promise.race([
      closed.then(() => "closed"),
      new Promise((resolve) => timer = setTimeout(resolve, 5000, "open")),
    ]);
    clearTimeout(timer);
    assert.equal(outcome, "closed", "the gate drops the connection at once");
    assert.equal(sub.client.connected, false);
    // Acknowledging what was handed out no longer sends anything.
    for (const r of sub.received) r.ticket.ack();
    assert.equal(sub.gate.released, 0);
    await sub.client.endAsync(true);
    assert.deepEqual(
      await leftInSession(brokers!.mqttUrl, clientId, topic),
      ["0", "1", "2", "3", "4"],
    );
  },
});

/** Publishes each payload at QoS 1 and resolves once all are PUBACKed. */
async function publishPayloads(topic: string, payloads: string[]) {
  const publisher = await mqtt.connectAsync(brokers!.mqttUrl, {
    clientId: uniqueName("pub"),
  });
  try {
    for (const payload of payloads) {
      await publisher.publishAsync(topic, payload, { qos: 1 });
    }
  } finally {
    await publisher.endAsync();
  }
}

/** Polls `condition` every 5 ms; rejects after 5 s, naming `what`. */
async function waitFor(condition: () => boolean, what: string) {
  const deadline = Date.now() + 5000;
  while (!condition()) {
    if (Date.now() > deadline) {
      throw new Error(`MQTT.js behaviour changed: no ${what} within 5 s`);
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

Deno.test({
  name:
    "PubackGate refusing lets the client read on without acknowledging anything new",
  ignore,
  async fn() {
    // Regression: a paused gate kept MQTT.js from reading, so a graceful
    // disconnect under load waited for ever for the socket to close.
    const topic = uniqueName("gate/refuse");
    const clientId = uniqueName("gate");
    const sub = await gatedSubscriber(clientId, topic, 5, 4);
    // Enough that much of it is still unread in the socket when paused.
    await publish(topic, 3000, 1024);
    await sub.until(() => sub.gate.waiting, "a message waiting for room");
    sub.received[0].ticket.ack();
    sub.gate.pause();
    sub.gate.refuseAll();
    assert.equal(sub.gate.waiting, false);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const outcome = await Promise.race([
      sub.client.endAsync().then(() => "closed"),
      new Promise((resolve) => timer = setTimeout(resolve, 5000, "stuck")),
    ]);
    clearTimeout(timer);
    if (outcome !== "closed") sub.client.end(true);
    assert.equal(outcome, "closed", "the disconnect completes");
    assert.equal(sub.gate.released, 1);
    // Everything but the one acknowledged message is still in the session.
    const again = await leftInSession(brokers!.mqttUrl, clientId, topic);
    assert.equal(again.length, 2999);
    assert.ok(!again.includes("0".padEnd(1024, ".")));
  },
});
