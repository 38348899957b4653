/**
 * Deterministic CloudEvents test traffic: MQTT payloads in the JSON event
 * format, with a chosen mix of classifications, sizes and malformed
 * messages, the same for the same seed on every run.
 *
 * @module
 */
import { describeValue } from "../cloudevents/_describe.ts";
import {
  type CloudEvent,
  type CloudEventErrorCode,
  createCloudEvent,
  type ExtensionValue,
  isCloudEventError,
  serializeStructured,
} from "../cloudevents/mod.ts";
import { Prng } from "./_prng.ts";

/**
 * The ways a malformed payload is broken, each with the `CloudEventError`
 * code that `parseStructured` and `fromMqttMessage` give for it.
 *
 * @example List the defects and their codes
 * ```ts
 * import { MALFORMED_DEFECTS } from "./mock_events.ts";
 *
 * console.log(MALFORMED_DEFECTS["not-utf8"]); // invalid-encoding
 * console.log(Object.keys(MALFORMED_DEFECTS).length); // 7
 * ```
 */
export const MALFORMED_DEFECTS: Readonly<
  Record<MalformedDefect, CloudEventErrorCode>
> = Object.freeze({
  "not-json": "malformed-json",
  "json-array": "not-an-object",
  "missing-id": "missing-attribute",
  "specversion-0.3": "unsupported-specversion",
  "bad-extension-name": "invalid-extension-name",
  "invalid-base64": "invalid-data",
  "not-utf8": "invalid-encoding",
});

/**
 * How a malformed payload is broken:
 * - `not-json`: an event whose last byte (the closing brace) is cut off;
 * - `json-array`: an event wrapped in a JSON array;
 * - `missing-id`: an event without its `id`;
 * - `specversion-0.3`: an event with `specversion` `"0.3"`;
 * - `bad-extension-name`: an event with an extension named `Bad-Name`;
 * - `invalid-base64`: an event whose `data_base64` has a `*` in it;
 * - `not-utf8`: an event with the byte 0xFF inside a string.
 *
 * @example Make one payload of each defect
 * ```ts
 * import {
 *   MALFORMED_DEFECTS,
 *   type MalformedDefect,
 *   mockCloudEvents,
 * } from "@dataexchange/streams/streams";
 *
 * const wanted = new Set(Object.keys(MALFORMED_DEFECTS) as MalformedDefect[]);
 * const found = new Map<MalformedDefect, Uint8Array>();
 * for (const item of mockCloudEvents({ seed: 3, malformedRatio: 1 })) {
 *   if (item.kind === "malformed" && !found.has(item.defect)) {
 *     found.set(item.defect, item.payload);
 *   }
 *   if (found.size === wanted.size) break;
 * }
 * console.log(found.size); // 7
 * ```
 */
export type MalformedDefect =
  | "not-json"
  | "json-array"
  | "missing-id"
  | "specversion-0.3"
  | "bad-extension-name"
  | "invalid-base64"
  | "not-utf8";

/**
 * A valid event and its payload.
 *
 * @example Check that a pipeline keeps events intact
 * ```ts
 * import {
 *   fromMqttMessage,
 *   serializeStructured,
 * } from "@dataexchange/streams/cloudevents";
 * import {
 *   type MockEventItem,
 *   mockCloudEvents,
 * } from "@dataexchange/streams/streams";
 *
 * const events = [...mockCloudEvents({ seed: 5, count: 10 })]
 *   .filter((item): item is MockEventItem => item.kind === "event");
 * for (const { event, payload } of events) {
 *   const decoded = fromMqttMessage({ topic: "t", payload });
 *   const same = new TextDecoder().decode(serializeStructured(decoded)) ===
 *     new TextDecoder().decode(serializeStructured(event));
 *   if (!same) throw new Error(`event ${event.id} changed`);
 * }
 * console.log(events.length); // 10
 * ```
 */
export interface MockEventItem {
  /** Discriminates the union. */
  readonly kind: "event";
  /** The event. */
  readonly event: CloudEvent;
  /** The event in the JSON event format, as `serializeStructured` writes it. */
  readonly payload: Uint8Array;
}

