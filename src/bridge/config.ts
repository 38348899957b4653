/**
 * The bridge's configuration: one schema for the file and the environment,
 * with defaults that run against local brokers on their standard ports.
 *
 * The schema is also the configuration reference: each field carries its
 * meaning and an example as metadata, and {@linkcode CONFIG_FIELDS} derives
 * from it the fields' types, defaults, environment variables and secrets.
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

// Field metadata read by CONFIG_FIELDS besides `description` and `examples`:
// `format: "path"` for the path of a file, `secret: true` for a value that
// may come only from the environment, and `defaultRule` for a default
// computed from other fields.

/** The path of a file, optional. */
function filePath(description: string, example: string) {
  return z.string().min(1).optional().meta({
    description,
    examples: [example],
    format: "path",
  });
}

/** A secret: only from the environment or a file, never printed. */
function secret(variable: string, file: string, example: string) {
  return z.string().optional().meta({
    description:
      `Only from \`${variable}\`, or read from \`${file}\`; never written in the file.`,
    examples: [example],
    secret: true,
  });
}

function tlsFields(side: "MQTT" | "Kafka", prefix: string) {
  return {
    ca: filePath(
      `PEM file of the CA certificates to trust for the ${side} broker.`,
      `/etc/dx/${prefix}ca.pem`,
    ),
    cert: filePath(
      "PEM client certificate; needs `key`.",
      `/etc/dx/${prefix}client.pem`,
    ),
    key: filePath(
      "PEM private key of the client certificate, unencrypted; needs `cert`.",
      `/etc/dx/${prefix}client-key.pem`,
    ),
    rejectUnauthorized: z.boolean().default(true).meta({
      description: `Refuse a ${side} broker whose certificate does not verify.`,
      examples: [false],
    }),
  };
}

