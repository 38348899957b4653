/**
 * An MQTT subscription as an async generator of CloudEvent envelopes with
 * explicit acknowledgement.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import mqtt from "mqtt";
import type {
  IClientOptions,
  IClientSubscribeOptions,
  IPublishPacket,
  ISubscriptionMap,
  MqttClient,
} from "mqtt";
import {
  CloudEventError,
  fromMqttMessage,
  type MqttMessage,
} from "../cloudevents/mod.ts";
import type { Envelope } from "../envelope.ts";
import { DataExchangeError, isDataExchangeError } from "../errors.ts";
import { type AckTicket, PubackGate } from "./_puback_gate.ts";
import { keepConnected, type ReconnectAttempt } from "./_reconnect.ts";
import { describeConnectError, loginName } from "./_connect_error.ts";

const logger = getLogger(["dataexchange", "mqtt"]);

/**
 * An envelope of the MQTT stream.
 *
 * @example Dead-letter invalid messages with their MQTT topic
 * ```ts
 * import {
 *   CloudEventError,
 *   deadLetterRecord,
 *   type KafkaRecord,
 * } from "@dataexchange/streams/cloudevents";
 * import type { MqttEnvelope } from "@dataexchange/streams/mqtt";
 *
 * function deadLetter(envelope: MqttEnvelope): KafkaRecord | undefined {
 *   if (envelope.kind === "event") return undefined;
 *   const { topic, payload } = envelope.message;
 *   return deadLetterRecord({ payload, error: envelope.error, mqttTopic: topic });
 * }
 *
 * const record = deadLetter({
 *   kind: "invalid",
 *   error: new CloudEventError("malformed-json", "The payload is not JSON"),
 *   message: { topic: "devices/d1", payload: new TextEncoder().encode("{") },
 *   receivedAt: Date.now(),
 *   ack() {},
 *   nack() {},
 * });
 * console.log(new TextDecoder().decode(record?.headers["dx-mqtt-topic"])); // devices/d1
 * ```
 */
export type MqttEnvelope = Envelope<MqttMessage>;

/**
 * The state of the stream's connection, as reported to `onState`.
 *
 * @example Readiness from the connection state
 * ```ts
 * import {
 *   type MqttConnectionState,
 *   mqttStream,
 * } from "@dataexchange/streams/mqtt";
 *
 * let connected = false;
 * function onState(state: MqttConnectionState): void {
 *   connected = state === "connected";
 *   console.log(`MQTT ${state}`);
 * }
 *
 * // Needs an MQTT broker on 127.0.0.1:1883: runs when this file is run as a
 * // script.
 * if (import.meta.main) {
 *   const stream = mqttStream({
 *     url: "mqtt://127.0.0.1:1883",
 *     topics: ["devices/#"],
 *     clientId: "status-example",
 *     onState,
 *   });
 *   for await (const envelope of stream) {
 *     envelope.ack();
 *     if (!connected) break;
 *   }
 * }
 * ```
 */
export type MqttConnectionState = "connecting" | "connected" | "disconnected";

/**
 * Options of {@linkcode mqttStream}.
 *
 * @example A shared subscription over TLS, with a smaller in-flight window
 * ```ts
 * import {
 *   mqttStream,
 *   type MqttStreamOptions,
 * } from "@dataexchange/streams/mqtt";
 *
 * const stop = new AbortController();
 * const options: MqttStreamOptions = {
 *   url: "mqtts://broker.example:8883",
 *   topics: ["$share/bridges/devices/#"],
 *   clientId: "bridge-1",
 *   maxInFlight: 200,
 *   reconnectMaxDelayMs: 10_000,
 *   signal: stop.signal,
 *   clientOptions: { username: "bridge", keepalive: 30 },
 * };
 *
 * // Needs that broker: runs when this file is run as a script.
 * if (import.meta.main) {
 *   Deno.addSignalListener("SIGINT", () => stop.abort());
 *   for await (const envelope of mqttStream(options)) envelope.ack();
 * }
 * ```
 */
