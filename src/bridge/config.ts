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

const tlsSchema = z.strictObject({
  ca: z.string().min(1).optional().describe(
    "Path of a PEM file of CA certificates to trust.",
  ),
  cert: z.string().min(1).optional().describe(
    "Path of the PEM client certificate.",
  ),
  key: z.string().min(1).optional().describe(
    "Path of the PEM client private key.",
  ),
  rejectUnauthorized: z.boolean().default(true)
    .describe("Refuse servers whose certificate does not verify."),
});

const mqttSchema = z.strictObject({
  url: z.string().regex(
    /^(mqtts?|wss?|tcp|ssl):\/\/./,
    "a URL such as mqtt://127.0.0.1:1883",
  ).default("mqtt://127.0.0.1:1883")
    .describe("Broker URL (mqtt://, mqtts://, ws://, wss://)."),
  topics: z.array(
    z.string().min(1).refine(
      isTopicFilter,
      "an MQTT topic filter: + only as a whole level, # only as the last level",
    ),
  ).min(1).default(["devices/#"])
    .describe("Topic filters to subscribe to."),
  clientId: z.string().min(1).max(256).default("dx-bridge")
    .describe("Stable client id: the broker keeps the session under it."),
  protocolVersion: z.union([z.literal(4), z.literal(5)], {
    error: "4 (MQTT 3.1.1) or 5 (MQTT 5)",
  }).default(5)
    .describe("4 for MQTT 3.1.1, 5 for MQTT 5."),
  qos: z.union([z.literal(0), z.literal(1)], { error: "0 or 1" }).default(1)
    .describe("Subscription QoS; 1 for at-least-once delivery."),
  maxInFlight: z.int().min(1).max(65535).default(1000)
    .describe("Most messages received and not yet acknowledged."),
  maxInFlightBytes: z.int().min(1024).default(16777216)
    .describe(
      "Most payload bytes received and not yet acknowledged; one larger message still passes alone.",
    ),
  sessionExpirySeconds: z.int().min(0).default(604800)
    .describe("MQTT 5 session expiry, in seconds."),
  reconnectPeriodMs: z.int().min(100).default(1000)
    .describe(
      "Upper bound of the first reconnection wait, in ms; it doubles per failed attempt (full jitter).",
    ),
  reconnectMaxDelayMs: z.int().min(100).default(30000)
    .describe("Largest reconnection wait, in milliseconds."),
  keepaliveSeconds: z.int().min(0).max(65535).default(60)
    .describe("MQTT keepalive interval, in seconds."),
  sharedGroup: z.string().regex(/^[^/+#]+$/, "a name without / + #")
    .optional()
    .describe(
      "Subscribe as $share/<group>/<topic> to spread load over bridges.",
    ),
  username: z.string().min(1).optional().describe("MQTT username."),
  password: z.string().optional()
    .describe("MQTT password: from DX_MQTT_PASSWORD only, never the file."),
  passwordFile: z.string().min(1).optional()
    .describe("Path of a file holding the MQTT password."),
  tls: tlsSchema.optional().describe("TLS files for mqtts:// and wss://."),
});

const kafkaSchema = z.strictObject({
  brokers: z.array(
    z.string().regex(/^[^\s:]+:\d{1,5}$/, "host:port").refine(
      (broker) => Number(broker.split(":")[1]) <= 65535,
      "host:port with a port from 1 to 65535",
    ),
  ).min(1)
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
  acks: z.enum(["all", "leader", "none"]).default("all")
    .describe(
      "Acknowledgements a produce needs: all in-sync replicas, the leader, or none.",
    ),
  compression: z.enum(["none", "gzip"]).default("none")
    .describe("Compression of produce requests."),
  breakerThreshold: z.int().min(1).default(5)
    .describe(
      "Failed produce attempts in a row that open the circuit breaker.",
    ),
  breakerHalfOpenAfterMs: z.int().min(100).default(5000)
    .describe("How long the breaker stays open before one probe, in ms."),
  tls: tlsSchema.extend({
    enabled: z.boolean().default(false).describe("Connect with TLS."),
  }).prefault({}),
  sasl: z.strictObject({
    mechanism: z.enum(["plain", "scram-sha-256", "scram-sha-512"])
      .describe("SASL mechanism."),
    username: z.string().min(1).describe("SASL username."),
    password: z.string().optional()
      .describe(
        "SASL password: from DX_KAFKA_SASL_PASSWORD only, never the file.",
      ),
    passwordFile: z.string().min(1).optional()
      .describe("Path of a file holding the SASL password."),
  }).optional().describe("SASL authentication."),
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
  routes: z.record(
    z.string().min(1, "a non-empty classification value"),
    topicName,
  )
    .default({ telemetry: "dx.telemetry", alert: "dx.alerts" })
    .describe("classification value -> Kafka topic."),
  defaultTopic: topicName.default("dx.unclassified")
    .describe("Topic of events with no or an unknown classification."),
  deadLetterTopic: topicName.default("dx.deadletter")
    .describe("Topic of messages that cannot be delivered as they are."),
  kafkaToMqtt: z.array(kafkaToMqttSchema).default([])
    .describe("Kafka topics delivered to MQTT, each with its MQTT topic."),
  metrics: z.strictObject({
    port: z.int().min(1).max(65535).optional()
      .describe("Port of /metrics, /healthz and /readyz; none when unset."),
    hostname: z.string().min(1).default("127.0.0.1")
      .describe("Address the metrics endpoint listens on."),
  }).prefault({}),
  drainTimeoutMs: z.int().min(0).default(10000)
    .describe("On shutdown, how long to wait for in-flight messages, in ms."),
  log: z.strictObject({
    level: z.enum(["trace", "debug", "info", "warning", "error", "fatal"])
      .default("info").describe("Lowest level logged."),
  }).prefault({}),
}).superRefine((config, context) => {
  const sasl = config.kafka.sasl;
  if (sasl && sasl.password === undefined && sasl.passwordFile === undefined) {
    context.addIssue({
      code: "custom",
      path: ["kafka", "sasl", "password"],
      message:
        "SASL needs a password: set DX_KAFKA_SASL_PASSWORD or kafka.sasl.passwordFile",
    });
  }
  const eventTopics = [config.defaultTopic, ...Object.values(config.routes)];
  if (eventTopics.includes(config.deadLetterTopic)) {
    context.addIssue({
      code: "custom",
      path: ["deadLetterTopic"],
      message:
        "a topic of its own: it is also a route or the default topic, so dead letters would mix with events",
      input: config.deadLetterTopic,
    });
  }
});

/** Whether a string is a valid MQTT topic filter (MQTT 5 §4.7.1). */
function isTopicFilter(filter: string): boolean {
  const levels = filter.split("/");
  return levels.every((level, i) =>
    (level === "#" && i === levels.length - 1) || level === "+" ||
    (!level.includes("#") && !level.includes("+"))
  ) && !filter.includes("\0");
}

/**
 * MQTT settings of the bridge.
 *
 * @example The MQTT settings after defaults
 * ```ts
 * import { type MqttConfig, parseConfig } from "@dataexchange/streams/bridge";
 *
 * const mqtt: MqttConfig = parseConfig({
 *   mqtt: { url: "mqtt://broker.example:1883", sharedGroup: "bridges" },
 * }).mqtt;
 * console.log(mqtt.clientId, mqtt.qos, mqtt.topics); // dx-bridge 1 [ "devices/#" ]
 * ```
 */
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
  /**
   * Most payload bytes received and not yet acknowledged; one larger message
   * still passes alone. Default 16777216 (16 MiB).
   */
  maxInFlightBytes: number;
  /** MQTT 5 session expiry, in seconds. Default 604800. */
  sessionExpirySeconds: number;
  /**
   * Upper bound of the first reconnection wait, in milliseconds; it doubles
   * per failed attempt, with full jitter. Default 1000.
   */
  reconnectPeriodMs: number;
  /** Largest reconnection wait, in milliseconds. Default 30000. */
  reconnectMaxDelayMs: number;
  /** MQTT keepalive interval, in seconds. Default 60. */
  keepaliveSeconds: number;
  /** Subscribe as `$share/<group>/<topic>` to spread load over bridges. */
  sharedGroup?: string | undefined;
  /** MQTT username. */
  username?: string | undefined;
  /** MQTT password; only from `DX_MQTT_PASSWORD` (or `passwordFile`). */
  password?: string | undefined;
  /** Path of a file holding the MQTT password. */
  passwordFile?: string | undefined;
  /** TLS files for `mqtts://` and `wss://`. */
  tls?: TlsFiles | undefined;
}

/**
 * Paths of PEM files for a TLS connection.
 *
 * @example Describe a TLS setting for the start-up log
 * ```ts
 * import type { TlsFiles } from "@dataexchange/streams/bridge";
 *
 * function describeTls(tls: TlsFiles | undefined): string {
 *   if (!tls) return "system CAs";
 *   const parts = [tls.ca && `CA ${tls.ca}`, tls.cert && `certificate ${tls.cert}`];
 *   parts.push(tls.rejectUnauthorized ? "verified" : "NOT verified");
 *   return parts.filter(Boolean).join(", ");
 * }
 *
 * console.log(describeTls({ ca: "/etc/dx/ca.pem", rejectUnauthorized: true })); // CA /etc/dx/ca.pem, verified
 * ```
 */
export interface TlsFiles {
  /** CA certificates to trust. */
  ca?: string | undefined;
  /** Client certificate. */
  cert?: string | undefined;
  /** Client private key. */
  key?: string | undefined;
  /** Refuse servers whose certificate does not verify. Default true. */
  rejectUnauthorized: boolean;
}

/**
 * Kafka settings of the bridge.
 *
 * @example The environment wins over the file
 * ```ts
 * import { type KafkaConfig, parseConfig } from "@dataexchange/streams/bridge";
 *
 * const kafka: KafkaConfig = parseConfig(
 *   { kafka: { brokers: ["kafka-1:9092", "kafka-2:9092"], batchSize: 200 } },
 *   { DX_KAFKA_BATCH_SIZE: "1000" },
 * ).kafka;
 * console.log(kafka.batchSize, kafka.acks, kafka.mode); // 1000 all binary
 * ```
 */
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
  /** Acknowledgements a produce needs. Default `all`. */
  acks: "all" | "leader" | "none";
  /** Compression of produce requests. Default `none`. */
  compression: "none" | "gzip";
  /** Failed produce attempts in a row that open the circuit breaker. Default 5. */
  breakerThreshold: number;
  /** How long the breaker stays open before one probe, in ms. Default 5000. */
  breakerHalfOpenAfterMs: number;
  /** TLS to the brokers. */
  tls: TlsFiles & {
    /** Connect with TLS. Default false. */
    enabled: boolean;
  };
  /** SASL authentication. */
  sasl?: {
    /** SASL mechanism. */
    mechanism: "plain" | "scram-sha-256" | "scram-sha-512";
    /** SASL username. */
    username: string;
    /** SASL password; only from `DX_KAFKA_SASL_PASSWORD` (or `passwordFile`). */
    password?: string | undefined;
    /** Path of a file holding the SASL password. */
    passwordFile?: string | undefined;
  } | undefined;
}

