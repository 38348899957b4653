/**
 * The bridge's configuration: one schema for the file and the environment,
 * with defaults that run against local brokers on their standard ports.
 *
 * @module
 */
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { DataExchangeError } from "../errors.ts";
import { topicTemplate } from "../mqtt/sink.ts";

const KAFKA_TOPIC = /^[a-zA-Z0-9._-]{1,249}$/;

const topicName = z.string().regex(
  KAFKA_TOPIC,
  "a Kafka topic name: 1 to 249 of a-z A-Z 0-9 . _ -",
).refine((name) => name !== "." && name !== "..", "not '.' or '..'");

const mqttSchema = z.strictObject({
  url: z.string().regex(
    /^(mqtts?|wss?|tcp|ssl):\/\/./,
    "a URL such as mqtt://127.0.0.1:1883",
  ).default("mqtt://127.0.0.1:1883")
    .describe("Broker URL (mqtt://, mqtts://, ws://, wss://)."),
  topics: z.array(z.string().min(1)).min(1).default(["devices/#"])
    .describe("Topic filters to subscribe to."),
  clientId: z.string().min(1).max(256).default("dx-bridge")
    .describe("Stable client id: the broker keeps the session under it."),
  protocolVersion: z.union([z.literal(4), z.literal(5)]).default(5)
    .describe("4 for MQTT 3.1.1, 5 for MQTT 5."),
  qos: z.union([z.literal(0), z.literal(1)]).default(1)
    .describe("Subscription QoS; 1 for at-least-once delivery."),
  maxInFlight: z.int().min(1).max(65535).default(1000)
    .describe("Most messages received and not yet acknowledged."),
  sessionExpirySeconds: z.int().min(0).default(604800)
    .describe("MQTT 5 session expiry, in seconds."),
  reconnectPeriodMs: z.int().min(100).default(1000)
    .describe("Wait between reconnection attempts, in milliseconds."),
});

const kafkaSchema = z.strictObject({
  brokers: z.array(z.string().regex(/^[^\s:]+:\d{1,5}$/, "host:port")).min(1)
    .default(["127.0.0.1:9092"])
    .describe("Bootstrap brokers as host:port."),
  clientId: z.string().min(1).default("dx-bridge")
    .describe("Client id reported to Kafka."),
  mode: z.enum(["binary", "structured"]).default("binary")
    .describe("CloudEvents content mode of the records written."),
  batchSize: z.int().min(1).max(100000).default(500)
    .describe("Most records in one produce request."),
  lingerMs: z.int().min(0).max(60000).default(5)
    .describe("How long an idle producer waits to fill a batch, in ms."),
  requestTimeoutMs: z.int().min(100).default(30000)
    .describe("Produce request timeout, in milliseconds."),
  createTopics: z.boolean().default(true)
    .describe("Create missing topics at start, with the broker's defaults."),
});

const kafkaToMqttSchema = z.strictObject({
  topics: z.array(topicName).min(1).describe("Kafka topics to read."),
  mqttTopic: z.string().min(1).max(65535).superRefine((value, context) => {
    try {
      topicTemplate(value);
    } catch (error) {
      context.addIssue({
        code: "custom",
        message: (error as Error).message,
        input: value,
      });
    }
  }).describe(
    "MQTT topic, fixed or a template over attributes: devices/{subject}/commands.",
  ),
  groupId: z.string().min(1).optional().describe(
    "Consumer group; default <kafka.clientId>-to-mqtt-<index>.",
  ),
  mode: z.enum(["structured", "binary"]).default("structured").describe(
    "CloudEvents content mode on MQTT; binary needs MQTT 5.",
  ),
  fromBeginning: z.boolean().default(false).describe(
    "A new group starts at the earliest record instead of the latest.",
  ),
});