export interface MqttStreamOptions {
  /** Broker URL, such as `mqtt://127.0.0.1:1883` or `mqtts://host:8883`. */
  url: string;
  /** Topic filters to subscribe to, such as `devices/#` or `$share/group/devices/#`. */
  topics: readonly string[];
  /**
   * Client id. Keep it stable: the broker keeps the session, and with it the
   * unacknowledged messages, under this id.
   */
  clientId: string;
  /** MQTT protocol version: 4 (3.1.1) or 5. Default 5. */
  protocolVersion?: 4 | 5;
  /** Subscription QoS. Default 1; with 0 nothing is redelivered. */
  qos?: 0 | 1;
  /**
   * Most messages received and not yet acknowledged. At the cap the stream
   * stops reading; on MQTT 5 the broker is also told (Receive Maximum).
   * Default 1000.
   */
  maxInFlight?: number;
  /**
   * Most payload bytes received and not yet acknowledged. At the cap the
   * stream stops reading, as at `maxInFlight`; a single message larger than
   * the cap still passes when nothing else is in flight. Default 16777216
   * (16 MiB).
   */
  maxInFlightBytes?: number;
  /** MQTT 5 session expiry in seconds. Default 604800 (one week). */
  sessionExpirySeconds?: number;
  /**
   * Upper bound of the first wait before reconnecting, in milliseconds. Each
   * failed attempt doubles the bound, up to `reconnectMaxDelayMs`; each wait
   * is drawn at random below its bound (full jitter). Default 1000.
   */
  reconnectPeriodMs?: number;
  /**
   * Upper bound of any wait before reconnecting, in milliseconds. Default
   * 30000, or `reconnectPeriodMs` when that is larger.
   */
  reconnectMaxDelayMs?: number;
  /**
   * When `signal` aborts, how long to wait for handed-out envelopes to be
   * settled before disconnecting, in milliseconds. Default 10000.
   */
  drainTimeoutMs?: number;
  /** Ends the stream: it stops reading, drains, then disconnects. */
  signal?: AbortSignal;
  /** Called on each change of connection state. */
  onState?: (state: MqttConnectionState) => void;
  /**
   * Further MQTT.js options (credentials, TLS, keepalive), handed to MQTT.js
   * as they are: its `IClientOptions`, less the fields this stream sets.
   *
   * @internal This is a supported option, not an internal one: the tag only
   * stops `deno doc --lint` from requiring this package to document
   * `IClientOptions`, which belongs to the `mqtt` package.
   */
  clientOptions?: Omit<IClientOptions, "clientId" | "clean" | "manualConnect">;
}

/**
 * Subscribes to MQTT topics and yields each message as an envelope holding a
 * CloudEvent (or the reason it is not one) with `ack()` and `nack()`.
 *
 * Delivery is at least once: a QoS 1 message is acknowledged to the broker
 * only when `ack()` has been called for it and for every message received
 * before it on the same connection. The session is persistent (`clean:
 * false`), so whatever was not acknowledged before a crash or a dropped
 * connection is delivered again, with the same payload, on the next connection.
 * `nack()` leaves the message unacknowledged and makes the stream reconnect
 * once earlier messages are settled, so the broker delivers it again.
 *
 * Reconnecting: a lost connection, or a failed attempt, is followed by a
 * wait with exponential backoff and full jitter (`reconnectPeriodMs` doubling
 * up to `reconnectMaxDelayMs`), each attempt logged at warning with its
 * number and delay. When the broker answers without the session (it was
 * restarted without persistence, or the session expired), the stream
 * subscribes again; what that broker had stored for the session is gone
 * with it.
 *
 * Invalid messages (not a CloudEvent, or one that breaks the specification)
 * do not end the stream: they arrive as `kind: "invalid"` envelopes with the
 * original bytes and a `CloudEventError`, to be settled like any other.
 *
 * Ending: when `signal` aborts, the stream stops reading, waits up to
 * `drainTimeoutMs` for handed-out envelopes to be settled, releases their
 * acknowledgements, disconnects and ends. Leaving the loop early (`break`)
 * disconnects at once; what was not acknowledged stays at the broker.
 *
 * @param options Connection, subscription and flow-control settings.
 * @returns An async generator of envelopes.
 * @throws {DataExchangeError} `subscribe-failed` when the broker refuses a
 *   subscription, `mqtt-client-unsupported` when the MQTT.js version does not
 *   allow holding acknowledgements.
 *
 * @example Read events and acknowledge them
 * ```ts
 * import { mqttStream } from "@dataexchange/streams/mqtt";
 *
 * // Needs an MQTT broker on 127.0.0.1:1883: runs when this file is run as a
 * // script.
 * if (import.meta.main) {
 *   const controller = new AbortController();
 *   for await (
 *     const envelope of mqttStream({
 *       url: "mqtt://127.0.0.1:1883",
 *       topics: ["devices/#"],
 *       clientId: "example-reader",
 *       signal: controller.signal,
 *     })
 *   ) {
 *     if (envelope.kind === "event") console.log(envelope.event.type);
 *     envelope.ack();
 *   }
 * }
 * ```
 */
