/**
 * Turns the configuration's connection settings (paths, secrets from the
 * environment or files) into the options of the MQTT and Kafka clients. Every
 * file is read and checked before anything connects, and its problems are
 * configuration problems, reported all at once the way `parseConfig` reports
 * the others.
 *
 * @module
 */
import type { KafkaConnectionOptions } from "../kafka/_kafkajs.ts";
import type { MqttStreamOptions } from "../mqtt/stream.ts";
import {
  type BridgeConfig,
  crossFieldProblems,
  invalidConfigError,
} from "./config.ts";

/** What the MQTT side needs besides the URL and client id. */
export interface MqttConnection {
  /** Topic filters, with the shared-subscription prefix when configured. */
  topics: string[];
  /** Credentials, TLS and keepalive for MQTT.js. */
  clientOptions: NonNullable<MqttStreamOptions["clientOptions"]>;
}

/**
 * Reads the MQTT credentials and TLS files named in the configuration.
 *
 * @param config A validated configuration.
 * @returns The topics and MQTT.js options.
 * @throws {DataExchangeError} `invalid-config`, with every problem of the
 *   configuration's files (missing, unreadable, empty, not PEM of the right
 *   kind) and of its rules between fields, one per line.
 */
export async function mqttConnection(
  config: BridgeConfig,
): Promise<MqttConnection> {
  const { mqtt } = config;
  const files = await readChecked(config);
  return {
    topics: mqtt.sharedGroup
      ? mqtt.topics.map((topic) => `$share/${mqtt.sharedGroup}/${topic}`)
      : [...mqtt.topics],
    clientOptions: {
      keepalive: mqtt.keepaliveSeconds,
      username: mqtt.username,
      password: files.mqttPassword,
      ...files.mqttTls,
      rejectUnauthorized: mqtt.tls.rejectUnauthorized,
    },
  };
}

/**
 * Reads the Kafka credentials and TLS files named in the configuration.
 *
 * @param config A validated configuration.
 * @returns The kafkajs connection settings.
 * @throws {DataExchangeError} `invalid-config`, with every problem of the
 *   configuration's files (missing, unreadable, empty, not PEM of the right
 *   kind) and of its rules between fields, one per line.
 */
export async function kafkaConnection(
  config: BridgeConfig,
): Promise<KafkaConnectionOptions> {
  const { kafka } = config;
  const files = await readChecked(config);
  let sasl: KafkaConnectionOptions["sasl"];
  if (kafka.sasl) {
    if (files.kafkaPassword === undefined) {
      // Not reached: readChecked() refuses SASL without a password source,
      // and a password file that cannot be read or is empty.
      throw invalidConfigError([
        "  kafka.sasl.password: SASL needs a password: set DX_KAFKA_SASL_PASSWORD or kafka.sasl.passwordFile; given nothing",
      ]);
    }
    sasl = {
      mechanism: kafka.sasl.mechanism,
      username: kafka.sasl.username,
      password: files.kafkaPassword,
    };
  }
  return {
    brokers: kafka.brokers,
    clientId: kafka.clientId,
    requestTimeoutMs: kafka.requestTimeoutMs,
    tls: kafka.tls.enabled
      ? { ...files.kafkaTls, rejectUnauthorized: kafka.tls.rejectUnauthorized }
      : undefined,
    sasl,
  };
}

/**
 * Reads every file a configuration names (TLS files, password files) and
 * checks it: readable, not empty, PEM of the right kind. Only fields that
 * hold a path are read, so that it also works on a configuration with other
 * problems, whose problems it adds to. File contents never appear in a
 * message.
 *
 * @param config A validated configuration, or the settings as given (see
 *   `checkConfig`).
 * @returns One line per problem, as `invalidConfigError` takes them. It
 *   never throws.
 */
export async function connectionProblems(config: unknown): Promise<string[]> {
  const problems: string[] = [];
  await readFiles(config, problems);
  return problems;
}

interface PemTexts {
  ca?: string;
  cert?: string;
  key?: string;
}

interface ConnectionFiles {
  mqttPassword: string | undefined;
  mqttTls: PemTexts;
  kafkaPassword: string | undefined;
  kafkaTls: PemTexts;
}