/**
 * One Kafka → MQTT route of the bridge.
 *
 * @example A command route, with its defaults
 * ```ts
 * import {
 *   type KafkaToMqttRoute,
 *   parseConfig,
 * } from "@dataexchange/streams/bridge";
 *
 * const [route]: KafkaToMqttRoute[] = parseConfig({
 *   kafkaToMqtt: [
 *     { topics: ["dx.commands"], mqttTopic: "devices/{subject}/commands" },
 *   ],
 * }).kafkaToMqtt;
 * console.log(route.mode, route.fromBeginning, route.groupId); // structured false undefined
 * ```
 */
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

/**
 * The validated bridge configuration, with every default filled in.
 *
 * @example Every Kafka topic a configuration uses
 * ```ts
 * import { type BridgeConfig, parseConfig } from "@dataexchange/streams/bridge";
 *
 * function kafkaTopics(config: BridgeConfig): string[] {
 *   const topics = [
 *     ...Object.values(config.routes),
 *     config.defaultTopic,
 *     config.deadLetterTopic,
 *     ...config.kafkaToMqtt.flatMap((route) => route.topics),
 *   ];
 *   return [...new Set(topics)];
 * }
 *
 * console.log(kafkaTopics(parseConfig({}))); // [ "dx.telemetry", "dx.alerts", "dx.unclassified", "dx.deadletter" ]
 * ```
 */
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
  /** The HTTP endpoint of metrics and health. */
  metrics: {
    /** Port of `/metrics`, `/healthz` and `/readyz`; no endpoint when unset. */
    port?: number | undefined;
    /** Address it listens on. Default `127.0.0.1`. */
    hostname: string;
  };
  /** On shutdown, how long to wait for in-flight messages, in ms. */
  drainTimeoutMs: number;
  /** Logging. */
  log: {
    /** Lowest level logged. Default `info`. */
    level: "trace" | "debug" | "info" | "warning" | "error" | "fatal";
  };
}

