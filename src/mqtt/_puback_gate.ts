/**
 * Holds the PUBACKs of received QoS 1 messages until the application has
 * acknowledged them, and releases them in the order the messages arrived.
 *
 * MQTT.js hands incoming PUBLISH packets to `client.handleMessage` one at a
 * time and sends the PUBACK from inside that method's callback; it does not
 * read the next packet until the callback has been called. Holding the
 * callback until a message is delivered downstream would therefore allow only
 * one message in flight. Instead, this gate calls the callback at once, takes
 * the PUBACK that MQTT.js then tries to write (it does so synchronously, from
 * inside the callback) and keeps it until the message is acknowledged.
 *
 * Rules kept here:
 * - PUBACKs leave in the order the PUBLISH packets arrived (MQTT 3.1.1 §4.6,
 *   MQTT 5 §4.6): an acknowledged message waits for every earlier one.
 * - A PUBACK is only written on the connection its PUBLISH arrived on. After a
 *   reconnect the broker redelivers what was not acknowledged, so a held
 *   PUBACK of an older connection is discarded, never sent on the new one.
 * - At most `capacity` messages are held, and the payloads handed out and not
 *   yet settled total at most `capacityBytes` (one message is always let
 *   through, however large, so that nothing waits forever). At either cap the
 *   gate stops calling MQTT.js's callback, so MQTT.js stops reading the socket
 *   and TCP flow control pushes back on the broker; nothing is buffered
 *   beyond the caps.
 * - The gate relies on two behaviours of MQTT.js 5, checked at run time:
 *   (a) the PUBACK is written from inside the `handleMessage` callback, and
 *   (b) on one connection, `handleMessage` is not called again before the
 *   previous callback ran. If MQTT.js breaks (a), the gate could not hold the
 *   PUBACK; if it breaks (b), a message waiting for room would be overwritten
 *   and the gate would stall. Either way the gate drops the connection at
 *   once (so MQTT.js neither acknowledges nor stalls a disconnect) and reports
 *   a fatal error naming the MQTT.js version; what was not acknowledged stays
 *   with the broker for the next session (`_puback_gate_test.ts` asserts
 *   both behaviours on a real broker).
 *
 * @module
 */
import type { IPublishPacket, MqttClient } from "mqtt";
import { DataExchangeError } from "../errors.ts";

/** How the application settles one message taken through the gate. */
export interface AckTicket {
  /** Marks the message as done; its PUBACK leaves once all earlier ones have. */
  ack(): void;
  /**
   * Marks the message as not done: its PUBACK is never sent, so the broker
   * redelivers it on the next connection of this session.
   */
  nack(): void;
}

/** Callbacks and limits of a {@linkcode PubackGate}. */
export interface PubackGateOptions {
  /** Most messages held (received and not yet released) at once. */
  capacity: number;
  /**
   * Most payload bytes handed out and not yet settled; a single message
   * larger than this still passes when nothing else is unsettled. Default:
   * no byte limit.
   */
  capacityBytes?: number;
  /** Receives each message with the ticket that settles it. */
  onMessage(packet: IPublishPacket, ticket: AckTicket): void;
  /**
   * Called when a nacked message reaches the head of the queue: nothing
   * behind it can be released until the broker redelivers it, which takes a
   * new connection.
   */
  onBlocked(): void;
  /** Called once if MQTT.js no longer behaves as this gate relies on. */
  onFatal(error: DataExchangeError): void;
}

type SendPacket = (
  packet: { cmd: string; messageId?: number },
  cb?: (error?: Error) => void,
  cbStorePut?: unknown,
  noStore?: boolean,
) => void;

/** The internals of MQTT.js the gate hooks into (private in its types). */
interface HookableClient {
  handleMessage(
    packet: IPublishPacket,
    callback: (error?: Error) => void,
  ): void;
  _sendPacket: SendPacket;
  connected: boolean;
  end(force: boolean): unknown;
  on(
    event: "packetreceive",
    listener: (packet: { cmd: string }) => void,
  ): unknown;
}

const PENDING = 0;
const ACKED = 1;
const NACKED = 2;

interface Slot {
  state: typeof PENDING | typeof ACKED | typeof NACKED;
  readonly connection: number;
  bytes: number;
  puback?: { cmd: string; messageId?: number };
}

/**
 * Installs itself on an MQTT.js client before it connects. See the module
 * documentation for the rules it keeps.
 */
