/**
 * The MQTT protocol binding for CloudEvents 1.0.2: events to MQTT PUBLISH
 * messages and back, for MQTT 3.1.1 (structured mode only) and MQTT 5
 * (structured and binary mode), over a neutral message shape that MQTT.js
 * packets map onto.
 *
 * @module
 */
import { ATTRIBUTE_NAME_RULE, isAttributeName } from "./_attributes.ts";
import {
  assembleBinaryEvent,
  attributeStrings,
  encodeBinaryData,
} from "./_binary.ts";
import {
  isCloudEventsContentType,
  JSON_EVENT_FORMAT,
  mediaTypeOf,
  STRUCTURED_CONTENT_TYPE,
} from "./_content_type.ts";
import { describeValue, quote } from "./_describe.ts";
import { type CloudEvent, validateCloudEvent } from "./event.ts";
import { CloudEventError } from "./error.ts";
import { parseStructured, serializeStructured } from "./json_format.ts";

/**
 * An MQTT PUBLISH message, as far as the binding needs it.
 *
 * @example Adapt a message from any MQTT client
 * ```ts
 * import {
 *   fromMqttMessage,
 *   type MqttMessage,
 * } from "@dataexchange/streams/cloudevents";
 *
 * // What an MQTT client hands over, reduced to what the binding reads.
 * const text = JSON.stringify({
 *   specversion: "1.0",
 *   id: "r-1",
 *   source: "/sensors/7",
 *   type: "com.example.reading",
 * });
 * const message: MqttMessage = {
 *   topic: "sensors/7",
 *   payload: new TextEncoder().encode(text),
 *   qos: 1,
 * };
 * console.log(fromMqttMessage(message).id); // r-1
 * ```
 */
export interface MqttMessage {
  /** The topic name. */
  readonly topic: string;
  /** The payload. */
  readonly payload: Uint8Array;
  /** The quality of service. */
  readonly qos?: 0 | 1 | 2;
  /** The retain flag. */
  readonly retain?: boolean;
  /** The duplicate-delivery flag. */
  readonly dup?: boolean;
  /** MQTT 5 properties. */
  readonly properties?: {
    /** The MQTT 5 Content Type property. */
    readonly contentType?: string;
    /** The MQTT 5 User Properties; a repeated name gives an array. */
    readonly userProperties?: Readonly<
      Record<string, string | readonly string[]>
    >;
  };
}

/**
 * Options of {@linkcode fromMqttMessage}.
 *
 * @example Read a message that came over MQTT 3.1.1
 * ```ts
 * import {
 *   createCloudEvent,
 *   fromMqttMessage,
 *   type FromMqttOptions,
 *   toMqttMessage,
 * } from "@dataexchange/streams/cloudevents";
 *
 * const event = createCloudEvent({ source: "/sensors/7", type: "reading" });
 * const message = toMqttMessage(event, "sensors/7", { protocolVersion: 4 });
 * const options: FromMqttOptions = { protocolVersion: 4 };
 * console.log(fromMqttMessage(message, options).id === event.id); // true
 * ```
 */
export interface FromMqttOptions {
  /** The MQTT protocol version the message came with: 4 (3.1.1) or 5. Default 5. */
  protocolVersion?: 4 | 5;
}

/**
 * Options of {@linkcode toMqttMessage}.
 *
 * @example Publish in binary mode to an MQTT 5 broker
 * ```ts
 * import {
 *   createCloudEvent,
 *   toMqttMessage,
 *   type ToMqttOptions,
 * } from "@dataexchange/streams/cloudevents";
 *
 * const event = createCloudEvent({
 *   source: "/sensors/7",
 *   type: "reading",
 *   data: { celsius: 20 },
 * });
 * const options: ToMqttOptions = { mode: "binary" };
 * const message = toMqttMessage(event, "sensors/7", options);
 * console.log(message.properties?.contentType); // application/json
 * console.log(new TextDecoder().decode(message.payload)); // {"celsius":20}
 * ```
 */
export interface ToMqttOptions {
  /**
   * The content mode: `structured` puts the event, in the JSON event format,
   * in the payload; `binary` (MQTT 5 only) puts the data in the payload and
   * the attributes in user properties. Default `structured`.
   */
  mode?: "structured" | "binary";
  /** The MQTT protocol version to write for: 4 (3.1.1) or 5. Default 5. */
  protocolVersion?: 4 | 5;
}