/**
 * The configuration as written in a file: every field optional.
 *
 * @example A configuration written in code, checked by the compiler
 * ```ts
 * import {
 *   type BridgeConfigInput,
 *   parseConfig,
 * } from "@dataexchange/streams/bridge";
 *
 * const input: BridgeConfigInput = {
 *   routes: { telemetry: "plant.telemetry" },
 *   defaultTopic: "plant.other",
 *   deadLetterTopic: "plant.dead",
 *   drainTimeoutMs: 5_000,
 * };
 * console.log(parseConfig(input).routes); // { telemetry: "plant.telemetry" }
 * ```
 */
export type BridgeConfigInput = {
  [K in keyof BridgeConfig]?: BridgeConfig[K] extends readonly (infer Item)[]
    ? (Item extends object ? Partial<Item> : Item)[]
    : BridgeConfig[K] extends object ? Partial<BridgeConfig[K]>
    : BridgeConfig[K];
};

// The interfaces above are what users read; this fails to compile when the
// schema and they drift apart.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const schemaMatchesTypes: Same<z.infer<typeof configSchema>, BridgeConfig> =
  true;
void schemaMatchesTypes;

/**
 * How an environment value is read for a field.
 *
 * @example The variables that take a list
 * ```ts
 * import {
 *   ENV_FIELDS,
 *   type EnvKind,
 *   envName,
 * } from "@dataexchange/streams/bridge";
 *
 * const kind: EnvKind = "list";
 * const names = Object.entries(ENV_FIELDS)
 *   .filter(([, fieldKind]) => fieldKind === kind)
 *   .map(([path]) => envName(path));
 * console.log(names); // [ "DX_MQTT_TOPICS", "DX_KAFKA_BROKERS" ]
 * ```
 */