/**
 * A payload that is not a valid CloudEvent, and why.
 *
 * @example Assert the reason a decoder gives
 * ```ts
 * import {
 *   fromMqttMessage,
 *   isCloudEventError,
 * } from "@dataexchange/streams/cloudevents";
 * import {
 *   type MockMalformedItem,
 *   mockCloudEvents,
 * } from "@dataexchange/streams/streams";
 *
 * const [item] = mockCloudEvents({ seed: 9, malformedRatio: 1, count: 1 });
 * const malformed = item as MockMalformedItem;
 * try {
 *   fromMqttMessage({ topic: "t", payload: malformed.payload });
 * } catch (error) {
 *   if (!isCloudEventError(error)) throw error;
 *   console.log(error.code === malformed.reason); // true
 * }
 * ```
 */
export interface MockMalformedItem {
  /** Discriminates the union. */
  readonly kind: "malformed";
  /** The broken bytes. */
  readonly payload: Uint8Array;
  /** How they are broken. */
  readonly defect: MalformedDefect;
  /** The `CloudEventError` code that decoding them gives. */
  readonly reason: CloudEventErrorCode;
}

/**
 * One item of {@linkcode mockCloudEvents}.
 *
 * @example Publish what a device would, defects included
 * ```ts
 * import {
 *   type MockCloudEventItem,
 *   mockCloudEvents,
 * } from "@dataexchange/streams/streams";
 *
 * function label(item: MockCloudEventItem): string {
 *   return item.kind === "event"
 *     ? `event ${item.event.classification ?? "unclassified"}`
 *     : `malformed (${item.defect})`;
 * }
 *
 * const items = mockCloudEvents({ seed: 11, malformedRatio: 0.5, count: 3 });
 * for (const item of items) console.log(label(item), item.payload.length);
 * // malformed (not-utf8) 2680
 * // malformed (missing-id) 1375
 * // event unknown 659
 * ```
 */
export type MockCloudEventItem = MockEventItem | MockMalformedItem;

/**
 * Payload sizes, in bytes.
 *
 * @example Payloads of exactly 1 KiB
 * ```ts
 * import {
 *   mockCloudEvents,
 *   type MockPayloadSizes,
 * } from "@dataexchange/streams/streams";
 *
 * const sizes: MockPayloadSizes = { min: 1024, max: 1024 };
 * const lengths = [...mockCloudEvents({ seed: 1, sizes, count: 5 })]
 *   .map((item) => item.payload.length);
 * console.log(lengths); // [ 1024, 1024, 1024, 1024, 1024 ]
 * ```
 */
export interface MockPayloadSizes {
  /** The smallest size drawn: an integer from 0. */
  readonly min: number;
  /** The largest size drawn: an integer from `min` to 268435455. */
  readonly max: number;
}

/**
 * Options of {@linkcode mockCloudEvents}.
 *
 * @example A reproducible mix for a load test
 * ```ts
 * import {
 *   mockCloudEvents,
 *   type MockCloudEventsOptions,
 * } from "@dataexchange/streams/streams";
 *
 * const options: MockCloudEventsOptions = {
 *   seed: 2024,
 *   classifications: { telemetry: 9, alert: 1 },
 *   sizes: { min: 256, max: 256 },
 *   malformedRatio: 0.01,
 *   source: "/plant/line-3",
 *   count: 1000,
 * };
 * const first = [...mockCloudEvents(options)];
 * const again = [...mockCloudEvents(options)];
 * const same = first.every((item, i) =>
 *   item.payload.join() === again[i].payload.join()
 * );
 * console.log(first.length, same); // 1000 true
 * ```
 */