/**
 * Reads an event from an MQTT PUBLISH message.
 *
 * - MQTT 3.1.1 (`protocolVersion: 4`): always structured; the payload is
 *   the JSON event format (MQTT binding 3.2).
 * - MQTT 5, by this rule, first match wins:
 *   1. a Content Type that starts with `application/cloudevents` (any letter
 *      case) means structured mode (MQTT binding 3); only
 *      `application/cloudevents+json` is read, other formats are
 *      `unsupported-format`;
 *   2. a `specversion` user property means binary mode (MQTT binding 3.1):
 *      every user property is an attribute of the same name (3.1.3.1), so
 *      each name must be a valid attribute name; `datacontenttype` is the
 *      Content Type (3.1.1), and a `datacontenttype` user property, if sent
 *      too, must agree; the payload is the data, decoded by content type
 *      (JSON parsed, UTF-8 text as a string, anything else as bytes), and
 *      an empty payload means no data (MQTT cannot tell empty from none);
 *   3. otherwise the payload is read as structured, because many devices
 *      publish JSON events without a Content Type.
 *
 * A repeated user property (an array of more than one value, even equal
 * ones) is `invalid-attribute`: an attribute appears at most once. An array
 * of one value counts as that value.
 *
 * @param message The message as received.
 * @param options The protocol version.
 * @returns The event.
 * @throws {CloudEventError} With the reason as `code`.
 * @throws {TypeError} When the message has no `Uint8Array` payload.
 * @throws {RangeError} When `protocolVersion` is not 4 or 5.
 *
 * @example Read an MQTT 5 binary-mode message
 * ```ts
 * import { fromMqttMessage } from "./mqtt.ts";
 *
 * const event = fromMqttMessage({
 *   topic: "sensors/42",
 *   payload: new TextEncoder().encode('{"celsius":21.5}'),
 *   properties: {
 *     contentType: "application/json",
 *     userProperties: { specversion: "1.0", id: "1", source: "/s", type: "t" },
 *   },
 * });
 * console.log(event.data); // { celsius: 21.5 }
 * ```
 */
export function fromMqttMessage(
  message: MqttMessage,
  options: FromMqttOptions = {},
): CloudEvent {
  const version = protocolVersionOf(options.protocolVersion, "fromMqttMessage");
  if (
    typeof message !== "object" || message === null ||
    !(message.payload instanceof Uint8Array)
  ) {
    throw new TypeError(
      `fromMqttMessage() expects a message with a Uint8Array payload; got ${
        describeValue(message?.payload)
      }`,
    );
  }

  if (version === 4) return parseStructured(message.payload);

  const contentType = message.properties?.contentType ?? undefined;
  if (contentType !== undefined && isCloudEventsContentType(contentType)) {
    if (mediaTypeOf(contentType) !== JSON_EVENT_FORMAT) {
      throw new CloudEventError(
        "unsupported-format",
        `The MQTT message has content type ${
          quote(contentType)
        }; of the structured formats only ${JSON_EVENT_FORMAT} is supported`,
      );
    }
    return parseStructured(message.payload);
  }
  const userProperties = message.properties?.userProperties;
  if (userProperties && Object.hasOwn(userProperties, "specversion")) {
    return fromBinary(message.payload, contentType, userProperties);
  }
  return parseStructured(message.payload);
}

// MQTT binding 3.1: attributes from user properties of the same name,
// datacontenttype from Content Type, data from the payload.
function fromBinary(
  payload: Uint8Array,
  contentType: string | undefined,
  userProperties: Readonly<Record<string, string | readonly string[]>>,
): CloudEvent {
  const attributes: Record<string, string> = Object.create(null);
  for (const name of Object.keys(userProperties)) {
    const text = propertyText(name, userProperties[name]);
    if (text === undefined) continue;
    if (!isAttributeName(name)) {
      throw new CloudEventError(
        "invalid-extension-name",
        `The MQTT user property ${
          quote(name)
        } is not a valid CloudEvents attribute name; in binary mode every user property is an attribute, and ${ATTRIBUTE_NAME_RULE}`,
        { attribute: name },
      );
    }
    attributes[name] = text;
  }
  return assembleBinaryEvent(
    attributes,
    contentType,
    payload.length === 0 ? null : payload,
    "MQTT payload",
  );
}

