/**
 * Prometheus metrics and the health endpoint of the bridge: a
 * {@linkcode BridgeMetrics} on a registry of its own, with bounded labels,
 * and {@linkcode serveHealth}, which serves `/metrics`, `/healthz` and
 * `/readyz` on 127.0.0.1.
 *
 * @example Count, then serve
 * ```ts
 * import { BridgeMetrics, serveHealth } from "./mod.ts";
 *
 * const metrics = new BridgeMetrics({ routes: ["telemetry", "alert"] });
 * metrics.setConnected("mqtt", true);
 * metrics.setConnected("kafka", true);
 * await using server = serveHealth({ port: 0, metrics });
 * const response = await fetch(new URL("/readyz", server.url));
 * console.log(response.status, await response.json()); // 200 { ready: true, reasons: [] }
 * ```
 *
 * @module
 */
export type { CloudEventErrorCode } from "../cloudevents/mod.ts";
export {
  type BreakerState,
  BridgeMetrics,
  type BridgeMetricsOptions,
  type BridgeMetricsSnapshot,
  type Broker,
  BROKERS,
  DEAD_LETTER_REASONS,
  DEAD_LETTER_ROUTE_LABEL,
  type DeadLetterReason,
  DEFAULT_ROUTE_LABEL,
  type Direction,
  DIRECTIONS,
  FAILURE_REASONS,
  type FailureReason,
  LATENCY_BUCKETS_SECONDS,
  OTHER_LABEL,
  type Readiness,
  RETRY_OPERATIONS,
  type RetryOperation,
} from "./metrics.ts";
export {
  type HealthServer,
  METRICS_CONTENT_TYPE,
  serveHealth,
  type ServeHealthOptions,
} from "./server.ts";