export interface MockCloudEventsOptions {
  /** Any safe integer; the same seed gives the same items. Required. */
  seed: number;
  /**
   * The relative weight of each `classification` value, numbers from 0
   * with a positive sum. The key `none` stands for events without a
   * `classification` attribute, so no event is classified as `"none"`.
   * Default `{ telemetry: 6, alert: 1, unknown: 1, none: 1 }`.
   */
  classifications?: Readonly<Record<string, number>>;
  /**
   * The range the payload size of each item is drawn from, evenly. An
   * event is padded (a `padding` string in its data) to exactly that size,
   * unless it needs more bytes without padding (210 to 250 with the default
   * source and type); a malformed payload comes within 30 bytes of it,
   * or exactly to it with `exactSizes`. Default `{ min: 200, max: 4096 }`.
   */
  sizes?: MockPayloadSizes;
  /**
   * When `true`, every payload, malformed ones included, is exactly its
   * drawn size, and the generator's `next()` throws a `RangeError` for an
   * item that cannot be that small, rather than yielding it larger. For
   * benchmarks and memory bounds that count bytes. Default `false`.
   */
  exactSizes?: boolean;
  /**
   * The share of malformed items, from 0 to 1; their defects are drawn
   * evenly from {@linkcode MALFORMED_DEFECTS}. Default 0.
   */
  malformedRatio?: number;
  /** The `source` attribute of the events. Default `/mock/sensors`. */
  source?: string;
  /** The `type` attribute of the events. Default `com.example.mock.reading`. */
  type?: string;
  /**
   * The `id` of item n (from 0); the same function gives the same items.
   * Default `mock-<seed>-<n>`.
   */
  id?: (index: number) => string;
  /**
   * Extension attributes of every event (and of the JSON of malformed
   * payloads), such as a tenant or a benchmark stamp; `classification` is
   * drawn, so not allowed here. Default none.
   */
  extensions?: Readonly<Record<string, ExtensionValue>>;
  /** How many items to yield: an integer from 0. Default: no end. */
  count?: number;
}

const DEFAULT_CLASSIFICATIONS: Readonly<Record<string, number>> = {
  telemetry: 6,
  alert: 1,
  unknown: 1,
  none: 1,
};
const NO_CLASSIFICATION = "none";
const MAX_MQTT_PAYLOAD = 268_435_455;
const BASE_TIME = Date.UTC(2025, 0, 1);
const DEFECTS = Object.keys(MALFORMED_DEFECTS) as MalformedDefect[];
const encoder = new TextEncoder();

/**
 * Generates CloudEvents test payloads, the same sequence for the same
 * options. A plain (sync) generator: the caller sets the pace, for example
 * by drawing one item per tick of `mockSource`.
 *
 * Item n (from 0) is an event with `id` `mock-<seed>-<n>` (or `id(n)`), a
 * `time` n seconds after 2025-01-01T00:00:00Z, the given `extensions`, JSON
 * data `{ seq: n, reading, padding }` and a `classification` drawn by
 * weight; or, with probability
 * `malformedRatio`, a payload broken in one of the ways of
 * {@linkcode MalformedDefect}, with the code decoding gives as `reason`.
 * Payloads are what an MQTT 3.1.1 or 5 client would publish in structured
 * mode.
 *
 * @param options The seed, the mix and the number of items.
 * @returns A generator of items.
 * @throws {TypeError} When an option has the wrong type.
 * @throws {RangeError} When a number is out of range, or `source`, `type`,
 * an extension or a classification is not a valid attribute value. From the
 * generator's `next()`: when `id` gives an invalid id, or with `exactSizes`
 * when an item needs more bytes than its size.
 *
 * @example Decode a mix of valid and malformed payloads
 * ```ts
 * import { fromMqttMessage, isCloudEventError } from "../cloudevents/mod.ts";
 * import { mockCloudEvents } from "./mock_events.ts";
 *
 * let events = 0;
 * let malformed = 0;
 * for (const item of mockCloudEvents({ seed: 42, malformedRatio: 0.2, count: 50 })) {
 *   try {
 *     fromMqttMessage({ topic: "sensors/1", payload: item.payload });
 *     events++;
 *   } catch (error) {
 *     if (!isCloudEventError(error) || item.kind !== "malformed") throw error;
 *     if (error.code !== item.reason) throw error;
 *     malformed++;
 *   }
 * }
 * console.log(events + malformed, malformed > 0); // 50 true
 * ```
 *
 * @example Payloads of exactly 300 bytes, with ids and an extension of one's own
 * ```ts
 * import { mockCloudEvents } from "./mock_events.ts";
 *
 * const items = mockCloudEvents({
 *   seed: 8,
 *   sizes: { min: 300, max: 300 },
 *   exactSizes: true,
 *   malformedRatio: 0.5,
 *   id: (index) => String(index).padStart(10, "0"),
 *   extensions: { site: "north" },
 *   count: 20,
 * });
 * const lengths = new Set([...items].map((item) => item.payload.length));
 * console.log(lengths); // Set(1) { 300 }
 * ```
 *
 * @example Alerts only, small payloads
 * ```ts
 * import { mockCloudEvents } from "./mock_events.ts";
 *
 * const [item] = mockCloudEvents({
 *   seed: 1,
 *   classifications: { alert: 1 },
 *   sizes: { min: 512, max: 512 },
 *   count: 1,
 * });
 * if (item.kind === "event") {
 *   console.log(item.event.classification, item.payload.length); // alert 512
 * }
 * ```
 */