const mqttSchema = z.strictObject({
  url: z.string().regex(
    /^(mqtts?|wss?|tcp|ssl):\/\/./,
    "a URL such as mqtt://127.0.0.1:1883",
  ).default("mqtt://127.0.0.1:1883").meta({
    description: "Broker URL (`mqtt://`, `mqtts://`, `ws://`, `wss://`).",
    examples: ["mqtts://broker.example:8883"],
  }),
  topics: z.array(
    z.string().min(1).refine(
      isTopicFilter,
      "an MQTT topic filter: + only as a whole level, # only as the last level",
    ),
  ).min(1).default(["devices/#"]).meta({
    description: "Topic filters to subscribe to.",
    examples: [["plant/+/events", "devices/#"]],
  }),
  clientId: z.string().min(1).max(256).default("dx-bridge").meta({
    description: "Stable client id; the broker keeps the session under it.",
    examples: ["bridge-plant-1"],
  }),
  protocolVersion: z.union([z.literal(4), z.literal(5)], {
    error: "4 (MQTT 3.1.1) or 5 (MQTT 5)",
  }).default(5).meta({
    description: "MQTT 3.1.1 (4) or MQTT 5.",
    examples: [4],
  }),
  qos: z.union([z.literal(0), z.literal(1)], { error: "0 or 1" }).default(1)
    .meta({
      description: "Subscription QoS; 1 for at-least-once.",
      examples: [0],
    }),
  maxInFlight: z.int().min(1).max(65535).default(1000).meta({
    description: "Most messages received and not yet acknowledged.",
    examples: [200],
  }),
  maxInFlightBytes: z.int().min(1024).default(16777216).meta({
    description:
      "Most payload bytes received and not yet acknowledged; one larger message still passes alone.",
    examples: [4194304],
  }),
  // A Four Byte Integer (MQTT 5 §3.1.2.11.2).
  sessionExpirySeconds: z.int().min(0).max(4294967295).default(604800).meta({
    description: "MQTT 5 session expiry, in seconds.",
    examples: [86400],
  }),
  reconnectPeriodMs: z.int().min(100).max(86_400_000).default(1000).meta({
    description:
      "Bound of the first reconnection wait, in ms, in both directions; it doubles per failed attempt, with full jitter.",
    examples: [500],
  }),
  reconnectMaxDelayMs: z.int().min(100).max(86_400_000).default(30000).meta({
    description: "Largest reconnection wait, in ms.",
    examples: [60000],
  }),
  keepaliveSeconds: z.int().min(0).max(65535).default(60).meta({
    description: "MQTT keepalive interval, in seconds.",
    examples: [30],
  }),
  sharedGroup: z.string().regex(/^[^/+#]+$/, "a name without / + #")
    .optional().meta({
      description:
        "Subscribe as `$share/<group>/<topic>`, to spread load over several bridges.",
      examples: ["bridges"],
    }),
  username: z.string().min(1).optional().meta({
    description: "MQTT user name.",
    examples: ["bridge"],
  }),
  password: secret("DX_MQTT_PASSWORD", "mqtt.passwordFile", "hunter2"),
  passwordFile: filePath(
    "A file holding the MQTT password (its final line break is dropped).",
    "/run/secrets/mqtt-password",
  ),
  tls: z.strictObject(tlsFields("MQTT", "")).prefault({}).describe(
    "TLS files for mqtts:// and wss://.",
  ),
});

const kafkaSchema = z.strictObject({
  brokers: z.array(
    z.string().regex(/^[^\s:]+:\d{1,5}$/, "host:port").refine(
      (broker) => Number(broker.split(":")[1]) <= 65535,
      "host:port with a port from 1 to 65535",
    ),
  ).min(1).default(["127.0.0.1:9092"]).meta({
    description: "Bootstrap brokers as `host:port`.",
    examples: [["kafka-1:9092", "kafka-2:9092"]],
  }),
  clientId: z.string().min(1).default("dx-bridge").meta({
    description: "Client id reported to Kafka.",
    examples: ["bridge-plant-1"],
  }),
  mode: z.enum(["binary", "structured"]).default("binary").meta({
    description: "CloudEvents content mode of the records written.",
    examples: ["structured"],
  }),
  batchSize: z.int().min(1).max(100000).default(500).meta({
    description: "Most records in one produce request.",
    examples: [1000],
  }),
  lingerMs: z.int().min(0).max(60000).default(5).meta({
    description: "How long an idle producer waits to fill a batch, in ms.",
    examples: [20],
  }),
  requestTimeoutMs: z.int().min(100).max(86_400_000).default(30000).meta({
    description: "Produce request timeout, in ms.",
    examples: [10000],
  }),
  createTopics: z.boolean().default(true).meta({
    description: "Create missing topics at start, with the broker's defaults.",
    examples: [false],
  }),
  acks: z.enum(["all", "leader", "none"]).default("all").meta({
    description:
      "Acknowledgements a produce waits for; at-least-once needs `all`.",
    examples: ["leader"],
  }),
  compression: z.enum(["none", "gzip"]).default("none").meta({
    description: "Compression of produce requests.",
    examples: ["gzip"],
  }),
  breakerThreshold: z.int().min(1).default(5).meta({
    description:
      "Failed produce attempts in a row that open the circuit breaker (reading from MQTT then stops at the in-flight cap).",
    examples: [10],
  }),
  breakerHalfOpenAfterMs: z.int().min(100).max(86_400_000).default(5000).meta({
    description: "How long the breaker stays open before one probe, in ms.",
    examples: [15000],
  }),
  tls: z.strictObject({
    enabled: z.boolean().default(false).meta({
      description: "Connect to the brokers with TLS.",
      examples: [true],
    }),
    ...tlsFields("Kafka", "kafka-"),
  }).prefault({}),
  sasl: z.strictObject({
    mechanism: z.enum(["plain", "scram-sha-256", "scram-sha-512"]).meta({
      description: "SASL mechanism; setting it turns SASL on.",
      examples: ["scram-sha-512"],
    }),
    username: z.string().min(1).meta({
      description: "SASL user name.",
      examples: ["bridge"],
    }),
    password: secret(
      "DX_KAFKA_SASL_PASSWORD",
      "kafka.sasl.passwordFile",
      "hunter2",
    ),
    passwordFile: filePath(
      "A file holding the SASL password (its final line break is dropped).",
      "/run/secrets/kafka-password",
    ),
  }).optional().describe("SASL authentication."),
});

const kafkaToMqttSchema = z.strictObject({
  topics: z.array(topicName).min(1).meta({
    description: "Kafka topics to read.",
    examples: [["dx.commands"]],
  }),
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
  }).meta({
    description:
      "MQTT topic: fixed, or a template over CloudEvent attributes such as `{subject}`.",
    examples: ["devices/{subject}/commands"],
  }),
  groupId: z.string().min(1).optional().meta({
    description: "Kafka consumer group.",
    examples: ["commands-to-mqtt"],
    defaultRule: "<kafka.clientId>-to-mqtt-<index>",
  }),
  mode: z.enum(["structured", "binary"]).default("structured").meta({
    description: "CloudEvents content mode on MQTT (binary needs MQTT 5).",
    examples: ["binary"],
  }),
  fromBeginning: z.boolean().default(false).meta({
    description: "A new group starts at the earliest record.",
    examples: [true],
  }),
});