const configSchema = z.strictObject({
  mqtt: mqttSchema.prefault({}),
  kafka: kafkaSchema.prefault({}),
  routes: z.record(z.string().min(1), topicName)
    .default({ telemetry: "dx.telemetry", alert: "dx.alerts" })
    .describe("classification value -> Kafka topic."),
  defaultTopic: topicName.default("dx.unclassified")
    .describe("Topic of events with no or an unknown classification."),
  deadLetterTopic: topicName.default("dx.deadletter")
    .describe("Topic of messages that cannot be delivered as they are."),
  kafkaToMqtt: z.array(kafkaToMqttSchema).default([])
    .describe("Kafka topics delivered to MQTT, each with its MQTT topic."),
  drainTimeoutMs: z.int().min(0).default(10000)
    .describe("On shutdown, how long to wait for in-flight messages, in ms."),
  log: z.strictObject({
    level: z.enum(["trace", "debug", "info", "warning", "error", "fatal"])
      .default("info").describe("Lowest level logged."),
  }).prefault({}),
});

/** MQTT settings of the bridge. */
export interface MqttConfig {
  /** Broker URL (mqtt://, mqtts://, ws://, wss://). Default `mqtt://127.0.0.1:1883`. */
  url: string;
  /** Topic filters to subscribe to. Default `["devices/#"]`. */
  topics: string[];
  /** Stable client id: the broker keeps the session under it. Default `dx-bridge`. */
  clientId: string;
  /** 4 for MQTT 3.1.1, 5 for MQTT 5. Default 5. */
  protocolVersion: 4 | 5;
  /** Subscription QoS; 1 for at-least-once delivery. Default 1. */
  qos: 0 | 1;
  /** Most messages received and not yet acknowledged. Default 1000. */
  maxInFlight: number;
  /** MQTT 5 session expiry, in seconds. Default 604800. */
  sessionExpirySeconds: number;
  /** Wait between reconnection attempts, in milliseconds. Default 1000. */
  reconnectPeriodMs: number;
}

/** Kafka settings of the bridge. */
export interface KafkaConfig {
  /** Bootstrap brokers as host:port. Default `["127.0.0.1:9092"]`. */
  brokers: string[];
  /** Client id reported to Kafka. Default `dx-bridge`. */
  clientId: string;
  /** CloudEvents content mode of the records written. Default `binary`. */
  mode: "binary" | "structured";
  /** Most records in one produce request. Default 500. */
  batchSize: number;
  /** How long an idle producer waits to fill a batch, in ms. Default 5. */
  lingerMs: number;
  /** Produce request timeout, in milliseconds. Default 30000. */
  requestTimeoutMs: number;
  /** Create missing topics at start, with the broker's defaults. Default true. */
  createTopics: boolean;
}

/** One Kafka → MQTT route of the bridge. */
export interface KafkaToMqttRoute {
  /** Kafka topics to read. */
  topics: string[];
  /**
   * MQTT topic: fixed, or a template over CloudEvent attributes such as
   * `devices/{subject}/commands`.
   */
  mqttTopic: string;
  /** Consumer group; default `<kafka.clientId>-to-mqtt-<index>`. */
  groupId?: string | undefined;
  /** CloudEvents content mode on MQTT; binary needs MQTT 5. Default `structured`. */
  mode: "structured" | "binary";
  /** A new group starts at the earliest record instead of the latest. Default false. */
  fromBeginning: boolean;
}

/** The validated bridge configuration, with every default filled in. */
export interface BridgeConfig {
  /** MQTT side. */
  mqtt: MqttConfig;
  /** Kafka side. */
  kafka: KafkaConfig;
  /** classification value → Kafka topic. */
  routes: Record<string, string>;
  /** Topic of events with no or an unknown classification. */
  defaultTopic: string;
  /** Topic of messages that cannot be delivered as they are. */
  deadLetterTopic: string;
  /** Kafka topics delivered to MQTT. Default none. */
  kafkaToMqtt: KafkaToMqttRoute[];
  /** On shutdown, how long to wait for in-flight messages, in ms. */
  drainTimeoutMs: number;
  /** Logging. */
  log: {
    /** Lowest level logged. Default `info`. */
    level: "trace" | "debug" | "info" | "warning" | "error" | "fatal";
  };
}

