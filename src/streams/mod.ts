/**
 * Runtime-neutral stream building blocks, on Web APIs only (no `node:*`,
 * `Deno.*` or `Buffer`):
 *
 * - {@linkcode combine}: the items of a stream until a promise settles or a
 *   signal aborts, with the source released and the item in flight handed
 *   back (nacked, or given to `onAbandoned`; logged if neither can be);
 * - {@linkcode mockSource}: items at a steady rate, without drift;
 * - {@linkcode mockCloudEvents}: deterministic CloudEvents test payloads,
 *   valid and malformed;
 * - the envelope types every stream of this package yields
 *   ({@linkcode Envelope}, {@linkcode Settleable}), and the types of the
 *   error family, so that edge code can name them without importing a
 *   broker client.
 *
 * @example Mock traffic until a signal aborts
 * ```ts
 * import { combine, mockCloudEvents, mockSource } from "./mod.ts";
 *
 * const items = mockCloudEvents({ seed: 7, malformedRatio: 0.1 });
 * const ticks = mockSource({ intervalMs: 5, value: () => items.next().value! });
 * const controller = new AbortController();
 * let bytes = 0;
 * let received = 0;
 * for await (const item of combine(ticks, controller.signal)) {
 *   bytes += item.payload.length;
 *   if (++received === 10) controller.abort();
 * }
 * console.log(received, bytes > 0); // 10 true
 * ```
 *
 * @module
 */
export type {
  CloudEvent,
  CloudEventError,
  CloudEventErrorCode,
  CloudEventErrorOptions,
  ExtensionValue,
} from "../cloudevents/mod.ts";
export type {
  Envelope,
  EventEnvelope,
  InvalidEnvelope,
  Settleable,
} from "../envelope.ts";
export type { DataExchangeError, DataExchangeErrorOptions } from "../errors.ts";
export { ABANDONED_CODE, combine, type CombineOptions } from "./combine.ts";
export { mockSource, type MockSourceOptions } from "./mock_source.ts";
export {
  MALFORMED_DEFECTS,
  type MalformedDefect,
  type MockCloudEventItem,
  mockCloudEvents,
  type MockCloudEventsOptions,
  type MockEventItem,
  type MockMalformedItem,
  type MockPayloadSizes,
} from "./mock_events.ts";