/**
 * The files of a configuration, or an `invalid-config` error with all the
 * problems of its files and of its rules between fields (checked again here
 * for a configuration written in code).
 */
async function readChecked(config: BridgeConfig): Promise<ConnectionFiles> {
  const problems = crossFieldProblems(config);
  const files = await readFiles(config, problems);
  if (problems.length > 0) throw invalidConfigError(problems);
  return files;
}

/** Reads the files one after another, so that problems keep their order. */
async function readFiles(
  config: unknown,
  problems: string[],
): Promise<ConnectionFiles> {
  return {
    mqttPassword: await readSecret(config, "mqtt.password", problems),
    mqttTls: await readTls(config, "mqtt.tls", problems),
    kafkaPassword: await readSecret(config, "kafka.sasl.password", problems),
    kafkaTls: await readTls(config, "kafka.tls", problems),
  };
}

/** A secret from the environment, else from its `...File`. */
async function readSecret(
  config: unknown,
  field: string,
  problems: string[],
): Promise<string | undefined> {
  const value = valueAt(config, field);
  if (typeof value === "string") return value;
  const fileField = `${field}File`;
  const path = valueAt(config, fileField);
  if (typeof path !== "string" || path === "") return undefined;
  const text = await readFile(
    path,
    fileField,
    "a file holding the password",
    problems,
  );
  const password = text?.replace(/\r?\n$/, "");
  if (password === "") {
    problems.push(
      `  ${fileField}: a file holding the password; given ${
        JSON.stringify(path)
      }, which is empty: write the password into it, or unset ${fileField}`,
    );
    return undefined;
  }
  return password;
}

const PEM_KINDS = {
  ca: "a PEM file of CA certificates",
  cert: "a PEM client certificate",
  key: "a PEM private key, unencrypted",
} as const;

async function readTls(
  config: unknown,
  section: string,
  problems: string[],
): Promise<PemTexts> {
  const texts: PemTexts = {};
  for (const kind of ["ca", "cert", "key"] as const) {
    const path = valueAt(config, `${section}.${kind}`);
    if (typeof path !== "string" || path === "") continue;
    const text = await readPem(path, `${section}.${kind}`, kind, problems);
    if (text !== undefined) texts[kind] = text;
  }
  return texts;
}

/**
 * Reads a PEM file and checks its kind, so that a wrong file fails here,
 * once, rather than as a TLS error on every reconnection.
 */
async function readPem(
  path: string,
  field: string,
  kind: keyof typeof PEM_KINDS,
  problems: string[],
): Promise<string | undefined> {
  const allowed = PEM_KINDS[kind];
  const text = await readFile(path, field, allowed, problems);
  if (text === undefined) return undefined;
  const given = `given ${JSON.stringify(path)}`;
  if (kind === "key") {
    if (
      /-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(text)
    ) {
      problems.push(
        `  ${field}: ${allowed}, since the bridge has no passphrase setting; ${given}, an encrypted key: ` +
          "write it unencrypted (`openssl pkey -in <key> -out <new key>`) into a file only the bridge may read",
      );
      return undefined;
    }
    if (!/-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----/.test(text)) {
      problems.push(
        `  ${field}: ${allowed}; ${given}, which holds no "-----BEGIN ... PRIVATE KEY-----" line`,
      );
      return undefined;
    }
  } else if (!text.includes("-----BEGIN CERTIFICATE-----")) {
    problems.push(
      `  ${field}: ${allowed}; ${given}, which holds no "-----BEGIN CERTIFICATE-----" line`,
    );
    return undefined;
  }
  return text;
}

async function readFile(
  path: string,
  field: string,
  allowed: string,
  problems: string[],
): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    // Deno's message ends with the call and the path, already shown.
    const reason = (error as Error).message.replace(/: \w+ '.*'$/, "");
    problems.push(
      `  ${field}: ${allowed}; given ${
        JSON.stringify(path)
      }, which cannot be read: ${reason}; check the path and that the bridge may read it (--allow-read)`,
    );
    return undefined;
  }
}

/** The value at a field path; `undefined` where the path leads nowhere. */
function valueAt(config: unknown, path: string): unknown {
  let node = config;
  for (const key of path.split(".")) {
    if (typeof node !== "object" || node === null) return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return node;
}
