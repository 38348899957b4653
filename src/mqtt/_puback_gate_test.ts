import assert from "node:assert/strict";
import mqtt from "mqtt";
import type { IPublishPacket, MqttClient } from "mqtt";
import { testBrokers } from "../../tests/_brokers.ts";
import { leftInSession } from "../../tests/_mqtt.ts";
import { type AckTicket, PubackGate } from "./_puback_gate.ts";

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
    },
  });
  // Waits for a condition, checked on each message and every few
  // milliseconds (some states, such as a packet waiting for room, change
  // without a message being handed out).
  const until = (condition: () => boolean, what: string) =>
    new Promise<void>((resolve, reject) => {
      const deadline = setTimeout(() => {
        clearInterval(poll);
        reject(new Error(`timed out waiting for ${what}`));
      }, 10000);
      const check = () => {
        if (!condition()) return;
        clearTimeout(deadline);
        clearInterval(poll);
        onChange = () => {};
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
  const fake = {
    connected: true,
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
});

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