export async function* mqttStream(
  options: MqttStreamOptions,
): AsyncGenerator<MqttEnvelope, void, undefined> {
  const settings = validate(options);
  const { signal } = options;
  signal?.throwIfAborted();

  const queue: MqttEnvelope[] = [];
  let wake: (() => void) | undefined;
  let fatal: DataExchangeError | undefined;
  const notify = () => {
    const resolve = wake;
    wake = undefined;
    resolve?.();
  };

  const client = mqtt.connect(settings.url, {
    ...options.clientOptions,
    clientId: settings.clientId,
    clean: false,
    manualConnect: true,
    protocolVersion: settings.protocolVersion,
    // Reconnecting is driven by keepConnected() below, with backoff. With
    // a period of 0, MQTT.js records no subscriptions to resubscribe, so
    // the stream does that itself (see `ensureSubscribed`).
    reconnectPeriod: 0,
    resubscribe: false,
    properties: settings.protocolVersion === 5
      ? {
        ...options.clientOptions?.properties,
        sessionExpiryInterval: settings.sessionExpirySeconds,
        receiveMaximum: settings.maxInFlight,
      }
      : undefined,
  });
  const gate = new PubackGate(client, {
    capacity: settings.maxInFlight,
    capacityBytes: settings.maxInFlightBytes,
    onMessage(packet, ticket) {
      queue.push(toEnvelope(packet, ticket, settings.protocolVersion));
      notify();
    },
    onBlocked() {
      // Not connected: keepConnected() is bringing a new connection anyway.
      if (signal?.aborted || !client.connected) return;
      logger.warn(
        "A message was not acknowledged; reconnecting so the broker delivers it again",
        { clientId: settings.clientId },
      );
      client.reconnect();
    },
    onFatal(error) {
      fatal = error;
      notify();
    },
  });
  let stopping = false;
  watchConnection(client, settings, options.onState, () => stopping);
  const reconnecting = keepConnected(client, {
    initialDelayMs: settings.reconnectPeriodMs,
    maxDelayMs: settings.reconnectMaxDelayMs,
    onAttempt: (attempt) =>
      logReconnect(
        settings,
        attempt,
        loginName(settings.url, options.clientOptions?.username),
      ),
  });

  // Not awaited: a resumed session delivers its stored messages before the
  // SUBACK, and they must be taken (and acknowledged) for it to arrive. One
  // subscription at a time; one in progress covers a new connection too.
  let subscribing: Promise<void> | undefined;
  const ensureSubscribed = () => {
    subscribing ??= subscribe(client, settings, signal).catch((error) => {
      if (signal?.aborted) return;
      fatal = isDataExchangeError(error) ? error : new DataExchangeError(
        "subscribe-failed",
        `Subscribing to ${settings.topics.join(", ")} failed: ${error}`,
        { cause: error },
      );
      notify();
    }).finally(() => subscribing = undefined);
  };
  client.on("connect", (connack) => {
    if (connack.sessionPresent || subscribing) return;
    logger.warn(
      "MQTT broker at {url} has no session for {clientId}; subscribing again",
      { url: redactUrl(settings.url), clientId: settings.clientId },
    );
    ensureSubscribed();
  });

  const onAbort = () => notify();
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    options.onState?.("connecting");
    client.connect();
    ensureSubscribed();
    while (!signal?.aborted) {
      if (fatal) throw fatal;
      const envelope = queue.shift();
      if (envelope !== undefined) {
        yield envelope;
        continue;
      }
      await new Promise<void>((resolve) => wake = resolve);
    }
    gate.pause();
    // Received but never handed out: nobody will settle these; leave them
    // unacknowledged for the broker to deliver again, and do not wait.
    for (const envelope of queue.splice(0)) {
      envelope.nack(new Error("the stream stopped before handing it out"));
    }
    await drain(gate, settings.drainTimeoutMs);
  } finally {
    signal?.removeEventListener("abort", onAbort);
    stopping = true;
    reconnecting[Symbol.dispose]();
    // Let MQTT.js read on, acknowledging nothing new, so that the
    // disconnect can complete; what is refused is delivered again later.
    gate.refuseAll();
    await client.endAsync(!client.connected).catch((error: unknown) =>
      logger.warn("MQTT disconnect failed: {error}", { error })
    );
    options.onState?.("disconnected");
    logger.info("MQTT stream closed", {
      clientId: settings.clientId,
      released: gate.released,
      unacknowledged: gate.size,
    });
  }
}

