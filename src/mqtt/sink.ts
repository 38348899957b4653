/**
 * An MQTT publisher of CloudEvents that resolves each write when the broker
 * has acknowledged it (QoS 1 PUBACK), with a bounded number of publishes
 * outstanding, and {@linkcode topicTemplate} to build topics from event
 * attributes without letting them inject topic levels or wildcards.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { getLogger } from "@logtape/logtape";
import mqtt from "mqtt";
import type { IClientOptions, IConnackPacket, MqttClient, Packet } from "mqtt";
import {
  type CloudEvent,
  type MqttMessage,
  toMqttMessage,
} from "../cloudevents/mod.ts";
import { describeValue, quote } from "../cloudevents/_describe.ts";
import { DataExchangeError } from "../errors.ts";
import type { EventSink } from "../sinks/sink.ts";
import { sinkClosedError } from "../sinks/_errors.ts";
import { SendWindow } from "../sinks/_send_window.ts";
import { type MqttConnectionState, redactUrl } from "./stream.ts";
import { describeConnectError, loginName } from "./_connect_error.ts";
import {
  keepConnected,
  NEVER_RECONNECT_PERIOD_MS,
  type ReconnectAttempt,
} from "./_reconnect.ts";

const logger = getLogger(["dataexchange", "mqtt", "sink"]);

/**
 * Options of {@linkcode MqttSink.connect}.
 *
 * @example Binary-mode commands, a topic per device
 * ```ts
 * import { createCloudEvent } from "@dataexchange/streams/cloudevents";
 * import {
 *   MqttSink,
 *   type MqttSinkOptions,
 *   topicTemplate,
 * } from "@dataexchange/streams/mqtt";
 *
 * const options: MqttSinkOptions = {
 *   url: "mqtt://127.0.0.1:1883",
 *   clientId: "commander",
 *   topic: topicTemplate("devices/{subject}/commands"),
 *   mode: "binary",
 *   maxPending: 100,
 *   closeTimeoutMs: 2_000,
 * };
 *
 * // Needs an MQTT broker on 127.0.0.1:1883: runs when this file is run as a
 * // script.
 * if (import.meta.main) {
 *   await using sink = await MqttSink.connect(options);
 *   await sink.write(createCloudEvent({
 *     source: "/ops",
 *     type: "com.example.reboot",
 *     subject: "pump-7",
 *   }));
 * }
 * ```
 */
export interface MqttSinkOptions {
  /** Broker URL, such as `mqtt://127.0.0.1:1883` or `mqtts://host:8883`. */
  url: string;
  /** Client id, non-empty. */
  clientId: string;
  /**
   * The topic of each event written with `write()`: a fixed topic name, or
   * a function of the event such as one made by {@linkcode topicTemplate}.
   * A fixed topic may not contain wildcards (`+`, `#`) or braces (use
   * `topicTemplate` for placeholders).
   */
  topic: string | ((event: CloudEvent) => string);
  /** MQTT protocol version: 4 (3.1.1) or 5. Default 5. */
  protocolVersion?: 4 | 5;
  /**
   * CloudEvents content mode: `structured` (the JSON event format in the
   * payload) or `binary` (attributes in user properties, data in the
   * payload; MQTT 5 only). Default `structured`.
   */
  mode?: "structured" | "binary";
  /**
   * Publish QoS. Default 1: a write resolves on the broker's PUBACK. With 0
   * it resolves once the message is written to the socket, and a message
   * lost with the connection is not sent again.
   */
  qos?: 0 | 1;
  /**
   * Most publishes outstanding (handed to the MQTT client and not yet
   * acknowledged, including those held while the connection is down), from
   * 1 to 65535. Writes beyond it wait for room, in order. With QoS 1 on
   * MQTT 5, a smaller Receive Maximum stated by the broker lowers it.
   * Default 1000.
   */
  maxPending?: number;
  /**
   * Upper bound of the first wait before reconnecting, in milliseconds. Each
   * failed attempt doubles the bound, up to `reconnectMaxDelayMs`; each wait
   * is drawn at random below its bound (full jitter). Default 1000.
   */
  reconnectPeriodMs?: number;
  /**
   * Upper bound of any wait before reconnecting, in milliseconds, at most
   * 86400000 (24 hours). Default 30000, or `reconnectPeriodMs` when that is
   * larger.
   */
  reconnectMaxDelayMs?: number;
  /**
   * How long `close()` waits for outstanding publishes to be acknowledged,
   * in milliseconds. Default 10000.
   */
  closeTimeoutMs?: number;
  /**
   * Aborting it stops connecting (`connect` rejects with its reason) and,
   * once connected, closes the sink at once: writes not yet acknowledged
   * reject with `sink-closed`.
   */
  signal?: AbortSignal;
  /** Called on each change of connection state. */
  onState?: (state: MqttConnectionState) => void;
  /**
   * Further MQTT.js options (credentials, TLS, keepalive), handed to MQTT.js
   * as they are: its `IClientOptions`, less the fields this sink sets.
   *
   * @internal This is a supported option, not an internal one: the tag only
   * stops `deno doc --lint` from requiring this package to document
   * `IClientOptions`, which belongs to the `mqtt` package.
   */
  clientOptions?: Omit<
    IClientOptions,
    "clientId" | "protocolVersion" | "reconnectPeriod" | "manualConnect"
  >;
}

