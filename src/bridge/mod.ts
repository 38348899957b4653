/**
 * The MQTT → Kafka bridge as a library: its configuration schema and the
 * function that runs it.
 *
 * @example Run the bridge from a configuration file, with metrics
 * ```ts
 * import { loadConfigFile, runBridge } from "@dataexchange/streams/bridge";
 * import { BridgeMetrics, serveHealth } from "@dataexchange/streams/metrics";
 *
 * // Needs MQTT and Kafka (`deno task brokers`) and a bridge.yaml: runs when
 * // this file is run as a script.
 * if (import.meta.main) {
 *   const config = await loadConfigFile("bridge.yaml", Deno.env.toObject());
 *   const metrics = new BridgeMetrics({ routes: Object.keys(config.routes) });
 *   await using _server = serveHealth({ port: 9464, metrics });
 *   const stop = new AbortController();
 *   Deno.addSignalListener("SIGINT", () => stop.abort());
 *   const stats = await runBridge(config, { signal: stop.signal, metrics });
 *   console.log(`${stats.delivered} delivered, ${stats.failed} left`);
 * }
 * ```
 *
 * @module
 */
export type { CloudEventErrorCode } from "../cloudevents/mod.ts";
export type {
  BreakerState,
  BridgeMetrics,
  BridgeMetricsOptions,
  BridgeMetricsSnapshot,
  Broker,
  DeadLetterReason,
  Direction,
  FailureReason,
  Readiness,
  RetryOperation,
} from "../metrics/mod.ts";
export {
  type BridgeStats,
  runBridge,
  type RunBridgeOptions,
} from "./bridge.ts";
export {
  type BridgeConfig,
  type BridgeConfigInput,
  CONFIG_FIELDS,
  type ConfigDefault,
  type ConfigField,
  ENV_FIELDS,
  type EnvKind,
  envName,
  type KafkaConfig,
  type KafkaToMqttRoute,
  loadConfigFile,
  type MisspelledVariable,
  misspelledVariables,
  type MqttConfig,
  parseConfig,
  redactConfig,
  SECRET_FIELDS,
  type TlsFiles,
} from "./config.ts";