type Settings =
  & Required<
    Pick<
      MqttStreamOptions,
      | "url"
      | "clientId"
      | "protocolVersion"
      | "qos"
      | "maxInFlight"
      | "maxInFlightBytes"
      | "sessionExpirySeconds"
      | "reconnectPeriodMs"
      | "reconnectMaxDelayMs"
      | "drainTimeoutMs"
    >
  >
  & { topics: readonly string[] };

function validate(options: MqttStreamOptions): Settings {
  if (options.topics.length === 0) {
    throw new TypeError(
      "mqttStream needs at least one topic filter in `topics`, got none",
    );
  }
  if (options.clientId === "") {
    throw new TypeError(
      "mqttStream needs a non-empty, stable `clientId` for its persistent session",
    );
  }
  const maxInFlight = options.maxInFlight ?? 1000;
  if (
    !Number.isInteger(maxInFlight) || maxInFlight < 1 || maxInFlight > 65535
  ) {
    throw new RangeError(
      `mqttStream maxInFlight must be an integer from 1 to 65535, got ${maxInFlight}`,
    );
  }
  const maxInFlightBytes = options.maxInFlightBytes ?? 16 * 1024 * 1024;
  if (!Number.isSafeInteger(maxInFlightBytes) || maxInFlightBytes < 1) {
    throw new RangeError(
      `mqttStream maxInFlightBytes must be a positive integer, got ${maxInFlightBytes}`,
    );
  }
  const reconnectPeriodMs = options.reconnectPeriodMs ?? 1000;
  const reconnectMaxDelayMs = options.reconnectMaxDelayMs ??
    Math.max(30000, reconnectPeriodMs);
  for (
    const [name, value] of [
      ["reconnectPeriodMs", reconnectPeriodMs],
      ["reconnectMaxDelayMs", reconnectMaxDelayMs],
    ] as const
  ) {
    if (!Number.isInteger(value) || value < 1) {
      throw new RangeError(
        `mqttStream ${name} must be a positive integer, got ${value}`,
      );
    }
  }
  if (reconnectPeriodMs > reconnectMaxDelayMs) {
    throw new RangeError(
      `mqttStream reconnectPeriodMs (${reconnectPeriodMs}) must not exceed reconnectMaxDelayMs (${reconnectMaxDelayMs})`,
    );
  }
  return {
    url: options.url,
    topics: options.topics,
    clientId: options.clientId,
    protocolVersion: options.protocolVersion ?? 5,
    qos: options.qos ?? 1,
    maxInFlight,
    maxInFlightBytes,
    sessionExpirySeconds: options.sessionExpirySeconds ?? 604800,
    reconnectPeriodMs,
    reconnectMaxDelayMs,
    drainTimeoutMs: options.drainTimeoutMs ?? 10000,
  };
}