export function mockCloudEvents(
  options: MockCloudEventsOptions,
): Generator<MockCloudEventItem, void, undefined> {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `mockCloudEvents() expects an options object; got ${
        describeValue(options)
      }`,
    );
  }
  const {
    seed,
    classifications = DEFAULT_CLASSIFICATIONS,
    sizes = { min: 200, max: 4096 },
    exactSizes = false,
    malformedRatio = 0,
    source = "/mock/sensors",
    type = "com.example.mock.reading",
    id = (index: number) => `mock-${seed}-${index}`,
    extensions = {},
    count = Infinity,
  } = options;
  checkSeed(seed);
  checkExtensions(extensions);
  const weights = checkClassifications(
    classifications,
    source,
    type,
    extensions,
  );
  checkSizes(sizes);
  checkExactSizes(exactSizes);
  checkRatio(malformedRatio);
  checkId(id);
  checkCount(count);

  return generate({
    seed,
    weights,
    sizes,
    exactSizes,
    malformedRatio,
    source,
    type,
    id,
    extensions,
    count,
  });
}

interface Settings {
  seed: number;
  weights: readonly (readonly [string, number])[];
  sizes: MockPayloadSizes;
  exactSizes: boolean;
  malformedRatio: number;
  source: string;
  type: string;
  id: (index: number) => string;
  extensions: Readonly<Record<string, ExtensionValue>>;
  count: number;
}

function* generate(
  settings: Settings,
): Generator<MockCloudEventItem, void, undefined> {
  const prng = new Prng(settings.seed);
  for (let index = 0; index < settings.count; index++) {
    // Five draws per item, whatever its kind, so that one item's kind does
    // not shift the draws of the items after it.
    const malformed = prng.next() < settings.malformedRatio;
    const size = prng.integer(settings.sizes.min, settings.sizes.max);
    const reading = Math.round(prng.next() * 1000) / 10;
    const classification = weighted(settings.weights, prng.next());
    const defect = DEFECTS[Math.floor(prng.next() * DEFECTS.length)];

    const fields: EventFields = {
      id: settings.id(index),
      source: settings.source,
      type: settings.type,
      time: new Date(BASE_TIME + index * 1000).toISOString(),
      classification,
      extensions: settings.extensions,
      seq: index,
      reading,
    };
    const item = malformed
      ? malformedItem(fields, size, defect, settings.exactSizes)
      : eventItem(fields, size);
    if (settings.exactSizes && item.payload.length !== size) {
      throw new RangeError(
        `mockCloudEvents() item ${index} needs ${item.payload.length} bytes, more than its size ${size} (option exactSizes)`,
      );
    }
    yield item;
  }
}

interface EventFields {
  id: string;
  source: string;
  type: string;
  time: string;
  classification: string | undefined;
  extensions: Readonly<Record<string, ExtensionValue>>;
  seq: number;
  reading: number;
}

function eventItem(fields: EventFields, size: number): MockEventItem {
  const make = (padding: string) => {
    try {
      return createCloudEvent({
        id: fields.id,
        source: fields.source,
        type: fields.type,
        time: fields.time,
        classification: fields.classification,
        extensions: fields.extensions,
        data: { seq: fields.seq, reading: fields.reading, padding },
      });
    } catch (error) {
      // Everything else was checked with the options: it is the id.
      if (!isCloudEventError(error)) throw error;
      throw new RangeError(
        `mockCloudEvents() option id gave an invalid id for item ${fields.seq}: ${error.message}`,
        { cause: error },
      );
    }
  };
  let event = make("");
  let payload = serializeStructured(event);
  // Each "x" is one byte in the JSON text, so the padded payload is exact.
  if (payload.length < size) {
    event = make("x".repeat(size - payload.length));
    payload = serializeStructured(event);
  }
  return { kind: "event", event, payload };
}

