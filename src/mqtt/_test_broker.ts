/**
 * A test-only MQTT broker that holds PUBACKs back until the test sends them,
 * so tests can see what a client does while nothing is acknowledged:
 * Mosquitto acknowledges every PUBLISH at once, whoever subscribes. It speaks
 * just enough MQTT 3.1.1 and 5 for the sink and the bridge: CONNECT,
 * SUBSCRIBE (every filter granted QoS 1), PUBLISH (recorded, never
 * delivered), PINGREQ and DISCONNECT. It listens on 127.0.0.1 only.
 *
 * @module
 */
import assert from "node:assert/strict";

const decoder = new TextDecoder();

/** A PUBLISH packet as the broker received it. */
export interface WirePublish {
  readonly topic: string;
  /** 0 at QoS 0. */
  readonly packetId: number;
  readonly qos: number;
  readonly dup: boolean;
  /** The whole packet's size in bytes. */
  readonly bytes: number;
}

/** Options of {@linkcode PubackHoldingBroker}. */
export interface PubackHoldingBrokerOptions {
  /** CONNACK return or reason code. Default 0 (accepted). */
  connackCode?: number;
  /** MQTT 5 CONNACK Receive Maximum. Default: not stated. */
  receiveMaximum?: number;
  /** MQTT 5 CONNACK Maximum Packet Size. Default: not stated. */
  maximumPacketSize?: number;
}

/** One MQTT control packet cut from the bytes of a connection. */
interface RawPacket {
  readonly type: number;
  readonly flags: number;
  readonly body: Uint8Array;
  /** The whole packet's size in bytes, fixed header included. */
  readonly size: number;
}

/**
 * The fake broker; see the module's summary. `close()` stops it and closes
 * every connection.
 */
export class PubackHoldingBroker {
  /** Every PUBLISH received, in order of arrival. */
  readonly publishes: WirePublish[] = [];
  #listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  #connections = new Set<Deno.TcpConn>();
  #connectionOf = new Map<WirePublish, Deno.TcpConn>();
  #acked = new Set<WirePublish>();
  #options: PubackHoldingBrokerOptions;
  #onPublish = () => {};

  constructor(options: PubackHoldingBrokerOptions = {}) {
    this.#options = options;
    this.#accept();
  }

  /** `mqtt://127.0.0.1:<port>`. */
  get url(): string {
    return `mqtt://127.0.0.1:${this.#listener.addr.port}`;
  }