/** The configuration as written in a file: every field optional. */
export type BridgeConfigInput = {
  [K in keyof BridgeConfig]?: BridgeConfig[K] extends unknown[]
    ? BridgeConfig[K]
    : BridgeConfig[K] extends Record<string, unknown> ? Partial<BridgeConfig[K]>
    : BridgeConfig[K];
};

// The interfaces above are what users read; this fails to compile when the
// schema and they drift apart.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const schemaMatchesTypes: Same<z.infer<typeof configSchema>, BridgeConfig> =
  true;
void schemaMatchesTypes;

/** Environment variables that override the file (see {@linkcode parseConfig}). */
export const ENV_OVERRIDES: Readonly<Record<string, string>> = {
  DX_MQTT_URL: "mqtt.url",
  DX_KAFKA_BROKERS: "kafka.brokers",
  DX_LOG_LEVEL: "log.level",
};

/**
 * Validates a configuration object after applying the environment
 * overrides: `DX_MQTT_URL`, `DX_KAFKA_BROKERS` (comma-separated) and
 * `DX_LOG_LEVEL`.
 *
 * @param raw The parsed file (or `{}` for none).
 * @param env The environment to read overrides from.
 * @returns The configuration with defaults filled in.
 * @throws {DataExchangeError} `invalid-config`, with one line per problem
 *   naming the field, what was given and what is allowed.
 */
export function parseConfig(
  raw: unknown,
  env: Readonly<Record<string, string | undefined>> = {},
): BridgeConfig {
  const input = structuredClone(raw ?? {}) as Record<string, unknown>;
  if (typeof input !== "object" || Array.isArray(input)) {
    throw new DataExchangeError(
      "invalid-config",
      `The configuration must be a mapping of fields, got ${
        Array.isArray(input) ? "a list" : typeof input
      }`,
    );
  }
  for (const [name, path] of Object.entries(ENV_OVERRIDES)) {
    const value = env[name];
    if (value === undefined || value === "") continue;
    setPath(
      input,
      path,
      name === "DX_KAFKA_BROKERS"
        ? value.split(",").map((s) => s.trim()).filter(Boolean)
        : value,
    );
  }
  const result = configSchema.safeParse(input, { reportInput: true });
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => {
    const path = issue.path.length > 0 ? issue.path.join(".") : "(root)";
    const given = "input" in issue && issue.input !== undefined
      ? `; given ${show(issue.input)}`
      : "";
    return `  ${path}: ${issue.message}${given}`;
  });
  throw new DataExchangeError(
    "invalid-config",
    `The configuration is invalid:\n${lines.join("\n")}`,
  );
}

/**
 * Reads and validates a YAML or JSON configuration file.
 *
 * @param path The file's path.
 * @param env The environment to read overrides from.
 * @returns The configuration with defaults filled in.
 * @throws {DataExchangeError} `config-unreadable` when the file cannot be
 *   read or parsed; `invalid-config` when it breaks the schema.
 */
export async function loadConfigFile(
  path: string,
  env: Readonly<Record<string, string | undefined>> = {},
): Promise<BridgeConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new DataExchangeError(
      "config-unreadable",
      `Cannot read the configuration file ${path}: ${
        (error as Error).message
      }. Check the path given with --config or DX_CONFIG.`,
      { cause: error },
    );
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (error) {
    throw new DataExchangeError(
      "config-unreadable",
      `The configuration file ${path} is not valid YAML or JSON: ${
        (error as Error).message
      }`,
      { cause: error },
    );
  }
  return parseConfig(raw, env);
}

function setPath(
  target: Record<string, unknown>,
  path: string,
  value: unknown,
) {
  const keys = path.split(".");
  let node = target;
  for (const key of keys.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== "object" || next === null || Array.isArray(next)) {
      node[key] = {};
    }
    node = node[key] as Record<string, unknown>;
  }
  node[keys[keys.length - 1]] = value;
}

function show(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