const configObject = z.strictObject({
  mqtt: mqttSchema.prefault({}),
  kafka: kafkaSchema.prefault({}),
  routes: z.record(
    z.string().min(1, "a non-empty classification value").refine(
      (key) => key !== "default",
      'a classification value other than "default", the label of the default route',
    ),
    topicName,
  ).default({ telemetry: "dx.telemetry", alert: "dx.alerts" }).meta({
    description: "`classification` value → Kafka topic.",
    examples: [{ telemetry: "plant.telemetry", alarm: "plant.alarms" }],
  }),
  defaultTopic: topicName.default("dx.unclassified").meta({
    description: "Topic of events with no or an unknown classification.",
    examples: ["plant.other"],
  }),
  deadLetterTopic: topicName.default("dx.deadletter").meta({
    description: "Topic of messages that cannot be delivered as they are.",
    examples: ["plant.deadletter"],
  }),
  kafkaToMqtt: z.array(kafkaToMqttSchema).default([]).meta({
    description:
      "Kafka topics delivered to MQTT; see [Kafka → MQTT](#kafka--mqtt).",
    examples: [[{
      topics: ["dx.commands"],
      mqttTopic: "devices/{subject}/commands",
    }]],
  }),
  metrics: z.strictObject({
    port: z.int().min(1).max(65535).optional().meta({
      description:
        "Serve `/metrics`, `/healthz` and `/readyz` on this port (none when unset).",
      examples: [9464],
    }),
    hostname: z.string().min(1).default("127.0.0.1").meta({
      description: "Address of that endpoint.",
      examples: ["0.0.0.0"],
    }),
  }).prefault({}),
  drainTimeoutMs: z.int().min(0).max(86_400_000).default(10000).meta({
    description: "On shutdown, how long to wait for messages in flight, in ms.",
    examples: [30000],
  }),
  log: z.strictObject({
    level: z.enum(["trace", "debug", "info", "warning", "error", "fatal"])
      .default("info").meta({
        description: "Lowest level logged.",
        examples: ["debug"],
      }),
  }).prefault({}),
});

// The rules between fields are not part of the schema: zod skips an object's
// refinements once a field of it is invalid, which would hold their problems
// back for a later run. checkConfig() checks them apart (see ruleIssues).
const configSchema = configObject;

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
   * Bound of the first reconnection wait, in milliseconds, in both directions; it doubles
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
  /** TLS files for `mqtts://` and `wss://`; with none, the system's CAs. */
  tls: TlsFiles;
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
 * console.log(route.mode, route.fromBeginning, route.groupId); // structured false dx-bridge-to-mqtt-0
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
  /**
   * Consumer group. Default `<kafka.clientId>-to-mqtt-<index>`, filled in by
   * {@linkcode parseConfig}.
   */
  groupId: string;
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
// schema and they drift apart. The schema leaves `groupId` unset, for
// parseConfig() to derive from `kafka.clientId`.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type SchemaOutput = Omit<BridgeConfig, "kafkaToMqtt"> & {
  kafkaToMqtt: (Omit<KafkaToMqttRoute, "groupId"> & {
    groupId?: string | undefined;
  })[];
};
const schemaMatchesTypes: Same<z.infer<typeof configSchema>, SchemaOutput> =
  true;
void schemaMatchesTypes;

/**
 * What happens when a field is not given: `{ value }`, the schema's default;
 * `{ rule }`, a default computed from other fields; `"unset"`, it stays
 * unset; `"required"`, it must be given (with its section, when the field is
 * in an optional section or a list entry).
 */
export type ConfigDefault =
  | { value: unknown }
  | { rule: string }
  | "unset"
  | "required";

/**
 * One field of the configuration reference, derived from the schema: the
 * README's table, the environment variables and the secrets all come from
 * {@linkcode CONFIG_FIELDS}, so none can miss a field the schema validates.
 */
export interface ConfigField {
  /**
   * The field's path, such as `kafka.clientId`; the fields of each entry of
   * a list are written `kafkaToMqtt[].groupId`.
   */
  path: string;
  /**
   * Its type as the reference shows it: `string`, `integer`, `boolean`,
   * `path` (of a file), `secret`, a union of literals such as
   * `"binary" | "structured"`, a list such as `string[]`, or `map of string
   * to string`.
   */
  type: string;
  /** What happens when the field is not given. */
  default: ConfigDefault;
  /**
   * The optional section the field belongs to, such as `kafka.sasl`: a
   * required field is needed only when its section is given.
   */
  section?: string | undefined;
  /** Its variable, such as `DX_KAFKA_CLIENT_ID`; none for list entries. */
  env?: string | undefined;
  /** How the variable's value is read, when there is a variable. */
  envKind?: EnvKind | undefined;
  /** Whether the value is a secret: only from the environment or a file. */
  secret: boolean;
  /** What the field means (Markdown). */
  description: string;
  /** A valid value, as it is written in the file. */
  example: unknown;
  /**
   * Checks a value for this field alone (not the rules between fields).
   *
   * @param value The value, as parsed from the file.
   * @returns One message per problem; none when the value is valid.
   */
  check(value: unknown): string[];
}