export type EnvKind = "string" | "integer" | "boolean" | "list" | "json";

const ENV_KIND_TEXT: Record<EnvKind, string> = {
  string: "text",
  integer: "an integer",
  boolean: "true or false",
  list: "a comma-separated list",
  json: "JSON",
};

/**
 * Every field that the environment can set, with how its value is read.
 * The variable is `DX_` and the field's path in upper snake case:
 * `kafka.clientId` is `DX_KAFKA_CLIENT_ID`. Lists are comma-separated;
 * `routes` and `kafkaToMqtt` take JSON.
 *
 * @example A help text of the environment variables
 * ```ts
 * import { ENV_FIELDS, envName } from "@dataexchange/streams/bridge";
 *
 * const help = Object.entries(ENV_FIELDS)
 *   .map(([path, kind]) => `${envName(path).padEnd(32)} ${path} (${kind})`);
 * console.log(help[0]); // DX_MQTT_URL                      mqtt.url (string)
 * ```
 */
export const ENV_FIELDS: Readonly<Record<string, EnvKind>> = {
  "mqtt.url": "string",
  "mqtt.topics": "list",
  "mqtt.clientId": "string",
  "mqtt.protocolVersion": "integer",
  "mqtt.qos": "integer",
  "mqtt.maxInFlight": "integer",
  "mqtt.maxInFlightBytes": "integer",
  "mqtt.sessionExpirySeconds": "integer",
  "mqtt.reconnectPeriodMs": "integer",
  "mqtt.reconnectMaxDelayMs": "integer",
  "mqtt.keepaliveSeconds": "integer",
  "mqtt.sharedGroup": "string",
  "mqtt.username": "string",
  "mqtt.password": "string",
  "mqtt.passwordFile": "string",
  "mqtt.tls.ca": "string",
  "mqtt.tls.cert": "string",
  "mqtt.tls.key": "string",
  "mqtt.tls.rejectUnauthorized": "boolean",
  "kafka.brokers": "list",
  "kafka.clientId": "string",
  "kafka.mode": "string",
  "kafka.batchSize": "integer",
  "kafka.lingerMs": "integer",
  "kafka.requestTimeoutMs": "integer",
  "kafka.createTopics": "boolean",
  "kafka.acks": "string",
  "kafka.compression": "string",
  "kafka.breakerThreshold": "integer",
  "kafka.breakerHalfOpenAfterMs": "integer",
  "kafka.tls.enabled": "boolean",
  "kafka.tls.ca": "string",
  "kafka.tls.cert": "string",
  "kafka.tls.key": "string",
  "kafka.tls.rejectUnauthorized": "boolean",
  "kafka.sasl.mechanism": "string",
  "kafka.sasl.username": "string",
  "kafka.sasl.password": "string",
  "kafka.sasl.passwordFile": "string",
  "routes": "json",
  "defaultTopic": "string",
  "deadLetterTopic": "string",
  "kafkaToMqtt": "json",
  "metrics.port": "integer",
  "metrics.hostname": "string",
  "drainTimeoutMs": "integer",
  "log.level": "string",
};

