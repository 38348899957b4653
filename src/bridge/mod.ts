/**
 * The MQTT → Kafka bridge as a library: its configuration schema and the
 * function that runs it.
 *
 * @module
 */
export {
  type BridgeStats,
  runBridge,
  type RunBridgeOptions,
} from "./bridge.ts";
export {
  type BridgeConfig,
  type BridgeConfigInput,
  ENV_FIELDS,
  envName,
  type KafkaConfig,
  type KafkaToMqttRoute,
  loadConfigFile,
  type MqttConfig,
  parseConfig,
  redactConfig,
  SECRET_FIELDS,
  type TlsFiles,
} from "./config.ts";