/**
 * Every field of the configuration, in the schema's order: each leaf of its
 * sections, each list, map, and field of a list's entries.
 *
 * @example A line of help per environment variable
 * ```ts
 * import { CONFIG_FIELDS } from "./config.ts";
 *
 * const help = CONFIG_FIELDS.filter((field) => field.env !== undefined)
 *   .map((field) => `${field.env} (${field.type})`);
 * console.log(help[3]); // DX_MQTT_PROTOCOL_VERSION (4 | 5)
 * ```
 */
export const CONFIG_FIELDS: readonly ConfigField[] = describeFields(
  configObject,
  { path: "", inList: false },
);

interface FieldContext {
  path: string;
  inList: boolean;
  section?: string | undefined;
}

/** The metadata of a schema and its wrappers, the outer ones first. */
interface Unwrapped {
  schema: z.ZodType;
  meta: Record<string, unknown>;
  optional: boolean;
  default?: { value: unknown } | undefined;
}

function unwrap(schema: z.ZodType): Unwrapped {
  const found: Unwrapped = { schema, meta: {}, optional: false };
  for (;;) {
    found.meta = { ...z.globalRegistry.get(found.schema), ...found.meta };
    const node: z.ZodType = found.schema;
    if (node instanceof z.ZodOptional) {
      found.optional = true;
      found.schema = node.unwrap() as z.ZodType;
    } else if (node instanceof z.ZodDefault || node instanceof z.ZodPrefault) {
      found.default ??= { value: node.def.defaultValue };
      found.schema = node.unwrap() as z.ZodType;
    } else return found;
  }
}

function describeFields(
  schema: z.ZodType,
  context: FieldContext,
): ConfigField[] {
  const { schema: node, optional } = unwrap(schema);
  if (node instanceof z.ZodObject) {
    const section = optional && !context.inList ? context.path : undefined;
    return Object.entries(node.shape).flatMap(([key, child]) =>
      describeFields(child as z.ZodType, {
        path: context.path ? `${context.path}.${key}` : key,
        inList: context.inList,
        section: section ?? context.section,
      })
    );
  }
  const field = describeField(schema, context);
  const element = node instanceof z.ZodArray
    ? unwrap(node.element as z.ZodType).schema
    : undefined;
  if (element instanceof z.ZodObject) {
    return [
      field,
      ...describeFields(element, { path: `${context.path}[]`, inList: true }),
    ];
  }
  return [field];
}

function describeField(schema: z.ZodType, context: FieldContext): ConfigField {
  const { schema: node, meta, optional, default: given } = unwrap(schema);
  const secret = meta.secret === true;
  const type = secret
    ? "secret"
    : meta.format === "path"
    ? "path"
    : typeText(node);
  return {
    path: context.path,
    type,
    default: given ??
      (typeof meta.defaultRule === "string"
        ? { rule: meta.defaultRule }
        : optional
        ? "unset"
        : "required"),
    section: context.section,
    env: context.inList ? undefined : envName(context.path),
    envKind: context.inList ? undefined : envKindOf(node),
    secret,
    description: typeof meta.description === "string" ? meta.description : "",
    example: Array.isArray(meta.examples) ? meta.examples[0] : undefined,
    check(value) {
      const result = node.safeParse(value);
      return result.success
        ? []
        : result.error.issues.map((issue) => issue.message);
    },
  };
}

function envKindOf(schema: z.ZodType): EnvKind {
  if (schema instanceof z.ZodArray) {
    const element = unwrap(schema.element as z.ZodType).schema;
    return element instanceof z.ZodObject ? "json" : "list";
  }
  if (schema instanceof z.ZodRecord) return "json";
  if (schema instanceof z.ZodBoolean) return "boolean";
  if (schema instanceof z.ZodNumber && schema.isInt) return "integer";
  if (
    schema instanceof z.ZodUnion &&
    schema.options.every((option) =>
      option instanceof z.ZodLiteral &&
      [...option.values].every((value) => Number.isInteger(value))
    )
  ) return "integer";
  return "string";
}