export class PubackGate {
  #options: PubackGateOptions;
  #send: SendPacket;
  #client: HookableClient;
  #slots: Slot[] = [];
  #head = 0;
  #connection = 0;
  #capturing: Slot | undefined;
  #waiting:
    | { packet: IPublishPacket; callback: () => void; connection: number }
    | undefined;
  #unsettled = 0;
  #unsettledBytes = 0;
  #capacityBytes: number;
  #settledWaiters: Array<() => void> = [];
  #paused = false;
  #refusing = false;
  #failed = false;
  #blockedReported = false;
  #released = 0;
  #discarded = 0;

  /**
   * @param client An MQTT.js client that has not connected yet (use `manualConnect`).
   * @param options Capacity and callbacks.
   */
  constructor(client: MqttClient, options: PubackGateOptions) {
    if (!Number.isInteger(options.capacity) || options.capacity < 1) {
      throw new RangeError(
        `PubackGate capacity must be a positive integer, got ${options.capacity}`,
      );
    }
    const capacityBytes = options.capacityBytes ?? Infinity;
    if (!(capacityBytes >= 1)) {
      throw new RangeError(
        `PubackGate capacityBytes must be at least 1, got ${capacityBytes}`,
      );
    }
    this.#capacityBytes = capacityBytes;
    this.#options = options;
    this.#client = client as unknown as HookableClient;
    const send = this.#client._sendPacket;
    if (typeof send !== "function") {
      throw new DataExchangeError(
        "mqtt-client-unsupported",
        `MQTT.js ${
          mqttVersion(client)
        } has no _sendPacket method; the PUBACK gate cannot hold acknowledgements. Use mqtt@5 (5.16.0 is tested).`,
      );
    }
    this.#send = send.bind(client);
    this.#client._sendPacket = (packet, cb, cbStorePut, noStore) => {
      const slot = this.#capturing;
      if (packet.cmd === "puback" && slot !== undefined) {
        this.#capturing = undefined;
        slot.puback = packet;
        cb?.();
        return;
      }
      this.#send(packet, cb, cbStorePut, noStore);
    };
    this.#client.handleMessage = (packet, callback) =>
      this.#receive(packet, callback);
    // A new connection starts with its CONNACK. MQTT.js emits "connect"
    // only later, after flushing its outgoing store, and PUBLISH packets of
    // the new connection may be handled before that.
    this.#client.on("packetreceive", (packet) => {
      if (packet.cmd !== "connack") return;
      this.#connection++;
      this.#blockedReported = false;
      // A PUBLISH that waited for room on the previous connection will be
      // redelivered by the broker; its PUBACK must not go out on this one.
      this.#waiting = undefined;
      this.#release();
    });
  }

  /** Messages held: received and not yet released or discarded. */
  get size(): number {
    return this.#slots.length - this.#head;
  }

  /** Messages handed out whose ticket has not been settled yet. */
  get unsettled(): number {
    return this.#unsettled;
  }

  /** Payload bytes of the messages handed out and not settled yet. */
  get unsettledBytes(): number {
    return this.#unsettledBytes;
  }

  /** Whether a received message waits for room (the gate is at capacity or paused). */
  get waiting(): boolean {
    return this.#waiting !== undefined;
  }

  /** Resolves once every handed-out message has been acked or nacked. */
  whenSettled(): Promise<void> {
    if (this.#unsettled === 0) return Promise.resolve();
    return new Promise((resolve) => this.#settledWaiters.push(resolve));
  }

  /** PUBACKs written so far. */
  get released(): number {
    return this.#released;
  }

  /** Acknowledged messages whose PUBACK was dropped because the connection changed. */
  get discarded(): number {
    return this.#discarded;
  }

  /**
   * Stops taking messages: the next PUBLISH waits, unacknowledged, and MQTT.js
   * stops reading the socket. Used when the stream shuts down.
   */
  pause(): void {
    this.#paused = true;
  }

  /**
   * From now on, lets MQTT.js read on (so that a disconnect can complete)
   * but takes no message: each one, and the one waiting for room, is dropped
   * unacknowledged, so the broker delivers it again to the next session.
   * Acknowledgements of messages already taken still go out.
   */
  refuseAll(): void {
    this.#refusing = true;
    const waiting = this.#waiting;
    this.#waiting = undefined;
    if (waiting !== undefined) this.#refuse(waiting.callback);
  }

  #refuse(callback: () => void): void {
    // The PUBACK MQTT.js writes from the callback is captured and dropped.
    this.#capturing = { state: NACKED, connection: -1, bytes: 0 };
    callback();
    this.#capturing = undefined;
  }

  #receive(packet: IPublishPacket, callback: () => void): void {
    if (this.#failed) return; // Never acknowledge once the gate cannot hold.
    if (this.#waiting !== undefined) {
      // A new CONNACK clears the waiting message, so this one arrived on the
      // same connection while MQTT.js still waits for the earlier callback.
      this.#fail(
        `called handleMessage for message ${packet.messageId} while the callback of message ${this.#waiting.packet.messageId} had not run yet, so a held message would be overwritten and the stream would stall`,
      );
      return;
    }
    if (this.#refusing) {
      if (packet.qos === 1) this.#refuse(callback);
      else callback();
      return;
    }
    if (packet.qos !== 1) {
      // QoS 0 has no acknowledgement to hold; QoS 2 is never requested.
      this.#options.onMessage(packet, NO_TICKET);
      callback();
      return;
    }
    if (!this.#hasRoom()) {
      this.#waiting = { packet, callback, connection: this.#connection };
      return;
    }
    this.#take(packet, callback);
  }

  #hasRoom(): boolean {
    return !this.#paused && this.size < this.#options.capacity &&
      (this.#unsettledBytes < this.#capacityBytes || this.#unsettled === 0);
  }

  #take(
    packet: IPublishPacket,
    callback: () => void,
    connection = this.#connection,
  ): void {
    const slot: Slot = {
      state: PENDING,
      connection,
      bytes: packet.payload?.length ?? 0,
    };
    this.#capturing = slot;
    callback();
    this.#capturing = undefined;
    if (slot.puback === undefined) {
      this.#fail(
        `did not send the PUBACK of message ${packet.messageId} from inside the handleMessage callback, so it cannot be held until delivery`,
      );
      return;
    }
    this.#slots.push(slot);
    this.#unsettled++;
    this.#unsettledBytes += slot.bytes;
    this.#options.onMessage(packet, {
      ack: () => this.#settle(slot, ACKED),
      nack: () => this.#settle(slot, NACKED),
    });
  }

  /**
   * Stops the gate for good: it takes no further message and drops the
   * connection without a DISCONNECT (a graceful one could wait for ever on a
   * socket MQTT.js no longer reads), so nothing more is acknowledged and the
   * broker keeps the rest for the next session. Then reports `what` MQTT.js
   * did to `onFatal`.
   */
  #fail(what: string): void {
    this.#failed = true;
    this.#waiting = undefined;
    this.#client.end(true);
    this.#options.onFatal(
      new DataExchangeError(
        "mqtt-client-unsupported",
        `MQTT.js ${
          mqttVersion(this.#client)
        } ${what}; the PUBACK gate relies on MQTT.js 5.x behaviour that this version changed, and stops rather than lose or stall messages. Pin mqtt to a 5.x version known to work (5.16.0 is tested), or adapt src/mqtt/_puback_gate.ts to the new behaviour.`,
      ),
    );
  }

  #settle(slot: Slot, state: typeof ACKED | typeof NACKED): void {
    if (slot.state !== PENDING) return;
    slot.state = state;
    this.#unsettled--;
    this.#unsettledBytes -= slot.bytes;
    if (this.#unsettled === 0 && this.#settledWaiters.length > 0) {
      for (const resolve of this.#settledWaiters.splice(0)) resolve();
    }
    this.#release();
  }

  #release(): void {
    const slots = this.#slots;
    while (this.#head < slots.length) {
      const slot = slots[this.#head];
      const current = slot.connection === this.#connection;
      if (slot.state === PENDING) break;
      if (slot.state === NACKED && current) {
        if (!this.#blockedReported) {
          this.#blockedReported = true;
          this.#options.onBlocked();
        }
        break;
      }
      if (slot.state === ACKED && current && this.#client.connected) {
        this.#send(slot.puback!);
        this.#released++;
      } else if (slot.state === ACKED) {
        this.#discarded++;
      }
      this.#head++;
    }
    if (this.#head > 1024 && this.#head * 2 > slots.length) {
      this.#slots = slots.slice(this.#head);
      this.#head = 0;
    }
    const waiting = this.#waiting;
    if (waiting !== undefined && this.#hasRoom()) {
      this.#waiting = undefined;
      this.#take(waiting.packet, waiting.callback, waiting.connection);
    }
  }
}

const NO_TICKET: AckTicket = { ack() {}, nack() {} };

/**
 * The version of the MQTT.js that made `client`, for error messages.
 *
 * @param client An MQTT.js client.
 * @returns Its class's `VERSION` (MQTT.js 5), or `"(version unknown)"`.
 */
export function mqttVersion(client: unknown): string {
  const version = (client as { constructor?: { VERSION?: unknown } })
    ?.constructor?.VERSION;
  return typeof version === "string" ? version : "(version unknown)";
}