function toEnvelope(
  packet: IPublishPacket,
  ticket: AckTicket,
  protocolVersion: 4 | 5,
): MqttEnvelope {
  const message = toMessage(packet);
  const receivedAt = Date.now();
  const ack = () => ticket.ack();
  const nack = (reason: unknown) => {
    logger.debug("MQTT message nacked on {topic}: {reason}", {
      topic: message.topic,
      reason,
    });
    ticket.nack();
  };
  try {
    const event = fromMqttMessage(message, { protocolVersion });
    return { kind: "event", event, message, receivedAt, ack, nack };
  } catch (error) {
    const cause = error instanceof CloudEventError
      ? error
      : new CloudEventError(
        "invalid-encoding",
        `The MQTT message on ${message.topic} could not be decoded`,
        { cause: error },
      );
    return { kind: "invalid", error: cause, message, receivedAt, ack, nack };
  }
}

function toMessage(packet: IPublishPacket): MqttMessage {
  const payload = typeof packet.payload === "string"
    ? new TextEncoder().encode(packet.payload)
    : new Uint8Array(
      packet.payload.buffer,
      packet.payload.byteOffset,
      packet.payload.byteLength,
    );
  const props = packet.properties;
  return {
    topic: packet.topic,
    payload,
    qos: packet.qos === 2 ? 1 : packet.qos,
    retain: packet.retain,
    dup: packet.dup,
    properties: props && (props.contentType || props.userProperties)
      ? {
        contentType: props.contentType,
        userProperties: props.userProperties,
      }
      : undefined,
  };
}

/** MQTT 5 DISCONNECT reason code: another connection took the session. */
const SESSION_TAKEN_OVER = 0x8e;

function watchConnection(
  client: MqttClient,
  settings: Settings,
  onState: MqttStreamOptions["onState"],
  stopping: () => boolean,
): void {
  let wasConnected = false;
  // The reason the broker gave for closing, when it gave one (MQTT 5).
  let disconnectReason: number | undefined;
  client.on("disconnect", (packet) => disconnectReason = packet.reasonCode);
  client.on("connect", (connack) => {
    wasConnected = true;
    disconnectReason = undefined;
    onState?.("connected");
    logger.info("MQTT connected to {url}", {
      url: redactUrl(settings.url),
      clientId: settings.clientId,
      sessionPresent: connack.sessionPresent,
    });
  });
  client.on("close", () => {
    if (wasConnected) {
      wasConnected = false;
      onState?.("disconnected");
      if (stopping()) return;
      if (disconnectReason === SESSION_TAKEN_OVER) {
        logger.warn(
          "MQTT connection to {url} closed: another client connected with the client id {clientId} and took the session over; reconnecting (give each bridge its own mqtt.clientId, and the same mqtt.sharedGroup to share the load)",
          { url: redactUrl(settings.url), clientId: settings.clientId },
        );
        return;
      }
      // Some brokers (Mosquitto 2.0 among them) close a taken-over
      // connection without saying why.
      logger.warn(
        "MQTT connection to {url} closed; reconnecting (if this keeps repeating, another client may be connecting with the client id {clientId})",
        {
          url: redactUrl(settings.url),
          clientId: settings.clientId,
          reasonCode: disconnectReason,
        },
      );
    }
  });
  client.on("reconnect", () => onState?.("connecting"));
  // Connection errors are reported by the reconnect warning, with what to
  // do; this line is the client's own wording, for debugging.
  client.on("error", (error) => {
    logger.debug("MQTT client error at {url}: {error}", {
      url: redactUrl(settings.url),
      error: error.message,
      code: (error as { code?: unknown }).code,
    });
  });
}