function typeText(schema: z.ZodType): string {
  if (schema instanceof z.ZodString) return "string";
  if (schema instanceof z.ZodBoolean) return "boolean";
  if (schema instanceof z.ZodNumber) return schema.isInt ? "integer" : "number";
  if (schema instanceof z.ZodEnum) {
    return schema.options.map((option) => JSON.stringify(option)).join(" | ");
  }
  if (schema instanceof z.ZodLiteral) {
    return [...schema.values].map((value) => JSON.stringify(value)).join(
      " | ",
    );
  }
  if (schema instanceof z.ZodUnion) {
    return schema.options.map((option) => typeText(option as z.ZodType)).join(
      " | ",
    );
  }
  if (schema instanceof z.ZodArray) {
    const element = unwrap(schema.element as z.ZodType).schema;
    if (element instanceof z.ZodObject) return "object[]";
    const text = typeText(element);
    return text.includes(" ") ? `(${text})[]` : `${text}[]`;
  }
  if (schema instanceof z.ZodRecord) {
    return `map of ${typeText(schema.keyType as z.ZodType)} to ${
      typeText(schema.valueType as z.ZodType)
    }`;
  }
  if (schema instanceof z.ZodObject) return "object";
  // A schema kind this function does not know yet: named so that the
  // reference test fails and says which.
  return `unknown (${schema.type})`;
}

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
 * Every field that the environment can set, with how its value is read:
 * all fields of {@linkcode CONFIG_FIELDS} but those of a `kafkaToMqtt`
 * entry, which come with the whole list. The variable is `DX_` and the
 * field's path in upper snake case: `kafka.clientId` is `DX_KAFKA_CLIENT_ID`.
 * Lists are comma-separated; `routes` and `kafkaToMqtt` take JSON.
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
export const ENV_FIELDS: Readonly<Record<string, EnvKind>> = Object
  .fromEntries(
    CONFIG_FIELDS.flatMap((field) =>
      field.envKind === undefined ? [] : [[field.path, field.envKind]]
    ),
  );

/**
 * Fields that hold secrets (marked so in the schema): never read from the
 * file, never printed.
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
export const SECRET_FIELDS: readonly string[] = CONFIG_FIELDS
  .filter((field) => field.secret).map((field) => field.path);

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
 * The rules between fields are checked too, whatever else is wrong: TLS
 * settings need a URL with TLS (and Kafka TLS files `kafka.tls.enabled`), a
 * client certificate needs its key, SASL needs a password, binary mode on
 * MQTT needs `mqtt.protocolVersion` 5, the dead-letter topic must differ from
 * the event topics, and `mqtt.reconnectPeriodMs` must not exceed
 * `mqtt.reconnectMaxDelayMs`. Files named by the configuration are not read
 * here: the bridge reads them before it connects, and reports their problems
 * the same way.
 *
 * @param raw The parsed file (or `{}` for none).
 * @param env The environment to read overrides from.
 * @returns The configuration with every default filled in, including each
 *   Kafka → MQTT route's `groupId`.
 * @throws {DataExchangeError} `invalid-config`, with one line per problem,
 *   all problems at once: the field, what was given (never a secret) and
 *   what is allowed.
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
 *   const [, ...lines] = error.message.split("\n");
 *   console.log(lines[0]); //   kafka.batchSize: DX_KAFKA_BATCH_SIZE must be an integer; given "many"
 *   console.log(lines[1]); //   mqtt.qos: 0 or 1; given 2
 * }
 * ```
 */
export function parseConfig(
  raw: unknown,
  env: Readonly<Record<string, string | undefined>> = {},
): BridgeConfig {
  const checked = checkConfig(raw, env);
  if (checked.config === undefined) {
    throw invalidConfigError(checked.problems);
  }
  return checked.config;
}

/**
 * What {@linkcode checkConfig} found. Internal to the package: not exported
 * by `mod.ts`.
 */
export interface ConfigCheck {
  /** The configuration, defaults filled in; `undefined` when invalid. */
  config: BridgeConfig | undefined;
  /** One line per problem, as {@linkcode invalidConfigError} takes them. */
  problems: string[];
  /**
   * The settings as given: the file with the environment applied and any
   * secret written in the file left out. Files it names can be checked from
   * here even when other fields are invalid.
   */
  given: Record<string, unknown>;
}