interface Settings {
  readonly url: string;
  readonly clientId: string;
  readonly topic: string | ((event: CloudEvent) => string);
  readonly protocolVersion: 4 | 5;
  readonly mode: "structured" | "binary";
  readonly qos: 0 | 1;
  readonly maxPending: number;
  readonly reconnectPeriodMs: number;
  readonly reconnectMaxDelayMs: number;
  readonly closeTimeoutMs: number;
}

interface Outgoing {
  readonly id: string;
  readonly message: MqttMessage;
}

/**
 * Publishes CloudEvents to an MQTT broker, resolving each write when the
 * broker has acknowledged it.
 *
 * Delivery is at least once: with QoS 1 a write resolves on PUBACK; when the
 * connection drops, MQTT.js keeps the unacknowledged publishes and sends them
 * again after reconnecting, so the broker may receive one twice. At most
 * `maxPending` publishes are outstanding, whether connected or not; further
 * writes wait (backpressure) and are published in the order they were
 * written. `pending` and `waiting` are the gauges of that bound. On MQTT 5
 * the sink also keeps to the limits the broker states when it accepts the
 * connection: no more QoS 1 publishes in flight than its Receive Maximum,
 * and no packet larger than its Maximum Packet Size (such a write is
 * rejected with `message-too-large` instead of being sent). After a
 * reconnection MQTT.js resends every unacknowledged publish at once, which
 * may briefly exceed a Receive Maximum that shrank in between.
 *
 * Reconnecting: a lost connection, or a failed attempt (also before the
 * first connection), is followed by a wait with exponential backoff and full
 * jitter (`reconnectPeriodMs` doubling up to `reconnectMaxDelayMs`), each
 * attempt logged at warning with its number and delay.
 *
 * `close()` refuses new writes, waits up to `closeTimeoutMs` for the
 * outstanding (and waiting) ones to be acknowledged, rejects whatever is left
 * with a retriable `sink-closed` error (such an event may or may not have
 * reached the broker), then disconnects.
 *
 * @example Publish commands to the device named in each event's subject
 * ```ts
 * import { MqttSink, topicTemplate } from "@dataexchange/streams/mqtt";
 * import { createCloudEvent } from "@dataexchange/streams/cloudevents";
 *
 * // Needs an MQTT broker on 127.0.0.1:1883: runs when this file is run as a
 * // script.
 * if (import.meta.main) {
 *   await using sink = await MqttSink.connect({
 *     url: "mqtt://127.0.0.1:1883",
 *     clientId: "example-commands",
 *     topic: topicTemplate("devices/{subject}/commands"),
 *   });
 *   await sink.write(
 *     createCloudEvent({ source: "/ops", type: "reboot", subject: "pump-7" }),
 *   ); // published to devices/pump-7/commands and acknowledged
 *   console.log(sink.published, sink.pending); // 1 0
 * }
 * ```
 */