/**
 * Fields that hold secrets: never read from the file, never printed.
 *
 * @example Check a file before it is committed
 * ```ts
 * import { SECRET_FIELDS } from "@dataexchange/streams/bridge";
 *
 * function secretsIn(raw: Record<string, Record<string, unknown>>): string[] {
 *   return SECRET_FIELDS.filter((path) => {
 *     const [section, ...rest] = path.split(".");
 *     let node: unknown = raw[section];
 *     for (const key of rest) node = (node as Record<string, unknown>)?.[key];
 *     return node !== undefined;
 *   });
 * }
 *
 * console.log(secretsIn({ mqtt: { password: "hunter2" } })); // [ "mqtt.password" ]
 * ```
 */
export const SECRET_FIELDS: readonly string[] = [
  "mqtt.password",
  "kafka.sasl.password",
];

/**
 * The environment variable of a configuration field. It never throws, and
 * does not check that the field exists (see {@linkcode ENV_FIELDS}).
 *
 * @param path A field path such as `kafka.clientId`.
 * @returns Its variable, such as `DX_KAFKA_CLIENT_ID`.
 *
 * @example Tell the user which variable to set
 * ```ts
 * import { envName } from "@dataexchange/streams/bridge";
 *
 * console.log(`set ${envName("kafka.sasl.passwordFile")}`); // set DX_KAFKA_SASL_PASSWORD_FILE
 * ```
 */
export function envName(path: string): string {
  return "DX_" +
    path.split(".").map((part) =>
      part.replace(/[A-Z]/g, (letter) => `_${letter}`).toUpperCase()
    ).join("_");
}

/** A variable that looks like a misspelled configuration variable. */
export interface MisspelledVariable {
  /** The variable as set, such as `DX_MQTT_URLL`. */
  name: string;
  /** The configuration variable it is closest to, such as `DX_MQTT_URL`. */
  closest: string;
}

/**
 * Finds `DX_` variables that are not configuration variables but are within
 * two edits of one: almost certainly typos, which would otherwise be ignored
 * without a word. Names further from every configuration variable are left
 * alone (other tools may use the prefix).
 *
 * @param env The environment.
 * @returns The suspicious variables, by name, each with its closest match.
 *   It never throws.
 *
 * @example Catch a typo in a variable name
 * ```ts
 * import { misspelledVariables } from "@dataexchange/streams/bridge";
 *
 * const found = misspelledVariables({ DX_MQTT_URLL: "mqtt://127.0.0.1:1884" });
 * console.log(found); // [ { name: "DX_MQTT_URLL", closest: "DX_MQTT_URL" } ]
 * ```
 */
export function misspelledVariables(
  env: Readonly<Record<string, string | undefined>>,
): MisspelledVariable[] {
  const known = [
    "DX_CONFIG",
    ...Object.keys(ENV_FIELDS).map((path) => envName(path)),
  ];
  const found: MisspelledVariable[] = [];
  for (const name of Object.keys(env).sort()) {
    if (!name.startsWith("DX_") || known.includes(name)) continue;
    let closest = "";
    let best = 3;
    for (const candidate of known) {
      const distance = editDistance(name, candidate, best);
      if (distance < best) {
        best = distance;
        closest = candidate;
      }
    }
    if (closest !== "") found.push({ name, closest });
  }
  return found;
}