  /** Resolves once `count` PUBLISH packets have arrived in all. */
  received(count: number): Promise<void> {
    return new Promise((resolve) => {
      this.#onPublish = () => {
        if (this.publishes.length < count) return;
        this.#onPublish = () => {};
        resolve();
      };
      this.#onPublish();
    });
  }

  /**
   * Acknowledges `publish` on the connection it came on, with an MQTT 5
   * reason code if not 0.
   */
  async puback(publish: WirePublish, reasonCode = 0): Promise<void> {
    const id = [publish.packetId >> 8, publish.packetId & 0xff];
    const packet = reasonCode === 0
      ? [0x40, 2, ...id]
      : [0x40, 3, ...id, reasonCode];
    this.#acked.add(publish);
    await this.#connectionOf.get(publish)!.write(new Uint8Array(packet));
  }

  /** Acknowledges the first PUBLISH to `topic`; fails when none came. */
  async pubackTopic(topic: string): Promise<void> {
    const publish = this.publishes.find((p) => p.topic === topic);
    assert.ok(publish, `no PUBLISH to ${topic} to acknowledge`);
    await this.puback(publish);
  }

  /** Acknowledges every PUBLISH not acknowledged yet. */
  async pubackAll(): Promise<void> {
    for (const publish of this.publishes) {
      if (!this.#acked.has(publish)) await this.puback(publish);
    }
  }

  /** Stops listening and closes every connection. */
  close(): void {
    this.#listener.close();
    for (const connection of this.#connections) {
      try {
        connection.close();
      } catch {
        // Already closed by the client: nothing left to release.
      }
    }
  }

  #connack(version: 4 | 5): Uint8Array {
    const code = this.#options.connackCode ?? 0;
    if (version === 4) return new Uint8Array([0x20, 2, 0, code]);
    const properties: number[] = [];
    const { receiveMaximum, maximumPacketSize } = this.#options;
    if (receiveMaximum !== undefined) {
      properties.push(0x21, receiveMaximum >> 8, receiveMaximum & 0xff);
    }
    if (maximumPacketSize !== undefined) {
      const size = maximumPacketSize;
      properties.push(0x27, size >>> 24, (size >> 16) & 0xff);
      properties.push((size >> 8) & 0xff, size & 0xff);
    }
    return new Uint8Array([
      0x20,
      3 + properties.length,
      0,
      code,
      properties.length,
      ...properties,
    ]);
  }

  async #accept(): Promise<void> {
    try {
      for await (const connection of this.#listener) {
        this.#connections.add(connection);
        this.#serve(connection).catch(() => {
          // The client went away: what it sent is recorded already.
        });
      }
    } catch {
      // The listener was closed.
    }
  }

  async #serve(connection: Deno.TcpConn): Promise<void> {
    let version: 4 | 5 = 4;
    let buffer = new Uint8Array(0);
    const chunk = new Uint8Array(64 * 1024);
    for (;;) {
      const read = await connection.read(chunk);
      if (read === null) return;
      const joined = new Uint8Array(buffer.length + read);
      joined.set(buffer);
      joined.set(chunk.subarray(0, read), buffer.length);
      buffer = joined;
      for (;;) {
        const packet = nextPacket(buffer);
        if (packet === undefined) break;
        buffer = buffer.subarray(packet.size);
        const { type, body } = packet;
        if (type === 1) { // CONNECT: protocol name (2 + 4 bytes), then level.
          version = body[6] === 5 ? 5 : 4;
          await connection.write(this.#connack(version));
        } else if (type === 8) { // SUBSCRIBE
          await connection.write(suback(body, version));
        } else if (type === 3) { // PUBLISH
          this.#record(connection, packet);
        } else if (type === 12) { // PINGREQ
          await connection.write(new Uint8Array([0xd0, 0]));
        } else if (type === 14) { // DISCONNECT
          connection.close();
          this.#connections.delete(connection);
          return;
        }
      }
    }
  }

  #record(connection: Deno.TcpConn, packet: RawPacket): void {
    const { flags, body } = packet;
    const qos = (flags >> 1) & 3;
    const topicLength = (body[0] << 8) | body[1];
    const topic = decoder.decode(body.subarray(2, 2 + topicLength));
    const at = 2 + topicLength;
    const packetId = qos > 0 ? (body[at] << 8) | body[at + 1] : 0;
    const dup = (flags & 8) !== 0;
    const publish = { topic, packetId, qos, dup, bytes: packet.size };
    this.publishes.push(publish);
    this.#connectionOf.set(publish, connection);
    this.#onPublish();
  }
}

/** The SUBACK of a SUBSCRIBE `body`: QoS 1 granted to each of its filters. */
function suback(body: Uint8Array, version: 4 | 5): Uint8Array {
  let at = 2; // After the packet identifier.
  if (version === 5) {
    const [length, size] = varint(body, at)!;
    at += size + length;
  }
  let filters = 0;
  while (at < body.length) {
    // A filter: its length (2 bytes), its bytes, its options byte.
    at += 2 + ((body[at] << 8) | body[at + 1]) + 1;
    filters++;
  }
  const head = version === 5 ? [body[0], body[1], 0] : [body[0], body[1]];
  const granted = new Array(filters).fill(1);
  return new Uint8Array([0x90, head.length + filters, ...head, ...granted]);
}

/**
 * Decodes the MQTT variable byte integer at `at` of `bytes`: its value and
 * its size in bytes, or `undefined` when `bytes` ends before it does.
 */
function varint(
  bytes: Uint8Array,
  at: number,
): [value: number, size: number] | undefined {
  let value = 0;
  let multiplier = 1;
  for (let size = 1; at + size - 1 < bytes.length; size++) {
    const byte = bytes[at + size - 1];
    value += (byte & 0x7f) * multiplier;
    multiplier *= 128;
    if ((byte & 0x80) === 0) return [value, size];
  }
  return undefined;
}

/** The first whole packet at the start of `buffer`, if it has arrived. */
function nextPacket(buffer: Uint8Array): RawPacket | undefined {
  const remaining = varint(buffer, 1);
  if (remaining === undefined) return undefined;
  const [length, size] = remaining;
  const start = 1 + size;
  if (buffer.length < start + length) return undefined;
  return {
    type: buffer[0] >> 4,
    flags: buffer[0] & 0x0f,
    body: buffer.subarray(start, start + length),
    size: start + length,
  };
}