export class MqttSink implements EventSink, AsyncDisposable {
  #client: MqttClient;
  #settings: Settings;
  #window: SendWindow<Outgoing>;
  #unacked = new Set<(error: unknown) => void>();
  #signal: AbortSignal | undefined;
  #onState: MqttSinkOptions["onState"];
  #closed = false;
  #ready = false;
  #closing: Promise<void> | undefined;
  #failure: DataExchangeError | undefined;
  #reconnecting: Disposable | undefined;
  #published = 0;
  #maxPacketBytes = MAX_PACKET_BYTES;
  #onAbort = () => {
    this.#closing ??= this.#shutdown(0, this.#signal?.reason);
  };

  private constructor(
    client: MqttClient,
    settings: Settings,
    options: MqttSinkOptions,
  ) {
    this.#client = client;
    this.#settings = settings;
    this.#signal = options.signal;
    this.#onState = options.onState;
    this.#window = new SendWindow(
      settings.maxPending,
      (item) => this.#publish(item),
    );
    this.#watch(options.clientOptions?.reconnectOnConnackError ?? false);
    this.#reconnecting = keepConnected(client, {
      initialDelayMs: settings.reconnectPeriodMs,
      maxDelayMs: settings.reconnectMaxDelayMs,
      onAttempt: (attempt) =>
        logReconnect(
          settings,
          attempt,
          loginName(settings.url, options.clientOptions?.username),
          this.#window.active,
        ),
    });
  }

  /**
   * Connects to the broker and returns a sink. An unreachable broker is
   * tried again, with the backoff described on {@linkcode MqttSink}, until it
   * answers or `options.signal` aborts.
   *
   * @param options Broker, topic, content mode and flow-control settings.
   * @returns A connected sink.
   * @throws {TypeError} When `url` or `clientId` is empty, `topic` is neither
   *   a topic name nor a function, `mode` is unknown, or binary mode is asked
   *   for on MQTT 3.1.1.
   * @throws {RangeError} When `protocolVersion`, `qos`, `maxPending`,
   *   `reconnectPeriodMs`, `reconnectMaxDelayMs` or `closeTimeoutMs` is out
   *   of range, `reconnectPeriodMs` exceeds `reconnectMaxDelayMs`, or the
   *   fixed topic has a wildcard.
   * @throws {DataExchangeError} `connect-refused` when the broker refuses
   *   the connection (bad credentials, not authorized).
   * @throws The abort reason when `options.signal` aborts first.
   */
  static async connect(options: MqttSinkOptions): Promise<MqttSink> {
    const settings = validate(options);
    options.signal?.throwIfAborted();

    const client = mqtt.connect(settings.url, {
      ...options.clientOptions,
      clientId: settings.clientId,
      protocolVersion: settings.protocolVersion,
      // Reconnecting is driven by keepConnected(), with backoff. Not 0: on a
      // clean session MQTT.js would then fail the writes awaiting a PUBACK
      // when it forces a close (keepalive timeout), though it sends them
      // again; see _reconnect.ts.
      reconnectPeriod: NEVER_RECONNECT_PERIOD_MS,
      manualConnect: true,
    });
    const sink = new MqttSink(client, settings, options);
    try {
      options.onState?.("connecting");
      client.connect();
      await firstConnection(client, settings, options.signal);
    } catch (error) {
      sink.#closed = true;
      sink.#reconnecting?.[Symbol.dispose]();
      await client.endAsync(true).catch((failure: unknown) =>
        logger.warn("MQTT disconnect failed: {error}", { error: failure })
      );
      options.onState?.("disconnected");
      throw error;
    }
    sink.#ready = true;
    options.signal?.addEventListener("abort", sink.#onAbort, { once: true });
    return sink;
  }

  /** Publishes handed to the MQTT client and not yet acknowledged; at most `maxPending`. */
  get pending(): number {
    return this.#window.active;
  }

  /** Writes waiting for room because `maxPending` publishes are outstanding. */
  get waiting(): number {
    return this.#window.waiting;
  }

  /** Publishes acknowledged so far. */
  get published(): number {
    return this.#published;
  }

  /**
   * Publishes an event to the topic that `options.topic` gives for it.
   *
   * @param event The event.
   * @returns A promise that resolves when the broker acknowledged the
   *   publish (QoS 1) or it was written to the socket (QoS 0).
   * @throws {DataExchangeError} `topic-template` when a template cannot be
   *   filled from the event; see {@linkcode MqttSink.send} for the rest.
   */
  write(event: CloudEvent): Promise<void> {
    const topic = this.#settings.topic;
    try {
      return this.send(typeof topic === "string" ? topic : topic(event), event);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Publishes an event to an explicit topic.
   *
   * @param topic The topic name: non-empty, without wildcards.
   * @param event The event.
   * @returns A promise that resolves when the broker acknowledged the
   *   publish (QoS 1) or it was written to the socket (QoS 0).
   * @throws {CloudEventError} When the event is invalid or its data cannot be
   *   written in the sink's mode.
   * @throws {RangeError} When the topic is empty or has a wildcard.
   * @throws {DataExchangeError} `message-too-large` (not retriable) when the
   *   packet would exceed the Maximum Packet Size the MQTT 5 broker stated,
   *   which would otherwise make it drop the connection on every resend;
   *   `publish-rejected` when the MQTT 5 broker
   *   refuses the publish (retriable unless the reason belongs to the message:
   *   not authorized, topic name invalid, payload format invalid);
   *   `publish-failed` when the client fails to publish (retriable);
   *   `sink-closed` when the sink closed before the broker acknowledged it
   *   (retriable); `connect-refused` when a reconnection was refused.
   */
  send(topic: string, event: CloudEvent): Promise<void> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    if (this.#closed) return Promise.reject(closedError());
    let message: MqttMessage;
    try {
      message = toMqttMessage(event, topic, {
        mode: this.#settings.mode,
        protocolVersion: this.#settings.protocolVersion,
      });
    } catch (error) {
      return Promise.reject(error);
    }
    const bytes = publishPacketBytes(message, this.#settings);
    if (bytes > this.#maxPacketBytes) {
      return Promise.reject(
        new DataExchangeError(
          "message-too-large",
          `Event ${
            quote(event.id)
          } makes an MQTT packet of ${bytes} bytes for ${
            quote(topic)
          }; the broker accepts at most ${this.#maxPacketBytes}`,
        ),
      );
    }
    return this.#window.submit({ id: event.id, message });
  }

  /**
   * Refuses new writes, waits up to `closeTimeoutMs` for outstanding ones to
   * be acknowledged, rejects the rest with `sink-closed`, then disconnects.
   * Calling it again returns the same promise.
   *
   * @returns A promise that resolves once disconnected. It never rejects: a
   *   failing disconnect is logged at warning.
   */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown(this.#settings.closeTimeoutMs);
    return this.#closing;
  }

  /**
   * Same as {@linkcode MqttSink.close}, for `await using`.
   *
   * @returns A promise that resolves once disconnected; it never rejects.
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #publish({ id, message }: Outgoing): Promise<void> {
    const { payload, properties } = message;
    return new Promise<void>((resolve, reject) => {
      this.#unacked.add(reject);
      this.#client.publish(
        message.topic,
        Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength),
        {
          qos: this.#settings.qos,
          properties: properties && {
            contentType: properties.contentType,
            userProperties: properties.userProperties as Record<
              string,
              string | string[]
            >,
          },
        },
        (error) => {
          if (!this.#unacked.delete(reject)) return; // Rejected by close.
          if (error) {
            reject(publishError(error, message.topic));
            return;
          }
          this.#published++;
          logger.debug("Event {id} published to {topic}", {
            id,
            topic: message.topic,
          });
          resolve();
        },
      );
    });
  }

  async #shutdown(timeoutMs: number, reason?: unknown): Promise<void> {
    this.#closed = true;
    this.#signal?.removeEventListener("abort", this.#onAbort);

    if (timeoutMs > 0 && this.#failure === undefined) {
      await waitIdle(this.#window, timeoutMs, this.#signal);
    }
    const error = this.#failure ?? closedError(reason ?? this.#signal?.reason);
    const abandoned = this.#window.close(error) + this.#rejectUnacked(error);
    if (abandoned > 0) {
      logger.warn(
        "{count} MQTT publishes were not acknowledged before the sink closed; their writes were rejected",
        { count: abandoned, timeoutMs },
      );
    }

    this.#reconnecting?.[Symbol.dispose]();
    const connected = this.#client.connected;
    await this.#client.endAsync(abandoned > 0 || !connected).catch((
      failure: unknown,
    ) => logger.warn("MQTT disconnect failed: {error}", { error: failure }));
    this.#onState?.("disconnected");
    logger.info("MQTT sink closed", {
      clientId: this.#settings.clientId,
      published: this.#published,
      abandoned,
    });
  }

  /**
   * Takes the limits an MQTT 5 broker states in its CONNACK: no more QoS 1
   * publishes in flight than its Receive Maximum (MQTT 5 §3.3.4), no packet
   * larger than its Maximum Packet Size (§3.1.2.11.4).
   */
  #applyLimits(properties: IConnackPacket["properties"]): void {
    if (this.#settings.protocolVersion !== 5) return;
    const receiveMaximum = properties?.receiveMaximum ?? 65535;
    this.#maxPacketBytes = properties?.maximumPacketSize ?? MAX_PACKET_BYTES;
    const capacity = this.#settings.qos === 1
      ? Math.min(this.#settings.maxPending, receiveMaximum)
      : this.#settings.maxPending;
    if (capacity !== this.#window.capacity) {
      logger.info(
        "MQTT broker at {url} accepts {receiveMaximum} publishes in flight; the sink keeps to {capacity}",
        { url: redactUrl(this.#settings.url), receiveMaximum, capacity },
      );
      this.#window.capacity = capacity;
    }
  }

  #rejectUnacked(error: unknown): number {
    const rejects = [...this.#unacked];
    this.#unacked.clear();
    for (const reject of rejects) reject(error);
    return rejects.length;
  }

  /** Fails every outstanding and later write, for a broker that refused us. */
  #fail(error: DataExchangeError): void {
    if (this.#failure !== undefined || this.#closed) return;
    this.#failure = error;
    // Refused: trying again would only be refused again.
    this.#reconnecting?.[Symbol.dispose]();
    logger.error("MQTT sink failed: {error}", { error: error.message });
    this.#window.close(error);
    this.#rejectUnacked(error);
  }

  #watch(reconnectOnConnackError: boolean): void {
    const { url, clientId } = this.#settings;
    let connected = false;
    const client = this.#client;
    client.on("connect", (connack) => {
      connected = true;
      this.#onState?.("connected");
      logger.info("MQTT sink connected to {url}", {
        url: redactUrl(url),
        clientId,
        sessionPresent: connack.sessionPresent,
      });
    });
    client.on("close", () => {
      if (!connected) return;
      connected = false;
      if (this.#closed) return;
      this.#onState?.("disconnected");
      logger.warn("MQTT sink lost its connection to {url}; reconnecting", {
        url: redactUrl(url),
        pending: this.#window.active,
      });
    });
    client.on("reconnect", () => this.#onState?.("connecting"));
    // Connection errors are reported by the reconnect warning, with what to
    // do; this line is the client's own wording, for debugging. The message
    // and code, not the Error object: its own properties are not enumerable,
    // so a JSON log would show only `{"code":135}`.
    client.on("error", (error) => {
      logger.debug("MQTT client error at {url}: {error}", {
        url: redactUrl(url),
        error: error.message,
        code: (error as { code?: unknown }).code,
      });
    });
    client.on("packetreceive", (packet) => {
      if (packet.cmd === "connack") this.#applyLimits(packet.properties);
      const refusal = connackRefusal(packet, this.#settings);
      if (refusal === undefined || !this.#ready) return;
      // A refused reconnection ends the sink, unless told to keep trying.
      if (!reconnectOnConnackError) this.#fail(refusal);
    });
  }
}

/**
 * Makes a function that builds an MQTT topic from an event by filling the
 * `{attribute}` placeholders of `template` with the event's attributes or
 * extensions, such as `devices/{subject}/commands`.
 *
 * Rules, checked when the template is made (`TypeError`):
 * - a placeholder is `{name}`, where `name` is a CloudEvents attribute name
 *   (lower-case ASCII letters or digits) other than `data`;
 *   braces serve no other purpose, so a lone `{` or `}` is refused;
 * - the text around placeholders may not contain the wildcards `+` and `#`,
 *   control characters or malformed UTF-16.
 *
 * Rules, checked for each event (`DataExchangeError`, code
 * `topic-template`, not retriable):
 * - the attribute is present and non-empty (numbers and booleans are written
 *   in decimal and as `true`/`false`);
 * - its value contains no `/`, `+`, `#`, control characters or malformed
 *   UTF-16, so that an event cannot add topic levels or wildcards (MQTT
 *   topic injection);
 * - a value that starts the topic does not start with `$` (topics of the
 *   broker itself, such as `$SYS/...`);
 * - the topic is at most 65535 bytes in UTF-8.
 *
 * @param template The topic with placeholders.
 * @returns A function from an event to its topic name.
 * @throws {TypeError} When the template is not a non-empty string or breaks
 *   the rules above.
 *
 * @example Route by subject
 * ```ts
 * import { createCloudEvent } from "../cloudevents/mod.ts";
 * import { isDataExchangeError } from "../errors.ts";
 * import { topicTemplate } from "./sink.ts";
 *
 * const topicOf = topicTemplate("devices/{subject}/commands");
 * const ok = createCloudEvent({ source: "/ops", type: "reboot", subject: "pump-7" });
 * console.log(topicOf(ok)); // devices/pump-7/commands
 *
 * const evil = createCloudEvent({ source: "/ops", type: "reboot", subject: "+" });
 * try {
 *   topicOf(evil);
 * } catch (error) {
 *   if (isDataExchangeError(error)) console.log(error.code); // topic-template
 * }
 * ```
 */
export function topicTemplate(template: string): (event: CloudEvent) => string {
  const parts = parseTemplate(template);
  const startsWithPlaceholder = typeof parts[0] !== "string";
  return (event: CloudEvent): string => {
    let topic = "";
    for (const part of parts) {
      if (typeof part === "string") topic += part;
      else {
        const atStart = topic === "" && startsWithPlaceholder;
        topic += fill(template, part.name, event, atStart);
      }
    }
    const bytes = new TextEncoder().encode(topic).byteLength;
    if (bytes > MAX_TOPIC_BYTES) {
      throw templateError(
        template,
        event,
        `the topic would be ${bytes} bytes long; MQTT allows ${MAX_TOPIC_BYTES}`,
      );
    }
    return topic;
  };
}

const MAX_TOPIC_BYTES = 65535;
const ATTRIBUTE_NAME = /^[a-z0-9]{1,20}$/;
const CONTROL = /\p{Cc}/u;

type TemplatePart = string | { readonly name: string };

function parseTemplate(template: string): TemplatePart[] {
  if (typeof template !== "string" || template === "") {
    throw new TypeError(
      `topicTemplate() expects a non-empty template string such as "devices/{subject}/commands"; got ${
        describeValue(template)
      }`,
    );
  }
  const parts: TemplatePart[] = [];
  let rest = template;
  while (rest !== "") {
    const open = rest.indexOf("{");
    const literal = open === -1 ? rest : rest.slice(0, open);
    checkLiteral(template, literal);
    if (literal !== "") parts.push(literal);
    if (open === -1) break;
    const close = rest.indexOf("}", open);
    const name = close === -1 ? undefined : rest.slice(open + 1, close);
    if (name === undefined || !ATTRIBUTE_NAME.test(name) || name === "data") {
      throw new TypeError(
        `topicTemplate() expects placeholders of the form {attribute}, naming a CloudEvents attribute (lower-case letters or digits, not data); ${
          quote(template)
        } has ${
          name === undefined
            ? "a { without a matching }"
            : `the placeholder ${quote(`{${name}}`)}`
        }`,
      );
    }
    parts.push({ name });
    rest = rest.slice(close + 1);
  }
  return parts;
}

function checkLiteral(template: string, literal: string): void {
  let problem: string | undefined;
  if (literal.includes("}")) problem = "a } without a matching {";
  else if (literal.includes("+") || literal.includes("#")) {
    problem = "a wildcard (+ or #), which a topic name may not contain";
  } else if (CONTROL.test(literal)) problem = "a control character";
  else if (!literal.isWellFormed()) problem = "malformed UTF-16";
  if (problem !== undefined) {
    throw new TypeError(
      `topicTemplate() expects a topic name with {attribute} placeholders; ${
        quote(template)
      } has ${problem}`,
    );
  }
}

function fill(
  template: string,
  name: string,
  event: CloudEvent,
  atStart: boolean,
): string {
  const value = event[name];
  if (value === undefined || value === null) {
    throw templateError(template, event, `attribute "${name}" is missing`);
  }
  if (
    typeof value !== "string" && typeof value !== "number" &&
    typeof value !== "boolean"
  ) {
    throw templateError(
      template,
      event,
      `attribute "${name}" is ${
        describeValue(value)
      }; expected a string, number or boolean`,
    );
  }
  const text = String(value);
  let problem: string | undefined;
  if (text === "") problem = "is empty";
  else if (/[/+#]/.test(text)) problem = "contains /, + or #";
  else if (CONTROL.test(text)) problem = "contains a control character";
  else if (!text.isWellFormed()) problem = "contains malformed UTF-16";
  else if (atStart && text.startsWith("$")) {
    problem = "starts with $ at the start of the topic";
  }
  if (problem !== undefined) {
    throw templateError(
      template,
      event,
      `attribute "${name}" is ${
        describeValue(value)
      }, which ${problem}; a placeholder fills exactly one non-empty part of a topic level`,
    );
  }
  return text;
}

function templateError(
  template: string,
  event: CloudEvent,
  problem: string,
): DataExchangeError {
  return new DataExchangeError(
    "topic-template",
    `The topic template ${quote(template)} cannot be filled for event ${
      describeValue(event?.id)
    }: ${problem}`,
  );
}

function validate(options: MqttSinkOptions): Settings {
  if (typeof options?.url !== "string" || options.url === "") {
    throw new TypeError(
      `MqttSink.connect() expects a broker url such as "mqtt://127.0.0.1:1883"; got ${
        describeValue(options?.url)
      }`,
    );
  }
  if (typeof options.clientId !== "string" || options.clientId === "") {
    throw new TypeError(
      `MqttSink.connect() expects a non-empty clientId; got ${
        describeValue(options.clientId)
      }`,
    );
  }
  const protocolVersion = options.protocolVersion ?? 5;
  if (protocolVersion !== 4 && protocolVersion !== 5) {
    throw new RangeError(
      `MqttSink.connect() option protocolVersion must be 4 (MQTT 3.1.1) or 5; got ${
        describeValue(protocolVersion)
      }`,
    );
  }
  const mode = options.mode ?? "structured";
  if (mode !== "structured" && mode !== "binary") {
    throw new TypeError(
      `MqttSink.connect() option mode must be "structured" or "binary"; got ${
        describeValue(mode)
      }`,
    );
  }
  if (mode === "binary" && protocolVersion === 4) {
    throw new TypeError(
      "MqttSink.connect() cannot use binary mode on MQTT 3.1.1 (protocolVersion 4), which has no user properties; use structured mode or protocolVersion 5",
    );
  }
  checkTopicOption(options.topic);
  const qos = options.qos ?? 1;
  if (qos !== 0 && qos !== 1) {
    throw new RangeError(
      `MqttSink.connect() option qos must be 0 or 1; got ${describeValue(qos)}`,
    );
  }
  const maxPending = options.maxPending ?? 1000;
  if (!Number.isInteger(maxPending) || maxPending < 1 || maxPending > 65535) {
    throw new RangeError(
      `MqttSink.connect() option maxPending must be an integer from 1 to 65535; got ${
        describeValue(maxPending)
      }`,
    );
  }
  const reconnectPeriodMs = options.reconnectPeriodMs ?? 1000;
  if (!Number.isInteger(reconnectPeriodMs) || reconnectPeriodMs < 1) {
    throw new RangeError(
      `MqttSink.connect() option reconnectPeriodMs must be a positive integer; got ${
        describeValue(reconnectPeriodMs)
      }`,
    );
  }
  const reconnectMaxDelayMs = options.reconnectMaxDelayMs ??
    Math.max(30000, reconnectPeriodMs);
  if (
    !Number.isInteger(reconnectMaxDelayMs) || reconnectMaxDelayMs < 1 ||
    reconnectMaxDelayMs > MAX_RECONNECT_DELAY_MS
  ) {
    throw new RangeError(
      `MqttSink.connect() option reconnectMaxDelayMs must be an integer from 1 to ${MAX_RECONNECT_DELAY_MS} (24 hours); got ${
        describeValue(reconnectMaxDelayMs)
      }`,
    );
  }
  if (reconnectPeriodMs > reconnectMaxDelayMs) {
    throw new RangeError(
      `MqttSink.connect() option reconnectPeriodMs (${reconnectPeriodMs}) must not exceed reconnectMaxDelayMs (${reconnectMaxDelayMs}); raise reconnectMaxDelayMs or lower reconnectPeriodMs`,
    );
  }
  const closeTimeoutMs = options.closeTimeoutMs ?? 10000;
  if (!Number.isFinite(closeTimeoutMs) || closeTimeoutMs < 0) {
    throw new RangeError(
      `MqttSink.connect() option closeTimeoutMs must be a non-negative number; got ${
        describeValue(closeTimeoutMs)
      }`,
    );
  }
  return {
    url: options.url,
    clientId: options.clientId,
    topic: options.topic,
    protocolVersion,
    mode,
    qos,
    maxPending,
    reconnectPeriodMs,
    reconnectMaxDelayMs,
    closeTimeoutMs,
  };
}

const MAX_RECONNECT_DELAY_MS = 24 * 60 * 60 * 1000;

function logReconnect(
  settings: Settings,
  attempt: ReconnectAttempt,
  username: string | undefined,
  pending: number,
): void {
  const error = attempt.error;
  logger.warn(
    "MQTT sink not connected to {url}; reconnect attempt {attempt} in {delayMs} ms: {error}",
    {
      url: redactUrl(settings.url),
      clientId: settings.clientId,
      attempt: attempt.attempt,
      delayMs: Math.round(attempt.delayMs),
      error: error === undefined
        ? "connection closed"
        : describeConnectError(error, { username }),
      pending,
    },
  );
}

function checkTopicOption(topic: unknown): void {
  if (typeof topic === "function") return;
  if (typeof topic !== "string") {
    throw new TypeError(
      `MqttSink.connect() option topic must be a topic name or a function of the event; got ${
        describeValue(topic)
      }`,
    );
  }
  if (topic.includes("{") || topic.includes("}")) {
    throw new TypeError(
      `MqttSink.connect() option topic ${
        quote(topic)
      } has braces; for placeholders pass topicTemplate(${quote(topic)})`,
    );
  }
  if (topic === "" || topic.includes("+") || topic.includes("#")) {
    throw new RangeError(
      `MqttSink.connect() option topic must be a non-empty topic name without wildcards (+, #); got ${
        quote(topic)
      }`,
    );
  }
}

/** Resolves on the first CONNACK that accepts the connection. */
function firstConnection(
  client: MqttClient,
  settings: Settings,
  signal: AbortSignal | undefined,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const done = () => {
      client.off("connect", onConnect);
      client.off("packetreceive", onPacket);
      signal?.removeEventListener("abort", onAbort);
    };
    const onConnect = () => {
      done();
      resolve();
    };
    const onPacket = (packet: Packet) => {
      const refusal = connackRefusal(packet, settings);
      if (refusal === undefined) return;
      done();
      reject(refusal);
    };
    const onAbort = () => {
      done();
      reject(signal!.reason);
    };
    client.on("connect", onConnect);
    client.on("packetreceive", onPacket);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

// Connect reason codes that may pass: MQTT 3.1.1 §3.2.2.3 (3: server
// unavailable), MQTT 5 §3.2.2.2 (server unavailable, busy, quota exceeded,
// connection rate exceeded).
const RETRIABLE_CONNECT_CODES: ReadonlySet<number> = new Set([
  3,
  0x88,
  0x89,
  0x97,
  0x9f,
]);

function connackRefusal(
  packet: Packet,
  settings: Settings,
): DataExchangeError | undefined {
  if (packet.cmd !== "connack") return undefined;
  const code = settings.protocolVersion === 5
    ? packet.reasonCode
    : packet.returnCode;
  if (code === undefined || code === 0) return undefined;
  return new DataExchangeError(
    "connect-refused",
    `The MQTT broker at ${
      redactUrl(settings.url)
    } refused the connection of client ${
      quote(settings.clientId)
    } with reason code ${code}; check the credentials and the broker's access rules`,
    { retriable: RETRIABLE_CONNECT_CODES.has(code) },
  );
}

// PUBACK reason codes that belong to the message itself (MQTT 5 §3.4.2.1):
// not authorized, topic name invalid, payload format invalid.
const PERMANENT_PUBACK_CODES: ReadonlySet<number> = new Set([
  0x87,
  0x90,
  0x99,
]);

function publishError(error: Error, topic: string): DataExchangeError {
  const code = (error as { code?: unknown }).code;
  if (typeof code === "number") {
    return new DataExchangeError(
      "publish-rejected",
      `The MQTT broker rejected the publish to ${
        quote(topic)
      } with reason code 0x${code.toString(16)}: ${error.message}`,
      { cause: error, retriable: !PERMANENT_PUBACK_CODES.has(code) },
    );
  }
  return new DataExchangeError(
    "publish-failed",
    `Publishing to ${quote(topic)} failed: ${error.message}`,
    { cause: error, retriable: true },
  );
}

// The largest packet MQTT can frame: a remaining length of at most
// 268435455 (MQTT 3.1.1 §2.2.3, MQTT 5 §1.5.5) after a 5-byte fixed header.
const MAX_PACKET_BYTES = 268435455 + 5;

/**
 * The size of the PUBLISH packet MQTT.js will write for `message` (without a
 * topic alias), after MQTT 5 §3.3: fixed header, topic, packet identifier,
 * properties, payload.
 */
function publishPacketBytes(
  message: MqttMessage,
  settings: Settings,
): number {
  const utf8 = (text: string) => encoder.encode(text).byteLength;
  let properties = 0;
  const { contentType, userProperties } = message.properties ?? {};
  if (contentType !== undefined) properties += 1 + 2 + utf8(contentType);
  for (const [name, values] of Object.entries(userProperties ?? {})) {
    for (const value of typeof values === "string" ? [values] : values) {
      properties += 1 + 2 + utf8(name) + 2 + utf8(value);
    }
  }
  const remaining = 2 + utf8(message.topic) + (settings.qos > 0 ? 2 : 0) +
    (settings.protocolVersion === 5
      ? varintBytes(properties) + properties
      : 0) +
    message.payload.byteLength;
  return 1 + varintBytes(remaining) + remaining;
}

const encoder = new TextEncoder();

function varintBytes(value: number): number {
  return value < 128 ? 1 : value < 16384 ? 2 : value < 2097152 ? 3 : 4;
}

function closedError(cause?: unknown): DataExchangeError {
  return sinkClosedError("The MQTT sink", cause);
}

/** Waits until the window is idle, `timeoutMs` passed or `signal` aborted. */
async function waitIdle(
  window: SendWindow<Outgoing>,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort = () => {};
  try {
    await Promise.race([
      window.whenIdle(),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
        onAbort = resolve;
        signal?.addEventListener("abort", onAbort, { once: true });
      }),
    ]);
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
  }
}