/**
 * Validates a configuration as {@linkcode parseConfig} does, but returns its
 * problems instead of throwing, with the settings as given, so that a caller
 * can add the problems of the files they name and report all of them at
 * once. Internal to the package: not exported by `mod.ts`.
 *
 * @param raw The parsed file (or `{}` for none).
 * @param env The environment to read overrides from.
 * @returns The configuration or its problems. It never throws.
 *
 * @example The problems of a configuration, and the CA file it names
 * ```ts
 * import { checkConfig } from "./config.ts";
 *
 * const checked = checkConfig({ mqtt: { qos: 2, tls: { ca: "/etc/dx/ca.pem" } } });
 * console.log(checked.config, checked.problems.length); // undefined 2
 * console.log((checked.given.mqtt as { tls: { ca: string } }).tls.ca); // /etc/dx/ca.pem
 * ```
 */
export function checkConfig(
  raw: unknown,
  env: Readonly<Record<string, string | undefined>> = {},
): ConfigCheck {
  // Problems found before the schema runs. Their fields are left out of the
  // schema's report and of the rules between fields, which would only repeat
  // them or judge a value the environment meant to replace.
  const problems: string[] = [];
  const reported: string[] = [];
  let input: Record<string, unknown> = {};
  if (typeof raw === "object" && raw !== null && !Array.isArray(raw)) {
    input = structuredClone(raw) as Record<string, unknown>;
  } else if (raw !== undefined && raw !== null) {
    problems.push(
      `  (root): a mapping of fields; given ${
        Array.isArray(raw) ? "a list" : `a ${typeof raw}`
      }`,
    );
  }
  for (const path of SECRET_FIELDS) {
    if (getPath(input, path) === undefined) continue;
    problems.push(
      `  ${path}: secrets may not be written in the configuration; set ${
        envName(path)
      } or ${path}File`,
    );
    reported.push(path);
    deletePath(input, path);
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
      reported.push(path);
      continue;
    }
    setPath(input, path, parsed);
  }

  const refused = (path: string) =>
    reported.some((field) => path === field || path.startsWith(`${field}.`));
  const result = configSchema.safeParse(input, { reportInput: true });
  const issues = [
    ...(result.success ? [] : issueLines(result.error.issues)),
    ...ruleIssues(input, refused),
  ];
  problems.push(
    ...issues.flatMap(({ path, line }) => refused(path) ? [] : [line]),
  );
  if (problems.length > 0 || !result.success) {
    return { config: undefined, problems, given: input };
  }
  return { config: withGroupIds(result.data), problems, given: input };
}

/**
 * The error of an invalid configuration: a header, then the problems, one
 * per line. Internal to the package: not exported by `mod.ts`.
 *
 * @param problems Lines such as `  mqtt.qos: 0 or 1; given 2`.
 * @returns A `DataExchangeError` with code `invalid-config`. It never throws.
 *
 * @example The message the bridge prints
 * ```ts
 * import { invalidConfigError } from "./config.ts";
 *
 * const error = invalidConfigError(["  mqtt.qos: 0 or 1; given 2"]);
 * console.log(error.code, error.message.split("\n")[0]); // invalid-config The configuration is invalid:
 * ```
 */
export function invalidConfigError(
  problems: readonly string[],
): DataExchangeError {
  return new DataExchangeError(
    "invalid-config",
    `The configuration is invalid:\n${problems.join("\n")}`,
  );
}

