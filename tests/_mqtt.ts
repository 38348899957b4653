/**
 * Test helpers for MQTT sessions on the real broker.
 *
 * @module
 */
import mqtt from "mqtt";
import { publishAll } from "./_kafka.ts";

/**
 * Creates a persistent session for `clientId` subscribed to `topic`, so that
 * messages published from now on wait for that client, whatever the timing.
 */
export async function prepareSession(
  url: string,
  clientId: string,
  topic: string,
): Promise<void> {
  const session = await mqtt.connectAsync(url, {
    clientId,
    clean: false,
    protocolVersion: 5,
    properties: { sessionExpiryInterval: 300 },
  });
  await session.subscribeAsync(topic, { qos: 1 });
  await session.endAsync();
}

/**
 * What the broker still holds for a session: connects as `clientId`, takes
 * every message it delivers until a marker published afterwards arrives,
 * acknowledges them and ends the session. Payloads are read as text.
 */
export async function leftInSession(
  url: string,
  clientId: string,
  topic: string,
): Promise<string[]> {
  // The handler must be in place before the CONNACK: the broker redelivers
  // right after it.
  const client = mqtt.connect(url, {
    clientId,
    clean: false,
    protocolVersion: 5,
    properties: { sessionExpiryInterval: 0 },
  });
  const payloads: string[] = [];
  const marker = `marker-${clientId}`;
  const done = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no marker within 10 s; got ${payloads.length}`)),
      10000,
    );
    client.on("message", (_topic, payload) => {
      const text = new TextDecoder().decode(payload);
      if (text !== marker) payloads.push(text);
      else {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  await new Promise<void>((resolve) => client.once("connect", () => resolve()));
  await publishAll(url, [{ topic, payload: marker }]);
  await done;
  await client.endAsync();
  return payloads;
}