function propertyText(
  name: string,
  value: string | readonly string[] | undefined,
): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string") return value;
  if (Array.isArray(value)) {
    if (value.length === 0) return undefined;
    if (value.length === 1 && typeof value[0] === "string") return value[0];
    if (value.length > 1) {
      throw new CloudEventError(
        "invalid-attribute",
        `The MQTT user property ${
          quote(name)
        } appears ${value.length} times; a CloudEvents attribute appears at most once`,
        { attribute: name },
      );
    }
  }
  throw new CloudEventError(
    "invalid-attribute",
    `The MQTT user property ${quote(name)} is ${
      describeValue(value)
    }; expected a string`,
    { attribute: name },
  );
}

/**
 * Writes an event as an MQTT PUBLISH message for the given topic. QoS,
 * retain and dup are left for the publisher to set.
 *
 * - Structured mode (MQTT binding 3.2): the payload is the event in the JSON
 *   event format; on MQTT 5 the Content Type is
 *   `application/cloudevents+json; charset=utf-8`, on 3.1.1 there are no
 *   properties (the format is implied).
 * - Binary mode (MQTT binding 3.1, MQTT 5 only): a user property for every
 *   attribute and extension except `datacontenttype`, as its canonical
 *   string; the Content Type from `datacontenttype`; the data as the payload,
 *   written as in the Kafka binding (bytes as they are, JSON as JSON text
 *   with `application/json` implied when there is no `datacontenttype`, text
 *   as UTF-8); no data gives an empty payload.
 *
 * @param event The event; validated first.
 * @param topic The topic name to publish to: non-empty, without the
 * wildcards `+` and `#`.
 * @param options The content mode and protocol version.
 * @returns The message.
 * @throws {CloudEventError} When the event is invalid or its data cannot be
 * written.
 * @throws {TypeError} When binary mode is asked for on MQTT 3.1.1, the mode is
 * unknown, or the topic is not a string.
 * @throws {RangeError} When the topic is empty or has a wildcard, or the
 * protocol version is not 4 or 5.
 *
 * @example Write a structured-mode message for MQTT 3.1.1
 * ```ts
 * import { createCloudEvent } from "./event.ts";
 * import { toMqttMessage } from "./mqtt.ts";
 *
 * const event = createCloudEvent({ source: "/s", type: "t", data: [1, 2] });
 * const message = toMqttMessage(event, "events/t", { protocolVersion: 4 });
 * console.log(message.properties); // undefined
 * ```
 */
export function toMqttMessage(
  event: CloudEvent,
  topic: string,
  options: ToMqttOptions = {},
): MqttMessage {
  const version = protocolVersionOf(options.protocolVersion, "toMqttMessage");
  const mode = options.mode ?? "structured";
  if (mode !== "structured" && mode !== "binary") {
    throw new TypeError(
      `toMqttMessage() option mode must be "structured" or "binary"; got ${
        describeValue(mode)
      }`,
    );
  }
  if (mode === "binary" && version === 4) {
    throw new TypeError(
      "toMqttMessage() cannot write binary mode for MQTT 3.1.1 (protocolVersion 4), which has no user properties; use structured mode",
    );
  }
  checkTopic(topic);

  if (mode === "structured") {
    const payload = serializeStructured(event);
    return version === 4 ? { topic, payload } : {
      topic,
      payload,
      properties: { contentType: STRUCTURED_CONTENT_TYPE },
    };
  }

  const valid = validateCloudEvent(event);
  const userProperties: Record<string, string> = {};
  for (const [name, text] of attributeStrings(valid)) {
    userProperties[name] = text;
  }
  const { bytes, contentType } = encodeBinaryData(valid);
  return {
    topic,
    payload: bytes ?? new Uint8Array(0),
    properties: contentType === undefined
      ? { userProperties }
      : { contentType, userProperties },
  };
}

function protocolVersionOf(version: unknown, caller: string): 4 | 5 {
  if (version === undefined) return 5;
  if (version === 4 || version === 5) return version;
  throw new RangeError(
    `${caller}() option protocolVersion must be 4 (MQTT 3.1.1) or 5; got ${
      describeValue(version)
    }`,
  );
}

function checkTopic(topic: unknown): void {
  if (typeof topic !== "string") {
    throw new TypeError(
      `toMqttMessage() expects a topic string; got ${describeValue(topic)}`,
    );
  }
  if (topic.length === 0 || topic.includes("+") || topic.includes("#")) {
    throw new RangeError(
      `toMqttMessage() expects a topic name without wildcards (+, #); got ${
        quote(topic)
      }`,
    );
  }
}