/** One line per schema problem, with the path of its field. */
function issueLines(
  issues: readonly z.core.$ZodIssue[],
): { path: string; line: string }[] {
  return issues.flatMap((issue) => {
    const path = issue.path.length > 0 ? issue.path.join(".") : "(root)";
    if (issue.code === "unrecognized_keys") {
      // One line per key, and never the values: a misspelled secret field
      // holds a secret.
      const prefix = issue.path.length > 0 ? `${path}.` : "";
      return issue.keys.map((key) => ({
        path: `${prefix}${key}`,
        line:
          `  ${prefix}${key}: unknown field; check its spelling against the configuration reference`,
      }));
    }
    if (issue.code === "invalid_key") {
      // A key of a map: the map's field, and what its keys may be.
      const map = issue.path.slice(0, -1).join(".") || "(root)";
      return [{
        path: map,
        line: `  ${map}: keys must be ${
          issue.issues.map((inner) => inner.message).join("; ")
        }; given the key ${show(issue.input)}`,
      }];
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
    return [{ path, line: `  ${path}: ${issue.message}${given}` }];
  });
}

/**
 * The problems of a configuration with the rules between fields, one line
 * each: the lines {@linkcode parseConfig} reports for them. For a
 * configuration that `parseConfig` returned there are none; the connections
 * check again, for one written in code. Internal to the package: not
 * exported by `mod.ts`.
 *
 * @param config A configuration, as given or validated.
 * @returns One line per broken rule. It never throws.
 *
 * @example A client certificate without its key
 * ```ts
 * import { crossFieldProblems } from "./config.ts";
 *
 * const [line] = crossFieldProblems({
 *   kafka: { tls: { enabled: true, cert: "/etc/dx/client.pem" } },
 * });
 * console.log(line.startsWith("  kafka.tls.key: ")); // true
 * ```
 */
export function crossFieldProblems(config: unknown): string[] {
  return ruleIssues(config, () => false).map(({ line }) => line);
}

const TLS_FILES = ["ca", "cert", "key"] as const;

/** URL schemes on which MQTT.js speaks TLS. */
const TLS_URL = /^(?:mqtts|wss|ssl):\/\//i;

/**
 * The rules between fields. Each judges only fields that are valid on their
 * own (or unset, then with their default) and not refused: another line
 * already reports the others.
 */
function ruleIssues(
  given: unknown,
  refused: (path: string) => boolean,
): { path: string; line: string }[] {
  const issues: { path: string; line: string }[] = [];
  const problem = (path: string, allowed: string, value: string) =>
    issues.push({ path, line: `  ${path}: ${allowed}; given ${value}` });
  const value = (path: string) => usableValue(given, path, refused);
  const isSet = (path: string) => value(path)?.value !== undefined;
  const isUnset = (path: string) => {
    const found = value(path);
    return found !== undefined && found.value === undefined;
  };

  // TLS settings on a URL without TLS would be ignored, and the password
  // sent in clear.
  const url = value("mqtt.url")?.value;
  const mqttTls: string[] = TLS_FILES.filter((name) =>
    isSet(`mqtt.tls.${name}`)
  );
  if (value("mqtt.tls.rejectUnauthorized")?.value === false) {
    mqttTls.push("rejectUnauthorized: false");
  }
  if (typeof url === "string" && mqttTls.length > 0 && !TLS_URL.test(url)) {
    problem(
      "mqtt.url",
      `a URL with TLS (mqtts:// or wss://), since mqtt.tls is set (${
        mqttTls.join(", ")
      }): on this URL it would be ignored and the password sent in clear; or remove mqtt.tls`,
      show(url),
    );
  }
  const kafkaTls = TLS_FILES.filter((name) => isSet(`kafka.tls.${name}`));
  if (value("kafka.tls.enabled")?.value === false && kafkaTls.length > 0) {
    problem(
      "kafka.tls.enabled",
      `true (DX_KAFKA_TLS_ENABLED=true), since kafka.tls is set (${
        kafkaTls.join(", ")
      }): with TLS off it would be ignored; or remove those files`,
      givenText(given, "kafka.tls.enabled"),
    );
  }
  for (const side of ["mqtt.tls", "kafka.tls"]) {
    for (const [set, missing] of [["cert", "key"], ["key", "cert"]]) {
      if (!isSet(`${side}.${set}`) || !isUnset(`${side}.${missing}`)) continue;
      problem(
        `${side}.${missing}`,
        `a PEM ${
          missing === "key" ? "private key" : "client certificate"
        } file, since ${side}.${set} is set: a client certificate needs its key, so set both or neither`,
        "nothing",
      );
    }
  }

  const sasl = getPath(given, "kafka.sasl");
  if (
    typeof sasl === "object" && sasl !== null && !Array.isArray(sasl) &&
    isUnset("kafka.sasl.password") && isUnset("kafka.sasl.passwordFile")
  ) {
    problem(
      "kafka.sasl.password",
      "SASL needs a password: set DX_KAFKA_SASL_PASSWORD or kafka.sasl.passwordFile",
      "nothing",
    );
  }

  // MQTT 3.1.1 has no user properties to carry the attributes.
  const routes = getPath(given, "kafkaToMqtt");
  if (value("mqtt.protocolVersion")?.value === 4 && Array.isArray(routes)) {
    routes.forEach((_, index) => {
      const path = `kafkaToMqtt.${index}.mode`;
      if (value(path)?.value !== "binary") return;
      problem(
        path,
        '"structured" while mqtt.protocolVersion is 4: binary mode carries the attributes in user properties, which MQTT 3.1.1 does not have; or set mqtt.protocolVersion to 5',
        show("binary"),
      );
    });
  }

  const deadLetterTopic = value("deadLetterTopic")?.value;
  const eventTopics = [
    value("defaultTopic")?.value,
    ...routeTopics(given, refused),
  ];
  if (
    typeof deadLetterTopic === "string" &&
    eventTopics.includes(deadLetterTopic)
  ) {
    problem(
      "deadLetterTopic",
      "a topic of its own: it is also a route or the default topic, so dead letters would mix with events",
      show(deadLetterTopic),
    );
  }

  const periodMs = value("mqtt.reconnectPeriodMs")?.value;
  const maxDelayMs = value("mqtt.reconnectMaxDelayMs")?.value;
  if (
    typeof periodMs === "number" && typeof maxDelayMs === "number" &&
    periodMs > maxDelayMs
  ) {
    problem(
      "mqtt.reconnectPeriodMs",
      `at most mqtt.reconnectMaxDelayMs (${maxDelayMs}), the largest reconnection wait; or raise mqtt.reconnectMaxDelayMs`,
      show(periodMs),
    );
  }
  return issues;
}

/**
 * A field's value as the bridge would use it: `{ value }`, given or its
 * default (`undefined` when it has none), or `undefined` when the field is
 * invalid on its own, sits in an invalid section, or is refused.
 */
function usableValue(
  given: unknown,
  path: string,
  refused: (path: string) => boolean,
): { value: unknown } | undefined {
  if (refused(path)) return undefined;
  const field = CONFIG_FIELDS.find((candidate) =>
    candidate.path === path.replace(/\.\d+(?=\.|$)/g, "[]")
  );
  let node = given;
  for (const key of path.split(".")) {
    if (node === undefined) break;
    if (typeof node !== "object" || node === null) return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  if (node === undefined) {
    const fallback = field?.default;
    return {
      value: typeof fallback === "object" && "value" in fallback
        ? fallback.value
        : undefined,
    };
  }
  return field === undefined || field.check(node).length === 0
    ? { value: node }
    : undefined;
}

/** The valid topics of `routes`, or of its default when it is not given. */
function routeTopics(
  given: unknown,
  refused: (path: string) => boolean,
): unknown[] {
  const routes = usableValue(given, "routes", refused);
  if (routes !== undefined) return Object.values(routes.value ?? {});
  const node = getPath(given, "routes");
  if (refused("routes") || typeof node !== "object" || node === null) {
    return [];
  }
  return Object.values(node).filter((topic) =>
    typeof topic === "string" && topicName.safeParse(topic).success
  );
}

/** A field's value for a message: as given, or its default when unset. */
function givenText(given: unknown, path: string): string {
  const value = getPath(given, path);
  if (value !== undefined) return show(value);
  const fallback = CONFIG_FIELDS.find((field) => field.path === path)
    ?.default;
  return typeof fallback === "object" && "value" in fallback
    ? `nothing (the default is ${show(fallback.value)})`
    : "nothing";
}

/** Fills in the consumer group of each Kafka → MQTT route without one. */
function withGroupIds(config: z.infer<typeof configSchema>): BridgeConfig {
  return {
    ...config,
    kafkaToMqtt: config.kafkaToMqtt.map((route, index) => ({
      ...route,
      groupId: route.groupId ?? `${config.kafka.clientId}-to-mqtt-${index}`,
    })),
  };
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
  return parseConfig(await readConfigFile(path), env);
}

/**
 * Reads a YAML or JSON configuration file, without validating it. Internal
 * to the package: not exported by `mod.ts`.
 *
 * @param path The file's path.
 * @returns What the file holds (`null` for an empty file).
 * @throws {DataExchangeError} `config-unreadable` when the file cannot be
 *   read or parsed.
 *
 * @example A file that is not there
 * ```ts
 * import { readConfigFile } from "./config.ts";
 *
 * try {
 *   await readConfigFile("/no/such/dir/bridge.yaml");
 * } catch (error) {
 *   console.log((error as { code?: string }).code); // config-unreadable
 * }
 * ```
 */
export async function readConfigFile(path: string): Promise<unknown> {
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
  try {
    return parseYaml(text);
  } catch (error) {
    // The parser quotes the offending line, which may hold a password:
    // keep only what it says of the problem and where.
    const problem = String((error as Error).message).split("\n")[0]
      .replace(/:\s*$/, "");
    throw new DataExchangeError(
      "config-unreadable",
      `The configuration file ${path} is not valid YAML or JSON: ${problem} (the line is not shown, as it may hold a secret)`,
      { cause: new SyntaxError(problem) },
    );
  }
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

function deletePath(target: Record<string, unknown>, path: string) {
  const keys = path.split(".");
  const parent = keys.length === 1
    ? target
    : getPath(target, keys.slice(0, -1).join("."));
  if (typeof parent === "object" && parent !== null) {
    delete (parent as Record<string, unknown>)[keys[keys.length - 1]];
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