function malformedItem(
  fields: EventFields,
  size: number,
  defect: MalformedDefect,
  exact: boolean,
): MockMalformedItem {
  const bare = JSON.stringify(malformedJson(fields, "")).length;
  // A "~" starts the padding, so that the last "~" of the text is inside it
  // (data comes last) and can be turned into a byte that is not UTF-8.
  let padded = Math.max(0, size - bare - 1);
  let payload = brokenPayload(fields, padded, defect);
  // Each defect adds or removes a fixed number of bytes, whatever the
  // padding: one correction lands on the size when there is room for it.
  const over = payload.length - size;
  if (exact && over !== 0 && padded - over >= 0) {
    padded -= over;
    payload = brokenPayload(fields, padded, defect);
  }
  return {
    kind: "malformed",
    payload,
    defect,
    reason: MALFORMED_DEFECTS[defect],
  };
}

function malformedJson(
  fields: EventFields,
  padding: string,
): Record<string, unknown> {
  return {
    specversion: "1.0",
    id: fields.id,
    source: fields.source,
    type: fields.type,
    time: fields.time,
    datacontenttype: "application/json",
    classification: fields.classification,
    ...fields.extensions,
    data: { seq: fields.seq, reading: fields.reading, padding },
  };
}

function brokenPayload(
  fields: EventFields,
  padded: number,
  defect: MalformedDefect,
): Uint8Array {
  const padding = "~" + "x".repeat(padded);
  const event = malformedJson(fields, padding);
  switch (defect) {
    case "not-json":
      return encoder.encode(JSON.stringify(event).slice(0, -1));
    case "json-array":
      return encoder.encode(`[${JSON.stringify(event)}]`);
    case "missing-id":
      delete event.id;
      return encoder.encode(JSON.stringify(event));
    case "specversion-0.3":
      event.specversion = "0.3";
      return encoder.encode(JSON.stringify(event));
    case "bad-extension-name":
      event["Bad-Name"] = "x";
      return encoder.encode(JSON.stringify(event));
    case "invalid-base64":
      delete event.data;
      event.data_base64 = `*${padding.slice(1)}`;
      return encoder.encode(JSON.stringify(event));
    case "not-utf8": {
      const bytes = encoder.encode(JSON.stringify(event));
      bytes[bytes.lastIndexOf(0x7e)] = 0xff;
      return bytes;
    }
  }
}

function weighted(
  weights: readonly (readonly [string, number])[],
  draw: number,
): string | undefined {
  const total = weights.reduce((sum, [, weight]) => sum + weight, 0);
  let point = draw * total;
  let chosen = weights[0][0];
  for (const [name, weight] of weights) {
    if (weight === 0) continue;
    chosen = name;
    if (point < weight) break;
    point -= weight;
  }
  return chosen === NO_CLASSIFICATION ? undefined : chosen;
}

interface CheckedTypes {
  number: number;
  boolean: boolean;
  function: (...args: never[]) => unknown;
}

/** Throws a TypeError naming the option when `value` is not of `type`. */
function checkType<T extends keyof CheckedTypes>(
  option: string,
  value: unknown,
  type: T,
  what: string = `a ${type}`,
): asserts value is CheckedTypes[T] {
  // `type` is one of typeof's own answers, as CheckedTypes' keys say.
  const actual: string = typeof value;
  if (actual !== type) {
    throw new TypeError(
      `mockCloudEvents() option ${option} must be ${what}; got ${
        describeValue(value)
      }`,
    );
  }
}

function checkSeed(seed: unknown): asserts seed is number {
  checkType("seed", seed, "number");
  if (!Number.isSafeInteger(seed)) {
    throw new RangeError(
      `mockCloudEvents() option seed must be a safe integer; got ${seed}`,
    );
  }
}