// Levenshtein distance, giving up (returning `limit`) once it reaches it.
function editDistance(a: string, b: string, limit: number): number {
  if (Math.abs(a.length - b.length) >= limit) return limit;
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    let rowMin = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min(
        previous[j] + 1,
        current[j - 1] + 1,
        previous[j - 1] + cost,
      );
      rowMin = Math.min(rowMin, current[j]);
    }
    if (rowMin >= limit) return limit;
    previous = current;
  }
  return Math.min(previous[b.length], limit);
}

/**
 * Validates a configuration object after applying the environment: every
 * field in {@linkcode ENV_FIELDS} can be set by its variable (see
 * {@linkcode envName}), which wins over the file. Secrets may come only from
 * the environment or a `...File` path.
 *
 * @param raw The parsed file (or `{}` for none).
 * @param env The environment to read overrides from.
 * @returns The configuration with defaults filled in.
 * @throws {DataExchangeError} `invalid-config`, with one line per problem
 *   naming the field, what was given and what is allowed.
 *
 * @example A file, overridden by the environment
 * ```ts
 * import { parseConfig } from "@dataexchange/streams/bridge";
 *
 * const config = parseConfig(
 *   { mqtt: { topics: ["devices/#"] }, routes: { alert: "dx.alerts" } },
 *   { DX_MQTT_TOPICS: "plant/+/events,devices/#", DX_LOG_LEVEL: "debug" },
 * );
 * console.log(config.mqtt.topics, config.log.level); // [ "plant/+/events", "devices/#" ] debug
 * ```
 *
 * @example Every problem at once
 * ```ts
 * import { parseConfig } from "@dataexchange/streams/bridge";
 * import { isDataExchangeError } from "@dataexchange/streams/cloudevents";
 *
 * try {
 *   parseConfig({ mqtt: { qos: 2 } }, { DX_KAFKA_BATCH_SIZE: "many" });
 * } catch (error) {
 *   if (!isDataExchangeError(error)) throw error;
 *   console.log(error.code); // invalid-config
 *   console.log(error.message.split("\n")[1]); //   kafka.batchSize: DX_KAFKA_BATCH_SIZE must be an integer; given "many"
 * }
 * ```
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
  const problems: string[] = [];
  for (const path of SECRET_FIELDS) {
    if (getPath(input, path) !== undefined) {
      problems.push(
        `  ${path}: secrets may not be written in the configuration; set ${
          envName(path)
        } or ${path}File`,
      );
    }
  }
  const fileUrl = getPath(input, "mqtt.url");
  if (typeof fileUrl === "string" && URL_WITH_PASSWORD.test(fileUrl)) {
    problems.push(
      `  mqtt.url: secrets may not be written in the configuration, and this URL holds a password; ` +
        `set mqtt.username and DX_MQTT_PASSWORD or mqtt.passwordFile (or the whole URL in DX_MQTT_URL); given ${
          show(fileUrl)
        }`,
    );
  }
  for (const [path, kind] of Object.entries(ENV_FIELDS)) {
    const name = envName(path);
    const value = env[name];
    if (value === undefined || value === "") continue;
    const parsed = readEnv(value, kind);
    if (parsed === undefined) {
      problems.push(
        `  ${path}: ${name} must be ${ENV_KIND_TEXT[kind]}; given ${
          SECRET_FIELDS.includes(path) ? "(hidden)" : show(value)
        }`,
      );
      continue;
    }
    setPath(input, path, parsed);
  }
  if (problems.length > 0) {
    throw new DataExchangeError(
      "invalid-config",
      `The configuration is invalid:\n${problems.join("\n")}`,
    );
  }
  const result = configSchema.safeParse(input, { reportInput: true });
  if (result.success) return result.data;
  const lines = result.error.issues.flatMap((issue) => {
    const path = issue.path.length > 0 ? issue.path.join(".") : "(root)";
    if (issue.code === "unrecognized_keys") {
      // One line per key, and never the values: a misspelled secret field
      // holds a secret.
      const prefix = issue.path.length > 0 ? `${path}.` : "";
      return issue.keys.map((key) =>
        `  ${prefix}${key}: unknown field; check its spelling against the configuration reference`
      );
    }
    const secret = SECRET_FIELDS.some((field) => path.startsWith(field));
    const input = "input" in issue ? issue.input : undefined;
    // Scalars only: a whole section may hold secrets under any name.
    const given = input === undefined
      ? ""
      : secret
      ? "; given (hidden)"
      : typeof input === "object" && input !== null
      ? `; given ${Array.isArray(input) ? "a list" : "an object"}`
      : `; given ${show(input)}`;
    return [`  ${path}: ${issue.message}${given}`];
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
 *
 * @example Load the file named on the command line
 * ```ts
 * import { loadConfigFile, redactConfig } from "@dataexchange/streams/bridge";
 * import { isDataExchangeError } from "@dataexchange/streams/cloudevents";
 *
 * try {
 *   await loadConfigFile("/no/such/dir/bridge.yaml");
 * } catch (error) {
 *   if (!isDataExchangeError(error)) throw error;
 *   console.log(error.code); // config-unreadable
 * }
 *
 * // Reads the file given as argument: runs when this file is run as a script.
 * if (import.meta.main) {
 *   const path = Deno.args[0] ?? "bridge.yaml";
 *   const config = await loadConfigFile(path, Deno.env.toObject());
 *   console.log(JSON.stringify(redactConfig(config), null, 2));
 * }
 * ```
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

function readEnv(value: string, kind: EnvKind): unknown {
  switch (kind) {
    case "string":
      return value;
    case "integer":
      return /^-?\d+$/.test(value.trim()) ? Number(value) : undefined;
    case "boolean":
      return value === "true" ? true : value === "false" ? false : undefined;
    case "list":
      return value.split(",").map((item) => item.trim()).filter(Boolean);
    case "json":
      try {
        return JSON.parse(value);
      } catch {
        return undefined;
      }
  }
}

function getPath(target: unknown, path: string): unknown {
  let node = target;
  for (const key of path.split(".")) {
    if (typeof node !== "object" || node === null) return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return node;
}

/**
 * A copy of the configuration with every secret replaced by `"***"`, for
 * printing and logging: the fields of {@linkcode SECRET_FIELDS}, and a
 * password in `mqtt.url`. It never throws for a configuration that
 * {@linkcode parseConfig} returned.
 *
 * @param config A validated configuration.
 * @returns The same configuration, secrets hidden.
 *
 * @example Print the effective configuration
 * ```ts
 * import { parseConfig, redactConfig } from "@dataexchange/streams/bridge";
 *
 * const config = parseConfig(
 *   { mqtt: { username: "bridge" } },
 *   { DX_MQTT_PASSWORD: "hunter2" },
 * );
 * const shown = redactConfig(config);
 * console.log(shown.mqtt.password, config.mqtt.password); // *** hunter2
 * ```
 */
