/**
 * Benchmark payloads: structured CloudEvents of an exact size whose `id`
 * carries a sequence number and whose `benchts` extension carries the
 * publish time, both as fixed-width digits at known byte offsets, so a
 * message is stamped by overwriting those digits in a copy of one template.
 * The template is a `mockCloudEvents` event, the generator the tests use.
 *
 * Through the bridge (binary content mode on Kafka) they arrive as the
 * headers `ce_id` and `ce_benchts`, which is where the reader finds them.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import {
  fromMqttMessage,
  type KafkaRecord,
  toKafkaRecord,
} from "../src/cloudevents/mod.ts";
import { mockCloudEvents } from "../src/streams/mod.ts";

/** Digits of the sequence number in `id`. */
export const SEQ_DIGITS = 10;
/** Characters of the publish time in `benchts`: 13 digits, a dot, 3 decimals. */
export const TS_CHARS = 17;

const SEQ_PLACEHOLDER = "9".repeat(SEQ_DIGITS);
const TS_PLACEHOLDER = "8".repeat(13) + ".888";

/** A payload template and where its stamps go. */
export interface PayloadTemplate {
  /** The serialized event, `size` bytes long. */
  readonly bytes: Uint8Array;
  /** Byte offset of the sequence digits. */
  readonly seqOffset: number;
  /** Byte offset of the publish-time characters. */
  readonly tsOffset: number;
}

/**
 * Builds a structured CloudEvent of exactly `size` bytes: the first event
 * of `mockCloudEvents` with that exact size, classified `telemetry`, with
 * the placeholders of the stamps as its `id` and `benchts`. Its data
 * (`seq` 0, a reading, padding) is the same in every message.
 *
 * @param size Total size in bytes; at least the size of the unpadded event
 * (250 bytes).
 * @returns The template with the offsets of its stamps.
 * @throws {RangeError} When `size` is smaller than the unpadded event.
 */
export function payloadTemplate(size: number): PayloadTemplate {
  const [item] = mockCloudEvents({
    seed: 1,
    count: 1,
    sizes: { min: size, max: size },
    exactSizes: true,
    classifications: { telemetry: 1 },
    source: "/bench",
    type: "dx.bench",
    id: () => SEQ_PLACEHOLDER,
    extensions: { benchts: TS_PLACEHOLDER },
  });
  const bytes = item.payload;
  const text = new TextDecoder().decode(bytes);
  return {
    bytes,
    seqOffset: text.indexOf(`"${SEQ_PLACEHOLDER}"`) + 1,
    tsOffset: text.indexOf(`"${TS_PLACEHOLDER}"`) + 1,
  };
}

/** The current time in milliseconds since the epoch, with microseconds. */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * A copy of the template stamped with `seq` and the current time.
 *
 * @param template The template.
 * @param seq The sequence number, below 10^10.
 * @returns A Buffer, as MQTT.js wants it.
 */
export function stampedPayload(
  template: PayloadTemplate,
  seq: number,
): Buffer {
  const buffer = Buffer.from(template.bytes);
  buffer.write(seqDigits(seq), template.seqOffset, "latin1");
  buffer.write(tsText(epochMs()), template.tsOffset, "latin1");
  return buffer;
}

/** `seq` as the fixed-width digits of the `id`. */
export function seqDigits(seq: number): string {
  return String(seq).padStart(SEQ_DIGITS, "0");
}

/** `ms` as the fixed-width text of `benchts`. */
export function tsText(ms: number): string {
  return ms.toFixed(3).padStart(TS_CHARS, "0");
}

/** Reads ASCII digits (and one dot) as a number, without allocating. */
export function parseAsciiNumber(
  bytes: Uint8Array,
  offset: number,
  length: number,
): number {
  let whole = 0;
  let fraction = 0;
  let scale = 1;
  let afterDot = false;
  for (let i = offset; i < offset + length; i++) {
    const c = bytes[i];
    if (c === 46) {
      afterDot = true;
    } else if (afterDot) {
      scale *= 10;
      fraction = fraction * 10 + (c - 48);
    } else {
      whole = whole * 10 + (c - 48);
    }
  }
  return whole + fraction / scale;
}

/**
 * The Kafka record the bridge writes for a payload of this template
 * (binary content mode), for the producers that stand in for the bridge.
 *
 * @param template The MQTT payload template.
 * @returns The record; stamp it with {@linkcode stampedRecord}.
 */
export function kafkaTemplate(template: PayloadTemplate): KafkaRecord {
  const event = fromMqttMessage({
    topic: "bench/template",
    payload: template.bytes,
    qos: 1,
    retain: false,
    dup: false,
  }, { protocolVersion: 5 });
  return toKafkaRecord(event, { mode: "binary" });
}

/**
 * The headers of `record` with `ce_id` and `ce_benchts` set to `seq` and the
 * current time, as kafkajs and @platformatic/kafka take them.
 */
export function stampedHeaders(
  record: KafkaRecord,
  seq: number,
): Record<string, Buffer> {
  const headers: Record<string, Buffer> = {};
  for (const [name, value] of Object.entries(record.headers)) {
    headers[name] = Buffer.from(value.buffer, value.byteOffset, value.length);
  }
  headers.ce_id = Buffer.from(seqDigits(seq), "latin1");
  headers.ce_benchts = Buffer.from(tsText(epochMs()), "latin1");
  return headers;
}