function checkClassifications(
  classifications: unknown,
  source: unknown,
  type: unknown,
  extensions: Readonly<Record<string, ExtensionValue>>,
): (readonly [string, number])[] {
  if (typeof classifications !== "object" || classifications === null) {
    throw new TypeError(
      `mockCloudEvents() option classifications must be an object of weights; got ${
        describeValue(classifications)
      }`,
    );
  }
  for (const [name, value] of [["source", source], ["type", type]] as const) {
    if (typeof value !== "string") {
      throw new TypeError(
        `mockCloudEvents() option ${name} must be a string; got ${
          describeValue(value)
        }`,
      );
    }
  }
  const weights = Object.entries(classifications as Record<string, unknown>);
  let total = 0;
  for (const [name, weight] of weights) {
    if (typeof weight !== "number" || !(weight >= 0 && weight < Infinity)) {
      throw new RangeError(
        `mockCloudEvents() option classifications.${name} must be a finite weight from 0; got ${
          describeValue(weight)
        }`,
      );
    }
    total += weight;
    probe(source as string, type as string, name, extensions);
  }
  if (!(total > 0 && total < Infinity)) {
    throw new RangeError(
      `mockCloudEvents() option classifications must have weights with a positive, finite sum; got ${total}`,
    );
  }
  return weights as (readonly [string, number])[];
}

// The attributes come from the caller; check them once here, not on the
// first event.
function probe(
  source: string,
  type: string,
  classification: string,
  extensions: Readonly<Record<string, ExtensionValue>>,
): void {
  try {
    createCloudEvent({
      id: "probe",
      source,
      type,
      time: new Date(BASE_TIME).toISOString(),
      classification: classification === NO_CLASSIFICATION
        ? undefined
        : classification,
      extensions,
    });
  } catch (error) {
    if (!isCloudEventError(error)) throw error;
    throw new RangeError(
      `mockCloudEvents() options make invalid events: ${error.message}`,
      { cause: error },
    );
  }
}

function checkSizes(sizes: unknown): asserts sizes is MockPayloadSizes {
  if (typeof sizes !== "object" || sizes === null) {
    throw new TypeError(
      `mockCloudEvents() option sizes must be an object { min, max }; got ${
        describeValue(sizes)
      }`,
    );
  }
  const { min, max } = sizes as Record<string, unknown>;
  if (typeof min !== "number" || typeof max !== "number") {
    throw new TypeError(
      `mockCloudEvents() option sizes must have numbers min and max; got ${
        describeValue(min)
      } and ${describeValue(max)}`,
    );
  }
  if (
    !Number.isInteger(min) || !Number.isInteger(max) || min < 0 ||
    min > max || max > MAX_MQTT_PAYLOAD
  ) {
    throw new RangeError(
      `mockCloudEvents() option sizes must be integers with 0 <= min <= max <= ${MAX_MQTT_PAYLOAD}; got min ${min}, max ${max}`,
    );
  }
}

function checkExtensions(
  extensions: unknown,
): asserts extensions is Readonly<Record<string, ExtensionValue>> {
  if (
    typeof extensions !== "object" || extensions === null ||
    Array.isArray(extensions)
  ) {
    throw new TypeError(
      `mockCloudEvents() option extensions must be an object of attributes; got ${
        describeValue(extensions)
      }`,
    );
  }
  if (Object.hasOwn(extensions, "classification")) {
    throw new RangeError(
      "mockCloudEvents() option extensions must not set classification; it is drawn from option classifications",
    );
  }
}

function checkExactSizes(exact: unknown): asserts exact is boolean {
  checkType("exactSizes", exact, "boolean");
}

function checkId(id: unknown): asserts id is (index: number) => string {
  checkType("id", id, "function", "a function of the index");
}

function checkRatio(ratio: unknown): asserts ratio is number {
  checkType("malformedRatio", ratio, "number");
  if (!(ratio >= 0 && ratio <= 1)) {
    throw new RangeError(
      `mockCloudEvents() option malformedRatio must be from 0 to 1; got ${ratio}`,
    );
  }
}

function checkCount(count: unknown): asserts count is number {
  checkType("count", count, "number");
  if (count !== Infinity && !(Number.isSafeInteger(count) && count >= 0)) {
    throw new RangeError(
      `mockCloudEvents() option count must be an integer from 0; got ${count}`,
    );
  }
}