function logReconnect(
  settings: Settings,
  attempt: ReconnectAttempt,
  username: string | undefined,
): void {
  const error = attempt.error;
  logger.warn(
    "MQTT broker at {url} not connected; reconnect attempt {attempt} in {delayMs} ms: {error}",
    {
      url: redactUrl(settings.url),
      attempt: attempt.attempt,
      delayMs: Math.round(attempt.delayMs),
      error: error === undefined
        ? "connection closed"
        : describeConnectError(error, { username }),
    },
  );
}

async function subscribe(
  client: MqttClient,
  settings: Settings,
  signal: AbortSignal | undefined,
): Promise<void> {
  // A connection lost before the SUBACK (a broker restart, another client
  // taking over the session) is not a refusal: subscribe again on the next
  // connection. Only the broker's refusal ends the stream.
  for (let attempt = 1;; attempt++) {
    await waitForConnect(client, signal);
    let granted;
    try {
      // The map form with `resubscribe` makes MQTT.js send the request even
      // for topics it tried before: after a cut SUBSCRIBE it would skip them
      // and resolve without the broker ever having the subscription.
      const topics: Record<string, IClientSubscribeOptions> = {};
      for (const topic of settings.topics) {
        // MQTT 5 retain handling 1: no retained messages again for a
        // subscription the persistent session already has.
        topics[topic] = { qos: settings.qos, rh: 1 };
      }
      const request: ISubscriptionMap = Object.assign(topics, {
        resubscribe: true,
      });
      granted = await client.subscribeAsync(request);
    } catch (error) {
      if (signal?.aborted) throw error;
      if (client.connected) {
        // Still connected: the request itself was refused (an invalid
        // topic filter, say), and sending it again would not help.
        throw new DataExchangeError(
          "subscribe-failed",
          `Subscribing to ${settings.topics.join(", ")} failed: ${
            (error as Error).message
          }; check the topic filters`,
          { cause: error },
        );
      }
      logger.warn(
        "MQTT subscribe interrupted; attempt {attempt}, trying again on the next connection: {error}",
        { attempt, error: (error as Error).message },
      );
      continue;
    }
    for (const grant of granted) {
      if (grant.qos === 128 || grant.qos > 2) {
        throw new DataExchangeError(
          "subscribe-failed",
          `The MQTT broker refused the subscription to "${grant.topic}" (reason code ${grant.qos}); check the topic filter and the broker's access rules`,
        );
      }
    }
    logger.info("MQTT subscribed to {topics}", {
      topics: settings.topics,
      qos: settings.qos,
    });
    return;
  }
}

function waitForConnect(
  client: MqttClient,
  signal: AbortSignal | undefined,
): Promise<void> {
  if (client.connected) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const done = () => {
      client.off("connect", onConnect);
      signal?.removeEventListener("abort", onAbort);
    };
    const onConnect = () => {
      done();
      resolve();
    };
    const onAbort = () => {
      done();
      reject(signal!.reason);
    };
    client.on("connect", onConnect);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

async function drain(gate: PubackGate, timeoutMs: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    gate.whenSettled(),
    new Promise((resolve) => timer = setTimeout(resolve, timeoutMs)),
  ]);
  clearTimeout(timer);
  if (gate.unsettled > 0) {
    logger.warn(
      "{count} MQTT messages were not settled within {timeoutMs} ms; the broker will deliver them again",
      { count: gate.unsettled, timeoutMs },
    );
  }
}

/**
 * Removes credentials from a URL before it is logged: the password becomes
 * `***`, the user name stays. It never throws.
 *
 * @param url A broker URL, possibly with a user name and password.
 * @returns The URL with its password masked, or `<invalid URL>` when `url`
 *   does not parse.
 *
 * @example Log where you connect, not how
 * ```ts
 * import { redactUrl } from "@dataexchange/streams/mqtt";
 *
 * console.log(redactUrl("mqtts://bridge:s3cret@broker.example:8883")); // mqtts://bridge:***@broker.example:8883
 * console.log(redactUrl("not a url")); // <invalid URL>
 * ```
 */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return "<invalid URL>";
  }
}