export function redactConfig(config: BridgeConfig): BridgeConfig {
  const copy = structuredClone(config);
  for (const path of SECRET_FIELDS) {
    if (getPath(copy, path) !== undefined) {
      setPath(copy as unknown as Record<string, unknown>, path, "***");
    }
  }
  copy.mqtt.url = hideUrlPasswords(copy.mqtt.url);
  return copy;
}

/** A URL whose user information has a password: `mqtt://user:secret@host`. */
const URL_WITH_PASSWORD = /^[a-z][a-z0-9+.-]*:\/\/[^\s/?#]*:[^\s/?#]*@/i;

/**
 * Replaces the password of every URL in a text with `***`. The user
 * information runs to the last `@` before the host, so a password with an
 * `@` in it is hidden whole; when in doubt, more is hidden, never less.
 */
function hideUrlPasswords(text: string): string {
  return text.replace(
    /([a-z][a-z0-9+.-]*:\/\/)([^\s/?#]*)@/gi,
    (_match, scheme: string, userinfo: string) => {
      const colon = userinfo.indexOf(":");
      return colon < 0
        ? `${scheme}${userinfo}@`
        : `${scheme}${userinfo.slice(0, colon)}:***@`;
    },
  );
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
  // Before shortening, so that a cut cannot leave part of a password.
  text = hideUrlPasswords(text);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
